"""Reference solvers of Hamilton's flow ∂_t g = −2 Ric against exact solutions (round spheres, round spheres
pulled back by a conformal dilation, the linearised flow), invariants (area on T², dA/dt = −8π on S²),
fitted spectral convergence rates, a cross-check between two independent solvers (a rotationally symmetric
S² as a conformal metric and as a warped product with n = 1) and the singularities (extinction,
neckpinch)."""
import numpy as np
import pytest

from ntkflow.ricci.reference import (
    AxisymmetricSphere,
    ConformalSphere,
    ConformalTorus,
    WarpedProduct,
    integrate,
    moebius_factor,
    round_radius2,
)


def _bump_t2(a, b, amp=0.4):
    return amp * np.cos(a) + 0.5 * amp * np.sin(a + 2 * b) + 0.25 * amp * np.cos(3 * b)


# ------------------------------------------------------------------ T²


def test_ricci_t2_area_conserved():
    p = ConformalTorus(32)
    y0 = p.initial(_bump_t2)
    r = integrate(p, y0, 1.0)
    assert r.status == "finished" and r.t == 1.0
    a = r.history["area"]
    assert np.max(np.abs(a / a[0] - 1)) < 1e-10
    # and the flow really moved: the curvature spread shrinks (Hamilton: K → 0 on T²)
    k0 = r.history["K_max"][0] - r.history["K_min"][0]
    k1 = r.history["K_max"][-1] - r.history["K_min"][-1]
    assert k1 < 0.5 * k0


@pytest.mark.parametrize("k", [(1, 0), (1, 2), (3, 1)])
def test_ricci_t2_linear_mode_decays_like_heat(k):
    """u = ε cos(k·θ), ε = 1e-6: the linearised flow u_t = Δu gives û_k(t) = û_k(0) e^{−|k|²t}."""
    eps = 1e-6
    p = ConformalTorus(16)
    y0 = p.initial(lambda a, b: eps * np.cos(k[0] * a + k[1] * b))
    t_end = 1.5 / (k[0] ** 2 + k[1] ** 2)
    r = integrate(p, y0, t_end, t_out=[t_end])
    ratio = p.mode(r.y_out[-1], k).real / p.mode(y0, k).real
    assert ratio == pytest.approx(np.exp(-(k[0] ** 2 + k[1] ** 2) * t_end), rel=1e-5)


def test_ricci_t2_spectral_convergence_in_grid_size():
    """Solutions on n = 8, 12, 16, 24 against n = 48 at the shared grid points: error ~ C e^{−ρn}, ρ fitted."""
    t_end = 0.3
    ref = ConformalTorus(48)
    yr = integrate(ref, ref.initial(lambda a, b: _bump_t2(a, b, 0.3)), t_end, t_out=[t_end]).y_out[-1]
    wr = yr.reshape(48, 48)
    ns, errs = [8, 12, 16, 24], []
    for n in ns:
        p = ConformalTorus(n)
        y = integrate(p, p.initial(lambda a, b: _bump_t2(a, b, 0.3)), t_end, t_out=[t_end]).y_out[-1]
        s = 48 // n
        errs.append(np.max(np.abs(y.reshape(n, n) - wr[::s, ::s])))
    rho = -np.polyfit(ns, np.log(errs), 1)[0]
    assert np.all(np.diff(np.log(errs)) < 0), errs
    assert rho > 0.5, (rho, errs)  # exponential (spectral) convergence; measured ρ ≈ 0.70
    assert errs[-1] < 1e-6


# ------------------------------------------------------------------ S²


def test_ricci_s2_round_sphere_exact():
    r0 = 1.3
    p = AxisymmetricSphere(8)
    t_star = r0 ** 2 / 2
    ts = np.linspace(0.1, 0.9, 5) * t_star
    r = integrate(p, p.initial(lambda mu: np.log(r0) + 0 * mu), 0.9 * t_star, t_out=ts)
    assert r.status == "finished"
    for t, y in zip(r.t_out, r.y_out):
        np.testing.assert_allclose(y, round_radius2(r0, 2, t), rtol=1e-8)
    np.testing.assert_allclose(r.history["area"], 4 * np.pi * round_radius2(r0, 2, r.times), rtol=1e-8)


