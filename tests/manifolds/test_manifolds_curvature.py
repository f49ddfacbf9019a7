"""Curvature by JAX autodiff: metric from the potential, Ricci scalar against finite differences of an
independent NumPy computation, topological integrals (χ = ∫c_m, ∫R dvol = 0 since c_1(X) = 0)."""
import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.manifolds import (
    EULER_CHARACTERISTIC, chart_data, euler_characteristic, fs_det, fs_pullback, kappa, make_curvature_fn,
    mean_stderr, preset, ricci_measure, sample,
)
from ntkflow.manifolds.charts import fs_det_from_chart


@pytest.fixture(scope="module")
def fs_curv():
    """FS curvature on samples of the three presets (compiled once per manifold)."""
    out = {}
    for name, n in (("cubic-curve", 4000), ("quartic-k3", 6000), ("fermat-quintic", 8000)):
        ps = sample(preset(name), n, seed=31)
        out[name] = (ps, make_curvature_fn(ps.manifold, batch=2048)(ps))
    return out


def _logdet_fs_local(m, z0, patch, elim, kept, xr):
    """NumPy: log det g_FS at local real coordinates xr (2m,), z_elim by Newton (independent path)."""
    dim = len(kept)
    z = z0.copy()
    z[kept] = xr[:dim] + 1j * xr[dim:]
    for _ in range(30):
        q, dq = m.Q_and_dQ(z[None])
        z[elim] -= q[0] / dq[0, elim]
    cd = chart_data(m, z[None], patch=patch, elim=elim)
    return np.log(fs_det_from_chart(cd["points"], cd["kept"], cd["elim"], cd["r"])[0])


def _ricci_scalar_fd(m, ps, i, h=1e-3):
    """Central differences at h and h/2, Richardson-extrapolated (error O(h⁴))."""
    return (4 * _ricci_scalar_fd_h(m, ps, i, h / 2) - _ricci_scalar_fd_h(m, ps, i, h)) / 3


def _ricci_scalar_fd_h(m, ps, i, h):
    z0, p, e, kept = ps.points[i], ps.patch[i], ps.elim[i], ps.kept[i]
    dim = len(kept)
    x0 = np.concatenate([z0[kept].real, z0[kept].imag])
    f = lambda xr: _logdet_fs_local(m, z0, p, e, kept, xr)  # noqa: E731
    H = np.zeros((2 * dim, 2 * dim))
    E = np.eye(2 * dim) * h
    for a in range(2 * dim):
        for b in range(a, 2 * dim):
            H[a, b] = H[b, a] = (f(x0 + E[a] + E[b]) - f(x0 + E[a] - E[b]) - f(x0 - E[a] + E[b]) + f(x0 - E[a] - E[b])) / (4 * h * h)
    ddbar = 0.25 * ((H[:dim, :dim] + H[dim:, dim:]) + 1j * (H[:dim, dim:] - H[dim:, :dim]))  # ∂_a ∂̄_b log det g
    G = fs_pullback(ps[i])[0]
    # R = g^{ab̄} ∂_a∂̄_b log det g = Σ_{ab} (G^{-1})_{ba} ddbar_{ab}
    return float(np.real(np.sum(np.linalg.inv(G).T * ddbar)))


@pytest.mark.parametrize("name", ["cubic-curve", "quartic-k3", "fermat-quintic"])
def test_metric_from_potential_is_pulled_back_fs(fs_curv, name):
    ps, c = fs_curv[name]
    g = fs_pullback(ps)
    np.testing.assert_allclose(c.g, g, atol=1e-11 * np.abs(g).max())
    np.testing.assert_allclose(c.det_g, fs_det(ps), rtol=1e-9)
    # Ricci form is Hermitian
    np.testing.assert_allclose(c.ricci, np.conj(np.swapaxes(c.ricci, 1, 2)), atol=1e-8 * np.abs(c.ricci).max())


@pytest.mark.parametrize("name", ["quartic-k3", "fermat-quintic"])
def test_ricci_scalar_against_finite_differences(fs_curv, name):
    ps, c = fs_curv[name]
    for i in range(4):
        r_fd = _ricci_scalar_fd(ps.manifold, ps, i)
        assert c.ricci_scalar[i] == pytest.approx(r_fd, rel=2e-5, abs=1e-6 * max(1.0, abs(r_fd)))


@pytest.mark.parametrize("name", ["cubic-curve", "quartic-k3", "fermat-quintic"])
def test_euler_characteristic_fs(fs_curv, name):
    ps, c = fs_curv[name]
    chi, err = euler_characteristic(ps, curv=c)
    exact = EULER_CHARACTERISTIC[name]
    print(f"\nχ({name}) = {chi:.3f} ± {err:.3f} (exact {exact}, n = {len(ps)})")
    assert abs(chi - exact) < 4 * err + 1e-9, (chi, err)
    assert err < {"cubic-curve": 0.2, "quartic-k3": 1.5, "fermat-quintic": 25}[name]


