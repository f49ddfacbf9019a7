"""Gauss–Newton (Levenberg–Marquardt) for the Monge–Ampère problem in the DUAL (kernel) form.

φ = Σ_b α_b k(·, c_b) over m Nyström centres c_b (rows of the training points, uniform or randomly
pivoted Cholesky, :func:`ntkflow.solvers.select_centers`), for any projective kernel k(z, w) = f(u),
u = |⟨z, w⟩|²/(|z|²|w|²): :class:`~ntkflow.engine.ProjectiveGaussian` exp((u − 1)/s²) and
:class:`~ntkflow.engine.ProjectiveMixture` Σ a_j u^j (infinite / large feature spaces, where the primal
form of :mod:`ntkflow.cy.matrixfree` does not exist or is too large), and
:class:`~ntkflow.engine.ProjectivePower` u^k (the primal Bergman space; used by the tests to check that
both forms reach the same metric).

Convention (as :mod:`ntkflow.cy.matrixfree` / :mod:`ntkflow.cy.model`): g = g_FS + (1/π)∂∂̄φ
pulled back to X, g_FS = (1/π)∂∂̄ log|z|², r(x) = log det g(x) − log|Ω|²(x) − c, loss = mean_x(w_x r_x²)
with w = weights/mean(weights).

Closed form of one column. With p = ⟨z, c⟩ = Σ z_I c̄_I, Z = |z|², W = |c|², s = 1/(ZW), the chart
Jacobian P (d × N), ζ = P z̄ and R = P − ζ zᵀ/Z (d × N, the projection that kills the Euler field),
α = R c̄ = D p − p D Z/Z satisfies D_a u = p̄ α_a s and

    ∂_a∂̄_b f(u) = h(u) s α_a ᾱ_b − π u f'(u) (g_FS)_ab,        h = u f'' + f'

(for f = u^k this is |z|^{-2k}[X X† − kπ |s_c|² g_FS] of the primal form). Hence the Jacobian of the
residual in α at the current metric g is

    J_xb = (1/π) tr(g⁻¹ ∂∂̄ k(x, c_b)) = h(u) s q/π − u f'(u) t,     q = c_bᵀ B_x c̄_b,
    B_x = R† g⁻¹ R (N × N Hermitian),  t_x = tr(g⁻¹ g_FS),

so after an O(n·d·N²) per-point preparation one J entry costs two (2N)-dot products for p, one
(2N²)-dot product for q and one f-evaluation: a lazy pass over the n × m pairs is a few real GEMMs
per row tile. The metric itself is g = g_FS (1 − Σ_b α_b u f') + (1/π) R A Rᴴ with
A_x = Σ_b α_b h s c̄_b c_bᵀ (one (tile × m)·(m × N²) GEMM per tile).

Why a hand-written JAX-tiled product and not ``kernel_operator``: a row of J depends on per-point
data that change every Gauss–Newton step (B_x and t_x, i.e. g⁻¹(x)), so J is not a fixed kernel
between two point sets; the products below are written in the style of the engine's tiled JAX backend
(jit, ``lax.map`` / ``lax.scan`` over row tiles, memory O(tile·m), no n × m matrix). Where n·m is small
(``jacobian="auto"`` below ``dense_max_entries``) J is formed once per Gauss–Newton step by the same
tile function and CG runs on it with BLAS; otherwise every CG product is one lazy pass. The tests
compare both against an independent autodiff reference.

Gauss–Newton step (θ = (α, c)): (JᵀWJ/n + λD + μK̃) δ = −JᵀWr/n − μK̃θ, D = diag(JᵀWJ/n) (Jacobi),
K̃ = K_mm (the RKHS Gram of the centres, μ = ``ridge`` ≥ 0: the penalty μ‖φ‖²_H) on the α block, solved
by preconditioned CG (:func:`ntkflow.solvers.cg`); acceptance as in
:func:`ntkflow.cy.matrixfree.run_matrix_free` (loss decrease, g positive definite at every point).
"""
from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ntkflow._checks import nonneg_float, positive_float, positive_int, time_budget
from ntkflow.cy.model import _Model, as_pointset, register_kind
from ntkflow.cy.matrixfree import lm_update

__all__ = ["DualConfig", "DualProblem", "DualKernelModel", "run_dual", "make_kernel", "choose_form",
           "KERNELS", "CENTER_METHODS"]

