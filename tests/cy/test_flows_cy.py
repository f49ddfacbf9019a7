"""The main job end to end on small problems: exact flat metric on the cubic curve, Kähler class,
checkpoint/resume, saved models, the eval command, curvature."""
import json
import os

import numpy as np
import pytest

import ntkflow
from ntkflow.cy import (BergmanMethod, CYConfig, DataConfig, DonaldsonMethod, DualMethod, LMSettings, NetworkMethod,
                        OutputConfig, run_cy)
from ntkflow.manifolds import preset, sample, save_points


def _cfg(method=None, *, manifold="fermat-quintic", n_train, n_test, seed=0, max_iter=20, gtol=1e-6,
         time_budget=0.0, **bergman):
    """A CYConfig without curvature; ``bergman`` options build the BergmanMethod when no method is given."""
    return CYConfig(DataConfig(manifold=manifold, n_train=n_train, n_test=n_test, seed=seed),
                    method if method is not None else BergmanMethod(**bergman),
                    LMSettings(max_iter=max_iter, gtol=gtol, time_budget=time_budget), OutputConfig(n_curvature=0))


def test_cubic_curve_reaches_the_exact_flat_metric():
    """On an elliptic curve the Ricci-flat metric is exactly g = κ|Ω|² (dim 1: det g = g)."""
    res = run_cy(_cfg(manifold="cubic-curve", k=9, n_train=2000, n_test=2000, max_iter=20, gtol=1e-12), None, quiet=True)
    held = sample(preset("cubic-curve"), 4000, seed=123)  # fresh points, not the training sample
    eta = res.model.eta(held)
    rel = np.abs(eta / np.mean(eta) - 1.0)
    assert rel.max() <= 1e-5, rel.max()
    # and the constant is the κ of the class: mean(w η)/mean(w) = ∫J/Vol_CY
    kap = np.mean(held.weights * eta) / np.mean(held.weights)
    assert abs(kap / np.exp(res.model.log_kappa) - 1.0) < 1e-5


def test_kahler_class_is_preserved():
    """∫J³ = mean(w η) is the intersection number 5 for the learned metric too (the potential is
    global): within the Monte-Carlo error of the FS estimate on the same points."""
    res = run_cy(_cfg(k=6, n_train=3000, n_test=20000, max_iter=8), None, quiet=True)
    test = sample(preset("fermat-quintic"), 23000, seed=0)[3000:]
    eta = res.model.eta(test)
    from ntkflow.manifolds import fs_det, mean_stderr

    # FS: w = 5|Ω|²/det g_FS, so the FS estimate is exact pointwise
    assert np.mean(test.weights * fs_det(test) / test.omega_sq) == pytest.approx(5.0, rel=1e-10)
    vol, err = mean_stderr(test.weights * eta)
    assert err < 0.05
    assert abs(vol - 5.0) < 4 * err, (vol, err)
    # and the learned class is that of FS on the *training* sample too (LM could move the mean of
    # log det freely, but not ∫ det g)
    assert res.metrics["sigma_test"] < 0.01


_PATHS = {
    "dense": lambda **kw: _cfg(k=6, n_train=1500, n_test=1500, gtol=0.0, **kw),
    "matrix-free": lambda **kw: _cfg(k=2, symmetry="none", solver="matrix-free", n_train=600, n_test=300, gtol=0.0,
                                     **kw),
    "dual": lambda **kw: _cfg(DualMethod(kernel="gaussian", s2=0.3, centers=40, tile=64), n_train=400, n_test=200,
                              gtol=0.0, **kw),
}


