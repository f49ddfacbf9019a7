"""The Lanczos frozen-NTK flow against the dense scipy.linalg.expm formula and the t → ∞ limit."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla

from ntkflow.engine import Gaussian, kernel_operator
from ntkflow.solvers import ntk_flow


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    n, ns, d = 70, 15, 3
    x = rng.normal(size=(n, d))
    xs = rng.normal(size=(ns, d))
    k = Gaussian(0.8)
    ridge = 1e-2  # keeps Θ well conditioned so the dense reference Θ⁻¹(...) is itself accurate
    Th = k.dense(x, x) + ridge * np.eye(n)
    Ts = k.dense(xs, x)
    y = np.sin(x[:, 0]) + x[:, 1]
    f0 = 0.3 * np.cos(x[:, 2])
    f0s = 0.3 * np.cos(xs[:, 2])
    return dict(x=x, xs=xs, k=k, ridge=ridge, Th=Th, Ts=Ts, y=y, f0=f0, f0s=f0s)


def _dense_flow(Th, Ts, y, f0, f0s, t, eta):
    E = sla.expm(-eta * t * Th)
    r = y - f0
    g = (np.eye(len(Th)) - E) @ r
    return f0 + g, f0s + Ts @ np.linalg.solve(Th, g)


def test_flow_equals_dense_expm_formula(setup):
    s = setup
    times = np.array([0.0, 0.1, 1.0, 7.5, 50.0])
    eta = 0.7
    res = ntk_flow(s["Th"], s["Ts"], s["y"], s["f0"], s["f0s"], times, eta=eta, rtol=1e-12)
    assert res.converged, res.message
    assert res.train.shape == (5, 70) and res.test.shape == (5, 15)
    for i, t in enumerate(times):
        ftr, fte = _dense_flow(s["Th"], s["Ts"], s["y"], s["f0"], s["f0s"], t, eta)
        np.testing.assert_allclose(res.train[i], ftr, rtol=1e-8, atol=1e-8 * np.abs(ftr).max())
        np.testing.assert_allclose(res.test[i], fte, rtol=1e-8, atol=1e-8 * np.abs(fte).max())
    np.testing.assert_array_equal(res.train[0], s["f0"])  # t = 0: nothing moved
    assert np.all(res.error_estimate <= 1e-12)
    assert res.iterations < 70


def test_flow_with_lazy_kernel_operators_and_infinite_time_is_krr(setup):
    s = setup
    op = kernel_operator(s["k"], s["x"], backend="jax", reg=s["ridge"])
    opt = kernel_operator(s["k"], s["xs"], s["x"], backend="jax")
    res = ntk_flow(op, opt, s["y"], s["f0"], s["f0s"], [np.inf, 1e6], rtol=1e-12)
    assert res.converged
    krr = s["f0s"] + s["Ts"] @ np.linalg.solve(s["Th"], s["y"] - s["f0"])
    np.testing.assert_allclose(res.test[0], krr, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(res.test[1], krr, rtol=1e-8, atol=1e-9)  # e^{-ηλ_min t} negligible
    np.testing.assert_allclose(res.train[0], s["y"], atol=1e-9)  # interpolates at t = ∞


def test_flow_multi_output_equals_column_by_column(setup):
    s = setup
    Y = np.column_stack([s["y"], s["y"] ** 2])
    F0 = np.column_stack([s["f0"], -s["f0"]])
    F0s = np.column_stack([s["f0s"], -s["f0s"]])
    times = [0.5, 3.0]
    res = ntk_flow(s["Th"], s["Ts"], Y, F0, F0s, times, rtol=1e-12)
    assert res.train.shape == (2, 70, 2) and res.test.shape == (2, 15, 2)
    for j in range(2):
        rj = ntk_flow(s["Th"], s["Ts"], Y[:, j], F0[:, j], F0s[:, j], times, rtol=1e-12)
        np.testing.assert_allclose(res.test[..., j], rj.test, rtol=1e-10, atol=1e-12)


def test_singular_theta_finite_time_is_fine():
    """φ_t(λ) = (1 − e^{−ηλt})/λ is entire: a rank-deficient Θ is no problem at finite t."""
    rng = np.random.default_rng(1)
    F = rng.normal(size=(40, 5))
    Th = F @ F.T  # rank 5
    y = rng.normal(size=40)
    res = ntk_flow(Th, None, y, np.zeros(40), None, [2.0])
    ref = (np.eye(40) - sla.expm(-2.0 * Th)) @ y
    np.testing.assert_allclose(res.train[0], ref, atol=1e-9)
    assert res.status in ("invariant", "converged") and res.iterations <= 6
    assert res.test is None
    # ... but t = ∞ on a singular Θ has no answer: reported, never a silent NaN
    r_inf = ntk_flow(Th, None, y, np.zeros(40), None, [np.inf])
    assert r_inf.status == "singular" and not r_inf.converged and "ridge" in r_inf.message


def test_flow_reports_indefinite_and_bad_inputs():
    res = ntk_flow(np.diag([2.0, -1.0, 3.0]), None, np.ones(3), np.zeros(3), None, [1.0])
    assert res.status == "indefinite" and not res.converged and "positive semi-definite" in res.message
    with pytest.raises(ValueError, match="times"):
        ntk_flow(np.eye(3), None, np.ones(3), np.zeros(3), None, [-1.0])
    with pytest.raises(ValueError, match="f0_train: must have the shape of y"):
        ntk_flow(np.eye(3), None, np.ones(3), np.zeros(2), None, [1.0])
    with pytest.raises(ValueError, match="op_test_train: must have 3 columns"):
        ntk_flow(np.eye(3), np.ones((2, 4)), np.ones(3), np.zeros(3), None, [1.0])
    with pytest.raises(ValueError, match="eta"):
        ntk_flow(np.eye(3), None, np.ones(3), np.zeros(3), None, [1.0], eta=0.0)
