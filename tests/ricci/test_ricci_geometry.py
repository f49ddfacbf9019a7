"""ricci.domains and ricci.geometry against independent references: jax autodiff of the composed chart
map and of the curvature definitions, exact curvature of round spheres / flat tori / conformal T², and
exact volumes by quadrature."""
from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow  # noqa: F401  (x64)
from ntkflow.ricci import geometry as geo
from ntkflow.ricci.domains import Sphere, Torus, flat_metric, metric_from_function, pushforward, round_metric


# ---------------------------------------------------------------------------------------------------------
# smooth non-round test metrics
def bumpy_sphere_fn(n: int, seed: int = 0):
    """x ↦ G(x) = e^{2u(x)} (I + B(x) + B(x)ᵀ)·(1 + 0) with a random polynomial u and a small random
    linear-in-x matrix B: smooth, symmetric, positive definite on T_xSⁿ, not conformally round."""
    rng = np.random.default_rng(seed)
    A = n + 1
    c1, c2 = rng.normal(size=A) * 0.3, rng.normal(size=(A, A)) * 0.2
    B0, B1 = rng.normal(size=(A, A)) * 0.1, rng.normal(size=(A, A, A)) * 0.1

    def fn(x):
        u = c1 @ x + x @ c2 @ x + 0.2 * jnp.sin(x[0] * x[1] + x[-1])
        B = B0 + jnp.einsum("ijk,k->ij", B1, x)
        return jnp.exp(2 * u) * (jnp.eye(A) + B + B.T)

    return fn


def bumpy_torus_fn(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, n)) * 0.2, rng.normal(size=(n, n)) * 0.2

    def fn(t):
        M = jnp.eye(n) + a * jnp.sin(t)[None, :] + b * jnp.cos(t[0] + t[-1])
        return M @ M.T + 0.3 * jnp.eye(n)

    return fn


# ---------------------------------------------------------------------------------------------------------
# independent reference: the intrinsic metric by autodiff of the composed chart, curvature by autodiff
def composed_chart_metric(fn, p, E):
    """y ↦ g(y) = J(y)ᵀ G(X(y)) J(y) with X(y) = (p + Ey)/|p + Ey| and J = ∂X/∂y by jax.jacfwd."""

    def X(y):
        q = p + E @ y
        return q / jnp.sqrt(q @ q)

    def g(y):
        J = jax.jacfwd(X)(y)
        return J.T @ fn(X(y)) @ J

    return g


def autodiff_curvature(gfun, y0):
    """Γ, Riemann, Ricci, R of a chart metric function gfun (n,) ↦ (n, n) at y0 by nested jax.jacfwd."""

    def gamma(y):
        g = gfun(y)
        dg = jax.jacfwd(gfun)(y)  # [a, b, c] = ∂_c g_ab
        gi = jnp.linalg.inv(g)
        first = 0.5 * (jnp.einsum("jli->lij", dg) + jnp.einsum("ilj->lij", dg) - jnp.einsum("ijl->lij", dg))
        return jnp.einsum("kl,lij->kij", gi, first)

    G0 = gamma(y0)
    dG = jax.jacfwd(gamma)(y0)  # [k, i, j, m] = ∂_m Γ^k_ij
    Rm = (
        jnp.einsum("rnsm->rsmn", dG) - jnp.einsum("rmsn->rsmn", dG)
        + jnp.einsum("rml,lns->rsmn", G0, G0) - jnp.einsum("rnl,lms->rsmn", G0, G0)
    )
    Ric = jnp.einsum("rsrn->sn", Rm)
    return G0, Rm, Ric, jnp.einsum("ij,ij->", jnp.linalg.inv(gfun(y0)), Ric)


