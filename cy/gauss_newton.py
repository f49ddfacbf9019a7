"""The Monge–Ampère least-squares problem in a linear function space (the dense symmetric basis).

Problem (all on one point set, weights w_x normalised to mean 1):

    g(θ)_x = g0_x + Σ_a c_a G_{a,x}                    (packed Hermitian d × d, G_a = (1/π)∂∂̄f_a)
    r_x(θ) = log det g(θ)_x − log|Ω_x|² − c₀           θ = (c_1..c_p, c₀)
    L(θ)   = Σ_x w_x r_x² / Σ_x w_x

Jacobian: ∂r_x/∂c_a = tr(g_x^{-1} G_{a,x}) (the linearised operator Δ_g applied to f_a),
∂r_x/∂c₀ = −1. :class:`MAProblem` implements :class:`ntkflow.solvers.least_squares.LeastSquaresProblem`
(``linearise`` returns J as a dense engine operator): the job solves it with
:func:`ntkflow.solvers.least_squares.levenberg_marquardt` and ``DenseSolve`` on the whitened basis
(:func:`whitening`, D = I), whose fixed points are those of the frozen-kernel gradient flow of L in the
same function space (∇L = 2JᵀW r = 0). ``loss`` is +inf where g is not positive definite at some point,
so such a step is rejected like one that increases the loss.

Memory-lean form (``ntkflow cy --dense-chunk N``): the pulled-back Hessians of the raw basis are never held for
all points. :func:`jacobian0_rows` streams them over point chunks into J₀ (n, p) (1/d² of the Hessians),
:func:`whitening_qr` orthonormalises by a QR of W^{1/2}J₀ followed by an SVD of its p × p factor R (the same
singular values and directions as :func:`whitening`'s SVD of W^{1/2}J₀, without the n × p factor U), and
:func:`whitened_hessians` streams the Hessians once more straight into the kept basis (n, q, d²). With
``MAProblem(chunk=N)`` ``linearise`` accumulates JᵀWJ/n (p × p) and JᵀWr/n over chunks of N points and returns
:class:`~ntkflow.solvers.least_squares.NormalEquations`: O(p² + N·p) beyond the stored Hessians, no (n, p) J.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ntkflow.cy.algebra import fs_pulled, pack, pair_hessians, trace_weights, unpack
from ntkflow.cy.problems import cholesky_logdet, fitted_constant
from ntkflow.engine import DenseOperator
from ntkflow.solvers.least_squares import Linearisation, NormalEquations

__all__ = ["MAProblem", "whitening", "transform_basis", "jacobian0_rows", "whitening_qr", "whitened_hessians"]


@dataclass(frozen=True, eq=False)
class MAProblem:
    """The Monge–Ampère least-squares problem on one point set (see the module docstring).

    g0: (n, d²) packed base metric; hess: (n, p, d²) packed G_a; log_omega: (n,) log|Ω|²;
    weights: (n,) Monte-Carlo weights (any positive scale).
    """

    g0: np.ndarray
    hess: np.ndarray
    log_omega: np.ndarray
    weights: np.ndarray
    dim: int
    chunk: int | None = None  # points per chunk of the normal equations; None: linearise returns J (n, p + 1)

    def __post_init__(self):
        n = self.g0.shape[0]
        if self.chunk is not None and (isinstance(self.chunk, bool) or not isinstance(self.chunk, (int, np.integer))
                                       or self.chunk < 1):
            raise ValueError(f"chunk: expected a positive number of points per chunk or None, received {self.chunk!r}.")
        if self.hess.ndim != 3 or self.hess.shape[0] != n or self.hess.shape[2] != self.dim ** 2:
            raise ValueError(f"hess: expected shape ({n}, p, {self.dim ** 2}), received {self.hess.shape}.")
        for name in ("log_omega", "weights"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name}: expected shape ({n},), received {np.shape(getattr(self, name))}.")
        w = np.asarray(self.weights, dtype=np.float64)
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights: must be finite and >= 0; check the sampler's weights.")
        object.__setattr__(self, "weights", w / w.mean())

    @property
    def n_params(self) -> int:
        return self.hess.shape[1] + 1

    def metric(self, theta) -> np.ndarray:
        """(n, d, d) complex metric g(θ)."""
        gp = self.g0 + np.matmul(np.swapaxes(self.hess, 1, 2), theta[:-1])
        return unpack(gp, self.dim)

    def logdet(self, theta):
        """(log det g, g^{-1}, positive definite?) at θ."""
        g = self.metric(theta)
        if self.dim == 1:
            d = np.real(g[:, 0, 0])
            ok = d > 0
            dd = np.where(ok, d, 1.0)
            return np.log(dd), (1.0 / dd)[:, None, None].astype(np.complex128), bool(ok.all())
        ld = cholesky_logdet(g)
        if ld is None:
            return None, None, False
        return ld, np.linalg.inv(g), True

    def residual(self, theta):
        ld, inv, ok = self.logdet(theta)
        if not ok:
            return None, None
        return ld - self.log_omega - theta[-1], inv

    def loss(self, theta) -> float:
        r, _ = self.residual(theta)
        return np.inf if r is None else float(np.mean(self.weights * r * r))

    def jacobian(self, theta, inv=None) -> np.ndarray:
        """(n, p + 1) ∂r/∂θ."""
        if inv is None:
            _, inv, ok = self.logdet(theta)
            if not ok:
                raise ValueError("theta: the metric is not positive definite at every point.")
        gi = pack(inv) * trace_weights(self.dim)[None, :]
        ja = np.matmul(self.hess, gi[:, :, None])[:, :, 0]
        return np.concatenate([ja, -np.ones((ja.shape[0], 1))], axis=1)

    # ---- the LeastSquaresProblem protocol -------------------------------------------------------
    def initial(self) -> np.ndarray:
        """θ₀: coefficients 0 (g = g0), c₀ = weighted mean of log det g0 − log|Ω|² (the optimal constant)."""
        theta = np.zeros(self.n_params)
        ld, _, ok = self.logdet(theta)
        if not ok:
            raise ValueError("g0: the base metric is not positive definite at every point.")
        theta[-1] = fitted_constant(ld - self.log_omega, self.weights)
        return theta

    def normal_equations(self, theta, chunk: int = 4096) -> NormalEquations | None:
        """(JᵀWr/n, JᵀWJ/n, diag JᵀWJ/n) at θ accumulated over chunks of ``chunk`` points (r, J as in
        :meth:`jacobian`); memory O(p² + chunk·p). None where g is not positive definite at some point."""
        n, p1 = len(self.log_omega), self.n_params
        a = np.zeros((p1, p1))
        b = np.zeros(p1)
        for lo in range(0, n, chunk):
            part = MAProblem(g0=self.g0[lo:lo + chunk], hess=self.hess[lo:lo + chunk],
                             log_omega=self.log_omega[lo:lo + chunk], weights=np.ones(min(chunk, n - lo)), dim=self.dim)
            r, inv = part.residual(theta)
            if r is None:
                return None
            j = part.jacobian(theta, inv)  # (c, p + 1)
            jw = j * self.weights[lo:lo + chunk, None]
            a += jw.T @ j
            b += jw.T @ r
        a /= n
        b /= n
        return NormalEquations(grad=b, gram=DenseOperator(a), diag=np.diag(a).copy())

    def linearise(self, theta) -> Linearisation | NormalEquations | None:
        """(r, J, diag JᵀWJ/n) at θ, J the explicit (n, p + 1) Jacobian as a dense operator; with ``chunk``
        set, the normal equations accumulated over point chunks (:meth:`normal_equations`). None where g
        is not positive definite."""
        if self.chunk is not None:
            return self.normal_equations(theta, self.chunk)
        r, inv = self.residual(theta)
        if r is None:
            return None
        j = self.jacobian(theta, inv)
        return Linearisation(r=r, J=DenseOperator(j), diag=self.weights @ (j * j) / len(r))

    def penalty(self):
        """No ridge: the whitened basis is orthonormal on the training points."""
        return None


def transform_basis(hess, tmat):
    """(n, p, d²) Hessians in the basis f' = f T: (n, q, d²) (BLAS GEMM, chunked)."""
    out = np.empty((hess.shape[0], tmat.shape[1], hess.shape[2]))
    for lo in range(0, hess.shape[0], 8192):
        # one GEMM per chunk (einsum → tensordot): np.matmul on the swapped view loops over points (≈ 70× slower)
        out[lo:lo + 8192] = np.einsum("npd,pq->nqd", hess[lo:lo + 8192], tmat, optimize=True)
    return out


