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
K̃ = K_mm (the RKHS Gram of the centres, μ = ``ridge`` ≥ 0: the penalty μ‖φ‖²_H) on the α block:
:class:`DualProblem` implements :class:`ntkflow.solvers.least_squares.LeastSquaresProblem` (J, Jᵀ as the
lazy or dense products above, ``penalty()`` = K̃), and the job solves it with
:func:`ntkflow.solvers.least_squares.levenberg_marquardt` and ``CGSolve`` (loss decrease accepted; g
positive definite at every point, ``loss`` = +inf otherwise).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ntkflow._checks import positive_int
from ntkflow.cy import algebra
from ntkflow.cy.config import DualMethod
from ntkflow.cy.model import Model, as_pointset, register
from ntkflow.cy.problems import ProductOperator, cholesky_logdet, fitted_constant
from ntkflow.engine import Kernel, ProjectiveGaussian, ProjectiveMixture, ProjectivePower
from ntkflow.engine.devices import POINTS, REPLICATED, AXIS, device_mesh, padded_length, per_device, shard_points
from ntkflow.engine.kernels.kahler import f_derivative
from ntkflow.engine.kernels.projective import check_projective_base
from ntkflow.solvers import select_centers
from ntkflow.solvers.least_squares import Linearisation, NormalEquations

__all__ = ["DualProblem", "DualKernelModel", "make_kernel", "kernel_spec", "choose_form", "select_dual_centers",
           "dual_metric"]

JACOBIAN_MODES = ("auto", "lazy", "dense")


def make_kernel(config: DualMethod):
    """The scalar projective kernel of ``config``."""
    if config.kernel == "gaussian":
        return ProjectiveGaussian(config.s2)
    if config.kernel == "power":
        return ProjectivePower(config.k)
    coeffs = config.mixture_coeffs or tuple(1.0 / (math.factorial(j) * config.s2 ** j) for j in range(config.k + 1))
    return ProjectiveMixture(coeffs)


def kernel_spec(base) -> dict:
    """The kernel as plain JSON ({"name": ..., parameters}), as stored in model files."""
    if isinstance(base, ProjectiveGaussian):
        return {"name": "gaussian", "s2": float(base.s2)}
    if isinstance(base, ProjectivePower):
        return {"name": "power", "k": int(base.k)}
    return {"name": "mixture", "coeffs": [float(a) for a in base.coeffs]}


def _kernel_from_spec(spec: dict):
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
    return f_derivative(base, u, order)


def _pair_scalars(base, xz, cz, W):
    """u, s, f', f'' for a tile of rows (realified z, (t, 2N)) against all centres ((m, 2N))."""
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
def _sharded_jac_fns(base, tile: int, mesh):
    """The products of :func:`_jac_fns` with the rows sharded over ``mesh`` (every device tiles its own
    block; sums over points are local sums + psum): (grad, gram, sq) with

    grad(rows, cols, u)      = [J_αᵀ u ; −Σ u]                     (m + 1,)
    gram(rows, cols, w, V)   = [J_αᵀ U ; −Σ U],  U = w ∘ (J_α V_α − V_c)   (m + 1, k)
    sq(rows, cols, w)        = Σ_x w_x J_xb²                        (m,)
    """
    jv, jtu, sq, _ = _jac_fns(base, tile)
    rows, cols = (POINTS, POINTS, POINTS), (REPLICATED, REPLICATED, REPLICATED)

    def grad_local(xz, xq, xt, cz, cq, W, u):
        a = jtu(xz, xq, xt, cz, cq, W, u[:, None])[:, 0]
        return jax.lax.psum(jnp.concatenate([a, -jnp.sum(u)[None]]), AXIS)

    def gram_local(xz, xq, xt, cz, cq, W, w, V):
        U = w[:, None] * (jv(xz, xq, xt, cz, cq, W, V[:-1]) - V[-1:])  # (L, k), never leaves the device
        return jax.lax.psum(jnp.concatenate([jtu(xz, xq, xt, cz, cq, W, U), -jnp.sum(U, 0, keepdims=True)]), AXIS)

    def sq_local(xz, xq, xt, cz, cq, W, w):
        return jax.lax.psum(sq(xz, xq, xt, cz, cq, W, w), AXIS)

    return (jax.jit(per_device(grad_local, mesh, rows + cols + (POINTS,), REPLICATED)),
            jax.jit(per_device(gram_local, mesh, rows + cols + (POINTS, REPLICATED), REPLICATED)),
            jax.jit(per_device(sq_local, mesh, rows + cols + (POINTS,), REPLICATED)))


