"""Hypersurface files, random quintics and the shared manifold options (``ntkflow sample`` and any command
that calls ``add_manifold_options``). Writes only to tmp_path."""
from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import pytest

from ntkflow.cli import main
from ntkflow.manifolds import (add_manifold_options, build_manifold, load_hypersurface_file, load_points,
                               manifold_from_args, preset, random_quintic, sample)


def _fermat_rows(N):
    return [[N if j == i else 0 for j in range(N)] for i in range(N)]


def test_fermat_and_dwork_files_equal_the_presets(tmp_path):
    # the three formats, written here by hand, against the presets' own equations
    js = tmp_path / "a.json"
    js.write_text(json.dumps({"exponents": _fermat_rows(5), "coefficients": [1, [1, 0], 1.0, 1, 1],
                              "name": "fermat-quintic"}))
    tx = tmp_path / "fermat-quintic.txt"
    tx.write_text("# Fermat quintic\n" + "".join(" ".join(map(str, r)) + " 1 0\n" for r in _fermat_rows(5)))
    nz = tmp_path / "q.npz"
    np.savez(nz, exponents=np.array(_fermat_rows(5)), coefficients=np.ones(5, dtype=complex),
             name=np.array("fermat-quintic"))
    for path in (js, tx, nz):
        assert load_hypersurface_file(path) == preset("fermat-quintic")
    # Dwork ψ = 0.5: Σz⁵ − 5ψ Πz, the last coefficient with an explicit imaginary part column
    dw = tmp_path / "dwork-quintic.txt"
    dw.write_text("".join(" ".join(map(str, r)) + " 1\n" for r in _fermat_rows(5)) + "1 1 1 1 1 -2.5 0.0\n")
    m = load_hypersurface_file(dw)
    assert m == preset("dwork-quintic", psi=0.5)
    z = sample(preset("dwork-quintic", psi=0.5), 20, seed=1).points
    np.testing.assert_allclose(m.Q(z), 0.0, atol=1e-10)  # the preset's points lie on the parsed hypersurface
    # a non-symmetric cubic curve with complex coefficients
    cu = tmp_path / "cubic.txt"
    cu.write_text("3 0 0 1\n0 3 0 1\n0 0 3 1\n1 1 1 0.3 -0.2\n")
    c = load_hypersurface_file(cu)
    assert c.n_coords == 3 and c.name == "cubic"
    assert dict(zip(map(tuple, c.exponents.tolist()), c.coefficients.tolist()))[(1, 1, 1)] == 0.3 - 0.2j


def test_file_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="hypersurface: no such file"):
        load_hypersurface_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.txt"
    bad.write_text("5 0 0 0 0 1\n0 5 0 x 0 1\n")
    with pytest.raises(ValueError, match="line 2 .* is not numbers"):
        load_hypersurface_file(bad)
    bad.write_text("5 0 0 0 0 1\n0 5 0 0 0 1 0 0\n")
    with pytest.raises(ValueError, match="line 2 .* has 8 numbers; expected 5 exponents"):
        load_hypersurface_file(bad)
    bad.write_text("# only a comment\n")
    with pytest.raises(ValueError, match="no monomial lines"):
        load_hypersurface_file(bad)
    js = tmp_path / "bad.json"
    js.write_text(json.dumps({"exponents": _fermat_rows(3)}))
    with pytest.raises(ValueError, match="'exponents' and 'coefficients'"):
        load_hypersurface_file(js)


def test_random_quintic_is_seeded_gaussian_on_all_monomials():
    m = random_quintic(3)
    assert m.name == "random-quintic-3" and m.n_coords == 5 and len(m.coefficients) == 126
    # independent construction: the 126 degree-5 exponents in descending lexicographic order, then the
    # generator's draws (real parts, then imaginary parts)
    rows = sorted((r for r in itertools.product(range(6), repeat=5) if sum(r) == 5), reverse=True)
    rng = np.random.default_rng(3)
    co = rng.normal(size=126) + 1j * rng.normal(size=126)
    got = dict(zip(map(tuple, m.exponents.tolist()), m.coefficients.tolist()))
    assert got == dict(zip(rows, co.tolist()))
    assert random_quintic(3) == m and random_quintic(4) != m
    with pytest.raises(ValueError, match="seed: expected a non-negative integer"):
        random_quintic(-1)


