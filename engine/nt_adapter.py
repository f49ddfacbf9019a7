"""Adapter from ntkflow's MLP kernel spec to neural-tangents ``stax`` (optional dependency).

neural-tangents 0.6.5 imports only with jax/jaxlib 0.4.26 … 0.5.3 (+ tf2jax, tensorflow): the ``[nt]``
extra. Everything here imports it lazily and raises :class:`NeuralTangentsUnavailable` (an
ImportError) with the reason when it cannot be imported, so the core never depends on it.

>>> from ntkflow.engine import MLPNTK
>>> from ntkflow.engine.nt_adapter import nt_available
>>> isinstance(nt_available(), bool)
True
"""
from __future__ import annotations

import numpy as np

from .kernels.mlp import MLPNTK


class NeuralTangentsUnavailable(ImportError):
    """neural-tangents could not be imported (the reason is in the message)."""


def _import_stax():
    try:
        from neural_tangents import stax
    except Exception as exc:  # ImportError, or version clashes raising AttributeError etc.
        raise NeuralTangentsUnavailable(
            f"neural-tangents could not be imported ({type(exc).__name__}: {str(exc)[:300]}); it needs "
            f"jax/jaxlib 0.4.26…0.5.3, tf2jax==0.3.6 and tensorflow (pip install 'ntkflow[nt]')."
        ) from exc
    return stax


def nt_available() -> bool:
    """Whether neural-tangents imports in this environment."""
    try:
        _import_stax()
    except NeuralTangentsUnavailable:
        return False
    return True


def nt_unavailable_reason() -> str | None:
    """None if neural-tangents imports, else the reason it does not."""
    try:
        _import_stax()
    except NeuralTangentsUnavailable as exc:
        return str(exc)
    return None


def to_stax(spec: MLPNTK, width: int = 512):
    """``(init_fn, apply_fn, kernel_fn)`` of the stax network whose infinite-width limit is ``spec``.

    ``stax.serial(Dense(width), φ, …, Dense(width), φ, Dense(1))`` with ``spec.depth`` hidden layers,
    ``W_std = spec.w_std``, ``b_std = spec.b_std``, NTK parameterisation; φ = ``stax.Relu()``,
    ``stax.Erf()`` (erf) or ``stax.Gelu(approximate=False)``.
    """
    if not isinstance(spec, MLPNTK):
        raise TypeError(f"spec: expected an ntkflow.engine.MLPNTK, received {type(spec).__name__}.")
    stax = _import_stax()
    act = {"relu": stax.Relu, "erf": stax.Erf, "gelu": lambda: stax.Gelu(approximate=False)}[spec.activation]
    layers = []
    for _ in range(spec.depth):
        layers += [stax.Dense(width, W_std=spec.w_std, b_std=spec.b_std, parameterization="ntk"), act()]
    layers.append(stax.Dense(1, W_std=spec.w_std, b_std=spec.b_std, parameterization="ntk"))
    return stax.serial(*layers)


def nt_kernel(spec: MLPNTK, x, y=None) -> np.ndarray:
    """neural-tangents' analytic ``spec.kind`` kernel (n, m) on x (n, d), y (m, d) (float64 arrays)."""
    _, _, kernel_fn = to_stax(spec)
    x = np.asarray(x, dtype=np.float64)
    y = x if y is None else np.asarray(y, dtype=np.float64)
    return np.asarray(kernel_fn(x, y, spec.kind))