def test_ricci_s2_moebius_sphere_stays_round():
    """g₀ = r₀² λ² g_round (a round sphere pulled back by a conformal dilation, far from constant u):
    g(t) = (r₀² − 2t) λ² g_round exactly; K = 1/(r₀² − 2t) everywhere."""
    r0, a = 1.0, 2.0
    p = AxisymmetricSphere(32)
    mu, _ = p.nodes()
    ts = [0.1, 0.25, 0.45]
    r = integrate(p, p.initial(lambda m: np.log(r0 * moebius_factor(m, a))), 0.45, t_out=ts)
    for t, y in zip(r.t_out, r.y_out):
        exact = round_radius2(r0, 2, t) * moebius_factor(mu, a) ** 2
        np.testing.assert_allclose(y, exact, rtol=1e-8)
        # K = (1 − ½Δ₀ log w)/w takes two derivatives of the integrator's atol-level noise: 1e-5
        np.testing.assert_allclose(p.curvature(y), 1 / round_radius2(r0, 2, t), rtol=1e-5)


def test_ricci_s2_area_rate_is_minus_8pi():
    p = AxisymmetricSphere(24)
    y0 = p.initial(lambda mu: 0.3 * mu + 0.2 * mu ** 2 - 0.1 * np.cos(3 * mu))
    r = integrate(p, y0, 0.3)
    a0 = r.history["area"][0]
    np.testing.assert_allclose(r.history["area"], a0 - 8 * np.pi * r.times, rtol=1e-10, atol=1e-10 * a0)
    assert r.history["K_max"][-1] - r.history["K_min"][-1] < r.history["K_max"][0] - r.history["K_min"][0]


@pytest.mark.parametrize("l", [2, 3, 4])
def test_ricci_s2_normalised_harmonic_decay_rate(l):
    """w = 1 + ε P_l: the normalised flow's l-th harmonic decays as e^{−(l(l+1)−2)τ}, τ = −½ log(1 − 2t)."""
    eps = 1e-6
    p = AxisymmetricSphere(12)
    y0 = p.initial(lambda mu: 0.5 * np.log1p(eps * np.polynomial.legendre.Legendre.basis(l)(mu)))
    t_end = 0.25  # 1 − 2t = 1/2
    r = integrate(p, y0, t_end, t_out=[t_end])
    c0 = p.normalised_coefficients(y0)[l]
    c1 = p.normalised_coefficients(r.y_out[-1])[l]
    tau = -0.5 * np.log(1 - 2 * t_end)
    assert c1 / c0 == pytest.approx(np.exp(-(l * (l + 1) - 2) * tau), rel=1e-4)


def test_ricci_s2_spectral_convergence_order_fitted():
    """Error of the Möbius solution against the exact one for L = 4 … 12: log error linear in L (spectral)."""
    a, t_end = 2.0, 0.3
    Ls, errs = [4, 6, 8, 10, 12], []
    for L in Ls:
        p = AxisymmetricSphere(L)
        mu, _ = p.nodes()
        y = integrate(p, p.initial(lambda m: np.log(moebius_factor(m, a))), t_end, t_out=[t_end], rtol=1e-12,
                      atol=1e-14).y_out[-1]
        errs.append(np.max(np.abs(y - round_radius2(1.0, 2, t_end) * moebius_factor(mu, a) ** 2)))
    slope, _ = np.polyfit(Ls, np.log(errs), 1)
    assert np.all(np.diff(np.log(errs)) < 0), errs
    assert -slope > 1.0, (slope, errs)  # error ∝ e^{−ρL}, ρ > 1 (measured ρ ≈ 1.4–1.9)


def test_ricci_s2_extinction_stops_with_last_good_state():
    p = AxisymmetricSphere(16)
    y0 = p.initial(lambda mu: 0.2 * mu ** 2)
    a0 = p.area(y0)
    r = integrate(p, y0, 10.0, curvature_limit=200.0)
    assert r.status == "singular" and "extinction" in r.message
    assert np.all(np.isfinite(r.y)) and np.all(r.y > 0)
    t_star = a0 / (8 * np.pi)
    assert 0.95 * t_star < r.t < t_star
    assert np.max(np.abs(p.curvature(r.y))) > 200.0


