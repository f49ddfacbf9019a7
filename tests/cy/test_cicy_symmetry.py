"""Symmetry on products of projective spaces and the dense (symmetric-basis) path on complete intersections.

References: the group acts on X (Q_j(γz) = 0 for points z of X, each γ), the invariant (k,k) functions are the
null space of (A_γ − I) over the group's generators on the real space of Hermitian H (an SVD, independent of the
orbit sums), the Hessians of the basis against JAX autodiff of the same potential (``cicy_metric_jax``), and the
learned metric is Γ-invariant: η = det g/|Ω|² is the same at z and γz."""
from __future__ import annotations

import json

import numpy as np
import pytest

import ntkflow
from ntkflow.cli import main
from ntkflow.cy.algebra import Factors, pack, pair_hessians, unpack
from ntkflow.cy.basis import detect_symmetry, detect_symmetry_products, invariant_basis
from ntkflow.cy.model import CICYSectionModel
from ntkflow.manifolds import build_manifold, sigma_weighted
from ntkflow.manifolds.cicy import (cicy_metric_jax, cicy_pointset_from_points, cicy_preset,
                                    sample_cicy)


def _sizes(m):
    return tuple(n + 1 for n in m.ambient)


def _act(z, phase, modulus, perm, conj=False):
    """γz: (γz)_i = ω^{a_i} z_{p_i}, then z ↦ z̄ when ``conj``."""
    w = z[:, perm] * np.exp(2j * np.pi * np.asarray(phase) / modulus)[None, :]
    return np.conj(w) if conj else w


def _q_rel(m, z):
    q = np.abs(m.Q(z))
    return float(np.max(q / np.maximum(m.term_scale(z), 1e-300)))


@pytest.mark.parametrize("name,kw,n_eff,n_perm,conj", [
    ("bicubic", {}, 81, 12, True),  # (Z_3)^2 × (Z_3)^2 phases; S_3 acting on both factors at once × the swap
    ("tetraquadric", {}, 16, 48, True),  # a sign per factor; S_4 of the factors × flipping every factor at once
    ("p5-33", {}, 243, 6, False),  # (Z_3)^6 / diagonal; the Z_6 rotation Z_i → Z_{i+1} (Σ ζ^i Z_i³ ↦ ζ^{-1} ·)
    ("p5-33", {"psi": 0.5}, 27, 72, True),  # charges summing to 0 on each triple; S_3 × S_3 × swapping the triples
])
def test_detected_group_maps_x_to_itself(name, kw, n_eff, n_perm, conj):
    m = cicy_preset(name, **kw)
    sym = detect_symmetry_products(m.polynomials, _sizes(m))
    assert not sym.trivial and sym.conjugation == conj and len(sym.perms) == n_perm
    assert len(sym.phases) // int(np.sum(sym._trivial_rows())) == n_eff
    ps = sample_cicy(m, 30, seed=2)
    z = ps.points
    rng = np.random.default_rng(0)
    ident = np.arange(m.n_coords)
    elements = [(a, ident, False) for a in sym.phases[rng.choice(len(sym.phases), 20)]]
    elements += [(np.zeros(m.n_coords, int), p, False) for p in sym.perms]
    elements += [(np.zeros(m.n_coords, int), ident, True)] if conj else []
    for a, p, c in elements:
        assert _q_rel(m, _act(z, a, sym.modulus, p, c)) < 1e-10
    # and what it leaves out is not a symmetry: a permutation outside the group moves points off X
    if name == "p5-33" and not kw:
        bad = np.array([1, 0, 2, 3, 4, 5])
        assert not any(np.array_equal(bad, p) for p in sym.perms)
        assert _q_rel(m, _act(z, np.zeros(6, int), 1, bad)) > 1e-3
        assert _q_rel(m, np.conj(z)) > 1e-3


