"""Nyström/Falkon KRR, RPCholesky and the Nyström preconditioner against dense NumPy references."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from ntkflow.engine import Gaussian, SchedulerError
from ntkflow.solvers import (
    FalkonPreconditioner,
    NystromGram,
    krr_exact,
    nystrom_krr,
    nystrom_preconditioner,
    rpcholesky,
    select_centers,
)
from ntkflow.solvers.nystrom import _PreconditionedNystrom


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    n, d = 600, 3
    x = rng.normal(size=(n, d))
    y = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * rng.normal(size=n)
    return x, y, Gaussian(1.2)


def _dense_nystrom(kernel, x, y, C, lam):
    Knm = kernel.dense(x, C)
    Kmm = kernel.dense(C, C)
    H = Knm.T @ Knm + lam * len(x) * Kmm
    b = Knm.T @ y
    return H, b, np.linalg.solve(H, b)


@pytest.mark.parametrize("backend", ["jax", pytest.param("keops", marks=pytest.mark.slow), "dense"])
def test_nystrom_krr_equals_dense_solve_of_the_same_system(problem, backend):
    x, y, k = problem
    lam = 1e-3
    res = nystrom_krr(k, x, y, centers=60, reg=lam, backend=backend, seed=3, rtol=1e-11, maxiter=300)
    assert res.converged, res.cg.message
    H, b, beta = _dense_nystrom(k, x, y, res.centers, lam)
    # the reported relative residual is the true one of the ORIGINAL system
    rel = np.linalg.norm(H @ res.coefficients - b) / np.linalg.norm(b)
    assert res.relative_residual == pytest.approx(rel, rel=1e-2, abs=1e-13)
    assert rel <= 1e-11
    Knm = k.dense(x, res.centers)
    np.testing.assert_allclose(Knm @ res.coefficients, Knm @ beta, rtol=0, atol=1e-8 * np.abs(Knm @ beta).max())
    np.testing.assert_allclose(res.predict(x[:7]), Knm[:7] @ res.coefficients, rtol=1e-10)
    assert np.array_equal(res.centers, x[res.center_indices])


def test_nystrom_krr_multi_output_and_given_centers(problem):
    x, y, k = problem
    Y = np.column_stack([y, np.cos(x[:, 0])])
    C = x[::15]
    res = nystrom_krr(k, x, Y, centers=C, reg=1e-3, backend="jax", rtol=1e-10, maxiter=300)
    assert res.coefficients.shape == (len(C), 2) and res.converged
    for j in range(2):
        _, _, beta = _dense_nystrom(k, x, Y[:, j], C, 1e-3)
        np.testing.assert_allclose(k.dense(x, C) @ res.coefficients[:, j], k.dense(x, C) @ beta, atol=1e-7)
    assert res.center_indices is None and res.predict(x[:3]).shape == (3, 2)


def test_falkon_preconditioner_is_exact_when_centres_are_all_points():
    """m = n: K_nmᵀK_nm/n + λK_mm = Tᵀ(TTᵀ/n + λI)T exactly, so Bᵀ H' B = I (up to the jitter)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 2))
    k = Gaussian(0.2)  # K_mm well conditioned (λ_min ≈ 1e-4 ≫ the jitter)
    lam = 1e-2
    pre = FalkonPreconditioner.build(k, x, lam)
    W = _PreconditionedNystrom(NystromGram(k, x, x, backend="jax"), pre, len(x), lam).to_dense()
    np.testing.assert_allclose(W, np.eye(120), atol=1e-6)
    res = nystrom_krr(k, x, np.sin(x[:, 0]), centers=x, reg=lam, backend="jax", rtol=1e-8)
    assert res.converged and res.cg.iterations <= 2
    # T and A are the two upper Cholesky factors
    Kmm = k.dense(x, x) + pre.jitter * np.eye(120)
    np.testing.assert_allclose(pre.T.T @ pre.T, Kmm, atol=1e-10)
    np.testing.assert_allclose(pre.A.T @ pre.A, pre.T @ pre.T.T / 120 + lam * np.eye(120), atol=1e-10)


def _clustered(rng, n=1500, d=2):
    """One big cluster with 90 % of the points, 30 tiny far-away clusters (non-uniform data)."""
    big = rng.normal(scale=0.3, size=(int(0.9 * n), d))
    centres = rng.uniform(-20, 20, size=(30, d))
    small = centres[rng.integers(0, 30, size=n - len(big))] + rng.normal(scale=0.3, size=(n - len(big), d))
    return np.concatenate([big, small])


