"""The local metric flow (the σ → 0 limit: Hamilton's / Perelman's Ricci flow) for any metric field.

Representation: the ambient metric field is a spectral expansion

    G(t, x) = Σ_p C_p(t) ψ_p(x),   C_p symmetric (A, A),                                       (1)

ψ the :class:`ntkflow.ricci.perelman.SpectralBasis` of ``degree`` L (Fourier modes |k|_∞ ≤ L on Tⁿ;
polynomials in x of degree ≤ L restricted to Sⁿ) orthonormalised on collocation points x_q with quadrature
weights w_q (Σ_q w_q ψ_p ψ_r = δ_pr). The jets G, ∂G, ∂²G at the points are exact derivatives of (1);
``domain.chart_jet`` turns them into chart jets, a driver gives the local velocity V_q = ∂_t g (n, n) in the
chart frame (``perelman.hamilton_driver`` = −2 Ric, ``perelman.LambdaDriver(LocalKernel(...))``, …), and the
flow is the least-squares (L²(w)) projection of its ambient form back onto (1):

    dC_p/dt = Σ_q w_q ψ_p(x_q) E_q V_q E_qᵀ                                                    (2)

(E_q the tangent frame; on Tⁿ E = I). Normal components of G never enter the geometry. (2) is integrated by
:func:`ntkflow.ricci.reference.integrate` — SciPy's explicit Runge–Kutta pairs (DOP853/RK45/RK23, the
steppers of ``scipy.integrate.solve_ivp``) with error control ``rtol``/``atol``, one accepted step at a
time, so that a singularity (metric not positive definite, max |R| above ``curvature_limit``, volume below
``volume_fraction``·V₀ — e.g. the extinction of a sphere) stops the run with the last good state.

Exactness: a round sphere G = r²I evolves as r²I − 2(n−1)t (I − xxᵀ), inside (1) for L ≥ 2, so the local
flow reproduces r² = r₀² − 2(n−1)t up to the integrator's error.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntkflow._checks import finite_array, positive_float, positive_int

from . import geometry as geo
from .domains import Sphere, Torus
from .perelman import F_functional, SpectralBasis, hamilton_driver, perelman_lambda
from .reference import integrate

__all__ = ["LocalFlowConfig", "SpectralMetric", "LocalFlowProblem", "FlowResult", "local_flow", "default_points"]


@dataclass(frozen=True)
class LocalFlowConfig:
    """Options of :func:`local_flow`.

    degree: L of the spectral representation (1). method/rtol/atol: the Runge–Kutta pair and its error
    control. curvature_limit: stop when max |R| exceeds it (None: 1e3·max(1, max |R(0)|)).
    volume_fraction: stop when the volume falls below this fraction of the initial one. track_lambda:
    compute λ(g) and F[g, f_g] at the output times (Rayleigh–Ritz of ``lambda_degree``, default ``degree``).
    """

    degree: int = 6
    method: str = "DOP853"
    rtol: float = 1e-10
    atol: float = 1e-12
    curvature_limit: float | None = None
    volume_fraction: float = 1e-6
    track_lambda: bool = True
    lambda_degree: int | None = None
    max_steps: int = 100_000

    def __post_init__(self):
        positive_int("degree", self.degree)
        if self.degree < 2:
            raise ValueError(f"degree: the local flow needs degree ≥ 2 (a round sphere is quadratic in x), received {self.degree}.")
        positive_float("rtol", self.rtol)
        positive_float("atol", self.atol)
        if self.curvature_limit is not None:
            positive_float("curvature_limit", self.curvature_limit)
        if not 0 <= self.volume_fraction < 1:
            raise ValueError(f"volume_fraction: must be in [0, 1), received {self.volume_fraction!r}.")
        if self.lambda_degree is not None:
            positive_int("lambda_degree", self.lambda_degree)


def default_points(domain, degree: int):
    """Collocation points resolving products of degree-L fields (3L/2 rule): a uniform grid of 3L + 2 points
    per axis on Tⁿ; the product Gauss rule with k = ⌊3L/2⌋ + 2 (exact to degree 2k − 1 ≥ 3L + 3) on Sⁿ."""
    if isinstance(domain, Torus):
        return domain.points((3 * degree + 2) ** domain.n)
    k = (3 * degree) // 2 + 2
    return domain.points(2 * k**2 if domain.n == 2 else 4 * k**3)


@dataclass(frozen=True)
class SpectralMetric:
    """The metric field (1): G(x) = Σ_p C_p ψ_p(x) with ψ = φ T (raw basis φ of ``basis``, transform T).
    Evaluate anywhere on the domain with ``ambient_jets(points)``."""

    basis: SpectralBasis
    transform: np.ndarray  # (P, P)
    coefficients: np.ndarray  # (P, A, A)

    @property
    def domain(self):
        return self.basis.domain

    def ambient_jets(self, points):
        phi, dphi, d2phi = self.basis.ambient_jets(points)
        T, C = jnp.asarray(self.transform), jnp.asarray(self.coefficients)
        TC = jnp.einsum("pr,rij->pij", T, C)
        return (jnp.einsum("qp,pij->qij", phi, TC), jnp.einsum("qpc,pij->qijc", dphi, TC),
                jnp.einsum("qpcd,pij->qijcd", d2phi, TC))

    def __call__(self, points):
        return self.ambient_jets(points)[0]


@dataclass(frozen=True)
class LocalFlowProblem:
    """The ODE (2) on the flat state y = C.ravel() (the problem protocol of ``reference.integrate``:
    ``rhs(t, y)``, ``scalars(y)``, ``singularity(y, limit)``), plus ``fit``, ``field``, ``geometry_of``."""

    domain: object
    driver: Callable
    basis: SpectralBasis
    points: np.ndarray  # (m, A)
    weights: np.ndarray  # (m,)
    volume_fraction: float
    _data: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        pts, w = self.points, self.weights
        phi, dphi, d2phi = (np.asarray(a) for a in self.basis.ambient_jets(pts))
        if phi.shape[0] < phi.shape[1]:
            raise ValueError(f"points: {phi.shape[0]} points cannot carry the {phi.shape[1]} functions of degree "
                             f"{self.basis.degree}; pass more points (default_points) or a lower degree.")
        _, r = np.linalg.qr(np.sqrt(w)[:, None] * phi)
        T = np.linalg.inv(r)  # ψ = φ T, Σ_q w_q ψ_p ψ_r = δ_pr
        psi, dpsi, d2psi = phi @ T, np.einsum("qpa,pr->qra", dphi, T), np.einsum("qpab,pr->qrab", d2phi, T)
        E = self.domain.frames(pts)
        d = self._data
        d.update(T=T, psi=jnp.asarray(psi), dpsi=jnp.asarray(dpsi), d2psi=jnp.asarray(d2psi), E=jnp.asarray(E),
                 w=jnp.asarray(w))
        try:
            params = inspect.signature(self.driver).parameters
            takes_w = "weights" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            takes_w = False
        d["driver_kw"] = {"weights": self.weights} if takes_w else {}
        d["velocity"] = jax.jit(self._velocity)
        d["geometry"] = jax.jit(self._geometry)

    @property
    def state_shape(self):
        A = self.domain.ambient_dim
        return (self.basis.size, A, A)

    # -- pieces in JAX --------------------------------------------------------------------------
    def _arrays(self):
        # the large basis arrays enter the jitted functions as ARGUMENTS (as constants XLA would fold them)
        d = self._data
        return {k: d[k] for k in ("psi", "dpsi", "d2psi", "E", "w")}

    @staticmethod
    def _jets(C, d):
        return (jnp.einsum("qp,pij->qij", d["psi"], C), jnp.einsum("qpc,pij->qijc", d["dpsi"], C),
                jnp.einsum("qpcd,pij->qijcd", d["d2psi"], C))

    def _velocity(self, C, d):
        jets = self.domain.chart_jet(*self._jets(C, d), self.points)
        V = self.driver(self.domain, jets, self.points, **self._data["driver_kw"])  # (m, n, n)
        V = 0.5 * (V + jnp.swapaxes(V, 1, 2))
        U = jnp.einsum("qia,qab,qjb->qij", d["E"], V, d["E"])
        dC = jnp.einsum("q,qp,qij->pij", d["w"], d["psi"], U)
        return 0.5 * (dC + jnp.swapaxes(dC, 1, 2))

    def _geometry(self, C, d):
        jets = self.domain.chart_jet(*self._jets(C, d), self.points)
        return jets, geo.scalar(*jets)

    # -- protocol -------------------------------------------------------------------------------
    def fit(self, metric) -> np.ndarray:
        """Least-squares coefficients C (P, A, A) of a field with ``ambient_jets`` on the points, and the
        relative L²(w) residual of the tangent metric E ᵀ G E."""
        G = jnp.asarray(metric.ambient_jets(self.points)[0])
        G = 0.5 * (G + jnp.swapaxes(G, 1, 2))
        d = self._data
        C = jnp.einsum("q,qp,qij->pij", d["w"], d["psi"], G)
        Gf = jnp.einsum("qp,pij->qij", d["psi"], C)
        tang = lambda M: jnp.einsum("qia,qij,qjb->qab", d["E"], M, d["E"])
        res = float(jnp.sqrt(jnp.sum(d["w"][:, None, None] * (tang(Gf) - tang(G)) ** 2) / jnp.sum(d["w"][:, None, None] * tang(G) ** 2)))
        return np.asarray(C), res

    def rhs(self, t, y):
        return np.asarray(self._data["velocity"](jnp.asarray(y).reshape(self.state_shape), self._arrays())).ravel()

    def geometry_of(self, y):
        """Chart jets and scalar curvature R (m,) at the points for the state y."""
        return self._data["geometry"](jnp.asarray(y).reshape(self.state_shape), self._arrays())

    def scalars(self, y) -> dict:
        """volume Σ w √det g; R_min, R_max; anisotropy = (max − min)/mean of all eigenvalues of g at all points
        (g in the frame orthonormal for the round/flat reference metric: 0 for a round sphere / homothetic flat
        torus); min_eig."""
        (g, _, _), R = self.geometry_of(y)
        g, R = np.asarray(g), np.asarray(R)
        ev = np.linalg.eigvalsh(g)
        vol = float(np.sum(self.weights * np.sqrt(np.abs(np.linalg.det(g)))))
        return {"volume": vol, "R_min": float(R.min()), "R_max": float(R.max()),
                "anisotropy": float((ev.max() - ev.min()) / ev.mean()), "min_eig": float(ev.min())}

    def singularity(self, y, limit: float):
        (g, _, _), R = self.geometry_of(y)
        g, R = np.asarray(g), np.asarray(R)
        msg = geo.metric_defect(g, R, limit)
        if msg is not None:
            return msg
        vol = float(np.sum(self.weights * np.sqrt(np.linalg.det(g))))
        v0 = self._data.get("volume0")
        if v0 is not None and vol < self.volume_fraction * v0:
            return f"the volume collapses ({vol:.3g} < volume_fraction·V₀ = {self.volume_fraction * v0:.3g}; extinction)"
        return None

    def is_good(self, y) -> bool:
        """The state is finite with a positive definite metric at every point."""
        (g, _, _), R = self.geometry_of(y)
        return geo.is_metric(g, R)

    def field(self, y) -> SpectralMetric:
        return SpectralMetric(self.basis, self._data["T"], np.asarray(y).reshape(self.state_shape))

    def volume_rate(self, y) -> float:
        """dV/dt = Σ_q w_q ½ √g tr(g⁻¹ v) of the projected flow (2) (v = Eᵀ(Σ_p ψ_p dC_p)E)."""
        d = self._data
        C = jnp.asarray(y).reshape(self.state_shape)
        dC = d["velocity"](C, self._arrays())
        (g, _, _), _ = self.geometry_of(y)
        v = jnp.einsum("qia,qp,pij,qjb->qab", d["E"], d["psi"], dC, d["E"])
        return float(jnp.sum(d["w"] * 0.5 * geo.volume_density(g) * jnp.einsum("qab,qba->q", jnp.linalg.inv(g), v)))


@dataclass(frozen=True)
class FlowResult:
    """Outcome of :func:`local_flow`.

    times (k,) and states (k, P·A²): the initial state, the requested output times reached and the last good
    state; scalars: dict of (k,) arrays at those times — volume, R_min, R_max, anisotropy, min_eig,
    volume_rate (dV/dt), and with tracking lambda, F (= F[g, f_g]) and lambda_gap; history: the cheap
    scalars at every accepted step (``history["t"]`` their times); status "finished" | "singular" |
    "failed" | "interrupted" with ``message``; fit_residual: relative L² error of the initial
    representation; problem: the :class:`LocalFlowProblem` (``field(i)`` gives the metric at times[i])."""

    times: np.ndarray
    states: np.ndarray
    scalars: dict
    history: dict
    status: str
    message: str
    fit_residual: float
    steps: int
    nfev: int
    problem: LocalFlowProblem = field(repr=False)

    def field(self, i: int = -1) -> SpectralMetric:
        return self.problem.field(self.states[i])


def local_flow(domain, metric, t_end: float, *, driver: Callable = hamilton_driver, t_out=(), points=None,
               weights=None, config: LocalFlowConfig = LocalFlowConfig(), on_step=None) -> FlowResult:
    """Integrate the local flow ∂_t g = driver(g) (default −2 Ric) of ``metric`` (a field with
    ``ambient_jets``, e.g. ``domains.metric_from_function``) on ``domain`` up to ``t_end`` in the spectral
    representation (1)–(2). ``points``/``weights`` default to :func:`default_points`."""
    if not isinstance(domain, (Torus, Sphere)):
        raise TypeError(f"domain: expected Torus(n) or Sphere(n), received {domain!r}.")
    if not hasattr(metric, "ambient_jets"):
        raise TypeError(f"metric: expected a field with ambient_jets(points) (domains.metric_from_function(fn, domain)), received {metric!r}.")
    if getattr(metric, "domain", domain) != domain:
        raise ValueError(f"metric: it was built for {metric.domain!r}, but domain is {domain!r}; use the same domain.")
    if not callable(driver):
        raise TypeError(f"driver: expected a function (domain, (g, dg, d2g), points, weights=) -> (m, n, n), received {driver!r}.")
    t_end = positive_float("t_end", t_end)
    if (points is None) != (weights is None):
        raise ValueError("points, weights: pass both (from domain.points) or neither (default_points).")
    if points is None:
        points, weights = default_points(domain, config.degree)
    points = finite_array("points", points, ndim=2, dtype=np.float64)
    weights = finite_array("weights", weights, ndim=1, dtype=np.float64)
    t_out = np.asarray(sorted(float(t) for t in t_out if 0 < float(t) <= t_end))
    basis = SpectralBasis(domain, config.degree)
    prob = LocalFlowProblem(domain, driver, basis, points, weights, config.volume_fraction)
    C0, res = prob.fit(metric)
    y0 = C0.ravel()
    sc0 = prob.scalars(y0)
    prob._data["volume0"] = sc0["volume"]
    limit = config.curvature_limit or 1e3 * max(1.0, abs(sc0["R_min"]), abs(sc0["R_max"]))
    previous = [(0.0, y0)]  # the accepted step before the current one: the last good state if a step overshoots

    def keep(info):
        previous.append((info.t, info.y))
        del previous[:-2]
        if on_step is not None:
            on_step(info)

    out = integrate(prob, y0, t_end, t_out=t_out, method=config.method, rtol=config.rtol, atol=config.atol,
                    max_steps=config.max_steps, curvature_limit=limit, on_step=keep)
    t_last, y_last, message = out.t, out.y, out.message
    good_out = [(float(t), y) for t, y in zip(np.asarray(out.t_out), np.asarray(out.y_out)) if prob.is_good(y)]
    if out.status != "finished" and not prob.is_good(y_last):
        # the step that met the singularity jumped past it (a round sphere's flow is linear in C, so the
        # integrator takes long steps): the last good state is the later of the accepted state before it
        # and the good dense outputs inside the step
        t_last, y_last = max([previous[0] if len(previous) == 2 else (0.0, y0)] + good_out, key=lambda p: p[0])
        message = f"{message}; the last good state is at t = {t_last:.6g}"
    t_o = [t for t, _ in good_out if t <= t_last]
    y_o = [y for t, y in good_out if t <= t_last]
    times = [0.0] + t_o + ([t_last] if t_last > (t_o[-1] if t_o else 0.0) else [])
    states = [y0] + y_o + ([y_last] if len(times) > 1 + len(t_o) else [])
    scal: dict = {}
    ldeg = config.lambda_degree or config.degree
    for y in states:
        s = prob.scalars(y)
        s["volume_rate"] = prob.volume_rate(y)
        if config.track_lambda:
            jets, _ = prob.geometry_of(y)
            lam = perelman_lambda(domain, jets, points, weights, degree=ldeg)
            s.update(**{"lambda": lam.value, "F": float(F_functional(jets, lam.f_jets, weights)), "lambda_gap": lam.gap})
        for k, v in s.items():
            scal.setdefault(k, []).append(v)
    hist = {k: np.asarray(v) for k, v in out.history.items()}
    hist["t"] = np.asarray(out.times)
    return FlowResult(np.asarray(times), np.asarray(states), {k: np.asarray(v) for k, v in scal.items()}, hist,
                      out.status, message, res, out.steps, out.nfev, prob)