@pytest.mark.parametrize("path", sorted(_PATHS))
def test_resume_equals_uninterrupted_run(tmp_path, path):
    """Interrupted at step 2 (Ctrl-C in a hook after the checkpoint) or stopped by the time budget after one
    step, then resumed: the same history (with σ), model and σ as the uninterrupted run, on every path."""
    cfg = _PATHS[path](max_iter=4)
    full = run_cy(cfg, str(tmp_path / "full"), quiet=True)
    assert full.metrics["solver"] == path and full.metrics["iterations"] == 4
    assert full.metrics["status"]["name"] == "MAX_ITER" and "max_iter" in full.metrics["status"]["message"]

    class Stop(KeyboardInterrupt):
        pass

    def interrupt(state, record):
        if state.iteration == 2:
            raise Stop()

    with pytest.raises(KeyboardInterrupt):
        run_cy(cfg, str(tmp_path / "cut"), quiet=True, hooks=[interrupt])
    assert os.path.exists(tmp_path / "cut" / "checkpoint.npz") and os.path.exists(tmp_path / "cut" / "checkpoint.json")
    assert not os.path.exists(tmp_path / "cut" / "metrics.json")
    resumed = run_cy(cfg, str(tmp_path / "cut"), resume=True, quiet=True)
    # a budget spent after the first step: written with status TIME_BUDGET, then continued by --resume
    short = run_cy(_PATHS[path](max_iter=4, time_budget=1e-9), str(tmp_path / "budget"), quiet=True)
    assert short.metrics["status"]["name"] == "TIME_BUDGET" and short.metrics["iterations"] == 1
    continued = run_cy(cfg, str(tmp_path / "budget"), resume=True, quiet=True)
    for other in (resumed, continued):
        assert len(other.history) == len(full.history) == 4
        for a, b in zip(other.history, full.history):
            for key in ("loss", "lam", "accepted", "sigma_train", "sigma_test"):
                assert a[key] == pytest.approx(b[key], rel=1e-12), (key, a, b)
        assert other.metrics["sigma_test"] == pytest.approx(full.metrics["sigma_test"], rel=1e-10)
        fresh = sample(preset("fermat-quintic"), 30, seed=77)
        np.testing.assert_allclose(other.model.metric(fresh), full.model.metric(fresh), rtol=1e-10, atol=1e-14)
    saved = json.load(open(tmp_path / "cut" / "history.json"))
    assert [h["loss"] for h in saved] == [h["loss"] for h in full.history]
    # a checkpoint from other settings is refused with an explanation
    with pytest.raises(ValueError, match="different settings"):
        run_cy(_PATHS[path](max_iter=4, seed=1), str(tmp_path / "cut"), resume=True, quiet=True)


def test_saved_model_roundtrip_and_eval_cli(tmp_path, capsys):
    out = str(tmp_path / "run")
    res = run_cy(_cfg(k=4, n_train=1500, n_test=1500, max_iter=5), out, quiet=True)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    for key in ("sigma_test", "sigma_train", "fs_baseline", "timings", "settings", "kappa", "status", "iterations",
                "method_info", "ricci_measure", "euler"):
        assert key in metrics
    assert metrics["status"]["name"] in ("CONVERGED", "MAX_ITER")
    assert os.path.exists(os.path.join(out, "convergence.png"))
    model = ntkflow.load(out)
    ps = sample(preset("fermat-quintic"), 300, seed=9)
    g = model.metric(ps)
    assert g.shape == (300, 3, 3) and g.dtype == np.complex128
    np.testing.assert_allclose(g, np.conj(np.swapaxes(g, 1, 2)), atol=1e-14)
    np.testing.assert_allclose(g, res.model.metric(ps), rtol=1e-12)
    np.testing.assert_allclose(model.eta(ps.points), np.real(np.linalg.det(g)) / ps.omega_sq, rtol=1e-10)
    # potential: (1/π)(log|z|² + φ), and plain arrays in any scaling give the same answers
    K = model.potential(ps)
    np.testing.assert_allclose(model.potential(3.0j * ps.points), K, rtol=1e-12)
    # `ntkflow eval DIR POINTS.npz`
    pts = str(tmp_path / "pts.npz")
    save_points(pts, ps)
    from ntkflow.cli import main

    assert main(["eval", out, pts, "--n-curvature", "0"]) == 0
    text = capsys.readouterr().out
    assert "sigma" in text
    with pytest.raises(FileNotFoundError, match="ntkflow cy"):
        ntkflow.load(str(tmp_path / "nothing"))


