"""The Gaussian (squared-exponential) kernel k(x, y) = exp(−|x − y|² / (2ℓ²))."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ntkflow._checks import positive_float

from .base import Kernel, sqdist_keops


@dataclass(frozen=True)
class Gaussian(Kernel):
    """k(x, y) = variance · exp(−|x − y|² / (2 ℓ²)) on real inputs x ∈ R^d.

    Args:
        lengthscale: ℓ > 0.
        variance: amplitude s > 0 (default 1).
    """

    lengthscale: float = 1.0
    variance: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "lengthscale", positive_float("lengthscale", self.lengthscale))
        object.__setattr__(self, "variance", positive_float("variance", self.variance))

    def dense(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        d2 = np.zeros((x.shape[0], y.shape[0]))
        for a in range(x.shape[1]):  # one coordinate at a time: memory O(n·m), exact differences
            d2 += (x[:, a, None] - y[None, :, a]) ** 2
        return self.variance * np.exp(-d2 / (2.0 * self.lengthscale**2))

    def jax_block(self, xr, yr):
        import jax.numpy as jnp

        d2 = (
            jnp.sum(xr * xr, -1)[:, None]
            + jnp.sum(yr * yr, -1)[None, :]
            - 2.0 * xr @ yr.T
        )
        d2 = jnp.maximum(d2, 0.0)
        return self.variance * jnp.exp(-d2 / (2.0 * self.lengthscale**2))

    def keops_apply(self, Xi, Yj, Vj, nrhs):
        g = 1.0 / (2.0 * self.lengthscale**2)
        K = (-g * sqdist_keops(Xi, Yj)).exp()
        if self.variance != 1.0:
            K = self.variance * K
        return K * Vj

    def diag(self, x):
        return np.full(len(x), self.variance)