KERNELS = ("gaussian", "mixture", "power")
CENTER_METHODS = ("uniform", "rpcholesky")
JACOBIAN_MODES = ("auto", "lazy", "dense")


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DualConfig:
    """Settings of the dual-form Gauss–Newton.

    Args:
        kernel: "gaussian" (exp((u − 1)/s²)), "mixture" (Σ_j a_j u^j) or "power" (u^k).
        s2: s² of the Gaussian (> 0).
        coeffs: mixture coefficients (a_0, a_1, …) ≥ 0; empty: the Gaussian's Taylor series
            a_j = 1/(j! s^{2j}), j = 0 … k (truncated at degree ``k``).
        k: degree of the power kernel (and of the default mixture).
        centers: m, the number of Nyström centres (≤ training points).
        centers_method: "uniform" or "rpcholesky" (on the scalar kernel, pool ``centers_pool``).
        centers_pool: RP-Cholesky on a uniform subsample of this many points (None: all).
        seed: seed of the centre selection.
        max_iter, lam0, gtol: Levenberg–Marquardt (λ ← 0.3λ on accept, 10λ on reject; stop when the
            relative loss decrease of an accepted step is below gtol).
        ridge: μ ≥ 0, weight of the RKHS penalty μ αᵀK_mm α.
        cg_rtol, cg_maxiter: the inner CG.
        jacobian: "auto" (dense J when n·m ≤ dense_max_entries, else lazy), "lazy" or "dense".
        tile: rows per JAX tile of the lazy products.
        max_seconds: wall budget of the Gauss–Newton loop (checked after each iteration; inf: none).
    """

    kernel: str = "gaussian"
    s2: float = 0.2
    coeffs: tuple = ()
    k: int = 2
    centers: int = 1000
    centers_method: str = "uniform"
    centers_pool: int | None = None
    seed: int = 0
    max_iter: int = 20
    lam0: float = 1e-3
    gtol: float = 1e-6
    ridge: float = 0.0
    cg_rtol: float = 1e-4
    cg_maxiter: int = 300
    jacobian: str = "auto"
    dense_max_entries: int = 25_000_000
    tile: int = 256
    max_seconds: float = math.inf

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel: expected one of {KERNELS}, received {self.kernel!r}.")
        object.__setattr__(self, "s2", positive_float("s2", self.s2))
        object.__setattr__(self, "coeffs", tuple(float(nonneg_float(f"coeffs[{i}]", a)) for i, a in enumerate(self.coeffs)))
        object.__setattr__(self, "k", positive_int("k", self.k))
        object.__setattr__(self, "centers", positive_int("centers", self.centers))
        if self.centers_method not in CENTER_METHODS:
            raise ValueError(f"centers_method: expected one of {CENTER_METHODS}, received {self.centers_method!r}.")
        if self.centers_pool is not None:
            object.__setattr__(self, "centers_pool", positive_int("centers_pool", self.centers_pool))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed: expected an integer, received {self.seed!r}.")
        object.__setattr__(self, "max_iter", positive_int("max_iter", self.max_iter))
        object.__setattr__(self, "lam0", nonneg_float("lam0", self.lam0))
        object.__setattr__(self, "gtol", nonneg_float("gtol", self.gtol))
        object.__setattr__(self, "ridge", nonneg_float("ridge", self.ridge))
        object.__setattr__(self, "cg_rtol", positive_float("cg_rtol", self.cg_rtol))
        object.__setattr__(self, "cg_maxiter", positive_int("cg_maxiter", self.cg_maxiter))
        if self.jacobian not in JACOBIAN_MODES:
            raise ValueError(f"jacobian: expected one of {JACOBIAN_MODES}, received {self.jacobian!r}.")
        object.__setattr__(self, "dense_max_entries", positive_int("dense_max_entries", self.dense_max_entries))
        object.__setattr__(self, "tile", positive_int("tile", self.tile))
        object.__setattr__(self, "max_seconds", time_budget("max_seconds", self.max_seconds))

    def to_json(self) -> dict:
        d = asdict(self)
        d["coeffs"] = list(self.coeffs)
        d["max_seconds"] = None if math.isinf(self.max_seconds) else self.max_seconds
        return d

    @classmethod
    def from_cy(cls, config) -> "DualConfig":
        """The dual settings of a :class:`ntkflow.cy.job.CYConfig` (``kernel`` ≠ "bergman")."""
        return cls(kernel=config.kernel, s2=config.s2, coeffs=tuple(config.mixture_coeffs), k=config.k,
                   centers=config.centers, centers_method=config.centers_method, seed=config.seed,
                   max_iter=config.max_iter, lam0=config.lam0 if config.lam0 > 0 else 1e-3, gtol=config.gtol,
                   ridge=config.ridge, max_seconds=config.time_budget if config.time_budget > 0 else math.inf)


def make_kernel(config: DualConfig):
    """The scalar projective kernel of ``config``."""
    from ntkflow.engine import ProjectiveGaussian, ProjectiveMixture, ProjectivePower

    if config.kernel == "gaussian":
        return ProjectiveGaussian(config.s2)
    if config.kernel == "power":
        return ProjectivePower(config.k)
    coeffs = config.coeffs or tuple(1.0 / (math.factorial(j) * config.s2 ** j) for j in range(config.k + 1))
    return ProjectiveMixture(coeffs)


def _kernel_spec(base) -> dict:
    from ntkflow.engine import ProjectiveGaussian, ProjectivePower

    if isinstance(base, ProjectiveGaussian):
        return {"name": "gaussian", "s2": float(base.s2)}
    if isinstance(base, ProjectivePower):
        return {"name": "power", "k": int(base.k)}
    return {"name": "mixture", "coeffs": [float(a) for a in base.coeffs]}


def _kernel_from_spec(spec: dict):
    from ntkflow.engine import ProjectiveGaussian, ProjectiveMixture, ProjectivePower

    name = spec.get("name")
    if name == "gaussian":
        return ProjectiveGaussian(float(spec["s2"]))
    if name == "power":
        return ProjectivePower(int(spec["k"]))
    if name == "mixture":
        return ProjectiveMixture(tuple(spec["coeffs"]))
    raise ValueError(f"kernel: unknown kernel spec {spec!r} in the model file.")