def test_holomorphic_curvature_matches_manifolds_autodiff():
    """The fast holomorphic-derivative curvature equals the generic real-autodiff one (FS here; the
    learned metric in the slow test below)."""
    from ntkflow.cy.curvature import fs_gfun, holomorphic_curvature
    from ntkflow.manifolds import curvature

    m = preset("fermat-quintic")
    ps = sample(m, 24, seed=4)
    ref = curvature(ps)
    got = holomorphic_curvature(m, fs_gfun, ps, batch=24)
    for f in ("det_g", "ricci_scalar", "chern_top"):
        np.testing.assert_allclose(getattr(got, f), getattr(ref, f), rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_holomorphic_curvature_of_learned_metric_matches_generic_autodiff():
    from ntkflow.cy.curvature import holomorphic_curvature
    from ntkflow.manifolds import curvature

    m = preset("fermat-quintic")
    ps = sample(m, 8, seed=4)
    res = run_cy(_cfg(k=4, n_train=1000, n_test=1000, max_iter=4), None, quiet=True)
    ref2 = curvature(ps[:8], metric=res.model.metric_jax(), batch=8)
    got2 = holomorphic_curvature(m, res.model.gfun(), ps[:8], batch=8)
    for f in ("det_g", "ricci_scalar", "chern_top"):
        np.testing.assert_allclose(getattr(got2, f), getattr(ref2, f), rtol=1e-8, atol=1e-10)


def test_cli_cy_prints_progress(tmp_path, capsys):
    from ntkflow.cli import main

    out = str(tmp_path / "c")
    assert main(["cy", "--manifold", "cubic-curve", "-k", "6", "--n-train", "500", "--n-test", "500",
                 "--n-curvature", "50", "-o", out]) == 0
    text = capsys.readouterr().out
    assert "iter" in text and "held-out" in text and "Euler" in text
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["euler"] == pytest.approx(0.0, abs=0.05)  # torus: χ = 0


def test_config_validation_messages():
    with pytest.raises(TypeError, match="method"):
        CYConfig(method="magic")
    with pytest.raises(ValueError, match="symmetry"):
        BergmanMethod(symmetry="some")
    with pytest.raises(ValueError, match="solver"):
        BergmanMethod(solver="magic")
    with pytest.raises(ValueError, match="n_train"):
        DataConfig(n_train=0)
    cfg = CYConfig()
    assert cfg.with_(k=6, max_iter=3).method.k == 6 and cfg.with_(max_iter=3).lm.max_iter == 3
    from ntkflow.cy.config import config_from_json

    assert config_from_json(json.loads(json.dumps(cfg.to_json()))) == cfg


def test_hypersurface_files_and_automatic_symmetry(tmp_path):
    """Monomials + coefficients files (json and text) give the same manifold; the Fermat cubic keeps its
    symmetry, a random cubic gets the plain basis."""
    from ntkflow.cy.job import choose_basis, load_hypersurface_file

    js = tmp_path / "c.json"
    js.write_text(json.dumps({"exponents": [[3, 0, 0], [0, 3, 0], [0, 0, 3]], "coefficients": [1, 1, [1, 0]]}))
    tx = tmp_path / "c.txt"
    tx.write_text("# cubic\n3 0 0 1\n0 3 0 1.0 0.0\n0 0 3 1\n")
    a, b = load_hypersurface_file(str(js)), load_hypersurface_file(str(tx))
    np.testing.assert_array_equal(a.exponents, b.exponents)
    np.testing.assert_allclose(a.coefficients, b.coefficients)
    basis_sym, sym = choose_basis(a, BergmanMethod(k=6))
    assert len(sym.perms) == 6 and sym.conjugation
    from ntkflow.cy import random_quintic

    rq = random_quintic(0)
    b_rq, sym_rq = choose_basis(rq, BergmanMethod(k=2))
    assert sym_rq.trivial and b_rq.n_functions == 15 ** 2
    with pytest.raises(FileNotFoundError, match="hypersurface"):
        load_hypersurface_file(str(tmp_path / "missing.json"))


def test_log_link_job_saves_an_algebraic_metric_whose_sigma_matches_the_report(tmp_path):
    """``--link log``: the matrix-free path's own held-out σ (GEMM products) equals σ of the saved
    model recomputed by ntkflow.load(...).metric (the DonaldsonModel's pair-by-pair code), and
    Gauss–Newton improves on its start."""
    from ntkflow.manifolds import sigma

    out = str(tmp_path / "log")
    cfg = _cfg(k=3, symmetry="none", link="log", n_train=2000, n_test=1500, max_iter=3, seed=4)
    res = run_cy(cfg, out, quiet=True)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["method_info"]["link"] == "log" and metrics["solver"] == "matrix-free"
    model = ntkflow.load(out)
    assert type(model).__name__ == "DonaldsonModel"
    ps = sample(preset("fermat-quintic"), 3500, seed=4)
    test = ps[2000:]
    d = np.real(np.linalg.det(model.metric(test)))
    assert np.all(d > 0)
    np.testing.assert_allclose(sigma(test, d), metrics["sigma_test"], rtol=1e-9)
    hist = json.load(open(os.path.join(out, "history.json")))
    assert metrics["sigma_test"] < 0.5 * metrics["fs_baseline"]["sigma_test"] and len(hist) >= 1
    with pytest.raises(ValueError, match="link"):
        BergmanMethod(link="log", solver="dense")


def test_subsampled_jacobi_diagonal_is_close_to_the_exact_one():
    from ntkflow.cy import matrixfree as mf

    ps = sample(preset("fermat-quintic"), 4000, seed=3)
    prob = mf.PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 2)
    v = prob.initial()
    exact, est = prob.jacobi_diag(v, max_points=None), prob.jacobi_diag(v, max_points=1000)
    assert est[-1] > 0 and np.median(np.abs(est / exact - 1)) < 0.1