def test_one_factor_one_equation_is_the_hypersurface_group():
    m = build_manifold("fermat-quintic")
    a = detect_symmetry(m.exponents, m.coefficients)
    b = detect_symmetry_products([(m.exponents, m.coefficients)], (5,))
    assert {tuple(r) for r in a.phases.tolist()} == {tuple(r) for r in b.phases.tolist()}
    assert {tuple(r) for r in a.perms.tolist()} == {tuple(r) for r in b.perms.tolist()}
    assert a.conjugation == b.conjugation and a.modulus == b.modulus
    ba, bb = invariant_basis(5, 3, a), invariant_basis(5, 3, b, exponents=Factors.one(5, 3).exponents())
    assert ba.n_functions == bb.n_functions and np.array_equal(ba.alpha, bb.alpha) and np.allclose(ba.weight, bb.weight)


def test_random_member_has_only_the_trivial_group():
    m = cicy_preset("bicubic", seed=0)
    assert detect_symmetry_products(m.polynomials, _sizes(m)).trivial


def _generators(elements, mul):
    """A generating set of the group ``elements`` (greedy: each new generator is outside the closure so far)."""
    gens, group = [], set()
    for e in elements:
        if tuple(e) in group:
            continue
        gens.append(np.asarray(e))
        frontier = [np.asarray(e)] + [np.asarray(g) for g in group]
        group.add(tuple(e))
        while frontier:  # close under multiplication by the generators
            x = frontier.pop()
            for g in gens:
                y = mul(x, g)
                if tuple(y) not in group:
                    group.add(tuple(y))
                    frontier.append(y)
    return gens


def _action_matrices(sym, exps):
    """Real (2N_k², 2N_k²)-free form: for each generator γ the matrix D_γ with s(γz) = D_γ s(z) (N_k, N_k), and
    whether γ conjugates. A function s†Hs̄-type f_H(z) = s(z)ᵀ H conj(s(z)) is invariant iff D_γᵀ H conj(D_γ) = H
    (or its conjugate for an antilinear γ)."""
    index = {tuple(r): i for i, r in enumerate(exps.tolist())}
    out = []
    gens = [(a, np.arange(exps.shape[1]), False) for a in _generators(sym.phases, lambda a, b: (a + b) % sym.modulus)]
    gens += [(np.zeros(exps.shape[1], int), p, False) for p in _generators(sym.perms, lambda a, b: a[b])]
    if sym.conjugation:
        gens.append((np.zeros(exps.shape[1], int), np.arange(exps.shape[1]), True))
    for a, p, c in gens:
        d = np.zeros((len(exps), len(exps)), complex)
        for i, e in enumerate(exps.tolist()):
            # (γz)^e = Π (ω^{a_j} z_{p_j})^{e_j} = ω^{a·e} z^{e'} with e'_{p_j} = e_j
            e2 = [0] * len(e)
            for j, pj in enumerate(p):
                e2[pj] += e[j]
            d[i, index[tuple(e2)]] = np.exp(2j * np.pi * (np.dot(a, e) % sym.modulus) / sym.modulus)
        out.append((d, c))
    return out


@pytest.mark.parametrize("name,kw,degrees", [("tetraquadric", {}, (1, 1, 1, 1)), ("bicubic", {}, (1, 1)),
                                              ("p5-33", {"psi": 0.5}, (2,)), ("p5-33", {}, (2,))])
