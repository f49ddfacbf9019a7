"""The reliability battery: one row per bad input or fault, across the API and every ``ntkflow`` command.

Like SciPy's iterative-solver case registry: each row of ``CASES`` names a fault, builds it in ``tmp_path``
(``make(tmp, fx) -> thing to run``) and states what must happen — the exception type (API rows) or the exit
status (CLI rows, run in-process through ``ntkflow.cli.main``) and the words the message must contain (the
argument or the file it is about). CLI rows also check that the error is ONE line ``ntkflow CMD: error: ...``
with no traceback. ``test_case`` runs every row; the other tests below are faults that need more than one
step (atomic writes interrupted, locks, dask sockets, kill-and-resume in ``test_reliability_kill.py``).

Exit statuses (ntkflow/cli.py): 2 usage or bad input, 1 runtime (files, lock, connection), 130 Ctrl-C.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, NamedTuple

import numpy as np
import pytest

import ntkflow
from ntkflow.cli import main
from ntkflow.engine import Gaussian, SchedulerError, kernel_operator
from ntkflow.io import (LOCK_NAME, NtkflowFileError, RunLock, RunLockedError, atomic_json, atomic_savez, atomic_write,
                        read_json, read_npz)
from ntkflow.manifolds import (check_on_manifold, load_hypersurface_file, load_points, preset, sample,
                               save_points)
from ntkflow.solvers.least_squares import load_checkpoint


class Case(NamedTuple):
    name: str
    make: Callable  # (tmp, fx) -> callable (api) or argv list (cli)
    expect: object  # exception type (api) or exit status (cli)
    words: tuple  # substrings the message must contain (argument / file names)
    cli: bool = False


# ---- shared, module-scoped material: a point file and two small models --------------------------------


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    d = tmp_path_factory.mktemp("fx")
    cubic = preset("cubic-curve")
    pts = save_points(str(d / "cubic.npz"), sample(cubic, 60, seed=0, progress=False))
    dwork3 = str(d / "dwork3")
    assert main(["cy", "--manifold", "dwork-quintic", "--psi", "0.3", "-k", "1", "--n-train", "120", "--n-test",
                 "60", "--max-iter", "2", "--n-curvature", "0", "-q", "-o", dwork3]) == 0
    d5 = save_points(str(d / "dwork5.npz"), sample(preset("dwork-quintic", psi=0.5), 40, seed=1, progress=False))
    d3 = save_points(str(d / "dwork3.npz"), sample(preset("dwork-quintic", psi=0.3), 40, seed=2, progress=False))
    model = str(d / "cubicmodel")
    assert main(["cy", "--manifold", "cubic-curve", "-k", "3", "--n-train", "150", "--n-test", "60", "--max-iter", "2",
                 "--n-curvature", "0", "-q", "-o", model]) == 0
    return {"dir": str(d), "points": pts, "dwork_model": dwork3, "dwork5": d5, "dwork3": d3, "model": model}


def _copy(src, dst):
    (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dst)
    return str(dst)


def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _points_with(tmp, fx, **changes):
    """A copy of the fixture's point file with some arrays replaced (None removes one)."""
    with np.load(fx["points"]) as f:
        data = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v(data[k]) if callable(v) else v
    return _npz(tmp / "p.npz", **data)


