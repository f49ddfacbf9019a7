"""The finite-σ (generalised) Ricci flow: a metric flow in the function space of a frozen kernel.

The metric field over the domain (Tⁿ: coordinates θ; Sⁿ: embedded x ∈ Rⁿ⁺¹) is

    G(t, x) = G₀(x) + Σ_b K(x, x_b) C_b(t)                                      (ambient (A, A) matrices)

over collocation points x_b with quadrature weights w_b (``domain.points``), C_b symmetric. A frozen
metric kernel Θ_ijkl(x, x′) = δ_ik δ_jl K(x, x′) and a local driver V (the tangent-frame velocity the local
flow would have: V = −2 Ric for Hamilton's flow, V = −Θ_loc·δL/δg for a loss) give the flow

    ∂_t G(x) = Σ_b w_b K(x, x_b) E_b V_b E_bᵀ,      i.e.   dC_b/dt = w_b E_b V_b E_bᵀ,        (1)

(E_b the orthonormal tangent frame of ``domain.frames``; on Tⁿ E = I). V_b is computed from the chart jets
of G at x_b: ``V = driver(domain, (g, dg, d2g), points, weights)`` with ``(g, dg, d2g) = domain.chart_jet(G, ∂G, ∂²G,
points)``. G, ∂G, ∂²G at all points come from ONE lazy operator product with the jet kernel
:class:`ntkflow.engine.kernels.jets.GaussianJet` (KeOps, tiled JAX or the dense NumPy reference), never an
n×n matrix.

Kernels (frozen dataclasses, ``bind(domain, points)`` → a binding with ``jets``/``rate``):

- :class:`GaussianKernel` — the infinite-width kernel of the cos-net / gauss-net (flows.md), normalised:
  K_σ(x, x′) = (2πσ²)^{−n/2} Σ_{m∈Zⁿ} exp(−|x − x′ − 2πm|²/(2σ²)) on Tⁿ (Fourier multiplier e^{−σ²|k|²/2}),
  K_σ(x, x′) = (2πσ²)^{−n/2} exp(−|x − x′|²/(2σ²)) (chordal distance) on Sⁿ (mass → 1 as σ → 0, see
  :func:`sphere_kernel_moments`). As σ → 0, (1) tends to the local flow ∂_t g = V.
- :class:`CosNetKernel` — the empirical metric-NTK of a cos-net of width N whose readout alone trains,
  Θ_N = Φ Φᵀ ⊗ I with features φ_i(x) = σ_a/√N cos(B_i·x + c_i) (``ntkflow.ntk.CosNet``); on Sⁿ, B ~ N(0, I/σ²)
  (E Θ_N = K_σ exactly); on Tⁿ the frequencies are integers with P(B) ∝ e^{−σ²|B|²/2} (periodic features,
  E Θ_N = the wrapped K_σ). The state is the readout a (N, p), G = G₀ + Φ a, da/dt = Φᵀ u: features, never
  an n×n matrix.

:func:`kernel_flow` integrates (1) with a SciPy Runge–Kutta pair with error control (``reference.integrate``:
one accepted step at a time, the singularity check after each, the last good state kept);
:func:`linearised_rate` gives the exact linearisation (jax.jvp) used by the Fourier-mode test.
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntkflow._checks import finite_array, positive_float, positive_int
from ntkflow.engine import kernel_operator
from ntkflow.engine.kernels.jets import GaussianJet, hessian_pairs, jet_size, normalised_variance
from ntkflow.ntk.networks import CosNet

from . import geometry
from .domains import Sphere, Torus
from .reference import ReferenceResult, StepInfo, integrate

__all__ = [
    "GaussianKernel",
    "CosNetKernel",
    "KernelFlowProblem",
    "kernel_flow_problem",
    "KernelMetricField",
    "kernel_flow",
    "linearised_rate",
    "sym_pairs",
    "pack_sym",
    "unpack_sym",
    "sphere_kernel_moments",
]

BACKENDS = ("keops", "jax", "dense")


# ----------------------------------------------------------------------------------------------
# packed symmetric matrices: p = A(A+1)/2 components (a ≤ b, row-major)
# ----------------------------------------------------------------------------------------------


def sym_pairs(A: int) -> list[tuple[int, int]]:
    """The (a, b), a ≤ b, of the packed components of a symmetric A×A matrix."""
    return [(a, b) for a in range(A) for b in range(a, A)]


def pack_sym(U):
    """(m, A, A) symmetric -> (m, p) upper triangle (NumPy or JAX)."""
    A = U.shape[-1]
    ia, ib = np.array(sym_pairs(A)).T
    return U[..., ia, ib]


def unpack_sym(P, A: int):
    """(m, p, *rest) packed -> (m, A, A, *rest) symmetric (NumPy or JAX)."""
    xp = np if isinstance(P, np.ndarray) else jnp
    idx = np.zeros((A, A), dtype=int)
    for i, (a, b) in enumerate(sym_pairs(A)):
        idx[a, b] = idx[b, a] = i
    return xp.take(P, idx.reshape(-1), axis=1).reshape((P.shape[0], A, A) + tuple(P.shape[2:]))


def _jets_to_ambient(R, A: int):
    """Jet rows R (m, J, p) of the packed field -> (F (m,A,A), dF (m,A,A,A), d2F (m,A,A,A,A)), ∂ last."""
    val = R[:, 0]  # (m, p)
    grad = R[:, 1 : 1 + A]  # (m, A_c, p)
    xp = np if isinstance(R, np.ndarray) else jnp
    rows = [[None] * A for _ in range(A)]
    for i, (c, d) in enumerate(hessian_pairs(A)):
        rows[c][d] = rows[d][c] = R[:, 1 + A + i]
    hess = xp.stack([xp.stack(r, axis=1) for r in rows], axis=1)  # (m, A_c, A_d, p)
    F = unpack_sym(val, A)
    dF = unpack_sym(xp.moveaxis(grad, 2, 1), A)  # (m, A, A, A_c)
    d2F = unpack_sym(xp.moveaxis(hess, 3, 1), A)  # (m, A, A, A_c, A_d)
    return F, dF, d2F


def _takes_weights(fn) -> bool:
    """Whether the driver accepts ``weights`` (global drivers such as LambdaDriver need them)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    return "weights" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _check_domain(domain):
    if not isinstance(domain, (Torus, Sphere)):
        raise TypeError(f"domain: expected Torus(n) or Sphere(n) from ntkflow.ricci.domains, received {domain!r}.")


