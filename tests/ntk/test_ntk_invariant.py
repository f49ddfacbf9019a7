"""Θ̄ = Σ a_k u^k on the C*-invariant features z z̄ᵀ/|z|²: features, κ(u) against the engine's MLP
recursion, FFT weights against closed forms, the tail bound, Monte-Carlo over 10⁴ random networks,
and neural-tangents as an independent reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.ntk import (
    MLP,
    CosNet,
    GaussNet,
    ScalarModel,
    closed_form_weights,
    invariant_features,
    invariant_kappa,
    invariant_weights,
    network_kernel,
    nt_available,
    ntk_jax,
)

from _helpers import cpoints


def _u(Z):
    G = np.abs(Z.conj() @ Z.T) ** 2
    nrm = np.sum(np.abs(Z) ** 2, 1)
    return G / np.outer(nrm, nrm)


def test_invariant_features_give_u_and_are_cstar_invariant(rng):
    Z = cpoints(rng, 5, 3)
    F = np.asarray(jax.vmap(invariant_features)(jnp.asarray(Z)))
    d = F.shape[1]
    assert d == 18
    np.testing.assert_allclose(F @ F.T / d, _u(Z), atol=1e-13)
    F2 = np.asarray(jax.vmap(invariant_features)(jnp.asarray(Z * (2.0 - 1.5j))))
    np.testing.assert_allclose(F2, F, atol=1e-13)


@pytest.mark.parametrize("act", ["erf", "relu", "gelu"])
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("kind", ["ntk", "nngp"])
def test_kappa_equals_engine_mlp_recursion_on_features(act, depth, kind, rng):
    net = MLP(18, (4,) * depth, act, sigma_w=1.3, sigma_b=0.25)
    F = np.asarray(jax.vmap(invariant_features)(jnp.asarray(cpoints(rng, 6, 3))))
    K = network_kernel(net, kind).dense(F, F)
    U = F @ F.T / 18
    np.fill_diagonal(U, 1.0)  # u(z, z) = 1 exactly (relu's arccos turns a 1e-16 error in u into 1e-8)
    np.testing.assert_allclose(invariant_kappa(net, U, kind=kind), K, rtol=1e-11, atol=1e-13)


NETS = {
    "cos-abc": CosNet(8, 4, sigma_a=1.1, sigma_b=1.7, trainable=("a", "b", "c")),
    "cos-c": CosNet(8, 4, sigma_a=0.9, sigma_b=0.6, trainable=("c",)),
    "gauss-all": GaussNet(8, 4, sigma_w0=1.2, sigma_b0=0.4, sigma_w1=0.8, sigma_b1=0.3),
    "gauss-w0": GaussNet(8, 4, sigma_w0=0.7, trainable=("w0", "b1")),
}


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("kind", ["ntk", "nngp"])
def test_fft_weights_equal_closed_forms(name, kind):
    net = NETS[name]
    w = invariant_weights(net, 30, kind=kind)
    np.testing.assert_allclose(w.weights, closed_form_weights(net, 30, kind=kind), atol=1e-13)


@pytest.mark.parametrize("net", [MLP(8, (4,), "erf"), MLP(8, (4, 4), "relu", sigma_w=1.4), MLP(8, (4,), "gelu"),
                                 NETS["cos-abc"], NETS["gauss-all"]])
def test_weights_nonnegative_and_series_within_tail(net):
    w = invariant_weights(net, 40)
    assert w.weights.min() > -1e-12
    assert w.tail >= -1e-12
    u = np.linspace(0, 1, 101)
    kap = np.real(invariant_kappa(net, u))
    assert np.all(np.abs(kap - w(u)) <= w.tail + 1e-11)
    assert w.error.max() < 1e-10


@pytest.mark.parametrize("net", [MLP(18, (8,), "erf", sigma_w=1.5, sigma_b=0.2),
                                 MLP(18, (8,), "gelu", sigma_w=1.2, sigma_b=0.3),
                                 CosNet(18, 8, sigma_a=1.0, sigma_b=1.5, trainable=("a", "b", "c")),
                                 GaussNet(18, 8, sigma_w0=1.0, sigma_b0=0.5, sigma_w1=1.0, sigma_b1=0.2)])
def test_weights_against_monte_carlo_networks(net, rng):
    """Mean scalar NTK over 10⁴ one-hidden-layer networks on F(z) equals Σ_{k≤60} a_k u^k (|z| < 5, the
    truncation tail κ(1) − Σ a_k added to the tolerance)."""
    Z = cpoints(rng, 5, 3)
    F = jax.vmap(invariant_features)(jnp.asarray(Z))
    model = ScalarModel(net)
    K = np.asarray(jax.jit(jax.vmap(lambda k: ntk_jax(model, model.init(k), F)[:, :, 0, 0]))(
        jax.random.split(jax.random.PRNGKey(5), 10_000)))
    w = invariant_weights(net, 60)
    assert w.tail < 1e-4
    mean, sem = K.mean(0), K.std(0, ddof=1) / np.sqrt(len(K))
    dev = np.abs(mean - w(_u(Z)))[np.triu_indices(5)]
    assert np.all(dev < 5.0 * sem[np.triu_indices(5)] + w.tail)


def test_projective_mixture_kernel_if_engine_provides_it(rng):
    import ntkflow.engine as E

    if not hasattr(E, "ProjectiveMixture"):
        pytest.skip("ntkflow.engine.ProjectiveMixture not available in this checkout")
    from ntkflow.ntk import invariant_feature_kernel

    net = MLP(18, (4,), "gelu", sigma_w=1.2, sigma_b=0.3)
    k = invariant_feature_kernel(net, 40)
    Z = cpoints(rng, 4, 3)
    np.testing.assert_allclose(np.real(k.dense(Z, Z)), invariant_kappa(net, _u(Z)), atol=1e-8)


@pytest.mark.nt
@pytest.mark.parametrize("act", ["erf", "relu", "gelu"])
def test_kappa_against_neural_tangents(act, rng):
    ok, why = nt_available()
    if not ok:
        pytest.skip(why)
    from neural_tangents import stax

    a = {"erf": stax.Erf(), "relu": stax.Relu(), "gelu": stax.Gelu(approximate=False)}[act]
    layers = [stax.Dense(1, W_std=1.3, b_std=0.2, parameterization="ntk"), a] * 2
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1, W_std=1.3, b_std=0.2, parameterization="ntk"))
    Z = cpoints(rng, 5, 3)
    F = jax.vmap(invariant_features)(jnp.asarray(Z))
    k = kernel_fn(F, F, ("ntk", "nngp"))
    net = MLP(18, (4, 4), act, sigma_w=1.3, sigma_b=0.2)
    u = _u(Z)
    np.testing.assert_allclose(invariant_kappa(net, u), np.asarray(k.ntk), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(invariant_kappa(net, u, kind="nngp"), np.asarray(k.nngp), rtol=1e-6, atol=1e-9)
    w = invariant_weights(net, 60)
    assert np.abs(w(u) - np.asarray(k.ntk)).max() <= w.tail + 1e-6


def test_engine_dzdwbar_of_invariant_mixture_equals_autodiff_of_kappa(rng):
    """Θ_ab̄(z, w) = ∂_{z_a}∂̄_{w_b} κ(u(z, w)): the engine's DzDwBar on our ProjectiveMixture against
    JAX autodiff (mixed real Hessian, Wirtinger-combined) of the exact κ."""
    import ntkflow.engine as E

    if not hasattr(E, "DzDwBar"):
        pytest.skip("ntkflow.engine.DzDwBar not available in this checkout")
    from ntkflow.ntk import invariant_feature_kernel, invariant_scalar_kernel, wirtinger_ddbar
    from ntkflow.ntk.metrics import realify_point

    net = MLP(18, (4,), "gelu", sigma_w=1.2, sigma_b=0.3)
    Z, W = cpoints(rng, 2, 3), cpoints(rng, 2, 3)
    K = E.DzDwBar(invariant_feature_kernel(net, 60), 3).dense(Z, W)  # (2, 2, 3, 3)
    k = invariant_scalar_kernel(net)
    for i in range(2):
        for j in range(2):
            xr, yr = realify_point(jnp.asarray(Z[i])), realify_point(jnp.asarray(W[j]))
            Hxy = jax.jacfwd(jax.grad(k, argnums=0), argnums=1)(xr, yr)  # (6, 6) ∂²/∂x∂y
            ref = wirtinger_ddbar(Hxy)  # ∂_{z_a} ∂̄_{w_b}: same ¼[..] combination on the cross block
            np.testing.assert_allclose(K[i, j], ref, atol=1e-8 * np.abs(ref).max())


def test_infinite_metric_kernel_is_engine_nomixing_and_matches_dense(rng):
    from ntkflow.engine import kernel_operator
    from ntkflow.ntk import SharedMetric, infinite_metric_kernel, infinite_metric_ntk

    model = SharedMetric(MLP(2, (4,), "erf", n_out=3), 2)
    x = rng.normal(size=(5, 2))
    op = kernel_operator(infinite_metric_kernel(model), x, backend="jax")
    dense = infinite_metric_ntk(model, x)  # (5, 5, 4, 4) on g.reshape(4): components (11, 12, 21, 22)
    comp = dense[:, :, [0, 1, 3]][:, :, :, [0, 1, 3]]  # upper-triangle components (11, 12, 22)
    np.testing.assert_allclose(op.to_dense(), comp.transpose(0, 2, 1, 3).reshape(15, 15), atol=1e-12)
