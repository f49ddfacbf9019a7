r"""Chern forms of normal-bundle Gram metrics on complete intersections: control variates for χ with exact integrals.

On a smooth CICY X = {Q_1 = … = Q_K = 0} ⊂ P^{n_1} × … × P^{n_m} the vectors (one per equation, weights λ ∈ R^m_{>0})

    v_j(z) = ⊕_r √λ_r z^(r) ⊗ ∂_(r) Q_j(z)        (multidegree D_j = column j of the configuration)

are holomorphic and linearly independent at every point of X (Σ_j c_j v_j = 0 ⟺ Σ_j c_j ∇Q_j = 0). So their Gram
matrix G_ij = ⟨v_i, v_j⟩ is a Hermitian metric on E = ⊕_j O(−D_j)|_X in the frame (v_j), and its Chern forms
c_k(E, G_λ) are closed forms in the classes of c(E) = Π_j (1 − D_j·J), for every λ. Every top-degree product of
the Kähler forms J_r = (i/2π)∂∂̄ log|z^(r)|², c_1(E, G_λ) and c_2(E, G_λ) therefore has an exactly known integral
over X (an intersection number), while pointwise it carries the second fundamental form of X: with
G⁻¹ the inverse Gram, T = −(∂∂̄G G⁻¹ − ∂G G⁻¹ ∂̄G G⁻¹)/π (a K × K matrix of (1,1)-forms; the convention of the
``G`` matrices of :mod:`ntkflow.manifolds.cicy`, in which det(Σ_r t_r g_r) is the density of J_t^dim),

    c_1 = Σ_i T_ii,     c_2 = Σ_{i<j} T_ii ∧ T_jj − T_ij ∧ T_ji.

(With λ_r = 1/t_r, πG is the Gram matrix of the differentials dQ_j in the metric dual to g_t: the quotient metric
of the normal bundle N ≅ ⊕_j O(D_j), of which E is the dual. c(N) = 1 − c_1(E) + c_2(E) − … .)

Why this matters: c_dim of the pulled-back FS metric is heavy-tailed on nearly singular members (c_3/vol ~
|∇Q|^{-6} where the gradient is small, docs/manifolds.md), and so are these forms, in the same places — by the
Gauss equation both are polynomials in the second fundamental form there. Measured (tests, docs/manifolds.md): on
a complete intersection in one P^n, c_dim(g_FS|X) = [(1 + ω)^{n+1}/c(N)]_dim *pointwise* with λ = 1 (to rounding,
on a random quintic and a random P⁵[3,3]: the adjunction formula holds at the level of these forms); on the
products (bicubic, tetraquadric) it fails by a ∂∂̄-exact form, and the 2m + 1 default weights leave a residual whose
variance is 10⁴–10⁷ times smaller but whose tail stays heavy (Hill index 1.4–2.1). The estimator

    χ ≈ mean(x − (Y − E[Y]) β),   x = w c_dim/(dim! |Ω|²),  Y = w · (top products)/|Ω|²,  E[Y] exact,

with β fitted by least squares on an independent pilot (so the estimate stays unbiased) is
:func:`control_variate_mean`; :func:`chern_control_variates` builds Y and E[Y].
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ntkflow._checks import finite_array
from ntkflow.manifolds.cicy import cohomology_ring_mul, cicy_fs_factor_pullbacks
from ntkflow.manifolds.cicy_jets import q_hessian
from ntkflow.manifolds.geometry import mean_stderr

__all__ = ["gram_curvature", "chern_control_variates", "fit_control_coefficients", "control_variate_mean",
           "residual_estimate", "ControlVariates", "ControlVariateEstimate", "default_weights"]


def default_weights(manifold) -> list:
    """λ = (1, …, 1) and, for products, λ = 3 and λ = 10 in one factor and 1 elsewhere (2m + 1 metrics). Measured on
    2·10⁴ random-member points (pilot as many): bicubic variance ratio 2e6 with the 3s alone, 6e7 with the 10s added;
    tetraquadric 9e3 and 4e4 (docs/manifolds.md). One factor: λ = 1 only (λ is then a scale, which drops out)."""
    m = manifold.n_factors
    lams = [np.ones(m)]
    if m > 1:
        lams += [np.where(np.arange(m) == r, v, 1.0) for v in (3.0, 10.0) for r in range(m)]
    return lams


def _check_lam(lam, m: int) -> np.ndarray:
    lam = np.asarray(lam, dtype=np.float64)
    if lam.shape != (m,) or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError(f"lams: each weight vector needs {m} positive finite entries (one per factor), "
                         f"received {np.asarray(lam).tolist()}.")
    return lam


def _gram_parts(manifold, points, jacobian) -> list:
    """Per factor r: (|z^(r)|², ∂_a|z^(r)|², ∂_a∂̄_b|z^(r)|², ⟨∂_rQ_k, ∂_rQ_l⟩, ⟨∂_a∂_rQ_k, ∂_rQ_l⟩,
    ⟨∂_a∂_rQ_k, ∂_b∂_rQ_l⟩) — the λ-independent pieces of G_λ and its derivatives (one Hessian evaluation)."""
    m = manifold
    z = np.asarray(points, dtype=np.complex128)
    Z1 = np.asarray(jacobian, dtype=np.complex128)
    P = m.dQ(z)  # (M, K, N)
    dP = np.einsum("mkij,maj->maki", q_hessian(m, z), Z1)  # ∂_a ∂_I Q_k  (M, dim, K, N)
    parts = []
    for b in m.blocks:
        b = np.asarray(b)
        zb, Zb, Pb, dPb = z[:, b], Z1[:, :, b], P[:, :, b], dP[:, :, :, b]
        parts.append((np.sum(zb.real ** 2 + zb.imag ** 2, axis=1),
                      np.einsum("mai,mi->ma", Zb, zb.conj()),
                      np.einsum("mai,mbi->mab", Zb, Zb.conj()),
                      np.einsum("mki,mli->mkl", Pb, Pb.conj()),
                      np.einsum("maki,mli->makl", dPb, Pb.conj()),
                      np.einsum("maki,mbli->mabkl", dPb, dPb.conj())))
    return parts


def _curvature_from_parts(parts, lam) -> np.ndarray:
    G = dG = ddG = 0.0
    for lr, (s, ds, dds, pp, dpp, ddpp) in zip(lam, parts):
        G = G + lr * s[:, None, None] * pp
        dG = dG + lr * (ds[:, :, None, None] * pp[:, None] + s[:, None, None, None] * dpp)  # ∂_a G
        ddG = ddG + lr * (dds[:, :, :, None, None] * pp[:, None, None]  # ∂_a∂̄_b G
                          + ds[:, :, None, None, None] * np.conj(np.swapaxes(dpp, -1, -2))[:, None, :]
                          + ds.conj()[:, None, :, None, None] * dpp[:, :, None]
                          + s[:, None, None, None, None] * ddpp)
    Gi = np.linalg.inv(G)
    dGbar = np.conj(np.swapaxes(dG, -1, -2))  # ∂̄_b G = (∂_b G)†
    T = -(np.einsum("mabkl,mlj->mabkj", ddG, Gi)
          - np.einsum("makl,mlp,mbpq,mqj->mabkj", dG, Gi, dGbar, Gi, optimize=True)) / np.pi
    return np.moveaxis(T, (3, 4), (1, 2))  # (M, K, K, dim, dim)


def gram_curvature(manifold, points, jacobian, lam=None) -> np.ndarray:
    r"""T (M, K, K, dim, dim) complex: the curvature of the Gram metric G_λ (module docstring) as (1,1)-form matrices,
    T_ij[a, b] = −(∂_a∂̄_b G G⁻¹ − ∂_a G G⁻¹ ∂̄_b G G⁻¹)_ij / π, at ``points`` (M, N) with chart Jacobian (M, dim, N).

    Only first derivatives of the holomorphic v_j along the chart enter (∂_a v = (∂v/∂z) ∂_a z), so the
    embedding's second derivatives are not needed."""
    lam = np.ones(manifold.n_factors) if lam is None else _check_lam(lam, manifold.n_factors)
    return _curvature_from_parts(_gram_parts(manifold, points, jacobian), lam)


