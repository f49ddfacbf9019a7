r"""Monomial sections of O(k) and their gradients: the one implementation, for NumPy and JAX.

For exponent rows I_α ∈ ℕ^N with |I_α| = k (the degree-k monomials, e.g. ``ntkflow.cy.basis.monomials``)

    s_α(z) = Π_i z_i^{I_αi},        ∂s_α/∂z_i = I_αi z_i^{I_αi − 1} Π_{j≠i} z_j^{I_αj},

computed from a table of integer powers z_i^e (e ≤ k: no complex ``pow``, exact at z_i = 0) and prefix /
suffix products over the coordinates (O(N) products per monomial; no division). The array module ``xp``
(``numpy`` or ``jax.numpy``) is a parameter, so the closed-form NumPy paths and the jitted / autodiff
JAX paths evaluate the same formulas; the exponents are static (a concrete array, never traced).
"""
from __future__ import annotations

import numpy as np

from ntkflow._checks import positive_int

__all__ = ["monomial_exponents", "monomials", "monomial_sections"]


def monomial_exponents(n_vars: int, k: int) -> np.ndarray:
    """All exponent vectors of degree k in n_vars variables, lexicographically descending.

    Returns an (N_k, n_vars) int64 array, N_k = C(k + n_vars - 1, n_vars - 1).
    """
    n_vars = positive_int("n_vars", n_vars)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k: expected a non-negative integer degree, received {k!r}.")
    out = []

    def rec(prefix, remaining, slots):
        if slots == 1:
            out.append(prefix + [remaining])
            return
        for e in range(remaining, -1, -1):
            rec(prefix + [e], remaining - e, slots - 1)

    rec([], int(k), n_vars)
    return np.asarray(out, dtype=np.int64).reshape(-1, n_vars)


def _exponents(exponents) -> np.ndarray:
    e = np.asarray(exponents)
    if e.ndim != 2 or e.shape[0] == 0 or e.dtype.kind not in "iu" or np.any(e < 0):
        raise ValueError(f"exponents: expected a non-empty (N_k, N) array of non-negative integers, "
                         f"received shape {e.shape}, dtype {e.dtype}.")
    deg = e.sum(axis=1)
    if np.any(deg != deg[0]):
        raise ValueError(f"exponents: every row must have the same degree k, received degrees {sorted(set(deg.tolist()))}.")
    return e


def _factors(z, e, xp):
    """[z_i^{I_αi} for each coordinate i] (N × (..., N_k)) and the power table (..., N, k+1)."""
    n_coords = e.shape[1]
    if z.shape[-1] != n_coords:
        raise ValueError(f"z: expected {n_coords} homogeneous coordinates in the last axis (the exponents' "
                         f"columns), received shape {z.shape}.")
    k = int(e.max())
    pw = [xp.ones_like(z)]
    for _ in range(k):
        pw.append(pw[-1] * z)
    pw = xp.stack(pw, axis=-1)  # (..., N, k+1): z_i^e
    return [pw[..., i, e[:, i]] for i in range(n_coords)], pw


def monomials(z, exponents, *, xp=np):
    """s (..., N_k) with s_α = Π_i z_i^{I_αi}, for z (..., N) complex and exponents (N_k, N)."""
    e = _exponents(exponents)
    fac, _ = _factors(z, e, xp)
    s = fac[0]
    for f in fac[1:]:
        s = s * f
    return s


def monomial_sections(z, exponents, *, xp=np):
    """(s, ∇s): s (..., N_k) the monomials and ds (..., N_k, N) with ds[..., α, i] = ∂s_α/∂z_i
    (module docstring), for z (..., N) complex (one point or a batch) and exponents (N_k, N)."""
    e = _exponents(exponents)
    fac, pw = _factors(z, e, xp)
    n_coords = e.shape[1]
    lower = np.maximum(e - 1, 0)
    pre = [xp.ones_like(fac[0])]  # pre[i] = Π_{j<i} z_j^{I_j}
    for i in range(n_coords - 1):
        pre.append(pre[-1] * fac[i])
    s = pre[-1] * fac[-1]
    suf = xp.ones_like(fac[0])  # Π_{j>i} z_j^{I_j}, built from the right
    grads = [None] * n_coords
    for i in range(n_coords - 1, -1, -1):
        grads[i] = pre[i] * suf * (e[:, i] * pw[..., i, lower[:, i]])
        suf = suf * fac[i]
    return s, xp.stack(grads, axis=-1)