# ------------------------------------------------------------------ warped products S^{n+1}


def test_ricci_warped_round_s3_exact():
    r0 = 1.2
    p = WarpedProduct(2, 16)
    x = p.grid()
    t_star = r0 ** 2 / 4
    ts = np.array([0.3, 0.6, 0.9]) * t_star
    r = integrate(p, p.initial(r0 + 0 * x, r0 * np.sin(x)), 0.9 * t_star, t_out=ts)
    assert r.status == "finished"
    for t, y in zip(r.t_out, r.y_out):
        rt = np.sqrt(round_radius2(r0, 3, t))
        phi, psi = p.split(y)
        np.testing.assert_allclose(phi, rt, rtol=1e-8)
        np.testing.assert_allclose(psi, rt * np.sin(x), rtol=1e-8)


@pytest.mark.parametrize("n", [2, 3])
def test_ricci_warped_moebius_sphere_stays_round(n):
    """φ = r₀λ, ψ = r₀λ sin x (round S^{n+1} pulled back by a dilation): R = n(n+1)/(r₀² − 2nt) everywhere and
    Vol = |S^{n+1}| (r₀² − 2nt)^{(n+1)/2} — gauge invariants, as the solver runs the DeTurck flow.

    R is a second derivative over φ², so the ODE's local error is amplified ~1/x₀² ≈ 400 at the first grid
    point: with the default rtol 1e-10 the n = 3 error there is 1.2e-7 (numpy 2.4 / scipy 1.17), with
    rtol 1e-12 it is 1.3e-9 (other points 7e-11) — hence the tighter integration for a 1e-7 check."""
    p = WarpedProduct(n, 32)
    x = p.grid()
    lam = moebius_factor(np.cos(x), 1.3)
    t_end = 0.8 / (2 * n)
    r = integrate(p, p.initial(lam, lam * np.sin(x)), t_end, t_out=[t_end], rtol=1e-12, atol=1e-14)
    y = r.y_out[-1]
    c = round_radius2(1.0, n + 1, t_end)
    np.testing.assert_allclose(p.curvatures(y)[2], n * (n + 1) / c, rtol=1e-7)
    unit = {2: 2 * np.pi ** 2, 3: 8 * np.pi ** 2 / 3}[n]
    assert p.volume(y) == pytest.approx(unit * c ** ((n + 1) / 2), rel=1e-9)


def test_ricci_warped_n1_matches_conformal_s2_solver():
    """A rotationally symmetric S² two ways: g = e^{2u(cos x)}(dx² + sin²x dϑ²) by AxisymmetricSphere and as
    φ = e^u, ψ = e^u sin x by WarpedProduct(n=1). In the plain gauge (stable for n = 1) the surface flow stays
    conformal in the same coordinates, so φ² = w pointwise; in the DeTurck gauge the area agrees."""
    u = lambda mu: 0.3 * mu + 0.25 * mu ** 2  # noqa: E731
    s2 = AxisymmetricSphere(24)
    ts = [0.05, 0.15]
    ra = integrate(s2, s2.initial(u), 0.15, t_out=ts)
    for gauge in ("none", "deturck"):
        w1 = WarpedProduct(1, 48, gauge)
        x = w1.grid()
        rb = integrate(w1, w1.initial(np.exp(u(np.cos(x))), np.exp(u(np.cos(x))) * np.sin(x)), 0.15, t_out=ts)
        for ya, yb in zip(ra.y_out, rb.y_out):
            assert w1.volume(yb) == pytest.approx(s2.area(ya), rel=1e-9)
            if gauge == "none":
                phi, psi = w1.split(yb)
                w_at_x = np.exp(np.polynomial.legendre.legval(np.cos(x), s2.coefficients(np.log(ya))))
                np.testing.assert_allclose(phi ** 2, w_at_x, rtol=2e-6)  # measured 3.6e-7
                np.testing.assert_allclose(psi, phi * np.sin(x), rtol=1e-8)


