"""Levenberg–Marquardt for weighted nonlinear least squares, with pluggable linear solves.

Problem (a :class:`LeastSquaresProblem`): residuals r(θ) ∈ ℝᵐ of p parameters θ, positive weights W,
an optional positive semi-definite ridge P (p × p) of weight μ ≥ 0:

    F(θ) = L(θ) + μ θᵀPθ,        L(θ) = Σ_x w_x r_x(θ)² / m        (L = +inf where θ is infeasible)

One step linearises r at θ (J = ∂r/∂θ, an engine ``LinearOperator`` of shape (m, p)) and solves

    (JᵀWJ/m + λD + μP) δ = −(JᵀWr/m + μPθ)

with D = I (``scaling="identity"``: whitened parameters) or D = diag(JᵀWJ)/m (``"marquardt"``).
θ + δ is accepted when F decreases (an infeasible θ + δ has F = +inf and is rejected); λ ← max(λ·lam_down,
min_lam) on acceptance, λ ← λ·lam_up on rejection, and a step retries with the larger λ up to
``max_tries`` times or until λ > max_lam.  The run ends when the relative decrease of an accepted step
(F_old − F_new)/F_old is below ``gtol`` (CONVERGED), when a step cannot decrease F (NO_DECREASE), after
``max_iter`` steps (MAX_ITER), when the time budget is spent (TIME_BUDGET), when a hook asks or the user
interrupts (STOPPED), or on a non-finite residual (NONFINITE).  Fixed points are stationary points of F
(∇F = 2JᵀWr/m + 2μPθ = 0).

The linear solve is a parameter (as in optimistix, or SciPy's ``least_squares(tr_solver=...)``):
:class:`DenseSolve` forms JᵀWJ/m and calls ``numpy.linalg.solve``; :class:`CGSolve` runs Jacobi- or
randomized-Nyström-preconditioned CG (:func:`ntkflow.solvers.cg`) on the operator JᵀWJ/m + λD + μP built from ``J.mv``/
``J.T.mv`` products only.  A step solver has ``init(lin, weights, mu, P, θ)`` (once per step: what
does not depend on λ) and ``compute(system, λ, D) -> (δ or None, record entries)`` (once per λ tried);
``solve(lin, weights, λ, D, mu, P, θ)`` is the two in one.  A problem whose residual lives elsewhere (a dask
cluster, sharded devices) returns :class:`NormalEquations` (JᵀWr/m, the operator JᵀWJ/m, its diagonal)
from ``linearise`` instead: both step solvers take either form, and the driver then holds only
parameter-sized vectors.

Hand-written rather than ``scipy.optimize.least_squares`` because that takes neither an engine
operator with a weighted ridge, nor a +inf feasibility test in the acceptance, nor a resumable state.

Hooks ``hook(state, record) -> dict | None`` run after every step: a returned dict is merged into that
step's history record (held-out σ, elapsed time); ``{"stop": True | "message" | LMStatus}`` stops the run.
Ready-made: :class:`ProgressHook`, :func:`time_budget`, :class:`CheckpointHook` (+ :func:`load_checkpoint`).

KeyboardInterrupt: the driver does not re-raise; it returns the last state whose *step* completed, with
status STOPPED.  An interrupt inside the step's computation returns the previous state; an interrupt
inside the hooks returns the new state with the hook entries merged so far.  A :class:`CheckpointHook`
placed before the interrupt point has already written that state; resume with
``levenberg_marquardt(problem, config, state=load_checkpoint(path)[0])``.

>>> import numpy as np
>>> from ntkflow.engine.operators import DenseOperator
>>> A = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]]); y = np.array([1.0, 2.0, 4.0])
>>> class Line:
...     n_params = 2; weights = np.ones(3)
...     def initial(self): return np.zeros(2)
...     def loss(self, th): return float(np.mean((A @ th - y) ** 2))
...     def linearise(self, th): return Linearisation(A @ th - y, DenseOperator(A), np.mean(A * A, 0))
...     def penalty(self): return None
>>> res = levenberg_marquardt(Line(), LMConfig(gtol=1e-14))
>>> res.status.name, bool(np.allclose(res.value, np.linalg.lstsq(A, y, rcond=None)[0]))
('CONVERGED', True)
"""
from __future__ import annotations

import enum
import json
import math
import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import numpy as np

from ntkflow._checks import nonneg_float, positive_float, positive_int
from ntkflow.io import NtkflowFileError, atomic_savez, atomic_text, file_array, read_json, read_npz
from ntkflow.engine.operators import DenseOperator, LinearOperator

from .cg import cg
from .preconditioners import NystromSketch, randomized_nystrom

__all__ = [
    "Linearisation",
    "NormalEquations",
    "LeastSquaresProblem",
    "LMConfig",
    "LMState",
    "LMStatus",
    "LMResult",
    "DenseSolve",
    "CGSolve",
    "initial_state",
    "lm_step",
    "levenberg_marquardt",
    "ProgressHook",
    "TimeBudgetHook",
    "time_budget",
    "CheckpointHook",
    "save_checkpoint",
    "load_checkpoint",
]

#: floor of the Marquardt scaling D and of the Jacobi preconditioner (a zero column of J)
_DIAG_FLOOR = 1e-300


