"""Small helpers shared by the KeOps forms of the kernels (not public).

Numerical constants enter KeOps formulas as a parameter vector (a KeOps "Pm" variable) rather
than as literals, so one compiled formula serves every value of a kernel's hyper-parameters
(each new formula costs a ~5 s compile on the CPU).
"""
from __future__ import annotations

import numpy as np


def keops_params(like, values) -> object:
    """A KeOps parameter LazyTensor holding ``values`` in the dtype of the LazyTensor ``like``."""
    from pykeops.numpy import LazyTensor

    dtype = np.dtype(getattr(like, "dtype", None) or np.float64)
    return LazyTensor(np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1)))


def keops_split_complex(T, n: int):
    """[Re, Im] LazyTensor of dimension 2n -> (Re, Im) LazyTensors of dimension n."""
    return T.extract(0, n), T.extract(n, n)


def keops_cat(a, b):
    return a.concat(b)