def test_ricci_warped_dumbbell_neckpinch():
    p = WarpedProduct(2, 64)
    x = p.grid()
    y0 = p.initial(1.0 + 0 * x, np.sin(x) * (1 - 0.8 * np.sin(x) ** 2))
    r = integrate(p, y0, 1.0, rtol=1e-8, atol=1e-10, curvature_limit=1e3)
    assert r.status == "singular" and "neckpinch" in r.message, r.message
    assert np.all(np.isfinite(r.y))
    xn, psin = p.neck(r.y)
    _, psi = p.split(r.y)
    assert psin < 0.3 * psi.max()  # the neck pinches while the bulbs stay large
    assert abs(xn - np.pi / 2) < 0.2
    assert r.t < 0.25 * p.volume(y0)  # long before the volume could run out


# ------------------------------------------------------------------ the stepper


def test_ricci_integrate_restart_equals_uninterrupted():
    p = WarpedProduct(2, 24)
    x = p.grid()
    y0 = p.initial(1.0 + 0.1 * np.cos(2 * x), np.sin(x) * (1 - 0.3 * np.sin(x) ** 2))
    full = integrate(p, y0, 0.05)
    seen = []

    def stop_after_5(info):
        seen.append(info)
        if info.step == 5:
            raise KeyboardInterrupt

    part = integrate(p, y0, 0.05, on_step=stop_after_5)
    assert part.status == "interrupted" and part.steps == 5
    rest = integrate(p, part.y, 0.05, t0=part.t, first_step=part.h, step0=part.steps)
    assert rest.status == "finished" and rest.steps == full.steps
    np.testing.assert_array_equal(rest.y, full.y)
    np.testing.assert_array_equal(np.concatenate([part.times, rest.times[1:]]), full.times)


def test_ricci_reference_bad_input():
    with pytest.raises(ValueError, match="n: expected an even"):
        ConformalTorus(7)
    with pytest.raises(ValueError, match="u: .*NaN"):
        ConformalTorus(8).initial(lambda a, b: a / 0 * 0)
    with pytest.raises(ValueError, match="psi: must be finite and > 0"):
        WarpedProduct(2, 8).initial(1.0, -np.ones(8))
    with pytest.raises(ValueError, match="method: expected one of"):
        p = AxisymmetricSphere(4)
        integrate(p, p.initial(lambda m: 0 * m), 1.0, method="Euler")


def test_ricci_reference_curvature_at_points_interpolates():
    """R at arbitrary points (used to compare with the kernel flows pointwise): the n = 32 / L = 24 interpolants
    at the points of a finer solver equal its grid values."""
    u = lambda a, b: 0.3 * np.cos(a) * np.sin(2 * b)  # noqa: E731
    p, q = ConformalTorus(32), ConformalTorus(64)
    a, b = q.grid()
    R_fine = 2 * q.curvature(q.initial(u)).ravel()
    R_int = p.scalar_curvature_at(p.initial(u), np.stack([a.ravel(), b.ravel()], axis=1))
    assert np.max(np.abs(R_int - R_fine)) < 1e-6 * np.max(np.abs(R_fine))
    s, s2 = AxisymmetricSphere(24), AxisymmetricSphere(40)
    mu2, _ = s2.nodes()
    f = lambda m: 0.3 * m ** 2 - 0.2 * m  # noqa: E731
    np.testing.assert_allclose(s.scalar_curvature_at(s.initial(f), mu2), 2 * s2.curvature(s2.initial(f)), atol=1e-9)


@pytest.mark.parametrize("sigma", [0.3, 0.7])
def test_ricci_t2_finite_sigma_linear_mode(sigma):
    """The spectral finite-σ flow on T²: û_k(t) = û_k(0) exp(−|k|² e^{−σ²|k|²/2} t) for u = ε cos(k·θ)."""
    eps, k = 1e-7, (2, 1)
    p = ConformalTorus(16, sigma)
    y0 = p.initial(lambda a, b: eps * np.cos(k[0] * a + k[1] * b))
    k2 = k[0] ** 2 + k[1] ** 2
    rate = k2 * np.exp(-0.5 * sigma ** 2 * k2)
    t_end = 1.0 / rate
    r = integrate(p, y0, t_end, t_out=[t_end])
    assert p.mode(r.y_out[-1], k).real / p.mode(y0, k).real == pytest.approx(np.exp(-rate * t_end), rel=1e-6)
    assert r.history["area"][-1] == pytest.approx(r.history["area"][0], rel=1e-14)


