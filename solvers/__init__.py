"""ntkflow.solvers: CG (many right-hand sides), Nyström/Falkon kernel ridge regression with
randomly pivoted Cholesky centres, a Nyström preconditioner for the exact kernel system, and the
finite-time frozen-NTK MSE flow by Lanczos.

>>> import numpy as np
>>> from ntkflow.solvers import cg
>>> res = cg(np.diag([1.0, 2.0, 4.0]), np.ones(3))
>>> res.converged, np.round(res.value, 6).tolist()
(True, [1.0, 0.5, 0.25])
"""
import ntkflow as _ntkflow  # noqa: F401  (float64 default)

from .cg import CGResult, CGStatus, as_operator, cg
from .flow import FlowResult, ntk_flow
from .least_squares import (
    CGSolve,
    CheckpointHook,
    DenseSolve,
    LeastSquaresProblem,
    Linearisation,
    NormalEquations,
    LMConfig,
    LMResult,
    LMState,
    LMStatus,
    ProgressHook,
    TimeBudgetHook,
    levenberg_marquardt,
    load_checkpoint,
    time_budget,
)
from .preconditioners import NystromSketch, SketchPreconditioner, randomized_nystrom
from .nystrom import (
    FalkonPreconditioner,
    KRRResult,
    NystromGram,
    NystromKRRResult,
    NystromPreconditioner,
    RPCholeskyResult,
    krr_exact,
    nystrom_krr,
    nystrom_preconditioner,
    rpcholesky,
    select_centers,
)

__all__ = [
    "CGResult",
    "CGStatus",
    "as_operator",
    "cg",
    "FlowResult",
    "ntk_flow",
    "CGSolve",
    "CheckpointHook",
    "DenseSolve",
    "LeastSquaresProblem",
    "Linearisation",
    "NormalEquations",
    "LMConfig",
    "LMResult",
    "LMState",
    "LMStatus",
    "ProgressHook",
    "TimeBudgetHook",
    "levenberg_marquardt",
    "load_checkpoint",
    "time_budget",
    "FalkonPreconditioner",
    "KRRResult",
    "NystromGram",
    "NystromKRRResult",
    "NystromPreconditioner",
    "RPCholeskyResult",
    "krr_exact",
    "nystrom_krr",
    "nystrom_preconditioner",
    "rpcholesky",
    "select_centers",
    "NystromSketch",
    "SketchPreconditioner",
    "randomized_nystrom",
]
