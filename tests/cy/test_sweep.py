"""Moduli sweeps (``ntkflow cy --psi a,b,c``, :mod:`ntkflow.cy.sweep`).

A warm start carries the previous ψ's potential exactly (its loss on the new points equals the loss of the
same ambient function recomputed independently from its pair basis), reaches the cold-start optimum to the
stopping tolerance in fewer Levenberg–Marquardt iterations; each ψ's directory loads and reproduces its σ;
an interrupted sweep resumed skips the finished ψ and equals the uninterrupted one; bad lists are refused
naming --psi. Tiny k and few points: the whole file runs in seconds.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

import ntkflow
from ntkflow.cli import main
from ntkflow.cy.cli import config_from_args, register
from ntkflow.cy import BergmanMethod, CYConfig, DataConfig, LMSettings, OutputConfig, algebra
from ntkflow.cy.basis import detect_symmetry, invariant_basis
from ntkflow.cy.job import basis_coefficients, basis_values, make_manifold, minimal_extension
from ntkflow.cy.problems import cholesky_logdet
from ntkflow.cy.sweep import common_symmetry, parse_psi_list, psi_label, run_sweep
from ntkflow.manifolds import preset, sample, sigma

N_TRAIN, N_TEST = 2000, 2000


def _config(k=5, psi=0.0, max_iter=30):
    return CYConfig(data=DataConfig(manifold="dwork-quintic", psi=psi, n_train=N_TRAIN, n_test=N_TEST, seed=0),
                    method=BergmanMethod(k=k), lm=LMSettings(max_iter=max_iter), output=OutputConfig(n_curvature=0))


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The same sweep warm and cold (k = 5, ψ = 0, 0.1, 0.2)."""
    d = tmp_path_factory.mktemp("sweeps")
    psis = (0.0, 0.1, 0.2)
    warm = run_sweep(_config(), psis, str(d / "warm"), warm=True, quiet=True)
    cold = run_sweep(_config(), psis, str(d / "cold"), warm=False, quiet=True)
    return psis, warm, cold


def test_common_group_of_the_dwork_family_is_the_group_at_nonzero_psi():
    """ψ = 0 (Fermat) has every phase of (Z_5)^5; ψ ≠ 0 only those with Σ a_i ≡ 0 (mod 5); the intersection
    is the latter, with all 120 permutations; a complex ψ is not conjugation-symmetric."""
    g0 = detect_symmetry(preset("dwork-quintic", psi=0).exponents, preset("dwork-quintic", psi=0).coefficients)
    m3 = preset("dwork-quintic", psi=0.3)
    g3 = detect_symmetry(m3.exponents, m3.coefficients)
    assert len(g0.phases) == 5 ** 5 and len(g3.phases) == 5 ** 4
    common = common_symmetry([g0, g3])
    assert {tuple(r) for r in common.phases.tolist()} == {a for a in np.ndindex(*(5,) * 5) if sum(a) % 5 == 0}
    assert len(common.perms) == 120 and common.conjugation
    mc = preset("dwork-quintic", psi=0.3 + 0.2j)
    assert not common_symmetry([g0, detect_symmetry(mc.exponents, mc.coefficients)]).conjugation


def test_basis_coefficients_recover_a_potential_and_measure_what_is_outside_the_group():
    """H(c) of a random invariant combination is recovered exactly; a potential invariant under the larger
    Fermat group is inside the common group's span (residual 0); one that breaks the phases is not."""
    m0, m3 = preset("dwork-quintic", psi=0), preset("dwork-quintic", psi=0.3)
    common = detect_symmetry(m3.exponents, m3.coefficients)
    b = invariant_basis(5, 5, common)
    c = np.random.default_rng(0).standard_normal(b.n_functions)
    got, res = basis_coefficients(b, b.combined(c))
    # the functions are independent as Hermitian matrices: the coefficients are unique
    np.testing.assert_allclose(got, c, rtol=0, atol=1e-12 * np.abs(c).max())
    assert res < 1e-13
    bf = invariant_basis(5, 5, detect_symmetry(m0.exponents, m0.coefficients))  # Fermat group ⊃ common group
    cf = np.random.default_rng(1).standard_normal(bf.n_functions)
    got, res = basis_coefficients(b, bf.combined(cf))
    np.testing.assert_allclose(b.hermitian(got), bf.hermitian(cf), atol=1e-12 * np.abs(cf).max())
    assert res < 1e-13
    full = invariant_basis(5, 5, None)  # every (k,k) function: generic ones break the phase group
    cn = np.random.default_rng(2).standard_normal(full.n_functions)
    _, res = basis_coefficients(b, full.combined(cn))
    assert res > 0.5
    with pytest.raises(ValueError, match="target: degree 4"):
        basis_coefficients(b, invariant_basis(5, 4, common).combined(np.ones(invariant_basis(5, 4, common).n_functions)))


