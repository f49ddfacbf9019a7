"""High-degree Bergman fits of the Fermat quintic on the memory-lean dense path: σ against k and the whitening cut.

One process per k (its peak RSS is the k's memory). The pipeline is ``ntkflow cy --dense-chunk``'s:
the training and held-out points are one sample (seed, split as in ``ntkflow cy``), J₀ is streamed over point
chunks (:func:`ntkflow.cy.gauss_newton.jacobian0_rows`), whitened by QR + SVD (:func:`whitening_qr`) at the
smallest cut asked for, the training Hessians streamed into that basis (:func:`whitened_hessians`), and
Levenberg–Marquardt on the chunked normal equations (``MAProblem(chunk=...)``, ``DenseSolve``) is run once per
cut on the leading columns (the whitened directions are ordered by singular value, so the basis of a larger
cut is a prefix of that of a smaller one: rtol = 1e-10 is exactly today's basis). The held-out Hessians are
never stored: one last streamed pass evaluates det g of every fit on the held-out points.

Reported per cut: kept directions, train and held-out σ, the held-out σ's standard error (batch means over 50
contiguous batches), LM iterations; per k: the singular-value spectrum (relative) of the column-scaled
W^{1/2}J₀, wall times of each pass, peak RSS.

    python bench/bench_cy_highk.py -k 20 --n-train 10000 --n-test 10000 --rtol 1e-10 1e-11 1e-12 \
        --out bench/results/cy_highk
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np

import ntkflow  # noqa: F401  (float64)
from ntkflow.cy import algebra, basis as basis_mod
from ntkflow.cy.gauss_newton import MAProblem, jacobian0_rows, whitened_hessians, whitening_qr
from ntkflow.manifolds import build_manifold, sample, sigma_weighted
from ntkflow.solvers.least_squares import DenseSolve, LMConfig, levenberg_marquardt


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB


def sigma_stderr(eta, w, n_batches: int = 50) -> float:
    """Standard error of σ by batch means: σ on each of ``n_batches`` contiguous batches, std/√B."""
    size = len(eta) // n_batches
    s = [sigma_weighted(eta[i * size:(i + 1) * size], w[i * size:(i + 1) * size]) for i in range(n_batches)]
    return float(np.std(s, ddof=1) / np.sqrt(n_batches))


def run(k, n_train, n_test, rtols, *, seed=0, chunk=2048, max_iter=20, cache=None, log=print) -> dict:
    t_all = time.perf_counter()
    m = build_manifold("fermat-quintic")
    sym = basis_mod.detect_symmetry(m.exponents, m.coefficients)
    b = basis_mod.invariant_basis(m.n_coords, k, sym)
    ps = sample(m, n_train + n_test, seed=seed, progress=False)
    train, test = ps.split(n_train)
    times = {}
    log(f"k={k}: {b.n_functions} functions, {b.n_pairs} half pairs; {n_train} + {n_test} points")
    t = time.perf_counter()
    files = {}
    tmpdir = tempfile.mkdtemp(prefix=f"highk{k}_", dir=cache) if cache else None

    def keep(lo, h):  # the raw training Hessians, chunk by chunk on disk (one pass of pair sums instead of two)
        files[lo] = os.path.join(tmpdir, f"{lo}.npy")
        np.save(files[lo], h)

    j0 = jacobian0_rows(b, train.points, train.jacobian, chunk=chunk, on_chunk=keep if cache else None)
    times["jacobian0"] = time.perf_counter() - t
    t = time.perf_counter()
    rtols = sorted(rtols, reverse=True)
    tmat, spectrum = whitening_qr(j0, train.weights, rtol=rtols[-1])
    del j0
    times["whitening"] = time.perf_counter() - t
    kept = {r: int(np.sum(spectrum > r)) for r in rtols}
    log(f"  J₀ {times['jacobian0']:.0f} s, QR+SVD {times['whitening']:.0f} s; kept {kept}; rss {_rss_gb():.2f} GB")
    # training Hessians in the whitened basis of the smallest cut (n, q_max, 9)
    t = time.perf_counter()
    if cache:
        h_tr = np.empty((n_train, tmat.shape[1], m.dim ** 2))
        for lo, path in files.items():
            h = np.load(path)
            h_tr[lo:lo + len(h)] = np.swapaxes(np.swapaxes(h, 1, 2) @ tmat, 1, 2)
            os.remove(path)
        os.rmdir(tmpdir)
    else:
        h_tr = whitened_hessians(b, train.points, train.jacobian, tmat, chunk=chunk)
    times["hessians_train"] = time.perf_counter() - t
    g0_tr = algebra.pack(algebra.fs_pulled(train.points, train.jacobian))
    log(f"  whitened training Hessians {h_tr.shape} {h_tr.nbytes / 1e9:.2f} GB in {times['hessians_train']:.0f} s")
    fits = {}
    for r in rtols:
        q = kept[r]
        t = time.perf_counter()
        prob = MAProblem(g0=g0_tr, hess=h_tr[:, :q], log_omega=np.log(train.omega_sq), weights=train.weights,
                         dim=m.dim, chunk=4096)
        res = levenberg_marquardt(prob, LMConfig(max_iter=max_iter, lam0=1e-3, gtol=1e-6, scaling="identity"),
                                  solve=DenseSolve())
        ld, _, ok = prob.logdet(res.value)
        s_tr = sigma_weighted(np.exp(ld - prob.log_omega), prob.weights) if ok else float("nan")
        fits[r] = {"theta": res.value, "q": q, "sigma_train": s_tr, "iterations": res.iterations,
                   "status": res.status.name, "loss": res.history[-1]["loss"] if res.history else None,
                   "seconds": time.perf_counter() - t}
        log(f"  rtol {r:g}: {q} directions, train σ {s_tr:.3e}, {res.iterations} iterations ({res.status.name}), "
            f"{fits[r]['seconds']:.0f} s")
    del h_tr
    # held-out: one streamed pass, det g of every fit
    t = time.perf_counter()
    dets = {r: np.empty(n_test) for r in rtols}
    for lo in range(0, n_test, chunk):
        sl = slice(lo, lo + chunk)
        h = whitened_hessians(b, test.points[sl], test.jacobian[sl], tmat, chunk=chunk)
        g0 = algebra.pack(algebra.fs_pulled(test.points[sl], test.jacobian[sl]))
        for r in rtols:
            th = fits[r]["theta"]
            gp = g0 + np.matmul(np.swapaxes(h[:, :fits[r]["q"]], 1, 2), th[:-1])
            dets[r][sl] = np.real(np.linalg.det(algebra.unpack(gp, m.dim)))
    times["heldout"] = time.perf_counter() - t
    # the saved model evaluates φ in the monomial pairs (coefficients T θ): its det g on the first held-out
    # points against the whitened evaluation above — the round-off of the model's own evaluation
    n_chk = min(500, n_test)
    g0c = algebra.pack(algebra.fs_pulled(test.points[:n_chk], test.jacobian[:n_chk]))
    model_rel = {}
    for r in rtols:
        comb = b.combined(tmat[:, :fits[r]["q"]] @ fits[r]["theta"][:-1])
        hc = algebra.pair_hessians(comb, test.points[:n_chk], test.jacobian[:n_chk])[:, 0]
        dm = np.real(np.linalg.det(algebra.unpack(g0c + hc, m.dim)))
        model_rel[r] = float(np.max(np.abs(dm / dets[r][:n_chk] - 1)))
    rows = []
    for r in rtols:
        eta = dets[r] / test.omega_sq
        good = bool(np.all(np.isfinite(eta)) and np.all(eta > 0))
        s_te = sigma_weighted(eta, test.weights) if good else float("nan")
        err = sigma_stderr(eta, test.weights) if good else float("nan")
        f = fits[r]
        rows.append({"rtol": r, "kept": f["q"], "sigma_test": s_te, "sigma_test_stderr": err,
                     "sigma_train": f["sigma_train"], "iterations": f["iterations"], "status": f["status"],
                     "loss": f["loss"], "lm_seconds": f["seconds"], "model_det_max_rel_diff": model_rel[r],
                     "coeff_norm": float(np.linalg.norm(tmat[:, :f["q"]] @ f["theta"][:-1]))})
        log(f"  rtol {r:g}: held-out σ {s_te:.4e} ± {err:.1e} (train {f['sigma_train']:.4e}); saved model's det g "
            f"vs the whitened one: max rel. diff {model_rel[r]:.1e}")
    fs = sigma_weighted(algebra_det_fs(test) / test.omega_sq, test.weights)
    times["total"] = time.perf_counter() - t_all
    out = {"k": k, "n_functions": b.n_functions, "n_pairs": b.n_pairs, "n_train": n_train, "n_test": n_test,
           "seed": seed, "chunk": chunk, "fits": rows, "sigma_fs_test": fs, "spectrum": spectrum.tolist(),
           "seconds": times, "peak_rss_gb": _rss_gb()}
    log(f"  total {times['total']:.0f} s, peak RSS {out['peak_rss_gb']:.2f} GB")
    return out


def algebra_det_fs(ps):
    return np.real(np.linalg.det(algebra.fs_pulled(ps.points, ps.jacobian)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", type=int, required=True)
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--rtol", type=float, nargs="+", default=[1e-10])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--max-iter", type=int, default=20)
    ap.add_argument("--cache", default=None, help="folder for the raw training Hessians between the two passes "
                    "(n_train·p·d²·8 bytes on disk; default: recompute them)")
    ap.add_argument("--out", default=None, help="folder for k{K}_n{N}.json")
    a = ap.parse_args(argv)
    res = run(a.k, a.n_train, a.n_test, a.rtol, seed=a.seed, chunk=a.chunk, max_iter=a.max_iter, cache=a.cache,
              log=lambda s: print(s, flush=True))
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, f"k{a.k}_n{a.n_train}.json")
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
