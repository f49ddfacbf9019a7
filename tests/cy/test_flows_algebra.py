"""Closed-form pulled-back Hessians of (k,k) functions against JAX autodiff (Wirtinger derivatives)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow  # noqa: F401  (x64)
from ntkflow.cy import algebra, basis


def _wirtinger_hessian(f, z):
    """∂_I ∂̄_J f at z (N complex) by autodiff on real coordinates: (N, N) complex."""
    n = z.shape[0]

    def fr(v):
        return f(v[:n] + 1j * v[n:])

    v = jnp.concatenate([jnp.real(z), jnp.imag(z)])
    hr = jax.hessian(fr)(v)
    hxx, hxy, hyx, hyy = hr[:n, :n], hr[:n, n:], hr[n:, :n], hr[n:, n:]
    return 0.25 * (hxx + hyy + 1j * (hxy - hyx))


def _random_points(rng, n, nc, dim):
    z = rng.normal(size=(n, nc)) + 1j * rng.normal(size=(n, nc))
    z = z / z[np.arange(n), np.argmax(np.abs(z), axis=1)][:, None]
    jac = rng.normal(size=(n, dim, nc)) + 1j * rng.normal(size=(n, dim, nc))
    return z, jac


def test_pack_roundtrip_and_trace():
    rng = np.random.default_rng(0)
    for dim in (1, 2, 3):
        a = rng.normal(size=(4, dim, dim)) + 1j * rng.normal(size=(4, dim, dim))
        a = a + np.conj(np.swapaxes(a, -1, -2))
        b = rng.normal(size=(4, dim, dim)) + 1j * rng.normal(size=(4, dim, dim))
        b = b + np.conj(np.swapaxes(b, -1, -2))
        np.testing.assert_allclose(algebra.unpack(algebra.pack(a), dim), a, atol=1e-14)
        tr = np.einsum("nij,nji->n", a, b).real
        tw = algebra.trace_weights(dim)
        np.testing.assert_allclose(np.sum(algebra.pack(a) * algebra.pack(b) * tw, -1), tr, rtol=1e-12)


def test_fs_metric_is_hessian_of_log_norm():
    rng = np.random.default_rng(1)
    z, jac = _random_points(rng, 3, 5, 3)
    g = algebra.fs_pulled(z, jac)
    for i in range(3):
        amb = _wirtinger_hessian(lambda v: jnp.log(jnp.sum(jnp.abs(v) ** 2)) / jnp.pi, jnp.asarray(z[i]))
        np.testing.assert_allclose(algebra.fs_ambient(z[i:i + 1])[0], amb, atol=1e-12)
        ref = jac[i] @ np.asarray(amb) @ np.conj(jac[i]).T
        np.testing.assert_allclose(g[i], ref, atol=1e-12)


@pytest.mark.parametrize("k,sym", [(2, False), (3, False), (4, True), (6, True)])
def test_pair_hessians_match_autodiff(k, sym):
    """(1/π)∂∂̄ f_a pulled back, closed form vs autodiff of f_a = s†H s/|z|^{2k}, every function."""
    rng = np.random.default_rng(k)
    nc, dim = (5, 3) if sym else (3, 1)
    if sym:
        s = basis.detect_symmetry(5 * np.eye(5, dtype=int), np.ones(5))
        b = basis.invariant_basis(nc, k, s)
    else:
        b = basis.full_basis(nc, k)
    z, jac = _random_points(rng, 2, nc, dim)
    hess, vals = algebra.pair_hessians(b, z, jac, values=True)
    mons = jnp.asarray(b.exponents)
    for a in rng.choice(b.n_functions, size=min(6, b.n_functions), replace=False):
        H = np.zeros(b.n_functions)
        H[a] = 1.0
        Hm = jnp.asarray(b.hermitian(H))

        def f(v):
            sv = jnp.prod(v[None, :] ** mons, axis=1)
            val = jnp.real(jnp.conj(sv) @ (Hm.T @ sv))  # Σ H_ab s_a s̄_b
            return val / jnp.sum(jnp.abs(v) ** 2) ** k

        for i in range(2):
            np.testing.assert_allclose(vals[i, a], f(jnp.asarray(z[i])), rtol=1e-10, atol=1e-12)
            amb = np.asarray(_wirtinger_hessian(f, jnp.asarray(z[i]))) / np.pi
            ref = jac[i] @ amb @ np.conj(jac[i]).T
            got = algebra.unpack(hess[i, a], dim)
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-11 * np.abs(ref).max())


def test_invariant_basis_counts_and_hermitian():
    s = basis.detect_symmetry(5 * np.eye(5, dtype=int), np.ones(5))
    assert len(s.perms) == 120 and s.conjugation
    b = basis.invariant_basis(5, 4, s)
    # degree 4 < 5: only |z^I|² invariants survive, one per partition of 4 into <= 5 parts
    assert b.n_functions == 5
    assert np.all(b.alpha == b.beta)
    full = basis.full_basis(3, 2)
    assert full.n_functions == 6 ** 2
    H = full.hermitian(np.random.default_rng(0).normal(size=36))
    np.testing.assert_allclose(H, np.conj(H.T))


def test_invariant_functions_are_invariant():
    """Group-averaged functions are invariant under S5 ⋉ (Z5)^4 (phases and permutations)."""
    rng = np.random.default_rng(3)
    s = basis.detect_symmetry(5 * np.eye(5, dtype=int), np.ones(5))
    b = basis.invariant_basis(5, 6, s)
    z, jac = _random_points(rng, 4, 5, 3)
    _, v0 = algebra.pair_hessians(b, z, jac, values=True)
    om = np.exp(2j * np.pi / 5)
    for _ in range(3):
        perm = rng.permutation(5)
        ph = om ** rng.integers(0, 5, size=5)
        z2 = (z * ph[None, :])[:, perm]
        _, v1 = algebra.pair_hessians(b, z2, jac, values=True)
        np.testing.assert_allclose(v1, v0, rtol=1e-10, atol=1e-12)
    # a non-invariant monomial pair is not: sanity of the test itself
    f = basis.full_basis(5, 2)
    _, w0 = algebra.pair_hessians(f, z, jac, values=True)
    _, w1 = algebra.pair_hessians(f, (z * om ** np.arange(5))[:, ::-1], jac, values=True)
    assert np.abs(w1 - w0).max() > 1e-3


def test_fast_path_equals_reference():
    rng = np.random.default_rng(7)
    s = basis.detect_symmetry(5 * np.eye(5, dtype=int), np.ones(5))
    b = basis.invariant_basis(5, 6, s)
    z, jac = _random_points(rng, 70, 5, 3)
    z[3, 2] = 0.0  # exact zero coordinate goes through the reference path
    h1, v1 = algebra.pair_hessians(b, z, jac, values=True, backend="numpy")
    h2, v2 = algebra.pair_hessians(b, z, jac, values=True, backend="jax")
    np.testing.assert_allclose(h2, h1, rtol=1e-10, atol=1e-12 * np.abs(h1).max())
    np.testing.assert_allclose(v2, v1, rtol=1e-10, atol=1e-13)
