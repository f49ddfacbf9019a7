r"""The talk's memorisation claim: an infinite-width network trained with mean-squared error memorises
(learns perfectly) a target metric at the training points.

Target: a Kähler metric g* on X given by a model (e.g. Donaldson's balanced metric,
:class:`ntkflow.cy.DonaldsonModel`), through its d² packed real components y(x) = pack g*(x) in each
point's reference chart (:mod:`ntkflow.cy.algebra`). Network: metric components f(x) ∈ R^{d²} with
the infinite-width metric-NTK δ_ab Θ(x, x') (no mixing; Θ a scalar projective kernel), started at
f_0 = pack g_FS (or 0). Gradient flow of ½‖f(X) − y‖² with learning rate η has the closed form

    f_t(X)  = f_0(X)  + (I − e^{−ηΘt}) (y − f_0(X)),
    f_t(x*) = f_0(x*) + Θ(x*, X) Θ⁻¹ (I − e^{−ηΘt}) (y − f_0(X)),       Θ = Θ(X, X),

evaluated for all d² components at once by :func:`ntkflow.solvers.ntk_flow` (Lanczos on the lazy
operator Θ, never a dense exponential). At t = ∞, f_∞(X) = y exactly: the training error is the
residual of the linear solve Θ α = y − f_0(X), done here by CG (:func:`ntkflow.solvers.cg`), and
f_∞(x*) = f_0(x*) + Θ(x*, X) α is kernel ("ridgeless") interpolation, whose held-out error stays
finite. Reported: relative errors ‖f_t − y‖/‖f_0 − y‖ on training and held-out points against t, and σ
of the memorised metric (det of unpack f_t) on both — on training points it tends to σ of the target.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ntkflow._checks import increasing_times, positive_float, positive_int
from ntkflow.cy import algebra
from ntkflow.cy.basis import detect_symmetry, invariant_basis
from ntkflow.cy.donaldson import balanced_metric
from ntkflow.cy.model import DonaldsonModel
from ntkflow.engine import kernel_operator
from ntkflow.experiments.metric_flow import MetricFlowConfig, make_kernel
from ntkflow.manifolds import PointSet, fs_pullback, sigma
from ntkflow.solvers import cg, ntk_flow

__all__ = ["MemoriseConfig", "MemoriseResult", "memorise", "donaldson_target", "donaldson_potential"]


@dataclass(frozen=True)
class MemoriseConfig:
    """Settings of the memorisation experiment.

    kernel: "gaussian" (exp((u − 1)/s²), width ``s2``) or "power" (u^``power``); f0: "fs" (start at the
    Fubini–Study metric) or "zero"; times: finite flow times (> 0; t = ∞ is always added, by CG);
    eta: learning rate; lanczos_rtol/lanczos_maxiter: :func:`~ntkflow.solvers.ntk_flow`;
    cg_rtol/cg_maxiter: the t = ∞ solve; backend: "jax", "keops" or "dense".
    """

    kernel: str = "gaussian"
    s2: float = 0.1
    power: int = 4
    f0: str = "fs"
    times: tuple = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
    eta: float = 1.0
    lanczos_rtol: float = 1e-10
    lanczos_maxiter: int = 500
    cg_rtol: float = 1e-10
    cg_maxiter: int = 5000
    backend: str = "jax"

    def __post_init__(self):
        if self.kernel not in ("gaussian", "power"):
            raise ValueError(f"kernel: expected 'gaussian' or 'power', received {self.kernel!r}.")
        if self.f0 not in ("fs", "zero"):
            raise ValueError(f"f0: expected 'fs' or 'zero', received {self.f0!r}.")
        positive_float("s2", self.s2)
        positive_int("power", self.power)
        positive_float("eta", self.eta)
        positive_float("lanczos_rtol", self.lanczos_rtol)
        positive_int("lanczos_maxiter", self.lanczos_maxiter)
        positive_float("cg_rtol", self.cg_rtol)
        positive_int("cg_maxiter", self.cg_maxiter)
        object.__setattr__(self, "times", increasing_times("times", self.times))
        if self.backend not in ("jax", "keops", "dense"):
            raise ValueError(f"backend: expected 'jax', 'keops' or 'dense', received {self.backend!r}.")


@dataclass(frozen=True)
class MemoriseResult:
    """Per time (the finite ``times`` then t = ∞): relative errors and σ on training / held-out points."""

    times: np.ndarray  # (n_t + 1,), last entry inf
    train_rel_error: np.ndarray
    test_rel_error: np.ndarray
    sigma_train: np.ndarray
    sigma_test: np.ndarray
    target_sigma_train: float
    target_sigma_test: float
    alpha_inf: np.ndarray = field(repr=False)  # (n, d²): f_∞(x) = f_0(x) + Θ(x, X) α
    cg_iterations: int = 0
    cg_converged: bool = False
    cg_residual: float = 0.0  # ‖Θα − r‖/‖r‖ (true residual, all components)
    lanczos_iterations: int = 0
    lanczos_status: str = ""
    seconds: dict = field(default_factory=dict)


def donaldson_target(manifold, train_ps, k: int, *, iterations: int = 12):
    """Donaldson's balanced metric of degree k (T-operator on ``train_ps``) as a DonaldsonModel."""
    k = positive_int("k", k)
    sym = detect_symmetry(manifold.exponents, manifold.coefficients)
    b = invariant_basis(manifold.n_coords, k, sym)
    g, _ = balanced_metric(b, train_ps.points, train_ps.weights, iterations=iterations)
    return DonaldsonModel(manifold=manifold, basis=b.combined(g), info={"k": k})


