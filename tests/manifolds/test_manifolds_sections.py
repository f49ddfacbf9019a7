"""The one monomial-section implementation: NumPy and JAX paths against each other, against a direct
product of powers, and ∇s against central finite differences and JAX's own derivative."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import cpoints

from ntkflow.manifolds import monomial_sections, monomials


def _exponents(k: int, n: int) -> np.ndarray:
    """All degree-k exponent rows in n variables (built here, independently of ntkflow.cy.basis)."""
    rows = [c for c in itertools.product(range(k + 1), repeat=n) if sum(c) == k]
    return np.asarray(rows, dtype=np.int64)


@pytest.mark.parametrize("k,n", [(1, 3), (3, 4), (5, 5)])
def test_sections_equal_direct_products_on_numpy_and_jax(k, n):
    rng = np.random.default_rng(k)
    z = cpoints(rng, 11, n)
    z[0, 1] = 0.0  # an exact zero coordinate: no division anywhere
    e = _exponents(k, n)
    direct = np.array([[np.prod([zz[i] ** int(row[i]) for i in range(n)]) for row in e] for zz in z])
    s_np, ds_np = monomial_sections(z, e)
    s_jx, ds_jx = monomial_sections(jnp.asarray(z), e, xp=jnp)
    assert s_np.shape == (11, len(e)) and ds_np.shape == (11, len(e), n)
    np.testing.assert_allclose(s_np, direct, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(np.asarray(s_jx), s_np, rtol=1e-14, atol=0)
    np.testing.assert_allclose(np.asarray(ds_jx), ds_np, rtol=1e-14, atol=0)
    np.testing.assert_allclose(monomials(z, e), s_np, rtol=1e-14, atol=0)
    # one point (no batch axis) under vmap gives the batched result
    s1, ds1 = jax.vmap(lambda p: monomial_sections(p, e, xp=jnp))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(ds1), ds_np, rtol=1e-14, atol=0)
    # the exact gradient at the zero coordinate: ∂(z_1^{I_1})/∂z_1 at z_1 = 0 is 1 when I_1 = 1, else 0
    one = np.flatnonzero(e[:, 1] == 1)
    others = np.prod([z[0, j] ** e[one, j] for j in range(n) if j != 1], axis=0)
    np.testing.assert_allclose(ds_np[0, one, 1], others, rtol=1e-13)


def test_gradient_against_finite_differences_and_autodiff():
    rng = np.random.default_rng(7)
    e = _exponents(4, 5)
    z = cpoints(rng, 3, 5)
    _, ds = monomial_sections(z, e)
    h = 1e-6
    for i in range(5):
        dz = np.zeros(5, dtype=complex)
        dz[i] = h
        # holomorphic: the derivative along a real and an imaginary step agree
        fd_re = (monomials(z + dz, e) - monomials(z - dz, e)) / (2 * h)
        fd_im = (monomials(z + 1j * dz, e) - monomials(z - 1j * dz, e)) / (2j * h)
        scale = np.max(np.abs(ds[:, :, i])) + 1.0
        assert np.max(np.abs(fd_re - ds[:, :, i])) < 1e-7 * scale
        assert np.max(np.abs(fd_im - ds[:, :, i])) < 1e-7 * scale
    # JAX's holomorphic Jacobian of the section values
    jac = jax.vmap(jax.jacfwd(lambda p: monomials(p, e, xp=jnp), holomorphic=True))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(jac), ds, rtol=1e-13, atol=1e-13)


def test_bad_exponents_and_points():
    z = np.ones((2, 3), dtype=complex)
    with pytest.raises(ValueError, match="exponents: every row must have the same degree"):
        monomials(z, np.array([[1, 0, 0], [1, 1, 0]]))
    with pytest.raises(ValueError, match="exponents: expected a non-empty"):
        monomials(z, np.array([[0.5, 0.5, 0.0]]))
    with pytest.raises(ValueError, match="z: expected 4 homogeneous coordinates"):
        monomial_sections(z, np.array([[1, 0, 0, 0]]))
