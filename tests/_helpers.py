"""Small helpers shared by several test modules (import as ``from _helpers import ...``: pytest puts
``tests/`` on ``sys.path`` because ``tests/conftest.py`` lives there and ``tests/`` has no
``__init__.py``). Pure functions only: no state, no files."""
from __future__ import annotations

import numpy as np


def cpoints(rng: np.random.Generator, n: int, N: int) -> np.ndarray:
    """n complex standard-normal points in C^N, (n, N) complex128, drawn from ``rng``."""
    return rng.normal(size=(n, N)) + 1j * rng.normal(size=(n, N))