def _truncated(tmp, src, name="t.npz"):
    b = open(src, "rb").read()
    return _write(tmp / name, b[: len(b) // 2])


def _pickle_file(tmp, name="p.npz"):
    with open(tmp / name, "wb") as f:
        pickle.dump({"points": [1, 2, 3]}, f)
    return str(tmp / name)


def _model_with(tmp, fx, *, json_change=None, npz_change=None, rehash=True):
    """A copy of the cubic model with model.json / model.npz altered (rehash: store the new npz's hash)."""
    d = _copy(fx["model"], tmp / "m")
    if npz_change is not None:
        with np.load(os.path.join(d, "model.npz")) as f:
            arrays = {k: f[k] for k in f.files}
        npz_change(arrays)
        np.savez(os.path.join(d, "model.npz"), **arrays)
    meta = json.load(open(os.path.join(d, "model.json")))
    if rehash:
        meta["npz_sha256"] = ntkflow.io.sha256_file(os.path.join(d, "model.npz"))
    if json_change is not None:
        json_change(meta)
    json.dump(meta, open(os.path.join(d, "model.json"), "w"))
    return d


def _checkpoint(tmp, fx, *, which="npz", how="truncate"):
    d = tmp / "ck"
    d.mkdir()
    assert main(["cy", "--manifold", "cubic-curve", "-k", "3", "--n-train", "100", "--n-test", "40", "--max-iter", "2",
                 "--n-curvature", "0", "-q", "-o", str(d)]) == 0
    p = str(d / f"checkpoint.{which}")
    if how == "truncate":
        _truncated(tmp, p, "x")
        os.replace(tmp / "x", p)
    elif how == "format":
        doc = json.load(open(p))
        doc["format"] = "something/9"
        json.dump(doc, open(p, "w"))
    elif how == "iteration":
        doc = json.load(open(p))
        doc["iteration"] += 1
        json.dump(doc, open(p, "w"))
    return str(d / "checkpoint")


def _locked(tmp, pid=None, host=None):
    d = tmp / "out"
    d.mkdir(exist_ok=True)
    (d / LOCK_NAME).write_text(json.dumps({"pid": pid or os.getpid(), "host": host or socket.gethostname(),
                                           "started": "now", "command": "ntkflow cy (test)"}))
    return str(d)


CY_TINY = ["--manifold", "cubic-curve", "-k", "3", "--n-train", "100", "--n-test", "40", "--max-iter", "2",
           "--n-curvature", "0", "-q"]
RICCI_TINY = ["round-s2", "--t-end", "0.05", "--no-collocation", "-q"]

CASES = [
    # ---- ntkflow.io: writing ------------------------------------------------------------------------
    Case("atomic-write-symlink", lambda t, fx: lambda: (os.symlink(fx["points"], t / "l.npz"),
                                                        atomic_savez(t / "l.npz", x=np.ones(2))),
         NtkflowFileError, ("symbolic link", "l.npz")),
    Case("atomic-savez-object-array", lambda t, fx: lambda: atomic_savez(t / "o.npz", bad=np.array([{}], dtype=object)),
         TypeError, ("bad", "pickle")),
    Case("atomic-json-not-serialisable", lambda t, fx: lambda: atomic_json(t / "j.json", {"a": object()}),
         TypeError, ("object",)),
    Case("atomic-write-bad-mode", lambda t, fx: lambda: atomic_write(t / "x", lambda f: None, mode="a"),
         ValueError, ("mode", "'a'")),
    Case("runlock-held", lambda t, fx: lambda: RunLock(_locked(t)).__enter__(),
         RunLockedError, (LOCK_NAME, "delete", "ntkflow cy (test)")),
    Case("runlock-other-host", lambda t, fx: lambda: RunLock(_locked(t, pid=1, host="elsewhere.example")).__enter__(),
         RunLockedError, ("elsewhere.example", LOCK_NAME)),
    Case("runlock-output-is-file", lambda t, fx: lambda: RunLock(_write(t / "f", b"x")).__enter__(),
         NtkflowFileError, ("not a directory", "/f'")),
    # ---- ntkflow.io: reading ------------------------------------------------------------------------
    Case("npz-missing", lambda t, fx: lambda: read_npz(t / "no.npz", what="points"), FileNotFoundError, ("points", "no.npz")),
    Case("npz-empty", lambda t, fx: lambda: read_npz(_write(t / "e.npz", b""), what="points"),
         NtkflowFileError, ("points", "e.npz", "empty")),
    Case("npz-truncated", lambda t, fx: lambda: read_npz(_truncated(t, fx["points"]), what="points"),
         NtkflowFileError, ("points", "t.npz", "not a readable .npz")),
    Case("npz-text", lambda t, fx: lambda: read_npz(_write(t / "x.npz", b"hello\n"), what="points"),
         NtkflowFileError, ("x.npz", "never")),
    Case("npz-pickle", lambda t, fx: lambda: read_npz(_pickle_file(t), what="points"),
         NtkflowFileError, ("p.npz", "unpickle")),
    Case("npz-is-npy", lambda t, fx: lambda: (np.save(t / "a.npy", np.ones(3)), read_npz(t / "a.npy", what="points")),
         NtkflowFileError, ("a.npy", ".npy")),
    Case("npz-directory", lambda t, fx: lambda: read_npz(t, what="points"), NtkflowFileError, ("directory",)),
    Case("npz-missing-key", lambda t, fx: lambda: read_npz(_npz(t / "k.npz", a=np.ones(1)), what="points",
                                                            required=("points",)),
         NtkflowFileError, ("k.npz", "points")),
    Case("json-invalid", lambda t, fx: lambda: read_json(_write(t / "j.json", b'{"a": '), what="model"),
         NtkflowFileError, ("j.json", "not valid JSON")),
    Case("json-not-object", lambda t, fx: lambda: read_json(_write(t / "j.json", b"[1, 2]"), what="model"),
         NtkflowFileError, ("j.json", "list")),
    Case("json-binary", lambda t, fx: lambda: read_json(_write(t / "j.json", b"\xff\xfe\x00"), what="model"),
         NtkflowFileError, ("j.json",)),
    # ---- points files (load_points) and points on the manifold ------------------------------------
    Case("points-format-tag", lambda t, fx: lambda: load_points(_points_with(t, fx, format=np.array("other"))),
         NtkflowFileError, ("p.npz", "format", "other")),
    Case("points-version", lambda t, fx: lambda: load_points(_points_with(t, fx, version=np.array(99))),
         NtkflowFileError, ("p.npz", "version", "99")),
    Case("points-shape", lambda t, fx: lambda: load_points(_points_with(t, fx, points=lambda p: p[:, :2])),
         NtkflowFileError, ("p.npz", "points", "shape")),
    Case("points-dtype", lambda t, fx: lambda: load_points(_points_with(t, fx, points=lambda p: np.ones(p.shape, int))),
         NtkflowFileError, ("p.npz", "points", "dtype")),
    Case("points-nan", lambda t, fx: lambda: load_points(_points_with(t, fx, points=lambda p: np.where(
        np.arange(p.size).reshape(p.shape) == 4, np.nan, p))), NtkflowFileError, ("p.npz", "NaN")),
    Case("points-weights-length", lambda t, fx: lambda: load_points(_points_with(t, fx, weights=lambda w: w[:-1])),
         NtkflowFileError, ("p.npz", "weights", "shape")),
    Case("points-weights-negative", lambda t, fx: lambda: load_points(_points_with(t, fx, weights=lambda w: -w)),
         NtkflowFileError, ("p.npz", "weights", "> 0")),
    Case("points-elim-range", lambda t, fx: lambda: load_points(_points_with(t, fx, elim=lambda e: e + 7)),
         NtkflowFileError, ("p.npz", "elim", "0..2")),
    Case("points-off-manifold", lambda t, fx: lambda: load_points(_points_with(t, fx, points=lambda p: p * (
        1 + 1e-3 * np.arange(p.shape[1])))), NtkflowFileError, ("p.npz", "not on cubic-curve")),
    Case("points-no-arrays", lambda t, fx: lambda: load_points(_npz(t / "p.npz", a=np.ones(2))),
         NtkflowFileError, ("p.npz", "X_train")),
    Case("points-zero-row", lambda t, fx: lambda: check_on_manifold(preset("cubic-curve"), np.zeros((2, 3), complex)),
         ValueError, ("points", "z = 0")),
    Case("points-other-family-member", lambda t, fx: lambda: check_on_manifold(
        preset("dwork-quintic", psi=0.3), load_points(fx["dwork5"]).points),
         ValueError, ("points", "dwork-quintic", "psi")),
    # ---- hypersurface files -----------------------------------------------------------------------
    Case("hypersurface-empty-text", lambda t, fx: lambda: load_hypersurface_file(_write(t / "h.txt", b"")),
         NtkflowFileError, ("h.txt", "empty")),
    Case("hypersurface-binary-text", lambda t, fx: lambda: load_hypersurface_file(_write(t / "h.txt", b"\xff\xfe\x01")),
         NtkflowFileError, ("h.txt", "not a text file")),
    Case("hypersurface-npz-truncated", lambda t, fx: lambda: load_hypersurface_file(_truncated(t, fx["points"], "h.npz")),
         NtkflowFileError, ("hypersurface", "h.npz")),
    Case("hypersurface-npz-float-exponents", lambda t, fx: lambda: load_hypersurface_file(_npz(
        t / "h.npz", exponents=np.eye(3) * 3.0, coefficients=np.ones(3))), NtkflowFileError, ("h.npz", "exponents", "dtype")),
    Case("hypersurface-json-list", lambda t, fx: lambda: load_hypersurface_file(_write(t / "h.json", b"[1]")),
         NtkflowFileError, ("h.json", "list")),
    Case("hypersurface-nan-coefficient", lambda t, fx: lambda: load_hypersurface_file(_write(
        t / "h.txt", b"3 0 0 1\n0 3 0 nan\n0 0 3 1\n")), NtkflowFileError, ("h.txt", "NaN")),
    Case("hypersurface-wrong-degree", lambda t, fx: lambda: load_hypersurface_file(_npz(
        t / "h.npz", exponents=np.eye(3, dtype=int) * 2, coefficients=np.ones(3))), ValueError, ("h.npz",)),
    # ---- checkpoints ------------------------------------------------------------------------------
    Case("checkpoint-npz-truncated", lambda t, fx: lambda: load_checkpoint(_checkpoint(t, fx, which="npz")),
         NtkflowFileError, ("checkpoint", "checkpoint.npz")),
    Case("checkpoint-json-truncated", lambda t, fx: lambda: load_checkpoint(_checkpoint(t, fx, which="json")),
         NtkflowFileError, ("checkpoint", "checkpoint.json", "JSON")),
    Case("checkpoint-format", lambda t, fx: lambda: load_checkpoint(_checkpoint(t, fx, which="json", how="format")),
         NtkflowFileError, ("checkpoint.json", "something/9")),
    Case("checkpoint-pair-mismatch", lambda t, fx: lambda: load_checkpoint(_checkpoint(t, fx, which="json",
                                                                                          how="iteration")),
         NtkflowFileError, ("checkpoint.npz", "checkpoint.json", "do not match")),
    # ---- models (ntkflow.load, metric/eta/potential) ----------------------------------------------
    Case("model-missing", lambda t, fx: lambda: ntkflow.load(t / "none"), FileNotFoundError, ("none", "model.json")),
    Case("model-npz-changed", lambda t, fx: lambda: ntkflow.load(_model_with(
        t, fx, npz_change=lambda a: a.__setitem__("weight", a["weight"] * 2), rehash=False)),
         NtkflowFileError, ("model.npz", "model.json", "SHA-256")),
    Case("model-index-range", lambda t, fx: lambda: ntkflow.load(_model_with(
        t, fx, npz_change=lambda a: a.__setitem__("alpha", a["alpha"] + 10_000))),
         NtkflowFileError, ("model.npz", "alpha/beta index")),
    Case("model-k-mismatch", lambda t, fx: lambda: ntkflow.load(_model_with(t, fx, json_change=lambda m: m.update(k=5))),
         NtkflowFileError, ("model.npz", "k = 5")),
    Case("model-nan", lambda t, fx: lambda: ntkflow.load(_model_with(
        t, fx, npz_change=lambda a: a.__setitem__("weight", a["weight"] * np.nan))), NtkflowFileError, ("weight", "NaN")),
    Case("model-unknown-kind", lambda t, fx: lambda: ntkflow.load(_model_with(t, fx, json_change=lambda m: m.update(
        kind="martian"))), ValueError, ("kind", "martian")),
    Case("model-version", lambda t, fx: lambda: ntkflow.load(_model_with(t, fx, json_change=lambda m: m.update(
        version=7))), NtkflowFileError, ("model.json", "version 7")),
    Case("model-json-truncated", lambda t, fx: lambda: ntkflow.load(_model_with(t, fx, json_change=None) and (
        _write(t / "m" / "model.json", b'{"format": "ntkf') and str(t / "m"))), NtkflowFileError, ("model.json", "JSON")),
    Case("model-metric-other-family-member", lambda t, fx: lambda: ntkflow.load(fx["dwork_model"]).metric(
        load_points(fx["dwork5"])), ValueError, ("points", "not on dwork-quintic")),
    Case("model-eta-array-off-manifold", lambda t, fx: lambda: ntkflow.load(fx["dwork_model"]).eta(
        load_points(fx["dwork5"]).points), ValueError, ("points", "not on dwork-quintic")),
    Case("model-potential-zero", lambda t, fx: lambda: ntkflow.load(fx["model"]).potential(np.zeros((1, 3), complex)),
         ValueError, ("points", "z = 0")),
    # ---- dask ---------------------------------------------------------------------------------------
    Case("dask-bad-address", lambda t, fx: lambda: kernel_operator(Gaussian(1.0), np.ones((4, 2)), backend="dask",
                                                                  scheduler="localhost:1"),
         ValueError, ("scheduler", "localhost:1")),
    Case("dask-bad-timeout", lambda t, fx: lambda: kernel_operator(Gaussian(1.0), np.ones((4, 2)), backend="dask",
                                                                  scheduler="tcp://127.0.0.1:1", timeout=-1),
         ValueError, ("timeout",)),
    # ---- the CLI: every subcommand ------------------------------------------------------------------
    Case("cli-no-command", lambda t, fx: [], 2, ("usage",), cli=True),
    Case("cli-unknown-command", lambda t, fx: ["nosuch"], 2, ("nosuch",), cli=True),
    Case("sample-n-zero", lambda t, fx: ["sample", "cubic-curve", "-n", "0", "-o", str(t / "s.npz")], 2, ("n",), cli=True),
    Case("sample-psi-random", lambda t, fx: ["sample", "--random-quintic", "0", "--psi", "0.5", "-n", "5", "-o",
                                             str(t / "s.npz")], 2, ("psi",), cli=True),
    Case("sample-no-output-dir", lambda t, fx: ["sample", "cubic-curve", "-n", "5", "-o", str(t / "no" / "s.npz")], 1,
         ("output", "no"), cli=True),
    Case("sample-output-symlink", lambda t, fx: (os.symlink(fx["points"], t / "l.npz"),
                                                 ["sample", "cubic-curve", "-n", "5", "-o", str(t / "l.npz")])[1], 1,
         ("l.npz", "symbolic link"), cli=True),
    Case("sample-hypersurface-missing", lambda t, fx: ["sample", "--hypersurface", str(t / "h.json"), "-n", "5", "-o",
                                                       str(t / "s.npz")], 1, ("hypersurface", "h.json"), cli=True),
    Case("sample-hypersurface-truncated", lambda t, fx: ["sample", "--hypersurface", _truncated(t, fx["points"], "h.npz"),
                                                         "-n", "5", "-o", str(t / "s.npz")], 1, ("h.npz",), cli=True),
    Case("ntk-study-bad-arch", lambda t, fx: ["ntk-study", "--out", str(t / "o"), "--archs", "tanh-net"], 2,
         ("tanh-net",), cli=True),
    Case("ntk-study-no-out", lambda t, fx: ["ntk-study", "--widths", "4,8"], 2, ("--out",), cli=True),
    Case("ntk-study-out-is-file", lambda t, fx: ["ntk-study", "--out", _write(t / "f", b""), "--widths", "4,8", "--seeds",
                                                 "2", "--steps", "1", "--no-plots"], 1, ("File exists", "/f'"), cli=True),
    Case("cy-k-zero", lambda t, fx: ["cy", *CY_TINY, "-k", "0", "-o", str(t / "o")], 2, ("k",), cli=True),
    Case("cy-resume-no-checkpoint", lambda t, fx: ["cy", *CY_TINY, "--resume", "-o", str(t / "o")], 2,
         ("resume", "checkpoint"), cli=True),
    Case("cy-locked", lambda t, fx: ["cy", *CY_TINY, "-o", _locked(t)], 1, (LOCK_NAME, "in use"), cli=True),
    Case("cy-output-is-file", lambda t, fx: ["cy", *CY_TINY, "-o", _write(t / "f", b"")], 1, ("not a directory",),
         cli=True),
    Case("cy-hypersurface-missing", lambda t, fx: ["cy", "--hypersurface", str(t / "h.txt"), "-q", "-o", str(t / "o")],
         1, ("hypersurface", "h.txt"), cli=True),
    Case("cy-resume-damaged-checkpoint", lambda t, fx: ["cy", *CY_TINY, "--resume", "-o",
                                                        os.path.dirname(_checkpoint(t, fx, which="npz"))], 1,
         ("checkpoint.npz",), cli=True),
    Case("eval-model-missing", lambda t, fx: ["eval", str(t / "none"), fx["points"]], 1, ("none",), cli=True),
    Case("eval-points-missing", lambda t, fx: ["eval", fx["model"], str(t / "p.npz")], 1, ("p.npz",), cli=True),
    Case("eval-points-truncated", lambda t, fx: ["eval", fx["model"], _truncated(t, fx["points"])], 1, ("t.npz",), cli=True),
    Case("eval-points-pickle", lambda t, fx: ["eval", fx["model"], _pickle_file(t)], 1, ("p.npz", "unpickle"), cli=True),
    Case("eval-points-other-manifold", lambda t, fx: ["eval", fx["dwork_model"], fx["points"]], 2,
         ("cubic", "dwork-quintic"), cli=True),
    Case("eval-points-other-family-member", lambda t, fx: ["eval", fx["dwork_model"], fx["dwork5"], "--n-curvature", "0"],
         2, ("dwork5.npz", "not on dwork-quintic"), cli=True),
    Case("eval-model-npz-changed", lambda t, fx: ["eval", _model_with(t, fx, npz_change=lambda a: a.__setitem__(
        "weight", a["weight"] * 2), rehash=False), fx["points"]], 1, ("model.npz", "SHA-256"), cli=True),
    Case("eval-model-json-is-directory", lambda t, fx: ["eval", (lambda d: (os.remove(os.path.join(d, "model.json")),
                                                                              os.mkdir(os.path.join(d, "model.json")), d)[2])(
        _model_with(t, fx)), fx["points"]], 1, ("model.json", "directory"), cli=True),
    Case("spectrum-model-missing", lambda t, fx: ["spectrum", str(t / "none")], 1, ("none",), cli=True),
    Case("spectrum-k-prime-zero", lambda t, fx: ["spectrum", fx["model"], "--k-prime", "0"], 2,
         ("k_prime", "--k-prime", "received 0"), cli=True),
    Case("spectrum-flat-not-a-curve", lambda t, fx: ["spectrum", fx["dwork_model"], "--flat", "--n-points", "10"], 2,
         ("flat", "dim 1"), cli=True),
    Case("ricci-locked", lambda t, fx: ["ricci", *RICCI_TINY, "-o", _locked(t)], 1, (LOCK_NAME,), cli=True),
    Case("ricci-metric-file-missing", lambda t, fx: ["ricci", "--metric-file", str(t / "m.py"), "--domain", "S2", "-q",
                                                     "-o", str(t / "o")], None, ("m.py",), cli=True),
    Case("ricci-negative-t-end", lambda t, fx: ["ricci", "round-s2", "--t-end", "-1", "-q", "-o", str(t / "o")], 2,
         ("--t-end",), cli=True),
    Case("ricci-resume-no-checkpoint", lambda t, fx: ["ricci", *RICCI_TINY, "--resume", "-o", str(t / "o")], None,
         ("resume",), cli=True),
    Case("bench-no-mode", lambda t, fx: ["bench", "--out", str(t / "o")], 2, ("--quick", "--full"), cli=True),
    Case("bench-both-modes", lambda t, fx: ["bench", "--quick", "--full"], 2, ("--full", "--quick"), cli=True),
]


def _one_line_error(err: str, cmd: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) >= 1
    return lines[-1]


#: rows that fail today in code owned by another team, kept strict so that the fix is noticed
KNOWN_GAPS: dict = {}  # case name -> why it is expected to fail (strict xfail); empty: every row holds


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(reason=KNOWN_GAPS[c.name], strict=True))
                                  if c.name in KNOWN_GAPS else c for c in CASES], ids=[c.name for c in CASES])
