"""Nyström / Falkon kernel ridge regression, randomly pivoted Cholesky, and a Nyström preconditioner
for the exact kernel system.

Nyström KRR (Rudi–Carratino–Rosasco 2017, "Falkon"): with centres C = {c_1..c_m} ⊂ R^d,

    (K_nmᵀ K_nm + λ n K_mm) β = K_nmᵀ y,        f(x) = Σ_j β_j k(x, c_j),

K_nm = k(X, C) (n×m, never stored), K_mm = k(C, C). Preconditioner (two m×m Choleskys, float64):

    T = chol(K_mm + ε m I)  (upper, TᵀT = K_mm + ε m I),   A = chol(T Tᵀ / m + λ I)  (upper),
    B = T⁻¹ A⁻¹,

so that Bᵀ H' B ≈ I for H' = K_nmᵀK_nm / n + λ K_mm (because K_nmᵀK_nm ≈ (n/m) K_mm²). CG solves
Bᵀ H' B γ = Bᵀ K_nmᵀ y / n and β = B γ. Each iteration applies K_nmᵀ(K_nm v) once (for
``backend="jax"`` in one fused pass that evaluates each kernel block once and uses it for both
products) plus four triangular solves and two triangular products (K_mm v = (TᵀT − εmI) v, exact).
The stopping test is on the residual of the *original* system, ‖H β − K_nmᵀ y‖ ≤ rtol ‖K_nmᵀ y‖
(mapped exactly through r_H = n Tᵀ Aᵀ r_CG, two m×m triangular products per check).

Exact KRR (K + λ n I) α = y, preconditioned by the Nyström approximation K̂ = K_nm K_mm⁻¹ K_mn = L Lᵀ
(L = K_nm T⁻¹) through Woodbury:

    (K̂ + μ I)⁻¹ = (I − L (μ I + LᵀL)⁻¹ Lᵀ) / μ,   μ = λ n,

applied lazily (two n×m kernel passes and four m×m triangular solves per application).
"""
from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from ntkflow._checks import finite_array, nonneg_float, positive_float, positive_int
from ntkflow.engine.kernels.base import Kernel
from ntkflow.engine.operators import BACKENDS, LinearOperator, kernel_operator

from .cg import CGResult, cg

__all__ = [
    "RPCholeskyResult",
    "rpcholesky",
    "select_centers",
    "FalkonPreconditioner",
    "NystromGram",
    "NystromKRRResult",
    "nystrom_krr",
    "NystromPreconditioner",
    "nystrom_preconditioner",
    "KRRResult",
    "krr_exact",
]

#: bytes of one dense kernel block formed by the NumPy reference (kernel.dense broadcasts (b, m, d))
_BLOCK_BYTES = 64 * 2**20


# ------------------------------------------------------------------------------------------
# checks and dense blocks
# ------------------------------------------------------------------------------------------


def _scalar_real_kernel(kernel) -> Kernel:
    if not isinstance(kernel, Kernel):
        raise TypeError(
            f"kernel: expected an ntkflow.engine.Kernel (e.g. Gaussian(1.0)), received {type(kernel).__name__}."
        )
    if not kernel.is_scalar or kernel.input_kind != "real" or kernel.output_kind != "real":
        raise ValueError(
            f"kernel: Nyström KRR here takes scalar real kernels on real inputs, received {kernel!r} "
            f"(block {kernel.block_shape}, input {kernel.input_kind}, output {kernel.output_kind}); "
            f"use cg on kernel_operator(...) for matrix-valued or complex kernels."
        )
    return kernel


def _points(name, x) -> np.ndarray:
    x = finite_array(name, x, ndim=2)
    if x.dtype.kind == "c":
        raise TypeError(f"{name}: expected real points (n, d), received a complex array.")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: received an empty point set (shape {x.shape}).")
    return np.ascontiguousarray(x, dtype=np.float64)


def _targets(y, n) -> np.ndarray:
    y = finite_array("y", y, ndim=(1, 2))
    if y.shape[0] != n:
        raise ValueError(f"y: expected {n} rows (one per point of x), received shape {y.shape}.")
    return np.asarray(y, dtype=np.float64)


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise TypeError(f"seed: expected an int, None or numpy.random.Generator, received {type(seed).__name__}.")


