"""Pieces shared by the three Monge–Ampère least-squares problems (dense symmetric basis
:class:`ntkflow.cy.gauss_newton.MAProblem`, matrix-free primal :class:`ntkflow.cy.matrixfree.PrimalProblem`,
dual kernel form :class:`ntkflow.cy.dual.DualProblem`).

Each problem implements :class:`ntkflow.solvers.least_squares.LeastSquaresProblem` for

    r_x(θ) = log det g_θ(x) − log|Ω_x|² − c,      L(θ) = mean_x w_x r_x²   (w normalised to mean 1),

``linearise(θ)`` returning the immutable :class:`~ntkflow.solvers.least_squares.Linearisation`
(r, J, diag(JᵀWJ)/n) with J an engine :class:`~ntkflow.engine.LinearOperator`. Here: the operator that
applies a Jacobian by its two product functions (forward J V and adjoint Jᵀ U, both on blocks of
columns), a diagonal operator (ridge penalties), log det by Cholesky with the positive-definiteness
test, and the fitted constant c of the starting point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ntkflow.engine import LinearOperator

__all__ = ["ProductOperator", "DiagonalOperator", "cholesky_logdet", "fitted_constant"]


@dataclass(frozen=True, repr=False, eq=False)
class ProductOperator(LinearOperator):
    """A (rows, cols) real operator given by its products: ``forward(V)`` = A V for V (cols, k) and
    ``adjoint(U)`` = Aᵀ U for U (rows, k); ``T`` swaps them (no dense matrix is ever formed)."""

    rows: int
    cols: int
    forward: Callable[[np.ndarray], np.ndarray]
    adjoint: Callable[[np.ndarray], np.ndarray]

    @property
    def shape(self):
        return (self.rows, self.cols)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        return np.asarray(self.forward(np.asarray(V, dtype=np.float64)), dtype=np.float64)

    @property
    def T(self) -> "ProductOperator":
        return ProductOperator(self.cols, self.rows, self.adjoint, self.forward)


@dataclass(frozen=True, repr=False, eq=False)
class DiagonalOperator(LinearOperator):
    """diag(d) (n × n), d of shape (n,): the ridge matrix P of a Tikhonov penalty θᵀPθ."""

    d: np.ndarray

    @property
    def shape(self):
        return (len(self.d), len(self.d))

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        return self.d[:, None] * V

    def diag(self):
        return np.array(self.d, dtype=np.float64)

    @property
    def T(self) -> "DiagonalOperator":
        return self


def cholesky_logdet(g, xp=np):
    """log det g (n,) of Hermitian g (n, d, d) by Cholesky, or None where g is not positive definite at
    some point (NumPy raises; JAX returns NaN, which is tested)."""
    if xp is np:
        try:
            ch = np.linalg.cholesky(g)
        except np.linalg.LinAlgError:
            return None
    else:
        ch = xp.linalg.cholesky(g)
    ld = 2 * xp.sum(xp.log(xp.real(xp.diagonal(ch, axis1=-2, axis2=-1))), axis=-1)
    if xp is not np and not bool(xp.all(xp.isfinite(ld))):
        return None
    return ld


def fitted_constant(r, w) -> float:
    """The c minimising mean w (r − c)²: the weighted mean Σ w r / Σ w."""
    return float(np.sum(w * r) / np.sum(w))
