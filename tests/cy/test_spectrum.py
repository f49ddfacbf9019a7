"""The scalar Laplacian spectrum (cy/spectrum.py) against independent references: exact derivatives
against finite differences, the blocked assembly against a per-point loop, the eigensolvers against
scipy's dense generalised eigh, the flat hexagonal torus (Fermat cubic curve: ratios 1, 3, 4, 7, 9 of the
dual-lattice norms m² + mn + n², multiplicities 6, 6, 6, 12, 6), the Fermat quintic's FS levels at k' = 1
(the 24 traceless (1,1) functions split into the S₅ ⋉ (Z₅)⁴ representations of dimensions 20 and 4)."""
import json
import math
import os

import numpy as np
import pytest
import scipy.linalg

from ntkflow.cy import spectrum as sp
from ntkflow.manifolds import fs_pullback, monomials, preset, sample

EXACT_HEX = [(1, 6), (3, 6), (4, 6), (7, 12), (9, 6), (12, 6), (13, 12)]


def test_hexagonal_torus_levels_by_brute_force():
    # independent count: all (m, n) in a box, values of the dual-lattice quadratic form m² + mn + n²
    assert sp.hexagonal_torus_spectrum(7) == EXACT_HEX
    # independent: the lattice Z + τZ, τ = e^{2πi/3} (the Fermat cubic: j = 0); dual basis from the inverse
    # transpose; eigenvalues 4π²|γ*|², levels normalised by the smallest non-zero one
    B = np.array([[1.0, 0.0], [-0.5, math.sqrt(3) / 2]]).T  # columns: 1, τ
    D = np.linalg.inv(B).T
    m, n = np.meshgrid(np.arange(-8, 9), np.arange(-8, 9))
    v = D @ np.stack([m.ravel(), n.ravel()])
    q = np.sum(v ** 2, axis=0)
    q = np.round(q[q > 1e-9] / q[q > 1e-9].min(), 9)
    levels, counts = np.unique(q, return_counts=True)
    assert [(round(float(a)), int(c)) for a, c in zip(levels[:7], counts[:7])] == EXACT_HEX


def _values_ambient(z, e, scale, A):
    """Real basis values at arbitrary ambient z (not on X): Re/Im of t_a t̄_b, t = ŝ A /|z|^k."""
    k = int(e[0].sum())
    t = (monomials(z, e) * scale) @ A / np.linalg.norm(z, axis=-1)[:, None] ** k
    a, b = np.triu_indices(A.shape[1])
    p = t[:, a] * np.conj(t[:, b])
    return np.concatenate([p.real, p.imag[:, a < b]], axis=1)


@pytest.mark.parametrize("name", ["cubic-curve", "fermat-quintic"])
def test_gradients_match_finite_differences(name):
    m = preset(name)
    ps = sample(m, 6, seed=3)
    e, scale = sp.scaled_monomials(m.n_coords, 2)
    A = np.random.default_rng(0).standard_normal((len(e), 4)) + 1j * np.random.default_rng(1).standard_normal((len(e), 4))
    vals, grads = sp.basis_functions(ps, 2, A)  # (n, n_f), (n, d, n_f)
    np.testing.assert_allclose(vals, _values_ambient(ps.points, e, scale, A), rtol=1e-12, atol=1e-14)
    # ∂f/∂x_i = Σ_J P_iJ ∂f/∂z_J, ∂/∂z = (∂/∂Re z − i ∂/∂Im z)/2 by central differences
    h = 1e-6
    dz = np.zeros((len(ps), m.n_coords, vals.shape[1]), dtype=complex)
    for J in range(m.n_coords):
        E = np.zeros(m.n_coords)
        E[J] = h
        dre = (_values_ambient(ps.points + E, e, scale, A) - _values_ambient(ps.points - E, e, scale, A)) / (2 * h)
        dim = (_values_ambient(ps.points + 1j * E, e, scale, A) - _values_ambient(ps.points - 1j * E, e, scale, A)) / (2 * h)
        dz[:, J] = (dre - 1j * dim) / 2
    fd = np.einsum("ndJ,nJf->ndf", ps.jacobian, dz)
    np.testing.assert_allclose(grads, fd, atol=1e-7 * np.abs(fd).max())


