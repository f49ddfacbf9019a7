"""The talk's Kähler metric flow (frozen no-mixing metric-NTK on metric components), against
independent references: the lazy operator against a dense NumPy kron, the flow's right-hand side
against finite differences of the loss, the fixed point (σ_train → 0), and the Kähler defect against
closed forms (0 for FS and Donaldson, the analytic dω of a conformally rescaled FS metric)."""
import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.cy import algebra
from ntkflow.experiments.metric_flow import (
    MetricFlowConfig,
    MetricFlowProblem,
    kahler_defect,
    run_metric_flow,
)
from ntkflow.manifolds import fs_pullback, preset, sample, sigma


@pytest.fixture(scope="module")
def points():
    m = preset("fermat-quintic")
    ps = sample(m, 400, seed=3, progress=False)
    return ps.split(250)


def _dense_gaussian(z, w, s2):
    """exp((u − 1)/s²), u = |⟨z, w⟩|²/(|z|²|w|²), written independently of the engine."""
    p = np.einsum("ic,jc->ij", z, np.conj(w))
    u = np.abs(p) ** 2 / (np.linalg.norm(z, axis=1)[:, None] ** 2 * np.linalg.norm(w, axis=1)[None, :] ** 2)
    return np.exp((u - 1.0) / s2)


def test_lazy_no_mixing_operator_equals_dense_kron(points):
    tr, _ = points
    sub = tr[:40]
    P = MetricFlowProblem.build(sub, MetricFlowConfig(s2=0.2, backend="jax"))
    K = np.kron(_dense_gaussian(sub.points, sub.points, 0.2), np.eye(9))  # δ_ik δ_jl Θ, point-major
    v = np.random.default_rng(0).normal(size=40 * 9)
    np.testing.assert_allclose(P.op.mv(v), K @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", ["log", "ma"])
def test_rhs_is_minus_kernel_times_finite_difference_gradient(points, loss):
    tr, _ = points
    sub = tr[:20]
    P = MetricFlowProblem.build(sub, MetricFlowConfig(s2=0.2, loss=loss, backend="dense"))
    alpha = 0.02 * np.random.default_rng(1).normal(size=(20, 9))
    G = P.metric_packed(alpha)
    h = 1e-6
    fd = np.zeros_like(G)
    for i in range(G.shape[0]):
        for a in range(G.shape[1]):
            E = np.zeros_like(G)
            E[i, a] = h
            fd[i, a] = (P.loss_of_packed(G + E) - P.loss_of_packed(G - E)) / (2 * h)
    K = np.kron(_dense_gaussian(sub.points, sub.points, 0.2), np.eye(9))
    dG_dt = P.op.mv(P.rhs(alpha).reshape(-1))  # dg(X)/dt = Θ(X, X) dα/dt
    np.testing.assert_allclose(dG_dt, -K @ fd.reshape(-1), rtol=1e-6, atol=1e-9 * np.abs(K @ fd.reshape(-1)).max())


def test_training_sigma_goes_to_zero_and_flowed_metric_is_not_kahler(points):
    tr, te = points
    cfg = MetricFlowConfig(s2=0.1, times=(1.0, 10.0, 100.0), gn_steps=2, backend="jax")
    P = MetricFlowProblem.build(tr, cfg)
    res = run_metric_flow(P, cfg)
    assert res.status == "completed"
    assert np.all(np.diff(res.loss) < 0) and np.all(np.diff(res.sigma_train) < 0)
    assert res.sigma_train[0] > 0.3  # Fubini–Study
    assert res.sigma_train[-1] < 1e-4  # the flow alone at t = 100
    G = P.metric_packed(res.alpha)
    assert P.sigma(G) < 1e-9  # fixed point: det g = κ|Ω|² at every training point
    # the extension to held-out points is a kernel interpolant: finite σ, below FS
    s_te = sigma(te, res.model.det(te))
    assert 0.0 < s_te < sigma(te, np.real(np.linalg.det(fs_pullback(te))))
    # not Kähler: dω ≠ 0 at the percent level, while FS (a potential metric) has dω = 0 to FD error
    sub = te[:25]
    flowed = kahler_defect(res.model.metric, sub)
    fs = kahler_defect(fs_pullback, sub)
    assert flowed["ratio"] > 1e-2, flowed
    assert fs["ratio"] < 1e-7, fs


def test_kahler_defect_matches_closed_forms(points):
    _, te = points
    sub = te[:30]
    # Donaldson balanced metric (K = log(s†Gs)/(kπ)): closed
    from ntkflow.experiments.memorise import donaldson_target

    don = donaldson_target(sub.manifold, te, 2, iterations=3)
    assert kahler_defect(don.metric, sub)["ratio"] < 1e-7
    # conformal rescaling g = f g_FS, f = 1 + |x_0|²: T_{kij̄} = (∂_k f) g_{ij̄} − (∂_i f) g_{kj̄}, ∂_k f = δ_k0 x̄_0
    rows = np.arange(len(sub))

    def conformal(q):
        x0 = q.points[np.arange(len(q)), q.kept[:, 0]]
        return (1.0 + np.abs(x0) ** 2)[:, None, None] * fs_pullback(q)

    x0 = sub.points[rows, sub.kept[:, 0]]
    g = fs_pullback(sub)
    df = np.zeros((len(sub), 3), dtype=complex)
    df[:, 0] = np.conj(x0)
    T = df[:, :, None, None] * g[:, None, :, :] - np.einsum("ni,nkj->nkij", df, g)
    w = sub.weights / sub.weights.mean()
    expect = np.sqrt(np.mean(w * np.sum(np.abs(T) ** 2, axis=(1, 2, 3))))
    got = kahler_defect(conformal, sub)
    assert abs(got["T_norm"] / expect - 1.0) < 1e-6, (got, expect)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="kernel"):
        MetricFlowConfig(kernel="rbf")
    with pytest.raises(ValueError, match="loss"):
        MetricFlowConfig(loss="l1")
    with pytest.raises(ValueError, match="times"):
        MetricFlowConfig(times=(10.0, 1.0))
    with pytest.raises(ValueError, match="s2"):
        MetricFlowConfig(s2=-1.0)
    with pytest.raises(TypeError, match="ps"):
        MetricFlowProblem.build(np.zeros((3, 5)))
