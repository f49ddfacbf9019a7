"""Run by tests/cy/test_devices.py in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=D
(the flag must be set before jax is imported, so it cannot run inside the pytest process).

Computes, on the same points, the quantities of the one-device problems (NumPy backend, JAX on one
device) and of the problems sharded over D forced host devices, and writes them to OUT.json for the test
to compare; nothing is asserted here. Usage: python sharded_check.py OUT.json WORKDIR
"""
from __future__ import annotations

import json
import sys

import jax
import numpy as np

import ntkflow  # noqa: F401  (float64)
from ntkflow.cy import matrixfree as mf
from ntkflow.cy.dual import DualProblem
from ntkflow.engine import ProjectiveGaussian
from ntkflow.cy.config import BergmanMethod, CYConfig, DataConfig, LMSettings, OutputConfig
from ntkflow.cy.job import run_cy
from ntkflow.manifolds import random_quintic, sample, sigma
from ntkflow.solvers.least_squares import CGSolve, LMConfig, NormalEquations, levenberg_marquardt

D = len(jax.devices())


def rel(a, b) -> float:
    """max |a − b| / max |b| (0 for two zero arrays)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a)))


def primal_case(n: int, link: str, k: int = 2, n_test: int = 401) -> dict:
    """Loss, JᵀWr, JᵀWJV, Jacobi diagonal, two LM steps and held-out σ: sharded vs one device."""
    m = random_quintic(3)
    ps = sample(m, n + n_test, seed=21)
    train, test = ps.split(n)
    args = (train.points, train.jacobian, train.weights, np.log(train.omega_sq), k)
    ref = mf.PrimalProblem(*args, link=link)  # NumPy, the reference
    one = mf.PrimalProblem(*args, link=link, backend="jax")  # JAX, one device
    shd = mf.PrimalProblem(*args, link=link, backend="jax", devices=D)
    rng = np.random.default_rng(5)
    v = ref.initial() + 1e-3 * rng.normal(size=ref.n_params) / ref.nk
    la, ls = ref.linearise(v), shd.linearise(v)
    grad = la.J.T.mv(ref.weights * la.r) / ref.n
    V = rng.normal(size=(ref.n_params, 3))
    gram = la.J.T.mm(ref.weights[:, None] * la.J.mm(V)) / ref.n
    cfg = LMConfig(max_iter=2, scaling="marquardt", max_tries=1, stop_on_reject=False)
    steps = {name: levenberg_marquardt(p, cfg, solve=CGSolve(rtol=1e-2, maxiter=60))
             for name, p in (("ref", ref), ("one", one), ("shd", shd))}
    theta = steps["ref"].value

    def held_out(devices, backend):
        tp = mf.PrimalProblem(test.points, test.jacobian, test.weights, np.log(test.omega_sq), k, whiten=False,
                              link=link, backend=backend, devices=devices)
        det = np.real(np.asarray(tp.xp.linalg.det(tp.metric(tp.xp.asarray(ref.monomial_H(ref.unvec(theta)[0]))))))
        return sigma(test, det)

    r_shd, _ = shd.residual(v)
    return {
        "n": n, "link": link, "rows": int(shd.S.shape[0]), "sharding": list(shd.S.sharding.spec),
        "n_shards": len(shd.S.addressable_shards), "shard_rows": sorted({s.data.shape[0] for s in shd.X.addressable_shards}),
        "loss": [ref.loss(v), one.loss(v), shd.loss(v)],
        "initial": rel(shd.initial(), ref.initial()),
        "residual": rel(np.asarray(r_shd), ref.residual(v)[0]),
        "weights": rel(shd.weights, ref.weights),
        "normal_equations": isinstance(ls, NormalEquations),
        "grad": rel(ls.grad, grad), "gram": rel(ls.gram.mm(V), gram), "diag": rel(ls.diag, la.diag),
        "gram_symmetric": rel(V.T @ ls.gram.mm(V), (V.T @ ls.gram.mm(V)).T),
        "grad_scale": float(np.max(np.abs(grad))),
        "step_theta": {name: rel(res.value, theta) for name, res in steps.items()},
        "step_loss": {name: [h["loss"] for h in res.history] for name, res in steps.items()},
        "cg_iterations": {name: [h.get("cg_iterations") for h in res.history] for name, res in steps.items()},
        "sigma_test": [held_out(None, "numpy"), held_out(D, "jax")],
    }


def dual_case(n: int = 1001, m: int = 40, tile: int = 64, n_test: int = 301) -> dict:
    """The dual form's normal equations, two LM steps and held-out σ: rows sharded vs one device (lazy
    and dense J)."""
    ps = sample(random_quintic(3), n + n_test, seed=2)
    train, test = ps.split(n)
    args = (ProjectiveGaussian(0.3), train.points[:m], train.points, train.jacobian, train.weights,
            np.log(train.omega_sq))
    shd = DualProblem(*args, tile=tile, devices=D)
    rng = np.random.default_rng(0)
    v = shd.initial()
    v[:-1] = 1e-2 * rng.normal(size=m)
    V = rng.normal(size=(m + 1, 3))
    ls = shd.linearise(v)
    out = {"n": n, "mode": shd.mode, "normal_equations": isinstance(ls, NormalEquations)}
    cfg = LMConfig(max_iter=2, scaling="marquardt", max_tries=1, stop_on_reject=False)
    res_shd = levenberg_marquardt(shd, cfg, solve=CGSolve(rtol=1e-4, maxiter=300))
    for mode in ("lazy", "dense"):
        ref = DualProblem(*args, tile=tile, jacobian=mode)
        la = ref.linearise(v)
        res = levenberg_marquardt(ref, cfg, solve=CGSolve(rtol=1e-4, maxiter=300))
        det = lambda th: np.real(np.linalg.det(ref.metric(th[:-1], test.points, test.jacobian)))  # noqa: E731
        out[mode] = {"grad": rel(ls.grad, la.J.T.mv(ref.w * la.r) / n),
                     "gram": rel(ls.gram.mm(V), la.J.T.mm(ref.w[:, None] * la.J.mm(V)) / n),
                     "diag": rel(ls.diag, la.diag), "step_theta": rel(res_shd.value, res.value),
                     "step_loss": [[h["loss"] for h in res.history], [h["loss"] for h in res_shd.history]],
                     "sigma_test": [sigma(test, det(res.value)), sigma(test, det(res_shd.value))]}
    return out


def strided_jacobi(n: int = 20_003) -> dict:
    """n > JACOBI_MAX_POINTS: the Jacobi diagonal on the strided subset, one device vs D (k = 1)."""
    m = random_quintic(3)
    ps = sample(m, n, seed=4)
    args = (ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 1)
    ref, shd = mf.PrimalProblem(*args), mf.PrimalProblem(*args, backend="jax", devices=D)
    v = ref.initial()
    exact = ref.jacobi_diag(v, max_points=None)
    return {"n": n, "rows": int(shd.S.shape[0]), "strided": rel(shd.jacobi_diag(v), ref.jacobi_diag(v)),
            "strided_vs_exact": rel(ref.jacobi_diag(v), exact), "exact": rel(shd.jacobi_diag(v, max_points=None), exact)}


def job(workdir: str) -> dict:
    """run_cy with --devices D against the one-process run (NumPy products) on the same points (n divisible
    by D: no padding; the problem-level cases above are padded)."""
    out = {}
    for name, devices in (("one", None), ("shd", D)):
        cfg = CYConfig(data=DataConfig(random_quintic=0, n_train=1000, n_test=300, seed=1),
                       method=BergmanMethod(k=2, solver="matrix-free", devices=devices),
                       lm=LMSettings(max_iter=2), output=OutputConfig(n_curvature=0))
        res = run_cy(cfg, f"{workdir}/{name}", quiet=True)
        with open(f"{workdir}/{name}/metrics.json") as f:
            written = json.load(f)
        out[name] = {"sigma_test": res.metrics["sigma_test"], "sigma_train": res.metrics["sigma_train"],
                     "losses": [h["loss"] for h in res.history], "devices": written["method_info"]["devices"],
                     "fingerprint": written["fingerprint"]}
    return out


def main(path: str, workdir: str) -> None:
    results = {"devices": D, "jax": jax.__version__,
               "primal": [primal_case(1001, "identity"), primal_case(1001, "log")],
               "dual": dual_case(), "jacobi": strided_jacobi(), "job": job(workdir)}
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
