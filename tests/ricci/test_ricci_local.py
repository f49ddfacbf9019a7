"""The local flow (σ → 0: Hamilton's / Perelman's Ricci flow) in its spectral representation, against exact
solutions (round spheres: r² = r₀² − 2(n−1)t; dA/dt = −4πχ by Gauss–Bonnet), monotonicity of λ, the
independent axisymmetric reference solver, extinction, and the kernel choice along a flow."""
from __future__ import annotations

import math
import runpy
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow  # noqa: F401  (x64)
from ntkflow.ricci import geometry as geo
from ntkflow.ricci.domains import Sphere, Torus, flat_metric, metric_from_function, round_metric
from ntkflow.ricci.local import LocalFlowConfig, default_points, local_flow
from ntkflow.ricci.perelman import LambdaDriver, LocalKernel
from ntkflow.ricci.reference import AxisymmetricSphere, integrate


@pytest.mark.parametrize("n", [2, 3])
def test_round_sphere_radius_law_to_ninety_percent_of_extinction(n):
    """r² = r₀² − 2(n−1)t up to 0.9 T, T = r₀²/(2(n−1)); measured relative error ~1e-14, anisotropy ~1e-13."""
    S = Sphere(n)
    r0 = 1.3
    T = r0**2 / (2 * (n - 1))
    res = local_flow(S, round_metric(S, r0), 0.9 * T, t_out=np.linspace(0.1, 0.9, 5) * T,
                     config=LocalFlowConfig(degree=2))
    assert res.status == "finished", res.message
    np.testing.assert_allclose(res.times[-1], 0.9 * T)
    exact = r0**2 - 2 * (n - 1) * res.times
    r2_volume = (res.scalars["volume"] / S.reference_volume) ** (2 / n)
    assert np.max(np.abs(r2_volume / exact - 1)) < 1e-4
    # the metric itself at fresh points: g = r²(t) δ in the frame
    pts, _ = S.points(40, seed=1)
    g = S.chart_jet(*res.field(-1).ambient_jets(pts), pts)[0]
    np.testing.assert_allclose(g, np.broadcast_to(exact[-1] * np.eye(n), g.shape), rtol=0, atol=1e-4 * exact[-1])
    assert np.max(res.scalars["anisotropy"]) < 1e-8
    np.testing.assert_allclose(res.scalars["lambda"], n * (n - 1) / exact, rtol=1e-4)
    np.testing.assert_allclose(res.scalars["volume_rate"], -n * (n - 1) * res.scalars["volume"] / exact, rtol=1e-6)


def test_sphere_extinction_stops_with_last_good_state():
    S = Sphere(2)
    res = local_flow(S, round_metric(S, 1.0), 1.0, t_out=[0.3, 0.45, 0.49], config=LocalFlowConfig(degree=2, track_lambda=False))
    assert res.status == "singular"
    assert ("curvature blows up" in res.message or "positive definite" in res.message
            or "volume collapses" in res.message), res.message
    assert res.times[-1] < 0.5 and res.problem.is_good(res.states[-1])
    np.testing.assert_allclose(res.scalars["volume"][-1], 4 * math.pi * (1 - 2 * res.times[-1]), rtol=1e-8)


def _bumpy_sphere_metric():
    u = lambda x: 0.25 * x[0] + 0.15 * x[1] * x[2] + 0.1 * x[2] ** 2
    return metric_from_function(lambda x: jnp.exp(2 * u(x)) * jnp.eye(3), Sphere(2))


