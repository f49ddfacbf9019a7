"""The operator contract, each backend checked against the dense NumPy reference
(GPyTorch linear_operator test-battery pattern: each case supplies only "build it")."""
from __future__ import annotations

import numpy as np
import pytest

from ntkflow.engine import (
    DiagonalOperator,
    ProductOperator,
    DENSE_MAX_ENTRIES,
    DenseOperator,
    Gaussian,
    Identity,
    KeOpsCompileError,
    kernel_operator,
)

RTOL = 1e-10


def naive_gaussian(x, y, ell, var=1.0):
    """Loop reference, independent of every vectorised implementation."""
    K = np.empty((len(x), len(y)))
    for i in range(len(x)):
        for j in range(len(y)):
            K[i, j] = var * np.exp(-np.sum((x[i] - y[j]) ** 2) / (2 * ell**2))
    return K


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(137, 5))
    y = rng.normal(size=(91, 5))
    return x, y, rng.normal(size=91), rng.normal(size=(91, 4)), rng.normal(size=(137, 3))


def relerr(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_dense_reference_matches_naive_loop(data):
    x, y, *_ = data
    K = kernel_operator(Gaussian(1.7, 0.5), x, y, backend="dense").to_dense()
    assert relerr(K, naive_gaussian(x, y, 1.7, 0.5)) < 1e-14


@pytest.mark.parametrize("backend", ["keops", "jax", "dense"])
def test_backend_mv_mm_equal_dense(data, backend):
    x, y, v, V, _ = data
    k = Gaussian(1.3)
    K = naive_gaussian(x, y, 1.3)
    op = kernel_operator(k, x, y, backend=backend)
    assert op.shape == (137, 91)
    assert relerr(op.mv(v), K @ v) < RTOL
    assert relerr(op.mm(V), K @ V) < RTOL
    assert relerr(op @ V, K @ V) < RTOL


@pytest.mark.parametrize("backend", ["keops", "jax"])
def test_square_operator_with_ridge_and_diag(data, backend):
    x, *_ = data
    k = Gaussian(0.9, 2.0)
    A = kernel_operator(k, x, backend=backend, reg=0.25)
    Kd = naive_gaussian(x, x, 0.9, 2.0) + 0.25 * np.eye(len(x))
    assert relerr(A.to_dense(), Kd) < 1e-14
    E = np.eye(len(x))[:, :7]
    assert relerr(A.mm(E), Kd[:, :7]) < RTOL
    np.testing.assert_allclose(A.diag(), np.diag(Kd), rtol=1e-14)


def test_transpose_is_adjoint(data):
    x, y, _, _, W = data
    op = kernel_operator(Gaussian(1.1), x, y, backend="jax")
    assert op.T.shape == (91, 137)
    np.testing.assert_allclose(op.T.to_dense(), op.to_dense().T, rtol=1e-13)
    assert relerr(op.T.mm(W), op.to_dense().T @ W) < RTOL


def test_sum_with_scaled_identity(data):
    x, *_ = data
    A = kernel_operator(Gaussian(1.0), x, backend="jax")
    B = A + 0.5 * Identity(len(x))
    np.testing.assert_allclose(B.to_dense(), A.to_dense() + 0.5 * np.eye(len(x)), rtol=1e-14)
    np.testing.assert_allclose(B.diag(), A.diag() + 0.5)


def test_complex_rhs_on_real_operator(data):
    x, y, v, *_ = data
    op = kernel_operator(Gaussian(1.0), x, y, backend="jax")
    z = v + 1j * v[::-1]
    np.testing.assert_allclose(op.mv(z), op.to_dense() @ z, rtol=1e-12)


def test_dask_backend_equals_single_process(data, dask_client):
    x, y, v, V, _ = data
    K = naive_gaussian(x, y, 1.3)
    for inner in ("jax", "keops"):
        op = kernel_operator(Gaussian(1.3), x, y, backend="dask", inner=inner, client=dask_client, n_blocks=3)
        assert relerr(op.mm(V), K @ V) < RTOL
        assert relerr(op.mv(v), K @ v) < RTOL  # second call reuses the scattered points


def test_float32_is_opt_in_and_costs_accuracy(data):
    x, y, _, V, _ = data
    K = naive_gaussian(x, y, 1.3)
    op32 = kernel_operator(Gaussian(1.3), x, y, backend="keops", dtype=np.float32)
    err = relerr(op32.mm(V.astype(np.float32)), K @ V)
    # documented cost of float32: ~1e-7 relative on a matvec, never float64 accuracy
    assert 1e-9 < err < 1e-5
    assert kernel_operator(Gaussian(1.3), x, y).dtype == np.float64


def test_jax_tiles_do_not_change_the_answer(data):
    x, y, _, V, _ = data
    ref = naive_gaussian(x, y, 1.3) @ V
    for tile in (1, 7, 64, 1000):
        out = kernel_operator(Gaussian(1.3), x, y, backend="jax", tile=tile).mm(V)
        assert relerr(out, ref) < RTOL


# ------------------------------------------------------------------ bad input


def test_bad_inputs_give_clear_errors(data):
    x, y, v, *_ = data
    k = Gaussian(1.0)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"x: contains 1 NaN/inf"):
        kernel_operator(k, bad)
    with pytest.raises(ValueError, match="reg: must be finite and >= 0"):
        kernel_operator(k, x, reg=-1.0)
    with pytest.raises(ValueError, match="backend: expected one of"):
        kernel_operator(k, x, backend="cuda")
    with pytest.raises(ValueError, match=r"y: points must have the same dimension"):
        kernel_operator(k, x, y[:, :3])
    with pytest.raises(ValueError, match="reg: a ridge"):
        kernel_operator(k, x, y, reg=1.0)
    with pytest.raises(TypeError, match="kernel: expected an ntkflow.engine.Kernel"):
        kernel_operator(lambda a, b: 0, x)
    with pytest.raises(ValueError, match="lengthscale: must be > 0"):
        Gaussian(0.0)
    op = kernel_operator(k, x, y, backend="jax")
    with pytest.raises(ValueError, match=r"v: operator of shape \(137, 91\) needs 91 rows"):
        op.mv(np.ones(90))
    vv = v.copy()
    vv[0] = np.inf
    with pytest.raises(ValueError, match="v: contains 1 NaN/inf"):
        op.mv(vv)
    with pytest.raises(ValueError, match="x: received an empty point set"):
        kernel_operator(k, np.zeros((0, 3)))


