"""Infinite-width NNGP / NTK of fully-connected networks (ReLU, erf, GELU) in NTK parameterisation.

Architecture (the neural-tangents ``stax`` convention, see :mod:`ntkflow.engine.nt_adapter`):

    Dense(W_std, b_std) → [φ → Dense(W_std, b_std)] × depth,

i.e. ``depth`` hidden layers of activation φ and a linear readout; each Dense layer is
z = (W_std/√fan_in) W h + b_std b with standard normal W, b. Recursion (Jacot et al. 2018, Lee et al.
2019), on inputs x, y ∈ R^d:

    K⁰ = W_std² x·y/d + b_std²,      Θ⁰ = K⁰
    Kˡ = W_std² E[φ(u)φ(v)] + b_std²,  Θˡ = Kˡ + W_std² E[φ'(u)φ'(v)] Θˡ⁻¹,

with (u, v) ~ N(0, [[K(x,x), K(x,y)], [K(x,y), K(y,y)]]) of the previous layer. Closed forms
(a = K(x,x), b = K(y,y), c = K(x,y)):

- ReLU (arc-cosine, Cho & Saul 2009): ρ = c/√(ab), θ = arccos ρ,
  E[φφ] = √(ab)(sin θ + (π − θ) cos θ)/(2π),  E[φ'φ'] = (π − θ)/(2π).
- erf (Williams 1997): Q = (1 + 2a)(1 + 2b),
  E[φφ] = (2/π) arcsin(2c/√Q),  E[φ'φ'] = (4/π)/√(Q − 4c²).
- GELU φ(u) = u Φ(u) (exact, not the tanh approximation; Tsuchida et al. 2020): P = (1 + a)(1 + b),
  δ = √(P − c²),  E[φφ] = c/4 + [(c² + ab δ²)/(P δ) + c arcsin(c/√P)]/(2π),
  E[φ'φ'] = ∂E[φφ]/∂c (Price's theorem) = 1/4 + [arcsin(c/√P) + (c/δ)(1/δ² + (1 − ab)/P + 1)]/(2π).

KeOps has no erf/arccos in every version: its form uses arccos ρ = atan2(√(1 − ρ²), ρ) and
arcsin t = atan2(t, √(1 − t²)) (pykeops ≥ 2.0 has Atan2 and Sqrt).

Accuracy note: the ReLU NTK contains (π − θ) with θ ≈ √(2(1 − ρ)), so a rounding error ε in ρ
becomes ~√ε ≈ 1e-8 in θ for nearly equal inputs (in every implementation, neural-tangents included).
To make Gram diagonals exact and the three backends agree to ~1e-15, ρ is scaled by (1 + τ) and
clipped to [−1, 1] with τ = 64 ulps of the working dtype: ρ within τ of ±1 counts as ±1 (an
error ≤ √(2τ) ≈ 2e-7 in θ, float64, only for pairs that close). The KeOps form receives the per-point
diagonal chains K^l(x, x) as precomputed variables (KeOps formulas have no common-subexpression
elimination, so recomputing them symbolically grows exponentially with depth).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ntkflow._checks import nonneg_float, positive_float, positive_int

from ._keops_util import keops_params
from .base import Kernel

ACTIVATIONS = ("relu", "erf", "gelu")
_TINY = 1e-30  # guards 0/0 in ρ = c/√(ab) when an input kernel vanishes (x = 0, b_std = 0)


# ------------------------------------------------------------------------------------------
# NumPy reference (plain formulas)
# ------------------------------------------------------------------------------------------


def _snap_tau(dtype) -> float:
    """ReLU: ρ within ~64 ulps of ±1 is taken as ±1 (see the accuracy note)."""
    return 64.0 * float(np.finfo(np.dtype(dtype)).eps)


def _np_layer(act: str, a, b, c, tau: float):
    """(E[φ(u)φ(v)], E[φ'(u)φ'(v)]) for (u, v) with variances a, b and covariance c."""
    if act == "relu":
        ab = np.sqrt(a * b + _TINY)
        theta = np.arccos(np.clip(c / ab * (1.0 + tau), -1.0, 1.0))
        k = ab * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
        kd = (np.pi - theta) / (2 * np.pi)
    elif act == "erf":
        Q = (1 + 2 * a) * (1 + 2 * b)
        k = 2 / np.pi * np.arcsin(2 * c / np.sqrt(Q))
        kd = 4 / np.pi / np.sqrt(Q - 4 * c**2)
    elif act == "gelu":
        P = (1 + a) * (1 + b)
        delta2 = P - c**2
        delta = np.sqrt(delta2)
        asn = np.arcsin(c / np.sqrt(P))
        k = c / 4 + ((c**2 + a * b * delta2) / (P * delta) + c * asn) / (2 * np.pi)
        kd = 0.25 + (asn + c / delta * (1 / delta2 + (1 - a * b) / P + 1)) / (2 * np.pi)
    else:  # pragma: no cover - validated at construction
        raise ValueError(act)
    return k, kd


# ------------------------------------------------------------------------------------------
# JAX / KeOps (one generic implementation over a tiny op set)
# ------------------------------------------------------------------------------------------
# KeOps formulas are trees without common-subexpression elimination: every reuse of a node copies
# it, so the layer maps below are written to use the off-diagonal covariance c as few times as
# possible (ρ → θ = arccos ρ once), and the KeOps form gets the diagonal chains K^l(x, x),
# K^l(y, y) as precomputed per-point variables instead of recomputing them symbolically.


class _JnpOps:
    def __init__(self):
        import jax.numpy as jnp

        self.jnp = jnp

    def sqrt(self, t):
        return self.jnp.sqrt(t)

    def acos(self, t):
        return self.jnp.arccos(t)

    def asin(self, t):
        return self.jnp.arcsin(t)

    def sin(self, t):
        return self.jnp.sin(t)

    def clip1(self, t):
        return self.jnp.clip(t, -1.0, 1.0)

    def square(self, t):
        return t * t


class _KeOpsOps:
    """KeOps forms; arccos/arcsin fall back to atan2/sqrt where a pykeops lacks Acos/Asin."""

    def __init__(self, like):
        self.has_acos = hasattr(type(like), "acos") and hasattr(type(like), "asin")

    def sqrt(self, t):
        return t.sqrt()

    def acos(self, t):
        if self.has_acos:
            return t.acos()
        return (1.0 - t.square()).relu().sqrt().atan2(t)  # arccos t = atan2(√(1 − t²), t)

    def asin(self, t):
        if self.has_acos:
            return t.asin()
        return t.atan2((1.0 - t.square()).relu().sqrt())  # arcsin t = atan2(t, √(1 − t²))

    def sin(self, t):
        return t.sin()

    def clip1(self, t):
        return t.clamp(-1.0, 1.0)

    def square(self, t):
        return t.square()


def _gen_layer(ops, act: str, a, b, c, need_deriv: bool, tau):
    """Layer map on generic arrays / LazyTensors; a, b are cheap (per point), c is reused minimally."""
    pi = math.pi
    if act == "relu":
        sab = ops.sqrt(a * b + _TINY)
        rho = ops.clip1(c * ((1.0 + tau) / sab))
        theta = ops.acos(rho)
        k = sab * (ops.sin(theta) + (pi - theta) * rho) * (1.0 / (2 * pi))
        kd = (pi - theta) * (1.0 / (2 * pi)) if need_deriv else None
    elif act == "erf":
        Q = (1.0 + 2.0 * a) * (1.0 + 2.0 * b)
        k = (2.0 / pi) * ops.asin(c * (2.0 / ops.sqrt(Q)))
        kd = (4.0 / pi) / ops.sqrt(Q - 4.0 * ops.square(c)) if need_deriv else None
    else:  # gelu, written in t = c/√P:  δ = √P √(1 − t²)
        P = (1.0 + a) * (1.0 + b)
        sP = ops.sqrt(P)
        ab = a * b
        t = c / sP
        t2 = ops.square(t)
        s = ops.sqrt(1.0 - t2)
        asn = ops.asin(t)
        k = sP * t * (0.25 + asn * (1.0 / (2 * pi))) + (ab + (1.0 - ab) * t2) / (sP * s) * (1.0 / (2 * pi))
        if need_deriv:
            # (c/δ)(1/δ² + (1 − ab)/P + 1) with c/δ = t/s, δ² = P(1 − t²)
            kd = 0.25 + (asn + t / s * (1.0 / (P * (1.0 - t2)) + (1.0 - ab) / P + 1.0)) * (1.0 / (2 * pi))
        else:
            kd = None
    return k, kd


def _gen_recursion(ops, act, depth, kind, w2, b2, a, b, c, tau, diag_x=None, diag_y=None):
    """NNGP/NTK recursion (w2 = W_std², b2 = b_std²) from the first-layer covariances a, b, c.

    ``diag_x[l]``, ``diag_y[l]`` (optional) are the precomputed diagonals after l hidden layers.
    """
    theta = c
    for l in range(depth):
        kc, kd = _gen_layer(ops, act, a, b, c, kind == "ntk", tau)
        c = w2 * kc + b2
        if kind == "ntk":
            theta = c + w2 * kd * theta
        if diag_x is not None:
            a, b = diag_x[l + 1], diag_y[l + 1]
        else:
            ka, _ = _gen_layer(ops, act, a, a, a, False, tau)
            kb, _ = _gen_layer(ops, act, b, b, b, False, tau)
            a, b = w2 * ka + b2, w2 * kb + b2
    return theta if kind == "ntk" else c


@dataclass(frozen=True)
class MLPNTK(Kernel):
    """NNGP or NTK of an infinitely wide fully-connected network (see the module docstring).

    Args:
        depth: number of hidden layers (nonlinearities), ≥ 1.
        activation: "relu", "erf" (φ = erf) or "gelu" (φ(u) = u Φ(u), exact).
        w_std: weight scale W_std > 0.
        b_std: bias scale b_std ≥ 0.
        kind: "ntk" (default) or "nngp".

    >>> import numpy as np
    >>> k = MLPNTK(depth=2, activation="relu", w_std=1.5, b_std=0.1)
    >>> K = k.dense(np.eye(3), np.eye(3))
    >>> bool(np.allclose(K, K.T))
    True
    """

    depth: int = 1
    activation: str = "relu"
    w_std: float = 1.0
    b_std: float = 0.0
    kind: str = "ntk"

    def __post_init__(self):
        object.__setattr__(self, "depth", positive_int("depth", self.depth))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, received {self.activation!r}.")
        if self.kind not in ("ntk", "nngp"):
            raise ValueError(f"kind: expected 'ntk' or 'nngp', received {self.kind!r}.")
        object.__setattr__(self, "w_std", positive_float("w_std", self.w_std))
        object.__setattr__(self, "b_std", nonneg_float("b_std", self.b_std))

    # -- NumPy reference -----------------------------------------------------------------
    def _np_recursion(self, sxx, syy, sxy, d, tau):
        w2, b2 = self.w_std**2, self.b_std**2
        a = w2 * sxx / d + b2
        b = w2 * syy / d + b2
        c = w2 * sxy / d + b2
        ntk = c
        for _ in range(self.depth):
            kc, kd = _np_layer(self.activation, a, b, c, tau)
            ka, _ = _np_layer(self.activation, a, a, a, tau)
            kb, _ = _np_layer(self.activation, b, b, b, tau)
            ntk = w2 * kc + b2 + w2 * kd * ntk
            a, b, c = w2 * ka + b2, w2 * kb + b2, w2 * kc + b2
        return ntk if self.kind == "ntk" else c

    def dense(self, x, y):
        tau = _snap_tau(np.float64)
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        sxy = x @ y.T
        sxx = (x * x).sum(-1)[:, None]
        syy = (y * y).sum(-1)[None, :]
        return self._np_recursion(sxx, syy, sxy, x.shape[1], tau)

    def diag(self, x):
        tau = _snap_tau(np.float64)
        x = np.asarray(x, dtype=np.float64)
        s = (x * x).sum(-1)
        return self._np_recursion(s, s, s, x.shape[1], tau)

    def _diag_chain(self, x):
        """(n, depth + 1): first-layer and post-layer variances K^l(x, x) (for the KeOps form)."""
        tau = _snap_tau(x.dtype)
        w2, b2 = self.w_std**2, self.b_std**2
        a = w2 * (x.astype(np.float64) ** 2).sum(-1) / x.shape[1] + b2
        out = [a]
        for _ in range(self.depth):
            ka, _ = _np_layer(self.activation, a, a, a, tau)
            a = w2 * ka + b2
            out.append(a)
        return np.ascontiguousarray(np.stack(out, axis=1), dtype=x.dtype)

    # -- JAX -------------------------------------------------------------------------------
    def jax_block(self, xr, yr):
        d = xr.shape[-1]
        w2, b2 = self.w_std**2, self.b_std**2
        a = w2 * (xr * xr).sum(-1)[:, None] / d + b2
        b = w2 * (yr * yr).sum(-1)[None, :] / d + b2
        c = w2 * (xr @ yr.T) / d + b2
        tau = _snap_tau(xr.dtype)
        return _gen_recursion(_JnpOps(), self.activation, self.depth, self.kind, w2, b2, a, b, c, tau)

    # -- KeOps -----------------------------------------------------------------------------
    def keops_apply(self, Xi, Yj, Vj, nrhs):
        from pykeops.numpy import LazyTensor

        # the diagonal chains are per-point quantities: computed here once, passed as variables
        x = np.asarray(Xi.variables[0]).reshape(-1, Xi.ndim)
        y = np.asarray(Yj.variables[0]).reshape(-1, Yj.ndim)
        Ax = LazyTensor(self._diag_chain(x)[:, None, :])
        By = LazyTensor(self._diag_chain(y)[None, :, :])
        P = keops_params(Xi, [self.w_std**2, self.b_std**2, 1.0 / Xi.ndim, 1.0 + _snap_tau(x.dtype)])
        w2, b2, inv_d = P.elem(0), P.elem(1), P.elem(2)
        c = w2 * (Xi | Yj) * inv_d + b2
        dx = [Ax.elem(l) for l in range(self.depth + 1)]
        dy = [By.elem(l) for l in range(self.depth + 1)]
        tau = P.elem(3) - 1.0
        K = _gen_recursion(
            _KeOpsOps(Xi), self.activation, self.depth, self.kind, w2, b2, dx[0], dy[0], c, tau, dx, dy
        )
        return K * Vj
