"""Hypersurfaces and presets: equations, derivatives (NumPy, JAX, finite differences), validation."""
import warnings

import numpy as np
import pytest

import ntkflow  # noqa: F401  (x64)
from ntkflow.manifolds import (
    EULER_CHARACTERISTIC, PRESETS, Hypersurface, SingularityWarning, SingularManifoldError, preset,
)


def _generic_quintic(seed=0, n_extra=6):
    """A Fermat quintic deformed by a few random degree-5 monomials (smooth for generic coefficients)."""
    rng = np.random.default_rng(seed)
    rows = [5 * np.eye(5, dtype=int)[i] for i in range(5)]
    coefs = list(1.0 + 0.3 * rng.standard_normal(5))
    seen = {tuple(r) for r in rows}
    while len(rows) < 5 + n_extra:
        r = rng.multinomial(5, np.ones(5) / 5)
        if tuple(r) not in seen and np.count_nonzero(r) > 1:
            seen.add(tuple(r))
            rows.append(r)
            coefs.append(0.3 * (rng.standard_normal() + 1j * rng.standard_normal()))
    return Hypersurface(np.array(rows), np.array(coefs), name="generic-quintic")


def _random_points(N, n=50, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, N)) + 1j * rng.standard_normal((n, N))


def _direct_Q(m, z):
    return np.array([sum(c * np.prod(zz ** e) for e, c in zip(m.exponents, m.coefficients)) for zz in z])


@pytest.mark.parametrize("name,N", [("cubic-curve", 3), ("quartic-k3", 4), ("fermat-quintic", 5)])
def test_presets_shapes(name, N):
    m = preset(name)
    assert (m.n_coords, m.dim, m.degree, m.intersection_number) == (N, N - 2, N, float(N))
    assert m.symmetric_group_hint == "fermat"
    assert name in PRESETS and name in EULER_CHARACTERISTIC


def test_dwork_preset_and_hint():
    m = preset("dwork-quintic", psi=0.5)
    assert m.psi == 0.5 and m.symmetric_group_hint == "dwork"
    z = _random_points(5)
    np.testing.assert_allclose(m.Q(z), np.sum(z**5, axis=1) - 2.5 * np.prod(z, axis=1), rtol=1e-13)
    # psi = 0 is the Fermat quintic
    assert preset("dwork-quintic", psi=0).symmetric_group_hint == "fermat"


@pytest.mark.parametrize("make", [lambda: preset("dwork-quintic", psi=0.3 + 0.2j), _generic_quintic,
                                  lambda: preset("quartic-k3")])
def test_Q_dQ_against_direct_and_finite_differences(make):
    m = make()
    z = _random_points(m.n_coords)
    q, dq = m.Q_and_dQ(z)
    np.testing.assert_allclose(q, _direct_Q(m, z), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.Q(z), q, rtol=1e-15)
    np.testing.assert_allclose(m.dQ(z), dq, rtol=1e-15)
    # Euler identity for a homogeneous polynomial of degree d: Σ z_j ∂_j Q = d Q
    np.testing.assert_allclose(np.sum(z * dq, axis=1), m.degree * q, rtol=1e-11, atol=1e-11)
    # holomorphic central differences
    h = 1e-6
    for j in range(m.n_coords):
        e = np.zeros(m.n_coords)
        e[j] = h
        fd = (m.Q(z + e) - m.Q(z - e)) / (2 * h)
        np.testing.assert_allclose(fd, dq[:, j], rtol=1e-7, atol=1e-7)


def test_jax_versions_match_numpy_and_differentiate():
    import jax
    import jax.numpy as jnp

    m = preset("dwork-quintic", psi=0.7)
    z = _random_points(5, n=7)
    np.testing.assert_allclose(np.asarray(jax.jit(m.Q_jax)(jnp.asarray(z))), m.Q(z), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(m.dQ_jax(jnp.asarray(z))), m.dQ(z), rtol=1e-13)
    # holomorphic autodiff of Q equals dQ
    jac = jax.vmap(jax.jacfwd(m.Q_jax, holomorphic=True))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(jac), m.dQ(z), rtol=1e-12)
    # xp is picked from the input type
    assert isinstance(m.Q(jnp.asarray(z)), jax.Array) and isinstance(m.Q(z), np.ndarray)


