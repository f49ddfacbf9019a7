"""σ against the number of points and the kernel degree on a quintic with no symmetry.

    python bench/bench_nosym.py --out OUT --n 10000 100000 --k 5 --budget 600
    python bench/bench_nosym.py --out OUT --n 100000 1000000 --k 5 6 --backend jax   # GPU

Manifold: ``ntkflow.cy.random_quintic(SEED)`` (complex Gaussian coefficients on all 126 monomials;
no phase, permutation or conjugation symmetry). Model: the full u^k function space in primal form,
φ = s'ᵀ H s̄' / |z|^{2k}, H Hermitian over the whitened degree-k sections (N_k² − ... real parameters,
flows/matrixfree.py). Solver: Levenberg–Marquardt Gauss–Newton with matrix-free Jacobi-preconditioned CG
on (JᵀWJ/n + μP + λD) δ = −JᵀWr/n − μPv (μ: ``--ridge``, Tikhonov on H). For each (n, k): train on n
points, σ on ``--n-test`` held-out points after every step; stops at ``--max-steps``, at the per-run
``--budget`` seconds, or when the loss stalls. Writes OUT/bench_nosym.json and OUT/bench_nosym.png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def run_one(train, test, k, *, backend, ridge, max_steps, budget, cg_rtol, cg_maxiter, link="identity", log=print):
    """The matrix-free problem of ``ntkflow cy`` fitted by the generic Levenberg–Marquardt (one try per step,
    Marquardt scaling, ridge μθᵀPθ with μ = ``ridge``), stopping when an accepted step gains < 1e-4 (relative)."""
    from ntkflow.cy import matrixfree as mf
    from ntkflow.manifolds import fs_det, sigma_weighted
    from ntkflow.solvers.least_squares import CGSolve, LMConfig, levenberg_marquardt

    n, n_test = len(train), len(test)
    t0 = time.perf_counter()
    t_sample = 0.0
    t1 = time.perf_counter()
    if link == "log" and ridge:
        raise ValueError(f"--ridge: the Tikhonov penalty pulls H to 0, which the log link cannot take; received {ridge}.")
    prob = mf.PrimalProblem(train.points, train.jacobian, train.weights, np.log(train.omega_sq), k, backend=backend,
                            link=link)
    tprob = mf.PrimalProblem(test.points, test.jacobian, test.weights, np.log(test.omega_sq), k, whiten=False,
                             backend=backend, link=link)
    t_features = time.perf_counter() - t1
    v = prob.initial()  # identity: Fubini–Study; log: H = I in the whitened basis

    def sigma_test(vv):
        H, _ = prob.unvec(vv)
        g = tprob.metric(tprob.xp.asarray(prob.monomial_H(H)))
        d = np.real(np.asarray(tprob.xp.linalg.det(g)))
        return sigma_weighted(d / test.omega_sq, test.weights)

    fs = sigma_weighted(fs_det(test) / test.omega_sq, test.weights)
    start = sigma_test(v)
    log(f"[n={n} k={k} link={link} ridge={ridge:g}] {prob.nk} sections, {prob.n_params - 1} parameters; "
        f"features {t_features:.1f} s; FS held-out σ {fs:.4f}, start {start:.4f}")

    def record(state, rec):
        r, _ = prob.residual(state.theta)
        out = {"step": rec["iteration"], "sigma_train": sigma_weighted(np.exp(np.asarray(r)), prob.weights),
               "sigma_test": sigma_test(state.theta), "seconds": rec["step_seconds"],
               "elapsed": time.perf_counter() - t0}
        log(f"  step {rec['iteration']}: CG {rec.get('cg_iterations', 0):>3}  loss {rec['loss']:.4e}  "
            f"σ train {out['sigma_train']:.4f}  σ held-out {out['sigma_test']:.4f}  λ {rec['lam']:.1e}  "
            f"{rec['step_seconds']:.1f} s{'' if rec['accepted'] else '  (rejected)'}")
        return out

    t_fit = time.perf_counter()
    cfg = LMConfig(max_iter=max_steps, gtol=1e-4, scaling="marquardt", max_tries=1, stop_on_reject=False,
                   min_lam=1e-9, mu=ridge, time_budget=budget)
    res = levenberg_marquardt(prob, cfg, solve=CGSolve(rtol=cg_rtol, maxiter=cg_maxiter), hooks=[record])
    hist = list(res.history)
    best = min([(start, 0)] + [(h["sigma_test"], h["step"]) for h in hist])
    return dict(n=n, k=k, link=link, ridge=ridge, start_sigma_test=start, n_test=n_test, sections=prob.nk, parameters=prob.n_params - 1,
                backend=backend, fs_sigma_test=fs, best_sigma_test=best[0], best_step=best[1],
                final_sigma_train=hist[-1]["sigma_train"] if hist else None,
                final_sigma_test=hist[-1]["sigma_test"] if hist else None, status=res.status.name,
                seconds=dict(sample=t_sample, features=t_features, fit=time.perf_counter() - t_fit,
                             total=time.perf_counter() - t0), history=[{k: (v.value if hasattr(v, "value") else v)
                                                                         for k, v in h.items()} for h in hist])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench_out")
    p.add_argument("--n", type=float, nargs="+", default=[1e4, 1e5])
    p.add_argument("--k", type=int, nargs="+", default=[5])
    p.add_argument("--ridge", type=float, nargs="+", default=[0.0])
    p.add_argument("--link", nargs="+", default=["log"], choices=["identity", "log"],
                   help="potential φ = F (identity) or K = log(s†Hs)/(kπ) (log); default log")
    p.add_argument("--n-test", type=int, default=20_000)
    p.add_argument("--quintic-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--backend", default="numpy", choices=["numpy", "jax"])
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--budget", type=float, default=1200.0, help="seconds of fitting per (n, k, ridge) run")
    p.add_argument("--cg-rtol", type=float, default=1e-2)
    p.add_argument("--cg-maxiter", type=int, default=60)
    args = p.parse_args(argv)

    import jax

    import ntkflow  # noqa: F401
    from ntkflow.manifolds import random_quintic

    os.makedirs(args.out, exist_ok=True)
    m = random_quintic(args.quintic_seed)
    dev = jax.devices()[0]
    from ntkflow.manifolds import sample

    runs = []
    path = os.path.join(args.out, "bench_nosym.json")
    ns = [int(x) for x in args.n]
    t0 = time.perf_counter()
    ps = sample(m, max(ns) + args.n_test, seed=args.seed, progress=False)  # train = a prefix, test = the tail
    t_sample = time.perf_counter() - t0
    print(f"sampled {len(ps)} points in {t_sample:.1f} s", flush=True)
    test = ps[len(ps) - args.n_test:]
    for k in args.k:
        for n in ns:
            for link, mu in [(li, mu) for li in args.link for mu in args.ridge]:
                runs.append(run_one(ps[:n], test, k, backend=args.backend, ridge=mu, link=link,
                                    max_steps=args.max_steps, budget=args.budget, cg_rtol=args.cg_rtol,
                                    cg_maxiter=args.cg_maxiter))
                runs[-1]["seconds"]["sample_all"] = t_sample
                out = dict(manifold=m.name, quintic_seed=args.quintic_seed, runs=runs,
                           device={"platform": dev.platform, "kind": getattr(dev, "device_kind", str(dev)),
                                   "jax": jax.__version__, "cpus": os.cpu_count()},
                           command=" ".join(["python", "bench/bench_nosym.py"] + list(argv or sys.argv[1:])))
                with open(path, "w") as f:  # after every run: a time-out keeps what was measured
                    json.dump(out, f, indent=1)
    _plot(runs, os.path.join(args.out, "bench_nosym.png"))
    print("\n| k | n | link | ridge μ | parameters | best held-out σ | final train σ | steps | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['k']} | {r['n']:.0e} | {r['link']} | {r['ridge']:g} | {r['parameters']} | {r['best_sigma_test']:.4f} | "
              f"{r['final_sigma_train']:.4f} | {len(r['history'])} | {r['seconds']['fit']:.0f} |")


def _plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for key in sorted({(r["k"], r["ridge"], r.get("link", "identity")) for r in runs}):
        rs = sorted((r for r in runs if (r["k"], r["ridge"], r.get("link", "identity")) == key), key=lambda r: r["n"])
        ax[0].loglog([r["n"] for r in rs], [r["best_sigma_test"] for r in rs], "o-",
                     label=f"k={key[0]}, {key[2]}, μ={key[1]:g}")
        ax[0].loglog([r["n"] for r in rs], [r["final_sigma_train"] for r in rs], "x--", color=ax[0].lines[-1].get_color())
    ax[0].set_xlabel("training points n")
    ax[0].set_ylabel("σ (o held-out, x train)")
    ax[0].legend()
    for r in runs:
        h = r["history"]
        ax[1].semilogy([x["elapsed"] for x in h], [x["sigma_test"] for x in h], ".-", label=f"n={r['n']:.0e} k={r['k']} {r.get('link', 'identity')}")
    ax[1].set_xlabel("wall s")
    ax[1].set_ylabel("held-out σ")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