def test_bumpy_sphere_gauss_bonnet_rate_and_monotone_lambda():
    """dA/dt = −∫R dA = −8π (χ = 2) on a non-symmetric bumpy S² (degree 8: measured ≤ 1e-10 relative, both
    from the projected velocity and from finite differences of the area history); λ and F[g, f_g]
    non-decreasing and equal."""
    S = Sphere(2)
    res = local_flow(S, _bumpy_sphere_metric(), 0.3, t_out=[0.1, 0.2], config=LocalFlowConfig(degree=8, rtol=1e-9, atol=1e-11))
    assert res.status == "finished" and res.fit_residual < 1e-6
    assert np.max(np.abs(res.scalars["volume_rate"] / (-8 * math.pi) - 1)) < 1e-4
    fd = np.diff(res.scalars["volume"]) / np.diff(res.times)  # exact for a linear A(t)
    assert np.max(np.abs(fd / (-8 * math.pi) - 1)) < 1e-4
    lam = res.scalars["lambda"]
    assert np.all(np.diff(lam) > 0) and np.all(np.diff(res.scalars["F"]) > 0)
    np.testing.assert_allclose(res.scalars["F"], lam, rtol=1e-9)
    # the curvature spread shrinks (the normalised flow rounds the sphere)
    spread = (res.scalars["R_max"] - res.scalars["R_min"]) / res.scalars["R_max"]
    assert spread[-1] < spread[0]


def test_bumpy_torus_area_is_conserved_and_lambda_increases():
    """χ(T²) = 0: dA/dt = 0 (measured ~1e-14 relative at degree 8); λ < 0 increases towards 0."""
    T = Torus(2)
    u = lambda t: 0.3 * jnp.sin(t[0]) * jnp.cos(t[1]) + 0.2 * jnp.cos(2 * t[0] - t[1])
    metric = metric_from_function(lambda t: jnp.exp(2 * u(t)) * jnp.eye(2), T)
    res = local_flow(T, metric, 0.5, t_out=[0.25], config=LocalFlowConfig(degree=6, rtol=1e-9, atol=1e-11))
    assert res.status == "finished"
    assert np.max(np.abs(res.scalars["volume_rate"])) < 1e-4 * 4 * math.pi
    assert np.max(np.abs(res.scalars["volume"] / res.scalars["volume"][0] - 1)) < 1e-8
    lam = res.scalars["lambda"]
    assert lam[0] < -0.1 and np.all(np.diff(lam) > 0) and lam[-1] < 0


def test_axisymmetric_sphere_against_reference_solver():
    """g = e^{2u(x₃)} g_round: the local flow (3-D ambient polynomials, autodiff geometry) against the
    independent 1-D Legendre solver of u_t = e^{−2u}(Δ₀u − 1) (ricci.reference): R at the points and the
    area at t = 0.2. Spectral convergence in the degree L (measured max relative R error at t = 0.2:
    L = 6: 2.7e-2, 8: 2.7e-3, 10: 1.6e-4, 12: 1.6e-6, 14: 1.1e-6 (reference-limited))."""
    S = Sphere(2)
    u = lambda mu: 0.3 * mu + 0.2 * mu**2
    metric = metric_from_function(lambda x: jnp.exp(2 * u(x[2])) * jnp.eye(3), S)
    ref_prob = AxisymmetricSphere(degree=40)
    ref = integrate(ref_prob, ref_prob.initial(u), 0.2, rtol=1e-11, atol=1e-13)
    assert ref.status == "finished"
    err = {}
    for degree in (8, 12):
        res = local_flow(S, metric, 0.2, config=LocalFlowConfig(degree=degree, rtol=1e-10, atol=1e-12, track_lambda=False))
        assert res.status == "finished"
        pts = res.problem.points
        _, R = res.problem.geometry_of(res.states[-1])
        R_ref = ref_prob.scalar_curvature_at(ref.y, pts[:, 2])
        err[degree] = np.max(np.abs(np.asarray(R) - R_ref)) / np.max(np.abs(R_ref))
        assert abs(res.scalars["volume"][-1] / ref_prob.area(ref.y) - 1) < 1e-8
    assert err[12] < 1e-5 and err[8] > 100 * err[12], err


def test_flat_torus_three_is_fixed():
    T = Torus(3)
    res = local_flow(T, flat_metric(T, 1.2), 1.0, config=LocalFlowConfig(degree=2, track_lambda=False))
    assert res.status == "finished"
    np.testing.assert_allclose(res.states[-1], res.states[0], atol=1e-13)
    assert res.scalars["anisotropy"].max() < 1e-12