# ------------------------------------------------------------------------------------------
# the protocol
# ------------------------------------------------------------------------------------------


class Linearisation(NamedTuple):
    """The problem linearised at θ (immutable; returned by ``linearise``, never stored on the problem)."""

    r: np.ndarray  # (m,) residual at θ
    J: LinearOperator  # (m, p) ∂r/∂θ: J.mv(v), J.T.mv(u), J.mm(V)
    diag: np.ndarray  # (p,) diag(JᵀWJ)/m: Jacobi preconditioner and Marquardt scaling


class NormalEquations(NamedTuple):
    """The problem linearised at θ in normal-equations form: what a problem returns from ``linearise``
    when its residual never leaves where it is computed (a dask cluster, sharded devices), so that the
    driver holds only parameter-sized vectors.  Same step equation as :class:`Linearisation`:
    (gram + λD + μP) δ = −(grad + μPθ)."""

    grad: np.ndarray  # (p,) JᵀWr/m
    gram: LinearOperator  # (p, p) JᵀWJ/m, symmetric positive semi-definite
    diag: np.ndarray  # (p,) diag(JᵀWJ)/m: Jacobi preconditioner and Marquardt scaling


@runtime_checkable
class LeastSquaresProblem(Protocol):
    """min_θ Σ_x w_x r_x(θ)²/m + μ θᵀPθ (see the module docstring)."""

    n_params: int  # p
    weights: np.ndarray | None  # (m,) W > 0, used as given; None when linearise returns NormalEquations

    def initial(self) -> np.ndarray:
        """(p,) θ₀."""

    def loss(self, theta) -> float:
        """Σ w r²/m at θ; +inf where θ is infeasible (e.g. the metric is not positive definite)."""

    def linearise(self, theta) -> Linearisation | NormalEquations | None:
        """r, J and diag(JᵀWJ)/m at θ (or the normal equations, :class:`NormalEquations`); None where θ
        is infeasible."""

    def penalty(self) -> LinearOperator | None:
        """The ridge P (p × p, positive semi-definite), or None."""


# ------------------------------------------------------------------------------------------
# configuration, state, status, result
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LMConfig:
    """Levenberg–Marquardt settings (the defaults are the dense Monge–Ampère job's).

    max_iter: steps at most (counted from the start of the run, across resumes);
    lam0: initial damping λ > 0; lam_up > 1 / lam_down ∈ (0, 1): λ factors on rejection / acceptance;
    gtol: CONVERGED when an accepted step decreases F by less than gtol·F (relative);
    min_lam / max_lam: λ floor on acceptance / NO_DECREASE once λ exceeds it;
    max_tries: λ increases tried inside one step before it counts as rejected;
    stop_on_reject: True — a rejected step (all tries failed) ends the run with NO_DECREASE;
        False — it is recorded and the next step starts from the larger λ (one try per step:
        ``max_tries=1, stop_on_reject=False``), the run ending with NO_DECREASE once λ > max_lam;
    scaling: "identity" (D = I, whitened parameters) or "marquardt" (D = diag(JᵀWJ)/m);
    mu: weight μ ≥ 0 of the ridge μθᵀPθ (needs ``problem.penalty()``);
    time_budget: seconds (≥ 0) of this call after which the run stops with TIME_BUDGET (checked after
        each step, so at least one step runs), or None;
    backtrack: when a try does not decrease F, first try θ + δ/2, θ + δ/4, … (this many halvings; each one
        loss evaluation, no new solve) and accept the first that decreases F, keeping λ (the record gets
        ``step_scale``); 0 (default) rejects at once. Worth it where a solve costs minutes and a loss
        evaluation seconds (the matrix-free Gauss–Newton: a full step can leave the positive cone at one
        of 10⁵ points).
    """

    max_iter: int = 30
    lam0: float = 1e-3
    lam_up: float = 10.0
    lam_down: float = 0.3
    gtol: float = 1e-6
    min_lam: float = 1e-12
    max_lam: float = 1e12
    max_tries: int = 20
    stop_on_reject: bool = True
    scaling: str = "identity"
    mu: float = 0.0
    time_budget: float | None = None
    backtrack: int = 0

    def __post_init__(self):
        positive_int("max_iter", self.max_iter)
        if isinstance(self.backtrack, bool) or not isinstance(self.backtrack, (int, np.integer)) or self.backtrack < 0:
            raise ValueError(f"backtrack: expected an integer >= 0 (halvings of a failed step), received {self.backtrack!r}.")
        positive_float("lam0", self.lam0)
        if positive_float("lam_up", self.lam_up) <= 1:
            raise ValueError(f"lam_up: must be > 1 (λ grows on rejection), received {self.lam_up}.")
        if not 0 < positive_float("lam_down", self.lam_down) < 1:
            raise ValueError(f"lam_down: must be in (0, 1) (λ shrinks on acceptance), received {self.lam_down}.")
        nonneg_float("gtol", self.gtol)
        if positive_float("max_lam", self.max_lam) <= nonneg_float("min_lam", self.min_lam):
            raise ValueError(f"max_lam: must be > min_lam = {self.min_lam}, received {self.max_lam}.")
        positive_int("max_tries", self.max_tries)
        if not isinstance(self.stop_on_reject, bool):
            raise TypeError(f"stop_on_reject: expected True or False, received {self.stop_on_reject!r}.")
        if self.scaling not in ("identity", "marquardt"):
            raise ValueError(f"scaling: expected 'identity' or 'marquardt', received {self.scaling!r}.")
        nonneg_float("mu", self.mu)
        if self.time_budget is not None:
            nonneg_float("time_budget", self.time_budget)


