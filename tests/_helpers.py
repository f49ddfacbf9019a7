"""Small helpers shared by several test modules (import as ``from _helpers import ...``: pytest puts
``tests/`` on ``sys.path`` because ``tests/conftest.py`` lives there and ``tests/`` has no
``__init__.py``). Pure functions only: no state, no files."""
from __future__ import annotations

import numpy as np


def cpoints(rng: np.random.Generator, n: int, N: int) -> np.ndarray:
    """n complex standard-normal points in C^N, (n, N) complex128, drawn from ``rng``."""
    return rng.normal(size=(n, N)) + 1j * rng.normal(size=(n, N))


def fs_closed_form():
    """(fs_curvature_closed_form, make_fs_curvature_closed_form) of bench/bench_cicy_euler.py: the closed-form
    curvature of the pulled-back FS metric on CICYs (bench/ is not installed: imported from the repository root)."""
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.bench_cicy_euler import fs_curvature_closed_form, make_fs_curvature_closed_form

    return fs_curvature_closed_form, make_fs_curvature_closed_form
