"""ntkflow.ntk: finite networks, the empirical metric-NTK, its infinite-width limit, and the study.

Metric-NTK of a network metric g(x; θ)::

    Θ_ijkl(x, x') = Σ_I ∂g_ij(x)/∂θ_I ∂g_kl(x')/∂θ_I      →  Θ̄_ijkl(x, x')  as width N → ∞

>>> import jax, numpy as np
>>> from ntkflow.ntk import MLP, SharedMetric, empirical_ntk, infinite_metric_ntk
>>> model = SharedMetric(MLP(d_in=2, widths=(256,), activation="erf", n_out=3), dim=2)
>>> params = model.init(jax.random.PRNGKey(0))
>>> x = np.random.default_rng(0).normal(size=(4, 2))
>>> empirical_ntk(model, params, x).shape        # (n, m, p, p), p = dim² flat components
(4, 4, 4, 4)
>>> infinite_metric_ntk(model, x).shape
(4, 4, 4, 4)

Modules: :mod:`.networks` (MLP erf/relu/gelu, cos-net, gauss-net; NTK parameterisation),
:mod:`.metrics` (independent / shared / Kähler potential / φ on Fubini–Study), :mod:`.empirical`
(dense, lazy operator, neural-tangents cross-check), :mod:`.infinite` (Θ̄ from the engine kernels),
:mod:`.invariant` (Θ̄ = Σ a_k u^k on C*-invariant features), :mod:`.linearised` (g^L, GD, frozen flow),
:mod:`.study` (``ntkflow ntk-study``).
"""
import ntkflow as _ntkflow  # noqa: F401  (float64)

from .empirical import (
    EmpiricalNTKOperator,
    empirical_ntk,
    empirical_ntk_operator,
    flat_matrix,
    jacobian,
    nt_available,
    nt_empirical_ntk,
    ntk_jax,
    ntk_tensor,
    trainable_fn,
)
from .infinite import (
    component_structure,
    infinite_metric_kernel,
    infinite_metric_ntk,
    infinite_potential_metric_ntk,
    invariant_scalar_kernel,
    mixing_fraction,
    network_kernel,
)
from .invariant import (
    InvariantWeights,
    closed_form_weights,
    dual_activation,
    invariant_feature_kernel,
    invariant_kappa,
    invariant_weights,
)
from .linearised import TrainResult, frozen_kernel_ode, frozen_ntk_prediction, linearize, train_gd
from .metrics import (
    FubiniStudyPhiMetric,
    IndependentMetric,
    KahlerPotentialMetric,
    ScalarModel,
    SharedMetric,
    ddbar,
    fubini_study,
    invariant_features,
    wirtinger_ddbar,
)
from .networks import MLP, CosNet, GaussNet, apply_batch, with_width, with_width_mask

__all__ = [
    "MLP", "CosNet", "GaussNet", "apply_batch", "with_width", "with_width_mask",
    "ScalarModel", "IndependentMetric", "SharedMetric", "KahlerPotentialMetric", "FubiniStudyPhiMetric",
    "invariant_features", "fubini_study", "ddbar", "wirtinger_ddbar",
    "empirical_ntk", "ntk_jax", "jacobian", "empirical_ntk_operator", "EmpiricalNTKOperator", "flat_matrix",
    "ntk_tensor", "trainable_fn", "nt_available", "nt_empirical_ntk",
    "network_kernel", "infinite_metric_ntk", "infinite_metric_kernel",
    "infinite_potential_metric_ntk", "invariant_scalar_kernel", "component_structure", "mixing_fraction",
    "invariant_kappa", "invariant_weights", "invariant_feature_kernel", "closed_form_weights", "dual_activation",
    "InvariantWeights",
    "linearize", "train_gd", "TrainResult", "frozen_kernel_ode", "frozen_ntk_prediction",
]