def test_blocked_assembly_equals_per_point_loop():
    m = preset("fermat-quintic")
    ps = sample(m, 300, seed=1)
    g = fs_pullback(ps)
    sy = sp.assemble(ps, g, 1, block=64)
    vals, grads = sp.basis_functions(ps, 1, sy.sections)
    mu = ps.weights * np.real(np.linalg.det(g)) / ps.omega_sq
    mu = mu / mu.sum()
    nf = vals.shape[1]
    S = np.zeros((nf, nf))
    M = np.zeros((nf, nf))
    for p in range(len(ps)):  # the definition, one point at a time: 2 Re(∂f_b^H g^{-1} ∂f_a), f_a f_b
        gi = np.linalg.inv(g[p])
        S += mu[p] * 2 * np.real(np.conj(grads[p]).T @ gi @ grads[p])
        M += mu[p] * np.outer(vals[p], vals[p])
    np.testing.assert_allclose(sy.S, S, atol=1e-12 * np.abs(S).max())
    np.testing.assert_allclose(sy.M, M, atol=1e-12 * np.abs(M).max())
    np.testing.assert_allclose(sy.mean, mu @ vals, atol=1e-13)


def test_eigensolvers_equal_dense_generalised_eigh():
    m = preset("cubic-curve")
    ps = sample(m, 3000, seed=2)
    sy = sp.assemble(ps, sp.curve_flat_metric, 3)  # 81 functions
    ref = scipy.linalg.eigh(sy.S, sy.M, eigvals_only=True)  # includes λ0 = 0 (the constants)
    assert abs(ref[0]) < 1e-8 * ref[1]
    dense = sp.solve(sy, 12)
    np.testing.assert_allclose(dense.eigenvalues, ref[1:13], rtol=1e-9)
    lob = sp.solve(sy, 8, solver="lobpcg")
    np.testing.assert_allclose(lob.eigenvalues, ref[1:9], rtol=1e-6)
    assert dense.constant_residual < 1e-6  # the constants lie in the (k', k') space
    again = sp.laplacian_spectrum(preset("cubic-curve"), sp.curve_flat_metric, k_prime=3, n_points=3000, n_eigs=12,
                                  seed=2)
    np.testing.assert_allclose(again.eigenvalues, dense.eigenvalues, rtol=1e-12)


def test_flat_cubic_ratios_and_multiplicities():
    """Exact flat metric κ|Ω|² on the Fermat cubic = hexagonal torus of area 2·∫J = 6 (Riemannian metric
    2 g|dx|²): λ_1 = 4π²·(4/3)/a² with a² = 2A/√3, i.e. 8π²/(√3·6); MC error at n = 2·10⁴ ~ 1e-2."""
    ps = sample(preset("cubic-curve"), 20_000, seed=0)
    spec = sp.solve(sp.assemble(ps, sp.curve_flat_metric, 4), 36, rel_gap=0.05)
    exact = EXACT_HEX[:5]
    assert spec.multiplicities()[:5] == [c for _, c in exact]
    np.testing.assert_allclose(spec.ratios()[:5], [r for r, _ in exact], rtol=2e-2)
    assert spec.clusters[0][2] == pytest.approx(8 * math.pi ** 2 / (math.sqrt(3) * 6), rel=2e-2)


def test_symmetrized_quadrature_makes_forced_degeneracies_exact():
    """Cubic curve, FS metric, k' = 1: the 8 traceless (1,1) functions are the representations of
    S₃ ⋉ (Z₃)² ⋊ conjugation of dims 6 (z_i z̄_j, i ≠ j: six distinct Z₃² characters, permuted transitively)
    and 2 (|z_i|²/|z|² − 1/3). On the group orbit of the points the levels are exactly degenerate; on the raw
    sample they are split by the Monte-Carlo error."""
    raw = sample(preset("cubic-curve"), 100, seed=0)
    ps = sp.symmetrize(raw)
    assert len(ps) == 100 * 108
    np.testing.assert_allclose(np.abs(preset("cubic-curve").Q(ps.points)), 0, atol=1e-10)
    spec = sp.solve(sp.assemble(ps, fs_pullback, 1), 8, rel_gap=1e-6)
    assert sorted(spec.multiplicities()) == [2, 6]
    for s0, c, _ in spec.clusters:
        lam = spec.eigenvalues[s0:s0 + c]
        assert np.ptp(lam) < 1e-9 * lam.mean()
    split = sp.solve(sp.assemble(raw, fs_pullback, 1), 8, rel_gap=0.2)
    six = [(s0, c) for s0, c, _ in split.clusters if c == 6]
    assert len(six) == 1
    lam = split.eigenvalues[six[0][0]:six[0][0] + 6]
    assert np.ptp(lam) > 1e-3 * lam.mean()
    with pytest.raises(ValueError, match="Fermat"):
        sp.symmetrize(sample(preset("dwork-quintic", psi=0.5), 5, seed=0))