def test_invariant_basis_spans_exactly_the_invariant_hermitian_matrices(name, kw, degrees):
    """dim of the Γ-invariant real (k,k) functions by linear algebra (null space of A_γ − I over the generators on
    the real vector space of Hermitian H), against the number of orbit-sum functions; each basis H is invariant."""
    m = cicy_preset(name, **kw)
    f = Factors(_sizes(m), degrees)
    exps = f.exponents()
    sym = detect_symmetry_products(m.polynomials, f.sizes)
    b = invariant_basis(f.n_coords, sum(degrees), sym, exponents=exps)
    nk = len(exps)
    # real coordinates of Hermitian H: (Re H_ij, i ≤ j; Im H_ij, i < j)
    iu = np.triu_indices(nk)
    iu1 = np.triu_indices(nk, 1)

    def to_h(v):
        h = np.zeros((nk, nk), complex)
        h[iu] = v[:len(iu[0])]
        h[iu1] += 1j * v[len(iu[0]):]
        return h + np.conj(np.triu(h, 1)).T

    def from_h(h):
        return np.concatenate([h[iu].real, h[iu1].imag])

    dim = len(iu[0]) + len(iu1[0])
    basis_h = np.eye(dim)
    blocks = []
    for d, c in _action_matrices(sym, exps):
        cols = []
        for v in basis_h:
            h = to_h(v)
            g = d.T @ h @ np.conj(d)  # f_H(γz) = s(z)ᵀ Dᵀ H conj(D) conj(s(z))
            if c:  # γ antilinear: f_H(conj w) = f_{conj H}(w)
                g = np.conj(g)
            cols.append(from_h(g) - v)
        blocks.append(np.array(cols).T)
    a = np.vstack(blocks)
    sv = np.linalg.svd(a, compute_uv=False)
    null_dim = dim - int(np.sum(sv > 1e-9 * sv[0]))
    assert b.n_functions == null_dim
    # every basis matrix is invariant (a residual of round-off)
    for j in range(b.n_functions):
        e = np.zeros(b.n_functions)
        e[j] = 1.0
        assert np.abs(a @ from_h(b.hermitian(e))).max() < 1e-12


@pytest.mark.parametrize("name,kw,k,t", [("p5-33", {"psi": 0.5}, 2, None), ("bicubic", {}, 1, (1, 2))])
def test_product_hessians_equal_autodiff_of_the_identity_potential(name, kw, k, t):
    """g_t + Σ c_a (1/π)∂∂̄f_a from the packed Hessians (JAX and NumPy backends) equals the metric of
    K = (1/π)[Σ_a (k_a/k) log|z^(a)|² + f] by autodiff through the implicit embedding."""
    m = cicy_preset(name, **kw)
    t = t or (1,) * m.n_factors
    f = Factors(_sizes(m), tuple(k * ta for ta in t))
    sym = detect_symmetry_products(m.polynomials, f.sizes)
    b = invariant_basis(f.n_coords, k, sym, exponents=f.exponents())
    ps = sample_cicy(m, 12, seed=4)
    c = 0.02 * np.random.default_rng(1).standard_normal(b.n_functions)
    hj = pair_hessians(b, ps.points, ps.jacobian, factors=f)
    hn = pair_hessians(b, ps.points, ps.jacobian, factors=f, backend="numpy")
    assert np.abs(hj - hn).max() < 1e-12 * np.abs(hn).max()
    g0 = pack(f.fs_sum(ps.points, ps.jacobian, np.asarray(f.degrees) / k))
    g = unpack(g0 + np.einsum("npq,p->nq", hn, c), ps.dim)
    model = CICYSectionModel(manifold=m, factors=f, k=k, H=b.hermitian(c), link="identity")
    ga = cicy_metric_jax(ps, model.potential_jax())
    assert np.abs(g - ga).max() < 1e-11 * np.abs(ga).max()
    assert np.abs(model.metric(ps) - ga).max() < 1e-11 * np.abs(ga).max()


@pytest.mark.parametrize("link", ["log", "identity"])
def test_sparse_h_metric_equals_autodiff_of_the_dense_potential(link):
    """A symmetric model's H is non-zero only on its invariant pairs, and the model multiplies by it as a sparse
    matrix: its metric equals autodiff of sᵀHs̄ with the dense H (``potential_jax``), and the same model with the
    dense products. P⁵[3,3] Fermat type, k = 4 (no conjugation in its group, so H is complex, not real symmetric)."""
    m = cicy_preset("p5-33")
    f = Factors(_sizes(m), (4,))
    b = invariant_basis(f.n_coords, 4, detect_symmetry_products(m.polynomials, f.sizes), exponents=f.exponents())
    rng = np.random.default_rng(3)
    c = 0.02 * rng.standard_normal(b.n_functions)
    if link == "log":  # sᵀHs̄ > 0: H = identity part + a small invariant perturbation
        c[0] += 1.0
    H = b.hermitian(c)
    model = CICYSectionModel(manifold=m, factors=f, k=4, H=H, link=link)
    assert model._sparse is not None and np.count_nonzero(H) < 0.05 * H.size and np.abs(H - H.T).max() > 1e-3
    ps = sample_cicy(m, 10, seed=5)
    ga = cicy_metric_jax(ps, model.potential_jax())
    g = model.metric(ps)
    assert np.abs(g - ga).max() < 1e-10 * np.abs(ga).max()
    object.__setattr__(model, "_sparse", None)  # the dense products on the same H
    assert np.abs(model.metric(ps) - g).max() < 1e-13 * np.abs(g).max()


