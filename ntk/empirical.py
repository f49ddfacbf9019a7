"""Empirical metric-NTK Θ_ijkl(x,x') = Σ_I ∂g_ij(x)/∂θ_I ∂g_kl(x')/∂θ_I of a finite network.

Three routes to the same matrix, in the flat point-major layout of the operator engine
(row i·p + a ↔ point x_i, flat component a; p = ``model.flat_size``):

- :func:`empirical_ntk` (dense): per-point Jacobians J (n, p, P) by reverse mode, Θ = J J'ᵀ;
  memory O(n·p·P), for small point sets;
- :class:`EmpiricalNTKOperator` (lazy ``ntkflow.engine.LinearOperator``): Θ V = J (J'ᵀ V) with one
  vjp and one jvp per column; memory O((n + m)·activations), never the Jacobian;
- :func:`nt_empirical_ntk`: neural-tangents' ``empirical_ntk_fn`` (cross-check; needs the [nt] extra).

Only the ``trainable`` entries of the params take part (frozen entries are constants).
:func:`ntk_tensor` reshapes the flat layout to Θ_ijkl (real metrics) or Θ_ij̄kl̄ (Hermitian metrics;
the talk's unconjugated product, assembled from the real and imaginary parts of the Jacobian).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkflow.engine import LinearOperator


def trainable_fn(model, params):
    """(f, θ): f(θ, x) = model.flat(params with θ in place, x) for one point; θ = trainable entries."""
    tp, fp = model.split(params)

    def f(theta, x):
        return model.flat({**fp, **theta}, x)

    return f, tp


def _n_points(x) -> int:
    return int(jax.tree_util.tree_leaves(x)[0].shape[0])


def as_points(name, x):
    if isinstance(x, (tuple, list)):
        leaves = tuple(jnp.asarray(a) for a in x)
    else:
        leaves = jnp.asarray(x)
    ls = jax.tree_util.tree_leaves(leaves)
    if not ls or ls[0].ndim < 1 or any(a.shape[0] != ls[0].shape[0] for a in ls):
        raise ValueError(
            f"{name}: expected a batch of points with a common leading axis n (an array (n, d), or a tuple "
            f"(z (n, N), P (n, dim, N))), received shapes {[getattr(a, 'shape', None) for a in ls]}."
        )
    return leaves


def jacobian(model, params, x):
    """Per-point Jacobian of the flat output w.r.t. the trainable params: pytree of (n, p, *leaf)."""
    f, tp = trainable_fn(model, params)
    return jax.vmap(jax.jacrev(f), in_axes=(None, 0))(tp, as_points("x", x))


def ntk_jax(model, params, x, y=None):
    """Traceable (jit/vmap-able) form of :func:`empirical_ntk`; returns a jax array (n, m, p, p)."""
    f, tp = trainable_fn(model, params)
    jac = lambda pts: jax.vmap(jax.jacrev(f), in_axes=(None, 0))(tp, pts)  # noqa: E731
    Jx = jac(x)
    Jy = Jx if y is None else jac(y)
    out = 0.0
    for a, b in zip(jax.tree_util.tree_leaves(Jx), jax.tree_util.tree_leaves(Jy)):
        a2 = a.reshape(a.shape[0], a.shape[1], -1)
        b2 = b.reshape(b.shape[0], b.shape[1], -1)
        out = out + jnp.einsum("nps,mqs->nmpq", a2, b2)
    return out


_ntk_jit = jax.jit(ntk_jax, static_argnums=0)


def empirical_ntk(model, params, x, y=None) -> np.ndarray:
    """Dense Θ(x, y) in the flat layout: (n, m, p, p) with Θ[i, j, a, b] = Σ_I ∂f_a(x_i)/∂θ_I ∂f_b(y_j)/∂θ_I.

    x: batch of n points (see :mod:`ntkflow.ntk.metrics`); y: batch of m points (default x).
    """
    x = as_points("x", x)
    y = None if y is None else as_points("y", y)
    return np.asarray(_ntk_jit(model, params, x, y))


def flat_matrix(theta) -> np.ndarray:
    """(n, m, p, q) -> (n·p, m·q) point-major matrix (the engine's operator layout)."""
    n, m, p, q = theta.shape
    return np.asarray(theta).transpose(0, 2, 1, 3).reshape(n * p, m * q)


def ntk_tensor(model, theta) -> np.ndarray:
    """Flat-layout Θ (n, m, p, p) -> Θ_ijkl (n, m, dim, dim, dim, dim); complex Θ_ij̄kl̄ for Hermitian g.

    For g = A + iB (A, B real, derivatives real): Σ ∂g ∂g' = (A·A' − B·B') + i(A·B' + B·A').
    """
    theta = np.asarray(theta)
    n, m = theta.shape[:2]
    d = model.dim
    if model.output_kind != "complex":
        return theta.reshape(n, m, d, d, d, d)
    t = theta.reshape(n, m, 2, d, d, 2, d, d)
    return (t[:, :, 0, :, :, 0] - t[:, :, 1, :, :, 1]) + 1j * (t[:, :, 0, :, :, 1] + t[:, :, 1, :, :, 0])


@dataclass(frozen=True, repr=False)
class EmpiricalNTKOperator(LinearOperator):
    """Lazy Θ(x, y) of shape (n·p, m·p): Θ V = J_x (J_yᵀ V), one vjp + one jvp per column.

    Never forms the Jacobian: memory is that of two forward/backward passes per column
    (``chunk`` columns at a time). Built with :func:`empirical_ntk_operator`.
    """

    model: Any
    params: Any
    x: Any
    y: Any = None
    chunk: int = 16
    _apply: Any = field(default=None, compare=False)

    def __post_init__(self):
        f, tp = trainable_fn(self.model, self.params)
        x = as_points("x", self.x)
        y = x if self.y is None else as_points("y", self.y)

        def fx(t):
            return jax.vmap(f, in_axes=(None, 0))(t, x)  # (n, p)

        def fy(t):
            return jax.vmap(f, in_axes=(None, 0))(t, y)  # (m, p)

        def one(v):  # v (m, p)
            _, vjp = jax.vjp(fy, tp)
            (g,) = vjp(v)
            return jax.jvp(fx, (tp,), (g,))[1]  # (n, p)

        object.__setattr__(self, "_apply", jax.jit(jax.vmap(one)))

    @property
    def shape(self):
        p = self.model.flat_size
        n = _n_points(self.x)
        m = n if self.y is None else _n_points(self.y)
        return (n * p, m * p)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def _mm(self, V):
        if np.iscomplexobj(V):
            return self._mm(np.ascontiguousarray(V.real)) + 1j * self._mm(np.ascontiguousarray(V.imag))
        p = self.model.flat_size
        m = self.shape[1] // p
        k = V.shape[1]
        Vt = np.asarray(V, dtype=np.float64).T.reshape(k, m, p)  # (k, m, p)
        outs = []
        for s in range(0, k, self.chunk):
            outs.append(np.asarray(self._apply(jnp.asarray(Vt[s : s + self.chunk]))))
        out = np.concatenate(outs, axis=0)  # (k, n, p)
        return out.reshape(k, -1).T

    @property
    def T(self):
        if self.y is None:
            return self
        return EmpiricalNTKOperator(self.model, self.params, self.y, self.x, self.chunk)


def empirical_ntk_operator(model, params, x, y=None, *, chunk: int = 16) -> EmpiricalNTKOperator:
    """Lazy empirical metric-NTK operator (see :class:`EmpiricalNTKOperator`)."""
    if int(chunk) < 1:
        raise ValueError(f"chunk: columns per jvp/vjp batch must be >= 1, received {chunk!r}.")
    return EmpiricalNTKOperator(model, params, x, y, int(chunk))


def nt_available() -> tuple[bool, str]:
    """(True, version) if neural-tangents imports here, else (False, the reason)."""
    try:
        import neural_tangents as nt  # noqa: F401
    except Exception as exc:  # ImportError, or a JAX-API AttributeError on current JAX
        return False, f"neural-tangents does not import on jax {jax.__version__}: {type(exc).__name__}: {exc}"
    return True, getattr(nt, "__version__", "?")


def nt_empirical_ntk(model, params, x, y=None) -> np.ndarray:
    """neural-tangents' ``empirical_ntk_fn`` on the flat output: (n, m, p, p), real-array points only."""
    ok, why = nt_available()
    if not ok:
        raise ImportError(why + "; install the [nt] extra (jax==0.5.3, neural-tangents==0.6.5).")
    import neural_tangents as nt

    f, tp = trainable_fn(model, params)
    fn = nt.empirical_ntk_fn(lambda t, xb: jax.vmap(f, in_axes=(None, 0))(t, xb), trace_axes=(), vmap_axes=0)
    x = jnp.asarray(x)
    y = x if y is None else jnp.asarray(y)
    return np.asarray(fn(x, y, tp))