def _n_monomials(n_coords: int, k: int) -> int:
    return math.comb(n_coords + k - 1, k)


def choose_form(kernel, n_coords: int, m: int, n: int) -> tuple[str, str]:
    """("primal" | "dual", reason) for a projective kernel: the primal form needs a finite feature
    space (u^k: the N_k² real (k,k) functions), the dual form costs O(n·m) per Jacobian product."""
    from ntkflow.engine import ProjectiveGaussian, ProjectivePower

    lazy = f"m = {m} Nyström centres, one Jacobian product = one lazy pass over n×m = {n}×{m} pairs"
    if isinstance(kernel, ProjectiveGaussian):
        return "dual", f"dual form: the Gaussian kernel exp((u−1)/s²) (s² = {kernel.s2:g}) has an infinite feature space; {lazy}"
    if isinstance(kernel, ProjectivePower):
        p = _n_monomials(n_coords, kernel.k) ** 2
        return "dual", (f"dual form (requested): u^{kernel.k} has a finite feature space of {p} real (k,k) functions "
                        f"(the primal path is `--kernel bergman`); {lazy}")
    deg = [j for j, a in enumerate(kernel.coeffs) if a > 0 and j > 0]
    p = sum(_n_monomials(n_coords, j) ** 2 for j in deg)
    return "dual", (f"dual form: the mixture Σ a_j u^j (degrees {deg[0] if deg else 0}…{deg[-1] if deg else 0}) has "
                    f"{p} real features and no single-degree primal form; {lazy}")


# ----------------------------------------------------------------------------------------------
# tiled JAX passes (the lazy products)
# ----------------------------------------------------------------------------------------------


def _f(base, u, order):
    from ntkflow.engine.kernels.kahler import f_derivative

    return f_derivative(base, u, order)


def _pair_scalars(base, xz, cz, W):
    """u, s, f', f'' for a tile of rows (realified z, (t, 2N)) against all centres ((m, 2N))."""
    import jax.numpy as jnp

    h = xz.shape[1] // 2
    pre = xz @ cz.T
    pim = xz[:, h:] @ cz[:, :h].T - xz[:, :h] @ cz[:, h:].T
    Z = jnp.sum(xz * xz, -1)
    s = 1.0 / (Z[:, None] * W[None, :])
    u = (pre * pre + pim * pim) * s
    return u, s


@functools.lru_cache(maxsize=32)
def _jac_fns(base, tile: int):
    """jit functions of the Jacobian J (see the module docstring), row tiles of ``tile``.

    Row data: xz (n, 2N) realified z, xq (n, 2N²) = [Re B, −Im B], xt (n,) = t; column data:
    cz (m, 2N), cq (m, 2N²) = [Re C, Im C] with C = c cᴴ, W (m,) = |c|²."""
    import jax
    import jax.numpy as jnp

    def block(xz, xq, xt, cz, cq, W):
        u, s = _pair_scalars(base, xz, cz, W)
        f1, f2 = _f(base, u, 1), _f(base, u, 2)
        q = xq @ cq.T
        return (u * f2 + f1) * s * q / np.pi - u * f1 * xt[:, None]

    def tiles(a):
        return a.reshape((-1, tile) + a.shape[1:])

    @jax.jit
    def jv(xz, xq, xt, cz, cq, W, V):  # (n, k)
        def one(args):
            return block(*args, cz, cq, W) @ V
        out = jax.lax.map(one, (tiles(xz), tiles(xq), tiles(xt)))
        return out.reshape(-1, V.shape[1])

    @jax.jit
    def jtu(xz, xq, xt, cz, cq, W, U):  # (m, k)
        def step(acc, args):
            xz_, xq_, xt_, u_ = args
            return acc + block(xz_, xq_, xt_, cz, cq, W).T @ u_, None
        acc, _ = jax.lax.scan(step, jnp.zeros((cz.shape[0], U.shape[1])), (tiles(xz), tiles(xq), tiles(xt), tiles(U)))
        return acc

    @jax.jit
    def sq(xz, xq, xt, cz, cq, W, w):  # Σ_x w_x J_xb²
        def step(acc, args):
            xz_, xq_, xt_, w_ = args
            Jb = block(xz_, xq_, xt_, cz, cq, W)
            return acc + (w_[:, None] * Jb * Jb).sum(0), None
        acc, _ = jax.lax.scan(step, jnp.zeros(cz.shape[0]), (tiles(xz), tiles(xq), tiles(xt), tiles(w)))
        return acc

    @jax.jit
    def full(xz, xq, xt, cz, cq, W):  # the dense (n, m) J
        out = jax.lax.map(lambda a: block(*a, cz, cq, W), (tiles(xz), tiles(xq), tiles(xt)))
        return out.reshape(-1, cz.shape[0])

    return jv, jtu, sq, full