def donaldson_potential(model, ps) -> np.ndarray:
    """φ = K_D − K_FS = (1/(kπ)) log(s†Gs/|z|^{2k}) (n,): the C*-invariant (chart-free) relative potential
    of a DonaldsonModel, so that g_D = g_FS + ∂∂̄φ."""
    z = np.asarray(ps.points)
    a2 = np.abs(z) ** 2
    # model.potential is evaluated at the reference representative z/z_max (largest coordinate 1)
    return model.potential(ps) - np.log(np.sum(a2, axis=1) / np.max(a2, axis=1)) / np.pi


def _packed_metric(model, ps):
    return algebra.pack(model.metric(ps))


def _sigma_packed(ps, F):
    return sigma(ps, np.real(np.linalg.det(algebra.unpack(F, ps.dim))))


def memorise(train_ps, test_ps, target, config: MemoriseConfig = MemoriseConfig(), *, log=None) -> MemoriseResult:
    """Frozen-NTK MSE flow of metric components towards ``target`` (module docstring).

    Args:
        train_ps, test_ps: PointSets on the same manifold (training points X, held-out points x*).
        target: a model with ``.metric(PointSet) -> (n, d, d)`` (e.g. a DonaldsonModel), or a pair
            (y_train, y_test) of arrays (n, q), (n*, q): packed metrics (q = d², σ is reported) or any
            other target, e.g. the C*-invariant potential φ = K − K_FS (q = 1, f0 must be "zero",
            σ is NaN).
        config: :class:`MemoriseConfig`.
    """
    for name, ps in (("train_ps", train_ps), ("test_ps", test_ps)):
        if not isinstance(ps, PointSet):
            raise TypeError(f"{name}: expected an ntkflow.manifolds.PointSet, received {type(ps).__name__}.")
    if train_ps.manifold.n_coords != test_ps.manifold.n_coords:
        raise ValueError("test_ps: must lie on the manifold of train_ps.")
    if not isinstance(config, MemoriseConfig):
        raise TypeError(f"config: expected a MemoriseConfig, received {type(config).__name__}.")
    secs = {}
    t0 = time.perf_counter()
    if isinstance(target, tuple):
        if len(target) != 2:
            raise ValueError("target: a tuple target must be (y_train, y_test).")
        y, ys = (np.asarray(a, dtype=float) for a in target)
    elif hasattr(target, "metric"):
        y, ys = _packed_metric(target, train_ps), _packed_metric(target, test_ps)
    else:
        raise TypeError(f"target: expected a model with .metric(PointSet) or a tuple (y_train, y_test), received {type(target).__name__}.")
    p = train_ps.dim ** 2
    if y.ndim == 1:
        y, ys = y[:, None], ys[:, None]
    if y.ndim != 2 or ys.ndim != 2 or y.shape[0] != len(train_ps) or ys.shape != (len(test_ps), y.shape[1]):
        raise ValueError(f"target: targets must have shapes ({len(train_ps)}, q) and ({len(test_ps)}, q), received {y.shape}, {ys.shape}.")
    is_metric = y.shape[1] == p
    if config.f0 == "fs" and not is_metric:
        raise ValueError(f"f0: 'fs' needs packed metric targets with {p} columns, received {y.shape[1]}; use f0='zero'.")
    if config.f0 == "fs":
        f0, f0s = algebra.pack(fs_pullback(train_ps)), algebra.pack(fs_pullback(test_ps))
    else:
        f0, f0s = np.zeros_like(y), np.zeros_like(ys)
    secs["target"] = time.perf_counter() - t0
    kcfg = MetricFlowConfig(kernel=config.kernel, s2=config.s2, power=config.power)
    kernel = make_kernel(kcfg)
    A = kernel_operator(kernel, train_ps.points, backend=config.backend)
    B = kernel_operator(kernel, test_ps.points, train_ps.points, backend=config.backend)
    times = np.asarray(config.times)
    t = time.perf_counter()
    fl = ntk_flow(A, B, y, f0, f0s, times, eta=config.eta, rtol=config.lanczos_rtol, maxiter=config.lanczos_maxiter)
    secs["lanczos"] = time.perf_counter() - t
    if log:
        log(f"  ntk_flow: {fl.iterations} Lanczos steps, {fl.status}, {secs['lanczos']:.1f} s")
    t = time.perf_counter()
    r = y - f0
    res = cg(A, r, rtol=config.cg_rtol, maxiter=config.cg_maxiter)
    alpha = np.asarray(res.value).reshape(r.shape)
    f_inf = f0 + np.asarray(A.mm(alpha))
    f_inf_s = f0s + np.asarray(B.mm(alpha))
    secs["cg"] = time.perf_counter() - t
    cg_res = float(np.linalg.norm(f_inf - y) / np.linalg.norm(r))
    if log:
        log(f"  t = ∞ by CG: {res.iterations} iterations, converged {res.converged}, ‖Θα − r‖/‖r‖ = {cg_res:.2e}, {secs['cg']:.1f} s")
    nr, nrs = np.linalg.norm(r), np.linalg.norm(ys - f0s)
    tr_err = [float(np.linalg.norm(F - y) / nr) for F in fl.train] + [cg_res]
    te_err = [float(np.linalg.norm(F - ys) / nrs) for F in fl.test] + [float(np.linalg.norm(f_inf_s - ys) / nrs)]
    if is_metric:
        s_tr = [_sigma_packed(train_ps, F) for F in fl.train] + [_sigma_packed(train_ps, f_inf)]
        s_te = [_sigma_packed(test_ps, F) for F in fl.test] + [_sigma_packed(test_ps, f_inf_s)]
        tgt_tr, tgt_te = _sigma_packed(train_ps, y), _sigma_packed(test_ps, ys)
    else:  # not a metric (e.g. a potential): no σ
        s_tr = s_te = [np.nan] * (len(times) + 1)
        tgt_tr = tgt_te = np.nan
    secs["total"] = time.perf_counter() - t0
    return MemoriseResult(times=np.append(times, np.inf), train_rel_error=np.array(tr_err), test_rel_error=np.array(te_err),
                          sigma_train=np.array(s_tr), sigma_test=np.array(s_te),
                          target_sigma_train=tgt_tr, target_sigma_test=tgt_te,
                          alpha_inf=alpha, cg_iterations=int(res.iterations), cg_converged=bool(res.converged),
                          cg_residual=cg_res, lanczos_iterations=int(fl.iterations), lanczos_status=fl.status,
                          seconds=secs)