def test_exact_at_zero_coordinates():
    m = preset("fermat-quintic")
    z = np.array([[1.0, 0, 0, 0, -1.0]], dtype=complex)
    assert m.Q(z)[0] == 0 and np.all(np.isfinite(m.dQ(z)))


def test_spec_round_trip_and_equality():
    m = preset("dwork-quintic", psi=0.25 - 0.1j)
    m2 = Hypersurface.from_spec(m.spec())
    assert m2 == m and m2.psi == m.psi and hash(m2) == hash(m)
    assert preset("fermat-quintic") != preset("quartic-k3")


@pytest.mark.parametrize(
    "exponents,coefficients,match",
    [
        (4 * np.eye(5, dtype=int), np.ones(5), "degree N = 5"),  # quartic in P^4: not CY
        (np.ones((2, 2), dtype=int), np.ones(2), "at least 3"),
        (np.array([[5, 0, 0, 0, 0.5]]), np.ones(1), "integers"),
        (-np.eye(5, dtype=int) + 6 * np.eye(5, dtype=int)[::-1] * 0, np.ones(5), ">= 0"),
        (5 * np.eye(5, dtype=int), np.ones(4), "expected 5 entries"),
        (np.vstack([5 * np.eye(5, dtype=int), 5 * np.eye(5, dtype=int)[:1]]), np.ones(6), "duplicate"),
        (5 * np.eye(5, dtype=int), np.zeros(5), "all zero"),
        (5 * np.eye(5, dtype=int), np.array([1, 1, np.nan, 1, 1]), "NaN"),
        (np.array([5, 0, 0, 0, 0]), np.ones(1), "n_monomials, N"),
    ],
)
def test_bad_hypersurfaces_raise_clear_errors(exponents, coefficients, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Hypersurface(exponents, coefficients)


def test_unknown_preset_and_psi_errors():
    with pytest.raises(ValueError, match="unknown manifold preset 'fermat-quintc'.*Did you mean 'fermat-quintic'"):
        preset("fermat-quintc")
    with pytest.raises(ValueError, match="psi: preset 'dwork-quintic' needs"):
        preset("dwork-quintic")
    with pytest.raises(ValueError, match="psi: preset 'fermat-quintic' has no parameter"):
        preset("fermat-quintic", psi=0.5)
    with pytest.raises(TypeError, match="psi"):
        preset("dwork-quintic", psi="abc")


@pytest.mark.parametrize("psi", [1.0, np.exp(2j * np.pi / 5), np.exp(-4j * np.pi / 5)])
def test_singular_members_refused(psi):
    with pytest.raises(SingularManifoldError, match="psi"):
        preset("dwork-quintic", psi=psi)
    assert issubclass(SingularManifoldError, ValueError)


def test_near_singular_member_warns_and_generic_is_silent():
    with pytest.warns(SingularityWarning, match="conifold"):
        preset("dwork-quintic", psi=1.0001)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preset("dwork-quintic", psi=0.5)


def test_singular_vertex_detected():
    # no z0^5 and no z0^4 z_k term: Q and dQ vanish at (1, 0, 0, 0, 0)
    e = np.array([[0, 5, 0, 0, 0], [0, 0, 5, 0, 0], [0, 0, 0, 5, 0], [0, 0, 0, 0, 5], [3, 1, 1, 0, 0]])
    with pytest.raises(SingularManifoldError, match="e_0"):
        Hypersurface(e, np.ones(5))
    # with a z0^4 z1 term it is smooth at that vertex (Q vanishes there, dQ does not)
    e2 = e.copy()
    e2[4] = [4, 1, 0, 0, 0]
    Hypersurface(e2, np.ones(5))