@dataclass(frozen=True)
class LMState:
    """Everything needed to continue a run exactly (a checkpoint is ``to_arrays()`` + json history).

    ``loss`` is the objective F(θ) = L(θ) + μθᵀPθ that the steps decrease (L when μ = 0).
    """

    theta: np.ndarray  # (p,) float64
    lam: float  # λ of the next step
    loss: float  # F(θ)
    iteration: int = 0  # steps taken
    n_accepted: int = 0
    done: bool = False  # CONVERGED or NO_DECREASE reached
    history: tuple = ()  # one dict per step

    def to_arrays(self) -> dict:
        """The state without its history as NumPy arrays (for ``np.savez``)."""
        return {"theta": np.asarray(self.theta, dtype=np.float64), "lam": np.float64(self.lam),
                "loss": np.float64(self.loss), "iteration": np.int64(self.iteration),
                "n_accepted": np.int64(self.n_accepted), "done": np.bool_(self.done)}

    @classmethod
    def from_arrays(cls, arrs, history=()) -> "LMState":
        """Inverse of :meth:`to_arrays` (``history``: the records, e.g. read from json)."""
        return cls(theta=np.array(arrs["theta"], dtype=np.float64), lam=float(arrs["lam"]),
                   loss=float(arrs["loss"]), iteration=int(arrs["iteration"]),
                   n_accepted=int(arrs["n_accepted"]), done=bool(arrs["done"]),
                   history=tuple(dict(h) for h in history))


class LMStatus(str, enum.Enum):
    """Why a Levenberg–Marquardt run ended (``LMStatus.HOW_TO_FIX[status]`` says what to do)."""

    CONVERGED = "converged"
    MAX_ITER = "max_iter"
    TIME_BUDGET = "time_budget"
    STOPPED = "stopped"
    NO_DECREASE = "no_decrease"
    NONFINITE = "nonfinite"


LMStatus.HOW_TO_FIX = {
    LMStatus.CONVERGED: "an accepted step decreased the objective by less than gtol (relative): a stationary "
                        "point to that tolerance; lower gtol for more digits.",
    LMStatus.MAX_ITER: "max_iter steps were taken before the relative decrease fell below gtol: raise max_iter "
                       "(resume with state=result.state to continue) or raise gtol.",
    LMStatus.TIME_BUDGET: "the time budget was spent before convergence: resume with state=result.state (or the "
                          "checkpoint) and a larger time budget.",
    LMStatus.STOPPED: "a hook asked to stop or the run was interrupted (KeyboardInterrupt): resume with "
                      "state=result.state or state=load_checkpoint(path)[0].",
    LMStatus.NO_DECREASE: "no step decreased the objective although λ grew to max_lam or max_tries tries were "
                          "used: θ is (numerically) stationary, or the Jacobian is wrong (check it against "
                          "finite differences), or every step leaves the feasible set (loss = +inf) — start "
                          "closer to the solution or rescale the parameters.",
    LMStatus.NONFINITE: "the residual, its linearisation or the loss is NaN/inf (or infeasible) at the current "
                        "θ: start from a feasible θ₀ (loss finite) and check the residual for overflow or "
                        "log/sqrt of negative values.",
}


@dataclass(frozen=True)
class LMResult:
    """Result of :func:`levenberg_marquardt` (value = θ)."""

    value: np.ndarray  # (p,) θ at the end
    status: LMStatus
    message: str  # what happened and how to fix it
    converged: bool  # status is CONVERGED
    iterations: int  # steps taken (including those before a resume)
    loss: float  # objective F(θ)
    state: LMState  # pass as state= to continue
    history: tuple = field(default=(), repr=False)  # one dict per step


# ------------------------------------------------------------------------------------------
# step solvers
# ------------------------------------------------------------------------------------------


def _penalty_parts(P: LinearOperator | None, mu: float, theta):
    """(μPθ (p,) or None, diag(μP) (p,) or None)."""
    if P is None or mu == 0:
        return None, None
    return mu * P.mv(theta), mu * np.real(P.diag())


@dataclass(frozen=True)
class _DenseSystem:
    """JᵀWJ/m (+ μP) and JᵀWr/m (+ μPθ), formed once per step and reused by every λ tried."""

    a: np.ndarray  # (p, p)
    b: np.ndarray  # (p,)


