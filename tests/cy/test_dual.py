"""Dual (kernel) form Gauss–Newton: lazy J/Jᵀ against autodiff, GN step against dense least squares,
and the u^k kernel reaching the primal Bergman solution (same function space)."""
import json
import math

import numpy as np
import pytest

import ntkflow
from ntkflow.engine import ProjectiveGaussian, ProjectiveMixture, ProjectivePower
from ntkflow.cy import dual, run_cy
from ntkflow.cy import matrixfree as mf
from ntkflow.cy.config import CYConfig, DataConfig, DualMethod, LMSettings, OutputConfig
from ntkflow.manifolds import fs_det, preset, sample, sigma
from ntkflow.solvers.least_squares import CGSolve, LeastSquaresProblem, LMConfig, LMState, levenberg_marquardt


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
        assert isinstance(prob, LeastSquaresProblem)
        lin = prob.linearise(np.r_[alpha, 0.3])
        v = rng.normal(size=prob.n_params)
        np.testing.assert_allclose(lin.J.mv(v), J_ref @ v[:-1] - v[-1], rtol=1e-10, atol=1e-12)
        u = rng.normal(size=prob.n)
        np.testing.assert_allclose(lin.J.T.mv(u), np.r_[J_ref.T @ u, -u.sum()], rtol=1e-10, atol=1e-12)
        assert np.dot(u, lin.J.mv(v)) == pytest.approx(np.dot(lin.J.T.mv(u), v), rel=1e-12)
        V = rng.normal(size=(prob.n_params, 3))  # several columns in one pass
        np.testing.assert_allclose(lin.J.mm(V), J_ref @ V[:-1] - V[-1:], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(lin.diag[:-1], (prob.w @ J_ref ** 2) / prob.n, rtol=1e-10)
        # the ridge K̃ = K_mm on the α block
        K = np.asarray(base.dense(centers, centers))
        np.testing.assert_allclose(prob.penalty().mv(v), np.r_[K @ v[:-1], 0.0], rtol=1e-12)
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
    lin = prob.linearise(v)
    step, _ = CGSolve(rtol=1e-13, maxiter=2000).solve(lin, prob.weights, 1e-13, np.maximum(lin.diag, 1e-300), 0.0,
                                                      None, v)
    r, _ = prob.residual(v)
    J = lin.J.to_dense()
    sw = np.sqrt(prob.w)
    delta = np.linalg.lstsq(sw[:, None] * J, -sw * r, rcond=1e-13)[0]
    pred = J @ delta
    np.testing.assert_allclose(lin.J.mv(step), pred, rtol=1e-6, atol=1e-6 * np.abs(pred).max())
    assert prob.loss(v + step) < prob.loss(v)


def _lm(prob, v, iters=12, lam=1e-3, *, rtol, maxiter):
    """``iters`` one-try Levenberg–Marquardt steps (the job's CG paths) from v."""
    cfg = LMConfig(max_iter=iters, lam0=lam, gtol=0.0, scaling="marquardt", max_tries=1, stop_on_reject=False)
    res = levenberg_marquardt(prob, cfg, solve=CGSolve(rtol=rtol, maxiter=maxiter),
                              state=LMState(theta=v, lam=lam, loss=prob.loss(v)))
    return res.value, res.loss


def test_power_kernel_dual_gauss_newton_reaches_the_primal_bergman_solution(quintic_points):
    """u² with 300 centres spans all 15² real (2,2) functions: dual and primal GN minimise the same loss
    over the same function space, so they reach the same σ and the same metric on held-out points."""
    train, test = quintic_points[:400], quintic_points[400:700]
    lo = np.log(train.omega_sq)
    c0 = float(np.sum(train.weights * (np.log(fs_det(train)) - lo)) / np.sum(train.weights))
    prim = mf.PrimalProblem(train.points, train.jacobian, train.weights, lo, 2, whiten=False)
    vp = np.zeros(prim.n_params)
    vp[-1] = c0
    vp, loss_p = _lm(prim, vp, rtol=1e-12, maxiter=2000)
    centers = train.points[:300]
    prob = dual.DualProblem(ProjectivePower(2), centers, train.points, train.jacobian, train.weights, lo)
    vd = np.zeros(prob.n_params)
    vd[-1] = c0
    vd, loss_d = _lm(prob, vd, rtol=1e-12, maxiter=3000)
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
    _, loss_s = _lm(small, vs, rtol=1e-12, maxiter=3000)
    assert loss_s > 2 * loss_p


def _dual_config(**method):
    return CYConfig(DataConfig(n_train=300, n_test=200, seed=5), DualMethod(**method), LMSettings(max_iter=3),
                    OutputConfig(n_curvature=0))


def test_run_cy_dual_writes_outputs_and_the_model_loads_back(tmp_path, capsys):
    cfg = _dual_config(kernel="gaussian", s2=0.3, centers=40, centers_method="rpcholesky", tile=64)
    res = run_cy(cfg, str(tmp_path))
    assert "infinite feature space" in capsys.readouterr().out
    met = json.loads((tmp_path / "metrics.json").read_text())
    assert met["method_info"]["form"] == "dual" and met["sigma_test"] < met["fs_baseline"]["sigma_test"]
    assert met["solver"] == "dual" and met["status"]["name"] in ("MAX_ITER", "CONVERGED", "NO_DECREASE")
    model = ntkflow.load(str(tmp_path))
    assert isinstance(model, dual.DualKernelModel)
    fresh = sample(preset("fermat-quintic"), 50, seed=99)
    np.testing.assert_allclose(model.metric(fresh), res.model.metric(fresh), rtol=1e-12)
    np.testing.assert_allclose(model.potential(fresh.points * 2.0), res.model.potential(fresh), rtol=1e-10)
    assert model.eta(fresh).shape == (50,)


def test_run_cy_dual_path_and_cli_options(tmp_path):
    from ntkflow.cli import main

    cfg = _dual_config(kernel="mixture", k=3, s2=0.5, centers=30)
    res = run_cy(cfg, str(tmp_path / "api"), quiet=True)
    assert res.metrics["method_info"]["form"] == "dual" and res.metrics["method_info"]["kernel"]["name"] == "mixture"
    assert cfg.fingerprint() != _dual_config(kernel="gaussian").fingerprint()
    m = ntkflow.load(str(tmp_path / "api"))
    assert m.kind == "dual-kernel"
    # the same run from the command line: the same settings, the same history
    out = str(tmp_path / "cli")
    assert main(["cy", "--kernel", "mixture", "-k", "3", "--s2", "0.5", "--centers", "30", "--n-train", "300",
                 "--n-test", "200", "--seed", "5", "--max-iter", "3", "--n-curvature", "0", "-q", "-o", out]) == 0
    met = json.loads(open(out + "/metrics.json").read())
    assert met["settings"]["method"] == cfg.to_json()["method"] and met["fingerprint"] == cfg.fingerprint()
    assert [h["loss"] for h in json.loads(open(out + "/history.json").read())] == [h["loss"] for h in res.history]
    # --solver dual with the Bergman kernel: u^k in the dual form
    from ntkflow.cy.cli import config_from_args, register
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    args = sub.choices["cy"].parse_args(["--solver", "dual", "-k", "4"])
    got = config_from_args(args)
    assert isinstance(got.method, DualMethod) and got.method.kernel == "power" and got.method.k == 4
    with pytest.raises(ValueError, match="link"):  # a primal option with the dual form is refused
        config_from_args(sub.choices["cy"].parse_args(["--kernel", "gaussian", "--link", "log"]))
    with pytest.raises(ValueError, match="centers"):  # a dual option with the primal path is refused
        config_from_args(sub.choices["cy"].parse_args(["--centers", "50"]))


def test_bad_input_names_the_argument(quintic_points):
    with pytest.raises(ValueError, match="kernel"):
        DualMethod(kernel="laplace")
    with pytest.raises(ValueError, match="centers"):
        DualMethod(centers=0)
    with pytest.raises(ValueError, match="centers_method"):
        DualMethod(centers_method="kmeans")
    with pytest.raises(ValueError, match="s2"):
        DualMethod(s2=-1.0)
    ps = quintic_points[:20]
    with pytest.raises(ValueError, match="centers"):
        dual.DualProblem(ProjectiveGaussian(0.2), ps.points[:, :3], ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq))
    with pytest.raises(ValueError, match="centers"):
        dual.select_dual_centers(ProjectiveGaussian(0.2), ps, DualMethod(centers=50))
    with pytest.raises(ValueError, match="kernel"):
        DualMethod(kernel="rbf")
    with pytest.raises(TypeError, match="method"):
        CYConfig(method="dual")
