"""Perelman's functionals F[g, f] and λ(g), their first variations, and the local drivers of metric flows.

    F[g, f] = ∫ (R + |∇f|²) e^{−f} dV,
    λ(g)   = min { ∫ (4|∇w|² + R w²) dV : ∫ w² dV = 1 } = lowest eigenvalue of −4Δ + R,  e^{−f_g} = w²,

so F[g, f_g] = λ(g). First variations for δg = v, δf = h, v = g^{ij}v_ij (flows.md):

    δF = ∫ [ −v_ij (R^{ij} + ∇^i∇^j f) + (v/2 − h)(2Δf − |∇f|² + R) ] e^{−f} dV,
    δλ = −∫ v_ij (R^{ij} + ∇^i∇^j f_g) e^{−f_g} dV.

Discretisation: quadrature on the domain's sample points (reference weights w_q, ``domain.points``) in the
chart centred at each point, where the Riemannian measure is w_q √det g_q; a *gradient* is the density
δL/δg_ij(x_q) with respect to the reference measure, δL = Σ_q w_q Σ_ij grad_q,ij v_q,ij (v in the chart
frame). λ is computed by Rayleigh–Ritz on a :class:`SpectralBasis` (Fourier modes |k|_∞ ≤ L on Tⁿ;
polynomials in x of degree ≤ L restricted to Sⁿ), orthonormalised on the quadrature:

    A_ij = Σ_q w_q √g (4 g^{ab} ∂_aψ_i ∂_bψ_j + R ψ_i ψ_j),  B_ij = Σ_q w_q √g ψ_i ψ_j,  A c = λ B c.

Drivers: a driver maps chart jets of the metric at the points to the local velocity ∂_t g (m, n, n) in the
chart frame, ``driver(domain, (g, dg, d2g), points, weights=None)``:

- :data:`hamilton_driver`: ∂_t g = −2 Ric (Hamilton's flow; Perelman's flow up to diffeomorphism);
- :class:`LambdaDriver` (L = −λ) and :class:`FDriver` (L = −F at fixed measure e^{−f}dV) with an explicit
  :class:`LocalKernel`: ∂_t g_ij = −Θ_ijkl δL/δg_kl with
    ``LocalKernel("perelman")``: Θ_ijkl = 2 e^{f} g_ik g_jl δ(x − x′)/√g  ⇒  ∂_t g = −2(Ric + ∇²f) EXACTLY
                                   (Perelman's gradient flow);
    ``LocalKernel("identity")``: Θ_ijkl = Ω̄ δ_ik δ_jl δ(x − x′)  ⇒  ∂_t g_ij = −Ω̄ e^{−f}√g g^{ik}g^{jl}(R_kl + ∇_k∇_l f),
                                   the naive choice, Perelman's flow only where g ≈ δ (it does NOT keep a round
                                   sphere in conformal coordinates round; tests/ricci/test_ricci_perelman.py).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ntkflow._checks import finite_array, positive_float, positive_int

from . import geometry as geo
from .domains import Sphere, Torus

__all__ = [
    "SpectralBasis",
    "LambdaResult",
    "F_functional",
    "F_variation",
    "perelman_lambda",
    "lambda_variation",
    "loss_gradient_lambda",
    "loss_gradient_F",
    "LocalKernel",
    "HamiltonDriver",
    "hamilton_driver",
    "LambdaDriver",
    "FDriver",
    "scalar_jets",
]


# ------------------------------------------------------------------------------------------------ basis
@dataclass(frozen=True)
class SpectralBasis:
    """Functions on the domain for Rayleigh–Ritz and for the spectral metric representation of local.py.

    Tⁿ: the real Fourier modes 1, cos(k·θ), sin(k·θ) with |k|_∞ ≤ degree (k in a half lattice), size
        (2·degree + 1)ⁿ; needs a uniform grid with > 2·degree points per axis to be orthogonal.
    Sⁿ: the monomials x^α with |α| = degree and |α| = degree − 1 — restricted to Sⁿ they span exactly the
        polynomials of degree ≤ degree (|x|² = 1), without redundancy: size (L+1)² on S²,
        (L+1)(L+2)(2L+3)/6 on S³.
    ``ambient_jets(points)`` returns the raw functions and their ambient derivatives; ``orthonormal(points,
    weights)`` the basis orthonormalised in Σ_q w_q ψ_i ψ_j (QR), as ambient jets.
    """

    domain: object
    degree: int
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.domain, (Torus, Sphere)):
            raise TypeError(f"domain: expected Torus(n) or Sphere(n), received {self.domain!r}.")
        positive_int("degree", self.degree)

    def _exponents(self) -> np.ndarray:
        A, L = self.domain.ambient_dim, self.degree
        if isinstance(self.domain, Torus):
            ks = [k for k in itertools.product(range(-L, L + 1), repeat=A) if k > tuple([0] * A)]
            return np.array(ks, dtype=np.float64).reshape(-1, A)
        return np.array(
            [a for a in itertools.product(range(L + 1), repeat=A) if sum(a) in (L, L - 1)], dtype=np.float64
        )

    @property
    def size(self) -> int:
        k = self._exponents()
        return 2 * len(k) + 1 if isinstance(self.domain, Torus) else len(k)

    def _fn(self):
        e = jnp.asarray(self._exponents())
        if isinstance(self.domain, Torus):
            return lambda x: jnp.concatenate([jnp.ones(1), jnp.cos(e @ x), jnp.sin(e @ x)])
        ei = np.asarray(self._exponents(), dtype=np.int64)  # (P, A)
        cols = np.arange(ei.shape[1])[None, :]

        def mono(x):  # x^α by products (exact for negative x_i; no float powers)
            pw = jnp.stack([jnp.ones_like(x)] + [x**j for j in range(1, self.degree + 1)])  # (L+1, A)
            return jnp.prod(pw[ei, cols], axis=1)

        return mono

    def ambient_jets(self, points):
        """φ (m, P), ∂φ (m, P, A), ∂²φ (m, P, A, A) at the points (exact, by jax.jacfwd)."""
        fn = self._fn()
        f = jax.vmap(lambda x: (fn(x), jax.jacfwd(fn)(x), jax.jacfwd(jax.jacfwd(fn))(x)))
        return f(jnp.asarray(points))

    def orthonormal(self, points, weights):
        """Ambient jets (ψ, ∂ψ, ∂²ψ) of the basis orthonormalised on the quadrature: Σ_q w_q ψ_i ψ_j = δ_ij.
        Cached per (points, weights) on this instance."""
        pts = np.asarray(points, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        key = (pts.shape, hash(pts.tobytes()), hash(w.tobytes()))
        if key not in self._cache:
            with jax.ensure_compile_time_eval():  # concrete even when called inside a jit trace
                phi, dphi, d2phi = (np.asarray(a) for a in self.ambient_jets(pts))
            if phi.shape[0] < phi.shape[1]:
                raise ValueError(
                    f"points: {phi.shape[0]} points cannot resolve the {phi.shape[1]} basis functions of degree "
                    f"{self.degree} on {self.domain!r}; pass more points or a lower degree."
                )
            _, r = np.linalg.qr(np.sqrt(w)[:, None] * phi)
            cond = np.abs(np.diag(r))
            if cond.min() < 1e-12 * cond.max():
                raise ValueError(
                    f"points: the degree-{self.degree} basis is rank deficient on these points (|R_ii| min/max = "
                    f"{cond.min() / cond.max():.2e}); use a finer grid (domain.points with more points) or a lower degree."
                )
            T = np.linalg.inv(r)  # (P, P): ψ = φ T
            self._cache.clear()
            self._cache[key] = (phi @ T, np.einsum("qpa,pr->qra", dphi, T), np.einsum("qpab,pr->qrab", d2phi, T))
        return self._cache[key]

    def chart_jets(self, points, weights):
        """Chart jets of the orthonormal basis: ψ (m, P), ∂_aψ (m, P, n), ∂_a∂_bψ (m, P, n, n)."""
        psi, dpsi, d2psi = self.orthonormal(points, weights)
        f = jax.vmap(lambda a, b, c: self.domain.chart_jet_scalar(a, b, c, points), in_axes=1, out_axes=1)
        return f(jnp.asarray(psi), jnp.asarray(dpsi), jnp.asarray(d2psi))


def scalar_jets(domain, fn: Callable, points):
    """Chart jets (f (m,), ∂f (m, n), ∂²f (m, n, n)) of a scalar JAX function fn of the ambient point."""
    x = jnp.asarray(points)
    f, df, d2f = jax.vmap(fn)(x), jax.vmap(jax.grad(fn))(x), jax.vmap(jax.hessian(fn))(x)
    if not isinstance(domain, (Torus, Sphere)):
        raise TypeError(f"domain: expected Torus(n) or Sphere(n), received {domain!r}.")
    return domain.chart_jet_scalar(f, df, d2f, points)


def _weights(name, weights, m):
    w = finite_array(name, weights, ndim=1, dtype=np.float64)
    if w.shape[0] != m:
        raise ValueError(f"{name}: expected {m} quadrature weights (one per point), received {w.shape[0]}; pass the weights of domain.points.")
    return jnp.asarray(w)


# ------------------------------------------------------------------------------------------------ F
def F_functional(jets, f_jets, weights) -> jnp.ndarray:
    """F[g, f] = Σ_q w_q √g (R + |∇f|²) e^{−f} from chart jets (g, dg, d2g) and (f, df, d2f)."""
    g, dg, d2g = jets
    f, df, _ = f_jets
    w = _weights("weights", weights, g.shape[0])
    return jnp.sum(w * geo.volume_density(g) * (geo.scalar(g, dg, d2g) + geo.gradient_norm_sq(g, df)) * jnp.exp(-f))


def F_variation(jets, f_jets):
    """Densities (w.r.t. the reference measure) of δF = Σ_q w_q [dF_dg : v + dF_df h]:
    dF_dg (m, n, n) = [−(R^{ij} + ∇^i∇^j f) + ½ g^{ij}(2Δf − |∇f|² + R)] e^{−f} √g,
    dF_df (m,)      = −(2Δf − |∇f|² + R) e^{−f} √g."""
    g, dg, d2g = jets
    f, df, d2f = f_jets
    gi = geo.inverse(g)
    dens = geo.volume_density(g) * jnp.exp(-f)
    ric = geo.ricci(g, dg, d2g)
    H = geo.hessian_of_function(g, dg, f, df, d2f)
    R = jnp.einsum("qij,qij->q", gi, ric)
    S = 2 * jnp.einsum("qij,qij->q", gi, H) - geo.gradient_norm_sq(g, df) + R
    dF_dg = (-geo.raise_both(g, ric + H) + 0.5 * gi * S[:, None, None]) * dens[:, None, None]
    return dF_dg, -S * dens


# ------------------------------------------------------------------------------------------------ λ
@dataclass(frozen=True)
class LambdaResult:
    """λ(g) by Rayleigh–Ritz: ``value``; ``gap`` = λ₁ − λ₀ (> 0: the minimiser is unique); the minimiser
    w (m,) at the points normalised Σ w_q √g w² = 1 and positive (``positive`` False flags a basis too
    small for this metric); f_g = −2 log w as chart jets ``f_jets``; ``coefficients`` (P,) in the
    orthonormal basis; ``basis_size``."""

    value: float
    gap: float
    w: np.ndarray
    f_jets: tuple
    coefficients: np.ndarray
    basis_size: int
    positive: bool


def _rayleigh_ritz(jets, basis_chart, weights):
    g, dg, d2g = jets
    psi, dpsi, d2psi = basis_chart
    rho = geo.volume_density(g)
    R = geo.scalar(g, dg, d2g)
    gi = geo.inverse(g)
    wr = weights * rho
    A = jnp.einsum("q,qi,qj->ij", wr * R, psi, psi) + 4 * jnp.einsum("q,qab,qia,qjb->ij", wr, gi, dpsi, dpsi)
    B = jnp.einsum("q,qi,qj->ij", wr, psi, psi)
    A, B = 0.5 * (A + A.T), 0.5 * (B + B.T)
    Lc = jnp.linalg.cholesky(B)
    M = jsl.solve_triangular(Lc, jsl.solve_triangular(Lc, A, lower=True).T, lower=True).T  # L⁻¹ A L⁻ᵀ
    ev, U = jnp.linalg.eigh(0.5 * (M + M.T))
    c = jsl.solve_triangular(Lc.T, U[:, 0], lower=False)  # cᵀ B c = 1
    c = c * jnp.sign(jnp.sum(wr * (psi @ c)))
    w = psi @ c
    dw = jnp.einsum("qpa,p->qa", dpsi, c)
    d2w = jnp.einsum("qpab,p->qab", d2psi, c)
    return ev, c, w, dw, d2w


def _f_from_w(w, dw, d2w):
    # f = −2 log w:  ∂f = −2 ∂w/w,  ∂²f = −2 ∂²w/w + 2 ∂w ∂wᵀ/w²
    f = -2 * jnp.log(w)
    df = -2 * dw / w[:, None]
    d2f = -2 * d2w / w[:, None, None] + 2 * jnp.einsum("qa,qb->qab", dw, dw) / (w**2)[:, None, None]
    return f, df, d2f


def perelman_lambda(domain, jets, points, weights, *, degree: int = 8, basis: SpectralBasis | None = None) -> LambdaResult:
    """λ(g) = lowest eigenvalue of −4Δ + R and its minimiser f_g (e^{−f_g} = w²) by Rayleigh–Ritz on the
    :class:`SpectralBasis` of ``degree`` (or ``basis``), chart jets ``jets`` = (g, dg, d2g) at the points."""
    basis = SpectralBasis(domain, degree) if basis is None else basis
    w_ = _weights("weights", weights, np.shape(jets[0])[0])
    ev, c, w, dw, d2w = _rayleigh_ritz(jets, basis.chart_jets(points, weights), w_)
    return LambdaResult(
        value=float(ev[0]), gap=float(ev[1] - ev[0]), w=np.asarray(w), f_jets=_f_from_w(w, dw, d2w),
        coefficients=np.asarray(c), basis_size=int(c.shape[0]), positive=bool(np.min(np.asarray(w)) > 0),
    )


def lambda_variation(jets, f_jets):
    """Density of δλ = Σ_q w_q dλ_dg : v,  dλ_dg (m, n, n) = −(R^{ij} + ∇^i∇^j f_g) e^{−f_g} √g."""
    g, dg, d2g = jets
    f, df, d2f = f_jets
    H = geo.hessian_of_function(g, dg, f, df, d2f)
    return -geo.raise_both(g, geo.ricci(g, dg, d2g) + H) * (geo.volume_density(g) * jnp.exp(-f))[:, None, None]


def loss_gradient_lambda(domain, jets, points, weights, *, degree: int = 8, basis: SpectralBasis | None = None):
    """δL/δg (m, n, n) for L = −λ(g): +(R^{ij} + ∇^i∇^j f_g) e^{−f_g} √g, and f_g's chart jets.
    JAX-traceable in the metric jets (jax.jvp works: λ₀ is simple)."""
    basis = SpectralBasis(domain, degree) if basis is None else basis
    w_ = _weights("weights", weights, np.shape(jets[0])[0])
    _, _, w, dw, d2w = _rayleigh_ritz(jets, basis.chart_jets(points, weights), w_)
    f_jets = _f_from_w(w, dw, d2w)
    return -lambda_variation(jets, f_jets), f_jets


def loss_gradient_F(jets, f_jets):
    """δL/δg (m, n, n) for L = −F[g, f] at fixed measure e^{−f}dV (h = v/2): +(R^{ij} + ∇^i∇^j f) e^{−f} √g."""
    return -lambda_variation(jets, f_jets)


# ------------------------------------------------------------------------------------------------ drivers
@dataclass(frozen=True)
class LocalKernel:
    """The local (σ → 0) metric kernel that turns a loss gradient into a velocity, ∂_t g = −Θ·δL/δg.

    kind="perelman": Θ_ijkl = 2 e^{f} g_ik g_jl δ(x−x′)/√g  →  ∂_t g_ij = −2 e^{f} g_ik g_jl G^{kl}/√g
                     (with G = δ(−F)/δg at fixed measure or δ(−λ)/δg this is −2(Ric + ∇²f): Perelman's flow);
    kind="identity": Θ_ijkl = scale·δ_ik δ_jl δ(x−x′)   →  ∂_t g_ij = −scale·G^{ij} (NOT Perelman's flow
                     unless g ≈ δ in the chart frame).
    """

    kind: str
    scale: float = 1.0

    def __post_init__(self):
        if self.kind not in ("perelman", "identity"):
            raise ValueError(f"kind: LocalKernel takes 'perelman' (Θ = 2e^f g g δ/√g, Perelman's flow) or 'identity' (Θ = δδδ), received {self.kind!r}.")
        positive_float("scale", self.scale)

    def apply(self, g, gradient, f):
        """Velocity ∂_t g (m, n, n) = −Θ·gradient at each point; g (m, n, n), gradient (m, n, n), f (m,)."""
        if self.kind == "identity":
            return -self.scale * gradient
        lowered = jnp.einsum("qik,qkl,qlj->qij", g, gradient, g)
        return -2 * self.scale * (jnp.exp(f) / geo.volume_density(g))[:, None, None] * lowered


@dataclass(frozen=True)
class HamiltonDriver:
    """∂_t g = −2 Ric (Hamilton's Ricci flow)."""

    def __call__(self, domain, jets, points=None, weights=None):
        return -2 * geo.ricci(*jets)


hamilton_driver = HamiltonDriver()


@dataclass(frozen=True)
class LambdaDriver:
    """∂_t g = −Θ·δ(−λ)/δg with the explicit :class:`LocalKernel` ``kernel``; λ by Rayleigh–Ritz of
    ``degree``. Needs the quadrature weights of the points: passed at call time or fixed here (``weights``)."""

    kernel: LocalKernel
    degree: int = 8
    weights: np.ndarray | None = field(default=None, compare=False, repr=False)
    _bases: dict = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, domain, jets, points, weights=None):
        weights = self.weights if weights is None else weights
        if weights is None:
            raise ValueError("weights: LambdaDriver needs the quadrature weights of the points (λ is a global "
                             "eigenvalue); pass weights=... at call time or LambdaDriver(kernel, degree, weights=w).")
        if domain not in self._bases:
            self._bases[domain] = SpectralBasis(domain, self.degree)
        grad, f_jets = loss_gradient_lambda(domain, jets, points, weights, basis=self._bases[domain])
        return self.kernel.apply(jets[0], grad, f_jets[0])


@dataclass(frozen=True)
class FDriver:
    """∂_t g = −Θ·δ(−F[g, f])/δg at fixed measure, for a given scalar JAX function ``f`` of the ambient point
    (held fixed in time: the coupled f_t = −R − Δf of Perelman is not integrated here)."""

    kernel: LocalKernel
    f: Callable

    def __call__(self, domain, jets, points, weights=None):
        f_jets = scalar_jets(domain, self.f, points)
        return self.kernel.apply(jets[0], loss_gradient_F(jets, f_jets), f_jets[0])
