"""Dual (kernel) form Gauss–Newton: lazy J/Jᵀ against autodiff, GN step against dense least squares,
and the u^k kernel reaching the primal Bergman solution (same function space)."""
import json
import math

import numpy as np
import pytest

import ntkflow
from ntkflow.engine import ProjectiveGaussian, ProjectiveMixture, ProjectivePower
from ntkflow.cy import dual
from ntkflow.cy import matrixfree as mf
from ntkflow.manifolds import fs_det, preset, sample, sigma


@pytest.fixture(scope="module")
def quintic_points():
    m = preset("fermat-quintic")
    return sample(m, 700, seed=5)


def _autodiff_hessians(base, z, jac, centers):
    """(n, m, d, d) pulled-back ∂_a∂̄_b k(x, c) by JAX autodiff of f(u) in real coordinates."""
    import jax
    import jax.numpy as jnp

    from ntkflow.engine.kernels.kahler import f_derivative

    N = z.shape[1]

    def F(zr, c):
        zz = zr[:N] + 1j * zr[N:]
        p = jnp.sum(zz * jnp.conj(c))
        u = (p.real ** 2 + p.imag ** 2) / (jnp.sum(zr * zr) * jnp.sum(jnp.abs(c) ** 2))
        return f_derivative(base, u, 0)

    H = jax.vmap(jax.vmap(jax.hessian(F), (None, 0)), (0, None))(
        jnp.asarray(np.concatenate([z.real, z.imag], 1)), jnp.asarray(centers))
    H = np.asarray(H)  # (n, m, 2N, 2N)
    D = np.concatenate([0.5 * np.eye(N), -0.5j * np.eye(N)], axis=1)  # ∂ = (∂_x − i∂_y)/2
    W = np.einsum("Ia,Jb,nmab->nmIJ", D, D.conj(), H)  # ∂_I ∂̄_J
    return np.einsum("naI,nmIJ,nbJ->nmab", jac, W, jac.conj())


@pytest.mark.parametrize("base", [ProjectiveGaussian(0.2), ProjectiveMixture((0.5, 1.0, 0.3, 0.2))])
def test_lazy_jacobian_products_equal_autodiff_reference_and_are_adjoint(quintic_points, base):
    ps = quintic_points[:40]
    centers = quintic_points.points[600:611]
    rng = np.random.default_rng(0)
    alpha = 2e-2 * rng.normal(size=len(centers))
    hess = _autodiff_hessians(base, ps.points, ps.jacobian, centers)  # independent reference
    gfs = np.asarray(ntkflow.cy.algebra.fs_pulled(ps.points, ps.jacobian))
    g_ref = gfs + np.einsum("nmab,m->nab", hess, alpha) / np.pi
    ginv = np.linalg.inv(g_ref)
    J_ref = np.real(np.einsum("nba,nmab->nm", ginv, hess)) / np.pi
    for mode in ("lazy", "dense"):
        prob = dual.DualProblem(base, centers, ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq),
                                jacobian=mode, tile=16)  # 40 rows: 3 tiles with padding
        np.testing.assert_allclose(prob.metric(alpha), g_ref, rtol=1e-10, atol=1e-13)
        r, gi = prob.residual(np.r_[alpha, 0.3])
        prob.linearise(gi)
        v = rng.normal(size=prob.n_params)
        np.testing.assert_allclose(prob.jvp(v), J_ref @ v[:-1] - v[-1], rtol=1e-10, atol=1e-12)
        u = rng.normal(size=prob.n)
        np.testing.assert_allclose(prob.vjp(u), np.r_[J_ref.T @ u, -u.sum()], rtol=1e-10, atol=1e-12)
        assert np.dot(u, prob.jvp(v)) == pytest.approx(np.dot(prob.vjp(u), v), rel=1e-12)
        np.testing.assert_allclose(prob.jacobi_diag()[:-1], (prob.w @ J_ref ** 2) / prob.n, rtol=1e-10)
    # the model evaluates the same metric on new points, and its potential is K = (log|z|² + φ)/π
    model = dual.DualKernelModel(manifold=ps.manifold, base=base, centers=centers, alpha=alpha)
    np.testing.assert_allclose(model.metric(ps), g_ref, rtol=1e-10, atol=1e-13)
    phi = np.asarray(base.dense(ps.points, centers)) @ alpha
    np.testing.assert_allclose(model.potential(ps), (np.log(np.sum(np.abs(ps.points) ** 2, 1)) + phi) / np.pi, rtol=1e-12)
    import jax

    gj = jax.vmap(model.metric_jax())(ps.points, ps.jacobian, np.sqrt(ps.omega_sq))
    np.testing.assert_allclose(np.asarray(gj), g_ref, rtol=1e-10, atol=1e-13)