@dataclass(frozen=True)
class DenseSolve:
    """Exact normal equations: A = JᵀWJ/m formed densely (J.to_dense()), δ = −solve(A + μP + λ diag(D), b).

    Cost O(m p²) once per step, O(p³) per λ tried; for p up to a few thousand.
    """

    def init(self, lin: Linearisation, weights, mu: float, P: LinearOperator | None, theta) -> _DenseSystem:
        if isinstance(lin, NormalEquations):
            a, b = np.asarray(lin.gram.to_dense(), dtype=np.float64), np.asarray(lin.grad, dtype=np.float64)
            if P is not None and mu != 0:
                a = a + mu * np.asarray(P.to_dense())
                b = b + mu * P.mv(theta)
            return _DenseSystem(a=a, b=b)
        # (m, p); a DenseOperator's own matrix, not a copy (the Monge–Ampère Jacobian can be GBs)
        j = lin.J.matrix if isinstance(lin.J, DenseOperator) else np.asarray(lin.J.to_dense())
        r = np.asarray(lin.r)
        m = len(r)
        jw = j * np.asarray(weights)[:, None]
        a = jw.T @ j / m  # the arithmetic of cy.gauss_newton (behaviour kept bit for bit)
        b = jw.T @ r / m
        if P is not None and mu != 0:
            a = a + mu * np.asarray(P.to_dense())
            b = b + mu * P.mv(theta)
        return _DenseSystem(a=a, b=b)

    def compute(self, system: _DenseSystem, lam: float, D) -> tuple[np.ndarray | None, dict]:
        try:
            return -np.linalg.solve(system.a + lam * np.diag(D), system.b), {}
        except np.linalg.LinAlgError:
            return None, {"solve_error": "singular normal equations"}

    def solve(self, lin, weights, lam, D, mu, P, theta) -> tuple[np.ndarray | None, dict]:
        """δ solving (JᵀWJ/m + λ diag(D) + μP) δ = −(JᵀWr/m + μPθ); (None, info) if singular."""
        return self.compute(self.init(lin, weights, mu, P, theta), lam, D)


def _worst(rel) -> float:
    """The largest finite entry of ``rel`` (NaN when none is finite)."""
    rel = np.asarray(rel, dtype=np.float64)
    fin = np.isfinite(rel)
    return float(rel[fin].max()) if fin.any() else float("nan")


@dataclass(frozen=True, repr=False)
class _NormalOperator(LinearOperator):
    """JᵀWJ/m + λ diag(D) + μP applied by products with J and Jᵀ only (p × p)."""

    J: LinearOperator | None  # (m, p), or None when ``gram`` is given
    JT: LinearOperator | None
    w: np.ndarray | None  # (m,)
    lam: float
    D: np.ndarray  # (p,)
    mu: float
    P: LinearOperator | None
    gram: LinearOperator | None = None  # (p, p) JᵀWJ/m applied directly (NormalEquations)

    @property
    def shape(self):
        p = self.D.shape[0]
        return (p, p)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        if self.gram is not None:
            out = self.gram.mm(V) + self.lam * self.D[:, None] * V
        else:
            out = self.JT.mm(self.w[:, None] * self.J.mm(V)) / self.J.shape[0] + self.lam * self.D[:, None] * V
        if self.P is not None and self.mu != 0:
            out = out + self.mu * self.P.mm(V)
        return out


@dataclass(frozen=True)
class _CGSystem:
    lin: Linearisation | NormalEquations
    JT: LinearOperator | None
    w: np.ndarray | None
    b: np.ndarray  # (p,) right-hand side −(JᵀWr/m + μPθ)
    mu: float
    P: LinearOperator | None
    pdiag: np.ndarray | None  # (p,) diag(μP) or None
    sketch: NystromSketch | None = None  # randomized Nyström sketch of the Jacobi-scaled Gram (once per step)


def _gram_mm(lin, JT, w):
    """V (p, k) -> JᵀWJ V/m (p, k): the Gram of a linearisation, by products only."""
    if isinstance(lin, NormalEquations):
        return lin.gram.mm
    m = lin.J.shape[0]
    return lambda V: JT.mm(w[:, None] * lin.J.mm(V)) / m


#: preconditioners of :class:`CGSolve`
PRECONDITIONERS = ("jacobi", "nystrom", None)


