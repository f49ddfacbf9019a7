"""Matrix-free primal Gauss–Newton (H Hermitian, J applied on the fly) against the dense step."""
import numpy as np

import ntkflow  # noqa: F401
from ntkflow.cy import algebra, basis
from ntkflow.cy import gauss_newton as gn
from ntkflow.cy import matrixfree as mf
from ntkflow.manifolds import preset, sample
from ntkflow.solvers.least_squares import CGSolve, LeastSquaresProblem


def _setup(n=300, k=2, whiten=False):
    m = preset("fermat-quintic")
    ps = sample(m, n, seed=21)
    prob = mf.PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), k, whiten=whiten)
    b = basis.full_basis(5, k)
    dense = gn.MAProblem(g0=algebra.pack(algebra.fs_pulled(ps.points, ps.jacobian)),
                         hess=algebra.pair_hessians(b, ps.points, ps.jacobian),
                         log_omega=np.log(ps.omega_sq), weights=ps.weights, dim=3)
    return ps, prob, dense, b


def _assert_jacobi_diagonal(prob, lin, rng, count):
    """Jacobi diagonal = diag of the explicit JᵀWJ/n built from unit vectors (``count`` entries)."""
    d = lin.diag
    for j in rng.choice(prob.n_params - 1, size=count, replace=False):
        e = np.zeros(prob.n_params)
        e[j] = 1.0
        col = lin.J.mv(e)
        np.testing.assert_allclose(d[j], np.mean(prob.w * col * col), rtol=1e-10)


def _step(prob, v, lam, *, rtol, maxiter, ridge=0.0):
    """The job's matrix-free Gauss–Newton step: CGSolve (Marquardt scaling) on the protocol's linearisation."""
    lin = prob.linearise(v)
    delta, _ = CGSolve(rtol=rtol, maxiter=maxiter).solve(lin, prob.weights, lam, np.maximum(lin.diag, 1e-300),
                                                         ridge, prob.penalty(), v)
    return delta


def test_metric_and_jacobian_products_match_dense():
    ps, prob, dense, b = _setup()
    rng = np.random.default_rng(0)
    coeffs = 1e-3 * rng.normal(size=b.n_functions)
    H = b.hermitian(coeffs)
    g_mf = prob.metric(H)
    g_dense = dense.metric(np.r_[coeffs, 0.0])
    np.testing.assert_allclose(g_mf, g_dense, rtol=1e-10, atol=1e-13)
    # adjoint identity <u, J v> = <J^T u, v>
    assert isinstance(prob, LeastSquaresProblem)
    v = np.zeros(prob.n_params)
    lin = prob.linearise(v)
    x = rng.normal(size=prob.n_params)
    u = rng.normal(size=prob.n)
    np.testing.assert_allclose(np.dot(u, lin.J.mv(x)), np.dot(lin.J.T.mv(u), x), rtol=1e-10)
    X = rng.normal(size=(prob.n_params, 3))  # mm = columns of mv
    np.testing.assert_allclose(lin.J.mm(X), np.stack([lin.J.mv(X[:, j]) for j in range(3)], 1), rtol=1e-12)
    _assert_jacobi_diagonal(prob, lin, rng, 5)
    # J against central finite differences of the residual
    th = 1e-4 * rng.normal(size=prob.n_params)
    lin = prob.linearise(th)
    eps = 1e-6
    fd = (prob.residual(th + eps * x)[0] - prob.residual(th - eps * x)[0]) / (2 * eps)
    np.testing.assert_allclose(lin.J.mv(x), fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())


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
    step = _step(prob, v, 1e-13, rtol=1e-12, maxiter=3000)
    pred_mf = prob.linearise(v).J.mv(step)
    np.testing.assert_allclose(pred_mf, pred_dense, rtol=1e-6, atol=1e-6 * np.abs(pred_dense).max())
    # and the step decreases the loss like the dense one
    assert prob.loss(v + step) < 0.5 * prob.loss(v)


