"""Independent reference solvers of Hamilton's Ricci flow ∂_t g = −2 Ric (../shared/reference/flows.md).

They share no code with the kernel flows (no JAX, no autodiff geometry): each reduces the flow to a
scalar/1-D PDE by symmetry and solves it pseudo-spectrally in space with a SciPy Runge–Kutta integrator
(error control, one accepted step at a time, so that a caller sees every step: progress, checkpoints).

Problems (each a frozen dataclass with ``initial``, ``rhs``, ``scalars`` and ``singularity``):

* :class:`ConformalTorus` — g = e^{2u} δ on T² = [0, 2π)². Hamilton's flow is u_t = e^{−2u} Δu
  (Gauss curvature K = −e^{−2u}Δu). The state is the area density w = e^{2u} (N×N grid), for which the
  equation is w_t = Δ log w; the area A = ∫ w dθ is then a linear invariant of the discrete scheme (the
  spectral Laplacian has zero mean) and is conserved to round-off.
* :class:`AxisymmetricSphere` — g = e^{2u(θ)} g_round on S² (K₀ = 1): u_t = e^{−2u}(Δ₀u − 1), i.e.
  w_t = Δ₀ log w − 2 with w = e^{2u} at the L+1 Gauss–Legendre nodes μ = cos θ; Δ₀ is exact on the
  Legendre polynomials, Δ₀P_l = −l(l+1)P_l, so regularity at the poles is built in. dA/dt = −8π exactly.
* :class:`ConformalSphere` — the same on S² without symmetry: real spherical harmonics of degree ≤ L on a
  Gauss–Legendre × equispaced grid.
* :class:`WarpedProduct` — g = φ(x)² dx² + ψ(x)² g_{Sⁿ} on S^{n+1}, x ∈ [0, π]:
  φ_t = n (ψ_ss/ψ) φ,  ψ_t = ψ_ss − (n−1)(1 − ψ_s²)/ψ,  ∂_s = φ⁻¹∂_x.
  The poles are handled by symmetry: φ is extended evenly and ψ oddly about x = 0 and x = π (the smooth
  closing conditions ψ(0) = ψ(π) = 0, φ_x = 0 there), so both are 2π-periodic and are differentiated by
  FFT on the staggered grid x_j = (j + ½)π/N, which never touches a pole.

:func:`integrate` runs any of them to ``t_end`` and stops with a clear message and the last good state
at a singularity (sphere extinction, neckpinch: the curvature exceeds ``curvature_limit``).

Exact solutions used by the tests and docs: :func:`moebius_factor` (a round sphere pulled back by a
conformal dilation: the metric stays that pull-back, scaled by r² = r₀² − 2(n−1)t).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np
import scipy.fft as sfft
from numpy.polynomial import legendre as npleg
from scipy.integrate import DOP853, RK23, RK45

__all__ = [
    "AxisymmetricSphere",
    "ConformalSphere",
    "ConformalTorus",
    "ReferenceResult",
    "StepInfo",
    "WarpedProduct",
    "integrate",
    "moebius_factor",
    "round_radius2",
]

_METHODS = {"RK45": RK45, "DOP853": DOP853, "RK23": RK23}


def round_radius2(r0: float, n: int, t):
    """r(t)² = r₀² − 2(n−1)t: the round Sⁿ of radius r₀ under ∂_t g = −2 Ric (extinct at r₀²/(2(n−1)))."""
    return r0 ** 2 - 2.0 * (n - 1) * np.asarray(t, dtype=float)


def moebius_factor(mu, a: float):
    """λ(μ) with λ² g_round = D_a* g_round, D_a the conformal dilation z ↦ a z in stereographic coordinates.

    λ = 2a / ((1 − μ) + a²(1 + μ)), μ = cos θ (θ the polar angle; valid on every Sⁿ with μ = x_{n+1}).
    The metric r² λ² g_round is isometric to the round sphere of radius r, so under Ricci flow it stays
    (r₀² − 2(n−1)t) λ² g_round in the same coordinates: an exact, non-constant solution."""
    mu = np.asarray(mu, dtype=float)
    return 2.0 * a / ((1.0 - mu) + a * a * (1.0 + mu))


# ----------------------------------------------------------------------------------------------
# T²: conformal metrics g = e^{2u} δ
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConformalTorus:
    """Ricci flow of g = e^{2u}δ on T² = [0, 2π)², u_t = e^{−2u}Δu, solved for w = e^{2u}: w_t = Δ log w.

    ``n``: grid points per direction (even); the state is w on the grid θ_i = 2π i/n, flattened (n²,).

    ``sigma > 0`` solves the finite-σ (generalised) flow of the normalised Gaussian kernel instead,
    ∂_t G = K_σ ∗ (−2 Ric): on T² with E = I it keeps G = w δ conformal, w_t = K_σ ∗ Δ log w, whose Fourier
    multiplier is e^{−σ²|k|²/2}(−|k|²) — an independent check of ``ricci.kernel_flow`` on conformal tori
    (continuous convolution, no collocation quadrature). Linearised: û_k(t) = û_k(0) e^{−|k|² e^{−σ²|k|²/2} t}."""

    n: int = 32
    sigma: float = 0.0

    def __post_init__(self):
        if not isinstance(self.n, (int, np.integer)) or self.n < 4 or self.n % 2:
            raise ValueError(f"n: expected an even number of grid points >= 4, received {self.n!r}.")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma: expected a kernel width >= 0 (0: Hamilton's flow), received {self.sigma!r}.")

    name = "conformal-t2"

    def grid(self):
        """(n, n) arrays θ₁, θ₂ (indexing 'ij')."""
        th = 2.0 * np.pi * np.arange(self.n) / self.n
        return np.meshgrid(th, th, indexing="ij")

    def _k2(self):
        k = sfft.fftfreq(self.n, d=1.0 / self.n)
        return k[:, None] ** 2 + k[None, :] ** 2  # (n, n) |k|²

    def laplacian(self, f):
        """Spectral Δf of (n, n) grid values."""
        return np.real(sfft.ifft2(-self._k2() * sfft.fft2(f)))

    def initial(self, u):
        """State from u: an (n, n) array of grid values or a function u(θ₁, θ₂) of (n, n) arrays."""
        u = u(*self.grid()) if callable(u) else np.asarray(u, dtype=float)
        if u.shape != (self.n, self.n):
            raise ValueError(f"u: expected grid values of shape ({self.n}, {self.n}), received {u.shape}.")
        if not np.all(np.isfinite(u)):
            raise ValueError("u: the conformal factor has NaN/inf values; pass a finite function.")
        return np.exp(2.0 * u).ravel()

    def u(self, y):
        return 0.5 * np.log(np.reshape(y, (self.n, self.n)))

    def rhs(self, t, y):
        w = np.reshape(y, (self.n, self.n))
        if self.sigma == 0.0:
            return self.laplacian(np.log(w)).ravel()
        k2 = self._k2()
        return np.real(sfft.ifft2(-k2 * np.exp(-0.5 * self.sigma ** 2 * k2) * sfft.fft2(np.log(w)))).ravel()

    def curvature(self, y):
        """Gauss curvature K = −e^{−2u}Δu on the grid (n, n); scalar curvature R = 2K."""
        w = np.reshape(y, (self.n, self.n))
        return -0.5 * self.laplacian(np.log(w)) / w

    def area(self, y):
        return float(np.sum(y) * (2.0 * np.pi / self.n) ** 2)

    def scalar_curvature_at(self, y, theta):
        """R = 2K at arbitrary points θ (m, 2) by trigonometric interpolation of the grid values (m,)."""
        th = np.asarray(theta, dtype=float)
        Kh = sfft.fft2(self.curvature(y)) / self.n ** 2  # (n, n)
        k = sfft.fftfreq(self.n, d=1.0 / self.n)
        if self.n % 2 == 0:  # split the Nyquist mode symmetrically so the interpolant is real
            k[self.n // 2] = 0.0
            Kh = Kh.copy()
            Kh[self.n // 2, :] = 0.0
            Kh[:, self.n // 2] = 0.0
        e1 = np.exp(1j * np.outer(th[:, 0], k))  # (m, n)
        e2 = np.exp(1j * np.outer(th[:, 1], k))
        return 2.0 * np.real(np.einsum("mi,ij,mj->m", e1, Kh, e2))

    def mode(self, y, k):
        """Fourier coefficient of u at wave vector k = (k₁, k₂) (normalised: u = Σ û_k e^{ik·θ})."""
        uh = sfft.fft2(self.u(y)) / self.n ** 2
        return complex(uh[k[0] % self.n, k[1] % self.n])

    def scalars(self, y) -> dict:
        K = self.curvature(y)
        A = self.area(y)
        return {"area": A, "volume": A, "K_min": float(K.min()), "K_max": float(K.max()),
                "R_min": 2.0 * float(K.min()), "R_max": 2.0 * float(K.max())}

    def is_good(self, y) -> bool:
        """A metric: w = e^{2u} finite and > 0 everywhere."""
        return bool(np.all(np.isfinite(y)) and np.all(y > 0))

    def singularity(self, y, limit: float):
        # the flow exists for all time on T² (Hamilton); only a numerical blow-up can stop it
        K = self.curvature(y)
        if np.max(np.abs(K)) > limit:
            return f"the curvature |K| reached {np.max(np.abs(K)):.3g} > {limit:.3g} (numerical blow-up; raise n or lower rtol)"
        return None


# ----------------------------------------------------------------------------------------------
# S²: axisymmetric conformal factor g = e^{2u(θ)} g_round
# ----------------------------------------------------------------------------------------------


# -- conformal metrics e^{2u} g_round on S² (shared by the axisymmetric and the full solver); state y = e^{2u}


def _conformal_state(u, at, shape, where: str) -> np.ndarray:
    """y = e^{2u} from u: values (shape) or a function evaluated at ``at``; refuses wrong shapes and NaN/inf."""
    u = np.asarray(u(at), dtype=float) if callable(u) else np.asarray(u, dtype=float)
    if u.shape != tuple(shape):
        raise ValueError(f"u: expected values at {where}, received shape {u.shape}.")
    if not np.all(np.isfinite(u)):
        raise ValueError("u: the conformal factor has NaN/inf values; pass a finite function.")
    return np.exp(2.0 * u)


def _conformal_s2_rhs(laplacian, y):
    """∂_t y = Δ₀ log y − 2 (Hamilton's flow of g = y·g_round on the unit S², K₀ = 1)."""
    return laplacian(np.log(y)) - 2.0


def _conformal_s2_curvature(laplacian, y):
    """Gauss curvature K = (1 − ½Δ₀ log y)/y of g = y·g_round."""
    return (1.0 - 0.5 * laplacian(np.log(y))) / y


@dataclass(frozen=True)
class AxisymmetricSphere:
    """Ricci flow of g = e^{2u(μ)} g_round on S² (μ = cos θ), u_t = e^{−2u}(Δ₀u − 1), solved for
    w = e^{2u}: w_t = Δ₀ log w − 2, with Δ₀ = ∂_μ(1 − μ²)∂_μ exact on Legendre polynomials.

    ``degree``: highest Legendre degree L; the state is w at the L + 1 Gauss–Legendre nodes."""

    degree: int = 24

    def __post_init__(self):
        if not isinstance(self.degree, (int, np.integer)) or self.degree < 2:
            raise ValueError(f"degree: expected a Legendre degree >= 2, received {self.degree!r}.")

    name = "axisymmetric-s2"

    def nodes(self):
        """(L+1,) nodes μ_j and Gauss weights ω_j (Σ ω_j = 2)."""
        return npleg.leggauss(self.degree + 1)

    @cached_property
    def _ops(self):
        mu, wq = self.nodes()
        V = npleg.legvander(mu, self.degree)  # (L+1, L+1) P_l(μ_j)
        l = np.arange(self.degree + 1)
        analysis = (V * wq[:, None]).T * ((2 * l + 1) / 2.0)[:, None]  # coefficients c = analysis @ f
        lap = V @ (-(l * (l + 1.0))[:, None] * analysis)  # (L+1, L+1) Δ₀ on node values
        return V, analysis, lap

    def _operators(self):
        return self._ops

    def coefficients(self, f):
        """Legendre coefficients c_l of node values f (f = Σ c_l P_l)."""
        _, analysis, _ = self._operators()
        return analysis @ np.asarray(f, dtype=float)

    def laplacian(self, f):
        return self._ops[2] @ f

    def initial(self, u):
        """State from u: (L+1,) node values or a function u(μ)."""
        mu, _ = self.nodes()
        return _conformal_state(u, mu, mu.shape, f"the {mu.size} Gauss–Legendre nodes")

    def rhs(self, t, y):
        return _conformal_s2_rhs(self.laplacian, y)

    def curvature(self, y):
        """Gauss curvature K = e^{−2u}(1 − Δ₀u) at the nodes."""
        return _conformal_s2_curvature(self.laplacian, y)

    def area(self, y):
        _, wq = self.nodes()
        return float(2.0 * np.pi * np.dot(wq, y))

    def scalar_curvature_at(self, y, mu):
        """R = 2K at arbitrary μ = cos θ (m,) from the Legendre series of K (degree ≤ L)."""
        return 2.0 * npleg.legval(np.asarray(mu, dtype=float), self.coefficients(self.curvature(y)))

    def normalised_coefficients(self, y):
        """Legendre coefficients of w/(A/4π) − 1: the shape of the normalised (area 4π) metric."""
        return self.coefficients(y * (4.0 * np.pi / self.area(y)) - 1.0)

    def scalars(self, y) -> dict:
        K = self.curvature(y)
        A = self.area(y)
        return {"area": A, "volume": A, "K_min": float(K.min()), "K_max": float(K.max()),
                "R_min": 2.0 * float(K.min()), "R_max": 2.0 * float(K.max()),
                "radius": math.sqrt(max(A, 0.0) / (4.0 * np.pi))}

    def is_good(self, y) -> bool:
        """A metric: w = e^{2u} finite and > 0 at every node."""
        return bool(np.all(np.isfinite(y)) and np.all(y > 0))

    def singularity(self, y, limit: float):
        K = self.curvature(y)
        if np.min(y) <= 0 or np.max(np.abs(K)) > limit:
            A = self.area(y)
            return (f"extinction: the sphere shrinks to a point (area {A:.3g}, |K| up to {np.max(np.abs(K)):.3g} "
                    f"> {limit:.3g}; Hamilton's flow ends at t* = A₀/8π)")
        return None


def _real_sph_harm(L: int, theta, phi):
    """Real orthonormal spherical harmonics Y_lm, l ≤ L, at polar angles θ and azimuths φ: (m_pts, (L+1)²),
    columns ordered (l, m) with m = −l … l; with l(l+1) per column."""
    from scipy.special import sph_harm_y

    cols, lam = [], []
    for l in range(L + 1):
        for m in range(-l, l + 1):
            Y = sph_harm_y(l, abs(m), theta, phi)
            cols.append(np.real(Y) if m == 0 else math.sqrt(2.0) * (np.real(Y) if m > 0 else np.imag(Y)))
            lam.append(l * (l + 1.0))
    return np.stack(cols, axis=1), np.asarray(lam)


@dataclass(frozen=True)
class ConformalSphere:
    """Ricci flow of g = e^{2u} g_round on S² without symmetry, u_t = e^{−2u}(Δ₀u − 1), solved for w = e^{2u}:
    w_t = Δ₀ log w − 2, with Δ₀ exact on the real spherical harmonics of degree ≤ L (Δ₀Y_lm = −l(l+1)Y_lm).

    Grid: L + 1 Gauss–Legendre nodes in μ = cos θ × 2L + 2 equispaced azimuths φ (exact quadrature for
    products of two degree-L fields); the state is w at the (L+1)(2L+2) grid points. Embedded point
    x = (sin θ cos φ, sin θ sin φ, cos θ), so μ = x₃ as in :class:`AxisymmetricSphere`."""

    degree: int = 16

    def __post_init__(self):
        if not isinstance(self.degree, (int, np.integer)) or self.degree < 2:
            raise ValueError(f"degree: expected a spherical-harmonic degree >= 2, received {self.degree!r}.")

    name = "conformal-s2"

    def grid(self):
        """(m,) θ, (m,) φ, (m,) quadrature weights (Σ = 4π), (m, 3) embedded points."""
        L = self.degree
        mu, wq = npleg.leggauss(L + 1)
        ph = 2.0 * np.pi * np.arange(2 * L + 2) / (2 * L + 2)
        MU, PH = np.meshgrid(mu, ph, indexing="ij")
        W = np.broadcast_to(wq[:, None] * (2.0 * np.pi / (2 * L + 2)), MU.shape)
        th = np.arccos(MU.ravel())
        st = np.sin(th)
        pts = np.stack([st * np.cos(PH.ravel()), st * np.sin(PH.ravel()), MU.ravel()], axis=1)
        return th, PH.ravel(), W.ravel().copy(), pts

    @cached_property
    def _ops(self):
        th, ph, W, _ = self.grid()
        Y, lam = _real_sph_harm(self.degree, th, ph)
        analysis = Y.T * W[None, :]  # coefficients c = analysis @ f
        return Y, analysis, Y @ (-lam[:, None] * analysis)

    def coefficients(self, f):
        return self._ops[1] @ np.asarray(f, dtype=float)

    def laplacian(self, f):
        return self._ops[2] @ f

    def initial(self, u):
        """State from u: grid values (m,) or a function u(x) of embedded points (m, 3)."""
        pts = self.grid()[3]
        return _conformal_state(u, pts, (pts.shape[0],), f"the {pts.shape[0]} grid points")

    def rhs(self, t, y):
        return _conformal_s2_rhs(self.laplacian, y)

    def curvature(self, y):
        """Gauss curvature K = e^{−2u}(1 − Δ₀u) at the grid points."""
        return _conformal_s2_curvature(self.laplacian, y)

    def area(self, y):
        return float(np.dot(self.grid()[2], y))

    def scalar_curvature_at(self, y, points):
        """R = 2K at embedded points (m, 3) from the harmonic expansion of K (degree ≤ L)."""
        x = np.asarray(points, dtype=float)
        th = np.arccos(np.clip(x[:, 2], -1.0, 1.0))
        ph = np.arctan2(x[:, 1], x[:, 0])
        Y, _ = _real_sph_harm(self.degree, th, ph)
        return 2.0 * Y @ self.coefficients(self.curvature(y))

    def is_good(self, y) -> bool:
        return bool(np.all(np.isfinite(y)) and np.all(y > 0))

    def scalars(self, y) -> dict:
        K = self.curvature(y)
        A = self.area(y)
        return {"area": A, "volume": A, "K_min": float(K.min()), "K_max": float(K.max()),
                "R_min": 2.0 * float(K.min()), "R_max": 2.0 * float(K.max()),
                "radius": math.sqrt(max(A, 0.0) / (4.0 * np.pi))}

    def singularity(self, y, limit: float):
        K = self.curvature(y)
        if np.min(y) <= 0 or np.max(np.abs(K)) > limit:
            return (f"extinction: the sphere shrinks to a point (area {self.area(y):.3g}, |K| up to "
                    f"{np.max(np.abs(K)):.3g} > {limit:.3g}; Hamilton's flow ends at t* = A₀/8π)")
        return None


# ----------------------------------------------------------------------------------------------
# S^{n+1}: rotationally symmetric warped products g = φ² dx² + ψ² g_{Sⁿ}
# ----------------------------------------------------------------------------------------------


def _unit_sphere_area(n: int) -> float:
    """|Sⁿ| = 2π^{(n+1)/2}/Γ((n+1)/2)."""
    return 2.0 * math.pi ** ((n + 1) / 2.0) / math.gamma((n + 1) / 2.0)


def _fejer_weights(N: int) -> np.ndarray:
    """Fejér's first rule on x_j = (j + ½)π/N: Σ_j w_j G(x_j) = ∫₀^π G(x) sin x dx, exact for G a
    polynomial of degree < N in cos x."""
    x = (np.arange(N) + 0.5) * np.pi / N
    k = np.arange(1, N // 2 + 1)
    return (2.0 / N) * (1.0 - 2.0 * np.sum(np.cos(2.0 * np.outer(x, k)) / (4.0 * k ** 2 - 1.0), axis=1))


@dataclass(frozen=True)
class WarpedProduct:
    """Ricci flow of g = φ(x)²dx² + ψ(x)² g_{Sⁿ} on S^{n+1}, x ∈ [0, π]:

        φ_t = n (ψ_ss/ψ) φ,   ψ_t = ψ_ss − (n−1)(1 − ψ_s²)/ψ,   ∂_s = φ⁻¹∂_x.

    ``n``: fibre dimension (n = 2: S³); ``points``: staggered grid x_j = (j + ½)π/N, j < N. The state is
    (φ, ψ) at the grid, (2N,). Sectional curvatures: K_rad = −ψ_ss/ψ (planes containing ∂_s),
    K_tan = (1 − ψ_s²)/ψ² (planes tangent to the fibre); R = 2n K_rad + n(n−1) K_tan.

    ``gauge="deturck"`` (default) solves the Ricci–DeTurck flow ∂_t g = −2 Ric + L_W g instead, with
    W = w(x)∂_x, w = g^{ij}(Γ^x_ij − Γ̃^x_ij) for the background g̃ = dx² + sin²x g_{Sⁿ}:

        w = φ_x/φ³ − n ψ_x/(ψ φ²) + n sin x cos x/ψ²,
        φ_t = n (ψ_ss/ψ) φ + (w φ)_x,   ψ_t = ψ_ss − (n−1)(1 − ψ_s²)/ψ + w ψ_x.

    Its solution is Hamilton's flow pulled back by the diffeomorphisms of W, so every gauge-invariant
    quantity (volume, curvature extremes, the neck radius) is the same. Why: in the fixed-x gauge a
    cone perturbation ψ ≈ (1 + ε)φx at a pole grows like ε_t = 2(n−1)ε/x² (the system is only weakly
    parabolic) and round-off alone blows the solver up within a few steps; with W it decays,
    ε_t ≈ −2ε/x². ``gauge="none"`` keeps the plain equations (for n = 1 they are stable)."""

    n: int = 2
    points: int = 64
    gauge: str = "deturck"

    def __post_init__(self):
        if not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise ValueError(f"n: expected the fibre dimension >= 1, received {self.n!r}.")
        if not isinstance(self.points, (int, np.integer)) or self.points < 4:
            raise ValueError(f"points: expected >= 4 grid points on [0, π], received {self.points!r}.")
        if self.gauge not in ("deturck", "none"):
            raise ValueError(f"gauge: expected 'deturck' or 'none', received {self.gauge!r}.")

    name = "warped-product"

    def grid(self):
        return (np.arange(self.points) + 0.5) * np.pi / self.points  # (N,)

    def _dx(self, f, parity: int, order: int = 1):
        """∂_x^order of grid values f on [0, π] extended to [0, 2π) evenly (parity +1) or oddly (−1).
        First derivatives drop the Nyquist mode (it has no real derivative); second derivatives keep it
        (−k²), so that diffusion damps the grid-scale mode instead of leaving it free to grow."""
        ext = np.concatenate([f, parity * f[::-1]])  # values at x_j and 2π − x_j
        k = sfft.fftfreq(ext.size, d=1.0 / ext.size)
        if order == 1:
            k[ext.size // 2] = 0.0
            mult = 1j * k
        else:
            mult = -k ** 2
        return np.real(sfft.ifft(mult * sfft.fft(ext)))[: f.size]

    def initial(self, phi, psi):
        """State from φ, ψ: (N,) grid values or functions of x."""
        x = self.grid()
        phi = np.asarray(phi(x) if callable(phi) else phi, dtype=float) * np.ones_like(x)
        psi = np.asarray(psi(x) if callable(psi) else psi, dtype=float) * np.ones_like(x)
        for name, v in (("phi", phi), ("psi", psi)):
            if v.shape != x.shape:
                raise ValueError(f"{name}: expected {x.size} grid values, received shape {v.shape}.")
            if not np.all(np.isfinite(v)) or np.any(v <= 0):
                raise ValueError(f"{name}: must be finite and > 0 on (0, π); received min {np.nanmin(v):.3g}.")
        return np.concatenate([phi, psi])

    def split(self, y):
        return y[: self.points], y[self.points:]

    def derivatives(self, y):
        """(ψ_s, ψ_ss) at the grid."""
        phi, psi = self.split(y)
        psi_x = self._dx(psi, -1)
        psi_s = psi_x / phi  # even
        psi_ss = (self._dx(psi, -1, 2) - self._dx(phi, +1) * psi_s) / phi ** 2  # odd
        return psi_s, psi_ss

    def rhs(self, t, y):
        phi, psi = self.split(y)
        psi_s, psi_ss = self.derivatives(y)
        phi_t = self.n * psi_ss / psi * phi
        psi_t = psi_ss - (self.n - 1) * (1.0 - psi_s ** 2) / psi
        if self.gauge == "deturck":
            # −2Ric + L_W g with the cancellations done by hand (q = sin x/ψ → 1/φ at a pole): no
            # transport of φ at the singular speed n cot x is left, and the 1/x terms cancel pointwise
            x = self.grid()
            phi_x, psi_x = self._dx(phi, +1), self._dx(psi, -1)
            q = np.sin(x) / psi
            phi_t = (self._dx(phi, +1, 2) / phi ** 2 - 2.0 * phi_x ** 2 / phi ** 3
                     + self.n * np.cos(x) / np.sin(x) * self._dx(phi * q ** 2, +1)
                     + self.n * q ** 2 * (psi_x ** 2 - phi ** 2) / (phi * np.sin(x) ** 2))
            psi_t = (self._dx(psi, -1, 2) / phi ** 2
                     + (-(self.n - 1) - psi_x ** 2 / phi ** 2 + self.n * q * np.cos(x) * psi_x) / psi)
        return np.concatenate([phi_t, psi_t])

    def curvatures(self, y):
        """(K_rad, K_tan, R) at the grid."""
        _, psi = self.split(y)
        psi_s, psi_ss = self.derivatives(y)
        k_rad = -psi_ss / psi
        k_tan = (1.0 - psi_s ** 2) / psi ** 2
        return k_rad, k_tan, 2 * self.n * k_rad + self.n * (self.n - 1) * k_tan

    def volume(self, y):
        """Vol = |Sⁿ| ∫₀^π φ ψⁿ dx. n even: midpoint rule on the staggered grid (φψⁿ is smooth and even about
        both poles, so the rule is spectrally accurate); n odd: Fejér's first rule for ∫ G(x) sin x dx with
        G = φψⁿ/sin x, a smooth function of cos x."""
        phi, psi = self.split(y)
        if self.n % 2 == 0:
            return float(_unit_sphere_area(self.n) * np.sum(phi * psi ** self.n) * np.pi / self.points)
        x = self.grid()
        return float(_unit_sphere_area(self.n) * np.dot(_fejer_weights(self.points), phi * psi ** self.n / np.sin(x)))

    def neck(self, y):
        """(x, ψ) of the thinnest interior local minimum of ψ (the neck), or None when ψ has none."""
        _, psi = self.split(y)
        i = np.flatnonzero((psi[1:-1] < psi[:-2]) & (psi[1:-1] <= psi[2:])) + 1
        if i.size == 0:
            return None
        j = i[np.argmin(psi[i])]
        return float(self.grid()[j]), float(psi[j])

    def scalars(self, y) -> dict:
        _, psi = self.split(y)
        k_rad, k_tan, R = self.curvatures(y)
        neck = self.neck(y)
        out = {"volume": self.volume(y), "R_min": float(R.min()), "R_max": float(R.max()),
               "Rm_max": float(max(np.abs(k_rad).max(), np.abs(k_tan).max())), "psi_max": float(psi.max()),
               "neck_psi": float("nan") if neck is None else neck[1]}
        return out

    def is_good(self, y) -> bool:
        """A metric: φ, ψ finite and > 0 on (0, π)."""
        return bool(np.all(np.isfinite(y)) and np.all(y > 0))

    def singularity(self, y, limit: float):
        phi, psi = self.split(y)
        k_rad, k_tan, _ = self.curvatures(y)
        rm = max(np.abs(k_rad).max(), np.abs(k_tan).max())
        if np.min(psi) > 0 and np.min(phi) > 0 and rm <= limit:
            return None
        neck = self.neck(y)
        if neck is not None and neck[1] < 0.5 * psi.max():
            return (f"neckpinch: the neck at x = {neck[0]:.3f} has radius ψ = {neck[1]:.3g} (bulbs {psi.max():.3g}), "
                    f"|Rm| = {rm:.3g} > {limit:.3g}")
        return (f"extinction: the sphere shrinks to a round point (ψ_max = {psi.max():.3g}, |Rm| = {rm:.3g} > {limit:.3g})")


# ----------------------------------------------------------------------------------------------
# the time stepper
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepInfo:
    """What :func:`integrate` hands ``on_step`` after every accepted step (the state is a copy)."""

    step: int
    t: float
    y: np.ndarray
    h: float  # the step size the integrator will try next (resume with first_step=h)
    scalars: dict
    nfev: int
    seconds: float
    max_step: float = math.inf  # the step-size cap in force (resume with max_step=max_step)


@dataclass(frozen=True)
class ReferenceResult:
    """Outcome of :func:`integrate`.

    ``status``: "finished" (reached t_end), "singular" (stopped at a singularity; ``message`` says which),
    "interrupted" (KeyboardInterrupt) or "failed" (the integrator could not continue; ``message``).
    ``t``/``y``: the last good state; ``times``/``history``: every accepted step's time and scalars;
    ``t_out``/``y_out``: states interpolated (dense output) at the requested output times reached."""

    status: str
    message: str
    t: float
    y: np.ndarray
    h: float
    times: np.ndarray
    history: dict = field(default_factory=dict)
    t_out: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y_out: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    steps: int = 0
    nfev: int = 0
    max_step: float = math.inf


def integrate(problem, y0, t_end: float, *, t0: float = 0.0, t_out=(), method: str = "DOP853",
              rtol: float = 1e-10, atol: float = 1e-12, first_step: float | None = None,
              max_step: float = math.inf, max_steps: int = 100_000, curvature_limit: float = 1e4,
              step0: int = 0, max_refinements: int = 40,
              on_step: Callable[[StepInfo], None] | None = None) -> ReferenceResult:
    """Integrate y' = problem.rhs(t, y) from (t0, y0) to t_end, one accepted Runge–Kutta step at a time.

    The SciPy explicit RK solvers keep no state besides (t, y, f(t, y), h) and the cap ``max_step``, so
    restarting from a saved (t, y, h, max_step) with ``first_step=h`` continues exactly as the uninterrupted
    run would. After every accepted step the problem's ``singularity(y, curvature_limit)`` is checked; a
    message stops the run (status "singular") with that state as the last good one.

    A step whose state is not a metric any more (``problem.is_good(y)`` false when the problem has it, or a
    non-finite state) is discarded, and the solver restarts from the last accepted state with ``max_step``
    a quarter of the discarded step — up to ``max_refinements`` times — so that a flow whose solution is
    smooth up to the singular time (a round sphere: linear in t) approaches it instead of jumping past it.
    When the refinements run out the run stops ("singular" if ``is_good`` failed, else "failed") with the
    last accepted state. A KeyboardInterrupt — also one raised by ``on_step`` — returns status
    "interrupted" and the last accepted state."""
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {sorted(_METHODS)}, received {method!r}.")
    y0 = np.asarray(y0, dtype=float)
    if not np.all(np.isfinite(y0)):
        raise ValueError("y0: the initial state has NaN/inf entries; check the initial metric.")
    t_out = np.asarray(t_out, dtype=float)
    is_good = getattr(problem, "is_good", None)

    def make_solver(t, y, h, cap):
        kwargs = {} if h is None else {"first_step": float(min(h, cap))}
        return _METHODS[method](problem.rhs, float(t), y, float(t_end), rtol=rtol, atol=atol, max_step=cap, **kwargs)

    solver = make_solver(t0, y0, first_step, max_step)
    times, hist = [float(t0)], {k: [v] for k, v in problem.scalars(y0).items()}
    outs_t, outs_y = [], []
    t_last, y_last, h_last = float(t0), y0.copy(), float(first_step or 0.0)
    status, message = "finished", f"reached t = {t_end:g}"
    step, refinements, nfev = step0, 0, 0
    clock = time.perf_counter()
    msg0 = problem.singularity(y0, curvature_limit)
    if msg0 is not None:
        return ReferenceResult("singular", msg0, t_last, y_last, h_last, np.array(times), _arrays(hist),
                               steps=step, max_step=max_step)
    try:
        while solver.status == "running":
            if step - step0 >= max_steps:
                status, message = "failed", f"max_steps = {max_steps} reached at t = {t_last:.6g}; raise max_steps"
                break
            msg = solver.step()
            finite = solver.status != "failed" and np.all(np.isfinite(solver.y))
            good = finite and (is_good is None or is_good(solver.y))
            if not good:
                t_bad = float(solver.t)
                if finite and refinements < max_refinements and t_bad - t_last > 1e-14 * max(1.0, abs(t_last)):
                    refinements += 1
                    nfev += solver.nfev
                    max_step = (t_bad - t_last) / 4.0
                    solver = make_solver(t_last, y_last, max_step, max_step)
                    continue
                if finite:
                    status = "singular"
                    message = (f"the solution stops being a metric between t = {t_last:.6g} and {t_bad:.6g} "
                               f"(after {refinements} step refinements); last good state at t = {t_last:.6g}")
                else:
                    status = "failed"
                    message = f"the integrator stopped at t = {t_last:.6g}: {msg or 'non-finite state'}"
                break
            step += 1
            # dense output at the requested times inside this step
            sel = (t_out > t_last) & (t_out <= solver.t)
            if np.any(sel):
                dense = solver.dense_output()
                for tt in t_out[sel]:
                    outs_t.append(float(tt))
                    outs_y.append(np.asarray(dense(tt)))
            t_last, y_last, h_last = float(solver.t), solver.y.copy(), float(solver.h_abs)
            sc = problem.scalars(y_last)
            times.append(t_last)
            for k, v in sc.items():
                hist.setdefault(k, []).append(v)
            if on_step is not None:
                on_step(StepInfo(step, t_last, y_last.copy(), h_last, sc, nfev + solver.nfev,
                                 time.perf_counter() - clock, max_step))
            msg = problem.singularity(y_last, curvature_limit)
            if msg is not None:
                status, message = "singular", f"{msg} at t = {t_last:.6g}"
                break
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted at t = {t_last:.6g} (last accepted step {step})"
    y_out = np.array(outs_y) if outs_y else np.zeros((0, y0.size))
    return ReferenceResult(status, message, t_last, y_last, h_last, np.array(times), _arrays(hist),
                           np.array(outs_t), y_out, steps=step, nfev=nfev + solver.nfev, max_step=max_step)


def _arrays(hist: dict) -> dict:
    return {k: np.asarray(v, dtype=float) for k, v in hist.items()}
