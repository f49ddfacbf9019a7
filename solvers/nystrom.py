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

Scale-out of the fused pass K_nmᵀ(K_nm V) (:class:`NystromGram`): ``devices=`` shards the points over a
JAX device mesh (partial sums reduced by one all-reduce); ``backend="dask"`` scatters point blocks once to
dask workers and runs map (fused pass per block) + reduce (sum on a worker) per product.

Exact KRR (K + λ n I) α = y, preconditioned by the Nyström approximation K̂ = K_nm K_mm⁻¹ K_mn = L Lᵀ
(L = K_nm T⁻¹) through Woodbury:

    (K̂ + μ I)⁻¹ = (I − L (μ I + LᵀL)⁻¹ Lᵀ) / μ,   μ = λ n,

applied lazily (two n×m kernel passes and four m×m triangular solves per application).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as sla
from jax import device_put as jax_device_put
from jax.sharding import NamedSharding, PartitionSpec
from scipy.linalg import blas, lapack

from ntkflow._checks import finite_array, nonneg_float, positive_float, positive_int
from ntkflow.engine.backends import connect_scheduler, gather_bounded
from ntkflow.engine.devices import device_mesh, padded_length, points_sharding
from ntkflow.engine.kernels.base import Kernel
from ntkflow.engine.operators import BACKENDS, LinearOperator, kernel_operator

from .cg import CGResult, CGStatus, cg

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
    def build(cls, kernel, centers, reg: float, *, eps: float = 1e-12, sample=None) -> "FalkonPreconditioner":
        """T and A from the centres; ``sample`` (s, d): further points (uniform rows of x that are not
        centres) whose kernel rows sharpen the estimate of K_nmᵀK_nm/n in A:

            A = chol(T⁻ᵀ (K_mm² + K_smᵀ K_sm) T⁻¹ / (m + s) + λ I) = chol((T Tᵀ + L_sᵀ L_s)/(m + s) + λ I),

        L_s = K_sm T⁻¹ accumulated in row blocks with ``dsyrk`` (no s×m array; O(s m²) flops). With s = m
        the CG iterations at λ = 1e-6 roughly halve (docs/solvers.md); s = 0 is Falkon's preconditioner.
        """
        kernel = _scalar_real_kernel(kernel)
        c = _points("centers", centers)
        m = c.shape[0]
        reg = nonneg_float("reg", reg)
        if sample is not None:
            sample = _points("sample", sample)
            if sample.shape[1] != c.shape[1]:
                raise ValueError(f"sample: points must have dimension {c.shape[1]} like the centres, received "
                                 f"shape {sample.shape}.")
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
        count = m
        if sample is not None and sample.shape[0]:
            for s0, e0 in _row_blocks(sample.shape[0], m, 1):
                LbT = sla.solve_triangular(T, kernel.dense(sample[s0:e0], c).T, trans="T")  # (m, b) = (K_bm T⁻¹)ᵀ
                W = blas.dsyrk(1.0, LbT, beta=1.0, c=W, trans=0, lower=0, overwrite_c=1)  # upper += L_bᵀ L_b
            count += sample.shape[0]
        W /= count
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


#: dtypes of the kernel blocks in the fused pass (accumulation across tiles is always float64)
BLOCK_DTYPES = ("float64", "float32")


def _block_dtype(name, value) -> str:
    if value not in BLOCK_DTYPES:
        raise ValueError(f"{name}: expected one of {BLOCK_DTYPES}, received {value!r}.")
    return value


@functools.lru_cache(maxsize=32)
def _fused_fns(kernel, tile: int, block_dtype: str = "float64"):
    """Jitted fused passes over zero-padded rows, tiles of ``tile`` rows.

    gram(xc, mask, c, V) = Σ_tiles K_bᵀ (mask_b ⊙ (K_b V)) — each block K_b = k(x_b, C) (tile, m) is
    evaluated once (for the Gaussian: the distance as one GEMM, |x|² + |c|² − 2 x·c, feeding exp) and
    used for both products; rmat(xc, Y, c) = Σ_tiles K_bᵀ Y_b. ``block_dtype="float32"``: K_b and its two
    products in float32 (≈ 3× faster on CPU, ≈ 1e-6 relative error of the product), the sum over tiles
    in float64. The leading axis may be a device axis ((D, L, d) inputs, :func:`_sharded_fns`).
    """
    import jax
    import jax.numpy as jnp

    bd = jnp.dtype(block_dtype)

    def gram(xc, mask, c, V):  # xc (nt·tile, d), mask (nt·tile,), c (m, d), V (m, k) -> Kᵀ(K V) (m, k)
        xt = xc.reshape(-1, tile, xc.shape[1])
        mt = mask.reshape(-1, tile)
        cb, Vb = c.astype(bd), V.astype(bd)

        def body(acc, xm):
            xb, mb = xm
            Kb = kernel.jax_block(xb.astype(bd), cb)  # (tile, m): evaluated once, used twice
            u = (Kb @ Vb) * mb[:, None].astype(bd)  # (tile, k)
            return acc + (Kb.T @ u).astype(acc.dtype), None

        out, _ = jax.lax.scan(body, jnp.zeros(V.shape, jnp.float64), (xt, mt))
        return out

    def rmat(xc, Y, c):  # Kᵀ Y for Y (nt·tile, k) zero-padded
        xt = xc.reshape(-1, tile, xc.shape[1])
        yt = Y.reshape(-1, tile, Y.shape[1])
        cb = c.astype(bd)

        def body(acc, xy):
            xb, yb = xy
            return acc + (kernel.jax_block(xb.astype(bd), cb).T @ yb.astype(bd)).astype(acc.dtype), None

        out, _ = jax.lax.scan(body, jnp.zeros((c.shape[0], Y.shape[1]), jnp.float64), (xt, yt))
        return out

    def both(xc, mask, c, V, Y):  # (Kᵀ(K V), Kᵀ Y) from ONE evaluation of each block; Y (nt·tile, k') zero-padded
        xt = xc.reshape(-1, tile, xc.shape[1])
        mt = mask.reshape(-1, tile)
        yt = Y.reshape(-1, tile, Y.shape[1])
        cb, Vb = c.astype(bd), V.astype(bd)
        kv = V.shape[1]

        def body(acc, xmy):
            xb, mb, yb = xmy
            Kb = kernel.jax_block(xb.astype(bd), cb)  # (tile, m)
            u = (Kb @ Vb) * mb[:, None].astype(bd)  # (tile, k)
            return acc + (Kb.T @ jnp.concatenate([u, yb.astype(bd)], axis=1)).astype(acc.dtype), None

        out, _ = jax.lax.scan(body, jnp.zeros((c.shape[0], kv + Y.shape[1]), jnp.float64), (xt, mt, yt))
        return out[:, :kv], out[:, kv:]

    return jax.jit(gram), jax.jit(rmat), jax.jit(both)