def test_whitened_sections_give_the_same_metric_and_orthonormal_gram():
    """s' = Mᵀs: the whitened problem with H' is the monomial problem with M H' M†, and the
    Monte-Carlo Gram of the whitened sections is the identity."""
    ps, prob, _, _ = _setup(n=400, k=2)
    wp = mf.PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 2, whiten=True)
    assert wp.nk == prob.nk  # degree 2 < 5: no section vanishes on the quintic
    gram = (wp.S * (wp.w * wp.hk)[:, None]).T @ np.conj(wp.S) / wp.n
    np.testing.assert_allclose(gram, np.eye(wp.nk), atol=1e-10)
    rng = np.random.default_rng(3)
    A = 1e-2 * (rng.normal(size=(wp.nk, wp.nk)) + 1j * rng.normal(size=(wp.nk, wp.nk)))
    Hw = A + A.conj().T
    np.testing.assert_allclose(wp.metric(Hw), prob.metric(wp.monomial_H(Hw)), rtol=1e-10, atol=1e-13)


def test_whitening_drops_exactly_the_defining_polynomial():
    """At degree 5 the quintic Q is a section that vanishes on X: the Monte-Carlo Gram of the
    monomials has Q's coefficient vector as its one null direction, whitening drops exactly that one,
    and the whitened model space still contains every other degree-5 function."""
    from ntkflow.cy.job import random_quintic

    m = random_quintic(3)
    ps = sample(m, 1500, seed=4)
    args = (ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 5)
    raw = mf.PrimalProblem(*args, whiten=False)
    wp = mf.PrimalProblem(*args, whiten=True)
    assert (raw.nk, wp.nk) == (126, 125)
    order = {tuple(e): i for i, e in enumerate(raw.exps)}
    q = np.zeros(126, dtype=complex)
    for e, c in zip(m.exponents, m.coefficients):
        q[order[tuple(e)]] = c
    np.testing.assert_allclose(raw.S @ q, 0.0, atol=1e-9 * np.abs(raw.S).max() * np.abs(q).max())
    # G conj(q) = 0, so the kept eigenvectors U satisfy U†conj(q) = 0, i.e. q†M = 0
    np.testing.assert_allclose(np.conj(q) @ wp.M, 0.0, atol=1e-6 * np.linalg.norm(q) * np.abs(wp.M).max())


def test_ridge_step_solves_the_regularised_normal_equations():
    """(JᵀWJ/n + μP) δ = −JᵀWr/n − μPv, checked against the explicit dense normal equations."""
    ps, prob, dense, b = _setup(n=200, k=1)
    rng = np.random.default_rng(5)
    v = 1e-3 * rng.normal(size=prob.n_params)
    mu = 1e-3
    step = _step(prob, v, 0.0, rtol=1e-12, maxiter=2000, ridge=mu)
    r, _ = prob.residual(v)
    J = prob.linearise(v).J.to_dense()
    P = np.ones(prob.n_params)
    P[-1] = 0.0
    A = J.T @ (prob.w[:, None] * J) / prob.n + mu * np.diag(P)
    rhs = -J.T @ (prob.w * r) / prob.n - mu * P * v
    np.testing.assert_allclose(step, np.linalg.solve(A, rhs), rtol=1e-6, atol=1e-10)
    np.testing.assert_array_equal(prob.penalty().diag(), P)


def test_jax_backend_equals_numpy_backend():
    m = preset("fermat-quintic")
    ps = sample(m, 300, seed=8)
    args = (ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 3)
    a = mf.PrimalProblem(*args)
    b = mf.PrimalProblem(*args, backend="jax")
    rng = np.random.default_rng(9)
    v = 1e-3 * rng.normal(size=a.n_params) / a.nk
    ra, ga = a.residual(v)
    assert ra is not None
    rb, gb = b.residual(v)
    np.testing.assert_allclose(np.asarray(rb), ra, rtol=1e-10, atol=1e-12)
    la, lb = a.linearise(v), b.linearise(v)
    x = rng.normal(size=a.n_params)
    u = rng.normal(size=a.n)
    np.testing.assert_allclose(lb.J.mv(x), la.J.mv(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lb.J.T.mv(u), la.J.T.mv(u), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lb.diag, la.diag, rtol=1e-10)
    assert b.residual(np.r_[-1e3 * np.ones(a.nk), np.zeros(a.n_params - a.nk)])[0] is None  # not PD


def test_section_features_match_the_algebra_reference_on_both_array_modules():
    import jax.numpy as jnp

    from ntkflow.cy.job import random_quintic

    ps = sample(random_quintic(1), 64, seed=2)
    exps = basis.monomials(5, 4)
    s_ref, x_ref, _ = algebra.section_features(ps.points, ps.jacobian, exps)
    for xp in (np, jnp):
        s, x = mf.section_features(xp.asarray(ps.points), xp.asarray(ps.jacobian), exps, xp=xp)
        np.testing.assert_allclose(np.asarray(s), s_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(x), np.swapaxes(x_ref, 1, 2), rtol=1e-11, atol=1e-13)


# ---- log link: K = (1/(kπ)) log s†Hs -----------------------------------------------------------
def _log_problem(n=200, k=2, whiten=True, seed=31, backend="numpy"):
    from ntkflow.cy.job import random_quintic

    ps = sample(random_quintic(2), n, seed=seed)
    prob = mf.PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), k, whiten=whiten,
                            link="log", backend=backend)
    return ps, prob


