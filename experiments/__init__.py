"""ntkflow.experiments: research experiments on top of the product (the CY job and the engine).

The product (engine, solvers, manifolds, ntk, cy, ricci) never imports this package.

- :mod:`ntkflow.experiments.literal`: the talk's literal frozen-NTK ODE flow in the symmetric basis,
  against the Gauss–Newton fixed point.
- :mod:`ntkflow.experiments.gaussian_flow`: the literal Gaussian-kernel Kähler potential flow in dual form
  (lazy four-derivative kernel operator, solve_ivp).
- :mod:`ntkflow.experiments.metric_flow`: the Kähler *metric* flow (fits det g but is not Kähler).
- :mod:`ntkflow.experiments.memorise`: the memorisation claim (MSE toward a Donaldson metric).
"""
from ntkflow.experiments.gaussian_flow import GaussianFlowConfig, GaussianFlowResult, GaussianKahlerFlow, run_gaussian_flow
from ntkflow.experiments.memorise import MemoriseConfig, MemoriseResult, memorise
from ntkflow.experiments.metric_flow import (KernelMetric, MetricFlowConfig, MetricFlowProblem, MetricFlowResult,
                                             kahler_defect, run_metric_flow)

__all__ = [
    "GaussianFlowConfig", "GaussianFlowResult", "GaussianKahlerFlow", "run_gaussian_flow",
    "MetricFlowConfig", "MetricFlowProblem", "MetricFlowResult", "KernelMetric", "run_metric_flow", "kahler_defect",
    "MemoriseConfig", "MemoriseResult", "memorise",
]
