"""Perelman's F and λ, their first variations, and the local drivers: exact values (round spheres, flat
tori), an independent dense Fourier eigen-solve (conformal T²), central finite differences along random
smooth metric perturbations, and the proof of which local kernel is Perelman's flow."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow  # noqa: F401  (x64)
from ntkflow.ricci import geometry as geo
from ntkflow.ricci.domains import FunctionMetric, Sphere, Torus, flat_metric, metric_from_function, round_metric
from ntkflow.ricci.perelman import (
    F_functional,
    F_variation,
    FDriver,
    LambdaDriver,
    LocalKernel,
    SpectralBasis,
    hamilton_driver,
    lambda_variation,
    loss_gradient_F,
    perelman_lambda,
    scalar_jets,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_ricci_geometry import bumpy_sphere_fn, bumpy_torus_fn  # noqa: E402


def chart(domain, fn, pts):
    return domain.chart_jet(*metric_from_function(fn, domain).ambient_jets(pts), pts)


@pytest.mark.parametrize("n,k", [(2, 6), (3, 4)])
def test_lambda_of_round_sphere(n, k):
    """λ(Sⁿ_r) = n(n−1)/r², f_g = log |Sⁿ_r| constant, F[g, f_g] = λ, first gap 4n/r² (−4Δ on l = 1)."""
    S = Sphere(n)
    pts, w = S.points(2 * k**2 if n == 2 else 4 * k**3)
    for r in (0.8, 1.9):
        jets = S.chart_jet(*round_metric(S, r).ambient_jets(pts), pts)
        res = perelman_lambda(S, jets, pts, w, degree=3)
        assert abs(res.value / (n * (n - 1) / r**2) - 1) < 1e-12
        assert abs(res.gap / (4 * n / r**2) - 1) < 1e-12
        np.testing.assert_allclose(res.f_jets[0], math.log(S.reference_volume * r**n), rtol=1e-12)
        assert abs(float(F_functional(jets, res.f_jets, w)) / res.value - 1) < 1e-12


def test_lambda_of_flat_tori():
    for n, side in ((2, 8), (3, 6)):
        T = Torus(n)
        pts, w = T.points(side**n)
        jets = T.chart_jet(*flat_metric(T, 1.4).ambient_jets(pts), pts)
        res = perelman_lambda(T, jets, pts, w, degree=2)
        assert abs(res.value) < 1e-13 and res.gap > 0.5 and res.positive


def test_lambda_of_conformal_torus_against_dense_fourier_eigensolve():
    """g = e^{2u}δ on T²: −4Δ_g + R = e^{−2u}(−4Δ₀ − 2Δ₀u), so λ is the lowest eigenvalue of
    (−4Δ₀ − 2Δ₀u) w = λ e^{2u} w — solved independently by a dense Fourier-collocation Laplacian on a
    32×32 grid and scipy.linalg.eigh."""
    from scipy.linalg import eigh

    u = lambda t: 0.25 * jnp.sin(t[0]) * jnp.cos(t[1]) + 0.15 * jnp.cos(2 * t[0] - t[1])
    N = 32
    T = Torus(2)
    pts, w = T.points(N * N)
    k = np.fft.fftfreq(N, 1.0 / N)
    K2 = (k[:, None] ** 2 + k[None, :] ** 2).ravel()
    eye = np.eye(N * N).reshape(N * N, N, N)
    lap0 = np.real(np.fft.ifft2(-K2.reshape(N, N)[None] * np.fft.fft2(eye))).reshape(N * N, N * N)
    uu = np.asarray(jax.vmap(u)(jnp.asarray(pts)))
    lapu = lap0 @ uu
    ref = eigh(-4 * 0.5 * (lap0 + lap0.T) - 2 * np.diag(lapu), np.diag(np.exp(2 * uu)), eigvals_only=True)[0]
    jets = chart(T, lambda t: jnp.exp(2 * u(t)) * jnp.eye(2), pts)
    res = perelman_lambda(T, jets, pts, w, degree=9)
    assert ref < -1e-3  # non-flat: λ < ∫R dA / A = 0
    assert abs(res.value - ref) < 1e-10 * abs(ref) + 1e-12, (res.value, ref)


def _fd_case(domain, fn, V, f, h, pts, w, degree):
    """(analytic δF, FD δF, analytic δλ, FD δλ) along δg = V (ambient), δf = h, ε = 1e-4 central."""
    E = domain.frames(pts)
    v = np.einsum("qia,qij,qjb->qab", E, np.asarray(jax.vmap(V)(jnp.asarray(pts))), E)
    fj, hj = scalar_jets(domain, f, pts), scalar_jets(domain, h, pts)
    # ambient jets are linear in the field: jets(fn + εV) = jets(fn) + ε jets(V) (one compilation each)
    base = metric_from_function(fn, domain).ambient_jets(pts)
    dV = FunctionMetric(domain, V).ambient_jets(pts)
    jets = lambda eps: domain.chart_jet(*(a + eps * b for a, b in zip(base, dV)), pts)
    j0 = jets(0.0)
    dFg, dFf = F_variation(j0, fj)
    dF = float(np.sum(w[:, None, None] * dFg * v) + np.sum(w * dFf * hj[0]))
    eps = 1e-4
    Fs = [float(F_functional(jets(s * eps), tuple(a + s * eps * b for a, b in zip(fj, hj)), w)) for s in (1, -1)]
    lam = perelman_lambda(domain, j0, pts, w, degree=degree)
    assert lam.positive and lam.gap > 0.1
    dl = float(np.sum(w[:, None, None] * lambda_variation(j0, lam.f_jets) * v))
    ls = [perelman_lambda(domain, jets(s * eps), pts, w, degree=degree).value for s in (1, -1)]
    return dF, (Fs[0] - Fs[1]) / (2 * eps), dl, (ls[0] - ls[1]) / (2 * eps)


def test_first_variations_on_bumpy_sphere_by_finite_differences():
    """Measured: relative differences 2e-8 (δF) and 4e-7 (δλ) on S² (Gauss 2·16², degree 9)."""
    S = Sphere(2)
    pts, w = S.points(2 * 16**2)
    V = lambda x: (1 + x[0] * x[1]) * jnp.array([[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, 0.8]])
    dF, dF_fd, dl, dl_fd = _fd_case(S, bumpy_sphere_fn(2, 1), V, lambda x: 0.3 * x[0] + 0.2 * x[1] * x[2],
                                    lambda x: jnp.cos(x[0] - x[1]), pts, w, 9)
    assert abs(dF_fd / dF - 1) < 1e-6 and abs(dl_fd / dl - 1) < 1e-5, (dF, dF_fd, dl, dl_fd)


def test_first_variations_on_bumpy_torus_by_finite_differences():
    """Measured: 7e-8 (δF), 1e-7 (δλ) on a 24² grid, Fourier degree 6."""
    T = Torus(2)
    pts, w = T.points(24**2)
    V = lambda t: jnp.array([[1.0, 0.2], [0.2, 0.5]]) * (1 + 0.5 * jnp.sin(t[0] + 2 * t[1]))
    dF, dF_fd, dl, dl_fd = _fd_case(T, bumpy_torus_fn(2, 1), V, lambda t: 0.3 * jnp.sin(t[0]) + 0.1 * jnp.cos(t[1]),
                                    lambda t: jnp.cos(t[0] - t[1]), pts, w, 6)
    assert abs(dF_fd / dF - 1) < 1e-6 and abs(dl_fd / dl - 1) < 1e-5, (dF, dF_fd, dl, dl_fd)


@pytest.mark.slow
def test_first_variation_on_bumpy_three_sphere_by_finite_differences():
    S = Sphere(3)
    pts, w = S.points(4 * 9**3)
    V = lambda x: (1 + 0.5 * x[0] * x[3]) * (jnp.eye(4) + 0.1 * jnp.outer(jnp.arange(4.0), jnp.arange(4.0)) / 9)
    fn = lambda x: jnp.exp(0.2 * x[0] + 0.1 * x[1] * x[2]) * jnp.eye(4)
    dF, dF_fd, dl, dl_fd = _fd_case(S, fn, V, lambda x: 0.3 * x[3], lambda x: 0.5 * x[0] * x[1], pts, w, 6)
    assert abs(dF_fd / dF - 1) < 1e-6 and abs(dl_fd / dl - 1) < 1e-5, (dF, dF_fd, dl, dl_fd)


def test_hamilton_driver_and_lambda_driver_on_round_sphere():
    S = Sphere(3)
    pts, w = S.points(4 * 4**3)
    jets = S.chart_jet(*round_metric(S, 1.3).ambient_jets(pts), pts)
    np.testing.assert_allclose(hamilton_driver(S, jets, pts), -2 * (2 / 1.3**2) * jets[0], atol=1e-13)
    v = LambdaDriver(LocalKernel("perelman"), degree=3)(S, jets, pts, w)
    np.testing.assert_allclose(v, hamilton_driver(S, jets, pts), atol=1e-12)


# ------------------------------------------------------------------------------ which kernel is Perelman's
def _stereographic_jets(ys):
    """Round unit S² in stereographic coordinates: g = ψ²δ, ψ = 2/(1 + |y|²); jets by autodiff."""
    gf = lambda y: (2.0 / (1.0 + y @ y)) ** 2 * jnp.eye(2)
    return gf


def _velocity_fn(gf, kernel, f0):
    """y ↦ ∂_t g(y) of the local flow for L = −F[g, f] with constant f = f0 (the minimiser f_g of a round
    sphere), from chart jets by autodiff."""

    def vel(y):
        jets = (gf(y)[None], jax.jacfwd(gf)(y)[None], jax.jacfwd(jax.jacfwd(gf))(y)[None])
        f_jets = (jnp.full((1,), f0), jnp.zeros((1, 2)), jnp.zeros((1, 2, 2)))
        return kernel.apply(jets[0], loss_gradient_F(jets, f_jets), f_jets[0])[0]

    return vel


def _scalar_at(gf, y):
    jets = (gf(y)[None], jax.jacfwd(gf)(y)[None], jax.jacfwd(jax.jacfwd(gf))(y)[None])
    return geo.scalar(*jets)[0]


def test_perelman_kernel_keeps_the_stereographic_round_sphere_round_and_identity_does_not():
    """flows.md: with Θ = 2e^f g g δ/√g, ∂_t g = −2(Ric + ∇²f) = −2g for the round sphere in conformal
    coordinates g = ψ²δ, so R stays constant (∂_t R = 4 everywhere). With Θ = δδδ, ∂_t g = −e^{−f}δ, a
    non-uniform conformal change φ g with φ = −e^{−f}ψ⁻², and ∂_t R = −Δφ − φR = e^{−f}(1 + |y|²)³: R stops
    being constant (a diffeomorphism invariant), so the sphere does not stay round."""
    gf = _stereographic_jets(None)
    f0 = math.log(4 * math.pi)
    ys = jnp.asarray(np.random.default_rng(0).normal(size=(12, 2)))
    dR = {}
    for kind in ("perelman", "identity"):
        vel = _velocity_fn(gf, LocalKernel(kind), f0)
        rate = jax.jit(jax.vmap(lambda y: jax.jvp(lambda e: _scalar_at(lambda z: gf(z) + e * vel(z), y), (0.0,), (1.0,))[1]))
        dR[kind] = np.asarray(rate(ys))
        if kind == "perelman":
            np.testing.assert_allclose(jax.vmap(vel)(ys), -2 * jax.vmap(gf)(ys), rtol=1e-12)
    np.testing.assert_allclose(dR["perelman"], 4.0, rtol=1e-10)
    np.testing.assert_allclose(dR["identity"], math.exp(-f0) * (1 + np.sum(np.asarray(ys) ** 2, axis=1)) ** 3, rtol=1e-10)
    assert np.ptp(dR["identity"]) > 0.1


def test_perelman_kernel_on_moebius_round_sphere_with_the_lambda_driver():
    """The same on the domain S²: G = ψ(x)² I, ψ = 1/(cosh β − sinh β x₃) is the round unit sphere pulled back
    by a Möbius boost (R ≡ 2 checked). The λ-driver with the perelman kernel gives ∂_t g = −2g exactly; with
    the identity kernel ∂_t g = φ g with φ varying by a factor ≈ 10 over the sphere."""
    S = Sphere(2)
    pts, w = S.points(2 * 12**2)
    b = 0.6
    jets = chart(S, lambda x: jnp.eye(3) / (jnp.cosh(b) - jnp.sinh(b) * x[2]) ** 2, pts)
    np.testing.assert_allclose(geo.scalar(*jets), 2.0, rtol=1e-12)
    vp = LambdaDriver(LocalKernel("perelman"), degree=6)(S, jets, pts, w)
    np.testing.assert_allclose(vp, -2 * jets[0], rtol=1e-11, atol=1e-12)
    vi = LambdaDriver(LocalKernel("identity"), degree=6)(S, jets, pts, w)
    phi = np.einsum("qii->q", np.linalg.solve(jets[0], vi)) / 2
    np.testing.assert_allclose(vi, phi[:, None, None] * jets[0], atol=1e-12)  # conformal, but …
    assert phi.min() / phi.max() > 5  # … not uniform (both negative)


def test_F_driver_with_perelman_kernel_is_ricci_plus_hessian():
    T = Torus(2)
    pts, w = T.points(10**2)
    jets = chart(T, bumpy_torus_fn(2, 3), pts)
    f = lambda t: 0.3 * jnp.sin(t[0] - t[1])
    fj = scalar_jets(T, f, pts)
    v = FDriver(LocalKernel("perelman"), f)(T, jets, pts, w)
    np.testing.assert_allclose(v, -2 * (geo.ricci(*jets) + geo.hessian_of_function(jets[0], jets[1], *fj)), atol=1e-12)
    vi = FDriver(LocalKernel("identity", scale=2.0), f)(T, jets, pts, w)
    np.testing.assert_allclose(vi, -2.0 * loss_gradient_F(jets, fj), atol=1e-14)


def test_basis_sizes_and_errors():
    assert SpectralBasis(Sphere(2), 5).size == 36 and SpectralBasis(Sphere(3), 4).size == 5 * 6 * 11 // 6
    assert SpectralBasis(Torus(2), 3).size == 49 and SpectralBasis(Torus(3), 1).size == 27
    with pytest.raises(ValueError, match="kind: LocalKernel takes 'perelman'"):
        LocalKernel("naive")
    S = Sphere(2)
    pts, w = S.points(8)
    jets = S.chart_jet(*round_metric(S).ambient_jets(pts), pts)
    with pytest.raises(ValueError, match="weights: LambdaDriver needs the quadrature weights"):
        LambdaDriver(LocalKernel("perelman"))(S, jets, pts)
    with pytest.raises(ValueError, match="points: 8 points cannot resolve the 81 basis functions"):
        perelman_lambda(S, jets, pts, w, degree=8)
    with pytest.raises(ValueError, match="weights: expected 8 quadrature weights"):
        perelman_lambda(S, jets, pts, w[:5], degree=1)