def test_fermat_quintic_fs_multiplicities_are_representation_dimensions():
    """k' = 1: the 24 non-constant (1,1) functions |z_i|²/|z|² − mean (the standard representation of S₅,
    dim 4) and z_i z̄_j/|z|², i ≠ j (one real irreducible representation of S₅ ⋉ (Z₅)⁴ ⋊ conjugation,
    dim 20: the Z₅-characters ζ^{a_i − a_j} separate them, S₅ permutes them transitively)."""
    ps = sample(preset("fermat-quintic"), 20_000, seed=0)
    spec = sp.solve(sp.assemble(ps, fs_pullback, 1), 24, rel_gap=0.1)
    assert spec.multiplicities() == [20, 4]
    assert spec.clusters[1][2] > 1.3 * spec.clusters[0][2]


def test_clusters_and_bad_input():
    assert sp.cluster([1.0, 1.001, 2.0, 2.0, 2.0, 5.0], 1e-2) == ((0, 2, 1.0005), (2, 3, 2.0), (5, 1, 5.0))
    ps = sample(preset("cubic-curve"), 50, seed=0)
    with pytest.raises(ValueError, match="k_prime"):
        sp.assemble(ps, sp.curve_flat_metric, 0)
    with pytest.raises(ValueError, match="metric"):
        sp.assemble(ps, np.zeros((3, 1, 1)), 1)
    with pytest.raises(ValueError, match="n_eigs"):
        sp.solve(sp.assemble(ps, sp.curve_flat_metric, 1), 50)
    with pytest.raises(ValueError, match="solver"):
        sp.solve(sp.assemble(ps, sp.curve_flat_metric, 1), 2, solver="magic")
    with pytest.raises(ValueError, match="dim 1"):
        sp.curve_flat_metric(sample(preset("quartic-k3"), 10, seed=0))


