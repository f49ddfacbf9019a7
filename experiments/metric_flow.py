r"""The talk's Kähler *metric* flow: a frozen infinite-width metric-NTK acting on metric components.

A network that outputs the d×d Hermitian metric g_{ij̄}(x) of the hypersurface X directly (its d²
real components, packed as in :mod:`ntkflow.cy.algebra`: [diag, Re upper, Im upper]) has, at
infinite width, the metric-NTK Θ_{ij̄kl̄}(x, x') = δ_ik δ_jl Θ(x, x') (no mixing of components;
:class:`ntkflow.engine.NoMixing`) with Θ a scalar kernel on the points (here the projective Gaussian
exp((u − 1)/s²) or u^k, u = |⟨z, z'⟩|²/(|z|²|z'|²)). Gradient flow of the Monge–Ampère loss

    L[g] = (1/n) Σ_x w(x) l(g(x)),   l = (log det g − log κ|Ω|²)²   ("log", default)
                                     l = (1 − det g/(κ|Ω|²))²        ("ma"),

(w the Monte-Carlo weights normalised to mean 1, κ fixed to the Fubini–Study value
κ = ⟨det g_FS/|Ω|²⟩_w, the volume of the Kähler class) is

    dg(x)/dt = −(1/n) Σ_{x'} w(x') Θ(x, x') ∂l/∂g(x')        (the talk's d g_{ij̄}/dt, dμ = w/n).

With g_0 = g_FS (pulled back, in each point's reference chart) the solution stays in
g_0 + span_x' Θ(·, x'): g_t(x) = g_FS(x) + Σ_j Θ(x, x_j) α_j(t), α_j ∈ R^{d²}, and

    dα_j/dt = −(1/n) w_j ∂l/∂g(x_j)|_{g_t},        g_t(X) = g_FS(X) + Θ(X, X) α.

This is integrated with :func:`scipy.integrate.solve_ivp` (one lazy Θ(X, X) product with d² columns
per right-hand side). Gradient of log det in packed coordinates: ∂ log det g/∂ pack(g) =
τ ∘ pack(g^{-1}) with τ = :func:`~ntkflow.cy.algebra.trace_weights` (tr(AB) = ⟨pack A, τ∘pack B⟩).

Fixed point. Every training point only sees r_i = log det g(x_i) − log κ|Ω_i|², so the flow stops
when r = 0 pointwise (σ_train → 0). The linearised flow is dr/dt = −(2/n)(Θ ∘ V Vᵀ) W r with
V_i = τ∘pack(g_i^{-1}); :func:`fixed_point` takes Gauss–Newton steps of minimal RKHS norm,
α ← α + V∘c with (Θ ∘ V Vᵀ) c = −r solved by CG on the lazy operator (Schur product: one Θ product
per CG iteration), and lands on a zero-loss point of the same function space.

Kählerness. Nothing ties the flowed g to be closed: the kernel part Σ_j Θ(x, x_j) α_j of a
metric-valued network is a generic Hermitian matrix field, not ∂∂̄ of anything. :func:`kahler_defect`
measures dω in a chart: T_{kij̄} = ∂_k g_{ij̄} − ∂_i g_{kj̄} (holomorphic derivatives of the local
coordinates, by central finite differences of the metric function at points moved along X in the same
chart), relative to ‖∂g‖. Potential flows (g = g_FS + ∂∂̄φ, Donaldson) have T = 0 to round-off.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ntkflow._checks import increasing_times, positive_float, positive_int
from ntkflow.cy import algebra
from ntkflow.cy.model import as_pointset
from ntkflow.engine import NoMixing, ProjectiveGaussian, ProjectivePower, kernel_operator
from ntkflow.manifolds import PointSet, fs_pullback, pointset_from_points, sigma
from ntkflow.solvers import as_operator, cg

__all__ = [
    "MetricFlowConfig",
    "MetricFlowProblem",
    "MetricFlowResult",
    "KernelMetric",
    "make_kernel",
    "run_metric_flow",
    "fixed_point",
    "kahler_defect",
    "shifted_pointset",
]

KERNELS = ("gaussian", "power")
LOSSES = ("log", "ma")


@dataclass(frozen=True)
class MetricFlowConfig:
    """Settings of the metric flow.

    kernel: "gaussian" (exp((u − 1)/s²), width ``s2``) or "power" (u^``power``); loss: "log" or "ma"
    (module docstring); times: output times of the ODE (increasing, > 0); method/rtol/atol: passed to
    ``solve_ivp``; max_rhs: stop the integration after this many right-hand sides (the result records
    where it stopped); gn_steps: Gauss–Newton steps towards the fixed point after the flow (0: none);
    gn_cg_rtol/gn_cg_maxiter: CG on the Schur-product system; backend: engine backend for Θ products
    ("jax", "keops" or "dense").
    """

    kernel: str = "gaussian"
    s2: float = 0.1
    power: int = 4
    loss: str = "log"
    times: tuple = (0.1, 1.0, 10.0, 100.0)
    method: str = "RK45"
    rtol: float = 1e-6
    atol: float = 1e-9
    max_rhs: int = 20_000
    gn_steps: int = 0
    gn_cg_rtol: float = 1e-10
    gn_cg_maxiter: int = 2000
    backend: str = "jax"

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel: expected one of {KERNELS}, received {self.kernel!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, received {self.loss!r}.")
        positive_float("s2", self.s2)
        positive_int("power", self.power)
        positive_float("rtol", self.rtol)
        positive_float("atol", self.atol)
        positive_int("max_rhs", self.max_rhs)
        positive_float("gn_cg_rtol", self.gn_cg_rtol)
        positive_int("gn_cg_maxiter", self.gn_cg_maxiter)
        if isinstance(self.gn_steps, bool) or not isinstance(self.gn_steps, (int, np.integer)) or self.gn_steps < 0:
            raise ValueError(f"gn_steps: expected an integer >= 0, received {self.gn_steps!r}.")
        object.__setattr__(self, "times", increasing_times("times", self.times))
        if self.backend not in ("jax", "keops", "dense"):
            raise ValueError(f"backend: expected 'jax', 'keops' or 'dense', received {self.backend!r}.")


def make_kernel(config: MetricFlowConfig):
    """The scalar kernel Θ(x, x') of the config (a C*-invariant projective kernel)."""
    if config.kernel == "gaussian":
        return ProjectiveGaussian(s2=config.s2)
    return ProjectivePower(k=config.power)


def _packed_logdet_grad(g):
    """log det g (n,) and ∂ log det g/∂ pack(g) = τ∘pack(g^{-1}) (n, d²); det ≤ 0 gives NaN."""
    d = g.shape[-1]
    sign, logdet = np.linalg.slogdet(g)
    logdet = np.where(np.real(sign) > 0.5, logdet, np.nan)
    ginv = np.linalg.inv(g)
    ginv = 0.5 * (ginv + np.conj(np.swapaxes(ginv, -1, -2)))
    return logdet.real, algebra.trace_weights(d)[None, :] * algebra.pack(ginv)


@dataclass(frozen=True, eq=False)
class MetricFlowProblem:
    """The metric flow on a training PointSet: Θ(X, X) as a lazy NoMixing operator (d² components).

    Build with :meth:`build`. ``g0`` (n, d²) packed g_FS; ``log_target`` log κ|Ω|²; ``w`` weights /
    mean; ``op`` the (n·d²)×(n·d²) operator δ_ik δ_jl Θ(x, x')."""

    ps: object
    kernel: object
    loss: str
    kappa: float
    g0: np.ndarray = field(repr=False)
    log_target: np.ndarray = field(repr=False)
    w: np.ndarray = field(repr=False)
    op: object = field(repr=False)
    backend: str = "jax"

    @classmethod
    def build(cls, ps, config: MetricFlowConfig = MetricFlowConfig(), *, kappa: float | None = None):
        if not isinstance(ps, PointSet):
            raise TypeError(f"ps: expected an ntkflow.manifolds.PointSet, received {type(ps).__name__}.")
        if not isinstance(config, MetricFlowConfig):
            raise TypeError(f"config: expected a MetricFlowConfig, received {type(config).__name__}.")
        d = ps.dim
        g_fs = fs_pullback(ps)
        det = np.real(np.linalg.det(g_fs))
        w = ps.weights / np.mean(ps.weights)
        if kappa is None:
            kappa = float(np.mean(w * det / ps.omega_sq))
        kappa = positive_float("kappa", kappa)
        kernel = make_kernel(config)
        op = kernel_operator(NoMixing(kernel, d * d), ps.points, backend=config.backend)
        return cls(ps=ps, kernel=kernel, loss=config.loss, kappa=kappa, g0=algebra.pack(g_fs),
                   log_target=np.log(kappa * ps.omega_sq), w=w, op=op, backend=config.backend)

    @property
    def n(self) -> int:
        return len(self.ps)

    @property
    def p(self) -> int:
        return self.g0.shape[1]

    def metric_packed(self, alpha) -> np.ndarray:
        """g_t(X) = g_FS(X) + Θ(X, X) α, packed (n, d²), for α (n, d²)."""
        alpha = np.asarray(alpha, dtype=float).reshape(self.n, self.p)
        return self.g0 + np.asarray(self.op.mv(alpha.reshape(-1))).reshape(self.n, self.p)

    def residual(self, G) -> np.ndarray:
        """r = log det g − log κ|Ω|² (n,) for packed G (NaN where det g ≤ 0)."""
        logdet, _ = _packed_logdet_grad(algebra.unpack(G, self.ps.dim))
        return logdet - self.log_target

    def loss_and_grad(self, G):
        """(L, pointwise l (n,), ∂l/∂pack(g) (n, d²)) for packed G; L = mean(w l)."""
        logdet, dlog = _packed_logdet_grad(algebra.unpack(G, self.ps.dim))
        r = logdet - self.log_target
        if self.loss == "log":
            l = r * r
            grad = (2.0 * r)[:, None] * dlog
        else:  # ma: l = (1 − q)², q = det g/(κ|Ω|²) = e^r, ∂q/∂G = q · ∂ log det
            q = np.exp(r)
            l = (1.0 - q) ** 2
            grad = (-2.0 * (1.0 - q) * q)[:, None] * dlog
        return float(np.mean(self.w * l)), l, grad

    def loss_of_packed(self, G) -> float:
        return self.loss_and_grad(G)[0]

    def rhs(self, alpha) -> np.ndarray:
        """dα/dt = −(1/n) w ∘ ∂l/∂g at g_t(X) (n, d²); dg(X)/dt = Θ(X, X) dα/dt."""
        G = self.metric_packed(alpha)
        _, _, grad = self.loss_and_grad(G)
        return -(self.w[:, None] * grad) / self.n

    def sigma(self, G) -> float:
        return sigma(self.ps, np.real(np.linalg.det(algebra.unpack(G, self.ps.dim))))


@dataclass(frozen=True, eq=False)
class KernelMetric:
    """The flowed metric as a function on X: g(x) = g_FS(x) + unpack(Σ_j Θ(x, x_j) α_j) (chart components).

    ``metric(ps)`` (n, d, d); ``det(ps)``; the same chart convention as every ntkflow model (each
    point's reference chart, or the chart a PointSet was built in)."""

    manifold: object
    kernel: object
    centres: np.ndarray = field(repr=False)  # (m, N) complex training points
    alpha: np.ndarray = field(repr=False)  # (m, d²)
    backend: str = "jax"

    def packed_delta(self, ps) -> np.ndarray:
        B = kernel_operator(self.kernel, ps.points, self.centres, backend=self.backend)
        return np.asarray(B.mm(np.ascontiguousarray(self.alpha)))

    def metric(self, ps) -> np.ndarray:
        ps = as_pointset(self.manifold, ps)
        return fs_pullback(ps) + algebra.unpack(self.packed_delta(ps), ps.dim)

    def det(self, ps) -> np.ndarray:
        return np.real(np.linalg.det(self.metric(ps)))


@dataclass(frozen=True)
class MetricFlowResult:
    """Result of :func:`run_metric_flow`: the trajectory (per output time: loss, σ train) and the final α."""

    times: np.ndarray
    loss: np.ndarray
    sigma_train: np.ndarray
    alpha: np.ndarray  # (n, d²) at the last time reached (after the GN polish if any)
    model: KernelMetric
    n_rhs: int
    status: str  # "completed" | "max_rhs" | solve_ivp message
    seconds: float
    gn_history: tuple = ()


class _Budget(Exception):
    pass


def run_metric_flow(problem: MetricFlowProblem, config: MetricFlowConfig = MetricFlowConfig(), *, log=None) -> MetricFlowResult:
    """Integrate dα/dt = −(1/n) w ∘ ∂l/∂g (module docstring) with solve_ivp to ``config.times``.

    Records L and σ_train at every output time; then ``config.gn_steps`` Gauss–Newton steps to the
    fixed point (:func:`fixed_point`)."""
    from scipy.integrate import solve_ivp

    if not isinstance(problem, MetricFlowProblem):
        raise TypeError(f"problem: expected a MetricFlowProblem (MetricFlowProblem.build(ps, config)), received {type(problem).__name__}.")
    t0 = time.perf_counter()
    n, p = problem.n, problem.p
    count = [0]

    def f(t, y):
        count[0] += 1
        if count[0] > config.max_rhs:
            raise _Budget()
        return problem.rhs(y).reshape(-1)

    times = np.asarray(config.times)
    a0 = np.zeros(n * p)
    ts, Ls, Ss, last = [0.0], [problem.loss_of_packed(problem.g0)], [problem.sigma(problem.g0)], a0
    status = "completed"
    t_prev = 0.0
    for t in times:  # piecewise, so that a budget stop keeps everything up to the last time reached
        try:
            sol = solve_ivp(f, (t_prev, t), last, method=config.method, rtol=config.rtol, atol=config.atol)
        except _Budget:
            status = "max_rhs"
            break
        if not sol.success:
            status = sol.message
            break
        last = sol.y[:, -1]
        G = problem.metric_packed(last)
        ts.append(float(t))
        Ls.append(problem.loss_of_packed(G))
        Ss.append(problem.sigma(G))
        t_prev = t
        if log:
            log(f"  metric flow t={t:9.3g}  loss {Ls[-1]:.4e}  σ train {Ss[-1]:.4e}  rhs {count[0]}  {time.perf_counter() - t0:.1f} s")
    alpha = last.reshape(n, p)
    gn_hist = ()
    if config.gn_steps:
        alpha, gn_hist = fixed_point(problem, alpha, steps=config.gn_steps, cg_rtol=config.gn_cg_rtol,
                                     cg_maxiter=config.gn_cg_maxiter, log=log)
    model = KernelMetric(problem.ps.manifold, problem.kernel, np.asarray(problem.ps.points), alpha, problem.backend)
    return MetricFlowResult(times=np.array(ts), loss=np.array(Ls), sigma_train=np.array(Ss), alpha=alpha,
                            model=model, n_rhs=count[0], status=status, seconds=time.perf_counter() - t0,
                            gn_history=tuple(gn_hist))


def fixed_point(problem: MetricFlowProblem, alpha, *, steps: int = 5, cg_rtol: float = 1e-10,
                cg_maxiter: int = 2000, log=None):
    """Gauss–Newton steps of minimal RKHS norm to the zero-loss set of the flow (module docstring).

    Each step solves (Θ ∘ V Vᵀ) c = −r by CG (the Schur product applied as v_i·(Θ (V∘c))_i, one lazy
    Θ product per iteration) and sets α ← α + s V∘c with s halved until the loss decreases.
    Returns (α, history of dicts: loss, σ train, CG iterations)."""
    n, p = problem.n, problem.p
    alpha = np.asarray(alpha, dtype=float).reshape(n, p).copy()
    hist = []
    for it in range(steps):
        G = problem.metric_packed(alpha)
        logdet, V = _packed_logdet_grad(algebra.unpack(G, problem.ps.dim))
        r = logdet - problem.log_target
        L0 = float(np.mean(problem.w * r * r))

        def schur(C):
            C = np.asarray(C).reshape(n, -1)
            out = np.empty_like(C)
            for j in range(C.shape[1]):
                TV = np.asarray(problem.op.mv((V * C[:, j:j + 1]).reshape(-1))).reshape(n, p)
                out[:, j] = np.sum(V * TV, axis=1)
            return out

        A = as_operator(schur, "schur", n=n, allow_callable=True)
        res = cg(A, -r, rtol=cg_rtol, maxiter=cg_maxiter)
        step = V * res.value[:, None]
        s = 1.0
        for _ in range(30):
            Gn = problem.metric_packed(alpha + s * step)
            Ln = problem.loss_of_packed(Gn)
            if np.isfinite(Ln) and Ln < L0:
                break
            s *= 0.5
        else:
            hist.append({"step": it + 1, "loss": L0, "sigma_train": problem.sigma(G), "cg_iterations": res.iterations,
                         "step_size": 0.0})
            break
        alpha = alpha + s * step
        rec = {"step": it + 1, "loss": Ln, "sigma_train": problem.sigma(Gn), "cg_iterations": res.iterations,
               "step_size": s}
        hist.append(rec)
        if log:
            log(f"  fixed point GN {it + 1}: loss {Ln:.3e}  σ train {rec['sigma_train']:.3e}  CG {res.iterations}  step {s:g}")
        if Ln < 1e-26:
            break
    return alpha, hist


# ---------------------------------------------------------------------------------------------
# Kählerness: dω in a chart, by finite differences along X
# ---------------------------------------------------------------------------------------------


def shifted_pointset(ps, delta, *, newton: int = 8):
    """Points of X at local coordinates x + δ in the *same chart* as ``ps`` (patch, elim fixed).

    δ (n, d) complex displaces the kept coordinates; the eliminated one is re-solved from Q = 0 by
    Newton. Returns a PointSet built in the forced charts (weights copied)."""
    m = ps.manifold
    z = np.array(ps.points, dtype=np.complex128)
    rows = np.arange(len(z))
    kept = ps.kept
    delta = np.asarray(delta, dtype=np.complex128)
    if delta.shape != kept.shape:
        raise ValueError(f"delta: expected shape {kept.shape} (one displacement per local coordinate), received {delta.shape}.")
    np.put_along_axis(z, kept, np.take_along_axis(z, kept, axis=1) + delta, axis=1)
    for _ in range(newton):
        q, dq = m.Q_and_dQ(z, xp=np)
        z[rows, ps.elim] -= q / dq[rows, ps.elim]
    return pointset_from_points(m, z, ps.weights, patch=ps.patch, elim=ps.elim)


def kahler_defect(metric_fn, ps, *, h: float = 1e-5) -> dict:
    """How far a metric field is from Kähler: T_{kij̄} = ∂_k g_{ij̄} − ∂_i g_{kj̄} (dω = 0 ⟺ T = 0).

    ``metric_fn(PointSet) -> (n, d, d)`` evaluates the metric in the charts of the PointSet it gets.
    Holomorphic derivatives ∂_k = ½(∂/∂Re x_k − i ∂/∂Im x_k) by central differences of step h along
    X in each point's own chart. Returns {"ratio": √(⟨Σ|T|²⟩_w)/√(⟨Σ_{kij}|∂_k g_{ij̄}|²⟩_w),
    "pointwise_median": median of the pointwise ratio, "dg_norm", "T_norm"}."""
    h = positive_float("h", h)
    n, d = len(ps), ps.dim
    dg = np.zeros((n, d, d, d), dtype=np.complex128)  # dg[:, k, i, j] = ∂_k g_{ij̄}
    for k in range(d):
        for part, fac in ((1.0, 0.5), (1j, -0.5j)):
            e = np.zeros((n, d), dtype=np.complex128)
            e[:, k] = h * part
            gp = metric_fn(shifted_pointset(ps, e))
            gm = metric_fn(shifted_pointset(ps, -e))
            dg[:, k] += fac * (gp - gm) / (2.0 * h)
    T = dg - np.swapaxes(dg, 1, 2)  # ∂_k g_{ij̄} − ∂_i g_{kj̄}
    t2 = np.sum(np.abs(T) ** 2, axis=(1, 2, 3))
    g2 = np.sum(np.abs(dg) ** 2, axis=(1, 2, 3))
    w = ps.weights / np.mean(ps.weights)
    return {"ratio": float(np.sqrt(np.mean(w * t2) / np.mean(w * g2))),
            "pointwise_median": float(np.median(np.sqrt(t2 / g2))),
            "T_norm": float(np.sqrt(np.mean(w * t2))), "dg_norm": float(np.sqrt(np.mean(w * g2)))}
