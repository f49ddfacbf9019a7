"""Levenberg–Marquardt driver (ntkflow.solvers.least_squares) against independent references:
numpy.linalg.lstsq / solve on linear problems (with and without a ridge), scipy.optimize.least_squares
(method="lm") on nonlinear ones, exact minima, and cy.gauss_newton on the Monge–Ampère problem."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import scipy.optimize

import ntkflow  # noqa: F401  (float64)
from ntkflow.engine.operators import DenseOperator, LinearOperator
from ntkflow.solvers import (
    CGSolve,
    CheckpointHook,
    DenseSolve,
    LeastSquaresProblem,
    Linearisation,
    LMConfig,
    LMState,
    LMStatus,
    NormalEquations,
    ProgressHook,
    levenberg_marquardt,
    load_checkpoint,
    time_budget,
)
from ntkflow.solvers.least_squares import initial_state, lm_step, save_checkpoint

STEP_KEYS = ("iteration", "loss", "lam", "accepted", "tries", "rel_decrease")


# ------------------------------------------------------------------------------------------
# test problems: residual, Jacobian, weights; everything else comes from the protocol
# ------------------------------------------------------------------------------------------


class ResidualProblem:
    """Generic problem from r(θ) and J(θ) callables (dense), weights w, optional ridge P."""

    def __init__(self, fun, jac, theta0, weights, P=None, feasible=None):
        self.fun, self.jac, self.theta0 = fun, jac, np.asarray(theta0, dtype=float)
        self.weights = np.asarray(weights, dtype=float)
        self.n_params = len(self.theta0)
        self.P = P
        self.feasible = feasible or (lambda th: True)

    def initial(self):
        return self.theta0.copy()

    def loss(self, theta):
        if not self.feasible(theta):
            return np.inf
        r = self.fun(theta)
        return float(np.mean(self.weights * r * r))

    def linearise(self, theta):
        if not self.feasible(theta):
            return None
        r, j = self.fun(theta), self.jac(theta)
        return Linearisation(r=r, J=DenseOperator(j), diag=np.mean(self.weights[:, None] * j * j, axis=0))

    def penalty(self):
        return None if self.P is None else DenseOperator(self.P)


def linear_problem(m=40, p=6, seed=0, cond=None, P=None):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, p))
    if cond is not None:
        u, _, vt = np.linalg.svd(A, full_matrices=False)
        A = u @ np.diag(np.geomspace(1.0, 1.0 / cond, p)) @ vt
    b = rng.normal(size=m)
    w = rng.uniform(0.5, 2.0, size=m)
    return ResidualProblem(lambda th: A @ th - b, lambda th: A, np.zeros(p), w, P=P), A, b, w


def weighted_lstsq(A, b, w):
    s = np.sqrt(w)
    return np.linalg.lstsq(s[:, None] * A, s * b, rcond=None)[0]


def rosenbrock():
    fun = lambda th: np.array([10.0 * (th[1] - th[0] ** 2), 1.0 - th[0]])  # noqa: E731
    jac = lambda th: np.array([[-20.0 * th[0], 10.0], [-1.0, 0.0]])  # noqa: E731
    return ResidualProblem(fun, jac, [-1.2, 1.0], np.ones(2)), fun, jac


def exp_fit(noise=0.0, seed=3):
    t = np.linspace(0.0, 1.0, 25)
    rng = np.random.default_rng(seed)
    y = 2.0 * np.exp(-1.5 * t) + noise * rng.normal(size=t.size)
    w = rng.uniform(0.5, 2.0, size=t.size)
    fun = lambda th: th[0] * np.exp(th[1] * t) - y  # noqa: E731
    jac = lambda th: np.stack([np.exp(th[1] * t), th[0] * t * np.exp(th[1] * t)], axis=1)  # noqa: E731
    return ResidualProblem(fun, jac, [1.0, 0.0], w), fun, jac, w


def scipy_lm(fun, jac, x0, w):
    """scipy's MINPACK LM on the same weighted objective Σ w r²/m (scaled residual √(w/m)·r)."""
    s = np.sqrt(w / len(w))
    res = scipy.optimize.least_squares(lambda th: s * fun(th), x0, jac=lambda th: s[:, None] * jac(th),
                                       method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    return res.x


TIGHT = LMConfig(max_iter=100, gtol=1e-13)


def test_module_docstring_example_runs():
    import doctest

    from ntkflow.solvers import least_squares

    out = doctest.testmod(least_squares)
    assert out.attempted >= 5 and out.failed == 0


def test_protocol_is_satisfied_by_the_test_problem():
    assert isinstance(linear_problem()[0], LeastSquaresProblem)


# ------------------------------------------------------------------------------------------
# linear problems: numpy.linalg.lstsq / closed forms
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("solve", [DenseSolve(), CGSolve(rtol=1e-12)], ids=["dense", "cg"])
@pytest.mark.parametrize("scaling", ["identity", "marquardt"])
def test_linear_problem_reaches_weighted_lstsq(solve, scaling):
    prob, A, b, w = linear_problem()
    res = levenberg_marquardt(prob, LMConfig(max_iter=100, gtol=1e-13, scaling=scaling), solve=solve)
    ref = weighted_lstsq(A, b, w)
    assert res.status in (LMStatus.CONVERGED, LMStatus.NO_DECREASE), res.message
    np.testing.assert_allclose(res.value, ref, rtol=0, atol=1e-10)
    losses = [h["loss"] for h in res.history if h["accepted"]]
    assert all(b_ <= a_ for a_, b_ in zip(losses, losses[1:]))
    if isinstance(solve, CGSolve):
        assert all(h["cg_converged"] and h["cg_iterations"] >= 1 for h in res.history)


@pytest.mark.parametrize("solve", [DenseSolve(), CGSolve(rtol=1e-12)], ids=["dense", "cg"])
def test_ridge_matches_closed_form(solve):
    rng = np.random.default_rng(7)
    p = 6
    B = rng.normal(size=(p, 3))
    P = B @ B.T  # PSD, rank 3 (a genuine semi-definite ridge)
    mu = 0.05
    prob, A, b, w = linear_problem(P=P)
    res = levenberg_marquardt(prob, LMConfig(max_iter=100, gtol=1e-13, mu=mu), solve=solve)
    m = len(b)
    ref = np.linalg.solve((A.T * w) @ A / m + mu * P, (A.T * w) @ b / m)
    np.testing.assert_allclose(res.value, ref, rtol=0, atol=1e-10)
    # the record separates the data term from the objective F = L + μθᵀPθ
    last = res.history[-1]
    assert last["objective"] == pytest.approx(last["loss"] + mu * res.value @ P @ res.value, rel=1e-12)
    assert res.loss == pytest.approx(last["objective"], rel=1e-12)


class NormalFormProblem(ResidualProblem):
    """The same problem, linearised in normal-equations form (what a distributed problem returns): the
    driver sees JᵀWr/m and JᵀWJ/m (an operator), never r, J or the weights."""

    weights = None

    def __init__(self, fun, jac, theta0, weights, P=None):
        super().__init__(fun, jac, theta0, weights, P=P)
        self._w = self.weights
        self.weights = None

    def loss(self, theta):
        r = self.fun(theta)
        return float(np.mean(self._w * r * r))

    def linearise(self, theta):
        r, j = self.fun(theta), self.jac(theta)
        m = len(r)
        jw = j * self._w[:, None]
        return NormalEquations(grad=jw.T @ r / m, gram=DenseOperator(jw.T @ j / m),
                               diag=np.mean(self._w[:, None] * j * j, axis=0))


@pytest.mark.parametrize("solve", [DenseSolve(), CGSolve(rtol=1e-12)], ids=["dense", "cg"])
@pytest.mark.parametrize("mu", [0.0, 0.05])
def test_normal_equations_form_follows_the_residual_form(solve, mu):
    """Same trajectory (λ, losses, θ) whether the problem hands the driver (r, J) or (JᵀWr, JᵀWJ)."""
    rng = np.random.default_rng(11)
    p = 6
    B = rng.normal(size=(p, 3))
    P = B @ B.T if mu else None
    _, A, b, w = linear_problem(P=P)
    fun, jac = (lambda th: np.tanh(A @ th) - 0.5 * b), (lambda th: (1 - np.tanh(A @ th) ** 2)[:, None] * A)  # noqa: E731
    ref_prob = ResidualProblem(fun, jac, np.zeros(p), w, P=P)
    prob = NormalFormProblem(fun, jac, np.zeros(p), w, P=P)
    cfg = LMConfig(max_iter=30, gtol=1e-13, mu=mu)
    ref = levenberg_marquardt(ref_prob, cfg, solve=solve)
    res = levenberg_marquardt(prob, cfg, solve=solve)
    assert prob.weights is None and res.status == ref.status
    np.testing.assert_allclose(res.value, ref.value, rtol=1e-9, atol=1e-12)
    assert [h["accepted"] for h in res.history] == [h["accepted"] for h in ref.history]
    np.testing.assert_allclose([h["loss"] for h in res.history], [h["loss"] for h in ref.history], rtol=1e-9)


def test_dense_solve_matches_numpy_solve_of_the_damped_system():
    rng = np.random.default_rng(2)
    prob, A, b, w = linear_problem(P=np.diag(rng.uniform(0, 1, 6)))
    theta = rng.normal(size=6)
    lin = prob.linearise(theta)
    D = rng.uniform(0.5, 2.0, 6)
    lam, mu = 0.3, 0.2
    m = len(b)
    lhs = (A.T * w) @ A / m + lam * np.diag(D) + mu * prob.P
    rhs = -((A.T * w) @ (A @ theta - b) / m + mu * prob.P @ theta)
    ref = np.linalg.solve(lhs, rhs)
    for solve in (DenseSolve(), CGSolve(rtol=1e-13)):
        delta, info = solve.solve(lin, w, lam, D, mu, prob.penalty(), theta)
        np.testing.assert_allclose(delta, ref, rtol=1e-10, atol=1e-12)


class ProductsOnly(LinearOperator):
    """An operator known only by its products A V and Aᵀ U: forming it densely is an error."""

    def __init__(self, a):
        self.a = np.asarray(a)
        self.shape, self.dtype = self.a.shape, self.a.dtype

    def _mm(self, V):
        return self.a @ V

    @property
    def T(self):
        return ProductsOnly(self.a.T)

    def to_dense(self):
        raise AssertionError("a matrix-free solve formed the operator densely")

    def diag(self):
        raise AssertionError("a matrix-free solve asked for the operator's diagonal")


def test_cg_solve_is_matrix_free():
    prob, A, b, w = linear_problem()
    dense_lin = prob.linearise
    prob.linearise = lambda th: dense_lin(th)._replace(J=ProductsOnly(A))
    res = levenberg_marquardt(prob, TIGHT, solve=CGSolve(rtol=1e-12))
    np.testing.assert_allclose(res.value, weighted_lstsq(A, b, w), rtol=0, atol=1e-10)
    with pytest.raises(AssertionError, match="densely"):
        levenberg_marquardt(prob, TIGHT, solve=DenseSolve())


def test_cg_nonconvergence_shows_in_the_record():
    prob, *_ = linear_problem(m=60, p=20, cond=1e6)
    res = levenberg_marquardt(prob, LMConfig(max_iter=3), solve=CGSolve(maxiter=1))
    assert len(res.history) >= 1
    for h in res.history:
        assert h["cg_converged"] is False and h["cg_status"] == "maxiter" and h["cg_iterations"] == 1


# ------------------------------------------------------------------------------------------
# nonlinear problems: exact minima and scipy.optimize.least_squares(method="lm")
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("solve", [DenseSolve(), CGSolve(rtol=1e-13)], ids=["dense", "cg"])
def test_rosenbrock_reaches_its_minimum_and_scipy(solve):
    prob, fun, jac = rosenbrock()
    res = levenberg_marquardt(prob, TIGHT, solve=solve)
    assert res.status in (LMStatus.CONVERGED, LMStatus.NO_DECREASE), res.message
    np.testing.assert_allclose(res.value, [1.0, 1.0], atol=1e-10)
    np.testing.assert_allclose(res.value, scipy_lm(fun, jac, prob.theta0, prob.weights), atol=1e-10)


def test_exponential_fit_exact_data_recovers_the_parameters():
    prob, fun, jac, w = exp_fit()
    res = levenberg_marquardt(prob, TIGHT)
    np.testing.assert_allclose(res.value, [2.0, -1.5], atol=1e-10)
    np.testing.assert_allclose(res.value, scipy_lm(fun, jac, prob.theta0, w), atol=1e-10)


@pytest.mark.parametrize("scaling", ["identity", "marquardt"])
def test_exponential_fit_noisy_data_matches_scipy(scaling):
    """Non-zero residual at the minimum: the minimiser is only known numerically (scipy is the reference)."""
    prob, fun, jac, w = exp_fit(noise=0.05)
    res = levenberg_marquardt(prob, LMConfig(max_iter=100, gtol=1e-14, scaling=scaling))
    ref = scipy_lm(fun, jac, prob.theta0, w)
    np.testing.assert_allclose(res.value, ref, rtol=1e-9)
    # stationarity: ∇L = 2JᵀWr/m vanishes at the solution relative to the start
    g = lambda th: jac(th).T @ (w * fun(th)) / len(w)  # noqa: E731
    assert np.linalg.norm(g(res.value)) < 1e-9 * np.linalg.norm(g(prob.theta0))


# ------------------------------------------------------------------------------------------
# infeasibility, non-finite values
# ------------------------------------------------------------------------------------------


def test_infeasible_region_rejects_steps_and_grows_lambda():
    """min (θ − 2)² on the feasible set θ < 1 (loss +inf outside): the full step to 2 is rejected, λ grows
    until the step stays feasible, and the run ends at the boundary with a clear status."""
    prob = ResidualProblem(lambda th: th - 2.0, lambda th: np.ones((1, 1)), [0.0], [1.0],
                           feasible=lambda th: th[0] < 1.0)
    res = levenberg_marquardt(prob, LMConfig(max_iter=200))
    first = res.history[0]
    assert first["accepted"] and first["tries"] > 1 and first["lam"] > LMConfig().lam0
    assert res.status in (LMStatus.CONVERGED, LMStatus.NO_DECREASE), res.message
    assert res.value[0] < 1.0 and res.value[0] > 0.99
    assert np.isfinite(res.loss) and res.loss == pytest.approx((res.value[0] - 2.0) ** 2)
    assert LMStatus.HOW_TO_FIX[res.status] in res.message


def test_nan_at_the_start_is_nonfinite_with_a_message():
    prob = ResidualProblem(lambda th: np.sqrt(th) - 1.0, lambda th: 0.5 / np.sqrt(th)[None, :], [-1.0], [1.0])
    with np.errstate(invalid="ignore"):
        res = levenberg_marquardt(prob)
    assert res.status is LMStatus.NONFINITE and not res.converged and res.iterations == 0
    assert "nan" in res.message and "feasible" in res.message


def test_nan_at_a_trial_point_is_a_rejected_try():
    """r = √θ − 0.1 from θ = 1: the Gauss–Newton step lands at θ < 0 (NaN); λ grows until it does not."""
    prob = ResidualProblem(lambda th: np.sqrt(th) - 0.1, lambda th: (0.5 / np.sqrt(th))[None, :], [1.0], [1.0])
    with np.errstate(invalid="ignore"):
        res = levenberg_marquardt(prob, TIGHT)
    assert res.history[0]["nonfinite_tries"] >= 1 and res.history[0]["accepted"]
    np.testing.assert_allclose(res.value, [0.01], rtol=1e-10)


def test_infeasible_linearisation_is_nonfinite():
    """A problem whose loss is finite but whose linearise refuses θ: NONFINITE, not a crash."""
    prob, *_ = linear_problem()
    prob.linearise = lambda th: None
    res = levenberg_marquardt(prob)
    assert res.status is LMStatus.NONFINITE and "linearise returned None" in res.message


# ------------------------------------------------------------------------------------------
# stopping: max_iter, time budget, hooks, interrupts
# ------------------------------------------------------------------------------------------


def test_max_iter_one():
    prob, *_ = exp_fit(noise=0.05)
    res = levenberg_marquardt(prob, LMConfig(max_iter=1))
    assert res.status is LMStatus.MAX_ITER and res.iterations == 1 and len(res.history) == 1
    assert "raise max_iter" in res.message


def test_time_budget_zero_stops_after_one_step():
    prob, *_ = exp_fit(noise=0.05)
    res = levenberg_marquardt(prob, LMConfig(time_budget=0.0))
    assert res.status is LMStatus.TIME_BUDGET and res.iterations == 1
    res2 = levenberg_marquardt(prob, hooks=[time_budget(0.0)])
    assert res2.status is LMStatus.TIME_BUDGET and res2.iterations == 1 and res2.history[0]["elapsed"] >= 0
    # continuing from the stopped state equals the run that was never stopped
    full = levenberg_marquardt(prob)
    cont = levenberg_marquardt(prob, state=res.state)
    np.testing.assert_array_equal(cont.value, full.value)


def test_hooks_add_to_the_record_in_order_and_can_stop():
    prob, *_ = exp_fit(noise=0.05)
    seen = []

    def first(state, rec):
        return {"theta0": float(state.theta[0])}

    def second(state, rec):
        seen.append(rec["theta0"])  # sees the first hook's entry
        assert state.history[-1] is rec
        return {"stop": "enough after two"} if rec["iteration"] == 2 else None

    res = levenberg_marquardt(prob, LMConfig(max_iter=50), hooks=[first, second])
    assert res.status is LMStatus.STOPPED and res.iterations == 2 and "enough after two" in res.message
    assert [h["theta0"] for h in res.history] == seen == [float(x) for x in seen]
    assert all("stop" not in h for h in res.history)


def test_hook_stop_true_and_a_converged_step_outranks_a_stop():
    prob, *_ = exp_fit(noise=0.05)
    res = levenberg_marquardt(prob, hooks=[lambda s, r: {"stop": True}])
    assert res.status is LMStatus.STOPPED and res.iterations == 1 and "resume" in res.message
    # a hook asking to stop at every step cannot hide convergence at the step that converges
    full = levenberg_marquardt(prob, LMConfig(max_iter=50))
    last = full.iterations
    res = levenberg_marquardt(prob, LMConfig(max_iter=50), hooks=[lambda s, r: {"stop": r["iteration"] >= last}])
    assert full.status is LMStatus.CONVERGED and res.status is LMStatus.CONVERGED and res.iterations == last


def test_progress_hook_prints_the_table():
    prob, *_ = exp_fit(noise=0.05)
    lines = []
    hook = ProgressHook(columns=(("iteration", ">4"), ("loss", ">11.4e"), ("lam", ">8.1e")), print_fn=lines.append,
                        headers={"iteration": "iter", "lam": "λ"})
    res = levenberg_marquardt(prob, LMConfig(max_iter=3), hooks=[hook])
    assert hook.header() == f"  {'iter':>4} {'loss':>11} {'λ':>8}"
    assert len(lines) == 3
    h = res.history[0]
    assert lines[0] == f"  {h['iteration']:>4} {h['loss']:>11.4e} {h['lam']:>8.1e}"


def test_keyboard_interrupt_inside_a_step_returns_the_previous_state():
    prob, *_ = exp_fit(noise=0.05)
    calls = {"n": 0}
    loss = prob.loss

    def flaky_loss(theta):
        calls["n"] += 1
        if calls["n"] == 4:  # initial loss, step 1 trial, step 2 trial, then: interrupt in step 3
            raise KeyboardInterrupt
        return loss(theta)

    prob.loss = flaky_loss
    res = levenberg_marquardt(prob, LMConfig(max_iter=50))
    assert res.status is LMStatus.STOPPED and res.iterations == 2 and "during a step" in res.message


def test_checkpoint_round_trip_is_exact(tmp_path):
    prob, *_ = exp_fit(noise=0.05)
    def extras(state, rec):  # NumPy scalars and arrays, as a σ hook returns them
        return {"sigma": np.float64(0.1) * rec["iteration"], "tag": "x", "vec": np.arange(2)}

    res = levenberg_marquardt(prob, LMConfig(max_iter=3), hooks=[extras])
    st = res.state
    # to_arrays / from_arrays
    back = LMState.from_arrays(st.to_arrays(), history=st.history)
    np.testing.assert_array_equal(back.theta, st.theta)
    assert (back.lam, back.loss, back.iteration, back.n_accepted, back.done, back.history) == (
        st.lam, st.loss, st.iteration, st.n_accepted, st.done, st.history)
    # files: npz + json, no pickle
    extra = {"whitening": np.arange(6.0).reshape(2, 3)}
    save_checkpoint(tmp_path / "ck", st, extra_arrays=extra, meta={"fingerprint": "abc"})
    loaded, meta, arrays = load_checkpoint(tmp_path / "ck.npz")
    np.testing.assert_array_equal(loaded.theta, st.theta)
    assert (loaded.lam, loaded.loss, loaded.iteration, loaded.n_accepted, loaded.done) == (
        st.lam, st.loss, st.iteration, st.n_accepted, st.done)
    assert [dict(h, vec=list(h["vec"]), sigma=float(h["sigma"])) for h in st.history] == list(loaded.history)
    assert meta == {"fingerprint": "abc"}
    np.testing.assert_array_equal(arrays["whitening"], extra["whitening"])
    doc = json.loads((tmp_path / "ck.json").read_text())
    assert doc["iteration"] == 3 and len(doc["history"]) == 3
    with np.load(tmp_path / "ck.npz", allow_pickle=False) as f:  # loads without pickle
        assert set(f.files) >= {"state_theta", "extra_whitening"}


def test_checkpoint_pair_out_of_step_is_refused(tmp_path):
    """A kill between the two os.replace calls leaves npz and json of different steps: refused, not mixed."""
    prob, *_ = exp_fit(noise=0.05)
    s2 = levenberg_marquardt(prob, LMConfig(max_iter=2)).state
    s3 = levenberg_marquardt(prob, LMConfig(max_iter=3)).state
    save_checkpoint(tmp_path / "a", s2)
    save_checkpoint(tmp_path / "b", s3)
    (tmp_path / "b.json").replace(tmp_path / "a.json")
    with pytest.raises(ValueError, match="path: .* do not match"):
        load_checkpoint(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="path"):
        load_checkpoint(tmp_path / "missing")
    assert not list(tmp_path.glob("*.tmp"))  # temporaries were renamed away


@pytest.mark.parametrize("solve", [DenseSolve(), CGSolve(rtol=1e-8)], ids=["dense", "cg"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, solve):
    prob, *_ = exp_fit(noise=0.05)
    cfg = LMConfig(max_iter=50, gtol=1e-12)
    sigma = lambda s, r: {"p0": float(s.theta[0])}  # noqa: E731  (a hook entry that must survive resume)

    def interrupt(state, rec):
        if rec["iteration"] == 2:
            raise KeyboardInterrupt

    ck = CheckpointHook(tmp_path / "checkpoint", extra_arrays={"t": np.ones(2)}, meta={"run": 1})
    stopped = levenberg_marquardt(prob, cfg, solve=solve, hooks=[sigma, ck, interrupt])
    assert stopped.status is LMStatus.STOPPED and stopped.iterations == 2
    state, meta, extra = load_checkpoint(tmp_path / "checkpoint")
    assert state.iteration == 2 and meta == {"run": 1}
    resumed = levenberg_marquardt(prob, cfg, solve=solve, state=state, hooks=[sigma, ck])
    full = levenberg_marquardt(prob, cfg, solve=solve, hooks=[sigma])
    assert full.iterations > 3 and resumed.status is full.status
    np.testing.assert_array_equal(resumed.value, full.value)
    for a, b in zip(resumed.history, full.history, strict=True):
        assert {k: a[k] for k in STEP_KEYS + ("p0",)} == {k: b[k] for k in STEP_KEYS + ("p0",)}
    # the checkpoint of the finished run resumes to the same result without a step
    again = levenberg_marquardt(prob, cfg, solve=solve, state=load_checkpoint(tmp_path / "checkpoint")[0])
    assert again.iterations == full.iterations and again.status is full.status


def test_lm_step_is_a_pure_state_transition():
    prob, *_ = exp_fit(noise=0.05)
    s0 = initial_state(prob, LMConfig())
    s1 = lm_step(prob, s0, LMConfig(), DenseSolve())
    s1b = lm_step(prob, s0, LMConfig(), DenseSolve())
    assert s0.iteration == 0 and s0.history == () and s1.iteration == 1
    np.testing.assert_array_equal(s1.theta, s1b.theta)
    assert s1.loss < s0.loss and s1.lam == pytest.approx(s0.lam * LMConfig().lam_down)


# ------------------------------------------------------------------------------------------
# configuration errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw,name", [({"lam_up": 1.0}, "lam_up"), ({"lam_up": 0.5}, "lam_up"),
                                     ({"mu": -1.0}, "mu"), ({"scaling": "diag"}, "scaling"),
                                     ({"lam_down": 1.5}, "lam_down"), ({"lam0": 0.0}, "lam0"),
                                     ({"time_budget": -1.0}, "time_budget"), ({"max_lam": 1e-13}, "max_lam")])