def test_cli_spectrum_of_a_learned_cubic_metric(tmp_path, capsys):
    from ntkflow.cli import build_parser, main

    run = str(tmp_path / "run")
    assert main(["cy", "--manifold", "cubic-curve", "-k", "6", "--n-train", "1000", "--n-test", "500",
                 "--n-curvature", "0", "-q", "-o", run]) == 0
    out = str(tmp_path / "spec")
    assert main(["spectrum", run, "--k-prime", "3", "--n-points", "10000", "--n-eigs", "30", "--rel-gap", "0.05",
                 "--out", out]) == 0
    res = json.load(open(os.path.join(out, "spectrum.json")))
    assert [c["multiplicity"] for c in res["clusters"]][:4] == [6, 6, 6, 12]
    np.testing.assert_allclose([c["ratio"] for c in res["clusters"]][:4], [1, 3, 4, 7], rtol=3e-2)
    assert os.path.getsize(os.path.join(out, "spectrum.png")) > 1000
    assert "multiplicity" not in capsys.readouterr().err
    assert main(["spectrum", run, "--fs", "--k-prime", "1", "--n-points", "500", "--n-eigs", "3", "--out", out]) == 0
    lams = {}
    for solver in ("matrix-free", "dense"):
        assert main(["spectrum", run, "--flat", "--solver", solver, "--k-prime", "3", "--n-points", "400",
                     "--n-eigs", "6", "--out", out]) == 0
        flat = json.load(open(os.path.join(out, "spectrum.json")))
        assert flat["metric"] == "flat"
        lams[solver] = flat["eigenvalues"]
    np.testing.assert_allclose(lams["matrix-free"], lams["dense"], rtol=1e-8)
    with pytest.raises(ValueError, match="k_prime: --k-prime must be a positive integer, received 0"):
        main(["--debug", "spectrum", run, "--k-prime", "0"])
    # --quadrature lattice: the flat torus from 20² points (k' = 4: Galerkin error 4.4e-4 at ratio 9, 4e-5
    # below it; k' = 5 to 1.4e-6 in the API test below), and the learned metric on the same points
    assert main(["spectrum", run, "--flat", "--quadrature", "lattice", "--k-prime", "4", "--n-points", "400",
                 "--n-eigs", "36", "--rel-gap", "0.05", "--out", out]) == 0
    res = json.load(open(os.path.join(out, "spectrum.json")))
    assert res["quadrature"] == "lattice" and res["n_points"] == 400
    assert [c["multiplicity"] for c in res["clusters"]][:5] == [6, 6, 6, 12, 6]
    np.testing.assert_allclose([c["ratio"] for c in res["clusters"]][:4], [1, 3, 4, 7], rtol=1e-4)
    np.testing.assert_allclose(res["clusters"][4]["ratio"], 9, rtol=1e-3)
    assert main(["spectrum", run, "--quadrature", "lattice", "--k-prime", "3", "--n-points", "400",
                 "--n-eigs", "24", "--rel-gap", "0.05", "--out", out]) == 0
    res = json.load(open(os.path.join(out, "spectrum.json")))
    assert res["metric"].startswith("model") and [c["multiplicity"] for c in res["clusters"]][:3] == [6, 6, 6]
    with pytest.raises(SystemExit):
        main(["spectrum", run, "--fs", "--quadrature", "qmc"])
    # --symmetric: the MC pencil averaged over the Fermat group (flat metric: G-invariant)
    assert main(["spectrum", run, "--flat", "--symmetric", "--k-prime", "3", "--n-points", "2000", "--n-eigs", "24",
                 "--rel-gap", "1e-6", "--out", out]) == 0
    res = json.load(open(os.path.join(out, "spectrum.json")))
    # level 1 is one 6-dim irreducible representation of G: exactly degenerate; level 2 (ratio 3) is 6-fold only
    # on the torus, not by G, and splits 4 + 2 under the Monte-Carlo error
    assert res["symmetric"] and [c["multiplicity"] for c in res["clusters"]][:3] == [6, 4, 2]
    assert np.ptp(res["eigenvalues"][:6]) < 1e-10 * res["eigenvalues"][0]
    with pytest.raises(ValueError, match="symmetric: --symmetric averages"):
        main(["--debug", "spectrum", run, "--flat", "--symmetric", "--solver", "matrix-free"])
    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "spectrum" in a.choices)
    flags = {}
    for a in sub.choices["spectrum"]._actions:
        flags.update({f: a.help for f in a.option_strings})
    for f in ("--fs", "--flat", "--k-prime", "--n-points", "--quadrature", "--symmetric", "--n-eigs", "--seed",
              "--solver", "--rel-gap", "--out"):  # the flags docs/cy.md and README use are public API
        assert f in flags, f


def test_matrix_free_operators_and_lobpcg_equal_the_assembled_pencil():
    ps = sample(preset("cubic-curve"), 600, seed=2)
    sy = sp.assemble(ps, sp.curve_flat_metric, 3)
    S, M, mean = sp.matrix_free_system(ps, sp.curve_flat_metric, 3, block=250)  # 3 blocks per product
    V = np.random.default_rng(0).standard_normal((S.shape[1], 3))
    np.testing.assert_allclose(S.mm(V), sy.S @ V, atol=1e-12 * np.abs(sy.S @ V).max())
    np.testing.assert_allclose(M.mm(V), sy.M @ V, atol=1e-12 * np.abs(sy.M @ V).max())
    np.testing.assert_allclose(mean, sy.mean, atol=1e-14)
    mf = sp.solve_matrix_free(S, M, mean, 8)
    np.testing.assert_allclose(mf.eigenvalues, sp.solve(sy, 8).eigenvalues, rtol=1e-8)


