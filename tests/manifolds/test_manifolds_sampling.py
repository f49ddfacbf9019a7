"""Line-intersection sampler: exactness, reproducibility, charts, and the measure it samples.

The key independent check (not the normalisation we impose): for the Fermat hypersurface
Σ_{i=0}^{m+1} z_i^d = 0 (d = m + 2), the CY volume in local coordinates is a complex Dirichlet
integral. In the chart z_0 = 1 with coordinates (z_1..z_m), z_{m+1} has d branches; substituting
u_i = z_i^d turns ∫_X |Ω|² d^{2m}x into d^{-(m+1)} ∫_{C^m} Π_{i≤m+1} |u_i|^{2a} d^{2m}u with
u_{m+1} = −1 − Σu_i and a = −(d−1)/d, and the complex Dirichlet formula
∫_{C^m} Π|u_i|^{2a_i} |1−Σu|^{2b} = π^m Π γ(1+a_i) γ(1+b) γ(−m−Σa_i−b), γ(x) = Γ(x)/Γ(1−x), gives

    ∫_X |Ω|² d^{2m}x = d^{-(d-1)} π^{d-2} γ(1/d)^d.

The sampler's points have density det g_FS / Vol_FS with Vol_FS = ∫ det g_FS d^{2m}x = d/m!
(FS volume of a degree-d hypersurface = d × the volume 1/m! of P^m), so
mean(w) = (d/Vol_FS) ∫|Ω|² = m! ∫|Ω|² must hold. This tests the sampled distribution, Ω and
the FS normalisation together; the per-point normalisation mean(w det g/|Ω|²) = d alone is a tautology.
"""
import math

import numpy as np
import pytest
from scipy.special import gamma

from ntkflow.manifolds import (
    fs_det, fs_metric, fs_pullback, mean_stderr, preset, pullback, sample, sample_reference, sigma,
)


def _fermat_vol_cy(d):
    m = d - 2
    g = gamma(1 / d) / gamma(1 - 1 / d)
    return math.factorial(m) * d ** (-(d - 1)) * np.pi ** (d - 2) * g**d


@pytest.fixture(scope="module")
def quintic_200k():
    return sample(preset("fermat-quintic"), 200_000, seed=11, progress=False)


ALL = [preset("cubic-curve"), preset("quartic-k3"), preset("fermat-quintic"), preset("dwork-quintic", psi=0.5),
       preset("dwork-quintic", psi=0.8 + 0.5j)]


@pytest.mark.parametrize("m", ALL, ids=lambda m: f"{m.name}-{m.psi}")
@pytest.mark.parametrize("n", [1, 2, 7, 1001])
def test_exactly_n_points(m, n):
    ps = sample(m, n, seed=3)
    assert len(ps) == n
    for a in (ps.points, ps.weights, ps.omega_sq, ps.patch, ps.elim, ps.jacobian):
        assert a.shape[0] == n
    assert ps.points.dtype == np.complex128 and ps.jacobian.shape == (n, m.dim, m.n_coords)


@pytest.mark.parametrize("m", ALL, ids=lambda m: f"{m.name}-{m.psi}")
def test_points_on_X_and_charts(m):
    ps = sample(m, 5000, seed=5)
    z = ps.points
    rows = np.arange(len(ps))
    # Q(z) = 0 to 1e-10 relative to the size of its terms
    res = np.abs(m.Q(z)) / m.term_scale(z)
    assert res.max() < 1e-10
    # patch normalisation: the patch coordinate is exactly 1 and the largest
    assert np.all(z[rows, ps.patch] == 1.0)
    assert np.all(np.abs(z) <= 1.0 + 1e-15)
    # eliminated coordinate: largest |dQ| away from the patch; Ω = 1/dQ_elim
    dq = m.dQ(z)
    a = np.abs(dq)
    a[rows, ps.patch] = -1
    np.testing.assert_array_equal(ps.elim, np.argmax(a, axis=1))
    np.testing.assert_allclose(ps.omega_sq, 1 / np.abs(dq[rows, ps.elim]) ** 2, rtol=1e-14)
    # Jacobian: identity on kept coordinates, 0 on the patch, rows tangent to X (P dQ = 0)
    P = ps.jacobian
    kept = ps.kept
    for a_ in range(m.dim):
        np.testing.assert_array_equal(P[rows, a_, kept[:, a_]], 1.0)
    assert np.all(P[rows, :, ps.patch] == 0)
    tang = np.einsum("xai,xi->xa", P, dq)
    assert np.max(np.abs(tang)) < 1e-12 * np.max(np.abs(dq))


def test_reproducible_chunk_independent_and_no_global_rng():
    m = preset("fermat-quintic")
    state = np.random.get_state()[1].copy()
    a = sample(m, 2003, seed=7)
    b = sample(m, 2003, seed=7, chunk=13)
    c = sample(m, 2003, seed=8)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.allclose(a.points[:10], c.points[:10])
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_matches_per_line_np_roots_reference():
    m = preset("dwork-quintic", psi=0.3)
    n = 500  # a multiple of d: every line used in full by both
    fast, ref = sample(m, n, seed=2), sample_reference(m, n, seed=2)

    def canon(ps):
        P = ps.points.reshape(-1, m.degree, m.n_coords)
        key = np.round(np.abs(P).sum(-1) * 1e6) + ps.patch.reshape(-1, m.degree)
        o = np.argsort(key, axis=1)
        return np.take_along_axis(P, o[..., None], axis=1)

    np.testing.assert_allclose(canon(fast), canon(ref), atol=1e-10)