# ----------------------------------------------------------------------------------------------
# frozen kernels
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaussianKernel:
    """Θ̄_ijkl(x, x′) = δ_ik δ_jl K_σ(x, x′), the normalised Gaussian of width σ (module docstring).

    Args:
        sigma: width σ > 0 (in θ on Tⁿ; in the embedding Rⁿ⁺¹ of the unit sphere on Sⁿ; ≤ 1.1 on Tⁿ).
        backend: "keops" (fused reductions, never an n×n array), "jax" (row tiles; jit, differentiable,
            runs on a GPU) or "dense" (NumPy reference; small n only).
        tile: rows per JAX tile (None: tiles of ≤ 8·10⁶ kernel entries).
    """

    sigma: float
    backend: str = "keops"
    tile: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "sigma", positive_float("sigma", self.sigma))
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, received {self.backend!r}.")
        if self.tile is not None:
            positive_int("tile", self.tile)

    def jet_kernel(self, domain) -> GaussianJet:
        """The engine kernel of the (value, ∂, ∂²) jet rows of K_σ on the domain's ambient coordinates."""
        _check_domain(domain)
        period = 2.0 * math.pi if isinstance(domain, Torus) else None
        return GaussianJet(self.sigma, domain.ambient_dim, normalised_variance(self.sigma, domain.dim), period)

    def bind(self, domain, points) -> "_GaussianBinding":
        return _GaussianBinding(self, domain, np.ascontiguousarray(points, dtype=np.float64))