@functools.lru_cache(maxsize=32)
def _metric_fn(base, tile: int):
    """jit: (A_re, A_im (n, N²), e (n,), φ (n,)) with A = Σ_b α_b h s c̄_b c_bᵀ, e = Σ_b α_b u f',
    φ = Σ_b α_b f(u)."""
    import jax
    import jax.numpy as jnp

    def block(xz, cz, cq, W, a):
        u, s = _pair_scalars(base, xz, cz, W)
        f0, f1, f2 = _f(base, u, 0), _f(base, u, 1), _f(base, u, 2)
        E = (u * f2 + f1) * s * a[None, :]
        n2 = cq.shape[1] // 2
        return E @ cq[:, :n2], -(E @ cq[:, n2:]), (u * f1) @ a, f0 @ a  # C̄ = conj(C)

    @jax.jit
    def fn(xz, cz, cq, W, a):
        out = jax.lax.map(lambda b: block(b, cz, cq, W, a), xz.reshape(-1, tile, xz.shape[1]))
        return tuple(o.reshape((-1,) + o.shape[2:]) for o in out)

    return fn


def _pad(a, tile):
    n = a.shape[0]
    pad = (-n) % tile
    if pad == 0:
        return a
    fill = np.repeat(a[:1], pad, axis=0)  # a real point: no 0/0 in the padded rows
    return np.concatenate([a, fill], axis=0)


def _realify(z):
    z = np.asarray(z, dtype=np.complex128)
    return np.ascontiguousarray(np.concatenate([z.real, z.imag], axis=1))


def _centre_data(c):
    c = np.asarray(c, dtype=np.complex128)
    C = (c[:, :, None] * np.conj(c)[:, None, :]).reshape(len(c), -1)  # C_IJ = c_I c̄_J
    return _realify(c), np.ascontiguousarray(np.concatenate([C.real, C.imag], axis=1)), np.sum(np.abs(c) ** 2, axis=1)


def row_projection(z, jac):
    """R = P − ζ zᵀ/|z|² (n, d, N), ζ = P z̄ (so that D_a p − p D_a|z|²/|z|² = (R c̄)_a)."""
    Z = np.sum(np.abs(z) ** 2, axis=1)
    zeta = np.einsum("naI,nI->na", jac, np.conj(z))
    return jac - zeta[:, :, None] * z[:, None, :] / Z[:, None, None]


def dual_metric(base, centers, alpha, z, jac, *, tile: int = 256, gfs=None, with_potential: bool = False):
    """g = g_FS + (1/π)∂∂̄ Σ_b α_b k(·, c_b) pulled back, at points z (n, N) with chart Jacobians
    (n, d, N): (n, d, d) complex (and φ (n,) with ``with_potential``). One lazy pass over n × m."""
    import jax.numpy as jnp

    from ntkflow.cy import algebra

    z = np.asarray(z, dtype=np.complex128)
    jac = np.asarray(jac, dtype=np.complex128)
    n, N = z.shape
    tile = int(min(tile, max(n, 1)))
    cz, cq, W = _centre_data(centers)
    fn = _metric_fn(base, tile)
    Are, Aim, e, phi = (np.asarray(o)[:n] for o in fn(jnp.asarray(_pad(_realify(z), tile)), jnp.asarray(cz),
                                                      jnp.asarray(cq), jnp.asarray(W), jnp.asarray(np.asarray(alpha, float))))
    A = (Are + 1j * Aim).reshape(n, N, N)
    R = row_projection(z, jac)
    gfs = algebra.fs_pulled(z, jac) if gfs is None else gfs
    g = gfs * (1.0 - e)[:, None, None] + np.einsum("naI,nIJ,nbJ->nab", R, A, np.conj(R)) / np.pi
    g = 0.5 * (g + np.conj(np.swapaxes(g, 1, 2)))
    return (g, phi) if with_potential else g


# ----------------------------------------------------------------------------------------------
# the problem
# ----------------------------------------------------------------------------------------------


