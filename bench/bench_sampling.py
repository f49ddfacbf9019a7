"""Sampling throughput: batched line-intersection sampler vs a per-line ``np.roots`` baseline.

Both produce the complete output (points, weights, |Ω|², patch, elim, pullback Jacobians). The
baseline is :func:`ntkflow.manifolds.sample_reference` — the same line stream and FFT coefficients,
one line at a time, roots by ``np.roots`` — followed by the same vectorised chart code.

Protocol: correctness first (identical point sets on a small run, |Q| residuals), a warm-up, then
fast and baseline timed alternately ``--repeat`` times at the same n (side by side, so machine
contention affects both alike); the ratio of medians is the headline. The fast sampler is also timed
at ``--n`` (default 10⁶). The load average is recorded: on a shared 2-core machine absolute times
vary by 2× with other jobs, ratios much less.

    python bench/bench_sampling.py --out bench/results/
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np


def _timeit(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifold", default="fermat-quintic")
    ap.add_argument("--psi", type=float, default=None)
    ap.add_argument("--n", type=int, default=1_000_000, help="points for the headline fast timing")
    ap.add_argument("--n-compare", type=int, default=100_000, help="points for the side-by-side comparison")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join("bench", "results"))
    args = ap.parse_args(argv)

    from ntkflow.manifolds import fs_det, preset, sample, sample_reference, sigma

    m = preset(args.manifold, psi=args.psi)
    os.makedirs(args.out, exist_ok=True)

    # ---- correctness first --------------------------------------------------------------------
    n_chk = 100 * m.degree
    fast, ref = sample(m, n_chk, seed=1), sample_reference(m, n_chk, seed=1)
    key = lambda ps: np.sort(np.round(ps.points.real * 1e8) + 1j * np.round(ps.points.imag * 1e8), axis=None)  # noqa: E731
    same_points = bool(np.array_equal(key(fast), key(ref)))
    res_fast = float(np.max(np.abs(m.Q(fast.points)) / m.term_scale(fast.points)))
    res_ref = float(np.max(np.abs(m.Q(ref.points)) / m.term_scale(ref.points)))
    if not same_points:
        raise SystemExit("correctness check failed: fast and reference samplers disagree")

    # ---- warm-up, then side by side ----------------------------------------------------------
    sample(m, 20_000, seed=0, progress=False)
    sample_reference(m, 2_000, seed=0)
    load_before = os.getloadavg()
    t_fast, t_ref = [], []
    for r in range(args.repeat):
        t_fast += _timeit(lambda: sample(m, args.n_compare, seed=r, progress=False), 1)
        t_ref += _timeit(lambda: sample_reference(m, args.n_compare, seed=r), 1)
    med_fast, med_ref = statistics.median(t_fast), statistics.median(t_ref)

    # ---- headline: n points with everything --------------------------------------------------
    t_big = _timeit(lambda: sample(m, args.n, seed=123, progress=False), args.repeat)
    ps = sample(m, min(args.n, 200_000), seed=7, progress=False)
    sig = sigma(ps, fs_det(ps))
    scaling = {}
    for n in (10_000, 100_000, args.n):
        scaling[n] = min(_timeit(lambda: sample(m, n, seed=5, progress=False), 2 if n < args.n else 1))
    load_after = os.getloadavg()

    result = {
        "manifold": m.name,
        "what": "points + weights + |Omega|^2 + patch + elim + pullback Jacobians",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "numpy": np.__version__,
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "correctness": {"same_point_sets": same_points, "max_rel_residual_fast": res_fast,
                        "max_rel_residual_ref": res_ref, "sigma_fs": sig, "sigma_fs_points": len(ps)},
        "compare": {"n": args.n_compare, "fast_s": t_fast, "np_roots_s": t_ref,
                    "fast_points_per_s": args.n_compare / med_fast, "np_roots_points_per_s": args.n_compare / med_ref,
                    "speedup_median": med_ref / med_fast},
        "headline": {"n": args.n, "times_s": t_big, "median_s": statistics.median(t_big), "min_s": min(t_big),
                     "points_per_s": args.n / statistics.median(t_big)},
        "scaling_min_s": {str(k): v for k, v in scaling.items()},
    }
    jpath = os.path.join(args.out, "bench_sampling.json")
    with open(jpath, "w") as f:
        json.dump(result, f, indent=2)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.bar(["batched eigvals\n(ntkflow)", "per-line np.roots"],
            [result["compare"]["fast_points_per_s"], result["compare"]["np_roots_points_per_s"]], color=["C0", "C1"])
    ax1.set_ylabel("points / s (with weights, Jacobians)")
    ax1.set_title(f"{m.name}, n = {args.n_compare:,}: {result['compare']['speedup_median']:.1f}x")
    ns = sorted(scaling)
    ax2.loglog(ns, [scaling[k] for k in ns], "o-", label="ntkflow sample")
    ax2.loglog(ns, [k / result["compare"]["np_roots_points_per_s"] for k in ns], "s--", label="np.roots (extrapolated)")
    ax2.set_xlabel("points")
    ax2.set_ylabel("seconds")
    ax2.set_title(f"{args.n:,} points: {result['headline']['median_s']:.2f} s (median of {args.repeat})")
    ax2.legend()
    fig.suptitle(f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} cores", fontsize=9)
    fig.tight_layout()
    ppath = os.path.join(args.out, "bench_sampling.png")
    fig.savefig(ppath, dpi=120)
    print(json.dumps(result["compare"] | {"headline_median_s": result["headline"]["median_s"]}, indent=1))
    print(f"wrote {jpath} and {ppath}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
