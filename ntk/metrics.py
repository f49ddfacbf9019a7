"""Metrics built from networks, and the flat real output that every NTK routine works on.

Four constructions (issue 4), each a frozen dataclass with ``init(key)``, ``metric(params, x)`` and
``flat(params, x)`` (the metric's entries as one real vector; the metric-NTK is the NTK of ``flat``):

(a) :class:`IndependentMetric`: one scalar network per component, g_ij = g_ji = f_{(ij)}(x), i ≤ j;
(b) :class:`SharedMetric`: one network with dim(dim+1)/2 outputs, g_ij = g_ji = f_{(ij)}(x);
(c) :class:`KahlerPotentialMetric`: g_ij̄ = ∂_i∂̄_j K(z, z̄) with K a scalar network on realified z
    (or on the C*-invariant features); Wirtinger derivatives from the real Hessian H of
    K(x, y), z = x + iy:  ∂_i∂̄_j K = ¼[H_xx + H_yy + i(H_xy − H_yx)]_ij;
(d) :class:`FubiniStudyPhiMetric`: g = P (g_FS + ∂∂̄φ) P^H with g_FS = (t/π)∂∂̄ log|z|², φ a scalar
    network on the C*-invariant features, P the pullback Jacobian (dim, N) of a hypersurface chart.

Points. Real models take x (d,); complex ones z (N,) complex; (d) with ``pullback=True`` takes the
pair (z, P) with P (dim, N) complex. Batches carry a leading axis n on every array.

Flat layout. Real metrics: ``flat = g.reshape(dim²)``. Hermitian metrics: ``flat = [Re g, Im g]
.reshape(2·dim²)``. Index helpers in :mod:`ntkflow.ntk.empirical` turn an NTK in the flat layout
into Θ_ijkl (real) or Θ_ij̄kl̄ (complex, the talk's unconjugated Σ_I ∂g_ij̄/∂θ_I ∂g_kl̄/∂θ_I).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ntkflow._checks import positive_float, positive_int

from .networks import CosNet, GaussNet, MLP, split_params


def invariant_features(z) -> jax.Array:
    """C*-invariant features of a point of P^{N−1}: x = √(2N²) · realify(z z̄ᵀ / |z|²).

    z (N,) complex -> (2N²,) real. Scaled so that x·x'/d = u = |⟨z,w⟩|²/(|z|²|w|²) and |x|²/d = 1
    with d = 2N² (the Frobenius product of the Hermitian projectors z z̄ᵀ/|z|² is u).
    """
    z = jnp.asarray(z)
    N = z.shape[-1]
    F = jnp.outer(z, jnp.conj(z)) / jnp.real(jnp.vdot(z, z))  # (N, N) Hermitian projector
    return np.sqrt(2.0 * N * N) * jnp.concatenate([F.real.reshape(-1), F.imag.reshape(-1)])


def realify_point(z) -> jax.Array:
    """(N,) complex -> (2N,) real [Re z, Im z]."""
    return jnp.concatenate([jnp.real(z), jnp.imag(z)])


def complexify_point(xr) -> jax.Array:
    h = xr.shape[-1] // 2
    return xr[..., :h] + 1j * xr[..., h:]


def wirtinger_ddbar(H) -> jax.Array:
    """∂_i∂̄_j from the real Hessian H (2n, 2n) in (x, y), z = x + iy: ¼[H_xx + H_yy + i(H_xy − H_yx)]."""
    n = H.shape[-1] // 2
    Hxx, Hxy = H[..., :n, :n], H[..., :n, n:]
    Hyx, Hyy = H[..., n:, :n], H[..., n:, n:]
    return 0.25 * ((Hxx + Hyy) + 1j * (Hxy - Hyx))


def ddbar(fn_real, z) -> jax.Array:
    """∂∂̄ of a real function of z by autodiff: fn_real((2N,) real) -> scalar; returns (N, N) complex."""
    H = jax.hessian(fn_real)(realify_point(z))
    return wirtinger_ddbar(H)


def fubini_study(z, t: float = 1.0) -> jax.Array:
    """g_FS,IJ̄ = (t/π)(δ_IJ/|z|² − z̄_I z_J/|z|⁴) = (t/π) ∂_I∂̄_J log|z|²; (N, N) complex."""
    s = jnp.real(jnp.vdot(z, z))
    return (t / np.pi) * (jnp.eye(z.shape[-1]) / s - jnp.outer(jnp.conj(z), z) / s**2)


def _sym_from_components(c, dim: int) -> jax.Array:
    iu = np.triu_indices(dim)
    g = jnp.zeros((dim, dim), dtype=c.dtype).at[iu].set(c)
    return g + jnp.triu(g, 1).T


def _flat_real(g) -> jax.Array:
    return g.reshape(-1)


def _flat_complex(g) -> jax.Array:
    return jnp.concatenate([jnp.real(g).reshape(-1), jnp.imag(g).reshape(-1)])


class _MetricBase:
    """Shared helpers; concrete classes are frozen dataclasses below."""

    output_kind = "real"

    @property
    def trainable(self) -> tuple[str, ...]:
        return self.net.trainable

    @property
    def width(self) -> int:
        return self.net.width

    @property
    def flat_size(self) -> int:
        return self.dim**2 * (2 if self.output_kind == "complex" else 1)

    def flat(self, params, x) -> jax.Array:
        g = self.metric(params, x)
        return _flat_complex(g) if self.output_kind == "complex" else _flat_real(g)

    def split(self, params):
        return split_params(self.trainable, params)


@dataclass(frozen=True)
class ScalarModel(_MetricBase):
    """A bare network as a model: flat = f(x) (n_out,) (for scalar NTKs and Kähler potentials)."""

    net: MLP | CosNet | GaussNet

    @property
    def dim(self):
        return 1

    @property
    def flat_size(self):
        return self.net.n_out

    def init(self, key):
        return self.net.init(key)

    def metric(self, params, x):
        return self.net.apply(params, x)

    def flat(self, params, x):
        return self.net.apply(params, x)


@dataclass(frozen=True)
class IndependentMetric(_MetricBase):
    """(a) dim(dim+1)/2 independent scalar networks, g_ij = g_ji = f_{(ij)}(x; θ_(ij)).

    Params are the network's params stacked along a leading axis of length dim(dim+1)/2.
    Θ_ijkl = Σ_c ∂g_ij/∂θ_c ∂g_kl/∂θ_c is zero unless {i,j} = {k,l}: no mixing, at any width.
    """

    net: MLP | CosNet | GaussNet
    dim: int = 2

    def __post_init__(self):
        positive_int("dim", self.dim)
        if self.net.n_out != 1:
            raise ValueError(
                f"net: IndependentMetric needs scalar networks (n_out=1), received n_out={self.net.n_out}; "
                f"use SharedMetric for one network with all components as outputs."
            )

    @property
    def n_components(self):
        return self.dim * (self.dim + 1) // 2

    def init(self, key):
        return jax.vmap(self.net.init)(jax.random.split(key, self.n_components))

    def metric(self, params, x):
        c = jax.vmap(lambda p: self.net.apply(p, x)[0])(params)  # (p,)
        return _sym_from_components(c, self.dim)


@dataclass(frozen=True)
class SharedMetric(_MetricBase):
    """(b) one network with dim(dim+1)/2 outputs, g_ij = g_ji = f_{(ij)}(x; θ)."""

    net: MLP | CosNet | GaussNet
    dim: int = 2

    def __post_init__(self):
        positive_int("dim", self.dim)
        p = self.dim * (self.dim + 1) // 2
        if self.net.n_out != p:
            raise ValueError(
                f"net: SharedMetric(dim={self.dim}) needs n_out = dim(dim+1)/2 = {p}, received "
                f"n_out={self.net.n_out}; build the network with n_out={p}."
            )

    def init(self, key):
        return self.net.init(key)

    def metric(self, params, x):
        return _sym_from_components(self.net.apply(params, x), self.dim)


def _potential_input(features: str, n: int, net):
    if features == "realified":
        d = 2 * n
        fx = lambda xr: xr  # noqa: E731
    elif features == "invariant":
        d = 2 * n * n
        fx = lambda xr: invariant_features(complexify_point(xr))  # noqa: E731
    else:
        raise ValueError(f"features: expected 'realified' or 'invariant', received {features!r}.")
    if net.d_in != d:
        raise ValueError(
            f"net: features={features!r} on C^{n} give d_in = {d}, received a network with d_in={net.d_in}; "
            f"build it with d_in={d}."
        )
    if net.n_out != 1:
        raise ValueError(f"net: a potential is scalar (n_out=1), received n_out={net.n_out}.")
    return fx


@dataclass(frozen=True)
class KahlerPotentialMetric(_MetricBase):
    """(c) g_ij̄(z) = ∂_i∂̄_j K(z, z̄; θ), K a scalar network of realify(z) (or invariant features).

    Points z (n,) complex. The metric-NTK is Θ_ij̄kl̄(z,z') = ∂_i∂̄_j ∂'_k∂̄'_l Θ_K(z,z') with Θ_K
    the scalar NTK of K (exactly, at any width).
    """

    net: MLP | CosNet | GaussNet
    n: int = 2
    features: str = "realified"

    output_kind = "complex"

    def __post_init__(self):
        positive_int("n", self.n)
        _potential_input(self.features, self.n, self.net)

    @property
    def dim(self):
        return self.n

    def init(self, key):
        return self.net.init(key)

    def potential(self, params, z):
        fx = _potential_input(self.features, self.n, self.net)
        return self.net.apply(params, fx(realify_point(z)))[0]

    def metric(self, params, z):
        fx = _potential_input(self.features, self.n, self.net)
        return ddbar(lambda xr: self.net.apply(params, fx(xr))[0], z)  # (n, n) complex


@dataclass(frozen=True)
class FubiniStudyPhiMetric(_MetricBase):
    """(d) g = P (g_FS + ∂∂̄φ) P^H, φ a scalar network on the C*-invariant features of z ∈ C^N.

    g_FS = (t/π)∂∂̄ log|z|² (cy-geometry.md). With ``pullback=True`` a point is the pair (z, P),
    P (dim, N) complex the Jacobian of the hypersurface chart (e.g. ``ntkflow.manifolds.sample(...)
    .jacobian``); with ``pullback=False`` it is z alone and g is the ambient (N, N) form.
    """

    net: MLP | CosNet | GaussNet
    n_ambient: int = 3
    dim_manifold: int | None = None
    t: float = 1.0
    pullback: bool = True

    output_kind = "complex"

    def __post_init__(self):
        positive_int("n_ambient", self.n_ambient)
        object.__setattr__(self, "t", positive_float("t", self.t))
        _potential_input("invariant", self.n_ambient, self.net)
        if self.dim_manifold is None:
            object.__setattr__(self, "dim_manifold", self.n_ambient - 2 if self.pullback else self.n_ambient)
        positive_int("dim_manifold", self.dim_manifold)

    @property
    def dim(self):
        return self.dim_manifold if self.pullback else self.n_ambient

    def init(self, key):
        return self.net.init(key)

    def phi(self, params, z):
        return self.net.apply(params, invariant_features(z))[0]

    def metric(self, params, x):
        if self.pullback:
            if not isinstance(x, (tuple, list)) or len(x) != 2:
                raise TypeError(
                    "x: FubiniStudyPhiMetric(pullback=True) takes points (z, P) with z (N,) complex and "
                    "P (dim, N) complex; pass a tuple or build the model with pullback=False."
                )
            z, P = x
        else:
            z, P = x, None
        fx = lambda xr: self.net.apply(params, invariant_features(complexify_point(xr)))[0]  # noqa: E731
        g = fubini_study(z, self.t) + ddbar(fx, z)  # (N, N)
        if P is None:
            return g
        return P @ g @ jnp.conj(P).T  # (dim, dim)


MetricModel = ScalarModel | IndependentMetric | SharedMetric | KahlerPotentialMetric | FubiniStudyPhiMetric
