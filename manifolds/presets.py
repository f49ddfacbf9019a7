"""Named Calabi–Yau hypersurfaces.

| name | equation | X | χ |
|---|---|---|---|
| ``cubic-curve`` | z0³ + z1³ + z2³ in P² | elliptic curve (torus) | 0 |
| ``quartic-k3`` | Σ z_i⁴ in P³ | K3 surface | 24 |
| ``fermat-quintic`` | Σ z_i⁵ in P⁴ | quintic threefold | −200 |
| ``dwork-quintic`` (psi=ψ) | Σ z_i⁵ − 5ψ Π z_i in P⁴ | quintic threefold; singular at ψ⁵ = 1 | −200 |
"""
from __future__ import annotations

import difflib

import numpy as np

from .hypersurface import Hypersurface

__all__ = ["preset", "PRESETS", "EULER_CHARACTERISTIC", "family_parameter"]


def family_parameter(psi) -> complex:
    """ψ as a finite complex number (TypeError / ValueError naming ``psi`` otherwise)."""
    try:
        psi = complex(psi)
    except (TypeError, ValueError):
        raise TypeError(f"psi: expected a (complex) number, received {psi!r}.") from None
    if not np.isfinite(psi):
        raise ValueError(f"psi: must be finite, received {psi!r}.")
    return psi


def _fermat(N: int, name: str) -> Hypersurface:
    return Hypersurface(N * np.eye(N, dtype=np.int64), np.ones(N, dtype=np.complex128), name=name)


def _dwork(N: int, psi, name: str) -> Hypersurface:
    e = np.vstack([N * np.eye(N, dtype=np.int64), np.ones((1, N), dtype=np.int64)])
    c = np.concatenate([np.ones(N, dtype=np.complex128), [-N * complex(psi)]])
    # the ψ = 0 member is the Fermat quintic (the zero coefficient is dropped by Hypersurface)
    return Hypersurface(e, c, name=name, psi=complex(psi))


PRESETS = {
    "cubic-curve": lambda psi: _fermat(3, "cubic-curve"),
    "quartic-k3": lambda psi: _fermat(4, "quartic-k3"),
    "fermat-quintic": lambda psi: _fermat(5, "fermat-quintic"),
    "dwork-quintic": lambda psi: _dwork(5, psi, "dwork-quintic"),
}
_NEEDS_PSI = {"dwork-quintic"}

#: Euler characteristics χ(X) = ∫ c_dim of the presets (topological; for tests and reports)
EULER_CHARACTERISTIC = {"cubic-curve": 0, "quartic-k3": 24, "fermat-quintic": -200, "dwork-quintic": -200}


def preset(name: str, psi=None) -> Hypersurface:
    """Build a named hypersurface: ``preset("fermat-quintic")``, ``preset("dwork-quintic", psi=0.5)``.

    ``psi`` (complex) is required for ``dwork-quintic`` (Q = Σz_i⁵ − 5ψΠz_i) and refused elsewhere.
    Singular members (ψ⁵ = 1, the conifold) raise :class:`SingularManifoldError` (a ValueError);
    members within 1e-3 of it warn (:class:`SingularityWarning`).
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a preset name (str), received {name!r}; one of {sorted(PRESETS)}.")
    key = name.strip().lower().replace("_", "-")
    if key not in PRESETS:
        close = difflib.get_close_matches(key, PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"name: unknown manifold preset {name!r}; choose one of {sorted(PRESETS)}.{hint}")
    if key in _NEEDS_PSI:
        if psi is None:
            raise ValueError(f"psi: preset {key!r} needs the family parameter psi (e.g. psi=0.5); received None.")
        psi = family_parameter(psi)
    elif psi is not None:
        raise ValueError(
            f"psi: preset {key!r} has no parameter; received psi={psi!r}. Use 'dwork-quintic' for the ψ family."
        )
    return PRESETS[key](psi)
