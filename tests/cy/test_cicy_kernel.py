"""The frozen-kernel Monge–Ampère problem on complete intersections (multi-degree sections, per-factor shift).

References: JAX autodiff (Wirtinger derivatives of s_α Π|z^(a)|^{-2k_a}; the metric of the same potential by
``cicy_metric_jax`` through the implicit embedding), the FS pullback of class t (``cicy_fs_pullback``), and
dim H⁰(X, O(k)) = dim H⁰(A, O(k)) − dim H⁰(A, O(k − q)) for k < 2q (Koszul)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkflow.cy import algebra
from ntkflow.cy.algebra import Factors
from ntkflow.cy.matrixfree import PrimalProblem, section_features
from ntkflow.manifolds import monomials
from ntkflow.manifolds.cicy import cicy_fs_pullback, cicy_metric_jax, cicy_preset, sample_cicy


@pytest.fixture(scope="module")
def bicubic_points():
    return sample_cicy(cicy_preset("bicubic"), 40, seed=3)


@pytest.fixture(scope="module")
def tetra_points():
    return sample_cicy(cicy_preset("tetraquadric", seed=1), 30, seed=5)


def _factors(ps, degrees):
    return Factors(tuple(n + 1 for n in ps.manifold.ambient), tuple(degrees))


def _random_hermitian(n, seed, scale):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    return scale * (a + a.conj().T) / 2


def test_factors_validation_and_one_factor_case():
    with pytest.raises(ValueError, match="degrees"):
        Factors((3, 3), (1,))
    with pytest.raises(ValueError, match="sizes"):
        Factors((1, 3), (1, 1))
    f = Factors((3, 3), (2, 1))
    e = f.exponents()
    assert e.shape == (math.comb(4, 2) * 3, 6)
    assert np.all(e[:, :3].sum(1) == 2) and np.all(e[:, 3:].sum(1) == 1)
    assert len({tuple(r) for r in e.tolist()}) == len(e)
    from ntkflow.manifolds import monomial_exponents
    assert np.array_equal(Factors.one(5, 3).exponents(), monomial_exponents(5, 3))
    with pytest.raises(ValueError, match="degrees"):
        algebra.section_features(np.ones((2, 6), complex), np.ones((2, 2, 6), complex), Factors((3, 3), (1, 1)).exponents(),
                                 factors=f)


@pytest.mark.parametrize("which,degrees", [("bicubic", (2, 1)), ("tetra", (1, 2, 1, 1))])
def test_features_equal_autodiff_of_the_sections_over_factor_norms(bicubic_points, tetra_points, which, degrees):
    ps = bicubic_points if which == "bicubic" else tetra_points
    f = _factors(ps, degrees)
    exps = f.exponents()
    blocks = f.blocks

    def u(zr, zi):  # s_α Π_a |z^(a)|^{-2k_a}, (N_k,) complex
        z = zr + 1j * zi
        out = monomials(z, exps, xp=jnp)
        for b, k in zip(blocks, degrees):
            out = out * jnp.sum(jnp.abs(z[b]) ** 2) ** (-k)
        return out

    s, x = section_features(ps.points, ps.jacobian, exps, factors=f)  # (n, N_k), (n, d, N_k)
    z = ps.points
    jr, ji = jax.jit(jax.vmap(jax.jacfwd(u, argnums=(0, 1))))(jnp.asarray(z.real), jnp.asarray(z.imag))  # (n, N_k, N)
    wirt = 0.5 * (np.asarray(jr) - 1j * np.asarray(ji))  # ∂/∂z_I
    scale = np.prod([np.sum(np.abs(z[:, b]) ** 2, axis=1) ** k for b, k in zip(blocks, degrees)], axis=0)  # (n,)
    ref = np.einsum("ndi,nai->nda", ps.jacobian, wirt * scale[:, None, None])  # (n, d, N_k) = P (∇s − s ∇ψ)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)))
    np.testing.assert_allclose(s, np.asarray(monomials(z, exps)), rtol=1e-13)


def test_features_scale_covariantly_under_per_factor_rescaling(bicubic_points):
    ps = bicubic_points
    f = _factors(ps, (2, 3))
    exps = f.exponents()
    lam = np.array([0.7 + 0.4j, -1.3 + 0.2j])
    col = np.concatenate([np.full(3, lam[0]), np.full(3, lam[1])])  # z^(a) → λ_a z^(a)
    c = lam[0] ** 2 * lam[1] ** 3
    s0, x0 = section_features(ps.points, ps.jacobian, exps, factors=f)
    s1, x1 = section_features(ps.points * col, ps.jacobian * col, exps, factors=f)  # P' = ∂(Λz)/∂x
    np.testing.assert_allclose(s1, c * s0, rtol=1e-12)
    np.testing.assert_allclose(x1, c * x0, rtol=0, atol=1e-12 * np.max(np.abs(x1)))
    # so the (k,k) functions and the metric of any H are invariant
    H = _random_hermitian(len(exps), 0, 0.01)
    for link in ("identity", "log"):
        HH = H if link == "identity" else np.eye(len(exps)) + H
        g0 = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 3, whiten=False, link=link,
                           factors=f).metric(HH)
        g1 = PrimalProblem(ps.points * col, ps.jacobian * col, ps.weights, np.log(ps.omega_sq), 3, whiten=False,
                           link=link, factors=f).metric(HH)
        np.testing.assert_allclose(g1, g0, rtol=0, atol=1e-11 * np.max(np.abs(g0)))


@pytest.mark.parametrize("link", ["identity", "log"])
# the tetraquadric's features are checked above; its autodiff metric compiles for ~1 min, so the metric is
# checked on the bicubic (unequal degrees, k = 1 and 2) and, in test_cicy_job, on P⁵[3,3]
@pytest.mark.parametrize("which,degrees,k", [("bicubic", (1, 2), 1), ("bicubic", (2, 1), 2)])
def test_metric_of_a_random_hermitian_equals_autodiff(bicubic_points, tetra_points, link, which, degrees, k):
    ps = bicubic_points if which == "bicubic" else tetra_points
    f = _factors(ps, degrees)
    exps = f.exponents()
    nk = len(exps)
    H = _random_hermitian(nk, 7, 0.05)
    if link == "log":  # positive definite, far from diagonal
        B = np.random.default_rng(8).standard_normal((nk, nk)) + 1j * np.random.default_rng(9).standard_normal((nk, nk))
        H = B @ B.conj().T / nk + 0.3 * np.eye(nk)
    prob = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), k, whiten=False, link=link, factors=f)
    g = prob.metric(H)
    Hj = jnp.asarray(H)
    blocks = f.blocks

    def potential(z):
        s = monomials(z, exps, xp=jnp)
        val = jnp.real(s @ Hj @ jnp.conj(s))  # sᵀHs̄, the problem's convention (real for Hermitian H)
        if link == "log":
            return jnp.log(val) / (k * jnp.pi)
        logs = [jnp.log(jnp.sum(jnp.abs(z[b]) ** 2)) for b in blocks]
        ref = sum(kk / k * lg for kk, lg in zip(degrees, logs))
        return (ref + val * jnp.exp(-sum(kk * lg for kk, lg in zip(degrees, logs)))) / jnp.pi

    ref = cicy_metric_jax(ps, potential)
    np.testing.assert_allclose(g, ref, rtol=0, atol=1e-10 * np.max(np.abs(ref)))
    assert np.all(np.linalg.eigvalsh(g)[:, 0] > 0)


def test_starting_points_are_the_fs_pullback_of_class_t(bicubic_points):
    ps = bicubic_points
    k, t = 2, np.array([1.0, 2.0])
    f = _factors(ps, tuple(int(x) for x in k * t))  # k_a = k t_a
    exps = f.exponents()
    ref = cicy_fs_pullback(ps, t)
    prob = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), k, whiten=False, factors=f)
    np.testing.assert_allclose(prob.metric(np.zeros((len(exps), len(exps)))), ref, rtol=0, atol=1e-13 * np.max(np.abs(ref)))
    # log link: Π_a |z^(a)|^{2k_a} = s† D s with D the multinomial coefficients Π k_a!/I!, so K = Σ t_a/π log|z^(a)|²
    D = np.array([np.prod([math.factorial(int(r[b].sum())) / np.prod([math.factorial(int(e)) for e in r[b]])
                           for b in f.blocks]) for r in exps])
    plog = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), k, whiten=False, link="log", factors=f)
    np.testing.assert_allclose(plog.metric(np.diag(D).astype(complex)), ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)))
    # the whitened start H = I is near it (σ of the same order, positive definite)
    pw = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), k, link="log", factors=f)
    assert np.isfinite(pw.loss(pw.initial()))


@pytest.mark.parametrize("name,degrees,expected", [
    ("bicubic", (3, 3), 100 - 1),  # H⁰(O(3,3)) − H⁰(O(0,0)): the defining cubic
    ("bicubic", (2, 2), 36),
    ("p5-33", (3,), 56 - 2),  # two cubics
    ("tetraquadric", (2, 2, 2, 2), 81 - 1),
])
def test_whitening_keeps_dim_h0(name, degrees, expected):
    mf = cicy_preset(name, seed=2)
    ps = sample_cicy(mf, 3 * expected + 60, seed=1)
    f = Factors(tuple(n + 1 for n in mf.ambient), degrees)
    prob = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), max(degrees), factors=f)
    assert prob.nk == expected


def test_gauss_newton_lowers_sigma_on_the_bicubic():
    """Two LM steps on a random bicubic at k = (1,1) (81 real parameters) lower the training loss and the
    held-out σ below Fubini–Study's (the fit is real, not an identity)."""
    from ntkflow.manifolds.geometry import sigma_weighted
    from ntkflow.solvers.least_squares import CGSolve, LMConfig, levenberg_marquardt

    mf = cicy_preset("bicubic", seed=0)
    ps = sample_cicy(mf, 1500, seed=0)
    train, test = ps.split(1000)
    f = Factors((3, 3), (1, 1))
    prob = PrimalProblem(train.points, train.jacobian, train.weights, np.log(train.omega_sq), 1, link="log", factors=f)
    v0 = prob.initial()
    res = levenberg_marquardt(prob, LMConfig(max_iter=4, scaling="marquardt", max_tries=1, stop_on_reject=False),
                              solve=CGSolve(rtol=1e-3, maxiter=200))
    assert res.history[-1]["loss"] < 0.85 * prob.loss(v0)
    tprob = PrimalProblem(test.points, test.jacobian, test.weights, np.log(test.omega_sq), 1, whiten=False, link="log",
                          factors=f)
    det = lambda v: np.real(np.linalg.det(tprob.metric(prob.monomial_H(prob.unvec(v)[0]))))  # noqa: E731
    s0 = sigma_weighted(det(v0) / test.omega_sq, test.weights)
    s1 = sigma_weighted(det(res.value) / test.omega_sq, test.weights)
    s_fs = sigma_weighted(np.real(np.linalg.det(cicy_fs_pullback(test))) / test.omega_sq, test.weights)
    assert s1 < 0.9 * min(s0, s_fs)
