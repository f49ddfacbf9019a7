"""Kernels: each with a NumPy reference (``dense``), a JAX form and a KeOps form."""
from .base import Kernel, complexify, realify
from .derivatives import DerivX, DerivXY, DerivY, NoMixing, dot_gauss_coeffs
from .gaussian import Gaussian
from .mlp import MLPNTK
from .networks import CosNetNNGP, CosNetNTK, GaussNetNNGP, GaussNetNTK
from .projective import DzDwBar, ProjectiveGaussian, ProjectiveMixture, ProjectivePower
from .kahler import KahlerMetricKernel, kahler_points

__all__ = [
    "Kernel",
    "Gaussian",
    "realify",
    "complexify",
    "CosNetNNGP",
    "CosNetNTK",
    "GaussNetNNGP",
    "GaussNetNTK",
    "MLPNTK",
    "ProjectivePower",
    "ProjectiveGaussian",
    "ProjectiveMixture",
    "DzDwBar",
    "KahlerMetricKernel",
    "kahler_points",
    "DerivX",
    "DerivY",
    "DerivXY",
    "NoMixing",
    "dot_gauss_coeffs",
]