@functools.lru_cache(maxsize=32)
def _sharded_fns(kernel, tile: int, block_dtype: str = "float64"):
    """The fused passes with the points axis sharded over a device mesh: inputs (D, L, ...) with axis 0
    split over the mesh's devices; each device runs the scan over its own L rows (``vmap`` over the
    device axis) and the (D, m, k) partial sums are reduced by ``sum(axis=0)``, which XLA's SPMD
    partitioner turns into one all-reduce. Nothing n-sized moves between devices."""
    import jax

    gram, rmat, both = _fused_fns(kernel, tile, block_dtype)
    g = jax.vmap(gram, in_axes=(0, 0, None, None))
    r = jax.vmap(rmat, in_axes=(0, 0, None))
    gr = jax.vmap(both, in_axes=(0, 0, None, None, 0))

    def gr_sum(xs, ms, c, V, Ys):
        a, b = gr(xs, ms, c, V, Ys)
        return a.sum(axis=0), b.sum(axis=0)

    return (jax.jit(lambda xs, ms, c, V: g(xs, ms, c, V).sum(axis=0)),
            jax.jit(lambda xs, Ys, c: r(xs, Ys, c).sum(axis=0)), jax.jit(gr_sum))


def _cpu_tile(m: int) -> int:
    """Rows per (tile × m) kernel block on CPU: ~2 MB blocks that stay in L2 (24 rows at m = 10⁴)."""
    return int(np.clip(250_000 // max(m, 1), 16, 1024))


def _pad_rows(x, tile):
    """x (r, d) -> (x zero-padded to a multiple of tile rows, mask (L,) of 1 for real rows, 0 for padding)."""
    r = x.shape[0]
    L = max(1, -(-r // tile)) * tile
    xc = np.zeros((L, x.shape[1]))
    xc[:r] = x
    mask = np.zeros(L)
    mask[:r] = 1.0
    return xc, mask


def _dask_gram_block(kernel, tile, block_dtype, xm, c, V):
    """Runs on a dask worker: the fused pass K_bᵀ(K_b V) (m, k) over its block (xc, mask) of points."""
    import jax.numpy as jnp

    gram = _fused_fns(kernel, tile, block_dtype)[0]
    xc, mask = xm
    return np.asarray(gram(jnp.asarray(xc), jnp.asarray(mask), jnp.asarray(c), jnp.asarray(V)))


def _dask_rmat_block(kernel, tile, xm, c, Y):
    """Runs on a dask worker: K_bᵀ Y_b (m, k) for its block; Y_b (r, k) is zero-padded here."""
    import jax.numpy as jnp

    rmat = _fused_fns(kernel, tile, "float64")[1]
    xc, _ = xm
    Yp = np.zeros((xc.shape[0], Y.shape[1]))
    Yp[: Y.shape[0]] = Y
    return np.asarray(rmat(jnp.asarray(xc), jnp.asarray(Yp), jnp.asarray(c)))


def _dask_both_block(kernel, tile, xm, c, V, Y):
    """Runs on a dask worker: [K_bᵀ(K_b V), K_bᵀ Y_b] (m, k + k') from one evaluation of its block."""
    import jax.numpy as jnp

    both = _fused_fns(kernel, tile, "float64")[2]
    xc, mask = xm
    Yp = np.zeros((xc.shape[0], Y.shape[1]))
    Yp[: Y.shape[0]] = Y
    GV, KY = both(jnp.asarray(xc), jnp.asarray(mask), jnp.asarray(c), jnp.asarray(V), jnp.asarray(Yp))
    return np.concatenate([np.asarray(GV), np.asarray(KY)], axis=1)


def _sum_blocks(*parts):
    """Runs on a dask worker: the sum of the blocks' (m, k) partial products, in block order."""
    out = np.array(parts[0], dtype=np.float64, copy=True)
    for p in parts[1:]:
        out += p
    return out


@dataclass(frozen=True, repr=False)
class NystromGram(LinearOperator):
    """The m×m operator G V = K_nmᵀ (K_nm V), never forming K_nm (n×m).

    ``backend="jax"``: one fused pass — each (tile × m) kernel block is evaluated once and used for
    both products; rows are split over ``n_threads`` threads (XLA releases the GIL), or, with
    ``devices`` (an int or "all"), over a JAX device mesh (:func:`ntkflow.engine.devices.device_mesh`):
    the points are sharded along the mesh's axis and the partial sums reduced by one all-reduce.
    ``backend="dask"``: the points are split into ``n_blocks`` blocks (default: one per worker) and
    scattered ONCE to the workers of ``client`` (a ``distributed.Client``), of the cluster at
    ``scheduler`` ("tcp://host:port", joined within ``timeout`` s), or of an embedded LocalCluster
    (``n_workers`` processes); each product sends only V (m, k) and runs the fused pass on every block
    (map), then sums the blocks' (m, k) results on a worker (reduce), in block order. Other backends
    ("keops", "dense"): two lazy passes ``K_nm.T.mm(K_nm.mm(V))`` of the engine operator.

    ``block_dtype="float32"`` (opt-in, jax/dask): kernel blocks and their products in float32, sums
    over tiles and blocks in float64 (≈ 1e-6 relative error of G V; :func:`nystrom_krr` only uses it
    inside float64 iterative refinement). :meth:`mm_lowp` applies the float32 pass on demand.
    """

    kernel: Kernel
    x: np.ndarray  # (n, d)
    centers: np.ndarray  # (m, d)
    backend: str = "jax"
    tile: int | None = None
    n_threads: int | None = None
    devices: Any = None
    client: Any = None
    scheduler: str | None = None
    n_blocks: int | None = None
    n_workers: int = 2
    timeout: float = 5.0
    block_dtype: str = "float64"
    _state: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, received {self.backend!r}.")
        _block_dtype("block_dtype", self.block_dtype)
        if self.devices is not None and self.backend != "jax":
            raise ValueError(f"devices: a device mesh needs backend='jax', received backend={self.backend!r} "
                             f"with devices={self.devices!r}; pass backend='jax' or devices=None.")
        if (self.client is not None or self.scheduler is not None) and self.backend != "dask":
            raise ValueError(f"client, scheduler: a dask cluster needs backend='dask', received "
                             f"backend={self.backend!r}; pass backend='dask'.")
        if self.client is not None and self.scheduler is not None:
            raise ValueError(f"scheduler, client: give a scheduler address or a client, not both "
                             f"(received scheduler={self.scheduler!r}).")
        st = self._state
        m, n, d = self.centers.shape[0], self.x.shape[0], self.x.shape[1]
        if self.backend in ("jax", "dask"):
            import jax
            import jax.numpy as jnp

            on_cpu = jax.default_backend() == "cpu"
            # CPU: (tile × m) blocks of ~2 MB that stay in L2 (24 rows at m = 10⁴: 1.2-1.3× less CPU per
            # pass than 50 rows, bench_solvers.py section p), rows split over threads;
            # GPU: ~0.5 GB blocks in one stream (kernel launches, not cache, are what to amortise).
            tile = self.tile or (_cpu_tile(m) if on_cpu
                                 else int(np.clip(60_000_000 // max(m, 1), 256, 65_536)))
            st["c"] = jnp.asarray(self.centers)
        if self.backend == "dask":
            self._scatter(int(tile))
        elif self.backend == "jax" and self.devices is not None:
            mesh = device_mesh(self.devices)
            D = mesh.size
            tile = int(min(tile, -(-n // D)))
            L = padded_length(n, mesh, multiple=tile) // D  # rows per device, a multiple of tile
            xs, masks = zip(*(_pad_rows(self.x[s:e], tile) if e > s else (np.zeros((L, d)), np.zeros(L))
                              for s, e in _even_bounds(n, D)))
            xs = np.stack([np.concatenate([a, np.zeros((L - len(a), d))]) for a in xs])  # (D, L, d)
            masks = np.stack([np.concatenate([a, np.zeros(L - len(a))]) for a in masks])  # (D, L)
            st.update(mesh=mesh, rows=L, bounds=list(_even_bounds(n, D)),
                      xs=jax.device_put(xs, points_sharding(mesh)), masks=jax.device_put(masks, points_sharding(mesh)))
            st["c"] = jax.device_put(self.centers, NamedSharding(mesh, PartitionSpec()))
        elif self.backend == "jax":
            nth = self.n_threads or (min(os.cpu_count() or 1, 8) if on_cpu else 1)
            tile = int(min(tile, -(-n // nth)))
            chunks = []
            for s, e in _even_bounds(n, nth):
                if e <= s:
                    continue
                xc, mask = _pad_rows(self.x[s:e], tile)
                chunks.append((s, e, xc.shape[0], jnp.asarray(xc), jnp.asarray(mask)))
            st["chunks"] = chunks
        else:
            st["op"] = kernel_operator(self.kernel, self.x, self.centers, backend=self.backend)
        if self.backend in ("jax", "dask"):
            st["tile"] = int(tile)

    # -- dask ------------------------------------------------------------------------------
    def _scatter(self, tile):
        """Split the points into blocks and scatter them (and the centres) once to the workers."""
        st = self._state
        if self.client is not None:
            client = self.client
        elif self.scheduler is not None:
            client = connect_scheduler(self.scheduler, self.timeout)
            st["owned"] = [client]
        else:
            from distributed import Client, LocalCluster  # deferred: dask is an optional, heavy dependency

            cluster = LocalCluster(n_workers=positive_int("n_workers", self.n_workers), threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster, set_as_default=False)
            st["owned"] = [client, cluster]
        n = self.x.shape[0]
        nb = self.n_blocks or max(1, len(client.scheduler_info()["workers"]))
        nb = min(positive_int("n_blocks", nb), n)
        bounds = list(_even_bounds(n, nb))
        blocks = [_pad_rows(self.x[s:e], tile) for s, e in bounds]
        st.update(client=client, bounds=bounds, where=self.scheduler or "the dask cluster",
                  xf=client.scatter(blocks, hash=False),
                  cf=client.scatter(self.centers, broadcast=True, hash=False))

    def _dask_reduce(self, futs, what):
        st = self._state
        client = st["client"]
        total = client.submit(_sum_blocks, *futs, pure=False)
        return np.asarray(gather_bounded(client, [total], self.timeout, st["where"], what=what)[0])

    def close(self):
        """Release the scattered points and close the client/cluster this operator started (dask)."""
        st = self._state
        for key in ("xf", "cf"):
            st.pop(key, None)
        for obj in st.pop("owned", []):
            try:
                obj.close()
            except Exception:  # pragma: no cover
                pass

    # -- products --------------------------------------------------------------------------
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
        return self._apply(V, self.block_dtype)

    def mm_lowp(self, V):
        """G V with float32 kernel blocks (float64 sums over tiles/blocks); jax and dask backends."""
        if self.backend not in ("jax", "dask"):
            raise ValueError(f"backend: float32 kernel blocks need backend 'jax' or 'dask', received "
                             f"{self.backend!r}.")
        return self._apply(np.asarray(V, dtype=np.float64), "float32")

    def _apply(self, V, block_dtype):
        st = self._state
        if self.backend not in ("jax", "dask"):
            op = st["op"]
            return op.T.mm(op.mm(V))
        import jax.numpy as jnp

        V = np.ascontiguousarray(V, dtype=np.float64)
        if self.backend == "dask":
            client = st["client"]
            futs = [client.submit(_dask_gram_block, self.kernel, st["tile"], block_dtype, xf, st["cf"], V, pure=False)
                    for xf in st["xf"]]
            return self._dask_reduce(futs, "a block of the Nyström product")
        if "mesh" in st:
            gram = _sharded_fns(self.kernel, st["tile"], block_dtype)[0]
            return np.asarray(gram(st["xs"], st["masks"], st["c"], V))
        gram = _fused_fns(self.kernel, st["tile"], block_dtype)[0]
        Vj = jnp.asarray(V)
        parts = self._map(lambda ch: np.asarray(gram(ch[3], ch[4], st["c"], Vj)))
        return np.sum(parts, axis=0)

    def rmatmat(self, Y):
        """K_nmᵀ Y for Y (n, k): one pass (float64)."""
        st = self._state
        if self.backend not in ("jax", "dask"):
            return st["op"].T.mm(Y)
        import jax.numpy as jnp

        Y = np.asarray(Y, dtype=np.float64)
        if self.backend == "dask":
            client = st["client"]
            futs = [client.submit(_dask_rmat_block, self.kernel, st["tile"], xf, st["cf"], Y[s:e], pure=False)
                    for xf, (s, e) in zip(st["xf"], st["bounds"])]
            return self._dask_reduce(futs, "a block of K_nmᵀ y")
        if "mesh" in st:
            return np.asarray(_sharded_fns(self.kernel, st["tile"], "float64")[1](st["xs"], self._sharded_rows(Y), st["c"]))
        rmat = _fused_fns(self.kernel, st["tile"], "float64")[1]
        return np.sum(self._map(lambda ch: np.asarray(rmat(ch[3], jnp.asarray(self._chunk_rows(ch, Y)), st["c"]))), axis=0)

    def mm_and_rmatmat(self, V, Y):
        """(G V, K_nmᵀ Y) for V (m, k), Y (n, k'), float64. Backends "jax" and "dask": ONE fused pass — each
        kernel block is evaluated once and multiplies [K_b V ⊙ mask, Y_b] — at the cost of about one
        product; "keops", "dense" (and float32 blocks): the two products one after the other."""
        st = self._state
        if self.backend not in ("jax", "dask") or self.block_dtype != "float64":
            return self._mm(V), self.rmatmat(Y)
        import jax.numpy as jnp

        V = np.ascontiguousarray(V, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        if self.backend == "dask":
            client = st["client"]
            futs = [client.submit(_dask_both_block, self.kernel, st["tile"], xf, st["cf"], V, Y[s:e], pure=False)
                    for xf, (s, e) in zip(st["xf"], st["bounds"])]
            out = self._dask_reduce(futs, "a block of the fused first pass")
            return out[:, : V.shape[1]], out[:, V.shape[1]:]
        if "mesh" in st:
            GV, KY = _sharded_fns(self.kernel, st["tile"], "float64")[2](st["xs"], st["masks"], st["c"], V,
                                                                         self._sharded_rows(Y))
            return np.asarray(GV), np.asarray(KY)
        both = _fused_fns(self.kernel, st["tile"], "float64")[2]
        Vj = jnp.asarray(V)
        parts = self._map(lambda ch: [np.asarray(a) for a in both(ch[3], ch[4], st["c"], Vj,
                                                                   jnp.asarray(self._chunk_rows(ch, Y)))])
        return np.sum([p[0] for p in parts], axis=0), np.sum([p[1] for p in parts], axis=0)

    @staticmethod
    def _chunk_rows(ch, Y):
        """Y's rows of thread chunk ch = (start, end, padded length, ...), zero-padded: (L, k)."""
        s, e, L = ch[0], ch[1], ch[2]
        Yp = np.zeros((L, Y.shape[1]))
        Yp[: e - s] = Y[s:e]
        return Yp

    def _sharded_rows(self, Y):
        """Y (n, k) as (D, L, k), each device's rows zero-padded, placed on the mesh."""
        st = self._state
        Ys = np.zeros((len(st["bounds"]), st["rows"], Y.shape[1]))
        for i, (s, e) in enumerate(st["bounds"]):
            Ys[i, : e - s] = Y[s:e]
        return jax_device_put(Ys, points_sharding(st["mesh"]))


def _even_bounds(n, parts):
    """(start, end) of ``parts`` contiguous, nearly equal row ranges of n rows."""
    b = np.linspace(0, n, parts + 1).astype(int)
    return list(zip(b[:-1].tolist(), b[1:].tolist()))


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
    lowp: bool = False  # K_nmᵀK_nm with float32 kernel blocks (NystromGram.mm_lowp)

    @property
    def shape(self):
        return self.gram.shape

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        U = self.pre.apply(V)  # (m, k) = B V
        GU = self.gram.mm_lowp(U) if self.lowp else self.gram._mm(U)
        HU = GU / self.n + self.reg * self.pre.kmm(U)
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
    timings: dict  # seconds: centres, preconditioner, (warm_start,) rhs, cg
    #: ‖K_nmᵀy − Hβ₀‖/‖K_nmᵀy‖ of the warm start β₀ (1.0 for a column that started from 0), None without one
    warm_start_residual: Any = None

    def predict(self, x_new, *, backend: str | None = None) -> np.ndarray:
        """f(x_new) = k(x_new, C) β, shape (n_new,) or (n_new, k); in process ("jax") after a dask solve."""
        x_new = _points("x_new", x_new)
        if x_new.shape[1] != self.centers.shape[1]:
            raise ValueError(
                f"x_new: points must have dimension {self.centers.shape[1]}, received shape {x_new.shape}."
            )
        backend = backend or ("jax" if self.backend == "dask" else self.backend)
        op = kernel_operator(self.kernel, x_new, self.centers, backend=backend)
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
    block_dtype: str = "float64",
    refine: bool = False,
    pre_sample="auto",
    warm_start: bool = True,
    devices=None,
    client=None,
    scheduler: str | None = None,
    n_blocks: int | None = None,
    timeout: float = 5.0,
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
        backend: how K_nmᵀ(K_nm v) is applied: "jax" (one fused pass, fastest on CPU), "dask" (the fused
            pass on blocks of points scattered once to dask workers, summed on a worker), "keops",
            "dense" (two passes of the engine operator).
        maxiter, rtol: CG limits (maxiter counts every CG iteration). seed: int / None / numpy Generator.
        eps: jitter ε of T.
        block_dtype: "float64" (default) or "float32" (opt-in, jax/dask): the CG passes evaluate the
            kernel blocks and their two products in float32 (sums over tiles in float64; K_nmᵀy stays
            float64). ≈ 3× cheaper passes on CPU, but the product then carries a ≈ 1e-6..1e-5 relative
            error, so at small λ the float64 residual stalls above tight tolerances (docs/solvers.md).
        refine: with ``block_dtype="float32"``: mixed-precision iterative refinement — β ← β + δ with δ from
            float32-block CG on H δ = r to relative ``REFINE_INNER_RTOL``, r = K_nmᵀy − Hβ recomputed with
            float64 blocks, until ‖r‖ ≤ rtol‖K_nmᵀy‖, or until a refinement gains less than 2× (status
            "stagnated", never a silent answer). Measured: at n = 2·10⁴, m = 10³, λ = 1e-6 it reaches 4e-9
            where plain float32 blocks stall at 7e-6; at n = 10⁶, m = 10⁴ the first refinement gains only
            0.077 and it stagnates at 6.8e-2 (the float32 Gram's error grows with n), so there it does NOT
            replace float64 (docs/solvers.md). ``maxiter`` bounds the inner iterations in all.
        pre_sample: s extra uniformly drawn rows of x (not centres) whose kernel rows enter the
            preconditioner's estimate of K_nmᵀK_nm (:meth:`FalkonPreconditioner.build`, O(s m²) flops,
            no extra memory beyond a block): 0 = Falkon's preconditioner; "auto" = m when n ≥ 20 m (where
            the ≈ halved CG iterations outweigh the build), else 0.
        warm_start: start CG from β₀, the Nyström KRR solution on the preconditioner's own rows (the
            centres and the ``pre_sample`` rows, whose normal matrix T ᵀAᵀA T the two Cholesky factors
            already are: β₀ = B Bᵀ (K_mm y_C + K_smᵀ y_s)/(m + s), four triangular solves), and fuse the
            pass for K_nmᵀy with the one for H β₀ (:meth:`NystromGram.mm_and_rmatmat`), so the warm start
            costs no pass; CG then solves H δ = K_nmᵀy − Hβ₀ to ‖·‖ ≤ rtol‖K_nmᵀy‖. Used when the centres
            are rows of x (an int ``centers``) and with float64 blocks (backends "keops"/"dense" pay one
            extra pass for Hβ₀); a column whose β₀ is worse than 0 starts from 0. False: Falkon's zero start.
        devices: None (one device, rows split over ``n_threads`` threads) or an int / "all": the points
            sharded over a JAX device mesh (backend "jax").
        client, scheduler, n_blocks, timeout: backend "dask" — a ``distributed.Client`` or a scheduler
            address (neither: an embedded 2-worker LocalCluster), the number of point blocks (default
            one per worker) and the bound of every wait on the cluster.
    """
    kernel = _scalar_real_kernel(kernel)
    x = _points("x", x)
    n, d = x.shape
    y = _targets(y, n)
    reg = positive_float("reg", reg)
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, received {backend!r}.")
    _block_dtype("block_dtype", block_dtype)
    if not isinstance(refine, bool):
        raise TypeError(f"refine: expected True or False, received {refine!r}.")
    if refine and block_dtype != "float32":
        raise ValueError(f"refine: iterative refinement wraps float32-block CG; received block_dtype={block_dtype!r}. "
                         f"Pass block_dtype='float32' or refine=False.")
    if block_dtype == "float32" and backend not in ("jax", "dask"):
        raise ValueError(f"block_dtype: float32 blocks need backend 'jax' or 'dask' (the fused pass), received "
                         f"backend={backend!r}; pass block_dtype='float64' or backend='jax'.")
    maxiter = positive_int("maxiter", maxiter)
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
    m = C.shape[0]
    if isinstance(pre_sample, str) and pre_sample == "auto":
        pre_sample = m if n >= 20 * m else 0
    if isinstance(pre_sample, bool) or not isinstance(pre_sample, (int, np.integer)) or pre_sample < 0:
        raise ValueError(f"pre_sample: expected 'auto' or an int >= 0 (rows added to the preconditioner's "
                         f"sample), received {pre_sample!r}.")
    rest = np.arange(n) if idx is None else np.setdiff1d(np.arange(n), idx)
    if pre_sample > rest.size:
        raise ValueError(f"pre_sample: at most {rest.size} rows of x are not centres, received {pre_sample}; "
                         f"pass pre_sample <= {rest.size}.")
    if not isinstance(warm_start, bool):
        raise TypeError(f"warm_start: expected True or False, received {warm_start!r}.")
    sample_idx = np.sort(rng.choice(rest, size=int(pre_sample), replace=False)) if pre_sample else np.zeros(0, int)
    sample = x[sample_idx] if pre_sample else None
    t["centers"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pre = FalkonPreconditioner.build(kernel, C, reg, eps=eps, sample=sample)
    del sample
    t["preconditioner"] = time.perf_counter() - t0
    gram = NystromGram(kernel, x, C, backend=backend, tile=tile, n_threads=n_threads, devices=devices,
                       client=client, scheduler=scheduler, n_blocks=n_blocks, timeout=timeout)
    try:
        t0 = time.perf_counter()
        Y2 = y.reshape(n, -1)
        warm = warm_start and idx is not None and not refine and block_dtype == "float64"
        warm_rel = None
        if warm:
            beta0 = _rows_solution(kernel, pre, C, Y2[idx], x[sample_idx], Y2[sample_idx])  # (m, k)
            t["warm_start"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            G0, b = gram.mm_and_rmatmat(beta0, Y2)  # one pass: G β₀ and K_nmᵀ y, both (m, k)
            r = b - (G0 + (reg * n) * pre.kmm(beta0))
            bn0, rn0 = np.linalg.norm(b, axis=0), np.linalg.norm(r, axis=0)
            worse = rn0 > bn0  # never start further away than from 0
            beta0[:, worse], r[:, worse] = 0.0, b[:, worse]
            warm_rel = np.where(worse, 1.0, rn0 / np.where(bn0 == 0, 1, bn0))
        else:
            b = gram.rmatmat(Y2)  # (m, k) K_nmᵀ y
        t["rhs"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if refine:
            beta, res = _refined_cg(gram, pre, n, reg, b, rtol, maxiter)
        elif warm:
            res = _falkon_cg(gram, pre, n, reg, r, 0.0, maxiter, lowp=False, atol=rtol * np.linalg.norm(b, axis=0))
            beta = beta0 + pre.apply(np.asarray(res.value).reshape(-1, Y2.shape[1]))
        else:
            res = _falkon_cg(gram, pre, n, reg, b, rtol, maxiter, lowp=block_dtype == "float32")
            beta = pre.apply(res.value.reshape(-1, Y2.shape[1]))  # (m, k)
        t["cg"] = time.perf_counter() - t0
        bn = np.linalg.norm(b, axis=0)
        rn = np.atleast_1d(np.asarray(res.residual_norm, dtype=float))
        if block_dtype == "float32" and not refine:  # the TRUE float64 residual, one float64 pass
            rn = np.linalg.norm(b - (gram._mm(beta) + (reg * n) * pre.kmm(beta)), axis=0)
            t["float64_residual"] = time.perf_counter() - t0 - t["cg"]
            ok = bool(np.all(rn <= rtol * bn))
            fix = {} if ok else dict(status="stagnated", message=(
                f"block_dtype='float32': the float64 residual {np.max(rn / np.where(bn == 0, 1, bn)):.3g} "
                f"(relative) is above rtol={rtol:g} although the float32-block CG reached it; raise rtol or "
                f"use block_dtype='float64'."))
            res = dataclasses.replace(res, converged=res.converged and ok,
                                      residual_norm=float(rn[0]) if y.ndim == 1 else rn, **fix)
    finally:
        gram.close()
    beta = beta if y.ndim == 2 else beta[:, 0]
    rel = rn / np.where(bn == 0, 1, bn)
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
        warm_start_residual=None if warm_rel is None else (float(warm_rel[0]) if y.ndim == 1 else warm_rel),
    )


#: relative tolerance of each inner float32-block solve of :func:`nystrom_krr`'s iterative refinement (above
#: the ≈ 5.6e-4 where float32 blocks stall at λ = 1e-6, so every inner solve converges in ≈ 8–10 iterations)
REFINE_INNER_RTOL = 1e-3


def _refined_cg(gram, pre, n, reg, b, rtol, maxiter) -> tuple[np.ndarray, CGResult]:
    """Mixed-precision iterative refinement of (K_nmᵀK_nm + λnK_mm) β = b (b (m, k)): β ← β + B γ with γ from
    float32-block CG on the preconditioned system for the current float64 residual r = b − Hβ (Carson & Higham's
    scheme; hand-written because the inner solver is our CG over the fused pass). Returns (β (m, k), a CGResult
    whose ``iterations`` counts the inner iterations, ``history`` the float64 residual norm after each
    refinement, and ``residual_norm`` the final float64 residual)."""
    k = b.shape[1]
    beta = np.zeros_like(b)
    r = b.copy()
    bn = np.linalg.norm(b, axis=0)
    tol = rtol * bn
    history = [bn.copy()]
    inner_its, matvecs, last = 0, 0, None
    while inner_its < maxiter:
        # the last refinement needs only tol/‖r‖ (with a margin), not 1e-3: no over-solving at the end
        need = float(np.min(tol / np.where(history[-1] == 0, 1, history[-1])))
        inner_rtol = max(REFINE_INNER_RTOL, rtol, min(0.5, 0.3 * need))
        inner = _falkon_cg(gram, pre, n, reg, r, inner_rtol, maxiter - inner_its, lowp=True)
        inner_its += max(1, int(inner.iterations))
        matvecs += int(inner.matvecs) + 1
        last = inner
        beta = beta + pre.apply(np.asarray(inner.value).reshape(-1, k))
        r = b - (gram._mm(beta) + (reg * n) * pre.kmm(beta))  # the float64 residual: one float64 pass
        rn = np.linalg.norm(r, axis=0)
        if not np.all(np.isfinite(rn)):
            break
        gained = rn / np.where(history[-1] == 0, 1, history[-1])
        history.append(rn)
        if np.all(rn <= tol) or np.all(gained > 0.5):  # converged, or refinement no longer gains
            break
    rn = history[-1]
    ok = bool(np.all(np.isfinite(rn)) and np.all(rn <= tol))
    status = CGStatus.CONVERGED if ok else (CGStatus.NONFINITE if not np.all(np.isfinite(rn)) else
                                            CGStatus.STAGNATED if inner_its < maxiter else CGStatus.MAXITER)
    msg = (f"iterative refinement: {len(history) - 1} float32-block solves ({inner_its} CG iterations), float64 "
           f"residual {float(np.max(rn / np.where(bn == 0, 1, bn))):.3g} (relative)"
           + ("" if ok else f" above rtol={rtol:g}; raise maxiter or rtol, or use block_dtype='float64'"))
    res = dataclasses.replace(
        last, value=beta if k > 1 else beta[:, 0], converged=ok, status=status, message=msg, iterations=inner_its,
        residual_norm=rn if k > 1 else float(rn[0]), tolerance=tol if k > 1 else float(tol[0]),
        history=np.array(history) if k > 1 else np.array(history)[:, 0],
        column_status=tuple([status] * k), column_iterations=np.full(k, inner_its), matvecs=matvecs)
    return beta, res


def _rows_solution(kernel, pre: FalkonPreconditioner, C, y_c, xs, y_s) -> np.ndarray:
    """β₀ (m, k): Nyström KRR on the preconditioner's rows R = centres ∪ sample (r = m + s rows),

        (K_rmᵀK_rm/r + λK_mm) β₀ = K_rmᵀ y_R / r,   K_rmᵀK_rm/r + λK_mm = TᵀAᵀA T  (FalkonPreconditioner.build),

    so β₀ = T⁻¹A⁻¹A⁻ᵀT⁻ᵀ (K_mm y_C + K_smᵀ y_s)/r. K_smᵀ y_s is one fused JAX pass over the s sample rows
    (s·m kernel values: 1 % of a CG pass at n = 100 s); nothing s×m is kept."""
    import jax.numpy as jnp

    rhs = pre.kmm(y_c)  # (m, k) K_mm y_C
    if xs.shape[0]:
        tile = _cpu_tile(C.shape[0])
        xp, _ = _pad_rows(xs, tile)
        yp = np.zeros((xp.shape[0], y_s.shape[1]))
        yp[: y_s.shape[0]] = y_s
        rhs += np.asarray(_fused_fns(kernel, tile, "float64")[1](jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(C)))
    rhs /= C.shape[0] + xs.shape[0]
    return pre.apply(pre.apply_T(rhs))


def _falkon_cg(gram, pre, n, reg, b, rtol, maxiter, *, lowp, atol=0.0) -> CGResult:
    """CG on Bᵀ(G/n + λK_mm)B γ = Bᵀ b/n (b (m, k)); residuals measured in the original system
    (``atol``: a number or (k,), in those units)."""
    W = _PreconditionedNystrom(gram, pre, n, reg, lowp=lowp)
    bw = pre.apply_T(b / n)  # (m, k)

    def orig_norm(R):  # residual of the original system: r_H = n Tᵀ Aᵀ r_W
        return np.linalg.norm(n * pre.inv_T(R), axis=0)

    atol = np.asarray(atol, dtype=float)
    return cg(W, bw if b.shape[1] > 1 else bw[:, 0], rtol=rtol, atol=atol if atol.ndim == 0 or b.shape[1] > 1 else atol[0],
              maxiter=maxiter, norm=orig_norm)


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


def nystrom_preconditioner(kernel, x, reg: float, *, m: int, centers_method: str = "uniform", backend: str = "keops", seed=None, eps: float = 1e-12, pool: int | None = None, **backend_options) -> NystromPreconditioner:
    """The Nyström/Woodbury preconditioner of (K + λ n I) (see :class:`NystromPreconditioner`).

    LᵀL = Σ_blocks L_bᵀ L_b is accumulated from row blocks L_b = K(x_b, C) T⁻¹ (never n×m at once).
    ``backend_options`` go to :func:`ntkflow.engine.kernel_operator` for K_nm (e.g. ``client=`` for dask).
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
    knm = kernel_operator(kernel, x, C, backend=backend, **backend_options)
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
    client=None,
    scheduler: str | None = None,
    n_blocks: int | None = None,
    timeout: float = 5.0,
) -> KRRResult:
    """Exact kernel ridge regression: solves (K + λ n I) α = y (n×n, applied lazily) by CG.

    ``precond="nystrom"`` uses :class:`NystromPreconditioner` with m centres (default
    min(n, max(100, ⌈4√n⌉))); ``precond=None`` runs plain CG. Same λ n scaling as
    :func:`nystrom_krr` (scikit-learn's ``KernelRidge(alpha=λ n)`` solves the same system).

    ``backend="dask"``: K v and the preconditioner's K_nm passes run as row blocks (jax inside each
    block) on the workers of ``client`` / the cluster at ``scheduler`` (else an embedded LocalCluster);
    each operator scatters its points once, every CG iteration sends only the vector.
    """
    kernel = _scalar_real_kernel(kernel)
    x = _points("x", x)
    n = x.shape[0]
    y = _targets(y, n)
    reg = positive_float("reg", reg)
    if precond not in ("nystrom", None):
        raise ValueError(f"precond: expected 'nystrom' or None, received {precond!r}.")
    if (client is not None or scheduler is not None) and backend != "dask":
        raise ValueError(f"client, scheduler: a dask cluster needs backend='dask', received backend={backend!r}.")
    opts, owned = {}, []
    if backend == "dask":
        opts = dict(inner="jax", timeout=timeout, n_blocks=n_blocks)
        if scheduler is not None:  # joined once here; both operators share the client
            client = connect_scheduler(scheduler, timeout)
            owned = [client]
        elif client is None:  # one embedded cluster for both operators, closed at the end
            from distributed import Client, LocalCluster  # deferred: dask is an optional, heavy dependency

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster, set_as_default=False)
            owned = [client, cluster]
        opts["client"] = client
    t = {}
    try:
        t0 = time.perf_counter()
        P = None
        if precond == "nystrom":
            m = m if m is not None else min(n, max(100, int(np.ceil(4 * np.sqrt(n)))))
            P = nystrom_preconditioner(kernel, x, reg, m=m, centers_method=centers_method, backend=backend,
                                       seed=seed, pool=pool, **opts)
        t["preconditioner"] = time.perf_counter() - t0
        A = kernel_operator(kernel, x, backend=backend, reg=reg * n, **opts)
        t0 = time.perf_counter()
        res = cg(A, y, rtol=rtol, maxiter=maxiter, precond=P)
        t["cg"] = time.perf_counter() - t0
    finally:
        for obj in owned:
            obj.close()
    return KRRResult(
        coefficients=res.value, x=x, kernel=kernel, reg=reg, cg=res, converged=res.converged,
        preconditioner=P, backend=backend, timings=t,
    )
