"""Importance sampling on CICYs with deformed Crofton samplers (issue #14: χ_FS within 1 %).

Subspaces spanned by M u (u ~ CN(0, I)) give intersection points with the density of the FS form of
h = (M M†)^{-1}. Checked here against independent references: the h-metric against JAX autodiff of the
potential (1/π) log(z† h z); the identity map against the standard sampler (identical); the density and its
normalisation by Monte-Carlo ∫J_t³ and ∫J^α against the intersection numbers on deformed and mixture
samples (a wrong density gives a wrong volume: the standard weights on deformed points are shown to fail)."""
import math

import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.manifolds import mean_stderr
from ntkflow.manifolds.cicy import (
    cicy_fs_det, cicy_fs_factor_pullbacks, cicy_metric_jax, cicy_mixture_weights, cicy_preset,
    cicy_sampling_density, crofton_frame_map, intersection_numbers, kahler_volume, mixed_coefficients,
    sample_cicy, sample_cicy_mixture,
)


def _random_maps(m, lam, seed):
    rng = np.random.default_rng(seed)
    return [crofton_frame_map(rng.standard_normal(n + 1) + 1j * rng.standard_normal(n + 1), lam) for n in m.ambient]


def _density_reference(m, g_factors):
    """Σ_c (c!/dim!) D_c over the c with d_c > 0, from the mixed discriminants of the given factor metrics."""
    D = mixed_coefficients(g_factors)
    d = intersection_numbers(m.ambient, m.configuration)
    return sum(math.prod(math.factorial(a) for a in c) / math.factorial(m.dim) * D[c] for c in d if d[c] > 0)


def test_crofton_frame_map_covariance_and_errors():
    rng = np.random.default_rng(0)
    p = rng.standard_normal(3) + 1j * rng.standard_normal(3)
    u = p / np.linalg.norm(p)
    M = crofton_frame_map(p, 8.0)
    # M u ~ CN(0, M M†) with M M† = I + λ p p†/|p|²; the spread along p is √(1+λ) = 3
    assert np.allclose(M @ M.conj().T, np.eye(3) + 8.0 * np.outer(u, u.conj()), atol=1e-13)
    assert np.allclose(M @ u, 3.0 * u, atol=1e-13)
    assert np.allclose(crofton_frame_map(p, 0.0), np.eye(3), atol=0)
    with pytest.raises(ValueError, match="lam"):
        crofton_frame_map(p, -1.0)
    with pytest.raises(ValueError, match="p: expected a non-zero"):
        crofton_frame_map(np.zeros(3), 1.0)


def test_identity_maps_give_the_standard_sampler():
    """frame_maps = identity: the same points, and the same weights, as the unitary-invariant sampler."""
    m = cicy_preset("bicubic", seed=2)
    a = sample_cicy(m, 1500, seed=4)
    b = sample_cicy(m, 1500, seed=4, frame_maps=[np.eye(3), np.eye(3)])
    assert np.array_equal(a.points, b.points)
    assert np.allclose(b.weights, a.weights, rtol=1e-13, atol=0)
    rho = cicy_sampling_density(m, a.points, a.jacobian)
    assert np.allclose(rho, _density_reference(m, cicy_fs_factor_pullbacks(m, a.points, a.jacobian)), rtol=1e-13, atol=0)


def test_deformed_density_is_the_crofton_density_of_the_h_metric():
    """ρ_h from (M^{-1}z, M^{-1}P) equals Σ_c (c!/3!) D_c of g^h_r = ∂∂̄ (1/π) log(z_r† h_r z_r), h = (M M†)^{-1},
    differentiated by JAX autodiff (an independent construction of the deformed metric)."""
    import jax.numpy as jnp

    m = cicy_preset("bicubic", psi=0.5)
    maps = _random_maps(m, 5.0, seed=1)
    ps = sample_cicy(m, 200, seed=9, frame_maps=maps)
    g = []
    for b, M in zip(m.blocks, maps):
        h = jnp.asarray(np.linalg.inv(M @ M.conj().T))
        bb = jnp.asarray(b)

        def K(z, h=h, bb=bb):
            zr = z[..., bb]
            return jnp.log(jnp.real(jnp.einsum("...i,ij,...j->...", jnp.conj(zr), h, zr))) / np.pi
        g.append(cicy_metric_jax(ps, potential=K))
    ref = _density_reference(m, np.stack(g, axis=1))
    rho = cicy_sampling_density(m, ps.points, ps.jacobian, maps)
    assert np.allclose(rho, ref, rtol=1e-9, atol=0)
    rho_fs = cicy_sampling_density(m, ps.points, ps.jacobian)
    assert np.max(np.abs(rho / rho_fs - 1)) > 0.5  # the deformation is not a no-op


