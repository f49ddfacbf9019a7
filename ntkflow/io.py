"""Files, written and read safely: atomic writes, an output-directory lock, validated readers.

Every file ntkflow writes goes through :func:`atomic_write` (or :func:`atomic_savez`, :func:`atomic_json`,
:func:`atomic_text`): the bytes go to a uniquely named temporary file in the *same* directory, are
flushed and ``fsync``-ed, and the temporary file is renamed over the target with ``os.replace`` (atomic on
POSIX). A reader therefore sees either the old file or the new one, never a mixture; a crash, a Ctrl-C or
a full disk leaves the old file intact and at most a ``.NAME.*.tmp`` file, which the failed write removes
when it can. A target that is a symbolic link is refused (a write would replace the link, not follow it).

:class:`RunLock` marks an output directory as in use (``DIR/.ntkflow.lock``, created with ``O_EXCL``,
holding pid, host, start time and command); a second run on the same directory is refused with
:class:`RunLockedError` naming the lock file. A lock left by a process that no longer runs on this host is
stale and is taken over; a lock from another host must be removed by hand.

The readers (:func:`read_npz`, :func:`read_json`) turn every way a file can be unreadable — missing,
permission denied, empty, truncated, not a zip, a pickle, invalid JSON — into :class:`NtkflowFileError`
(a ``ValueError``) or ``FileNotFoundError``, naming the file and what is wrong. ``np.load`` is always
called with ``allow_pickle=False``. :func:`file_array` checks one stored array's shape, dtype kind and
finiteness; :func:`check_format` a file's format tag and version.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import tempfile
import zipfile
import zlib

import numpy as np

__all__ = [
    "NtkflowFileError", "RunLockedError", "atomic_write", "atomic_savez", "atomic_json", "atomic_text",
    "sha256_file", "RunLock", "read_npz", "read_json", "file_array", "check_format", "LOCK_NAME",
]

#: name of the lock file :class:`RunLock` creates inside an output directory
LOCK_NAME = ".ntkflow.lock"


class NtkflowFileError(ValueError):
    """A file ntkflow reads or writes is unusable; ``path`` is the file, the message says what is wrong."""

    def __init__(self, path, message: str):
        self.path = os.fspath(path)
        super().__init__(message)


class RunLockedError(NtkflowFileError):
    """Another run holds the output directory's lock (see :class:`RunLock`)."""


# ---- writing --------------------------------------------------------------------------------------


