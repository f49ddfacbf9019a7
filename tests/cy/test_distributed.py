"""Distributed matrix-free Gauss–Newton (ntkflow.cy.distributed) against the single-process PrimalProblem on
the same points: loss, LM step δ, fitted θ and held-out σ to 1e-10 relative, on LocalClusters of 2 and 4
workers (threads and processes); a worker killed in the middle of a step changes nothing; an unreachable
scheduler fails within seconds naming its address."""
from __future__ import annotations

import os
import signal
import socket
import time

import numpy as np
import pytest

from ntkflow.cy.distributed import (DistributedPrimalProblem, block_seed, block_sizes, local_client, connect,
                                    reference_problem, sample_block, sample_blocks)
from ntkflow.cy.matrixfree import PrimalProblem
from ntkflow.engine import SchedulerError
from ntkflow.manifolds import random_quintic, sample, sigma_weighted
from ntkflow.solvers.least_squares import CGSolve, DenseSolve, LMConfig, initial_state, levenberg_marquardt, lm_step

RTOL = 1e-10
N, BS, SEED = 1200, 300, 5  # 4 blocks
LM = LMConfig(max_iter=2, scaling="marquardt", max_tries=1, stop_on_reject=False)


@pytest.fixture(scope="module")
def manifold():
    return random_quintic(0)