@dataclass(frozen=True)
class CGSolve:
    """Matrix-free normal equations by preconditioned CG (:func:`ntkflow.solvers.cg`).

    Solves (JᵀWJ/m + λ diag(D) + μP) δ = −(JᵀWr/m + μPθ) with two products (J.mm, J.T.mm) per CG
    iteration, to ‖residual‖ ≤ rtol·‖rhs‖ or ``maxiter`` iterations (None: CG's default 10·p).
    ``preconditioner``:

    * ``"jacobi"`` (default): M⁻¹ = diag(JᵀWJ)/m + λD + diag(μP), from ``lin.diag``;
    * ``"nystrom"``: the randomized Nyström preconditioner of the Jacobi-scaled Gram
      (:mod:`ntkflow.solvers.preconditioners`, Frangella–Tropp–Udell): ``init`` sketches S·JᵀWJ/m·S
      (S = diag(lin.diag)^(-1/2)) with ``rank`` random columns — one batched product of width ``rank`` —
      and ``compute`` builds M ≈ (JᵀWJ/m + λD + diag μP)⁻¹ from that sketch for every λ tried (an r × r
      Cholesky factor); the Gaussian test matrix comes from ``numpy.random.default_rng(seed)``;
    * ``None``: plain CG.

    The record of each step gets ``cg_iterations``, ``cg_status`` and ``cg_converged`` of its last try
    (and with ``"nystrom"`` ``precond_seconds``, the sketch's wall time, and ``precond_rank``): an
    unconverged CG still proposes its last iterate, which the loss test accepts or rejects.
    """

    rtol: float = 1e-10
    maxiter: int | None = None
    preconditioner: str | None = "jacobi"
    rank: int = 64
    seed: int = 0
    #: optional ``progress(iteration, relative_residual)`` after every CG iteration (:func:`ntkflow.solvers.cg`'s
    #: callback; not part of the solver's identity)
    progress: Callable | None = field(default=None, compare=False)

    def __post_init__(self):
        positive_float("rtol", self.rtol)
        if self.maxiter is not None:
            positive_int("maxiter", self.maxiter)
        if self.preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner: expected one of {PRECONDITIONERS}, received {self.preconditioner!r}.")
        positive_int("rank", self.rank)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed: expected an integer seed of the Nyström sketch, received {self.seed!r}.")

    def init(self, lin: Linearisation, weights, mu: float, P: LinearOperator | None, theta) -> _CGSystem:
        if isinstance(lin, NormalEquations):
            w, JT = None, None
            b = -np.asarray(lin.grad, dtype=np.float64)
        else:
            w = np.asarray(weights, dtype=np.float64)
            m = len(lin.r)
            JT = lin.J.T
            b = -JT.mv(w * np.asarray(lin.r)) / m
        pen, pdiag = _penalty_parts(P, mu, theta)
        if pen is not None:
            b = b - pen
        sketch = None
        if self.preconditioner == "nystrom":  # depends on the Gram only: once per step, reused for every λ
            sketch = randomized_nystrom(_gram_mm(lin, JT, w), self.rank, p=len(b),
                                        diag=np.maximum(np.asarray(lin.diag, dtype=np.float64), 0.0), seed=self.seed)
        return _CGSystem(lin=lin, JT=JT, w=w, b=b, mu=mu, P=P, pdiag=pdiag, sketch=sketch)

    def compute(self, system: _CGSystem, lam: float, D) -> tuple[np.ndarray | None, dict]:
        D = np.asarray(D, dtype=np.float64)
        normal = isinstance(system.lin, NormalEquations)
        op = _NormalOperator(J=None if normal else system.lin.J, JT=system.JT, w=system.w, lam=float(lam), D=D,
                             mu=system.mu, P=system.P, gram=system.lin.gram if normal else None)
        pre = None
        extra = {}
        if self.preconditioner == "jacobi":
            dg = np.maximum(np.asarray(system.lin.diag, dtype=np.float64), _DIAG_FLOOR)
            if system.pdiag is None and np.array_equal(D, dg):
                # Marquardt scaling: D = diag, so diag + λD = D(1 + λ); this form (and dividing rather
                # than multiplying by the inverse) keeps the dual path's earlier CG iterates bit for bit.
                pd = D * (1.0 + lam)
                pre = lambda V: V / pd[:, None]  # noqa: E731
            else:
                pd = dg + lam * D
                if system.pdiag is not None:
                    pd = pd + system.pdiag
                inv = 1.0 / pd  # (p,)
                pre = lambda V: inv[:, None] * V  # noqa: E731
        elif self.preconditioner == "nystrom":
            shift = lam * D if system.pdiag is None else lam * D + np.maximum(system.pdiag, 0.0)
            pre = system.sketch.preconditioner(shift)
            extra = {"precond_seconds": float(system.sketch.seconds), "precond_rank": system.sketch.rank}
        cb = None if self.progress is None else (lambda i, rel: self.progress(i, _worst(rel)))
        res = cg(op, system.b, rtol=self.rtol, maxiter=self.maxiter, precond=pre, callback=cb)
        info = {"cg_iterations": int(res.iterations), "cg_status": res.status, "cg_converged": bool(res.converged),
                **extra}
        delta = np.asarray(res.value, dtype=np.float64)
        return (delta if np.all(np.isfinite(delta)) else None), info

    def solve(self, lin, weights, lam, D, mu, P, theta) -> tuple[np.ndarray | None, dict]:
        """δ solving (JᵀWJ/m + λ diag(D) + μP) δ = −(JᵀWr/m + μPθ) by CG; info has the CG outcome."""
        return self.compute(self.init(lin, weights, mu, P, theta), lam, D)


# ------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------


def _penalty(problem) -> LinearOperator | None:
    fn = getattr(problem, "penalty", None)
    return None if fn is None else fn()


def _objective(problem, theta, mu: float, P) -> tuple[float, float]:
    """(F(θ), L(θ)); F = L + μθᵀPθ, +inf/NaN propagate."""
    loss = float(problem.loss(theta))
    if P is None or mu == 0 or not math.isfinite(loss):
        return loss, loss
    return loss + mu * float(theta @ P.mv(theta)), loss


def _check_mu(problem, config: LMConfig, P):
    if config.mu > 0 and P is None:
        raise ValueError(f"mu: config.mu = {config.mu} but {type(problem).__name__}.penalty() returns None; "
                         f"set mu=0 or give the problem a penalty operator.")


