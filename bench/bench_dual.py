"""Dual (kernel) form Gauss–Newton on the Fermat quintic (flows/dual.py): held-out σ and wall against the
number of Nyström centres m, for the Gaussian kernel exp((u − 1)/s²) (and optionally u^k / mixtures).

    python bench/bench_dual.py --out OUT [--n-train 10000] [--n-test 10000] [--s2 0.2 0.1]
        [--centers 300 1000 2000] [--centers-method uniform] [--max-iter 12] [--ridge 0] [--kernel gaussian]
        [--jacobian auto|lazy|dense] [--max-seconds 280] [--append]

Writes ``OUT/dual.json`` (one record per (s², m): settings, σ held-out/train, wall split into centre
selection and Gauss–Newton, per-iteration history with CG iterations) and ``OUT/dual.png`` (σ held-out
against m per s², and against iteration). Every run uses the same sampled points (seed 0).
Run single-threaded (``taskset -c 1``, ``OMP_NUM_THREADS=1``) to compare with the recorded numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))


def run(args, log=print):
    import numpy as np

    import ntkflow  # noqa: F401
    from ntkflow.cy import CYConfig, DataConfig, DualMethod, LMSettings, OutputConfig, run_cy
    from ntkflow.manifolds import preset, sample

    from _common import machine

    m = preset("fermat-quintic")
    t = time.perf_counter()
    ps = sample(m, args.n_train + args.n_test, seed=args.seed, progress=False)
    train, test = ps.split(args.n_train)
    log(f"sampled {args.n_train} + {args.n_test} points in {time.perf_counter() - t:.1f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dual.json"
    records = json.loads(path.read_text())["runs"] if (args.append and path.exists()) else []
    for s2 in args.s2:
        for mc in args.centers:
            # run_cy samples the same points (same seed, same split) and picks the centres with that seed
            cfg = CYConfig(DataConfig(n_train=args.n_train, n_test=args.n_test, seed=args.seed),
                           DualMethod(kernel=args.kernel, s2=s2, k=args.k, centers=mc, centers_method=args.centers_method,
                                      ridge=args.ridge, cg_maxiter=args.cg_maxiter, cg_rtol=args.cg_rtol,
                                      jacobian=args.jacobian),
                           LMSettings(max_iter=args.max_iter,
                                      time_budget=0.0 if math.isinf(args.max_seconds) else args.max_seconds),
                           OutputConfig(n_curvature=0))
            log(f"--- {args.kernel} s2={s2} m={mc} ({args.centers_method})")
            t0 = time.perf_counter()
            res = run_cy(cfg, None, quiet=log is None)
            wall = time.perf_counter() - t0
            met = res.metrics
            records.append({"kernel": args.kernel, "s2": s2, "k": args.k, "centers": mc,
                            "centers_method": args.centers_method, "ridge": args.ridge,
                            "n_train": args.n_train, "n_test": args.n_test,
                            "sigma_test": met["sigma_test"], "sigma_train": met["sigma_train"],
                            "fs_sigma_test": met["fs_baseline"]["sigma_test"], "wall": wall,
                            "timings": met["timings"], "jacobian": met["method_info"]["jacobian"], "iterations": met["iterations"],
                            "history": list(res.history)})
            path.write_text(json.dumps({"benchmark": "dual", "manifold": m.name, "machine": machine(),
                                        "command": " ".join(sys.argv), "runs": records}, indent=2, default=float))
    plot(records, out / "dual.png")
    log(f"wrote {path} and {out / 'dual.png'}")
    return records


def plot(records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    def key_of(r):
        par = f"s²={r['s2']}" if r["kernel"] != "power" else f"k={r['k']}"
        return (r["kernel"], par, r["centers_method"], r.get("ridge", 0.0))

    keys = sorted({key_of(r) for r in records}, key=str)
    for key in keys:
        rs = sorted([r for r in records if key_of(r) == key], key=lambda r: r["centers"])
        lab = f"{key[0]} {key[1]} ({key[2]}{', μ=%g' % key[3] if key[3] else ''})"
        ax[0].semilogy([r["centers"] for r in rs], [r["sigma_test"] for r in rs], "o-", label=lab)
        for r in rs:
            h = r["history"]
            ax[1].semilogy([x["iteration"] for x in h], [x["sigma_test"] for x in h], ".-",
                           label=f"{lab}, m={r['centers']}")
    ax[0].axhline(0.099, color="k", ls=":", label="literal flow, all 10⁴ points as centres (s²=0.2)")
    ax[0].set_xlabel("Nyström centres m")
    ax[0].set_ylabel("held-out σ")
    ax[0].legend(fontsize=7)
    ax[1].set_xlabel("Gauss–Newton iteration")
    ax[1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--kernel", default="gaussian", choices=("gaussian", "mixture", "power"))
    p.add_argument("--s2", type=float, nargs="+", default=[0.2, 0.1])
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--centers", type=int, nargs="+", default=[300, 1000, 2000])
    p.add_argument("--centers-method", default="uniform", choices=("uniform", "rpcholesky"))
    p.add_argument("--max-iter", type=int, default=12)
    p.add_argument("--ridge", type=float, default=0.0)
    p.add_argument("--cg-maxiter", type=int, default=300)
    p.add_argument("--cg-rtol", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jacobian", default="auto", choices=("auto", "lazy", "dense"),
                   help="auto: J formed per step when n·m <= 2.5e7, else every product one lazy pass")
    p.add_argument("--max-seconds", type=float, default=280.0, help="wall budget of each Gauss–Newton run")
    p.add_argument("--append", action="store_true", help="add to an existing OUT/dual.json")
    args = p.parse_args(argv)
    run(args)


if __name__ == "__main__":
    main()