def test_case(case, tmp_path, fx, capsys):
    target = case.make(tmp_path, fx)
    if case.cli:
        try:
            rc = main(list(target))
        except SystemExit as exc:  # argparse's own usage errors
            rc = exc.code
        err = capsys.readouterr().err
        line = _one_line_error(err, target[0] if target else "")
        if case.expect is None:  # exit status 1 or 2 both acceptable (bad file given as input)
            assert rc in (1, 2), (rc, err)
        else:
            assert rc == case.expect, (rc, err)
        if target and rc != 2 or (target and "error:" in line and target[0] not in ("nosuch",)):
            assert line.startswith(f"ntkflow {target[0]}: error: "), err
        for w in case.words:
            assert w in err, (w, err)
    else:
        with pytest.raises(case.expect) as info:
            target()
        for w in case.words:
            assert w in str(info.value), (w, str(info.value))


def test_battery_covers_every_command():
    """Every subcommand ``ntkflow --help`` lists has at least two rows."""
    parser = ntkflow.cli.build_parser()
    commands = set(next(a for a in parser._actions if a.dest == "command").choices)  # noqa: SLF001 (argparse)
    rows = {}
    for c in CASES:
        if c.cli:
            cmd = c.name.split("-")[0] if not c.name.startswith("ntk-study") else "ntk-study"
            rows[cmd] = rows.get(cmd, 0) + 1
    for cmd in commands:
        assert rows.get(cmd, 0) >= 2, (cmd, rows)


