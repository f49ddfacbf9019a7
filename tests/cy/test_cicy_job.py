"""``ntkflow cy`` on complete intersections: definition files, the job, the saved model, ``ntkflow eval``.

The model's closed-form metric is checked against autodiff of its own potential (``cicy_metric_jax``) and
the job's held-out σ against an independent recomputation from the loaded model. Writes only to tmp_path."""
from __future__ import annotations

import json

import numpy as np
import pytest

import ntkflow
from ntkflow.cli import main
from ntkflow.cy.algebra import Factors
from ntkflow.cy.config import CYConfig, DataConfig
from ntkflow.cy.job import default_k, make_manifold, run_cy
from ntkflow.cy.model import CICYSectionModel
from ntkflow.io import NtkflowFileError
from ntkflow.manifolds.cicy import cicy_metric_jax, cicy_preset, load_cicy_points, sample_cicy, save_cicy_points
from ntkflow.manifolds.cicy_files import build_cicy, load_cicy_file, save_cicy_file
from ntkflow.manifolds.geometry import sigma_weighted


def test_cicy_file_round_trip_and_errors(tmp_path):
    for m in (cicy_preset("p5-33", psi=0.5), cicy_preset("tetraquadric", seed=3)):
        path = save_cicy_file(tmp_path / f"{m.name}.json", m)
        back = load_cicy_file(path)
        assert back.ambient == m.ambient and back.psi == m.psi
        for (e0, c0), (e1, c1) in zip(m.polynomials, back.polynomials):
            assert np.array_equal(e0, e1) and np.array_equal(c0, c1)
    # a hand-written file: real and [re, im] coefficients
    doc = {"ambient": [2, 2], "equations": [{"exponents": [[3, 0, 0, 3, 0, 0], [0, 3, 0, 0, 3, 0], [0, 0, 3, 0, 0, 3],
                                                           [1, 1, 1, 1, 1, 1]],
                                             "coefficients": [1, 1.0, [1, 0], [-0.3, 0.1]]}], "name": "mine"}
    (tmp_path / "mine.json").write_text(json.dumps(doc))
    m = load_cicy_file(tmp_path / "mine.json")
    assert m.name == "mine" and m.polynomials[0][1][3] == -0.3 + 0.1j
    doc["equations"][0]["exponents"][0] = [2, 0, 0, 3, 0, 0]  # not multi-homogeneous
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(NtkflowFileError, match="bad.json.*multi-homogeneous"):
        load_cicy_file(tmp_path / "bad.json")
    doc["equations"][0]["exponents"][0] = [3, 0, 0, 3, 0, 0]
    doc["equations"][0]["coefficients"][0] = "one"
    (tmp_path / "bad2.json").write_text(json.dumps(doc))
    with pytest.raises(NtkflowFileError, match=r"coefficients\[0\]"):
        load_cicy_file(tmp_path / "bad2.json")
    # the points file of save_cicy_points carries the definition too
    ps = sample_cicy(cicy_preset("bicubic", seed=1), 20, seed=0)
    path = save_cicy_points(tmp_path / "pts.npz", ps)
    assert load_cicy_file(path).spec()["cicy_coefficients"].tolist() == ps.manifold.spec()["cicy_coefficients"].tolist()
    with pytest.raises(ValueError, match="psi"):
        build_cicy(path=path, psi=0.5)


