"""σ against wall time on the Fermat quintic: ntkflow (frozen Bergman kernel + Gauss–Newton),
Donaldson's balanced metrics and a finite-width φ-network — same points, same evaluation.

    python bench/bench_cy.py --out bench/results/cy [--n-train 50000 --n-test 50000]
        [--bergman 4 6 8 10 12] [--donaldson 2 3 4 6 8] [--network-seconds 300]

Writes ``cy.json`` (one record per run: method, k, σ held-out, wall seconds, settings), ``cy.md`` (the
table) and ``cy.png`` (σ vs wall time, log-log).  Correctness first: every record carries the FS σ of
the same held-out points (it must be ≈ 0.37) and, for Donaldson, the DKLR fit 3.1/k² − 4.2/k³.
Timings are wall-clock on the machine as it is (shared cores make them noisy: rerun to compare).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results/cy")
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--n-test", type=int, default=50_000)
    ap.add_argument("--bergman", type=int, nargs="*", default=[4, 6, 8, 10, 12])
    ap.add_argument("--donaldson", type=int, nargs="*", default=[2, 3, 4, 6, 8])
    ap.add_argument("--network-seconds", type=float, default=300.0, help="0 to skip the network")
    ap.add_argument("--network-width", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--literal", type=int, nargs=2, metavar=("K", "N"), default=None,
                    help="instead: the literal frozen-NTK flow (solve_ivp) vs Gauss-Newton at degree K on N points, and the NTK spectrum")
    args = ap.parse_args(argv)
    if args.literal:
        return literal_experiment(*args.literal, out=args.out, seed=args.seed)

    import ntkflow  # noqa: F401
    from ntkflow.cy import (BergmanMethod, CYConfig, DataConfig, DonaldsonMethod, LMSettings, NetworkMethod,
                            OutputConfig, run_cy)

    os.makedirs(args.out, exist_ok=True)
    records = []

    def record(method, k, res, wall):
        m = res.metrics
        rec = {"method": method, "k": k, "sigma_test": m["sigma_test"], "wall_seconds": wall,
               "fs_sigma_test": m["fs_baseline"]["sigma_test"], "n_train": args.n_train, "n_test": args.n_test}
        if method == "donaldson":
            rec["sigma_dklr_fit"] = m["method_info"]["sigma_dklr_fit"]
            rec["rel_to_fit"] = m["sigma_test"] / rec["sigma_dklr_fit"] - 1.0
        if method.startswith("network"):
            rec["n_parameters"] = m["method_info"]["n_parameters"]
            rec["epochs"] = m["iterations"]
        records.append(rec)
        print(json.dumps(rec), flush=True)
        with open(os.path.join(args.out, "cy.json"), "w") as f:
            json.dump(records, f, indent=1)

    data = DataConfig(n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    no_curvature = OutputConfig(n_curvature=0)
    for k in args.bergman:
        t = time.perf_counter()
        res = run_cy(CYConfig(data, BergmanMethod(k=k), output=no_curvature), None, quiet=True)
        record("ntkflow (Bergman u^k, GN)", k, res, time.perf_counter() - t)
    for k in args.donaldson:
        t = time.perf_counter()
        res = run_cy(CYConfig(data, DonaldsonMethod(k=k), output=no_curvature), None, quiet=True)
        record("donaldson", k, res, time.perf_counter() - t)
    if args.network_seconds > 0:
        t = time.perf_counter()
        res = run_cy(CYConfig(data, NetworkMethod(width=args.network_width, depth=3, epochs=100000, batch_size=2000,
                                                  learning_rate=3e-3),
                              LMSettings(time_budget=args.network_seconds), no_curvature), None, quiet=True)
        record("network (64x3 tanh, Adam)", None, res, time.perf_counter() - t)

    lines = ["| method | k | held-out σ | wall s | note |", "|---|---|---|---|---|"]
    for r in records:
        note = ""
        if "sigma_dklr_fit" in r:
            note = f"DKLR fit {r['sigma_dklr_fit']:.4f} ({100 * r['rel_to_fit']:+.1f} %)"
        if "epochs" in r:
            note = f"{r['n_parameters']} parameters, {r['epochs']} epochs"
        lines.append(f"| {r['method']} | {r['k'] if r['k'] is not None else '-'} | {r['sigma_test']:.3e} | {r['wall_seconds']:.1f} | {note} |")
    fs = records[0]["fs_sigma_test"] if records else float("nan")
    lines.append(f"\nFubini–Study on the same held-out points: σ = {fs:.4f}. Command: python bench/bench_cy.py {' '.join(sys.argv[1:])}")
    with open(os.path.join(args.out, "cy.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for meth, mk in (("ntkflow (Bergman u^k, GN)", "o-"), ("donaldson", "s--"), ("network (64x3 tanh, Adam)", "^")):
            rs = [r for r in records if r["method"] == meth]
            if rs:
                ax.loglog([r["wall_seconds"] for r in rs], [r["sigma_test"] for r in rs], mk, label=meth)
        ax.set_xlabel("wall seconds")
        ax.set_ylabel("held-out σ")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "cy.png"), dpi=90)
    except Exception as exc:  # pragma: no cover
        print(f"(plot skipped: {exc})")
    return 0


def literal_experiment(k, n, *, out, seed=3):
    """Literal flow (LSODA) to t = 1e2, 1e4, 1e6 vs LM, and the metric-NTK spectrum (Lanczos)."""
    import numpy as np

    import ntkflow  # noqa: F401
    from ntkflow.cy import algebra, basis
    from ntkflow.cy import gauss_newton as gn
    from ntkflow.experiments import literal
    from ntkflow.manifolds import preset, sample, sigma_weighted
    from ntkflow.solvers.least_squares import LMConfig, levenberg_marquardt

    os.makedirs(out, exist_ok=True)
    m = preset("fermat-quintic")
    ps = sample(m, n, seed=seed)
    b = basis.invariant_basis(5, k, basis.detect_symmetry(m.exponents, m.coefficients))
    p = gn.MAProblem(g0=algebra.pack(algebra.fs_pulled(ps.points, ps.jacobian)),
                     hess=algebra.pair_hessians(b, ps.points, ps.jacobian),
                     log_omega=np.log(ps.omega_sq), weights=ps.weights, dim=3)
    d = literal.rkhs_gram_diagonal(b)
    lead, dual = literal.ntk_spectrum(p, d, k=min(10, b.n_functions - 1))
    rec = {"k": k, "n": n, "ntk_leading_eigenvalues": lead.tolist(),
           "rates_2lambda_over_n": (2 * dual[dual > 1e-12 * dual[0]] / n).tolist(), "flow": []}
    for tmax in (1e2, 1e4, 1e6):
        fr = literal.literal_flow(p, d, tmax, n_eval=8)
        rec["flow"].append({"t": tmax, "loss": float(fr.loss[-1]), "sigma_train": float(fr.sigma[-1]),
                            "nfev": fr.nfev, "seconds": fr.seconds})
        print(json.dumps(rec["flow"][-1]), flush=True)
    t = time.perf_counter()
    tm = gn.whitening(p)
    pw = gn.MAProblem(g0=p.g0, hess=gn.transform_basis(p.hess, tm), log_omega=p.log_omega, weights=p.weights, dim=3)
    r = levenberg_marquardt(pw, LMConfig(max_iter=10))
    ld, _, _ = pw.logdet(r.value)
    rec["gauss_newton"] = {"loss": r.loss, "sigma_train": sigma_weighted(np.exp(ld - pw.log_omega), pw.weights),
                           "iterations": r.iterations, "seconds": time.perf_counter() - t}
    print(json.dumps(rec["gauss_newton"]))
    print("NTK eigenvalues:", np.array2string(dual[dual > 1e-12 * dual[0]], precision=3))
    with open(os.path.join(out, "literal.json"), "w") as f:
        json.dump(rec, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