def test_bad_config_names_the_argument(kw, name):
    with pytest.raises(ValueError, match=name):
        LMConfig(**kw)


def test_bad_solver_and_missing_penalty_name_the_argument():
    with pytest.raises(ValueError, match="preconditioner"):
        CGSolve(preconditioner="ilu")
    with pytest.raises(ValueError, match="rtol"):
        CGSolve(rtol=-1.0)
    prob, *_ = linear_problem()
    with pytest.raises(ValueError, match="mu"):
        levenberg_marquardt(prob, LMConfig(mu=0.1))


# ------------------------------------------------------------------------------------------
# equivalence with the dense Monge–Ampère loop the driver replaces
# ------------------------------------------------------------------------------------------


def reference_lm(problem, max_iter, gtol, scaling="identity", lam=1e-3):
    """The loop of cy.gauss_newton.lm_step/levenberg_marquardt before the port (commit a62a653), restated
    in plain NumPy: normal equations formed densely, λ ×10 per retry (≤ 20 tries, λ ≤ 1e12), ×0.3 on
    success (≥ 1e-12); stops on a rejected step or a relative decrease < gtol."""
    theta, w = problem.initial(), problem.weights
    loss, hist = problem.loss(theta), []
    for it in range(max_iter):
        lin = problem.linearise(theta)
        j = lin.J.to_dense()
        jw = j * w[:, None]
        a, b = jw.T @ j / len(lin.r), jw.T @ lin.r / len(lin.r)
        d = np.ones(len(theta)) if scaling == "identity" else np.maximum(np.diag(a), 1e-300)
        tries = 0
        while True:
            tries += 1
            delta = -np.linalg.solve(a + lam * np.diag(d), b)
            new = problem.loss(theta + delta)
            if new < loss:
                accepted, rel, theta, lam_next = True, (loss - new) / loss, theta + delta, max(lam * 0.3, 1e-12)
                break
            lam *= 10.0
            if lam > 1e12 or tries >= 20:
                accepted, rel, new, lam_next = False, 0.0, loss, lam
                break
        hist.append({"iteration": it + 1, "loss": new, "lam": lam, "accepted": accepted, "tries": tries,
                     "rel_decrease": rel})
        loss, lam = new, lam_next
        if not accepted or rel < gtol:
            break
    return theta, hist