def _primal_H(centers, alpha, k, exps):
    """u(·, c)^k = |s·a_c|²/(|z|^{2k}|c|^{2k}), a_c[I] = multinomial(k; I) c̄^I: H = Σ α_b a a†/|c|^{2k}."""
    mult = np.array([math.factorial(k) / np.prod([math.factorial(e) for e in I]) for I in exps])
    A = mult[None, :] * np.prod(np.conj(centers)[:, None, :] ** exps[None, :, :], axis=-1)  # (m, N_k)
    W = np.sum(np.abs(centers) ** 2, 1) ** k
    return np.einsum("b,bi,bj->ij", alpha / W, A, A.conj())


def test_power_kernel_metric_equals_primal_form(quintic_points):
    ps = quintic_points[:60]
    centers = quintic_points.points[600:620]
    alpha = 0.1 * np.random.default_rng(1).normal(size=20)
    prob = dual.DualProblem(ProjectivePower(2), centers, ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq))
    prim = mf.PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 2, whiten=False)
    H = _primal_H(centers, alpha, 2, prim.exps)
    np.testing.assert_allclose(prob.metric(alpha), prim.metric(H), rtol=1e-10, atol=1e-13)


def test_dual_gauss_newton_step_equals_dense_least_squares(quintic_points):
    ps = quintic_points[:200]
    centers = quintic_points.points[:30]
    prob = dual.DualProblem(ProjectiveGaussian(0.3), centers, ps.points, ps.jacobian, ps.weights,
                            np.log(ps.omega_sq), jacobian="lazy", tile=64)
    v = np.zeros(prob.n_params)
    v[-1] = float(np.sum(prob.w * (np.log(fs_det(ps)) - prob.log_omega)) / np.sum(prob.w))
    res, loss0 = dual.gn_step(prob, v, 1e-13, rtol=1e-13, maxiter=2000)
    r, _ = prob.residual(v)
    J = prob.jacobian_dense()
    sw = np.sqrt(prob.w)
    delta = np.linalg.lstsq(sw[:, None] * J, -sw * r, rcond=1e-13)[0]
    pred = J @ delta
    np.testing.assert_allclose(prob.jvp(res.value), pred, rtol=1e-6, atol=1e-6 * np.abs(pred).max())
    assert prob.loss(v + res.value) < loss0


def _lm(prob, step, v, iters=12, lam=1e-3, **kw):
    loss = prob.loss(v)
    for _ in range(iters):
        res, loss0 = step(prob, v, lam, **kw)
        new = v + res.value
        nl = prob.loss(new)
        if nl < loss0:
            v, loss, lam = new, nl, max(lam * 0.3, 1e-12)
        else:
            lam *= 10
    return v, loss