# ---- faults that take more than one call -------------------------------------------------------------


def test_atomic_write_interrupted_keeps_the_old_file(tmp_path):
    p = tmp_path / "a.npz"
    atomic_savez(p, x=np.arange(3.0))

    def writer(f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, writer)
    assert sorted(os.listdir(tmp_path)) == ["a.npz"]  # no temporary left behind
    np.testing.assert_array_equal(read_npz(p)["x"], np.arange(3.0))


def test_atomic_write_full_disk_keeps_the_old_file(tmp_path):
    """ENOSPC from the writer (a full disk): the old file stays, the temporary is removed."""
    p = tmp_path / "m.json"
    atomic_json(p, {"v": 1})

    def writer(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(p, writer)
    assert read_json(p) == {"v": 1} and sorted(os.listdir(tmp_path)) == ["m.json"]


def test_runlock_excludes_a_second_run_and_takes_over_a_stale_lock(tmp_path):
    out = tmp_path / "run"
    with RunLock(out, command="first") as lock:
        assert json.load(open(lock.path))["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match="first"):
            RunLock(out).__enter__()
    assert not out.exists()  # created by the lock, left empty: removed
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _locked(tmp_path, pid=dead.pid)  # a lock of a process that no longer runs on this host
    (tmp_path / "out" / "keep.txt").write_text("x")
    with RunLock(tmp_path / "out", command="second") as lock:
        assert json.load(open(lock.path))["command"] == "second"
    assert sorted(os.listdir(tmp_path / "out")) == ["keep.txt"]  # lock removed, the directory kept


def test_two_cli_runs_on_one_directory(tmp_path):
    """A lock held by a live process: ntkflow cy refuses (exit 1), writes nothing, keeps the lock."""
    out = _locked(tmp_path)
    before = sorted(os.listdir(out))
    assert main(["cy", *CY_TINY, "-o", out]) == 1
    assert sorted(os.listdir(out)) == before
    assert json.load(open(os.path.join(out, LOCK_NAME)))["pid"] == os.getpid()


def test_refused_resume_writes_nothing(tmp_path, capsys):
    out = tmp_path / "fresh"
    assert main(["cy", *CY_TINY, "--resume", "-o", str(out)]) == 2
    assert not out.exists()
    assert "rerun without --resume" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "eval", str(tmp_path / "none"), str(tmp_path / "p.npz")])