@pytest.fixture(scope="module")
def ma_problem():
    """The whitened Fermat-quintic problem of tests/cy/test_flows_gauss_newton.py (k = 6, 400 points)."""
    # deferred: only the Monge–Ampère tests need the CY stack (JAX sampling); the rest stay NumPy/SciPy
    from ntkflow.cy import algebra, basis
    from ntkflow.cy import gauss_newton as gn
    from ntkflow.manifolds import preset, sample

    m = preset("fermat-quintic")
    ps = sample(m, 400, seed=11)
    b = basis.invariant_basis(5, 6, basis.detect_symmetry(m.exponents, m.coefficients))
    hess = algebra.pair_hessians(b, ps.points, ps.jacobian)
    g0 = algebra.pack(algebra.fs_pulled(ps.points, ps.jacobian))
    raw = gn.MAProblem(g0=g0, hess=hess, log_omega=np.log(ps.omega_sq), weights=ps.weights, dim=3)
    t = gn.whitening(raw)
    pw = gn.MAProblem(g0=g0, hess=np.einsum("npk,pq->nqk", hess, t), log_omega=raw.log_omega,
                      weights=raw.weights, dim=3)
    assert isinstance(pw, LeastSquaresProblem)
    return pw


@pytest.mark.parametrize("scaling", ["identity", "marquardt"])
def test_history_equals_the_dense_monge_ampere_loop(ma_problem, scaling):
    theta, hist = reference_lm(ma_problem, max_iter=12, gtol=1e-10, scaling=scaling)
    new = levenberg_marquardt(ma_problem, LMConfig(max_iter=12, gtol=1e-10, scaling=scaling))
    assert len(new.history) == len(hist) >= 5 and new.status is LMStatus.CONVERGED
    # identity: the same arithmetic, bit for bit; Marquardt: D from lin.diag instead of diag(A) (rounding);
    # rel_decrease = ΔF/F carries an error of ε·F in F as an absolute ε
    tol = 0.0 if scaling == "identity" else 1e-12
    for a, b in zip(new.history, hist):
        for k in STEP_KEYS:
            rel, abs_ = (0.0, tol) if k == "rel_decrease" else (tol, 0.0)
            assert a[k] == pytest.approx(b[k], rel=rel, abs=abs_), (k, a, b)
    np.testing.assert_allclose(new.value, theta, rtol=0, atol=tol * np.abs(theta).max())