def test_only_the_perelman_kernel_keeps_a_moebius_round_sphere_round_along_the_flow():
    """The round unit S² pulled back by a Möbius boost (G = ψ²I, ψ = 1/(cosh β − sinh β x₃); R ≡ 2) under the
    λ-gradient flow: with LocalKernel('perelman') R stays uniform (R = 2/(1 − 2t)), with
    LocalKernel('identity') the curvature spread grows by orders of magnitude. (ψ² is not a polynomial: the
    degree-L representation carries a spectrally small error, which the perelman flow does not amplify.)"""
    S = Sphere(2)
    b = 0.4
    metric = metric_from_function(lambda x: jnp.eye(3) / (jnp.cosh(b) - jnp.sinh(b) * x[2]) ** 2, S)
    cfg = LocalFlowConfig(degree=12, rtol=1e-8, atol=1e-10, track_lambda=False)
    spread = {}
    for kind in ("perelman", "identity"):
        res = local_flow(S, metric, 0.1, driver=LambdaDriver(LocalKernel(kind), degree=4), config=cfg)
        assert res.status == "finished", res.message
        spread[kind] = (res.scalars["R_max"] - res.scalars["R_min"]) / res.scalars["R_max"]
        if kind == "perelman":
            np.testing.assert_allclose(res.scalars["R_max"][-1], 2 / (1 - 0.2), rtol=1e-4)
    assert spread["perelman"][0] < 1e-4  # representation error of the non-polynomial ψ² (degree 8: 3.5e-3, 12: 1.9e-5)
    assert spread["perelman"][-1] < 2 * spread["perelman"][0] + 1e-6
    assert spread["identity"][-1] > 100 * spread["perelman"][-1]


def test_local_flow_errors():
    S = Sphere(2)
    with pytest.raises(ValueError, match="metric: it was built for Sphere\\(n=3\\)"):
        local_flow(S, round_metric(Sphere(3)), 0.1)
    with pytest.raises(TypeError, match="metric: expected a field with ambient_jets"):
        local_flow(S, lambda x: jnp.eye(3), 0.1)
    with pytest.raises(ValueError, match="degree: the local flow needs degree ≥ 2"):
        LocalFlowConfig(degree=1)
    with pytest.raises(ValueError, match="points, weights: pass both"):
        local_flow(S, round_metric(S), 0.1, points=default_points(S, 2)[0])


@pytest.mark.slow
def test_berger_three_sphere_lambda_increases_and_volume_rate_is_minus_total_scalar_curvature():
    """The documented non-round S³ (docs/examples/ricci_berger_s3.py: Berger sphere × e^{0.4 x₄}), degree 4:
    λ and F[g, f_g] non-decreasing and equal; dV/dt = −∫R dV (Hamilton's flow) to 1e-6 relative.
    Measured: λ = 4.856, 5.395, 5.998 at t = 0, 0.025, 0.05 (degree 6 agrees to 3e-7 relative); ~45 s."""
    S = Sphere(3)
    fn = runpy.run_path(str(Path(__file__).parents[2] / "docs" / "examples" / "ricci_berger_s3.py"))["metric"]
    res = local_flow(S, metric_from_function(fn, S), 0.05, t_out=[0.025], config=LocalFlowConfig(degree=4, rtol=1e-8, atol=1e-10))
    assert res.status == "finished"
    lam = res.scalars["lambda"]
    assert np.all(np.diff(lam) > 0) and abs(lam[0] - 4.856) < 1e-3
    np.testing.assert_allclose(res.scalars["F"], lam, rtol=1e-9)
    for y, rate in zip(res.states, res.scalars["volume_rate"]):
        (g, _, _), R = res.problem.geometry_of(y)
        total = float(np.sum(res.problem.weights * np.asarray(R) * np.asarray(geo.volume_density(g))))
        assert abs(rate / -total - 1) < 1e-6, (rate, total)
