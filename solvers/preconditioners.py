"""Preconditioners for the damped normal equations of Gauss–Newton, built from products with the Gram only.

The systems are

    A δ = b,        A = G + diag(e),        G = JᵀWJ/m  (p × p, symmetric positive semi-definite),

with a diagonal shift e ≥ 0 that changes from one λ to the next (e = λD + diag(μP): the Levenberg–Marquardt
damping and the ridge's diagonal).  G is only available through products G V (two passes over the data:
J V and Jᵀ(W J V)).

Randomized Nyström on the Jacobi-scaled Gram (Frangella, Tropp & Udell 2021, "Randomized Nyström
preconditioning", SIAM J. Matrix Anal. Appl. 44(2); the stable sketch is their Algorithm 2.1, after Tropp,
Yurtsever, Udell & Cevher 2017).  With S = diag(s), s = diag(G)^(-1/2) (the Jacobi scaling) and
Ĝ = S G S (unit diagonal):

1. sketch: Ω (p × r) with orthonormal columns from a Gaussian matrix (explicit seed); Y = Ĝ Ω — ONE
   batched product ``G.mm`` of width r, so the J products run as a few wide GEMMs;
2. stable Nyström approximation Ĝ ≈ Ĝ⟨Ω⟩ = Y(ΩᵀY)⁻¹Yᵀ = U diag(η) Uᵀ (shift ν = √p·eps·‖Y‖, Cholesky of
   Ωᵀ(Y + νΩ), thin SVD, η = max(σ² − ν, 0));
3. for each shift e: with the tail of Ĝ modelled by η_r (its eigenvalues beyond the sketch are ≤ η_r ≈ the
   r-th), A = S⁻¹(Ĝ + S e S)S⁻¹ is approximated by

        Â = S⁻¹ (U diag(η − η_r) Uᵀ + diag(f)) S⁻¹,       f = η_r + s² e   (p,)

   and the preconditioner is M = Â⁻¹ = S (diag(f) + U C Uᵀ)⁻¹ S with C = diag(η − η_r) ≥ 0, applied by
   Woodbury with one r × r Cholesky factor per shift:

        (diag(f) + W Wᵀ)⁻¹ = F⁻¹ − F⁻¹ W (I + Wᵀ F⁻¹ W)⁻¹ Wᵀ F⁻¹,    W = U C^(1/2),  F = diag(f).

   When s²e = ρ is a scalar (Marquardt scaling D = diag G, no ridge: the cy job's systems) this is exactly
   Frangella–Tropp–Udell's P⁻¹ = (η_r + ρ) U(Λ + ρI)⁻¹Uᵀ + (I − UUᵀ), divided by the constant η_r + ρ
   (which CG does not see).  A general diagonal e is the deliberate extension: it keeps the Jacobi part
   of the shift exact instead of replacing it by its mean.

The sketch depends on G only, not on e: build it once per Levenberg–Marquardt step and reuse it for every
λ tried (:meth:`NystromSketch.preconditioner`).  Cost: r products with G (batched), O(p r²) for the QR,
Cholesky and SVD; memory O(p r); per application O(p r).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> Q = np.linalg.qr(rng.standard_normal((50, 50)))[0]
>>> G = (Q * 10.0 ** -np.arange(50)) @ Q.T                    # eigenvalues 1, 0.1, …
>>> sk = randomized_nystrom(lambda V: G @ V, rank=20, p=50, seed=0)
>>> M = sk.preconditioner(np.full(50, 1e-8))
>>> A = G + 1e-8 * np.eye(50)
>>> bool(np.linalg.cond(M.mm(A)) < 10)                          # cond(A) = 1e8
True
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg as sla

from ntkflow._checks import finite_array, positive_int
from ntkflow.engine.operators import LinearOperator

__all__ = ["NystromSketch", "SketchPreconditioner", "randomized_nystrom"]

#: relative floor of diag(G) in the Jacobi scaling (a zero column of J): s ≤ (floor·max diag)^(-1/2)
_SCALE_FLOOR = 1e-14


@dataclass(frozen=True)
class NystromSketch:
    """Rank-r Nyström approximation of the Jacobi-scaled Gram, Ĝ = S G S ≈ U diag(eigs) Uᵀ (S = diag(scale)).

    Built by :func:`randomized_nystrom`; :meth:`preconditioner` turns it into M ≈ (G + diag(e))⁻¹.
    """

    U: np.ndarray  # (p, r) orthonormal columns
    eigs: np.ndarray  # (r,) descending, ≥ 0: eigenvalues of the approximation of Ĝ
    scale: np.ndarray  # (p,) s = diag(G)^(-1/2) (ones without Jacobi scaling)
    seconds: float  # wall time of the sketch (products with G + the r×r / p×r linear algebra)
    seed: int

    @property
    def rank(self) -> int:
        return int(self.eigs.shape[0])

    def preconditioner(self, shift) -> "SketchPreconditioner":
        """M = S (diag(f) + U C Uᵀ)⁻¹ S ≈ (G + diag(shift))⁻¹, f = η_r + s²·shift, C = diag(η − η_r)
        (module docstring); ``shift`` (p,) ≥ 0 or a scalar."""
        p = self.U.shape[0]
        e = np.broadcast_to(np.asarray(shift, dtype=np.float64), (p,))
        if not np.all(np.isfinite(e)) or np.any(e < 0):
            raise ValueError(f"shift: expected finite values ≥ 0 (λD + diag μP), received min {e.min()!r}, "
                             f"max {e.max()!r}; the damping and the ridge must be non-negative.")
        eta_r = float(self.eigs[-1]) if self.rank else 0.0
        f = eta_r + self.scale ** 2 * e  # (p,)
        top = float(self.eigs[0]) if self.rank else 1.0
        f = np.maximum(f, np.finfo(np.float64).eps * max(top, 1.0))  # a singular G without damping
        W = self.U * np.sqrt(np.maximum(self.eigs - eta_r, 0.0))  # (p, r)
        WF = W / f[:, None]  # (p, r) F⁻¹W
        K = np.eye(self.rank) + W.T @ WF  # (r, r) I + WᵀF⁻¹W, symmetric positive definite
        chol = sla.cho_factor(0.5 * (K + K.T), lower=True)
        return SketchPreconditioner(scale=self.scale, f=f, WF=WF, chol=chol)


@dataclass(frozen=True, repr=False)
class SketchPreconditioner(LinearOperator):
    """M V = S [F⁻¹Z − F⁻¹W (I + WᵀF⁻¹W)⁻¹ WᵀF⁻¹Z],  Z = S V  (p × p, symmetric positive definite);
    see :meth:`NystromSketch.preconditioner`.  Pass as ``precond`` to :func:`ntkflow.solvers.cg`."""

    scale: np.ndarray  # (p,) s
    f: np.ndarray  # (p,) > 0
    WF: np.ndarray  # (p, r) F⁻¹ W
    chol: tuple  # cho_factor of I + WᵀF⁻¹W (r, r)

    @property
    def shape(self):
        p = self.f.shape[0]
        return (p, p)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    @property
    def T(self):
        return self  # symmetric

    def _mm(self, V):
        Z = self.scale[:, None] * V  # (p, k)
        FZ = Z / self.f[:, None]
        if self.WF.shape[1]:
            FZ = FZ - self.WF @ sla.cho_solve(self.chol, self.WF.T @ Z)  # WᵀF⁻¹Z = (F⁻¹W)ᵀZ
        return self.scale[:, None] * FZ


def randomized_nystrom(gram, rank: int, *, p: int | None = None, diag=None, seed: int = 0) -> NystromSketch:
    """Randomized Nyström approximation of the (Jacobi-scaled) Gram: Ĝ = S G S ≈ U diag(η) Uᵀ (module docstring).

    Args:
        gram: G (p × p, symmetric positive semi-definite): an ntkflow ``LinearOperator`` or a callable
            V (p, r) -> G V (p, r); called ONCE, on all r columns.
        rank: r ≥ 1, the sketch size (clipped to p).
        p: the size, needed when ``gram`` is a callable.
        diag: (p,) diag(G) for the Jacobi scaling S = diag(diag(G))^(-1/2) (floored at 1e-14·max), or None
            for no scaling (S = I).
        seed: seed of the Gaussian test matrix (``numpy.random.default_rng(seed)``).

    Returns:
        :class:`NystromSketch` (U, eigs, scale, seconds, seed).
    """
    t0 = time.perf_counter()
    if isinstance(gram, LinearOperator):
        if len(gram.shape) != 2 or gram.shape[0] != gram.shape[1]:
            raise ValueError(f"gram: expected a square p × p operator, received shape {gram.shape}.")
        if p is not None and p != gram.shape[0]:
            raise ValueError(f"p: the operator is {gram.shape[0]} × {gram.shape[0]}, received p = {p}.")
        p = gram.shape[0]
        mm: Callable = gram.mm
    elif callable(gram):
        if p is None:
            raise ValueError("p: a callable gram needs the size p (randomized_nystrom(fn, rank, p=...)).")
        p = positive_int("p", p)
        mm = gram
    else:
        raise TypeError(f"gram: expected an ntkflow LinearOperator or a callable V -> G V, received "
                        f"{type(gram).__name__}.")
    r = min(positive_int("rank", rank), p)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an integer, received {seed!r}; pass e.g. seed=0.")
    if diag is None:
        s = np.ones(p)
    else:
        d = finite_array("diag", diag, ndim=1, dtype=np.float64)
        if d.shape != (p,) or np.any(d < 0):
            raise ValueError(f"diag: expected diag(G) of shape ({p},) with entries ≥ 0, received shape {d.shape}"
                             f"{'' if d.shape != (p,) else f' with min {d.min():.3g}'}.")
        top = float(d.max()) if p else 1.0
        s = 1.0 / np.sqrt(np.maximum(d, _SCALE_FLOOR * (top if top > 0 else 1.0)))
    rng = np.random.default_rng(int(seed))
    omega = np.linalg.qr(rng.standard_normal((p, r)))[0]  # (p, r) orthonormal
    Y = s[:, None] * np.asarray(mm(s[:, None] * omega), dtype=np.float64)  # (p, r) Ĝ Ω
    if Y.shape != (p, r) or not np.all(np.isfinite(Y)):
        raise FloatingPointError(f"gram: G Ω has shape {Y.shape} (expected {(p, r)}) or non-finite entries; "
                                 f"check the Gram operator.")
    nu = np.sqrt(p) * np.finfo(np.float64).eps * np.linalg.norm(Y)  # ≥ √p eps ‖Y‖₂ (Frobenius)
    Ynu = Y + nu * omega
    core = omega.T @ Ynu  # (r, r) Ωᵀ(Ĝ + νI)Ω
    core = 0.5 * (core + core.T)
    try:
        C = np.linalg.cholesky(core)  # lower, core = C Cᵀ
        B = sla.solve_triangular(C, Ynu.T, lower=True).T  # (p, r) B Bᵀ = Y_ν core⁻¹ Y_νᵀ
    except np.linalg.LinAlgError:  # rounding made the core indefinite: its positive part only
        ev, V = np.linalg.eigh(core)
        keep = ev > np.finfo(np.float64).eps * max(ev.max(), 0.0) * r
        B = Ynu @ (V[:, keep] / np.sqrt(ev[keep]))
    U, sig, _ = np.linalg.svd(B, full_matrices=False)
    eigs = np.maximum(sig ** 2 - nu, 0.0)
    return NystromSketch(U=U, eigs=eigs, scale=s, seconds=time.perf_counter() - t0, seed=int(seed))
