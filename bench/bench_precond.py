"""Jacobi vs randomized Nyström preconditioning of the matrix-free Gauss–Newton CG, side by side in one run.

    python bench/bench_precond.py --out bench/results/precond --k 6 --n 100000 --steps 3 --rank 64
    python bench/bench_precond.py --out bench/results/precond --k 4 --n 10000 --steps 4 --rank 16 64 256

Problem: the no-symmetry quintic (``ntkflow.manifolds.random_quintic(SEED)``, ``ntkflow cy --random-quintic
0``), the matrix-free primal problem of ``ntkflow cy`` (:class:`ntkflow.cy.matrixfree.PrimalProblem`, log
link, numpy backend), the job's Levenberg–Marquardt settings (Marquardt scaling, one try per step, CG rtol
1e-2, at most 60 iterations).  The trajectory follows the Jacobi steps; at every state the SAME step is taken
once per preconditioner (alternating the order), so each row compares the same linear system: CG iterations,
step wall time (linearisation + sketch + CG + the loss of the trial point), sketch time, the loss reached.
Also records the wall time of one product JᵀWJ v (one column) and per column of a batched product (width =
rank), and the Jacobi-scaled Gram's top eigenvalues from the sketch (how much spectrum a low rank removes).
Writes OUT/bench_precond.json and OUT/bench_precond.png.  Timings on a shared machine are noisy: compare the
ratios measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/precond")
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--n", type=float, default=1e5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rank", type=int, nargs="+", default=[64])
    ap.add_argument("--quintic-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1, help="sampling seed")
    ap.add_argument("--cg-rtol", type=float, default=1e-2)
    ap.add_argument("--cg-maxiter", type=int, default=60)
    args = ap.parse_args(argv)

    import ntkflow  # noqa: F401
    from ntkflow.cy.matrixfree import PrimalProblem
    from ntkflow.manifolds import random_quintic, sample
    from ntkflow.solvers.least_squares import CGSolve, LMConfig, initial_state, lm_step
    from ntkflow.solvers.preconditioners import randomized_nystrom

    os.makedirs(args.out, exist_ok=True)
    n = int(args.n)
    t0 = time.perf_counter()
    ps = sample(random_quintic(args.quintic_seed), n, seed=args.seed, progress=False)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), args.k, link="log")
    t_features = time.perf_counter() - t0
    p = prob.n_params
    print(f"k={args.k} n={n}: p={p} (p/n = {p / n:.2f}); sampled in {t_sample:.0f} s, features {t_features:.0f} s",
          flush=True)
    cfg = LMConfig(max_iter=args.steps, gtol=1e-4, scaling="marquardt", max_tries=1, stop_on_reject=False,
                   min_lam=1e-9)
    solvers = {"jacobi": CGSolve(rtol=args.cg_rtol, maxiter=args.cg_maxiter)}
    for r in args.rank:
        solvers[f"nystrom-{r}"] = CGSolve(rtol=args.cg_rtol, maxiter=args.cg_maxiter, preconditioner="nystrom",
                                          rank=r, seed=0)

    # unit costs at the initial point: one column, and per column of a batched product of width max(rank)
    lin = prob.linearise(prob.initial())
    w = prob.weights

    def gram(V):
        return lin.J.T.mm(w[:, None] * lin.J.mm(V)) / n

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    gram(rng.standard_normal((p, 1)))
    t_one = time.perf_counter() - t0
    rmax = max(args.rank)
    sk = randomized_nystrom(gram, rmax, p=p, diag=lin.diag, seed=0)
    unit = {"product_seconds_1_column": t_one, "sketch_rank": rmax, "sketch_seconds": sk.seconds,
            "sketch_seconds_per_column": sk.seconds / rmax,
            "scaled_gram_top_eigenvalues": sk.eigs[: min(rmax, 64)].tolist(),
            "scaled_gram_mean_eigenvalue": 1.0}  # unit diagonal: trace/p = 1
    print(f"one product {t_one:.2f} s; sketch of rank {rmax} {sk.seconds:.1f} s ({sk.seconds / rmax:.2f} s/column); "
          f"scaled-Gram eigenvalues η_1 {sk.eigs[0]:.2f}, η_{rmax} {sk.eigs[-1]:.3f} (mean 1)", flush=True)
    del lin, sk

    state = initial_state(prob, cfg)
    rows = []
    names = list(solvers)
    for step in range(args.steps):
        order = names if step % 2 == 0 else names[::-1]
        out = {}
        for name in order:
            new = lm_step(prob, state, cfg, solvers[name])
            rec = dict(new.history[-1])
            out[name] = {"cg_iterations": rec["cg_iterations"], "cg_converged": rec["cg_converged"],
                         "step_seconds": rec["step_seconds"], "precond_seconds": rec.get("precond_seconds", 0.0),
                         "loss": rec["loss"], "accepted": rec["accepted"], "state": new}
            print(f"step {step + 1} {name:>12}: CG {rec['cg_iterations']:>3} ({'conv' if rec['cg_converged'] else 'max'})"
                  f"  step {rec['step_seconds']:7.1f} s  sketch {rec.get('precond_seconds', 0.0):6.1f} s  "
                  f"loss {rec['loss']:.6e} {'' if rec['accepted'] else '(rejected)'}", flush=True)
        rows.append({"step": step + 1, "lam": state.lam, "loss_before": state.loss,
                     **{k: {kk: vv for kk, vv in v.items() if kk != "state"} for k, v in out.items()}})
        state = out["jacobi"]["state"]
        payload = {"k": args.k, "n": n, "p": p, "quintic_seed": args.quintic_seed, "sampling_seed": args.seed,
                   "cg_rtol": args.cg_rtol, "cg_maxiter": args.cg_maxiter, "ranks": args.rank, "unit": unit,
                   "steps": rows, "seconds": {"sample": t_sample, "features": t_features},
                   "load_avg_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
                   "command": " ".join(["python", "bench/bench_precond.py"] + list(argv if argv is not None else sys.argv[1:]))}
        with open(os.path.join(args.out, "bench_precond.json"), "w") as f:  # after every step
            json.dump(payload, f, indent=1)
    _summary(rows, names)
    _plot(rows, names, os.path.join(args.out, "bench_precond.png"), args)


def _summary(rows, names):
    print("\n| preconditioner | CG iterations (sum) | step s (sum) | sketch s (sum) | step time vs Jacobi |")
    print("|---|---|---|---|---|")
    tj = sum(r["jacobi"]["step_seconds"] for r in rows)
    for nm in names:
        it = sum(r[nm]["cg_iterations"] for r in rows)
        ts = sum(r[nm]["step_seconds"] for r in rows)
        sk = sum(r[nm]["precond_seconds"] for r in rows)
        print(f"| {nm} | {it} | {ts:.1f} | {sk:.1f} | {ts / tj:.2f}× |")


def _plot(rows, names, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(rows))
    wd = 0.8 / len(names)
    for i, nm in enumerate(names):
        ax[0].bar(x + i * wd, [r[nm]["cg_iterations"] for r in rows], wd, label=nm)
        ts = np.array([r[nm]["step_seconds"] for r in rows])
        sk = np.array([r[nm]["precond_seconds"] for r in rows])
        ax[1].bar(x + i * wd, ts - sk, wd, label=nm)
        ax[1].bar(x + i * wd, sk, wd, bottom=ts - sk, color="k", alpha=0.35)
    for a, t in zip(ax, ("CG iterations (rtol 1e-2)", "step wall time, s (grey: sketch)")):
        a.set_xticks(x + 0.4 - wd / 2, [str(r["step"]) for r in rows])
        a.set_xlabel("Levenberg–Marquardt step")
        a.set_title(t)
    ax[0].legend(fontsize=8)
    fig.suptitle(f"no-symmetry quintic, k = {args.k}, n = {int(args.n)}: Jacobi vs randomized Nyström")
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    os.replace(path + ".tmp.png", path)


if __name__ == "__main__":
    main()