def initial_state(problem: LeastSquaresProblem, config: LMConfig = LMConfig()) -> LMState:
    """θ₀ = ``problem.initial()``, λ = lam0, loss = F(θ₀) (may be non-finite: the driver reports it)."""
    theta = np.array(problem.initial(), dtype=np.float64)
    if theta.shape != (problem.n_params,):
        raise ValueError(f"initial: expected θ₀ of shape ({problem.n_params},) (n_params), received {theta.shape}.")
    P = _penalty(problem)
    _check_mu(problem, config, P)
    return LMState(theta=theta, lam=float(config.lam0), loss=_objective(problem, theta, config.mu, P)[0])


def lm_step(problem: LeastSquaresProblem, state: LMState, config: LMConfig = LMConfig(),
            solve=DenseSolve()) -> LMState:
    """One Levenberg–Marquardt step from ``state`` (pure: returns the next state with one more record).

    Linearises at θ, then tries λ, λ·lam_up, … (at most ``max_tries``, λ ≤ max_lam) until F(θ + δ) < F(θ).
    Raises FloatingPointError when the linearisation at θ is missing (infeasible) or not finite.
    """
    t0 = time.perf_counter()
    theta = state.theta
    loss = state.loss
    P = _penalty(problem)
    _check_mu(problem, config, P)
    lin = problem.linearise(theta)
    if lin is None:
        raise FloatingPointError(f"linearise returned None at iteration {state.iteration} (θ infeasible).")
    first = lin.grad if isinstance(lin, NormalEquations) else lin.r
    if not (np.all(np.isfinite(first)) and np.all(np.isfinite(lin.diag))):
        raise FloatingPointError(f"the residual (or JᵀWr) or diag(JᵀWJ) is not finite at iteration {state.iteration}.")
    D = np.ones(problem.n_params) if config.scaling == "identity" else np.maximum(lin.diag, _DIAG_FLOOR)
    system = solve.init(lin, getattr(problem, "weights", None), config.mu, P, theta)
    lam = state.lam
    tries = 0
    nonfinite = 0
    while True:
        tries += 1
        delta, info = solve.compute(system, lam, D)
        new_loss, new_data = (np.inf, np.inf) if delta is None else _objective(problem, theta + delta, config.mu, P)
        if not (new_loss == new_loss):  # NaN: rejected like +inf, counted
            nonfinite += 1
        if new_loss < loss:
            accepted = True
            new_theta = theta + delta
            rel = (loss - new_loss) / max(loss, 1e-300)
            new_lam = max(lam * config.lam_down, config.min_lam)
            break
        scale = 1.0
        for _ in range(config.backtrack if delta is not None else 0):  # θ + δ/2, θ + δ/4, …: loss evaluations only
            scale *= 0.5
            new_loss, new_data = _objective(problem, theta + scale * delta, config.mu, P)
            if new_loss < loss:
                break
        if scale < 1.0 and new_loss < loss:
            accepted = True
            new_theta = theta + scale * delta
            rel = (loss - new_loss) / max(loss, 1e-300)
            new_lam = lam  # the model overshot: no decrease of λ
            info = {**info, "step_scale": scale}
            break
        lam = lam * config.lam_up
        if lam > config.max_lam or tries >= config.max_tries:
            accepted = False
            new_theta, new_loss, rel, new_lam = theta, loss, 0.0, lam
            new_data = None
            break
    exhausted = lam > config.max_lam
    done = (not accepted and (config.stop_on_reject or exhausted)) or (accepted and rel < config.gtol)
    rec = {"iteration": state.iteration + 1, "loss": float(new_loss), "lam": float(lam),
           "accepted": bool(accepted), "tries": tries, "rel_decrease": float(rel),
           "step_seconds": time.perf_counter() - t0}
    if P is not None and config.mu != 0:
        data = new_data if new_data is not None else _objective(problem, theta, config.mu, P)[1]
        rec["loss"] = float(data)  # the data term L; the objective F separately
        rec["objective"] = float(new_loss)
    if nonfinite:
        rec["nonfinite_tries"] = nonfinite
    rec.update(info)
    return LMState(theta=new_theta, lam=float(new_lam), loss=float(new_loss), iteration=state.iteration + 1,
                   n_accepted=state.n_accepted + int(accepted), done=bool(done), history=state.history + (rec,))


def _stop_status(value) -> LMStatus:
    return value if isinstance(value, LMStatus) else LMStatus.STOPPED


def _result(state: LMState, status: LMStatus, detail: str = "") -> LMResult:
    message = f"Levenberg–Marquardt {status.value} after {state.iteration} steps (objective {state.loss:.6g})"
    message += (f"; {detail}" if detail else "") + f": {LMStatus.HOW_TO_FIX[status]}"
    return LMResult(value=state.theta, status=status, message=message, converged=status is LMStatus.CONVERGED,
                    iterations=state.iteration, loss=state.loss, state=state, history=state.history)


def _done_status(state: LMState) -> LMStatus:
    last = state.history[-1] if state.history else None
    return LMStatus.CONVERGED if last is not None and last["accepted"] else LMStatus.NO_DECREASE


