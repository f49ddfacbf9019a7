"""One small linear-operator interface with dense, KeOps, JAX-tiled and dask backends behind it.

Every operator A has ``shape`` (rows, cols), ``dtype``, ``mv(v)`` (v of shape (cols,)),
``mm(V)`` (V of shape (cols, k), many right-hand sides), ``T`` (the adjoint: transpose, conjugate
transpose for complex operators), ``diag()`` and ``to_dense()``; ``A + reg * Identity(n)`` adds a
ridge. The base class checks shapes, dtypes and finiteness once; backends implement ``_mm`` only.

A kernel operator of a kernel k with blocks of shape (p_out, p_in) on points x (n of them) and y
(m of them) is the (n·p_out) × (m·p_in) matrix with entries ``A[i*p_out + a, j*p_in + b] =
K(x_i, y_j)[a, b]`` (point-major layout), plus ``reg`` times the identity when x is y.
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ntkflow._checks import finite_array, nonneg_float

from .kernels.base import Kernel, realify

#: the dense backend refuses operators with more entries than this (2.5·10⁸ float64 = 2 GB)
DENSE_MAX_ENTRIES = 250_000_000

BACKENDS = ("dense", "keops", "jax", "dask")
#: backend name -> backend class; filled by :func:`register_backend` (ntkflow.engine.backends registers all four)
BACKEND_CLASSES: dict = {}


class LinearOperator(abc.ABC):
    """Abstract linear operator. Subclasses implement :meth:`_mm` (and may override the rest)."""

    shape: tuple[int, int]
    dtype: np.dtype

    # -- public API with checks --------------------------------------------------------------
    def mv(self, v) -> np.ndarray:
        """A v for v of shape (cols,); returns (rows,)."""
        v = self._check_rhs("v", v, ndim=1)
        return self._mm(v[:, None])[:, 0]

    def mm(self, V) -> np.ndarray:
        """A V for V of shape (cols, k); returns (rows, k)."""
        V = self._check_rhs("V", V, ndim=2)
        if V.shape[1] == 0:
            return np.zeros((self.shape[0], 0), dtype=np.result_type(self.dtype, V.dtype))
        return self._mm(V)

    def __matmul__(self, V):
        V = np.asarray(V)
        return self.mv(V) if V.ndim == 1 else self.mm(V)

    @property
    def T(self) -> "LinearOperator":
        """The adjoint operator (conjugate transpose for complex operators)."""
        return _Adjoint(self)

    def diag(self) -> np.ndarray:
        """Main diagonal, shape (min(rows, cols),). Default: probes columns (override when cheap)."""
        n = min(self.shape)
        out = np.empty(n, dtype=self.dtype)
        for s in range(0, n, 256):
            e = min(n, s + 256)
            E = np.zeros((self.shape[1], e - s), dtype=self.dtype)
            E[np.arange(s, e), np.arange(e - s)] = 1
            out[s:e] = self._mm(E)[np.arange(s, e), np.arange(e - s)]
        return out

    def to_dense(self) -> np.ndarray:
        """The operator as a dense array (small operators only)."""
        rows, cols = self.shape
        if rows * cols > DENSE_MAX_ENTRIES:
            raise MemoryError(
                f"to_dense: operator of shape {self.shape} has {rows * cols:.3g} entries, above "
                f"DENSE_MAX_ENTRIES={DENSE_MAX_ENTRIES:.3g}; use mv/mm instead."
            )
        return self._mm(np.eye(cols, dtype=self.dtype))

    def __add__(self, other):
        if isinstance(other, LinearOperator):
            return _Sum(self, other)
        return NotImplemented

    __radd__ = __add__

    # -- helpers ----------------------------------------------------------------------------
    def _check_rhs(self, name: str, V, ndim: int) -> np.ndarray:
        V = finite_array(name, V, ndim=ndim)
        if V.shape[0] != self.shape[1]:
            raise ValueError(
                f"{name}: operator of shape {self.shape} needs {self.shape[1]} rows, received "
                f"{name}.shape = {V.shape}."
            )
        if V.dtype.kind in "biu":
            V = V.astype(np.float64)
        if V.dtype.kind == "c" and np.dtype(self.dtype).kind != "c":
            # a real operator applied to a complex vector: apply to both parts
            return V
        return V

    @abc.abstractmethod
    def _mm(self, V: np.ndarray) -> np.ndarray:
        """A V for a checked (cols, k) array."""

    def __repr__(self):
        return f"{type(self).__name__}(shape={self.shape}, dtype={np.dtype(self.dtype).name})"


@dataclass(frozen=True, repr=False)
class DenseOperator(LinearOperator):
    """A LinearOperator backed by an explicit NumPy matrix (reference and small problems)."""

    matrix: np.ndarray

    def __post_init__(self):
        m = finite_array("matrix", self.matrix, ndim=2)
        object.__setattr__(self, "matrix", m)

    @property
    def shape(self):
        return self.matrix.shape

    @property
    def dtype(self):
        return self.matrix.dtype

    def _mm(self, V):
        return self.matrix @ V

    def diag(self):
        return np.diagonal(self.matrix).copy()

    def to_dense(self):
        return self.matrix.copy()

    @property
    def T(self):
        return DenseOperator(self.matrix.conj().T)


@dataclass(frozen=True, repr=False)
class Identity(LinearOperator):
    """scale · I_n. ``reg * Identity(n)`` gives a scaled identity."""

    n: int
    scale: float = 1.0

    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        return self.scale * V

    def diag(self):
        return np.full(self.n, self.scale)

    @property
    def T(self):
        return self

    def __mul__(self, c):
        return Identity(self.n, self.scale * float(c))

    __rmul__ = __mul__



@dataclass(frozen=True, repr=False, eq=False)
class ProductOperator(LinearOperator):
    """A (rows, cols) real operator given by its products: ``forward(V)`` = A V for V (cols, k) and
    ``adjoint(U)`` = Aᵀ U for U (rows, k); ``T`` swaps them (no dense matrix is ever formed)."""

    rows: int
    cols: int
    forward: Callable[[np.ndarray], np.ndarray]
    adjoint: Callable[[np.ndarray], np.ndarray]

    @property
    def shape(self):
        return (self.rows, self.cols)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        out = np.asarray(self.forward(np.asarray(V, dtype=np.float64)), dtype=np.float64)
        return out if out.ndim == 2 else out.reshape(self.rows, V.shape[1])

    @property
    def T(self) -> "ProductOperator":
        return ProductOperator(self.cols, self.rows, self.adjoint, self.forward)


@dataclass(frozen=True, repr=False, eq=False)
class DiagonalOperator(LinearOperator):
    """diag(d) (n × n), d of shape (n,): the ridge matrix P of a Tikhonov penalty θᵀPθ."""

    d: np.ndarray

    @property
    def shape(self):
        return (len(self.d), len(self.d))

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        return self.d[:, None] * V

    def diag(self):
        return np.array(self.d, dtype=np.float64)

    @property
    def T(self) -> "DiagonalOperator":
        return self


@dataclass(frozen=True, repr=False)
class _Sum(LinearOperator):
    a: LinearOperator
    b: LinearOperator

    def __post_init__(self):
        if self.a.shape != self.b.shape:
            raise ValueError(f"cannot add operators of shapes {self.a.shape} and {self.b.shape}.")

    @property
    def shape(self):
        return self.a.shape

    @property
    def dtype(self):
        return np.result_type(self.a.dtype, self.b.dtype)

    def _mm(self, V):
        return self.a._mm(V) + self.b._mm(V)

    def diag(self):
        return self.a.diag() + self.b.diag()

    @property
    def T(self):
        return _Sum(self.a.T, self.b.T)


@dataclass(frozen=True, repr=False)
class _Adjoint(LinearOperator):
    """Adjoint by conjugation of the dense matrix: only for small operators (to_dense)."""

    a: LinearOperator

    @property
    def shape(self):
        return (self.a.shape[1], self.a.shape[0])

    @property
    def dtype(self):
        return self.a.dtype

    def _mm(self, V):
        return self.a.to_dense().conj().T @ V

    @property
    def T(self):
        return self.a


# ---------------------------------------------------------------------------------------------
# Kernel operators
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Points:
    """Points in the form each backend needs: originals (for dense) and realified (JAX/KeOps)."""

    raw: np.ndarray  # (n, d) float or (n, N) complex
    real: np.ndarray  # (n, d) or (n, 2N) float64, C-contiguous


def _points(name: str, kernel: Kernel, x, dtype) -> _Points:
    x = finite_array(name, x, ndim=2)
    if x.shape[0] == 0:
        raise ValueError(f"{name}: received an empty point set (shape {x.shape}); pass at least one point.")
    if kernel.input_kind == "complex":
        if x.dtype.kind != "c":
            raise TypeError(
                f"{name}: {type(kernel).__name__} takes complex points (n, N) complex128, received "
                f"dtype {x.dtype}; pass homogeneous coordinates as a complex array."
            )
        raw = x.astype(np.complex128 if dtype == np.float64 else np.complex64)
        real = np.ascontiguousarray(realify(raw), dtype=dtype)
    else:
        if x.dtype.kind == "c":
            raise TypeError(
                f"{name}: {type(kernel).__name__} takes real points, received a complex array; "
                f"use a complex-input kernel or pass realify(z)."
            )
        raw = np.ascontiguousarray(x, dtype=dtype)
        real = raw
    return _Points(raw=raw, real=real)


@dataclass(frozen=True, repr=False)
class KernelOperator(LinearOperator):
    """The operator A = K(x, y) (+ reg·I when x is y) of a kernel on two point sets.

    Built by :func:`kernel_operator`. ``backend`` holds the object that does the work.
    """

    kernel: Kernel
    x: _Points
    y: _Points
    backend: Any
    reg: float = 0.0
    symmetric_points: bool = False

    @property
    def shape(self):
        p_out, p_in = self.kernel.block_shape
        return (self.x.raw.shape[0] * p_out, self.y.raw.shape[0] * p_in)

    @property
    def dtype(self):
        base = self.x.real.dtype
        if self.kernel.output_kind == "complex":
            return np.dtype(np.complex128 if base == np.float64 else np.complex64)
        return np.dtype(base)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def _mm(self, V):
        if V.dtype.kind == "c" and self.kernel.output_kind != "complex":
            out = self.backend.apply(self, np.ascontiguousarray(V.real)) + 1j * self.backend.apply(
                self, np.ascontiguousarray(V.imag)
            )
        else:
            out = self.backend.apply(self, V)
        if self.reg:
            out = out + self.reg * V
        return out

    def diag(self):
        if self.shape[0] != self.shape[1] or not self.symmetric_points:
            return super().diag()
        d = self.kernel.diag(self.x.raw)
        if self.kernel.is_scalar:
            d = np.asarray(d)
        else:
            d = np.einsum("naa->na", np.asarray(d)).reshape(-1)
        return d + self.reg

    def to_dense(self):
        rows, cols = self.shape
        if rows * cols > DENSE_MAX_ENTRIES:
            raise MemoryError(
                f"to_dense: kernel operator of shape {self.shape} has {rows * cols:.3g} entries, "
                f"above DENSE_MAX_ENTRIES={DENSE_MAX_ENTRIES:.3g}; use mv/mm (the point of a lazy operator)."
            )
        K = dense_block_matrix(self.kernel, self.x.raw, self.y.raw)
        if self.reg:
            K = K + self.reg * np.eye(rows)
        return K

    @property
    def T(self):
        """Adjoint: the operator of the adjoint kernel k* (K*(x, y) = K(y, x)^H) on (y, x)."""
        return dataclasses.replace(self, kernel=self.kernel.transpose(), x=self.y, y=self.x)

    def with_backend(self, backend: str, **options) -> "KernelOperator":
        """The same operator on another backend (e.g. to compare with the dense reference)."""
        return dataclasses.replace(self, backend=_make_backend(backend, self.kernel, options))

    def close(self):
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dense_block_matrix(kernel: Kernel, x, y) -> np.ndarray:
    """K(x, y) as one (n·p_out, m·p_in) matrix (block (i, j) = K(x_i, y_j)): the dense reference."""
    K = np.asarray(kernel.dense(x, y))
    n, m = x.shape[0], y.shape[0]
    p_out, p_in = kernel.block_shape
    if kernel.is_scalar and K.ndim == 2:
        return K
    return K.reshape(n, m, p_out, p_in).transpose(0, 2, 1, 3).reshape(n * p_out, m * p_in)


def kernel_operator(
    kernel: Kernel,
    x,
    y=None,
    *,
    backend: str = "keops",
    reg: float = 0.0,
    dtype=np.float64,
    **options,
) -> KernelOperator:
    """Lazy operator A = K(x, y) + reg·I of a kernel on point sets x (n, d) and y (m, d).

    The matrix is never formed (except by ``backend="dense"``): ``A.mv(v)`` computes
    (A v)_i = Σ_j K(x_i, y_j) v_j + reg v_i on the fly.

    Args:
        kernel: an :class:`ntkflow.engine.Kernel` (e.g. ``Gaussian(lengthscale=1.0)``).
        x: (n, d) float points, or (n, N) complex for complex-input kernels.
        y: (m, d) points; ``None`` means y = x (a square, symmetric operator).
        backend: "keops" (pykeops LazyTensor), "jax" (tiled jit matvec, memory O(tile·m)),
            "dense" (NumPy reference; refuses above ``DENSE_MAX_ENTRIES``), "dask" (row blocks of
            an inner backend on a dask.distributed cluster).
        reg: ridge λ ≥ 0 added as λ·I (only when y is None).
        dtype: float64 (default) or float32 (opt-in; about 1e-6 relative accuracy of a matvec).
        options: backend options — jax: ``tile`` (rows per tile, default 512);
            dask: ``inner`` (backend of each block, default "keops"), ``n_blocks``,
            ``scheduler`` ("tcp://host:port" to join a cluster, joined here: an unreachable one raises
            ``SchedulerError`` naming it), ``timeout`` (seconds for every wait on the cluster, default 5),
            ``client`` (an existing ``distributed.Client``), ``n_workers``.

    >>> import numpy as np
    >>> from ntkflow.engine import Gaussian, kernel_operator
    >>> x = np.random.default_rng(0).normal(size=(50, 3))
    >>> A = kernel_operator(Gaussian(1.0), x, backend="jax", reg=1e-3)
    >>> A.shape
    (50, 50)
    >>> bool(np.allclose(A.mv(np.ones(50)), A.to_dense() @ np.ones(50)))
    True
    """
    if not isinstance(kernel, Kernel):
        raise TypeError(
            f"kernel: expected an ntkflow.engine.Kernel (e.g. Gaussian(1.0)), received {type(kernel).__name__}."
        )
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, received {backend!r}.")
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype: expected float64 or float32, received {dtype}.")
    reg = nonneg_float("reg", reg)
    px = _points("x", kernel, x, dtype)
    if y is None:
        py = px
        symmetric = True
    else:
        py = _points("y", kernel, y, dtype)
        symmetric = False
        if reg:
            raise ValueError(
                f"reg: a ridge reg·I needs a square operator on one point set (y=None); received "
                f"reg={reg} with y of shape {py.raw.shape}. Drop y or use reg=0."
            )
        if py.raw.shape[1] != px.raw.shape[1]:
            raise ValueError(
                f"y: points must have the same dimension as x ({px.raw.shape[1]}), received y.shape = {py.raw.shape}."
            )
    kernel.input_dim_ok(px.raw.shape[1])
    be = _make_backend(backend, kernel, options)
    return KernelOperator(kernel=kernel, x=px, y=py, backend=be, reg=reg, symmetric_points=symmetric)


def register_backend(name: str, cls) -> None:
    """Make ``kernel_operator(..., backend=name)`` build ``cls(**options)`` (a class with ``apply(op, V)``)."""
    if name not in BACKENDS:
        raise ValueError(f"name: expected one of {BACKENDS}, received {name!r}.")
    BACKEND_CLASSES[name] = cls


def _make_backend(name: str, kernel: Kernel, options: dict):
    cls = BACKEND_CLASSES.get(name)
    if cls is None:
        raise ValueError(f"backend: expected one of {tuple(BACKEND_CLASSES) or BACKENDS}, received {name!r}"
                         f"{'' if name not in BACKENDS else ' (not registered: import ntkflow.engine)'}.")
    return cls(**options)
