"""Side by side in one process: the matrix-free primal Gauss–Newton products with the points on the host
(NumPy), on one JAX device, and sharded over D devices (issue #12, ``PrimalProblem(devices=D)``).

Correctness first (the sharded JᵀWr and JᵀWJV against the NumPy Linearisation's), then timings with a
warm-up and ``block_until_ready`` semantics (every product returns host NumPy arrays).

On CPU the D devices are forced (XLA_FLAGS must be set before jax is imported) and share the same cores:
that run is a correctness check, not a speed-up. On a machine with D GPUs run the same command without
XLA_FLAGS.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python bench/bench_devices.py --n 20000 -k 3 --devices 4 \\
        -o bench/results/devices/cpu4.json
    python bench/bench_devices.py --n 1000000 -k 6 --devices all -o bench/results/devices/gpu.json   # GPUs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

import ntkflow  # noqa: F401  (float64)
from ntkflow.cy import matrixfree as mf
from ntkflow.engine.devices import describe_mesh, device_mesh
from ntkflow.manifolds import random_quintic, sample


def timed(fn, repeat):
    fn()  # warm-up (compilation)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--devices", default="all")
    ap.add_argument("--columns", type=int, default=8, help="columns per Gram product (one CG block)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-numpy", action="store_true", help="no host (NumPy) column (large n on a GPU)")
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args(argv)
    mesh = device_mesh(args.devices)
    ps = sample(random_quintic(0), args.n, seed=args.seed, progress=False)
    pargs = (ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), args.k)
    rng = np.random.default_rng(1)
    configs = ([] if args.skip_numpy else [("numpy (host)", {})]) + [
        ("jax, 1 device", {"backend": "jax"}), (f"jax, {mesh.size} devices sharded", {"backend": "jax", "devices": mesh.size})]
    rows, ref = [], None
    for name, kw in configs:
        t = time.perf_counter()
        prob = mf.PrimalProblem(*pargs, link="log", **kw)
        t_feat = time.perf_counter() - t
        v = prob.initial()
        V = rng.normal(size=(prob.n_params, args.columns)) if ref is None else ref["V"]
        t = time.perf_counter()
        lin = prob.linearise(v)
        t_lin = time.perf_counter() - t
        if hasattr(lin, "gram"):  # NormalEquations (sharded)
            grad, gram = lin.grad, (lambda: lin.gram.mm(V))  # noqa: E731
        else:
            grad = lin.J.T.mv(prob.weights * lin.r) / prob.n
            gram = lambda: lin.J.T.mm(prob.weights[:, None] * lin.J.mm(V)) / prob.n  # noqa: E731
        G = gram()
        if ref is None:
            ref = {"V": V, "grad": grad, "G": G}
        row = {"config": name, "features_s": t_feat, "linearise_s": t_lin, "gram_product_s": timed(gram, args.repeat),
               "loss_s": timed(lambda: prob.loss(v), args.repeat),
               "grad_rel": float(np.max(np.abs(grad - ref["grad"])) / np.max(np.abs(ref["grad"]))),
               "gram_rel": float(np.max(np.abs(G - ref["G"])) / np.max(np.abs(ref["G"])))}
        rows.append(row)
        print(f"{name:<28} features {row['features_s']:7.2f} s  linearise {row['linearise_s']:7.2f} s  "
              f"JᵀWJV ({args.columns} cols) {row['gram_product_s']:7.3f} s  loss {row['loss_s']:6.3f} s  "
              f"rel. diff grad {row['grad_rel']:.1e} gram {row['gram_rel']:.1e}", flush=True)
    out = {"n": args.n, "k": args.k, "n_params": int(prob.n_params), "columns": args.columns, "repeat": args.repeat,
           "devices": describe_mesh(mesh), "jax": jax.__version__, "machine": platform.machine(),
           "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
           "load_average": os.getloadavg(), "rows": rows}
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
