"""Matrix-free primal Gauss–Newton (H Hermitian, J applied on the fly) against the dense step."""
import numpy as np

import ntkflow  # noqa: F401
from ntkflow.flows import algebra, basis
from ntkflow.flows import gauss_newton as gn
from ntkflow.flows import matrixfree as mf
from ntkflow.manifolds import preset, sample


def _setup(n=300, k=2):
    m = preset("fermat-quintic")
    ps = sample(m, n, seed=21)
    prob = mf.PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), k)
    b = basis.full_basis(5, k)
    dense = gn.MAProblem(g0=algebra.pack(algebra.fs_pulled(ps.points, ps.jacobian)),
                         hess=algebra.pair_hessians(b, ps.points, ps.jacobian),
                         log_omega=np.log(ps.omega_sq), weights=ps.weights, dim=3)
    return ps, prob, dense, b


def test_metric_and_jacobian_products_match_dense():
    ps, prob, dense, b = _setup()
    rng = np.random.default_rng(0)
    coeffs = 1e-3 * rng.normal(size=b.n_functions)
    H = b.hermitian(coeffs)
    g_mf = prob.metric(H)
    g_dense = dense.metric(np.r_[coeffs, 0.0])
    np.testing.assert_allclose(g_mf, g_dense, rtol=1e-10, atol=1e-13)
    # adjoint identity <u, J v> = <J^T u, v>
    v = np.zeros(prob.n_params)
    r, ginv = prob.residual(v)
    prob.linearise(ginv)
    x = rng.normal(size=prob.n_params)
    u = rng.normal(size=prob.n)
    np.testing.assert_allclose(np.dot(u, prob.jvp(x)), np.dot(prob.vjp(u), x), rtol=1e-10)
    # Jacobi diagonal = diag of the explicit JᵀWJ/n built from unit vectors (a few entries)
    d = prob.jacobi_diag()
    for j in rng.choice(prob.n_params - 1, size=5, replace=False):
        e = np.zeros(prob.n_params)
        e[j] = 1.0
        col = prob.jvp(e)
        np.testing.assert_allclose(d[j], np.mean(prob.w * col * col), rtol=1e-10)


def test_matrix_free_gauss_newton_step_equals_dense_step():
    """Pure GN (λ → 0): both solve the same least-squares problem, so the predicted change of the
    residual J δ (parameterisation independent) agrees."""
    ps, prob, dense, b = _setup()
    c0 = float(np.sum(prob.w * (np.log(np.real(np.linalg.det(prob.gfs))) - prob.log_omega)) / np.sum(prob.w))
    # dense
    th = np.r_[np.zeros(b.n_functions), c0]
    r, ginv = dense.residual(th)
    J = dense.jacobian(th, ginv)
    sw = np.sqrt(dense.weights)[:, None]
    delta = np.linalg.lstsq(sw * J, -sw[:, 0] * r, rcond=1e-12)[0]
    pred_dense = J @ delta
    # matrix-free
    v = np.zeros(prob.n_params)
    v[-1] = c0
    res, _ = mf.gn_step(prob, v, 1e-13, rtol=1e-12, maxiter=3000)
    pred_mf = prob.jvp(res.value)
    np.testing.assert_allclose(pred_mf, pred_dense, rtol=1e-6, atol=1e-6 * np.abs(pred_dense).max())
    # and the step decreases the loss like the dense one
    assert prob.loss(v + res.value) < 0.5 * prob.loss(v)