def test_default_degree_follows_the_points_only_without_symmetry():
    from ntkflow.cy import random_quintic
    from ntkflow.cy.job import default_k

    fermat = preset("fermat-quintic")
    assert default_k(fermat, CYConfig(DataConfig(n_train=100_000))) == (12, "")
    rq = random_quintic(0)
    for n, k in ((10_000, 4), (100_000, 6), (10 ** 7, 6)):
        got, why = default_k(rq, CYConfig(DataConfig(n_train=n)))
        assert got == k and "N_k²" in why
    assert default_k(fermat, CYConfig(DataConfig(n_train=10_000), BergmanMethod(symmetry="none")))[0] == 4
    assert default_k(rq, CYConfig(method=DonaldsonMethod()))[0] == 12


def test_cli_help_is_grouped_and_every_option_has_help_and_a_default():
    import argparse

    from ntkflow.cy.cli import register

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    p = sub.choices["cy"]
    titles = [g.title for g in p._action_groups]
    for want in ("manifold (one of)", "data", "Levenberg-Marquardt", "output"):
        assert want in titles, titles
    assert sum(t.startswith("method") for t in titles) == 4
    flags = set()
    for a in p._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        assert a.help and "default" in a.help, a.option_strings
        flags.update(a.option_strings)
    # the flags README, docs and tests use are public API
    for f in ("--manifold", "--psi", "--hypersurface", "--random-quintic", "-k", "--link", "--n-train", "--n-test",
              "--method", "--kernel", "--max-iter", "--time-budget", "--n-curvature", "--resume", "-o", "--solver",
              "--symmetry", "--seed", "--s2", "--centers", "--centers-method", "--ridge", "--mixture-coeffs",
              "--donaldson-iter", "--width", "--depth", "--epochs", "--batch-size", "--learning-rate", "--whiten-rtol",
              "--workers", "--scheduler", "--devices", "--block-size", "--recompute-features", "--preconditioner",
              "--precond-rank", "--sweep-start", "--dense-chunk", "--product-dtype", "--loss", "--irls-rounds"):
        assert f in flags, f
    with pytest.raises(SystemExit):  # the manifold options exclude each other
        p.parse_args(["--manifold", "quartic-k3", "--random-quintic", "1"])
    from ntkflow.cy.cli import config_from_args

    # an option the chosen method would ignore is refused, naming it
    with pytest.raises(ValueError, match="max_iter.*donaldson"):
        config_from_args(p.parse_args(["--method", "donaldson", "--max-iter", "3"]))
    with pytest.raises(ValueError, match="k: --k does not apply"):
        config_from_args(p.parse_args(["--method", "network", "-k", "3"]))
    with pytest.raises(ValueError, match="loss: --loss does not apply.*dual"):
        config_from_args(p.parse_args(["--solver", "dual", "--loss", "sigma"]))
    got = config_from_args(p.parse_args(["--loss", "sigma", "--irls-rounds", "3"]))
    assert got.lm.loss == "sigma" and got.lm.irls_rounds == 3 and got.fingerprint() != CYConfig().fingerprint()
    assert CYConfig(lm=LMSettings(irls_rounds=3)).fingerprint() == CYConfig().fingerprint()  # ignored with loss l2
    with pytest.raises(ValueError, match="loss: expected one of"):
        LMSettings(loss="l1")
    got = config_from_args(p.parse_args(["--method", "network", "--time-budget", "5", "--width", "8"]))
    assert got.method == NetworkMethod(width=8) and got.lm.time_budget == 5.0
    got = config_from_args(p.parse_args(["--random-quintic", "2", "-k", "3", "--link", "log", "--n-train", "500"]))
    assert got.data.random_quintic == 2 and got.method == BergmanMethod(k=3, link="log") and got.data.n_train == 500