@pytest.mark.parametrize("n", [2, 3])
def test_sphere_chart_jet_matches_autodiff_of_composed_chart(n):
    S = Sphere(n)
    fn = bumpy_sphere_fn(n, seed=n)
    metric = metric_from_function(fn, S)
    pts, _ = S.points(7, seed=1)
    pts = np.concatenate([pts, -np.eye(n + 1)[-1:], np.eye(n + 1)[-1:]])  # both signs of the Householder branch
    g, dg, d2g = S.chart_jet(*metric.ambient_jets(pts), pts)
    E = S.frames(pts)
    y0 = jnp.zeros(n)
    for q in range(len(pts)):
        gf = composed_chart_metric(fn, jnp.asarray(pts[q]), jnp.asarray(E[q]))
        np.testing.assert_allclose(g[q], gf(y0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dg[q], jax.jacfwd(gf)(y0), rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(d2g[q], jax.jacfwd(jax.jacfwd(gf))(y0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [2, 3])
def test_sphere_scalar_chart_jet_matches_autodiff(n):
    S = Sphere(n)
    F = lambda x: jnp.sin(x[0] + 2 * x[1]) * jnp.exp(x[-1])
    pts, _ = S.points(5, seed=2)
    E = S.frames(pts)
    x = jnp.asarray(pts)
    f, df, d2f = jax.vmap(F)(x), jax.vmap(jax.grad(F))(x), jax.vmap(jax.hessian(F))(x)
    h, dh, d2h = S.chart_jet_scalar(f, df, d2f, pts)
    for q in range(len(pts)):
        X = lambda y: (x[q] + E[q] @ y) / jnp.linalg.norm(x[q] + E[q] @ y)
        hy = lambda y: F(X(y))
        np.testing.assert_allclose(dh[q], jax.grad(hy)(jnp.zeros(n)), atol=1e-12)
        np.testing.assert_allclose(d2h[q], jax.hessian(hy)(jnp.zeros(n)), atol=1e-12)


@pytest.mark.parametrize("n", [2, 3])
def test_torus_chart_jet_is_identity_and_curvature_matches_autodiff(n):
    T = Torus(n)
    fn = bumpy_torus_fn(n, seed=n)
    metric = metric_from_function(fn, T)
    pts, _ = T.points(6, seed=3)
    jets = T.chart_jet(*metric.ambient_jets(pts), pts)
    np.testing.assert_array_equal(jets[0], metric(pts))
    np.testing.assert_allclose(T.frames(pts), np.broadcast_to(np.eye(n), (6, n, n)))
    gam, Rm, ric, R = geo.christoffel(jets[0], jets[1]), geo.riemann(*jets), geo.ricci(*jets), geo.scalar(*jets)
    for q in range(len(pts)):
        G0, Rm0, Ric0, R0 = autodiff_curvature(fn, jnp.asarray(pts[q]))
        np.testing.assert_allclose(gam[q], G0, atol=1e-12)
        np.testing.assert_allclose(Rm[q], Rm0, atol=1e-11)
        np.testing.assert_allclose(ric[q], Ric0, atol=1e-11)
        np.testing.assert_allclose(R[q], R0, atol=1e-11)


@pytest.mark.parametrize("n", [2, 3])
def test_sphere_curvature_matches_autodiff_of_composed_chart(n):
    S = Sphere(n)
    fn = bumpy_sphere_fn(n, seed=10 + n)
    metric = metric_from_function(fn, S)
    pts, _ = S.points(4, seed=4)
    jets = S.chart_jet(*metric.ambient_jets(pts), pts)
    ric, R = geo.ricci(*jets), geo.scalar(*jets)
    E = S.frames(pts)
    for q in range(len(pts)):
        gf = composed_chart_metric(fn, jnp.asarray(pts[q]), jnp.asarray(E[q]))
        _, _, Ric0, R0 = autodiff_curvature(gf, jnp.zeros(n))
        np.testing.assert_allclose(ric[q], Ric0, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(R[q], R0, rtol=1e-10)
    assert float(np.ptp(R)) > 0.1  # genuinely non-round: the test could fail


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("r", [0.5, 1.0, 2.3])
def test_round_sphere_is_einstein(n, r):
    S = Sphere(n)
    pts, _ = S.points(50, seed=5)
    jets = S.chart_jet(*round_metric(S, r).ambient_jets(pts), pts)
    np.testing.assert_allclose(geo.ricci(*jets), (n - 1) / r**2 * jets[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(geo.scalar(*jets), n * (n - 1) / r**2, rtol=1e-12)
    # the same sphere with a G that has normal components: G = r² I + c(x) x xᵀ gives the same geometry
    metric = metric_from_function(lambda x: r**2 * jnp.eye(n + 1) + (2.0 + x[0]) * jnp.outer(x, x), S)
    jets2 = S.chart_jet(*metric.ambient_jets(pts), pts)
    np.testing.assert_allclose(geo.scalar(*jets2), n * (n - 1) / r**2, rtol=1e-12)


@pytest.mark.parametrize("n", [2, 3])
def test_flat_torus_curvature_vanishes(n):
    T = Torus(n)
    pts, _ = T.points(3**n)
    jets = T.chart_jet(*flat_metric(T, 1.7).ambient_jets(pts), pts)
    assert np.max(np.abs(geo.riemann(*jets))) == 0.0
    # a constant non-diagonal metric is flat too
    M = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 1.5]])[:n, :n]
    jets = T.chart_jet(*metric_from_function(lambda t: jnp.asarray(M) + 0.0 * t[0], T).ambient_jets(pts), pts)
    assert np.max(np.abs(geo.ricci(*jets))) < 1e-15


def test_conformal_torus_gauss_curvature():
    """g = e^{2u} δ on T²: R = 2K = −2 e^{−2u} Δu, Δu the flat Laplacian (analytic)."""
    T = Torus(2)
    u = lambda t: 0.3 * jnp.sin(t[0]) * jnp.cos(2 * t[1]) + 0.2 * jnp.cos(t[0] + t[1])
    lap = lambda t: jnp.trace(jax.hessian(u)(t))
    pts, _ = T.points(64, seed=6)
    jets = T.chart_jet(*metric_from_function(lambda t: jnp.exp(2 * u(t)) * jnp.eye(2), T).ambient_jets(pts), pts)
    x = jnp.asarray(pts)
    # closed form of Δu: −0.3·5 sin θ₁ cos 2θ₂ − 0.2·2 cos(θ₁ + θ₂)
    lap_exact = -1.5 * jnp.sin(x[:, 0]) * jnp.cos(2 * x[:, 1]) - 0.4 * jnp.cos(x[:, 0] + x[:, 1])
    np.testing.assert_allclose(jax.vmap(lap)(x), lap_exact, atol=1e-13)
    R_exact = -2 * jnp.exp(-2 * jax.vmap(u)(x)) * lap_exact
    np.testing.assert_allclose(geo.scalar(*jets), R_exact, rtol=1e-12, atol=1e-13)


def test_hessian_and_laplacian_against_autodiff():
    """∇²f and Δf on a bumpy T³ metric against nested autodiff of the coordinate formulas."""
    n = 3
    T = Torus(n)
    fn = bumpy_torus_fn(n, seed=7)
    f = lambda t: jnp.sin(t[0]) * jnp.cos(t[1] - t[2]) + 0.1 * jnp.cos(2 * t[2])
    pts, _ = T.points(5, seed=8)
    x = jnp.asarray(pts)
    jets = T.chart_jet(*metric_from_function(fn, T).ambient_jets(pts), pts)
    fj = (jax.vmap(f)(x), jax.vmap(jax.grad(f))(x), jax.vmap(jax.hessian(f))(x))
    H = geo.hessian_of_function(jets[0], jets[1], *fj)
    L = geo.laplacian(jets[0], jets[1], *fj)
    for q in range(len(pts)):
        # Δf = (1/√g) ∂_i(√g g^{ij} ∂_j f): the divergence form, independent of Γ
        flux = lambda t: jnp.sqrt(jnp.linalg.det(fn(t))) * jnp.linalg.solve(fn(t), jax.grad(f)(t))
        div = jnp.trace(jax.jacfwd(flux)(x[q])) / jnp.sqrt(jnp.linalg.det(fn(x[q])))
        np.testing.assert_allclose(L[q], div, rtol=1e-11)
        G0, _, _, _ = autodiff_curvature(fn, x[q])
        np.testing.assert_allclose(H[q], jax.hessian(f)(x[q]) - jnp.einsum("kij,k->ij", G0, jax.grad(f)(x[q])), atol=1e-12)
    np.testing.assert_allclose(geo.gradient_norm_sq(jets[0], fj[1]), np.einsum("qij,qi,qj->q", np.linalg.inv(jets[0]), fj[1], fj[1]))


@pytest.mark.parametrize("n,exact", [(2, lambda r: 4 * math.pi * r**2), (3, lambda r: 2 * math.pi**2 * r**3)])
def test_round_volume_by_quadrature(n, exact):
    """Σ w √det g over the product Gauss rule: the round density is constant, so the rule's only error is
    round-off (measured ≤ 1e-14 relative); a polynomial density of degree ≤ 2k−1 is integrated exactly too."""
    S = Sphere(n)
    k = 6
    pts, w = S.points(2 * k**2 if n == 2 else 4 * k**3)
    for r in (0.7, 1.0, 3.0):
        g = S.chart_jet(*round_metric(S, r).ambient_jets(pts), pts)[0]
        vol = float(np.sum(w * geo.volume_density(g)))
        assert abs(vol / exact(r) - 1) < 1e-14
    # exactness for polynomials: ∫ x_1² x_2² dA on S² = 4π/15; on S³ ∫ x_1² x_2² dV = 2π²/24
    ref = 4 * math.pi / 15 if n == 2 else 2 * math.pi**2 / 24
    assert abs(np.sum(w * pts[:, 0] ** 2 * pts[:, 1] ** 2) / ref - 1) < 1e-14
    # random points: equal weights summing to the round volume
    _, wr = S.points(1000, seed=0)
    assert abs(wr.sum() - S.reference_volume) < 1e-12


def test_torus_volume_of_conformal_metric():
    """∫ e^{2u} dθ on T² by the trapezoidal grid: exponentially accurate for a trigonometric u
    (reference: scipy dblquad to 1e-12)."""
    from scipy.integrate import dblquad

    T = Torus(2)
    u = lambda a, b: 0.3 * np.sin(a) + 0.2 * np.cos(a + b)
    ref = dblquad(lambda b, a: np.exp(2 * u(a, b)), 0, 2 * np.pi, 0, 2 * np.pi, epsabs=1e-13, epsrel=1e-13)[0]
    pts, w = T.points(32**2)
    metric = metric_from_function(lambda t: jnp.exp(2 * (0.3 * jnp.sin(t[0]) + 0.2 * jnp.cos(t[0] + t[1]))) * jnp.eye(2), T)
    vol = float(np.sum(w * geo.volume_density(metric(pts))))
    assert abs(vol / ref - 1) < 1e-12


def test_pushforward_is_tangent():
    S = Sphere(3)
    pts, _ = S.points(10, seed=9)
    T = np.random.default_rng(0).normal(size=(10, 3, 3))
    P = np.asarray(pushforward(S, T, pts))
    assert np.max(np.abs(np.einsum("qij,qj->qi", P, pts))) < 1e-14
    E = S.frames(pts)
    np.testing.assert_allclose(np.einsum("qia,qij,qjb->qab", E, P, E), T, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------
# errors name the argument and the fix
@pytest.mark.parametrize(
    "domain,fn,match",
    [
        (Torus(2), lambda t: jnp.array([[1.0, 0.5], [0.0, 1.0]]) + 0 * t[0], "not symmetric.*0.5 \\* \\(M \\+ M.T\\)"),
        (Torus(2), lambda t: jnp.diag(jnp.array([1.0, -1.0])) + 0 * t[0], "not positive definite.*M Mᵀ"),
        (Sphere(2), lambda x: jnp.eye(3) - 2.0 * jnp.eye(3) * (x[2] > 0.5), "not positive definite on the tangent"),
        (Torus(2), lambda t: jnp.eye(2) * jnp.log(jnp.sin(t[0])), "NaN/inf"),
        (Sphere(2), lambda x: jnp.eye(2) + 0 * x[0], "must return a \\(3, 3\\).*r² I"),
        (Torus(3), lambda t: jnp.eye(3) + jnp.outer(t, jnp.ones(2)), "fn: calling it on one point"),
        (Torus(2), lambda t: jnp.eye(2) * (2 + jnp.sin(t[0] / 2)), "2π-periodic"),
    ],
)
def test_metric_from_function_errors(domain, fn, match):
    with pytest.raises(ValueError) as exc:
        metric_from_function(fn, domain)
    assert re.search(match, str(exc.value)), str(exc.value)
    assert str(exc.value).startswith("fn:")


def test_points_and_jets_errors():
    with pytest.raises(ValueError, match="n_points: the gauss grid has 2k\\^2 points, received 10; pass 8 or 18"):
        Sphere(2).points(10)
    assert Sphere(2).grid_count(10) == 18 and Sphere(3).grid_count(33) == 108 and Torus(3).grid_count(28) == 64
    with pytest.raises(ValueError, match="points: .*ambient dimension 4.*domain mismatch"):
        round_metric(Sphere(3)).ambient_jets(np.ones((2, 3)) / np.sqrt(3))
    with pytest.raises(ValueError, match="\\|x\\| = 1"):
        round_metric(Sphere(2)).ambient_jets(np.ones((2, 3)))
    with pytest.raises(TypeError, match="domain: expected Torus\\(n\\) or Sphere\\(n\\)"):
        metric_from_function(lambda t: jnp.eye(2), "T2")
    with pytest.raises(ValueError, match="Sphere: n must be 2 or 3"):
        Sphere(4)
