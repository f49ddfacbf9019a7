"""Where the whitening of the degree-k invariant basis loses directions: the singular values of the column-scaled
W^{1/2}J₀ (J₀ = tr(g_FS⁻¹ G_a), the Laplacians of the basis functions) with the pulled-back Hessians G_a summed
over pairs in float64 (the job's JAX path) and in x87 extended precision (``pair_hessians(..., extended=True)``,
ε ≈ 1e-19) on the same points.

The genuine directions (functions non-constant on X) and the null directions (constants and multiples of Q,
exactly zero on X) are separated by a gap; with float64 sums the null directions sit on a round-off floor, and a
genuine direction below that floor is lost (or kept as noise) whatever the cut. The extended sums lower the floor,
so the count of genuine directions above the float64 floor is measured, not assumed.

    python bench/bench_cy_conditioning.py -k 18 --n 1000 [--extended] --out bench/results/cy_highk
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import ntkflow  # noqa: F401
from ntkflow.cy import algebra, basis as basis_mod
from ntkflow.cy.gauss_newton import jacobian0_rows, whitening_qr
from ntkflow.manifolds import build_manifold, sample


def spectrum_of(hess, gi, weights):
    j0 = np.matmul(hess, gi[:, :, None])[:, :, 0].astype(np.float64)
    return whitening_qr(j0, weights, rtol=1e-300)[1]


def largest_gap(sv, lo=1e-17):
    """(index i, sv[i], sv[i+1]) of the largest ratio sv[i]/sv[i+1] among singular values > lo."""
    s = sv[sv > lo]
    r = np.log10(s[:-1]) - np.log10(s[1:])
    i = int(np.argmax(r))
    return i + 1, float(s[i]), float(s[i + 1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", type=int, required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extended", action="store_true", help="also the extended-precision sums (slow: ~0.3 s a point at k = 18)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    m = build_manifold("fermat-quintic")
    b = basis_mod.invariant_basis(m.n_coords, a.k, basis_mod.detect_symmetry(m.exponents, m.coefficients))
    ps = sample(m, a.n, seed=a.seed, progress=False)
    gi = algebra.pack(np.linalg.inv(algebra.fs_pulled(ps.points, ps.jacobian))) * algebra.trace_weights(m.dim)[None, :]
    t = time.perf_counter()
    j0 = jacobian0_rows(b, ps.points, ps.jacobian, chunk=1024)  # float64 sums (the job's JAX path)
    t64 = time.perf_counter() - t
    spectra = [("float64", whitening_qr(j0, ps.weights, rtol=1e-300)[1])]
    del j0
    tld = None
    if a.extended:
        t = time.perf_counter()
        chunk = max(1, int(2e8 / (b.n_pairs * m.dim ** 2 * 32)))
        hld = algebra.pair_hessians(b, ps.points, ps.jacobian, backend="numpy", extended=True, chunk=chunk)
        tld = time.perf_counter() - t
        spectra.append(("extended", spectrum_of(hld, gi.astype(np.longdouble), ps.weights)))
    out = {"k": a.k, "n": a.n, "n_functions": b.n_functions, "seconds_float64": t64, "seconds_extended": tld}
    for name, sv in spectra:
        i, s_above, s_below = largest_gap(sv)
        out[name] = {"gap_index": i, "last_above_gap": s_above, "first_below_gap": s_below,
                     "kept": {f"{r:g}": int(np.sum(sv > r)) for r in (1e-10, 1e-11, 1e-12, 1e-13, 1e-14)},
                     "spectrum": sv.tolist()}
        print(f"k={a.k} n={a.n} {name}: largest gap after {i} directions ({s_above:.2e} -> {s_below:.2e}); "
              f"kept at rtol 1e-10..1e-14: {out[name]['kept']}", flush=True)
    print(f"  seconds: float64 {t64:.0f}" + (f", extended {tld:.0f}" if tld is not None else ""))
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, f"conditioning_k{a.k}_n{a.n}.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
