"""The finite-σ metric flow (ntkflow.ricci.kernel_flow): scale, σ → 0 and finite width, correctness first.

    python bench/bench_ricci.py scale [--n 100000 --n-dense 4000 --backend keops --method RK23]
    python bench/bench_ricci.py sigma [--sigmas 0.8 0.6 0.45 0.34 --t-end 0.2]
    python bench/bench_ricci.py width [--widths 256 1024 4096 16384 --seeds 6]
    GPU (no pykeops/dask needed):  python bench/bench_ricci.py scale --backend jax --n-dense 8000

scale  One right-hand-side evaluation and one accepted Runge–Kutta step of the finite-σ flow on S³ and T³
       with ~n collocation points (product Gauss rule 4k³ on S³, uniform grid k³ on T³), non-round metrics,
       wall time and peak memory (each domain in its own process, so ru_maxrss is that domain's peak).
       Then the same right-hand side at the largest n the dense backend fits, lazy backend against dense
       in one run: time ratio and max relative difference of the RHS (correctness first).
sigma  A bumpy conformal metric on T² (g = e^{2u}δ) and an axisymmetric one on S² (g = e^{2u}g_round): the
       collocation flow with the Gaussian kernel of width σ against the reference Hamilton flow
       (ricci.reference: spectral ConformalTorus / AxisymmetricSphere) at t_end, on gauge-invariant
       quantities (area, max/min scalar curvature, λ); fitted order in σ; λ along each flow.
width  T²: the flow driven by the empirical metric-NTK of cos-nets of width N (readout trained) against
       the infinite-width Gaussian flow; relative error of G(t_end) over seeds, fitted slope in N.

Timings on the shared 2-core CPU are noisy (other jobs run); ratios measured side by side in one process
are the comparable numbers. Writes bench/results/ricci/<mode>.json and <mode>.png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from _common import machine, peak_rss_gb, write_json  # noqa: E402


# ----------------------------------------------------------------------------------------------
# metrics used by the benchmark
# ----------------------------------------------------------------------------------------------


def bumpy_metric(domain):
    """A non-round, non-conformal smooth metric (JAX function) on the domain."""
    import jax.numpy as jnp

    from ntkflow.ricci.domains import Sphere, metric_from_function

    if isinstance(domain, Sphere):
        def fn(x):
            v = jnp.array([x[1], -x[0], x[3], -x[2]]) if x.shape[0] == 4 else jnp.array([x[1], -x[0], 0.0 * x[2]])
            return (1.0 + 0.2 * x[0] * x[-1]) * jnp.eye(x.shape[0]) + 0.3 * jnp.outer(v, v)
    else:
        def fn(th):
            s = jnp.sin(th)
            c = jnp.cos(th)
            return jnp.eye(th.shape[0]) + 0.15 * jnp.outer(s, s) + 0.1 * jnp.diag(c) * jnp.sum(c)
    return metric_from_function(fn, domain)


def conformal_torus_u(th1, th2, xp=np):
    return 0.25 * xp.sin(th1) * xp.cos(th2) + 0.15 * xp.cos(2 * th1 + th2)


def axisymmetric_u(mu, xp=np):
    return 0.2 * mu + 0.15 * (1.5 * mu**2 - 0.5)


# ----------------------------------------------------------------------------------------------
# scale
# ----------------------------------------------------------------------------------------------


def _domain_points(name, n):
    from ntkflow.ricci.domains import Sphere, Torus

    if name == "S3":
        dom = Sphere(3)
        k = max(1, round((n / 4) ** (1 / 3)))
        return dom, dom.points(4 * k**3)
    dom = Torus(3)
    k = max(1, round(n ** (1 / 3)))
    return dom, dom.points(k**3)


def scale_one(args) -> dict:
    """One domain in this process: RHS eval + one accepted step at n, then lazy vs dense at n_dense."""
    from ntkflow.ricci.kernel_flow import GaussianKernel, kernel_flow_problem
    from ntkflow.ricci.perelman import hamilton_driver
    from ntkflow.ricci.reference import integrate

    name = args.domain
    out = {"domain": name, "sigma": args.sigma, "backend": args.backend, "method": args.method}
    # --- scale: one RHS and one accepted step at n ---------------------------------------------
    dom, (pts, w) = _domain_points(name, args.n)
    metric = bumpy_metric(dom)
    t0 = time.perf_counter()
    prob = kernel_flow_problem(dom, metric, GaussianKernel(args.sigma, backend=args.backend, tile=args.tile), hamilton_driver, pts, w)
    out["n"] = int(len(pts))
    out["setup_seconds"] = time.perf_counter() - t0
    y0 = prob.initial()
    t0 = time.perf_counter()
    if not args.rhs_only:
        prob.rhs(0.0, 1e-3 * np.ones_like(y0))  # first call: includes jit/KeOps compilation
    out["first_rhs_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    f0 = prob.rhs(0.0, y0)
    out["rhs_seconds"] = time.perf_counter() - t0
    out["rhs_finite"] = bool(np.all(np.isfinite(f0)))
    print(json.dumps({k: out[k] for k in ("n", "setup_seconds", "first_rhs_seconds", "rhs_seconds")}), flush=True)
    if args.rhs_only:
        out["peak_rss_gb"] = peak_rss_gb()
        out["machine"] = machine()
        return out
    t0 = time.perf_counter()
    res = integrate(prob, y0, 1.0, method=args.method, rtol=1e-6, atol=1e-9, first_step=args.first_step, max_steps=1)
    out["step_seconds"] = time.perf_counter() - t0
    out["step"] = {"steps": res.steps, "nfev": res.nfev, "t": res.t, "status": res.status, "message": res.message,
                   "volume": np.asarray(res.history.get("volume", [])).tolist(),
                   "R_max": np.asarray(res.history.get("R_max", [])).tolist()}
    print(json.dumps({"step_seconds": out["step_seconds"], "nfev": res.nfev, "status": res.status}), flush=True)
    out["peak_rss_gb_scale"] = peak_rss_gb()
    out["device_peak_gb"] = _device_peak_gb()
    del prob
    # --- lazy against dense at n_dense, same process (after the scale part: ru_maxrss above is the scale's) -------------------------
    if args.n_dense:
        dom, (pts, w) = _domain_points(name, args.n_dense)
        metric = bumpy_metric(dom)
        rng = np.random.default_rng(0)
        probs = {b: kernel_flow_problem(dom, metric, GaussianKernel(args.sigma, backend=b, tile=args.tile),
                                     hamilton_driver, pts, w)
                 for b in (args.backend, "dense")}
        y = 1e-2 * rng.normal(size=probs["dense"].initial().shape)
        probs[args.backend].rhs(0.0, y)  # warm-up (compile)
        t = {}
        r = {}
        for b in (args.backend, "dense"):
            t0 = time.perf_counter()
            r[b] = probs[b].rhs(0.0, y)
            t[b] = time.perf_counter() - t0
        out["dense_check"] = {
            "n": int(len(pts)),
            "seconds": t,
            "dense_over_lazy": t["dense"] / t[args.backend],
            "max_rel_diff": float(np.max(np.abs(r[args.backend] - r["dense"])) / np.max(np.abs(r["dense"]))),
        }
        print(json.dumps(out["dense_check"]), flush=True)
        del probs
    out["peak_rss_gb"] = peak_rss_gb()
    out["machine"] = machine()
    return out


def _device_peak_gb():
    """Peak accelerator memory of this process (GB) where JAX reports it (GPU), else None."""
    try:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use", 0) / 1024**3 or None
    except Exception:  # pragma: no cover - backends without memory stats
        return None


def run_scale(args):
    results = []
    for name in args.domains:
        cmd = [sys.executable, os.path.abspath(__file__), "scale-one", "--domain", name, "--n", str(args.n),
               "--n-dense", str(args.n_dense), "--backend", args.backend, "--sigma", str(args.sigma),
               "--method", args.method, "--first-step", str(args.first_step)] + (["--tile", str(args.tile)] if args.tile else []) \
            + (["--rhs-only"] if args.rhs_only else [])
        print("$", " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(proc.stderr[-3000:], flush=True)
            results.append({"domain": name, "error": proc.stderr[-2000:]})
            continue
        print("\n".join(lines[:-1]), flush=True)
        results.append(json.loads(lines[-1]))
    payload = {"mode": "scale", "note": "shared 2-core CPU: absolute times are noisy; ratios in one run compare",
               "results": results, "machine": machine()}
    write_json(Path(args.out), f"scale_{args.backend}_n{args.n}", payload)
    try:
        _plot_scale(Path(args.out), results, f"{args.backend}_n{args.n}")
    except ImportError as exc:  # a GPU machine without matplotlib: the JSON is the result
        print(f"no plot ({exc})", flush=True)
    return payload


def _plot_scale(out, results, backend):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "rhs_seconds" in r]
    if not ok:
        return
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [r["domain"] for r in ok]
    ax[0].bar(names, [r["rhs_seconds"] for r in ok], label="one RHS")
    ax[0].bar(names, [r.get("step_seconds", 0.0) for r in ok], alpha=0.4, label="one accepted step")
    ax[0].set_ylabel("seconds")
    ax[0].set_title(f"n ≈ {ok[0]['n']:,} points, {backend}")
    ax[0].legend()
    dc = [r for r in ok if "dense_check" in r]
    ax[1].bar([r["domain"] for r in dc], [r["dense_check"]["dense_over_lazy"] for r in dc])
    ax[1].set_ylabel(f"dense / {backend} time (one RHS)")
    ax[1].set_title(", ".join(f"{r['domain']}: n={r['dense_check']['n']}, Δ={r['dense_check']['max_rel_diff']:.1e}" for r in dc), fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"scale_{backend}.png", dpi=110)


# ----------------------------------------------------------------------------------------------
# sigma -> 0
# ----------------------------------------------------------------------------------------------


def _lambda_track(domain, degree):
    from ntkflow.ricci.perelman import SpectralBasis, perelman_lambda

    basis = SpectralBasis(domain, degree)
    return lambda d, jets, pts, w: perelman_lambda(d, jets, pts, w, basis=basis).value


def run_sigma(args):
    import jax.numpy as jnp

    from ntkflow.ricci.domains import Sphere, Torus, metric_from_function
    from ntkflow.ricci.kernel_flow import GaussianKernel, kernel_flow
    from ntkflow.ricci.perelman import hamilton_driver, perelman_lambda
    from ntkflow.ricci.reference import AxisymmetricSphere, ConformalTorus, integrate

    out = {"mode": "sigma", "t_end": args.t_end, "sigmas": args.sigmas, "cases": {}}
    for case in args.cases:
        if case == "T2":
            dom = Torus(2)
            pts, w = dom.points(args.t2_grid**2)
            metric = metric_from_function(lambda th: jnp.exp(2 * conformal_torus_u(th[0], th[1], jnp)) * jnp.eye(2), dom)
            ref = ConformalTorus(n=64)
            rres = integrate(ref, ref.initial(lambda a, b: conformal_torus_u(a, b)), args.t_end, rtol=1e-10, atol=1e-12)
            R_ref = ref.scalar_curvature_at(rres.y, pts)  # spectral interpolation to the collocation points
            ref_q = {"area": ref.area(rres.y), "R_max": float(R_ref.max()), "R_min": float(R_ref.min())}
        else:
            dom = Sphere(2)
            pts, w = dom.points(2 * args.s2_k**2)
            metric = metric_from_function(lambda x: jnp.exp(2 * axisymmetric_u(x[2], jnp)) * jnp.eye(3), dom)
            ref = AxisymmetricSphere(degree=40)
            rres = integrate(ref, ref.initial(lambda mu: axisymmetric_u(mu)), args.t_end, rtol=1e-10, atol=1e-12)
            # R = 2K, Legendre-interpolated from the nodes to the collocation points' μ = x₃
            R_ref = np.polynomial.legendre.legval(pts[:, 2], ref.coefficients(2.0 * ref.curvature(rres.y)))
            ref_q = {"area": ref.scalars(rres.y)["area"], "R_max": float(R_ref.max()), "R_min": float(R_ref.min())}
        ref_q["lambda"] = _reference_lambda(case, dom, ref, rres.y, pts, w, args.lambda_degree)
        lam_of = _lambda_track(dom, args.lambda_degree)
        t_out = np.linspace(0.0, args.t_end, args.n_lambda + 1)[1:]
        rows = []
        for s in args.sigmas:
            t0 = time.perf_counter()
            res, prob = kernel_flow(dom, metric, GaussianKernel(s, backend=args.backend), hamilton_driver, pts, w,
                                    t_end=args.t_end, t_out=t_out, rtol=args.rtol, atol=1e-10)
            sc = prob.scalars(res.y)
            # λ along the flow at the output times (and t = 0), from the chart jets of the flowed field
            lam = [lam_of(dom, dom.chart_jet(*prob.field(y).ambient_jets(pts), pts), pts, w)
                   for y in [prob.initial(), *res.y_out]]
            lam = np.asarray(lam)
            q = {"area": sc["volume"], "R_max": sc["R_max"], "R_min": sc["R_min"], "lambda": float(lam[-1])}
            rows.append({
                "sigma": s, "status": res.status, "steps": res.steps, "nfev": res.nfev,
                "seconds": time.perf_counter() - t0, "q": q,
                "err": {k: abs(q[k] - ref_q[k]) for k in q},
                "lambda_monotone": bool(np.all(np.diff(lam) >= -1e-9 * np.abs(lam).max())),
                "lambda_history": lam.tolist(), "lambda_times": [0.0, *np.asarray(res.t_out).tolist()],
                "times": np.asarray(res.times).tolist(),
            })
            print(case, json.dumps({k: rows[-1][k] for k in ("sigma", "status", "nfev", "seconds", "err", "lambda_monotone")}), flush=True)
        orders = {}
        for k in ref_q:
            e = np.array([r["err"][k] for r in rows])
            sig = np.array([r["sigma"] for r in rows])
            good = e > 0
            orders[k] = float(np.polyfit(np.log(sig[good]), np.log(e[good]), 1)[0]) if good.sum() >= 2 else None
        out["cases"][case] = {"n_points": int(len(pts)), "reference": ref_q, "rows": rows, "fitted_order": orders,
                              "reference_status": rres.status}
        print(case, "fitted orders", orders, flush=True)
    out["machine"] = machine()
    tag = "sigma_" + "_".join(args.cases)
    write_json(Path(args.out), tag, out)
    try:
        _plot_sigma(Path(args.out), out, tag)
    except ImportError as exc:
        print(f"no plot ({exc})", flush=True)
    return out


def _reference_lambda(case, dom, ref, y, pts, w, degree):
    """λ of the reference metric at t_end, evaluated on the same collocation points (chart jets of
    the conformal factor interpolated spectrally: Fourier on T², Legendre on S²)."""
    import jax.numpy as jnp

    from ntkflow.ricci.domains import metric_from_function
    from ntkflow.ricci.perelman import perelman_lambda

    if case == "T2":
        n = ref.n
        uh = np.fft.fft2(ref.u(y)) / n**2
        k = np.fft.fftfreq(n, d=1.0 / n)
        keep = [(i, j) for i in range(n) for j in range(n) if abs(k[i]) < n // 2 and abs(k[j]) < n // 2 and abs(uh[i, j]) > 1e-16]
        K = jnp.asarray(np.array([[k[i], k[j]] for i, j in keep]))
        c = jnp.asarray(np.array([uh[i, j] for i, j in keep]))

        def fn(th):
            u = jnp.real(jnp.sum(c * jnp.exp(1j * (K @ th))))
            return jnp.exp(2 * u) * jnp.eye(2)
    else:
        coef = jnp.asarray(ref.coefficients(0.5 * np.log(y)))

        def fn(x):
            # Legendre series by the three-term recurrence in μ = x₃
            mu = x[2]
            p0, p1 = 1.0, mu
            u = coef[0] * p0 + coef[1] * p1
            for l in range(1, coef.shape[0] - 1):
                p0, p1 = p1, ((2 * l + 1) * mu * p1 - l * p0) / (l + 1)
                u = u + coef[l + 1] * p1
            return jnp.exp(2 * u) * jnp.eye(3)
    field = metric_from_function(fn, dom)
    jets = dom.chart_jet(*field.ambient_jets(pts), pts)
    return perelman_lambda(dom, jets, pts, w, degree=degree).value


def _plot_sigma(out, data, tag):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = data["cases"]
    fig, axes = plt.subplots(1, len(cases), figsize=(4.5 * len(cases), 3.6), squeeze=False)
    for ax, (case, c) in zip(axes[0], cases.items()):
        sig = [r["sigma"] for r in c["rows"]]
        for k in c["reference"]:
            ax.loglog(sig, [max(r["err"][k], 1e-16) for r in c["rows"]], "o-",
                      label=f"{k} (order {c['fitted_order'][k]:.2f})" if c["fitted_order"][k] else k)
        ax.set_xlabel("σ")
        ax.set_ylabel(f"|Q_σ − Q_Hamilton| at t = {data['t_end']}")
        ax.set_title(f"{case}: {c['n_points']} points")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{tag}.png", dpi=110)


# ----------------------------------------------------------------------------------------------
# finite width
# ----------------------------------------------------------------------------------------------


def run_width(args):
    import jax.numpy as jnp

    from ntkflow.ricci.domains import Torus, metric_from_function
    from ntkflow.ricci.kernel_flow import CosNetKernel, GaussianKernel, kernel_flow
    from ntkflow.ricci.perelman import hamilton_driver

    dom = Torus(2)
    pts, w = dom.points(args.grid**2)
    metric = metric_from_function(lambda th: jnp.exp(2 * conformal_torus_u(th[0], th[1], jnp)) * jnp.eye(2), dom)
    G0 = np.asarray(metric.ambient_jets(pts)[0])

    def G_end(kernel):
        res, prob = kernel_flow(dom, metric, kernel, hamilton_driver, pts, w, t_end=args.t_end, rtol=1e-8, atol=1e-11)
        assert res.status == "finished", res.message
        return np.asarray(prob.field(res.y).ambient_jets(pts)[0]), res.nfev

    G_inf, nfev = G_end(GaussianKernel(args.sigma, backend="jax"))
    scale = np.linalg.norm(G_inf - G0)
    rows = []
    for N in args.widths:
        errs = []
        t0 = time.perf_counter()
        for s in range(args.seeds):
            G_N, _ = G_end(CosNetKernel(args.sigma, width=N, seed=1000 * s + N))
            errs.append(float(np.linalg.norm(G_N - G_inf) / scale))
        rows.append({"width": N, "errors": errs, "mean": float(np.mean(errs)),
                     "stderr": float(np.std(errs, ddof=1) / math.sqrt(len(errs))), "seconds": time.perf_counter() - t0})
        print(json.dumps({k: rows[-1][k] for k in ("width", "mean", "stderr", "seconds")}), flush=True)
    Ns = np.array([r["width"] for r in rows], float)
    means = np.array([r["mean"] for r in rows])
    slope, icpt = np.polyfit(np.log(Ns), np.log(means), 1)
    # slope uncertainty from the per-width Monte-Carlo error bars (weighted fit, σ_log = stderr/mean)
    sl = np.array([r["stderr"] / r["mean"] for r in rows])
    W = np.diag(1 / sl**2)
    X = np.stack([np.log(Ns), np.ones_like(Ns)], 1)
    cov = np.linalg.inv(X.T @ W @ X)
    out = {"mode": "width", "sigma": args.sigma, "t_end": args.t_end, "n_points": int(len(pts)),
           "error": "‖G_N(t) − G_∞(t)‖ / ‖G_∞(t) − G(0)‖ over the collocation points",
           "infinite_width_nfev": nfev, "rows": rows, "fitted_slope": float(slope),
           "slope_stderr": float(math.sqrt(cov[0, 0])), "machine": machine()}
    print("fitted slope", slope, "±", out["slope_stderr"], flush=True)
    write_json(Path(args.out), "width", out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.errorbar(Ns, means, yerr=[r["stderr"] for r in rows], fmt="o", label=f"{args.seeds} seeds per N")
    ax.loglog(Ns, np.exp(icpt) * Ns**slope, "-", label=f"fit: slope {slope:.3f} ± {out['slope_stderr']:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width N")
    ax.set_ylabel("relative error of G(t) vs infinite width")
    ax.set_title(f"T², σ = {args.sigma}, t = {args.t_end}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(args.out) / "width.png", dpi=110)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["scale", "scale-one", "sigma", "width"])
    ap.add_argument("--out", default="bench/results/ricci")
    ap.add_argument("--backend", default="keops", choices=["keops", "jax", "dense"])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--n-dense", type=int, default=4000, help="points of the lazy-vs-dense check (0: skip)")
    ap.add_argument("--domains", nargs="*", default=["S3", "T3"])
    ap.add_argument("--domain", default="S3")
    ap.add_argument("--sigma", type=float, default=0.3)
    ap.add_argument("--rhs-only", action="store_true", help="time one RHS only (no solver step, no warm-up call)")
    ap.add_argument("--tile", type=int, default=None, help="rows per JAX tile (GPU: e.g. 256)")
    ap.add_argument("--method", default="RK23", choices=["RK23", "RK45", "DOP853"])
    ap.add_argument("--first-step", type=float, default=1e-3)
    ap.add_argument("--sigmas", type=float, nargs="*", default=[0.8, 0.6, 0.45, 0.34])
    ap.add_argument("--cases", nargs="*", default=["T2", "S2"])
    ap.add_argument("--t-end", type=float, default=0.2)
    ap.add_argument("--rtol", type=float, default=1e-7)
    ap.add_argument("--t2-grid", type=int, default=48)
    ap.add_argument("--s2-k", type=int, default=40)
    ap.add_argument("--lambda-degree", type=int, default=8)
    ap.add_argument("--n-lambda", type=int, default=4, help="output times at which λ is evaluated along each flow")
    ap.add_argument("--widths", type=int, nargs="*", default=[256, 1024, 4096, 16384])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--grid", type=int, default=24)
    args = ap.parse_args(argv)
    import ntkflow  # noqa: F401  (float64)

    if args.mode == "scale-one":
        print(json.dumps(scale_one(args), default=float), flush=True)
    elif args.mode == "scale":
        run_scale(args)
    elif args.mode == "sigma":
        run_sigma(args)
    else:
        if "--sigma" not in (argv or sys.argv):
            args.sigma = 0.5
        if "--t-end" not in (argv or sys.argv):
            args.t_end = 0.1
        run_width(args)


if __name__ == "__main__":
    main()
