"""The second-order jet of a (optionally periodic) Gaussian kernel in its first argument.

:class:`GaussianJet` is the kernel of block (J, 1), J = 1 + d + d(d+1)/2, whose rows are

    [ k(x, y),  ∂_{x_a} k(x, y) (a = 0..d−1),  ∂_{x_a}∂_{x_b} k(x, y) (a ≤ b, row-major upper triangle) ]

for k(x, y) = v · Σ_{m ∈ Zᵈ} exp(−|x − y − P m|² / (2σ²)) (the wrapped Gaussian of period P on the
torus [0, P)ᵈ) or, with ``period=None``, the plain Gaussian k = v · exp(−|x − y|² / (2σ²)) on Rᵈ (on a
sphere Sⁿ ⊂ Rⁿ⁺¹ this is the Gaussian of the chordal distance). Applied to V (m, k) by any backend of
:func:`ntkflow.engine.kernel_operator`, it returns the value, gradient and Hessian of the field
Σ_j k(·, y_j) V_j at the points x in ONE pass over the pairs (the KeOps form computes exp once per pair),
never an n×m matrix.

With v = (2πσ²)^{−n/2} the kernel is normalised: on the torus Tⁿ = [0, 2π)ⁿ its Fourier coefficients are
(2π)^{−n} e^{−σ²|k|²/2} (Poisson summation), i.e. convolution with it is the heat semigroup
exp((σ²/2)Δ); that is the cos-net / gauss-net infinite-width kernel of width σ (flows.md).

Three forms of the same function (they differ on purpose, so that the tests compare independent code):

- ``dense``: a direct sum over the images m ∈ {−2, …, 2}ᵈ of the unreduced difference x − y (valid for
  points in [0, P)ᵈ: every omitted image is at distance ≥ 3P/2... ≥ P from the box), full d-dim Gaussians;
- ``jax_block`` / ``keops_apply``: the difference reduced to [−P/2, P/2), the 1-D wrapped Gaussian and its
  two derivatives per coordinate over the images m ∈ {−1, 0, 1} (the first omitted image is at distance
  ≥ 3P/2: relative size exp(−9P²/(8σ²)) < 1e-16 for σ ≤ P/5.7), multiplied into the product form
  k = Π_a f0(δ_a), ∂_a k = f1(δ_a) Π_{b≠a} f0(δ_b), ∂_a∂_b k = f1 f1 Π or f2 Π.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ntkflow._checks import positive_float, positive_int

from ._keops_util import keops_params
from .base import Kernel


def jet_size(d: int) -> int:
    """J = 1 + d + d(d+1)/2: rows of the (value, gradient, Hessian upper triangle) block."""
    return 1 + d + d * (d + 1) // 2


def hessian_pairs(d: int) -> list[tuple[int, int]]:
    """The (a, b), a ≤ b, of the Hessian rows of a jet block, in order."""
    return [(a, b) for a in range(d) for b in range(a, d)]


def unpack_jets(R, d: int):
    """(n, J, ...) jet rows -> (value (n, ...), gradient (n, d, ...), Hessian (n, d, d, ...)), NumPy or JAX."""
    pairs = hessian_pairs(d)
    val = R[:, 0]
    grad = R[:, 1 : 1 + d]
    rows = [[None] * d for _ in range(d)]
    for i, (a, b) in enumerate(pairs):
        rows[a][b] = rows[b][a] = R[:, 1 + d + i]
    xp = np if isinstance(R, np.ndarray) else _jnp()
    hess = xp.stack([xp.stack(r, axis=1) for r in rows], axis=1)
    return val, grad, hess


def _jnp():
    import jax.numpy as jnp

    return jnp


@dataclass(frozen=True)
class GaussianJet(Kernel):
    """Block (J, 1): value, x-gradient and x-Hessian of a Gaussian kernel (module docstring).

    Args:
        sigma: width σ > 0 (k ∝ exp(−|x − y|²/(2σ²))).
        dim: d, the dimension of the points.
        variance: the amplitude v > 0 (use (2πσ²)^{−n/2} for the normalised kernel on an n-manifold).
        period: P > 0 for the wrapped Gaussian on [0, P)ᵈ (e.g. 2π on the torus), None for Rᵈ.
    """

    sigma: float
    dim: int
    variance: float = 1.0
    period: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "sigma", positive_float("sigma", self.sigma))
        object.__setattr__(self, "dim", positive_int("dim", self.dim))
        object.__setattr__(self, "variance", positive_float("variance", self.variance))
        if self.period is not None:
            P = positive_float("period", self.period)
            if self.sigma > P / 5.7:
                raise ValueError(
                    f"sigma: the wrapped Gaussian keeps the images m ∈ {{−1, 0, 1}}, exact to 1e-16 for "
                    f"sigma ≤ period/5.7 = {P / 5.7:.4g}; received sigma={self.sigma}. Use a smaller sigma "
                    f"(a wider kernel is nearly constant on the torus)."
                )
            object.__setattr__(self, "period", P)

    @property
    def block_shape(self):
        return (jet_size(self.dim), 1)

    def input_dim_ok(self, d):
        if d != self.dim:
            raise ValueError(
                f"points: GaussianJet(dim={self.dim}) needs points of dimension {self.dim}, received "
                f"dimension {d}; build it with dim={d}."
            )

    def transpose(self):
        raise NotImplementedError(
            "GaussianJet: the jet block (J, 1) has no kernel-form adjoint here; apply the scalar kernel "
            "(J = 1 row) to the transposed problem instead."
        )

    # -- NumPy reference: direct sum over images -------------------------------------------------
    def dense(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        d = x.shape[1]
        s = 1.0 / self.sigma**2
        delta = x[:, None, :] - y[None, :, :]  # (n, m, d)
        images = [np.zeros(d)]
        if self.period is not None:
            # |x_a − y_a| < P: image m matters only if (|m| − 1)P < 9σ (omitted ones: ≤ e^{−40.5} relative)
            M = int(1 + 9.0 * self.sigma // self.period)
            grid = np.array(np.meshgrid(*[np.arange(-M, M + 1)] * d, indexing="ij")).reshape(d, -1).T
            images = list(self.period * grid)
        val = np.zeros(delta.shape[:2])
        grad = np.zeros(delta.shape)
        hess = np.zeros(delta.shape + (d,))
        eye = np.eye(d)
        for shift in images:
            u = delta - shift  # (n, m, d)
            e = np.exp(-0.5 * s * (u * u).sum(-1))
            val += e
            grad += -s * u * e[..., None]
            hess += (s * s * u[..., :, None] * u[..., None, :] - s * eye) * e[..., None, None]
        rows = [val] + [grad[..., a] for a in range(d)] + [hess[..., a, b] for a, b in hessian_pairs(d)]
        return self.variance * np.stack(rows, axis=-1)[..., None]  # (n, m, J, 1)

    # -- JAX: reduced difference, product form --------------------------------------------------
    def jax_block(self, xr, yr):
        import jax.numpy as jnp

        d = xr.shape[-1]
        s = 1.0 / self.sigma**2
        delta = xr[:, None, :] - yr[None, :, :]  # (t, m, d)
        if self.period is None:
            e = jnp.exp(-0.5 * s * jnp.sum(delta * delta, -1))  # (t, m)
            rows = [e] + [-s * delta[..., a] * e for a in range(d)]
            rows += [(s * s * delta[..., a] * delta[..., b] - (s if a == b else 0.0)) * e for a, b in hessian_pairs(d)]
        else:
            P = self.period
            u0 = delta - P * jnp.round(delta / P)
            f0 = f1 = f2 = 0.0
            for m in (-1.0, 0.0, 1.0):
                u = u0 - m * P
                e = jnp.exp(-0.5 * s * u * u)
                f0 = f0 + e
                f1 = f1 - s * u * e
                f2 = f2 + (s * s * u * u - s) * e
            rows = _product_rows(d, [f0[..., a] for a in range(d)], [f1[..., a] for a in range(d)],
                                 [f2[..., a] for a in range(d)])
        return self.variance * jnp.stack(rows, axis=-1)[..., None]  # (t, m, J, 1)

    # -- KeOps ----------------------------------------------------------------------------------
    def keops_apply(self, Xi, Yj, Vj, nrhs):
        d = Xi.ndim
        s = 1.0 / self.sigma**2
        delta = Xi - Yj
        if self.period is None:
            prm = keops_params(Xi, [-0.5 * s, -s, s * s, self.variance])
            E = prm.elem(3) * (prm.elem(0) * (delta**2).sum()).exp()
            g = prm.elem(1) * delta  # (d,) gradient / E
            rows = [E] + [g.elem(a) * E for a in range(d)]
            rows += [
                ((prm.elem(2) * delta.elem(a) * delta.elem(b) + prm.elem(1)) if a == b
                 else prm.elem(2) * delta.elem(a) * delta.elem(b)) * E
                for a, b in hessian_pairs(d)
            ]
        else:
            P = self.period
            prm = keops_params(Xi, [-0.5 * s, -s, s * s, P, self.variance])
            u0 = delta.mod(P, -P / 2)  # reduced to [−P/2, P/2)
            f0 = f1 = f2 = None
            for m in (-1.0, 0.0, 1.0):
                u = u0 if m == 0.0 else (u0 - prm.elem(3)) if m > 0 else (u0 + prm.elem(3))
                e = (prm.elem(0) * u * u).exp()
                t0, t1, t2 = e, prm.elem(1) * u * e, (prm.elem(2) * u * u + prm.elem(1)) * e
                f0, f1, f2 = (t0, t1, t2) if f0 is None else (f0 + t0, f1 + t1, f2 + t2)
            rows = _product_rows(d, [f0.elem(a) for a in range(d)], [f1.elem(a) for a in range(d)],
                                 [f2.elem(a) for a in range(d)])
            rows = [prm.elem(4) * r for r in rows]
        K = rows[0]
        for r in rows[1:]:
            K = K.concat(r)  # (J,)
        # AutoFactorize: KeOps evaluates each shared sub-expression (the exponentials, the wrapped differences)
        # once per pair instead of once per use in the expression tree (17× faster for the wrapped T³ jet)
        return K.tensorprod(Vj).auto_factorize()  # (J·k): row a, column r at a*k + r

    def diag(self, x):
        x = np.asarray(x, dtype=np.float64)
        return self.dense(x[:1], x[:1])[0, 0][None].repeat(len(x), 0)


def _product_rows(d, f0, f1, f2):
    """Jet rows of k = Π_a f0_a from per-coordinate (f0, f1, f2) (lists of d arrays/LazyTensors)."""

    def prod(factors):
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        return out

    rows = [prod(f0)]
    rows += [prod([f1[a] if c == a else f0[c] for c in range(d)]) for a in range(d)]
    for a, b in hessian_pairs(d):
        if a == b:
            rows.append(prod([f2[a] if c == a else f0[c] for c in range(d)]))
        else:
            rows.append(prod([f1[c] if c in (a, b) else f0[c] for c in range(d)]))
    return rows


def normalised_variance(sigma: float, n: int) -> float:
    """(2πσ²)^{−n/2}: the amplitude that gives the Gaussian unit mass in Rⁿ (multiplier e^{−σ²|k|²/2})."""
    return float((2.0 * math.pi * sigma**2) ** (-n / 2.0))
