"""The kernel interface shared by every backend.

A kernel k maps a pair of points (x, y) to a block K(x, y) of shape (p_out, p_in): p_out = p_in = 1
for scalar kernels, p × p for metric-valued kernels (Θ_ijkl with (ij) and (kl) flattened), and e.g.
(d, 1) for an input-derivative kernel ∂_x k. Every concrete kernel is a frozen dataclass that supplies
three independent implementations of the *same* function:

- ``dense(x, y)``: a plain NumPy reference, written for clarity, used by tests and the dense backend;
- ``jax_block(xr, yr)``: a pure JAX function of a tile of rows (used by the tiled JAX backend);
- ``keops_apply(Xi, Yj, Vj)``: the KeOps symbolic formula of Σ_j K(x_i, y_j) v_j.

Inputs. Real kernels take x of shape (n, d) float. Complex kernels (``input_kind = "complex"``) take
z of shape (n, N) complex in ``dense``; the JAX and KeOps forms receive the realified array
``realify(z) = [Re z, Im z]`` of shape (n, 2N) float, because KeOps works on real tensors.

Outputs. ``dense`` returns (n, m) for scalar kernels, otherwise (n, m, p_out, p_in); complex-valued
kernels (``output_kind = "complex"``) return complex arrays. ``jax_block`` returns the same layout
as ``dense`` (complex where the kernel is). ``keops_apply`` always works in real arithmetic: for a
real-valued kernel Vj has dimension p_in·k (k right-hand sides, point-major layout
``v[j, a*k + r]``) and the result has dimension p_out·k; for a complex-valued kernel Vj holds
[Re V, Im V] (dimension 2·p_in·k) and the result is [Re KV, Im KV] (dimension 2·p_out·k).

Adjoint. ``transpose()`` returns the adjoint kernel k*(x, y) = K(y, x)^H (conjugate transpose; plain
transpose for real kernels), so that the operator of k on (x, y) has as adjoint the operator of k* on
(y, x). Hermitian kernels (K(y, x)^H = K(x, y)) return ``self``.
"""
from __future__ import annotations

import abc
from typing import Any

import numpy as np


def realify(z: np.ndarray) -> np.ndarray:
    """(n, N) complex -> (n, 2N) real: [Re z, Im z]."""
    z = np.asarray(z)
    return np.concatenate([z.real, z.imag], axis=-1)


def complexify(xr):
    """Inverse of :func:`realify` for NumPy or JAX arrays: (n, 2N) real -> (n, N) complex."""
    h = xr.shape[-1] // 2
    return xr[..., :h] + 1j * xr[..., h:]


class Kernel(abc.ABC):
    """Abstract kernel; concrete kernels are frozen dataclasses (see module docstring)."""

    #: "real" (x float (n, d)) or "complex" (z complex (n, N); realified for JAX/KeOps)
    input_kind: str = "real"
    #: "real" or "complex": whether K(x, y) itself is complex-valued
    output_kind: str = "real"

    @property
    def block_shape(self) -> tuple[int, int]:
        """(p_out, p_in) of each K(x, y) block; (1, 1) for scalar kernels."""
        return (1, 1)

    @property
    def is_scalar(self) -> bool:
        return self.block_shape == (1, 1)

    # -- the three implementations -------------------------------------------------------
    @abc.abstractmethod
    def dense(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """NumPy reference. (n, m) or (n, m, p_out, p_in)."""

    @abc.abstractmethod
    def jax_block(self, xr: Any, yr: Any) -> Any:
        """JAX version on realified inputs; same layout as :meth:`dense`."""

    @abc.abstractmethod
    def keops_apply(self, Xi: Any, Yj: Any, Vj: Any, nrhs: int) -> Any:
        """KeOps LazyTensor formula whose sum over j is Σ_j K(x_i, y_j) v_j (see module doc)."""

    # -- defaults ------------------------------------------------------------------------
    def transpose(self) -> "Kernel":
        """Adjoint kernel k*(x, y) = K(y, x)^H. Hermitian kernels return ``self``."""
        return self

    def diag(self, x: np.ndarray) -> np.ndarray:
        """Diagonal blocks K(x_i, x_i): (n,) for scalar kernels, else (n, p_out, p_in).

        The default evaluates the dense reference pointwise; kernels override it with closed forms.
        """
        out = np.stack([self.dense(x[i : i + 1], x[i : i + 1])[0, 0] for i in range(len(x))])
        return out

    def input_dim_ok(self, d: int) -> None:  # pragma: no cover - overridden where it matters
        """Raise ValueError if the kernel cannot take inputs of this dimension."""
        return None


def scalar_keops_apply(Kij, Vj, nrhs: int):
    """Σ_j K_ij v_j for a real scalar kernel formula ``Kij`` (dimension 1) and Vj (dimension nrhs)."""
    return Kij * Vj


def sqdist_keops(Xi, Yj):
    """|x − y|² as a KeOps formula."""
    return ((Xi - Yj) ** 2).sum()


def as_float_array(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "fc":
        a = a.astype(np.float64)
    return a
