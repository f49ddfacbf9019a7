"""Finite-time frozen-NTK gradient flow of the mean-squared error, by Lanczos (no dense exponential).

Gradient flow of L(f) = ½‖f(X) − y‖² with learning rate η under a frozen NTK Θ gives

    f_t(X)  = f_0(X)  + (I − e^{−η Θ t}) r,                     r = y − f_0(X),
    f_t(x*) = f_0(x*) + Θ(x*, X) Θ⁻¹ (I − e^{−η Θ t}) r  = f_0(x*) + Θ(x*, X) u_t,

with Θ = Θ(X, X) (n×n, symmetric positive semi-definite) and u_t = φ_t(Θ) r,
φ_t(λ) = (1 − e^{−η λ t}) / λ (an entire function: φ_t(0) = η t; t = ∞ gives Θ⁻¹ r, kernel
"ridgeless" regression). Lanczos on Θ with starting vector r builds Q_j (n×j, orthonormal, fully
re-orthogonalised) and the tridiagonal T_j = Q_jᵀ Θ Q_j; then

    u_t ≈ ‖r‖ Q_j φ_t(T_j) e₁,     f_t(X) − f_0(X) ≈ ‖r‖ Q_j ψ_t(T_j) e₁,   ψ_t(λ) = 1 − e^{−η λ t},

with φ_t(T_j) e₁ from ``scipy.linalg.eigh_tridiagonal`` (j×j), all times at once. One Θ matvec per
Lanczos step (many outputs: one ``op.mm`` for all columns), one Θ(x*, X) mm at the end for all
times. The error estimate is the change of the Krylov coefficients between consecutive steps,
relative to their size; Lanczos stops when it is ≤ rtol for every time and output (or when the
Krylov space becomes invariant, where the answer is exact).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import eigh_tridiagonal

from ntkflow._checks import finite_array, positive_float

from .cg import as_operator

__all__ = ["FlowResult", "ntk_flow"]


@dataclass(frozen=True)
class FlowResult:
    """Result of :func:`ntk_flow`. Output axes: (n_times, points[, k])."""

    times: np.ndarray  # (n_t,)
    train: np.ndarray  # (n_t, n[, k]) f_t(X)
    test: Any  # (n_t, n*[, k]) f_t(x*) or None
    weights: np.ndarray  # (n_t, n[, k]) u_t = Θ⁻¹(I − e^{−ηΘt}) r, so f_t(x*) = f_0(x*) + Θ(x*,X) u_t
    iterations: int  # Lanczos steps (max over outputs)
    error_estimate: np.ndarray  # (n_t,) relative change of the Krylov solution at the last step (max over outputs)
    converged: bool
    status: str  # "converged" | "invariant" (exact Krylov space) | "maxiter" | "singular" | "indefinite"
    message: str
    ritz_values: tuple  # per output: eigenvalues of the final T_j (Θ's spectrum as Lanczos sees it)


def _phi_psi(theta, times, eta):
    """φ_t(θ) = (1 − e^{−ηθt})/θ and ψ_t(θ) = 1 − e^{−ηθt}: arrays (n_t, j).

    At t = ∞, Ritz values ≤ 1e-12·max|θ| count as zero (Θ numerically singular): φ = inf there."""
    th = theta[None, :]
    t = times[:, None]
    fin = np.isfinite(t)
    tt = np.where(fin, t, 0.0)
    z = eta * th * tt
    small = np.abs(z) < 1e-8
    g = np.where(small, 1.0 - 0.5 * z, -np.expm1(-z) / np.where(small, 1.0, z))  # (1 − e^{−z})/z
    phi = eta * tt * g
    psi = -np.expm1(-z)
    pos = th > 1e-12 * max(float(np.max(np.abs(theta))), 1e-300)
    inv = np.where(pos, 1.0 / np.where(pos, th, 1.0), np.inf)
    phi = np.where(fin, phi, inv)
    psi = np.where(fin, psi, np.where(pos, 1.0, np.nan))
    return phi, psi


def ntk_flow(
    op_train,
    op_test_train,
    y,
    f0_train,
    f0_test,
    times,
    *,
    eta: float = 1.0,
    rtol: float = 1e-10,
    maxiter: int | None = None,
) -> FlowResult:
    """Frozen-NTK MSE gradient flow at several times, by Lanczos (see the module docstring).

    Evaluates f_t(X) = f_0(X) + (I − e^{−ηΘt})(y − f_0(X)) and
    f_t(x*) = f_0(x*) + Θ(x*,X) Θ⁻¹ (I − e^{−ηΘt})(y − f_0(X)) for every t in ``times``.

    Args:
        op_train: Θ(X, X), n×n symmetric PSD (ntkflow operator, array or scipy operator).
        op_test_train: Θ(x*, X), n*×n, or None (no test predictions).
        y, f0_train: (n,) or (n, k) targets and initial outputs on X.
        f0_test: (n*,) or (n*, k) initial outputs on x* (None means zeros).
        times: (n_t,) times ≥ 0; ``np.inf`` gives the converged (kernel-regression) limit.
        eta: learning rate η > 0. rtol: Lanczos stopping tolerance. maxiter: steps (default min(n, 500)).
    """
    A = as_operator(op_train, "op_train")
    n = A.shape[0]
    if A.shape != (n, n):
        raise ValueError(f"op_train: must be square, received shape {A.shape}.")
    y = finite_array("y", y, ndim=(1, 2))
    if y.shape[0] != n:
        raise ValueError(f"y: op_train is {n}×{n}, so y needs {n} rows; received shape {y.shape}.")
    f0_train = finite_array("f0_train", f0_train, ndim=(1, 2))
    if f0_train.shape != y.shape:
        raise ValueError(f"f0_train: must have the shape of y {y.shape}, received {f0_train.shape}.")
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if times.ndim != 1 or np.any(np.isnan(times)) or np.any(times < 0):
        raise ValueError(f"times: expected a 1-D array of times >= 0 (np.inf allowed), received {times!r}.")
    eta = positive_float("eta", eta)
    rtol = positive_float("rtol", rtol)
    if maxiter is None:
        maxiter = min(n, 500)
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
        raise ValueError(f"maxiter: expected a positive integer, received {maxiter!r}.")
    maxiter = int(min(maxiter, n))
    Bt = None
    if op_test_train is not None:
        Bt = as_operator(op_test_train, "op_test_train")
        if Bt.shape[1] != n:
            raise ValueError(f"op_test_train: must have {n} columns (one per training point), received shape {Bt.shape}.")
        ns = Bt.shape[0]
        if f0_test is None:
            f0_test = np.zeros((ns,) + y.shape[1:])
        f0_test = finite_array("f0_test", f0_test, ndim=(1, 2))
        if f0_test.shape != (ns,) + y.shape[1:]:
            raise ValueError(f"f0_test: expected shape {(ns,) + y.shape[1:]}, received {f0_test.shape}.")

    single = y.ndim == 1
    R = (np.asarray(y, float) - np.asarray(f0_train, float)).reshape(n, -1)  # (n, k)
    k = R.shape[1]
    nt = times.size
    rn = np.linalg.norm(R, axis=0)  # (k,)
    Q = np.zeros((maxiter + 1, n, k))  # Lanczos vectors
    alpha = np.zeros((maxiter, k))
    beta = np.zeros((maxiter, k))
    active = rn > 0
    Q[0][:, active] = R[:, active] / rn[active]
    steps = np.zeros(k, dtype=int)
    err = np.zeros((nt, k))
    col_status = ["converged"] * k  # zero residual: f_t = f_0 exactly
    coef_phi = [np.zeros((nt, 0))] * k
    coef_psi = [np.zeros((nt, 0))] * k
    ritz = [np.zeros(0)] * k
    scale = None
    for j in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        # (n, |idx|): one matvec for all outputs; a writable copy (JAX backends return read-only views)
        W = np.array(A.mm(Q[j][:, idx]), dtype=np.float64)
        if not np.all(np.isfinite(W)):
            raise FloatingPointError("op_train: the operator returned NaN/inf during Lanczos; check Θ.")
        a = np.sum(Q[j][:, idx] * W, axis=0)
        W -= a * Q[j][:, idx]
        if j > 0:
            W -= beta[j - 1, idx] * Q[j - 1][:, idx]
        for _ in range(2):  # full re-orthogonalisation, twice is enough
            Qs = Q[: j + 1][:, :, idx]  # (j+1, n, |idx|)
            W -= np.einsum("jnc,jc->nc", Qs, np.einsum("jnc,nc->jc", Qs, W))
        b = np.linalg.norm(W, axis=0)
        alpha[j, idx] = a
        beta[j, idx] = b
        steps[idx] = j + 1
        if scale is None:
            scale = max(float(np.max(np.abs(a))), 1e-300)
        for c, col in enumerate(idx):
            th, S = eigh_tridiagonal(alpha[: j + 1, col], beta[:j, col])
            if np.any(th < -1e-8 * max(scale, np.max(np.abs(th)))):
                col_status[col] = "indefinite"
                active[col] = False
                continue
            phi, psi = _phi_psi(th, times, eta)  # (n_t, j+1)
            with np.errstate(invalid="ignore"):
                cphi = rn[col] * (phi * S[0][None, :]) @ S.T  # (n_t, j+1) Krylov coefficients of u_t
                cpsi = rn[col] * (psi * S[0][None, :]) @ S.T
            if not (np.all(np.isfinite(cphi)) and np.all(np.isfinite(cpsi))):
                col_status[col] = "singular"
                active[col] = False
                coef_phi[col], coef_psi[col] = np.full_like(cphi, np.nan), np.full_like(cpsi, np.nan)
                continue
            prev_phi, prev_psi = coef_phi[col], coef_psi[col]
            dphi = cphi.copy()
            dphi[:, : prev_phi.shape[1]] -= prev_phi
            dpsi = cpsi.copy()
            dpsi[:, : prev_psi.shape[1]] -= prev_psi
            e1 = np.linalg.norm(dphi, axis=1) / np.maximum(np.linalg.norm(cphi, axis=1), 1e-300)
            e2 = np.linalg.norm(dpsi, axis=1) / np.maximum(np.linalg.norm(cpsi, axis=1), 1e-300)
            err[:, col] = np.maximum(np.nan_to_num(e1, nan=0.0), np.nan_to_num(e2, nan=0.0))
            coef_phi[col], coef_psi[col], ritz[col] = cphi, cpsi, th
            invariant = b[c] <= 1e-13 * max(scale, np.max(np.abs(th)))
            if invariant:
                col_status[col] = "invariant"
                err[:, col] = 0.0
                active[col] = False
            elif j > 0 and np.all(err[:, col] <= rtol):
                col_status[col] = "converged"
                active[col] = False
            else:
                Q[j + 1][:, col] = W[:, c] / b[c]
    for col in np.flatnonzero(active):
        col_status[col] = "maxiter"

    # assemble u_t and f_t(X) for every time: (n_t, n, k)
    U = np.zeros((nt, n, k))
    F = np.zeros((nt, n, k))
    for col in range(k):
        s = coef_phi[col].shape[1]
        if s:
            U[:, :, col] = coef_phi[col] @ Q[:s, :, col]
            F[:, :, col] = coef_psi[col] @ Q[:s, :, col]
    train = F + np.asarray(f0_train, float).reshape(1, n, k)
    test = None
    if Bt is not None:
        Ut = np.ascontiguousarray(U.transpose(1, 0, 2).reshape(n, nt * k))  # (n, n_t·k)
        G = np.asarray(Bt.mm(Ut)).reshape(-1, nt, k).transpose(1, 0, 2)  # one mm for all times
        test = G + np.asarray(f0_test, float).reshape(1, -1, k)
    if single:
        train, U = train[..., 0], U[..., 0]
        test = None if test is None else test[..., 0]
    order = ("indefinite", "singular", "maxiter", "converged", "invariant")
    worst = min(col_status, key=order.index)
    converged = worst in ("converged", "invariant")
    msgs = {
        "converged": "Lanczos converged: the Krylov solution changed by ≤ rtol at the last step for every time.",
        "invariant": "Lanczos found an invariant Krylov space: the result is exact up to rounding.",
        "maxiter": (
            f"Lanczos stopped at maxiter={maxiter} with error estimate {err.max():.3g} > rtol={rtol:.3g}; "
            f"raise maxiter, or expect slow convergence for large η·t·λ_max / small eigenvalues at t = ∞ "
            f"(add a ridge to Θ)."
        ),
        "singular": (
            "t = ∞ was requested but Θ(X, X) is singular on the Krylov space (a Ritz value ≤ 0): "
            "Θ⁻¹ r does not exist; use finite times or add a ridge to Θ. The affected outputs are NaN."
        ),
        "indefinite": (
            "op_train has negative Ritz values: Θ(X, X) must be symmetric positive semi-definite; "
            "check the kernel (or add a small ridge)."
        ),
    }
    return FlowResult(
        times=times,
        train=train,
        test=test,
        weights=U,
        iterations=int(steps.max()) if k else 0,
        error_estimate=err.max(axis=1),
        converged=converged,
        status=worst,
        message=msgs[worst],
        ritz_values=tuple(ritz),
    )