def test_model_files_are_one_unit(tmp_path, fx):
    """The json names the npz's SHA-256: a json from one save with the npz of another is refused."""
    a = _copy(fx["model"], tmp_path / "a")
    m = ntkflow.load(a)
    m.save(a)  # saving again gives the same pair, which loads
    np.testing.assert_allclose(ntkflow.load(a).basis.weight, m.basis.weight, rtol=0, atol=0)
    other = _copy(fx["dwork_model"], tmp_path / "b")
    shutil.copy(os.path.join(other, "model.npz"), os.path.join(a, "model.npz"))
    with pytest.raises(NtkflowFileError, match="SHA-256"):
        ntkflow.load(a)


def test_points_on_the_manifold_pass(fx):
    """The refusal is not too eager: sampled points of the right member pass, and give the model's metric."""
    m = ntkflow.load(fx["dwork_model"])
    ps = load_points(fx["dwork3"])
    g = m.metric(ps)  # (n, 3, 3)
    assert g.shape == (40, 3, 3) and np.all(np.isfinite(g))
    scaled = ps.points * (2.0 - 1.5j)  # projective rescaling keeps the points on X
    np.testing.assert_allclose(m.potential(scaled), m.potential(ps.points), rtol=1e-12)


# ---- dask: every network wait bounded --------------------------------------------------------------