def test_power_kernel_dual_gauss_newton_reaches_the_primal_bergman_solution(quintic_points):
    """u² with 300 centres spans all 15² real (2,2) functions: dual and primal GN minimise the same loss
    over the same function space, so they reach the same σ and the same metric on held-out points."""
    train, test = quintic_points[:400], quintic_points[400:700]
    lo = np.log(train.omega_sq)
    c0 = float(np.sum(train.weights * (np.log(fs_det(train)) - lo)) / np.sum(train.weights))
    prim = mf.PrimalProblem(train.points, train.jacobian, train.weights, lo, 2, whiten=False)
    vp = np.zeros(prim.n_params)
    vp[-1] = c0
    vp, loss_p = _lm(prim, mf.gn_step, vp, rtol=1e-12, maxiter=2000)
    centers = train.points[:300]
    prob = dual.DualProblem(ProjectivePower(2), centers, train.points, train.jacobian, train.weights, lo)
    vd = np.zeros(prob.n_params)
    vd[-1] = c0
    vd, loss_d = _lm(prob, dual.gn_step, vd, rtol=1e-12, maxiter=3000)
    assert loss_d == pytest.approx(loss_p, rel=1e-8)
    Hp, _ = prim.unvec(vp)
    pm = mf.PrimalProblem(test.points, test.jacobian, test.weights, np.log(test.omega_sq), 2, whiten=False)
    g_p = pm.metric(Hp)
    g_d = prob.metric(vd[:-1], test.points, test.jacobian)
    np.testing.assert_allclose(g_d, g_p, rtol=1e-7, atol=1e-7 * np.abs(g_p).max())  # measured: 2e-11
    s_p = sigma(test, np.real(np.linalg.det(g_p)))
    s_d = sigma(test, np.real(np.linalg.det(g_d)))
    assert s_d == pytest.approx(s_p, rel=1e-7)
    assert s_p < 0.2  # and both improve on Fubini–Study (0.37)
    # with 100 < 15² centres the dual space is a proper subspace: a clearly worse fit
    small = dual.DualProblem(ProjectivePower(2), train.points[:100], train.points, train.jacobian, train.weights, lo)
    vs = np.zeros(small.n_params)
    vs[-1] = c0
    _, loss_s = _lm(small, dual.gn_step, vs, rtol=1e-12, maxiter=3000)
    assert loss_s > 2 * loss_p


def test_run_dual_writes_outputs_and_the_model_loads_back(tmp_path, quintic_points):
    train, test = quintic_points[:300], quintic_points[300:500]
    cfg = dual.DualConfig(kernel="gaussian", s2=0.3, centers=40, centers_method="rpcholesky", max_iter=3, tile=64)
    logs = []
    res = dual.run_dual(cfg, train.manifold, train, test, str(tmp_path), log=logs.append)
    assert any("infinite feature space" in s for s in logs)
    met = json.loads((tmp_path / "metrics.json").read_text())
    assert met["form"] == "dual" and met["sigma_test"] < met["fs_baseline"]["sigma_test"]
    model = ntkflow.load(str(tmp_path))
    assert isinstance(model, dual.DualKernelModel)
    fresh = sample(train.manifold, 50, seed=99)
    np.testing.assert_allclose(model.metric(fresh), res.model.metric(fresh), rtol=1e-12)
    np.testing.assert_allclose(model.potential(fresh.points * 2.0), res.model.potential(fresh), rtol=1e-10)
    assert model.eta(fresh).shape == (50,)


def test_run_cy_dual_path_and_cli_options(tmp_path):
    from ntkflow.cy.job import CYConfig, run_cy

    cfg = CYConfig(kernel="mixture", k=3, s2=0.5, centers=30, n_train=200, n_test=200, max_iter=2, n_curvature=0)
    res = run_cy(cfg, str(tmp_path), quiet=True)
    assert res.metrics["form"] == "dual" and res.metrics["kernel"]["name"] == "mixture"
    # the new fields leave the fingerprints of existing settings (and their checkpoints) unchanged
    assert CYConfig().fingerprint() == "8750933ed51c572e"
    assert CYConfig(k=4, n_train=300).fingerprint() == "37be0b7a09b9db47"
    assert CYConfig(kernel="gaussian").fingerprint() != CYConfig().fingerprint()
    m = ntkflow.load(str(tmp_path))
    assert m.kind == "dual-kernel"


def test_bad_input_names_the_argument(quintic_points):
    with pytest.raises(ValueError, match="kernel"):
        dual.DualConfig(kernel="laplace")
    with pytest.raises(ValueError, match="centers"):
        dual.DualConfig(centers=0)
    with pytest.raises(ValueError, match="centers_method"):
        dual.DualConfig(centers_method="kmeans")
    with pytest.raises(ValueError, match="s2"):
        dual.DualConfig(s2=-1.0)
    ps = quintic_points[:20]
    with pytest.raises(ValueError, match="centers"):
        dual.DualProblem(ProjectiveGaussian(0.2), ps.points[:, :3], ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq))
    with pytest.raises(ValueError, match="centers"):
        dual.select_dual_centers(ProjectiveGaussian(0.2), ps, dual.DualConfig(centers=50))
    from ntkflow.cy.job import CYConfig

    with pytest.raises(ValueError, match="kernel"):
        CYConfig(kernel="rbf")
    with pytest.raises(ValueError, match="centers"):
        CYConfig(kernel="gaussian", centers=0)