def _nystrom_error(K, S):
    """tr(K − K[:, S] K[S, S]⁺ K[S, :]) (≥ 0, Nyström approximation error)."""
    Ks = K[:, S]
    return float(np.trace(K - Ks @ np.linalg.pinv(K[np.ix_(S, S)], rcond=1e-12) @ Ks.T))


@pytest.mark.parametrize("block_size", [1, 8])
def test_rpcholesky_beats_uniform_on_clustered_data(block_size):
    rng = np.random.default_rng(2)
    x = _clustered(rng)
    k = Gaussian(1.0)
    K = k.dense(x, x)
    m = 40
    err_rpc = np.mean([
        _nystrom_error(K, select_centers(k, x, m, method="rpcholesky", seed=s, block_size=block_size)) for s in range(3)
    ])
    err_uni = np.mean([_nystrom_error(K, select_centers(k, x, m, method="uniform", seed=s)) for s in range(3)])
    assert err_rpc < 0.5 * err_uni, (err_rpc, err_uni)


def test_rpcholesky_factor_is_the_nystrom_approximation_of_its_pivots():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3))
    k = Gaussian(1.5)
    res = rpcholesky(k, x, 25, seed=np.random.default_rng(5))
    S = res.pivots
    assert len(set(S.tolist())) == 25 and res.factor.shape == (300, 25)
    K = k.dense(x, x)
    approx = K[:, S] @ np.linalg.solve(K[np.ix_(S, S)], K[S, :])
    np.testing.assert_allclose(res.factor @ res.factor.T, approx, atol=1e-8)
    assert res.trace_error[-1] == pytest.approx(np.trace(K - approx), abs=1e-8)
    assert np.all(np.diff(res.trace_error) <= 1e-12)
    # explicit randomness: same seed, same pivots
    assert np.array_equal(rpcholesky(k, x, 25, seed=7).pivots, rpcholesky(k, x, 25, seed=7).pivots)


def test_nystrom_preconditioner_is_woodbury_of_the_nystrom_approximation(problem):
    x, y, k = problem
    x = x[:200]
    lam = 1e-4
    P = nystrom_preconditioner(k, x, lam, m=30, backend="jax", seed=0)
    K = k.dense(x, x)
    C = P.centers
    Knm = k.dense(x, C)
    Khat = Knm @ np.linalg.solve(k.dense(C, C), Knm.T)
    ref = np.linalg.inv(Khat + lam * len(x) * np.eye(len(x)))
    np.testing.assert_allclose(P.to_dense(), ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max())
    assert np.all(np.linalg.eigvalsh(0.5 * (P.to_dense() + P.to_dense().T)) > 0)


def test_nystrom_preconditioned_exact_krr_converges_in_far_fewer_iterations(problem):
    x, y, k = problem
    lam = 1e-6
    pre = krr_exact(k, x, y, lam, precond="nystrom", m=120, centers_method="rpcholesky", backend="jax", seed=0, rtol=1e-8)
    plain = krr_exact(k, x, y, lam, precond=None, backend="jax", rtol=1e-8, maxiter=5000)
    assert pre.converged and plain.converged
    assert pre.cg.iterations * 5 <= plain.cg.iterations, (pre.cg.iterations, plain.cg.iterations)
    A = k.dense(x, x) + lam * len(x) * np.eye(len(x))
    alpha = np.linalg.solve(A, y)
    cond = np.linalg.cond(A)
    assert np.linalg.norm(pre.coefficients - alpha) <= 1e-8 * cond * np.linalg.norm(alpha)
    np.testing.assert_allclose(pre.predict(x[:5]), A[:5] @ pre.coefficients - lam * len(x) * pre.coefficients[:5], rtol=1e-9)


def test_bad_inputs_raise_clear_errors(problem):
    x, y, k = problem
    with pytest.raises(ValueError, match="reg: must be finite and >= 0"):
        nystrom_krr(k, x, y, centers=10, reg=-1.0)
    with pytest.raises(ValueError, match=r"m: cannot pick 700 centres among n = 600"):
        nystrom_krr(k, x, y, centers=700, reg=1e-3)
    with pytest.raises(ValueError, match=r"y: expected 600 rows"):
        nystrom_krr(k, x, y[:5], centers=10, reg=1e-3)
    with pytest.raises(ValueError, match="centers_method"):
        nystrom_krr(k, x, y, centers=10, reg=1e-3, centers_method="kmeans")
    with pytest.raises(ValueError, match="backend"):
        nystrom_krr(k, x, y, centers=10, reg=1e-3, backend="gpu")
    xb = x.copy()
    xb[3, 1] = np.nan
    with pytest.raises(ValueError, match="x: contains 1 NaN/inf"):
        nystrom_krr(k, xb, y, centers=10, reg=1e-3)
    with pytest.raises(ValueError, match="precond"):
        krr_exact(k, x, y, 1e-3, precond="jacobi")
    with pytest.raises(TypeError, match="seed"):
        select_centers(k, x, 5, seed="zero")