class DualProblem:
    """Monge–Ampère least squares over θ = (α (m,), c) in the dual form (module docstring).

    Args:
        base: scalar projective kernel (ProjectiveGaussian, ProjectiveMixture, ProjectivePower).
        centers: (m, N) complex centre points (rows of the training points).
        z, jac, weights, log_omega: the training points, chart Jacobians (n, d, N), Monte-Carlo
            weights and log|Ω|².
        jacobian: "lazy" (every product one tiled pass), "dense" (J formed per linearisation), or
            "auto" (dense when n·m ≤ dense_max_entries).
        tile: rows per JAX tile.
    """

    def __init__(self, base, centers, z, jac, weights, log_omega, *, jacobian: str = "auto",
                 dense_max_entries: int = 25_000_000, tile: int = 256):
        from ntkflow.engine.kernels.projective import _ProjectiveKernel
        from ntkflow.cy import algebra

        if not isinstance(base, _ProjectiveKernel):
            raise TypeError(f"base: expected a projective kernel (ProjectiveGaussian, ProjectiveMixture, "
                            f"ProjectivePower), received {type(base).__name__}.")
        z = np.asarray(z, dtype=np.complex128)
        jac = np.asarray(jac, dtype=np.complex128)
        centers = np.asarray(centers, dtype=np.complex128)
        if z.ndim != 2 or jac.ndim != 3 or jac.shape[0] != z.shape[0] or jac.shape[2] != z.shape[1]:
            raise ValueError(f"jac: expected chart Jacobians (n, d, N) matching z {z.shape}, received {jac.shape}.")
        if centers.ndim != 2 or centers.shape[1] != z.shape[1] or len(centers) == 0:
            raise ValueError(f"centers: expected (m, {z.shape[1]}) complex points, received shape {centers.shape}.")
        if jacobian not in JACOBIAN_MODES:
            raise ValueError(f"jacobian: expected one of {JACOBIAN_MODES}, received {jacobian!r}.")
        self.base = base
        self.n, self.N = z.shape
        self.dim = jac.shape[1]
        self.m = len(centers)
        self.n_params = self.m + 1
        self.centers = centers
        self.z, self.jac = z, jac
        self.tile = int(min(positive_int("tile", tile), self.n))
        self.w = np.asarray(weights, dtype=np.float64) / np.mean(weights)
        self.log_omega = np.asarray(log_omega, dtype=np.float64)
        if self.w.shape != (self.n,) or self.log_omega.shape != (self.n,):
            raise ValueError(f"weights: expected ({self.n},) weights and log_omega, received {self.w.shape}, {self.log_omega.shape}.")
        self.gfs = algebra.fs_pulled(z, jac)
        self.R = row_projection(z, jac)
        self.mode = ("dense" if self.n * self.m <= dense_max_entries else "lazy") if jacobian == "auto" else jacobian
        import jax.numpy as jnp

        cz, cq, W = _centre_data(centers)
        self._cols = (jnp.asarray(cz), jnp.asarray(cq), jnp.asarray(W))
        self._xz = jnp.asarray(_pad(_realify(z), self.tile))
        self._J = None
        self._gram = None

    # ---- metric, residual, loss -----------------------------------------------------------------
    def metric(self, alpha, z=None, jac=None):
        """Pulled-back g at the training points (or at z, jac)."""
        if z is None:
            return dual_metric(self.base, self.centers, alpha, self.z, self.jac, tile=self.tile, gfs=self.gfs)
        return dual_metric(self.base, self.centers, alpha, z, jac, tile=self.tile)

    def residual(self, v):
        """(r, g⁻¹) at the training points, or (None, None) where g is not positive definite."""
        v = np.asarray(v, dtype=np.float64)
        g = self.metric(v[:-1])
        try:
            ch = np.linalg.cholesky(g)
        except np.linalg.LinAlgError:
            return None, None
        ld = 2 * np.sum(np.log(np.real(np.diagonal(ch, axis1=1, axis2=2))), axis=1)
        return ld - self.log_omega - v[-1], np.linalg.inv(g)

    def loss(self, v) -> float:
        r, _ = self.residual(v)
        return math.inf if r is None else float(np.mean(self.w * r * r))

    def gram(self) -> np.ndarray:
        """K_mm = k(c_a, c_b), the RKHS Gram of the centres (‖φ‖²_H = αᵀK_mm α)."""
        if self._gram is None:
            self._gram = np.asarray(self.base.dense(self.centers, self.centers), dtype=np.float64)
        return self._gram

    # ---- Jacobian products at a fixed metric --------------------------------------------------
    def linearise(self, ginv):
        """Fix g⁻¹ (n, d, d): B_x = R† g⁻¹ R, t_x = tr(g⁻¹ g_FS); forms J in dense mode."""
        import jax.numpy as jnp

        ginv = np.asarray(ginv)
        B = np.einsum("naI,nab,nbJ->nIJ", np.conj(self.R), ginv, self.R).reshape(self.n, -1)
        t = np.real(np.einsum("nab,nba->n", ginv, self.gfs))
        xq = np.concatenate([B.real, -B.imag], axis=1)
        self._rows = (self._xz, jnp.asarray(_pad(xq, self.tile)), jnp.asarray(_pad(t, self.tile)))
        self._J = None
        if self.mode == "dense":
            self._J = np.asarray(_jac_fns(self.base, self.tile)[3](*self._rows, *self._cols))[: self.n]

    def _padu(self, u):
        import jax.numpy as jnp

        u = np.asarray(u, dtype=np.float64)
        pad = (-self.n) % self.tile
        return jnp.asarray(np.concatenate([u, np.zeros((pad,) + u.shape[1:])]) if pad else u)

    def jvp(self, v):
        """J θ (n,) (θ = (α, c); ∂r/∂c = −1)."""
        v = np.asarray(v, dtype=np.float64)
        if self._J is not None:
            return self._J @ v[:-1] - v[-1]
        import jax.numpy as jnp

        out = _jac_fns(self.base, self.tile)[0](*self._rows, *self._cols, jnp.asarray(v[:-1, None]))
        return np.asarray(out)[: self.n, 0] - v[-1]

    def vjp(self, u):
        """Jᵀ u (m + 1,)."""
        u = np.asarray(u, dtype=np.float64)
        if self._J is not None:
            return np.concatenate([self._J.T @ u, [-u.sum()]])
        out = _jac_fns(self.base, self.tile)[1](*self._rows, *self._cols, self._padu(u[:, None]))
        return np.concatenate([np.asarray(out)[:, 0], [-u.sum()]])

    def jacobi_diag(self):
        """diag(JᵀWJ)/n."""
        if self._J is not None:
            d = (self.w @ (self._J * self._J))
        else:
            d = np.asarray(_jac_fns(self.base, self.tile)[2](*self._rows, *self._cols, self._padu(self.w)))
        return np.concatenate([d, [self.w.sum()]]) / self.n

    def jacobian_dense(self):
        """The n × (m + 1) Jacobian (small problems; tests)."""
        E = np.eye(self.m)
        if self._J is not None:
            J = self._J
        else:
            J = np.stack([self.jvp(np.r_[E[j], 0.0]) for j in range(self.m)], 1)
        return np.concatenate([J, -np.ones((self.n, 1))], axis=1)


