"""The randomized Nyström preconditioner of the Gauss–Newton CG (solvers/preconditioners.py, CGSolve).

References: numpy.linalg.solve / eigvals on dense constructed systems, Frangella–Tropp–Udell's formula
written out densely, the DenseSolve Levenberg–Marquardt trajectory on a Monge–Ampère problem.
"""
from __future__ import annotations

import numpy as np
import pytest

import ntkflow  # noqa: F401  (float64)
from ntkflow.engine.operators import DenseOperator, DiagonalOperator
from ntkflow.solvers import CGSolve, DenseSolve, LMConfig, Linearisation, NormalEquations, cg, levenberg_marquardt
from ntkflow.solvers.preconditioners import NystromSketch, SketchPreconditioner, randomized_nystrom


def decaying_system(p=120, m=400, decay=0.85, seed=0):
    """J (m, p) with singular values decay^i (i < p) and column scales spread over 4 decades (so Jacobi
    scaling matters), weights W > 0, residual r: the Gram G = JᵀWJ/m has a decaying spectrum."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((m, p)))[0]
    V = np.linalg.qr(rng.standard_normal((p, p)))[0]
    sv = decay ** np.arange(p) * np.sqrt(m)
    col = 10.0 ** rng.uniform(-2, 2, p)
    J = (U * sv) @ V.T * col  # (m, p)
    w = rng.uniform(0.5, 2.0, m)
    r = rng.standard_normal(m)
    return J, w, r


def gram(J, w):
    return J.T @ (w[:, None] * J) / len(w)


def dense_preconditioner(M, p):
    return M.mm(np.eye(p))


def cond_of(M, A):
    """cond of the preconditioned operator: M A is similar to M^½ A M^½ (real positive spectrum)."""
    ev = np.sort(np.real(np.linalg.eigvals(M @ A)))
    assert ev[0] > 0
    return ev[-1] / ev[0]


# ------------------------------------------------------------------------------------------
# the sketch and the preconditioner against dense linear algebra
# ------------------------------------------------------------------------------------------


def test_module_docstring_example_runs():
    import doctest

    from ntkflow.solvers import preconditioners

    out = doctest.testmod(preconditioners)
    assert out.attempted >= 6 and out.failed == 0



def test_sketch_of_a_low_rank_gram_is_exact():
    """rank(G) = 10 < r: the Nyström approximation reproduces Ĝ = SGS (to rounding)."""
    rng = np.random.default_rng(1)
    B = rng.standard_normal((60, 10)) * 10.0 ** rng.uniform(-1, 1, 60)[:, None]
    G = B @ B.T
    d = np.diag(G)
    sk = randomized_nystrom(DenseOperator(G), rank=16, diag=d, seed=3)
    s = 1 / np.sqrt(d)
    Gh = s[:, None] * G * s[None, :]
    approx = (sk.U * sk.eigs) @ sk.U.T
    np.testing.assert_allclose(approx, Gh, atol=1e-10 * np.abs(Gh).max())
    np.testing.assert_allclose(sk.eigs[:10], np.linalg.eigvalsh(Gh)[::-1][:10], rtol=1e-10)
    np.testing.assert_allclose(sk.U.T @ sk.U, np.eye(16), atol=1e-12)


def test_full_rank_sketch_is_the_exact_inverse():
    """r = p: U diag(η) Uᵀ = Ĝ, so M = (G + diag e)⁻¹ exactly and CG converges in one iteration."""
    J, w, _ = decaying_system(p=40, m=100, decay=0.9)
    G = gram(J, w)
    e = np.random.default_rng(2).uniform(1e-3, 1e-1, 40)
    A = G + np.diag(e)
    M = dense_preconditioner(randomized_nystrom(DenseOperator(G), rank=40, diag=np.diag(G), seed=0).preconditioner(e), 40)
    np.testing.assert_allclose(M @ A, np.eye(40), atol=1e-8)
    b = np.random.default_rng(3).standard_normal(40)
    res = cg(A, b, rtol=1e-10, precond=M)
    assert res.converged and res.iterations <= 2


def test_scalar_shift_is_frangella_tropp_udell():
    """With s²e = ρ scalar (Marquardt: e = λ diag G) the preconditioner is FTU's
    P⁻¹ = (η_r + ρ) U(Λ + ρI)⁻¹Uᵀ + (I − UUᵀ) in the scaled coordinates, divided by η_r + ρ."""
    J, w, _ = decaying_system(p=80, m=200)
    G = gram(J, w)
    d = np.diag(G)
    lam = 1e-4
    sk = randomized_nystrom(DenseOperator(G), rank=20, diag=d, seed=5)
    M = dense_preconditioner(sk.preconditioner(lam * d), 80)
    U, eta, rho = sk.U, sk.eigs, lam
    ftu = (eta[-1] + rho) * (U / (eta + rho)) @ U.T + (np.eye(80) - U @ U.T)
    s = 1 / np.sqrt(d)
    ref = s[:, None] * ftu * s[None, :] / (eta[-1] + rho)
    np.testing.assert_allclose(M, ref, atol=1e-10 * np.abs(ref).max())
    np.testing.assert_allclose(M, M.T, atol=1e-12 * np.abs(M).max())
    assert np.linalg.eigvalsh(0.5 * (M + M.T)).min() > 0


@pytest.mark.parametrize("lam", [1e-3, 1e-6])
def test_preconditioned_condition_number_is_much_smaller_than_jacobi(lam):
    J, w, _ = decaying_system()
    G = gram(J, w)
    d = np.diag(G)
    A = G + lam * np.diag(d)  # the Marquardt-damped system
    jac = np.diag(1 / (d * (1 + lam)))
    M = dense_preconditioner(randomized_nystrom(DenseOperator(G), rank=60, diag=d, seed=0).preconditioner(lam * d), 120)
    kj, kn = cond_of(jac, A), cond_of(M, A)
    assert kj > 1e2 and kn < kj / 50, (kj, kn)


def linearisation(J, w, r):
    return Linearisation(r=r, J=DenseOperator(J), diag=np.einsum("mp,m,mp->p", J, w, J) / len(r))


@pytest.mark.parametrize("scaling", ["identity", "marquardt"])
def test_cg_solve_with_nystrom_equals_numpy_solve(scaling):
    """δ of CGSolve(preconditioner="nystrom") = −solve(JᵀWJ/m + λD + μP, JᵀWr/m + μPθ) to 1e-10, in
    fewer CG iterations than Jacobi."""
    J, w, r = decaying_system()
    lin = linearisation(J, w, r)
    G, p = gram(J, w), J.shape[1]
    theta = np.random.default_rng(7).standard_normal(p)
    Pd = np.r_[np.ones(p - 1), 0.0]
    P, mu, lam = DiagonalOperator(Pd), 1e-5, 1e-4
    D = np.ones(p) if scaling == "identity" else lin.diag
    ref = -np.linalg.solve(G + lam * np.diag(D) + mu * np.diag(Pd), J.T @ (w * r) / len(r) + mu * Pd * theta)
    out = {}
    for pre in ("nystrom", "jacobi"):
        solve = CGSolve(rtol=1e-13, maxiter=5000, preconditioner=pre, rank=60, seed=1)
        delta, info = solve.compute(solve.init(lin, w, mu, P, theta), lam, D)
        assert info["cg_converged"], info
        assert np.linalg.norm(delta - ref) <= 1e-10 * np.linalg.norm(ref), pre
        out[pre] = info
    assert out["nystrom"]["precond_rank"] == 60 and out["nystrom"]["precond_seconds"] > 0
    assert "precond_rank" not in out["jacobi"]
    assert out["nystrom"]["cg_iterations"] < out["jacobi"]["cg_iterations"] / 3, out


def test_normal_equations_form_gives_the_same_step():
    J, w, r = decaying_system(p=60, m=150)
    lin = linearisation(J, w, r)
    ne = NormalEquations(grad=J.T @ (w * r) / len(r), gram=DenseOperator(gram(J, w)), diag=lin.diag)
    solve = CGSolve(rtol=1e-13, preconditioner="nystrom", rank=20, seed=4)
    a, _ = solve.solve(lin, w, 1e-4, lin.diag, 0.0, None, np.zeros(60))
    b, _ = solve.solve(ne, None, 1e-4, lin.diag, 0.0, None, np.zeros(60))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-11 * np.abs(a).max())


def test_sketch_is_reproducible_from_its_seed_and_built_with_one_product():
    J, w, _ = decaying_system(p=50, m=120)
    G = gram(J, w)
    calls = []

    def mm(V):
        calls.append(V.shape)
        return G @ V

    a = randomized_nystrom(mm, rank=12, p=50, diag=np.diag(G), seed=9)
    b = randomized_nystrom(mm, rank=12, p=50, diag=np.diag(G), seed=9)
    c = randomized_nystrom(mm, rank=12, p=50, diag=np.diag(G), seed=10)
    assert calls == [(50, 12)] * 3
    np.testing.assert_array_equal(a.eigs, b.eigs)
    assert not np.array_equal(a.eigs, c.eigs)
    assert isinstance(a, NystromSketch) and a.rank == 12
    assert isinstance(a.preconditioner(1e-3), SketchPreconditioner)


def test_rank_is_clipped_to_p_and_a_zero_column_is_harmless():
    J, w, r = decaying_system(p=30, m=80)
    J[:, 4] = 0.0  # a parameter the residual does not see: diag 0, Jacobi scaling floored
    lin = linearisation(J, w, r)
    sk = randomized_nystrom(DenseOperator(gram(J, w)), rank=100, diag=lin.diag, seed=0)
    assert sk.rank == 30 and np.all(np.isfinite(sk.U))
    A = gram(J, w) + 1e-3 * np.eye(30)
    b = J.T @ (w * r) / len(r)
    res = cg(A, b, rtol=1e-12, precond=sk.preconditioner(np.full(30, 1e-3)))
    assert res.converged
    np.testing.assert_allclose(res.value, np.linalg.solve(A, b), atol=1e-10 * np.abs(res.value).max())


@pytest.mark.parametrize("kw, name", [({"preconditioner": "cholesky"}, "preconditioner"), ({"rank": 0}, "rank"),
                                      ({"rank": 2.5}, "rank"), ({"seed": "a"}, "seed")])
def test_bad_cg_solve_options_name_the_argument(kw, name):
    with pytest.raises((ValueError, TypeError), match=name):
        CGSolve(**kw)


def test_bad_sketch_inputs_name_the_argument():
    G = np.eye(5)
    with pytest.raises(ValueError, match="p:"):
        randomized_nystrom(lambda V: V, rank=2)
    with pytest.raises(ValueError, match="diag"):
        randomized_nystrom(DenseOperator(G), rank=2, diag=np.ones(4))
    with pytest.raises(ValueError, match="diag"):
        randomized_nystrom(DenseOperator(G), rank=2, diag=-np.ones(5))
    with pytest.raises(TypeError, match="gram"):
        randomized_nystrom(G, rank=2)
    with pytest.raises(ValueError, match="shift"):
        randomized_nystrom(DenseOperator(G), rank=2).preconditioner(-1.0)


# ------------------------------------------------------------------------------------------
# the Levenberg–Marquardt trajectory on a Monge–Ampère problem
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def primal_problem():
    """The no-symmetry quintic's matrix-free problem (log link, the job's default) at k = 2, 300 points."""
    # deferred: only this fixture needs the CY stack (JAX sampling)
    from ntkflow.cy.matrixfree import PrimalProblem
    from ntkflow.manifolds import random_quintic, sample

    ps = sample(random_quintic(0), 300, seed=2, progress=False)
    return PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 2, link="log")


def test_lm_trajectory_with_nystrom_equals_jacobi_and_dense(primal_problem):
    """The job's LM (Marquardt scaling, one try per step) with CG to rtol 1e-9: the Nyström- and the
    Jacobi-preconditioned trajectories equal the DenseSolve one (numpy.linalg.solve) step by step."""
    cfg = LMConfig(max_iter=3, gtol=1e-12, scaling="marquardt", max_tries=1, stop_on_reject=False)
    dense = levenberg_marquardt(primal_problem, cfg, solve=DenseSolve())
    runs = {pre: levenberg_marquardt(primal_problem, cfg, solve=CGSolve(rtol=1e-9, maxiter=2000, preconditioner=pre,
                                                                        rank=40, seed=0))
            for pre in ("jacobi", "nystrom")}
    ref = [h["loss"] for h in dense.history]
    assert len(ref) == 3 and ref[-1] < ref[0]
    for pre, res in runs.items():
        assert [h["accepted"] for h in res.history] == [h["accepted"] for h in dense.history], pre
        assert all(h["cg_converged"] for h in res.history), pre
        np.testing.assert_allclose([h["loss"] for h in res.history], ref, rtol=1e-7, err_msg=pre)
        np.testing.assert_allclose(res.value, dense.value, rtol=0, atol=1e-6 * np.abs(dense.value).max(), err_msg=pre)
    assert all(h["precond_rank"] == 40 for h in runs["nystrom"].history)
    its = {pre: sum(h["cg_iterations"] for h in r.history) for pre, r in runs.items()}
    assert its["nystrom"] < its["jacobi"], its


# ------------------------------------------------------------------------------------------
# the CY job's options
# ------------------------------------------------------------------------------------------


def test_cy_preconditioner_options():
    """--preconditioner nystrom: validated, refused with --solver dense, in the fingerprint; the default
    jacobi keeps the fingerprint of a config written before the option existed."""
    from ntkflow.cy.config import BergmanMethod, CYConfig

    with pytest.raises(ValueError, match="preconditioner"):
        BergmanMethod(preconditioner="ilu")
    with pytest.raises(ValueError, match="preconditioner"):
        BergmanMethod(solver="dense", preconditioner="nystrom")
    with pytest.raises(ValueError, match="precond_rank"):
        BergmanMethod(precond_rank=0)
    base = CYConfig()
    d = base.to_json()
    assert d["method"]["preconditioner"] == "jacobi" and d["method"]["precond_rank"] == 64
    ny = base.with_(preconditioner="nystrom")
    assert ny.fingerprint() != base.fingerprint() != ny.with_(precond_rank=32).fingerprint() != ny.fingerprint()
    assert base.with_(precond_rank=32).fingerprint() == base.fingerprint()  # the rank of an unused sketch
    from ntkflow.cy.job import choose_solver

    small = dict(n_functions=10, n_points=100, dim=3, trivial=False)  # --solver auto would be dense here
    assert choose_solver(BergmanMethod(), **small)[0] == "dense"
    assert choose_solver(BergmanMethod(preconditioner="nystrom"), **small)[0] == "matrix-free"