# ------------------------------------------------------------------------------------------
# float32 blocks (opt-in), dask workers, several JAX devices
# ------------------------------------------------------------------------------------------


def test_float32_blocks_product_and_honest_float64_residual(problem):
    x, y, k = problem
    C = x[::10]
    V = np.random.default_rng(4).normal(size=(len(C), 2))
    Knm = k.dense(x, C)
    ref = Knm.T @ (Knm @ V)
    g = NystromGram(k, x, C, backend="jax", tile=32)
    np.testing.assert_allclose(g.mm(V), ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    err32 = np.abs(g.mm_lowp(V) - ref).max() / np.abs(ref).max()
    assert 1e-10 < err32 < 1e-5, err32  # really float32 blocks, and still accurate to single precision
    res = nystrom_krr(k, x, y, centers=C, reg=1e-3, block_dtype="float32", rtol=1e-4, maxiter=200)
    H, b, _ = _dense_nystrom(k, x, y, C, 1e-3)
    rel = np.linalg.norm(H @ res.coefficients - b) / np.linalg.norm(b)
    assert res.relative_residual == pytest.approx(rel, rel=1e-6)  # the float64 residual, not the float32 one
    assert res.converged == (rel <= 1e-4)
    with pytest.raises(ValueError, match="block_dtype"):
        nystrom_krr(k, x, y, centers=C, reg=1e-3, block_dtype="float16")


def test_float32_refinement_reaches_the_float64_tolerance_plain_float32_cannot(problem):
    """refine=True: float64 iterative refinement around float32-block CG reaches a tolerance far below where
    plain float32 blocks stall, on the dense system's own residual; the history is the float64 residual after
    each refinement (each a real gain); refine needs float32 blocks."""
    x, y, k = problem
    C = x[::10]
    lam, rtol = 1e-6, 1e-9
    H, b, _ = _dense_nystrom(k, x, y, C, lam)
    plain = nystrom_krr(k, x, y, centers=C, reg=lam, block_dtype="float32", rtol=rtol, maxiter=400)
    ref = nystrom_krr(k, x, y, centers=C, reg=lam, block_dtype="float32", refine=True, rtol=rtol, maxiter=400)
    rel = lambda beta: np.linalg.norm(H @ beta - b) / np.linalg.norm(b)  # noqa: E731
    assert not plain.converged and rel(plain.coefficients) > 10 * rtol  # float32 blocks alone stall above rtol
    assert ref.converged, ref.cg.message
    assert rel(ref.coefficients) <= 2 * rtol and ref.relative_residual == pytest.approx(rel(ref.coefficients), rel=1e-3)
    h = np.asarray(ref.cg.history)
    assert len(h) >= 3 and np.all(np.diff(h) < 0) and h[0] == pytest.approx(np.linalg.norm(b))
    with pytest.raises(ValueError, match="refine"):
        nystrom_krr(k, x, y, centers=C, reg=lam, refine=True)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def test_nystrom_on_dask_workers_equals_in_process_and_scatters_once(problem, dask_client):
    x, y, k = problem
    C = x[::12]
    g = NystromGram(k, x, C, backend="dask", client=dask_client, n_blocks=3, tile=16)
    keys = [f.key for f in g._state["xf"]]
    assert len(keys) == 3
    V = np.random.default_rng(5).normal(size=(len(C), 2))
    Knm = k.dense(x, C)
    for _ in range(2):  # repeated products reuse the scattered blocks
        np.testing.assert_allclose(g.mm(V), Knm.T @ (Knm @ V), rtol=1e-12)
    assert [f.key for f in g._state["xf"]] == keys
    np.testing.assert_allclose(g.rmatmat(y[:, None]), Knm.T @ y[:, None], rtol=1e-12)
    GV, KY = g.mm_and_rmatmat(V, y[:, None])  # the fused first pass on the workers
    np.testing.assert_allclose(GV, Knm.T @ (Knm @ V), rtol=1e-12)
    np.testing.assert_allclose(KY, Knm.T @ y[:, None], rtol=1e-12)
    g.close()
    kw = dict(centers=C, reg=1e-3, rtol=1e-11, maxiter=300, tile=16)
    local = nystrom_krr(k, x, y, backend="jax", n_threads=2, **kw)
    dist = nystrom_krr(k, x, y, backend="dask", client=dask_client, **kw)  # one block per worker
    assert dist.converged and dist.cg.iterations == local.cg.iterations
    np.testing.assert_allclose(dist.coefficients, local.coefficients, rtol=1e-10, atol=0)
    # another split of the points (3 blocks): the fitted values agree (β itself only to cond(H)·rtol)
    dist3 = nystrom_krr(k, x, y, backend="dask", client=dask_client, n_blocks=3, **kw)
    np.testing.assert_allclose(Knm @ dist3.coefficients, Knm @ local.coefficients, rtol=1e-10,
                               atol=1e-10 * np.abs(Knm @ local.coefficients).max())
    # the warm start (int centres) on the workers equals the in-process one
    kw_w = dict(centers=50, seed=4, reg=1e-3, rtol=1e-11, maxiter=300, tile=16)
    local_w = nystrom_krr(k, x, y, backend="jax", n_threads=2, **kw_w)
    dist_w = nystrom_krr(k, x, y, backend="dask", client=dask_client, **kw_w)
    assert dist_w.warm_start_residual == pytest.approx(local_w.warm_start_residual, rel=1e-9)
    assert dist_w.converged and abs(dist_w.cg.iterations - local_w.cg.iterations) <= 1
    Kw = k.dense(x, local_w.centers)
    np.testing.assert_allclose(Kw @ dist_w.coefficients, Kw @ local_w.coefficients, rtol=0,
                               atol=1e-9 * np.abs(Kw @ local_w.coefficients).max())
    assert dask_client.status == "running"  # a client passed in is not closed
    ref = Knm[:5] @ dist.coefficients  # predictions are sums with cancellation: tolerance on their scale
    np.testing.assert_allclose(dist.predict(x[:5]), ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())  # in process


def test_exact_krr_on_dask_workers_equals_in_process(problem, dask_client):
    x, y, k = problem
    x, y = x[:300], y[:300]
    kw = dict(precond="nystrom", m=60, seed=1, rtol=1e-12, maxiter=500)
    local = krr_exact(k, x, y, 1e-4, backend="jax", **kw)
    dist = krr_exact(k, x, y, 1e-4, backend="dask", client=dask_client, n_blocks=3, **kw)
    assert dist.converged and local.converged
    np.testing.assert_allclose(dist.coefficients, local.coefficients, rtol=1e-10, atol=0)
    alpha = np.linalg.solve(k.dense(x, x) + 1e-4 * len(x) * np.eye(len(x)), y)
    np.testing.assert_allclose(dist.coefficients, alpha, rtol=1e-7, atol=1e-7 * np.abs(alpha).max())


_SHARDED_CHECK = r"""
import json, sys
import numpy as np
import jax
import ntkflow
from ntkflow.engine import Gaussian
from ntkflow.solvers import NystromGram, nystrom_krr
assert len(jax.devices()) == 4, jax.devices()
rng = np.random.default_rng(0)
x = rng.normal(size=(503, 3)); y = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2]
k = Gaussian(1.2); C = x[::9]
V = rng.normal(size=(len(C), 2))
Knm = k.dense(x, C)
ref = Knm.T @ (Knm @ V)
g = NystromGram(k, x, C, backend="jax", devices=4, tile=16)
out = {"devices": len({d for d in g._state["xs"].sharding.device_set}),
       "gram": float(np.abs(g.mm(V) - ref).max() / np.abs(ref).max()),
       "rhs": float(np.abs(g.rmatmat(y[:, None]) - Knm.T @ y[:, None]).max() / np.abs(Knm.T @ y).max())}
one = nystrom_krr(k, x, y, centers=C, reg=1e-3, rtol=1e-11, maxiter=300, n_threads=1)
four = nystrom_krr(k, x, y, centers=C, reg=1e-3, rtol=1e-11, maxiter=300, devices=4)
out["coef"] = float(np.abs(four.coefficients - one.coefficients).max() / np.abs(one.coefficients).max())
out["iterations"] = [one.cg.iterations, four.cg.iterations]
GV, KY = g.mm_and_rmatmat(V, y[:, None])
out["both"] = max(float(np.abs(GV - ref).max() / np.abs(ref).max()), float(np.abs(KY - Knm.T @ y[:, None]).max() / np.abs(Knm.T @ y).max()))
one_w = nystrom_krr(k, x, y, centers=56, seed=2, reg=1e-3, rtol=1e-11, maxiter=300, n_threads=1)
four_w = nystrom_krr(k, x, y, centers=56, seed=2, reg=1e-3, rtol=1e-11, maxiter=300, devices=4)
out["warm"] = [one_w.warm_start_residual, four_w.warm_start_residual]
out["coef_warm"] = float(np.abs(four_w.coefficients - one_w.coefficients).max() / np.abs(one_w.coefficients).max())
out["jax"] = jax.__version__
print(json.dumps(out))
"""


def test_fused_pass_sharded_over_four_forced_host_devices_equals_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    script = tmp_path / "sharded_nystrom.py"
    script.write_text(_SHARDED_CHECK)
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    assert out["gram"] < 1e-12 and out["rhs"] < 1e-12, out
    assert out["coef"] < 1e-10 and abs(out["iterations"][0] - out["iterations"][1]) <= 1, out  # stop at rtol: ±1
    assert out["both"] < 1e-12 and out["coef_warm"] < 1e-10, out  # the fused first pass, sharded; warm start
    assert out["warm"][0] == pytest.approx(out["warm"][1], rel=1e-8) and out["warm"][0] < 1.0, out


def test_device_and_cluster_arguments_are_checked(problem):
    x, y, k = problem
    with pytest.raises(ValueError, match="devices: a device mesh needs backend='jax'"):
        NystromGram(k, x, x[:10], backend="dense", devices=2)
    with pytest.raises(ValueError, match="client, scheduler: a dask cluster needs backend='dask'"):
        NystromGram(k, x, x[:10], backend="jax", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="devices: asked for 64"):
        NystromGram(k, x, x[:10], backend="jax", devices=64)


def test_unreachable_scheduler_fails_fast_naming_the_address(problem):
    x, y, k = problem
    t0 = time.perf_counter()
    with pytest.raises(SchedulerError, match=r"tcp://127\.0\.0\.1:9"):
        nystrom_krr(k, x, y, centers=10, reg=1e-3, backend="dask", scheduler="tcp://127.0.0.1:9", timeout=1.0)
    with pytest.raises(SchedulerError, match=r"tcp://127\.0\.0\.1:9"):
        krr_exact(k, x, y, 1e-3, backend="dask", scheduler="tcp://127.0.0.1:9", timeout=1.0)
    assert time.perf_counter() - t0 < 30


def test_preconditioner_sample_is_the_dense_formula_and_cuts_iterations():
    """A = chol((T Tᵀ + L_sᵀL_s)/(m + s) + λI), L_s = K_sm T⁻¹, against dense NumPy; fewer CG iterations."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3000, 4))
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * rng.normal(size=3000)
    k = Gaussian(2.0)
    lam = 1e-6
    C, S = x[:150], x[150:450]
    pre = FalkonPreconditioner.build(k, C, lam, sample=S)
    T = pre.T
    L = np.linalg.solve(T.T, k.dense(S, C).T).T  # (s, m) K_sm T⁻¹
    E = (T @ T.T + L.T @ L) / (150 + 300) + lam * np.eye(150)
    np.testing.assert_allclose(pre.A.T @ pre.A, E, rtol=1e-9, atol=1e-12)
    runs = {s: nystrom_krr(k, x, y, centers=150, reg=lam, pre_sample=s, seed=1, rtol=1e-8, maxiter=500) for s in (0, 600)}
    H, b, _ = _dense_nystrom(k, x, y, runs[0].centers, lam)
    for r in runs.values():  # the same system is solved either way
        assert r.converged and np.linalg.norm(H @ r.coefficients - b) <= 1.01e-8 * np.linalg.norm(b)
    assert runs[600].cg.iterations < 0.8 * runs[0].cg.iterations, (runs[600].cg.iterations, runs[0].cg.iterations)
    with pytest.raises(ValueError, match="pre_sample"):
        nystrom_krr(k, x, y, centers=150, reg=lam, pre_sample=-1)


def test_fused_first_pass_equals_the_two_dense_products(problem):
    """mm_and_rmatmat(V, Y) = (K_nmᵀK_nm V, K_nmᵀ Y) from one pass; threads with padded tiles, and the
    two-call fallback of the dense backend."""
    x, y, k = problem
    rng = np.random.default_rng(4)
    C = x[::7]
    V, Y = rng.normal(size=(len(C), 2)), np.column_stack([y, rng.normal(size=len(x))])
    Knm = k.dense(x, C)
    for kw in ({"backend": "jax", "n_threads": 2, "tile": 16}, {"backend": "dense"}):
        GV, KY = NystromGram(k, x, C, **kw).mm_and_rmatmat(V, Y)
        np.testing.assert_allclose(GV, Knm.T @ (Knm @ V), rtol=1e-12, atol=1e-12 * np.abs(Knm.T @ Knm @ V).max())
        np.testing.assert_allclose(KY, Knm.T @ Y, rtol=1e-12, atol=1e-12 * np.abs(Knm.T @ Y).max())


def test_warm_start_is_the_rows_krr_solution_and_cuts_iterations():
    """β₀ = (((K_mm + jI)² + K_smᵀK_sm)/r + λ(K_mm + jI))⁻¹ (K_mm y_C + K_smᵀ y_s)/r by dense NumPy; from β₀
    CG solves the same full system to the same tolerance in fewer iterations, and a column whose β₀ is
    worse than 0 starts from 0."""
    from ntkflow.solvers.nystrom import _rows_solution

    rng = np.random.default_rng(11)
    n, m, lam = 4000, 150, 1e-6
    x = rng.normal(size=(n, 4))
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * rng.normal(size=n)
    k = Gaussian(2.0)
    C, S = x[:m], x[m:m + 600]
    pre = FalkonPreconditioner.build(k, C, lam, sample=S)
    Kmm, Ksm = k.dense(C, C) + pre.jitter * np.eye(m), k.dense(S, C)
    r = m + len(S)
    M = (Kmm @ Kmm + Ksm.T @ Ksm) / r + lam * Kmm
    rhs = (k.dense(C, C) @ y[:m] + Ksm.T @ y[m:m + 600]) / r
    got = _rows_solution(k, pre, C, y[:m, None], S, y[m:m + 600, None])[:, 0]
    # cond(K_mm) ≈ 1e9, cond(M) far larger: the normwise backward error is the stable measure (a wrong
    # formula — β₀ scaled by r/m, the sample left out of the rhs or of A — gives 3e-8 … 5e-7; this 4e-17)
    backward = np.linalg.norm(M @ got - rhs) / (np.linalg.norm(M, 2) * np.linalg.norm(got) + np.linalg.norm(rhs))
    assert backward < 1e-12, backward

    runs = {w: nystrom_krr(k, x, y, centers=m, reg=lam, pre_sample=600, seed=2, rtol=1e-8, maxiter=500, warm_start=w)
            for w in (False, True)}
    H, b, _ = _dense_nystrom(k, x, y, runs[True].centers, lam)
    for res in runs.values():
        assert res.converged and np.linalg.norm(H @ res.coefficients - b) <= 1.01e-8 * np.linalg.norm(b)
        assert res.relative_residual == pytest.approx(np.linalg.norm(H @ res.coefficients - b) / np.linalg.norm(b), rel=1e-2)
    assert runs[False].warm_start_residual is None and "warm_start" not in runs[False].timings
    assert runs[True].warm_start_residual < 0.2, runs[True].warm_start_residual  # measured ≈ 0.03
    assert runs[True].cg.iterations < runs[False].cg.iterations, (runs[True].cg.iterations, runs[False].cg.iterations)

    # y = 1 on the preconditioner's rows only: β₀ fits r rows as if they were all n, H β₀ ≈ (n/r) b -> worse than 0
    idx = runs[True].center_indices
    Y = np.column_stack([y, np.zeros(n)])
    Y[idx, 1] = 1.0
    res = nystrom_krr(k, x, Y, centers=m, reg=lam, pre_sample=0, seed=2, rtol=1e-8, maxiter=500)
    assert np.array_equal(res.center_indices, idx)
    assert res.warm_start_residual[0] < 1.0 and res.warm_start_residual[1] == 1.0, res.warm_start_residual
    for j in range(2):
        H, b, _ = _dense_nystrom(k, x, Y[:, j], res.centers, lam)
        assert np.linalg.norm(H @ res.coefficients[:, j] - b) <= 1.01e-8 * np.linalg.norm(b)
    with pytest.raises(TypeError, match="warm_start: expected True or False"):
        nystrom_krr(k, x, y, centers=m, reg=lam, warm_start="yes")
