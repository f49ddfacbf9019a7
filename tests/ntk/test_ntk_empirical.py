"""Empirical metric-NTK: dense (jacrev) = explicit Jacobian product (jacfwd on the raveled θ) = lazy
operator (jvp/vjp) = neural-tangents; symmetry Θ_ijkl(x,x') = Θ_klij(x',x); positive semi-definiteness."""
import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import ntkflow  # noqa: F401
from ntkflow.ntk import (
    MLP,
    CosNet,
    FubiniStudyPhiMetric,
    GaussNet,
    IndependentMetric,
    KahlerPotentialMetric,
    ScalarModel,
    SharedMetric,
    empirical_ntk,
    empirical_ntk_operator,
    flat_matrix,
    nt_available,
    nt_empirical_ntk,
    ntk_tensor,
)

from _helpers import cpoints


def _models():
    return {
        "scalar-mlp-relu-L2": ScalarModel(MLP(3, (6, 5), "relu", n_out=2)),
        "independent-cos": IndependentMetric(CosNet(3, 7), 2),
        "shared-gauss": SharedMetric(GaussNet(3, 6, sigma_b1=0.3, n_out=3), 2),
        "shared-mlp-gelu": SharedMetric(MLP(3, (5,), "gelu", n_out=6), 3),
        "kahler-erf": KahlerPotentialMetric(MLP(4, (6,), "erf"), 2),
        "fs-phi-pullback": FubiniStudyPhiMetric(MLP(18, (5,), "erf"), 3, pullback=True),
    }


def _points(name, rng, n):
    if name.startswith("kahler"):
        return cpoints(rng, n, 2)
    if name.startswith("fs"):
        return (cpoints(rng, n, 3), cpoints(rng, n * 1, 3).reshape(n, 1, 3))
    return rng.normal(size=(n, 3))


def _explicit(model, params, x, y):
    """Reference: Θ = J_x J_yᵀ with J from jacfwd on the raveled trainable parameter vector."""
    tp, fp = model.split(params)
    v0, unravel = ravel_pytree(tp)

    def F(v, pts):
        return jax.vmap(lambda p: model.flat({**fp, **unravel(v)}, p))(pts).reshape(-1)

    J = jax.jit(jax.jacfwd(F))
    Jx = J(v0, x)  # (n·p, P)
    Jy = J(v0, y)
    return np.asarray(Jx @ Jy.T)


@pytest.mark.parametrize("name", [n if not n.startswith("fs") else pytest.param(n, marks=pytest.mark.slow)
                                  for n in _models()])
def test_dense_equals_explicit_jacobian_product_and_operator(name, rng):
    model = _models()[name]
    params = model.init(jax.random.PRNGKey(3))
    x, y = _points(name, rng, 3), _points(name, rng, 2)
    T = flat_matrix(empirical_ntk(model, params, x, y))
    ref = _explicit(model, params, x, y)
    assert T.shape == ref.shape == (3 * model.flat_size, 2 * model.flat_size)
    np.testing.assert_allclose(T, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())
    op = empirical_ntk_operator(model, params, x, y, chunk=3)
    V = rng.normal(size=(op.shape[1], 4))
    np.testing.assert_allclose(op.mm(V), ref @ V, rtol=1e-9, atol=1e-10 * np.abs(ref @ V).max())
    np.testing.assert_allclose(op.mv(V[:, 0]), ref @ V[:, 0], rtol=1e-9, atol=1e-10 * np.abs(ref).max())
    W = rng.normal(size=(op.shape[0], 2))
    np.testing.assert_allclose(op.T.mm(W), ref.T @ W, rtol=1e-9, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["independent-cos", "shared-mlp-gelu", "kahler-erf"])
def test_symmetry_and_psd(name, rng):
    model = _models()[name]
    params = model.init(jax.random.PRNGKey(5))
    x, y = _points(name, rng, 3), _points(name, rng, 4)
    Txy = ntk_tensor(model, empirical_ntk(model, params, x, y))  # (n, m, d, d, d, d)
    Tyx = ntk_tensor(model, empirical_ntk(model, params, y, x))
    # Θ_ijkl(x, x') = Θ_klij(x', x)
    np.testing.assert_allclose(Txy, Tyx.transpose(1, 0, 4, 5, 2, 3), atol=1e-12 * np.abs(Txy).max())
    K = flat_matrix(empirical_ntk(model, params, x))
    np.testing.assert_allclose(K, K.T, atol=1e-12 * np.abs(K).max())
    assert np.linalg.eigvalsh(K).min() > -1e-10 * np.abs(K).max()


def test_frozen_parameters_do_not_contribute():
    """Cos-net trained only in its readout: Θ = (σ_a²/N) Σ_i cos(b_i·x + c_i) cos(b_i·x' + c_i) exactly."""
    net = CosNet(2, 9, sigma_a=1.3, sigma_b=0.7, trainable=("a",))
    model = ScalarModel(net)
    p = model.init(jax.random.PRNGKey(0))
    x = np.random.default_rng(0).normal(size=(5, 2))
    feat = np.cos(0.7 / np.sqrt(2) * x @ np.asarray(p["b"]).T + np.asarray(p["c"]))
    np.testing.assert_allclose(empirical_ntk(model, p, x)[:, :, 0, 0], 1.3**2 / 9 * feat @ feat.T, rtol=1e-12)


def test_operator_never_needs_the_jacobian_shape_and_errors(rng):
    model = SharedMetric(MLP(3, (4,), "erf", n_out=3), 2)
    p = model.init(jax.random.PRNGKey(0))
    x = rng.normal(size=(5, 3))
    op = empirical_ntk_operator(model, p, x)
    assert op.shape == (20, 20) and op.T is op
    with pytest.raises(ValueError, match="needs 20 rows"):
        op.mv(np.ones(7))
    with pytest.raises(ValueError, match="chunk"):
        empirical_ntk_operator(model, p, x, chunk=0)
    with pytest.raises(ValueError, match="n_out"):
        SharedMetric(MLP(3, (4,), "erf", n_out=2), 2)
    with pytest.raises(ValueError, match="activation"):
        MLP(3, (4,), "tanh")


@pytest.mark.nt
def test_neural_tangents_empirical_ntk_agrees(rng):
    ok, why = nt_available()
    if not ok:
        pytest.skip(why)
    for model in (SharedMetric(MLP(3, (6, 4), "erf", n_out=3), 2),):
        p = model.init(jax.random.PRNGKey(1))
        x, y = rng.normal(size=(3, 3)), rng.normal(size=(4, 3))
        np.testing.assert_allclose(
            nt_empirical_ntk(model, p, x, y), empirical_ntk(model, p, x, y), rtol=1e-9, atol=1e-11
        )