class _Server:
    """A TCP service on 127.0.0.1 that is not dask: ``talk`` answers with HTTP bytes, otherwise it accepts and
    stays silent. Loopback only; closed by the test."""

    def __init__(self, talk: bool):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns = []
        self.talk = talk
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            if self.talk:
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("talk", [True, False], ids=["talking", "silent"])
def test_dask_scheduler_that_is_not_dask(talk):
    srv = _Server(talk)
    try:
        t = time.perf_counter()
        with pytest.raises(SchedulerError, match=f"scheduler: .*tcp://127.0.0.1:{srv.port}"):
            kernel_operator(Gaussian(1.0), np.ones((4, 2)), backend="dask", scheduler=f"tcp://127.0.0.1:{srv.port}",
                            inner="dense", timeout=0.5)
        assert time.perf_counter() - t < 10  # bounded: 2·timeout + 1 s for the handshake, plus slack
    finally:
        srv.close()


def test_dask_closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t = time.perf_counter()
    with pytest.raises(SchedulerError, match=f"scheduler: .*127.0.0.1:{port}"):
        kernel_operator(Gaussian(1.0), np.ones((4, 2)), backend="dask", scheduler=f"tcp://127.0.0.1:{port}",
                        inner="dense", timeout=0.5)
    assert time.perf_counter() - t < 10
    assert issubclass(SchedulerError, ConnectionError) and ntkflow.cli.exit_status(SchedulerError("x")) == 1


