"""Preconditioned conjugate gradients for Hermitian positive-definite operators, many right-hand sides.

Solves A x = b for A Hermitian positive definite, b of shape (n,) or (n, k).

Stopping rule (SciPy's): column j stops when its residual satisfies
``‖b_j − A x_j‖ ≤ max(rtol · ‖b_j‖, atol)``.

How this CG differs from ``scipy.sparse.linalg.cg`` (deliberately):

* many right-hand sides: the k recurrences run side by side with their own step sizes (each column
  is exactly the single-RHS CG of that column) but share one ``op.mm`` per iteration on the columns
  still active. Hand-written because SciPy's cg takes one right-hand side, so a KeOps/JAX/dask
  kernel operator would be swept once per column instead of once per iteration;
* the recursive residual only *triggers* the stop: the true residual ``b − A x`` is then recomputed
  and must itself pass the test; if it does not (rounding), the residual is replaced by the true one
  and CG restarts from the current iterate (at most ``_MAX_REPLACEMENTS`` times, then "stagnated");
* ``p^H A p ≤ 0`` (indefinite operator), ``r^H M r ≤ 0`` (indefinite preconditioner) and NaN/inf in
  ``A p`` or ``M r`` stop the affected column with a status and a message saying how to fix it —
  never a silent answer;
* the result is a frozen :class:`CGResult` with the true residual at exit and the residual history.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ntkflow.engine.operators import DenseOperator, LinearOperator

__all__ = ["CGResult", "CGStatus", "cg", "as_operator"]

_MAX_REPLACEMENTS = 3


class CGStatus:
    """Status codes of :class:`CGResult` (worst column wins, in the order below)."""

    NONFINITE = "nonfinite"
    INDEFINITE = "indefinite"
    PRECOND_INDEFINITE = "precond_indefinite"
    STAGNATED = "stagnated"
    MAXITER = "maxiter"
    CONVERGED = "converged"

    ORDER = (NONFINITE, INDEFINITE, PRECOND_INDEFINITE, STAGNATED, MAXITER, CONVERGED)

    #: what each status means and how to fix it
    HOW_TO_FIX = {
        CONVERGED: "every right-hand side satisfies ‖b − A x‖ ≤ max(rtol·‖b‖, atol).",
        MAXITER: (
            "CG hit maxiter before the tolerance: raise maxiter, pass a preconditioner "
            "(e.g. ntkflow.solvers.NystromPreconditioner, or krr_exact(..., precond='nystrom')), "
            "or increase the regularisation."
        ),
        STAGNATED: (
            "the recursive residual reached the tolerance but the recomputed true residual stayed "
            "above it after repeated residual replacement: the tolerance is below the attainable "
            "accuracy (≈ eps·cond(A)·‖b‖); raise rtol/atol, precondition, or regularise."
        ),
        PRECOND_INDEFINITE: (
            "the preconditioner is not positive definite (r^H M r ≤ 0): M must approximate A⁻¹ and "
            "be Hermitian positive definite; check how it was built."
        ),
        INDEFINITE: (
            "the operator is not positive definite (p^H A p ≤ 0): CG needs a Hermitian "
            "positive-definite A; add a ridge (op + reg·Identity(n)), check the kernel is positive "
            "definite, or use scipy.sparse.linalg.minres for indefinite systems."
        ),
        NONFINITE: (
            "NaN/inf appeared in A p or M r: the operator or preconditioner returned non-finite "
            "values (overflow, or NaN inside the operator); rescale the data / lengthscale or fix "
            "the operator."
        ),
    }


@dataclass(frozen=True)
class CGResult:
    """Result of :func:`cg`. Arrays have the layout of ``b``: (n,) or (n, k)."""

    value: np.ndarray  # (n,) or (n, k): the last iterate x
    converged: bool  # True iff every column has status "converged"
    status: str  # the worst column status (see CGStatus.ORDER)
    message: str  # what happened and how to fix it
    iterations: int  # CG iterations run (max over columns)
    residual_norm: Any  # float or (k,): TRUE residual ‖b − A x‖ recomputed at exit
    tolerance: Any  # float or (k,): max(rtol·‖b‖, atol)
    history: np.ndarray  # (iterations + 1,) or (iterations + 1, k) residual norms (NaN once stopped)
    column_status: tuple  # (k,) status of each column
    column_iterations: np.ndarray  # (k,) iterations of each column
    matvecs: int  # op.mm calls, including the true-residual recomputations

    def raise_on_failure(self) -> "CGResult":
        """Return self if converged, else raise RuntimeError with :attr:`message`."""
        if not self.converged:
            raise RuntimeError(self.message)
        return self


# ------------------------------------------------------------------------------------------
# operator adapters
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _ScipyOperator(LinearOperator):
    """Wraps a ``scipy.sparse.linalg.LinearOperator`` (or sparse matrix) in the ntkflow contract."""

    op: Any

    @property
    def shape(self):
        return tuple(self.op.shape)

    @property
    def dtype(self):
        return np.dtype(self.op.dtype if self.op.dtype is not None else np.float64)

    def _mm(self, V):
        out = np.asarray(self.op.matmat(V))
        return out.reshape(self.shape[0], V.shape[1])


@dataclass(frozen=True, repr=False)
class _CallableOperator(LinearOperator):
    """A callable V (n, k) -> (n, k) seen as an n×n operator (preconditioners)."""

    fn: Callable
    n: int

    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        out = np.asarray(self.fn(V))
        if out.shape != V.shape:
            out = out.reshape(V.shape)
        return out


def as_operator(a, name: str = "op", *, n: int | None = None, allow_callable: bool = False) -> LinearOperator:
    """An ntkflow :class:`LinearOperator` from an ntkflow operator, a NumPy/JAX array, a SciPy
    LinearOperator or sparse matrix, or (``allow_callable``) a callable V (n, k) -> (n, k)."""
    if isinstance(a, LinearOperator):
        return a
    try:
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla

        if isinstance(a, spla.LinearOperator) or sp.issparse(a):
            return _ScipyOperator(spla.aslinearoperator(a))
    except ImportError:  # pragma: no cover
        pass
    if hasattr(a, "shape") and hasattr(a, "dtype") and not callable(a):
        arr = np.asarray(a)
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: expected a 2-D matrix or a LinearOperator, received an array of shape "
                f"{arr.shape}; pass a square matrix or an ntkflow/scipy LinearOperator."
            )
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"{name}: expected a numeric matrix, received dtype {arr.dtype}.")
        if arr.size and not np.all(np.isfinite(arr)):
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(
                f"{name}: the matrix contains {bad} NaN/inf entries; a linear system with a "
                f"non-finite matrix has no meaningful solution — fix the matrix before calling."
            )
        if arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
        return DenseOperator(arr)
    if allow_callable and callable(a):
        if n is None:  # pragma: no cover - internal misuse
            raise ValueError(f"{name}: a callable needs the size n.")
        return _CallableOperator(a, int(n))
    raise TypeError(
        f"{name}: expected an ntkflow LinearOperator, a NumPy array or a scipy LinearOperator"
        f"{' (or a callable V -> M V)' if allow_callable else ''}, received {type(a).__name__}."
    )


# ------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------


def _atol(v, k: int) -> np.ndarray:
    """atol as (k,): a number for every column, or one tolerance per column of b."""
    a = np.asarray(v) if not isinstance(v, (int, float, np.number)) else None
    if a is None or a.ndim == 0:
        return np.full(k, _tol("atol", v))
    if a.shape != (k,):
        raise ValueError(f"atol: expected a number or one tolerance per column of b, shape ({k},), "
                         f"received shape {a.shape}.")
    return np.array([_tol(f"atol[{j}]", t) for j, t in enumerate(a.tolist())])


def _tol(name, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a real number, received {v!r}.") from None
    if not np.isfinite(f) or f < 0:
        raise ValueError(
            f"{name}: must be finite and >= 0, received {v!r}; use e.g. {name}=1e-8 "
            f"(the stop is ‖r‖ ≤ max(rtol·‖b‖, atol))."
        )
    return f


def _rhs(name, b, n) -> np.ndarray:
    arr = np.asarray(b)
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name}: expected a numeric array, received dtype {arr.dtype}.")
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(
            f"{name}: the operator is {n}×{n}, so {name} must have shape ({n},) or ({n}, k); "
            f"received shape {arr.shape}."
        )
    if arr.size and not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        first = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(
            f"{name}: contains {bad} NaN/inf entries (first at index {first}); remove or replace "
            f"them before calling cg."
        )
    return arr


# ------------------------------------------------------------------------------------------
# the solver
# ------------------------------------------------------------------------------------------


def _colnorm(R):
    return np.sqrt(np.sum(np.abs(R) ** 2, axis=0))


def _dot(U, V):
    """Column-wise Re(u^H v): (n, k), (n, k) -> (k,)."""
    return np.real(np.sum(np.conj(U) * V, axis=0))


def cg(op, b, *, rtol: float = 1e-8, atol=0.0, maxiter: int | None = None, precond=None, x0=None,
       norm=None, callback=None) -> CGResult:
    """Solve A x = b by (preconditioned) conjugate gradients, A Hermitian positive definite.

    Stops column j when ``‖b_j − A x_j‖ ≤ max(rtol·‖b_j‖, atol)`` (SciPy's rule), checked on the
    recursive residual and confirmed on the recomputed true residual.

    Args:
        op: A, n×n: an ntkflow ``LinearOperator`` (e.g. ``kernel_operator(..., reg=λ)``), a NumPy
            array or a ``scipy.sparse.linalg.LinearOperator`` / sparse matrix.
        b: (n,) or (n, k) right-hand side(s); k columns are solved together with one ``op.mm`` per
            iteration.
        rtol, atol: tolerances (≥ 0); ``atol`` may also be (k,), one per column of b (e.g. when b is the
            residual of a warm start and the stop is relative to the original right-hand side).
        maxiter: iterations (≥ 0); default 10·n.
        precond: M ≈ A⁻¹ (Hermitian positive definite), as an operator/array/scipy operator or a
            callable mapping an (n, k) array to (n, k).
        x0: initial guess of the shape of b (not modified).
        norm: optional R (n, k) -> (k,) replacing the Euclidean norm in the stopping test and every
            reported residual, e.g. the norm of the residual of an un-preconditioned system (default None).
        callback: optional ``callback(iteration, relative_residuals)`` after every iteration (the (k,)
            recursive residual norms over ‖b‖, NaN for finished columns) — e.g. progress of a long solve.

    Returns:
        :class:`CGResult` — ``value``, ``converged``, ``status``, ``message``, ``iterations``,
        ``residual_norm`` (true residual at exit), ``history``.

    >>> import numpy as np
    >>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
    >>> res = cg(A, np.array([1.0, 2.0]))
    >>> res.converged, bool(np.allclose(A @ res.value, [1.0, 2.0]))
    (True, True)
    """
    return _cg(op, b, rtol=rtol, atol=atol, maxiter=maxiter, precond=precond, x0=x0, norm=norm, callback=callback)


def _cg(op, b, *, rtol=1e-8, atol=0.0, maxiter=None, precond=None, x0=None, norm=None, callback=None) -> CGResult:
    """:func:`cg` with an optional ``norm`` (R (n, k) -> (k,)) used for the stopping test and every
    reported residual, e.g. the norm of the residual of an un-preconditioned system."""
    A = as_operator(op, "op")
    if len(A.shape) != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"op: CG needs a square operator, received shape {A.shape}.")
    n = A.shape[0]
    rtol = _tol("rtol", rtol)
    b = _rhs("b", b, n)
    atol = _atol(atol, 1 if b.ndim == 1 else b.shape[1])
    if maxiter is None:
        maxiter = 10 * n
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
        raise ValueError(f"maxiter: expected an integer >= 0 (or None for 10·n), received {maxiter!r}.")
    maxiter = int(maxiter)
    M = None
    if precond is not None:
        M = as_operator(precond, "precond", n=n, allow_callable=True)
        if tuple(M.shape) != (n, n):
            raise ValueError(f"precond: must be {n}×{n} like op, received shape {M.shape}.")
    if x0 is not None:
        x0 = _rhs("x0", x0, n)
        if x0.shape != b.shape:
            raise ValueError(f"x0: must have the shape of b {b.shape}, received {x0.shape}.")
    nrm = _colnorm if norm is None else norm

    single = b.ndim == 1
    B = b.reshape(n, -1)  # (n, k)
    k = B.shape[1]
    dtype = np.result_type(A.dtype, B.dtype, np.float64)
    if M is not None:
        dtype = np.result_type(dtype, M.dtype)
    B = B.astype(dtype, copy=False)
    X = np.zeros((n, k), dtype) if x0 is None else np.array(x0.reshape(n, k), dtype=dtype, copy=True)
    bnorm = nrm(B)
    tol = np.maximum(rtol * bnorm, atol)  # (k,)
    status = np.array([CGStatus.MAXITER] * k, dtype=object)
    col_iters = np.zeros(k, dtype=int)
    true_res = np.full(k, np.nan)
    replacements = np.zeros(k, dtype=int)
    detail = [""] * k
    matvecs = 0

    def apply(op_, V):
        return np.asarray(op_.mm(V)).astype(dtype, copy=False)

    # zero right-hand side: x = 0 exactly (SciPy returns b), whatever x0 is
    zero = bnorm == 0
    X[:, zero] = 0
    status[zero] = CGStatus.CONVERGED
    true_res[zero] = 0.0
    active = ~zero

    R = B.copy()
    if x0 is not None and active.any():
        idx = np.flatnonzero(active)
        R[:, idx] = B[:, idx] - apply(A, X[:, idx])
        matvecs += 1
    rnorm = np.where(active, nrm(R), 0.0)
    history = [np.where(active, rnorm, np.nan)]
    if x0 is not None:  # already converged at the start (R is the true residual here)
        ok = active & (rnorm <= tol)
        status[ok] = CGStatus.CONVERGED
        true_res[ok] = rnorm[ok]
        active &= ~ok

    P = np.zeros_like(R)
    rz = np.zeros(k)

    def precondition(idx):
        """Z = M R on columns idx; marks columns with non-finite / indefinite M r. Returns (Z, rz, ok)."""
        nonlocal matvecs
        Rs = R[:, idx]
        Z = Rs if M is None else apply(M, Rs)
        fin = np.all(np.isfinite(Z), axis=0)
        rzs = _dot(Rs, np.where(fin, Z, 0))
        okc = fin & (rzs > 0)
        for c, j in enumerate(idx):
            if not fin[c]:
                status[j] = CGStatus.NONFINITE
                detail[j] = f"column {j}: M r is not finite at iteration {col_iters[j]}"
            elif rzs[c] <= 0:
                status[j] = CGStatus.PRECOND_INDEFINITE
                detail[j] = f"column {j}: r^H M r = {rzs[c]:.3g} ≤ 0 at iteration {col_iters[j]}"
        return Z, rzs, okc

    idx = np.flatnonzero(active)
    if idx.size:
        Z, rzs, okc = precondition(idx)
        P[:, idx] = Z
        rz[idx] = rzs
        active[idx[~okc]] = False

    it = 0
    while active.any() and it < maxiter:
        idx = np.flatnonzero(active)
        AP = apply(A, P[:, idx])  # (n, |idx|): the one operator application of this iteration
        matvecs += 1
        fin = np.all(np.isfinite(AP), axis=0)
        pAp = _dot(P[:, idx], np.where(fin, AP, 0))
        good = fin & (pAp > 0)
        for c, j in enumerate(idx):
            if not fin[c]:
                status[j] = CGStatus.NONFINITE
                detail[j] = f"column {j}: A p is not finite at iteration {col_iters[j] + 1}"
            elif pAp[c] <= 0:
                status[j] = CGStatus.INDEFINITE
                detail[j] = f"column {j}: p^H A p = {pAp[c]:.3g} ≤ 0 at iteration {col_iters[j] + 1}"
        active[idx[~good]] = False
        it += 1
        row = np.full(k, np.nan)
        idx_g = idx[good]
        if idx_g.size:
            APg = AP[:, good]
            alpha = rz[idx_g] / pAp[good]
            X[:, idx_g] += alpha * P[:, idx_g]
            R[:, idx_g] -= alpha * APg
            col_iters[idx_g] += 1
            rn = nrm(R[:, idx_g])
            row[idx_g] = rn
            # recursive residual small: confirm on the true residual
            hit = rn <= tol[idx_g]
            restart = np.zeros(idx_g.size, dtype=bool)
            if hit.any():
                jh = idx_g[hit]
                Rt = B[:, jh] - apply(A, X[:, jh])
                matvecs += 1
                tn = nrm(Rt)
                for c, j in enumerate(jh):
                    if tn[c] <= tol[j]:
                        status[j] = CGStatus.CONVERGED
                        true_res[j] = tn[c]
                        active[j] = False
                    elif replacements[j] >= _MAX_REPLACEMENTS:
                        status[j] = CGStatus.STAGNATED
                        true_res[j] = tn[c]
                        active[j] = False
                        detail[j] = (
                            f"column {j}: true residual {tn[c]:.3g} > tolerance {tol[j]:.3g} after "
                            f"{replacements[j]} residual replacements"
                        )
                    else:  # residual replacement, then restart CG from the current iterate
                        replacements[j] += 1
                        R[:, j] = Rt[:, c]
                        row[j] = tn[c]
                restart[hit] = active[jh]
            cont = idx_g[active[idx_g]]
            if cont.size:
                Z, rzn, okc = precondition(cont)
                was_restart = restart[active[idx_g]]
                beta = np.where(was_restart, 0.0, rzn / np.where(rz[cont] == 0, 1, rz[cont]))
                P[:, cont] = Z + beta * P[:, cont]
                rz[cont] = rzn
                active[cont[~okc]] = False
        history.append(row)
        if callback is not None:
            callback(it, row / np.where(bnorm == 0, 1.0, bnorm))

    # true residual at exit for every column that does not have one yet
    need = np.flatnonzero(np.isnan(true_res))
    if need.size:
        Xn = X[:, need]
        finx = np.all(np.isfinite(Xn), axis=0)
        if finx.any():
            jj = need[finx]
            Rt = B[:, jj] - apply(A, X[:, jj])
            matvecs += 1
            true_res[jj] = nrm(Rt)
    for j in range(k):
        if status[j] == CGStatus.MAXITER:
            detail[j] = (
                f"column {j}: true residual {true_res[j]:.3g} > tolerance {tol[j]:.3g} after "
                f"maxiter={maxiter} iterations"
            )

    worst = min(status, key=CGStatus.ORDER.index) if k else CGStatus.CONVERGED
    converged = bool(all(s == CGStatus.CONVERGED for s in status))
    details = "; ".join(d for d in detail if d)
    message = f"CG {worst}: {CGStatus.HOW_TO_FIX[worst]}" + (f" ({details})" if details else "")
    hist = np.array(history)  # (it + 1, k)
    value = X[:, 0] if single else X
    return CGResult(
        value=value,
        converged=converged,
        status=worst,
        message=message,
        iterations=int(col_iters.max()) if k else 0,
        residual_norm=float(true_res[0]) if single else true_res,
        tolerance=float(tol[0]) if single else tol,
        history=hist[:, 0] if single else hist,
        column_status=tuple(status.tolist()),
        column_iterations=col_iters,
        matvecs=matvecs,
    )
