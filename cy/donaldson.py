"""Donaldson's balanced metrics (the algebraic baseline), by the T-operator iteration.

K = (1/(kπ)) log(s†Gs) with s the degree-k monomials and G Hermitian positive.  The T-operator

    T(G)_{αβ} = (N_k / Vol_CY) ∫_X s_α s̄_β / (s^T G s̄) dμ_Ω ,       G_new = (T(G)^{-1})^T,

has the balanced metric as its fixed point (Donaldson 2005; Douglas–Karp–Lukic–Reinbacher,
hep-th/0612075).  With a symmetry group Γ the balanced G lies in the commutant of Γ, spanned by the
orthogonal matrices H^{(a)} of the invariant basis (:func:`ntkflow.cy.basis.invariant_basis`); T is
projected onto that span (exact for the true integral, a variance reduction for Monte Carlo), so only
⟨T, H^{(a)}⟩ = (N_k/Vol) ∫ (s^T H^{(a)} s̄)/(s^T G s̄) is integrated.  Without symmetry the full
N_k × N_k matrix is integrated.  The integral is over the *training* points; σ is reported on the
held-out points like every other method.
"""
from __future__ import annotations

import time

import numpy as np

from ntkflow.manifolds import monomials


__all__ = ["pair_values", "balanced_metric"]


def pair_values(b, z, *, chunk: int = 4096) -> np.ndarray:
    """(n, n_functions): s^T H^{(a)} s̄ at the points (no |z|^{2k} normalisation)."""
    n = z.shape[0]
    out = np.empty((n, b.n_functions))
    starts = b.starts
    for lo in range(0, n, chunk):
        zz = z[lo:lo + chunk]
        s = monomials(zz, b.exponents)  # (c, N_k)
        sv = s[:, b.alpha] * np.conj(s[:, b.beta]) * b.weight[None, :]
        out[lo:lo + chunk] = 2.0 * np.real(np.add.reduceat(sv, starts, axis=1))
    return out


def _frob_norms(b) -> np.ndarray:
    """‖H^{(a)}‖²_F from the half pairs (off-diagonal pairs count twice)."""
    w2 = np.abs(b.weight) ** 2 * np.where(b.alpha == b.beta, 4.0, 2.0)
    return np.add.reduceat(w2, b.starts)


def balanced_metric(b, points, weights, *, iterations: int = 12, callback=None):
    """T-operator iteration in the span of ``b`` (an invariant PairBasis containing the identity's
    orbit structure). Returns (coefficients g_a of G = Σ g_a H^{(a)}, history)."""
    nk = b.n_monomials
    vals = pair_values(b, points)  # (n, p)
    w = np.asarray(weights) / np.mean(weights)
    norms = _frob_norms(b)
    # start from G = identity (projected): coefficient of H^{(a)} = tr(H^{(a)}) / ‖H^{(a)}‖²
    diag = b.alpha == b.beta
    tr = np.add.reduceat(np.where(diag, 2.0 * np.real(b.weight), 0.0), b.starts)
    g = tr / norms
    sign = np.array([-1.0 if str(lab).startswith("im:") else 1.0 for lab in b.labels]) if b.labels else np.ones(b.n_functions)
    hist = []
    for it in range(iterations):
        t0 = time.perf_counter()
        f = vals @ g  # s^T G s̄ > 0
        if np.any(f <= 0):
            raise ValueError("balanced_metric: G lost positivity; use more integration points.")
        # ⟨T, H⟩_F integrates s^T conj(H) s̄: the value itself for real H, minus it for imaginary H
        t_coef = sign * nk * np.mean(w[:, None] * vals / f[:, None], axis=0) / norms
        tmat = b.hermitian(t_coef)
        # for k ≥ deg Q the monomials are dependent on X (multiples of Q vanish there), so T is
        # singular: invert it on its range (= the quotient by Q·(degree k − deg Q), i.e. H⁰(X, O(k)))
        gmat = np.linalg.pinv(tmat, rcond=1e-11, hermitian=True).T
        # project back: g_a = ⟨G, H^{(a)}⟩ / ‖H^{(a)}‖² (G is in the commutant already, up to round-off)
        ga = gmat[b.alpha, b.beta] * np.conj(b.weight)
        gnew = 2.0 * np.real(np.add.reduceat(ga, b.starts)) / norms
        change = float(np.linalg.norm(gnew / np.linalg.norm(gnew) - g / np.linalg.norm(g)))
        g = gnew
        rec = {"iteration": it + 1, "change": change, "seconds": time.perf_counter() - t0}
        hist.append(rec)
        if callback:
            callback(rec)
    return g, hist