@pytest.mark.parametrize("name", ["cubic-curve", "quartic-k3", "fermat-quintic"])
def test_integral_of_ricci_scalar_vanishes(fs_curv, name):
    """∫ R dvol_g ∝ ∫ Ric ∧ J^{m-1} = 2π c_1(X)·J^{m-1} = 0 on a Calabi–Yau, for any metric."""
    ps, c = fs_curv[name]
    vals = ps.weights * c.det_g / ps.omega_sq * c.ricci_scalar
    mean, err = mean_stderr(vals)
    scale = np.mean(np.abs(vals))
    assert abs(mean) < 4 * err and err < 0.1 * scale, (mean, err, scale)
    assert ricci_measure(ps, curv=c) > 0


def test_torus_gauss_bonnet_pointwise_and_flat_metric():
    ps = sample(preset("cubic-curve"), 1000, seed=2)
    c = make_curvature_fn(ps.manifold)(ps)
    # m = 1: c_1 density = (1/π) Ric = −R g/π pointwise
    np.testing.assert_allclose(c.chern_top, -c.ricci_scalar * c.det_g / np.pi, rtol=1e-9, atol=1e-12)
    # the flat metric κ|Ω|², given as a metric function of (z, P, Ω): R = 0 and c_1 = 0 pointwise
    k = kappa(ps, fs_det(ps))
    flat = make_curvature_fn(ps.manifold, metric=lambda z, P, omega: k * (omega * omega.conj()).real.reshape(1, 1))(ps)
    np.testing.assert_allclose(flat.det_g, k * ps.omega_sq, rtol=1e-12)
    assert np.abs(flat.ricci_scalar).max() < 1e-8 * np.abs(c.ricci_scalar).max()
    assert np.abs(flat.chern_top).max() < 1e-8 * np.abs(c.chern_top).max()


def test_metric_fn_and_scaled_potential_agree_with_fs():
    import jax.numpy as jnp

    ps = sample(preset("quartic-k3"), 300, seed=9)
    base = make_curvature_fn(ps.manifold)(ps)

    def fs_metric_fn(z, P, omega):
        s = jnp.sum(jnp.abs(z) ** 2)
        g = (jnp.eye(z.shape[0]) / s - jnp.outer(jnp.conj(z), z) / s**2) / jnp.pi
        return P @ g @ jnp.conj(P).T

    via_metric = make_curvature_fn(ps.manifold, metric=fs_metric_fn)(ps)
    np.testing.assert_allclose(via_metric.ricci_scalar, base.ricci_scalar, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(via_metric.chern_top, base.chern_top, rtol=1e-8, atol=1e-10)
    # K → 2K: g doubles, Ricci form and Chern forms unchanged, R halves
    doubled = make_curvature_fn(ps.manifold, potential=lambda z: 2 * jnp.log(jnp.sum(jnp.abs(z) ** 2)) / jnp.pi)(ps)
    np.testing.assert_allclose(doubled.g, 2 * base.g, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(doubled.ricci, base.ricci, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(doubled.chern_top, base.chern_top, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(doubled.ricci_scalar, base.ricci_scalar / 2, rtol=1e-8, atol=1e-10)


def test_curvature_bad_arguments():
    ps = sample(preset("cubic-curve"), 10)
    with pytest.raises(ValueError, match="pass one of them"):
        make_curvature_fn(ps.manifold, potential=lambda z: 0.0, metric=lambda z, P, o: 0.0)
    with pytest.raises(TypeError, match="potential: expected a JAX function"):
        make_curvature_fn(ps.manifold, potential=3.0)


@pytest.mark.slow
def test_euler_characteristic_quintic_many_points():
    ps = sample(preset("fermat-quintic"), 120_000, seed=41)
    chi, err = euler_characteristic(ps, batch=4096)
    print(f"\nχ(fermat-quintic) = {chi:.2f} ± {err:.2f} with {len(ps)} points")
    assert abs(chi + 200) < 4 * err and err < 6


def test_metric_from_potential_matches_ambient_hessian_formula():
    """K = FS + ε|z_0|⁴/|z|⁴-type term: g = P (∂∂̄K) P†, with ∂∂̄K from JAX's holomorphic derivatives of the
    split K(z, z̄) — an independent route (ambient Hessian, no local coordinates, no implicit z_elim)."""
    import jax
    import jax.numpy as jnp

    from ntkflow.manifolds import metric_from_potential

    ps = sample(preset("fermat-quintic"), 200, seed=12)
    eps = 0.05

    def k_split(z, zb):  # holomorphic in z and in zb separately
        s = jnp.sum(z * zb)
        return jnp.log(s) / jnp.pi + eps * (z[0] * zb[0]) ** 2 / s**2

    def potential(z):
        return jnp.real(k_split(z, jnp.conj(z)))

    g = metric_from_potential(ps, potential)
    hess = jax.vmap(lambda z: jax.jacfwd(jax.jacfwd(k_split, argnums=1, holomorphic=True), argnums=0, holomorphic=True)(z, jnp.conj(z)))
    H = np.asarray(hess(jnp.asarray(ps.points)))  # [J, I] = ∂_{z̄_J} ∂_{z_I} K  → g_{IJ̄} = H[J, I]
    ref = np.einsum("xai,xji,xbj->xab", ps.jacobian, H, np.conj(ps.jacobian))
    np.testing.assert_allclose(g, ref, atol=1e-12 * np.abs(ref).max())
    assert np.linalg.eigvalsh(g).min() > 0
