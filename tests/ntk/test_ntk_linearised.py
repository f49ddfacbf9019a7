"""Linearised model: f^L(θ₀) = f(θ₀), quadratic remainder; GD on f^L is exactly the frozen-kernel map
f ← f − (η/n)Θ₀(f − y); as η → 0 it converges to the solve_ivp solution of df/dt = −Θ₀(f − y)/n at
first order (fitted slope); held-out points follow frozen_ntk_prediction."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.ntk import (
    MLP,
    SharedMetric,
    empirical_ntk,
    flat_matrix,
    frozen_kernel_ode,
    frozen_ntk_prediction,
    linearize,
    train_gd,
    trainable_fn,
)


@pytest.fixture(scope="module")
def setup():
    model = SharedMetric(MLP(2, (16,), "erf", n_out=3), 2)
    params = model.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(5, 2))
    s = rng.uniform(-1, 1, size=(3, 2))
    y = rng.normal(size=(5, 4))
    y = 0.5 * (y + y[:, [0, 2, 1, 3]])  # symmetric targets
    K = flat_matrix(empirical_ntk(model, params, x))
    return model, params, x, s, y, K


def test_linearised_model_is_first_order_taylor(setup):
    model, params, x, *_ = setup
    f, th0 = trainable_fn(model, params)
    fl, _ = linearize(model, params)
    np.testing.assert_allclose(fl(th0, x[0]), f(th0, x[0]), atol=1e-14)
    d = jax.tree_util.tree_map(lambda a: jnp.ones_like(a) * 1e-2, th0)
    errs = []
    for h in (1.0, 0.5, 0.25):
        th = jax.tree_util.tree_map(lambda a, b: a + h * b, th0, d)
        errs.append(float(jnp.abs(fl(th, x[0]) - f(th, x[0])).max()))
    slope = np.polyfit(np.log([1.0, 0.5, 0.25]), np.log(errs), 1)[0]
    assert abs(slope - 2.0) < 0.15


def test_linear_gd_is_the_exact_discrete_frozen_kernel_map(setup):
    model, params, x, _, y, K = setup
    n, lr, steps = len(x), 0.3, 40
    res = train_gd(model, params, x, y, lr=lr, steps=steps, linear=True)
    f = res.outputs[0].reshape(-1)
    A = np.eye(len(f)) - lr / n * K
    for s in range(steps):
        f = y.reshape(-1) + A @ (f - y.reshape(-1))
    np.testing.assert_allclose(res.outputs[-1].reshape(-1), f, atol=1e-11)
    assert res.loss[-1] < res.loss[0]


def test_linear_gd_converges_to_frozen_kernel_ode_first_order(setup):
    model, params, x, s, y, K = setup
    T = 4.0
    errs, lrs = [], [0.2, 0.1, 0.05, 0.025]
    ode = None
    for lr in lrs:
        steps = int(round(T / lr))
        res = train_gd(model, params, x, y, lr=lr, steps=steps, linear=True, record_every=steps)
        if ode is None:
            ode = frozen_kernel_ode(K, res.outputs[0], y, [T])[0]
        errs.append(np.abs(res.outputs[-1] - ode).max())
    slope = np.polyfit(np.log(lrs), np.log(errs), 1)[0]
    assert abs(slope - 1.0) < 0.1, (slope, errs)
    # closed form (eigenbasis) = solve_ivp to integration accuracy
    fX, _ = frozen_ntk_prediction(K, K[:0], res.outputs[0], np.zeros((0, 4)), y, T)
    np.testing.assert_allclose(fX, ode, atol=1e-8)


def test_held_out_points_follow_frozen_ntk_prediction(setup):
    model, params, x, s, y, K = setup
    n, lr, T = len(x), 0.01, 2.0
    steps = int(T / lr)
    res = train_gd(model, params, x, y, lr=lr, steps=steps, linear=True, x_eval=s, record_every=steps)
    Ksx = flat_matrix(empirical_ntk(model, params, s, x))
    f0x = train_gd(model, params, x, y, lr=lr, steps=1, linear=True).outputs[0]
    _, fS = frozen_ntk_prediction(K, Ksx, f0x, res.outputs[0], y, T)
    assert np.abs(res.outputs[-1] - fS).max() < 2e-2 * np.abs(fS - res.outputs[0]).max()


def test_train_gd_errors_name_the_argument(setup):
    model, params, x, _, y, _ = setup
    with pytest.raises(ValueError, match="y: expected flat targets"):
        train_gd(model, params, x, y[:, :3])
    with pytest.raises(ValueError, match="lr"):
        train_gd(model, params, x, y, lr=-1.0)
