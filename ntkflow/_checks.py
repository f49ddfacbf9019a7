"""Input validation shared by every subpackage: errors name the argument, show what was
received and say what to do."""
from __future__ import annotations

import numpy as np


def finite_array(name: str, a, *, ndim: int | tuple[int, ...] | None = None, dtype=None) -> np.ndarray:
    """Return ``np.asarray(a)`` after checking it is finite (and of the given ndim)."""
    arr = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ValueError(
                f"{name}: expected an array with ndim in {allowed}, received shape {arr.shape}; "
                f"reshape it (e.g. {name}[:, None] for a single column)."
            )
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name}: expected a numeric array, received dtype {arr.dtype}.")
    if arr.size and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        first = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(
            f"{name}: contains {bad} NaN/inf entries (first at index {first}); "
            f"remove or replace them before calling."
        )
    return arr


def nonneg_float(name: str, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a real number, received {v!r}.") from None
    if not np.isfinite(f) or f < 0:
        raise ValueError(f"{name}: must be finite and >= 0, received {v!r}.")
    return f


def positive_float(name: str, v) -> float:
    f = nonneg_float(name, v)
    if f == 0:
        raise ValueError(f"{name}: must be > 0, received {v!r}.")
    return f


def positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive integer, received {v!r} ({type(v).__name__}).")
    if v <= 0:
        raise ValueError(f"{name}: must be a positive integer, received {v}.")
    return int(v)


def increasing_times(name: str, v) -> tuple:
    """A non-empty strictly increasing tuple of finite times > 0 (flow checkpoints)."""
    t = np.asarray(v, dtype=float)
    if t.ndim != 1 or t.size == 0 or np.any(~np.isfinite(t)) or np.any(t <= 0) or np.any(np.diff(t) <= 0):
        raise ValueError(f"{name}: expected a non-empty increasing tuple of finite times > 0, received {v!r}.")
    return tuple(float(x) for x in t)


def time_budget(name: str, v) -> float:
    """A wall-time budget in seconds: a number > 0 (math.inf for no budget)."""
    try:
        ms = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number (math.inf for no budget), received {v!r}.") from None
    if not ms > 0:
        raise ValueError(f"{name}: must be > 0 (math.inf for no budget), received {v!r}.")
    return ms


def complex_arg(text: str) -> complex:
    """argparse type for a real or complex number on the command line ("0.5", "0.3+0.1j", "0.3+0.1i")."""
    import argparse

    try:
        return complex(text.replace(" ", "").replace("i", "j"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a real or complex number like 0.5 or 0.3+0.1j, received {text!r}"
        ) from None