def _adjugate_pair(B, C) -> np.ndarray:
    """Adj (M, 3, 3) with Σ_ad A_ad Adj_ad = 6 MD(A, B, C): Adj_ad = ε_abc ε_def B_be C_cf (dim 3)."""
    out = np.empty(B.shape, dtype=np.result_type(B, C))
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        for d in range(3):
            e, f = (d + 1) % 3, (d + 2) % 3
            out[:, a, d] = B[:, b, e] * C[:, c, f] - B[:, b, f] * C[:, c, e] + C[:, b, e] * B[:, c, f] - C[:, b, f] * B[:, c, e]
    return out


def _mixed(mats) -> np.ndarray:
    """MD(A_1, …, A_d) (M,) complex: the symmetric multilinear form with MD(A, …, A) = det A, i.e. the density of
    α_1 ∧ … ∧ α_d in the convention where det g is the density of ω^d. d = 3 by adjugates, else polarization."""
    d = len(mats)
    if d == 3:
        return np.einsum("mad,mad->m", mats[0], _adjugate_pair(mats[1], mats[2])) / 6
    out = 0.0
    for k in range(1, d + 1):
        for S in itertools.combinations(range(d), k):
            out = out + (-1) ** (d - k) * np.linalg.det(sum(mats[i] for i in S))
    return out / math.factorial(d)