def test_data_config_and_make_manifold(tmp_path):
    with pytest.raises(ValueError, match="cicy_seed"):
        DataConfig(manifold="bicubic", cicy_seed=1, psi=0.5)
    with pytest.raises(ValueError, match="cicy"):
        DataConfig(cicy="x.json", random_quintic=2)
    with pytest.raises(ValueError, match="cicy_seed"):
        make_manifold(DataConfig(manifold="fermat-quintic", cicy_seed=1))
    m = make_manifold(DataConfig(manifold="tetraquadric", cicy_seed=4))
    assert m.name == "tetraquadric-random4"
    assert make_manifold(DataConfig(manifold="p5-33", psi=0.5)).psi == 0.5
    # hypersurface fingerprints are those of the code before the CICY fields (checkpoints still resume): the
    # values below were computed with cy/config.py of commit 011cbca
    assert CYConfig().fingerprint() == "19f9bd0ca9fcff27"
    assert CYConfig(data=DataConfig(manifold="dwork-quintic", psi=0.3)).fingerprint() == "4a961dddc3163303"
    assert CYConfig(data=DataConfig(manifold="bicubic", cicy_seed=0)).fingerprint() != \
        CYConfig(data=DataConfig(manifold="bicubic", cicy_seed=1)).fingerprint()
    cfg = CYConfig(data=DataConfig(manifold="bicubic", cicy_seed=0, n_train=19_000))
    k, why = default_k(make_manifold(cfg.data), cfg)
    assert k == 2 and "complete intersection" in why  # N_2² = 36² ≤ 9500 < N_3² = 100²
    # with a symmetry group: the dense symmetric path's rule (Hessians of the invariant basis on all points ≤ 2 GB);
    # P⁵[3,3] ψ = 0.5 on 3·10⁴ points: 459 functions at k = 7 (0.99 GB), 1027 at k = 8 (2.2 GB)
    cfg = CYConfig(data=DataConfig(manifold="p5-33", psi=0.5, n_train=20_000, n_test=10_000))
    k, why = default_k(make_manifold(cfg.data), cfg)
    assert k == 7 and "symmetry" in why, (k, why)


def test_model_metric_equals_autodiff_of_its_potential():
    m = cicy_preset("p5-33", psi=0.5)
    ps = sample_cicy(m, 25, seed=2)
    f = Factors((6,), (2,))
    nk = len(f.exponents())
    rng = np.random.default_rng(0)
    B = rng.standard_normal((nk, nk)) + 1j * rng.standard_normal((nk, nk))
    for link, H in (("log", B @ B.conj().T / nk + 0.2 * np.eye(nk)), ("identity", 0.02 * (B + B.conj().T))):
        model = CICYSectionModel(manifold=m, factors=f, k=2, H=H, link=link)
        ref = cicy_metric_jax(ps, model.potential_jax())
        g = model.metric(ps)
        np.testing.assert_allclose(g, ref, rtol=0, atol=1e-10 * np.max(np.abs(ref)))
        np.testing.assert_allclose(model.metric(ps.points), g, rtol=1e-12, atol=0)  # plain arrays re-charted
    with pytest.raises(ValueError, match="not on"):
        model.metric(ps.points + 0.01)
    with pytest.raises(ValueError, match="Hermitian"):
        CICYSectionModel(manifold=m, factors=f, k=2, H=B, link="log")


