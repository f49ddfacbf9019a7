"""Closed-form pulled-back metrics of Kähler potentials built from (k,k) functions.

Conventions (../shared/reference/cy-geometry.md): the ambient Fubini–Study metric is
g_FS = (1/π) ∂∂̄ log|z|², G_{IJ̄} = (1/π)(δ_IJ/|z|² − z̄_I z_J/|z|⁴), and a metric on X is pulled back
with the Jacobian P (dim × N) of the patch: g = P G P†, g_{ab̄} = Σ P_{aI} G_{IJ̄} conj(P_{bJ}).

The Kähler potential of the learned metric is

    K = (1/π) [ log|z|² + φ ],      φ = Σ_a c_a f_a,   f_a = s† H^{(a)} s / |z|^{2k}  (Hermitian H^{(a)}),

so g_φ = g_FS + (1/π) ∂∂̄φ (pulled back).  For one pair, with s_α = z^{I_α},

    ∂_I ∂̄_J (s_α s̄_β / |z|^{2k}) = |z|^{-2k} [ A_{αI} conj(A_{βJ}) − k s_α s̄_β ∂_I∂̄_J log|z|² ],
    A_α = ∇s_α − k s_α z̄ / |z|²,

hence pulled back:  (1/π) ∂∂̄ f_a = |z|^{-2k} [ X H^{(a)} X† / π − k (s^T H^{(a)} s̄) g_FS ] with
X = P A (columns X_α = P A_α).  Only the pairs of H^{(a)} are visited (sparse half-pair form,
see :mod:`ntkflow.cy.basis`).

Hermitian dim × dim matrices are stored *packed* as dim² reals: [diag (dim), Re upper (m), Im upper (m)]
with m = dim(dim−1)/2; then tr(A B) = <pack A, TRACE_WEIGHTS ∘ pack B> for Hermitian A, B.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ntkflow.cy.basis import PairBasis
from ntkflow.manifolds import monomial_exponents, monomial_sections

__all__ = [
    "Factors",
    "fs_ambient",
    "fs_pulled",
    "pack",
    "unpack",
    "trace_weights",
    "section_features",
    "pair_hessians",
    "metric_from_packed",
    "logdet_and_inverse",
]


@dataclass(frozen=True)
class Factors:
    r"""The factor structure of the ambient P^{n_1} × … × P^{n_m} and a multi-degree k = (k_1, …, k_m).

    ``sizes`` (m,): n_a + 1 homogeneous coordinates per factor, in the order of z (factor by factor);
    ``degrees`` (m,): k_a ≥ 0.  The sections are s_α = Π_a (monomial of degree k_a in z^{(a)}), the
    (k,k) functions s_α s̄_β / Π_a |z^{(a)}|^{2k_a} and, with ψ = Σ_a k_a log|z^{(a)}|²,

        ∂_I ∂̄_J (e^{−ψ} s_α s̄_β) = e^{−ψ} [ A_{αI} conj(A_{βJ}) − s_α s̄_β ∂_I∂̄_J ψ ],
        A_α = ∇s_α − s_α ∇ψ = ∇s_α − Σ_a k_a s_α z̄^{(a)}/|z^{(a)}|²   (the per-factor shift),

    so (1/π)∂∂̄ψ pulled back is Σ_a k_a g_a (g_a the FS metric of factor a, :meth:`fs_sum`).  The
    hypersurface is the one-factor case ``Factors.one(N, k)`` (sizes (N,), degrees (k,))."""

    sizes: tuple
    degrees: tuple

    def __post_init__(self):
        try:
            sizes = tuple(int(n) for n in self.sizes)
            degrees = tuple(int(k) for k in self.degrees)
        except (TypeError, ValueError):
            raise TypeError(f"sizes, degrees: expected tuples of integers, received {self.sizes!r}, {self.degrees!r}.") from None
        if not sizes or len(sizes) != len(degrees):
            raise ValueError(f"sizes, degrees: expected one degree per factor (equal non-zero lengths), received "
                             f"sizes {sizes} and degrees {degrees}.")
        if any(n < 2 for n in sizes):
            raise ValueError(f"sizes: each factor P^n has n + 1 ≥ 2 coordinates, received {sizes}.")
        if any(k < 0 for k in degrees) or sum(degrees) < 1:
            raise ValueError(f"degrees: expected k_a ≥ 0 with Σ k_a ≥ 1, received {degrees}.")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "degrees", degrees)

    @classmethod
    def one(cls, n_coords: int, k: int) -> "Factors":
        """The hypersurface case: one factor P^{N−1} of degree k."""
        return cls((int(n_coords),), (int(k),))

    @property
    def n_coords(self) -> int:
        return sum(self.sizes)

    @property
    def total_degree(self) -> int:
        """Σ_a k_a (the degree of every s_α as a polynomial in all coordinates)."""
        return sum(self.degrees)

    @property
    def blocks(self) -> tuple:
        """Coordinate slices of the factors."""
        off = np.cumsum((0,) + self.sizes)
        return tuple(slice(int(off[a]), int(off[a + 1])) for a in range(len(self.sizes)))

    def exponents(self) -> np.ndarray:
        """(N_k, N) int64 exponents of the sections: products of the factors' degree-k_a monomials (each
        factor's in :func:`ntkflow.manifolds.monomial_exponents` order, the first factor outermost); the
        one-factor case is exactly ``monomial_exponents(N, k)``. N_k = Π_a C(k_a + n_a, n_a)."""
        per = [monomial_exponents(n, k) for n, k in zip(self.sizes, self.degrees)]
        return np.array([np.concatenate(c) for c in itertools.product(*per)], dtype=np.int64)

    def check_exponents(self, exponents) -> None:
        """Refuse exponents whose degrees per factor are not ``degrees``."""
        e = np.asarray(exponents)
        if e.ndim != 2 or e.shape[1] != self.n_coords:
            raise ValueError(f"exponents: expected shape (N_k, {self.n_coords}) for factors {self.sizes}, received {e.shape}.")
        deg = np.stack([e[:, b].sum(axis=1) for b in self.blocks], axis=1)
        if np.any(deg != np.asarray(self.degrees)[None, :]):
            raise ValueError(f"exponents: the sections must have degrees {self.degrees} per factor {self.sizes}; "
                             f"received rows with degrees {sorted({tuple(r) for r in deg.tolist()})[:3]}.")

    def norms(self, z, xp=np):
        """(n, m) |z^{(a)}|² per factor."""
        return xp.stack([xp.sum(xp.real(z[:, b] * xp.conj(z[:, b])), axis=-1) for b in self.blocks], axis=-1)

    def weight(self, z, xp=np):
        """(n,) Π_a |z^{(a)}|^{−2k_a} (e^{−ψ}: the factor of the (k,k) functions)."""
        h = self.norms(z, xp)
        out = 1.0
        for a, k in enumerate(self.degrees):
            out = out * h[:, a] ** (-k)
        return out

    def shift(self, z, xp=np):
        """(n, N) ∇ψ = Σ_a k_a z̄^{(a)}/|z^{(a)}|² (each factor's block)."""
        h = self.norms(z, xp)
        return xp.concatenate([k * xp.conj(z[:, b]) / h[:, a:a + 1] for a, (b, k) in
                               enumerate(zip(self.blocks, self.degrees))], axis=-1)

    def fs_sum(self, z, jac, coefficients) -> np.ndarray:
        """(n, d, d) Σ_a c_a P_a g^{FS}_a P_a† (NumPy): the pulled-back FS metric of the class Σ c_a J_a."""
        c = np.asarray(coefficients, dtype=np.float64)
        if c.shape != (len(self.sizes),):
            raise ValueError(f"coefficients: expected {len(self.sizes)} (one per factor), received shape {c.shape}.")
        out = 0.0
        for a, b in enumerate(self.blocks):
            if c[a] != 0:
                out = out + c[a] * fs_pulled(z[:, b], jac[:, :, b])
        return out


def _triu(dim):
    return np.triu_indices(dim, 1)


def pack(a: np.ndarray) -> np.ndarray:
    """(..., d, d) Hermitian complex -> (..., d²) real."""
    d = a.shape[-1]
    iu = _triu(d)
    diag = np.real(np.diagonal(a, axis1=-2, axis2=-1))
    up = a[..., iu[0], iu[1]]
    return np.concatenate([diag, up.real, up.imag], axis=-1)


def unpack(p: np.ndarray, dim: int) -> np.ndarray:
    """(..., d²) real -> (..., d, d) Hermitian complex."""
    p = np.asarray(p)
    m = dim * (dim - 1) // 2
    out = np.zeros(p.shape[:-1] + (dim, dim), dtype=np.complex128)
    idx = np.arange(dim)
    out[..., idx, idx] = p[..., :dim]
    iu = _triu(dim)
    up = p[..., dim:dim + m] + 1j * p[..., dim + m:]
    out[..., iu[0], iu[1]] = up
    out[..., iu[1], iu[0]] = np.conj(up)
    return out


def trace_weights(dim: int) -> np.ndarray:
    """w with tr(A B) = Σ_j w_j pack(A)_j pack(B)_j for Hermitian A, B."""
    m = dim * (dim - 1) // 2
    return np.concatenate([np.ones(dim), 2.0 * np.ones(2 * m)])


def fs_ambient(z: np.ndarray) -> np.ndarray:
    """(n, N, N) ambient Fubini–Study metric (1/π)(δ/|z|² − z̄ zᵀ/|z|⁴)."""
    h = np.sum(np.abs(z) ** 2, axis=-1)
    n_c = z.shape[-1]
    g = np.eye(n_c)[None] / h[:, None, None] - np.conj(z)[:, :, None] * z[:, None, :] / h[:, None, None] ** 2
    return g / np.pi


def fs_pulled(z: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """(n, d, d) pulled-back Fubini–Study metric P G P†."""
    h = np.sum(np.abs(z) ** 2, axis=-1)
    pz = np.einsum("nai,ni->na", jac, np.conj(z))  # P z̄
    g = np.einsum("nai,nbi->nab", jac, np.conj(jac)) / h[:, None, None]
    g = g - pz[:, :, None] * np.conj(pz)[:, None, :] / h[:, None, None] ** 2
    return g / np.pi


def section_features(z, jac, exponents, *, shift: bool = True, xp=np, layout: str = "nad", factors: Factors | None = None):
    """Monomials and their pulled-back gradients at the points (array module ``xp``: numpy or jax.numpy).

    Returns s (n, N_k), X with X_α = P(∇s_α − k s_α z̄/|z|²) (shift=True) or P∇s_α (shift=False), and
    h = |z|² (n,); X is (n, N_k, d) for ``layout="nad"``, (n, d, N_k) for ``layout="nda"``. s and ∇s
    are :func:`ntkflow.manifolds.monomial_sections` (the package's one implementation).
    ``factors`` (a :class:`Factors`, products of projective spaces): the shift is per factor,
    X_α = P(∇s_α − Σ_a k_a s_α z̄^{(a)}/|z^{(a)}|²), the gradient of s_α/Π_a|z^{(a)}|^{k_a} times Π_a|z^{(a)}|^{k_a};
    h stays the total |z|².
    """
    if layout not in ("nad", "nda"):
        raise ValueError(f"layout: expected 'nad' or 'nda', received {layout!r}.")
    exps = np.asarray(exponents)
    k = int(exps[0].sum())
    if factors is not None:
        factors.check_exponents(exps)
    s, grad = monomial_sections(z, exps, xp=xp)  # (n, N_k), (n, N_k, N)
    h = xp.sum(xp.real(z * xp.conj(z)), axis=-1)
    if shift and factors is not None:
        grad = grad - s[:, :, None] * factors.shift(z, xp)[:, None, :]
    elif shift:
        grad = grad - k * s[:, :, None] * (xp.conj(z) / h[:, None])[:, None, :]
    x = xp.einsum(f"nai,ndi->{layout}", grad, jac)
    return s, x, h


def pair_hessians(basis: PairBasis, z: np.ndarray, jac: np.ndarray, *, chunk: int = 256,
                  values: bool = False, backend: str = "jax", extended: bool = False, factors: Factors | None = None):
    """Pulled-back (1/π)∂∂̄ f_a at every point, packed: (n, n_functions, d²) float64.

    ``factors`` (a :class:`Factors` whose ``exponents()`` are ``basis.exponents``): the functions of a product of
    projective spaces, f_a = s†H_a s / Π_b |z^{(b)}|^{2k_b}, whose Hessian is e^{−ψ}[X H_a X†/π − f_a e^{ψ} Σ_b k_b g_b]
    (:class:`Factors`); None: one factor, f_a = s†H_a s/|z|^{2k}.

    With values=True also returns f_a(z) (n, n_functions).  backend="jax" is the fast jitted path
    (:func:`pair_hessians_jax`); backend="numpy" is the plain reference implementation below.
    ``extended=True`` (numpy only) computes in x87 extended precision (np.clongdouble, ε ≈ 1e-19) and returns
    float128 (n, n_functions, d²): the round-off floor of the sums over pairs drops ~10³× (measurements of the
    whitening at high k; slow: no BLAS/SIMD).
    """
    if factors is not None:
        factors.check_exponents(basis.exponents)
    if backend == "jax":
        if extended:
            raise ValueError("extended: extended precision runs on backend='numpy' only; pass backend='numpy'.")
        return pair_hessians_jax(basis, z, jac, values=values, factors=factors)
    if backend != "numpy":
        raise ValueError(f"backend: expected 'jax' or 'numpy', received {backend!r}.")
    cdt, rdt = (np.clongdouble, np.longdouble) if extended else (np.complex128, np.float64)
    z = np.asarray(z, dtype=cdt)
    jac = np.asarray(jac, dtype=cdt)
    n, nc = z.shape
    dim = jac.shape[1]
    k = basis.k
    nf = basis.n_functions
    out = np.empty((n, nf, dim * dim), dtype=rdt)
    vals = np.empty((n, nf), dtype=rdt) if values else None
    starts = basis.starts
    iu = _triu(dim)
    a_idx, b_idx, w = basis.alpha, basis.beta, basis.weight
    # functions with no pairs cannot occur (every function owns its orbit)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        s, x, h = section_features(z[lo:hi], jac[lo:hi], basis.exponents, factors=factors)
        if factors is None:
            gfs, hk, kg = fs_pulled(z[lo:hi], jac[lo:hi]), h ** (-k), k
        else:  # Σ_b k_b g_b and Π_b |z^(b)|^{-2k_b}
            gfs, hk, kg = factors.fs_sum(z[lo:hi], jac[lo:hi], factors.degrees), factors.weight(z[lo:hi]), 1
        xa = x[:, a_idx, :] * w[None, :, None]  # (c, P, d)
        xb = np.conj(x[:, b_idx, :])
        t = xa[:, :, :, None] * xb[:, :, None, :]  # (c, P, d, d)
        tsum = np.add.reduceat(t, starts, axis=1)  # (c, nf, d, d) = Σ ω X_α X_β†
        sv = s[:, a_idx] * np.conj(s[:, b_idx]) * w[None, :]
        fsum = 2.0 * np.real(np.add.reduceat(sv, starts, axis=1))  # (c, nf) = s^T H s̄
        herm = tsum + np.conj(np.swapaxes(tsum, -1, -2))
        m = herm / np.pi - kg * fsum[:, :, None, None] * gfs[:, None, :, :]
        m = m * hk[:, None, None, None]
        diag = np.real(np.diagonal(m, axis1=-2, axis2=-1))
        up = m[..., iu[0], iu[1]]
        out[lo:hi] = np.concatenate([diag, up.real, up.imag], axis=-1)
        if values:
            vals[lo:hi] = fsum * hk[:, None]
    return (out, vals) if values else out


def metric_from_packed(g0_packed: np.ndarray, hess: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Packed g = g0 + Σ_a c_a (1/π)∂∂̄f_a: (n, d²)."""
    return g0_packed + np.einsum("npk,p->nk", hess, coeffs)


def logdet_and_inverse(g: np.ndarray):
    """log det and inverse of a batch of Hermitian positive matrices (n, d, d) complex.

    Returns (logdet (n,), inverse (n, d, d), ok (n,) bool: positive definite)."""
    dim = g.shape[-1]
    if dim == 1:
        d = np.real(g[:, 0, 0])
        ok = d > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.where(ok, d, 1.0)), (1.0 / np.where(ok, d, 1.0))[:, None, None] + 0j, ok
    sign, ld = np.linalg.slogdet(g)
    ok = np.real(sign) > 0.5
    # positive definiteness: all leading minors > 0 is implied by Cholesky; use eigvals min > 0
    ev = np.linalg.eigvalsh(g)
    ok = ok & (ev[:, 0] > 0)
    inv = np.linalg.inv(g)
    return np.real(ld), inv, ok


# ----------------------------------------------------------------------------------------------
# fast path (JAX, jitted, chunked)
# ----------------------------------------------------------------------------------------------
_SUB = 64  # points per lax.map step (at most; fewer for large bases, see _sub_points)
_BLOCK = 2048  # points per jitted call (last block padded)
#: bytes of the (sub, n_pairs, d, d) complex outer products one lax.map step materialises
_SUB_BYTES = 512 * 2**20


def _sub_points(n_pairs: int, dim: int) -> int:
    """Points per lax.map step: _SUB, halved until the step's outer products fit in _SUB_BYTES (k ≥ 18 on the
    quintic: 64 points × 6·10⁴ pairs are 0.6 GB, × 4·10⁵ pairs at k = 24 would be 3.9 GB). A divisor of _BLOCK."""
    sub = _SUB
    while sub > 1 and sub * n_pairs * dim * dim * 16 > _SUB_BYTES:
        sub //= 2
    return sub


def _make_chunk_fn(k: int, nf: int, dim: int, want_values: bool, sub: int = _SUB, factors: Factors | None = None):
    import jax
    import jax.numpy as jnp

    kmax = k if factors is None else max(factors.degrees)

    def one(z, jac, exps, alpha, beta, w, func):
        # z (c, N), jac (c, d, N)
        c, nc = z.shape
        pw = [jnp.ones_like(z)]
        for _ in range(kmax):
            pw.append(pw[-1] * z)
        pw = jnp.stack(pw, -1)  # (c, N, kmax+1)
        fac = pw[:, jnp.arange(nc)[None, :], exps]  # (c, N_k, N)
        s = jnp.prod(fac, axis=-1)
        m = jac / z[:, None, :]  # (c, d, N)
        if factors is None:
            h = jnp.sum(jnp.abs(z) ** 2, -1)
            # X_α = P(∇s_α − k s_α z̄/h) = s_α (P diag(1/z) I_α − k P z̄ / h)   (z_i ≠ 0 required)
            pz = jnp.einsum("cdi,ci->cd", jac, jnp.conj(z)) / h[:, None]
            x = s[:, :, None] * (jnp.einsum("cdi,ai->cad", m, exps.astype(z.dtype)) - k * pz[:, None, :])
            g = (jnp.einsum("cai,cbi->cab", jac, jnp.conj(jac)) / h[:, None, None]
                 - pz[:, :, None] * jnp.conj(pz)[:, None, :]) / jnp.pi
            hk, kg = h ** (-k), k  # the Hessian's second term is k f g_FS
        else:  # per-factor shift Σ_b k_b P z̄^(b)/|z^(b)|², g = Σ_b k_b g_b, e^{-ψ} = Π_b |z^(b)|^{-2k_b}
            shift, g, hk, kg = 0.0, 0.0, 1.0, 1  # g already carries the k_b
            for b, kb in zip(factors.blocks, factors.degrees):
                if kb == 0:
                    continue
                zb, jb = z[:, b], jac[:, :, b]
                hb = jnp.sum(jnp.abs(zb) ** 2, -1)
                pzb = jnp.einsum("cdi,ci->cd", jb, jnp.conj(zb)) / hb[:, None]
                shift = shift + kb * pzb
                g = g + kb * (jnp.einsum("cai,cbi->cab", jb, jnp.conj(jb)) / hb[:, None, None]
                              - pzb[:, :, None] * jnp.conj(pzb)[:, None, :]) / jnp.pi
                hk = hk * hb ** (-kb)
            x = s[:, :, None] * (jnp.einsum("cdi,ai->cad", m, exps.astype(z.dtype)) - shift[:, None, :])
        xa = x[:, alpha] * w[None, :, None]
        xb = jnp.conj(x[:, beta])
        t = xa[:, :, :, None] * xb[:, :, None, :]  # (c, P, d, d)
        t = jnp.moveaxis(t, 1, 0)
        ts = jax.ops.segment_sum(t, func, num_segments=nf, indices_are_sorted=True)  # (nf, c, d, d)
        sv = s[:, alpha] * jnp.conj(s[:, beta]) * w[None, :]
        fs = 2.0 * jnp.real(jax.ops.segment_sum(sv.T, func, num_segments=nf, indices_are_sorted=True))
        herm = ts + jnp.conj(jnp.swapaxes(ts, -1, -2))
        mm = (herm / jnp.pi - kg * fs[:, :, None, None] * g[None]) * hk[None, :, None, None]
        iu = np.triu_indices(dim, 1)
        di = np.arange(dim)
        diag = jnp.real(mm[..., di, di])
        up = mm[..., iu[0], iu[1]]
        packed = jnp.concatenate([diag, jnp.real(up), jnp.imag(up)], -1)  # (nf, c, d²)
        packed = jnp.moveaxis(packed, 0, 1)
        vals = (fs * hk[None, :]).T
        return (packed, vals) if want_values else (packed,)

    def block(z, jac, exps, alpha, beta, w, func):
        nb = z.shape[0] // sub
        zz = z.reshape(nb, sub, z.shape[1])
        jj = jac.reshape(nb, sub, jac.shape[1], jac.shape[2])
        res = jax.lax.map(lambda a: one(a[0], a[1], exps, alpha, beta, w, func), (zz, jj))
        return tuple(r.reshape((nb * sub,) + r.shape[2:]) for r in res)

    return jax.jit(block)


_FN_CACHE: dict = {}


def pair_hessians_jax(basis: PairBasis, z, jac, *, values: bool = False, factors: Factors | None = None):
    """Fast jitted :func:`pair_hessians` (same output, ``factors`` as there).  Points with a coordinate exactly 0
    are routed to the NumPy reference (the fast path divides by z_i)."""
    import jax.numpy as jnp

    z = np.asarray(z, dtype=np.complex128)
    jac = np.asarray(jac, dtype=np.complex128)
    n, nc = z.shape
    dim = jac.shape[1]
    nf = basis.n_functions
    sub = _sub_points(basis.n_pairs, dim)
    key = (basis.k, nf, dim, bool(values), sub, factors)
    fn = _FN_CACHE.get(key)
    if fn is None:
        fn = _FN_CACHE[key] = _make_chunk_fn(basis.k, nf, dim, bool(values), sub, factors)
    args = (jnp.asarray(basis.exponents), jnp.asarray(basis.alpha), jnp.asarray(basis.beta),
            jnp.asarray(basis.weight), jnp.asarray(basis.func))
    out = np.empty((n, nf, dim * dim))
    vals = np.empty((n, nf)) if values else None
    block = _BLOCK if n >= _BLOCK else int(-(-n // sub) * sub)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        zb = np.ones((block, nc), dtype=np.complex128)
        jb = np.zeros((block, dim, nc), dtype=np.complex128)
        zb[: hi - lo] = z[lo:hi]
        jb[: hi - lo] = jac[lo:hi]
        res = fn(jnp.asarray(zb), jnp.asarray(jb), *args)
        out[lo:hi] = np.asarray(res[0])[: hi - lo]
        if values:
            vals[lo:hi] = np.asarray(res[1])[: hi - lo]
    zero = np.any(np.abs(z) == 0, axis=1)
    if np.any(zero):
        idx = np.flatnonzero(zero)
        ref = pair_hessians(basis, z[idx], jac[idx], values=values, backend="numpy", factors=factors)
        if values:
            out[idx], vals[idx] = ref
        else:
            out[idx] = ref
    return (out, vals) if values else out
