"""Infinite-width kernels (engine kernels via ntkflow.ntk.network_kernel) against Monte-Carlo averages
over 10⁴ random finite networks. For one hidden layer Θ_N = (1/N) Σ_i (iid terms), so E[Θ_N] = Θ̄ and
E[f(x)f(x')] = NNGP exactly at every width: the check is z = (mean − exact)/SEM, |z| < 5 for every entry."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.ntk import MLP, CosNet, GaussNet, ScalarModel, infinite_metric_ntk, network_kernel, ntk_jax

M_NETWORKS = 10_000

NETS = {
    "mlp-erf": MLP(3, (8,), "erf", sigma_w=1.4, sigma_b=0.3),
    "mlp-relu": MLP(3, (8,), "relu", sigma_w=1.2, sigma_b=0.2),
    "mlp-gelu": MLP(3, (8,), "gelu", sigma_w=1.1, sigma_b=0.4),
    "cos-net-abc": CosNet(3, 8, sigma_a=1.2, sigma_b=1.5, trainable=("a", "b", "c")),
    "cos-net-ac": CosNet(3, 8, sigma_a=0.8, sigma_b=2.0, trainable=("a", "c")),
    "gauss-net": GaussNet(3, 8, sigma_w0=0.9, sigma_b0=0.5, sigma_w1=1.1, sigma_b1=0.3),
}


@pytest.mark.parametrize("name", list(NETS))
def test_nngp_and_ntk_equal_monte_carlo_average(name):
    net = NETS[name]
    model = ScalarModel(net)
    x = jnp.asarray(np.random.default_rng(7).normal(size=(4, 3)) * 0.8)

    def one(key):
        p = model.init(key)
        f = jax.vmap(lambda xi: net.apply(p, xi)[0])(x)
        return jnp.outer(f, f), ntk_jax(model, p, x)[:, :, 0, 0]

    F2, TH = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(11), M_NETWORKS))
    iu = np.triu_indices(4)
    for samples, exact in (
        (np.asarray(F2), network_kernel(net, "nngp").dense(np.asarray(x), np.asarray(x))),
        (np.asarray(TH), network_kernel(net, "ntk").dense(np.asarray(x), np.asarray(x))),
    ):
        mean = samples.mean(0)
        sem = samples.std(0, ddof=1) / np.sqrt(M_NETWORKS)
        z = ((mean - exact) / np.maximum(sem, 1e-15))[iu]
        assert np.abs(z).max() < 5.0, (name, z)
    # and the model-level Θ̄ is that kernel
    np.testing.assert_allclose(infinite_metric_ntk(model, np.asarray(x))[:, :, 0, 0],
                               network_kernel(net).dense(np.asarray(x), np.asarray(x)), rtol=1e-12)


@pytest.mark.slow
def test_deep_mlp_ntk_converges_to_recursion():
    """Depth 2: E[Θ_N] = Θ̄ + O(1/N); at N = 256 over 400 networks the mean is within 2 % of Θ̄."""
    net = MLP(3, (256, 256), "erf", sigma_w=1.3, sigma_b=0.2)
    model = ScalarModel(net)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(3, 3)))
    TH = jax.jit(jax.vmap(lambda k: ntk_jax(model, model.init(k), x)[:, :, 0, 0]))(
        jax.random.split(jax.random.PRNGKey(0), 400)
    )
    exact = network_kernel(net).dense(np.asarray(x), np.asarray(x))
    assert np.abs(np.asarray(TH).mean(0) - exact).max() < 0.02 * np.abs(exact).max()