def _run_hooks(hooks, state: LMState) -> tuple[LMState, Any]:
    """Call each hook in order with the state whose last record holds the earlier hooks' entries.
    Returns (state, stop value or None); every hook runs even after one asks to stop."""
    stop = None
    for hook in hooks:
        out = hook(state, state.history[-1])
        if out:
            out = dict(out)
            s = out.pop("stop", None)
            if s is not None and s is not False and stop is None:
                stop = s
            if out:
                rec = {**state.history[-1], **out}
                state = replace(state, history=state.history[:-1] + (rec,))
    return state, stop


def levenberg_marquardt(problem: LeastSquaresProblem, config: LMConfig = LMConfig(), *, solve=DenseSolve(),
                        state: LMState | None = None, hooks=()) -> LMResult:
    """Minimise F(θ) = Σ w r²/m + μθᵀPθ by Levenberg–Marquardt (see the module docstring).

    Args:
        problem: a :class:`LeastSquaresProblem`.
        config: :class:`LMConfig`.
        solve: the step solver, :class:`DenseSolve` (default) or :class:`CGSolve`.
        state: continue from this state (a previous ``result.state`` or ``load_checkpoint(path)[0]``);
            default :func:`initial_state`.  A resumed run equals the uninterrupted one.
        hooks: callables ``hook(state, record) -> dict | None`` run in order after every step.

    Returns:
        :class:`LMResult` with ``status`` (:class:`LMStatus`) and a ``message`` saying how to fix it.
    """
    t0 = time.perf_counter()
    hooks = tuple(hooks)
    st = state if state is not None else initial_state(problem, config)
    if st.theta.shape != (problem.n_params,):
        raise ValueError(f"state: θ has shape {st.theta.shape}, the problem has n_params = {problem.n_params}; "
                         f"resume with the state of the same problem.")
    if not math.isfinite(st.loss):
        return _result(st, LMStatus.NONFINITE, f"the objective at θ is {st.loss}")
    while True:
        if st.done:
            return _result(st, _done_status(st))
        if st.loss == 0.0:  # an exact zero of the residual: no step can decrease F
            return _result(st, LMStatus.CONVERGED, "the objective is exactly zero")
        if st.iteration >= config.max_iter:
            return _result(st, LMStatus.MAX_ITER)
        try:
            new = lm_step(problem, st, config, solve)
        except FloatingPointError as e:
            return _result(st, LMStatus.NONFINITE, str(e))
        except KeyboardInterrupt:
            return _result(st, LMStatus.STOPPED, "interrupted during a step (KeyboardInterrupt); the state "
                                                 "before that step is returned")
        st = new
        try:
            st, stop = _run_hooks(hooks, st)
        except KeyboardInterrupt:
            return _result(st, LMStatus.STOPPED, "interrupted in a hook (KeyboardInterrupt) after the step "
                                                 "completed")
        if st.done:  # converged or exhausted at this step: that outcome outranks a hook's stop
            continue
        if stop is not None:
            detail = stop if isinstance(stop, str) else f"a hook asked to stop ({stop!r})"
            if isinstance(stop, LMStatus):
                detail = f"a hook stopped the run with status {stop.value}"
            return _result(st, _stop_status(stop), detail)
        if config.time_budget is not None and time.perf_counter() - t0 >= config.time_budget:
            return _result(st, LMStatus.TIME_BUDGET, f"time_budget = {config.time_budget:g} s spent")


# ------------------------------------------------------------------------------------------
# hooks
# ------------------------------------------------------------------------------------------

_FMT = re.compile(r"^(?P<align>[<>^=]?)(?P<width>\d*)")


@dataclass(frozen=True)
class ProgressHook:
    """Prints one table row per step: ``columns`` are (record key, format spec) pairs, e.g.
    ``(("iteration", ">4"), ("loss", ">11.4e"), ("lam", ">8.1e"))``; a missing key prints blank.

    ``headers`` maps keys to column titles (default: the key); :meth:`header` is the title line
    (the caller prints it once, before the run).  Rows and header start with ``indent``; a rejected
    step's row ends with ``rejected``.
    """

    columns: tuple = (("iteration", ">4"), ("loss", ">11.4e"), ("lam", ">8.1e"), ("step_seconds", ">7.2f"))
    print_fn: Callable = print
    headers: dict = field(default_factory=dict)
    indent: str = "  "
    rejected: str = "  (rejected)"

    def __post_init__(self):
        cols = tuple(tuple(c) for c in self.columns)
        for c in cols:
            if len(c) != 2 or not isinstance(c[0], str) or not isinstance(c[1], str):
                raise ValueError(f"columns: expected (key, format spec) pairs like ('loss', '>11.4e'), received {c!r}.")
        object.__setattr__(self, "columns", cols)

    def _width(self, spec):
        m = _FMT.match(spec)
        return (m.group("align") or ">") + m.group("width")

    def header(self) -> str:
        return self.indent + " ".join(format(self.headers.get(k, k), self._width(s)) for k, s in self.columns)

    def row(self, record: dict) -> str:
        cells = [format(record[k], s) if record.get(k) is not None else format("", self._width(s))
                 for k, s in self.columns]
        return self.indent + " ".join(cells) + ("" if record.get("accepted", True) else self.rejected)

    def __call__(self, state, record):
        self.print_fn(self.row(record))


