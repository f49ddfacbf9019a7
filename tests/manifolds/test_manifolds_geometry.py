"""FS geometry, η/κ/σ, chart changes (patch transitions), the flat metric on the torus."""
import numpy as np
import pytest

from ntkflow.manifolds import (
    Hypersurface, chart_jacobian, eta, fs_det, fs_metric, fs_pullback, integrate, kappa, mean_stderr, preset,
    sample, sigma, to_chart, volume_cy, volume_kahler,
)


def _second_largest(z):
    return np.argsort(-np.abs(z), axis=1)[:, 1]


def test_fs_metric_ambient_properties():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((20, 5)) + 1j * rng.standard_normal((20, 5))
    g = fs_metric(z)
    np.testing.assert_allclose(g, np.conj(np.swapaxes(g, 1, 2)), atol=1e-15)
    # the Euler direction is null: Σ_I z_I g_{IJ̄} = 0; other directions positive
    assert np.abs(np.einsum("xi,xij->xj", z, g)).max() < 1e-15
    ev = np.linalg.eigvalsh(g)
    assert np.all(ev[:, 0] > -1e-15) and np.all(ev[:, 1:] > 0)
    # scale invariance (projective): g(λz) = g(z)/|λ|² acting on dz, i.e. the metric on P^n
    np.testing.assert_allclose(fs_metric(3 * z), g / 9, rtol=1e-13)


def test_volumes_kappa_sigma_relations():
    ps = sample(preset("quartic-k3"), 20_000, seed=1)
    det = fs_det(ps)
    assert volume_kahler(ps, det) == pytest.approx(4.0, rel=1e-12)
    assert kappa(ps, det) == pytest.approx(volume_kahler(ps, det) / volume_cy(ps))
    w = ps.weights
    # for g_FS, σ is the relative mean absolute deviation of the weights
    assert sigma(ps, det) == pytest.approx(np.mean(np.abs(w - w.mean())) / w.mean(), rel=1e-12)
    # σ = 0 exactly for det g ∝ |Ω|² and is scale invariant
    assert sigma(ps, 3.7 * ps.omega_sq) < 1e-14
    assert sigma(ps, 2 * det) == pytest.approx(sigma(ps, det), rel=1e-13)
    np.testing.assert_allclose(eta(ps, det), det / ps.omega_sq)
    # ∫ det g d^{2m}x = ∫J^m / m! = 2 on the K3
    val, err = integrate(ps, det)
    assert val == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError, match="det_g: expected 20000 values"):
        sigma(ps, det[:10])
    with pytest.raises(ValueError, match="NaN"):
        sigma(ps, np.full(len(ps), np.nan))


def _unsymmetric_quintic():
    e = np.vstack([5 * np.eye(5, dtype=int), np.ones((1, 5), dtype=int), [[3, 1, 1, 0, 0]]])
    c = np.array([1.0, 2.0, 0.5, 1.5, 1.0, -1.0, 0.4 + 0.3j])
    return Hypersurface(e, c, name="unsymmetric")


def test_sigma_invariant_under_coordinate_permutations():
    m = _unsymmetric_quintic()
    ps = sample(m, 20_000, seed=3)
    perm = np.array([3, 0, 4, 1, 2])
    m_perm = Hypersurface(m.exponents[:, perm], m.coefficients, name="permuted")
    # (a) the same points with permuted coordinates: identical charts up to relabelling, same σ
    from ntkflow.manifolds import pointset_from_points

    ps_perm = pointset_from_points(m_perm, ps.points[:, perm])
    np.testing.assert_allclose(ps_perm.weights, ps.weights, rtol=1e-12)
    assert sigma(ps_perm, fs_det(ps_perm)) == pytest.approx(sigma(ps, fs_det(ps)), rel=1e-12)
    # (b) independent samples of the permuted equation: same σ within Monte-Carlo error
    ps2 = sample(m_perm, 20_000, seed=4)
    s1, s2 = sigma(ps, fs_det(ps)), sigma(ps2, fs_det(ps2))
    blocks = [sigma(ps[i:i + 2000], fs_det(ps[i:i + 2000])) for i in range(0, 20_000, 2000)]
    err = np.std(blocks, ddof=1) / np.sqrt(len(blocks))
    assert abs(s1 - s2) < 5 * np.sqrt(2) * err, (s1, s2, err)
    # (c) Fermat: permuting coordinates of sampled points maps X to itself; σ unchanged
    q = sample(preset("fermat-quintic"), 5000, seed=5)
    qp = pointset_from_points(q.manifold, q.points[:, perm])
    assert sigma(qp, fs_det(qp)) == pytest.approx(sigma(q, fs_det(q)), rel=1e-12)