# ---- the lattice quadrature on the Fermat cubic (the flat torus C/(Z + τZ), τ = e^{2πi/3}) ----------------

TAU = np.exp(2j * np.pi / 3)


def test_weierstrass_p_against_lattice_sums_and_its_differential_equation():
    """Independent references: the invariants g₂ = 60 Σ' ω⁻⁴, g₃ = 140 Σ' ω⁻⁶ by direct sums over the lattice
    (the tail beyond |m|, |n| ≤ 300 is ≲ 1e-9 relative), ℘'² = 4℘³ − g₂℘ − g₃ at arbitrary points, the
    double periodicity, ℘ = 1/z² + O(z²) at 0, and ℘' against central differences of ℘."""
    R = 300
    m, n = np.meshgrid(np.arange(-R, R + 1), np.arange(-R, R + 1))
    w = (m + n * TAU).ravel()
    w = w[np.abs(w) > 0]
    g2 = 60 * np.sum(w ** -4.0)
    g3 = 140 * np.sum(w ** -6.0)
    assert abs(g2) < 1e-6 * abs(g3)  # the hexagonal lattice: g₂ = 0 (j = 0)
    z = np.array([0.3 + 0.2j, 0.11 - 0.4j, 0.5 + 0.5 * TAU, 0.7 + 0.05j])
    P, D = sp.weierstrass_p(z, TAU)
    np.testing.assert_allclose(D ** 2, 4 * P ** 3 - g2 * P - g3, rtol=1e-8 * abs(g3) / np.abs(D ** 2).min())
    assert abs(D[2]) < 1e-10 * abs(g3)  # 0.5 + 0.5τ is a half period: ℘' = 0 there
    for shift in (1.0, TAU):
        P2, D2 = sp.weierstrass_p(z + shift, TAU)
        np.testing.assert_allclose(P2, P, atol=1e-11 * np.abs(P).max())
        np.testing.assert_allclose(D2, D, atol=1e-11 * np.abs(D).max())
    h = 1e-5
    fd = (sp.weierstrass_p(z + h, TAU)[0] - sp.weierstrass_p(z - h, TAU)[0]) / (2 * h)
    np.testing.assert_allclose(D, fd, atol=1e-7 * np.abs(D).max())
    small = np.array([1e-3, 1e-3j, 1e-3 * TAU])
    np.testing.assert_allclose(sp.weierstrass_p(small, TAU)[0] * small ** 2, 1, atol=1e-10)


def test_cubic_lattice_points_lie_on_x_with_the_flat_weight():
    m = preset("cubic-curve")
    ps = sp.cubic_lattice_points(m, 24)
    assert len(ps) == 24 * 24
    z = ps.points / np.linalg.norm(ps.points, axis=1)[:, None]
    assert np.abs(np.sum(z ** 3, axis=1)).max() < 1e-12  # Z0³ + Z1³ + Z2³ = 0, independently of m.Q
    assert len(np.unique(np.round(z / z[:, [np.argmax(np.abs(z[0]))]], 8), axis=0)) == len(ps)  # distinct points
    # the constant weight is ∫|Ω|² d²x: the FS Monte-Carlo estimate mean(w) agrees within 4 standard errors
    mc = sample(m, 100_000, seed=5)
    se = mc.weights.std() / math.sqrt(len(mc))
    assert np.ptp(ps.weights) == 0
    assert abs(ps.weights[0] - mc.weights.mean()) < 4 * se
    with pytest.raises(ValueError, match="manifold.*Fermat cubic"):
        sp.cubic_lattice_points(preset("quartic-k3"), 4)
    with pytest.raises(ValueError, match="quadrature"):
        sp.quadrature_points(preset("fermat-quintic"), 100, quadrature="lattice")
    with pytest.raises(ValueError, match="quadrature: expected one of"):
        sp.quadrature_points(m, 100, quadrature="qmc")
    assert len(sp.quadrature_points(m, 401, quadrature="lattice")) == 21 * 21  # ⌈√401⌉² points


def _flat_levels(ps, k_prime):
    spec = sp.solve(sp.assemble(ps, sp.curve_flat_metric, k_prime), 36, rel_gap=0.05)
    return spec, np.array([c[2] for c in spec.clusters[:5]])


