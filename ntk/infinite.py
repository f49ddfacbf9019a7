"""Infinite-width metric-NTK Θ̄ for every model of :mod:`ntkflow.ntk.metrics`.

The scalar kernels come from the operator engine (``ntkflow.engine``: ``MLPNTK`` for erf/relu/gelu
MLPs, ``CosNetNTK``/``CosNetNNGP`` and ``GaussNetNTK``/``GaussNetNNGP`` for the talk's networks), so
every backend (dense, KeOps, JAX, dask) can apply them; this module maps a network config onto the
right engine kernel and builds the metric-valued Θ̄ from it:

- (a) independent networks and (b) one shared network with linear readout: at infinite width
  Θ̄_(ij)(kl)(x,x') = [{i,j} = {k,l}] Θ̄(x,x') — output rows are independent Gaussian readouts, so
  even the shared network has no mixing *in the limit*; at finite N the shared network's mixing blocks
  are O(N^{−1/2}) fluctuations (the study measures them), the independent ones are exactly zero;
- (c) Kähler potential: Θ̄_ij̄kl̄(z,z') = ∂_i∂̄_j ∂'_k∂̄'_l Θ̄_K(z,z') (the derivatives of the scalar NTK,
  by JAX autodiff of the engine kernel's ``jax_block``) — this *mixes* components;
- (d) φ on Fubini–Study, pulled back: P ⊗ P̄ ⊗ P' ⊗ P̄' contracted with the same four derivatives of
  Θ̄_φ (g_FS does not depend on θ).

Shapes follow the flat layout of :mod:`ntkflow.ntk.empirical`: (n, m, p, p).
Note: relu kernels are not differentiable at coincident points (arccos at ρ = 1), so (c)/(d) need a
smooth activation (erf, gelu) or cos-/gauss-net.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntkflow.engine import MLPNTK, CosNetNNGP, CosNetNTK, GaussNetNNGP, GaussNetNTK, NoMixing

from .empirical import as_points, ntk_tensor
from .invariant import invariant_kappa
from .metrics import (
    FubiniStudyPhiMetric,
    IndependentMetric,
    KahlerPotentialMetric,
    ScalarModel,
    SharedMetric,
    complexify_point,
    realify_point,
    wirtinger_ddbar,
)
from .networks import MLP, CosNet, GaussNet


def network_kernel(net, kind: str = "ntk"):
    """The engine kernel of the infinite-width NTK (or NNGP) of a scalar network config.

    MLP → ``MLPNTK(depth, activation, w_std=σ_w, b_std=σ_b, kind)``; CosNet → ``CosNetNTK(σ_a, σ_b,
    train=trainable)``/``CosNetNNGP``; GaussNet → ``GaussNetNTK(σ_w0, σ_b0, σ_w1, σ_b1, train)``.
    The kernel of each output row of a multi-output network (rows are independent in the limit).
    """
    if kind not in ("ntk", "nngp"):
        raise ValueError(f"kind: expected 'ntk' or 'nngp', received {kind!r}.")
    if isinstance(net, MLP):
        return MLPNTK(
            depth=len(net.widths), activation=net.activation, w_std=net.sigma_w, b_std=net.sigma_b, kind=kind
        )
    if isinstance(net, CosNet):
        if kind == "nngp":
            return CosNetNNGP(sigma_a=net.sigma_a, sigma_b=net.sigma_b)
        return CosNetNTK(sigma_a=net.sigma_a, sigma_b=net.sigma_b, train=net.trainable)
    if isinstance(net, GaussNet):
        kw = dict(sigma_w0=net.sigma_w0, sigma_b0=net.sigma_b0, sigma_w1=net.sigma_w1, sigma_b1=net.sigma_b1)
        if kind == "nngp":
            return GaussNetNNGP(**kw)
        return GaussNetNTK(**kw, train=net.trainable)
    raise TypeError(f"net: expected MLP, CosNet or GaussNet, received {type(net).__name__}.")


def infinite_metric_kernel(model, kind: str = "ntk"):
    """Θ̄ of (a)/(b)/scalar models as an engine kernel, for the lazy backends (dense, KeOps, JAX, dask).

    In the *component* layout (the dim(dim+1)/2 independent g_ij, i ≤ j, or the n_out outputs of a
    ScalarModel) the infinite-width Θ̄ is δ_(ij)(kl) Θ̄(x, x'): ``ntkflow.engine.NoMixing(base, p)``.
    (The dim² flat layout of :func:`infinite_metric_ntk` repeats the off-diagonal g_ij = g_ji.)
    Kähler models have no engine kernel for the four-derivative Θ̄_ij̄kl̄; use :func:`infinite_metric_ntk`
    (dense, by autodiff) or, for the potential-to-metric kernel Θ_ab̄ = ∂_a∂̄_b Θ on projective space,
    ``ntkflow.engine.DzDwBar(invariant_feature_kernel(net), N)``.
    """
    base = network_kernel(model.net, kind)
    if isinstance(model, ScalarModel):
        return base if model.net.n_out == 1 else NoMixing(base, model.net.n_out)
    if isinstance(model, (IndependentMetric, SharedMetric)):
        return NoMixing(base, model.dim * (model.dim + 1) // 2)
    raise TypeError(
        f"model: no engine kernel for the infinite-width NTK of {type(model).__name__}; use "
        f"infinite_metric_ntk(model, x) (dense) for Kähler models."
    )


def component_structure(dim: int) -> np.ndarray:
    """S (dim², dim²): S[(i,j),(k,l)] = 1 if {i,j} = {k,l} else 0 — the Θ̄ pattern of (a) and (b)."""
    S = np.zeros((dim, dim, dim, dim))
    for i in range(dim):
        for j in range(dim):
            S[i, j, i, j] = 1.0
            S[i, j, j, i] = 1.0
    return S.reshape(dim * dim, dim * dim)


def _scalar_k(kernel, feat):
    """k(xr, yr) for single realified points through a feature map; a JAX scalar function."""

    def k(xr, yr):
        return kernel.jax_block(feat(xr)[None], feat(yr)[None])[0, 0]

    return k


def invariant_scalar_kernel(net, kind: str = "ntk"):
    """k(zr, wr) = κ(u) for realified z, w ∈ C^N, u = |⟨z,w⟩|²/(|z|²|w|²): the infinite-width kernel of
    ``net`` on the invariant features, as a JAX function (κ from :func:`ntkflow.ntk.invariant.invariant_kappa`)."""
    def k(xr, yr):
        z, w = complexify_point(xr), complexify_point(yr)
        u = jnp.abs(jnp.vdot(z, w)) ** 2 / (jnp.real(jnp.vdot(z, z)) * jnp.real(jnp.vdot(w, w)))
        return invariant_kappa(net, u, kind=kind, xp=jnp)

    return k


def _d4(k, xr, yr):
    """∂⁴k/∂x_a∂x_b∂y_c∂y_d for single points: (D, D, D, D)."""
    Hy = jax.hessian(k, argnums=1)
    return jax.jacfwd(jax.jacfwd(Hy, argnums=0), argnums=0)(xr, yr).transpose(2, 3, 0, 1)


def _wirtinger_matrix(N: int) -> np.ndarray:
    """W (N, N, 2N, 2N) complex: ∂_i∂̄_j f = Σ_ab W[i,j,a,b] ∂_a∂_b f in real coordinates (x, y)."""
    W = np.zeros((N, N, 2 * N, 2 * N), dtype=complex)
    for i in range(N):
        for j in range(N):
            W[i, j, i, j] += 0.25
            W[i, j, N + i, N + j] += 0.25
            W[i, j, i, N + j] += 0.25j
            W[i, j, N + i, j] -= 0.25j
    return W


def _flat_from_maps(Mx, My, D4) -> jax.Array:
    """Θ_flat (2·dim², 2·dim²) from complex maps Mx, My (dim, dim, D, D) and D4 (D, D, D, D)."""
    Ax = jnp.concatenate([jnp.real(Mx).reshape(-1, *Mx.shape[2:]), jnp.imag(Mx).reshape(-1, *Mx.shape[2:])])
    Ay = jnp.concatenate([jnp.real(My).reshape(-1, *My.shape[2:]), jnp.imag(My).reshape(-1, *My.shape[2:])])
    return jnp.einsum("pab,abcd,qcd->pq", Ax, D4, Ay)


def infinite_metric_ntk(model, x, y=None, *, kind: str = "ntk") -> np.ndarray:
    """Θ̄ of ``model`` at infinite width in the flat layout: (n, m, p, p) (module docstring).

    x, y: batches of points as for :func:`ntkflow.ntk.empirical.empirical_ntk` (y defaults to x).
    """
    x = as_points("x", x)
    y = x if y is None else as_points("y", y)
    kern = network_kernel(model.net, kind)
    if isinstance(model, ScalarModel):
        K = np.asarray(kern.dense(np.asarray(x), np.asarray(y)))
        return K[:, :, None, None] * np.eye(model.flat_size)[None, None]
    if isinstance(model, (IndependentMetric, SharedMetric)):
        K = np.asarray(kern.dense(np.asarray(x), np.asarray(y)))
        return K[:, :, None, None] * component_structure(model.dim)[None, None]
    if isinstance(model, KahlerPotentialMetric):
        n = model.n
        if model.features == "realified":
            k = _scalar_k(kern, lambda xr: xr)
        else:
            k = invariant_scalar_kernel(model.net, kind)
        W = jnp.asarray(_wirtinger_matrix(n))

        def pair(zi, wj):
            return _flat_from_maps(W, W, _d4(k, realify_point(zi), realify_point(wj)))

        out = jax.jit(lambda x, y: jax.vmap(lambda zi: jax.vmap(lambda wj: pair(zi, wj))(y))(x))(x, y)
        return np.asarray(out)
    if isinstance(model, FubiniStudyPhiMetric):
        N = model.n_ambient
        k = invariant_scalar_kernel(model.net, kind)
        W = jnp.asarray(_wirtinger_matrix(N))

        def amap(P):
            if P is None:
                return W
            return jnp.einsum("aI,bJ,IJcd->abcd", P, jnp.conj(P), W)

        def pair(pi, pj):
            zi, Pi = pi if model.pullback else (pi, None)
            zj, Pj = pj if model.pullback else (pj, None)
            return _flat_from_maps(amap(Pi), amap(Pj), _d4(k, realify_point(zi), realify_point(zj)))

        out = jax.jit(lambda x, y: jax.vmap(lambda pi: jax.vmap(lambda pj: pair(pi, pj))(y))(x))(x, y)
        return np.asarray(out)
    raise TypeError(f"model: expected a model of ntkflow.ntk.metrics, received {type(model).__name__}.")


def infinite_potential_metric_ntk(model, x, y=None, *, kind: str = "ntk") -> np.ndarray:
    """The talk's potential-to-metric kernel Θ̄_ij̄(z, z') = ∂'_i∂̄'_j Θ̄_K(z, z') (derivatives on the second
    argument; = Σ_θ ∂K(z)/∂θ ∂g_ij̄(z')/∂θ in the limit) for a :class:`KahlerPotentialMetric`.

    Returns (n, m, dim, dim) complex.
    """
    if not isinstance(model, KahlerPotentialMetric):
        raise TypeError(f"model: expected a KahlerPotentialMetric, received {type(model).__name__}.")
    x = as_points("x", x)
    y = x if y is None else as_points("y", y)
    if model.features == "realified":
        k = _scalar_k(network_kernel(model.net, kind), lambda xr: xr)
    else:
        k = invariant_scalar_kernel(model.net, kind)

    def pair(zi, wj):
        H = jax.hessian(k, argnums=1)(realify_point(zi), realify_point(wj))
        return wirtinger_ddbar(H)

    out = jax.jit(lambda x, y: jax.vmap(lambda zi: jax.vmap(lambda wj: pair(zi, wj))(y))(x))(x, y)
    return np.asarray(out)


def mixing_fraction(model, theta) -> float:
    """‖Θ off the {i,j}={k,l} pattern‖_F / ‖Θ‖_F for a flat-layout Θ (n, m, p, p) — 0 means no mixing.

    For Hermitian metrics the pattern is taken on the complex Θ_ij̄kl̄ with (k,l) = (i,j) or (j,i).
    """
    T = ntk_tensor(model, theta)  # (n, m, d, d, d, d)
    d = model.dim
    S = component_structure(d).reshape(d, d, d, d).astype(bool)
    off = np.linalg.norm(T[..., ~S])
    tot = np.linalg.norm(T)
    return float(off / tot) if tot > 0 else 0.0