def test_dask_cluster_without_workers():
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(SchedulerError, match="no workers"):
            kernel_operator(Gaussian(1.0), np.ones((4, 2)), backend="dask", scheduler=cluster.scheduler_address,
                            inner="dense", timeout=0.5)


def test_dask_workers_gone_during_use():
    """The workers leave after the operator was built: the next product fails within ~timeout with a
    SchedulerError instead of waiting for ever; with a worker back, products are right again."""
    from distributed import LocalCluster

    x = np.random.default_rng(0).normal(size=(12, 2))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        op = kernel_operator(Gaussian(1.0), x, backend="dask", scheduler=cluster.scheduler_address, inner="dense",
                             timeout=0.5)
        dense = kernel_operator(Gaussian(1.0), x, backend="dense")
        try:
            np.testing.assert_allclose(op.mv(np.ones(12)), dense.mv(np.ones(12)), rtol=1e-14)
            cluster.scale(0)
            deadline = time.monotonic() + 10
            while cluster.scheduler_info["workers"] and time.monotonic() < deadline:
                time.sleep(0.05)
            t = time.perf_counter()
            with pytest.raises(SchedulerError, match="no workers"):
                op.mv(np.ones(12))
            assert time.perf_counter() - t < 10
            cluster.scale(1)
            cluster.wait_for_workers(1, timeout=10)
            np.testing.assert_allclose(op.mv(np.arange(12.0)), dense.mv(np.arange(12.0)), rtol=1e-14)
        finally:
            op.backend.close()


