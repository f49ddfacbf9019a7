"""Fault injection: an ``ntkflow cy`` run killed after a checkpoint, then ``ntkflow cy --resume``, equals the
uninterrupted run (model, metrics and the whole history, to 1e-10), on the dense, matrix-free and dual paths.

The killed run is a separate process (``python -c _SCRIPT``) holding the output directory's RunLock as the CLI
does; it sends itself a real signal from a Levenberg–Marquardt hook, i.e. right after the checkpoint of
iteration ``at`` was renamed into place: SIGINT (Python's KeyboardInterrupt path: exit 130, lock released) or
SIGKILL (no cleanup at all: the lock file stays behind and must be detected as stale by the resuming run).
The resume and the reference run go through ``ntkflow.cli.main`` in this process.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from ntkflow.cli import main
from ntkflow.io import LOCK_NAME

_SCRIPT = r"""
import os, signal, sys
from ntkflow.cli import build_parser
from ntkflow.cy.cli import config_from_args
from ntkflow.cy.job import run_cy
from ntkflow.io import RunLock

out, sig, at = sys.argv[1], getattr(signal, sys.argv[2]), int(sys.argv[3])
args = build_parser().parse_args(["cy", *sys.argv[4:], "-o", out])
cfg = config_from_args(args)

def kill_after_checkpoint(state, record):
    if state.iteration == at:
        os.kill(os.getpid(), sig)

try:
    with RunLock(out, command="killed run"):
        run_cy(cfg, out, quiet=True, hooks=[kill_after_checkpoint])
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(3)  # the signal did not stop the run
"""

PATHS = {
    "dense": ["--manifold", "cubic-curve", "-k", "4", "--solver", "dense", "--n-train", "300", "--n-test", "100",
              "--max-iter", "6"],
    "matrix-free": ["--manifold", "cubic-curve", "-k", "4", "--solver", "matrix-free", "--n-train", "300", "--n-test",
                    "100", "--max-iter", "4"],
    "dual": ["--manifold", "cubic-curve", "-k", "3", "--solver", "dual", "--centers", "40", "--n-train", "200",
             "--n-test", "80", "--max-iter", "4"],
}
COMMON = ["--n-curvature", "0", "-q"]
TIMING = ("seconds", "elapsed", "time", "timings", "memory")  # measurements, not results


def _numbers_equal(a, b, where, rtol=1e-10):
    """Recursive comparison of json values; floats to rtol (timings skipped)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (where, sorted(set(a) ^ set(b)))
        for k in a:
            if not any(t in k for t in TIMING):
                _numbers_equal(a[k], b[k], f"{where}.{k}", rtol)
    elif isinstance(a, list):
        assert len(a) == len(b), (where, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            _numbers_equal(x, y, f"{where}[{i}]", rtol)
    elif isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), (where, a, b)
        else:
            assert abs(a - b) <= rtol * max(abs(a), abs(b)) + 1e-300, (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of each path (computed once, on demand)."""
    cache = {}

    def get(path):
        if path not in cache:
            out = str(tmp_path_factory.mktemp(f"ref-{path}"))
            assert main(["cy", *PATHS[path], *COMMON, "-o", out]) == 0
            cache[path] = out
        return cache[path]

    return get


ROWS = [("dense", "SIGKILL", 1), ("dense", "SIGINT", 2), ("dense", "SIGKILL", 2), ("matrix-free", "SIGINT", 1),
        ("matrix-free", "SIGKILL", 2), ("dual", "SIGINT", 1), ("dual", "SIGKILL", 2)]


@pytest.mark.parametrize("path,sig,at", [r if r == ROWS[0] else pytest.param(*r, marks=pytest.mark.slow) for r in ROWS],
                         ids=[f"{p}-{s}-after-{a}" for p, s, a in ROWS])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, capsys, reference, path, sig, at):
    out = str(tmp_path / "run")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, out, sig, str(at), *PATHS[path], *COMMON],
                          capture_output=True, text=True, timeout=300)
    if sig == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert os.path.exists(os.path.join(out, LOCK_NAME))  # a killed process cleans nothing up
    else:
        assert proc.returncode == 130, proc.stderr
        assert not os.path.exists(os.path.join(out, LOCK_NAME))
    ck = json.load(open(os.path.join(out, "checkpoint.json")))
    assert ck["iteration"] == at and len(ck["history"]) == at
    assert not os.path.exists(os.path.join(out, "metrics.json"))  # the run did not finish
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]  # no temporary left by an atomic write

    capsys.readouterr()
    assert main(["cy", *PATHS[path], "--n-curvature", "0", "--resume", "-o", out]) == 0  # takes over a stale lock
    log = capsys.readouterr().out
    assert f"resumed from {out}/checkpoint.npz at iteration {at} " in log, log  # continued, not restarted
    assert not os.path.exists(os.path.join(out, LOCK_NAME))

    ref = reference(path)
    for name in ("history.json", "metrics.json"):
        _numbers_equal(json.load(open(os.path.join(ref, name))), json.load(open(os.path.join(out, name))), name)
    with np.load(os.path.join(ref, "model.npz")) as a, np.load(os.path.join(out, "model.npz")) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            if a[k].dtype.kind in "fc":
                np.testing.assert_allclose(b[k], a[k], rtol=1e-10, atol=1e-300, err_msg=k)
            else:
                np.testing.assert_array_equal(b[k], a[k], err_msg=k)