@pytest.mark.parametrize("name", ["cubic-curve", "quartic-k3", "fermat-quintic"])
def test_fs_pullback_positive_definite_and_closed_form(name):
    m = preset(name)
    ps = sample(m, 3000, seed=4)
    g = fs_pullback(ps)
    g_ref = pullback(ps.jacobian, fs_metric(ps.points))  # the literal P g P†
    np.testing.assert_allclose(g, g_ref, atol=1e-14)
    np.testing.assert_allclose(g, np.conj(np.swapaxes(g, 1, 2)), atol=1e-15)
    assert np.linalg.eigvalsh(g).min() > 0
    np.testing.assert_allclose(fs_det(ps), np.linalg.det(g_ref).real, rtol=1e-11)


@pytest.mark.parametrize("name,n", [("cubic-curve", 100_000), ("quartic-k3", 100_000), ("fermat-quintic", 100_000)])
def test_weights_give_analytic_cy_volume(name, n):
    """mean(w) = m! ∫|Ω|² (module docstring): an independent check of the sampled measure."""
    m = preset(name)
    ps = sample(m, n, seed=21)
    # the imposed normalisation (tautological): Vol_K of FS = ∫J^m = d
    np.testing.assert_allclose(np.mean(ps.weights * fs_det(ps) / ps.omega_sq), m.degree, rtol=1e-12)
    mean, err = mean_stderr(ps.weights)
    exact = _fermat_vol_cy(m.degree)
    assert err < 2e-3 * exact
    assert abs(mean - exact) < 4 * err, (mean, exact, err)


def test_sigma_fs_fermat_quintic(quintic_200k):
    ps = quintic_200k
    s = sigma(ps, fs_det(ps))
    # MC error of σ from 20 independent blocks of 10 000 points
    blocks = [sigma(ps[i:i + 10_000], fs_det(ps[i:i + 10_000])) for i in range(0, 200_000, 10_000)]
    err = np.std(blocks, ddof=1) / np.sqrt(len(blocks))
    assert err < 1e-3
    assert abs(s - 0.373) < 0.003, (s, err)


def test_split_and_indexing(quintic_200k):
    ps = quintic_200k[:1000]
    tr, te = ps.split(800)
    assert (len(tr), len(te)) == (800, 200)
    np.testing.assert_array_equal(te.points, ps.points[800:])
    one = ps[5]
    assert len(one) == 1 and np.all(one.points[0] == ps.points[5])
    mask = ps.weights > np.median(ps.weights)
    assert len(ps[mask]) == mask.sum()
    with pytest.raises(ValueError, match="n_train"):
        ps.split(1000)
    with pytest.raises(ValueError, match="positive integer"):
        ps.split(0)
    assert not ps.points.flags.writeable


@pytest.mark.parametrize("n,exc,match", [(0, ValueError, "n: must be a positive integer, received 0"),
                                         (-3, ValueError, "n: must be"), (2.5, TypeError, "n: expected a positive integer")])
def test_bad_n(n, exc, match):
    with pytest.raises(exc, match=match):
        sample(preset("cubic-curve"), n)


def test_bad_seed_and_manifold():
    with pytest.raises(TypeError, match="seed"):
        sample(preset("cubic-curve"), 10, seed="zero")
    with pytest.raises(TypeError, match="manifold: expected a Hypersurface"):
        sample("fermat-quintic", 10)


def _hidden_conifold():
    """Dwork at ψ = 1 plus 0.7 (z0 − z1)² z2³: still singular at (1, 1, 1, 1, 1) (the added term vanishes
    to second order there) but outside the family that Hypersurface checks exactly."""
    from ntkflow.manifolds import Hypersurface

    e = np.vstack([5 * np.eye(5, dtype=int), np.ones((1, 5), dtype=int), [[2, 0, 3, 0, 0], [1, 1, 3, 0, 0], [0, 2, 3, 0, 0]]])
    c = np.array([1, 1, 1, 1, 1, -5, 0.7, -1.4, 0.7])
    return Hypersurface(e, c, name="hidden-conifold")


def test_numerical_singularity_search():
    from ntkflow.manifolds import SingularManifoldError

    m = _hidden_conifold()
    sing = m.singular_points()
    assert len(sing) > 0
    # every reported point is exactly singular: ∇Q = 0 and Q = 0
    assert np.abs(m.dQ(sing)).max() < 1e-8 and np.abs(m.Q(sing)).max() < 1e-8
    with pytest.raises(SingularManifoldError, match="singular.*check_smooth=False"):
        sample(m, 100)
    assert len(sample(m, 100, check_smooth=False)) == 100
    for smooth in (preset("fermat-quintic"), preset("dwork-quintic", psi=0.9), preset("quartic-k3")):
        assert len(smooth.singular_points()) == 0


def test_polish_path_for_every_point(monkeypatch):
    """The rare branch (Newton on the true Q along the line) forced for all points keeps them exact."""
    import ntkflow.manifolds.sampling as smod

    m = preset("dwork-quintic", psi=0.4)
    ref = sample(m, 600, seed=8)
    monkeypatch.setattr(smod, "_RESIDUAL_TOL", 0.0)
    ps = sample(m, 600, seed=8)
    assert len(ps) == 600
    assert (np.abs(m.Q(ps.points)) / m.term_scale(ps.points)).max() < 1e-10
    np.testing.assert_allclose(ps.points, ref.points, atol=1e-12)
