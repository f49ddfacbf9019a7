"""The talk's literal infinite-width Kähler potential flow with the Gaussian kernel exp((u − 1)/s²), in
dual form (flows/gaussian_flow.py), on the Fermat quintic: loss and held-out σ against flow time, the
leading metric-NTK eigenvalues (Lanczos) and the per-RHS cost.

    python bench/bench_gaussian_flow.py --out OUT [--n-train 1000] [--n-test 2000] [--s2 0.1 0.2]
        [--t-max 100] [--max-seconds 240] [--loss log] [--n-eig 8] [--tile 16]

Writes ``OUT/gaussian_flow.json`` (one record per s²: settings, history t / loss / σ train / σ held-out /
RHS count / wall, spectrum, seconds per RHS) and ``OUT/gaussian_flow.png`` (loss and σ against t).
Each RHS is one lazy four-derivative-kernel product over the n training points (O(n²) pairs), so the
cost per RHS scales as n²: extrapolate with ``seconds_per_rhs · (n'/n)²``.
Run single-threaded (``taskset -c 1``, ``OMP_NUM_THREADS=1``) to compare with the recorded numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))


def run(n_train, n_test, s2_values, *, t_max, max_seconds, loss, n_eig, seed, out, tile=16, log=print):
    import numpy as np

    import ntkflow  # noqa: F401
    from ntkflow.experiments.gaussian_flow import GaussianFlowConfig, GaussianKahlerFlow
    from ntkflow.manifolds import preset, sample

    from _common import machine

    m = preset("fermat-quintic")
    t = time.perf_counter()
    ps = sample(m, n_train + n_test, seed=seed, progress=False)
    train, test = ps.split(n_train)
    log(f"sampled {n_train} + {n_test} points in {time.perf_counter() - t:.1f} s")
    records = []
    for s2 in s2_values:
        cfg = GaussianFlowConfig(s2=s2, loss=loss, t_max=t_max, n_eval=16, t_first_frac=1e-4, max_seconds=max_seconds,
                                 tile=tile)
        flow = GaussianKahlerFlow(train, cfg, test)
        S0 = np.zeros((n_train, 3, 3), complex)
        flow.delta_g(S0)  # compile
        t = time.perf_counter()
        reps = 3
        for _ in range(reps):
            flow.rhs(0.0, np.zeros(n_train * 9))
        per_rhs = (time.perf_counter() - t) / reps
        log(f"s² = {s2}: n = {n_train}, {per_rhs:.3f} s per RHS (one lazy operator product)")
        t = time.perf_counter()
        lead, rates = flow.ntk_spectrum(k=n_eig) if n_eig else (np.array([]), np.array([]))
        spec_s = time.perf_counter() - t
        log(f"  leading metric-NTK eigenvalues (Lanczos, {spec_s:.1f} s): {np.array2string(lead, precision=4)}")
        log(f"  predicted per-mode rates 2λ: {np.array2string(rates, precision=4)}")
        res = flow.run(log=log)
        log(f"  {res.message}")
        import jax

        records.append({"s2": s2, "jax_device": str(jax.devices()[0]), "tile": tile, "n_train": n_train, "n_test": n_test, "loss_kind": loss, "seed": seed,
                        "t_max": t_max, "max_seconds": max_seconds, "method": cfg.method, "rtol": cfg.rtol,
                        "seconds_per_rhs": per_rhs, "eigenvalues": lead.tolist(), "rates": rates.tolist(),
                        "spectrum_seconds": spec_s, **res.to_json()})
    payload = {"benchmark": "gaussian_flow", "manifold": "fermat-quintic", "machine": machine(), "runs": records}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gaussian_flow.json"), "w") as fh:
        json.dump(payload, fh, indent=2, default=float)
    plot(records, os.path.join(out, "gaussian_flow.png"))
    return payload


def plot(records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for r in records:
        t = np.asarray(r["times"])
        t = np.where(t > 0, t, np.nan)
        ax[0].loglog(t, r["loss"], "o-", label=f"s² = {r['s2']}")
        ax[1].semilogx(t, r["sigma_test"], "o-", label=f"held-out, s² = {r['s2']}")
        ax[1].semilogx(t, r["sigma_train"], "x--", label=f"train, s² = {r['s2']}")
    ax[0].set_xlabel("flow time t")
    ax[0].set_ylabel("loss (train)")
    ax[1].set_xlabel("flow time t")
    ax[1].set_ylabel("σ")
    ax[1].set_yscale("log")
    ax[1].axhline(0.375, color="grey", lw=0.8, ls=":")
    for a in ax:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    n = records[0]["n_train"] if records else 0
    fig.suptitle(f"literal Gaussian-kernel potential flow, Fermat quintic, n = {n}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results/gaussian_flow")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--s2", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--t-max", type=float, default=100.0)
    ap.add_argument("--max-seconds", type=float, default=240.0, help="wall budget of each flow (per s²)")
    ap.add_argument("--loss", default="log", choices=["log", "sigma2"])
    ap.add_argument("--n-eig", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile", type=int, default=16, help="rows per JAX tile (16 on one CPU core; ~1024 on a GPU)")
    a = ap.parse_args(argv)
    run(a.n_train, a.n_test, a.s2, t_max=a.t_max, max_seconds=a.max_seconds, loss=a.loss, n_eig=a.n_eig,
        seed=a.seed, out=a.out, tile=a.tile)


if __name__ == "__main__":
    main()
