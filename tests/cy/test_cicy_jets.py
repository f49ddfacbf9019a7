"""Curvature of CICY models from 2-jets (ntkflow.manifolds.cicy_jets, ``CICYSectionModel.curvature``) against the
independent reference: JAX autodiff of the model's potential to 4th order through the implicit embedding
(``ntkflow.manifolds.cicy.cicy_curvature``). Both links, a dense and a sparse H, one and two factors."""
from __future__ import annotations

import numpy as np
import pytest

import ntkflow  # noqa: F401  (float64)
from ntkflow.cy.algebra import Factors
from ntkflow.cy.basis import detect_symmetry_products, invariant_basis
from ntkflow.cy.job import evaluate_cicy_model
from ntkflow.cy.model import CICYSectionModel
from ntkflow.manifolds.cicy import cicy_curvature, cicy_preset, sample_cicy
from ntkflow.manifolds.cicy_jets import section_jets, taylor_vectors


def _close(a, r, tol):
    for name in ("g", "det_g", "ricci", "ricci_scalar", "chern_top"):
        x, y = getattr(a, name), getattr(r, name)
        assert np.abs(x - y).max() <= tol * np.abs(y).max(), name


def test_log_link_dense_h_equals_autodiff_on_the_bicubic():
    """K = log(sᵀHs̄)/(kπ) with a random positive definite H over the (2, 2) sections of the bicubic."""
    m = cicy_preset("bicubic")
    f = Factors((3, 3), (2, 2))
    n = len(f.exponents())
    a = np.random.default_rng(0).standard_normal((n, n, 2)) @ [1, 1j]
    model = CICYSectionModel(manifold=m, factors=f, k=2, H=a @ a.conj().T / n + np.eye(n), link="log")
    assert model._sparse is None
    ps = sample_cicy(m, 5, seed=1)
    _close(model.curvature(ps, chunk=3), cicy_curvature(ps, model.potential_jax(), batch=5), 1e-11)


def test_identity_link_sparse_h_equals_autodiff_on_p5_33():
    """K = (1/π)[log|z|² + Σ c_a f_a/|z|^{2k}] with the invariant basis of the Fermat-type P⁵[3,3] at k = 4 (sparse H)."""
    m = cicy_preset("p5-33")
    f = Factors((6,), (4,))
    b = invariant_basis(f.n_coords, 4, detect_symmetry_products(m.polynomials, f.sizes), exponents=f.exponents())
    c = 0.05 * np.random.default_rng(2).standard_normal(b.n_functions)
    model = CICYSectionModel(manifold=m, factors=f, k=4, H=b.hermitian(c), link="identity")
    assert model._sparse is not None
    ps = sample_cicy(m, 6, seed=3)
    cj = model.curvature(ps)
    _close(cj, cicy_curvature(ps, model.potential_jax(), batch=6), 1e-11)
    # and the job's evaluation uses it: the jets' det g equals the closed-form metric's
    ev = evaluate_cicy_model(model, ps, n_curvature=6)
    assert ev["det_consistency"] < 1e-12 and np.isfinite(ev["ricci_measure"])


def test_taylor_vectors_reproduce_a_polynomial_along_the_chart():
    """The jets of s(z(x)) give s(z(x + h)) to O(|h|³) on X: the error falls 8× when h halves (the eliminated
    coordinates follow X by Newton's method, an independent route to z(x + h))."""
    m = cicy_preset("bicubic")
    ps = sample_cicy(m, 1, seed=7)
    from ntkflow.manifolds.cicy_jets import embedding_derivatives

    Z1, Z2 = embedding_derivatives(ps)
    e = Factors((3, 3), (1, 1)).exponents()
    C = taylor_vectors(*section_jets(ps.points, Z1, Z2, e))[0]  # (P, L)
    kept = np.setdiff1d(np.arange(m.n_coords), np.concatenate([ps.patch[0], ps.elim[0]]))
    errs = []
    for step in (1e-2, 5e-3):
        h = step * np.array([1.0, 0.5 - 0.3j, -0.7j])
        z = ps.points[0].copy()
        z[kept] = z[kept] + Z1[0][:, kept].T @ h  # x + h on the free coordinates (Z1 is the identity there)
        for _ in range(30):  # Newton on the eliminated coordinate: Q(z) = 0
            q, dq = m.Q_and_dQ(z[None])
            z[ps.elim[0]] -= np.linalg.solve(dq[0][:, ps.elim[0]], q[0])
        mono = np.array([1.0, *h, *[h[a] * h[c] for a in range(3) for c in range(a, 3)]])
        exact = np.prod(z[None, :] ** e, axis=1)
        errs.append(np.abs(mono @ C - exact).max())
    assert 6 < errs[0] / errs[1] < 10
