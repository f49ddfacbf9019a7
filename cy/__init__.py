"""ntkflow.cy: Kähler potential flows to Calabi–Yau metrics in the frozen (infinite-width) kernel
function space.

Main entry points:

- :func:`run_cy` / ``ntkflow cy``: Gauss–Newton (Levenberg–Marquardt) on the Monge–Ampère residual in
  the symmetric Bergman (u^k) function space; Donaldson and finite-network baselines.
- :func:`load` / ``ntkflow.load(DIR)``: a saved model with ``.metric(points)``, ``.potential(points)``,
  ``.eta(points)``; ``ntkflow eval DIR POINTS.npz``.
- :mod:`ntkflow.cy.basis`, :mod:`ntkflow.cy.algebra`: invariant (k,k) function spaces and the
  closed-form pulled-back Hessians; :mod:`ntkflow.cy.gauss_newton`: the LM solver.
- :func:`run_dual` (:mod:`ntkflow.cy.dual`, ``ntkflow cy --kernel gaussian|mixture|power``): the same
  Gauss–Newton in the dual (kernel) form φ = Σ_b α_b k(·, c_b) over Nyström centres.

Research experiments (the literal flow, the Kähler metric flow, the Gaussian flow, memorisation) live in
:mod:`ntkflow.experiments`, which the product never imports.
"""
from ntkflow.cy.basis import PairBasis, Symmetry, detect_symmetry, full_basis, invariant_basis, monomials
from ntkflow.cy.job import CYConfig, CYResult, evaluate_model, random_quintic, run_cy
from ntkflow.cy.dual import DualConfig, DualKernelModel, DualProblem, run_dual
from ntkflow.cy.gauss_newton import LMConfig, LMResult, LMState, MAProblem, levenberg_marquardt, whitening
from ntkflow.cy.model import BergmanModel, DonaldsonModel, load

__all__ = [
    "run_cy", "CYConfig", "CYResult", "evaluate_model", "random_quintic",
    "load", "BergmanModel", "DonaldsonModel",
    "DualConfig", "DualProblem", "DualKernelModel", "run_dual",
    "PairBasis", "Symmetry", "detect_symmetry", "invariant_basis", "full_basis", "monomials",
    "MAProblem", "LMConfig", "LMState", "LMResult", "levenberg_marquardt", "whitening",
]