@dataclass(frozen=True)
class ControlVariates:
    """Y (M, p): w·(density of each top-degree product)/|Ω|² (so mean(Y) → ∫_X of the product); exact (p,): the
    integrals from the intersection numbers; names (p,): the products, e.g. ``J0.J1.c1[1,3]``."""

    values: np.ndarray
    exact: np.ndarray
    names: tuple


def chern_control_variates(ps, lams=None) -> ControlVariates:
    r"""All top-degree products of {J_r} ∪ {c_1(E, G_λ)} (∪ {c_2(E, G_λ)} for K ≥ 2) over the weights ``lams``
    (default :func:`default_weights`) at the points of ``ps`` (a CICYPointSet), with their exact integrals.

    Classes: J_r; c_1(E) = −Σ_j D_j·J; c_2(E) = Σ_{i<j} (D_i·J)(D_j·J); ∫_X J^α = d_α (``intersection_numbers``).
    dim 3 only for products with c_2 (the CICY threefolds); products of (1,1)-forms in any dimension."""
    m = ps.manifold
    dim = ps.dim
    lams = default_weights(m) if lams is None else [_check_lam(v, m.n_factors) for v in lams]
    M = len(ps)
    fac = np.asarray(ps.weights) / np.asarray(ps.omega_sq)
    g = cicy_fs_factor_pullbacks(m, ps.points, ps.jacobian)  # (M, m, dim, dim)
    D = np.asarray(m.configuration, dtype=np.float64)  # (m, K)
    K = D.shape[1]
    unit = lambda r: tuple(int(s == r) for s in range(m.n_factors))  # noqa: E731
    ones = [({unit(r): 1.0}, g[:, r], f"J{r}") for r in range(m.n_factors)]
    twos = []
    c1_class = {}
    for r in range(m.n_factors):
        if D[r].sum():
            c1_class[unit(r)] = -float(D[r].sum())
    c2_class = {}
    for i, j in itertools.combinations(range(K), 2):
        prod = cohomology_ring_mul({unit(r): D[r, i] for r in range(m.n_factors) if D[r, i]},
                                   {unit(r): D[r, j] for r in range(m.n_factors) if D[r, j]}, m.ambient)
        for k, v in prod.items():
            c2_class[k] = c2_class.get(k, 0.0) + v
    parts = _gram_parts(m, ps.points, ps.jacobian)
    for lam in lams:
        T = _curvature_from_parts(parts, lam)  # (M, K, K, dim, dim)
        tag = ",".join(f"{x:g}" for x in lam)
        ones.append((c1_class, sum(T[:, i, i] for i in range(K)), f"c1[{tag}]"))
        if K >= 2:
            pairs = [(T[:, i, i], T[:, j, j], T[:, i, j], T[:, j, i]) for i, j in itertools.combinations(range(K), 2)]
            twos.append((c2_class, pairs, f"c2[{tag}]"))
    d_alpha = m.intersection_numbers()

    def integral(poly):
        return float(sum(v * d_alpha.get(k, 0) for k, v in poly.items()))

    combos = list(itertools.combinations_with_replacement(range(len(ones)), dim))
    dens = np.empty((M, len(combos)))
    if dim == 3:  # one adjugate per pair (b, c), shared by the products a ≤ b ≤ c
        col = {cb: i for i, cb in enumerate(combos)}
        for b, c in itertools.combinations_with_replacement(range(len(ones)), 2):
            adj = _adjugate_pair(ones[b][1], ones[c][1])
            for a in range(b + 1):
                dens[:, col[(a, b, c)]] = (np.einsum("mad,mad->m", ones[a][1], adj) / 6).real
    else:
        for i, combo in enumerate(combos):
            dens[:, i] = _mixed([ones[c][1] for c in combo]).real
    vals = list((fac[:, None] * dens).T)
    exact, names = [], []
    for combo in combos:
        poly = {(0,) * m.n_factors: 1.0}
        for c in combo:
            poly = cohomology_ring_mul(poly, ones[c][0], m.ambient)
        exact.append(integral(poly))
        names.append(".".join(ones[c][2] for c in combo))
    if twos and dim != 3:
        raise NotImplementedError(f"ps: c_2 products are implemented for threefolds, received dim = {dim}.")
    for cls2, pairs, name2 in twos:
        for cls1, form, name1 in ones:
            d2 = sum(_mixed([a, b, form]) - _mixed([c, d, form]) for a, b, c, d in pairs)
            vals.append(fac * d2.real)
            exact.append(integral(cohomology_ring_mul(cls2, cls1, m.ambient)))
            names.append(f"{name2}.{name1}")
    return ControlVariates(np.stack(vals, axis=1) if vals else np.zeros((M, 0)), np.asarray(exact), tuple(names))


