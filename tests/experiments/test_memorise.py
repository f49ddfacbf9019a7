"""The memorisation claim: the frozen-NTK MSE flow of metric components towards a target metric
(Donaldson's balanced metric) against a dense matrix-exponential reference at finite t, exact
memorisation at t = ∞ (error at the training points ≤ the CG tolerance), finite held-out error."""
import numpy as np
import pytest
from scipy.linalg import expm

import ntkflow  # noqa: F401
from ntkflow.cy import algebra
from ntkflow.experiments.memorise import MemoriseConfig, donaldson_target, memorise
from ntkflow.manifolds import fs_pullback, preset, sample, sigma


@pytest.fixture(scope="module")
def setup():
    m = preset("fermat-quintic")
    ps = sample(m, 1500, seed=5, progress=False)
    tr, te = ps.split(1000)
    target = donaldson_target(m, tr, 3, iterations=8)
    return tr, te, target


def _dense_gaussian(z, w, s2):
    p = np.einsum("ic,jc->ij", z, np.conj(w))
    u = np.abs(p) ** 2 / (np.linalg.norm(z, axis=1)[:, None] ** 2 * np.linalg.norm(w, axis=1)[None, :] ** 2)
    return np.exp((u - 1.0) / s2)


def test_finite_time_flow_matches_dense_expm(setup):
    tr, te, target = setup
    X, Xs = tr[:80], te[:30]
    cfg = MemoriseConfig(s2=0.3, times=(0.03, 0.3, 3.0, 30.0), eta=0.7, backend="jax")
    res = memorise(X, Xs, target, cfg)
    # dense reference: f_t = f0 + (I − e^{−ηΘt}) r, f_t(x*) = f0* + Θ* Θ⁻¹ (I − e^{−ηΘt}) r
    K = _dense_gaussian(X.points, X.points, 0.3)
    Ks = _dense_gaussian(Xs.points, X.points, 0.3)
    y, ys = algebra.pack(target.metric(X)), algebra.pack(target.metric(Xs))
    f0, f0s = algebra.pack(fs_pullback(X)), algebra.pack(fs_pullback(Xs))
    r = y - f0
    for i, t in enumerate(cfg.times):
        M = np.eye(len(X)) - expm(-cfg.eta * t * K)
        ft = f0 + M @ r
        fts = f0s + Ks @ np.linalg.solve(K, M @ r)
        assert abs(res.train_rel_error[i] - np.linalg.norm(ft - y) / np.linalg.norm(r)) < 1e-8
        assert abs(res.test_rel_error[i] - np.linalg.norm(fts - ys) / np.linalg.norm(ys - f0s)) < 1e-7
        assert abs(res.sigma_train[i] - sigma(X, np.real(np.linalg.det(algebra.unpack(ft, 3))))) < 1e-8


def test_infinite_width_mse_memorises_the_target(setup):
    tr, te, target = setup
    cfg = MemoriseConfig(s2=0.1, times=(0.1, 1.0, 10.0, 100.0, 1000.0), cg_rtol=1e-10, backend="jax")
    res = memorise(tr, te, target, cfg)
    assert np.isinf(res.times[-1]) and res.cg_converged
    # training error decays monotonically to solver precision
    assert np.all(np.diff(res.train_rel_error[:-1]) < 0)
    assert res.train_rel_error[-1] <= 1e-10 * (1 + 1e-6)
    assert res.train_rel_error[-2] < 1e-6  # t = 1000 from Lanczos
    # σ at the training points is the target's σ; held-out error stays finite (interpolation)
    assert abs(res.sigma_train[-1] - res.target_sigma_train) < 1e-9
    assert 0.05 < res.test_rel_error[-1] < 1.0
    assert abs(res.sigma_test[-1] - res.target_sigma_test) > 1e-2


def test_bad_arguments_name_the_argument(setup):
    tr, te, target = setup
    with pytest.raises(ValueError, match="f0"):
        MemoriseConfig(f0="random")
    with pytest.raises(ValueError, match="times"):
        MemoriseConfig(times=(0.0, 1.0))
    with pytest.raises(ValueError, match="eta"):
        MemoriseConfig(eta=0.0)
    with pytest.raises(TypeError, match="train_ps"):
        memorise(np.zeros((3, 5)), te, target)
    with pytest.raises(ValueError, match="target"):
        memorise(tr[:5], te[:5], (np.zeros((5, 9)), np.zeros((4, 9))))


def test_potential_target_is_chart_free_and_memorised(setup):
    """φ = K_D − K_FS is a function on P^n: the same value at z and λz; MSE memorises it too."""
    from ntkflow.experiments.memorise import donaldson_potential
    from ntkflow.manifolds import pointset_from_points

    tr, te, target = setup
    X, Xs = tr[:300], te[:200]
    phi = donaldson_potential(target, X)
    # another patch (the second-largest coordinate set to 1): K_D and K_FS change, φ does not
    patch2 = np.argsort(np.abs(X.points), axis=1)[:, -2]
    other = pointset_from_points(X.manifold, X.points, X.weights, patch=patch2)
    assert np.abs(np.linalg.norm(other.points, axis=1) - np.linalg.norm(X.points, axis=1)).mean() > 0.05
    np.testing.assert_allclose(donaldson_potential(target, other), phi, rtol=1e-10, atol=1e-12)
    res = memorise(X, Xs, (phi, donaldson_potential(target, Xs)), MemoriseConfig(s2=0.3, f0="zero", times=(1.0, 100.0)))
    assert res.train_rel_error[-1] <= 1e-10 * (1 + 1e-6) and np.isnan(res.sigma_train[-1])
    with pytest.raises(ValueError, match="f0"):
        memorise(X, Xs, (phi, donaldson_potential(target, Xs)), MemoriseConfig(f0="fs"))
