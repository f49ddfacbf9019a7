"""Monte-Carlo checks: analytic infinite-width kernels = averages over random finite networks.

For one-hidden-layer networks in NTK parameterisation, E[f(x) f(x')] (NNGP) and E[Σ_θ ∂_θ f(x) ∂_θ f(x')]
(NTK, by parameter group) equal the analytic kernels at *every* width, so the only error is Monte-Carlo
noise: we require agreement within 5 standard errors for every pair of points. Networks are drawn with
explicit jax.random keys and vmapped; gradients come from JAX autodiff (independent of the formulas).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkflow.engine import MLPNTK, CosNetNNGP, CosNetNTK, GaussNetNNGP, GaussNetNTK

N_NETS = 20_000
CHUNK = 2_000
WIDTH = 32
D = 3
Z_MAX = 5.0


def _points():
    return np.random.default_rng(31).normal(size=(4, D)) * 0.7


def _mc(init, fn, x, key):
    """Per-network samples of f f^T and of J_g J_g^T for each parameter group g: arrays (M, P, P)."""
    X = jnp.asarray(x)

    def one(k):
        params = init(k)
        f = lambda p: jax.vmap(fn, (None, 0))(p, X)  # noqa: E731
        out = f(params)
        J = jax.jacrev(f)(params)
        ntk = {g: (J[g].reshape(len(x), -1) @ J[g].reshape(len(x), -1).T) for g in J}
        return out[:, None] * out[None, :], ntk

    keys = jax.random.split(key, N_NETS).reshape(N_NETS // CHUNK, CHUNK, -1)
    ff, ntk = jax.lax.map(jax.jit(jax.vmap(one)), keys)
    ff = np.asarray(ff).reshape(N_NETS, len(x), len(x))
    ntk = {g: np.asarray(v).reshape(N_NETS, len(x), len(x)) for g, v in ntk.items()}
    return ff, ntk


def _zscore(samples, analytic):
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(len(samples))
    iu = np.triu_indices(analytic.shape[0])
    z = np.abs(mean - analytic)[iu] / np.maximum(se[iu], 1e-12 * np.abs(analytic).max())  # se = 0: exact terms
    return float(z.max())


# ---------------------------------------------------------------------------------------------
# cos-net
# ---------------------------------------------------------------------------------------------
SA, SB = 1.3, 1.6


def _cos_init(key):
    ka, kb, kc = jax.random.split(key, 3)
    return {
        "a": jax.random.normal(ka, (WIDTH,)),
        "b": jax.random.normal(kb, (WIDTH, D)),
        "c": jax.random.uniform(kc, (WIDTH,), minval=-jnp.pi, maxval=jnp.pi),
    }


def _cos_fn(p, x):
    return SA / jnp.sqrt(WIDTH) * jnp.sum(p["a"] * jnp.cos(SB / jnp.sqrt(D) * p["b"] @ x + p["c"]))


@pytest.fixture(scope="module")
def cos_samples():
    return _mc(_cos_init, _cos_fn, _points(), jax.random.PRNGKey(0))


def test_cosnet_nngp_monte_carlo(cos_samples):
    ff, _ = cos_samples
    x = _points()
    assert _zscore(ff, CosNetNNGP(SA, SB).dense(x, x)) < Z_MAX


@pytest.mark.parametrize("train", [("a",), ("c",), ("b",), ("a", "c"), ("a", "b", "c")])
def test_cosnet_ntk_monte_carlo(cos_samples, train):
    _, ntk = cos_samples
    x = _points()
    emp = sum(ntk[g] for g in train)
    assert _zscore(emp, CosNetNTK(SA, SB, train=train).dense(x, x)) < Z_MAX


# ---------------------------------------------------------------------------------------------
# gauss-net
# ---------------------------------------------------------------------------------------------
W0, B0, W1, B1 = 0.9, 0.4, 1.2, 0.3


def _gauss_init(key):
    k = jax.random.split(key, 4)
    return {
        "w0": jax.random.normal(k[0], (WIDTH, D)),
        "b0": jax.random.normal(k[1], (WIDTH,)),
        "w1": jax.random.normal(k[2], (WIDTH,)),
        "b1": jax.random.normal(k[3], ()),
    }


def _gauss_fn(p, x):
    h = jnp.exp(W0 / jnp.sqrt(D) * p["w0"] @ x + B0 * p["b0"] - B0**2 - W0**2 * jnp.sum(x * x) / D)
    return B1 * p["b1"] + W1 / jnp.sqrt(WIDTH) * jnp.sum(p["w1"] * h)


@pytest.fixture(scope="module")
def gauss_samples():
    return _mc(_gauss_init, _gauss_fn, _points(), jax.random.PRNGKey(1))


def test_gaussnet_nngp_monte_carlo(gauss_samples):
    ff, _ = gauss_samples
    x = _points()
    assert _zscore(ff, GaussNetNNGP(W0, B0, W1, B1).dense(x, x)) < Z_MAX


@pytest.mark.parametrize("train", [("w1",), ("b1",), ("b0",), ("w0",), ("w1", "b1", "b0", "w0")])
def test_gaussnet_ntk_monte_carlo(gauss_samples, train):
    _, ntk = gauss_samples
    x = _points()
    emp = sum(ntk[g] for g in train)
    assert _zscore(emp, GaussNetNTK(W0, B0, W1, B1, train=train).dense(x, x)) < Z_MAX


# ---------------------------------------------------------------------------------------------
# one-hidden-layer MLP (relu / erf / gelu)
# ---------------------------------------------------------------------------------------------
WS, BS = 1.4, 0.3
ACTS = {
    "relu": jax.nn.relu,
    "erf": jax.scipy.special.erf,
    "gelu": lambda t: jax.nn.gelu(t, approximate=False),
}


def _mlp_init(key):
    k = jax.random.split(key, 4)
    return {
        "W1": jax.random.normal(k[0], (WIDTH, D)),
        "b1": jax.random.normal(k[1], (WIDTH,)),
        "W2": jax.random.normal(k[2], (WIDTH,)),
        "b2": jax.random.normal(k[3], ()),
    }


@pytest.mark.parametrize("activation", list(ACTS))
def test_mlp_depth1_nngp_and_ntk_monte_carlo(activation):
    phi = ACTS[activation]

    def fn(p, x):
        h = phi(WS / jnp.sqrt(D) * p["W1"] @ x + BS * p["b1"])
        return WS / jnp.sqrt(WIDTH) * jnp.sum(p["W2"] * h) + BS * p["b2"]

    x = _points()
    ff, ntk = _mc(_mlp_init, fn, x, jax.random.PRNGKey(2))
    nngp = MLPNTK(1, activation, WS, BS, kind="nngp").dense(x, x)
    theta = MLPNTK(1, activation, WS, BS, kind="ntk").dense(x, x)
    assert _zscore(ff, nngp) < Z_MAX
    assert _zscore(sum(ntk.values()), theta) < Z_MAX