@dataclass(frozen=True)
class ControlVariateEstimate:
    """``value`` ± ``stderr`` (batch means of the residual x − (Y − exact)β on the estimation points); ``plain`` ±
    ``stderr_plain``: mean(x) on the same points; ``variance_ratio`` = var(x)/var(residual); ``beta`` (p,) fitted
    on the pilot; ``tail_index_hill``: Hill index of |residual − value| from its top 0.1 % (≥ 2: finite variance
    at the scales sampled, the error bar is trustworthy); ``max_relative_residual``: max|residual − value|/max|x|."""

    value: float
    stderr: float
    plain: float
    stderr_plain: float
    variance_ratio: float
    beta: np.ndarray
    tail_index_hill: float
    max_relative_residual: float
    n: int
    n_pilot: int


def fit_control_coefficients(x_pilot, Y_pilot, exact) -> np.ndarray:
    """β (p,) = argmin ‖x_p − x̄_p − (Y_p − Ȳ_p)β‖ on a pilot (columns standardised; those with zero pilot variance
    get β = 0, e.g. J_r^{n_r+1} ≡ 0 on X)."""
    xp = finite_array("x_pilot", x_pilot, ndim=1)
    Yp = finite_array("Y_pilot", Y_pilot, ndim=2)
    exact = finite_array("exact", exact, ndim=1)
    if Yp.shape != (len(xp), len(exact)):
        raise ValueError(f"Y_pilot: expected ({len(xp)}, {len(exact)}) (points × controls), received {Yp.shape}.")
    if len(xp) < 2 * len(exact):
        raise ValueError(f"x_pilot: need at least 2 × {len(exact)} pilot points for {len(exact)} controls, received {len(xp)}.")
    sd = np.std(Yp, axis=0)
    keep = sd > 1e-12 * (1.0 + np.abs(Yp).max(initial=0.0))
    beta = np.zeros(len(exact))
    if np.any(keep):
        A = (Yp[:, keep] - Yp[:, keep].mean(axis=0)) / sd[keep]
        sol, *_ = np.linalg.lstsq(A, xp - xp.mean(), rcond=1e-12)
        beta[keep] = sol / sd[keep]
    return beta


def control_variate_mean(x, Y, exact, *, beta=None, x_pilot=None, Y_pilot=None) -> ControlVariateEstimate:
    r"""E[x] ≈ mean(x − (Y − exact)β) with control variates Y of known means ``exact``; β given, or fitted on an
    independent pilot (:func:`fit_control_coefficients`) — either way independent of (x, Y), so the estimate is
    unbiased. The error bar is the batch-means standard error of the residual (:func:`mean_stderr`)."""
    x = finite_array("x", x, ndim=1)
    Y = finite_array("Y", Y, ndim=2)
    exact = finite_array("exact", exact, ndim=1)
    if Y.shape != (len(x), len(exact)):
        raise ValueError(f"Y: expected ({len(x)}, {len(exact)}) (points × controls), received {Y.shape}.")
    if (beta is None) == (x_pilot is None or Y_pilot is None):
        raise ValueError("beta, x_pilot, Y_pilot: pass either beta or both x_pilot and Y_pilot.")
    n_pilot = 0
    if beta is None:
        beta = fit_control_coefficients(x_pilot, Y_pilot, exact)
        n_pilot = len(x_pilot)
    beta = finite_array("beta", beta, ndim=1)
    return residual_estimate(x, x - (Y - exact) @ beta, beta, n_pilot)


def residual_estimate(x, r, beta, n_pilot: int) -> ControlVariateEstimate:
    """The :class:`ControlVariateEstimate` of residuals r = x − (Y − exact)β (computed chunk by chunk elsewhere)."""
    x = finite_array("x", x, ndim=1)
    r = finite_array("r", r, ndim=1)
    value, se = mean_stderr(r)
    plain, se_plain = mean_stderr(x)
    dev = np.sort(np.abs(r - value))[::-1]
    k = max(int(0.001 * len(dev)), 10)
    hill = float(1.0 / np.mean(np.log(dev[:k] / dev[k]))) if k < len(dev) and dev[k] > 0 else math.inf
    return ControlVariateEstimate(value, se, plain, se_plain, float(np.var(x) / max(np.var(r), 1e-300)),
                                  np.asarray(beta), hill, float(np.abs(r - value).max() / np.abs(x).max()), len(x), int(n_pilot))
