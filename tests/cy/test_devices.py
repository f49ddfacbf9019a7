"""Several devices (issue #12): the points axis sharded over a JAX device mesh gives the one-device
(and the NumPy backend's) loss, normal equations, Levenberg–Marquardt steps and held-out σ, for the
matrix-free primal form and the dual form's products (n = 1001: padded to whole blocks).

The equality checks run ``sharded_check.py`` in a subprocess with 4 forced host devices
(XLA_FLAGS=--xla_force_host_platform_device_count=4 must be set before jax is imported); the helpers'
argument checks run here, on this process's devices.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.cy import matrixfree as mf
from ntkflow.cy.config import BergmanMethod, CYConfig, DataConfig, DualMethod
from ntkflow.cy.distributed import ClusterSettings
from ntkflow.cy.job import run_cy
from ntkflow.engine.devices import (describe_mesh, device_mesh, local_blocks, padded_length, parse_devices,
                                    shard_points)
from ntkflow.manifolds import preset, sample

D = 4
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """Results of sharded_check.py with 4 forced host devices (one subprocess for the module)."""
    tmp = tmp_path_factory.mktemp("devices")
    out = tmp / "results.json"
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={D}", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "sharded_check.py"), str(out), str(tmp)],
                          env=env, capture_output=True, text=True, timeout=1200, cwd=str(tmp))
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out) as f:
        return json.load(f)


# ---- the equality checks (4 forced host devices) ----------------------------------------------------------


def test_features_are_split_in_equal_blocks_one_per_device_with_padding(sharded):
    assert sharded["devices"] == D
    for case in sharded["primal"]:
        assert case["n"] % D != 0  # padded
        assert case["rows"] == -(-case["n"] // D) * D
        assert case["sharding"] == ["points"] and case["n_shards"] == D
        assert case["shard_rows"] == [case["rows"] // D]


@pytest.mark.parametrize("case", [0, 1], ids=["identity", "log"])
def test_sharded_loss_normal_equations_and_diagonal_equal_one_device(sharded, case):
    c = sharded["primal"][case]
    ref, one, shd = c["loss"]
    assert abs(one / ref - 1) < 1e-10 and abs(shd / ref - 1) < 1e-10  # loss divides by the true n
    assert c["initial"] < 1e-10 and c["residual"] < 1e-10 and c["weights"] == 0.0
    assert c["normal_equations"]  # the driver receives only parameter-sized vectors
    # JᵀWr/n and JᵀWJV/n against the NumPy Linearisation's J and Jᵀ products
    assert c["grad_scale"] > 1e-3 and c["grad"] < 1e-10
    assert c["gram"] < 1e-10 and c["gram_symmetric"] < 1e-12
    assert c["diag"] < 1e-10


@pytest.mark.parametrize("case", [0, 1], ids=["identity", "log"])
def test_sharded_levenberg_marquardt_steps_and_held_out_sigma_equal_one_device(sharded, case):
    c = sharded["primal"][case]
    assert c["step_theta"]["one"] < 1e-10 and c["step_theta"]["shd"] < 1e-10
    ref = np.array(c["step_loss"]["ref"])
    assert ref[-1] < ref[0]  # the steps do something
    np.testing.assert_allclose(c["step_loss"]["shd"], ref, rtol=1e-10)
    np.testing.assert_allclose(c["step_loss"]["one"], ref, rtol=1e-10)
    assert c["cg_iterations"]["shd"] == c["cg_iterations"]["ref"]
    s_ref, s_shd = c["sigma_test"]
    assert abs(s_shd / s_ref - 1) < 1e-10


@pytest.mark.parametrize("mode", ["lazy", "dense"])
def test_sharded_dual_products_and_steps_equal_one_device(sharded, mode):
    c = sharded["dual"]
    assert c["mode"] == "sharded" and c["normal_equations"]
    d = c[mode]
    assert d["grad"] < 1e-10 and d["gram"] < 1e-10 and d["diag"] < 1e-10
    ref, shd = (np.array(x) for x in d["step_loss"])
    assert ref[-1] < ref[0]
    np.testing.assert_allclose(shd, ref, rtol=1e-10)
    assert d["step_theta"] < 1e-10
    assert abs(d["sigma_test"][1] / d["sigma_test"][0] - 1) < 1e-10


def test_strided_jacobi_subset_on_many_points_is_the_one_device_subset(sharded):
    j = sharded["jacobi"]
    assert j["n"] > mf.JACOBI_MAX_POINTS and j["rows"] % (D * -(-j["n"] // mf.JACOBI_MAX_POINTS)) == 0
    assert j["strided_vs_exact"] > 1e-6  # the subset really is a subset: its estimate differs from the exact
    assert j["strided"] < 1e-10 and j["exact"] < 1e-10


def test_job_with_devices_equals_the_one_process_job_and_records_the_devices(sharded):
    one, shd = sharded["job"]["one"], sharded["job"]["shd"]
    assert abs(shd["sigma_test"] / one["sigma_test"] - 1) < 1e-10
    assert abs(shd["sigma_train"] / one["sigma_train"] - 1) < 1e-10
    np.testing.assert_allclose(shd["losses"], one["losses"], rtol=1e-10)
    assert one["devices"] is None
    assert shd["devices"]["count"] == D and shd["devices"]["sharded"] and shd["devices"]["kinds"] == ["cpu"]
    assert shd["fingerprint"] == one["fingerprint"]  # where the products run is not part of the trajectory


# ---- the helpers on this process's devices -------------------------------------------------------------


def test_device_mesh_refuses_more_devices_than_visible_and_says_how():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=rf"devices: asked for {n + 3}, {n} visible.*xla_force_host_platform_device_count={n + 3}"):
        device_mesh(n + 3)
    assert device_mesh("all").size == n and device_mesh(None).size == n and device_mesh(1).size == 1
    for bad in (0, -2, "two", 1.5, True):
        with pytest.raises(ValueError, match="devices: expected a positive integer or 'all'"):
            parse_devices(bad)
    assert parse_devices("3") == 3 and parse_devices("all") == "all"


def test_padding_and_local_blocks_on_one_device():
    mesh = device_mesh(1)
    assert padded_length(7, mesh) == 7 and padded_length(7, mesh, multiple=3) == 9
    x = np.arange(14.0).reshape(7, 2)
    first = np.asarray(shard_points(x, mesh, length=9))
    zeros = np.asarray(shard_points(x, mesh, length=9, pad="zeros"))
    np.testing.assert_array_equal(first, np.r_[x, x[:1], x[:1]])
    np.testing.assert_array_equal(zeros, np.r_[x, np.zeros((2, 2))])
    assert local_blocks(shard_points(x, mesh), mesh).shape == (1, 7, 2)
    with pytest.raises(ValueError, match="length: expected a multiple"):
        shard_points(x, mesh, length=5)
    with pytest.raises(ValueError, match="pad: expected"):
        shard_points(x, mesh, pad="edge")
    info = describe_mesh(mesh)
    assert info["count"] == 1 and info["sharded"] and describe_mesh(None)["sharded"] is False


def test_one_device_mesh_problem_equals_the_unsharded_problem():
    """devices=1 (no padding): the NormalEquations path equals the Linearisation path here too."""
    ps = sample(preset("fermat-quintic"), 400, seed=3)
    args = (ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 2)
    a, b = mf.PrimalProblem(*args), mf.PrimalProblem(*args, backend="jax", devices=1)
    v = a.initial() + 1e-4 * np.random.default_rng(0).normal(size=a.n_params)
    la, lb = a.linearise(v), b.linearise(v)
    np.testing.assert_allclose(lb.grad, la.J.T.mv(a.weights * la.r) / a.n, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(b.loss(v), a.loss(v), rtol=1e-12)


def test_devices_arguments_are_checked():
    ps = sample(preset("fermat-quintic"), 20, seed=3)
    args = (ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 1)
    with pytest.raises(ValueError, match="devices: sharding the points over devices needs backend='jax'"):
        mf.PrimalProblem(*args, devices=2)
    with pytest.raises(ValueError, match="devices: --devices 2 shards the matrix-free path"):
        BergmanMethod(k=2, solver="dense", devices=2)
    with pytest.raises(ValueError, match="devices: expected a positive integer or 'all', received 'x'"):
        BergmanMethod(k=2, devices="x")
    assert BergmanMethod(k=2, devices="2").devices == 2


@pytest.mark.parametrize("method", [BergmanMethod(k=2, devices=99), DualMethod(centers=10, devices=99)],
                         ids=["primal", "dual"])
def test_job_refuses_too_many_devices_before_writing_anything(tmp_path, method):
    cfg = CYConfig(data=DataConfig(n_train=50, n_test=20), method=method)
    with pytest.raises(ValueError, match=rf"devices: asked for 99, {len(jax.devices())} visible"):
        run_cy(cfg, str(tmp_path / "out"), quiet=True)
    assert not (tmp_path / "out").exists()


def test_job_refuses_devices_with_a_dask_cluster(tmp_path):
    """--devices with --workers/--scheduler is refused (not silently dropped), before a cluster starts."""
    cfg = CYConfig(data=DataConfig(n_train=50, n_test=20), method=BergmanMethod(k=2, devices=1))
    with pytest.raises(ValueError, match="devices: --devices 1 shards the points of one process.*--workers"):
        run_cy(cfg, str(tmp_path / "out"), quiet=True, cluster=ClusterSettings(workers=2))
    assert not (tmp_path / "out").exists()

