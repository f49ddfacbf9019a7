"""The literal frozen-NTK Kähler potential flow (explicit ODE integration) and its NTK spectrum.

For the (group-averaged) Bergman kernel u^k the RKHS is finite dimensional: with the multinomial
coefficients m_α, u^k(z, w) = Σ_{αβ} e_{αβ}(z) conj(e_{αβ}(w)) with orthonormal features
e_{αβ} = √(m_α m_β) s_α s̄_β / |z|^{2k}.  A basis function f_a = s†H^{(a)}s/|z|^{2k} therefore has RKHS
Gram ⟨f_a, f_b⟩ = δ_ab Σ_{αβ} |H^{(a)}_{αβ}|² / (m_α m_β) =: D_a (the H^{(a)} have disjoint supports), and
the infinite-width gradient flow of L = mean_w (log det g_φ − log|Ω|² − c)²

    dφ/dt = −Σ_x w_x Θ(·, x) δL/δφ(x)     (improved flow: Θ_{ij̄} = ∂_i∂̄_j Θ acting on δL/δg)

is, in coefficients, the ODE  dc/dt = −D⁻¹ ∇_c L = −(2/n) D⁻¹ Jᵀ W r  (c₀ follows its own gradient).
Linearised at the start, the residual modes decay at the rates 2λ_i/n of the metric-NTK Gram
Θ_train = J D⁻¹ Jᵀ W (eigenvalues λ_i, by Lanczos = scipy ``eigsh`` on a LinearOperator): a spread of
many decades is why the literal flow learns slowly while Gauss–Newton, which inverts that Gram on its
range, converges in a few steps.

The naive potential flow of the talk (scalar Θ(z, z'), δl/δK) and the improved one (Θ_{ij̄} = ∂_i∂̄_jΘ,
δl/δg) coincide for any loss that depends on K only through g = ∂∂̄K, since then
δl/δK = (∂∂̄)* δl/δg and Θ_{ij̄} = ∂_i∂̄_jΘ: both give the ODE above (the improved form is the one that is
free of the Kähler-transformation redundancy, which the frozen kernel never excites).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ntkflow.cy import gauss_newton as gn
from ntkflow.manifolds import sigma_weighted

__all__ = ["rkhs_gram_diagonal", "FlowRun", "literal_flow", "ntk_spectrum"]


def rkhs_gram_diagonal(b) -> np.ndarray:
    """D_a = ‖f_a‖² in the RKHS of u^k (see the module docstring)."""
    from math import factorial

    ex = b.exponents
    m = np.array([factorial(b.k) / np.prod([factorial(int(e)) for e in row]) for row in ex])
    mult = np.where(b.alpha == b.beta, 4.0, 2.0)  # |ω|² counts: diagonal H = 2ω, off-diagonal twice
    val = mult * np.abs(b.weight) ** 2 / (m[b.alpha] * m[b.beta])
    return np.add.reduceat(val, b.starts)


@dataclass(frozen=True)
class FlowRun:
    times: np.ndarray
    loss: np.ndarray
    sigma: np.ndarray
    theta: np.ndarray
    seconds: float
    nfev: int
    message: str


def literal_flow(problem: gn.MAProblem, gram_diag: np.ndarray, t_max: float, *, n_eval: int = 30,
                 rtol: float = 1e-6, method: str = "LSODA") -> FlowRun:
    """Integrate dθ/dt = −D⁻¹∇L (θ = coefficients and c₀; D for c₀ is 1) with scipy's solve_ivp."""
    from scipy.integrate import solve_ivp

    dinv = np.r_[1.0 / gram_diag, 1.0]
    theta0 = problem.initial()

    def rhs(t, th):
        r, inv = problem.residual(th)
        if r is None:
            return np.zeros_like(th)
        j = problem.jacobian(th, inv)
        return -2.0 * dinv * (j.T @ (problem.weights * r)) / len(r)

    times = np.r_[0.0, np.geomspace(t_max * 1e-6, t_max, n_eval - 1)]
    t0 = time.perf_counter()
    sol = solve_ivp(rhs, (0.0, t_max), theta0, t_eval=times, rtol=rtol, atol=1e-12, method=method)
    secs = time.perf_counter() - t0
    losses, sigmas = [], []
    for th in sol.y.T:
        losses.append(problem.loss(th))
        ld, _, ok = problem.logdet(th)
        sigmas.append(sigma_weighted(np.exp(ld - problem.log_omega), problem.weights) if ok else np.nan)
    return FlowRun(times=sol.t, loss=np.asarray(losses), sigma=np.asarray(sigmas), theta=sol.y.T,
                   seconds=secs, nfev=int(sol.nfev), message=str(sol.message))


def ntk_spectrum(problem: gn.MAProblem, gram_diag: np.ndarray, theta=None, *, k: int = 20):
    """Leading eigenvalues of the metric-NTK Gram W^{1/2} J D⁻¹ Jᵀ W^{1/2} on the training points by
    Lanczos (``scipy.sparse.linalg.eigsh`` on a LinearOperator; J applied, never the n × n matrix)
    and all of its nonzero eigenvalues from the small p × p dual (for the predicted rates)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    th = np.zeros(problem.n_params) if theta is None else theta
    r, inv = problem.residual(th)
    j = problem.jacobian(th, inv)[:, :-1] / np.sqrt(gram_diag)[None, :]
    sw = np.sqrt(problem.weights)
    a = sw[:, None] * j
    n = len(r)
    op = LinearOperator((n, n), matvec=lambda v: a @ (a.T @ np.ravel(v)), dtype=np.float64)
    k = min(k, a.shape[1] - 1)
    lead = np.sort(eigsh(op, k=k, which="LM", return_eigenvectors=False))[::-1]
    dual = np.sort(np.linalg.eigvalsh(a.T @ a))[::-1]
    return lead, dual
