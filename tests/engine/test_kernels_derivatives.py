"""Derivative kernels against JAX autodiff of the scalar kernel (independent of the closed forms)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkflow.engine import (
    CosNetNNGP,
    CosNetNTK,
    DerivX,
    DerivXY,
    DerivY,
    DzDwBar,
    Gaussian,
    GaussNetNTK,
    NoMixing,
    ProjectiveGaussian,
    ProjectiveMixture,
    ProjectivePower,
    kernel_operator,
    realify,
)

D = 3
N = 3
REAL_BASES = {
    "gaussian": Gaussian(0.9, 1.5),
    "cosnet_nngp": CosNetNNGP(1.3, 0.7),
    "cosnet_ntk_abc": CosNetNTK(1.3, 0.7, ("a", "b", "c")),
    "gaussnet_ntk_all": GaussNetNTK(0.8, 0.5, 1.2, 0.3, ("w0", "b0", "w1", "b1")),
}
PROJ_BASES = {
    "power3": ProjectivePower(3),
    "power1": ProjectivePower(1),
    "mixture": ProjectiveMixture((0.5, 0.2, 0.0, 0.3)),
    "gaussian": ProjectiveGaussian(0.3),
}


def _pair_fn(kernel):
    """k(x, y) for single points, from the kernel's own JAX form (autodiff goes through it)."""
    return lambda x, y: kernel.jax_block(x[None, :], y[None, :])[0, 0]


def _real_pts():
    rng = np.random.default_rng(21)
    return rng.normal(size=(5, D)) * 0.8, rng.normal(size=(4, D)) * 0.8


@pytest.mark.parametrize("name", list(REAL_BASES))
def test_real_derivative_kernels_match_autodiff(name):
    base = REAL_BASES[name]
    x, y = _real_pts()
    k = _pair_fn(base)
    gx = jax.vmap(jax.vmap(jax.grad(k, 0), (None, 0)), (0, None))(jnp.asarray(x), jnp.asarray(y))  # (n, m, d)
    gy = jax.vmap(jax.vmap(jax.grad(k, 1), (None, 0)), (0, None))(jnp.asarray(x), jnp.asarray(y))
    hxy = jax.vmap(jax.vmap(jax.jacfwd(jax.grad(k, 0), 1), (None, 0)), (0, None))(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(DerivX(base, D).dense(x, y)[..., 0], gx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(DerivY(base, D).dense(x, y)[:, :, 0, :], gy, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(DerivXY(base, D).dense(x, y), hxy, rtol=1e-12, atol=1e-13)


def _cplx_pts():
    rng = np.random.default_rng(22)
    z = rng.normal(size=(4, N)) + 1j * rng.normal(size=(4, N))
    w = rng.normal(size=(3, N)) + 1j * rng.normal(size=(3, N))
    return z, w


@pytest.mark.parametrize("name", list(PROJ_BASES))
def test_wirtinger_kernel_matches_autodiff(name):
    """∂_{z_a}∂̄_{w_b} k = ¼[k_{x₁y₁} + k_{x₂y₂} + i(k_{x₁y₂} − k_{x₂y₁})] with z = x₁ + i x₂, w = y₁ + i y₂."""
    base = PROJ_BASES[name]
    z, w = _cplx_pts()
    k = _pair_fn(base)
    H = jax.vmap(jax.vmap(jax.jacfwd(jax.grad(k, 0), 1), (None, 0)), (0, None))(
        jnp.asarray(realify(z)), jnp.asarray(realify(w))
    )
    H = np.asarray(H)
    H11, H12, H21, H22 = H[..., :N, :N], H[..., :N, N:], H[..., N:, :N], H[..., N:, N:]
    ref = 0.25 * (H11 + H22 + 1j * (H12 - H21))
    np.testing.assert_allclose(DzDwBar(base, N).dense(z, w), ref, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("name", ["power3", "gaussian"])
def test_wirtinger_kernel_hermitian_and_euler(name):
    K = DzDwBar(PROJ_BASES[name], N)
    z, w = _cplx_pts()
    A = K.dense(z, w)
    np.testing.assert_allclose(A, K.dense(w, z).conj().transpose(1, 0, 3, 2), rtol=1e-12, atol=1e-14)
    assert K.transpose() is K
    # degree-0 homogeneity (Euler fields): Σ_a z_a K_ab = 0 and Σ_b K_ab w̄_b = 0
    np.testing.assert_allclose(np.einsum("ia,ijab->ijb", z, A), 0, atol=1e-13)
    np.testing.assert_allclose(np.einsum("ijab,jb->ija", A, w.conj()), 0, atol=1e-13)


def test_derivx_adjoint_is_derivy():
    base = REAL_BASES["cosnet_ntk_abc"]
    x, y = _real_pts()
    assert isinstance(DerivX(base, D).transpose(), DerivY)
    np.testing.assert_allclose(
        DerivX(base, D).dense(x, y), DerivY(base, D).dense(y, x).transpose(1, 0, 3, 2), rtol=1e-13, atol=1e-15
    )


def test_nomixing_is_scalar_kernel_per_component():
    """δ_ik δ_jl Θ: applying it equals applying Θ to each component column (point-major layout)."""
    base = REAL_BASES["gaussnet_ntk_all"]
    x, _ = _real_pts()
    p = 3
    V = np.random.default_rng(4).normal(size=(len(x) * p, 1))
    Theta = kernel_operator(base, x, backend="dense").to_dense()
    expect = np.einsum("ij,jar->iar", Theta, V.reshape(len(x), p, 1)).reshape(-1, 1)
    for backend in ("dense", "jax", "keops"):
        out = kernel_operator(NoMixing(base, p), x, backend=backend).mm(V)
        np.testing.assert_allclose(out, expect, rtol=1e-12, atol=1e-13)