def test_cli_cy_on_a_random_bicubic_saves_loads_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["cy", "--manifold", "bicubic", "--cicy-seed", "0", "-k", "1", "--n-train", "1500", "--n-test", "600",
               "--max-iter", "3", "--n-curvature", "0", "-q", "-o", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["manifold"] == "bicubic-random0" and metrics["solver"] == "matrix-free"
    assert metrics["method_info"]["n_sections"] == 9 and metrics["method_info"]["degrees"] == [1, 1]
    assert metrics["sigma_test"] < 0.85 * metrics["fs_baseline"]["sigma_test"]
    model = ntkflow.load(out)
    assert isinstance(model, CICYSectionModel) and model.manifold.name == "bicubic-random0"
    # the held-out σ again, from the loaded model on the same held-out points (the tail of one sample)
    test = sample_cicy(cicy_preset("bicubic", seed=0), 2100, seed=0)[1500:]
    det = np.real(np.linalg.det(model.metric(test)))
    assert abs(sigma_weighted(det / test.omega_sq, test.weights) - metrics["sigma_test"]) < 1e-10
    # ntkflow eval on a fresh points file of the same manifold; points of another member are refused
    pts = save_cicy_points(tmp_path / "pts.npz", sample_cicy(model.manifold, 400, seed=5))
    capsys.readouterr()
    assert main(["eval", str(out), pts, "--n-curvature", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0 < res["sigma"] < metrics["fs_baseline"]["sigma_test"] and res["n_points"] == 400
    other = save_cicy_points(tmp_path / "other.npz", sample_cicy(cicy_preset("bicubic", seed=1), 50, seed=0))
    assert main(["eval", str(out), other, "--n-curvature", "0"]) != 0
    assert "not on" in capsys.readouterr().err
    # resume: finished run, same settings
    res2 = run_cy(CYConfig(data=DataConfig(manifold="bicubic", cicy_seed=0, n_train=1500, n_test=600)).with_(
        k=1, max_iter=3, n_curvature=0), str(out), resume=True, quiet=True)
    assert abs(res2.metrics["sigma_test"] - metrics["sigma_test"]) < 1e-12


def test_cli_refuses_what_cicys_do_not_run(tmp_path, capsys):
    # (--dense-chunk runs on complete intersections since 2026-12-01: tests/cy/test_dense_stream.py)
    for args, word in ((["--manifold", "tetraquadric", "-k", "1", "--method", "donaldson"], "method"),
                       (["--manifold", "fermat-quintic", "--cicy-seed", "2"], "cicy_seed"),
                       (["--cicy", str(tmp_path / "none.json")], "none.json"),
                       (["--cicy", str(tmp_path / "none.json"), "--psi", "0.3,0.5", "-k", "1"], "family")):
        assert main(["cy", *args, "-q", "-o", str(tmp_path / "o")]) != 0
        assert word in capsys.readouterr().err


def test_cli_sample_and_cy_from_a_definition_file(tmp_path, capsys):
    """``--cicy FILE`` (JSON) runs the same job as the preset it was written from: equal held-out σ."""
    m = cicy_preset("p5-33", psi=0.5)
    path = save_cicy_file(tmp_path / "p533.json", m)
    assert main(["sample", "--cicy", path, "-n", "300", "--seed", "2", "-o", str(tmp_path / "pts.npz")]) == 0
    ps = load_cicy_points(tmp_path / "pts.npz")
    assert len(ps) == 300 and ps.manifold.psi == 0.5
    runs = {}
    for name, opts in (("file", ["--cicy", path]), ("preset", ["--manifold", "p5-33", "--psi", "0.5"])):
        assert main(["cy", *opts, "-k", "1", "--solver", "matrix-free", "--n-train", "800", "--n-test", "300", "--max-iter", "2",
                     "--n-curvature", "0", "-q", "-o", str(tmp_path / name)]) == 0
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert runs["file"]["sigma_test"] == runs["preset"]["sigma_test"]
    assert runs["file"]["method_info"]["n_sections"] == 6


def test_kahler_class_sets_the_degrees_and_the_volume(tmp_path, capsys):
    """--kahler-class t: sections of degree k·t_a, the metric in the class Σ t_a J_a, so the Monte-Carlo
    Vol_K = mean(w det g/|Ω|²) is ∫_X J_t³ (exact: kahler_volume(t)) within its error, and the start
    (FS of class t) is the fitted constant's reference."""
    m = cicy_preset("bicubic", seed=0)
    out = tmp_path / "t12"
    assert main(["cy", "--manifold", "bicubic", "--cicy-seed", "0", "-k", "1", "--kahler-class", "1,2", "--n-train",
                 "3000", "--n-test", "3000", "--max-iter", "2", "--n-curvature", "0", "-q", "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method_info"]["degrees"] == [1, 2] and metrics["method_info"]["n_sections"] == 3 * 6
    exact = m.kahler_volume([1.0, 2.0])  # ∫J_t³ from the intersection numbers d_{J1²J2} = d_{J1J2²} = 3: 3·3·(2 + 4) = 54
    assert metrics["intersection_number"] == pytest.approx(exact, rel=1e-12)
    assert metrics["vol_kahler_test"] == pytest.approx(exact, rel=0.03)
    assert ntkflow.load(out).factors.degrees == (1, 2)
    for args, word in ((["--manifold", "bicubic", "-k", "2", "--kahler-class", "1,1.25"], "integer"),
                       (["--manifold", "bicubic", "-k", "1", "--kahler-class", "1,1,1"], "one per factor"),
                       (["--manifold", "fermat-quintic", "-k", "2", "--kahler-class", "1"], "hypersurface")):
        assert main(["cy", *args, "--n-train", "200", "--n-test", "100", "-q", "-o", str(tmp_path / "x")]) != 0
        assert word in capsys.readouterr().err
