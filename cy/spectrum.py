r"""The scalar Laplacian spectrum of a Kähler metric on X: Galerkin on the (k′, k′) functions.

Equation solved: Δ_g f = −λ f on X (closed, so λ₀ = 0 is the constants), in the weak form

.. math:: S c = λ M c, \qquad
          S_{ab} = ∫_X g^{i\bar j}(∂_i f_a ∂_{\bar j} f_b + ∂_i f_b ∂_{\bar j} f_a)\, dvol_g, \qquad
          M_{ab} = ∫_X f_a f_b \, dvol_g,

i.e. Δ_g = 2 g^{i\bar j}∂_i∂_{\bar j} (the Laplace–Beltrami operator of the Riemannian metric
2 Re g_{i\bar j} dz^i dz̄^j, with g the Hermitian matrix returned by ``model.metric``/``fs_pullback``,
in the project's class convention g_FS = (1/π)∂∂̄ log|z|²). Eigenvalues scale as 1/t with the metric;
ratios λ_j/λ_1 do not.

Function space: with σ_a (a < r) the degree-k′ monomials orthonormalised on X in L²(μ) (first scaled by
√multinomial so that Σ|ŝ|² = |z|^{2k′}; the null space — multiples of Q — dropped at ``rtol``), the r²
real functions Re and Im of t_a t̄_b, t = σ/|z|^{k′} (a ≤ b resp. a < b). The constants lie in this
space; they are the λ = 0 eigenvector of the pencil (S, M) with the uncentred M, and are removed
explicitly (deflated) so that the reported λ₁, λ₂, … are the non-zero eigenvalues.

Integrals are Monte-Carlo sums over points drawn by :func:`ntkflow.manifolds.sample` (FS-distributed,
weights w = ∫J^m |Ω|²/det g_FS): dvol_g = det g d^{2m}x ∝ w det g / |Ω|², normalised here to total mass 1
(vol = 1 convention: μ_p = w_p det g_p/|Ω_p|² / Σ_q w_q det g_q/|Ω_q|²). The normalisation cancels in λ.
On the Fermat cubic curve :func:`cubic_lattice_points` gives an equal-weight lattice rule for the flat measure
(spectrally accurate); on Fermat hypersurfaces :func:`group_average` averages the assembled pencil over the
symmetry group (= assembling on the group orbit of the points; G-invariant metrics only).

Derivatives are exact: ∂_i (t_a t̄_b) = Y_{ia} t̄_b with Y = P(∇σ − k′σ z̄/|z|²)/|z|^{k′}, and
∂_i \overline{(t_a t̄_b)} = t̄_a Y_{ib} (tested against finite differences).

Assembly is blocked over points (GEMMs of (block·m, n_f) matrices): memory O(n_f² + block·m·n_f), never
(functions × points). Eigensolvers: ``"dense"`` (scipy.linalg.eigh on the M-whitened reduced matrix),
``"lobpcg"`` (scipy.sparse.linalg.lobpcg on the assembled pencil wrapped as engine operators), and the
matrix-free pair :func:`matrix_free_system` + :func:`solve_matrix_free` (lobpcg on
:class:`GalerkinOperator` s that recompute the basis per point block: nothing of size n_f² is stored).
"""
from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ntkflow._checks import positive_float, positive_int
from ntkflow.cy.algebra import Factors, section_features
from ntkflow.cy.model import load
from ntkflow.engine.operators import DenseOperator, LinearOperator
from ntkflow.io import atomic_json, atomic_write
from ntkflow.manifolds import (Hypersurface, PointSet, fs_pullback, monomial_exponents, monomials,
                               pointset_from_points, sample)
from ntkflow.manifolds.cicy import CICYPointSet, CompleteIntersection, cicy_fs_pullback, sample_cicy

__all__ = ["GalerkinSystem", "GalerkinOperator", "matrix_free_system", "solve_matrix_free", "Spectrum", "assemble",
           "solve", "laplacian_spectrum", "cluster", "basis_functions", "curve_flat_metric", "symmetrize", "hexagonal_torus_spectrum", "register_cli", "scaled_monomials",
           "weierstrass_p", "cubic_lattice_points", "quadrature_points", "QUADRATURES", "group_average"]


