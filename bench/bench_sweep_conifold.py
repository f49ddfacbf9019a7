"""σ against k near the conifold of the Dwork quintic: exponential or power law?

Reads the sweeps written by ``ntkflow cy --manifold dwork-quintic --psi 0.1,0.9,0.95,0.99 -k K -o DIR/con-kK``
(one per K; docs/cy.md "Moduli sweeps" has the commands) and fits, for each ψ, over the k given,

    exponential  log σ = a − b k           power law  log σ = a − p log k

by least squares (numpy.polyfit), reporting the RMS residual in log σ of each and the local slopes
d log σ / dk and d log σ / d log k between consecutive k (constant for the law that holds). Writes
``sweep_conifold.json`` and ``sweep_conifold.png`` to --out.

    python bench/bench_sweep_conifold.py --runs /tmp/sweeps --out bench/results/sweep --even
    python bench/bench_sweep_conifold.py --runs bench/results/sweep --out /tmp/refit --even   # from the copies
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re

import matplotlib
import numpy as np


def read(runs: str) -> dict:
    """{ψ label: {k: σ held-out}} from runs/con-kK/sweep.json (the sweeps' directories) or runs/conifold_kK.json
    (their sweep.json copied, as in bench/results/sweep)."""
    table: dict = {}
    paths = glob.glob(os.path.join(runs, "con-k*", "sweep.json")) + glob.glob(os.path.join(runs, "conifold_k*.json"))
    for path in sorted(paths):
        k = int(re.search(r"(?:con-k|conifold_k)(\d+)", path).group(1))
        for row in json.load(open(path))["rows"]:
            if row.get("done"):
                table.setdefault(row["psi"], {})[k] = row["sigma_test"]
    return table


def fit(ks, sig) -> dict:
    ks, ls = np.asarray(ks, float), np.log(np.asarray(sig, float))
    e = np.polyfit(ks, ls, 1)
    p = np.polyfit(np.log(ks), ls, 1)
    res_e = float(np.sqrt(np.mean((np.polyval(e, ks) - ls) ** 2)))
    res_p = float(np.sqrt(np.mean((np.polyval(p, np.log(ks)) - ls) ** 2)))
    return {"k": ks.tolist(), "sigma": np.exp(ls).tolist(),
            "exponential": {"rate_b": float(-e[0]), "rms_log_residual": res_e},
            "power": {"exponent_p": float(-p[0]), "rms_log_residual": res_p},
            "better": "exponential" if res_e < res_p else "power",
            "local_rate_dlogsigma_dk": (-np.diff(ls) / np.diff(ks)).tolist(),
            "local_exponent_dlogsigma_dlogk": (-np.diff(ls) / np.diff(np.log(ks))).tolist()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="directory holding con-kK/ sweep outputs")
    ap.add_argument("--out", required=True, help="output directory for the JSON and the plot")
    ap.add_argument("--kmin", type=int, default=0, help="fit only k >= KMIN (default: all)")
    ap.add_argument("--even", action="store_true",
                    help="fit only even k (odd k barely improve on k - 1 in the Dwork group's basis: a staircase)")
    a = ap.parse_args(argv)
    table = read(a.runs)
    if not table:
        raise SystemExit(f"runs: no con-k*/sweep.json under {a.runs!r}; run the sweeps first (module docstring).")
    out = {"runs": a.runs, "kmin": a.kmin, "even": a.even, "fits": {}}
    for psi, d in table.items():
        ks = sorted(k for k in d if k >= a.kmin and (k % 2 == 0 or not a.even))
        out["fits"][psi] = fit(ks, [d[k] for k in ks])
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "sweep_conifold.json"), "w") as f:
        json.dump(out, f, indent=1)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pyplot after choosing the backend

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for psi, r in out["fits"].items():
        ax[0].semilogy(r["k"], r["sigma"], "o-", label=f"ψ = {psi}")
        ax[1].loglog(r["k"], r["sigma"], "o-", label=f"ψ = {psi}")
    ax[0].set_xlabel("k (straight: exponential)")
    ax[1].set_xlabel("k (straight: power law)")
    for x in ax:
        x.set_ylabel("held-out σ")
        x.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "sweep_conifold.png"), dpi=90)
    print(f"{'ψ':>6} {'k':>8} {'exp b':>7} {'rms':>6} {'power p':>8} {'rms':>6}  better")
    for psi, r in out["fits"].items():
        print(f"{psi:>6} {int(r['k'][0]):>3}-{int(r['k'][-1]):<4} {r['exponential']['rate_b']:7.3f} "
              f"{r['exponential']['rms_log_residual']:6.3f} {r['power']['exponent_p']:8.2f} "
              f"{r['power']['rms_log_residual']:6.3f}  {r['better']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
