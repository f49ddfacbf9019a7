"""Gaussian kernel matvec throughput: ntkflow's keops / jax / dense backends against raw pykeops.

Measures pairs per second (n² / seconds for one K v with K_ij = exp(−|x_i − x_j|²/2ℓ²), d = 10,
float64) side by side in one run, checks every result against the others first, and writes
``bench_matvec.json`` and ``bench_matvec.png`` to ``--out``.

    python bench/bench_matvec.py --out bench/results            # n = 1e4, 3e4, 1e5
    python bench/bench_matvec.py --sizes 2000 5000 --out /tmp/b # quick

"dense" is ntkflow's dense backend: it forms K with NumPy and multiplies (what a lazy operator
replaces); it is run only where K fits (n ≤ --dense-max). "dense (precomputed)" times only K @ v
for an already formed K, for reference (it needs n² memory).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, timeit, write_json  # noqa: E402


def raw_pykeops(x, v, ell):
    from pykeops.numpy import LazyTensor

    X = LazyTensor(x[:, None, :])
    Y = LazyTensor(x[None, :, :])
    V = LazyTensor(v[None, :, None])
    g = 1.0 / (2 * ell**2)
    return ((-g * ((X - Y) ** 2).sum()).exp() * V).sum(axis=1)[:, 0]


def main(argv=None):
    import ntkflow  # noqa: F401
    from ntkflow.engine import Gaussian, kernel_operator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--dense-max", type=int, default=15_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    ell = float(np.sqrt(args.dim))
    k = Gaussian(ell)
    rows = []
    for n in args.sizes:
        x = rng.normal(size=(n, args.dim))
        v = rng.normal(size=n)
        rep = args.repeat if n <= 30_000 else 1
        res = {"n": n, "d": args.dim}
        t_raw, y_raw = timeit(lambda: raw_pykeops(x, v, ell), repeat=rep)
        op_k = kernel_operator(k, x, backend="keops")
        t_keops, y_keops = timeit(lambda: op_k.mv(v), repeat=rep)
        op_j = kernel_operator(k, x, backend="jax")
        t_jax, y_jax = timeit(lambda: op_j.mv(v), repeat=rep)
        ref = y_raw
        res["relerr_keops_vs_raw"] = float(np.linalg.norm(y_keops - ref) / np.linalg.norm(ref))
        res["relerr_jax_vs_raw"] = float(np.linalg.norm(y_jax - ref) / np.linalg.norm(ref))
        res.update(seconds_raw_pykeops=t_raw, seconds_keops=t_keops, seconds_jax=t_jax)
        if n <= args.dense_max:
            op_d = kernel_operator(k, x, backend="dense")
            t_dense, y_dense = timeit(lambda: op_d.mv(v), repeat=rep)
            K = op_d.to_dense()
            t_pre, _ = timeit(lambda: K @ v, repeat=rep)
            del K
            res["relerr_dense_vs_raw"] = float(np.linalg.norm(y_dense - ref) / np.linalg.norm(ref))
            res.update(seconds_dense=t_dense, seconds_dense_precomputed=t_pre)
        for key in [k_ for k_ in list(res) if k_.startswith("seconds_")]:
            res["pairs_per_s_" + key[len("seconds_"):]] = n * n / res[key]
        res["keops_over_raw_time"] = t_keops / t_raw
        if "seconds_dense" in res:
            res["dense_over_keops_time"] = res["seconds_dense"] / t_keops
        for key in [k_ for k_ in res if k_.startswith("relerr")]:
            assert res[key] < 1e-10, (key, res[key])
        rows.append(res)
        print(
            f"n={n:>7}: raw pykeops {n*n/t_raw:.3g} pairs/s | ntkflow keops {n*n/t_keops:.3g} "
            f"(×{t_keops/t_raw:.2f} of raw time) | jax {n*n/t_jax:.3g}"
            + (f" | dense {n*n/res['seconds_dense']:.3g} (keops {res['dense_over_keops_time']:.1f}× faster)" if "seconds_dense" in res else ""),
            flush=True,
        )
    payload = {"benchmark": "gaussian_matvec", "machine": machine(), "lengthscale": ell, "rows": rows}
    path = write_json(args.out, "bench_matvec", payload)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ns = [r["n"] for r in rows]
    for key, label in [("raw_pykeops", "raw pykeops"), ("keops", "ntkflow keops"), ("jax", "ntkflow jax"), ("dense", "ntkflow dense (forms K)")]:
        pts = [(r["n"], r["pairs_per_s_" + key]) for r in rows if "pairs_per_s_" + key in r]
        if pts:
            ax.loglog(*zip(*pts), "o-", label=label)
    ax.set_xlabel("n (points, d = %d)" % args.dim)
    ax.set_ylabel("kernel pairs / s (float64)")
    ax.set_title("Gaussian matvec throughput, %d CPU cores" % (machine()["cpus"] or 0))
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "bench_matvec.png", dpi=120)
    print(f"wrote {path} and {args.out / 'bench_matvec.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