@functools.lru_cache(maxsize=32)
def _tiled_jets(kj: GaussianJet):
    """jit of (x tiles (nt, tile, A), y (m, A), C (m, p)) -> (nt, tile, J, p) = Σ_b K-jet(x, y_b) C_b."""

    def apply(xt, y, C):
        return jax.lax.map(lambda xb: jnp.einsum("imj,mr->ijr", kj.jax_block(xb, y)[..., 0], C), xt)

    return jax.jit(apply)


@dataclass(frozen=True)
class _GaussianBinding:
    """K_σ on fixed collocation points: state C (m, p); jets(C, x) = Σ_b K-jet(x, x_b) C_b; rate(u) = u."""

    kernel: GaussianKernel
    domain: object
    points: np.ndarray  # (m, A)

    @property
    def n_state(self) -> int:
        return self.points.shape[0]

    def jets(self, state, at=None):
        """Jet rows (n, J, p) of Σ_b K(x, x_b) C_b at ``at`` (default: the collocation points)."""
        x = self.points if at is None else np.ascontiguousarray(at, dtype=np.float64)
        C = np.asarray(state, dtype=np.float64)
        kj = self.kernel.jet_kernel(self.domain)
        J = jet_size(self.domain.ambient_dim)
        if self.kernel.backend == "jax":
            return np.asarray(self.jets_jax(jnp.asarray(C), x))
        op = kernel_operator(kj, x, self.points, backend=self.kernel.backend)
        return op.mm(C).reshape(x.shape[0], J, C.shape[1])

    def jets_jax(self, C, at=None):
        """Pure-JAX jet rows (n, J, p) (row tiles of ``jax.lax.map`` under one cached jit; differentiable in C)."""
        x = self.points if at is None else np.asarray(at, dtype=np.float64)
        kj = self.kernel.jet_kernel(self.domain)
        m, J = self.points.shape[0], jet_size(self.domain.ambient_dim)
        tile = self.kernel.tile or max(8, min(1024, 8_000_000 // max(1, m * J)))
        tile = int(min(tile, x.shape[0]))
        n = x.shape[0]
        nt = -(-n // tile)
        xp = np.concatenate([x, np.repeat(x[:1], nt * tile - n, axis=0)]) if nt * tile > n else x
        out = _tiled_jets(kj)(jnp.asarray(xp.reshape(nt, tile, -1)), jnp.asarray(self.points), C)
        return out.reshape(nt * tile, J, -1)[:n]

    def rate(self, u):
        return u

    def rate_jax(self, u):
        return u


@dataclass(frozen=True)
class CosNetKernel:
    """The empirical metric-NTK of a width-N cos-net with trained readout (module docstring).

    Θ_N(x, x′) = (1/N) Σ_i σ_a² cos(B_i·x + c_i) cos(B_i·x′ + c_i), σ_a² chosen so that E Θ_N = K_σ of
    :class:`GaussianKernel`. Args: sigma (width σ), width N, seed (PRNG seed of the draw of B and c).
    """

    sigma: float
    width: int
    seed: int = 0
    chunk: int = 8192

    def __post_init__(self):
        object.__setattr__(self, "sigma", positive_float("sigma", self.sigma))
        object.__setattr__(self, "width", positive_int("width", self.width))
        positive_int("chunk", self.chunk)
        if not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed: expected an int, received {self.seed!r}.")

    def network(self, domain) -> tuple[CosNet, dict]:
        """(net, params): the ``ntkflow.ntk.CosNet`` (trainable=("a",)) and its parameters whose readout NTK
        is Θ_N. On Tⁿ the frequencies b are integers (σ_b = √n, so the cosine sees b·θ + c)."""
        _check_domain(domain)
        A, n, s = domain.ambient_dim, domain.dim, self.sigma
        p = A * (A + 1) // 2
        key = jax.random.PRNGKey(int(self.seed))
        if isinstance(domain, Sphere):
            var = normalised_variance(s, n)
            net = CosNet(d_in=A, width=self.width, sigma_a=math.sqrt(2 * var), sigma_b=math.sqrt(A) / s,
                         n_out=p, trainable=("a",))
            params = net.init(key)
        else:
            z1, ks = _discrete_gaussian_table(s)
            sig_a = math.sqrt(2.0 * (z1 / (2 * math.pi)) ** n)
            net = CosNet(d_in=n, width=self.width, sigma_a=sig_a, sigma_b=math.sqrt(n), n_out=p, trainable=("a",))
            params = net.init(key)
            kb = jax.random.fold_in(key, 7)
            probs = np.exp(-0.5 * s**2 * ks.astype(float) ** 2)
            idx = jax.random.choice(kb, len(ks), shape=(self.width, n), p=jnp.asarray(probs / probs.sum()))
            params = {**params, "b": jnp.asarray(ks)[idx].astype(jnp.float64)}
        params = {**params, "a": jnp.zeros_like(params["a"])}
        return net, params

    def bind(self, domain, points) -> "_FeatureBinding":
        net, params = self.network(domain)
        B = np.asarray(params["b"]) * (net.sigma_b / math.sqrt(net.d_in))  # (N, A) effective frequencies
        return _FeatureBinding(self, domain, np.ascontiguousarray(points, dtype=np.float64), B,
                               np.asarray(params["c"]), net.sigma_a / math.sqrt(self.width))


def _discrete_gaussian_table(s: float):
    """(Z₁, k): Z₁ = Σ_k e^{−σ²k²/2} and the integers k kept (those with e^{−σ²k²/2} > 1e-18)."""
    kmax = int(math.ceil(math.sqrt(2 * 41.5) / s)) + 1
    ks = np.arange(-kmax, kmax + 1)
    return float(np.sum(np.exp(-0.5 * s**2 * ks.astype(float) ** 2))), ks


@dataclass(frozen=True)
class _FeatureBinding:
    """Θ_N = Φ Φᵀ on the collocation points: state a (N, p); jets(a, x) = Φ-jets(x) a; rate(u) = Φ(x_b)ᵀ u."""

    kernel: CosNetKernel
    domain: object
    points: np.ndarray  # (m, A)
    B: np.ndarray  # (N, A)
    c: np.ndarray  # (N,)
    scale: float  # σ_a / √N

    @property
    def n_state(self) -> int:
        return self.B.shape[0]

    def _chunks(self, x):
        step = self.kernel.chunk
        return [x[i : i + step] for i in range(0, x.shape[0], step)]

    def jets_jax(self, a, at=None):
        """Jet rows (n, J, p): value Σ φ a, ∂_c = −Σ s sin(·) B_c a, ∂_c∂_d = −Σ s cos(·) B_c B_d a."""
        x = self.points if at is None else np.asarray(at, dtype=np.float64)
        A = self.domain.ambient_dim
        B, c, s = jnp.asarray(self.B), jnp.asarray(self.c), self.scale
        outs = []
        for xc in self._chunks(x):
            pre = jnp.asarray(xc) @ B.T + c  # (n, N)
            cs, sn = s * jnp.cos(pre), s * jnp.sin(pre)
            rows = [cs @ a] + [-(sn * B[:, k]) @ a for k in range(A)]
            rows += [-(cs * (B[:, k] * B[:, l])) @ a for k, l in hessian_pairs(A)]
            outs.append(jnp.stack(rows, axis=1))
        return jnp.concatenate(outs, axis=0)

    def jets(self, state, at=None):
        return np.asarray(self.jets_jax(jnp.asarray(state), at))

    def features(self, at=None):
        """Φ (n, N) with Θ_N(x, x′) = Φ(x) Φ(x′)ᵀ."""
        x = self.points if at is None else np.asarray(at, dtype=np.float64)
        return self.scale * np.cos(x @ self.B.T + self.c)

    def rate_jax(self, u):
        return jnp.concatenate([self.scale * jnp.cos(jnp.asarray(xc) @ jnp.asarray(self.B).T + jnp.asarray(self.c))
                                for xc in self._chunks(self.points)], axis=0).T @ u

    def rate(self, u):
        return np.asarray(self.rate_jax(jnp.asarray(u)))


# ----------------------------------------------------------------------------------------------
# the metric field and the flow problem
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelMetricField:
    """G(x) = G₀(x) + Σ K(x, x_b) C_b (or G₀ + Φ a) at any points: ``ambient_jets(points)`` as every field."""

    base: object  # a field with ambient_jets (e.g. domains.metric_from_function(...))
    binding: object
    state: np.ndarray  # (n_state, p)

    def ambient_jets(self, points):
        pts = np.asarray(points, dtype=np.float64)
        A = self.binding.domain.ambient_dim
        G0, dG0, d2G0 = (np.asarray(t) for t in self.base.ambient_jets(pts))
        F, dF, d2F = _jets_to_ambient(self.binding.jets(self.state, pts), A)
        return G0 + F, dG0 + dF, d2G0 + d2F


@dataclass(frozen=True)
class KernelFlowProblem:
    """The ODE (1) on the flat state y = state.ravel(): ``rhs``, ``scalars``, ``singularity`` (the problem
    protocol of :func:`ntkflow.ricci.reference.integrate`), plus ``velocity_jax`` for linearisation.

    Build with :func:`kernel_flow_problem`. Scalars at a state: ``volume`` Σ_b w_b √det g_b, ``R_max``,
    ``R_min`` (scalar curvature at the collocation points), ``anisotropy`` max_b (λ_max − λ_min)/λ_mean of
    g_b, ``min_eig`` min_b λ_min(g_b), plus the caller's ``track`` functions f(domain, jets, points, weights).
    """

    domain: object
    base: object
    kernel: object
    driver: Callable
    points: np.ndarray  # (m, A)
    weights: np.ndarray  # (m,)
    binding: object
    G0: tuple  # ambient jets of the base field at the points
    frames: np.ndarray  # (m, A, n)
    track: dict
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def state_shape(self) -> tuple[int, int]:
        A = self.domain.ambient_dim
        return (self.binding.n_state, A * (A + 1) // 2)

    def initial(self) -> np.ndarray:
        return np.zeros(int(np.prod(self.state_shape)))

    # -- the local part, in JAX ---------------------------------------------------------------
    def chart_jets_jax(self, R):
        """Chart jets (g, dg, d2g) at the points from the kernel jet rows R (m, J, p)."""
        A = self.domain.ambient_dim
        F, dF, d2F = _jets_to_ambient(R, A)
        G0, dG0, d2G0 = self.G0
        return self.domain.chart_jet(G0 + F, dG0 + dF, d2G0 + d2F, self.points)

    def velocity_jax(self, R):
        """u (m, p): packed w_b E_b V_b E_bᵀ from jet rows R."""
        jets = self.chart_jets_jax(R)
        if _takes_weights(self.driver):
            V = self.driver(self.domain, jets, self.points, weights=self.weights)  # (m, n, n)
        else:  # a driver of (domain, jets, points) only, e.g. a purely local one
            V = self.driver(self.domain, jets, self.points)
        E = jnp.asarray(self.frames)
        U = jnp.einsum("qia,qab,qjb->qij", E, V, E) * jnp.asarray(self.weights)[:, None, None]
        return pack_sym(U), jets

    def _local(self, R):
        # eager JAX (not jit): the chart derivatives of all m points would enter a jit as constants
        u, (g, dg, d2g) = self.velocity_jax(R)
        return u, g, geometry.scalar(g, dg, d2g)

    def rhs(self, t, y):
        """dy/dt of (1) (NumPy in, NumPy out); caches the scalars of this state for ``scalars``."""
        state = y.reshape(self.state_shape)
        R = self.binding.jets(state)
        u, g, Rs = self._local(jnp.asarray(R))
        rate = np.asarray(self.binding.rate(np.asarray(u))).ravel()
        self._cache["last"] = (y.copy(), np.asarray(g), np.asarray(Rs), R)
        return rate

    def _geometry_of(self, y):
        last = self._cache.get("last")
        if last is None or last[0].shape != y.shape or not np.array_equal(last[0], y):
            self.rhs(0.0, y)
            last = self._cache["last"]
        return last

    def scalars(self, y) -> dict:
        _, g, Rs, R = self._geometry_of(y)
        with np.errstate(invalid="ignore"):
            ev = np.linalg.eigvalsh(g)
            out = {
                "volume": float(np.sum(self.weights * np.sqrt(np.linalg.det(g)))),
                "R_max": float(np.max(Rs)),
                "R_min": float(np.min(Rs)),
                "min_eig": float(np.min(ev[:, 0])),
                "anisotropy": float(np.max((ev[:, -1] - ev[:, 0]) / np.mean(ev, axis=1))),
            }
        if self.track:
            jets = tuple(np.asarray(a) for a in self.chart_jets_jax(jnp.asarray(R)))
            for name, fn in self.track.items():
                out[name] = float(fn(self.domain, jets, self.points, self.weights))
        return out

    def is_good(self, y) -> bool:
        """Is y still a metric (finite, positive definite at every collocation point)? ``integrate`` discards a
        step that fails this and refines from the last accepted state, so the last good state is a metric."""
        if not np.all(np.isfinite(y)):
            return False
        _, g, Rs, _ = self._geometry_of(y)
        return geometry.is_metric(g, Rs)

    def singularity(self, y, limit: float):
        _, g, Rs, _ = self._geometry_of(y)
        return geometry.metric_defect(g, Rs, limit)

    def field(self, y) -> KernelMetricField:
        """The metric field at the flat state y (evaluate it anywhere with ``ambient_jets``)."""
        return KernelMetricField(self.base, self.binding, np.asarray(y).reshape(self.state_shape))


def kernel_flow_problem(domain, metric, kernel, driver: Callable, points, weights, *, track: dict | None = None):
    """Set up (1): ``metric`` a field with ``ambient_jets`` (``domains.metric_from_function``), ``kernel`` a
    :class:`GaussianKernel` or :class:`CosNetKernel`, ``driver(domain, (g, dg, d2g), points, weights) -> V (m, n, n)``
    the local velocity (``perelman.hamilton_driver``: −2 Ric; ``LambdaDriver``/``FDriver``: −Θ_loc·δL/δg), points (m, A) and weights (m,) from ``domain.points``."""
    _check_domain(domain)
    if not hasattr(metric, "ambient_jets"):
        raise TypeError(
            f"metric: expected a field with ambient_jets(points) (e.g. domains.metric_from_function(fn, domain)), "
            f"received {type(metric).__name__}."
        )
    if not hasattr(kernel, "bind"):
        raise TypeError(f"kernel: expected GaussianKernel(sigma) or CosNetKernel(sigma, width), received {kernel!r}.")
    if not callable(driver):
        raise TypeError(f"driver: expected a function (domain, (g, dg, d2g), points, weights) -> (m, n, n), e.g. ntkflow.ricci.perelman.hamilton_driver, received {driver!r}.")
    pts = finite_array("points", points, ndim=2, dtype=np.float64)
    if pts.shape[1] != domain.ambient_dim:
        raise ValueError(
            f"points: {domain!r} has ambient dimension {domain.ambient_dim}, received points of shape {pts.shape}; "
            f"use domain.points(...)."
        )
    w = finite_array("weights", weights, ndim=1, dtype=np.float64)
    if w.shape[0] != pts.shape[0]:
        raise ValueError(f"weights: need one weight per point ({pts.shape[0]}), received shape {w.shape}.")
    track = dict(track or {})
    G0 = tuple(jnp.asarray(a) for a in metric.ambient_jets(pts))
    return KernelFlowProblem(domain, metric, kernel, driver, pts, w, kernel.bind(domain, pts), G0,
                             np.asarray(domain.frames(pts)), track)


def kernel_flow(domain, metric, kernel, driver: Callable, points, weights, t_end: float, *, t_out=(),
                method: str = "RK45", rtol: float = 1e-6, atol: float = 1e-9, max_steps: int = 100_000,
                curvature_limit: float = 1e4, first_step: float | None = None, track: dict | None = None,
                on_step: Callable[[StepInfo], None] | None = None) -> tuple[ReferenceResult, KernelFlowProblem]:
    """Integrate the finite-σ flow (1) from G₀ = ``metric`` (C = 0) to ``t_end``.

    SciPy's explicit Runge–Kutta pair ``method`` ("RK45", "DOP853", "RK23") with error control
    (rtol, atol on the state), stepped by :func:`ntkflow.ricci.reference.integrate`: after every accepted
    step the scalars (volume, R_max, R_min, min_eig, anisotropy and ``track``) are recorded and the flow stops
    (status "singular", last good state kept) when the curvature exceeds ``curvature_limit`` or g stops being
    positive definite. Returns (result, problem): ``result.t_out``/``result.y_out`` hold the states at the
    requested ``t_out`` (use ``problem.field(y)`` to evaluate the metric anywhere), ``result.history`` the
    scalars after each step, ``result.nfev`` the right-hand-side evaluations.
    """
    prob = kernel_flow_problem(domain, metric, kernel, driver, points, weights, track=track)
    t_end = positive_float("t_end", t_end)
    res = integrate(prob, prob.initial(), t_end, t_out=t_out, method=method, rtol=rtol, atol=atol,
                    first_step=first_step, max_steps=max_steps, curvature_limit=curvature_limit, on_step=on_step)
    return res, prob


def linearised_rate(problem: KernelFlowProblem, y0=None):
    """The exact linearisation of (1) at y0 (default 0): a function δy ↦ J δy by ``jax.jvp`` of the pure-JAX
    right-hand side (``GaussianKernel(backend="jax")`` or ``CosNetKernel`` bindings)."""
    b = problem.binding
    shape = problem.state_shape
    y0 = jnp.zeros(int(np.prod(shape))) if y0 is None else jnp.asarray(y0)

    def f(y):
        R = b.jets_jax(y.reshape(shape))
        u, _ = problem.velocity_jax(R)
        return b.rate_jax(u).reshape(-1)

    @jax.jit
    def jvp(dy):
        return jax.jvp(f, (y0,), (dy,))[1]

    return jvp


def sphere_kernel_moments(sigma: float, n: int) -> tuple[float, float]:
    """(M₀, M₂) = ∫_{Sⁿ} K_σ(x, y) dV(y) and ∫_{Sⁿ} K_σ(x, y) sin²θ dV(y), θ = ∠(x, y), for the chordal
    K_σ = (2πσ²)^{−n/2} exp(−(1 − cos θ)/σ²) on the unit sphere (scipy quad). On the round sphere of radius r
    (G₀ = r² I, C = 0, V = −2(n−1) I) the tangent part of the velocity (1) is −2(n−1)(M₀ − M₂/n) I."""
    from scipy.integrate import quad

    sigma = positive_float("sigma", sigma)
    area = 2 * math.pi ** (n / 2) / math.gamma(n / 2)  # |S^{n−1}|
    v = normalised_variance(sigma, n)
    k = lambda th: v * math.exp(-(1 - math.cos(th)) / sigma**2) * area * math.sin(th) ** (n - 1)
    m0 = quad(k, 0, math.pi, epsabs=0, epsrel=1e-13, limit=200)[0]
    m2 = quad(lambda th: k(th) * math.sin(th) ** 2, 0, math.pi, epsabs=0, epsrel=1e-13, limit=200)[0]
    return m0, m2