def whitening(problem: MAProblem, *, rtol: float = 1e-10) -> np.ndarray:
    """T (p, q) with (J₀T)ᵀW(J₀T)/n = I for J₀ the coefficient Jacobian at θ = 0.

    Columns of J₀ are first scaled to unit RMS, then a thin SVD of W^{1/2}J₀ drops the directions with
    singular value < rtol·max: constants, functions vanishing on X (exact zeros of the restriction)
    and round-off.  On the Fermat quintic the gap is clean (k = 14: 2e-8 → 6e-14), whereas the
    eigenvalues of J₀ᵀWJ₀ (squared) would drown the small genuine directions in round-off.
    """
    theta0 = np.zeros(problem.n_params)
    j = problem.jacobian(theta0)[:, :-1]
    n = len(j)
    sc = np.sqrt(np.mean(problem.weights[:, None] * j * j, axis=0))
    sc = np.where(sc > 0, sc, 1.0)
    a = (j / sc[None, :]) * np.sqrt(problem.weights / n)[:, None]
    _, sv, vt = np.linalg.svd(a, full_matrices=False)
    keep = sv > rtol * sv[0]
    return (vt[keep].T / sv[keep][None, :]) / sc[:, None]


def jacobian0_rows(basis, z, jac, *, chunk: int = 2048, on_chunk=None, factors=None, kahler_class=None) -> np.ndarray:
    """(n, p) J₀ = ∂r/∂c at θ = 0: tr(g_FS⁻¹ G_a) at every point, the pulled-back Hessians G_a of ``basis``
    computed ``chunk`` points at a time and contracted at once (memory O(n·p + chunk·p·d²)).
    ``on_chunk(lo, hess)`` (optional) receives each chunk's raw Hessians (c, p, d²), e.g. to keep them on disk.
    ``factors`` (a complete intersection's :class:`ntkflow.cy.algebra.Factors`, with ``kahler_class`` (m,)): the
    multi-degree functions and the reference g_FS = Σ_a t_a P_a g^{FS}_a P_a† (``Factors.fs_sum``)."""
    z = np.asarray(z)
    n = len(z)
    if (factors is None) != (kahler_class is None):
        raise ValueError("factors, kahler_class: pass both (a complete intersection) or neither (a hypersurface).")
    out = np.empty((n, basis.n_functions))
    for lo in range(0, n, chunk):
        zc, jc = z[lo:lo + chunk], jac[lo:lo + chunk]
        h = pair_hessians(basis, zc, jc, factors=factors)  # (c, p, d²)
        if on_chunk is not None:
            on_chunk(lo, h)
        dim = jc.shape[1]
        g_ref = fs_pulled(zc, jc) if factors is None else factors.fs_sum(zc, jc, kahler_class)
        gi = pack(np.linalg.inv(g_ref)) * trace_weights(dim)[None, :]
        out[lo:lo + chunk] = np.matmul(h, gi[:, :, None])[:, :, 0]
    return out


