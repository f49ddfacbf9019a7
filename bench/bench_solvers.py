"""Benchmark of ntkflow.solvers: Nyström KRR at scale, Nyström-preconditioned exact KRR, and a
side-by-side comparison with scikit-learn's KernelRidge and scipy.linalg.solve.

    python bench/bench_solvers.py --out DIR            # quick (a few minutes)
    python bench/bench_solvers.py --out DIR --full     # acceptance sizes (long on a 2-core CPU)

Problem (all sections): x ~ N(0, I_d), d = 10, y = sin(x₀) + ½ cos(x₁ x₂) + 0.1 ε; Gaussian kernel
with ℓ = √d (pairwise distances of standard normal data are ≈ √(2d), so k stays informative);
λ = 1e-6 with the λ n scaling (system (K + λ n I) α = y, sklearn ``alpha = λ n``).

Sections (each runs in its own subprocess, so ``ru_maxrss`` is that section's peak memory):
  a) nystrom_krr, n = 10⁶ (full) / 5·10⁴ (quick), m = 10⁴ / 3·10³ uniform centres, fused JAX pass,
     CG to relative residual rtol_a of (K_nmᵀK_nm + λnK_mm)β = K_nmᵀy; wall time, peak RSS
     (``--a-precision refine``: float32-block CG inside float64 iterative refinement, same tolerance);
  b) krr_exact with the Nyström preconditioner, n = 10⁵ (full) / 3·10³ (quick), m = 3·10³ / 10³, CG to 1e-8;
     iterations against plain CG (plain CG only in quick mode, where it is affordable);
  c) at n_c (full 10⁴, quick 3·10³; where a dense n×n float64 matrix and a copy fit easily):
     scipy.linalg.solve(K + λnI, y, assume_a="pos"), sklearn KernelRidge(alpha=λn, kernel="rbf"),
     ntkflow krr_exact (Nyström-preconditioned CG, jax backend); same data, agreement of α and of
     predictions checked, time ratios.
  p) one fused pass K_nmᵀ(K_nm v) at n = 10⁵ (full) / 2·10⁴ (quick), m = 10⁴, d = 10, variants measured
     side by side in one process (interleaved, best of 3, wall and CPU seconds): tile rows, threads,
     float32 blocks, and the XLA CPU vector width (a separate child process per width, since XLA_FLAGS
     is read when jax starts);
  d) the same pass on a 2-worker dask LocalCluster (points scattered once) against in-process, side by side.

XLA flags: every section's child process runs with ``--xla_cpu_prefer_vector_width=512`` added to
XLA_FLAGS (AVX-512 vectors for the fused exp/GEMV loops; ≈ 15-20 % less CPU per pass on this machine,
section p) unless ``--vector-width 256`` is given. Accepted by JAX 0.5.3 and 0.10.
Writes DIR/bench_solvers.json and DIR/bench_solvers.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

D = 10
LAM = 1e-6


def data(n, seed=0, d=D):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.sin(x[:, 0]) + 0.5 * np.cos(x[:, 1] * x[:, 2]) + 0.1 * rng.normal(size=n)
    return x, y


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB (Linux)


def load_average():
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover
        return None


def section_a(n, m, rtol, maxiter, backend, precision="float64", start="warm"):
    import ntkflow  # noqa: F401
    from ntkflow.engine import Gaussian
    from ntkflow.solvers import nystrom_krr

    x, y = data(n)
    xt, yt = data(20_000, seed=1)
    k = Gaussian(np.sqrt(D))
    la0 = load_average()
    t0 = time.perf_counter()
    mixed = dict(block_dtype="float32", refine=True) if precision == "refine" else {}
    res = nystrom_krr(k, x, y, centers=m, reg=LAM, backend=backend, seed=2, rtol=rtol, maxiter=maxiter,
                      warm_start=start == "warm", **mixed)
    wall = time.perf_counter() - t0
    w0 = res.warm_start_residual or 1.0  # CG's history is relative to ‖K_nmᵀy − Hβ₀‖ = w0 ‖K_nmᵀy‖
    pred = res.predict(xt, backend="jax")
    f_true = np.sin(xt[:, 0]) + 0.5 * np.cos(xt[:, 1] * xt[:, 2])
    return dict(
        n=n, m=m, d=D, reg=LAM, lengthscale=float(np.sqrt(D)), backend=backend, rtol=rtol, precision=precision,
        start=start, wall_s=wall, peak_rss_gib=peak_rss_gb(), timings=res.timings,
        iterations=res.cg.iterations, converged=res.converged, status=res.cg.status,
        relative_residual=float(res.relative_residual), warm_start_residual=res.warm_start_residual,
        passes=int(res.cg.matvecs) + 1,  # CG's products (with the true-residual checks) + the K_nmᵀy pass
        history_relative=(res.cg.history * w0 / res.cg.history[0]).tolist(),  # relative to ‖K_nmᵀy‖
        test_rmse_vs_truth=float(np.sqrt(np.mean((pred - f_true) ** 2))),
        pairs_per_iteration=float(n) * m, load_average_start=la0, load_average_end=load_average(),
        device=_device_info(), xla_flags=os.environ.get("XLA_FLAGS", ""), cpu_s=time.process_time(),
    )


def _device_info():
    """JAX platform, device name and (on accelerators) peak device memory of this process."""
    import jax

    dev = jax.devices()[0]
    info = {"platform": dev.platform, "device": getattr(dev, "device_kind", str(dev)), "jax": jax.__version__}
    try:
        stats = dev.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            info["peak_device_gib"] = stats["peak_bytes_in_use"] / 2**30
    except Exception:  # noqa: BLE001 - memory_stats is optional on CPU
        pass
    return info


def section_b(n, m, rtol, plain, backend, centers_method, maxiter=60):
    import ntkflow  # noqa: F401
    from ntkflow.engine import Gaussian
    from ntkflow.solvers import krr_exact

    x, y = data(n)
    k = Gaussian(np.sqrt(D))
    la0 = load_average()
    t0 = time.perf_counter()
    res = krr_exact(k, x, y, LAM, precond="nystrom", m=m, centers_method=centers_method, backend=backend, seed=3, rtol=rtol, maxiter=maxiter)
    wall = time.perf_counter() - t0
    out = dict(
        n=n, m=m, backend=backend, centers_method=centers_method, rtol=rtol, wall_s=wall,
        timings=res.timings, iterations=res.cg.iterations, converged=res.converged, status=res.cg.status,
        relative_residual=float(res.cg.residual_norm / np.linalg.norm(y)),
        history_relative=(res.cg.history / res.cg.history[0]).tolist(), peak_rss_gib=peak_rss_gb(),
        load_average_start=la0, load_average_end=load_average(),
    )
    if plain:
        t0 = time.perf_counter()
        r0 = krr_exact(k, x, y, LAM, precond=None, backend=backend, rtol=rtol, maxiter=20 * int(np.sqrt(n)) + 500)
        out["plain"] = dict(
            wall_s=time.perf_counter() - t0, iterations=r0.cg.iterations, converged=r0.converged,
            history_relative=(r0.cg.history / r0.cg.history[0]).tolist(),
        )
    return out


def section_c(n, m):
    import scipy.linalg as sla
    from sklearn.kernel_ridge import KernelRidge

    import ntkflow  # noqa: F401
    from ntkflow.engine import Gaussian
    from ntkflow.solvers import krr_exact, nystrom_krr

    x, y = data(n)
    xt, _ = data(2000, seed=1)
    ell = np.sqrt(D)
    k = Gaussian(ell)
    mu = LAM * n
    out = dict(n=n, m=m)
    # scipy: form K (float64) and Cholesky-solve
    t0 = time.perf_counter()
    K = k.dense(x, x) if n <= 4000 else np.concatenate([k.dense(x[s:s + 1000], x) for s in range(0, n, 1000)])
    K[np.diag_indices(n)] += mu
    a_sp = sla.solve(K, y, assume_a="pos", overwrite_a=True)
    out["scipy_solve_s"] = time.perf_counter() - t0
    del K
    # scikit-learn KernelRidge (rbf: exp(−γ|x−y|²), γ = 1/(2ℓ²))
    t0 = time.perf_counter()
    kr = KernelRidge(alpha=mu, kernel="rbf", gamma=1.0 / (2 * ell**2)).fit(x, y)
    out["sklearn_fit_s"] = time.perf_counter() - t0
    a_sk = np.ravel(kr.dual_coef_)
    # ntkflow exact KRR, Nyström-preconditioned CG (jax backend)
    t0 = time.perf_counter()
    r = krr_exact(k, x, y, LAM, precond="nystrom", m=m, backend="jax", seed=4, rtol=1e-10, maxiter=300)
    out["ntkflow_krr_exact_s"] = time.perf_counter() - t0
    out["ntkflow_krr_exact_iterations"] = r.cg.iterations
    out["ntkflow_krr_exact_converged"] = r.converged
    # ntkflow Nyström KRR (a different, cheaper estimator: reported for speed, compared on predictions)
    t0 = time.perf_counter()
    rn = nystrom_krr(k, x, y, centers=m, reg=LAM, backend="jax", seed=4, rtol=1e-6, maxiter=200)
    out["ntkflow_nystrom_s"] = time.perf_counter() - t0
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    p_sp = k.dense(xt, x) @ a_sp
    out["alpha_rel_diff_sklearn_vs_scipy"] = rel(a_sk, a_sp)
    out["alpha_rel_diff_ntkflow_vs_scipy"] = rel(r.coefficients, a_sp)
    out["pred_rel_diff_sklearn_vs_scipy"] = rel(kr.predict(xt), p_sp)
    out["pred_rel_diff_ntkflow_vs_scipy"] = rel(r.predict(xt, backend="jax"), p_sp)
    out["pred_rel_diff_nystrom_vs_scipy"] = rel(rn.predict(xt, backend="jax"), p_sp)
    out["ratio_scipy_over_ntkflow"] = out["scipy_solve_s"] / out["ntkflow_krr_exact_s"]
    out["ratio_sklearn_over_ntkflow"] = out["sklearn_fit_s"] / out["ntkflow_krr_exact_s"]
    out["ratio_sklearn_over_nystrom"] = out["sklearn_fit_s"] / out["ntkflow_nystrom_s"]
    out["peak_rss_gib"] = peak_rss_gb()
    return out


def section_p(n, m, reps=3, variants=("50:2:float64", "24:2:float64", "16:2:float64", "50:1:float64", "24:2:float32")):
    """One fused pass G v = K_nmᵀ(K_nm v) per variant "tile:threads:block_dtype", interleaved, best of reps."""
    import ntkflow  # noqa: F401
    from ntkflow.engine import Gaussian
    from ntkflow.solvers import NystromGram

    x, _ = data(n)
    c = x[np.random.default_rng(5).choice(n, m, replace=False)]
    k = Gaussian(np.sqrt(D))
    v = np.random.default_rng(6).normal(size=(m, 1))
    runs = {}
    for spec in variants:
        tile, nth, bd = spec.split(":")
        g = NystromGram(k, x, c, tile=int(tile), n_threads=int(nth))
        f = g.mm if bd == "float64" else g.mm_lowp
        ref = f(v)  # compile
        runs[spec] = dict(f=f, wall=[], cpu=[], ref=ref)
    la0 = load_average()
    for _ in range(reps):
        for spec, r in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            r["f"](v)
            r["wall"].append(time.perf_counter() - t0)
            r["cpu"].append(time.process_time() - c0)
    base = runs[variants[0]]["ref"]
    out = dict(n=n, m=m, d=D, pairs=float(n) * m, xla_flags=os.environ.get("XLA_FLAGS", ""), load_average_start=la0,
               load_average_end=load_average(), device=_device_info(), variants={})
    for spec, r in runs.items():
        out["variants"][spec] = dict(
            wall_s=min(r["wall"]), cpu_s=min(r["cpu"]), wall_all=r["wall"], cpu_all=r["cpu"],
            cpu_s_per_1e10_pairs=min(r["cpu"]) * 1e10 / (float(n) * m),
            rel_diff_vs_first=float(np.linalg.norm(r["ref"] - base) / np.linalg.norm(base)),
        )
    return out


def section_d(n, m, reps=3, workers=2):
    """One fused pass on a dask LocalCluster (``workers`` processes × 1 thread, points scattered once) against
    the in-process pass (2 threads), interleaved, best of reps; agreement of the two products."""
    from distributed import Client, LocalCluster

    import ntkflow  # noqa: F401
    from ntkflow.engine import Gaussian
    from ntkflow.solvers import NystromGram

    x, _ = data(n)
    c = x[np.random.default_rng(5).choice(n, m, replace=False)]
    k = Gaussian(np.sqrt(D))
    v = np.random.default_rng(6).normal(size=(m, 1))
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster, set_as_default=False)
    try:
        t0 = time.perf_counter()
        gd = NystromGram(k, x, c, backend="dask", client=client)
        scatter_s = time.perf_counter() - t0
        gl = NystromGram(k, x, c, backend="jax", n_threads=workers)
        rd, rl = gd.mm(v), gl.mm(v)  # compile on the workers and here
        wall = {"dask": [], "in_process": []}
        la0 = load_average()
        for _ in range(reps):
            for name, g in (("dask", gd), ("in_process", gl)):
                t0 = time.perf_counter()
                g.mm(v)
                wall[name].append(time.perf_counter() - t0)
        gd.close()
    finally:
        client.close()
        cluster.close()
    return dict(n=n, m=m, workers=workers, scatter_s=scatter_s, wall=wall,
                dask_s=min(wall["dask"]), in_process_s=min(wall["in_process"]),
                ratio_dask_over_in_process=min(wall["dask"]) / min(wall["in_process"]),
                rel_diff=float(np.linalg.norm(rd - rl) / np.linalg.norm(rl)),
                load_average_start=la0, load_average_end=load_average(), xla_flags=os.environ.get("XLA_FLAGS", ""))


VECTOR_FLAG = "--xla_cpu_prefer_vector_width="


def child_env(width):
    """os.environ with XLA's CPU vector width set (unless XLA_FLAGS already names one)."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    if width and VECTOR_FLAG not in flags:
        env["XLA_FLAGS"] = (flags + f" {VECTOR_FLAG}{width}").strip()
    return env


