"""Infinite-width NNGP and NTK of the talk's cos-net and gauss-net (../shared/reference/flows.md).

Every kernel here has the form

    k(x, y) = α + (β + κ x·y) · exp(−γ |x − y|²),     x, y ∈ R^d,

so the JAX and KeOps forms (and the input-derivative kernels of :mod:`.derivatives`) are shared by
:class:`DotGaussKernel`; each class's ``dense`` is written out plainly from its own formula, as an
independent reference. Hyper-parameters enter the KeOps formula as parameters, so all of these
kernels (for every σ) share one compiled KeOps formula.

Parameterisation (NTK parameterisation: every trained parameter is a standard random variable θ̂
times a fixed scale, and the NTK is Σ_θ̂ ∂f/∂θ̂ (x) ∂f/∂θ̂ (x'); d = input dimension, N = width → ∞):

- cos-net  φ(x) = (σ_a/√N) Σ_i â_i cos((σ_b/√d) b̂_i·x + c_i),  â_i ~ N(0,1), b̂_i ~ N(0, I_d),
  c_i ~ U[−π, π]  (so a ~ N(0, σ_a²/N), b ~ N(0, σ_b² I/d) as in the talk).
- gauss-net f(x) = σ_b1 b̂₁ + (σ_w1/√N) Σ_i Ŵ₁ᵢ exp((σ_w0/√d) Ŵ₀ᵢ·x + σ_b0 b̂₀ᵢ) / exp(σ_b0² + σ_w0²|x|²/d),
  all hatted variables standard normal.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ntkflow._checks import nonneg_float, positive_float

from ._keops_util import keops_params
from .base import Kernel, sqdist_keops


def _sqdist_np(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def _dot_np(x, y):
    return (x[:, None, :] * y[None, :, :]).sum(-1)


def _check_train(name: str, train, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(train, str):
        train = (train,)
    try:
        t = tuple(train)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of parameter names from {allowed}, received {train!r}.") from None
    bad = [p for p in t if p not in allowed]
    if bad or not t:
        raise ValueError(
            f"{name}: expected a non-empty tuple of parameter names from {allowed}, received {train!r}; "
            f"e.g. {name}={allowed[:2]!r}."
        )
    return tuple(p for p in allowed if p in t)  # canonical order, no duplicates


class DotGaussKernel(Kernel):
    """Abstract: k(x, y) = α + (β + κ x·y) exp(−γ|x − y|²); subclasses give (α, β, κ, γ) for dimension d."""

    @abc.abstractmethod
    def dot_gauss_coeffs(self, d: int) -> tuple[float, float, float, float]:
        """(α, β, κ, γ) of the kernel on inputs of dimension d."""

    def jax_block(self, xr, yr):
        import jax.numpy as jnp

        a, b, c, g = self.dot_gauss_coeffs(xr.shape[-1])
        s = xr @ yr.T
        d2 = jnp.maximum(jnp.sum(xr * xr, -1)[:, None] + jnp.sum(yr * yr, -1)[None, :] - 2.0 * s, 0.0)
        return a + (b + c * s) * jnp.exp(-g * d2)

    def keops_apply(self, Xi, Yj, Vj, nrhs):
        a, b, c, g = self.dot_gauss_coeffs(Xi.ndim)
        P = keops_params(Xi, [a, b, c, -g])
        K = P.elem(0) + (P.elem(1) + P.elem(2) * (Xi | Yj)) * (P.elem(3) * sqdist_keops(Xi, Yj)).exp()
        return K * Vj

    def diag(self, x):
        x = np.asarray(x, dtype=np.float64)
        a, b, c, _ = self.dot_gauss_coeffs(x.shape[1])
        return a + b + c * (x * x).sum(-1)


# ---------------------------------------------------------------------------------------------
# cos-net
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CosNetNNGP(DotGaussKernel):
    """Two-point function of the cos-net: k(x, y) = (σ_a²/2) exp(−σ_b² |x − y|² / (2d)).

    Width of the Gaussian: ℓ² = d/σ_b² ("σ → 0" locality is σ_b → ∞).

    Args:
        sigma_a: readout scale σ_a > 0 (a ~ N(0, σ_a²/N)).
        sigma_b: frequency scale σ_b > 0 (b ~ N(0, σ_b² I/d)).
    """

    sigma_a: float = 1.0
    sigma_b: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "sigma_a", positive_float("sigma_a", self.sigma_a))
        object.__setattr__(self, "sigma_b", positive_float("sigma_b", self.sigma_b))

    def dot_gauss_coeffs(self, d):
        return 0.0, 0.5 * self.sigma_a**2, 0.0, self.sigma_b**2 / (2.0 * d)

    def dense(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        d = x.shape[1]
        return 0.5 * self.sigma_a**2 * np.exp(-(self.sigma_b**2) * _sqdist_np(x, y) / (2.0 * d))


@dataclass(frozen=True)
class CosNetNTK(DotGaussKernel):
    """Infinite-width NTK of the cos-net (NTK parameterisation, see the module docstring).

    With E = exp(−σ_b²|x − y|²/(2d)), the trained parameters contribute

    - ``"a"`` (readout):      (σ_a²/2) E
    - ``"c"`` (phases):       (σ_a²/2) E
    - ``"b"`` (frequencies):  (σ_a² σ_b² / (2d)) (x·y) E   (breaks translation invariance)

    The default ``train=("a", "c")`` gives the pure Gaussian σ_a² E. (flows.md quotes the readout
    term as ½E: that is σ_a = 1, i.e. the readout normalised to unit variance.)

    Args:
        sigma_a: readout scale σ_a > 0.
        sigma_b: frequency scale σ_b > 0.
        train: which of "a", "b", "c" are trained.
    """

    sigma_a: float = 1.0
    sigma_b: float = 1.0
    train: tuple = ("a", "c")

    def __post_init__(self):
        object.__setattr__(self, "sigma_a", positive_float("sigma_a", self.sigma_a))
        object.__setattr__(self, "sigma_b", positive_float("sigma_b", self.sigma_b))
        object.__setattr__(self, "train", _check_train("train", self.train, ("a", "b", "c")))

    def dot_gauss_coeffs(self, d):
        sa2, sb2 = self.sigma_a**2, self.sigma_b**2
        beta = 0.5 * sa2 * (("a" in self.train) + ("c" in self.train))
        kappa = sa2 * sb2 / (2.0 * d) if "b" in self.train else 0.0
        return 0.0, beta, kappa, sb2 / (2.0 * d)

    def dense(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        d = x.shape[1]
        sa2, sb2 = self.sigma_a**2, self.sigma_b**2
        E = np.exp(-sb2 * _sqdist_np(x, y) / (2.0 * d))
        K = np.zeros_like(E)
        if "a" in self.train:
            K += 0.5 * sa2 * E
        if "c" in self.train:
            K += 0.5 * sa2 * E
        if "b" in self.train:
            K += sa2 * sb2 / (2.0 * d) * _dot_np(x, y) * E
        return K


# ---------------------------------------------------------------------------------------------
# gauss-net
# ---------------------------------------------------------------------------------------------


def _check_gauss_net(obj):
    object.__setattr__(obj, "sigma_w0", positive_float("sigma_w0", obj.sigma_w0))
    object.__setattr__(obj, "sigma_b0", nonneg_float("sigma_b0", obj.sigma_b0))
    object.__setattr__(obj, "sigma_w1", positive_float("sigma_w1", obj.sigma_w1))
    object.__setattr__(obj, "sigma_b1", nonneg_float("sigma_b1", obj.sigma_b1))


@dataclass(frozen=True)
class GaussNetNNGP(DotGaussKernel):
    """Two-point function of the gauss-net: k(x, y) = σ_b1² + σ_w1² exp(−σ_w0² |x − y|² / (2d)).

    Args:
        sigma_w0: first-layer weight scale σ_w0 > 0 (W₀ ~ N(0, σ_w0² I/d)).
        sigma_b0: first-layer bias scale σ_b0 ≥ 0 (drops out of the NNGP).
        sigma_w1: readout scale σ_w1 > 0 (W₁ ~ N(0, σ_w1²/N)).
        sigma_b1: readout bias scale σ_b1 ≥ 0.
    """

    sigma_w0: float = 1.0
    sigma_b0: float = 1.0
    sigma_w1: float = 1.0
    sigma_b1: float = 0.0

    def __post_init__(self):
        _check_gauss_net(self)

    def dot_gauss_coeffs(self, d):
        return self.sigma_b1**2, self.sigma_w1**2, 0.0, self.sigma_w0**2 / (2.0 * d)

    def dense(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        d = x.shape[1]
        return self.sigma_b1**2 + self.sigma_w1**2 * np.exp(-(self.sigma_w0**2) * _sqdist_np(x, y) / (2.0 * d))


@dataclass(frozen=True)
class GaussNetNTK(DotGaussKernel):
    """Infinite-width NTK of the gauss-net (NTK parameterisation, see the module docstring).

    With E = exp(−σ_w0²|x − y|²/(2d)), the trained parameters contribute

    - ``"w1"`` (readout weights): σ_w1² E
    - ``"b1"`` (readout bias):    σ_b1²
    - ``"b0"`` (inner biases):    σ_w1² σ_b0² E
    - ``"w0"`` (inner weights):   σ_w1² σ_w0² / d · (x·y) E   (breaks translation invariance)

    The default ``train=("w1", "b1", "b0")`` gives a constant plus a pure Gaussian.

    Args: as :class:`GaussNetNNGP`, plus ``train`` (a tuple from "w0", "b0", "w1", "b1").
    """

    sigma_w0: float = 1.0
    sigma_b0: float = 1.0
    sigma_w1: float = 1.0
    sigma_b1: float = 0.0
    train: tuple = ("w1", "b1", "b0")

    def __post_init__(self):
        _check_gauss_net(self)
        object.__setattr__(self, "train", _check_train("train", self.train, ("w1", "b1", "b0", "w0")))

    def dot_gauss_coeffs(self, d):
        t = self.train
        alpha = self.sigma_b1**2 if "b1" in t else 0.0
        beta = self.sigma_w1**2 * (("w1" in t) + (self.sigma_b0**2 if "b0" in t else 0.0))
        kappa = self.sigma_w1**2 * self.sigma_w0**2 / d if "w0" in t else 0.0
        return alpha, beta, kappa, self.sigma_w0**2 / (2.0 * d)

    def dense(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        d = x.shape[1]
        E = np.exp(-(self.sigma_w0**2) * _sqdist_np(x, y) / (2.0 * d))
        K = np.zeros_like(E)
        if "w1" in self.train:
            K += self.sigma_w1**2 * E
        if "b1" in self.train:
            K += self.sigma_b1**2
        if "b0" in self.train:
            K += self.sigma_w1**2 * self.sigma_b0**2 * E
        if "w0" in self.train:
            K += self.sigma_w1**2 * self.sigma_w0**2 / d * _dot_np(x, y) * E
        return K
