"""The finite-σ kernel flow (ricci/kernel_flow.py) and its jet kernel (engine/kernels/jets.py).

Checked against independent references: the dense NumPy sum over images, the engine's DerivX/DerivXY,
the exact Fourier multiplier e^{−σ²|k|²/2} of the wrapped Gaussian, the exact linearised mode decay
R̂_k(t) = R̂_k(0) exp(−|k|² e^{−σ²|k|²/2} t) on T² and T³, the analytic round-sphere velocity from
scipy quad moments, and the empirical NTK of ntkflow.ntk.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from ntkflow.engine import DerivX, DerivXY, Gaussian, kernel_operator
from ntkflow.engine.kernels.jets import GaussianJet, hessian_pairs, jet_size, normalised_variance, unpack_jets
from ntkflow.ntk.empirical import empirical_ntk
from ntkflow.ntk.metrics import ScalarModel
from ntkflow.ricci import geometry
from ntkflow.ricci.perelman import hamilton_driver
from ntkflow.ricci.domains import Sphere, Torus, flat_metric, metric_from_function, round_metric
from ntkflow.ricci.kernel_flow import (
    CosNetKernel,
    GaussianKernel,
    kernel_flow,
    kernel_flow_problem,
    linearised_rate,
    pack_sym,
    sphere_kernel_moments,
    unpack_sym,
)


hamilton = hamilton_driver  # V = −2 Ric


def _keops_ok():
    try:
        import pykeops  # noqa: F401

        return True
    except Exception:  # pragma: no cover
        return False


BACKENDS = ["jax"] + (["keops"] if _keops_ok() else [])


# ----------------------------------------------------------------------------------------------
# the jet kernel
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("period,d", [(2 * math.pi, 2), (2 * math.pi, 3), (None, 3), (None, 4)])
def test_ricci_gaussian_jet_backends_match_dense(backend, period, d):
    rng = np.random.default_rng(d)
    draw = (lambda m: rng.uniform(0, 2 * math.pi, (m, d))) if period else (lambda m: rng.normal(size=(m, d)))
    x, y, V = draw(23), draw(31), rng.normal(size=(31, 4))
    k = GaussianJet(0.7, d, variance=1.7, period=period)
    ref = kernel_operator(k, x, y, backend="dense").mm(V)
    out = kernel_operator(k, x, y, backend=backend).mm(V)
    assert out.shape == (23 * jet_size(d), 4)
    assert np.max(np.abs(out - ref)) <= 1e-13 * np.max(np.abs(ref))


def test_ricci_gaussian_jet_matches_engine_derivative_kernels():
    rng = np.random.default_rng(0)
    d = 4
    x, y, v = rng.normal(size=(17, d)), rng.normal(size=(19, d)), rng.normal(size=19)
    R = kernel_operator(GaussianJet(0.8, d, variance=1.3), x, y, backend="dense").mv(v).reshape(17, -1)
    val, grad, hess = unpack_jets(R, d)
    g = Gaussian(0.8, 1.3)
    assert np.allclose(val, kernel_operator(g, x, y, backend="dense").mv(v), rtol=1e-13, atol=1e-14)
    assert np.allclose(grad, kernel_operator(DerivX(g, d), x, y, backend="dense").mv(v).reshape(17, d), atol=1e-13)
    # stationary kernel: ∂_x∂_x k = −∂_x∂_y k; DerivXY applied to v ⊗ e_b gives column b
    dxy = kernel_operator(DerivXY(g, d), x, y, backend="dense")
    for b in range(d):
        vb = np.zeros((19, d))
        vb[:, b] = v
        assert np.allclose(hess[:, :, b], -dxy.mv(vb.ravel()).reshape(17, d), atol=1e-13)


def test_ricci_wrapped_gaussian_fourier_multiplier():
    """Σ_b w_b K_σ(x_a − x_b) e^{ik·x_b} = e^{−σ²|k|²/2} e^{ik·x_a} on the uniform grid (aliasing < 1e-15)."""
    T = Torus(2)
    pts, w = T.points(24**2)
    sigma = 0.6
    k = GaussianJet(sigma, 2, variance=normalised_variance(sigma, 2), period=2 * math.pi)
    op = kernel_operator(k, pts, backend="jax")
    for kv in [(0, 0), (1, 0), (2, 3), (-4, 1)]:
        kv = np.array(kv)
        f = np.cos(pts @ kv + 0.3)
        R = op.mv(w * f).reshape(len(pts), -1)
        mult = math.exp(-0.5 * sigma**2 * kv @ kv)
        assert np.allclose(R[:, 0], mult * f, atol=1e-13)
        # gradient row: the multiplier times the exact derivative −k sin(k·x + 0.3)
        assert np.allclose(R[:, 1], -mult * kv[0] * np.sin(pts @ kv + 0.3), atol=1e-12)


def test_ricci_gaussian_jet_rejects_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        GaussianJet(2.0, 2, period=2 * math.pi)
    with pytest.raises(ValueError, match="sigma"):
        GaussianJet(-1.0, 2)
    with pytest.raises(ValueError, match="dimension 3"):
        kernel_operator(GaussianJet(0.5, 3), np.zeros((4, 2)), backend="dense")


# ----------------------------------------------------------------------------------------------
# linearised flow about the flat torus: exact Fourier-mode decay
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,k1,sigma", [(2, 16, 0.5), (3, 10, 0.8)])
def test_ricci_linearised_kernel_flow_modes(n, k1, sigma):
    """The linearisation (jax.jvp of the right-hand side at G = δ) is integrated by DOP853 (rtol 1e-10);
    the linearised scalar curvature (jax.jvp) of the state decays mode by mode as exp(−|k|² e^{−σ²|k|²/2} t)
    to 1e-6 relative, and no other mode appears."""
    T = Torus(n)
    pts, w = T.points(k1**n)
    prob = kernel_flow_problem(T, flat_metric(T), GaussianKernel(sigma, backend="jax"), hamilton, pts, w)
    L = linearised_rate(prob)
    shape = prob.state_shape

    def scalar_of(y):
        return geometry.scalar(*prob.chart_jets_jax(prob.binding.jets_jax(y.reshape(shape))))

    R_lin = jax.jit(lambda dy: jax.jvp(scalar_of, (jnp.zeros_like(dy),), (dy,))[1])
    modes = [(1, 0, 0), (1, 1, 0), (2, 1, 0), (0, 2, 1), (1, -1, 2), (2, 2, 2)] if n == 3 else [
        (1, 0), (1, 1), (2, 1), (0, 3), (-1, 2), (3, 2)]
    rng = np.random.default_rng(1)
    C0 = np.zeros(shape)
    for kv in modes:  # general (not conformal) symmetric perturbations, one Fourier mode each
        C0 += np.cos(pts @ np.array(kv[:n]) + rng.uniform(0, 2 * np.pi))[:, None] * rng.normal(size=shape[1])
    ts = [0.25, 0.5]
    sol = solve_ivp(lambda t, y: np.asarray(L(jnp.asarray(y))), (0, ts[-1]), C0.ravel(), method="DOP853",
                    rtol=1e-10, atol=1e-13, t_eval=ts)
    assert sol.success
    fft = lambda y: np.fft.fftn(np.asarray(R_lin(jnp.asarray(y))).reshape((k1,) * n))  # noqa: E731
    F0 = fft(C0.ravel())
    for j, t in enumerate(ts):
        Ft = fft(sol.y[:, j])
        mask = np.zeros(Ft.shape, bool)
        for kv in modes:
            kv = np.array(kv[:n])
            idx = tuple(np.mod(kv, k1))
            assert abs(F0[idx]) > 1e-4 * np.abs(F0).max()
            pred = F0[idx] * math.exp(-(kv @ kv) * math.exp(-0.5 * sigma**2 * (kv @ kv)) * t)
            assert abs(Ft[idx] - pred) <= 1e-6 * abs(pred)
            mask[idx] = mask[tuple(np.mod(-kv, k1))] = True
        assert np.abs(Ft[~mask]).max() <= 1e-12 * np.abs(F0).max()


# ----------------------------------------------------------------------------------------------
# round spheres
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend,n,npts,sigma",
    [(b, 2, 2 * 20**2, 0.4) for b in ["dense"] + BACKENDS] + [(b, 3, 4 * 8**3, 0.6) for b in BACKENDS],
)
def test_ricci_round_sphere_velocity_is_analytic(backend, n, npts, sigma):
    """G₀ = r²I, C = 0: the tangent part of ∂_tG = Σ_b w_b K(x, x_b) E_b(−2Ric_b)E_bᵀ is −2(n−1)(M₀ − M₂/n) I
    with the kernel moments M₀, M₂ from scipy quad; the normal–tangent block is irrelevant and not checked."""
    S = Sphere(n)
    pts, w = S.points(npts)
    prob = kernel_flow_problem(S, round_metric(S, 1.5), GaussianKernel(sigma, backend=backend), hamilton, pts, w)
    rate = prob.rhs(0.0, prob.initial()).reshape(prob.state_shape)
    dG = unpack_sym(prob.binding.jets(rate)[:, 0], n + 1)  # (m, A, A): velocity of G at the points
    E = S.frames(pts)
    tang = np.einsum("qia,qij,qjb->qab", E, dG, E)
    m0, m2 = sphere_kernel_moments(sigma, n)
    assert abs(m0 - 1) < 0.2  # normalised: mass → 1 as σ → 0
    assert np.allclose(tang, -2 * (n - 1) * (m0 - m2 / n) * np.eye(n), rtol=0, atol=1e-9)


@pytest.mark.parametrize("n,npts,tol", [(2, 2 * 12**2, 1e-10), (3, 4 * 6**3, 1e-6)])
def test_ricci_round_sphere_stays_round(n, npts, tol):
    """Ric is scale invariant, so the rate is constant and C(t) = t·C'(0) exactly; the finite-σ round sphere
    shrinks as r²(t) = r₀² − 2(n−1)(M₀ − M₂/n) t and stays round, both up to the quadrature error of the
    product Gauss rule (``tol``: ~1e-12 on S² with 288 points, ~2e-7 on S³ with 864)."""
    S = Sphere(n)
    pts, w = S.points(npts)
    sigma, r0 = 0.6, 2.0
    res, prob = kernel_flow(S, round_metric(S, r0), GaussianKernel(sigma, backend="jax"), hamilton, pts, w,
                            t_end=0.5, t_out=[0.25, 0.5], rtol=1e-8, atol=1e-10)
    assert res.status == "finished", res.message
    assert np.allclose(res.y_out[1], 2 * res.y_out[0], rtol=0, atol=tol * np.abs(res.y_out[1]).max())
    m0, m2 = sphere_kernel_moments(sigma, n)
    E = S.frames(pts)
    for t, y in zip(res.t_out, res.y_out):
        g = np.einsum("qia,qij,qjb->qab", E, prob.field(y).ambient_jets(pts)[0], E)
        r2 = r0**2 - 2 * (n - 1) * (m0 - m2 / n) * t
        assert np.allclose(g, r2 * np.eye(n), rtol=0, atol=tol * r2)
    assert max(res.history["anisotropy"]) < tol
    assert np.all(np.diff(res.history["volume"]) < 0)


def test_ricci_sphere_extinction_stops_with_message():
    """The round S² becomes extinct at t_ext = r₀²/(2(M₀ − M₂/2)): the flow stops just before it with status
    "singular" and a message naming the cause; every recorded state, the last included, is a metric, and
    the last one still follows the exact law R = 2/(r₀² − 2(M₀ − M₂/2)t)."""
    S = Sphere(2)
    pts, w = S.points(2 * 8**2)
    res, _ = kernel_flow(S, round_metric(S, 1.0), GaussianKernel(0.6, backend="jax"), hamilton, pts, w,
                         t_end=5.0, curvature_limit=50.0)
    assert res.status == "singular"
    assert "curvature" in res.message or "positive definite" in res.message
    m0, m2 = sphere_kernel_moments(0.6, 2)
    t_ext = 1.0 / (2 * (m0 - m2 / 2))
    assert 0.9 * t_ext < res.t < t_ext
    assert np.all(res.history["min_eig"] > 0)
    r_exact = 2.0 / (1.0 - 2 * (m0 - m2 / 2) * res.t)
    assert res.history["R_max"][-1] > 50.0
    assert abs(res.history["R_max"][-1] - r_exact) / r_exact < 1e-4


# ----------------------------------------------------------------------------------------------
# the empirical metric-NTK of a finite cos-net
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", [Torus(2), Sphere(2)])
def test_ricci_cosnet_features_are_the_empirical_ntk(domain):
    """Φ Φᵀ ⊗ I equals ntkflow.ntk.empirical_ntk of the cos-net whose readout trains (p outputs)."""
    pts, _ = domain.points(30, seed=3)
    ker = CosNetKernel(0.5, width=64, seed=5)
    net, params = ker.network(domain)
    theta = empirical_ntk(ScalarModel(net), params, jnp.asarray(pts))  # (n, n, p, p)
    Phi = ker.bind(domain, pts).features()
    p = theta.shape[-1]
    assert np.allclose(theta, np.einsum("in,jn->ij", Phi, Phi)[:, :, None, None] * np.eye(p), atol=1e-13)


@pytest.mark.parametrize("domain", [Torus(2), Sphere(2)])
def test_ricci_cosnet_kernel_mean_is_the_gaussian(domain):
    """Monte-Carlo over 40 seeds: the mean of Θ_N is K_σ within 4 standard errors, at every pair."""
    pts, _ = domain.points(12, seed=4)
    sigma = 0.7
    K = kernel_operator(GaussianKernel(sigma).jet_kernel(domain), pts, backend="dense").to_dense()[::jet_size(domain.ambient_dim)]
    draws = []
    for s in range(40):
        Phi = CosNetKernel(sigma, width=256, seed=s).bind(domain, pts).features()
        draws.append(Phi @ Phi.T)
    draws = np.array(draws)
    mean, se = draws.mean(0), draws.std(0, ddof=1) / math.sqrt(len(draws))
    assert np.all(np.abs(mean - K) <= 4 * se + 1e-12)


def test_ricci_cosnet_flow_approaches_gaussian_flow():
    """The width-N flow's right-hand side (jets of the rate) tends to the infinite-width one: a wide net is
    closer than a narrow one (the N^{-1/2} law is measured in bench_ricci.py)."""
    T = Torus(2)
    pts, w = T.points(12**2)
    metric = metric_from_function(lambda th: jnp.exp(0.3 * jnp.sin(th[0]) * jnp.cos(th[1])) * jnp.eye(2), T)

    def velocity(ker):
        prob = kernel_flow_problem(T, metric, ker, hamilton, pts, w)
        rate = prob.rhs(0.0, prob.initial()).reshape(prob.state_shape)
        return prob.binding.jets(rate)[:, 0]

    ref = velocity(GaussianKernel(0.5, backend="jax"))
    errs = [np.linalg.norm(velocity(CosNetKernel(0.5, width=N, seed=1)) - ref) for N in (64, 16384)]
    assert errs[1] < 0.25 * errs[0]
    assert errs[1] < 0.05 * np.linalg.norm(ref)


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------


def test_ricci_kernel_flow_rejects_bad_input():
    T = Torus(2)
    pts, w = T.points(16)
    with pytest.raises(ValueError, match="backend"):
        GaussianKernel(0.5, backend="cuda")
    with pytest.raises(ValueError, match="sigma"):
        GaussianKernel(0.0)
    with pytest.raises(ValueError, match="ambient dimension"):
        kernel_flow_problem(T, flat_metric(T), GaussianKernel(0.5), hamilton, np.zeros((16, 3)), w)
    with pytest.raises(ValueError, match="weights"):
        kernel_flow_problem(T, flat_metric(T), GaussianKernel(0.5), hamilton, pts, w[:-1])
    with pytest.raises(TypeError, match="metric"):
        kernel_flow_problem(T, lambda x: x, GaussianKernel(0.5), hamilton, pts, w)
    with pytest.raises(TypeError, match="driver"):
        kernel_flow_problem(T, flat_metric(T), GaussianKernel(0.5), None, pts, w)


def test_ricci_pack_unpack_roundtrip():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(5, 4, 4))
    M = M + np.swapaxes(M, 1, 2)
    assert np.array_equal(unpack_sym(pack_sym(M), 4), M)
    assert len(hessian_pairs(4)) == 10
