"""The talk's Kähler *metric* flow and its memorisation claim, on the Fermat quintic.

    python bench/bench_metric_flows.py --out bench/results/metric_flows
        [--n-flow 2000 --n-test 2000 --s2 0.1 --n-mem 3000 --mem-s2 0.1 --donaldson-k 3 --n-kahler 200]

(A) metric flow: the frozen no-mixing metric-NTK δ_ik δ_jl Θ(x, x') (Θ = exp((u − 1)/s²)) on the d²
    metric components, Monge–Ampère log loss, solve_ivp to the output times, then Gauss–Newton to the
    fixed point. Reports σ on training and held-out points, and the Kähler defect
    ‖∂_k g_ij̄ − ∂_i g_kj̄‖/‖∂g‖ of the flowed metric (also relative to the change g − g_FS), next to
    the same numbers for a potential flow (ntkflow cy, Bergman k = 6, same training points), the
    Donaldson target and FS.
(B) memorisation: frozen-NTK MSE flow of the metric components towards Donaldson's balanced metric
    (degree --donaldson-k) from g_FS; relative error on training / held-out points against t
    (Lanczos), t = ∞ by CG; σ of the memorised metric on both. (B') the same for the chart-free scalar
    potential φ = K_D − K_FS (from 0).

Writes ``metric_flows.json`` and ``metric_flows.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results/metric_flows")
    ap.add_argument("--n-flow", type=int, default=2000, help="training points of the metric flow")
    ap.add_argument("--n-test", type=int, default=2000, help="held-out points (both experiments)")
    ap.add_argument("--s2", type=float, default=0.1, help="width s² of the projective Gaussian kernel")
    ap.add_argument("--flow-times", type=float, nargs="*", default=[0.3, 1, 3, 10, 30])
    ap.add_argument("--gn-steps", type=int, default=2)
    ap.add_argument("--n-mem", type=int, default=3000, help="training points of the memorisation run")
    ap.add_argument("--mem-times", type=float, nargs="*", default=[1e-2, 1e-1, 1, 10, 100, 1000, 1e4])
    ap.add_argument("--mem-s2", type=float, nargs="*", default=[0.1],
                    help="kernel widths s² of the memorisation runs (0.3 at n = 3000 adds ~5 min: 360 Lanczos steps)")
    ap.add_argument("--donaldson-k", type=int, default=3)
    ap.add_argument("--bergman-k", type=int, default=6, help="potential-flow comparison (0: skip)")
    ap.add_argument("--n-kahler", type=int, default=200, help="held-out points for the Kähler defect")
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-flow", action="store_true")
    ap.add_argument("--skip-memorise", action="store_true")
    ap.add_argument("--skip-potential", action="store_true", help="skip memorising the scalar potential φ")
    args = ap.parse_args(argv)

    import numpy as np

    import ntkflow  # noqa: F401
    from _common import machine, write_json
    from ntkflow.experiments.memorise import MemoriseConfig, donaldson_target, memorise
    from ntkflow.experiments.metric_flow import MetricFlowConfig, MetricFlowProblem, kahler_defect, run_metric_flow
    from ntkflow.manifolds import fs_pullback, preset, sample, sigma

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    m = preset("fermat-quintic")
    n_tr = max(args.n_flow, args.n_mem)
    ps = sample(m, n_tr + args.n_test, seed=args.seed, progress=False)
    train_all, test = ps.split(n_tr)
    sub = test[: args.n_kahler]
    fs_te = sigma(test, np.real(np.linalg.det(fs_pullback(test))))
    print(f"Fermat quintic: {n_tr} training + {args.n_test} held-out points (seed {args.seed}); FS σ held-out {fs_te:.4f}")
    payload = {"manifold": m.name, "seed": args.seed, "n_test": args.n_test, "fs_sigma_test": fs_te,
               "settings": vars(args), "machine": machine()}

    def defect(fn, name):
        t = time.perf_counter()
        d = kahler_defect(fn, sub)
        d["seconds"] = time.perf_counter() - t
        print(f"  Kähler defect {name}: ‖dω‖/‖∂g‖ = {d['ratio']:.3e} (pointwise median {d['pointwise_median']:.3e})")
        return d

    kahler = {"fubini_study": defect(fs_pullback, "Fubini–Study")}
    t = time.perf_counter()
    target = donaldson_target(m, train_all[: args.n_mem], args.donaldson_k)
    don_s = sigma(test, target.det(test))
    print(f"Donaldson k={args.donaldson_k}: σ held-out {don_s:.4f} ({time.perf_counter() - t:.1f} s)")
    kahler["donaldson"] = defect(target.metric, f"Donaldson k={args.donaldson_k}")
    payload["donaldson"] = {"k": args.donaldson_k, "sigma_test": don_s}

    if args.bergman_k:
        from ntkflow.cy import BergmanMethod, CYConfig, DataConfig, OutputConfig, run_cy

        t = time.perf_counter()
        tr_b = train_all[: args.n_flow]
        cy = run_cy(CYConfig(DataConfig(n_train=args.n_flow, n_test=args.n_test, seed=args.seed),
                             BergmanMethod(k=args.bergman_k), output=OutputConfig(n_curvature=0)), None, quiet=True)
        model = cy.model
        wall = time.perf_counter() - t
        s_tr = sigma(tr_b, model.det(tr_b))
        s_te = sigma(test, model.det(test))
        print(f"potential flow (Bergman u^{args.bergman_k}, GN): σ train {s_tr:.3e}, held-out {s_te:.3e}, {wall:.1f} s")
        kahler["potential_flow"] = defect(model.metric, f"potential flow k={args.bergman_k}")
        payload["potential_flow"] = {"k": args.bergman_k, "n_train": args.n_flow, "sigma_train": s_tr, "sigma_test": s_te,
                                     "wall_seconds": wall,
                                     "note": "run_cy samples its own points with the same seed (same distribution)"}

    if not args.skip_flow:
        print(f"(A) metric flow: n = {args.n_flow}, kernel exp((u−1)/s²), s² = {args.s2}, log Monge–Ampère loss")
        cfg = MetricFlowConfig(s2=args.s2, times=tuple(args.flow_times), gn_steps=args.gn_steps, backend=args.backend)
        tr = train_all[: args.n_flow]
        t = time.perf_counter()
        P = MetricFlowProblem.build(tr, cfg)
        res = run_metric_flow(P, cfg, log=print)
        wall = time.perf_counter() - t
        G = P.metric_packed(res.alpha)
        s_tr = P.sigma(G)
        det_te = res.model.det(test)
        g_te = res.model.metric(test)
        pd = float(np.mean(np.all(np.linalg.eigvalsh(g_te) > 0, axis=1)))
        s_te = sigma(test, det_te)
        print(f"  flowed metric: σ train {s_tr:.3e}, σ held-out {s_te:.4f} (FS {fs_te:.4f}); positive definite at "
              f"{100 * pd:.1f} % of held-out points; {res.n_rhs} RHS, {wall:.1f} s")
        kahler["metric_flow"] = defect(res.model.metric, "metric flow")
        kahler["metric_flow_change"] = defect(lambda q: res.model.metric(q) - fs_pullback(q), "metric flow, g − g_FS only")
        payload["metric_flow"] = {"n_train": args.n_flow, "kernel": f"exp((u-1)/s2), s2={args.s2}", "loss": "log",
                                  "times": res.times.tolist(), "loss_t": res.loss.tolist(),
                                  "sigma_train_t": res.sigma_train.tolist(), "gn_history": list(res.gn_history),
                                  "sigma_train_final": s_tr, "sigma_test": s_te, "positive_definite_test": pd,
                                  "kappa": P.kappa, "n_rhs": res.n_rhs, "status": res.status, "wall_seconds": wall}

    if not args.skip_memorise:
        from ntkflow.experiments.metric_flow import KernelMetric, make_kernel

        payload["memorise"] = []
        tr = train_all[: args.n_mem]
        for s2 in (args.mem_s2 or [args.s2]):
            print(f"(B) memorisation: n = {args.n_mem}, target Donaldson k={args.donaldson_k}, kernel exp((u−1)/s²), s² = {s2}")
            mcfg = MemoriseConfig(s2=s2, times=tuple(args.mem_times), backend=args.backend)
            t = time.perf_counter()
            mres = memorise(tr, test, target, mcfg, log=print)
            wall = time.perf_counter() - t
            for tt, a, b, c, d in zip(mres.times, mres.train_rel_error, mres.test_rel_error, mres.sigma_train, mres.sigma_test):
                print(f"  t = {tt:8.3g}: rel. error train {a:.3e}  held-out {b:.3e}   σ train {c:.4f}  held-out {d:.4f}")
            print(f"  target σ: train {mres.target_sigma_train:.4f}, held-out {mres.target_sigma_test:.4f}; {wall:.1f} s")
            mem_model = KernelMetric(m, make_kernel(MetricFlowConfig(s2=s2)), np.asarray(tr.points), mres.alpha_inf, args.backend)
            kahler[f"memorised_s2={s2}"] = defect(mem_model.metric, f"memorised metric (t = ∞, s² = {s2})")
            payload["memorise"].append({
                "n_train": args.n_mem, "s2": s2, "target": f"donaldson k={args.donaldson_k}",
                "times": [float(x) if np.isfinite(x) else "inf" for x in mres.times],
                "train_rel_error": mres.train_rel_error.tolist(), "test_rel_error": mres.test_rel_error.tolist(),
                "sigma_train": mres.sigma_train.tolist(), "sigma_test": mres.sigma_test.tolist(),
                "target_sigma_train": mres.target_sigma_train, "target_sigma_test": mres.target_sigma_test,
                "cg_iterations": mres.cg_iterations, "cg_converged": mres.cg_converged, "cg_residual": mres.cg_residual,
                "lanczos_iterations": mres.lanczos_iterations, "lanczos_status": mres.lanczos_status,
                "seconds": mres.seconds, "wall_seconds": wall})
        if not args.skip_potential:
            from ntkflow.experiments.memorise import donaldson_potential

            payload["memorise_potential"] = []
            phi_tr, phi_te = donaldson_potential(target, tr), donaldson_potential(target, test)
            for s2 in (args.mem_s2 or [args.s2]):
                print(f"(B') memorising the chart-free potential φ = K_D − K_FS (scalar), s² = {s2}")
                t = time.perf_counter()
                pres = memorise(tr, test, (phi_tr, phi_te), MemoriseConfig(s2=s2, f0="zero", times=tuple(args.mem_times),
                                                                           backend=args.backend), log=print)
                wall = time.perf_counter() - t
                for tt, a, b in zip(pres.times, pres.train_rel_error, pres.test_rel_error):
                    print(f"  t = {tt:8.3g}: rel. error train {a:.3e}  held-out {b:.3e}")
                payload["memorise_potential"].append({
                    "n_train": args.n_mem, "s2": s2, "target": f"phi = K_D - K_FS, donaldson k={args.donaldson_k}",
                    "times": [float(x) if np.isfinite(x) else "inf" for x in pres.times],
                    "train_rel_error": pres.train_rel_error.tolist(), "test_rel_error": pres.test_rel_error.tolist(),
                    "cg_iterations": pres.cg_iterations, "cg_residual": pres.cg_residual, "wall_seconds": wall})
    payload["kahler_defect"] = kahler
    payload["kahler_points"] = len(sub)
    payload["total_seconds"] = time.perf_counter() - t_all
    write_json(out, "metric_flows", payload)
    _plot(out / "metric_flows.png", payload)
    print(f"wrote {out / 'metric_flows.json'}, {out / 'metric_flows.png'}; total {payload['total_seconds']:.1f} s")


def _plot(path, P):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(1, 3, figsize=(16, 4.6))
    if "metric_flow" in P:
        f = P["metric_flow"]
        t = np.array(f["times"], float)
        t[0] = t[1] / 10 if len(t) > 1 else 1e-2  # t = 0 drawn one decade left
        ax[0].loglog(t, f["sigma_train_t"], "o-", label="σ train (flow)")
        ax[0].loglog(t, f["loss_t"], "s--", label="loss")
        if f["gn_history"]:
            ax[0].loglog([t[-1] * 3], [f["sigma_train_final"]], "k*", ms=12, label="σ train, fixed point (GN)")
        ax[0].axhline(f["sigma_test"], color="C3", label=f"σ held-out {f['sigma_test']:.3f}")
        ax[0].axhline(P["fs_sigma_test"], color="gray", ls=":", label="FS σ")
        if "potential_flow" in P:
            ax[0].axhline(P["potential_flow"]["sigma_test"], color="C2", ls="-.",
                          label=f"potential flow u^{P['potential_flow']['k']} held-out")
        ax[0].set_xlabel("flow time t (t = 0 at left)")
        ax[0].set_title(f"(A) metric flow, n = {f['n_train']}")
        ax[0].legend(fontsize=7)
    for i, mm in enumerate(P.get("memorise", [])):
        ts = [x for x in mm["times"] if x != "inf"]
        tt = np.array(ts + [ts[-1] * 10], float)
        ax[1].loglog(tt, mm["train_rel_error"], "o-", color=f"C{i}", label=f"train, s² = {mm['s2']}")
        ax[1].loglog(tt, mm["test_rel_error"], "s--", color=f"C{i}", label=f"held-out, s² = {mm['s2']}")
        ax[1].annotate("t = ∞ (CG)", (tt[-1], mm["train_rel_error"][-1]), fontsize=7)
    for i, mm in enumerate(P.get("memorise_potential", [])):
        ts = [x for x in mm["times"] if x != "inf"]
        tt = np.array(ts + [ts[-1] * 10], float)
        ax[1].loglog(tt, mm["test_rel_error"], "^:", color=f"C{i}", label=f"held-out, potential φ, s² = {mm['s2']}")
    if P.get("memorise"):
        mm = P["memorise"][0]
        ax[1].legend(fontsize=7)
        ax[1].set_xlabel("flow time t (last point: t = ∞)")
        ax[1].set_ylabel("‖f_t − y‖/‖f_0 − y‖")
        ax[1].set_title(f"(B) memorising {mm['target']} (metric components), n = {mm['n_train']}", fontsize=9)
    K = P["kahler_defect"]
    names = list(K)
    ax[2].bar(range(len(names)), [max(K[k]["ratio"], 1e-16) for k in names], color="C0")
    ax[2].set_yscale("log")
    ax[2].set_xticks(range(len(names)))
    ax[2].set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    ax[2].set_title(f"Kähler defect ‖∂_k g_ij̄ − ∂_i g_kj̄‖/‖∂g‖ ({P['kahler_points']} held-out pts)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def replot(json_path):
    """Redraw the figure of an existing metric_flows JSON (``python bench/bench_metric_flows.py --replot FILE``)."""
    P = json.loads(Path(json_path).read_text())
    _plot(Path(json_path).with_suffix(".png"), P)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--replot":
        replot(sys.argv[2])
    else:
        main()
