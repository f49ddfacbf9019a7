"""Files (ntkflow and cymetric formats) and the `ntkflow sample` command. Writes only to tmp_path."""
import numpy as np
import pytest

from ntkflow.cli import main
from ntkflow.manifolds import fs_det, load_points, preset, sample, save_points


def _same(a, b):
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_allclose(a.omega_sq, b.omega_sq, rtol=1e-15)
    np.testing.assert_array_equal(a.patch, b.patch)
    np.testing.assert_array_equal(a.elim, b.elim)
    np.testing.assert_allclose(a.jacobian, b.jacobian, rtol=1e-15)
    assert a.manifold == b.manifold


@pytest.mark.parametrize("m", [preset("fermat-quintic"), preset("dwork-quintic", psi=0.2 - 0.4j)], ids=str)
def test_ntkflow_round_trip(tmp_path, m):
    ps = sample(m, 1234, seed=1)
    path = save_points(tmp_path / "pts.npz", ps)
    back = load_points(path)
    _same(ps, back)
    assert back.manifold.psi == m.psi
    with np.load(path) as f:
        assert f["points"].dtype == np.complex128 and f["points"].shape == (1234, 5)
        assert str(f["format"]) == "ntkflow-points"
        # the documented normalisation: mean(w det g_FS / |Ω|²) = ∫J³ = 5
        assert np.mean(f["weights"] * fs_det(ps) / f["omega_sq"]) == pytest.approx(5.0, rel=1e-12)


def test_cymetric_round_trip_and_layout(tmp_path):
    m = preset("quartic-k3")
    ps = sample(m, 1000, seed=2)
    path = save_points(tmp_path / "dataset.npz", ps, format="cymetric", val_split=0.1)
    with np.load(path) as f:
        assert f["X_train"].shape == (900, 8) and f["X_val"].shape == (100, 8)
        np.testing.assert_array_equal(f["X_train"][:, :4], ps.points[:900].real)
        np.testing.assert_array_equal(f["X_train"][:, 4:], ps.points[:900].imag)
        np.testing.assert_array_equal(f["y_val"][:, 0], ps.weights[900:])
        np.testing.assert_array_equal(f["y_val"][:, 1], ps.omega_sq[900:])
        np.testing.assert_array_equal(f["val_pullbacks"], ps.jacobian[900:])
    _same(ps, load_points(path))


def test_plain_cymetric_file_needs_manifold(tmp_path):
    """A file as cymetric's prepare_dataset writes it (no manifold keys)."""
    m = preset("fermat-quintic")
    ps = sample(m, 500, seed=3)
    X = np.concatenate([ps.points.real, ps.points.imag], axis=1)
    y = np.stack([ps.weights, ps.omega_sq], axis=1)
    path = tmp_path / "dataset.npz"
    np.savez_compressed(path, X_train=X[:450], y_train=y[:450], X_val=X[450:], y_val=y[450:],
                        val_pullbacks=ps.jacobian[450:])
    with pytest.raises(ValueError, match="manifold: .* pass manifold=preset"):
        load_points(path)
    _same(ps, load_points(path, manifold=m))
    with pytest.raises(ValueError, match="wrong manifold"):
        load_points(path, manifold=preset("quartic-k3"))
    with pytest.raises(ValueError, match="not on"):
        load_points(path, manifold=preset("dwork-quintic", psi=0.5))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ntkflow sample"):
        load_points(tmp_path / "missing.npz")
    np.savez(tmp_path / "junk.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="neither ntkflow"):
        load_points(tmp_path / "junk.npz", manifold=preset("cubic-curve"))
    with pytest.raises(ValueError, match="format"):
        save_points(tmp_path / "x.npz", sample(preset("cubic-curve"), 3), format="hdf5")


def test_cli_sample_formats(tmp_path, capsys):
    out = tmp_path / "q.npz"
    assert main(["sample", "dwork-quintic", "--psi", "0.3+0.1i", "-n", "777", "--seed", "4", "-o", str(out)]) == 0
    assert "wrote 777 points" in capsys.readouterr().out
    ps = load_points(out)
    assert len(ps) == 777 and ps.manifold.psi == 0.3 + 0.1j
    _same(ps, sample(preset("dwork-quintic", psi=0.3 + 0.1j), 777, seed=4))
    cy = tmp_path / "dataset.npz"
    assert main(["sample", "cubic-curve", "-n", "100", "--format", "cymetric", "--no-progress", "-o", str(cy)]) == 0
    assert len(load_points(cy)) == 100


def test_cli_errors(tmp_path, capsys):
    out = str(tmp_path / "x.npz")
    assert main(["sample", "dwork-quintic", "--psi", "1", "-n", "10", "-o", out]) == 2
    assert "singular" in capsys.readouterr().err
    assert main(["sample", "cubic-curve", "-n", "0", "-o", out]) == 2
    assert "n: must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", "quintic", "-n", "10", "-o", out])
