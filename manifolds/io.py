"""Hypersurfaces from files, random quintics, and the one resolution of the manifold options.

File formats for ``load_hypersurface_file`` (Q = Σ_m c_m z^{I_m}, each row I_m of degree N):

- ``.json``: ``{"exponents": [[...], ...], "coefficients": [re or [re, im], ...], "name": "..."}``;
- ``.npz``: arrays ``exponents`` (n_mon, N) int, ``coefficients`` (n_mon,) complex, optional ``name``;
- anything else is text: one monomial per line, ``e_0 … e_{N−1} re [im]`` (``#`` starts a comment line);
  N is read off the first line as the number of leading entries summing to N.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ntkflow.io import NtkflowFileError, file_array, read_json, read_npz

from .hypersurface import Hypersurface
from .presets import preset
from .sections import monomial_exponents

__all__ = ["load_hypersurface_file", "random_quintic", "build_manifold"]


def _json_coefficient(c, i: int, path: str) -> complex:
    try:
        return complex(c[0], c[1]) if isinstance(c, (list, tuple)) else complex(c)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"hypersurface: coefficient {i} of {path} is {c!r}; write a number or [re, im].") from None


def _text_rows(path: str):
    exps, co, n = [], [], None
    try:
        with open(path, encoding="utf-8") as f:
            lines = [(i + 1, ln.split()) for i, ln in enumerate(f) if ln.strip() and not ln.lstrip().startswith("#")]
    except PermissionError:
        raise NtkflowFileError(path, f"hypersurface: {path!r} cannot be read (permission denied).") from None
    except UnicodeDecodeError:
        raise NtkflowFileError(path, f"hypersurface: {path!r} is not a text file (and not .json/.npz); write one "
                                     f"monomial per line 'e_0 ... e_(N-1) re [im]'.") from None
    for lineno, r in lines:
        try:
            vals = [float(x) for x in r]
        except ValueError:
            raise ValueError(f"hypersurface: line {lineno} of {path} ({' '.join(r)!r}) is not numbers; "
                             f"expected N integer exponents, then re [im].") from None
        if n is None:
            for cand in (len(vals) - 2, len(vals) - 1):  # N exponents summing to N, then 1 or 2 numbers
                if cand > 0 and sum(vals[:cand]) == cand:
                    n = cand
                    break
            if n is None:
                raise ValueError(f"hypersurface: cannot parse line {lineno} of {path} ({' '.join(r)!r}): expected "
                                 f"N exponents summing to N, then re [im].")
        if len(vals) not in (n + 1, n + 2):
            raise ValueError(f"hypersurface: line {lineno} of {path} has {len(vals)} numbers; expected {n} exponents "
                             f"then re [im] like the first line.")
        exps.append([int(v) for v in vals[:n]])
        co.append(complex(vals[n], vals[n + 1] if len(vals) > n + 1 else 0.0))
    if not exps:
        raise ValueError(f"hypersurface: {path} has no monomial lines; write one line 'e_0 ... e_(N-1) re [im]' per monomial.")
    return np.asarray(exps, dtype=np.int64), np.asarray(co, dtype=np.complex128)


def load_hypersurface_file(path) -> Hypersurface:
    """Hypersurface Q = Σ c_m z^{I_m} from a file of monomials and coefficients (formats: module docstring).

    The name is the file's ``name`` entry, else the file name without extension."""
    path = os.fspath(path)
    hint = "write monomials and coefficients (.json, .npz or text, see ntkflow.manifolds.io)."
    if not os.path.exists(path):
        raise FileNotFoundError(f"hypersurface: no such file {path!r}; {hint}")
    name = os.path.splitext(os.path.basename(path))[0]
    if path.endswith(".json"):
        d = read_json(path, what="hypersurface", required=("exponents", "coefficients"),
                      hint="write a JSON object with 'exponents' and 'coefficients'.")
        try:
            exps = np.asarray(d["exponents"], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise NtkflowFileError(path, f"hypersurface: 'exponents' in {path!r} must be a list of equal-length "
                                         f"lists of integers, received {str(d['exponents'])[:80]}.") from None
        if not isinstance(d["coefficients"], list):
            raise NtkflowFileError(path, f"hypersurface: 'coefficients' in {path!r} must be a list.")
        co = np.asarray([_json_coefficient(c, i, path) for i, c in enumerate(d["coefficients"])], dtype=np.complex128)
        name = str(d.get("name", name))
    elif path.endswith(".npz"):
        f = read_npz(path, what="hypersurface", required=("exponents", "coefficients"),
                     hint="write arrays 'exponents' and 'coefficients'.")
        exps = file_array(f, "exponents", path, what="hypersurface", ndim=2, kind="iu").astype(np.int64)
        co = file_array(f, "coefficients", path, what="hypersurface", ndim=1, kind="iufc").astype(np.complex128)
        if "name" in f:
            name = str(f["name"])
    else:
        if os.path.isdir(path) or os.path.getsize(path) == 0:
            raise NtkflowFileError(path, f"hypersurface: {path!r} is {'a directory' if os.path.isdir(path) else 'empty'}; {hint}")
        exps, co = _text_rows(path)
    if exps.ndim != 2 or co.shape != (len(exps),):
        raise NtkflowFileError(path, f"hypersurface: {path!r} holds exponents of shape {exps.shape} and coefficients of "
                                     f"shape {co.shape}; expected (n_mon, N) and (n_mon,).")
    if not np.all(np.isfinite(co)):
        raise NtkflowFileError(path, f"hypersurface: coefficients in {path!r} hold NaN/inf.")
    try:
        return Hypersurface(exps, co, name=name)
    except (ValueError, TypeError) as exc:
        raise NtkflowFileError(path, f"hypersurface: {path!r} does not define a valid hypersurface: {exc}") from None


def random_quintic(seed: int = 0) -> Hypersurface:
    """A quintic in P⁴ with independent standard complex Gaussian coefficients (re + i·im) on all 126
    degree-5 monomials (in :func:`monomial_exponents` order): no symmetry; named ``random-quintic-SEED``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, received {seed!r}.")
    rng = np.random.default_rng(seed)
    exps = monomial_exponents(5, 5)
    co = rng.normal(size=len(exps)) + 1j * rng.normal(size=len(exps))
    return Hypersurface(exps, co, name=f"random-quintic-{seed}")


def build_manifold(manifold: str = "fermat-quintic", *, psi=None, hypersurface=None,
                   random_quintic_seed: int | None = None) -> Hypersurface:
    """The one resolution of the manifold options: a hypersurface file, a random quintic, or a preset
    (``psi`` for the Dwork family). ``hypersurface`` and ``random_quintic_seed`` exclude each other and
    ``psi``; either replaces the preset ``manifold``."""
    if hypersurface is not None and random_quintic_seed is not None:
        raise ValueError(f"hypersurface, random_quintic_seed: give a hypersurface file or a random-quintic seed, "
                         f"not both (received {hypersurface!r} and {random_quintic_seed!r}).")
    if psi is not None and (hypersurface is not None or random_quintic_seed is not None):
        raise ValueError(f"psi: the family parameter belongs to a preset (dwork-quintic), received psi={psi!r} "
                         f"with a {'hypersurface file' if hypersurface is not None else 'random quintic'}.")
    if hypersurface is not None:
        return load_hypersurface_file(hypersurface)
    if random_quintic_seed is not None:
        return random_quintic(random_quintic_seed)
    return preset(manifold, psi=psi)