def test_cg_solve_follows_the_dense_path_on_the_monge_ampere_problem(ma_problem):
    dense = levenberg_marquardt(ma_problem, LMConfig(max_iter=6))
    mf = levenberg_marquardt(ma_problem, LMConfig(max_iter=6), solve=CGSolve(rtol=1e-12))
    assert all(h["cg_converged"] for h in mf.history)
    np.testing.assert_allclose([h["loss"] for h in mf.history], [h["loss"] for h in dense.history], rtol=1e-8)


def test_backtracking_accepts_the_halved_step_where_the_full_one_overshoots():
    """r(θ) = atan(θ) from θ = 2: the Gauss–Newton step δ = −atan(2)(1 + 4) lands at −3.5 where |atan| is
    larger (rejected); θ + δ/2 = −0.77 decreases F. backtrack=2 accepts δ/2 in the same step (same λ,
    ``step_scale`` 0.5, one solve); backtrack=0 rejects and raises λ — and the non-finite side (a
    feasibility cut) is backtracked over too."""
    prob = ResidualProblem(lambda th: np.arctan(th), lambda th: np.array([[1.0 / (1.0 + th[0] ** 2)]]), [2.0], [1.0])
    cfg = LMConfig(lam0=1e-12, max_tries=1, stop_on_reject=False, max_iter=5)
    st = initial_state(prob, cfg)
    rej = lm_step(prob, st, cfg, DenseSolve())
    assert not rej.history[-1]["accepted"] and rej.lam == pytest.approx(1e-11)
    bt = lm_step(prob, st, replace(cfg, backtrack=2), DenseSolve())
    rec = bt.history[-1]
    delta = -np.arctan(2.0) * 5.0
    assert rec["accepted"] and rec["step_scale"] == 0.5 and bt.lam == pytest.approx(1e-12)
    np.testing.assert_allclose(bt.theta, [2.0 + 0.5 * delta], rtol=1e-9)
    assert bt.loss == pytest.approx(np.arctan(bt.theta[0]) ** 2, rel=1e-12)
    # the full step leaves the feasible set (loss +inf): backtracking finds the feasible half step too
    cut = ResidualProblem(prob.fun, prob.jac, [2.0], [1.0], feasible=lambda th: th[0] > -1.0)
    bt2 = lm_step(cut, initial_state(cut, cfg), replace(cfg, backtrack=3), DenseSolve())
    assert bt2.history[-1]["accepted"] and bt2.history[-1]["step_scale"] == 0.5
    with pytest.raises(ValueError, match="backtrack"):
        LMConfig(backtrack=-1)
