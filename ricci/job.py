"""The ``ntkflow ricci`` job: one initial metric, Hamilton's flow ∂_t g = −2 Ric by the reference solver
(where the case has one) and the finite-σ generalised flow for each σ > 0, side by side.

Every flow is a "problem" with ``rhs``/``scalars``/``singularity`` stepped by
:func:`ntkflow.ricci.reference.integrate` one accepted step at a time. After each accepted step the job
prints progress and writes a checkpoint (``checkpoint.json`` + ``checkpoint.npz``, each written to a
temporary file and renamed); ``resume=True`` continues from it with the saved step size, which reproduces
the uninterrupted run. Ctrl-C keeps the last good state (the checkpoint of the last accepted step). A
singularity (extinction, neckpinch, curvature blow-up) ends that flow with the solver's message; its last
good state is saved. Outputs in ``out_dir``: ``results.json`` (settings, per flow: status, message, the
tracked scalars after every step, errors against the reference / exact solution), ``states.npz`` (last
good state and snapshots of every flow) and the plots ``curvature.png``, ``metric.png``, ``bump.png``
(scalar curvature on a line through the bump at a few times, reference vs finite σ: non-locality) and
``sigma_error.png`` (several σ > 0).

Built-in cases (:data:`CASES`): round-s2, round-s3, bumpy-s2, bumps-s2, bumpy-t2, bumpy-t3, dumbbell-s3, and
``custom`` (a user metric from a Python file defining ``metric(x)``, see docs/ricci.md).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import jax.numpy as jnp
import numpy as np

from ntkflow.io import atomic_write, read_npz

from . import geometry
from .domains import Sphere, Torus, metric_from_function
from .kernel_flow import GaussianKernel, kernel_flow_problem
from .local import LocalFlowProblem
from .local import default_points as local_points
from .perelman import SpectralBasis, hamilton_driver
from .reference import AxisymmetricSphere, ConformalSphere, ConformalTorus, WarpedProduct, integrate, round_radius2

__all__ = ["CASES", "Case", "RicciConfig", "RicciResult", "load_metric_file", "make_domain", "run_ricci"]

DOMAINS = ("T2", "T3", "S2", "S3")


def make_domain(name: str):
    """"T2" | "T3" | "S2" | "S3" → Torus(n) / Sphere(n)."""
    if name not in DOMAINS:
        raise ValueError(f"--domain: expected one of {', '.join(DOMAINS)}, received {name!r}.")
    return (Torus if name[0] == "T" else Sphere)(int(name[1]))


# ----------------------------------------------------------------------------------------------
# built-in cases
# ----------------------------------------------------------------------------------------------

_BUMP_A, _BUMP_S2 = 0.4, 0.15  # bump amplitude of u and its width² (chordal) / (angle²-like on Tⁿ)


def _bump_torus(th):
    """u(θ) = A exp(Σ_i (cos θ_i − 1)/s²): a smooth periodic bump at θ = 0."""
    return _BUMP_A * jnp.exp(jnp.sum(jnp.cos(th) - 1.0) / _BUMP_S2)


def _bump_sphere_mu(mu, xp=np):
    """u(x) = A exp(−(1 − x_last)/s²): an axisymmetric bump at the north pole (μ = x_last)."""
    return _BUMP_A * xp.exp(-(1.0 - mu) / _BUMP_S2)


def _dumbbell_psi(x):
    return np.sin(x) * (1.0 - 0.8 * np.sin(x) ** 2)


@dataclass(frozen=True)
class Case:
    """A built-in initial metric. ``metric(x)``: JAX function (None: reference solver only);
    ``reference(resolution)`` → (problem, y0) or None; ``line(m)`` → (s (m,), points (m, A)): the line
    through the bump on which R(x, t) is drawn; ``exact(t)`` → dict of exact scalars (round spheres)."""

    name: str
    domain: str
    description: str
    t_end: float
    metric: Callable | None
    reference: Callable | None
    resolution: int
    exact: Callable | None = None


def _ref_round_s2(res):
    p = AxisymmetricSphere(res)
    return p, p.initial(lambda mu: 0.0 * mu)


def _ref_bumpy_s2(res):
    p = AxisymmetricSphere(res)
    return p, p.initial(_bump_sphere_mu)


def _two_bumps(x, xp=np):
    """u(x) = A e^{−(1 − x₃)/s²} + ¾A e^{−(1 − x₁)/s²}: bumps at the north pole and on the equator."""
    return _BUMP_A * (xp.exp(-(1.0 - x[..., 2]) / _BUMP_S2) + 0.75 * xp.exp(-(1.0 - x[..., 0]) / _BUMP_S2))


def _ref_bumps_s2(res):
    p = ConformalSphere(res)
    return p, p.initial(_two_bumps)


def _ref_bumpy_t2(res):
    p = ConformalTorus(res)
    return p, p.initial(lambda a, b: _BUMP_A * np.exp((np.cos(a) + np.cos(b) - 2.0) / _BUMP_S2))


def _ref_round_s3(res):
    p = WarpedProduct(2, res)
    x = p.grid()
    return p, p.initial(np.ones_like(x), np.sin(x))


def _ref_dumbbell(res):
    p = WarpedProduct(2, res)
    x = p.grid()
    return p, p.initial(np.ones_like(x), _dumbbell_psi(x))


def _exact_round(n):
    def exact(t):
        r2 = round_radius2(1.0, n, t)
        vol = (4 * math.pi if n == 2 else 2 * math.pi ** 2) * np.maximum(r2, 0.0) ** (n / 2)
        return {"volume": vol, "R_min": n * (n - 1) / r2, "R_max": n * (n - 1) / r2}

    return exact


CASES = {
    "round-s2": Case("round-s2", "S2", "round unit S², G = I (extinct at t = 1/2)", 0.45,
                     lambda x: jnp.eye(3) + 0.0 * x[0], _ref_round_s2, 8, _exact_round(2)),
    "round-s3": Case("round-s3", "S3", "round unit S³, G = I (extinct at t = 1/4)", 0.225,
                     lambda x: jnp.eye(4) + 0.0 * x[0], _ref_round_s3, 16, _exact_round(3)),
    "bumpy-s2": Case("bumpy-s2", "S2", f"G = e^{{2u}} I on S², u = {_BUMP_A} exp(−(1 − x₃)/{_BUMP_S2}) (a bump at the north pole)",
                     0.1, lambda x: jnp.exp(2.0 * _bump_sphere_mu(x[2], jnp)) * jnp.eye(3), _ref_bumpy_s2, 32),
    "bumps-s2": Case("bumps-s2", "S2", f"G = e^{{2u}} I on S², two bumps (north pole, equator; no symmetry; reference: full spherical harmonics)",
                     0.1, lambda x: jnp.exp(2.0 * _two_bumps(x, jnp)) * jnp.eye(3), _ref_bumps_s2, 32),
    "bumpy-t2": Case("bumpy-t2", "T2", f"g = e^{{2u}} δ on T², u = {_BUMP_A} exp(Σ(cos θ_i − 1)/{_BUMP_S2}) (a bump at θ = 0)",
                     0.1, lambda th: jnp.exp(2.0 * _bump_torus(th)) * jnp.eye(2), _ref_bumpy_t2, 64),
    "bumpy-t3": Case("bumpy-t3", "T3", f"g = e^{{2u}} δ on T³, u = {_BUMP_A} exp(Σ(cos θ_i − 1)/{_BUMP_S2}) (no reference solver)",
                     0.1, lambda th: jnp.exp(2.0 * _bump_torus(th)) * jnp.eye(3), None, 0),
    "dumbbell-s3": Case("dumbbell-s3", "S3", "dumbbell S³: dx² + ψ² g_S², ψ = sin x (1 − 0.8 sin² x) (reference solver; neckpinch near t = 0.021)",
                        0.05, None, _ref_dumbbell, 64),
}


def load_metric_file(path: str, domain_name: str | None):
    """Import ``metric`` from a Python file and validate it on the domain (errors name --metric-file)."""
    if domain_name is None:
        raise ValueError("--domain: a --metric-file needs its domain; pass --domain T2, T3, S2 or S3.")
    domain = make_domain(domain_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--metric-file: no such file {path!r}; pass the path of a .py file defining metric(x).")
    spec = importlib.util.spec_from_file_location("ntkflow_user_metric", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ValueError(f"--metric-file {path}: importing it failed ({type(exc).__name__}: {exc}); fix the file.") from None
    fn = getattr(module, "metric", None)
    if not callable(fn):
        raise ValueError(f"--metric-file {path}: defines no function `metric`; add `def metric(x): ...` returning the "
                         f"{'n×n' if domain_name[0] == 'T' else '(n+1)×(n+1)'} matrix with jax.numpy.")
    try:
        field_ = metric_from_function(fn, domain)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--metric-file {path} (--domain {domain_name}): {exc}") from None
    return fn, field_, domain


# ----------------------------------------------------------------------------------------------
# configuration and result
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RicciConfig:
    """Settings of one ``ntkflow ricci`` run (every field has a CLI option of the same name)."""

    case: str = "round-s2"
    metric_file: str | None = None
    domain: str | None = None
    sigma: tuple = (0.0,)
    t_end: float | None = None  # None: the case's default
    points: int = 128
    backend: str = "jax"
    resolution: int = 0  # reference solver grid / degree (0: the case's default)
    method: str = "RK45"
    rtol: float = 1e-6
    atol: float = 1e-9
    curvature_limit: float = 1e3
    max_steps: int = 100_000
    seed: int | None = None  # None: the domain's grid rule; int: random points
    snapshots: int = 4
    collocation: bool = True  # False: only the spectral solvers (reference, spectral σ-flows on conformal T²)
    degree: int = 6  # spectral degree of the local flow (σ = 0; ntkflow.ricci.local)

    def __post_init__(self):
        if self.metric_file is None and self.case not in CASES:
            raise ValueError(f"case: expected one of {', '.join(CASES)} (or --metric-file FILE --domain D), received {self.case!r}.")
        if self.metric_file is not None and self.domain is None:
            raise ValueError("--domain: a --metric-file needs its domain; pass --domain T2, T3, S2 or S3.")
        if self.domain is not None and self.domain not in DOMAINS:
            raise ValueError(f"--domain: expected one of {', '.join(DOMAINS)}, received {self.domain!r}.")
        sig = tuple(float(s) for s in self.sigma)
        if not sig or any(not math.isfinite(s) or s < 0 for s in sig):
            raise ValueError(f"--sigma: expected one or more widths >= 0 (0 = the local flow), received {self.sigma!r}.")
        object.__setattr__(self, "sigma", sig)
        if self.t_end is not None and not (math.isfinite(self.t_end) and self.t_end > 0):
            raise ValueError(f"--t-end: expected a time > 0, received {self.t_end!r}.")
        if not isinstance(self.points, int) or self.points < 1:
            raise ValueError(f"--points: expected a positive number of collocation points, received {self.points!r}.")
        if self.backend not in ("keops", "jax", "dense"):
            raise ValueError(f"--backend: expected keops, jax or dense, received {self.backend!r}.")

    def to_json(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        keep = {k: v for k, v in self.to_json().items() if k not in ("max_steps",)}
        if self.metric_file is not None and os.path.isfile(self.metric_file):
            with open(self.metric_file, "rb") as f:
                keep["metric_file_sha1"] = hashlib.sha1(f.read()).hexdigest()
        return hashlib.sha1(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RicciResult:
    """What :func:`run_ricci` returns: ``status`` "finished" | "interrupted"; ``flows`` label → dict
    (status, message, t, steps, times, history, snapshot times); ``errors`` {"kernel", "spectral",
    "kernel_vs_spectral"} → σ → relative errors (volume, R_min, R_max, R_pointwise) at the common final time;
    ``order`` {"kernel", "spectral"} → fitted slopes in σ; ``out_dir``."""

    status: str
    flows: dict
    errors: dict = field(default_factory=dict)
    order: dict = field(default_factory=dict)
    out_dir: str | None = None


# ----------------------------------------------------------------------------------------------
# the flows of a run
# ----------------------------------------------------------------------------------------------


def _hamilton_driver(domain, jets, points):
    """V = −2 Ric (Hamilton's flow) from chart jets (g, dg, d2g)."""
    return -2.0 * geometry.ricci(*jets)


@dataclass(frozen=True)
class _Flow:
    label: str
    problem: object
    y0: np.ndarray
    profile: Callable  # y → (s (k,), R (k,)) on the line through the bump


def _line(domain, m: int = 96):
    """s (m,) and points (m, A) of the line through the bump: θ₁ ∈ [0, 2π) at θ_rest = 0 on Tⁿ; the great
    circle x = (sin s, 0, …, cos s) through the north pole on Sⁿ (s ∈ [−π, π))."""
    if isinstance(domain, Torus):
        s = 2 * np.pi * np.arange(m) / m
        pts = np.zeros((m, domain.n))
        pts[:, 0] = s
        return np.where(s > np.pi, s - 2 * np.pi, s), pts
    s = -np.pi + 2 * np.pi * (np.arange(m) + 0.5) / m
    pts = np.zeros((m, domain.ambient_dim))
    pts[:, 0], pts[:, -1] = np.sin(s), np.cos(s)
    return s, pts


def _reference_profile(problem, domain):
    """R on the line of :func:`_line` for T² / axisymmetric S² (spectral interpolation: same points as
    the kernel flows); the warped product draws R against its own (DeTurck) coordinate x from the pole."""
    if isinstance(problem, (ConformalTorus, AxisymmetricSphere, ConformalSphere)):
        s, pts = _line(domain)
        return lambda y: (s, _reference_R_at(problem, y, pts))
    x = problem.grid()
    return lambda y: (x, problem.curvatures(y)[2])


def _reference_R_at(problem, y, points):
    """Scalar curvature of the reference solution at domain points (m, A), or None where the reference is
    not in the domain's coordinates (warped products run in the DeTurck gauge)."""
    if isinstance(problem, (ConformalTorus, ConformalSphere)):
        return problem.scalar_curvature_at(y, points)
    if isinstance(problem, AxisymmetricSphere):
        return problem.scalar_curvature_at(y, points[:, -1])
    return None


def _kernel_R_at(problem, domain, y, points):
    G, dG, d2G = problem.field(y).ambient_jets(points)
    return np.asarray(geometry.scalar(*domain.chart_jet(jnp.asarray(G), jnp.asarray(dG), jnp.asarray(d2G), points)))


def _kernel_profile(problem, domain):
    s, pts = _line(domain)

    def profile(y):
        return s, _kernel_R_at(problem, domain, y, pts)

    return profile


def _build_flows(config: RicciConfig, log):
    if config.metric_file is not None:
        fn, field_, domain = load_metric_file(config.metric_file, config.domain)
        case = Case("custom", config.domain, f"user metric from {config.metric_file}", config.t_end or 0.1, fn, None, 0)
    else:
        case = CASES[config.case]
        domain = make_domain(case.domain)
        if config.domain is not None and config.domain != case.domain:
            raise ValueError(f"--domain: case {case.name} lives on {case.domain}, received --domain {config.domain}; drop --domain or pick a case on it.")
        field_ = None if case.metric is None else metric_from_function(case.metric, domain)
    flows = []
    if case.reference is not None:
        prob, y0 = case.reference(config.resolution or case.resolution)
        flows.append(_Flow("reference", prob, y0, _reference_profile(prob, domain)))
        if isinstance(prob, ConformalTorus):  # the finite-σ flow of a conformal T² metric, spectrally
            for sigma in config.sigma:
                if sigma > 0:
                    sp = replace(prob, sigma=sigma)
                    flows.append(_Flow(f"spectral-sigma={sigma:g}", sp, y0, _reference_profile(sp, domain)))
    for sigma in config.sigma:
        if sigma == 0.0:
            if not config.collocation:
                continue
            if field_ is None:
                log(f"  σ = 0: case {case.name} has no ambient metric for the local flow; Hamilton's flow is the reference solver's")
                continue
            # the local flow (σ → 0 limit) of ntkflow.ricci.local: spectral representation of degree L
            lpts, lw = local_points(domain, config.degree)
            prob = LocalFlowProblem(domain, hamilton_driver, SpectralBasis(domain, config.degree), lpts, lw, 0.0)
            C0, res = prob.fit(field_)
            log(f"  local flow: degree {config.degree}, {len(lpts)} points, initial metric fitted to {res:.1e} (relative L²)")
            flows.append(_Flow("local", prob, np.asarray(C0).ravel(), _kernel_profile(prob, domain)))
            continue
        if not config.collocation:
            continue
        if field_ is None:
            log(f"  σ = {sigma:g}: case {case.name} has no ambient metric for the kernel flow (reference solver only) — skipped")
            continue
        n_pts = config.points
        if config.seed is None:
            n_pts = domain.grid_count(config.points)
            if n_pts != config.points:
                log(f"  --points {config.points}: the {case.domain} grid rule takes {n_pts} points")
        pts, w = domain.points(n_pts, seed=config.seed)
        prob = kernel_flow_problem(domain, field_, GaussianKernel(sigma, backend=config.backend), _hamilton_driver, pts, w)
        flows.append(_Flow(f"sigma={sigma:g}", prob, prob.initial(), _kernel_profile(prob, domain)))
    if not flows:
        raise ValueError(f"--sigma: nothing to run for case {case.name} with σ = {list(config.sigma)}; pass a width > 0 "
                         f"(e.g. --sigma 0.3) for the finite-σ flow.")
    return case, domain, flows


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------


def _atomic_write(path, write):
    atomic_write(path, write)  # ntkflow.io: unique temporary in the same directory, fsync, os.replace, no symlinks


def _save_checkpoint(out_dir, config, records, arrays):
    """checkpoint.npz holds the states AND the records (one atomic rename: a Ctrl-C between two files can
    never pair a state with another step's time); checkpoint.json is a readable copy of the records."""
    meta = json.dumps({"fingerprint": config.fingerprint(), "flows": _jsonable(records)})
    _atomic_write(os.path.join(out_dir, "checkpoint.npz"), lambda f: np.savez(f, meta_json=np.array(meta), **arrays))
    _atomic_write(os.path.join(out_dir, "checkpoint.json"), lambda f: f.write(meta.encode()))


def _load_checkpoint(out_dir, config):
    pz = os.path.join(out_dir, "checkpoint.npz")
    if not os.path.exists(pz):
        return None, None
    arrays = read_npz(pz, what="--resume checkpoint", required=("meta_json",),
                      hint="rerun without --resume, or with a new -o")
    meta = json.loads(str(arrays.pop("meta_json")))
    if meta["fingerprint"] != config.fingerprint():
        raise ValueError(f"--resume: the checkpoint in {out_dir!r} was written with different settings (or a changed "
                         f"--metric-file); rerun with the same options, or without --resume, or with a new -o.")
    return meta["flows"], arrays


# ----------------------------------------------------------------------------------------------
# the job
# ----------------------------------------------------------------------------------------------


def _printer(quiet):
    def log(msg):
        if not quiet:
            print(msg, flush=True)

    return log


def run_ricci(config: RicciConfig = RicciConfig(), out_dir: str | None = None, *, resume: bool = False,
              quiet: bool = False, on_step: Callable | None = None) -> RicciResult:
    """Run every flow of the case (see the module docstring). ``on_step(label, info)`` is called after each
    accepted step and its checkpoint (tests raise KeyboardInterrupt there to simulate Ctrl-C)."""
    log = _printer(quiet)
    t_start = time.perf_counter()
    case, domain, flows = _build_flows(config, log)
    t_end = config.t_end or case.t_end
    log(f"ntkflow ricci: {case.name} — {case.description}")
    log(f"  flows: {', '.join(f.label for f in flows)}; t ∈ [0, {t_end:g}], {config.method} rtol {config.rtol:g} atol {config.atol:g}, "
        f"curvature limit {config.curvature_limit:g}")
    if resume and out_dir is not None and not os.path.exists(os.path.join(out_dir, "checkpoint.npz")):
        # refused, not silently started afresh; nothing is written (checked before the directory is made)
        raise ValueError(f"--resume: there is no checkpoint {os.path.join(out_dir, 'checkpoint.npz')!r} to resume "
                         f"from (the run stopped before its first step, or -o names another directory); rerun "
                         f"without --resume to start afresh.")
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    records, arrays = ({}, {})
    if resume and out_dir is not None:
        rec, arr = _load_checkpoint(out_dir, config)
        if rec is not None:
            records, arrays = rec, arr
            log(f"  resumed from {out_dir}/checkpoint.json: " + ", ".join(f"{k} at t = {v['t']:.6g} ({v['status']})" for k, v in records.items()))
    snap_times = np.linspace(0.0, t_end, config.snapshots + 1)
    status = "finished"
    for fl in flows:
        rec = records.get(fl.label)
        if rec is not None and rec["status"] != "running":
            log(f"  [{fl.label}] already done: {rec['message']}")
            continue
        if rec is None:
            sc0 = fl.problem.scalars(fl.y0)
            rec = {"status": "running", "message": "", "t": 0.0, "h": None, "steps": 0, "times": [0.0],
                   "history": {k: [v] for k, v in sc0.items()}, "snapshots": [0.0], "nfev": 0}
            arrays[f"y__{fl.label}"] = fl.y0
            arrays[f"snap__{fl.label}"] = fl.y0[None, :]
        y = np.asarray(arrays[f"y__{fl.label}"], dtype=float)
        log(f"  [{fl.label}] {type(fl.problem).__name__}, {y.size} unknowns, from t = {rec['t']:.6g}")
        last_print = [0.0]
        clock = time.perf_counter()

        def step_cb(info, fl=fl, rec=rec, clock=clock, last_print=last_print):
            rec["t"], rec["h"], rec["steps"] = info.t, info.h, info.step
            rec["max_step"] = None if math.isinf(info.max_step) else info.max_step
            rec["times"].append(info.t)
            for k, v in info.scalars.items():
                rec["history"].setdefault(k, []).append(v)
            arrays[f"y__{fl.label}"] = info.y
            if len(rec["snapshots"]) < len(snap_times) and info.t >= snap_times[len(rec["snapshots"])] - 1e-12:
                rec["snapshots"].append(info.t)
                arrays[f"snap__{fl.label}"] = np.vstack([arrays[f"snap__{fl.label}"], info.y[None, :]])
            if out_dir is not None:
                records[fl.label] = rec
                _save_checkpoint(out_dir, config, records, arrays)
            now = time.perf_counter() - clock
            if now - last_print[0] >= 1.0 or info.t >= t_end or info.step <= 1:
                last_print[0] = now
                sc = info.scalars
                log(f"  [{fl.label}] step {info.step:5d}  t = {info.t:.6g}  h = {info.h:.2e}  vol = {sc.get('volume', float('nan')):.6g}  "
                    f"R ∈ [{sc.get('R_min', float('nan')):.4g}, {sc.get('R_max', float('nan')):.4g}]  {now:.1f} s")
            if on_step is not None:
                on_step(fl.label, info)

        records[fl.label] = rec
        cap = rec.get("max_step")
        res = integrate(fl.problem, y, t_end, t0=rec["t"], first_step=rec["h"], step0=rec["steps"],
                        max_step=math.inf if cap is None else cap,
                        method=config.method, rtol=config.rtol, atol=config.atol, max_steps=config.max_steps,
                        curvature_limit=config.curvature_limit, on_step=step_cb)
        rec["nfev"] = rec.get("nfev", 0) + res.nfev
        if res.status == "interrupted":
            status = "interrupted"
            log(f"  [{fl.label}] interrupted at t = {rec['t']:.6g}; the last good state is in {out_dir}/checkpoint.npz "
                f"(continue with --resume)")
            break
        rec["status"], rec["message"] = res.status, res.message
        if out_dir is not None:
            _save_checkpoint(out_dir, config, records, arrays)
        log(f"  [{fl.label}] {res.status}: {res.message} ({rec['steps']} steps, {time.perf_counter() - clock:.1f} s)")
        if res.status == "singular":
            log(f"  [{fl.label}] the flow stops at a singularity; the last good state (t = {rec['t']:.6g}) is saved")
    errors, order = _errors(flows, records, arrays, domain, case)
    result = RicciResult(status, records, errors, order, out_dir)
    if out_dir is not None:
        _write_outputs(out_dir, config, case, flows, records, arrays, result, log)
    what = {"kernel": "σ-flow vs reference", "spectral": "spectral σ-flow vs reference",
            "kernel_vs_spectral": "σ-flow vs spectral σ-flow", "local": "local flow vs reference"}
    for kind, errs in result.errors.items():
        for s, e in errs.items():
            log(f"  σ = {s}: {what[kind]} at t = {e['t']:.4g}: " + ", ".join(f"{k} {v:.3e}" for k, v in e.items() if k != "t"))
        if result.order.get(kind):
            log(f"  fitted order in σ ({what[kind]}): " + ", ".join(f"{k} {v:.2f}" for k, v in result.order[kind].items()))
    log(f"  done in {time.perf_counter() - t_start:.1f} s: " + ", ".join(f"{k} {v['status']}" for k, v in records.items()))
    return result


_COMPARED = ("volume", "R_min", "R_max")


def _R_at(flow, domain, y, points):
    """Scalar curvature of a flow's state at domain points (m, A); None for the warped product (DeTurck gauge)."""
    if isinstance(flow.problem, (ConformalTorus, AxisymmetricSphere, ConformalSphere)):
        return _reference_R_at(flow.problem, y, points)
    if isinstance(flow.problem, WarpedProduct):
        return None
    return _kernel_R_at(flow.problem, domain, y, points)


def _points_of(flow):
    """The points at which a flow is compared pointwise: the collocation points, or the spectral grid."""
    p = flow.problem
    if isinstance(p, ConformalTorus):
        a, b = p.grid()
        return np.stack([a.ravel(), b.ravel()], axis=1)
    if isinstance(p, AxisymmetricSphere):
        mu, _ = p.nodes()
        return np.stack([np.sqrt(1 - mu ** 2), 0 * mu, mu], axis=1)
    if isinstance(p, ConformalSphere):
        return p.grid()[3]
    return getattr(p, "points", None)


def _compare(fa, fb, records, arrays, domain, exact=None):
    """Relative errors of flow fa against flow fb (or the exact solution): volume, R_min, R_max at the latest
    time both reached; R_pointwise = max |R_a − R_b| / max |R_b| at fa's points when both reached the same
    final time and both live in the domain's coordinates (conformal T², axisymmetric S², kernel flows:
    none of them moves points by a diffeomorphism)."""
    ra = records.get(fa.label)
    rb = None if fb is None else records.get(fb.label)
    if ra is None or (fb is not None and rb is None):
        return None
    t_c = ra["t"] if rb is None else min(ra["t"], rb["t"])
    if t_c <= 0:
        return None
    e = {"t": t_c}
    for k in _COMPARED:
        v = np.interp(t_c, ra["times"], ra["history"][k])
        if rb is not None:
            r = np.interp(t_c, rb["times"], rb["history"][k])
        elif exact is not None:
            r = float(exact(t_c)[k])
        else:
            return None
        e[k] = float(abs(v - r) / max(abs(r), 1e-300))
    if rb is not None and ra["status"] != "running" and abs(ra["t"] - rb["t"]) <= 1e-12 * max(1.0, rb["t"]):
        pts = _points_of(fa)
        if pts is not None:
            r_a = _R_at(fa, domain, arrays[f"y__{fa.label}"], pts)
            r_b = _R_at(fb, domain, arrays[f"y__{fb.label}"], pts)
            if r_a is not None and r_b is not None:
                e["R_pointwise"] = float(np.max(np.abs(r_a - r_b)) / np.max(np.abs(r_b)))
    return e


def _fit_orders(errs: dict) -> dict:
    """Slopes of log error against log σ (keys present for every σ, at least two σ)."""
    order = {}
    sig = [float(s) for s in errs]
    if len(sig) < 2:
        return order
    for k in _COMPARED + ("R_pointwise",):
        vals = [errs[s].get(k) for s in errs]
        if all(v is not None and v > 0 for v in vals):
            order[k] = float(np.polyfit(np.log(sig), np.log(vals), 1)[0])
    return order


def _errors(flows, records, arrays, domain, case):
    """{"kernel": σ → errors of the σ-flow vs the reference (or the exact solution), "spectral": σ → errors of
    the spectral σ-flow vs the reference (the pure σ-error), "kernel_vs_spectral": σ → collocation error},
    and the fitted orders in σ of the first two."""
    by = {f.label: f for f in flows}
    ref = by.get("reference")
    out = {"kernel": {}, "spectral": {}, "kernel_vs_spectral": {}, "local": {}}
    for f in flows:
        if f.label == "local":
            e = _compare(f, ref, records, arrays, domain, case.exact)
            if e is not None:
                out["local"]["0"] = e
        if f.label.startswith("sigma="):
            s = f.label[len("sigma="):]
            e = _compare(f, ref, records, arrays, domain, case.exact)
            if e is not None:
                out["kernel"][s] = e
            sp = by.get(f"spectral-sigma={s}")
            if sp is not None:
                e = _compare(f, sp, records, arrays, domain)
                if e is not None:
                    out["kernel_vs_spectral"][s] = e
        elif f.label.startswith("spectral-sigma=") and ref is not None:
            e = _compare(f, ref, records, arrays, domain)
            if e is not None:
                out["spectral"][f.label[len("spectral-sigma="):]] = e
    return out, {"kernel": _fit_orders(out["kernel"]), "spectral": _fit_orders(out["spectral"])}


# ----------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return x


def _write_outputs(out_dir, config, case, flows, records, arrays, result, log):
    payload = {"case": case.name, "description": case.description, "status": result.status,
               "settings": config.to_json(), "flows": records, "errors_vs_reference": result.errors["kernel"],
               "spectral_errors_vs_reference": result.errors["spectral"],
               "kernel_vs_spectral": result.errors["kernel_vs_spectral"],
               "local_vs_reference": result.errors["local"].get("0"), "order_in_sigma": result.order}
    if case.exact is not None:
        payload["exact"] = {lab: {k: _jsonable(np.asarray(v, dtype=float)) for k, v in case.exact(np.asarray(rec["times"])).items()}
                            for lab, rec in records.items()}
    _atomic_write(os.path.join(out_dir, "results.json"), lambda f: f.write(json.dumps(_jsonable(payload), indent=1).encode()))
    states = {}
    for fl in flows:
        if f"y__{fl.label}" in arrays:
            states[f"{fl.label}/y_last"] = arrays[f"y__{fl.label}"]
            states[f"{fl.label}/snapshots"] = arrays[f"snap__{fl.label}"]
    _atomic_write(os.path.join(out_dir, "states.npz"), lambda f: np.savez(f, **states))
    try:
        written = _plots(out_dir, case, flows, records, arrays, result)
    except Exception as exc:  # plotting must never lose a finished run
        log(f"  (plots skipped: {type(exc).__name__}: {exc})")
        written = []
    log(f"  wrote {out_dir}/results.json, states.npz" + "".join(f", {w}" for w in written))


def _plots(out_dir, case, flows, records, arrays, result):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (NullFormatter for the σ axis)

    written = []
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for lab, rec in records.items():
        t = np.asarray(rec["times"])
        ax[0].plot(t, rec["history"]["R_max"], label=f"{lab} R_max")
        ax[0].plot(t, rec["history"]["R_min"], "--", label=f"{lab} R_min")
        ax[1].plot(t, rec["history"]["volume"], label=lab)
        if case.exact is not None:
            ex = case.exact(t)
            ax[0].plot(t, ex["R_max"], "k:", lw=1)
            ax[1].plot(t, ex["volume"], "k:", lw=1)
    ax[0].set(xlabel="t", ylabel="scalar curvature R", title=f"{case.name}: curvature")
    ax[1].set(xlabel="t", ylabel="volume", title="volume (dotted: exact)" if case.exact else "volume")
    ax[0].legend(fontsize=7)
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(os.path.join(out_dir, "curvature.png"), lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)
    written.append("curvature.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for lab, rec in records.items():
        h = rec["history"]
        key = "anisotropy" if "anisotropy" in h else ("radius" if "radius" in h else ("psi_max" if "psi_max" in h else None))
        if key is not None:
            ax.plot(rec["times"], h[key], label=f"{lab}: {key}")
        elif "R_max" in h:
            ax.plot(rec["times"], np.asarray(h["R_max"]) - np.asarray(h["R_min"]), label=f"{lab}: R_max − R_min")
        if "neck_psi" in h:
            ax.plot(rec["times"], h["neck_psi"], "--", label=f"{lab}: neck ψ")
    ax.set(xlabel="t", title=f"{case.name}: metric (shape)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(os.path.join(out_dir, "metric.png"), lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)
    written.append("metric.png")

    fig, axs = plt.subplots(1, 2, figsize=(12, 4.2))
    first = True
    for fl in flows:
        rec, snaps = records.get(fl.label), arrays.get(f"snap__{fl.label}")
        if rec is None or snaps is None:
            continue
        s0, R0 = fl.profile(np.asarray(snaps[0]))
        s1, R1 = fl.profile(np.asarray(snaps[-1]))
        i0, i1 = np.argsort(s0), np.argsort(s1)
        if first:
            axs[0].plot(s0[i0], R0[i0], "k:", lw=1.5, label="t = 0")
            first = False
        t1 = rec["snapshots"][-1]
        axs[0].plot(s1[i1], R1[i1], label=f"{fl.label}, t = {t1:.3g}")
        axs[1].plot(s1[i1], (R1 - R0)[i1], label=f"{fl.label}, t = {t1:.3g}")
    axs[0].set(xlabel="position on the line through the bump", ylabel="scalar curvature R", title="R(x, t)")
    axs[1].set(xlabel="position on the line through the bump", ylabel="R(x, t) − R(x, 0)",
               title="change of R: the local flow (reference) vs finite σ")
    for ax in axs:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{case.name}: a curvature bump under the flows (non-locality at finite σ)", fontsize=9)
    fig.tight_layout()
    atomic_write(os.path.join(out_dir, "bump.png"), lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)
    written.append("bump.png")

    if len(result.errors["kernel"]) >= 2 or len(result.errors["spectral"]) >= 2:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for kind, mark in (("kernel", "o-"), ("spectral", "s--")):
            errs = result.errors[kind]
            if len(errs) < 2:
                continue
            sig = np.array([float(x) for x in errs])
            for k in ("volume", "R_max", "R_pointwise"):
                v = np.array([errs[x].get(k, np.nan) for x in errs])
                if np.all(np.isfinite(v)) and np.all(v > 0) and np.max(v) > 1e-12:  # skip conserved quantities
                    ax.loglog(sig, v, mark, label=f"{kind}: {k} (order {result.order[kind].get(k, float('nan')):.2f})")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(xlabel="σ", ylabel="relative error vs the reference (σ = 0)", title=f"{case.name}: error against σ")
        ax.legend(fontsize=7)
        fig.tight_layout()
        atomic_write(os.path.join(out_dir, "sigma_error.png"), lambda f: fig.savefig(f, format="png", dpi=90))
        plt.close(fig)
        written.append("sigma_error.png")
    return written
