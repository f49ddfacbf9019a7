"""ntkflow.engine: lazy kernel operators and kernels.

>>> import numpy as np
>>> from ntkflow.engine import Gaussian, kernel_operator
>>> x = np.random.default_rng(0).normal(size=(100, 3))
>>> A = kernel_operator(Gaussian(1.0), x, backend="jax")
>>> A.shape
(100, 100)
"""
import ntkflow as _ntkflow  # noqa: F401  (float64 default)

from .kernels import *  # noqa: F401,F403
from .kernels import __all__ as _kernels_all
from .operators import (
    BACKENDS,
    DENSE_MAX_ENTRIES,
    DenseOperator,
    DiagonalOperator,
    Identity,
    KernelOperator,
    ProductOperator,
    LinearOperator,
    kernel_operator,
)
from .backends import KeOpsCompileError, SchedulerError, connect_scheduler, gather_bounded

__all__ = [
    *_kernels_all,
    "BACKENDS",
    "DENSE_MAX_ENTRIES",
    "DenseOperator",
    "DiagonalOperator",
    "Identity",
    "ProductOperator",
    "KernelOperator",
    "LinearOperator",
    "KeOpsCompileError",
    "SchedulerError",
    "connect_scheduler",
    "gather_bounded",
    "kernel_operator",
]
