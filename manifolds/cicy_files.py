"""CICY definition files (JSON) and the one resolution of the CICY options (preset, ψ, random seed, file).

A CICY definition file sits beside the hypersurface file (``--hypersurface``) and says the same things for a
complete intersection in P^{n_1} × … × P^{n_m}:

.. code-block:: text

    {"format": "ntkflow-cicy", "version": 1, "name": "bicubic",
     "ambient": [2, 2],                      // n_r of each factor P^{n_r}
     "configuration": [[3], [3]],            // optional: q_j^(r), rows = factors, columns = equations
     "equations": [                          // one per equation Q_j
        {"exponents": [[3,0,0, 3,0,0], ...], // (n_monomials, N), N = Σ(n_r + 1), factor by factor
         "coefficients": [1.0, [0.5, -2.0], ...]}   // real, or [re, im]
     ],
     "psi": null}                            // optional metadata

``.npz`` files carrying the ``cicy_*`` spec keys (written by :func:`ntkflow.manifolds.cicy.save_cicy_points` or
:func:`save_cicy_file`) are read too. The manifold is validated by
:class:`~ntkflow.manifolds.cicy.CompleteIntersection` (multi-homogeneity, the Calabi–Yau condition).
"""
from __future__ import annotations

import os

import numpy as np

from ntkflow.io import NtkflowFileError, atomic_json, read_json, read_npz

from .cicy import CICY_PRESETS, CompleteIntersection, cicy_preset

__all__ = ["CICY_FILE_FORMAT", "load_cicy_file", "save_cicy_file", "build_cicy", "is_cicy_preset"]

CICY_FILE_FORMAT = "ntkflow-cicy"


def is_cicy_preset(name) -> bool:
    """True for the names of :data:`ntkflow.manifolds.cicy.CICY_PRESETS` (``bicubic``, ``tetraquadric``, ``p5-33``)."""
    return isinstance(name, str) and name.strip().lower().replace("_", "-") in CICY_PRESETS


def _coefficient(path, j, i, c) -> complex:
    if isinstance(c, (int, float)) and not isinstance(c, bool):
        return complex(float(c))
    if isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                            for x in c):
        return complex(float(c[0]), float(c[1]))
    raise NtkflowFileError(path, f"CICY file: equations[{j}].coefficients[{i}] in {path!r} is {c!r}; expected a "
                                 f"number or a pair [re, im].")


def load_cicy_file(path) -> CompleteIntersection:
    """The CICY of a definition file: ``.json`` in the format of the module docstring, or an ``.npz`` with the
    ``cicy_*`` spec keys. Errors name the file, the entry and what was expected."""
    path = os.fspath(path)
    hint = 'write one like {"ambient": [2, 2], "equations": [{"exponents": [...], "coefficients": [...]}]} (docs/cy.md)'
    if path.endswith(".npz"):
        data = read_npz(path, what="CICY file", required=("cicy_exponents", "cicy_coefficients", "cicy_equation",
                                                          "cicy_ambient", "cicy_configuration", "name"), hint=hint)
        try:
            return CompleteIntersection.from_spec(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise NtkflowFileError(path, f"CICY file: the manifold in {path!r} is invalid: {exc}") from None
    doc = read_json(path, what="CICY file", required=("ambient", "equations"), hint=hint)
    if doc.get("format", CICY_FILE_FORMAT) != CICY_FILE_FORMAT or doc.get("version", 1) != 1:
        raise NtkflowFileError(path, f"CICY file: {path!r} has format {doc.get('format')!r} version "
                                     f"{doc.get('version')!r}; expected {CICY_FILE_FORMAT!r} version 1.")
    eqs = doc["equations"]
    if not isinstance(eqs, list) or not eqs:
        raise NtkflowFileError(path, f"CICY file: 'equations' in {path!r} must be a non-empty list of "
                                     f"{{exponents, coefficients}}, received {type(eqs).__name__}.")
    polys = []
    for j, eq in enumerate(eqs):
        if not isinstance(eq, dict) or "exponents" not in eq or "coefficients" not in eq:
            raise NtkflowFileError(path, f"CICY file: equations[{j}] in {path!r} must be an object with "
                                         f"'exponents' and 'coefficients'.")
        coeffs = eq["coefficients"]
        if not isinstance(coeffs, list):
            raise NtkflowFileError(path, f"CICY file: equations[{j}].coefficients in {path!r} must be a list.")
        try:
            e = np.asarray(eq["exponents"], dtype=np.int64)
        except (TypeError, ValueError):
            raise NtkflowFileError(path, f"CICY file: equations[{j}].exponents in {path!r} must be a list of integer "
                                         f"rows.") from None
        polys.append((e, np.array([_coefficient(path, j, i, c) for i, c in enumerate(coeffs)], dtype=np.complex128)))
    psi = doc.get("psi")
    try:
        return CompleteIntersection(tuple(doc["ambient"]), tuple(polys), configuration=doc.get("configuration"),
                                    name=str(doc.get("name") or os.path.splitext(os.path.basename(path))[0]),
                                    psi=None if psi is None else (complex(*psi) if isinstance(psi, list) else psi))
    except (ValueError, TypeError) as exc:
        raise NtkflowFileError(path, f"CICY file: {path!r} does not define a Calabi–Yau complete intersection: {exc}") from None


def save_cicy_file(path, manifold: CompleteIntersection) -> str:
    """Write ``manifold`` as a JSON definition file (read back by :func:`load_cicy_file`)."""
    if not isinstance(manifold, CompleteIntersection):
        raise TypeError(f"manifold: expected a CompleteIntersection, received {type(manifold).__name__}.")
    doc = {"format": CICY_FILE_FORMAT, "version": 1, "name": manifold.name, "ambient": list(manifold.ambient),
           "configuration": np.asarray(manifold.configuration).tolist(),
           "equations": [{"exponents": e.tolist(), "coefficients": [[float(c.real), float(c.imag)] for c in cs]}
                         for e, cs in manifold.polynomials],
           "psi": None if manifold.psi is None else [manifold.psi.real, manifold.psi.imag]}
    path = os.fspath(path)
    atomic_json(path, doc, indent=1)
    return path


def build_cicy(name: str | None = None, *, psi=None, seed: int | None = None, path=None) -> CompleteIntersection:
    """The CICY of the options: a definition file ``path`` (excludes the others), or the preset ``name`` with the
    Dwork-type ``psi`` or random coefficients from ``seed`` (:func:`ntkflow.manifolds.cicy.cicy_preset`)."""
    if path is not None:
        if psi is not None or seed is not None:
            raise ValueError(f"path: a CICY file defines the manifold; received psi={psi!r}, seed={seed!r} with it "
                             f"(drop --psi / --cicy-seed).")
        return load_cicy_file(path)
    if not is_cicy_preset(name):
        raise ValueError(f"name: {name!r} is not a CICY preset; choose one of {sorted(CICY_PRESETS)} or pass a file.")
    return cicy_preset(name, psi=psi, seed=seed)