def scaled_monomials(n_coords: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(exponents (N_k, N), scale (N_k,)): √(k!/Π I_i!) so that Σ_α |scale_α z^α|² = |z|^{2k}."""
    e = monomial_exponents(n_coords, k)
    lf = np.array([math.lgamma(k + 1) - sum(math.lgamma(int(i) + 1) for i in row) for row in e])
    return e, np.exp(0.5 * lf)


def _product_factors(ps, e) -> Factors | None:
    """The factors of a complete intersection's points (degrees read from the sections ``e``); None: a hypersurface."""
    if not isinstance(ps, CICYPointSet):
        return None
    sizes = tuple(n + 1 for n in ps.manifold.ambient)
    off = np.cumsum((0,) + sizes)
    return Factors(sizes, tuple(int(e[0, off[a]:off[a + 1]].sum()) for a in range(len(sizes))))


def _scaled_sections(ps, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`scaled_monomials` of the points' manifold; on a complete intersection the products of each factor's
    degree-k scaled monomials (Σ_α |scale_α s_α|² = Π_a |z^{(a)}|^{2k})."""
    if not isinstance(ps, CICYPointSet):
        return scaled_monomials(ps.manifold.n_coords, k)
    f = Factors(tuple(n + 1 for n in ps.manifold.ambient), (k,) * ps.manifold.n_factors)
    e = f.exponents()
    lf = np.array([sum(math.lgamma(k + 1) - sum(math.lgamma(int(i) + 1) for i in row[b]) for b in f.blocks) for row in e])
    return e, np.exp(0.5 * lf)


def _features(ps: PointSet, lo: int, hi: int, e, scale, A):
    """t (b, r) complex = σ/|z|^{k'}, Y (b, d, r) complex = P(∇σ − k'σ z̄/|z|²)/|z|^{k'} for points lo:hi; on a
    complete intersection t = σ/Π_a|z^{(a)}|^{k'} and the shift is per factor (``section_features(factors=)``)."""
    k = int(e[0].sum())
    f = _product_factors(ps, e)
    s, x, h = section_features(ps.points[lo:hi], ps.jacobian[lo:hi], e, layout="nda", factors=f)  # (b,N_k), (b,d,N_k)
    hk = h ** (0.5 * k) if f is None else 1.0 / np.sqrt(f.weight(ps.points[lo:hi]))
    t = (s * scale) @ A / hk[:, None]  # (b, r)
    y = np.einsum("bda,ar->bdr", x * scale, A) / hk[:, None, None]  # (b, d, r)
    return t, y


def _real_functions(t, y, iu):
    """Values F (b, n_f) and gradients ∂F (b, d, n_f) of Re(t_a t̄_b) (a ≤ b) then Im(t_a t̄_b) (a < b)."""
    a, b = iu
    off = a < b
    p = t[:, a] * np.conj(t[:, b])  # (b, n_pairs)
    g_ab = y[:, :, a] * np.conj(t[:, b])[:, None, :]  # ∂(t_a t̄_b)
    g_ba = np.conj(t[:, a])[:, None, :] * y[:, :, b]  # ∂ conj(t_a t̄_b)
    vals = np.concatenate([p.real, p.imag[:, off]], axis=1)
    grads = np.concatenate([(g_ab + g_ba) / 2, ((g_ab - g_ba) / 2j)[:, :, off]], axis=2)
    return vals, grads


def basis_functions(ps: PointSet, k_prime: int, A: np.ndarray | None = None):
    """(values (n, n_f), gradients (n, d, n_f)) of the real (k', k') basis at all points (small n: tests,
    references). ``A`` (N_k, r) maps scaled monomials to the section basis (identity when None)."""
    e, scale = _scaled_sections(ps, k_prime)
    A = np.eye(len(e)) if A is None else A
    t, y = _features(ps, 0, len(ps), e, scale, A)
    return _real_functions(t, y, np.triu_indices(A.shape[1]))


@dataclass(frozen=True)
class GalerkinSystem:
    """The assembled pencil (S, M) (n_f, n_f) float64 in the real basis built on ``sections`` (N_k, r)
    (columns: coefficients of the orthonormal sections in the scaled monomials); ``mean`` (n_f,) the
    μ-means of the basis functions (the constant's right-hand side, M c₀ = mean)."""

    S: np.ndarray
    M: np.ndarray
    mean: np.ndarray
    sections: np.ndarray = field(repr=False)
    k_prime: int = 0
    n_points: int = 0


def _measure(ps: PointSet, g: np.ndarray) -> np.ndarray:
    """μ (n,) = w det g/|Ω|², normalised to sum 1 (dvol_g, vol = 1)."""
    det = np.real(np.linalg.det(g))
    if not np.all(det > 0):
        bad = int(np.sum(~(det > 0)))
        raise ValueError(f"metric: det g ≤ 0 or NaN at {bad} of {len(det)} points; the metric is not positive "
                         f"definite there (a failed model?); evaluate it with `ntkflow eval`.")
    mu = ps.weights * det / ps.omega_sq
    return mu / mu.sum()


def _prepare(ps, metric, k_prime, block, rtol):
    """μ (n,), L (n, d, d) with g^{-1} = L L^H, the scaled monomials (e, scale) and the orthonormal
    sections A (N_k, r) (null space of their Gram in L²(μ), the multiples of Q, dropped at rtol)."""
    if not isinstance(ps, (PointSet, CICYPointSet)):
        raise TypeError(f"ps: expected a PointSet (ntkflow.manifolds.sample) or a CICYPointSet (sample_cicy), "
                        f"received {type(ps).__name__}.")
    g = metric(ps) if callable(metric) else np.asarray(metric)
    n, d = len(ps), ps.dim
    if g.shape != (n, d, d):
        raise ValueError(f"metric: expected (n, d, d) = ({n}, {d}, {d}) values, received shape {g.shape}.")
    mu = _measure(ps, g)
    ginv = np.linalg.inv(g)
    ginv = (ginv + np.conj(np.swapaxes(ginv, -1, -2))) / 2
    L = np.linalg.cholesky(ginv)  # g^{-1} = L L^H, |∂f|²_g = |L^H ∂f|²
    e, scale = _scaled_sections(ps, k_prime)
    # 1) orthonormal sections: Gram of the scaled monomials/|z|^{k'} in L²(μ)
    nk = len(e)
    gram = np.zeros((nk, nk), dtype=np.complex128)
    eye = np.eye(nk)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        t, _ = _features(ps, lo, hi, e, scale, eye)
        gram += (np.conj(t).T * mu[lo:hi]) @ t
    ev, V = np.linalg.eigh(gram)
    keep = ev > rtol * ev[-1]
    A = V[:, keep] / np.sqrt(ev[keep])  # (N_k, r): σ = ŝ A orthonormal
    return mu, L, e, scale, A


def assemble(ps: PointSet, metric, k_prime: int, *, block: int = 2048, rtol: float = 1e-10) -> GalerkinSystem:
    """Assemble (S, M) of the module docstring on the points ``ps`` for the metric ``metric`` — a callable
    PointSet → (n, d, d) complex Hermitian g_{i j̄}, or such an array — at degree ``k_prime``."""
    k_prime = positive_int("k_prime", k_prime)
    block = positive_int("block", block)
    rtol = positive_float("rtol", rtol)
    mu, L, e, scale, A = _prepare(ps, metric, k_prime, block, rtol)
    r = A.shape[1]
    n = len(ps)
    iu = np.triu_indices(r)
    nf = r * r
    S = np.zeros((nf, nf))
    M = np.zeros((nf, nf))
    mean = np.zeros(nf)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        t, y = _features(ps, lo, hi, e, scale, A)
        vals, grads = _real_functions(t, y, iu)  # (b, n_f), (b, d, n_f)
        m = mu[lo:hi]
        D = np.einsum("bji,bjf->bif", np.conj(L[lo:hi]), grads)  # L^H ∂f   (b, d, n_f)
        Dw = D * np.sqrt(m)[:, None, None]
        Dw = Dw.reshape(-1, nf)
        S += 2.0 * (Dw.real.T @ Dw.real + Dw.imag.T @ Dw.imag)
        Fw = vals * np.sqrt(m)[:, None]
        M += Fw.T @ Fw
        mean += m @ vals
    S = (S + S.T) / 2
    M = (M + M.T) / 2
    return GalerkinSystem(S=S, M=M, mean=mean, sections=A, k_prime=k_prime, n_points=n)


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues λ₁ ≤ λ₂ ≤ … (the constant λ₀ = 0 removed), their clusters (start index, size, mean),
    the solver used and the size of the reduced space; ``constant_residual`` = ‖1 − Π1‖ in L²(μ)
    (how well the basis holds the constants; ≈ 0)."""

    eigenvalues: np.ndarray
    clusters: tuple
    solver: str
    n_functions: int
    constant_residual: float
    vectors: np.ndarray | None = field(default=None, repr=False)

    def ratios(self) -> np.ndarray:
        """λ_j/λ₁ of the cluster means."""
        means = np.array([c[2] for c in self.clusters])
        return means / means[0]

    def multiplicities(self) -> list:
        return [c[1] for c in self.clusters]


def cluster(eigenvalues, rel_gap: float = 1e-2) -> tuple:
    """Group sorted eigenvalues: a new cluster starts where λ_{i+1} − λ_i > rel_gap · λ_{i+1}.
    Returns ((start, size, mean), …). The last cluster may be incomplete (cut by n_eigs)."""
    lam = np.sort(np.asarray(eigenvalues, dtype=float))
    rel_gap = positive_float("rel_gap", rel_gap)
    out, start = [], 0
    for i in range(1, len(lam) + 1):
        if i == len(lam) or lam[i] - lam[i - 1] > rel_gap * abs(lam[i]):
            out.append((start, i - start, float(lam[start:i].mean())))
            start = i
    return tuple(out)


def solve(system: GalerkinSystem, n_eigs: int, *, solver: str = "dense", rtol: float = 1e-10,
          rel_gap: float = 1e-2, seed: int = 0, vectors: bool = False) -> Spectrum:
    """The n_eigs lowest non-zero eigenvalues of S c = λ M c. ``"dense"``: whiten M (eigh, drop
    eigenvalues < rtol·max: the numerically dependent directions), deflate the constant (its whitened
    coefficients u₀ = Wᵀ mean), eigh of the projected S. ``"lobpcg"``: scipy.sparse.linalg.lobpcg on the
    pencil (S, M) as engine operators with the constant c₀ (M c₀ = mean) as a constraint."""
    n_eigs = positive_int("n_eigs", n_eigs)
    if solver not in ("dense", "lobpcg"):
        raise ValueError(f"solver: expected 'dense' or 'lobpcg', received {solver!r}.")
    ev, V = np.linalg.eigh(system.M)
    keep = ev > rtol * ev[-1]
    W = V[:, keep] / np.sqrt(ev[keep])  # (n_f, n_r): Wᵀ M W = I
    u0 = W.T @ system.mean  # the constant in the whitened basis; |u0| = 1 when it lies in the space
    const_res = float(np.sqrt(max(0.0, 1.0 - u0 @ u0)))
    nr = W.shape[1]
    if n_eigs > nr - 1:
        raise ValueError(f"n_eigs: the space holds {nr - 1} non-constant functions at k' = {system.k_prime}; "
                         f"received n_eigs={n_eigs}. Ask for fewer or raise --k-prime.")
    if solver == "dense":
        Sw = W.T @ system.S @ W
        Q = scipy.linalg.null_space(u0[None, :])  # (n_r, n_r − 1) orthonormal complement of u0
        lam, vec = scipy.linalg.eigh(Q.T @ Sw @ Q, subset_by_index=[0, n_eigs - 1])
        coef = W @ (Q @ vec)
    else:
        S_op, M_op = DenseOperator(system.S), DenseOperator(system.M)
        nf = system.S.shape[0]
        c0 = W @ u0  # M c0 ≈ mean: the constant's coefficients
        lin = lambda op: scipy.sparse.linalg.LinearOperator((nf, nf), matvec=lambda v: op.mv(np.ravel(v)), matmat=op.mm, dtype=np.float64)  # noqa: E731
        bs = n_eigs + 4
        if nf - 1 < 5 * bs:  # scipy's lobpcg switches to a dense solver (without constraints) below this size
            raise ValueError(f"solver: lobpcg needs more than 5·(n_eigs + 4) = {5 * bs} functions, the space has "
                             f"{nf}; use solver='dense' (or fewer n_eigs / a larger k').")
        X = np.random.default_rng(seed).standard_normal((nf, bs))
        lam, coef = scipy.sparse.linalg.lobpcg(lin(S_op), X, B=lin(M_op), Y=c0[:, None], largest=False,
                                               tol=1e-9, maxiter=2000)
        order = np.argsort(lam)[:n_eigs]
        lam, coef = lam[order], coef[:, order]
    return Spectrum(eigenvalues=np.asarray(lam), clusters=cluster(lam, rel_gap), solver=solver, n_functions=nr - 1,
                    constant_residual=const_res, vectors=coef if vectors else None)


@dataclass(frozen=True, repr=False, eq=False)
class GalerkinOperator(LinearOperator):
    """S (``which="stiffness"``) or M (``"mass"``) of the module docstring applied matrix-free: each product
    recomputes the basis on point blocks and applies it as two GEMMs, S V = Σ_blocks 2 Re(D^H (D V)) with
    D = √μ L^H ∂f (block·d, n_f), M V = Σ_blocks Fᵀ(F V) with F = √μ f (block, n_f); memory
    O(block·d·n_f), never (functions × points). Built by :func:`matrix_free_system`."""

    ps: PointSet
    mu: np.ndarray  # (n,)
    L: np.ndarray  # (n, d, d): g^{-1} = L L^H
    exponents: np.ndarray  # (N_k, N)
    scale: np.ndarray  # (N_k,)
    sections: np.ndarray  # (N_k, r)
    which: str = "stiffness"
    block: int = 2048

    def __post_init__(self):
        if self.which not in ("stiffness", "mass"):
            raise ValueError(f"which: expected 'stiffness' or 'mass', received {self.which!r}.")

    @property
    def shape(self):
        nf = self.sections.shape[1] ** 2
        return (nf, nf)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        V = np.asarray(V, dtype=np.float64)
        nf = self.shape[0]
        iu = np.triu_indices(self.sections.shape[1])
        out = np.zeros((nf, V.shape[1]))
        for lo in range(0, len(self.ps), self.block):
            hi = min(len(self.ps), lo + self.block)
            t, y = _features(self.ps, lo, hi, self.exponents, self.scale, self.sections)
            vals, grads = _real_functions(t, y, iu)
            w = np.sqrt(self.mu[lo:hi])
            if self.which == "mass":
                F = vals * w[:, None]
                out += F.T @ (F @ V)
            else:
                D = (np.einsum("bji,bjf->bif", np.conj(self.L[lo:hi]), grads) * w[:, None, None]).reshape(-1, nf)
                DV = D @ V
                out += 2.0 * (D.real.T @ DV.real + D.imag.T @ DV.imag)
        return out


def matrix_free_system(ps: PointSet, metric, k_prime: int, *, block: int = 2048, rtol: float = 1e-10):
    """(S, M, mean): the pencil as :class:`GalerkinOperator` s (engine operators) and the μ-means of the
    basis functions (one pass), for :func:`solve_matrix_free`."""
    k_prime = positive_int("k_prime", k_prime)
    block = positive_int("block", block)
    mu, L, e, scale, A = _prepare(ps, metric, k_prime, block, positive_float("rtol", rtol))
    kw = dict(ps=ps, mu=mu, L=L, exponents=e, scale=scale, sections=A, block=block)
    S, M = GalerkinOperator(which="stiffness", **kw), GalerkinOperator(which="mass", **kw)
    iu = np.triu_indices(A.shape[1])
    mean = np.zeros(S.shape[0])
    for lo in range(0, len(ps), block):
        hi = min(len(ps), lo + block)
        vals, _ = _real_functions(*_features(ps, lo, hi, e, scale, A), iu)
        mean += mu[lo:hi] @ vals
    return S, M, mean


def solve_matrix_free(S: LinearOperator, M: LinearOperator, mean: np.ndarray, n_eigs: int, *, seed: int = 0,
                      tol: float = 1e-8, maxiter: int = 500, rel_gap: float = 1e-2) -> Spectrum:
    """The n_eigs lowest non-zero eigenvalues of S c = λ M c by scipy.sparse.linalg.lobpcg with only
    products by S and M (no preconditioner: a Jacobi one on diag(S + M) did not cut the time); the constant c₀ (M c₀ = mean, by scipy CG on M) is the constraint that removes
    λ₀ = 0. Raises RuntimeError when lobpcg does not converge (residuals above ``tol`` after ``maxiter``)."""
    n_eigs = positive_int("n_eigs", n_eigs)
    nf = S.shape[0]
    bs = n_eigs + 4
    if nf - 1 < 5 * bs:
        raise ValueError(f"n_eigs: the matrix-free solver needs more than 5·(n_eigs + 4) = {5 * bs} functions, the "
                         f"space has {nf}; use the dense solver (solve(assemble(...))) or a larger k'.")
    lin = lambda op: scipy.sparse.linalg.LinearOperator(  # noqa: E731
        (nf, nf), matvec=lambda v: op.mv(np.ravel(v)), matmat=op.mm, dtype=np.float64)
    c0, info = scipy.sparse.linalg.cg(lin(M), mean, rtol=1e-12, maxiter=10 * nf)
    if info != 0:
        raise RuntimeError(f"M c0 = mean: CG did not converge (info={info}); M is ill-conditioned — lower k'.")
    X = np.random.default_rng(seed).standard_normal((nf, bs))
    lam, vec, res = scipy.sparse.linalg.lobpcg(lin(S), X, B=lin(M), Y=c0[:, None], largest=False, tol=tol,
                                               maxiter=maxiter, retResidualNormsHistory=True)
    last = np.asarray(res[-1])
    order = np.argsort(lam)[:n_eigs]
    if np.max(last[order]) > tol * max(1.0, float(np.max(np.abs(lam)))):
        raise RuntimeError(f"lobpcg: residuals {np.max(last[order]):.2e} > tol={tol} after {maxiter} iterations; "
                           f"raise maxiter or use the dense solver.")
    lam = lam[order]
    return Spectrum(eigenvalues=lam, clusters=cluster(lam, rel_gap), solver="matrix-free lobpcg", n_functions=nf - 1,
                    constant_residual=float("nan"), vectors=vec[:, order])


def curve_flat_metric(ps: PointSet) -> np.ndarray:
    """The exact flat (Ricci-flat) metric of a cubic curve (dim 1): g = κ|Ω|² with κ = ∫J/∫|Ω|² estimated
    on ``ps`` (κ only sets the scale). (n, 1, 1) complex."""
    if ps.dim != 1:
        raise ValueError(f"ps: the flat metric g = κ|Ω|² is exact only on curves (dim 1); received dim {ps.dim}.")
    kappa = ps.manifold.intersection_number / np.mean(ps.weights)
    return (kappa * ps.omega_sq).astype(np.complex128)[:, None, None]


def symmetrize(ps: PointSet, *, conjugation: bool = True, max_points: int = 5_000_000) -> PointSet:
    """The orbit of ``ps`` under the symmetry group of a Fermat hypersurface Σ z_i^N = 0: coordinate
    permutations S_N, phases (Z_N)^{N−1} (the overall phase acts trivially) and, if ``conjugation``,
    z ↦ z̄ — isometries of g_FS (and of the Ricci-flat metric) that preserve the FS sampling measure, so
    the orbit with the recomputed FS weights is an invariant quadrature: the assembled (S, M) commute with
    the group, degenerate levels forced by the symmetry stay exactly degenerate, and integrals of the
    non-invariant Fourier modes cancel. Size |G|·n (|G| = 108 for the cubic curve); refused above
    ``max_points``."""
    m = ps.manifold
    if getattr(m, "symmetric_group_hint", None) != "fermat":
        raise ValueError(f"ps: symmetrize needs points of a Fermat hypersurface (Σ z_i^N); received {m.name} "
                         f"(symmetry hint {getattr(m, 'symmetric_group_hint', None)!r}).")
    N = m.n_coords
    perms = np.array(list(itertools.permutations(range(N))))  # (N!, N)
    ph = np.array(list(itertools.product(range(N), repeat=N - 1)))  # (N^{N-1}, N-1)
    phases = np.exp(2j * np.pi * np.concatenate([ph, np.zeros((len(ph), 1), dtype=int)], axis=1) / N)
    size = len(perms) * len(phases) * (2 if conjugation else 1) * len(ps)
    if size > max_points:
        raise ValueError(f"ps: the orbit would hold {size} points (> max_points={max_points}); pass fewer "
                         f"points or raise max_points.")
    z = ps.points[:, perms]  # (n, N!, N)
    z = z[:, :, None, :] * phases[None, None, :, :]  # (n, N!, N^{N-1}, N)
    z = z.reshape(-1, N)
    if conjugation:
        z = np.concatenate([z, np.conj(z)])
    return pointset_from_points(m, z)


def _section_values(z, e, scale, A):
    """t (n, r) = ŝ(z) A/|z|^k' at ambient points z (n, N) (the lift of z as given)."""
    k = int(e[0].sum())
    return (monomials(z, e) * scale) @ A / np.linalg.norm(z, axis=-1)[:, None] ** k


def _pair_maps(r: int):
    """B (n_f, r²) complex with p = F B and C (r², n_f) complex with F = Re(p C): p_ab = t_a t̄_b (index a·r + b),
    F the real basis of :func:`_real_functions` (Re p_ab, a ≤ b; then Im p_ab, a < b)."""
    a, b = np.triu_indices(r)
    off = np.flatnonzero(a < b)
    n_re = len(a)
    nf = n_re + len(off)
    B = np.zeros((nf, r * r), dtype=np.complex128)
    C = np.zeros((r * r, nf), dtype=np.complex128)
    B[np.arange(n_re), a * r + b] = 1
    B[np.arange(n_re), b * r + a] = 1
    B[n_re + np.arange(len(off)), a[off] * r + b[off]] = 1j
    B[n_re + np.arange(len(off)), b[off] * r + a[off]] = -1j
    C[a * r + b, np.arange(n_re)] = 1
    C[a[off] * r + b[off], n_re + np.arange(len(off))] = -1j
    return B, C, n_re


def group_average(system: GalerkinSystem, ps: PointSet, *, conjugation: bool = True) -> GalerkinSystem:
    r"""The Reynolds average of the pencil over the symmetry group G of a Fermat hypersurface Σ z_i^N = 0
    (coordinate permutations S_N, phases (Z_N)^{N−1}, and z ↦ z̄ if ``conjugation``; |G| = 2·N!·N^{N−1}):

    .. math:: \bar S = \frac1{|G|}\sum_{g∈G} R(g)^T S R(g), \quad \bar M = \frac1{|G|}\sum_g R(g)^T M R(g),
              \quad \overline{mean} = \frac1{|G|}\sum_g R(g)^T mean,

    where F∘g = F R(g) expresses the transformed real basis functions in the basis (exactly: t∘g = t T(g) for
    the sections, T fitted by least squares on points of X, and R = Re(B (T ⊗ T̄) C) on the pairs
    p_ab = t_a t̄_b; for z̄, t∘c = conj(t T_c) and F∘c = F Re(B (T_c ⊗ T̄_c) C) D, D = diag(1 on Re, −1 on Im)). For a G-invariant metric and measure (FS, the
    flat metric of the cubic curve, Ricci-flat and symmetric Bergman metrics) this equals assembling on the
    orbit :func:`symmetrize` (|G|·n points) at the cost of one assembly on ``ps`` plus
    (N + 1 + N! + 2) products of (n_f, n_f) matrices: an unbiased, lower-variance quadrature whose matrices
    commute with G, so symmetry-forced multiplicities are exact. For a metric that is not G-invariant it
    computes the spectrum of the G-averaged problem, not of the metric. ``system`` must have been assembled on
    ``ps``. The average over G is the composition of the averages over the cyclic phase groups, S_N and
    {1, conjugation} (G = N·S_N·⟨c⟩ with N normal)."""
    if not isinstance(system, GalerkinSystem):
        raise TypeError(f"system: expected a GalerkinSystem (assemble), received {type(system).__name__}.")
    m = ps.manifold
    if getattr(m, "symmetric_group_hint", None) != "fermat":
        raise ValueError(f"ps: group_average needs points of a Fermat hypersurface (Σ z_i^N); received {m.name} "
                         f"(symmetry hint {getattr(m, 'symmetric_group_hint', None)!r}).")
    if len(ps) != system.n_points:
        raise ValueError(f"ps: the system was assembled on {system.n_points} points, received {len(ps)}; pass the "
                         f"same PointSet.")
    N = m.n_coords
    e, scale = scaled_monomials(N, system.k_prime)
    A = system.sections  # (N_k, r)
    r = A.shape[1]
    if len(ps) < 2 * r:
        raise ValueError(f"ps: group_average fits the group action on the points and needs at least 2·r = {2 * r} "
                         f"of them at k' = {system.k_prime}; received {len(ps)}.")
    z = ps.points[: max(20 * r, 200)]  # (n_fit, N) on X
    t = _section_values(z, e, scale, A)
    B, C, n_re = _pair_maps(r)

    def fit(target):  # T (r, r) with t T = target on X
        T, *_ = np.linalg.lstsq(t, target, rcond=None)
        res = np.abs(t @ T - target).max()
        if res > 1e-8 * max(1.0, np.abs(target).max()):
            raise RuntimeError(f"group_average: the sections are not closed under the group (residual {res:.1e}); "
                               f"are the points on X and the system assembled on them?")
        return T

    def rep(T):  # F∘g = F R for t∘g = t T
        return np.real(B @ np.kron(T, np.conj(T)) @ C)  # (n_f, n_f)

    def average(mats, S, M, mean):
        return (sum(R.T @ S @ R for R in mats) / len(mats), sum(R.T @ M @ R for R in mats) / len(mats),
                sum(R.T @ mean for R in mats) / len(mats))

    S, M, mean = system.S, system.M, system.mean
    zeta = np.exp(2j * np.pi / N)
    for i in range(N - 1):  # the cyclic phase groups z_i ↦ ζ z_i (the overall phase acts trivially)
        ph = np.ones(N, dtype=np.complex128)
        ph[i] = zeta
        R1 = rep(fit(_section_values(z * ph, e, scale, A)))
        mats = [np.eye(R1.shape[0])]
        for _ in range(N - 1):
            mats.append(mats[-1] @ R1)
        S, M, mean = average(mats, S, M, mean)
    perms = list(itertools.permutations(range(N)))
    S, M, mean = average([rep(fit(_section_values(z[:, list(q)], e, scale, A))) for q in perms], S, M, mean)
    if conjugation:  # t(z̄) = conj(ŝ(z) Ā)/|z|^k' = conj(t T_c)
        Tc = fit(_section_values(z, e, scale, np.conj(A)))
        Rc = rep(Tc)  # p(z̄) = conj(p'), p' = p (T_c ⊗ T̄_c): Re p_ab(z̄) = Re p'_ab, Im p_ab(z̄) = −Im p'_ab
        Rc[:, n_re:] *= -1
        S, M, mean = average([np.eye(Rc.shape[0]), Rc], S, M, mean)
    return GalerkinSystem(S=(S + S.T) / 2, M=(M + M.T) / 2, mean=mean, sections=A, k_prime=system.k_prime,
                          n_points=system.n_points)


def hexagonal_torus_spectrum(n_levels: int) -> list:
    """[(ratio λ/λ₁, multiplicity), …] of the flat hexagonal torus (the Fermat cubic curve), λ₀ = 0 left
    out: λ ∝ |γ*|² over the dual lattice, which is hexagonal, |m a* + n b*|² ∝ m² + mn + n²."""
    n_levels = positive_int("n_levels", n_levels)
    R = 4 * n_levels + 4
    m, n = np.meshgrid(np.arange(-R, R + 1), np.arange(-R, R + 1))
    q = (m * m + m * n + n * n).ravel()
    vals, counts = np.unique(q[q > 0], return_counts=True)
    return [(int(v), int(c)) for v, c in zip(vals[:n_levels], counts[:n_levels])]


def weierstrass_p(z, tau: complex, *, n_terms: int = 16) -> tuple[np.ndarray, np.ndarray]:
    r"""(℘(z), ℘'(z)) (complex, shape of z) of the lattice Z + τZ (Im τ > 0) by the q-series
    (q = e^{2πiτ}, u = e^{2πiz}, v_n = q^n u):

    .. math:: ℘(z) = (2πi)^2 \Big[\sum_{n∈Z} \frac{v_n}{(1-v_n)^2} + \frac1{12} - 2\sum_{n≥1}\frac{q^n}{(1-q^n)^2}\Big],
              \qquad ℘'(z) = (2πi)^3 \sum_{n∈Z} \frac{v_n(1+v_n)}{(1-v_n)^3},

    the terms n < 0 written in 1/v_n = q^{|n|}/u (the summands are even resp. odd under v ↦ 1/v), |n| ≤
    ``n_terms``: the truncation error is O(|q|^{n_terms}) for z = a + bτ with 0 ≤ b ≤ 1."""
    z = np.asarray(z, dtype=np.complex128)
    q = np.exp(2j * np.pi * tau)
    u = np.exp(2j * np.pi * z)
    P = np.zeros_like(z)
    D = np.zeros_like(z)
    for n in range(n_terms + 1):
        v = q ** n * u
        P += v / (1 - v) ** 2
        D += v * (1 + v) / (1 - v) ** 3
        if n:
            w = q ** n / u
            P += w / (1 - w) ** 2
            D -= w * (1 + w) / (1 - w) ** 3
    c = sum(q ** n / (1 - q ** n) ** 2 for n in range(1, n_terms + 1))
    return (2j * np.pi) ** 2 * (P + 1 / 12 - 2 * c), (2j * np.pi) ** 3 * D


def _is_fermat_cubic(manifold) -> bool:
    return isinstance(manifold, Hypersurface) and manifold.n_coords == 3 and manifold.symmetric_group_hint == "fermat"


def cubic_lattice_points(manifold, n_side: int) -> PointSet:
    r"""An equal-weight lattice quadrature for the flat measure on the Fermat cubic curve Z₀³ + Z₁³ + Z₂³ = 0
    (``preset("cubic-curve")``): ``n_side``² points, spectrally accurate where Monte Carlo is O(n^{-1/2}).

    Uniformisation: X ≅ C/Λ, Λ = Z + τZ, τ = e^{2πi/3} (j = 0), by

    .. math:: z ↦ [36 + y : 36 - y : -6x], \qquad x = a℘(z), \; y = b℘'(z), \; b^2 g_3 = 432, \; a^3 = 4b^2,

    with ℘ of Λ (:func:`weierstrass_p`; g₂ = 0, g₃ = (8π⁶/27)E₆(τ)): then y² = b²(4℘³ − g₃) = x³ − 432 and
    (36 + y)³ + (36 − y)³ − 216x³ = 216(432 + y² − x³) = 0. The map is an isomorphism and Ω ∝ dz, so the flat
    measure |Ω|² d²x is the Lebesgue measure of the torus. The points are the shifted grid
    z_ij = ((i + ½) + (j + ½)τ)/n_side, 0 ≤ i, j < n_side (the shift avoids the pole of ℘ at z = 0): equal weights
    on it are the trapezoidal rule in the periodic coordinates of the torus, whose error for real-analytic
    integrands falls exponentially in n_side. Any metric g on X is then integrated with μ ∝ det g/|Ω|².

    Weights: the constant W = ∫J / mean(det g_FS/|Ω|²) (= ∫_X|Ω|² d²x; the PointSet convention
    mean(w · det g_FS/|Ω|²) = ∫J). Raises ValueError if ``manifold`` is not the Fermat cubic curve."""
    n_side = positive_int("n_side", n_side)
    if not _is_fermat_cubic(manifold):
        name = getattr(manifold, "name", type(manifold).__name__)
        raise ValueError(f"manifold: the lattice quadrature needs the Fermat cubic curve Z0³ + Z1³ + Z2³ = 0 "
                         f"(preset('cubic-curve')), received {name}; use Monte-Carlo points (sample) instead.")
    tau = np.exp(2j * np.pi / 3)
    q = np.exp(2j * np.pi * tau)
    e6 = 1 - 504 * sum(n ** 5 * q ** n / (1 - q ** n) for n in range(1, 40))  # Eisenstein E₆(τ), real here
    g3 = float(np.real(8 * np.pi ** 6 / 27 * e6))
    b = math.sqrt(432.0 / g3)
    a = (4 * b * b) ** (1 / 3)
    i, j = np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij")
    z = ((i.ravel() + 0.5) + (j.ravel() + 0.5) * tau) / n_side  # (n_side², )
    P, D = weierstrass_p(z, tau)
    x, y = a * P, b * D
    pts = np.stack([36 + y, 36 - y, -6 * x], axis=1)  # (n, 3) on Σ Z_i³ = 0
    pts = pts / np.linalg.norm(pts, axis=1)[:, None]
    ps = pointset_from_points(manifold, pts)
    det_fs = np.real(np.linalg.det(fs_pullback(ps)))
    W = manifold.intersection_number / np.mean(det_fs / ps.omega_sq)
    return pointset_from_points(manifold, ps.points, weights=np.full(len(ps), W), patch=ps.patch, elim=ps.elim)


QUADRATURES = ("mc", "lattice")


def quadrature_points(manifold, n_points: int, *, quadrature: str = "mc", seed: int = 0) -> PointSet:
    """The points of the integrals: ``"mc"`` — ``sample(manifold, n_points, seed)`` (any manifold, FS-distributed
    with weights); ``"lattice"`` — :func:`cubic_lattice_points` with n_side = ⌈√n_points⌉ (Fermat cubic curve
    only; deterministic, ``seed`` unused; n_side² ≥ n_points points)."""
    n_points = positive_int("n_points", n_points)
    if quadrature == "mc":
        if isinstance(manifold, CompleteIntersection):
            return sample_cicy(manifold, n_points, seed=seed)
        return sample(manifold, n_points, seed=seed)
    if quadrature == "lattice":
        if not _is_fermat_cubic(manifold):
            raise ValueError(f"quadrature: 'lattice' (--quadrature lattice) needs the Fermat cubic curve "
                             f"(preset 'cubic-curve'), received {getattr(manifold, 'name', manifold)!r}; use 'mc'.")
        return cubic_lattice_points(manifold, math.isqrt(n_points - 1) + 1)
    raise ValueError(f"quadrature: expected one of {QUADRATURES}, received {quadrature!r}.")


def laplacian_spectrum(manifold, metric, *, k_prime: int = 3, n_points: int = 50_000, n_eigs: int = 30,
                       seed: int = 0, solver: str = "dense", rel_gap: float = 1e-2, block: int = 2048,
                       quadrature: str = "mc", symmetric: bool = False) -> Spectrum:
    """Take ``n_points`` points of ``manifold`` (:func:`quadrature_points`: Monte Carlo with ``seed``, or the
    lattice rule on the cubic curve), assemble at ``k_prime`` (averaged over the Fermat symmetry group by
    :func:`group_average` if ``symmetric``: G-invariant metrics only) and solve (see :func:`solve`)."""
    ps = quadrature_points(manifold, n_points, quadrature=quadrature, seed=seed)
    system = assemble(ps, metric, k_prime, block=block)
    if symmetric:
        system = group_average(system, ps)
    return solve(system, n_eigs, solver=solver, rel_gap=rel_gap, seed=seed)


# ---- the command ---------------------------------------------------------------------------------

def register_cli(subparsers) -> None:
    """``ntkflow spectrum DIR``: the lowest eigenvalues of the scalar Laplacian of a saved metric."""
    p = subparsers.add_parser(
        "spectrum", help="the scalar Laplacian spectrum of a saved metric (Galerkin on the (k',k') functions)",
        description="Galerkin for Delta_g f = -lambda f on the real (k',k') functions, Monte-Carlo integrals over "
                    "sampled points; prints eigenvalues with multiplicities, writes spectrum.json and spectrum.png.")
    p.add_argument("model", metavar="DIR", help="a directory written by `ntkflow cy`")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--fs", action="store_true", help="use the Fubini-Study metric of DIR's manifold instead")
    which.add_argument("--flat", action="store_true",
                       help="use the exact flat metric kappa|Omega|^2 (curves only: the cubic curve)")
    p.add_argument("--k-prime", type=int, default=3, help="degree k' of the (k',k') functions (default: %(default)s)")
    p.add_argument("--n-points", type=int, default=50_000,
                   help="points of the integrals (lattice: rounded up to a square) (default: %(default)s)")
    p.add_argument("--quadrature", choices=QUADRATURES, default="mc",
                   help="mc: Monte-Carlo points (any manifold); lattice: the equal-weight grid of the flat torus "
                        "(cubic curve only, via the Weierstrass p function; spectrally accurate) (default: %(default)s)")
    p.add_argument("--symmetric", action="store_true",
                   help="average the Galerkin matrices over the symmetry group of a Fermat hypersurface (permutations, "
                        "phases, conjugation): exact symmetry-forced multiplicities and less quadrature variance; "
                        "only for metrics invariant under that group (FS, flat, symmetric Bergman models); not with "
                        "--solver matrix-free (default: off)")
    p.add_argument("--n-eigs", type=int, default=30, help="non-zero eigenvalues reported (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the point sample (default: %(default)s)")
    p.add_argument("--solver", choices=("dense", "lobpcg", "matrix-free"), default="dense",
                   help="dense: assemble + scipy eigh; lobpcg: assemble + lobpcg; matrix-free: lobpcg on operators "
                        "that recompute the basis per point block (default: %(default)s)")
    p.add_argument("--rel-gap", type=float, default=1e-2,
                   help="relative gap that separates multiplicity clusters (default: %(default)s)")
    p.add_argument("--out", default=None, help="output directory (default: DIR/spectrum[-fs|-flat])")
    p.set_defaults(func=_run_spectrum)


def _check_args(args):
    for name in ("k_prime", "n_points", "n_eigs"):
        v = getattr(args, name)
        if v < 1:
            raise ValueError(f"{name}: --{name.replace('_', '-')} must be a positive integer, received {v}.")
    if args.seed < 0:
        raise ValueError(f"seed: --seed must be a non-negative integer, received {args.seed}.")
    if not (args.rel_gap > 0):
        raise ValueError(f"rel_gap: --rel-gap must be > 0, received {args.rel_gap}.")


def _run_spectrum(args) -> int:
    _check_args(args)
    model = load(args.model)
    m = model.manifold
    if args.fs and isinstance(m, CompleteIntersection):  # FS of the model's class t = degrees / k
        t_class = np.asarray(model.factors.degrees, dtype=np.float64) / model.k
        metric, label = (lambda ps: cicy_fs_pullback(ps, t_class)), "fs"
    elif args.fs:
        metric, label = fs_pullback, "fs"
    elif args.flat:
        if m.dim != 1:
            raise ValueError(f"flat: --flat needs a curve (dim 1); {m.name} has dim {m.dim}. Use --fs or the model.")
        metric, label = curve_flat_metric, "flat"
    else:
        metric, label = model.metric, f"model ({model.kind})"
    t0 = time.perf_counter()
    if args.symmetric and args.solver == "matrix-free":
        raise ValueError("symmetric: --symmetric averages the assembled matrices; it does not apply to --solver "
                         "matrix-free. Use --solver dense or lobpcg.")
    if args.symmetric and getattr(m, "symmetric_group_hint", None) != "fermat":
        raise ValueError(f"symmetric: --symmetric needs a Fermat hypersurface (sum of z_i^N); {m.name} is not one. "
                         f"Drop --symmetric.")
    ps = quadrature_points(m, args.n_points, quadrature=args.quadrature, seed=args.seed)
    if args.solver == "matrix-free":
        S, M, mean = matrix_free_system(ps, metric, args.k_prime)
        spec = solve_matrix_free(S, M, mean, args.n_eigs, seed=args.seed, rel_gap=args.rel_gap)
    else:
        system = assemble(ps, metric, args.k_prime)
        if args.symmetric:
            system = group_average(system, ps)
        spec = solve(system, args.n_eigs, solver=args.solver, rel_gap=args.rel_gap, seed=args.seed)
    secs = time.perf_counter() - t0
    out = args.out or os.path.join(args.model, "spectrum" + ("-fs" if args.fs else "-flat" if args.flat else ""))
    os.makedirs(out, exist_ok=True)
    rows = [{"level": i + 1, "start": s, "multiplicity": c, "eigenvalue": lam, "ratio": lam / spec.clusters[0][2]}
            for i, (s, c, lam) in enumerate(spec.clusters)]
    result = {"manifold": m.name, "metric": label, "k_prime": args.k_prime, "n_points": len(ps),
              "quadrature": args.quadrature, "symmetric": bool(args.symmetric),
              "seed": args.seed, "solver": spec.solver, "n_functions": spec.n_functions,
              "constant_residual": spec.constant_residual, "rel_gap": args.rel_gap, "seconds": secs,
              "eigenvalues": spec.eigenvalues.tolist(), "clusters": rows,
              "note": "the last cluster may be cut by --n-eigs; lambda_0 = 0 (constants) not listed"}
    atomic_json(os.path.join(out, "spectrum.json"), result, indent=2)
    _plot(os.path.join(out, "spectrum.png"), spec, f"{m.name}, {label}, k'={args.k_prime}, n={len(ps)} ({args.quadrature})")
    print(f"Laplacian spectrum of {m.name} ({label}), k'={args.k_prime}, {len(ps)} points ({args.quadrature}), "
          f"{spec.n_functions} functions, {secs:.1f} s")
    print(f"{'level':>5} {'mult':>5} {'eigenvalue':>14} {'ratio':>10}")
    for r in rows:
        print(f"{r['level']:>5} {r['multiplicity']:>5} {r['eigenvalue']:>14.6f} {r['ratio']:>10.5f}")
    print(f"wrote {out}/spectrum.json, spectrum.png")
    return 0


def _plot(path, spec: Spectrum, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pyplot after choosing the backend

    fig, ax = plt.subplots(figsize=(6, 4))
    mults = sorted({c[1] for c in spec.clusters})
    cmap = plt.get_cmap("tab10")
    for s, c, _ in spec.clusters:
        idx = np.arange(s, s + c)
        ax.scatter(idx + 1, spec.eigenvalues[idx], s=14, color=cmap(mults.index(c) % 10),
                   label=f"multiplicity {c}")
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    ax.set_xlabel("index j")
    ax.set_ylabel("eigenvalue λ_j")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
