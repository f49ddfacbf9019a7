"""The linearised model and gradient-descent training, and the frozen-kernel flow they must match.

Linearised model (Lee et al. 2019; the talk's g^L)::

    f^L(x; θ) = f(x; θ₀) + (θ − θ₀)·∂f(x)/∂θ|θ₀        (one jax.jvp per point)

Loss L(θ) = 1/(2n) Σ_i |f(x_i; θ) − y_i|² over the flat outputs (n points, p components each).
Gradient descent θ ← θ − η ∇L (optax.sgd) is, for the linearised model, *exactly*

    f_{s+1} = f_s − (η/n) Θ₀ (f_s − y),   Θ₀ = J₀ J₀ᵀ (flat layout, n·p × n·p),

and, as η → 0 at fixed t = η·s, the frozen-kernel ODE df/dt = −(1/n) Θ₀ (f − y) with solution
f(t) = y + exp(−Θ₀ t/n)(f₀ − y). Held-out points x* move by
f(x*, t) = f₀(x*) − Θ(x*, X) Θ₀⁻¹ (I − exp(−Θ₀ t/n)) (f₀ − y) (:func:`frozen_ntk_prediction`).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkflow._checks import positive_float, positive_int

from .empirical import as_points, trainable_fn


def linearize(model, params0):
    """(f_lin, θ₀): f_lin(θ, x) = f(θ₀, x) + jvp of f at θ₀ along θ − θ₀ (one point x)."""
    f, theta0 = trainable_fn(model, params0)

    def f_lin(theta, x):
        dtheta = jax.tree_util.tree_map(lambda a, b: a - b, theta, theta0)
        y0, dy = jax.jvp(lambda t: f(t, x), (theta0,), (dtheta,))
        return y0 + dy

    return f_lin, theta0


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_gd`: final trainable params, recorded outputs and losses.

    ``outputs`` (len(steps_recorded), n_eval, p) are the flat outputs at the evaluation points at
    the recorded steps ``steps`` (times t = lr·steps); ``loss`` the training loss at those steps.
    """

    theta: dict
    steps: np.ndarray  # (r,)
    times: np.ndarray  # (r,)
    outputs: np.ndarray  # (r, n_eval, p)
    loss: np.ndarray  # (r,)


def train_gd(
    model,
    params0,
    x,
    y,
    *,
    lr: float = 0.5,
    steps: int = 200,
    linear: bool = False,
    x_eval=None,
    record_every: int = 1,
) -> TrainResult:
    """Full-batch gradient descent (optax.sgd(lr)) on L = 1/(2n) Σ |f(x_i) − y_i|².

    Args:
        model, params0: a model of :mod:`ntkflow.ntk.metrics` and its initial params.
        x: n training points; y: (n, p) flat targets (p = model.flat_size).
        lr: learning rate η (t = η·steps); steps: number of steps.
        linear: train the linearised model f^L instead of f.
        x_eval: points at which outputs are recorded (default x).
        record_every: record every this many steps (step 0 and the last are always recorded).
    """
    lr = positive_float("lr", lr)
    steps = positive_int("steps", steps)
    record_every = positive_int("record_every", record_every)
    x = as_points("x", x)
    x_eval = x if x_eval is None else as_points("x_eval", x_eval)
    y = jnp.asarray(y)
    n = int(jax.tree_util.tree_leaves(x)[0].shape[0])
    if y.shape != (n, model.flat_size):
        raise ValueError(
            f"y: expected flat targets of shape (n, p) = ({n}, {model.flat_size}), received {y.shape}; "
            f"flatten metrics with model.flat layout (g.reshape(dim²) for real metrics)."
        )
    if linear:
        f, theta = linearize(model, params0)
    else:
        f, theta = trainable_fn(model, params0)
    fb = lambda t, xs: jax.vmap(f, in_axes=(None, 0))(t, xs)  # noqa: E731

    def loss_fn(t):
        r = fb(t, x) - y
        return 0.5 * jnp.sum(r * r) / n

    opt = optax.sgd(lr)
    state = opt.init(theta)

    @jax.jit
    def run(theta, state):
        def body(carry, _):
            t, s = carry
            l, g = jax.value_and_grad(loss_fn)(t)
            u, s = opt.update(g, s, t)
            return (optax.apply_updates(t, u), s), None

        def outer(carry, _):
            carry, _ = jax.lax.scan(body, carry, None, length=record_every)
            t = carry[0]
            return carry, (fb(t, x_eval), loss_fn(t))

        (t, s), (outs, losses) = jax.lax.scan(outer, (theta, state), None, length=steps // record_every)
        return t, outs, losses

    out0, l0 = fb(theta, x_eval), loss_fn(theta)
    theta_T, outs, losses = run(theta, state)
    rec = np.arange(0, steps // record_every + 1) * record_every
    return TrainResult(
        theta=theta_T,
        steps=rec,
        times=lr * rec,
        outputs=np.concatenate([np.asarray(out0)[None], np.asarray(outs)]),
        loss=np.concatenate([[float(l0)], np.asarray(losses)]),
    )


def frozen_kernel_ode(theta_mat, f0, y, times, *, rtol: float = 1e-10, atol: float = 1e-12):
    """Solve df/dt = −(1/n) Θ (f − y) with scipy's solve_ivp (DOP853); returns (len(times), n, p).

    theta_mat: (n·p, n·p) flat-layout kernel; f0, y: (n, p).
    """
    from scipy.integrate import solve_ivp

    f0 = np.asarray(f0, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = f0.shape[0]
    A = np.asarray(theta_mat) / n
    sol = solve_ivp(
        lambda t, f: -A @ (f - y.reshape(-1)), (0.0, float(np.max(times))), f0.reshape(-1),
        t_eval=np.asarray(times, dtype=float), method="DOP853", rtol=rtol, atol=atol,
    )
    if not sol.success:
        raise RuntimeError(f"frozen_kernel_ode: solve_ivp failed: {sol.message}")
    return sol.y.T.reshape(len(times), *f0.shape)


def frozen_ntk_prediction(theta_xx, theta_sx, f0_x, f0_s, y, t: float):
    """Frozen-kernel gradient-flow prediction at training (X) and held-out (S) points at time t.

    f(X, t) = y + e^{−Θt/n}(f₀(X) − y);  f(S, t) = f₀(S) − Θ(S,X) Θ⁻¹(I − e^{−Θt/n})(f₀(X) − y),
    with Θ⁻¹(I − e^{−Θt/n}) evaluated on the eigenbasis as (1 − e^{−λt/n})/λ (→ t/n as λ → 0).
    theta_xx (n·p, n·p), theta_sx (s·p, n·p), f0_x, y (n, p), f0_s (s, p). Returns (f_X, f_S).
    """
    f0_x = np.asarray(f0_x)
    n = f0_x.shape[0]
    lam, U = np.linalg.eigh(np.asarray(theta_xx))
    lam = np.maximum(lam, 0.0)
    r0 = (f0_x - np.asarray(y)).reshape(-1)
    c = U.T @ r0
    decay = np.exp(-lam * t / n)
    fX = np.asarray(y).reshape(-1) + U @ (decay * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(lam * t / n > 1e-12, -np.expm1(-lam * t / n) / np.where(lam > 0, lam, 1.0), t / n)
    fS = np.asarray(f0_s).reshape(-1) - np.asarray(theta_sx) @ (U @ (phi * c))
    return fX.reshape(f0_x.shape), fS.reshape(np.asarray(f0_s).shape)