def atomic_write(path, writer, *, mode: str = "wb") -> str:
    """Write ``path`` atomically: ``writer(f)`` fills a temporary file in the same directory (``mode``
    "wb" or "w"), which is fsync-ed and then renamed over ``path``. Returns ``path``.

    On any exception (including KeyboardInterrupt and a full disk) the temporary file is removed and
    ``path`` is left as it was. A ``path`` that is a symbolic link is refused (NtkflowFileError).
    """
    path = os.fspath(path)
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: expected 'wb' or 'w', received {mode!r}.")
    if os.path.islink(path):
        raise NtkflowFileError(path, f"{path!r} is a symbolic link; ntkflow does not write through links "
                                     f"(remove the link or choose another output path).")
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (best effort: not every file system allows it)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def atomic_savez(path, **arrays) -> str:
    """``np.savez(path, **arrays)`` through :func:`atomic_write` (no pickles: object arrays are refused)."""
    for k, v in arrays.items():
        if np.asarray(v).dtype.kind == "O":
            raise TypeError(f"{k}: an object array would be stored as a pickle; store numbers or strings.")
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def atomic_text(path, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write`."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def atomic_json(path, obj, *, indent: int | None = 1, default=None) -> str:
    """``json.dump(obj)`` to ``path`` through :func:`atomic_write`; the text is formed before the file is
    touched, so an object json cannot store fails without writing anything."""
    return atomic_text(path, json.dumps(obj, indent=indent, default=default))


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes (ties the two files of a model together)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- the output-directory lock ------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """Context manager: ``with RunLock(out_dir, command="ntkflow cy"):`` holds ``out_dir/.ntkflow.lock``.

    Entering creates ``out_dir`` if needed and the lock file with ``O_CREAT | O_EXCL`` (atomic: of two
    runs started together exactly one succeeds); the file holds ``{"pid", "host", "started", "command"}``.
    If the lock exists and names a process of this host that no longer runs, it is stale and replaced;
    otherwise :class:`RunLockedError` names the lock file, its holder and how to clear it. Leaving removes
    the lock (only if it is still this run's), and ``out_dir`` too when this lock created it and it is
    still empty (a run refused before writing leaves nothing behind).
    """

    def __init__(self, out_dir, *, command: str = "ntkflow"):
        self.out_dir = os.fspath(out_dir)
        self.path = os.path.join(self.out_dir, LOCK_NAME)
        self.command = command
        self._created_dir = False
        self._held = False

    def _holder(self) -> dict:
        try:
            with open(self.path) as f:
                d = json.load(f)
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> "RunLock":
        if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise NtkflowFileError(self.out_dir, f"output: {self.out_dir!r} exists and is not a directory; "
                                                 f"choose another output directory.")
        if not os.path.isdir(self.out_dir):
            os.makedirs(self.out_dir)
            self._created_dir = True
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": self.command}
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileExistsError:
                h = self._holder()
                stale = (h.get("host") == me["host"] and isinstance(h.get("pid"), int)
                         and not _pid_alive(h["pid"]))
                if stale and attempt == 0:
                    self._remove_stale(h)
                    continue
                who = (f"pid {h.get('pid')} on host {h.get('host')} since {h.get('started')} ({h.get('command')})"
                       if h else "an unreadable lock file")
                self._cleanup_dir()
                raise RunLockedError(self.path, (
                    f"output: {self.out_dir!r} is in use by another run: {who}; lock file {self.path!r}. Wait for "
                    f"that run to finish or choose another -o; if no such run is alive, delete {self.path!r}."
                )) from None
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
            self._held = True
            self._me = me
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _remove_stale(self, holder: dict) -> None:
        """Move the stale lock aside atomically; if what was moved is not the stale lock judged (another run
        replaced it meanwhile), put it back (``os.link`` fails rather than overwrite a newer lock)."""
        aside = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside) as f:
                moved = json.load(f)
        except (OSError, ValueError):
            moved = {}
        if moved != holder:
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        os.unlink(aside)

    def _cleanup_dir(self):
        if self._created_dir:
            try:
                os.rmdir(self.out_dir)  # only if empty
            except OSError:
                pass

    def __exit__(self, *exc):
        if self._held:
            if self._holder().get("pid") == self._me["pid"]:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            self._held = False
            self._cleanup_dir()
        return False


# ---- reading ------------------------------------------------------------------------------------


def _hint(hint: str) -> str:
    return f" {hint}" if hint else ""


def _check_readable(path: str, what: str, hint: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: no such file {path!r}.{_hint(hint)}")
    if os.path.isdir(path):
        raise NtkflowFileError(path, f"{what}: {path!r} is a directory, expected a file.{_hint(hint)}")
    if not os.access(path, os.R_OK):
        raise NtkflowFileError(path, f"{what}: {path!r} cannot be read (permission denied); fix its permissions.")
    if os.path.getsize(path) == 0:
        raise NtkflowFileError(path, f"{what}: {path!r} is empty (0 bytes; an interrupted copy or write?).{_hint(hint)}")


def read_npz(path, *, what: str = "file", required=(), hint: str = "") -> dict:
    """The arrays of an ``.npz`` archive as a dict, loaded with ``allow_pickle=False``.

    Raises FileNotFoundError (no file) or :class:`NtkflowFileError` naming ``what`` and the file: empty,
    truncated, not a zip archive, a pickle or a bare ``.npy``, unreadable, or missing a ``required`` key.
    """
    path = os.fspath(path)
    _check_readable(path, what, hint)
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise NtkflowFileError(path, f"{what}: {path!r} is a single .npy array, expected an .npz archive "
                                         f"of named arrays.{_hint(hint)}")
        with f:
            data = {k: f[k] for k in f.files}
    except NtkflowFileError:
        raise
    except PermissionError:
        raise NtkflowFileError(path, f"{what}: {path!r} cannot be read (permission denied).") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, KeyError) as exc:
        reason = ("neither an .npz archive nor an .npy array; NumPy would have to unpickle it, which ntkflow "
                  "never does" if "pickle" in str(exc) else f"{type(exc).__name__}: {exc}")
        raise NtkflowFileError(path, f"{what}: {path!r} is not a readable .npz archive ({reason}); it may be "
                                     f"truncated or of another format.{_hint(hint)}") from None
    missing = [k for k in required if k not in data]
    if missing:
        raise NtkflowFileError(path, f"{what}: {path!r} lacks the arrays {missing} (found {sorted(data)}); "
                                     f"{hint or 'was it written by ntkflow?'}")
    return data


def read_json(path, *, what: str = "file", required=(), hint: str = "") -> dict:
    """A JSON object from ``path``; FileNotFoundError or :class:`NtkflowFileError` (empty, not UTF-8,
    invalid JSON, not an object, missing a ``required`` key) naming ``what`` and the file."""
    path = os.fspath(path)
    _check_readable(path, what, hint)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except PermissionError:
        raise NtkflowFileError(path, f"{what}: {path!r} cannot be read (permission denied).") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NtkflowFileError(path, f"{what}: {path!r} is not valid JSON ({exc}); it may be "
                                     f"truncated.{_hint(hint)}") from None
    if not isinstance(doc, dict):
        raise NtkflowFileError(path, f"{what}: {path!r} holds a JSON {type(doc).__name__}, expected an object.")
    missing = [k for k in required if k not in doc]
    if missing:
        raise NtkflowFileError(path, f"{what}: {path!r} lacks the keys {missing} (found {sorted(doc)}); "
                                     f"{hint or 'was it written by ntkflow?'}")
    return doc


def file_array(data: dict, key: str, path, *, what: str = "file", ndim: int | None = None,
               shape: tuple | None = None, kind: str = "iuf", finite: bool = True) -> np.ndarray:
    """``data[key]`` after checking ndim, ``shape`` (None entries are free), dtype kind (NumPy kind
    letters, e.g. "iu" integers, "iuf" real, "iufc" numeric) and finiteness; NtkflowFileError otherwise."""
    path = os.fspath(path)
    if key not in data:
        raise NtkflowFileError(path, f"{what}: {path!r} lacks the array {key!r} (found {sorted(data)}).")
    a = np.asarray(data[key])
    if a.dtype.kind not in kind:
        raise NtkflowFileError(path, f"{what}: {key} in {path!r} has dtype {a.dtype}, expected kind {kind!r} "
                                     f"(i int, u unsigned, f float, c complex).")
    if ndim is not None and a.ndim != ndim:
        raise NtkflowFileError(path, f"{what}: {key} in {path!r} has shape {a.shape}, expected {ndim} dimensions.")
    if shape is not None and (a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape))):
        want = tuple("*" if s is None else s for s in shape)
        raise NtkflowFileError(path, f"{what}: {key} in {path!r} has shape {a.shape}, expected {want}.")
    if finite and a.dtype.kind in "fc" and a.size and not np.all(np.isfinite(a)):
        raise NtkflowFileError(path, f"{what}: {key} in {path!r} holds NaN/inf entries.")
    return a


def check_format(path, found, expected: str, *, what: str = "file", versions=None, found_version=None) -> None:
    """Refuse a file whose format tag ``found`` is not ``expected`` or whose version is not in ``versions``."""
    path = os.fspath(path)
    tag = str(np.asarray(found)) if found is not None else None
    if tag != expected:
        raise NtkflowFileError(path, f"{what}: {path!r} has format {tag!r}, expected {expected!r}.")
    if versions is not None:
        try:
            v = int(np.asarray(found_version))
        except (TypeError, ValueError):
            v = found_version
        if v not in tuple(versions):
            raise NtkflowFileError(path, f"{what}: {path!r} is format version {found_version!r}; this ntkflow "
                                         f"reads versions {tuple(versions)} (upgrade ntkflow or rewrite the file).")