def test_dense_backend_refuses_large_problems():
    x = np.zeros((20_000, 2))
    op = kernel_operator(Gaussian(1.0), x, backend="dense")
    with pytest.raises(MemoryError, match="DENSE_MAX_ENTRIES"):
        op.mv(np.ones(20_000))
    assert DENSE_MAX_ENTRIES < 20_000**2


def test_keops_failure_is_reported_clearly(data):
    x, y, v, *_ = data

    class Broken(Gaussian):
        def keops_apply(self, Xi, Yj, Vj, nrhs):
            return Xi.concat(Yj) * Vj.concat(Vj)  # dimensions 10 and 2: KeOps refuses

    with pytest.raises(KeOpsCompileError, match="failed to compile or run"):
        kernel_operator(Broken(1.0), x, y, backend="keops").mv(v)


def test_dense_operator_contract():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(6, 4))
    op = DenseOperator(M)
    np.testing.assert_array_equal(op.to_dense(), M)
    np.testing.assert_allclose(op.T.mm(np.eye(6)), M.T)
    with pytest.raises(ValueError, match="matrix: expected an array with ndim"):
        DenseOperator(np.ones(3))


def test_product_and_diagonal_operators_against_their_dense_forms():
    """ProductOperator (given by A·V and Aᵀ·U) and DiagonalOperator: mv, mm, T, diag and to_dense equal the
    dense matrix they stand for."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((7, 4))
    op = ProductOperator(7, 4, forward=lambda V: a @ V, adjoint=lambda U: a.T @ U)
    v, V, u = rng.standard_normal(4), rng.standard_normal((4, 3)), rng.standard_normal(7)
    np.testing.assert_allclose(op.mv(v), a @ v, rtol=1e-14)
    np.testing.assert_allclose(op.mm(V), a @ V, rtol=1e-14)
    np.testing.assert_allclose(op.T.mv(u), a.T @ u, rtol=1e-14)
    np.testing.assert_allclose(op.to_dense(), a, rtol=1e-14)
    d = rng.uniform(0.5, 2.0, 5)
    dop = DiagonalOperator(d)
    np.testing.assert_allclose(dop.to_dense(), np.diag(d), rtol=0)
    np.testing.assert_allclose(dop.diag(), d, rtol=0)
    np.testing.assert_allclose(dop.T.mm(np.eye(5)), np.diag(d), rtol=0)
