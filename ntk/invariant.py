"""Algebraic geometry ∩ NTK: networks on the C*-invariant features of P^{N−1} have kernels Σ_k a_k u^k.

A network f(x) with x = F(z) = √d · realify(z z̄ᵀ/|z|²) (d = 2N², :func:`invariant_features`) sees only

    |x|²/d = 1,    x·x'/d = u = |⟨z, w⟩|² / (|z|² |w|²)  ∈ [0, 1],

so every infinite-width kernel of a dot-product / translation-invariant architecture is a function
κ(u) of u alone, analytic in the unit disc with non-negative Taylor coefficients:

    Θ̄(z, w) = κ(u) = Σ_{k≥0} a_k u^k,    a_k ≥ 0,

a weighted sum of the reproducing kernels u^k of Donaldson's degree-k spaces.

κ for each architecture (t = u; NTK parameterisation as in :mod:`ntkflow.ntk.networks`):

- MLP, depth L, activation φ: Σ¹ = σ_w² t + σ_b², Θ¹ = Σ¹, q₁ = σ_w² + σ_b²; for l = 1..L with
  ρ_l = Σ^l/q_l:  Σ^{l+1} = σ_w² V_φ(q_l, ρ_l) + σ_b²,  Θ^{l+1} = Σ^{l+1} + σ_w² V_φ'(q_l, ρ_l) Θ^l,
  q_{l+1} = σ_w² V_φ(q_l, 1) + σ_b², with V_φ(q, ρ) = E[φ(X)φ(Y)], V_φ'(q, ρ) = E[φ'(X)φ'(Y)],
  (X, Y) centred Gaussian, variances q, correlation ρ. Closed forms:
  erf: V = (2/π) arcsin(2qρ/(1+2q)), V' = (4/π)/√((1+2q)² − 4q²ρ²);
  relu: V = q(√(1−ρ²) + (π − arccos ρ)ρ)/(2π), V' = (π − arccos ρ)/(2π);
  gelu (x Φ(x)) and any other φ: the Hermite (Mehler) series V = Σ_n c_n² ρ^n, c_n = E[φ(√q Z) h_n(Z)]
  with orthonormal Hermite h_n, by Gauss–Hermite quadrature (it *is* the Taylor series in ρ).
- cos-net: E = exp(σ_b²(t − 1)); NNGP (σ_a²/2)E; NTK (σ_a²/2)E·[a] + (σ_a²/2)E·[c] + (σ_a²σ_b²/2) t E·[b].
  Closed-form weights: e^{−σ_b²} σ_b^{2k}/k! (Poisson) for E.
- gauss-net: E = exp(σ_w0²(t − 1)); NNGP σ_b1² + σ_w1² E; NTK σ_w1²E·[w1] + σ_b1²·[b1] + σ_w1²σ_b0²E·[b0]
  + σ_w1²σ_w0² t E·[w0].

Weights. a_k are the Taylor coefficients at t = 0, computed by the Cauchy integral on |t| = r < 1,
a_k = r^{−k} (1/M) Σ_j κ(r ω^j) ω^{−jk} (ω = e^{2πi/M}, an FFT), with κ evaluated at complex t by the
same recursion (every closed form above is analytic on the unit disc with the principal branches, and
|ρ_l| < 1 there). Two radii give an error estimate. For relu κ is not analytic at t = 1
(√(1−ρ²)), the a_k decay algebraically (~k^{−3/2} for the NTK) and a finite mixture carries a
visible tail κ(1) − Σ_{k≤K} a_k, reported as ``tail``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ntkflow._checks import positive_int
from ntkflow.engine import ProjectiveMixture

from .networks import MLP, CosNet, GaussNet


# ----------------------------------------------------------------------------------------------
# dual activations V(q, ρ), V'(q, ρ) — numpy (complex ρ allowed) or jax.numpy (xp argument)
# ----------------------------------------------------------------------------------------------


def _hermite_table(n_max: int, n_nodes: int):
    """Nodes z, weights w (Σ w = 1 for N(0,1)), h[n, j] = h_n(z_j) orthonormal probabilists' Hermite."""
    z, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    w = w / np.sqrt(2.0 * np.pi)
    h = np.zeros((n_max + 1, n_nodes))
    h[0] = 1.0
    if n_max >= 1:
        h[1] = z
    for n in range(1, n_max):
        h[n + 1] = (z * h[n] - np.sqrt(n) * h[n - 1]) / np.sqrt(n + 1)
    return z, w, h


