"""ntkflow.manifolds: Calabi–Yau hypersurfaces, line-intersection sampling with exact Monte-Carlo
weights, Fubini–Study geometry, accuracy measures (η, κ, σ) and curvature (Ricci, ∫c_m) by JAX
autodiff. Conventions: ../shared/reference/cy-geometry.md.

>>> from ntkflow.manifolds import preset, sample, fs_det, sigma
>>> m = preset("fermat-quintic")
>>> ps = sample(m, 10_000, seed=0)          # exactly 10 000 points
>>> round(sigma(ps, fs_det(ps)), 1)         # σ of the FS metric ≈ 0.373
0.4
"""
from .batching import map_batched, map_points
from .charts import build_jacobian, chart_data
from .cli import add_manifold_options, manifold_from_args
from .curvature import (
    Curvature,
    chern_einsum,
    curvature,
    euler_characteristic,
    fs_potential,
    levi_civita,
    make_curvature_fn,
    metric_from_potential,
    ricci_measure,
    ricci_scalar,
)
from .geometry import (
    chart_jacobian,
    eta,
    fs_det,
    fs_metric,
    fs_pullback,
    integrate,
    kappa,
    mean_stderr,
    pullback,
    sigma,
    sigma_weighted,
    to_chart,
    volume_cy,
    volume_kahler,
)
from .hypersurface import Hypersurface, Manifold, SingularityWarning, SingularManifoldError
from .pointset import ON_MANIFOLD_RTOL, PointSet, check_on_manifold, load_points, pointset_from_points, save_points
from .presets import EULER_CHARACTERISTIC, PRESETS, preset
from .sampling import roots_of_lines, sample, sample_reference
from .io import build_manifold, load_hypersurface_file, random_quintic
from .sections import monomial_exponents, monomial_sections, monomials

__all__ = [
    "Manifold", "Hypersurface", "SingularityWarning", "SingularManifoldError",
    "preset", "PRESETS", "EULER_CHARACTERISTIC",
    "PointSet", "sample", "sample_reference", "roots_of_lines", "save_points", "load_points", "pointset_from_points", "check_on_manifold", "ON_MANIFOLD_RTOL",
    "chart_data", "build_jacobian",
    "fs_metric", "pullback", "fs_pullback", "fs_det", "eta", "sigma", "sigma_weighted", "kappa", "volume_cy", "volume_kahler",
    "integrate", "mean_stderr", "to_chart", "chart_jacobian",
    "monomial_exponents", "monomials", "monomial_sections",
    "load_hypersurface_file", "random_quintic", "build_manifold", "add_manifold_options", "manifold_from_args",
    "Curvature", "curvature", "make_curvature_fn", "levi_civita", "chern_einsum", "map_batched", "map_points", "metric_from_potential", "ricci_scalar", "ricci_measure", "euler_characteristic", "fs_potential",
]
