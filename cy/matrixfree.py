"""Matrix-free Gauss–Newton in the primal form of the u^k kernel (manifolds without symmetry).

φ = s† H s / |z|^{2k} with H Hermitian N_k × N_k (all real (k,k) functions: N_k² real parameters).
Per point, with X = P(∇s − k s z̄/|z|²) (d × N_k) and t = tr(g⁻¹ g_FS):

    J(δH, δc)_x = |z|^{-2k} [ tr(g⁻¹ X δH X†)/π − k t (s^T δH s̄) ] − δc
    J*(u)       = Σ_x u_x |z|^{-2k} [ X^T g^{-T} X̄ /π − k t s s̄^T ]           (Hermitian N_k × N_k)

so one product costs O(n · d · N_k²) as two GEMMs, whatever the number of points.

``link="log"`` reads the same kernel function F = s†Hs/|z|^{2k} (the u^k RKHS, the frozen kernel
unchanged) through the Bergman/Donaldson link K = K_FS + (1/(kπ)) log F, i.e. K = (1/(kπ)) log s†Hs:
g = X̃ H X̃† / (kπ F|z|^{2k}) with X̃ = X − (X H s̄ / s†Hs) s (the projected features), and

    J(δH, δc)_x = [ tr(g⁻¹ X̃ δH X̃†)/(kπ) − d (s^T δH s̄) ] / (s^T H s̄) − δc

— the same two-GEMM products with X̃, 1/(k s†Hs) and k·d in place of X, |z|^{-2k} and k·t, rebuilt at
every linearisation (the network's output is e^{kπφ}, not φ; its kernel is still u^k). The Gauss–Newton
system (JᵀWJ/n + λD) δ = −JᵀW r/n is solved by preconditioned CG (:func:`ntkflow.solvers.cg`, Jacobi
preconditioner D = diag JᵀWJ/n, computed chunkwise) on the real coordinates
θ = (diag H, Re H_{α<β}, Im H_{α<β}, c): :class:`PrimalProblem` implements
:class:`ntkflow.solvers.least_squares.LeastSquaresProblem` (J an engine operator applied by the two
GEMM products above, the ridge P = diag(1, …, 1, 0) of a Tikhonov penalty μ‖H‖²_F as ``penalty()``), and
the job runs :func:`ntkflow.solvers.least_squares.levenberg_marquardt` with ``CGSolve`` on it. Steps are
accepted on a loss decrease; ``loss`` is +inf where g is not positive definite at a training point.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg import blas as scipy_blas

from ntkflow.cy import algebra, basis as basis_mod
from ntkflow.cy.basis import PairBasis
from ntkflow.cy.problems import DiagonalOperator, ProductOperator, cholesky_logdet, fitted_constant
from ntkflow.engine.devices import device_mesh, local_blocks, padded_length, shard_points
from ntkflow.solvers.least_squares import Linearisation, NormalEquations

__all__ = ["PrimalProblem", "LINKS", "PRODUCT_DTYPES", "resolve_link", "hermitian_basis", "section_gram_sum", "whitening_matrix"]

#: how the kernel function F = s†Hs/|z|^{2k} becomes the potential: φ = F, or K = (1/(kπ)) log s†Hs
LINKS = ("identity", "log")
#: above this many points the Jacobi diagonal is estimated on an evenly strided subset
JACOBI_MAX_POINTS = 20_000
#: complex entries (rows · d · N_k) of one host block of the features: caps ``PrimalProblem.block`` (measured: the
#: tetraquadric at k = 3, N_k = 240, 70k points peaked at 2.97 GB with 32768-row blocks)
HOST_BLOCK_ENTRIES = 1 << 23
#: entries (chunk · R(R+1)/2 · N_k) of the factor matrices of one chunk of the Jacobi diagonal: bounds its
#: temporaries (≈ 6 real arrays of this many float64) whatever N_k
JACOBI_CHUNK_ENTRIES = 4_000_000
#: dtypes of the Gauss–Newton products (float32: J V and Jᵀ U in complex64 — measured ≈ 2× faster GEMMs,
#: products with relative error ≈ 1e-6; the residual, the loss and the CG vectors stay float64)
PRODUCT_DTYPES = ("float64", "float32")


def section_features(z, jac, exponents, *, xp=np, factors=None):
    """s (n, N) degree-k monomials and X (n, d, N), X_α = P(∇s_α − k s_α z̄/|z|²), with the array
    module ``xp`` (numpy or jax.numpy): :func:`ntkflow.cy.algebra.section_features` in this layout
    (``factors``: a product of projective spaces, the per-factor shift of :class:`~ntkflow.cy.algebra.Factors`)."""
    s, x, _ = algebra.section_features(z, jac, exponents, xp=xp, layout="nda", factors=factors)  # (n, N), (n, d, N)
    return s, x


def section_gram_sum(z, jac, weights, k: int, *, chunk: int = 4096, xp=np, factors=None) -> np.ndarray:
    """Σ_x w_x s(x) s(x)† |z_x|^{-2k} (N, N) complex128 over the degree-k monomials s: the unnormalised
    Monte-Carlo Gram of the sections (Donaldson's at H = I), a sum over points — so a sum of the blocks'
    sums (:mod:`ntkflow.cy.distributed`). ``weights`` (n,) as given (PrimalProblem: normalised to mean 1).
    ``factors`` (:class:`~ntkflow.cy.algebra.Factors`): the multi-degree sections, |z|^{-2k} → Π_a |z^{(a)}|^{-2k_a}."""
    if factors is None:
        exps = basis_mod.monomials(z.shape[1], int(k))
        hk = np.sum(np.abs(z) ** 2, axis=1) ** (-int(k))  # (n,)
    else:
        exps, hk = factors.exponents(), factors.weight(np.asarray(z))
    wh = xp.asarray(np.asarray(weights, dtype=np.float64) * hk)
    G = 0.0
    for lo in range(0, len(z), chunk):
        s_c = section_features(xp.asarray(z[lo:lo + chunk]), xp.asarray(jac[lo:lo + chunk]), exps, xp=xp,
                               factors=factors)[0]
        G = G + np.asarray((s_c * wh[lo:lo + chunk][:, None]).T @ xp.conj(s_c))
    return np.asarray(G, dtype=np.complex128)


def whitening_matrix(G, rtol: float = 1e-10) -> np.ndarray:
    """M (N, N_k) with Mᵀ G M̄ = I on the eigen-directions of the Hermitian Gram G (N, N) whose eigenvalue
    exceeds rtol × the largest: the sections s' = Mᵀs are orthonormal (see :class:`PrimalProblem`)."""
    lam, U = np.linalg.eigh(0.5 * (G + np.conj(G.T)))
    keep = lam > rtol * lam[-1]
    return np.conj(U[:, keep]) / np.sqrt(lam[keep])


class _Point(NamedTuple):
    """One point of linearisation: H, g⁻¹ and the per-point factors of J (module docstring); ``cached``
    holds Ỹ = L⁻¹Y (rows, d, N_k) in the product dtype, g = LL† (built once per linearisation)."""

    H: object
    ginv: object
    shift: object
    a: object
    q: object
    cached: object


class PrimalProblem:
    """Monge–Ampère least squares over Hermitian H (see the module docstring).

    ``backend="numpy"`` keeps everything in host memory; ``backend="jax"`` builds and keeps the
    per-point features on JAX's default device (a GPU where there is one), and every product runs
    there (same formulas; the tests compare the two).

    ``factors`` (an :class:`~ntkflow.cy.algebra.Factors`; None: the hypersurface, one factor of degree k):
    a complete intersection in P^{n_1} × … × P^{n_m}. The sections are then the multi-degree monomials,
    |z|^{-2k} becomes Π_a |z^{(a)}|^{-2k_a}, the features carry the per-factor shift, and (identity link)
    g = g_ref + Π_a|z^{(a)}|^{-2k_a} [X H X†/π − (s^T H s̄) Σ_a k_a g_a] with the reference
    g_ref = Σ_a (k_a/k) g_a, the FS metric of the class Σ_a k_a J_a / k (t = (1, …, 1) when every k_a = k);
    the log link K = (1/(kπ)) log s†Hs starts (H = I) near the same class.  In the Jacobian q = tr(g⁻¹ Σ_a k_a g_a)
    replaces k tr(g⁻¹ g_FS).

    ``devices`` (None, an int or "all"; ``backend="jax"`` only): the points axis is sharded over a 1-D
    mesh of that many devices (:mod:`ntkflow.engine.devices`): z, the features S, X, the weights, g_FS and
    log|Ω|² are split into equal blocks, one per device, n padded with zero-weight copies of the first
    point (means divide by the true n). ``linearise`` then returns
    :class:`~ntkflow.solvers.least_squares.NormalEquations`: JᵀWr/n and the product V ↦ JᵀWJV/n run with
    the sharded arrays (the sums over points are all-reduces), so the driver receives only
    parameter-sized vectors; ``residual``, ``metric`` and ``weights`` return the n true points.
    """

    def __init__(self, z, jac, weights, log_omega, k: int, *, chunk: int = 4096, whiten: bool | np.ndarray = True,
                 whiten_rtol: float = 1e-10, backend: str = "numpy", link: str = "identity", block: int = 32_768,
                 weight_mean: float | None = None, devices=None, product_dtype: str = "float64",
                 factors: algebra.Factors | None = None):
        if backend not in ("numpy", "jax"):
            raise ValueError(f"backend: expected 'numpy' or 'jax', received {backend!r}.")
        if devices is not None and backend != "jax":
            raise ValueError(f"devices: sharding the points over devices needs backend='jax', received "
                             f"backend={backend!r} with devices={devices!r}; pass backend='jax' or devices=None.")
        self.mesh = None if devices is None else device_mesh(devices)
        if product_dtype not in PRODUCT_DTYPES:
            raise ValueError(f"product_dtype: expected one of {PRODUCT_DTYPES}, received {product_dtype!r}; float32 "
                             f"runs the Gauss–Newton products J V, Jᵀ U in complex64 (the loss stays float64).")
        self.product_dtype = product_dtype
        self._cdt = np.complex128 if product_dtype == "float64" else np.complex64
        self._rdt = np.float64 if product_dtype == "float64" else np.float32
        if link not in LINKS:
            raise ValueError(f"link: expected one of {LINKS}, received {link!r}.")
        self.backend = backend
        self.link = link
        self.block = int(block)  # host products run over blocks of at most this many points (bounded temporaries)
        self.k = int(k)
        if factors is not None:
            if not isinstance(factors, algebra.Factors):
                raise TypeError(f"factors: expected an ntkflow.cy.algebra.Factors, received {type(factors).__name__}.")
            if factors.n_coords != z.shape[1]:
                raise ValueError(f"factors: {factors.sizes} has {factors.n_coords} coordinates but the points have "
                                 f"{z.shape[1]}; pass Factors(sizes=(n_1+1, …), degrees=(k_1, …)) of this ambient.")
        self.factors = factors
        self.exps = basis_mod.monomials(z.shape[1], self.k) if factors is None else factors.exponents()
        n_mono = len(self.exps)
        n = len(z)
        self.dim = jac.shape[1]
        if backend == "jax":
            import jax.numpy as jnp

            xp = jnp
        else:
            xp = np
        self.xp = xp
        h = np.sum(np.abs(z) ** 2, axis=1)
        hk_host = h ** (-self.k) if factors is None else factors.weight(np.asarray(z))  # (n,) Π_a |z^(a)|^{-2k_a}
        hk = xp.asarray(hk_host)
        # weights normalised to mean 1 — over this problem's points, or over a larger set whose mean is given
        # (a block of ntkflow.cy.distributed: every block divides by the same global mean)
        w_mean = np.mean(weights) if weight_mean is None else float(weight_mean)
        w = xp.asarray(np.asarray(weights, dtype=np.float64) / w_mean)
        feats = lambda lo: section_features(xp.asarray(z[lo:lo + chunk]), xp.asarray(jac[lo:lo + chunk]),  # noqa: E731
                                            self.exps, xp=xp, factors=factors)
        # Sections s' = Mᵀs orthonormal in the Monte-Carlo inner product mean_w s s† |z|^{-2k}
        # (Donaldson's Gram at H = I): the monomials' norms spread over decades and the multiples of
        # the defining polynomial vanish on X (an exact null space of the Gauss–Newton system).  In this
        # basis the (k,k) functions s'_a s̄'_b |z|^{-2k} are close to orthonormal (Tian–Yau–Zelditch).
        # φ = s'ᵀH's̄'|z|^{-2k} = sᵀ(M H' M†)s̄|z|^{-2k}.
        # ``whiten`` may also be a given M (N, N_k'): a block of a distributed problem uses the global one.
        M = np.eye(n_mono, dtype=np.complex128)
        given = not isinstance(whiten, (bool, np.bool_))
        if given:
            M = np.asarray(whiten, dtype=np.complex128)
            if M.ndim != 2 or M.shape[0] != n_mono or not 0 < M.shape[1] <= n_mono:
                raise ValueError(f"whiten: expected True, False or a matrix of shape ({n_mono}, ≤ {n_mono}) (the "
                                 f"degree-{self.k} monomials × kept sections), received shape {M.shape}.")
            whiten = True
        elif whiten:  # a first pass for the Gram, so that only the whitened features are ever stored
            G = section_gram_sum(z, jac, np.asarray(weights, dtype=np.float64) / w_mean, self.k, chunk=chunk,
                                 xp=xp, factors=factors) / n  # (N, N) Hermitian
            M = whitening_matrix(G, whiten_rtol)
        Md = xp.asarray(M)
        nk = M.shape[1]
        if self.mesh is not None:  # rows padded so that the Jacobi stride subset is one per device
            rows = padded_length(n, self.mesh, multiple=-(-n // JACOBI_MAX_POINTS))
            S, X = self._sharded_features(z, jac, Md if whiten else None, nk, chunk, rows)
            hk = shard_points(hk_host, self.mesh, length=rows)
            w = shard_points(np.asarray(weights, dtype=np.float64) / w_mean, self.mesh, length=rows, pad="zeros")
        if xp is np:
            S = np.empty((n, nk), dtype=np.complex128)
            X = np.empty((n, self.dim, nk), dtype=np.complex128)
        S_parts, X_parts = [], []
        for lo in range(0, n if self.mesh is None else 0, chunk):
            s_c, x_c = feats(lo)
            if whiten:
                s_c = s_c @ Md
                x_c = (x_c.reshape(-1, n_mono) @ Md).reshape(len(s_c), self.dim, nk)
            if xp is np:
                S[lo:lo + chunk], X[lo:lo + chunk] = s_c, x_c
            else:
                S_parts.append(s_c)
                X_parts.append(x_c)
        if xp is not np and self.mesh is None:
            S, X = xp.concatenate(S_parts), xp.concatenate(X_parts)  # (n, N), (n, d, N)
            del S_parts, X_parts
        self.M = M
        put = xp.asarray if self.mesh is None else (lambda a: shard_points(a, self.mesh, length=rows))
        self.S, self.X, self.hk, self.w = S, X, hk, w
        self.S_p = S if product_dtype == "float64" else S.astype(self._cdt)  # S in the product dtype
        if factors is None:
            self.gfs = put(algebra.fs_pulled(z, jac))  # (n, d, d) the reference g_FS
            self.gk = None  # Σ_a k_a g_a = k g_FS
        else:
            deg = np.asarray(factors.degrees, dtype=np.float64)
            self.gfs = put(factors.fs_sum(z, jac, deg / self.k))  # g_ref: the class Σ_a k_a J_a / k
            self.gk = put(factors.fs_sum(z, jac, deg))  # (1/π)∂∂̄ψ pulled back
        self.log_omega = put(np.asarray(log_omega, dtype=np.float64))
        del S, X
        nk = self.S.shape[1]
        self.nk = nk
        self.n = n
        # and of at most HOST_BLOCK_ENTRIES feature entries (rows · d · N_k): the temporaries of the metric, Ỹ and
        # the products (each one block of X's size) then stay ≈ 130 MB whatever N_k
        self.block = max(256, min(self.block, HOST_BLOCK_ENTRIES // (self.dim * nk)))
        iu = np.triu_indices(nk, 1)
        self.iu = iu
        self.n_params = nk * nk + 1

    def _sharded_features(self, z, jac, Md, nk, chunk, rows):
        """(S (rows, N_k), X (rows, d, N_k)) sharded over the mesh: every device builds the features of its
        own block of points, ``chunk`` points per device at a time (whitened by ``Md`` unless None)."""
        import jax.numpy as jnp  # with backend="jax" only (as in __init__)

        mesh, d = self.mesh, self.dim
        zb = local_blocks(shard_points(np.asarray(z), mesh, length=rows), mesh)  # (D, L, N)
        jb = local_blocks(shard_points(np.asarray(jac), mesh, length=rows), mesh)  # (D, L, d, N)
        D, L = zb.shape[:2]
        c = max(1, chunk // D)
        S_parts, X_parts = [], []
        for lo in range(0, L, c):
            zc, jc = zb[:, lo:lo + c], jb[:, lo:lo + c]
            m = zc.shape[1]
            s_c, x_c = section_features(zc.reshape(D * m, -1), jc.reshape(D * m, d, -1), self.exps, xp=jnp,
                                        factors=self.factors)
            if Md is not None:
                s_c = s_c @ Md
                x_c = (x_c.reshape(-1, x_c.shape[-1]) @ Md).reshape(D * m, d, nk)
            S_parts.append(s_c.reshape(D, m, nk))
            X_parts.append(x_c.reshape(D, m, d, nk))
        S = jnp.concatenate(S_parts, axis=1).reshape(rows, nk)  # (rows, N_k), still one block per device
        X = jnp.concatenate(X_parts, axis=1).reshape(rows, d, nk)
        return shard_points(S, mesh), shard_points(X, mesh)

    @property
    def padded(self) -> bool:
        """True where the stored rows include zero-weight padding (devices not dividing n)."""
        return self.S.shape[0] != self.n

    def _host(self, a):
        return np.asarray(a)

    # ---- parameter vectors <-> Hermitian matrices ---------------------------------------
    def unvec(self, v):
        """θ = (diag H, Re H_{α<β}, Im H_{α<β}, c) -> (H on the problem's device, c)."""
        v = np.asarray(v, dtype=np.float64)
        nk = self.nk
        m = len(self.iu[0])
        H = np.zeros((nk, nk), dtype=np.complex128)
        H[np.arange(nk), np.arange(nk)] = v[:nk]
        up = v[nk:nk + m] + 1j * v[nk + m:nk + 2 * m]
        H[self.iu] = up
        H[self.iu[1], self.iu[0]] = np.conj(up)
        return (H if self.xp is np else self.xp.asarray(H)), float(v[-1])

    def grad_vec(self, G, c):
        """Gradient of θ ↦ Σ_αβ H(θ)_αβ G_αβ (G Hermitian) in θ-coordinates, plus the c entry."""
        G = self._host(G)
        up = G[self.iu]
        return np.concatenate([np.real(np.diag(G)), 2 * np.real(up), -2 * np.imag(up), [c]])

    def monomial_H(self, H):
        """H in the monomial basis: φ = sᵀ (M H M†) s̄ / |z|^{2k}."""
        return self.M @ self._host(H) @ np.conj(self.M.T)

    # ---- metric, residual ----------------------------------------------------------------
    def _xh(self, H, X=None):
        X = self.X if X is None else X
        n, d, nk = X.shape
        return (X.reshape(n * d, nk) @ H).reshape(n, d, nk)  # one GEMM

    def _val(self, H):
        """s^T H s̄ (n,) (real for Hermitian H)."""
        xp = self.xp
        return xp.real(xp.sum((self.S @ H) * xp.conj(self.S), axis=1))

    def metric(self, H):
        """Pulled-back g (n, d, d) for the Hermitian coefficient matrix H (whitened basis)."""
        g = self._metric_rows(H)
        return g[:self.n] if self.padded else g

    def _metric_rows(self, H):
        """g at every stored row (padded rows included on a device mesh)."""
        xp = self.xp
        H = xp.asarray(H)
        return xp.concatenate([self._metric_block(H, b) for b in self._blocks()])

    def _metric_block(self, H, b):
        xp = self.xp
        X, S = self.X[b], self.S[b]
        XH = self._xh(H, X)  # (c, d, N_k)
        xhx = XH @ xp.conj(xp.swapaxes(X, 1, 2))
        v = xp.real(xp.sum((S @ H) * xp.conj(S), axis=1))
        if self.link == "log":
            a = XH @ xp.conj(S)[:, :, None]  # (c, d, 1): X H s̄
            proj = xhx - (a @ xp.conj(xp.swapaxes(a, 1, 2))) / v[:, None, None]
            return proj / (self.k * np.pi * v[:, None, None])
        shift = self.k * v[:, None, None] * self.gfs[b] if self.gk is None else v[:, None, None] * self.gk[b]
        return self.gfs[b] + self.hk[b][:, None, None] * (xhx / np.pi - shift)

    def initial(self):
        """Start of the optimisation: identity link H = 0 (Fubini–Study); log link H = I in the whitened
        basis (s†Hs = Σ|s'_a|², Donaldson's T-map applied once to Fubini–Study); c fitted to either."""
        v = np.zeros(self.n_params)
        if self.link == "log":
            v[:self.nk] = 1.0
        r, _ = self.residual(v)
        if r is None:
            raise ValueError("initial metric is not positive definite at every training point.")
        v[-1] = fitted_constant(self._host(r), self.weights)
        return v

    @property
    def weights(self) -> np.ndarray:
        """(n,) Monte-Carlo weights normalised to mean 1, on the host."""
        w = self._host(self.w)
        return w[:self.n] if self.padded else w

    def _evaluate(self, v):
        """(r, g⁻¹, H) at θ = v, or (None, None, H) where g is not positive definite at some point."""
        xp = self.xp
        H, c = self.unvec(v)
        g = self._metric_rows(H)
        if self.link == "log" and not bool(xp.all(self._val(H) > 0)):
            return None, None, H
        ld = cholesky_logdet(g, xp)
        if ld is None:
            return None, None, H
        return ld - self.log_omega - c, xp.linalg.inv(g), H

    def residual(self, v):
        """(r, g⁻¹) with r = log det g − log|Ω|² − c at the training points, or (None, None) when g
        is not positive definite at some point."""
        r, ginv, _ = self._evaluate(v)
        if r is not None and self.padded:
            return r[:self.n], ginv[:self.n]
        return r, ginv

    def loss(self, v):
        r, _, _ = self._evaluate(v)
        if r is None:
            return np.inf
        if self.mesh is None:
            return float(self.xp.mean(self.w * r * r))
        return float(self.xp.sum(self.w * r * r)) / self.n  # zero-weight padding: divide by the true n

    def penalty(self):
        """P = diag(1, …, 1, 0): the ridge μ‖H‖²_F on the (whitened) coefficients, not on c — the
        kernel-ridge regularisation of the frozen-kernel function space (weight μ = ``LMConfig.mu``)."""
        d = np.ones(self.n_params)
        d[-1] = 0.0
        return DiagonalOperator(d)

    # ---- Jacobian products at a fixed metric ---------------------------------------------
    def linearise(self, v) -> Linearisation | None:
        """(r, J, diag JᵀWJ/n) at θ = v (None where g is not positive definite).

        J(δH)_x = a_x [tr(g⁻¹ Y δH Y†)/π − q_x s^T δH s̄] − δc with (identity link) Y = X,
        a = |z|^{-2k}, q = k tr(g⁻¹ g_FS), or (log link) Y = X̃ = X − (X H s̄ / s^T H s̄) s^T,
        a = 1/(k s^T H s̄), q = k d.  With T upper triangular, T†T = g⁻¹ (T = C† from the Cholesky factor
        of g⁻¹ = CC†), Ỹ = T Y (n, d, N_k) is built once per linearisation and kept (in the product dtype):
        tr(g⁻¹ Y δH Y†) = Σ_{aα} (Ỹ δH)_{aα} conj(Ỹ_{aα}), so J V and Jᵀ U are one GEMM and one elementwise
        pass each — memory: the features X, S plus Ỹ (the size of X; half that with float32 products)."""
        r, ginv, H = self._evaluate(v)
        if r is None:
            return None
        pt = self._point(H, ginv)
        if self.mesh is not None:
            return self._normal_equations(r, pt)
        J = ProductOperator(self.n, self.n_params,
                            forward=lambda V: self._in_column_blocks(self._jvp, pt, V),
                            adjoint=lambda U: self._in_column_blocks(self._vjp, pt, U))
        return Linearisation(r=self._host(r), J=J, diag=self._jacobi_diag(pt))

    def _normal_equations(self, r, pt: _Point) -> NormalEquations:
        """JᵀWr/n and V ↦ JᵀWJV/n with the sharded arrays (the residual and J V never leave the devices;
        the sums over points are all-reduces), diag(JᵀWJ)/n: what the driver needs of a sharded problem."""
        n, p = self.n, self.n_params
        grad = self._in_column_blocks(self._vjp, pt, (self.w * r)[:, None])[:, 0] / n

        def gram(V):
            return self._in_column_blocks(lambda q, Vb: self._vjp(q, self.w[:, None] * self._jvp_rows(q, Vb)), pt,
                                          np.asarray(V, dtype=np.float64)) / n

        return NormalEquations(grad=grad, gram=ProductOperator(p, p, forward=gram, adjoint=gram),
                               diag=self._jacobi_diag(pt))

    def _point(self, H, ginv) -> _Point:
        xp = self.xp
        if self.link == "log":
            v = self._val(H)
            ahs = xp.concatenate([(self._xh(H, self.X[b]) @ xp.conj(self.S[b])[:, :, None])[:, :, 0]
                                  for b in self._blocks()])  # (n, d): X H s̄
            pt = _Point(H, ginv, ahs / v[:, None], 1.0 / (self.k * v), xp.full(v.shape, float(self.k * self.dim)), None)
        else:
            q = (self.k * xp.real(xp.einsum("nab,nba->n", ginv, self.gfs)) if self.gk is None else
                 xp.real(xp.einsum("nab,nba->n", ginv, self.gk)))  # tr(g⁻¹ Σ_a k_a g_a)
            pt = _Point(H, ginv, None, self.hk, q, None)
        if xp is np:
            yt = np.empty(self.X.shape, dtype=self._cdt)
            for b in self._blocks():
                yt[b] = self._ytilde_rows(pt, b)
        else:
            yt = self._ytilde_rows(pt, slice(None))
        return pt._replace(cached=yt)

    def jacobi_diag(self, v, *, chunk: int | None = None, max_points: int | None = JACOBI_MAX_POINTS):
        """diag(JᵀWJ)/n at θ = v (see :meth:`_jacobi_diag`)."""
        r, ginv, H = self._evaluate(v)
        if r is None:
            raise ValueError("v: the metric is not positive definite at every training point.")
        return self._jacobi_diag(self._point(H, ginv), chunk=chunk, max_points=max_points)

    def _blocks(self):
        if self.xp is not np or self.n <= self.block:
            return [slice(None)]
        return [slice(lo, lo + self.block) for lo in range(0, self.n, self.block)]

    def _ytilde_rows(self, pt: _Point, sl):
        """Ỹ = T Y (c, d, N_k) in the product dtype on the points ``sl``: Y = X (− shift ⊗ s on the log
        link), T = C† with g⁻¹ = CC† (Cholesky), so T†T = g⁻¹ and tr(g⁻¹ Y H Y†) = tr(Ỹ H Ỹ†)."""
        xp = self.xp
        y = self.X[sl]
        if pt.shift is not None:
            y = y - pt.shift[sl][:, :, None] * self.S[sl][:, None, :]
        T = xp.conj(xp.swapaxes(xp.linalg.cholesky(pt.ginv[sl]), 1, 2))  # (c, d, d) upper triangular
        if xp is not np:
            return (T @ y).astype(self._cdt)
        # d ≤ 3 rows: broadcast multiply-adds (NumPy's batched d × d matmul is ≈ 5× slower here)
        out = np.zeros(y.shape, dtype=self._cdt)
        for a in range(self.dim):
            for b in range(a, self.dim):
                out[:, a] += T[:, a, b, None] * y[:, b]
        return out

    def _ytilde(self, pt: _Point, sl):
        """The kept Ỹ on the points ``sl`` (a slice or an index array)."""
        return pt.cached if isinstance(sl, slice) and sl == slice(None) else pt.cached[sl]

    def _product_blocks(self, width: int):
        """Row blocks of the products for ``width`` columns: (rows, d, width, N_k) temporaries ≤ ``block`` rows."""
        if self.xp is not np:
            return [slice(None)]
        rows = max(256, self.block // max(1, width))
        return [slice(lo, lo + rows) for lo in range(0, self.n, rows)]

    def _unvec_columns(self, V):
        """θ columns (p, k) -> (H (k, N_k, N_k) Hermitian on the problem's device, c (k,))."""
        V = np.asarray(V, dtype=np.float64)
        nk, k = self.nk, V.shape[1]
        m = len(self.iu[0])
        H = np.zeros((k, nk, nk), dtype=np.complex128)
        H[:, np.arange(nk), np.arange(nk)] = V[:nk].T
        up = (V[nk:nk + m] + 1j * V[nk + m:nk + 2 * m]).T  # (k, m)
        H[:, self.iu[0], self.iu[1]] = up
        H[:, self.iu[1], self.iu[0]] = np.conj(up)
        return (H if self.xp is np else self.xp.asarray(H)), V[-1]

    def _in_column_blocks(self, fn, pt: _Point, V, width: int = 8):
        """fn(pt, V[:, cols]) over blocks of ``width`` columns (bounded (n, d, width, N_k) temporaries)."""
        return np.concatenate([fn(pt, V[:, lo:lo + width]) for lo in range(0, V.shape[1], width)], axis=1)

    def _jvp(self, pt: _Point, V):
        """J V (n, k) on the host for θ columns V (p, k): one GEMM (n·d, N_k) × (N_k, k·N_k) per block."""
        return self._host(self._jvp_rows(pt, V))

    def _jvp_rows(self, pt: _Point, V):
        """J V (rows, k) where the features are (on the device mesh: sharded, padded rows included)."""
        xp = self.xp
        H, c = self._unvec_columns(V)
        k, nk = H.shape[0], self.nk
        Hc = xp.reshape(xp.transpose(H, (1, 0, 2)), (nk, k * nk)).astype(self._cdt)  # [H_1 … H_k]
        tr, val = [], []
        for b in self._product_blocks(k):
            y, s = self._ytilde(pt, b), self.S_p[b]  # (c, d, N_k), (c, N_k)
            yh = (y.reshape(-1, nk) @ Hc).reshape(y.shape[0], y.shape[1], k, nk)
            sh = (s @ Hc).reshape(-1, k, nk)
            if xp is np:  # Re Σ a conj(b) as one real contraction of the float views (no conjugated copies)
                yf, sf = y.view(self._rdt), s.view(self._rdt)  # (c, d, 2N_k), (c, 2N_k)
                tr.append(np.einsum("cajb,cab->cj", yh.view(self._rdt), yf))  # tr(Ỹ H_j Ỹ†)
                val.append(np.einsum("cjb,cb->cj", sh.view(self._rdt), sf))  # s^T H_j s̄
                continue
            tr.append(_real_inner(yh, y[:, :, None, :], axes=(1, 3), xp=xp))  # tr(Ỹ H_j Ỹ†)
            val.append(_real_inner(sh, s[:, None, :], axes=(2,), xp=xp))  # s^T H_j s̄
        tr, val = xp.concatenate(tr).astype(np.float64), xp.concatenate(val).astype(np.float64)  # (n, k)
        return pt.a[:, None] * (tr / np.pi - pt.q[:, None] * val) - xp.asarray(c)[None, :]

    def _vjp(self, pt: _Point, U):
        """Jᵀ U (p, k) in θ-coordinates for U (n, k) on the host or device."""
        xp = self.xp
        U = xp.asarray(U)
        k, nk = U.shape[1], self.nk
        cx = (U * pt.a[:, None]).astype(self._rdt)  # (n, k)
        cq = (U * (pt.a * pt.q)[:, None]).astype(self._rdt)
        if xp is np:
            G = self._vjp_gram_host(pt, cx, cq)  # (k, N_k, N_k)
            G = 0.5 * (G + np.conj(np.transpose(G, (0, 2, 1))))
            csum = np.sum(U, axis=0)
            return np.stack([self.grad_vec(G[j], -float(csum[j])) for j in range(k)], axis=1)
        G = 0.0
        for b in self._product_blocks(k):
            y, s = self._ytilde(pt, b), self.S_p[b]
            Z = (cx[b][:, None, :, None] / self._rdt(np.pi)) * xp.conj(y)[:, :, None, :]  # (c, d, k, N_k)
            Sq = (cq[b][:, :, None] * xp.conj(s)[:, None, :]).reshape(-1, k * nk)
            G = G + (y.reshape(-1, nk).T @ Z.reshape(-1, k * nk) - s.T @ Sq).astype(np.complex128)
        G = xp.transpose(G.reshape(nk, k, nk), (1, 0, 2))  # (k, N_k, N_k)
        G = 0.5 * (G + xp.conj(xp.transpose(G, (0, 2, 1))))
        csum = self._host(xp.sum(U, axis=0))
        return np.stack([self.grad_vec(G[j], -float(csum[j])) for j in range(k)], axis=1)

    def _vjp_gram_host(self, pt: _Point, cx, cq):
        """G_j = Σ_x cx_xj Ỹ_xᵀ conj(Ỹ_x)/π − cq_xj s_x s̄_xᵀ (k, N_k, N_k) complex128 on the host: per block one
        BLAS gemm (cx·Ỹ)ᵀ (Ỹᵀ)ᴴ with the conjugate-transpose flag on the row-major arrays read as column-major
        (no conjugated copy of Ỹ), and the s-part accumulated into the same output."""
        k, nk = cx.shape[1], self.nk
        gemm = _blas_gemm(self._cdt)
        pi = self._rdt(np.pi)
        G = np.zeros((k, nk, nk), dtype=np.complex128)
        for b in self._product_blocks(k):
            y, s = self._ytilde(pt, b), self.S_p[b]  # (c, d, N_k), (c, N_k)
            Z = ((cx[b] / pi)[:, None, :, None] * y[:, :, None, :]).reshape(-1, k * nk)  # (c·d, k·N_k)
            Sq = (cq[b][:, :, None] * s[:, None, :]).reshape(-1, k * nk)  # (c, k·N_k)
            Gb = gemm(1.0, Z.T, y.reshape(-1, nk).T, trans_b=2)  # (k·N_k, N_k): Σ cx Ỹ_α conj(Ỹ_β)
            Gb = gemm(-1.0, Sq.T, s.T, beta=1.0, c=Gb, trans_b=2, overwrite_c=True)
            G += np.asarray(Gb).reshape(k, nk, nk)
        return G

    def _jacobi_diag(self, pt: _Point, chunk: int | None = None, max_points: int | None = JACOBI_MAX_POINTS):
        """diag(JᵀWJ)/n in θ-coordinates, computed point-chunkwise; on more than ``max_points`` points it
        is estimated on an evenly strided subset (a preconditioner: it changes the CG iterations, never
        the solution; exact for n ≤ max_points, which the tests check)."""
        if self.mesh is not None:
            return self._jacobi_diag_sharded(pt, chunk, max_points)
        stride = 1 if max_points is None else max(1, -(-self.n // int(max_points)))
        idx = np.arange(0, self.n, stride)
        d = self.jacobi_sum(pt, idx if stride > 1 else None, chunk=chunk) * (self.n / len(idx))
        return d / self.n

    def _jacobi_diag_sharded(self, pt: _Point, chunk: int | None, max_points: int | None):
        """:meth:`_jacobi_diag` on the device mesh: each device sums a chunk of its own block at a time
        ((D, c, N_k, N_k) temporaries, one all-reduce per chunk). The stride subset of every block is the
        global stride subset (blocks are padded to a multiple of the stride), so the estimate equals the
        one-device one; padded rows have weight zero and are not counted."""
        xp, nk, mesh = self.xp, self.nk, self.mesh
        chunk = chunk or max(64, int(2e8 // (nk * nk)))
        stride = 1 if max_points is None else max(1, -(-self.n // int(max_points)))
        Y, a, q, S, w = (local_blocks(t, mesh) for t in (pt.cached.astype(np.complex128), pt.a, pt.q, self.S, self.w))
        D, L = a.shape
        local = np.arange(0, L, stride)
        c = max(1, chunk // D)
        acc_re = xp.zeros((nk, nk))
        acc_im = xp.zeros((nk, nk))
        for lo in range(0, len(local), c):
            sl = local[lo:lo + c] if stride > 1 else slice(lo, lo + c)
            Yc = Y[:, sl]  # (D, c, d, N_k)
            M = xp.swapaxes(Yc, -1, -2) @ xp.conj(Yc)  # (D, c, N_k, N_k): Ỹᵀ conj(Ỹ) = Yᵀ g⁻ᵀ Ȳ
            A = a[:, sl, None, None] * (M / np.pi - q[:, sl, None, None] * S[:, sl, :, None] * xp.conj(S[:, sl, None, :]))
            ww = w[:, sl, None, None]
            acc_re = acc_re + xp.sum(ww * xp.real(A) ** 2, axis=(0, 1))
            acc_im = acc_im + xp.sum(ww * xp.imag(A) ** 2, axis=(0, 1))
        acc_re, acc_im = self._host(acc_re), self._host(acc_im)
        count = int(np.sum(np.arange(D)[:, None] * L + local[None, :] < self.n))  # true points in the subset
        wsum = float(xp.sum(w[:, local]))
        d = np.concatenate([np.diag(acc_re), 4 * acc_re[self.iu], 4 * acc_im[self.iu], [wsum]]) * (self.n / count)
        return d / self.n

    # ---- sums over this problem's points (a block of a distributed problem adds them up) ----------
    def linear_state(self, v):
        """(r (n,), the point state of the linearisation) at θ = v, or None where g is not positive
        definite: what :meth:`linearise` builds, kept by a block of :mod:`ntkflow.cy.distributed`."""
        r, ginv, H = self._evaluate(v)
        return None if r is None else (r, self._point(H, ginv))

    def loss_sum(self, v) -> float:
        """Σ_x w_x r_x² (+inf where g is not positive definite): n × :meth:`loss`."""
        r, _ = self.residual(v)
        return np.inf if r is None else float(self.xp.sum(self.w * r * r))

    def residual_sums(self, v):
        """(Σ w r, Σ w) at θ = v (the fitted constant is their ratio), or None where infeasible."""
        r, _ = self.residual(v)
        return None if r is None else (float(self.xp.sum(self.w * r)), float(self.xp.sum(self.w)))

    def grad_sum(self, state) -> np.ndarray:
        """Jᵀ W r (p,) at a :meth:`linear_state` (n × the right-hand side of the step)."""
        r, pt = state
        return self._in_column_blocks(self._vjp, pt, (self.w * r)[:, None])[:, 0]

    def gram_sum(self, state, V) -> np.ndarray:
        """Jᵀ W J V (p, k) for θ columns V (p, k), J then Jᵀ on these points (n × the Gram product)."""
        _, pt = state
        JV = self._in_column_blocks(self._jvp, pt, np.asarray(V, dtype=np.float64))  # (n, k) on the host
        return self._in_column_blocks(self._vjp, pt, self._host(self.w)[:, None] * JV)

    def jacobi_sum(self, pt, idx=None, *, chunk: int | None = None) -> np.ndarray:
        """Σ_{x ∈ idx} w_x (∂r_x/∂θ)² (p,) (all points when ``idx`` is None; the c entry Σ w): the
        unnormalised diag(JᵀWJ) of :meth:`_jacobi_diag` (``pt`` the point state, or a linear state)."""
        if isinstance(pt, tuple) and not isinstance(pt, _Point):
            pt = pt[1]
        xp = self.xp
        nk = self.nk
        R = self.dim + 1
        chunk = chunk or max(64, int(JACOBI_CHUNK_ENTRIES // (R * (R + 1) // 2 * nk)))  # (chunk · R(R+1)/2, N_k) factors
        strided = idx is not None
        idx = np.arange(self.n) if idx is None else np.asarray(idx, dtype=np.int64)
        acc_abs = xp.zeros((nk, nk))
        acc_sq = xp.zeros((nk, nk))
        for lo in range(0, len(idx), chunk):
            sl = idx[lo:lo + chunk] if strided else slice(lo, lo + chunk)
            da, ds = _jacobi_sums(self._ytilde(pt, sl).astype(np.complex128), self.S[sl], pt.a[sl], pt.q[sl],
                                  self.w[sl], xp=xp)
            acc_abs, acc_sq = acc_abs + da, acc_sq + ds
        acc_abs, acc_sq = self._host(acc_abs), self._host(acc_sq)
        # Σ w (Re A)², Σ w (Im A)² (clipped at 0: the two sums cancel to round-off where a part vanishes)
        acc_re = np.maximum(0.5 * (acc_abs + acc_sq), 0.0)
        acc_im = np.maximum(0.5 * (acc_abs - acc_sq), 0.0)
        return np.concatenate([np.diag(acc_re), 4 * acc_re[self.iu], 4 * acc_im[self.iu], [float(xp.sum(self.w[idx]))]])


def _blas_gemm(dtype):
    """BLAS ?gemm of ``dtype`` (scipy.linalg.blas: zgemm for complex128, cgemm for complex64)."""
    return scipy_blas.get_blas_funcs("gemm", dtype=np.dtype(dtype))


def _real_inner(a, b, *, axes, xp=np):
    """Re Σ a · conj(b) over ``axes`` (b broadcast against a)."""
    return xp.real(xp.sum(a * xp.conj(b), axis=axes))


def _jacobi_sums(yt, s, a, q, w, *, xp=np):
    """(Σ_x w_x |A_x|², Re Σ_x w_x A_x²) elementwise (N_k, N_k) real over c points,
    A_x = a_x (Ỹ_xᵀ conj(Ỹ_x)/π − q_x s_x s̄_xᵀ).

    A_x = Σ_r c_r u_r ū_rᵀ over R = d + 1 vectors (the rows of Ỹ_x with c = a/π, and s_x with c = −a q), so
    |A_{αβ}|² = Re Σ_{r≤r'} f c_r c_r' P_{rr'}[α] conj(P_{rr'}[β]) with P_{rr'} = u_r ū_r' and
    Re A²_{αβ} = Re Σ_{r≤r'} f c_r c_r' Q_{rr'}[α] conj(Q_{rr'}[β]) with Q_{rr'} = u_r u_r' (f = 1 on r = r', else 2).
    Only real parts are needed, and Re(p p̄'ᵀ) = Re p Re p'ᵀ + Im p Im p'ᵀ: each sum is one real GEMM
    Bᵀ(cf·B) with B = [Re P; Im P] (2·c·R(R+1)/2, N_k) — half the flops of the complex GEMM (cf·P)ᵀ conj(P),
    and no conjugated copies."""
    c, d, nk = yt.shape
    U = xp.concatenate([yt, s[:, None, :]], axis=1)  # (c, R, N_k)
    cr = xp.concatenate([xp.broadcast_to((a / np.pi)[:, None], (c, d)), (-a * q)[:, None]], axis=1)  # (c, R)
    i, j = np.triu_indices(d + 1)
    coef = w[:, None] * cr[:, i] * cr[:, j] * xp.asarray(np.where(i == j, 1.0, 2.0))[None, :]  # (c, m)
    cf = xp.concatenate([coef.reshape(-1), coef.reshape(-1)])[:, None]  # (2·c·m, 1): the Re and Im rows
    Ui, Uj = U[:, i, :], U[:, j, :]  # (c, m, N_k)
    out = []
    for F in (Ui * xp.conj(Uj), Ui * Uj):  # P, Q (c, m, N_k)
        B = xp.concatenate([xp.real(F).reshape(-1, nk), xp.imag(F).reshape(-1, nk)])  # (2·c·m, N_k) real
        out.append(B.T @ (cf * B))
    return out[0], out[1]


def resolve_link(link: str) -> str:
    """``"auto"`` → ``"log"`` on the matrix-free path (measured: half the held-out σ of the identity link
    at the same degree and points, docs/cy.md); otherwise the named link."""
    if link == "auto":
        return "log"
    if link not in LINKS:
        raise ValueError(f"link: expected 'auto' or one of {LINKS}, received {link!r}.")
    return link


def hermitian_basis(H, exps, k) -> PairBasis:
    """One-function PairBasis for φ = s†Hs/|z|^{2k} (half pairs α ≤ β)."""
    nk = len(exps)
    a, b = np.triu_indices(nk)
    w = H[a, b].copy()
    w[a == b] *= 0.5
    keep = w != 0
    return PairBasis(k=k, exponents=exps, alpha=a[keep], beta=b[keep], weight=w[keep],
                     func=np.zeros(int(keep.sum()), dtype=np.int64), n_functions=1, labels=("phi",),
                     description=f"dense Hermitian degree-{k} (N_k = {nk})")