def test_flat_cubic_on_the_lattice_reaches_the_exact_spectrum_and_converges_exponentially_in_k_prime():
    """The flat hexagonal torus: λ_j = λ₁·(1, 3, 4, 7, 9) with multiplicities 6, 6, 6, 12, 6 (the brute-force
    count of the first test) and λ₁ = 8π²/(6√3). With the lattice quadrature (exact to rounding from 20² points,
    next test) only the Galerkin error of the (k', k') space is left: it falls exponentially in k'."""
    ps = sp.cubic_lattice_points(preset("cubic-curve"), 20)
    lam1 = 8 * math.pi ** 2 / (6 * math.sqrt(3))
    exact = np.array([r for r, _ in EXACT_HEX[:5]], dtype=float)
    err = {}
    for kp in (3, 4, 5):
        spec, lam = _flat_levels(ps, kp)
        assert spec.multiplicities()[:5] == [c for _, c in EXACT_HEX[:5]]
        err[kp] = abs(lam[0] / lam1 - 1)
        if kp == 5:
            np.testing.assert_allclose(lam / lam[0], exact, rtol=1e-5)  # measured 1.4e-6
            np.testing.assert_allclose(lam, lam1 * exact, rtol=1e-5)
    ks = np.array(sorted(err))
    slope = np.polyfit(ks, np.log([err[k] for k in ks]), 1)[0]
    assert slope < -3.0, (slope, err)  # measured −3.8 (k' = 3…8: −3.9): error ≈ e^{−3.8 k'}
    assert err[5] < 1e-6  # measured 5.9e-8


def test_lattice_quadrature_error_falls_exponentially_in_the_grid_and_beats_monte_carlo():
    """At fixed k' = 4 the eigenvalues on n_side² lattice points against those on 40² points: the error falls
    by orders of magnitude per step of n_side (trapezoidal rule on the torus); Monte Carlo on 25× more points
    is off by > 1e-3."""
    m = preset("cubic-curve")
    ref = _flat_levels(sp.cubic_lattice_points(m, 40), 4)[1]
    e = [np.max(np.abs(_flat_levels(sp.cubic_lattice_points(m, s), 4)[1] / ref - 1)) for s in (14, 16, 20)]
    assert e[0] > 10 * e[1] > 100 * e[2] and e[2] < 1e-10, e  # measured 4e-6, 1e-8, 6e-13
    mc = _flat_levels(sample(m, 10_000, seed=0), 4)[1]
    assert np.max(np.abs(mc / ref - 1)) > 1e-3


def test_group_average_equals_assembly_on_the_group_orbit():
    """The Reynolds average of (S, M) over G equals assembling on the orbit symmetrize(ps) (|G| = 108 points per
    point): the same pencil up to the basis, so the same eigenvalues (the reference builds the orbit points)."""
    raw = sample(preset("cubic-curve"), 40, seed=0)
    for kp, metric, conjugation in ((1, fs_pullback, True), (2, fs_pullback, False), (3, sp.curve_flat_metric, True)):
        orbit = sp.symmetrize(raw, conjugation=conjugation)
        ref = sp.solve(sp.assemble(orbit, metric, kp), 8, rel_gap=1e-6).eigenvalues
        got = sp.solve(sp.group_average(sp.assemble(raw, metric, kp), raw, conjugation=conjugation), 8,
                       rel_gap=1e-6).eigenvalues
        np.testing.assert_allclose(got, ref, rtol=1e-10)
    plain = sp.solve(sp.assemble(raw, sp.curve_flat_metric, 3), 8, rel_gap=1e-6).eigenvalues
    assert np.max(np.abs(plain / ref - 1)) > 1e-3  # the average changes the (noisy) raw pencil