@pytest.fixture(scope="module")
def threads2():
    client, cluster = local_client(2, processes=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def procs4():
    client, cluster = local_client(4, processes=True)
    yield client
    client.close()
    cluster.close()


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def heldout_sigma(prob, theta, test):
    """σ on held-out points with the monomial-basis metric (the job's det_test)."""
    t = PrimalProblem(test.points, test.jacobian, test.weights, np.log(test.omega_sq), prob.k, whiten=False,
                      link=prob.link)
    det = np.real(np.linalg.det(t.metric(prob.monomial_H(prob.unvec(theta)[0]))))
    return sigma_weighted(det / test.omega_sq, test.weights)


def test_blocks_are_fixed_by_seed_and_index(manifold):
    assert block_sizes(1000, 300) == [300, 300, 300, 100]
    assert block_seed(5, 2) == block_seed(5, 2) and block_seed(5, 2) != block_seed(5, 3) != block_seed(6, 3)
    union = sample_blocks(manifold, 700, seed=SEED, block_size=300)
    b2 = sample_block(manifold, 2, 100, seed=SEED)
    np.testing.assert_array_equal(union.points[600:], b2.points)  # the last block, drawn on its own
    np.testing.assert_array_equal(union.points[:300], sample(manifold, 300, seed=block_seed(SEED, 0)).points)


@pytest.mark.parametrize("cluster, keep", [("threads2", True), ("procs4", False)])
def test_loss_step_theta_and_sigma_equal_the_single_process_problem(manifold, request, cluster, keep):
    client = request.getfixturevalue(cluster)
    dp = DistributedPrimalProblem(client, manifold, N, 2, seed=SEED, block_size=BS, link="log", keep_features=keep)
    ref = reference_problem(manifold, N, 2, seed=SEED, block_size=BS, link="log")
    assert dp.n_blocks == 4 and dp.n_params == ref.n_params
    assert rel(dp.M, ref.M) < RTOL  # the global whitening from the blocks' Gram sums
    v0 = ref.initial()
    assert rel(dp.initial(), v0) < RTOL
    assert rel(dp.loss(v0), ref.loss(v0)) < RTOL
    # the normal equations themselves: JᵀWr/n, JᵀWJ V/n, the Jacobi diagonal
    lin, ne = ref.linearise(v0), dp.linearise(v0)
    w = ref.weights
    V = np.random.default_rng(0).standard_normal((ref.n_params, 3))
    assert rel(ne.grad, lin.J.T.mv(w * lin.r) / ref.n) < RTOL
    assert rel(ne.gram.mm(V), lin.J.T.mm(w[:, None] * lin.J.mm(V)) / ref.n) < RTOL
    assert rel(ne.diag, lin.diag) < RTOL
    # one LM step on the exact normal equations, then a fit of 3 steps with the job's CG
    s_ref = lm_step(ref, initial_state(ref, LM), LM, DenseSolve())
    s_dp = lm_step(dp, initial_state(dp, LM), LM, DenseSolve())
    assert rel(s_dp.theta - v0, s_ref.theta - v0) < RTOL
    assert rel(s_dp.loss, s_ref.loss) < RTOL
    r_ref = levenberg_marquardt(ref, LM, solve=CGSolve(rtol=1e-2, maxiter=60))
    r_dp = levenberg_marquardt(dp, LM, solve=CGSolve(rtol=1e-2, maxiter=60))
    assert r_ref.iterations == r_dp.iterations == 2 and r_ref.loss < 0.5 * ref.loss(v0)
    assert rel(r_dp.value, r_ref.value) < RTOL
    r, _ = ref.residual(r_ref.value)
    assert rel(dp.sigma_train(r_dp.value), sigma_weighted(np.exp(r + r_ref.value[-1]), ref.weights)) < RTOL
    test = sample(manifold, 500, seed=99)
    assert rel(heldout_sigma(dp, r_dp.value, test), heldout_sigma(ref, r_ref.value, test)) < RTOL
    mem = dp.memory()
    assert mem["driver_peak_bytes"] > 0 and len(mem["worker_peak_bytes"]) == len(client.scheduler_info()["workers"])


def test_the_point_set_does_not_depend_on_the_number_of_workers(manifold, threads2, procs4):
    a = DistributedPrimalProblem(threads2, manifold, N, 2, seed=SEED, block_size=BS, link="identity")
    b = DistributedPrimalProblem(procs4, manifold, N, 2, seed=SEED, block_size=BS, link="identity")
    v = a.initial()
    assert rel(b.initial(), v) < RTOL and rel(b.loss(v), a.loss(v)) < RTOL
    assert np.isfinite(a.loss(v)) and a.loss(v) > 0


def test_identity_link_normal_equations_equal_the_single_process_ones(manifold, threads2):
    dp = DistributedPrimalProblem(threads2, manifold, 700, 3, seed=1, block_size=300, link="identity")
    ref = reference_problem(manifold, 700, 3, seed=1, block_size=300, link="identity")
    v = ref.initial()
    v[:-1] += 1e-3 * np.random.default_rng(1).standard_normal(ref.n_params - 1)  # a metric away from FS
    assert rel(dp.loss(v), ref.loss(v)) < RTOL
    lin, ne = ref.linearise(v), dp.linearise(v)
    w = ref.weights
    V = np.random.default_rng(2).standard_normal((ref.n_params, 2))
    assert rel(ne.grad, lin.J.T.mv(w * lin.r) / ref.n) < RTOL
    assert rel(ne.gram.mm(V), lin.J.T.mm(w[:, None] * lin.J.mm(V)) / ref.n) < RTOL
    assert rel(ne.diag, lin.diag) < RTOL


def test_the_jacobi_diagonal_uses_the_single_process_strided_subset(manifold, threads2):
    # 4 blocks of 300, stride 3 over the 1200 points: block offsets 300, 600, 900 start mid-stride
    dp = DistributedPrimalProblem(threads2, manifold, N, 2, seed=SEED, block_size=BS, jacobi_max_points=400)
    ref = reference_problem(manifold, N, 2, seed=SEED, block_size=BS, link="log")
    v = ref.initial()
    exact = ref.jacobi_diag(v, max_points=None)
    sub = ref.jacobi_diag(v, max_points=400)
    assert rel(sub, exact) > 1e-3  # the subset is a different estimate ...
    assert rel(dp.linearise(v).diag, sub) < RTOL  # ... and the distributed one is exactly it


class _KillDuringStep:
    """The distributed problem, with one worker process SIGKILLed before the 2nd Gram product of step 2 —
    after the step's linearisation state was built on the workers, in the middle of its CG."""

    def __init__(self, dp, pid):
        self.dp, self.pid = dp, pid
        self.n_params, self.weights = dp.n_params, None
        self.steps, self.killed_at = 0, None

    def initial(self):
        return self.dp.initial()

    def loss(self, v):
        return self.dp.loss(v)

    def penalty(self):
        return self.dp.penalty()

    def linearise(self, v):
        ne = self.dp.linearise(v)
        self.steps += 1
        calls = []

        def gram(V):
            calls.append(1)
            if self.steps == 2 and len(calls) == 2 and self.killed_at is None:
                os.kill(self.pid, signal.SIGKILL)  # a worker process of this test's own cluster
                self.killed_at = (self.steps, len(calls))
            return ne.gram.mm(V)

        return ne._replace(gram=type(ne.gram)(ne.gram.rows, ne.gram.cols, gram, gram))


def test_a_worker_killed_in_the_middle_of_a_step_loses_nothing(manifold):
    t0 = time.monotonic()
    client, cluster = local_client(2, processes=True)
    try:
        dp = DistributedPrimalProblem(client, manifold, N, 2, seed=SEED, block_size=BS)
        undisturbed = levenberg_marquardt(dp, LM, solve=CGSolve(rtol=1e-4))
        del dp  # its blocks are released; the run below builds them again (same keys)
        pids = client.run(os.getpid)
        dp = DistributedPrimalProblem(client, manifold, N, 2, seed=SEED, block_size=BS)
        holder = dp.block_holders()[0][0]  # the worker holding block 0's features is the one killed
        killer = _KillDuringStep(dp, pids[holder])
        res = levenberg_marquardt(killer, LM, solve=CGSolve(rtol=1e-4))
        assert killer.killed_at == (2, 2) and res.iterations == undisturbed.iterations == 2
        assert client.run(os.getpid).get(holder) != pids[holder]  # that process is gone
        assert rel(res.value, undisturbed.value) < RTOL
        ref = levenberg_marquardt(reference_problem(manifold, N, 2, seed=SEED, block_size=BS, link="log"), LM,
                                  solve=CGSolve(rtol=1e-4))
        assert rel(res.value, ref.value) < RTOL
    finally:
        client.close()
        cluster.close()
    assert time.monotonic() - t0 < 60


def test_an_unreachable_scheduler_fails_within_seconds_naming_it():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    t = time.monotonic()
    with pytest.raises(SchedulerError, match=address.replace(".", r"\.")):
        connect(address, timeout=1.0)
    assert time.monotonic() - t < 6


def test_bad_arguments_are_refused_with_the_value(manifold, threads2):
    with pytest.raises(TypeError, match="client: expected a distributed.Client"):
        DistributedPrimalProblem(None, manifold, 100, 2)
    with pytest.raises(ValueError, match="link: expected one of"):
        DistributedPrimalProblem(threads2, manifold, 100, 2, link="exp")
    with pytest.raises(ValueError, match="block_size"):
        DistributedPrimalProblem(threads2, manifold, 100, 2, block_size=0)
    with pytest.raises(ValueError, match="scheduler: expected an address"):
        connect("localhost:8786")


def test_cli_workers_fits_the_single_process_problem_on_the_same_points(manifold, tmp_path):
    import json

    from ntkflow.cli import main
    from ntkflow.cy.distributed import heldout_seed

    out = str(tmp_path / "d")
    assert main(["cy", "--random-quintic", "0", "-k", "2", "--n-train", str(N), "--n-test", "400", "--max-iter", "2",
                 "--n-curvature", "0", "--workers", "2", "--block-size", str(BS), "-q", "-o", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    info = metrics["method_info"]
    assert info["backend"] == "dask" and info["n_blocks"] == 4 and info["n_workers"] == 2
    assert metrics["memory"]["driver_peak_bytes"] > 0 and len(metrics["memory"]["worker_peak_bytes"]) == 2
    # the job's fit, in one process on the union of the blocks (the job's LM and CG settings)
    ref = reference_problem(manifold, N, 2, seed=0, block_size=BS, link="log")
    lm = LMConfig(max_iter=2, lam0=1e-3, gtol=1e-6, scaling="marquardt", max_tries=1, stop_on_reject=False)
    res = levenberg_marquardt(ref, lm, solve=CGSolve(rtol=1e-2, maxiter=60))
    test = sample(manifold, 400, seed=heldout_seed(0))
    assert rel(metrics["sigma_test"], heldout_sigma(ref, res.value, test)) < RTOL
    r, _ = ref.residual(res.value)
    assert rel(metrics["sigma_train"], sigma_weighted(np.exp(r + res.value[-1]), ref.weights)) < RTOL


def test_the_job_refuses_a_cluster_for_other_methods_and_names_an_unreachable_scheduler():
    from ntkflow.cy.config import CYConfig, DataConfig, DonaldsonMethod
    from ntkflow.cy.distributed import ClusterSettings
    from ntkflow.cy.job import run_cy

    data = DataConfig(manifold="cubic-curve", n_train=100, n_test=100)
    with pytest.raises(ValueError, match="workers: --workers/--scheduler"):
        run_cy(CYConfig(data=data, method=DonaldsonMethod(k=2)), cluster=ClusterSettings(workers=2), quiet=True)
    with pytest.raises(ValueError, match="not both"):
        ClusterSettings(workers=2, scheduler="tcp://127.0.0.1:1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.monotonic()
    with pytest.raises(SchedulerError, match=f"127.0.0.1:{port}"):
        run_cy(CYConfig(data=data), cluster=ClusterSettings(scheduler=f"tcp://127.0.0.1:{port}", timeout=1.0),
               quiet=True)
    assert time.monotonic() - t < 6