@pytest.mark.parametrize("name", ["cubic-curve", "quartic-k3", "fermat-quintic"])
def test_patch_transitions(name):
    """Chart change to (second-largest coordinate, other elim): Ω, FS metric and η transform right."""
    ps = sample(preset(name), 2000, seed=6)
    new_patch = _second_largest(ps.points)
    ps2 = to_chart(ps, patch=new_patch)
    assert np.all(ps2.patch == new_patch)
    T = chart_jacobian(ps, ps2)  # T_ab = ∂x_b/∂x'_a
    g1, g2 = fs_pullback(ps), fs_pullback(ps2)
    np.testing.assert_allclose(g2, T @ g1 @ np.conj(np.swapaxes(T, 1, 2)), rtol=1e-9, atol=1e-12 * np.abs(g2).max())
    detT2 = np.abs(np.linalg.det(T)) ** 2
    np.testing.assert_allclose(ps2.omega_sq, detT2 * ps.omega_sq, rtol=1e-9)
    # η = det g/|Ω|² and the weights are functions on X: chart independent
    np.testing.assert_allclose(eta(ps2, fs_det(ps2)), eta(ps, fs_det(ps)), rtol=1e-9)
    np.testing.assert_array_equal(ps2.weights, ps.weights)
    # going back recovers the original chart exactly
    ps3 = to_chart(ps2, patch=ps.patch, elim=ps.elim)
    np.testing.assert_allclose(ps3.points, ps.points, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ps3.omega_sq, ps.omega_sq, rtol=1e-10)


def test_flat_metric_on_torus_exact_and_patch_consistent():
    """On the cubic curve the Ricci-flat metric is g = κ|Ω|² exactly (det g = g for m = 1)."""
    ps = sample(preset("cubic-curve"), 20_000, seed=7)
    k = kappa(ps, fs_det(ps))
    g_flat = k * ps.omega_sq
    assert sigma(ps, g_flat) < 1e-14
    assert kappa(ps, g_flat) == pytest.approx(k, rel=1e-14)
    # the same metric built in other charts (other patch, other eliminated coordinate) agrees as a tensor
    for ps2 in (to_chart(ps, patch=_second_largest(ps.points)),
                to_chart(ps, elim=np.where(ps.elim == (ps.patch + 1) % 3, (ps.patch + 2) % 3, (ps.patch + 1) % 3))):
        T = chart_jacobian(ps, ps2)[:, 0, 0]
        np.testing.assert_allclose(k * ps2.omega_sq, np.abs(T) ** 2 * g_flat, rtol=1e-9)
        assert sigma(ps2, k * ps2.omega_sq) < 1e-14


def test_mean_stderr_and_integrate_errors():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(100_000)
    m, e = mean_stderr(v)
    assert abs(e - 1 / np.sqrt(len(v))) < 0.3 / np.sqrt(len(v))
    with pytest.raises(ValueError, match="at least 2"):
        mean_stderr([1.0])
    with pytest.raises(TypeError, match="ps: expected a PointSet"):
        fs_det(np.zeros((3, 5)))