def test_group_average_makes_the_quintic_levels_exactly_degenerate():
    """Fermat quintic, FS, k' = 1 on 2000 Monte-Carlo points: averaged over S₅ ⋉ (Z₅)⁴ ⋊ conjugation
    (|G| = 150 000) the 24 levels are exactly 20 + 4 (the representation dimensions), where the raw sample
    splits them by the Monte-Carlo error."""
    ps = sample(preset("fermat-quintic"), 2000, seed=0)
    sy = sp.assemble(ps, fs_pullback, 1)
    spec = sp.solve(sp.group_average(sy, ps), 24, rel_gap=1e-8)
    assert spec.multiplicities() == [20, 4]
    for s0, c, lam in spec.clusters:
        assert np.ptp(spec.eigenvalues[s0:s0 + c]) < 1e-10 * lam
    raw = sp.solve(sy, 24, rel_gap=1e-8)
    assert len(raw.clusters) > 2
    with pytest.raises(ValueError, match="Fermat"):
        dw = sample(preset("dwork-quintic", psi=0.5), 100, seed=0)
        sp.group_average(sp.assemble(dw, fs_pullback, 1), dw)
    with pytest.raises(ValueError, match="assembled on 2000 points"):
        sp.group_average(sy, sample(preset("fermat-quintic"), 100, seed=0))


# ---- complete intersections -----------------------------------------------------------------------------------

def test_cicy_spectrum_of_the_quintic_written_as_a_complete_intersection_equals_the_hypersurface_one():
    """The Galerkin pencil is a sum of chart-independent scalars: the Fermat quintic as a one-factor CICY
    (multi-degree sections, per-factor shift, CICY weights and charts) gives the hypersurface code's eigenvalues on
    the same points; the CICY pencil also equals its matrix-free operators."""
    from ntkflow.manifolds import pointset_from_points
    from ntkflow.manifolds.cicy import CompleteIntersection, cicy_fs_pullback, sample_cicy

    mh = preset("fermat-quintic")
    mc = CompleteIntersection((4,), ((mh.exponents, mh.coefficients),), name="quintic-as-cicy")
    pc = sample_cicy(mc, 500, seed=3)
    ph = pointset_from_points(mh, pc.points)
    sc = sp.assemble(pc, lambda ps: cicy_fs_pullback(ps, [1.0]), 2)
    sh = sp.assemble(ph, fs_pullback, 2)
    lc, lh = sp.solve(sc, 10).eigenvalues, sp.solve(sh, 10).eigenvalues
    np.testing.assert_allclose(lc, lh, rtol=1e-9)
    S, M, mean = sp.matrix_free_system(pc, lambda ps: cicy_fs_pullback(ps, [1.0]), 2, block=200)
    V = np.random.default_rng(1).standard_normal((S.shape[1], 2))
    np.testing.assert_allclose(S.mm(V), sc.S @ V, atol=1e-12 * np.abs(sc.S @ V).max())
    np.testing.assert_allclose(M.mm(V), sc.M @ V, atol=1e-12 * np.abs(sc.M @ V).max())


def test_cicy_gradients_match_finite_differences():
    """∂_a of the product basis functions (per-factor shift) against central differences in the chart of each
    point (x_a → x_a + h, the eliminated coordinates re-solved by Newton via cicy_pointset_from_points)."""
    from ntkflow.manifolds.cicy import cicy_preset, sample_cicy

    ps = sample_cicy(cicy_preset("bicubic", seed=0), 4, seed=2)
    vals, grads = sp.basis_functions(ps, 1)
    m = ps.manifold
    kept = ps.kept  # (n, dim) indices of the local coordinates
    from ntkflow.manifolds.cicy import cicy_pointset_from_points
    for i in range(len(ps)):
        for a in range(ps.dim):
            fd = []
            for h in (1e-6, -1e-6):
                z = ps.points[i].copy()
                z[kept[i, a]] += h
                # back onto X by Newton in the eliminated coordinates
                for _ in range(30):
                    e = ps.elim[i]
                    dq = m.dQ(z[None])[0][:, e]  # (K, K)
                    z[e] -= np.linalg.solve(dq, m.Q(z[None])[0])
                q = cicy_pointset_from_points(m, z[None], patch=ps.patch[i:i + 1], elim=ps.elim[i:i + 1])
                fd.append(sp.basis_functions(q, 1)[0][0])
            d = (fd[0] - fd[1]) / 2e-6  # ∂/∂x_a of the real functions along a real step: ∂ + ∂̄ = 2 Re ∂
            np.testing.assert_allclose(d, 2 * grads[i, a].real, atol=1e-6 * np.abs(vals[i]).max() + 1e-7)
