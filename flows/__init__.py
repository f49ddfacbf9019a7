"""ntkflow.flows: Kähler potential flows to Calabi–Yau metrics in the frozen (infinite-width) kernel
function space.

Main entry points:

- :func:`run_cy` / ``ntkflow cy``: Gauss–Newton (Levenberg–Marquardt) on the Monge–Ampère residual in
  the symmetric Bergman (u^k) function space; Donaldson and finite-network baselines.
- :func:`load` / ``ntkflow.load(DIR)``: a saved model with ``.metric(points)``, ``.potential(points)``,
  ``.eta(points)``; ``ntkflow eval DIR POINTS.npz``.
- :mod:`ntkflow.flows.basis`, :mod:`ntkflow.flows.algebra`: invariant (k,k) function spaces and the
  closed-form pulled-back Hessians; :mod:`ntkflow.flows.gauss_newton`: the LM solver.
- :func:`run_dual` (:mod:`ntkflow.flows.dual`, ``ntkflow cy --kernel gaussian|mixture|power``): the same
  Gauss–Newton in the dual (kernel) form φ = Σ_b α_b k(·, c_b) over Nyström centres.
- :class:`GaussianKahlerFlow` (:mod:`ntkflow.flows.gaussian_flow`): the talk's literal flow with the
  Gaussian kernel in dual form (lazy four-derivative kernel operator, solve_ivp).
"""
from ntkflow.flows.basis import PairBasis, Symmetry, detect_symmetry, full_basis, invariant_basis, monomials
from ntkflow.flows.cy import CYConfig, CYResult, evaluate_model, random_quintic, run_cy
from ntkflow.flows.dual import DualConfig, DualKernelModel, DualProblem, run_dual
from ntkflow.flows.gaussian_flow import GaussianFlowConfig, GaussianFlowResult, GaussianKahlerFlow, run_gaussian_flow
from ntkflow.flows.gauss_newton import LMConfig, LMResult, LMState, MAProblem, levenberg_marquardt, whitening
from ntkflow.flows.model import BergmanModel, DonaldsonModel, load
from ntkflow.flows.memorise import MemoriseConfig, MemoriseResult, memorise
from ntkflow.flows.metric_flow import KernelMetric, MetricFlowConfig, MetricFlowProblem, MetricFlowResult, kahler_defect, run_metric_flow

__all__ = [
    "run_cy", "CYConfig", "CYResult", "evaluate_model", "random_quintic",
    "load", "BergmanModel", "DonaldsonModel",
    "DualConfig", "DualProblem", "DualKernelModel", "run_dual",
    "PairBasis", "Symmetry", "detect_symmetry", "invariant_basis", "full_basis", "monomials",
    "GaussianFlowConfig", "GaussianFlowResult", "GaussianKahlerFlow", "run_gaussian_flow",
    "MAProblem", "LMConfig", "LMState", "LMResult", "levenberg_marquardt", "whitening",
    "MetricFlowConfig", "MetricFlowProblem", "MetricFlowResult", "KernelMetric", "run_metric_flow", "kahler_defect",
    "MemoriseConfig", "MemoriseResult", "memorise",
]