def _row_blocks(n, cols, d):
    rows = max(1, int(_BLOCK_BYTES // (8 * max(1, cols) * max(1, d))))
    for s in range(0, n, rows):
        yield s, min(n, s + rows)


def _kernel_matrix(kernel, x, y, order="C") -> np.ndarray:
    """Dense k(x, y) (n, m) float64 from the kernel's NumPy reference, in row blocks."""
    n, m = x.shape[0], y.shape[0]
    out = np.empty((n, m), dtype=np.float64, order=order)
    for s, e in _row_blocks(n, m, x.shape[1]):
        out[s:e] = kernel.dense(x[s:e], y)
    return out


# ------------------------------------------------------------------------------------------
# randomly pivoted Cholesky
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RPCholeskyResult:
    """K ≈ F Fᵀ with F = factor (n, k); pivots (k,) are the selected point indices."""

    pivots: np.ndarray  # (k,) int
    factor: np.ndarray  # (n, k) float64
    trace_error: np.ndarray  # (k + 1,)-ish: tr(K − F Fᵀ) after each block (first entry tr K)


def rpcholesky(kernel, x, rank: int, *, seed=None, block_size: int = 1, tol: float = 0.0) -> RPCholeskyResult:
    """Randomly pivoted Cholesky (Chen, Epperly, Tropp, Webber 2022): a rank-k Nyström factor.

    Repeats: sample pivots s with probability ∝ the residual diagonal d = diag(K − F Fᵀ), form the
    residual columns G = K(:, S) − F F_Sᵀ, append G G_SS^{-1/2} to F and update d. ``block_size=1``
    is the sequential algorithm ((k+1)n kernel entries, O(k² n) work); larger blocks sample several
    distinct pivots per step (block RPCholesky), fewer passes over F.

    Args:
        kernel: scalar real kernel; x: (n, d) points; rank: k ≤ n pivots.
        seed: int, None or ``numpy.random.Generator`` (explicit randomness).
        tol: stop early once tr(K − F Fᵀ) ≤ tol · tr(K).
    """
    kernel = _scalar_real_kernel(kernel)
    x = _points("x", x)
    n = x.shape[0]
    rank = positive_int("rank", rank)
    if rank > n:
        raise ValueError(f"rank: at most n = {n} pivots exist, received rank={rank}; pass rank <= n.")
    block_size = positive_int("block_size", block_size)
    tol = nonneg_float("tol", tol)
    need = n * rank * 8
    if need > 16 * 2**30:
        raise MemoryError(
            f"rank: the RPCholesky factor would hold n·rank = {n}·{rank} float64 ({need / 2**30:.1f} GiB); "
            f"run it on a uniform subsample (select_centers(..., pool=...)) or use method='uniform'."
        )
    rng = _rng(seed)
    F = np.zeros((n, rank), dtype=np.float64)
    d = np.asarray(kernel.diag(x), dtype=np.float64).copy()  # (n,) residual diagonal
    tr0 = float(d.sum())
    pivots: list[int] = []
    trace = [tr0]
    k = 0
    while k < rank:
        total = float(d.sum())
        if total <= tol * tr0 or total <= 0:
            break
        b = min(block_size, rank - k, int(np.count_nonzero(d > 0)))
        p = np.clip(d, 0, None) / total
        S = rng.choice(n, size=b, replace=False, p=p) if b > 1 else np.array([rng.choice(n, p=p)])
        G = kernel.dense(x, x[S]) - F[:, :k] @ F[S, :k].T  # (n, b) residual columns
        if b == 1:
            g = G[S[0], 0]
            if g <= 0:
                d[S[0]] = 0.0
                continue
            cols = G / np.sqrt(g)
            keep = S
        else:
            # pivoted Cholesky of the b×b pivot block keeps the numerically independent pivots J:
            # new columns G_J R⁻¹ with RᵀR = G_JJ (LAPACK dpstrf)
            Gs = np.asfortranarray(0.5 * (G[S] + G[S].T))
            c, piv, r, info = lapack.dpstrf(Gs, tol=1e-12 * max(float(np.max(np.diag(Gs))), 0.0), lower=0)
            if r == 0:
                d[S] = 0.0
                continue
            J = piv[:r] - 1
            R = np.triu(c[:r, :r])
            cols = sla.solve_triangular(R, G[:, J].T, trans="T").T  # (n, r)
            keep = S[J]
        r = cols.shape[1]
        F[:, k : k + r] = cols
        d -= np.sum(cols**2, axis=1)
        d[keep] = 0.0
        np.maximum(d, 0.0, out=d)
        pivots.extend(int(s) for s in keep)
        k += r
        trace.append(float(d.sum()))
    return RPCholeskyResult(pivots=np.array(pivots, dtype=int), factor=F[:, :k], trace_error=np.array(trace))


def select_centers(kernel, x, m: int, *, method: str = "uniform", seed=None, pool: int | None = None, block_size: int = 1) -> np.ndarray:
    """Indices (m,) of Nyström centres among the rows of x.

    ``method="uniform"``: m distinct points uniformly at random. ``method="rpcholesky"``: the pivots
    of randomly pivoted Cholesky (near-optimal rank-m approximation; far better than uniform on
    clustered data), run on all points or on a uniform subsample of size ``pool`` (the factor is
    pool × m float64 in memory).
    """
    x = _points("x", x)
    n = x.shape[0]
    m = positive_int("m", m)
    if m > n:
        raise ValueError(f"m: cannot pick {m} centres among n = {n} points; pass m <= n.")
    rng = _rng(seed)
    if method == "uniform":
        return np.sort(rng.choice(n, size=m, replace=False))
    if method == "rpcholesky":
        idx = np.arange(n)
        if pool is not None and pool < n:
            pool = positive_int("pool", pool)
            if pool < m:
                raise ValueError(f"pool: must be >= m = {m}, received {pool}.")
            idx = np.sort(rng.choice(n, size=pool, replace=False))
        res = rpcholesky(kernel, x[idx], m, seed=rng, block_size=block_size)
        piv = idx[res.pivots]
        if piv.size < m:  # numerically exhausted rank: fill with uniform points not yet chosen
            rest = np.setdiff1d(np.arange(n), piv)
            piv = np.concatenate([piv, rng.choice(rest, size=m - piv.size, replace=False)])
        return piv
    raise ValueError(f"centers_method: expected 'uniform' or 'rpcholesky', received {method!r}.")


# ------------------------------------------------------------------------------------------
# the Falkon preconditioner
# ------------------------------------------------------------------------------------------


def _chol_upper_inplace(a: np.ndarray, what: str) -> np.ndarray:
    """Upper Cholesky factor, in place on a Fortran-ordered array (other triangle zeroed)."""
    c, info = lapack.dpotrf(a, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"{what}: Cholesky failed (LAPACK info={info}).")
    return c


@dataclass(frozen=True)
class FalkonPreconditioner:
    """Falkon's two-Cholesky preconditioner B = T⁻¹ A⁻¹ (float64), Bᵀ (K_nmᵀK_nm/n + λK_mm) B ≈ I.

    T = chol(K_mm + jitter·I) upper, A = chol(T Tᵀ/m + λ I) upper, jitter = ε·m·mean(diag K_mm)
    (raised ×100 up to three times if the first Cholesky fails). Memory: two m×m float64 arrays.
    """

    T: np.ndarray  # (m, m) upper, Fortran order
    A: np.ndarray  # (m, m) upper, Fortran order
    jitter: float  # the ε m mean(diag) actually added to K_mm
    reg: float  # λ

    @classmethod
    def build(cls, kernel, centers, reg: float, *, eps: float = 1e-12) -> "FalkonPreconditioner":
        kernel = _scalar_real_kernel(kernel)
        c = _points("centers", centers)
        m = c.shape[0]
        reg = nonneg_float("reg", reg)
        scale = float(np.mean(kernel.diag(c)))
        jitter = eps * m * scale
        for attempt in range(4):
            K = _kernel_matrix(kernel, c, c, order="F")  # (m, m) K_mm
            K[np.diag_indices(m)] += jitter
            try:
                T = _chol_upper_inplace(K, "K_mm + jitter·I")
                break
            except np.linalg.LinAlgError:
                del K
                if attempt == 3:
                    raise np.linalg.LinAlgError(
                        f"centers: K_mm + {jitter:.3g}·I is not numerically positive definite "
                        f"(duplicate or near-duplicate centres?); deduplicate the centres or raise eps."
                    ) from None
                jitter *= 100.0
        W = np.array(T, order="F", copy=True)
        W, info = lapack.dlauum(W, lower=0, overwrite_c=1)  # upper triangle of T Tᵀ, in place
        if info != 0:  # pragma: no cover
            raise np.linalg.LinAlgError(f"dlauum failed (info={info}).")
        W /= m
        W[np.diag_indices(m)] += reg
        A = _chol_upper_inplace(W, "T Tᵀ/m + λ I")
        return cls(T=T, A=A, jitter=jitter, reg=reg)

    @property
    def m(self) -> int:
        return self.T.shape[0]

    def apply(self, V):
        """B V = T⁻¹ (A⁻¹ V), V (m, k)."""
        return sla.solve_triangular(self.T, sla.solve_triangular(self.A, V, lower=False), lower=False)

    def apply_T(self, V):
        """Bᵀ V = A⁻ᵀ (T⁻ᵀ V)."""
        return sla.solve_triangular(self.A, sla.solve_triangular(self.T, V, trans="T"), trans="T")

    def inv_T(self, V):
        """B⁻ᵀ V = Tᵀ Aᵀ V (maps a preconditioned residual back to the original system)."""
        return self.T.T @ (self.A.T @ V)

    def kmm(self, U):
        """K_mm U = (TᵀT − jitter I) U: exact up to the rounding of the Cholesky factorisation."""
        return self.T.T @ (self.T @ U) - self.jitter * U


# ------------------------------------------------------------------------------------------
# K_nmᵀ K_nm, fused
# ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _fused_fns(kernel, tile: int):
    import jax
    import jax.numpy as jnp

    def gram(xc, mask, c, V):  # xc (nt·tile, d), mask (nt·tile,), c (m, d), V (m, k) -> Kᵀ(K V)
        xt = xc.reshape(-1, tile, xc.shape[1])
        mt = mask.reshape(-1, tile)

        def body(acc, xm):
            xb, mb = xm
            Kb = kernel.jax_block(xb, c)  # (tile, m): each block evaluated once, used twice
            return acc + Kb.T @ (mb[:, None] * (Kb @ V)), None

        out, _ = jax.lax.scan(body, jnp.zeros_like(V), (xt, mt))
        return out

    def rmat(xc, Y, c):  # Kᵀ Y for Y (nt·tile, k) zero-padded
        xt = xc.reshape(-1, tile, xc.shape[1])
        yt = Y.reshape(-1, tile, Y.shape[1])

        def body(acc, xy):
            xb, yb = xy
            return acc + kernel.jax_block(xb, c).T @ yb, None

        out, _ = jax.lax.scan(body, jnp.zeros((c.shape[0], Y.shape[1]), Y.dtype), (xt, yt))
        return out

    return jax.jit(gram), jax.jit(rmat)


@dataclass(frozen=True, repr=False)
class NystromGram(LinearOperator):
    """The m×m operator G V = K_nmᵀ (K_nm V), never forming K_nm (n×m).

    ``backend="jax"``: one fused pass — each (tile × m) kernel block is evaluated once and used for
    both products; rows are split over ``n_threads`` threads (XLA releases the GIL). Other backends:
    two lazy passes ``K_nm.T.mm(K_nm.mm(V))`` of the engine operator (KeOps, dask, dense).
    """

    kernel: Kernel
    x: np.ndarray  # (n, d)
    centers: np.ndarray  # (m, d)
    backend: str = "jax"
    tile: int | None = None
    n_threads: int | None = None
    _state: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, received {self.backend!r}.")
        st = self._state
        if self.backend == "jax":
            import jax.numpy as jnp

            import jax

            m = self.centers.shape[0]
            n = self.x.shape[0]
            on_cpu = jax.default_backend() == "cpu"
            # CPU: (tile × m) blocks of ~4 MB that stay in cache, rows split over threads;
            # GPU: ~0.5 GB blocks in one stream (kernel launches, not cache, are what to amortise).
            tile = self.tile or (int(np.clip(500_000 // max(m, 1), 16, 1024)) if on_cpu
                                 else int(np.clip(60_000_000 // max(m, 1), 256, 65_536)))
            nth = self.n_threads or (min(os.cpu_count() or 1, 8) if on_cpu else 1)
            tile = int(min(tile, -(-n // nth)))
            bounds = np.linspace(0, n, nth + 1).astype(int)
            chunks = []
            for s, e in zip(bounds[:-1], bounds[1:]):
                if e <= s:
                    continue
                L = -(-(e - s) // tile) * tile
                xc = np.zeros((L, self.x.shape[1]))
                xc[: e - s] = self.x[s:e]
                mask = np.zeros(L)
                mask[: e - s] = 1.0
                chunks.append((s, e, L, jnp.asarray(xc), jnp.asarray(mask)))
            st["chunks"] = chunks
            st["c"] = jnp.asarray(self.centers)
            st["fns"] = _fused_fns(self.kernel, tile)
            st["tile"] = tile
        else:
            st["op"] = kernel_operator(self.kernel, self.x, self.centers, backend=self.backend)

    @property
    def shape(self):
        m = self.centers.shape[0]
        return (m, m)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _map(self, fn):
        chunks = self._state["chunks"]
        if len(chunks) == 1:
            return [fn(chunks[0])]
        with ThreadPoolExecutor(len(chunks)) as ex:
            return list(ex.map(fn, chunks))

    def _mm(self, V):
        st = self._state
        if self.backend != "jax":
            op = st["op"]
            return op.T.mm(op.mm(V))
        import jax.numpy as jnp

        gram = st["fns"][0]
        Vj = jnp.asarray(np.ascontiguousarray(V, dtype=np.float64))
        parts = self._map(lambda ch: np.asarray(gram(ch[3], ch[4], st["c"], Vj)))
        return np.sum(parts, axis=0)

    def rmatmat(self, Y):
        """K_nmᵀ Y for Y (n, k): one pass."""
        st = self._state
        if self.backend != "jax":
            return st["op"].T.mm(Y)
        import jax.numpy as jnp

        rmat = st["fns"][1]

        def one(ch):
            s, e, L = ch[0], ch[1], ch[2]
            Yp = np.zeros((L, Y.shape[1]))
            Yp[: e - s] = Y[s:e]
            return np.asarray(rmat(ch[3], jnp.asarray(Yp), st["c"]))

        return np.sum(self._map(one), axis=0)


# ------------------------------------------------------------------------------------------
# Nyström KRR
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _PreconditionedNystrom(LinearOperator):
    """W = Bᵀ (K_nmᵀK_nm / n + λ K_mm) B, the m×m SPD operator CG sees."""

    gram: NystromGram
    pre: FalkonPreconditioner
    n: int
    reg: float

    @property
    def shape(self):
        return self.gram.shape

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        U = self.pre.apply(V)  # (m, k) = B V
        HU = self.gram._mm(U) / self.n + self.reg * self.pre.kmm(U)
        return self.pre.apply_T(HU)


@dataclass(frozen=True)
class NystromKRRResult:
    """Result of :func:`nystrom_krr`: f(x) = Σ_j β_j k(x, c_j)."""

    coefficients: np.ndarray  # (m,) or (m, k): β
    centers: np.ndarray  # (m, d)
    center_indices: Any  # (m,) indices into x, or None for user-given centres
    kernel: Kernel
    reg: float
    cg: CGResult  # CG on the preconditioned system (its residuals are those of the ORIGINAL system)
    relative_residual: Any  # ‖(K_nmᵀK_nm + λnK_mm)β − K_nmᵀy‖ / ‖K_nmᵀy‖ (true residual at exit)
    converged: bool
    backend: str
    timings: dict  # seconds: centres, preconditioner, rhs, cg

    def predict(self, x_new, *, backend: str | None = None) -> np.ndarray:
        """f(x_new) = k(x_new, C) β, shape (n_new,) or (n_new, k)."""
        x_new = _points("x_new", x_new)
        if x_new.shape[1] != self.centers.shape[1]:
            raise ValueError(
                f"x_new: points must have dimension {self.centers.shape[1]}, received shape {x_new.shape}."
            )
        op = kernel_operator(self.kernel, x_new, self.centers, backend=backend or self.backend)
        return op.mv(self.coefficients) if self.coefficients.ndim == 1 else op.mm(self.coefficients)


def nystrom_krr(
    kernel,
    x,
    y,
    *,
    centers,
    reg: float,
    centers_method: str = "uniform",
    backend: str = "jax",
    maxiter: int = 100,
    rtol: float = 1e-8,
    seed=None,
    eps: float = 1e-12,
    pool: int | None = None,
    n_threads: int | None = None,
    tile: int | None = None,
) -> NystromKRRResult:
    """Falkon-style Nyström kernel ridge regression.

    Solves (K_nmᵀ K_nm + λ n K_mm) β = K_nmᵀ y (float64) by CG on the two-Cholesky preconditioned
    system (see the module docstring), stopping when ‖H β − K_nmᵀ y‖ ≤ rtol ‖K_nmᵀ y‖.

    Args:
        kernel: scalar real kernel, e.g. ``Gaussian(lengthscale)``.
        x: (n, d) points; y: (n,) or (n, k) targets.
        centers: int m (centres chosen by ``centers_method`` among the rows of x) or an (m, d) array.
        reg: λ > 0 (the system uses λ n, as Falkon and ``krr_exact``).
        centers_method: "uniform" or "rpcholesky" (on ``pool`` points if given).
        backend: how K_nmᵀ(K_nm v) is applied: "jax" (one fused pass, fastest on CPU), "keops",
            "dask", "dense" (two passes of the engine operator).
        maxiter, rtol: CG limits. seed: int / None / numpy Generator. eps: jitter ε of T.
    """
    kernel = _scalar_real_kernel(kernel)
    x = _points("x", x)
    n, d = x.shape
    y = _targets(y, n)
    reg = positive_float("reg", reg)
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, received {backend!r}.")
    rng = _rng(seed)
    t = {}
    t0 = time.perf_counter()
    if isinstance(centers, (int, np.integer)) and not isinstance(centers, bool):
        idx = select_centers(kernel, x, int(centers), method=centers_method, seed=rng, pool=pool)
        C = x[idx]
    else:
        idx = None
        C = _points("centers", centers)
        if C.shape[1] != d:
            raise ValueError(f"centers: must have dimension {d} like x, received shape {C.shape}.")
    t["centers"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pre = FalkonPreconditioner.build(kernel, C, reg, eps=eps)
    t["preconditioner"] = time.perf_counter() - t0
    gram = NystromGram(kernel, x, C, backend=backend, tile=tile, n_threads=n_threads)
    t0 = time.perf_counter()
    Y2 = y.reshape(n, -1)
    b = gram.rmatmat(Y2)  # (m, k) K_nmᵀ y
    t["rhs"] = time.perf_counter() - t0
    W = _PreconditionedNystrom(gram, pre, n, reg)
    bw = pre.apply_T(b / n)  # (m, k)

    def orig_norm(R):  # residual of the original system: r_H = n Tᵀ Aᵀ r_W
        return np.linalg.norm(n * pre.inv_T(R), axis=0)

    t0 = time.perf_counter()
    res = cg(W, bw if y.ndim == 2 else bw[:, 0], rtol=rtol, maxiter=maxiter, norm=orig_norm)
    t["cg"] = time.perf_counter() - t0
    beta = pre.apply(res.value.reshape(-1, Y2.shape[1]))
    beta = beta if y.ndim == 2 else beta[:, 0]
    bn = np.linalg.norm(b, axis=0)
    rel = np.asarray(res.residual_norm) / np.where(bn == 0, 1, bn)
    return NystromKRRResult(
        coefficients=beta,
        centers=C,
        center_indices=idx,
        kernel=kernel,
        reg=reg,
        cg=res,
        relative_residual=float(rel[0]) if y.ndim == 1 else rel,
        converged=res.converged,
        backend=backend,
        timings=t,
    )


# ------------------------------------------------------------------------------------------
# Nyström preconditioner for the exact system
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class NystromPreconditioner(LinearOperator):
    """P⁻¹ = (K̂ + μI)⁻¹ = (I − L S⁻¹ Lᵀ)/μ with K̂ = L Lᵀ, L = K_nm T⁻¹, S = μI + LᵀL = CᵀC.

    An n×n SPD operator approximating (K + μ I)⁻¹; pass it as ``precond`` to :func:`cg`. Applying it
    costs two n×m kernel passes (K_mn r, K_nm s) and four m×m triangular solves; memory O(m²).
    """

    knm: Any  # engine operator K(x, C), (n, m)
    tchol: np.ndarray  # (m, m) upper T, TᵀT = K_mm + jitter I
    schol: np.ndarray  # (m, m) upper C, CᵀC = S = μ I + LᵀL
    mu: float  # μ = λ n
    centers: np.ndarray  # (m, d)

    @property
    def shape(self):
        n = self.knm.shape[0]
        return (n, n)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    @property
    def T(self):
        return self  # symmetric

    def _mm(self, R):
        LtR = sla.solve_triangular(self.tchol, self.knm.T.mm(R), trans="T")  # (m, k) Lᵀ R
        S = sla.cho_solve((self.schol, False), LtR)  # S⁻¹ Lᵀ R
        LS = self.knm.mm(sla.solve_triangular(self.tchol, S))  # (n, k) L S⁻¹ Lᵀ R
        return (R - LS) / self.mu


def nystrom_preconditioner(kernel, x, reg: float, *, m: int, centers_method: str = "uniform", backend: str = "keops", seed=None, eps: float = 1e-12, pool: int | None = None) -> NystromPreconditioner:
    """The Nyström/Woodbury preconditioner of (K + λ n I) (see :class:`NystromPreconditioner`).

    LᵀL = Σ_blocks L_bᵀ L_b is accumulated from row blocks L_b = K(x_b, C) T⁻¹ (never n×m at once).
    """
    kernel = _scalar_real_kernel(kernel)
    x = _points("x", x)
    n = x.shape[0]
    reg = positive_float("reg", reg)
    mu = reg * n
    idx = select_centers(kernel, x, m, method=centers_method, seed=seed, pool=pool)
    C = x[idx]
    mm_ = C.shape[0]
    scale = float(np.mean(kernel.diag(C)))
    jitter = eps * mm_ * scale
    Kmm = _kernel_matrix(kernel, C, C, order="F")
    Kmm[np.diag_indices(mm_)] += jitter
    T = _chol_upper_inplace(Kmm, "K_mm + jitter·I")
    S = np.zeros((mm_, mm_))
    for s, e in _row_blocks(n, mm_, x.shape[1]):
        Lb = sla.solve_triangular(T, kernel.dense(x[s:e], C).T, trans="T").T  # (b, m) = K_bm T⁻¹
        S += Lb.T @ Lb
    S = 0.5 * (S + S.T)
    S[np.diag_indices(mm_)] += mu
    Cf = sla.cholesky(S, lower=False, overwrite_a=True)
    knm = kernel_operator(kernel, x, C, backend=backend)
    return NystromPreconditioner(knm=knm, tchol=T, schol=Cf, mu=mu, centers=C)


@dataclass(frozen=True)
class KRRResult:
    """Result of :func:`krr_exact`: f(x) = Σ_i α_i k(x, x_i)."""

    coefficients: np.ndarray  # (n,) or (n, k): α
    x: np.ndarray  # (n, d) training points
    kernel: Kernel
    reg: float
    cg: CGResult
    converged: bool
    preconditioner: Any  # NystromPreconditioner or None
    backend: str
    timings: dict

    def predict(self, x_new, *, backend: str | None = None) -> np.ndarray:
        x_new = _points("x_new", x_new)
        op = kernel_operator(self.kernel, x_new, self.x, backend=backend or self.backend)
        return op.mv(self.coefficients) if self.coefficients.ndim == 1 else op.mm(self.coefficients)


def krr_exact(
    kernel,
    x,
    y,
    reg: float,
    *,
    precond: str | None = "nystrom",
    m: int | None = None,
    centers_method: str = "uniform",
    backend: str = "keops",
    rtol: float = 1e-8,
    maxiter: int | None = None,
    seed=None,
    pool: int | None = None,
) -> KRRResult:
    """Exact kernel ridge regression: solves (K + λ n I) α = y (n×n, applied lazily) by CG.

    ``precond="nystrom"`` uses :class:`NystromPreconditioner` with m centres (default
    min(n, max(100, ⌈4√n⌉))); ``precond=None`` runs plain CG. Same λ n scaling as
    :func:`nystrom_krr` (scikit-learn's ``KernelRidge(alpha=λ n)`` solves the same system).
    """
    kernel = _scalar_real_kernel(kernel)
    x = _points("x", x)
    n = x.shape[0]
    y = _targets(y, n)
    reg = positive_float("reg", reg)
    if precond not in ("nystrom", None):
        raise ValueError(f"precond: expected 'nystrom' or None, received {precond!r}.")
    t = {}
    t0 = time.perf_counter()
    P = None
    if precond == "nystrom":
        m = m if m is not None else min(n, max(100, int(np.ceil(4 * np.sqrt(n)))))
        P = nystrom_preconditioner(kernel, x, reg, m=m, centers_method=centers_method, backend=backend, seed=seed, pool=pool)
    t["preconditioner"] = time.perf_counter() - t0
    A = kernel_operator(kernel, x, backend=backend, reg=reg * n)
    t0 = time.perf_counter()
    res = cg(A, y, rtol=rtol, maxiter=maxiter, precond=P)
    t["cg"] = time.perf_counter() - t0
    return KRRResult(
        coefficients=res.value, x=x, kernel=kernel, reg=reg, cg=res, converged=res.converged,
        preconditioner=P, backend=backend, timings=t,
    )
