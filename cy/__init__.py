"""ntkflow.cy: Calabi–Yau metrics from the frozen (infinite-width) kernel function space.

Layers (each imports only those above it):

- :mod:`~ntkflow.cy.basis`, :mod:`~ntkflow.cy.algebra`: invariant (k,k) function spaces and the closed-form
  pulled-back Hessians; :mod:`~ntkflow.cy.curvature`: holomorphic-derivative curvature;
- :mod:`~ntkflow.cy.model`: saved models and their registry (``@register("kind")``, :func:`load`);
- :mod:`~ntkflow.cy.config`: the settings, one frozen dataclass per concern (:class:`CYConfig`);
- the Monge–Ampère least-squares problems, each a :class:`ntkflow.solvers.least_squares.LeastSquaresProblem`:
  :class:`MAProblem` (dense symmetric basis), :class:`PrimalProblem` (matrix-free, identity/log link;
  on complete intersections with the multi-degree sections of :class:`~ntkflow.cy.algebra.Factors`),
  :class:`DualProblem` (dual kernel form over Nyström centres, with :class:`DualKernelModel`); the
  baselines :func:`~ntkflow.cy.donaldson.balanced_metric` and :class:`~ntkflow.cy.network.NetworkModel`;
- :mod:`~ntkflow.cy.job`: :func:`run_cy` — sample → method → fit (one Levenberg–Marquardt) → evaluate → write;
- :mod:`~ntkflow.cy.sweep`: :func:`run_sweep` — one ``run_cy`` per ψ of a family, each warm-started from the last
  (``ntkflow cy --psi 0,0.1,...``);
- :mod:`~ntkflow.cy.cli`: ``ntkflow cy`` and ``ntkflow eval``.

Research experiments (the literal flow, the Kähler metric flow, the Gaussian flow, memorisation) live in
:mod:`ntkflow.experiments`, which the product never imports.
"""
from ntkflow.cy.algebra import Factors
from ntkflow.cy.basis import PairBasis, Symmetry, detect_symmetry, full_basis, invariant_basis, monomials
from ntkflow.cy.config import (BergmanMethod, CYConfig, DataConfig, DonaldsonMethod, DualMethod, LMSettings,
                               NetworkMethod, OutputConfig)
from ntkflow.cy.dual import DualKernelModel, DualProblem
from ntkflow.cy.gauss_newton import MAProblem, whitening
from ntkflow.cy.job import CYResult, evaluate_cicy_model, evaluate_model, random_quintic, run_cy
from ntkflow.cy.matrixfree import PrimalProblem
from ntkflow.cy.model import MODELS, BergmanModel, CICYSectionModel, DonaldsonModel, Model, load, register
from ntkflow.cy.network import NetworkModel
from ntkflow.cy.sweep import SweepResult, run_sweep

__all__ = [
    "run_cy", "CYConfig", "DataConfig", "BergmanMethod", "DualMethod", "DonaldsonMethod", "NetworkMethod",
    "LMSettings", "OutputConfig", "CYResult", "evaluate_model", "evaluate_cicy_model", "random_quintic", "run_sweep", "SweepResult",
    "load", "register", "MODELS", "Model", "BergmanModel", "DonaldsonModel", "CICYSectionModel", "DualKernelModel", "NetworkModel",
    "MAProblem", "PrimalProblem", "DualProblem", "whitening", "Factors",
    "PairBasis", "Symmetry", "detect_symmetry", "invariant_basis", "full_basis", "monomials",
]