def test_build_manifold_exclusive_choices(tmp_path):
    assert build_manifold() == preset("fermat-quintic")
    assert build_manifold("dwork-quintic", psi=0.2) == preset("dwork-quintic", psi=0.2)
    assert build_manifold(random_quintic_seed=0) == random_quintic(0)
    with pytest.raises(ValueError, match="hypersurface, random_quintic_seed: give a hypersurface file or"):
        build_manifold(hypersurface="x.txt", random_quintic_seed=0)
    with pytest.raises(ValueError, match="psi: the family parameter belongs to a preset"):
        build_manifold(psi=0.5, random_quintic_seed=0)


def test_shared_options_on_any_parser():
    p = argparse.ArgumentParser(prog="x")
    add_manifold_options(p)
    assert manifold_from_args(p.parse_args([])) == preset("fermat-quintic")
    assert manifold_from_args(p.parse_args(["--random-quintic", "2"])) == random_quintic(2)
    assert manifold_from_args(p.parse_args(["--manifold", "dwork-quintic", "--psi", "0.1+0.2i"])) == \
        preset("dwork-quintic", psi=0.1 + 0.2j)
    # into an existing argument group; every option has help that states its default
    q = argparse.ArgumentParser(prog="y")
    add_manifold_options(q.add_argument_group("data"))
    for a in q._actions:
        if a.dest in ("manifold", "hypersurface", "random_quintic", "psi"):
            assert a.help and "default" in a.help
    assert manifold_from_args(q.parse_args(["--manifold", "quartic-k3"])) == preset("quartic-k3")


def test_cli_sample_random_quintic_and_hypersurface_file(tmp_path, capsys):
    out = tmp_path / "rq.npz"
    assert main(["sample", "--random-quintic", "0", "-n", "60", "--seed", "2", "-o", str(out)]) == 0
    assert "wrote 60 points of random-quintic-0" in capsys.readouterr().out
    ps = load_points(out)
    assert len(ps) == 60 and ps.manifold == random_quintic(0)
    np.testing.assert_allclose(ps.manifold.Q(ps.points), 0.0, atol=1e-9)
    f = tmp_path / "cubic.txt"
    f.write_text("3 0 0 1\n0 3 0 1\n0 0 3 1\n1 1 1 0.3 -0.2\n")
    out2 = tmp_path / "c.npz"
    assert main(["sample", "--hypersurface", str(f), "-n", "40", "-o", str(out2)]) == 0
    ps2 = load_points(out2)
    assert ps2.manifold == load_hypersurface_file(f) and len(ps2) == 40
    np.testing.assert_array_equal(ps2.points, sample(load_hypersurface_file(f), 40, seed=0).points)
    # presets still work by position and by option, with the same points
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(["sample", "quartic-k3", "-n", "30", "-o", str(a)]) == 0
    assert main(["sample", "--manifold", "quartic-k3", "-n", "30", "-o", str(b)]) == 0
    np.testing.assert_array_equal(load_points(a).points, load_points(b).points)


def test_cli_sample_manifold_options_are_exclusive(tmp_path, capsys):
    out = str(tmp_path / "x.npz")
    for argv in (["--manifold", "fermat-quintic", "--random-quintic", "0"],
                 ["--hypersurface", "f.txt", "--random-quintic", "0"],
                 ["fermat-quintic", "--hypersurface", "f.txt"]):
        with pytest.raises(SystemExit) as exc:
            main(["sample", *argv, "-n", "10", "-o", out])
        assert exc.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err
    assert main(["sample", "--random-quintic", "0", "--psi", "0.5", "-n", "10", "-o", out]) == 2
    assert "psi: the family parameter belongs to a preset" in capsys.readouterr().err