def test_model_registry_is_one_lookup():
    from ntkflow.cy import MODELS, Model, register
    from ntkflow.cy.dual import DualKernelModel
    from ntkflow.cy.model import BergmanModel, DonaldsonModel
    from ntkflow.cy.network import NetworkModel

    assert {k: MODELS[k] for k in ("bergman", "donaldson", "dual-kernel", "network")} == {
        "bergman": BergmanModel, "donaldson": DonaldsonModel, "dual-kernel": DualKernelModel, "network": NetworkModel}
    assert all(cls.kind == kind for kind, cls in MODELS.items())
    with pytest.raises(ValueError, match="registered already"):
        register("bergman")(type("Other", (Model,), {}))


def test_product_dtype_is_matrix_free_only_and_keeps_default_fingerprints():
    """--product-dtype float32 changes the products (so the fingerprint), float64 (the default) changes nothing;
    the dense solver refuses float32 naming the option."""
    base = CYConfig(data=DataConfig(random_quintic=0, n_train=500), method=BergmanMethod(k=3))
    same = base.with_(product_dtype="float64")
    f32 = base.with_(product_dtype="float32")
    assert same.fingerprint() == base.fingerprint() != f32.fingerprint()
    with pytest.raises(ValueError, match="product_dtype.*dense"):
        BergmanMethod(k=3, solver="dense", product_dtype="float32")
    with pytest.raises(ValueError, match="product_dtype"):
        BergmanMethod(k=3, product_dtype="float16")


def test_sigma_loss_lowers_sigma_on_the_dense_path_and_is_refused_elsewhere(tmp_path):
    """--loss sigma (reweighting toward the L1 norm after the L2 fit) lowers the training σ of the same dense problem
    (σ is an L1 norm; the L2 fit does not minimise it), and the matrix-free solver refuses it, naming --loss."""
    cfg = _PATHS["dense"](max_iter=10)
    l2 = run_cy(cfg, None, quiet=True)
    l1 = run_cy(cfg.with_(loss="sigma", irls_rounds=4), None, quiet=True)
    assert l1.metrics["sigma_train"] < 0.97 * l2.metrics["sigma_train"]
    assert l1.metrics["iterations"] > l2.metrics["iterations"]
    with pytest.raises(ValueError, match="loss: 'sigma'.*matrix-free.*--loss l2"):
        mf = _PATHS["matrix-free"](max_iter=2)
        run_cy(mf.with_(loss="sigma"), None, quiet=True)