@functools.lru_cache(maxsize=32)
def _metric_fn(base, tile: int):
    """jit: (A_re, A_im (n, N²), e (n,), φ (n,)) with A = Σ_b α_b h s c̄_b c_bᵀ, e = Σ_b α_b u f',
    φ = Σ_b α_b f(u)."""
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
        log_det_fs: (n,) log det g_FS at the points (default: from ``jac``; the job passes
            :func:`ntkflow.manifolds.fs_det`'s), for the starting constant of :meth:`initial`.
        devices: None (one device), an int or "all": the rows of J sharded over a device mesh
            (:mod:`ntkflow.engine.devices`; n padded with zero-weight rows to whole tiles on every device).
            ``linearise`` then returns :class:`~ntkflow.solvers.least_squares.NormalEquations`: JᵀWr/n,
            V ↦ JᵀWJV/n and diag(JᵀWJ)/n computed per device and summed by psum (J V never leaves the
            devices; J is never formed, whatever ``jacobian`` says). The metric and residual stay one
            lazy pass on the default device.
    """

    def __init__(self, base, centers, z, jac, weights, log_omega, *, jacobian: str = "auto",
                 dense_max_entries: int = 25_000_000, tile: int = 256, log_det_fs=None, devices=None):
        check_projective_base(base)
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
        self.log_det_fs = (np.log(np.real(np.linalg.det(self.gfs))) if log_det_fs is None
                           else np.asarray(log_det_fs, dtype=np.float64))  # (n,) for the starting constant
        self.R = row_projection(z, jac)
        self.mode = ("dense" if self.n * self.m <= dense_max_entries else "lazy") if jacobian == "auto" else jacobian
        cz, cq, W = _centre_data(centers)
        self._cols = (jnp.asarray(cz), jnp.asarray(cq), jnp.asarray(W))
        self._xz = jnp.asarray(_pad(_realify(z), self.tile))
        self._gram = None  # K_mm, formed on first use (penalty)
        self.mesh = None if devices is None else device_mesh(devices)
        if self.mesh is not None:
            self.mode = "sharded"
            self._rows = padded_length(self.n, self.mesh, multiple=self.tile)
            self._xz_sharded = self._shard(_realify(z))
            self._w_sharded = self._shard(self.w, pad="zeros")

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
        ld = cholesky_logdet(g)
        if ld is None:
            return None, None
        return ld - self.log_omega - v[-1], np.linalg.inv(g)

    def loss(self, v) -> float:
        r, _ = self.residual(v)
        return math.inf if r is None else float(np.mean(self.w * r * r))

    def gram(self) -> np.ndarray:
        """K_mm = k(c_a, c_b), the RKHS Gram of the centres (‖φ‖²_H = αᵀK_mm α)."""
        if self._gram is None:
            self._gram = np.asarray(self.base.dense(self.centers, self.centers), dtype=np.float64)
        return self._gram

    # ---- the LeastSquaresProblem protocol -------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        """(n,) Monte-Carlo weights normalised to mean 1."""
        return self.w

    def initial(self) -> np.ndarray:
        """θ₀: α = 0 (Fubini–Study), c = weighted mean of log det g_FS − log|Ω|²."""
        v = np.zeros(self.n_params)
        v[-1] = fitted_constant(self.log_det_fs - self.log_omega, self.w)
        return v

    def penalty(self):
        """K̃ = K_mm on the α block (0 for c): the RKHS penalty μ‖φ‖²_H = μ αᵀK_mm α (μ = ``LMConfig.mu``);
        the Gram is formed on the first product."""
        return ProductOperator(self.n_params, self.n_params, forward=self._penalty_mm, adjoint=self._penalty_mm)

    def _penalty_mm(self, V):
        K = self.gram()
        return np.concatenate([K @ V[:-1], np.zeros((1, V.shape[1]))])

    def linearise(self, v) -> Linearisation | None:
        """(r, J, diag JᵀWJ/n) at θ = v: B_x = R† g⁻¹ R, t_x = tr(g⁻¹ g_FS) fixed; J formed once (dense
        mode) or applied by one lazy tiled pass per product. None where g is not positive definite."""
        r, ginv = self.residual(v)
        if r is None:
            return None
        B = np.einsum("naI,nab,nbJ->nIJ", np.conj(self.R), ginv, self.R).reshape(self.n, -1)
        t = np.real(np.einsum("nab,nba->n", ginv, self.gfs))
        xq = np.concatenate([B.real, -B.imag], axis=1)
        if self.mesh is not None:
            return self._normal_equations(r, xq, t)
        rows = (self._xz, jnp.asarray(_pad(xq, self.tile)), jnp.asarray(_pad(t, self.tile)))
        fns = _jac_fns(self.base, self.tile)
        if self.mode == "dense":
            Jd = np.asarray(fns[3](*rows, *self._cols))[: self.n]  # (n, m)
            J = ProductOperator(self.n, self.n_params, forward=lambda V: Jd @ V[:-1] - V[-1:],
                                adjoint=lambda U: np.concatenate([Jd.T @ U, -U.sum(0, keepdims=True)]))
            diag = self.w @ (Jd * Jd)
        else:
            J = ProductOperator(
                self.n, self.n_params,
                forward=lambda V: np.asarray(fns[0](*rows, *self._cols, jnp.asarray(V[:-1])))[: self.n] - V[-1:],
                adjoint=lambda U: np.concatenate([np.asarray(fns[1](*rows, *self._cols, self._padu(U))),
                                                  -U.sum(0, keepdims=True)]))
            diag = np.asarray(fns[2](*rows, *self._cols, self._padu(self.w)))
        return Linearisation(r=r, J=J, diag=np.concatenate([diag, [self.w.sum()]]) / self.n)

    def _shard(self, a, pad: str = "first"):
        """(n, ...) host rows -> padded to whole tiles per device and sharded over the mesh."""
        return shard_points(np.asarray(a), self.mesh, length=self._rows, pad=pad)

    def _normal_equations(self, r, xq, t) -> NormalEquations:
        """(JᵀWr/n, V ↦ JᵀWJV/n, diag JᵀWJ/n) by the sharded products (see the class docstring)."""
        grad_fn, gram_fn, sq_fn = _sharded_jac_fns(self.base, self.tile, self.mesh)
        rows = (self._xz_sharded, self._shard(xq), self._shard(t))
        cols = self._cols
        n, p = self.n, self.n_params
        grad = np.asarray(grad_fn(*rows, *cols, self._shard(self.w * r, pad="zeros"))) / n

        def gram(V):
            return np.asarray(gram_fn(*rows, *cols, self._w_sharded, jnp.asarray(np.asarray(V, dtype=np.float64)))) / n

        diag = np.asarray(sq_fn(*rows, *cols, self._w_sharded))
        return NormalEquations(grad=grad, gram=ProductOperator(p, p, forward=gram, adjoint=gram),
                               diag=np.concatenate([diag, [self.w.sum()]]) / n)

    def _padu(self, u):
        u = np.asarray(u, dtype=np.float64)
        pad = (-self.n) % self.tile
        return jnp.asarray(np.concatenate([u, np.zeros((pad,) + u.shape[1:])]) if pad else u)


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------


@register("dual-kernel")
@dataclass(frozen=True, eq=False)
class DualKernelModel(Model):
    """K = (1/π)[log|z|² + φ], φ = Σ_b α_b k(z, c_b) (k a projective kernel; centres c_b stored).

    ``metric``/``potential``/``eta`` work on any new points (one lazy pass over points × centres)."""

    manifold: object
    base: object
    centers: np.ndarray = field(repr=False)
    alpha: np.ndarray = field(repr=False)
    log_kappa: float = 0.0
    info: dict = field(default_factory=dict, repr=False)
    tile: int = 256

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
        return np.asarray(self.base.dense(ps.points, self.centers)) @ self.alpha

    def _potential_z(self, z):
        ps = as_pointset(self.manifold, z)
        return (np.log(np.sum(np.abs(ps.points) ** 2, axis=-1)) + self.phi(ps)) / np.pi

    def metric_jax(self):
        """JAX function (z (N,), P (d, N), Ω) → g (d, d) for ntkflow.manifolds.curvature."""
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
        meta = {"kernel": kernel_spec(self.base), "log_kappa": float(self.log_kappa), "info": self.info,
                "n_centers": int(len(self.alpha))}
        return meta, {"centers": self.centers, "alpha": self.alpha}

    @classmethod
    def _from_payload(cls, manifold, meta, arrays):
        c, a = np.asarray(arrays["centers"]), np.asarray(arrays["alpha"])
        if c.ndim != 2 or c.shape[1] != manifold.n_coords or a.ndim != 1 or len(a) != len(c) or (
                "n_centers" in meta and int(meta["n_centers"]) != len(c)):
            raise ValueError(f"centers {c.shape} and alpha {a.shape} do not describe {meta.get('n_centers')} centres "
                             f"on a manifold with {manifold.n_coords} coordinates")
        return cls(manifold=manifold, base=_kernel_from_spec(meta["kernel"]), centers=arrays["centers"],
                   alpha=arrays["alpha"], log_kappa=float(meta.get("log_kappa", 0.0)), info=meta.get("info", {}))


# ----------------------------------------------------------------------------------------------
# centres
# ----------------------------------------------------------------------------------------------


def select_dual_centers(base, train, config: DualMethod, *, seed: int = 0, pool: int | None = None) -> np.ndarray:
    """Indices of the m = ``config.centers`` centres among the training points (uniform or RP-Cholesky on
    the kernel, on a uniform pool of ``pool`` points when given)."""
    m = config.centers
    if m > len(train):
        raise ValueError(f"centers: cannot pick {m} centres among {len(train)} training points; pass centers <= n_train.")
    kern = RealifiedProjective(base)
    return select_centers(kern, _realify(train.points), m, method=config.centers_method, seed=seed, pool=pool)


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
