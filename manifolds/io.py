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
    with open(path) as f:
        lines = [(i + 1, ln.split()) for i, ln in enumerate(f) if ln.strip() and not ln.lstrip().startswith("#")]
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
    if not os.path.exists(path):
        raise FileNotFoundError(f"hypersurface: no such file {path!r}; write monomials and coefficients "
                                f"(.json, .npz or text, see ntkflow.manifolds.io).")
    name = os.path.splitext(os.path.basename(path))[0]
    if path.endswith(".json"):
        with open(path) as f:
            d = json.load(f)
        if not isinstance(d, dict) or "exponents" not in d or "coefficients" not in d:
            raise ValueError(f"hypersurface: {path} must hold a JSON object with 'exponents' and 'coefficients'.")
        exps = np.asarray(d["exponents"], dtype=np.int64)
        co = np.asarray([_json_coefficient(c, i, path) for i, c in enumerate(d["coefficients"])], dtype=np.complex128)
        name = d.get("name", name)
    elif path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            if "exponents" not in f.files or "coefficients" not in f.files:
                raise ValueError(f"hypersurface: {path} must hold arrays 'exponents' and 'coefficients', found {f.files}.")
            exps = np.asarray(f["exponents"], dtype=np.int64)
            co = np.asarray(f["coefficients"], dtype=np.complex128)
            if "name" in f.files:
                name = str(f["name"])
    else:
        exps, co = _text_rows(path)
    return Hypersurface(exps, co, name=name)


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