@pytest.mark.parametrize("name,kw", [("bicubic", {}), ("tetraquadric", {"seed": 2}), ("p5-33", {"psi": 0.5})])
def test_deformed_sampler_volumes_match_intersection_numbers(name, kw):
    """Points of the deformed sampler lie on X, and mean(w det g_t/|Ω|²) = ∫J_t³ (two classes) and
    mean(w (α!/3!) D_α/|Ω|²) = d_α within 4 standard errors: the density ρ_h/Σd_c and its normalisation are
    right; ∫ρ_{h'} = Σ_c d_c for another deformation h', which the standard (undeformed) weights on the
    same points miss by many errors."""
    m = cicy_preset(name, **kw)
    ps = sample_cicy(m, 20000, seed=3, frame_maps=_random_maps(m, 3.0, seed=5))
    assert np.max(np.abs(m.Q(ps.points)) / m.term_scale(ps.points)) <= 1e-10
    for t in (np.ones(m.n_factors), np.linspace(0.6, 1.8, m.n_factors)):
        mu, se = mean_stderr(ps.weights * cicy_fs_det(ps, t) / ps.omega_sq)
        assert se > 1e-4 * mu and abs(mu - kahler_volume(m.ambient, m.configuration, t)) <= 4 * se, (t, mu, se)
    D = mixed_coefficients(cicy_fs_factor_pullbacks(m, ps.points, ps.jacobian))
    d = intersection_numbers(m.ambient, m.configuration)
    for alpha, val in D.items():
        mu, se = mean_stderr(ps.weights * math.prod(math.factorial(a) for a in alpha) / 6 * val / ps.omega_sq)
        assert abs(mu - d[alpha]) <= 4 * se + 1e-9, (alpha, mu, se)
    # ∫_X ρ_{h'} = Σ_c d_c for another deformation h' (cohomologous forms); a wrong density (the
    # unitary-invariant one) on the same points gives a biased integral
    d_total = sum(v for c, v in d.items() if v > 0)
    f = cicy_sampling_density(m, ps.points, ps.jacobian, _random_maps(m, 2.0, seed=6)) / ps.omega_sq
    mu, se = mean_stderr(ps.weights * f)
    assert abs(mu - d_total) <= 4 * se, (mu, se, d_total)
    w_wrong = d_total * ps.omega_sq / cicy_sampling_density(m, ps.points, ps.jacobian)
    mu, se = mean_stderr(w_wrong * f)
    assert abs(mu - d_total) > 5 * se, (mu, se)


def test_mixture_is_unbiased_with_the_stratified_error():
    """A defensive mixture (standard + two deformed components, fixed counts): ∫J_t³ within 4 stratified
    standard errors (Σ_j f_j² Var_j/n_j), each component's own points unbiased with its own density too."""
    m = cicy_preset("bicubic", seed=0)
    comps = [None, _random_maps(m, 10.0, seed=7), _random_maps(m, 30.0, seed=8)]
    counts = [6000, 5000, 4000]
    ps, cid = sample_cicy_mixture(m, counts, comps, seed=1)
    assert len(ps) == 15000 and np.array_equal(np.bincount(cid), counts)
    n = len(ps)
    for t in (np.ones(2), np.array([0.7, 1.4])):
        y = ps.weights * cicy_fs_det(ps, t) / ps.omega_sq
        se = math.sqrt(sum((c / n) ** 2 * y[cid == j].var(ddof=1) / c for j, c in enumerate(counts)))
        assert abs(y.mean() - kahler_volume(m.ambient, m.configuration, t)) <= 4 * se, (t, y.mean(), se)
    # the (vectorised) mixture weights against the per-component reference cicy_sampling_density
    rho = sum(c / n * cicy_sampling_density(m, ps.points, ps.jacobian, maps) for c, maps in zip(counts, comps))
    d_total = sum(v for v in intersection_numbers(m.ambient, m.configuration).values() if v > 0)
    assert np.allclose(ps.weights, d_total * ps.omega_sq / rho, rtol=1e-11, atol=0)
    again = cicy_mixture_weights(ps, comps, np.array(counts) / n, chunk=7)
    assert np.allclose(again, ps.weights, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name,kw", [("tetraquadric", {"psi": 0.5}), ("p5-33", {"seed": 2})])
def test_mixture_weights_equal_the_reference_density(name, kw):
    """The vectorised mixture density (closed-form determinants, lattice contracted once) equals the sum of
    the per-component cicy_sampling_density on every point (four factors; one factor with two equations)."""
    m = cicy_preset(name, **kw)
    ps = sample_cicy(m, 500, seed=2)
    comps = [None, _random_maps(m, 4.0, seed=1), _random_maps(m, 40.0, seed=2)]
    f = np.array([0.5, 0.3, 0.2])
    rho = sum(fj * cicy_sampling_density(m, ps.points, ps.jacobian, c) for fj, c in zip(f, comps))
    d_total = sum(v for v in intersection_numbers(m.ambient, m.configuration).values() if v > 0)
    assert np.allclose(cicy_mixture_weights(ps, comps, f), d_total * ps.omega_sq / rho, rtol=1e-11, atol=0)


def test_bad_frame_maps_and_fractions_raise():
    m = cicy_preset("bicubic")
    with pytest.raises(ValueError, match="one matrix per factor"):
        sample_cicy(m, 10, frame_maps=[np.eye(3)])
    with pytest.raises(ValueError, match=r"frame_maps\[1\]"):
        sample_cicy(m, 10, frame_maps=[np.eye(3), np.eye(2)])
    with pytest.raises(ValueError, match="invertible"):
        sample_cicy(m, 10, frame_maps=[np.eye(3), np.diag([1.0, 1.0, 0.0])])
    ps = sample_cicy(m, 10, seed=0)
    with pytest.raises(ValueError, match="fractions"):
        cicy_mixture_weights(ps, [None, None], [0.5, 0.6])
    with pytest.raises(ValueError, match="counts"):
        sample_cicy_mixture(m, [0, 0], [None, None])