def _random_pd_vector(prob, rng, scale=0.2):
    """θ for H = I + scale·(random Hermitian), positive definite."""
    A = rng.normal(size=(prob.nk, prob.nk)) + 1j * rng.normal(size=(prob.nk, prob.nk))
    H = A + A.conj().T
    H = np.eye(prob.nk) + scale * H / np.linalg.norm(H, 2)
    return np.concatenate([np.real(np.diag(H)), np.real(H[prob.iu]), np.imag(H[prob.iu]), [0.3]])


def test_log_link_at_the_multinomial_H_is_fubini_study():
    """s†Hs = |z|^{2k} for H = diag(multinomial coefficients), and (1/(kπ))∂∂̄ log|z|^{2k} = g_FS."""
    from math import factorial

    ps, prob = _log_problem(k=3, whiten=False)
    mult = np.array([factorial(3) / np.prod([factorial(int(a)) for a in e]) for e in prob.exps])
    np.testing.assert_allclose(prob.metric(np.diag(mult).astype(complex)), prob.gfs, rtol=1e-11, atol=1e-14)


def test_log_link_metric_equals_the_donaldson_model():
    """The matrix-free log-link metric is the algebraic metric (1/(kπ))∂∂̄ log s†Hs that
    flows/model.py's DonaldsonModel computes on its own (different code, same H)."""
    from ntkflow.cy.matrixfree import hermitian_basis
    from ntkflow.cy.model import DonaldsonModel

    ps, prob = _log_problem(k=3)
    rng = np.random.default_rng(4)
    v = _random_pd_vector(prob, rng)
    H, _ = prob.unvec(v)
    model = DonaldsonModel(manifold=ps.manifold, basis=hermitian_basis(prob.monomial_H(H), prob.exps, 3))
    np.testing.assert_allclose(prob.metric(H), model.metric(ps), rtol=1e-9, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(prob.metric(H)) > 0)


def test_log_link_jacobian_matches_finite_differences_and_its_adjoint():
    ps, prob = _log_problem(k=2)
    rng = np.random.default_rng(5)
    v = _random_pd_vector(prob, rng)
    lin = prob.linearise(v)
    x = rng.normal(size=prob.n_params)
    j = lin.J.mv(x)
    eps = 1e-6
    fd = (prob.residual(v + eps * x)[0] - prob.residual(v - eps * x)[0]) / (2 * eps)
    np.testing.assert_allclose(j, fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())
    u = rng.normal(size=prob.n)
    np.testing.assert_allclose(np.dot(u, j), np.dot(lin.J.T.mv(u), x), rtol=1e-10)
    _assert_jacobi_diagonal(prob, lin, rng, 4)


def test_log_link_gauss_newton_step_equals_least_squares_on_finite_difference_jacobian():
    """λ → 0: the matrix-free step predicts the same residual change J δ as numpy's least squares on a
    Jacobian built column by column from finite differences of the residual (no analytic formula)."""
    ps, prob = _log_problem(n=150, k=1)
    v = prob.initial()
    r, _ = prob.residual(v)
    eps = 1e-6
    cols = []
    for i in range(prob.n_params):
        e = np.zeros(prob.n_params)
        e[i] = eps
        cols.append((prob.residual(v + e)[0] - prob.residual(v - e)[0]) / (2 * eps))
    J = np.stack(cols, axis=1)
    sw = np.sqrt(prob.w)[:, None]
    # H → (1+ε)H leaves the metric unchanged: J has an exact null direction, which finite differences
    # blur to a singular value ~1e-9; rcond cuts it
    delta = np.linalg.lstsq(sw * J, -sw[:, 0] * r, rcond=1e-6)[0]
    assert np.sum(np.linalg.svd(J, compute_uv=False) < 1e-6 * np.abs(J).max()) == 1
    step = _step(prob, v, 1e-13, rtol=1e-12, maxiter=3000)
    np.testing.assert_allclose(J @ step, J @ delta, rtol=1e-5, atol=1e-6 * np.abs(J @ delta).max())
    assert prob.loss(v + step) < prob.loss(v)