def test_dask_worker_killed_between_products():
    """One of two workers dies: the next product fails at once with a SchedulerError (its points are lost), the
    one after re-scatters to the surviving worker and is right."""
    from distributed import LocalCluster

    x = np.random.default_rng(1).normal(size=(12, 2))
    dense = kernel_operator(Gaussian(1.0), x, backend="dense")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        op = kernel_operator(Gaussian(1.0), x, backend="dask", scheduler=cluster.scheduler_address, inner="dense",
                             timeout=0.5, n_blocks=2)
        try:
            np.testing.assert_allclose(op.mv(np.ones(12)), dense.mv(np.ones(12)), rtol=1e-14)
            name = sorted(cluster.workers)[0]
            cluster.sync(cluster.workers[name].close)
            with pytest.raises(SchedulerError, match="scheduler: "):
                op.mv(np.ones(12))
            np.testing.assert_allclose(op.mv(np.arange(12.0)), dense.mv(np.arange(12.0)), rtol=1e-14)
        finally:
            op.backend.close()


_RACE = r"""
import sys, time
from ntkflow.io import RunLock, RunLockedError
out, t0 = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, t0 - time.time()))
try:
    with RunLock(out, command="racer"):
        print("won", flush=True)
        time.sleep(2.0)
except RunLockedError:
    print("refused", flush=True)
"""


@pytest.mark.slow
def test_runlock_race_over_a_stale_lock(tmp_path):
    """Six processes start together on a directory with a stale lock: exactly one gets it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = _locked(tmp_path, pid=dead.pid)
    t0 = time.time() + 8.0
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, out, str(t0)], stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    results = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert results == ["refused"] * 5 + ["won"], results
    assert not os.path.exists(os.path.join(out, LOCK_NAME))


@pytest.mark.parametrize("args, key", [
    (["--method", "network", "--epochs", "1", "--width", "8", "--depth", "2"], "W1"),
    (["--kernel", "gaussian", "--centers", "40", "--max-iter", "1"], "centers"),
])
def test_dual_and_network_models_refuse_arrays_of_the_wrong_shape(tmp_path, args, key):
    """A dual or network model whose npz arrays do not fit together (one row cut, hash re-made so that only the
    shape check can see it) is refused by ntkflow.load with NtkflowFileError naming the file; intact, it loads."""
    out = tmp_path / "m"
    assert main(["cy", *args, "--n-train", "400", "--n-test", "200", "--n-curvature", "0", "-q", "-o", str(out)]) == 0
    ntkflow.load(out)
    with np.load(out / "model.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays[key] = arrays[key][:-1]
    np.savez(out / "model.npz", **arrays)
    meta = json.loads((out / "model.json").read_text())
    meta["npz_sha256"] = ntkflow.io.sha256_file(out / "model.npz")
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NtkflowFileError, match="model.npz"):
        ntkflow.load(out)