def run_section(name, kwargs, timeout, width=512):
    """Run one section in a fresh interpreter (own peak-memory figure); returns its JSON."""
    cmd = [sys.executable, __file__, "--section", name, "--kwargs", json.dumps(kwargs)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(width))
    if p.returncode != 0:
        return dict(error=p.stderr[-3000:], returncode=p.returncode, wall_s=time.perf_counter() - t0)
    return json.loads(p.stdout.strip().splitlines()[-1])


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    a = results.get("a", {})
    if "history_relative" in a:
        ax.semilogy(a["history_relative"], "o-", label=f"Nyström KRR n={a['n']:.0e}, m={a['m']:.0e}")
    b = results.get("b", {})
    if "history_relative" in b:
        ax.semilogy(b["history_relative"], "s-", label=f"exact KRR + Nyström PC, n={b['n']:.0e}")
        if "plain" in b:
            ax.semilogy(b["plain"]["history_relative"], "-", alpha=0.6, label="exact KRR, plain CG")
    ax.set_xlabel("CG iteration")
    ax.set_ylabel("relative residual")
    ax.set_title("convergence")
    ax.legend(fontsize=8)
    c = results.get("c", {})
    ax = axes[1]
    if "scipy_solve_s" in c:
        names = ["scipy.linalg.solve", "sklearn KernelRidge", "ntkflow krr_exact", "ntkflow nystrom_krr"]
        vals = [c["scipy_solve_s"], c["sklearn_fit_s"], c["ntkflow_krr_exact_s"], c["ntkflow_nystrom_s"]]
        ax.bar(range(4), vals, color=["gray", "gray", "C0", "C1"])
        ax.set_xticks(range(4), names, rotation=20, fontsize=8)
        ax.set_ylabel("seconds")
        ax.set_title(f"same data, n = {c['n']}")
    ax = axes[2]
    labels, t, mem = [], [], []
    for key, name in (("a", "Nyström KRR"), ("b", "exact KRR (PCG)")):
        if "wall_s" in results.get(key, {}) and "error" not in results[key]:
            labels.append(f"{name}\nn={results[key]['n']:.0e}")
            t.append(results[key]["wall_s"])
            mem.append(results[key].get("peak_rss_gib", np.nan))
    if labels:
        ax.bar(np.arange(len(t)) - 0.2, t, 0.4, label="wall s")
        ax2 = ax.twinx()
        ax2.bar(np.arange(len(t)) + 0.2, mem, 0.4, color="C3", label="peak GiB")
        ax2.set_ylabel("peak RSS (GiB)")
        ax.set_xticks(range(len(t)), labels, fontsize=8)
        ax.set_ylabel("wall (s)")
        ax.set_title("scale runs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=False, default="bench_out")
    p.add_argument("--full", action="store_true", help="acceptance sizes (n = 10⁶ Nyström, n = 10⁵ exact)")
    p.add_argument("--sections", default="abc", help="which sections to run (subset of 'abcpd')")
    p.add_argument("--a-n", type=int)
    p.add_argument("--a-m", type=int)
    p.add_argument("--a-maxiter", type=int, default=60)
    p.add_argument("--a-rtol", type=float, default=1e-6)
    p.add_argument("--a-precision", default="float64", choices=("float64", "refine"),
                   help="section a: float64 blocks, or float32-block CG inside float64 iterative refinement")
    p.add_argument("--a-start", default="warm", choices=("warm", "cold"),
                   help="CG start of the Nyström solve: warm (nystrom_krr's default warm_start=True) or cold (from 0)")
    p.add_argument("--b-n", type=int)
    p.add_argument("--b-m", type=int)
    p.add_argument("--b-maxiter", type=int, default=60)
    p.add_argument("--c-n", type=int)
    p.add_argument("--c-m", type=int)
    p.add_argument("--backend", default="jax", help="backend of the kernel passes (jax: fused, fastest on CPU)")
    p.add_argument("--vector-width", type=int, default=512, choices=(256, 512),
                   help="XLA CPU vector width for the sections' child processes (section p runs both)")
    p.add_argument("--p-n", type=int)
    p.add_argument("--section", help=argparse.SUPPRESS)
    p.add_argument("--kwargs", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.section:  # child process
        kw = json.loads(args.kwargs)
        fn = {"a": section_a, "b": section_b, "c": section_c, "p": section_p, "d": section_d}[args.section]
        print(json.dumps(fn(**kw)))
        return 0
    full = args.full
    os.makedirs(args.out, exist_ok=True)
    results = dict(
        mode="full" if full else "quick", machine=dict(
            cpus=os.cpu_count(), platform=platform.platform(), python=platform.python_version(),
            load_average=load_average(),
        ),
        problem=dict(d=D, lengthscale=float(np.sqrt(D)), reg=LAM, kernel="Gaussian"),
    )
    plan = {
        "a": dict(n=args.a_n or (1_000_000 if full else 50_000), m=args.a_m or (10_000 if full else 3_000),
                  rtol=args.a_rtol, maxiter=args.a_maxiter, backend=args.backend, precision=args.a_precision, start=args.a_start),
        "b": dict(n=args.b_n or (100_000 if full else 3_000), m=args.b_m or (3_000 if full else 1_000),
                  rtol=1e-8, plain=not full, backend=args.backend, centers_method="uniform",
                  maxiter=args.b_maxiter),
        "c": dict(n=args.c_n or (10_000 if full else 3_000), m=args.c_m or (2_000 if full else 1_000)),
        "p": dict(n=args.p_n or (100_000 if full else 20_000), m=min(10_000, args.p_n or 10_000)),
        "d": dict(n=args.p_n or (100_000 if full else 20_000), m=min(10_000, args.p_n or 10_000)),
    }
    results["vector_width"] = args.vector_width
    for key in args.sections:
        print(f"[bench_solvers] section {key}: {plan[key]}", flush=True)
        if key == "p":  # the same pass under both XLA vector widths, one child process each
            results[key] = {f"width_{w}": run_section(key, plan[key], timeout=3600, width=w) for w in (256, 512)}
        else:
            results[key] = run_section(key, plan[key], timeout=6 * 3600, width=args.vector_width)
        brief = {k: v for k, v in results[key].items() if "history" not in k and k != "plain"}
        if "plain" in results[key]:
            brief["plain"] = {k: v for k, v in results[key]["plain"].items() if "history" not in k}
        print(json.dumps(brief, indent=1), flush=True)
        with open(os.path.join(args.out, "bench_solvers.json"), "w") as f:
            json.dump(results, f, indent=1)
    plot(results, os.path.join(args.out, "bench_solvers.png"))
    print(f"[bench_solvers] wrote {args.out}/bench_solvers.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
