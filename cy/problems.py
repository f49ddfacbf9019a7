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

import numpy as np

from ntkflow.engine import DiagonalOperator, ProductOperator

__all__ = ["ProductOperator", "DiagonalOperator", "cholesky_logdet", "fitted_constant"]  # operators re-exported from the engine


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