def gn_step(prob: DualProblem, v, lam: float, *, ridge: float = 0.0, rtol: float = 1e-4, maxiter: int = 300):
    """Solve (JᵀWJ/n + λD + μK̃) δ = −JᵀWr/n − μK̃v by Jacobi-preconditioned CG; returns (CGResult, loss0)."""
    from scipy.sparse.linalg import LinearOperator

    from ntkflow.solvers import cg

    r, ginv = prob.residual(v)
    if r is None:
        raise ValueError("v: the metric is not positive definite at every training point.")
    prob.linearise(ginv)
    loss0 = float(np.mean(prob.w * r * r))
    K = prob.gram() if ridge > 0 else None

    def pen(x):
        if K is None:
            return 0.0 * x
        return np.r_[ridge * (K @ x[:-1]), 0.0]

    b = -prob.vjp(prob.w * r) / prob.n - pen(v)
    D = np.maximum(prob.jacobi_diag(), 1e-300)
    pd = D * (1 + lam) + (np.r_[ridge * np.diag(K), 0.0] if K is not None else 0.0)
    p = prob.n_params

    def mv(x):
        x = np.asarray(x).reshape(-1)
        return prob.vjp(prob.w * prob.jvp(x)) / prob.n + lam * D * x + pen(x)

    op = LinearOperator((p, p), matvec=mv, matmat=lambda V: np.stack([mv(V[:, j]) for j in range(V.shape[1])], 1),
                        dtype=np.float64)
    pre = lambda V: V / (pd[:, None] if np.ndim(V) == 2 else pd)  # noqa: E731
    return cg(op, b, rtol=rtol, maxiter=maxiter, precond=pre), loss0


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DualKernelModel(_Model):
    """K = (1/π)[log|z|² + φ], φ = Σ_b α_b k(z, c_b) (k a projective kernel; centres c_b stored).

    ``metric``/``potential``/``eta`` work on any new points (one lazy pass over points × centres)."""

    manifold: object
    base: object
    centers: np.ndarray = field(repr=False)
    alpha: np.ndarray = field(repr=False)
    log_kappa: float = 0.0
    info: dict = field(default_factory=dict, repr=False)
    tile: int = 256
    kind = "dual-kernel"

    def __post_init__(self):
        c = np.asarray(self.centers, dtype=np.complex128)
        a = np.asarray(self.alpha, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != self.manifold.n_coords:
            raise ValueError(f"centers: expected (m, {self.manifold.n_coords}) complex, received shape {c.shape}.")
        if a.shape != (c.shape[0],):
            raise ValueError(f"alpha: expected ({c.shape[0]},) coefficients (one per centre), received shape {a.shape}.")
        object.__setattr__(self, "centers", c)
        object.__setattr__(self, "alpha", a)

    def _metric_ps(self, ps):
        return dual_metric(self.base, self.centers, self.alpha, ps.points, ps.jacobian, tile=self.tile)

    def phi(self, points) -> np.ndarray:
        ps = as_pointset(self.manifold, points)
        u = _np_u(ps.points, self.centers)
        return np.asarray(self.base.f(u)) @ self.alpha

    def _potential_z(self, z):
        ps = as_pointset(self.manifold, z)
        return (np.log(np.sum(np.abs(ps.points) ** 2, axis=-1)) + self.phi(ps)) / np.pi

    def metric_jax(self):
        """JAX function (z (N,), P (d, N), Ω) → g (d, d) for ntkflow.manifolds.curvature."""
        import jax.numpy as jnp

        base = self.base
        c = jnp.asarray(self.centers)
        a = jnp.asarray(self.alpha)
        W = jnp.sum(jnp.abs(c) ** 2, -1)

        def g_fn(z, P, omega):
            Z = jnp.sum(jnp.real(z) ** 2 + jnp.imag(z) ** 2)
            zb = jnp.conj(z)
            pz = P @ zb
            gfs = (P @ jnp.conj(P).T / Z - jnp.outer(pz, jnp.conj(pz)) / Z ** 2) / jnp.pi
            R = P - jnp.outer(pz, z) / Z
            p = c.conj() @ z  # (m,) Σ_I z_I c̄_I
            s = 1.0 / (Z * W)
            u = (jnp.real(p) ** 2 + jnp.imag(p) ** 2) * s
            f1, f2 = _f(base, u, 1), _f(base, u, 2)
            al = R @ c.conj().T  # (d, m)
            E = a * (u * f2 + f1) * s
            t = (al * E) @ jnp.conj(al).T
            return gfs * (1.0 - jnp.sum(a * u * f1)) + t / jnp.pi

        return g_fn

    def _payload(self):
        meta = {"kernel": _kernel_spec(self.base), "log_kappa": float(self.log_kappa), "info": self.info,
                "n_centers": int(len(self.alpha))}
        return meta, {"centers": self.centers, "alpha": self.alpha}

    @classmethod
    def _from_payload(cls, manifold, meta, arrays):
        return cls(manifold=manifold, base=_kernel_from_spec(meta["kernel"]), centers=arrays["centers"],
                   alpha=arrays["alpha"], log_kappa=float(meta.get("log_kappa", 0.0)), info=meta.get("info", {}))


def _np_u(z, w):
    from ntkflow.engine.kernels.projective import _np_u as u

    return u(z, w)


register_kind(DualKernelModel.kind, DualKernelModel)


# ----------------------------------------------------------------------------------------------
# the job
# ----------------------------------------------------------------------------------------------


def select_dual_centers(base, train, config: DualConfig) -> np.ndarray:
    """Indices of the m centres among the training points (uniform or RP-Cholesky on the kernel)."""
    from ntkflow.solvers import select_centers

    m = config.centers
    if m > len(train):
        raise ValueError(f"centers: cannot pick {m} centres among {len(train)} training points; pass centers <= n_train.")
    kern = _RealifiedProjective(base)
    return select_centers(kern, _realify(train.points), m, method=config.centers_method, seed=config.seed,
                          pool=config.centers_pool)


def _realified_kernel_cls():
    from ntkflow.engine.kernels.base import Kernel

    @dataclass(frozen=True)
    class RealifiedProjective(Kernel):
        """A projective kernel on realified points [Re z, Im z] (scalar, real input) for the Nyström
        helpers (select_centers / rpcholesky take real kernels only)."""

        base: object

        def dense(self, x, y):
            h = x.shape[1] // 2
            return np.asarray(self.base.dense(x[:, :h] + 1j * x[:, h:], y[:, :h] + 1j * y[:, h:]))

        def jax_block(self, xr, yr):
            return self.base.jax_block(xr, yr)

        def keops_apply(self, Xi, Yj, Vj, nrhs):
            return self.base.keops_apply(Xi, Yj, Vj, nrhs)

        def diag(self, x):
            return np.full(len(x), float(self.base.f(np.float64(1.0))))

    return RealifiedProjective


_RealifiedProjective = _realified_kernel_cls()


def _fingerprint(cfg: DualConfig) -> str:
    import hashlib
    import json

    d = cfg.to_json()
    d.pop("max_iter")
    d.pop("max_seconds")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def run_dual(config, manifold, train, test, out_dir, *, log=print, t_start=None, resume: bool = False):
    """Dual-form Gauss–Newton on ``train``, σ on ``test``; writes the outputs of ``ntkflow cy`` to
    ``out_dir`` (None: nothing written) and returns a :class:`ntkflow.cy.job.CYResult`.

    ``config``: a :class:`DualConfig` or a :class:`ntkflow.cy.job.CYConfig` (with ``kernel`` ≠ bergman).
    """
    from ntkflow.cy.job import CYConfig, CYResult, _atomic_savez, evaluate_model, finish_outputs, sigma_of
    from ntkflow.manifolds import PointSet, fs_det, sigma

    cy_config = config if isinstance(config, CYConfig) else None
    if cy_config is not None:
        dcfg = DualConfig.from_cy(cy_config)
        n_curv = cy_config.n_curvature
    elif isinstance(config, DualConfig):
        dcfg, n_curv = config, 0
    else:
        raise TypeError(f"config: expected a DualConfig or CYConfig, received {type(config).__name__}.")
    for name, ps in (("train", train), ("test", test)):
        if not isinstance(ps, PointSet):
            raise TypeError(f"{name}: expected a PointSet (ntkflow.manifolds.sample), received {type(ps).__name__}.")
    t_start = time.perf_counter() if t_start is None else t_start
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    timings = {}
    base = make_kernel(dcfg)
    form, why = choose_form(base, manifold.n_coords, dcfg.centers, len(train))
    log(f"  {why}")
    t = time.perf_counter()
    idx = select_dual_centers(base, train, dcfg)
    centers = np.asarray(train.points)[idx]
    timings["centers"] = time.perf_counter() - t
    prob = DualProblem(base, centers, train.points, train.jacobian, train.weights, np.log(train.omega_sq),
                       jacobian=dcfg.jacobian, dense_max_entries=dcfg.dense_max_entries, tile=dcfg.tile)
    why_mode = ("requested" if dcfg.jacobian != "auto" else
                f"n·m = {prob.n * prob.m:.3g} {'≤' if prob.mode == 'dense' else '>'} {dcfg.dense_max_entries:.3g}")
    mode = (f"J formed once per step ({why_mode}), CG products by BLAS" if prob.mode == "dense"
            else f"every CG product one lazy JAX pass, J never formed ({why_mode})")
    log(f"  centres: {dcfg.centers} ({dcfg.centers_method}, seed {dcfg.seed}) in {timings['centers']:.1f} s; "
        f"Jacobian: {mode}; ridge μ = {dcfg.ridge:g}")
    v = np.zeros(prob.n_params)
    v[-1] = float(np.sum(prob.w * (np.log(fs_det(train)) - prob.log_omega)) / np.sum(prob.w))
    lam = dcfg.lam0 if dcfg.lam0 > 0 else 1e-3
    ckpt = None if out_dir is None else os.path.join(out_dir, "checkpoint.npz")
    fingerprint = (cy_config.fingerprint() if cy_config is not None else _fingerprint(dcfg))
    history, it0 = [], 0
    if resume and ckpt and os.path.exists(ckpt):
        with np.load(ckpt, allow_pickle=False) as f:
            if str(f["fingerprint"]) != fingerprint:
                raise ValueError(f"resume: {ckpt} was written with different settings; rerun with the same options.")
            v, lam, it0 = np.array(f["v"]), float(f["lam"]), int(f["iteration"])
        log(f"  resumed at iteration {it0}")
    loss = prob.loss(v)
    fs_te = sigma(test, fs_det(test))

    def test_sigma(vv):
        g = prob.metric(vv[:-1], test.points, test.jacobian)
        d = np.real(np.linalg.det(g))
        return (float("nan") if np.any(d <= 0) else sigma(test, d)), d

    log(f"  Fubini–Study: σ held-out {fs_te:.4f}")
    log(f"  {'iter':>4} {'loss':>11} {'σ train':>10} {'σ held-out':>10} {'λ':>8} {'CG it':>6} {'step s':>7} {'total s':>8}")
    t_gn = time.perf_counter()
    for it in range(it0, dcfg.max_iter):
        ts = time.perf_counter()
        res, loss0 = gn_step(prob, v, lam, ridge=dcfg.ridge, rtol=dcfg.cg_rtol, maxiter=dcfg.cg_maxiter)
        v, loss, lam, accepted, new_loss = lm_update(prob, v, res.value, loss0, loss, lam)
        r, _ = prob.residual(v)
        s_tr = sigma_of(np.exp(r + v[-1]), prob.w)
        s_te, _ = test_sigma(v)
        rec = {"iteration": it + 1, "loss": loss, "lam": lam, "accepted": bool(accepted),
               "cg_iterations": int(res.iterations), "sigma_train": s_tr, "sigma_test": s_te,
               "step_seconds": time.perf_counter() - ts, "elapsed": time.perf_counter() - t_start}
        history.append(rec)
        log(f"  {it + 1:>4} {loss:>11.4e} {s_tr:>10.3e} {s_te:>10.3e} {lam:>8.1e} {res.iterations:>6} "
            f"{rec['step_seconds']:>7.1f} {rec['elapsed']:>8.1f}{'' if accepted else '  (rejected)'}")
        if ckpt:
            _atomic_savez(ckpt, v=v, lam=np.float64(lam), iteration=np.int64(it + 1), fingerprint=np.array(fingerprint))
        if accepted and (loss0 - new_loss) < dcfg.gtol * loss0:
            break
        if time.perf_counter() - t_gn > dcfg.max_seconds:
            log(f"  wall budget max_seconds={dcfg.max_seconds:g} spent; stopping")
            break
        if lam > 1e8:
            log("  λ > 1e8: no further decrease; stopping")
            break
    timings["gauss_newton"] = time.perf_counter() - t_gn
    s_te, d_te = test_sigma(v)
    model = DualKernelModel(manifold=manifold, base=base, centers=centers, alpha=v[:-1], log_kappa=float(v[-1]),
                            info={"form": form, "centers_method": dcfg.centers_method, "n_centers": dcfg.centers,
                                  "kernel": _kernel_spec(base), "ridge": dcfg.ridge,
                                  **({"fingerprint": cy_config.fingerprint()} if cy_config is not None else {})})
    ev = evaluate_model(model, test, n_curvature=n_curv, det_g=d_te, log=log)
    timings["total"] = time.perf_counter() - t_start
    metrics = {"manifold": manifold.name, "method": cy_config.method if cy_config is not None else "bergman",
               "kernel": _kernel_spec(base), "form": form, "solver": "dual-form GN (Nyström centres, CG)",
               "why": why, "jacobian": prob.mode, "n_centers": dcfg.centers, "centers_method": dcfg.centers_method,
               "sigma_test": s_te, "sigma_train": history[-1]["sigma_train"] if history else None,
               "kappa": ev["kappa"], "vol_kahler_test": ev["vol_kahler"],
               "ricci_measure": ev.get("ricci_measure"), "euler": ev.get("euler"),
               "euler_stderr": ev.get("euler_stderr"), "n_curvature": ev.get("n_curvature", 0),
               "fs_baseline": {"sigma_test": fs_te}, "n_parameters": prob.m,
               "iterations": len(history) + it0, "timings": timings,
               "settings": cy_config.to_json() if cy_config is not None else dcfg.to_json(),
               "dual_settings": dcfg.to_json()}
    if out_dir is not None:
        finish_outputs(out_dir, model, metrics, history, d_te / test.omega_sq, log=log,
                       title=f"{manifold.name}, dual {base!r}, m={dcfg.centers}")
    log(f"  done: held-out σ = {s_te:.3e} (FS {fs_te:.3f}), total {timings['total']:.1f} s")
    return CYResult(metrics=metrics, model=model, history=tuple(history), out_dir=out_dir)
