"""The matrix-free Gauss–Newton step, today's products against an earlier revision's, side by side in one run.

    python bench/bench_gn_step.py --out bench/results/gn_step --k 6 --n 100000 --steps 2 --baseline-rev 8f65425

Problem: the no-symmetry quintic (``ntkflow cy --random-quintic 0``), the matrix-free primal problem of
``ntkflow cy`` (:class:`ntkflow.cy.matrixfree.PrimalProblem`, log link, numpy backend), Jacobi-preconditioned CG
with the job's settings (Marquardt scaling, one try per step, CG rtol 1e-2, ≤ 60 iterations). Variants:

* ``baseline`` — ``cy/matrixfree.py`` as it was at ``--baseline-rev`` (read with ``git show``; that revision
  rebuilt Y and g⁻ᵀȲ inside every product and formed the Jacobi diagonal from dense N_k × N_k matrices per
  point);
* ``float64`` — today's code (Ỹ = T Y kept per linearisation, T†T = g⁻¹; the Jacobi diagonal by two GEMMs);
* ``float32`` — today's code with ``product_dtype="float32"`` (complex64 products, float64 residual).

Every variant takes the same steps from the same start on the same points (the trajectory of ``float64``;
the order of the variants alternates per step), so each row compares the same linear system: CG iterations,
the step's wall time split into linearisation (residual, g⁻¹, Ỹ, the Jacobi diagonal) and CG + trial loss,
and the loss reached. Also one product JᵀWJ v per variant. Timings on a shared machine are noisy; the ratios
measured in one run are the figures to quote. Writes OUT/bench_gn_step.json and OUT/bench_gn_step.png.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def _module_at(rev: str):
    """cy/matrixfree.py at git revision ``rev`` as a module (its imports are absolute ``ntkflow`` ones)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = subprocess.run(["git", "show", f"{rev}:cy/matrixfree.py"], cwd=root, check=True, capture_output=True,
                         text=True).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="ntkflow-baseline-"), "matrixfree_baseline.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("matrixfree_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/gn_step")
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--n", type=float, default=1e5)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--baseline-rev", default="8f65425", help="git revision of the baseline products ('' = none)")
    ap.add_argument("--variants", nargs="+", default=["baseline", "float64", "float32"],
                    choices=["baseline", "float64", "float32"])
    ap.add_argument("--quintic-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1, help="sampling seed")
    ap.add_argument("--cg-rtol", type=float, default=1e-2)
    ap.add_argument("--cg-maxiter", type=int, default=60)
    args = ap.parse_args(argv)

    import ntkflow  # noqa: F401
    from ntkflow.cy import matrixfree
    from ntkflow.manifolds import random_quintic, sample
    from ntkflow.solvers.least_squares import CGSolve, LMConfig, initial_state, lm_step

    os.makedirs(args.out, exist_ok=True)
    n = int(args.n)
    ps = sample(random_quintic(args.quintic_seed), n, seed=args.seed, progress=False)
    data = (ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), args.k)
    variants = [v for v in args.variants if v != "baseline" or args.baseline_rev]
    base = _module_at(args.baseline_rev) if "baseline" in variants else None
    problems, features = {}, {}
    for name in variants:  # all kept: the same points, built once each
        t0 = time.perf_counter()
        if name == "baseline":
            problems[name] = base.PrimalProblem(*data, link="log")
        else:
            problems[name] = matrixfree.PrimalProblem(*data, link="log", product_dtype=name)
        features[name] = time.perf_counter() - t0
    p = problems[variants[0]].n_params
    print(f"k={args.k} n={n}: p={p}; features " + ", ".join(f"{k} {v:.0f} s" for k, v in features.items()), flush=True)
    cfg = LMConfig(max_iter=args.steps, gtol=1e-4, scaling="marquardt", max_tries=1, stop_on_reject=False,
                   min_lam=1e-9)
    solve = CGSolve(rtol=args.cg_rtol, maxiter=args.cg_maxiter)

    unit = {}
    rng = np.random.default_rng(0)
    V = rng.standard_normal((p, 1))
    ref = "float64" if "float64" in variants else variants[0]
    state = initial_state(problems[ref], cfg)
    for name in variants:
        prob = problems[name]
        t0 = time.perf_counter()
        lin = prob.linearise(state.theta)
        t_lin = time.perf_counter() - t0
        t0 = time.perf_counter()
        lin.J.T.mm(prob.weights[:, None] * lin.J.mm(V))
        unit[name] = {"linearise_seconds": t_lin, "product_seconds": time.perf_counter() - t0}
        print(f"{name:>8}: linearise {t_lin:6.1f} s, one product JᵀWJv {unit[name]['product_seconds']:6.2f} s", flush=True)
        del lin

    rows = []
    for step in range(args.steps):
        order = variants if step % 2 == 0 else variants[::-1]
        out = {}
        for name in order:
            new = lm_step(problems[name], state, cfg, solve)
            rec = dict(new.history[-1])
            out[name] = {"cg_iterations": rec["cg_iterations"], "step_seconds": rec["step_seconds"],
                         "loss": rec["loss"], "accepted": rec["accepted"], "state": new}
            print(f"step {step + 1} {name:>8}: CG {rec['cg_iterations']:>3}  step {rec['step_seconds']:7.1f} s  "
                  f"loss {rec['loss']:.6e}{'' if rec['accepted'] else ' (rejected)'}", flush=True)
        rows.append({"step": step + 1, "lam": state.lam, "loss_before": state.loss,
                     **{k: {kk: vv for kk, vv in v.items() if kk != "state"} for k, v in out.items()}})
        state = out[ref]["state"]
        payload = {"k": args.k, "n": n, "p": p, "baseline_rev": args.baseline_rev, "variants": variants,
                   "features_seconds": features, "unit": unit, "steps": rows, "cg_rtol": args.cg_rtol,
                   "cg_maxiter": args.cg_maxiter, "load_avg": os.getloadavg(), "cpus": os.cpu_count(),
                   "command": " ".join(["python", "bench/bench_gn_step.py"] + list(argv if argv is not None else sys.argv[1:]))}
        with open(os.path.join(args.out, "bench_gn_step.json"), "w") as f:  # after every step
            json.dump(payload, f, indent=1)
    print("\n| variant | CG iterations (sum) | step s (sum) | step time vs " + variants[0] + " |")
    print("|---|---|---|---|")
    t_ref = sum(r[variants[0]]["step_seconds"] for r in rows)
    for name in variants:
        ts = sum(r[name]["step_seconds"] for r in rows)
        print(f"| {name} | {sum(r[name]['cg_iterations'] for r in rows)} | {ts:.1f} | {ts / t_ref:.2f}× |")
    _plot(rows, variants, os.path.join(args.out, "bench_gn_step.png"), args)


def _plot(rows, names, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    x = np.arange(len(rows))
    wd = 0.8 / len(names)
    for i, nm in enumerate(names):
        ax.bar(x + i * wd, [r[nm]["step_seconds"] for r in rows], wd, label=nm)
    ax.set_xticks(x + 0.4 - wd / 2, [f"step {r['step']}" for r in rows])
    ax.set_ylabel("step wall time (s)")
    ax.set_title(f"Gauss–Newton step, k = {args.k}, n = {int(args.n)} (no-symmetry quintic)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