@dataclass(frozen=True)
class TimeBudgetHook:
    """Adds ``elapsed`` (seconds since ``start``, a ``time.perf_counter()`` value) to each record and
    stops the run with TIME_BUDGET once elapsed ≥ ``seconds``."""

    seconds: float
    start: float

    def __post_init__(self):
        nonneg_float("seconds", self.seconds)

    def __call__(self, state, record):
        elapsed = time.perf_counter() - self.start
        out = {"elapsed": elapsed}
        if elapsed >= self.seconds:
            out["stop"] = LMStatus.TIME_BUDGET
        return out


def time_budget(seconds: float, *, start: float | None = None) -> TimeBudgetHook:
    """A hook stopping the run with TIME_BUDGET once ``time.perf_counter() − start ≥ seconds``
    (``start`` default: now, e.g. the start of the job)."""
    return TimeBudgetHook(seconds=seconds, start=time.perf_counter() if start is None else float(start))


def _jsonable(x):
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"history: a record holds {type(x).__name__} {x!r}, which json cannot store; "
                    f"return numbers, strings, lists or dicts from hooks.")


def _paths(path) -> tuple[str, str]:
    base = os.fspath(path)
    for ext in (".npz", ".json"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    return base + ".npz", base + ".json"


@dataclass(frozen=True)
class CheckpointHook:
    """Writes the state after every step: ``PATH.npz`` (θ, λ, counters and ``extra_arrays``) and
    ``PATH.json`` (history and ``meta``), each with :func:`ntkflow.io.atomic_write` (unique temporary
    file, fsync, ``os.replace``): the npz first, then the json; :func:`load_checkpoint` refuses a pair whose
    iterations differ (a kill between the two renames).

    ``path`` may end in .npz/.json (stripped).  Put it last among the hooks so the saved history holds
    every hook's entries.  Read back with :func:`load_checkpoint`.  No pickle anywhere.
    """

    path: str
    extra_arrays: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for k in self.extra_arrays:
            if not isinstance(k, str) or not k.isidentifier():
                raise ValueError(f"extra_arrays: keys must be identifiers, received {k!r}.")
        json.dumps(self.meta, default=_jsonable)  # fails now, not after the first step

    def __call__(self, state, record):
        save_checkpoint(self.path, state, extra_arrays=self.extra_arrays, meta=self.meta)


def save_checkpoint(path, state: LMState, *, extra_arrays=None, meta=None) -> None:
    """Write ``state`` (with history), ``extra_arrays`` and ``meta`` atomically (see :class:`CheckpointHook`)."""
    npz, js = _paths(path)
    arrays = {f"state_{k}": v for k, v in state.to_arrays().items()}
    arrays.update({f"extra_{k}": np.asarray(v) for k, v in (extra_arrays or {}).items()})
    doc = {"format": CHECKPOINT_FORMAT, "iteration": state.iteration, "meta": dict(meta or {}),
           "history": list(state.history)}
    text = json.dumps(doc, default=_jsonable)
    atomic_savez(npz, **arrays)
    atomic_text(js, text)


CHECKPOINT_FORMAT = "ntkflow.lm-checkpoint/1"


def load_checkpoint(path) -> tuple[LMState, dict, dict]:
    """(state with history, meta, extra_arrays) written by :class:`CheckpointHook` / :func:`save_checkpoint`."""
    npz, js = _paths(path)
    for p in (npz, js):
        if not os.path.exists(p):
            raise FileNotFoundError(f"path: no checkpoint file {p!r}; a checkpoint is the pair PATH.npz + PATH.json.")
    hint = "the checkpoint is damaged; restart without resuming."
    keys = ("theta", "lam", "loss", "iteration", "n_accepted", "done")
    arrs = read_npz(npz, what="checkpoint", required=[f"state_{k}" for k in keys], hint=hint)
    doc = read_json(js, what="checkpoint", required=("format", "iteration", "meta", "history"), hint=hint)
    if doc["format"] != CHECKPOINT_FORMAT:
        raise NtkflowFileError(js, f"checkpoint: {js!r} has format {doc['format']!r}, expected {CHECKPOINT_FORMAT!r}.")
    if not isinstance(doc["history"], list) or not all(isinstance(h, dict) for h in doc["history"]) \
            or not isinstance(doc["meta"], dict):
        raise NtkflowFileError(js, f"checkpoint: {js!r}: 'history' must be a list of records and 'meta' an object.")
    file_array(arrs, "state_theta", npz, what="checkpoint", ndim=1, kind="f")
    for k in keys[1:]:
        file_array(arrs, f"state_{k}", npz, what="checkpoint", shape=(), kind="biuf", finite=k != "loss")
    state_arrays = {k[len("state_"):]: v for k, v in arrs.items() if k.startswith("state_")}
    extra = {k[len("extra_"):]: v for k, v in arrs.items() if k.startswith("extra_")}
    if int(state_arrays["iteration"]) != int(doc["iteration"]):
        raise NtkflowFileError(npz, f"path: {npz!r} (iteration {int(state_arrays['iteration'])}) and {js!r} (iteration "
                                    f"{doc['iteration']}) do not match — the run was killed between the two writes; "
                                    f"restart without resuming.")
    return LMState.from_arrays(state_arrays, history=doc["history"]), doc["meta"], extra