def test_basis_values_match_the_hessian_kernels_values():
    m = preset("dwork-quintic", psi=0.2)
    b = invariant_basis(5, 4, detect_symmetry(m.exponents, m.coefficients))
    ps = sample(m, 200, seed=4, progress=False)
    _, vals = algebra.pair_hessians(b, ps.points, ps.jacobian, values=True)  # the jitted path
    np.testing.assert_allclose(basis_values(b, ps.points), vals, rtol=0, atol=1e-14 * np.abs(vals).max())


def test_minimal_extension_keeps_the_function_on_x_and_drops_what_vanishes_there(sweeps):
    """The ψ = 0 fit puts a huge coefficient on Re(Σz_i⁵ conj(Πz))/|z|^10, which vanishes on X_0 (round-off
    there) but not on X_0.1: the minimal extension changes φ on X_0 only by that round-off and stays bounded
    on X_0.1, where the raw coefficients blow up."""
    psis, warm, _ = sweeps
    prev = ntkflow.load(os.path.join(warm.out_dir, psi_label(psis[0])))
    b = invariant_basis(5, 5, warm.symmetry)
    c, _ = basis_coefficients(b, prev.basis)
    c2, n_null = minimal_extension(b, c, prev.manifold, seed=0)
    assert n_null == 2  # the constant and Re(Q_0 conj(Πz)) / |z|^10
    on_x = basis_values(b, sample(prev.manifold, 500, seed=9, progress=False).points)
    dc = c - c2
    assert np.abs(on_x @ dc).max() <= 1e-12 * np.linalg.norm(dc) * np.abs(on_x).max()
    off = basis_values(b, sample(preset("dwork-quintic", psi=psis[1]), 500, seed=9, progress=False).points)
    size = np.abs(on_x @ c2).max()
    assert np.abs(off @ c2).max() < 3 * size
    assert np.abs(off @ c).max() > 1e3 * size  # the raw extension: why the warm start needs the minimal one


def test_warm_start_carries_the_previous_potential_exactly(sweeps):
    """The warm start's loss at ψ = 0.1 equals the loss of the carried ψ = 0 potential (its minimal extension)
    recomputed here from its pair basis on the ψ = 0.1 training points (Hessians, log det, optimal
    constant), to round-off: the projection on the new whitened basis loses nothing."""
    psis, warm, _ = sweeps
    prev = ntkflow.load(os.path.join(warm.out_dir, psi_label(psis[0])))
    ws = warm.results[1].metrics["method_info"]["warm_start"]
    assert ws["used"] and ws["basis_residual"] < 1e-12 and ws["projection_residual"] < 1e-10 and ws["scale"] == 1
    b = invariant_basis(5, 5, warm.symmetry)
    carried = b.combined(minimal_extension(b, basis_coefficients(b, prev.basis)[0], prev.manifold, seed=0)[0])
    m = make_manifold(DataConfig(manifold="dwork-quintic", psi=psis[1]))
    train, _ = sample(m, N_TRAIN + N_TEST, seed=0, progress=False).split(N_TRAIN)
    g = (algebra.pack(algebra.fs_pulled(train.points, train.jacobian))
         + algebra.pair_hessians(carried, train.points, train.jacobian)[:, 0, :])
    r = cholesky_logdet(algebra.unpack(g, m.dim)) - np.log(train.omega_sq)
    w = train.weights / train.weights.mean()
    r = r - np.sum(w * r) / np.sum(w)
    np.testing.assert_allclose(ws["loss_warm"], np.mean(w * r * r), rtol=1e-9)
    assert ws["loss_warm"] < 0.05 * ws["loss_cold"]  # the neighbour's potential is already a good start


def test_warm_start_reaches_the_cold_optimum_in_fewer_iterations(sweeps):
    psis, warm, cold = sweeps
    assert [r["start"] for r in warm.rows] == ["cold", "warm", "warm"]
    assert [r["start"] for r in cold.rows] == ["cold", "cold", "cold"]
    assert warm.rows[0]["sigma_test"] == cold.rows[0]["sigma_test"]  # the first ψ is the same cold run
    for i in (1, 2):
        w, c = warm.results[i], cold.results[i]
        assert w.metrics["converged"] and c.metrics["converged"]
        assert w.metrics["iterations"] < c.metrics["iterations"], (w.metrics["iterations"], c.metrics["iterations"])
        # the same optimum to the stopping rule (relative loss decrease < gtol = 1e-6)
        np.testing.assert_allclose(w.history[-1]["loss"], c.history[-1]["loss"], rtol=1e-6)
        np.testing.assert_allclose(w.metrics["sigma_test"], c.metrics["sigma_test"], rtol=1e-4)
        m = make_manifold(DataConfig(manifold="dwork-quintic", psi=psis[i]))
        test = sample(m, 300, seed=7, progress=False)
        np.testing.assert_allclose(w.model.eta(test), c.model.eta(test), rtol=1e-4)