@lru_cache(maxsize=256)
def hermite_dual_coeffs(activation: str, q: float, n_max: int = 120, n_nodes: int = 240):
    """(α_n, β_n): V(q, ρ) = Σ α_n ρ^n, V'(q, ρ) = Σ β_n ρ^n (Mehler), for φ in erf/relu/gelu.

    α_n = E[φ(√q Z) h_n(Z)]², β_n = E[φ'(√q Z) h_n(Z)]² by Gauss–Hermite quadrature (exact to
    round-off for smooth φ; for relu the kink limits it, so relu uses its closed form elsewhere).
    """
    from scipy.special import erf as _erf

    z, w, h = _hermite_table(n_max, n_nodes)
    s = np.sqrt(q)
    x = s * z
    if activation == "gelu":
        Phi = 0.5 * (1.0 + _erf(x / np.sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
        f, fp = x * Phi, Phi + x * pdf
    elif activation == "erf":
        f, fp = _erf(x), 2.0 / np.sqrt(np.pi) * np.exp(-x * x)
    elif activation == "relu":
        f, fp = np.maximum(x, 0.0), (x > 0).astype(float)
    else:
        raise ValueError(f"activation: expected erf, relu or gelu, received {activation!r}.")
    c = h @ (w * f)
    dcoef = h @ (w * fp)
    return c**2, dcoef**2


def dual_activation(activation: str, q: float, rho, xp=np):
    """(V(q, ρ), V'(q, ρ)) for X, Y ~ N(0, q) with correlation ρ (array ρ; complex allowed with numpy)."""
    if activation == "erf":
        s = 1.0 + 2.0 * q
        V = (2.0 / np.pi) * xp.arcsin(2.0 * q * rho / s)
        Vd = (4.0 / np.pi) / xp.sqrt(s * s - 4.0 * q * q * rho * rho)
        return V, Vd
    if activation == "relu":
        if xp is np and np.iscomplexobj(rho):
            rho_c = rho  # Cauchy circle: strictly inside the unit disc
        else:  # keep arccos/sqrt finite at ρ = 1 ± round-off on the real line
            rho_c = xp.clip(rho, -1.0, 1.0)
        th = xp.arccos(rho_c)
        V = q * (xp.sqrt(1.0 - rho_c * rho_c) + (np.pi - th) * rho_c) / (2.0 * np.pi)
        Vd = (np.pi - th) / (2.0 * np.pi)
        return V, Vd
    if activation == "gelu":
        a, b = hermite_dual_coeffs("gelu", float(q))
        return _poly(a, rho, xp), _poly(b, rho, xp)
    raise ValueError(f"activation: expected erf, relu or gelu, received {activation!r}.")


def _poly(c, x, xp):
    out = 0.0 * x + c[-1]
    for ck in c[-2::-1]:
        out = out * x + ck
    return out


# ----------------------------------------------------------------------------------------------
# κ(t) for each architecture
# ----------------------------------------------------------------------------------------------


def _mlp_kappa(net: MLP, t, kind: str, xp):
    sw2, sb2 = net.sigma_w**2, net.sigma_b**2
    Sig = sw2 * t + sb2
    Th = Sig
    q = sw2 + sb2
    for _ in range(len(net.widths)):
        V, Vd = dual_activation(net.activation, q, Sig / q, xp)
        V1, _ = dual_activation(net.activation, q, np.float64(1.0), np)
        Sig_next = sw2 * V + sb2
        Th = Sig_next + sw2 * Vd * Th
        Sig = Sig_next
        q = float(np.real(sw2 * V1 + sb2))
    return Th if kind == "ntk" else Sig


def _cos_kappa(net: CosNet, t, kind: str, xp):
    sa2, sb2 = net.sigma_a**2, net.sigma_b**2
    E = xp.exp(sb2 * (t - 1.0))
    if kind == "nngp":
        return 0.5 * sa2 * E
    tr = net.trainable
    out = 0.5 * sa2 * E * (("a" in tr) + ("c" in tr))
    if "b" in tr:
        out = out + 0.5 * sa2 * sb2 * t * E
    return out


def _gauss_kappa(net: GaussNet, t, kind: str, xp):
    E = xp.exp(net.sigma_w0**2 * (t - 1.0))
    if kind == "nngp":
        return net.sigma_b1**2 + net.sigma_w1**2 * E
    tr = net.trainable
    out = 0.0 * t
    if "w1" in tr:
        out = out + net.sigma_w1**2 * E
    if "b1" in tr:
        out = out + net.sigma_b1**2
    if "b0" in tr:
        out = out + net.sigma_w1**2 * net.sigma_b0**2 * E
    if "w0" in tr:
        out = out + net.sigma_w1**2 * net.sigma_w0**2 * t * E
    return out


def invariant_kappa(net, t, *, kind: str = "ntk", xp=np):
    """κ(t): the infinite-width kernel of ``net`` on inputs with |x|²/d = 1 and x·x'/d = t.

    net: an :class:`MLP`, :class:`CosNet` or :class:`GaussNet` (width and d_in are irrelevant);
    t: array (complex allowed with xp=numpy); kind: "ntk" or "nngp".
    For the invariant features of P^{N−1}, t = u and κ(u) = Θ̄(z, w).
    """
    if kind not in ("ntk", "nngp"):
        raise ValueError(f"kind: expected 'ntk' or 'nngp', received {kind!r}.")
    if isinstance(net, MLP):
        return _mlp_kappa(net, t, kind, xp)
    if isinstance(net, CosNet):
        return _cos_kappa(net, t, kind, xp)
    if isinstance(net, GaussNet):
        return _gauss_kappa(net, t, kind, xp)
    raise TypeError(f"net: expected MLP, CosNet or GaussNet, received {type(net).__name__}.")


def closed_form_weights(net, degree: int, *, kind: str = "ntk") -> np.ndarray | None:
    """Exact a_0..a_degree for cos-net and gauss-net (Poisson series); None for MLPs."""
    from scipy.special import gammaln

    k = np.arange(degree + 1)

    def poisson(s):  # coefficients of exp(s(t − 1))
        return np.exp(-s + k * np.log(s) - gammaln(k + 1)) if s > 0 else (k == 0).astype(float)

    def shift(c):  # coefficients of t·(series)
        return np.concatenate([[0.0], c[:-1]])

    if isinstance(net, CosNet):
        sa2, sb2 = net.sigma_a**2, net.sigma_b**2
        P = poisson(sb2)
        if kind == "nngp":
            return 0.5 * sa2 * P
        tr = net.trainable
        return 0.5 * sa2 * P * (("a" in tr) + ("c" in tr)) + (0.5 * sa2 * sb2 * shift(P) if "b" in tr else 0.0)
    if isinstance(net, GaussNet):
        P = poisson(net.sigma_w0**2)
        const = (k == 0).astype(float)
        if kind == "nngp":
            return net.sigma_b1**2 * const + net.sigma_w1**2 * P
        tr = net.trainable
        out = np.zeros(degree + 1)
        if "w1" in tr:
            out += net.sigma_w1**2 * P
        if "b1" in tr:
            out += net.sigma_b1**2 * const
        if "b0" in tr:
            out += net.sigma_w1**2 * net.sigma_b0**2 * P
        if "w0" in tr:
            out += net.sigma_w1**2 * net.sigma_w0**2 * shift(P)
        return out
    return None


@dataclass(frozen=True)
class InvariantWeights:
    """Taylor weights of κ(u) = Σ a_k u^k for one architecture.

    ``weights`` a_0..a_K; ``error`` |a_k(r₁) − a_k(r₂)| from two Cauchy radii; ``kappa_one`` κ(1);
    ``tail`` = κ(1) − Σ_{k≤K} a_k (the mass a degree-K mixture leaves out, ≥ 0).
    """

    arch: str
    kind: str
    weights: np.ndarray  # (K+1,)
    error: np.ndarray  # (K+1,)
    kappa_one: float
    tail: float

    def __call__(self, u):
        """Σ_{k≤K} a_k u^k."""
        return np.polynomial.polynomial.polyval(np.asarray(u), self.weights)


def arch_name(net) -> str:
    if isinstance(net, MLP):
        return f"mlp-{net.activation}-L{len(net.widths)}"
    return {CosNet: "cos-net", GaussNet: "gauss-net"}.get(type(net), type(net).__name__)


def invariant_weights(
    net, degree: int = 20, *, kind: str = "ntk", radius: float = 0.9, n_fft: int = 1024
) -> InvariantWeights:
    """a_0..a_degree of κ(u) = Σ a_k u^k by the Cauchy-integral FFT (module docstring).

    Cos-net / gauss-net weights are also available in closed form (:func:`closed_form_weights`); the
    tests check that both routes agree.
    """
    degree = positive_int("degree", degree)
    if not (0.0 < radius < 1.0):
        raise ValueError(f"radius: the Cauchy circle must lie inside the unit disc, received {radius!r}; use e.g. 0.9.")
    n_fft = positive_int("n_fft", n_fft)
    if n_fft < 4 * (degree + 1):
        raise ValueError(f"n_fft: need n_fft >= 4·(degree+1) = {4 * (degree + 1)}, received {n_fft}.")

    def coeffs(r):
        t = r * np.exp(2j * np.pi * np.arange(n_fft) / n_fft)
        vals = np.asarray(invariant_kappa(net, t, kind=kind), dtype=complex) * np.ones(n_fft)
        c = np.fft.fft(vals)[: degree + 1] / n_fft
        return np.real(c) / r ** np.arange(degree + 1)

    a1 = coeffs(radius)
    a2 = coeffs(radius * 0.85)
    k1 = float(np.real(invariant_kappa(net, np.float64(1.0), kind=kind)))
    return InvariantWeights(
        arch=arch_name(net), kind=kind, weights=a1, error=np.abs(a1 - a2), kappa_one=k1, tail=k1 - float(a1.sum())
    )


def invariant_feature_kernel(net, degree: int = 20, *, kind: str = "ntk", **kwargs):
    """The infinite-width kernel of ``net`` on invariant features as an engine projective mixture.

    Returns ``ntkflow.engine.ProjectiveMixture`` with weights a_0..a_degree (see
    :func:`invariant_weights`), usable by every backend of the operator engine and by the CY flows.
    """
    w = invariant_weights(net, degree, kind=kind, **kwargs)
    # round-off can leave a_k = −1e-17 where the exact weight is 0; the engine requires a_k ≥ 0
    return ProjectiveMixture(tuple(max(float(a), 0.0) for a in w.weights))