def whitening_qr(j0, weights, *, rtol: float = 1e-10):
    """T (p, q) with (J₀T)ᵀW(J₀T)/n = I, from J₀ (n, p) and Monte-Carlo weights (n,) (normalised to mean 1 here).

    The same cut as :func:`whitening` — columns scaled to unit RMS, singular values of W^{1/2}J₀/√n below
    rtol·max dropped — computed as a Householder QR of the scaled W^{1/2}J₀/√n (only R, p × p, is kept)
    followed by the SVD of R: A = QR and R = UΣVᵀ give A = (QU)ΣVᵀ, the singular values and right vectors
    of A without its n × p left factor. Returns (T, singular values / max) so the spectrum can be inspected.
    """
    j0 = np.asarray(j0, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    n = len(j0)
    if w.shape != (n,):
        raise ValueError(f"weights: expected shape ({n},) (one per row of j0), received {w.shape}.")
    w = w / w.mean()
    sc = np.sqrt(np.mean(w[:, None] * j0 * j0, axis=0))
    sc = np.where(sc > 0, sc, 1.0)
    a = (j0 / sc[None, :]) * np.sqrt(w / n)[:, None]
    r = np.linalg.qr(a, mode="r")  # (min(n, p), p)
    _, sv, vt = np.linalg.svd(r, full_matrices=False)
    keep = sv > rtol * sv[0]
    return (vt[keep].T / sv[keep][None, :]) / sc[:, None], sv / sv[0]


def whitened_hessians(basis, z, jac, tmat, *, chunk: int = 2048, factors=None) -> np.ndarray:
    """(n, q, d²) pulled-back Hessians of the whitened functions f T (T = ``tmat`` (p, q)), the raw (c, p, d²)
    Hessians computed ``chunk`` points at a time and transformed at once (never all n of them). ``factors``: the
    multi-degree functions of a complete intersection (as in :func:`jacobian0_rows`)."""
    z = np.asarray(z)
    n = len(z)
    dim2 = jac.shape[1] ** 2
    out = np.empty((n, tmat.shape[1], dim2))
    for lo in range(0, n, chunk):
        h = pair_hessians(basis, z[lo:lo + chunk], jac[lo:lo + chunk], factors=factors)
        out[lo:lo + chunk] = np.einsum("npd,pq->nqd", h, tmat, optimize=True)  # one GEMM (see transform_basis)
    return out
