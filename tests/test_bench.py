"""`python -m bench`: README's generated region equals what the renderer makes from the committed JSON
(typed figures cannot drift), the renderer on a hand-made run, the suite runner on real processes that
succeed, fail and hang, and the peak-memory sampler of bench_peers on a known allocation."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not installed: it runs from the repository root
    sys.path.insert(0, str(ROOT))

from bench import readme, suite  # noqa: E402


def test_readme_region_is_rendered_from_committed_json():
    text = (ROOT / "README.md").read_text()
    source, region = readme.read_region(text)
    payload = json.loads((ROOT / source).read_text())
    assert region == readme.render(payload, source), (
        f"README's bench region differs from {source}; regenerate it: python -m bench.readme {source}")
    # the region cites the command that made the figures, and that command wrote the cited JSON's mode
    assert f"`{payload['command']}`" in region and f"--{payload['mode']}" in payload["command"]


def test_every_section_of_the_committed_run_is_summarised():
    """Each section's one-line summary reads that script's real JSON (a renamed key shows up here)."""
    source, _ = readme.read_region((ROOT / "README.md").read_text())
    payload = json.loads((ROOT / source).read_text())
    assert [s["name"] for s in payload["sections"]] == [s.name for s in suite.plan(payload["mode"])]
    for sec in payload["sections"]:
        line = readme.headline(sec)
        assert sec["name"] in readme.HEADLINES and not line.startswith("see JSON"), (sec["name"], line)


def _payload():
    """A hand-made bench.json: peers with round numbers, one failed section."""
    peers = dict(
        gpytorch=dict(available=False, reason="ModuleNotFoundError: No module named 'torch'"),
        matvec=dict(n=2000, d=10, reference="numpy dense (cdist, K @ v)", rows=[
            dict(method="numpy dense (cdist, K @ v)", seconds=2.0, pairs_per_s=2e6, relerr_vs_numpy=0.0, peak_rss_gib=0.5),
            dict(method="raw pykeops LazyTensor", seconds=1.0, pairs_per_s=4e6, relerr_vs_numpy=1e-15, peak_rss_gib=0.0),
            dict(method="ntkflow keops", seconds=0.5, pairs_per_s=8e6, relerr_vs_numpy=2e-15, peak_rss_gib=0.0)]),
        solve=dict(n=1000, reg=1e-4, rtol=1e-8, m=100, reference="scipy cho_solve (dense)", failed={"x | y": "Boom: bad"},
                   rows=[dict(method="scipy cho_solve (dense)", seconds=2.0, relative_residual=1e-14,
                              relerr_alpha_vs_scipy=0.0, peak_rss_gib=0.25),
                         dict(method="ntkflow krr_exact jax, Nyström PCG", seconds=0.5, iterations=12, converged=True,
                              relative_residual=3e-9, relerr_alpha_vs_scipy=2e-8, peak_rss_gib=0.125)]))
    return dict(schema=1, mode="quick", command="python -m bench --quick --out X", started_utc="2026-01-01T00:00:00Z",
                wall_s=12.0, machine=dict(cores=2, cpu="TestCPU", memory_gib=8.0, load_average=[1.25, 1.0, 1.0]),
                devices=[dict(platform="cpu", kind="cpu", id=0)], versions={"numpy": "2.0", "gpytorch": None},
                sections=[dict(name="peers", status="ok", wall_s=9.0, cpu_s=15.25, peak_rss_gib=0.75, results={"bench_peers.json": peers}),
                          dict(name="matvec", status="failed", wall_s=3.0, cpu_s=2.5, peak_rss_gib=0.1, returncode=1,
                               error="exit status 1; log tail:\nTraceback", results={})])


def test_render_hand_made_run():
    out = readme.render(_payload(), "bench/results/x/bench.json")
    lines = out.splitlines()
    assert lines[0] == "<!-- bench:begin source=bench/results/x/bench.json -->" and lines[-1] == readme.END
    assert "2 cores (TestCPU), 8 GiB, load average 1.2 at the start" in out  # format(1.25, ".1f") == "1.2"
    assert "Libraries: numpy 2.0; not installed: gpytorch." in out
    assert "**All sections** (1/2 ok, 12 s wall and 18 CPU s in all" in out  # 15.25 + 2.5 = 17.75 -> "18"
    # peers headline: keops/raw = 0.5/1.0, scipy / best ntkflow = 2.0/0.5
    assert "ntkflow keops / raw pykeops time 0.50" in out and "scipy / best ntkflow time 4.00" in out
    assert "| matvec | failed | 3.0 | 2.5 | 0.10 | **failed**: exit status 1; log tail: |" in lines
    # K v rows: time / ntkflow keops = 4.00, 2.00, 1.00; peak MiB = 1024 × GiB
    assert "| numpy dense (cdist, K @ v) | 2 | 2e+06 | 4.00 | 0.0e+00 | 512 |" in lines
    assert "| raw pykeops LazyTensor | 1 | 4e+06 | 2.00 | 1.0e-15 | 0 |" in lines
    # solve rows: time / scipy, iterations (— where none), residual, α error, peak MiB
    assert "| scipy cho_solve (dense) | 2 | 1.00 | — | 1.0e-14 | 0.0e+00 | 256 |" in lines
    assert "| ntkflow krr_exact jax, Nyström PCG | 0.5 | 0.25 | 12 | 3.0e-09 | 2.0e-08 | 128 |" in lines
    assert "| x | y | failed: Boom: bad | — | — | — | — | — |" in lines  # a failed peer, its name as given
    assert "GPyTorch (optional) skipped: ModuleNotFoundError: No module named 'torch'" in out
    assert "Made by `python -m bench --quick --out X`" in out


def test_update_readme_rewrites_only_the_region(tmp_path):
    res = tmp_path / "run" / "bench.json"
    res.parent.mkdir()
    res.write_text(json.dumps(_payload()))
    md = tmp_path / "README.md"
    head, tail = "# Title\n\nbefore text\n", "\nafter text\n"
    md.write_text(head + "<!-- bench:begin source=old.json -->\nstale 1.0 s\n<!-- bench:end -->" + tail)
    readme.update_readme(md, res)
    text = md.read_text()
    assert text.startswith(head) and text.endswith(tail) and "stale" not in text
    source, region = readme.read_region(text)
    assert source == "run/bench.json" and region == readme.render(_payload(), "run/bench.json")
    readme.update_readme(md, res)
    assert md.read_text() == text  # idempotent
    md.write_text("no region here\n")
    with pytest.raises(ValueError, match="README.md: no bench region"):
        readme.update_readme(md, res)


def test_suite_records_failures_and_goes_on(tmp_path):
    py = "{py}"
    sections = [
        suite.Section("bad", "exits 3", ((py, "-c", "import sys; print('boom'); sys.exit(3)"),), 60),
        suite.Section("slow", "sleeps past its limit", ((py, "-c", "import time; time.sleep(60)"),), 2),
        suite.Section("good", "writes JSON and allocates ~0.2 GiB", (
            (py, "-c", "import json, sys; import numpy as np; a = np.ones(25_000_000); a.sum();"
                       "open(sys.argv[1] + '/r.json', 'w').write(json.dumps({'v': 1}))", "{out}"),), 60),
    ]
    logs = []
    payload = suite.run(sections, tmp_path / "out", mode="quick", command="test", log=lambda *a, **k: logs.append(a[0]))
    bad, slow, good = payload["sections"]
    assert bad["status"] == "failed" and bad["returncode"] == 3 and "boom" in bad["error"]
    assert slow["status"] == "timeout" and slow["wall_s"] < 30 and "timed out after 2 s" in slow["error"]
    assert good["status"] == "ok" and good["results"] == {"r.json": {"v": 1}}
    assert good["peak_rss_gib"] > 0.15  # 25e6 float64 = 0.186 GiB held by the child
    assert 0 < good["cpu_s"] < good["wall_s"] * (os.cpu_count() or 1) + 1
    on_disk = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [s["status"] for s in on_disk["sections"]] == ["failed", "timeout", "ok"]
    assert (tmp_path / "out" / "bench.png").is_file()
    assert {"numpy", "scipy", "jax", "jaxlib", "pykeops", "dask", "distributed", "scikit-learn", "gpytorch"} <= set(
        on_disk["versions"]) and on_disk["versions"]["numpy"] == np.__version__
    assert on_disk["machine"]["cores"] >= 1 and on_disk["machine"]["memory_gib"] > 0
    assert any("[3/3] good: ok" in s for s in logs)


def test_plan_sections_and_their_scripts():
    quick, full = suite.plan("quick"), suite.plan("full")
    assert [s.name for s in quick] == [s.name for s in full]
    for sec in quick + full:
        for cmd in sec.commands:
            scripts = [a for a in cmd if a.startswith("{bench}/")]
            assert all((ROOT / "bench" / a[len("{bench}/"):]).is_file() for a in scripts), cmd
    with pytest.raises(ValueError, match="mode must be 'quick' or 'full', got 'fast'"):
        suite.plan("fast")
    with pytest.raises(ValueError, match="timeout_s must be > 0, got 0"):
        suite.Section("x", "d", (("a",),), 0)


def test_main_refuses_an_existing_run_unknown_sections_and_the_working_directory(tmp_path, capsys, monkeypatch):
    (tmp_path / "bench.json").write_text("{}")
    with pytest.raises(SystemExit) as e:
        suite.main(["--quick", "--out", str(tmp_path)])
    assert e.value.code == 2 and "already holds a bench.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        suite.main(["--quick", "--sections", "nope", "--out", str(tmp_path / "new")])
    assert "unknown ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        suite.main(["--out", str(tmp_path / "new")])  # --quick or --full is required
    (tmp_path / "new").mkdir()
    monkeypatch.chdir(tmp_path / "new")
    with pytest.raises(SystemExit):
        suite.main(["--quick", "--out", "."])
    assert "refusing the working directory itself" in capsys.readouterr().err
    assert suite.default_out("quick").parent == ROOT / "bench" / "results"


def test_peak_rss_sampler_sees_a_known_allocation():
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_peers import measure

    def alloc():  # 3e7 float64 = 0.224 GiB, held ~0.1 s
        a = np.ones(30_000_000)
        return float(a.sum())

    t, peak, out = measure(alloc, repeat=1, warmup=0)
    assert out == 3e7 and t > 0
    assert 0.2 < peak < 1.0, peak


def test_ntkflow_bench_runs_the_checkout_suite_or_says_what_to_do(tmp_path, monkeypatch, capsys):
    from ntkflow.cli import bench_checkout, main

    assert bench_checkout(ROOT / "bench" / "results") == ROOT
    assert bench_checkout(tmp_path) is None
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick"]) == 1
    err = capsys.readouterr().err
    assert f"no ntkflow repository checkout at or above {tmp_path}" in err and "clone" in err
    monkeypatch.chdir(ROOT / "bench")
    assert main(["bench", "--quick", "--list", "--sections", "peers"]) == 0  # runs `python -m bench` in ROOT
