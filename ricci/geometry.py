"""Riemannian geometry on chart jets: batched pure functions of (g, dg, d2g) at m points.

Layout (the same as ``domains.chart_jet``): g (m, n, n); dg (m, n, n, n) with dg[q, a, b, c] = ∂_c g_ab;
d2g (m, n, n, n, n) with d2g[q, a, b, c, d] = ∂_c∂_d g_ab. A scalar f comes as its chart jet
(f (m,), df (m, n) = ∂_a f, d2f (m, n, n) = ∂_a∂_b f).

Conventions:
  Γ^k_ij = ½ g^{kl}(∂_i g_jl + ∂_j g_il − ∂_l g_ij),                     christoffel[q, k, i, j]
  R^ρ_σμν = ∂_μΓ^ρ_νσ − ∂_νΓ^ρ_μσ + Γ^ρ_μλ Γ^λ_νσ − Γ^ρ_νλ Γ^λ_μσ,        riemann[q, ρ, σ, μ, ν]
  Ric_σν = R^ρ_σρν, R = g^{σν} Ric_σν (round Sⁿ of radius r: Ric = (n−1)/r² g, R = n(n−1)/r²),
  ∇_i∇_j f = ∂_i∂_j f − Γ^k_ij ∂_k f, Δf = g^{ij}∇_i∇_j f, |∇f|² = g^{ij}∂_i f ∂_j f, dV = √det g dⁿy.
All functions work on jax or numpy arrays and are jit/vmap/grad friendly.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = [
    "inverse",
    "christoffel",
    "christoffel_derivative",
    "riemann",
    "ricci",
    "scalar",
    "volume_density",
    "hessian_of_function",
    "laplacian",
    "gradient_norm_sq",
    "raise_both",
    "metric_defect",
    "is_metric",
]


def inverse(g):
    """g^{ij} (m, n, n)."""
    return jnp.linalg.inv(g)


def _first_kind(dg):
    # Γ_{l,ij} = ½(∂_i g_jl + ∂_j g_il − ∂_l g_ij)  (m, l, i, j);  dg[q, a, b, c] = ∂_c g_ab
    return 0.5 * (jnp.einsum("qjli->qlij", dg) + jnp.einsum("qilj->qlij", dg) - jnp.einsum("qijl->qlij", dg))


def christoffel(g, dg):
    """Γ^k_ij (m, k, i, j) = ½ g^{kl}(∂_i g_jl + ∂_j g_il − ∂_l g_ij)."""
    return jnp.einsum("qkl,qlij->qkij", inverse(g), _first_kind(dg))


def christoffel_derivative(g, dg, d2g):
    """∂_m Γ^k_ij (m, k, i, j, m) = ∂_m g^{kl} Γ_{l,ij} + g^{kl} ∂_m Γ_{l,ij}, ∂_m g^{kl} = −g^{ka} ∂_m g_ab g^{bl}."""
    gi = inverse(g)
    dgi = -jnp.einsum("qka,qabm,qbl->qklm", gi, dg, gi)  # (m, n, n, n)
    # ∂_m Γ_{l,ij} = ½(∂_m∂_i g_jl + ∂_m∂_j g_il − ∂_m∂_l g_ij); d2g[q, a, b, c, d] = ∂_c∂_d g_ab
    d_first = 0.5 * (
        jnp.einsum("qjlim->qlijm", d2g) + jnp.einsum("qiljm->qlijm", d2g) - jnp.einsum("qijlm->qlijm", d2g)
    )
    return jnp.einsum("qklm,qlij->qkijm", dgi, _first_kind(dg)) + jnp.einsum("qkl,qlijm->qkijm", gi, d_first)


def riemann(g, dg, d2g):
    """R^ρ_σμν (m, ρ, σ, μ, ν) = ∂_μΓ^ρ_νσ − ∂_νΓ^ρ_μσ + Γ^ρ_μλ Γ^λ_νσ − Γ^ρ_νλ Γ^λ_μσ."""
    gam = christoffel(g, dg)
    dgam = christoffel_derivative(g, dg, d2g)  # [q, k, i, j, m] = ∂_m Γ^k_ij
    t1 = jnp.einsum("qrnsm->qrsmn", dgam)  # ∂_μ Γ^ρ_νσ at [ρ, σ, μ, ν]
    t2 = jnp.einsum("qrmsn->qrsmn", dgam)  # ∂_ν Γ^ρ_μσ
    t3 = jnp.einsum("qrml,qlns->qrsmn", gam, gam)
    t4 = jnp.einsum("qrnl,qlms->qrsmn", gam, gam)
    return t1 - t2 + t3 - t4


def ricci(g, dg, d2g):
    """Ric_σν (m, n, n) = R^ρ_σρν, symmetrised (it is symmetric exactly; this removes round-off)."""
    ric = jnp.einsum("qrsrn->qsn", riemann(g, dg, d2g))
    return 0.5 * (ric + jnp.swapaxes(ric, 1, 2))


def scalar(g, dg, d2g):
    """R (m,) = g^{ij} Ric_ij."""
    return jnp.einsum("qij,qij->q", inverse(g), ricci(g, dg, d2g))


def volume_density(g):
    """√det g (m,)."""
    return jnp.sqrt(jnp.linalg.det(g))


def hessian_of_function(g, dg, f, df, d2f):
    """∇_i∇_j f (m, n, n) = ∂_i∂_j f − Γ^k_ij ∂_k f."""
    return d2f - jnp.einsum("qkij,qk->qij", christoffel(g, dg), df)


def laplacian(g, dg, f, df, d2f):
    """Δf (m,) = g^{ij}∇_i∇_j f (the non-negative-spectrum operator is −Δ)."""
    return jnp.einsum("qij,qij->q", inverse(g), hessian_of_function(g, dg, f, df, d2f))


def gradient_norm_sq(g, df):
    """|∇f|² (m,) = g^{ij} ∂_i f ∂_j f."""
    return jnp.einsum("qij,qi,qj->q", inverse(g), df, df)


def raise_both(g, t):
    """T^{ij} (m, n, n) = g^{ik} g^{jl} T_kl."""
    gi = inverse(g)
    return jnp.einsum("qik,qkl,qjl->qij", gi, t, gi)


def metric_defect(g, R, limit: float) -> str | None:
    """Why a state (chart metrics g (m, n, n) and scalar curvature R (m,) at the points) stops a flow:
    non-finite values, a metric that is not positive definite, or max |R| above ``limit`` (extinction,
    pinch) — as a message; None while it is a healthy metric. The flows' shared singularity test."""
    g, R = np.asarray(g), np.asarray(R)
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(R))):
        return "the metric or its curvature became non-finite"
    lam = float(np.min(np.linalg.eigvalsh(g)[:, 0]))
    if lam <= 0:
        return f"the metric is no longer positive definite (smallest eigenvalue {lam:.3g})"
    rmax = float(np.max(np.abs(R)))
    if rmax > limit:
        return f"the curvature blows up (max |R| = {rmax:.4g} > curvature_limit = {limit:.4g}; extinction or pinch)"
    return None


def is_metric(g, R) -> bool:
    """Finite, with a positive definite g at every point (the flows' ``is_good``)."""
    return metric_defect(g, R, np.inf) is None