def test_a_path_without_warm_starts_runs_cold_and_says_so(tmp_path, capsys):
    """The matrix-free path has no warm start: every ψ starts cold, the table and the log say so."""
    cfg = _config(k=2).with_(solver="matrix-free", max_iter=3)
    res = run_sweep(cfg, (0.1, 0.2), str(tmp_path / "s"))
    assert [r["start"] for r in res.rows] == ["cold", "cold"]
    assert "warm start: not available for this path" in capsys.readouterr().out


def test_each_psi_directory_loads_and_reproduces_its_sigma(sweeps):
    psis, warm, _ = sweeps
    table = json.load(open(os.path.join(warm.out_dir, "sweep.json")))
    assert [r["psi"] for r in table["rows"]] == ["0", "0.1", "0.2"] and all(r["done"] for r in table["rows"])
    assert "| ψ | σ held-out |" in table["table_markdown"] and os.path.exists(os.path.join(warm.out_dir, "sweep.png"))
    for p, row in zip(psis, table["rows"]):
        model = ntkflow.load(os.path.join(warm.out_dir, row["dir"]))
        m = make_manifold(DataConfig(manifold="dwork-quintic", psi=p))
        _, test = sample(m, N_TRAIN + N_TEST, seed=0, progress=False).split(N_TRAIN)
        s = sigma(test, np.real(np.linalg.det(model.metric(test))))
        # 1e-6, not 1e-12: at ψ = 0 the fit carries ~1e11 on a function that vanishes on X_0 (the whitening
        # keeps its round-off), so the saved pair weights reproduce the metric only to ~1e-7
        np.testing.assert_allclose(s, row["sigma_test"], rtol=1e-6)
        assert model.manifold.psi == p


def test_interrupted_sweep_resumes_skipping_finished_psi(tmp_path):
    """Ctrl-C in the second ψ's second step; --resume skips the first ψ (its files untouched), continues the
    second from its checkpoint and equals the uninterrupted sweep."""
    psis = (0.1, 0.2, 0.4)
    cfg = _config(k=4)
    ref = run_sweep(cfg, psis, str(tmp_path / "ref"), quiet=True)
    calls = []

    def interrupt(state, record):
        calls.append(1)
        if len(calls) == ref.results[0].metrics["iterations"] + 2:
            raise KeyboardInterrupt("test")

    out = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, psis, out, quiet=True, hooks=(interrupt,))
    first = os.path.join(out, psi_label(psis[0]), "metrics.json")
    stamp = os.stat(first).st_mtime_ns
    with pytest.raises(ValueError, match="resume: .*another sweep"):
        run_sweep(cfg, (0.1, 0.2), out, resume=True, quiet=True)
    again = run_sweep(cfg, psis, out, resume=True, quiet=True)
    assert again.results[0] is None and os.stat(first).st_mtime_ns == stamp
    for a, b in zip(again.rows, ref.rows):
        assert a["start"] == b["start"] and a["iterations"] == b["iterations"]
        np.testing.assert_allclose(a["sigma_test"], b["sigma_test"], rtol=1e-10)


@pytest.mark.parametrize("argv, words", [
    (["--manifold", "dwork-quintic", "--psi", "0,,0.2"], ("argument --psi", "empty")),
    (["--manifold", "dwork-quintic", "--psi", "0,x"], ("argument --psi", "'x', not a number")),
    (["--manifold", "dwork-quintic", "--psi", "0,0.1,0"], ("argument --psi", "twice")),
    (["--manifold", "dwork-quintic", "--psi", "0.5,1"], ("--psi 0.5,1", "conifold")),
    (["--manifold", "fermat-quintic", "--psi", "0,0.1"], ("--psi 0,0.1", "no parameter")),
    (["--random-quintic", "1", "--psi", "0.1,0.2"], ("--psi 0.1,0.2", "--random-quintic")),
    (["--manifold", "dwork-quintic", "--psi", "0.1", "--sweep-start", "cold"], ("--sweep-start", "--psi")),
])
def test_bad_psi_lists_are_refused_naming_psi(tmp_path, capsys, argv, words):
    out = str(tmp_path / "o")
    try:
        rc = main(["cy", *argv, "-k", "2", "--n-train", "100", "--n-test", "50", "-q", "-o", out])
    except SystemExit as exc:  # argparse: usage error
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert not os.path.exists(os.path.join(out, "sweep.json"))


def test_single_psi_is_unchanged_and_lists_parse():
    assert parse_psi_list("0.5") == (0.5 + 0j,)
    assert parse_psi_list("0, 0.1,0.3+0.1i") == (0j, 0.1 + 0j, 0.3 + 0.1j)
    assert psi_label(0.3 + 0.1j) == "psi_0.3+0.1j" and psi_label(0) == "psi_0" and psi_label(0.95) == "psi_0.95"
    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    cfg = config_from_args(sub.choices["cy"].parse_args(["--manifold", "dwork-quintic", "--psi", "0.5"]))
    assert cfg.data.psi == 0.5 and cfg == CYConfig(data=DataConfig(manifold="dwork-quintic", psi=0.5))