def test_dense_cicy_job_beats_fs_tenfold_and_its_metric_is_invariant(tmp_path, capsys):
    """``ntkflow cy --manifold p5-33 --psi 0.5`` takes the dense symmetric path by default: held-out σ ≥ 10× below
    FS at k = 4 (measured 5e-3 against 0.13), the saved model reproduces it, and η is Γ-invariant."""
    out = tmp_path / "d"
    assert main(["cy", "--manifold", "p5-33", "--psi", "0.5", "-k", "4", "--n-train", "3000", "--n-test", "1500",
                 "--n-curvature", "0", "-q", "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["solver"] == "dense" and metrics["method_info"]["link"] == "identity"
    assert "permutations: 72" in metrics["method_info"]["symmetry"]
    assert metrics["sigma_test"] < 0.1 * metrics["fs_baseline"]["sigma_test"]
    model = ntkflow.load(out)
    assert isinstance(model, CICYSectionModel) and model.link == "identity"
    m = model.manifold
    test = sample_cicy(m, 4500, seed=0)[3000:]
    det = np.real(np.linalg.det(model.metric(test)))
    assert abs(sigma_weighted(det / test.omega_sq, test.weights) - metrics["sigma_test"]) < 1e-10
    sym = detect_symmetry_products(m.polynomials, _sizes(m))
    ps = sample_cicy(m, 50, seed=9)
    eta = np.real(np.linalg.det(model.metric(ps))) / ps.omega_sq
    for a, p, c in ((sym.phases[5], np.arange(6), False), (np.zeros(6, int), sym.perms[7], False),
                    (np.zeros(6, int), np.arange(6), True)):
        moved = cicy_pointset_from_points(m, _act(ps.points, a, sym.modulus, p, c))
        eta2 = np.real(np.linalg.det(model.metric(moved))) / moved.omega_sq
        assert np.abs(eta2 / eta - 1).max() < 1e-9
    # without the group (--symmetry none) the same member runs the matrix-free path
    assert main(["cy", "--manifold", "p5-33", "--psi", "0.5", "-k", "1", "--symmetry", "none", "--n-train", "400",
                 "--n-test", "200", "--max-iter", "1", "--n-curvature", "0", "-q", "-o", str(tmp_path / "n")]) == 0
    assert json.loads((tmp_path / "n" / "metrics.json").read_text())["solver"] == "matrix-free"


def test_cicy_sweep_warm_equals_cold_and_starts_closer(tmp_path):
    """``ntkflow cy --manifold p5-33 --psi 0.3,0.6`` on the dense path with the family's common group: the warm
    start (the ψ = 0.3 potential carried to ψ = 0.6) starts below the cold start's loss and converges to the same
    held-out σ as the cold sweep."""
    rows = {}
    for start in ("warm", "cold"):
        assert main(["cy", "--manifold", "p5-33", "--psi", "0.3,0.6", "-k", "3", "--n-train", "2000", "--n-test",
                     "1000", "--n-curvature", "0", "--sweep-start", start, "-q", "-o", str(tmp_path / start)]) == 0
        rows[start] = json.loads((tmp_path / start / "sweep.json").read_text())["rows"]
    assert [r["start"] for r in rows["warm"]] == ["cold", "warm"]
    assert [r["start"] for r in rows["cold"]] == ["cold", "cold"]
    info = json.loads((tmp_path / "warm" / "psi_0.6" / "metrics.json").read_text())["method_info"]
    assert info["warm_start"]["used"] and info["warm_start"]["loss_warm"] < 0.5 * info["warm_start"]["loss_cold"]
    for rw, rc in zip(rows["warm"], rows["cold"]):
        assert rw["sigma_test"] == pytest.approx(rc["sigma_test"], rel=1e-4)


def test_functions_independent_on_x_are_h0_squared_and_span_the_dropped_ones():
    """independent_on_points (the dense CICY path keeps only these): on P⁵[3,3] the real (3,3) functions s_α s̄_β
    restricted to X span H⁰(X,O(3)) ⊗ conj H⁰(X,O(3)), of dimension (56 − 2)² = 2916 (the two cubics), so exactly
    2916 of the 56² = 3136 functions are kept; on the bicubic at (2,2) nothing vanishes on X (36² of 36²). Every
    dropped function equals a combination of the kept ones at fresh points of X (least squares, 1e-8 relative)."""
    from ntkflow.cy.basis import no_symmetry
    from ntkflow.cy.job import basis_values, independent_on_points

    m = cicy_preset("p5-33", psi=0.5)
    b = invariant_basis(m.n_coords, 3, no_symmetry(m.n_coords), exponents=Factors((6,), (3,)).exponents())
    assert b.n_functions == 56 ** 2
    kept_b, kept = independent_on_points(b, sample_cicy(m, 3500, seed=1).points)
    assert kept_b.n_functions == 54 ** 2
    fresh = sample_cicy(m, 3200, seed=2).points
    v_all, v_kept = basis_values(b, fresh), basis_values(kept_b, fresh)
    np.testing.assert_allclose(v_kept, v_all[:, kept], rtol=1e-12, atol=0)  # subset() keeps the same functions
    dropped = np.setdiff1d(np.arange(b.n_functions), kept)
    coef = np.linalg.lstsq(v_kept, v_all[:, dropped], rcond=None)[0]
    resid = np.linalg.norm(v_kept @ coef - v_all[:, dropped], axis=0) / np.linalg.norm(v_all[:, dropped], axis=0)
    assert resid.max() < 1e-8
    m2 = cicy_preset("bicubic")
    b2 = invariant_basis(m2.n_coords, 2, no_symmetry(m2.n_coords), exponents=Factors((3, 3), (2, 2)).exponents())
    assert independent_on_points(b2, sample_cicy(m2, 1600, seed=3).points)[0].n_functions == 36 ** 2


def test_job_keeps_as_many_functions_as_the_whitening_of_the_full_basis_finds_on_the_tetraquadric():
    """The job's selection (_independent_on_training_points, random training points) against an independent count:
    the rank of the Laplacians tr(g_FS⁻¹ G_a) of the full invariant basis (the whitening of MAProblem) plus the
    constant, whose Hessian is zero. Tetraquadric k = 5 (1587 invariant functions, 962 independent on X): its
    sampler's points share all factors but one within a group, and taking the first points instead found 647."""
    from ntkflow.cy.gauss_newton import MAProblem, whitening
    from ntkflow.cy.job import _independent_on_training_points, cicy_factors, cicy_symmetry

    m = cicy_preset("tetraquadric")
    f = cicy_factors(m, 5, ())
    b = invariant_basis(m.n_coords, 5, cicy_symmetry(m), exponents=f.exponents())
    ps = sample_cicy(m, 4000, seed=4)
    kept = _independent_on_training_points(b, ps.points)
    h = pair_hessians(b, ps.points[:2500], ps.jacobian[:2500], factors=f)
    g0 = pack(f.fs_sum(ps.points[:2500], ps.jacobian[:2500], np.ones(4)))
    prob = MAProblem(g0=g0, hess=h, log_omega=np.log(ps.omega_sq[:2500]), weights=ps.weights[:2500], dim=3)
    assert b.n_functions == 1587
    assert kept.n_functions == whitening(prob).shape[1] + 1 == 962
