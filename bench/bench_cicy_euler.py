r"""Euler characteristic and σ of the Fubini–Study metric on the CICY presets (issue #14 acceptance).

    python bench/bench_cicy_euler.py --preset bicubic --n 2000000 --out bench/results/cicy_euler

For each preset (``NAME``, ``NAME:psi=0.5``, ``NAME:seed=0``) it samples ``--n`` points in chunks
(``sample_cicy`` with seeds ``--seed + i``, independent streams), and reports

- the residual max_j |Q_j|/Σ_m|c_jm z^e_jm| over all points and the weights against an independent
  recomputation (another chart: second-best eliminated coordinates, D_c by the Leibniz expansion) on
  the first ``--n-check`` points;
- σ_FS = E_w|1 − η/⟨η⟩_w| of g_t (batch-means error over 50 contiguous batches) and ∫J_t³ against
  the intersection numbers;
- χ = ∫_X c_3(g_t) ≈ mean(w c_3/|Ω|²)/3! for every ``--t`` (same points: the differences are paired),
  with the batch-means standard error (``ntkflow.manifolds.mean_stderr``).

c_3 comes from :func:`fs_curvature_closed_form` below: the curvature of the pulled-back FS metric in
closed form from the first and second derivatives of the embedding (no autodiff; jitted), 22–34× faster
than the 4th-order JAX autodiff of ``make_cicy_curvature_fn`` (same points, docs/manifolds.md) and
without its minutes of compilation on the dense random equations; ``--check-autodiff N`` compares the two per point on N points (the JSON
records the largest relative difference; skipped for random coefficients). The integrand c_3/(FS volume)
is heavy-tailed on the bicubic, the tetraquadric and the random P⁵[3,3] (Hill tail index ≈ 1, recorded as
``tail_index_hill``; the largest values sit where the normalised gradient of Q is smallest), so the
batch-means error understates the error there; the JSON keeps the estimate against n (``convergence``)
and 1000 batch means per class.

``--control-variates`` (with ``--cv-pilot N``) adds the control-variate estimate of every χ
(``ntkflow.manifolds.cicy_chern``: products of J_r and the Chern forms of the normal-bundle Gram metrics, whose
integrals are intersection numbers; β fitted on N pilot points, seeds 2·10⁶ + seed): JSON ``by_t[i].control_variates``
(estimate, error, variance ratio, the residual's Hill index) and ``control_variates`` (each control's plain integral
against its exact value). ``--table-only`` re-renders OUT/cicy_euler.json, .md (table) and .png from the per-preset
JSON files. Measured in docs/manifolds.md: every preset within 0.03 % (random members included).

``--importance PILOT_N`` (with ``--is-rounds``, ``--is-centres``, ``--is-lambda``, ``--is-defensive``) draws
the points from a defensive mixture of deformed Crofton samplers centred where pilot runs found the largest
|c_3/vol| (``sample_cicy_mixture``; exact mixture weights, so the estimate stays unbiased); the JSON adds
``euler_stderr_stratified`` and ``importance`` (pilot rounds). Measured in docs/manifolds.md: ≈ 3–26× less
variance per point, but the weighted integrand keeps a Hill index 1.1–2.0 and each point costs 4–27× more.

Set ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` on a shared CPU: two multi-threaded runs hung in
XLA's CPU runtime (main thread waiting on a result, every pool thread idle) under heavy load.

Writes OUT/cicy_euler_<label>.json per preset and OUT/cicy_euler.json + OUT/cicy_euler.png (all
presets found in OUT).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, peak_rss_gb  # noqa: E402

from ntkflow.manifolds.cicy_jets import embedding_derivatives, q_hessian  # noqa: E402,F401  (q_hessian: re-exported)


# ---- closed-form curvature of the pulled-back FS metric ----------------------------------------------


def _factor_terms(xp, z, Z1, Z2):
    r"""G, ∂_cG, ∂̄_d∂_cG of φ = log s, s = Σ_I |z_I(x)|² (one factor, no 1/π): G_ab = ∂_a∂̄_bφ.

    Every derivative of s needs only Z1, Z2 (z holomorphic): s_a = Z1·z̄, s_{ab̄} = Z1·Z1̄,
    s_{ca} = Z2·z̄, s_{cab̄} = Z2·Z1̄, s_{cab̄d̄} = Z2·Z2̄; G = s_{ab̄}/s − s_a s̄_b/s² differentiated by hand."""
    zc, Z1c, Z2c = xp.conj(z), xp.conj(Z1), xp.conj(Z2)
    s = xp.sum(z.real ** 2 + z.imag ** 2, axis=1)  # (M,)
    sa = xp.einsum("mai,mi->ma", Z1, zc)  # s_a
    sab = xp.einsum("mai,mbi->mab", Z1, Z1c)  # s_{a b̄}
    s2 = xp.einsum("mcai,mi->mca", Z2, zc)  # s_{ca}
    s21 = xp.einsum("mcai,mbi->mcab", Z2, Z1c)  # s_{c a b̄}
    s22 = xp.einsum("mcai,mdbi->mcadb", Z2, Z2c)  # s_{c a b̄ d̄} stored [c, a, d, b]
    sb = xp.conj(sa)
    i1, i2, i3 = (1 / s)[:, None, None], (1 / s**2)[:, None, None], (1 / s**3)[:, None, None]
    G = sab * i1 - xp.einsum("ma,mb->mab", sa, sb) * i2
    dG = (s21 * i1[..., None] - xp.einsum("mab,mc->mcab", sab, sa) * i2[..., None]
          - (xp.einsum("mca,mb->mcab", s2, sb) + xp.einsum("ma,mcb->mcab", sa, sab)) * i2[..., None]
          + 2 * xp.einsum("ma,mb,mc->mcab", sa, sb, sa) * i3[..., None])  # [c, a, b]
    e5 = lambda spec, *ops: xp.einsum(spec, *ops)  # noqa: E731
    j1, j2, j3, j4 = (x[:, None, None, None, None] for x in (1 / s, 1 / s**2, 1 / s**3, 1 / s**4))
    # ∂̄_d of: s → s̄_d; s_c → s_{cd̄}; s_{ab̄} → conj(s21[d,b,a]); s21[c,a,b] → s22; s2[c,a] → s21[c,a,d];
    # s̄_b → conj(s2[d,b]); s_a → s_{ad̄}; s_{cb̄} → conj(s21[d,b,c])
    s21c = xp.conj(s21)  # [d, b, a] ↦ conj(s21[d, b, a])
    s2c = xp.conj(s2)
    # assemble in the layout [c, d, a, b]
    A = e5("mcadb->mcdab", s22) * j1 - e5("mcab,md->mcdab", s21, sb) * j2
    Bt = (-e5("mdba,mc->mcdab", s21c, sa) * j2 - e5("mab,mcd->mcdab", sab, sab) * j2
          + 2 * e5("mab,mc,md->mcdab", sab, sa, sb) * j3)
    C = (-e5("mcad,mb->mcdab", s21, sb) * j2 - e5("mca,mdb->mcdab", s2, s2c) * j2
         + 2 * e5("mca,mb,md->mcdab", s2, sb, sb) * j3)
    D = (-e5("mad,mcb->mcdab", sab, sab) * j2 - e5("ma,mdbc->mcdab", sa, s21c) * j2
         + 2 * e5("ma,mcb,md->mcdab", sa, sab, sb) * j3)
    E = (2 * (e5("mad,mb,mc->mcdab", sab, sb, sa) + e5("ma,mdb,mc->mcdab", sa, s2c, sa)
              + e5("ma,mb,mcd->mcdab", sa, sb, sab)) * j3
         - 6 * e5("ma,mb,mc,md->mcdab", sa, sb, sa, sb) * j4)
    return G, dG, A + Bt + C + D + E


def make_fs_curvature_closed_form(manifold, ts=None, *, chunk: int = 20000, backend: str = "jax"):
    r"""Compile once; returns ``f(ps) -> list over ts of dict`` (see :func:`fs_curvature_closed_form`).

    ``ts``: a list of Kähler classes (each (m,)); the per-factor terms are shared between them."""
    from ntkflow.manifolds import levi_civita

    m = manifold
    ts = [np.ones(m.n_factors)] if ts is None else [np.asarray(t, dtype=np.float64) for t in ts]
    for t in ts:
        if t.shape != (m.n_factors,) or np.any(t <= 0):
            raise ValueError(f"ts: each class needs {m.n_factors} positive entries, received {t.tolist()}.")
    dim = m.dim
    # c_dim = π^{-dim} Σ_{σ,τ,ρ ∈ S_dim} sgn σ sgn τ sgn ρ Π_k T[k, σ_k, τ_k, ρ_k] (the non-zero terms of the
    # ε ε ε contraction of ntkflow.manifolds.chern_einsum), as (dim!)³ gathered products
    perms = np.array(list(itertools.permutations(range(dim))))  # (P, dim)
    sgn = levi_civita(dim)[tuple(perms.T)]  # (P,)
    pi_, pj, pl = (x.ravel() for x in np.meshgrid(*(np.arange(len(perms)),) * 3, indexing="ij"))
    coef = sgn[pi_] * sgn[pj] * sgn[pl]  # (P³,)
    bi, ci, di = perms[pi_], perms[pj], perms[pl]  # (P³, dim)
    blocks = [np.asarray(b) for b in m.blocks]

    def kernel(xp, z, Z1, Z2):
        terms = [_factor_terms(xp, z[:, b], Z1[:, :, b], Z2[:, :, :, b]) for b in blocks]
        outs = []
        for t in ts:
            G = sum(tr / np.pi * g1 for tr, (g1, _, _) in zip(t, terms))
            dG = sum(tr / np.pi * d1 for tr, (_, d1, _) in zip(t, terms))
            ddG = sum(tr / np.pi * dd1 for tr, (_, _, dd1) in zip(t, terms))
            Gi = xp.linalg.inv(G)  # (M, dim, dim)
            dGbar = xp.conj(xp.swapaxes(dG, -1, -2))  # [d, a, b] = ∂̄_d G_ab = conj(∂_d G_ba)
            th = xp.einsum("mcab,mbe->mcae", dG, Gi)  # θ_c
            T = (-xp.einsum("mcdab,mbe->mcdae", ddG, Gi)
                 + xp.einsum("mcab,mdbe->mcdae", th, xp.einsum("mdab,mbe->mdae", dGbar, Gi)))  # [c, d, a, b]
            T = xp.transpose(T, (0, 3, 4, 1, 2))  # [a, b, c, d]
            prod = 1.0
            for k in range(dim):
                prod = prod * T[:, k, bi[:, k], ci[:, k], di[:, k]]  # (M, P³)
            c = (prod @ coef).real / np.pi**dim
            ric = xp.einsum("maacd->mcd", T)
            outs.append((xp.linalg.det(G).real, c, -xp.einsum("mab,mba->m", Gi, ric).real))
        return outs

    if backend == "jax":
        import jax
        import jax.numpy as jnp

        fn = jax.jit(lambda z, Z1, Z2: kernel(jnp, z, Z1, Z2))
    elif backend == "numpy":
        fn = lambda z, Z1, Z2: kernel(np, z, Z1, Z2)  # noqa: E731
    else:
        raise ValueError(f"backend: expected 'jax' or 'numpy', received {backend!r}.")

    def run(ps):
        if ps.manifold is not m and ps.manifold.spec()["cicy_coefficients"].tolist() != m.spec()["cicy_coefficients"].tolist():
            raise ValueError(f"ps: points of {ps.manifold.name} do not match {m.name}.")
        out = [{"det_g": [], "chern_top": [], "ricci_scalar": []} for _ in ts]
        for lo in range(0, len(ps), chunk):
            sub = ps[lo: lo + chunk]
            Z1, Z2 = embedding_derivatives(sub)
            for o, res in zip(out, fn(sub.points, Z1, Z2)):
                for key, val in zip(("det_g", "chern_top", "ricci_scalar"), res):
                    o[key].append(np.asarray(val))
        return [{k: np.concatenate(v) for k, v in o.items()} for o in out]

    return run


def fs_curvature_closed_form(ps, t=None, *, chunk: int = 20000, backend: str = "jax") -> dict:
    r"""Curvature of g_t = Σ_r (t_r/π) ∂∂̄ log|z^{(r)}|² pulled back to X, in closed form (no autodiff).

    With G = g_{ab̄}, θ_c = ∂_cG G^{-1}: T[a, b, c, d] = −(∂̄_d∂_cG G^{-1})_{ab} + (∂_cG G^{-1} ∂̄_dG G^{-1})_{ab}
    (the convention of ``ntkflow.manifolds.curvature``), c_dim = π^{-dim} Σ ε ε ε Π_k T[k, b_k, c_k, d_k].
    Returns ``det_g`` (M,), ``chern_top`` (M,) (coefficient of d^{2dim}x in each point's chart),
    ``ricci_scalar`` (M,) R = −tr(G^{-1} Ric), Ric_{cd̄} = Σ_a T[a, a, c, d]. ``backend``: "jax" (the same
    formulas jitted; compiles per call — reuse :func:`make_fs_curvature_closed_form`) or "numpy"."""
    return make_fs_curvature_closed_form(ps.manifold, None if t is None else [t], chunk=chunk, backend=backend)(ps)[0]


# ---- checks ------------------------------------------------------------------------------------------


def _leibniz_mixed(g, alpha) -> np.ndarray:
    """D_α (M,) by the Leibniz expansion: Σ over assignments of the rows to factors with counts α of det(mixed)."""
    M, m, dim, _ = g.shape
    out = np.zeros(M)
    for rows in itertools.product(range(m), repeat=dim):
        if tuple(rows.count(r) for r in range(m)) == tuple(alpha):
            out += np.linalg.det(np.stack([g[:, rows[i], i, :] for i in range(dim)], axis=1)).real
    return out


def _second_chart(ps):
    """The points of ``ps`` in another chart: the second-best eliminated coordinates (largest |det ∂Q/∂z_E| but
    one, no patch coordinate), so another Ω and Jacobian for the independent weight recomputations."""
    from ntkflow.manifolds.cicy import cicy_pointset_from_points

    m = ps.manifold
    K, N = m.n_equations, m.n_coords
    combos = np.array(list(itertools.combinations(range(N), K)))  # (C, K)
    dq = m.dQ(ps.points)  # (M, K, N)
    minors = np.abs(np.linalg.det(np.moveaxis(dq[:, :, combos], 2, 1)))  # (M, C)
    is_patch = np.zeros((len(ps), N), dtype=bool)
    is_patch[np.arange(len(ps))[:, None], ps.patch] = True
    minors[np.any(is_patch[:, combos], axis=2)] = -1.0
    elim2 = combos[np.argsort(minors, axis=1)[:, -2]]
    return cicy_pointset_from_points(m, ps.points, weights=ps.weights, patch=ps.patch, elim=elim2)


def weights_recomputed(ps) -> np.ndarray:
    """The sampler's weights (Σ_c d_c)|Ω|²/Σ_c (c!/dim!) D_c recomputed independently: in another chart (the
    second-best eliminated coordinates, so another Ω and Jacobian) with D_c by the Leibniz expansion."""
    from ntkflow.manifolds.cicy import cicy_fs_factor_pullbacks, intersection_numbers

    m = ps.manifold
    other = _second_chart(ps)
    g = cicy_fs_factor_pullbacks(m, other.points, other.jacobian)  # (M, m, dim, dim)
    d = intersection_numbers(m.ambient, m.configuration)
    splits = [c for c in d if d[c] > 0]
    rho = sum(math.prod(math.factorial(x) for x in c) / math.factorial(m.dim) * _leibniz_mixed(g, c) for c in splits)
    return sum(d[c] for c in splits) * other.omega_sq / rho


def mixture_weights_recomputed(ps, components, fractions) -> np.ndarray:
    """The importance-sampling weights (Σ_c d_c)|Ω|²/Σ_j f_j ρ_{h_j} recomputed independently: in another chart
    (second-best eliminated coordinates: another Ω and Jacobian) with the per-component reference density
    ``cicy_sampling_density`` (the sampler's weights use the vectorised closed-form kernel)."""
    from ntkflow.manifolds.cicy import cicy_sampling_density, intersection_numbers

    m = ps.manifold
    other = _second_chart(ps)
    rho = sum(f * cicy_sampling_density(m, other.points, other.jacobian, c) for f, c in zip(fractions, components))
    d = intersection_numbers(m.ambient, m.configuration)
    return sum(v for v in d.values() if v > 0) * other.omega_sq / rho


def importance_centres(m, pilot_points, pilot_values, n_centres: int, previous=None, min_angle: float = 0.25) -> np.ndarray:
    """Up to ``n_centres`` pilot points (k, N) with the largest |value| (the weighted χ integrand: where the
    current proposal is most deficient), greedy, each at FS angle > ``min_angle`` (in some factor) from the
    others and from the ``previous`` centres (k', N)."""
    def unit(z):
        return np.concatenate([z[:, b] / np.linalg.norm(z[:, b], axis=1, keepdims=True) for b in m.blocks], axis=1)

    u = unit(pilot_points)
    taken = [] if previous is None or len(previous) == 0 else list(unit(np.asarray(previous)))
    chosen = []
    for i in np.argsort(-np.abs(pilot_values)):
        if len(chosen) == n_centres:
            break
        if taken:
            T = np.array(taken)
            ang = np.zeros(len(T))
            for b in m.blocks:
                ang = np.maximum(ang, np.arccos(np.minimum(np.abs(T[:, b] @ np.conj(u[i, b])), 1.0)))
            if ang.min() <= min_angle:
                continue
        chosen.append(int(i))
        taken.append(u[i])
    return np.asarray(pilot_points)[chosen]


def importance_components(m, centres, lam: float) -> list:
    """Mixture components for χ: the standard sampler (None) and, at each centre p, the deformed sampler with
    ``crofton_frame_map(p_r, lam)`` in every factor r (concentrated near p at the scale 1/√(1+lam))."""
    from ntkflow.manifolds.cicy import crofton_frame_map

    return [None] + [[crofton_frame_map(p[b], lam) for b in m.blocks] for p in centres]


def _hill(x) -> dict:
    """Hill estimates α of the tail P(|x| > u) ~ u^{-α} from the top 0.1 % and 1 % of |x| (α ≤ 2: infinite
    variance at the scales sampled, so the batch-means standard error is not a reliable error bar)."""
    a = np.sort(np.abs(np.asarray(x)))[::-1]
    out = {}
    for frac in (0.001, 0.01):
        k = max(int(frac * len(a)), 10)
        if k < len(a):
            out[f"top_{frac:g}"] = float(1.0 / np.mean(np.log(a[:k] / a[k])))
    return out


def _batch_sigma(eta, w, n_batches: int = 50) -> tuple[float, float]:
    from ntkflow.manifolds import sigma_weighted

    size = len(eta) // n_batches
    per = [sigma_weighted(eta[i * size:(i + 1) * size], w[i * size:(i + 1) * size]) for i in range(n_batches)]
    return sigma_weighted(eta, w), float(np.std(per, ddof=1) / math.sqrt(n_batches))


# ---- driver ------------------------------------------------------------------------------------------


def _past(stop_at) -> bool:
    """True once the UTC wall clock has passed ``stop_at`` ("HH:MM", today; None: never)."""
    if not stop_at:
        return False
    hh, mm = (int(x) for x in stop_at.split(":"))
    now = time.gmtime()
    return (now.tm_hour, now.tm_min) >= (hh, mm)


def parse_preset(text: str):
    """'bicubic' | 'bicubic:psi=0.5' | 'p5-33:seed=0' → (name, kwargs, label)."""
    name, _, rest = text.partition(":")
    kw = {}
    if rest:
        key, _, val = rest.partition("=")
        if key not in ("psi", "seed") or not val:
            raise SystemExit(f"--preset: expected NAME, NAME:psi=VALUE or NAME:seed=INT, received {text!r}")
        kw[key] = int(val) if key == "seed" else float(val)
    label = name + "".join(f"_{k}{v}" for k, v in kw.items())
    return name, kw, label


def run_preset(spec: str, args) -> dict:
    from ntkflow.manifolds import mean_stderr
    from ntkflow.manifolds.cicy_chern import (chern_control_variates, default_weights, fit_control_coefficients,
                                              residual_estimate)
    from ntkflow.manifolds.cicy import (CICY_EULER_CHARACTERISTIC, cicy_fs_det, cicy_preset,
                                        euler_characteristic_topological, sample_cicy, sample_cicy_mixture)

    name, kw, label = parse_preset(spec)
    m = cicy_preset(name, **kw)
    truth = euler_characteristic_topological(m.ambient, m.configuration)
    assert truth == CICY_EULER_CHARACTERISTIC[name]
    ts = [tuple(float(x) for x in t.split(",")) for t in (args.t or [])]
    ts = [t for t in ts if len(t) == m.n_factors]
    ts = [tuple([1.0] * m.n_factors)] + [t for t in ts if t != tuple([1.0] * m.n_factors)]
    curv = make_fs_curvature_closed_form(m, ts, chunk=args.curv_chunk, backend=args.backend)
    comps, importance, fractions, cids = None, None, None, []
    if args.importance:
        t0 = time.perf_counter()
        # pilots (seeds 10^6 + seed + round; never used in the estimate): round 0 standard points, later rounds
        # the current mixture; each adds centres where |weighted integrand| is largest
        centres, rounds = np.zeros((0, m.n_coords), dtype=np.complex128), []
        for rnd in range(args.is_rounds):
            comps = importance_components(m, centres, args.is_lambda)
            if rnd == 0:
                pilot = sample_cicy(m, args.importance, seed=10**6 + args.seed, progress=False)
            else:
                nh = int(args.importance * (1 - args.is_defensive) / (len(comps) - 1))
                pilot, _ = sample_cicy_mixture(m, [args.importance - nh * (len(comps) - 1)] + [nh] * (len(comps) - 1),
                                               comps, seed=10**6 + args.seed + rnd)
            xp = pilot.weights / pilot.omega_sq / math.factorial(m.dim) * curv(pilot)[0]["chern_top"]
            new = importance_centres(m, pilot.points, xp, args.is_centres, previous=centres)
            centres = np.concatenate([centres, new])
            rounds.append({"n": len(pilot), "components": len(comps), "euler": float(xp.mean()),
                           "stderr_iid": float(xp.std(ddof=1) / math.sqrt(len(xp))), "tail_index_hill": _hill(xp),
                           "new_centres": len(new), "seconds": time.perf_counter() - t0})
            print(f"  {label}: pilot round {rnd}: {len(pilot)} points, {len(comps)} components, χ = {xp.mean():.2f} "
                  f"± {rounds[-1]['stderr_iid']:.2f} (iid), Hill {_hill(xp)}, +{len(new)} centres "
                  f"({rounds[-1]['seconds']:.0f} s)", flush=True)
        comps = importance_components(m, centres, args.is_lambda)
        importance = {"pilot_n": args.importance, "pilot_seed": 10**6 + args.seed, "centres": len(centres),
                      "lambda": args.is_lambda, "defensive_fraction": args.is_defensive, "pilot_rounds": rounds,
                      "seconds_pilot": time.perf_counter() - t0}
    cv = None
    if args.control_variates:
        if comps is not None:
            raise SystemExit("--control-variates: use it without --importance (the pilot fit assumes the standard sampler).")
        t0 = time.perf_counter()
        pilot = sample_cicy(m, args.cv_pilot, seed=2 * 10**6 + args.seed, progress=False)
        ctl = chern_control_variates(pilot)
        fac_p = pilot.weights / pilot.omega_sq / math.factorial(m.dim)
        cv = {"exact": ctl.exact, "names": ctl.names, "sum": 0.0, "sumsq": 0.0, "resid": {t: [] for t in ts},
              "beta": {t: fit_control_coefficients(fac_p * cf["chern_top"], ctl.values, ctl.exact)
                       for t, cf in zip(ts, curv(pilot))},
              "pilot": {"n": args.cv_pilot, "seed": 2 * 10**6 + args.seed, "seconds": time.perf_counter() - t0},
              "seconds": 0.0}
        print(f"  {label}: control-variate pilot {args.cv_pilot} points, {len(ctl.names)} controls "
              f"({cv['pilot']['seconds']:.0f} s)", flush=True)
    chi_int = {t: [] for t in ts}
    vol_int = {t: [] for t in ts}
    eta1, w_all = [], []
    residual, rejected, done, chunks = 0.0, 0, 0, []
    t_sample = t_curv = 0.0
    t_start = time.perf_counter()
    weight_check = None
    i = 0

    def summary(final: bool) -> dict:
        e1, wa = np.concatenate(eta1), np.concatenate(w_all)
        sig, sig_se = _batch_sigma(e1, wa)
        res = {"preset": spec, "label": label, "manifold": repr(m), "euler_topological": truth, "n_points": done,
               "seeds": list(range(args.seed, args.seed + i)), "residual_max": residual, "rejected_subspaces": rejected,
               "weight_check": weight_check, "sigma_fs": sig, "sigma_fs_stderr": sig_se, "by_t": [], "convergence": chunks}
        for t in ts:
            x = np.concatenate(chi_int[t])
            mu, se = mean_stderr(x)
            vol, vol_se = mean_stderr(np.concatenate(vol_int[t]))
            entry = {"t": list(t), "euler": mu, "euler_stderr": se, "euler_stderr_iid": float(x.std(ddof=1) / math.sqrt(len(x))),
                     "relative_error": (mu - truth) / abs(truth), "relative_stderr": se / abs(truth),
                     "volume": vol, "volume_stderr": vol_se, "volume_exact": m.kahler_volume(t),
                     "tail_index_hill": _hill(x),
                     "batch_means_1000": [float(v) for v in x[: len(x) // 1000 * 1000].reshape(1000, -1).mean(axis=1)] if len(x) >= 1000 else None}
            if cids:  # stratified: Var = Σ_j f_j² Var_j / n_j (fixed allocation per chunk, same fractions)
                cid = np.concatenate(cids)
                var = sum((np.sum(cid == j) / len(x)) ** 2 * x[cid == j].var(ddof=1) / np.sum(cid == j)
                          for j in range(len(comps)) if np.sum(cid == j) > 1)
                entry["euler_stderr_stratified"] = float(math.sqrt(var))
            if cv is not None:
                e = residual_estimate(x, np.concatenate(cv["resid"][t]), cv["beta"][t], cv["pilot"]["n"])
                entry["control_variates"] = {
                    "euler": e.value, "euler_stderr": e.stderr, "relative_error": (e.value - truth) / abs(truth),
                    "relative_stderr": e.stderr / abs(truth), "variance_ratio": e.variance_ratio,
                    "tail_index_hill_residual": e.tail_index_hill, "max_relative_residual": e.max_relative_residual}
            if t != ts[0]:
                d, d_se = mean_stderr(x - np.concatenate(chi_int[ts[0]]))
                entry["difference_to_t1"], entry["difference_to_t1_stderr"] = d, d_se
            res["by_t"].append(entry)
        res["seconds"] = {"sample": t_sample, "curvature": t_curv, "total": time.perf_counter() - t_start,
                          "cpu": time.process_time() - cpu0}
        res["points_per_second_curvature"] = done * len(ts) / max(t_curv, 1e-9)

        if cv is not None:  # each control's plain Monte Carlo integral against its exact value (iid error: heavy tails)
            mean_c = cv["sum"] / done
            se_c = np.sqrt(np.maximum(cv["sumsq"] / done - mean_c ** 2, 0.0) / done)
            # controls that are constant on X (e.g. J³ with one factor) have a rounding-size error: left out of the z
            z = np.abs(mean_c) / np.where(se_c > 1e-9 * (1.0 + np.abs(cv["exact"])), se_c, np.inf)
            res["control_variates"] = {
                "n_controls": len(cv["names"]), "pilot": cv["pilot"], "seconds": cv["seconds"],
                "weights_lambda": [w.tolist() for w in default_weights(m)],
                "controls": [{"name": nm, "exact": float(ex), "monte_carlo": float(ex + mc), "stderr_iid": float(sc)}
                             for nm, ex, mc, sc in zip(cv["names"], cv["exact"], mean_c, se_c)],
                "max_abs_z_controls": float(z.max()) if len(z) else None}
        res["complete"] = final
        if importance is not None:
            res["importance"] = importance
        return res
    cpu0 = time.process_time()
    while done < args.n and time.process_time() - cpu0 < args.budget and not _past(args.stop_at):
        n_i = min(args.chunk, args.n - done)
        t0 = time.perf_counter()
        if comps is None:
            ps = sample_cicy(m, n_i, seed=args.seed + i, progress=False)
        else:  # fixed allocation: (1 − ε) n_i split evenly over the deformed components, the rest standard
            nh = int(n_i * (1 - args.is_defensive) / (len(comps) - 1))
            counts = [n_i - nh * (len(comps) - 1)] + [nh] * (len(comps) - 1)
            fractions = np.array(counts) / n_i
            ps, cid = sample_cicy_mixture(m, counts, comps, seed=args.seed + i)
            perm = np.random.default_rng(np.random.SeedSequence([args.seed, i])).permutation(len(ps))
            ps, cid = ps[perm], cid[perm]  # interleave the components: contiguous batches are exchangeable
            cids.append(cid)
        t_sample += time.perf_counter() - t0
        rejected += ps.rejected_subspaces
        residual = max(residual, float(np.max(np.abs(m.Q(ps.points)) / m.term_scale(ps.points))))
        if weight_check is None:
            nc = min(args.n_check, len(ps))
            w2 = weights_recomputed(ps[:nc]) if comps is None else mixture_weights_recomputed(ps[:nc], comps, fractions)
            weight_check = {"n": nc, "max_relative_difference": float(np.max(np.abs(w2 / ps.weights[:nc] - 1)))}
        t0 = time.perf_counter()
        fac = ps.weights / ps.omega_sq / math.factorial(m.dim)
        for t, cf in zip(ts, curv(ps)):
            chi_int[t].append(fac * cf["chern_top"])
            vol_int[t].append(ps.weights * cf["det_g"] / ps.omega_sq)
            if t == ts[0]:
                eta1.append(cf["det_g"] / ps.omega_sq)
                w_all.append(np.asarray(ps.weights))
        t_curv += time.perf_counter() - t0
        if cv is not None:
            t0 = time.perf_counter()
            Yc = chern_control_variates(ps).values - cv["exact"]  # (M, p)
            cv["sum"] = cv["sum"] + Yc.sum(axis=0)
            cv["sumsq"] = cv["sumsq"] + (Yc ** 2).sum(axis=0)
            for t in ts:
                cv["resid"][t].append(chi_int[t][-1] - Yc @ cv["beta"][t])
            cv["seconds"] += time.perf_counter() - t0
        done += len(ps)
        i += 1
        x = np.concatenate(chi_int[ts[0]])
        mu, se = mean_stderr(x)
        chunks.append({"n": done, "euler": mu, "euler_stderr": se, "seconds": time.perf_counter() - t_start})
        extra = ""
        if cv is not None:
            mu_cv, se_cv = mean_stderr(np.concatenate(cv["resid"][ts[0]]))
            chunks[-1].update({"euler_cv": mu_cv, "euler_cv_stderr": se_cv})
            extra = f"  control variates: {mu_cv:9.4f} ± {se_cv:.4f}"
        print(f"  {label}: {done:>9} points  χ = {mu:9.3f} ± {se:.3f}{extra}  ({time.perf_counter() - t_start:7.1f} s)", flush=True)
        if args.out:  # partial results survive an interrupted run ("complete": false)
            part = summary(False)
            part.update({"command": args.command, "machine": machine()})
            (Path(args.out) / f"cicy_euler_{label}.json").write_text(json.dumps(part, indent=1))
    return summary(True)


def plot(out: Path, results: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for k, r in enumerate(results):
        for j, e in enumerate(r["by_t"]):
            a1.errorbar(k + 0.15 * j, 100 * e["relative_error"], yerr=200 * e["relative_stderr"], fmt="o",
                        color=f"C{j}", label=f"t = {e['t']}" if k == 0 or j > 0 else None)
            if "control_variates" in e:
                c = e["control_variates"]
                a1.errorbar(k + 0.15 * j + 0.3, 100 * c["relative_error"], yerr=200 * c["relative_stderr"], fmt="s",
                            color="k", label="control variates" if k == 0 and j == 0 else None)
        conv = r["convergence"]
        line, = a2.loglog([c["n"] for c in conv], [c["euler_stderr"] / abs(r["euler_topological"]) * 100 for c in conv], "o-", label=r["label"])
        cvc = [c for c in conv if c.get("euler_cv_stderr", 0) > 0]  # 0: the residual is rounding (one projective space)
        if cvc:
            a2.loglog([c["n"] for c in cvc], [c["euler_cv_stderr"] / abs(r["euler_topological"]) * 100 for c in cvc], "s--",
                      color=line.get_color(), ms=3)
    a1.axhspan(-1, 1, color="0.9")
    a1.axhline(0, color="k", lw=0.8)
    a1.set_xticks(range(len(results)), [r["label"] for r in results], rotation=30, ha="right")
    a1.set_ylabel("(χ_FS − χ)/|χ|  [%]  (bars: 2 s.e.)")
    a1.set_title("Euler characteristic of the FS metric (grey: ±1 %)")
    a1.legend(fontsize=7)
    a2.set_xlabel("points")
    a2.set_ylabel("standard error / |χ|  [%]")
    a2.set_title("batch-means standard error against n (dashed: control variates)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "cicy_euler.png", dpi=120)


def markdown_table(results: list) -> str:
    """One row per preset (t = 1): points, plain χ ± batch-means error, and — where the run used
    --control-variates — the control-variate χ ± error, the variance ratio and the residual's Hill index."""
    def fmt_n(n):
        e = int(math.floor(math.log10(n)))
        sup = str(e).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
        return f"{n / 10**e:.1f}·10{sup}" if n >= 1000 else str(n)

    rows = ["| preset | points | χ | plain χ_FS (batch means) | Hill α plain (top 0.1 %) | control-variate χ_FS | "
            "(χ_FS − χ)/\\|χ\\| | variance ratio | Hill α residual | controls | wall s (controls s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        e = r["by_t"][0]
        cv = e.get("control_variates")
        hill = e.get("tail_index_hill", {}).get("top_0.001")
        base = (f"| `{r['preset']}` | {fmt_n(r['n_points'])} | {r['euler_topological']} | {e['euler']:.2f} ± {e['euler_stderr']:.2f} | "
                + (f"{hill:.1f} |" if hill is not None else "— |"))
        if cv is None:
            rows.append(base + " — | — | — | — | — | — |")
            continue
        hr = "—" if cv["max_relative_residual"] < 1e-12 else f"{cv['tail_index_hill_residual']:.1f}"  # —: rounding
        rows.append(base + f" **{cv['euler']:.4f} ± {cv['euler_stderr']:.4f}** | {100 * cv['relative_error']:+.4f} % | "
                    f"{cv['variance_ratio']:.2g} | {hr} | {r['control_variates']['n_controls']} | "
                    f"{r['seconds']['total']:.0f} ({r['control_variates']['seconds']:.0f}) |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table-only", action="store_true",
                   help="only re-render OUT/cicy_euler.json, .md and .png from the per-preset JSON files already in --out")
    p.add_argument("--preset", action="append",
                   help="NAME, NAME:psi=VALUE or NAME:seed=INT (NAME: bicubic, tetraquadric, p5-33); repeatable")
    p.add_argument("--n", type=int, default=1_000_000, help="points per preset (default 1e6)")
    p.add_argument("--chunk", type=int, default=100_000, help="points sampled per chunk (seed --seed + chunk index)")
    p.add_argument("--curv-chunk", type=int, default=20_000, help="points per jitted curvature call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--t", action="append", help="extra Kähler class, comma separated (one entry per factor); repeatable")
    p.add_argument("--n-check", type=int, default=2000, help="points whose weights are recomputed independently")
    p.add_argument("--check-autodiff", type=int, default=200, help="points compared with the JAX autodiff curvature (0: skip)")
    p.add_argument("--budget", type=float, default=3600.0,
                   help="CPU seconds (all threads of this process) per preset at most; stops after the running chunk")
    p.add_argument("--stop-at", help="UTC HH:MM: stop sampling new chunks after this time (every preset)")
    p.add_argument("--importance", type=int, default=0, metavar="PILOT_N",
                   help="importance sampling: a pilot of PILOT_N standard points picks the centres of deformed "
                        "Crofton samplers (0: plain Monte Carlo, the default)")
    p.add_argument("--is-centres", type=int, default=200,
                   help="deformed components added per pilot round at most (pilot points with the largest |c_3/vol|)")
    p.add_argument("--is-rounds", type=int, default=1,
                   help="pilot rounds: round 0 standard points, each later one the current mixture (adds centres where it falls short)")
    p.add_argument("--is-lambda", type=float, default=30.0, help="concentration λ of the deformed components (scale 1/√(1+λ))")
    p.add_argument("--is-defensive", type=float, default=0.3, help="fraction of the points from the standard sampler")
    p.add_argument("--control-variates", action="store_true",
                   help="also estimate χ with control variates: the Chern forms of the normal-bundle Gram metrics "
                        "(ntkflow.manifolds.cicy_chern), whose integrals are intersection numbers; β from a pilot")
    p.add_argument("--cv-pilot", type=int, default=20000,
                   help="pilot points for the control-variate coefficients (seed 2·10⁶ + --seed; not in the estimate)")
    p.add_argument("--backend", choices=("jax", "numpy"), default="jax",
                   help="closed-form curvature backend (numpy: slower, immune to the XLA CPU hang)")
    p.add_argument("--out", default=os.path.join("bench", "results", "cicy_euler"))
    args = p.parse_args(argv)
    if not args.preset and not args.table_only:
        p.error("--preset is required (or --table-only)")
    if args.control_variates and args.cv_pilot < 1000:
        p.error(f"--cv-pilot: expected at least 1000 pilot points (several per control), received {args.cv_pilot}")
    if args.importance < 0 or (args.importance and (args.is_centres < 1 or args.is_rounds < 1 or not 0 < args.is_defensive < 1 or args.is_lambda <= 0)):
        raise SystemExit(f"--importance {args.importance}: needs --is-centres >= 1 (received {args.is_centres}), "
                         f"0 < --is-defensive < 1 (received {args.is_defensive}) and --is-lambda > 0 (received {args.is_lambda}).")

    import jax

    import ntkflow  # noqa: F401  (float64)
    from ntkflow.manifolds.cicy import cicy_preset, make_cicy_curvature_fn, sample_cicy

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "bench/bench_cicy_euler.py"] + list(argv if argv is not None else sys.argv[1:]))
    args.command = command
    for spec in ([] if args.table_only else args.preset):
        name, kw, label = parse_preset(spec)
        res = run_preset(spec, args)
        if args.check_autodiff and "seed" not in kw:  # the autodiff graph of dense random equations compiles for minutes
            ps = sample_cicy(cicy_preset(name, **kw), args.check_autodiff, seed=10**6 + args.seed)
            ad = make_cicy_curvature_fn(ps.manifold, batch=len(ps))(ps)
            cf = fs_curvature_closed_form(ps)
            res["autodiff_check"] = {"n": len(ps), "max_relative_difference_chern_top": float(
                np.max(np.abs(cf["chern_top"] - ad.chern_top)) / np.max(np.abs(ad.chern_top)))}
        res.update({"command": command, "machine": machine(), "peak_rss_gb": peak_rss_gb(),
                    "device": jax.devices()[0].platform, "jax": jax.__version__})
        (out / f"cicy_euler_{label}.json").write_text(json.dumps(res, indent=1))
        e = res["by_t"][0]
        print(f"{label}: n = {res['n_points']}  χ_FS = {e['euler']:.2f} ± {e['euler_stderr']:.2f} "
              f"(topological {res['euler_topological']}, {100 * e['relative_error']:+.2f} % ± {100 * e['relative_stderr']:.2f} %)  "
              f"σ_FS = {res['sigma_fs']:.4f} ± {res['sigma_fs_stderr']:.4f}", flush=True)
    results = [json.loads(f.read_text()) for f in sorted(out.glob("cicy_euler_*.json"))]
    summary = {"command": command, "results": [{k: r[k] for k in ("label", "command", "n_points", "euler_topological", "sigma_fs", "sigma_fs_stderr",
                                                                 "residual_max", "weight_check")} | {"by_t": [
        {k: v for k, v in e.items() if k != "batch_means_1000"} for e in r["by_t"]]} for r in results]}
    (out / "cicy_euler.json").write_text(json.dumps(summary, indent=1))
    (out / "cicy_euler.md").write_text(markdown_table(results))
    plot(out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
