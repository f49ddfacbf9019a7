"""The one batch loop (``map_batched``/``map_points``): equal to the unbatched computation for every
remainder, one compilation whatever the number of points, clear errors on bad input."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkflow.manifolds import map_batched, map_points, preset, sample


def _f(x, y):
    # two outputs with different trailing shapes, row-wise (so batching cannot change the result)
    return jnp.sum(x * y[:, :1], axis=1), jnp.outer(x[:, 0], jnp.ones(3)).reshape(-1, 3) + y[:, :3]


@pytest.mark.parametrize("n", [1, 7, 8, 9, 23])
def test_map_batched_equals_direct_evaluation(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 4))
    y = rng.normal(size=(n, 5))
    direct = [np.asarray(a) for a in _f(jnp.asarray(x), jnp.asarray(y))]
    got = map_batched(jax.jit(_f), x, y, batch=8)
    assert len(got) == 2
    for g, d in zip(got, direct):
        assert g.shape == d.shape
        np.testing.assert_allclose(g, d, rtol=1e-15, atol=1e-15)
    # a single-output function gives a 1-tuple
    (one,) = map_batched(jax.jit(lambda a: 2.0 * a), x, batch=3)
    np.testing.assert_array_equal(one, 2.0 * x)


def test_map_batched_compiles_once():
    traces = []

    @jax.jit
    def f(a):
        traces.append(a.shape)  # runs only while tracing
        return a ** 2

    x = np.arange(29.0)[:, None]
    (out,) = map_batched(f, x, batch=8)  # batches of 8, 8, 8 and a padded 5
    np.testing.assert_array_equal(out, x ** 2)
    assert traces == [(8, 1)]


def test_map_points_passes_chart_data():
    ps = sample(preset("fermat-quintic"), 37, seed=2)
    pts, kept, elim = map_points(jax.jit(lambda z, k, e: (z, k, e)), ps, 16)
    np.testing.assert_array_equal(pts, ps.points)
    np.testing.assert_array_equal(kept, ps.kept)
    np.testing.assert_array_equal(elim, ps.elim)


def test_map_batched_errors():
    x = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"arrays\[1\]: expected a leading axis of length 4"):
        map_batched(lambda a, b: a, x, np.ones((3, 2)), batch=2)
    with pytest.raises(ValueError, match="batch: must be a positive integer"):
        map_batched(lambda a: a, x, batch=0)
    with pytest.raises(ValueError, match="arrays: pass at least one array"):
        map_batched(lambda: 0, batch=2)
    with pytest.raises(ValueError, match="arrays: received 0 rows"):
        map_batched(lambda a: a, np.ones((0, 2)), batch=2)
