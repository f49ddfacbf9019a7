"""Euler characteristic χ = ∫_X c_3 of a saved ntkflow model, on many fresh points, under a time budget.

    python bench/bench_euler.py --model DIR --n 1000000 --budget 300 --out OUT

Samples ``--n`` fresh points on the model's manifold (``--seed``, default 12345: not the training
seed), evaluates the holomorphic-autodiff curvature (flows/curvature.py) in chunks of ``--chunk``
points until the points or the time budget run out, and integrates the top Chern form:
χ ≈ mean(w c_3/|Ω|²)/3! with a batch-means standard error (ntkflow.manifolds.integrate). The same
points also give σ and the Ricci measure. Runs on CPU or GPU (JAX picks the device). Writes
OUT/bench_euler.json and OUT/euler_density.npz (per-point integrand w c_3/(|Ω|² 3!) and η) so the
figure can be recomputed.

Expected: χ = −200 for the quintic, 24 for K3, 0 for the torus (topological: any Kähler metric).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="directory written by `ntkflow cy -o DIR`")
    p.add_argument("--n", type=int, default=100_000, help="fresh points to sample (default 1e5)")
    p.add_argument("--chunk", type=int, default=None, help="points per curvature call (default: 64 CPU, 8192 GPU)")
    p.add_argument("--budget", type=float, default=600.0, help="seconds of curvature evaluation at most")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--out", default="bench_out")
    p.add_argument("--control", help="a second (cheaper) model directory: also evaluate its c_3 on the same points "
                   "and report the difference level ∫(c_3(g) − c_3(g_control)) of a two-level Monte-Carlo estimate")
    p.add_argument("--integrand-from", help="euler_density.npz of an earlier run on the same points (same --seed "
                   "and --n): reuse its integrand instead of recomputing the model's curvature")
    args = p.parse_args(argv)

    import jax

    import ntkflow
    from ntkflow.cy.curvature import holomorphic_curvature
    from ntkflow.manifolds import EULER_CHARACTERISTIC, Curvature, integrate, ricci_measure, sample, sigma

    os.makedirs(args.out, exist_ok=True)
    dev = jax.devices()[0]
    chunk = args.chunk or (64 if dev.platform == "cpu" else 8192)
    model = ntkflow.load(args.model)
    m = model.manifold
    t0 = time.perf_counter()
    ps = sample(m, args.n, seed=args.seed, progress=False)
    t_sample = time.perf_counter() - t0
    gfun = model.gfun()
    chern, ric, det = [], [], []
    done = 0
    t1 = time.perf_counter()
    t_first = None
    if args.integrand_from:  # X from an earlier (e.g. GPU) run: only the control is evaluated here
        prev = np.load(args.integrand_from)
        done = len(prev["chi_integrand"])
        c3_prev = prev["chi_integrand"] * math.factorial(m.dim) * ps.omega_sq[:done] / ps.weights[:done]
        chern, ric, det = [c3_prev], [np.full(done, np.nan)], [prev["eta"].astype(np.float64) * ps.omega_sq[:done]]
    while not args.integrand_from and done < len(ps) and time.perf_counter() - t1 < args.budget:
        sub = ps[done: done + chunk]
        curv = holomorphic_curvature(m, gfun, sub, batch=len(sub) if dev.platform != "cpu" else 64)
        chern.append(curv.chern_top)
        ric.append(curv.ricci_scalar)
        det.append(curv.det_g)
        done += len(sub)
        if t_first is None:
            t_first = time.perf_counter() - t1  # includes the jit compile
        print(f"  {done:>9} points  {time.perf_counter() - t1:8.1f} s", flush=True)
    t_curv = time.perf_counter() - t1
    used = ps[:done]
    c3 = np.concatenate(chern)
    chi, chi_err = integrate(used, c3)
    det_g = np.real(np.concatenate(det))
    expected = EULER_CHARACTERISTIC.get(m.name)
    out = {
        "model": os.path.abspath(args.model), "manifold": m.name, "n_points": int(done), "n_sampled": len(ps),
        "seed": args.seed, "euler": chi, "euler_stderr": chi_err, "expected": expected,
        "relative_error": None if not expected else abs(chi - expected) / abs(expected),
        "ricci_measure": None if args.integrand_from else ricci_measure(
            used, curv=Curvature(g=None, det_g=det_g, ricci=None, ricci_scalar=np.concatenate(ric), chern_top=c3)),
        "sigma": sigma(used, det_g),
        "seconds": {"sample": t_sample, "curvature": t_curv, "first_chunk_incl_compile": t_first},
        "points_per_second": (done - min(chunk, done)) / max(t_curv - (t_first or 0.0), 1e-9) if done > chunk else None,
        "device": {"platform": dev.platform, "kind": getattr(dev, "device_kind", str(dev)), "jax": jax.__version__},
        "command": " ".join([os.path.basename(sys.executable), "bench/bench_euler.py"] + list(argv or sys.argv[1:])),
    }
    if args.control:
        from ntkflow.manifolds import mean_stderr

        ctrl = ntkflow.load(args.control)
        t2 = time.perf_counter()
        cc = holomorphic_curvature(m, ctrl.gfun(), used, batch=256 if dev.platform == "cpu" else 4096)
        fac = used.weights / used.omega_sq / math.factorial(m.dim)
        x_int, y_int = fac * c3, fac * cc.chern_top
        diff, diff_err = mean_stderr(x_int - y_int)
        out["control"] = {
            "model": os.path.abspath(args.control), "euler": mean_stderr(y_int)[0], "euler_stderr": mean_stderr(y_int)[1],
            "difference": diff, "difference_stderr": diff_err, "correlation": float(np.corrcoef(x_int, y_int)[0, 1]),
            "seconds": time.perf_counter() - t2,
            "note": "χ(model) = ∫c_3(control) + difference; ∫c_3(control) from a separate run on independent points",
        }
        print(f"  control {args.control}: difference ∫(c3 − c3_control) = {diff:.3f} ± {diff_err:.3f}, "
              f"correlation {out['control']['correlation']:.4f}")
    with open(os.path.join(args.out, "bench_euler.json"), "w") as f:
        json.dump(out, f, indent=1)
    # the Monte-Carlo integrand of χ and η = det g/|Ω|² per point (8 bytes each: 16 MB per 10⁶ points)
    np.savez_compressed(os.path.join(args.out, "euler_density.npz"),
                        chi_integrand=used.weights * c3 / used.omega_sq / math.factorial(m.dim),
                        eta=(det_g / used.omega_sq).astype(np.float32))
    print(json.dumps({k: out[k] for k in ("manifold", "n_points", "euler", "euler_stderr", "relative_error", "sigma")}))
    return out


if __name__ == "__main__":
    main()
