"""The package's one loop over points in fixed-size batches, for jitted (vmapped) JAX functions.

A jitted function compiles once per input shape; feeding it batches of one fixed size (the last batch
padded by repeating its last row, a real point, so that padded rows never divide by zero) compiles it
once whatever the number of points, and bounds the device memory by the batch size.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ntkflow._checks import positive_int

__all__ = ["map_batched", "map_points"]


def map_batched(fn: Callable, *arrays, batch: int) -> tuple[np.ndarray, ...]:
    """``fn(*[a[s:s+batch] for a in arrays])`` over consecutive batches of the leading axis, concatenated.

    Every call sees arrays of leading size exactly ``batch`` (the last batch padded by repeating the last
    row; the padded outputs are dropped), so a jitted ``fn`` compiles once. ``fn`` returns one array or a
    tuple of arrays, each with the batch as leading axis. Returns a tuple of NumPy arrays, one per output
    of ``fn``, each of leading size n = len(arrays[0]).
    """
    import jax.numpy as jnp

    batch = positive_int("batch", batch)
    if not arrays:
        raise ValueError("arrays: pass at least one array to batch over, received none.")
    arrs = [np.asarray(a) for a in arrays]
    n = arrs[0].shape[0] if arrs[0].ndim else 0
    for i, a in enumerate(arrs):
        if a.ndim == 0 or a.shape[0] != n:
            raise ValueError(f"arrays[{i}]: expected a leading axis of length {n} (that of arrays[0]), "
                             f"received shape {a.shape}; pass arrays with one row per point.")
    if n == 0:
        raise ValueError("arrays: received 0 rows; pass at least one point.")
    outs = []
    for s in range(0, n, batch):
        e = min(n, s + batch)
        idx = np.arange(s, s + batch)
        idx[idx >= e] = e - 1  # pad the last batch to the fixed shape with its last (real) row
        res = fn(*(jnp.asarray(a[idx]) for a in arrs))
        res = res if isinstance(res, tuple) else (res,)
        outs.append([np.asarray(r)[: e - s] for r in res])
    return tuple(np.concatenate(parts) for parts in zip(*outs))


def map_points(fn: Callable, ps, batch: int) -> tuple[np.ndarray, ...]:
    """:func:`map_batched` of ``fn(points, kept, elim)`` over a PointSet's points (n, N), kept (n, m)
    and eliminated (n,) coordinates: the per-point chart data every autodiff metric needs."""
    return map_batched(fn, ps.points, ps.kept, ps.elim, batch=batch)
