"""ntk-study smoke test: tiny sizes, JSON + PNGs in tmp_path, through the ntkflow CLI."""
import json

import numpy as np
import pytest

from ntkflow.cli import main
from ntkflow.ntk.study import StudyConfig, fit_slope, slope_with_error


def test_slope_fit_recovers_a_power_law():
    W = np.array([16, 64, 256, 1024])
    rng = np.random.default_rng(0)
    per_seed = 3.0 * W[:, None] ** -0.5 * np.exp(0.05 * rng.normal(size=(4, 50)))
    r = slope_with_error(W, per_seed)
    assert abs(r["slope"] + 0.5) < 3 * r["slope_err"] + 0.01
    assert abs(fit_slope(W, 2.0 * W**-1.0)[0] + 1.0) < 1e-12


def test_ntk_study_cli_smoke(tmp_path):
    out = tmp_path / "study"
    rc = main(["ntk-study", "--out", str(out), "--widths", "4,8", "--seeds", "2", "--steps", "3",
               "--archs", "mlp-erf", "--mixing-widths", "4,8", "--mixing-seeds", "2",
               "--invariant-archs", "cos-net", "--invariant-degree", "4", "--mc-networks", "20"])
    assert rc == 0
    res = json.loads((out / "study.json").read_text())
    assert set(res["training"]) == {"mlp-erf"}
    for key in ("convergence", "kernel_change", "frozen_prediction"):
        assert np.isfinite(res["training"]["mlp-erf"][key]["slope"])
    assert res["mixing"]["independent"]["mean"] == [0.0, 0.0]
    assert res["mixing"]["shared"]["infinite_width_mixing"] < 1e-12
    assert res["mixing"]["kahler_potential"]["infinite_width_mixing"] > 0.05
    assert len(res["invariant"]["cos-net"]["weights"]) == 5
    for name in ("convergence", "kernel_change", "frozen_prediction", "mixing", "invariant"):
        assert (out / f"ntk_{name}.png").stat().st_size > 1000


def test_ntk_study_rejects_bad_arguments(tmp_path, capsys):
    assert main(["ntk-study", "--out", str(tmp_path), "--archs", "tanh-net"]) == 2
    assert "archs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="widths"):
        StudyConfig(widths=(8,))
