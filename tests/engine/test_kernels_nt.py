"""Cross-check of the MLP NNGP/NTK recursion against neural-tangents' stax kernel_fn."""
from __future__ import annotations

import numpy as np
import pytest

from ntkflow.engine import MLPNTK
from ntkflow.engine.nt_adapter import nt_unavailable_reason

pytestmark = pytest.mark.nt

_REASON = nt_unavailable_reason()


@pytest.fixture(scope="module")
def nt_kernel():
    if _REASON is not None:
        pytest.skip(f"neural-tangents does not import here: {_REASON}")
    from ntkflow.engine.nt_adapter import nt_kernel as fn

    return fn


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
@pytest.mark.parametrize("activation", ["relu", "erf", "gelu"])
def test_mlp_kernel_matches_neural_tangents(nt_kernel, activation, kind):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(5, 4))
    spec = MLPNTK(depth=3, activation=activation, w_std=1.3, b_std=0.2, kind=kind)
    for yy in (None, y):
        ours = spec.dense(x, x if yy is None else yy)
        theirs = nt_kernel(spec, x, yy)
        err = np.abs(ours - theirs).max() / np.abs(theirs).max()
        assert err < 1e-12, f"{activation}/{kind}: relative difference {err:.2e} from neural-tangents"