def test_log_link_jax_backend_equals_numpy_backend():
    ps, a = _log_problem(n=150, k=2)
    _, b = _log_problem(n=150, k=2, backend="jax")
    rng = np.random.default_rng(6)
    v = _random_pd_vector(a, rng)
    ra, ga = a.residual(v)
    rb, gb = b.residual(v)
    np.testing.assert_allclose(np.asarray(rb), ra, rtol=1e-10, atol=1e-12)
    la, lb = a.linearise(v), b.linearise(v)
    x = rng.normal(size=a.n_params)
    np.testing.assert_allclose(lb.J.mv(x), la.J.mv(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lb.J.T.mv(ra), la.J.T.mv(ra), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lb.diag, la.diag, rtol=1e-10)
    bad = v.copy()
    bad[:a.nk] = -1.0  # H negative definite: s†Hs < 0
    assert a.residual(bad)[0] is None and b.residual(bad)[0] is None


def test_link_is_checked():
    import pytest

    ps = sample(preset("fermat-quintic"), 20, seed=1)
    with pytest.raises(ValueError, match="link"):
        mf.PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 1, link="exp")


def test_blockwise_host_products_equal_the_one_block_products():
    """block=37 (host products over point blocks, Y and Z0 rebuilt per block) = one block, both links."""
    from ntkflow.cy.job import random_quintic

    ps = sample(random_quintic(1), 150, seed=12)
    args = (ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 2)
    rng = np.random.default_rng(13)
    for link in ("identity", "log"):
        one = mf.PrimalProblem(*args, link=link)
        blk = mf.PrimalProblem(*args, link=link, block=37)
        v = one.initial() + 1e-3 * rng.normal(size=one.n_params)
        r1, g1 = one.residual(v)
        r2, g2 = blk.residual(v)
        np.testing.assert_allclose(r2, r1, rtol=1e-12, atol=1e-13)
        l1, l2 = one.linearise(v), blk.linearise(v)
        x, u = rng.normal(size=one.n_params), rng.normal(size=one.n)
        np.testing.assert_allclose(l2.J.mv(x), l1.J.mv(x), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(l2.J.T.mv(u), l1.J.T.mv(u), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(blk.jacobi_diag(v, chunk=29), l1.diag, rtol=1e-11)


def test_float32_products_equal_float64_to_single_precision_and_the_step_follows():
    """product_dtype='float32' runs J V, Jᵀ U in complex64: the products equal float64's to ~1e-6 relative
    (on the log link at a non-trivial H), the Jacobi diagonal stays float64-exact, and the Gauss–Newton step
    solved with them equals the float64 step to the CG tolerance."""
    m = preset("fermat-quintic")
    ps = sample(m, 400, seed=3)
    args = (ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 2)
    p64 = mf.PrimalProblem(*args, link="log")
    p32 = mf.PrimalProblem(*args, link="log", product_dtype="float32")
    rng = np.random.default_rng(4)
    v = p64.initial()
    v[:-1] += 0.05 * rng.normal(size=p64.n_params - 1)
    l64, l32 = p64.linearise(v), p32.linearise(v)
    np.testing.assert_array_equal(l64.r, l32.r)  # the residual is float64 in both
    X = rng.normal(size=(p64.n_params, 3))
    U = rng.normal(size=(p64.n, 3))
    for a, b in ((l64.J.mm(X), l32.J.mm(X)), (l64.J.T.mm(U), l32.J.T.mm(U))):
        err = np.max(np.abs(a - b)) / np.max(np.abs(a))
        assert 1e-9 < err < 3e-6, err  # single precision: not float64-exact, not worse than ~1e-6
    np.testing.assert_allclose(l32.diag, l64.diag, rtol=1e-5)
    d64, d32 = _step(p64, v, 1e-3, rtol=1e-8, maxiter=400), _step(p32, v, 1e-3, rtol=1e-5, maxiter=400)
    assert np.linalg.norm(d32 - d64) < 1e-4 * np.linalg.norm(d64)


def test_product_dtype_is_checked():
    ps = sample(preset("fermat-quintic"), 50, seed=1)
    try:
        mf.PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 1, product_dtype="float16")
    except ValueError as e:
        assert "product_dtype" in str(e) and "float16" in str(e)
    else:
        raise AssertionError("product_dtype='float16' was accepted")