class _LinearShrink:
    """y' = −2 (a round S² radius², w = 1 − 2t): a constant right-hand side that stays finite past the
    extinction, so Runge–Kutta steps jump straight over it; curvature 1/y."""

    def rhs(self, t, y):
        return -2.0 * np.ones_like(y)

    def scalars(self, y):
        return {"w": float(y[0])}

    def is_good(self, y):
        return bool(np.all(y > 0))

    def singularity(self, y, limit):
        return None if 1.0 / y[0] <= limit else f"extinction: curvature {1.0 / y[0]:.3g} > {limit:.3g}"


def test_ricci_integrate_refines_instead_of_jumping_past_extinction():
    """integrate discards a step that leaves the metrics (is_good false) and refines from the last accepted
    state: the run stops at the curvature limit just before t = ½ with a positive state, and the step cap
    it used is reported (a resume passes it on)."""
    p = _LinearShrink()
    r = integrate(p, np.ones(3), 10.0, curvature_limit=1e3)
    assert r.status == "singular" and "extinction" in r.message, r.message
    assert 0.4990 < r.t < 0.5 and np.all(r.y > 0)
    assert r.max_step < 0.5
    np.testing.assert_allclose(r.y, 1 - 2 * r.t, rtol=1e-12)
    # without refinements the discarded step ends the run with the last accepted (good) state
    r0 = integrate(p, np.ones(3), 10.0, curvature_limit=1e3, max_refinements=0)
    assert r0.status == "singular" and "stops being a metric" in r0.message and np.all(r0.y > 0) and r0.t < 0.5


_AXIS = np.array([np.sin(0.7) * np.cos(0.3), np.sin(0.7) * np.sin(0.3), np.cos(0.7)])


def test_ricci_s2_full_harmonics_tilted_moebius_sphere():
    """ConformalSphere (no symmetry): a round sphere pulled back by a dilation along a tilted axis n,
    w = λ(x·n)², evolves as (1 − 2t) λ²; error falls spectrally in L; dA/dt = −8π."""
    errs = []
    for L in (8, 12, 16):
        p = ConformalSphere(L)
        lam = moebius_factor(p.grid()[3] @ _AXIS, 2.0)
        y0 = p.initial(np.log(lam))
        r = integrate(p, y0, 0.3, t_out=[0.3])
        errs.append(np.max(np.abs(r.y_out[-1] - round_radius2(1.0, 2, 0.3) * lam ** 2)))
        assert p.area(r.y) == pytest.approx(p.area(y0) - 8 * np.pi * r.t, rel=1e-12)
    assert errs[0] > 30 * errs[1] > 900 * errs[2] and errs[2] < 5e-6, errs


def test_ricci_s2_full_harmonics_matches_axisymmetric_solver():
    u = lambda mu: 0.3 * mu + 0.25 * mu ** 2  # noqa: E731
    a, f = AxisymmetricSphere(24), ConformalSphere(12)
    ra = integrate(a, a.initial(u), 0.1, t_out=[0.1])
    rf = integrate(f, f.initial(lambda x: u(x[:, 2])), 0.1, t_out=[0.1])
    pts = f.grid()[3]
    np.testing.assert_allclose(f.scalar_curvature_at(rf.y_out[-1], pts), a.scalar_curvature_at(ra.y_out[-1], pts[:, 2]),
                               rtol=1e-6, atol=1e-6)


def test_ricci_s2_full_harmonics_nonaxisymmetric_mode_decay():
    """w = 1 + ε Y₂₁-like (x₁x₃): the normalised flow decays it at rate l(l+1) − 2 = 4."""
    eps, p = 1e-6, ConformalSphere(6)
    pts = p.grid()[3]
    y0 = p.initial(0.5 * np.log1p(eps * pts[:, 0] * pts[:, 2]))
    r = integrate(p, y0, 0.25, t_out=[0.25])
    shape = lambda y: y * 4 * np.pi / p.area(y) - 1  # noqa: E731
    ratio = np.dot(shape(r.y_out[-1]), pts[:, 0] * pts[:, 2]) / np.dot(shape(y0), pts[:, 0] * pts[:, 2])
    assert ratio == pytest.approx(np.exp(-4 * (-0.5 * np.log(1 - 2 * 0.25))), rel=1e-5)
