"""Input-derivative kernels and the no-mixing metric kernel.

For a real scalar kernel k(x, y) on R^d of the form α + (β + κ x·y) exp(−γ|x − y|²) (the
:class:`~ntkflow.engine.Gaussian` and every cos-net / gauss-net NNGP and NTK):

- :class:`DerivX`   K(x, y)[a, 0] = ∂k/∂x_a           block (d, 1)
- :class:`DerivY`   K(x, y)[0, b] = ∂k/∂y_b           block (1, d)   (the adjoint of DerivX)
- :class:`DerivXY`  K(x, y)[a, b] = ∂²k/∂x_a∂y_b      block (d, d)   (symmetric, PSD for PSD k)

With δ = x − y, s = x·y, E = exp(−γ|δ|²), b = β + κ s:

    ∂_{x_a} k = E (κ y_a − 2γ b δ_a),     ∂_{y_b} k = E (κ x_b + 2γ b δ_b),
    ∂_{x_a}∂_{y_b} k = E [(κ + 2γ b) δ_ab + 2γκ (y_a δ_b − δ_a x_b) − 4γ² b δ_a δ_b].

:class:`NoMixing` is Θ_{(ij),(kl)}(x, y) = δ_ik δ_jl Θ(x, y) with the p = ``n_components`` metric
components flattened: block (p, p) = Θ(x, y) I_p, applied component by component (the scalar kernel
on each component column), never materialising the blocks in the KeOps and JAX forms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ntkflow._checks import positive_int

from ._keops_util import keops_params
from .base import Kernel, sqdist_keops
from .gaussian import Gaussian
from .networks import DotGaussKernel


def dot_gauss_coeffs(kernel: Kernel, d: int) -> tuple[float, float, float, float]:
    """(α, β, κ, γ) with k = α + (β + κ x·y) exp(−γ|x − y|²), for kernels of that form."""
    if isinstance(kernel, Gaussian):
        return 0.0, kernel.variance, 0.0, 1.0 / (2.0 * kernel.lengthscale**2)
    if isinstance(kernel, DotGaussKernel):
        return kernel.dot_gauss_coeffs(d)
    raise TypeError(
        f"base: input-derivative kernels support Gaussian, CosNetNNGP, CosNetNTK, GaussNetNNGP and "
        f"GaussNetNTK, received {type(kernel).__name__}."
    )


class _DerivBase(Kernel):
    base: Kernel
    dim: int

    def _validate(self):
        dot_gauss_coeffs(self.base, 1)  # raises TypeError for unsupported bases
        object.__setattr__(self, "dim", positive_int("dim", self.dim))

    def input_dim_ok(self, d):
        if d != self.dim:
            raise ValueError(
                f"points: {type(self).__name__}(dim={self.dim}) needs points of dimension {self.dim}, "
                f"received dimension {d}; build it with dim={d}."
            )

    def _np_parts(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        _, beta, kappa, gamma = dot_gauss_coeffs(self.base, x.shape[1])
        delta = x[:, None, :] - y[None, :, :]  # (n, m, d)
        s = np.einsum("ia,ja->ij", x, y)
        E = np.exp(-gamma * (delta**2).sum(-1))
        b = beta + kappa * s
        return x, y, delta, E, b, kappa, gamma

    def _jax_parts(self, xr, yr):
        import jax.numpy as jnp

        _, beta, kappa, gamma = dot_gauss_coeffs(self.base, xr.shape[-1])
        delta = xr[:, None, :] - yr[None, :, :]
        s = xr @ yr.T
        E = jnp.exp(-gamma * jnp.sum(delta * delta, -1))
        return delta, E, beta + kappa * s, kappa, gamma

    def _keops_parts(self, Xi, Yj):
        _, beta, kappa, gamma = dot_gauss_coeffs(self.base, Xi.ndim)
        P = keops_params(Xi, [beta, kappa, -gamma, 2.0 * gamma])
        E = (P.elem(2) * sqdist_keops(Xi, Yj)).exp()
        b = P.elem(0) + P.elem(1) * (Xi | Yj)
        return E, b, P.elem(1), P.elem(3)  # E, b, κ, 2γ


class _DerivGrad(_DerivBase):
    """The shared body of :class:`DerivX` (``_on_x = True``) and :class:`DerivY` (the mirror image).

    Both are a gradient g = E (κ z − 2γ b δ) with (z, δ) = (y, x − y) for ∂_x k and (x, y − x) for
    ∂_y k; they differ only in which point plays z, the sign of δ and the block layout.
    """

    _on_x = True  # class constant (not a dataclass field): ∂_x (block (dim, 1)) or ∂_y (block (1, dim))

    def __post_init__(self):
        self._validate()

    @property
    def block_shape(self):
        return (self.dim, 1) if self._on_x else (1, self.dim)

    def _grad(self, x, y, delta, E, b, kappa, gamma):
        """(n, m, d) array of g for NumPy or JAX arrays; ``delta`` = x − y."""
        z, d = (y[None, :, :], delta) if self._on_x else (x[:, None, :], -delta)
        g = E[:, :, None] * (kappa * z - 2.0 * gamma * b[:, :, None] * d)
        return g[:, :, :, None] if self._on_x else g[:, :, None, :]

    def dense(self, x, y):
        x, y, delta, E, b, kappa, gamma = self._np_parts(x, y)
        return self._grad(x, y, delta, E, b, kappa, gamma)

    def jax_block(self, xr, yr):
        delta, E, b, kappa, gamma = self._jax_parts(xr, yr)
        return self._grad(xr, yr, delta, E, b, kappa, gamma)

    def keops_apply(self, Xi, Yj, Vj, nrhs):
        E, b, kappa, g2 = self._keops_parts(Xi, Yj)
        if self._on_x:
            g = E * (kappa * Yj - g2 * b * (Xi - Yj))
            return g.tensorprod(Vj)  # (d·k): g_a v_r at a*k + r
        g = E * (kappa * Xi + g2 * b * (Xi - Yj))
        return g.vecmatmult(Vj)  # Σ_b g_b v[b*k + r]

    def transpose(self):
        return (DerivY if self._on_x else DerivX)(self.base.transpose(), self.dim)


@dataclass(frozen=True)
class DerivX(_DerivGrad):
    """∂_x k(x, y): block (dim, 1). Adjoint: :class:`DerivY`."""

    base: Kernel
    dim: int

    _on_x = True


@dataclass(frozen=True)
class DerivY(_DerivGrad):
    """∂_y k(x, y): block (1, dim). Adjoint: :class:`DerivX`."""

    base: Kernel
    dim: int

    _on_x = False


@dataclass(frozen=True)
class DerivXY(_DerivBase):
    """∂_x ∂_y k(x, y): block (dim, dim); self-adjoint and PSD for a PSD base."""

    base: Kernel
    dim: int

    def __post_init__(self):
        self._validate()

    @property
    def block_shape(self):
        return (self.dim, self.dim)

    def dense(self, x, y):
        x, y, delta, E, b, kappa, gamma = self._np_parts(x, y)
        eye = np.eye(x.shape[1])
        H = (
            (kappa + 2.0 * gamma * b)[:, :, None, None] * eye
            + 2.0 * gamma * kappa * (y[None, :, :, None] * delta[:, :, None, :] - delta[:, :, :, None] * x[:, None, None, :])
            - 4.0 * gamma**2 * b[:, :, None, None] * delta[:, :, :, None] * delta[:, :, None, :]
        )
        return E[:, :, None, None] * H

    def jax_block(self, xr, yr):
        import jax.numpy as jnp

        delta, E, b, kappa, gamma = self._jax_parts(xr, yr)
        eye = jnp.eye(xr.shape[-1])
        H = (
            (kappa + 2.0 * gamma * b)[:, :, None, None] * eye
            + 2.0 * gamma * kappa * (yr[None, :, :, None] * delta[:, :, None, :] - delta[:, :, :, None] * xr[:, None, None, :])
            - 4.0 * gamma**2 * b[:, :, None, None] * delta[:, :, :, None] * delta[:, :, None, :]
        )
        return E[:, :, None, None] * H

    def keops_apply(self, Xi, Yj, Vj, nrhs):
        E, b, kappa, g2 = self._keops_parts(Xi, Yj)
        delta = Xi - Yj
        dV = delta.vecmatmult(Vj)  # (δ·V)_r
        xV = Xi.vecmatmult(Vj)  # (x·V)_r
        # E[(κ + 2γb) V + 2γ (κ y − 2γ b δ) ⊗ (δ·V) − 2γκ δ ⊗ (x·V)]
        out = (kappa + g2 * b) * Vj + g2 * (kappa * Yj - g2 * b * delta).tensorprod(dV) - (g2 * kappa) * delta.tensorprod(xV)
        return E * out

    def diag(self, x):
        x = np.asarray(x, dtype=np.float64)
        _, beta, kappa, gamma = dot_gauss_coeffs(self.base, x.shape[1])
        b = beta + kappa * (x * x).sum(-1)
        return (kappa + 2.0 * gamma * b)[:, None, None] * np.eye(x.shape[1])


@dataclass(frozen=True)
class NoMixing(Kernel):
    """Θ_{(ij),(kl)}(x, y) = δ_ik δ_jl Θ(x, y): block (p, p) = Θ(x, y) I_p with p = ``n_components``.

    Operator layout (point-major, as every kernel operator): row i·p + a, column j·p + b. Applying it
    is applying the scalar ``base`` to each of the p component columns; the KeOps form and the JAX
    form (:meth:`jax_apply`) do exactly that and never form the blocks.

    Args:
        base: a scalar kernel (real or complex inputs).
        n_components: p, e.g. d(d+1)/2 or d² metric components.
    """

    base: Kernel
    n_components: int

    def __post_init__(self):
        if not isinstance(self.base, Kernel) or not self.base.is_scalar:
            raise TypeError(f"base: expected a scalar ntkflow Kernel, received {self.base!r}.")
        object.__setattr__(self, "n_components", positive_int("n_components", self.n_components))

    @property
    def input_kind(self):
        return self.base.input_kind

    @property
    def output_kind(self):
        return self.base.output_kind

    @property
    def block_shape(self):
        return (self.n_components, self.n_components)

    def input_dim_ok(self, d):
        return self.base.input_dim_ok(d)

    def dense(self, x, y):
        K = np.asarray(self.base.dense(x, y))
        return K[:, :, None, None] * np.eye(self.n_components)

    def jax_block(self, xr, yr):
        import jax.numpy as jnp

        return self.base.jax_block(xr, yr)[:, :, None, None] * jnp.eye(self.n_components)

    def jax_apply(self, xr, yr, V):
        """Σ_j Θ(x_i, y_j) V[j] for V (m, p, k): the scalar kernel on each component; (tile, p, k)."""
        import jax.numpy as jnp

        K = self.base.jax_block(xr, yr)  # (tile, m)
        return jnp.einsum("im,mar->iar", K, V)

    def keops_apply(self, Xi, Yj, Vj, nrhs):
        # V[j, b*k + r]: the scalar formula applied to all p·k columns at once
        return self.base.keops_apply(Xi, Yj, Vj, self.n_components * nrhs)

    def transpose(self):
        bt = self.base.transpose()
        return self if bt is self.base else NoMixing(bt, self.n_components)

    def diag(self, x):
        return np.asarray(self.base.diag(x))[:, None, None] * np.eye(self.n_components)
