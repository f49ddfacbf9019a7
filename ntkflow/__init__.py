"""ntkflow: neural-network metric flows in the infinite-width (frozen metric-NTK) limit.

Subpackages (each installed from a top-level folder of the repository):

- ``ntkflow.engine``    lazy kernel operators (dense / KeOps / JAX-tiled / dask) and kernels
- ``ntkflow.solvers``   conjugate gradients, Nyström/Falkon KRR, frozen-NTK flows
- ``ntkflow.manifolds`` Calabi-Yau hypersurfaces: sampling, weights, geometry
- ``ntkflow.ntk``       finite networks, empirical metric-NTK, infinite-width limits
- ``ntkflow.cy``     Kähler potential flows to Calabi-Yau metrics

Float64 is the default everywhere on the CPU; importing ntkflow turns on JAX's x64 mode
(``jax_enable_x64``), which is the only process-wide setting it touches.
"""
from __future__ import annotations

__version__ = "0.1.0"

import jax as _jax

_jax.config.update("jax_enable_x64", True)


def load(directory):
    """Load a model saved by ``ntkflow cy`` (see :func:`ntkflow.cy.load`)."""
    from ntkflow.cy import load as _load

    return _load(directory)


__all__ = ["__version__", "load"]
