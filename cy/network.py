"""Finite-width baseline: a φ-network trained by Adam (optax) on the same Monge–Ampère loss.

φ_θ(z) = MLP(features), features = (Re, Im) of z_i z̄_j / |z|² (C*-invariant, N² reals), tanh hidden
layers of width ``width``; K = (1/π)[log|z|² + φ_θ]; g = g_FS + (1/π) P ∂∂̄φ_θ P† by autodiff
(Wirtinger Hessian in the ambient coordinates); loss = weighted mean of
(log det g − log|Ω|² − c₀)² with c₀ trained too — the same residual the Gauss–Newton solver uses, so the
"finite vs infinite width" comparison is one command: ``ntkflow cy --method network``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkflow.cy.config import NetworkMethod
from ntkflow.cy.model import Model, as_pointset, register
from ntkflow.manifolds import fs_det, sigma_weighted

__all__ = ["NetworkModel", "train_network"]


def _init(key, sizes):
    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, k1 = jax.random.split(key)
        params.append((jax.random.normal(k1, (a, b)) / np.sqrt(a), np.zeros(b)))
    return params


def _phi(params, z):
    """φ at one point z (N,) complex."""
    h = jnp.sum(jnp.real(z) ** 2 + jnp.imag(z) ** 2)
    f = jnp.outer(z, jnp.conj(z)) / h
    x = jnp.concatenate([jnp.real(f).ravel(), jnp.imag(f).ravel()])
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = params[-1]
    return (x @ w + b)[0]


def _ddbar(fn, z):
    """Wirtinger Hessian ∂_I∂̄_J fn at z (N,) by real autodiff."""
    n = z.shape[0]
    v = jnp.concatenate([jnp.real(z), jnp.imag(z)])
    hr = jax.hessian(lambda u: fn(u[:n] + 1j * u[n:]))(v)
    return 0.25 * (hr[:n, :n] + hr[n:, n:] + 1j * (hr[:n, n:] - hr[n:, :n]))


def _metric_point(params, z, P):
    h = jnp.sum(jnp.real(z) ** 2 + jnp.imag(z) ** 2)
    zb = jnp.conj(z)
    pz = P @ zb
    gfs = (P @ jnp.conj(P).T / h - jnp.outer(pz, jnp.conj(pz)) / h ** 2) / jnp.pi
    H = _ddbar(lambda u: _phi(params, u), z)
    return gfs + P @ H @ jnp.conj(P).T / jnp.pi


@register("network")
@dataclass(frozen=True, eq=False)
class NetworkModel(Model):
    manifold: object
    params: tuple = field(repr=False)
    log_kappa: float = 0.0
    info: dict = field(default_factory=dict, repr=False)

    def _metric_ps(self, ps):
        fn = jax.jit(jax.vmap(lambda z, P: _metric_point(self.params, z, P)))
        out = []
        for lo in range(0, len(ps), 4096):
            out.append(np.asarray(fn(jnp.asarray(ps.points[lo:lo + 4096]), jnp.asarray(ps.jacobian[lo:lo + 4096]))))
        return np.concatenate(out)

    def _potential_z(self, z):
        ps = as_pointset(self.manifold, z)
        phi = np.asarray(jax.vmap(lambda u: _phi(self.params, u))(jnp.asarray(ps.points)))
        return (np.log(np.sum(np.abs(ps.points) ** 2, axis=1)) + phi) / np.pi

    def metric_jax(self):
        return lambda z, P, omega: _metric_point(self.params, z, P)

    def _payload(self):
        arrays = {}
        for i, (w, b) in enumerate(self.params):
            arrays[f"W{i}"] = np.asarray(w)
            arrays[f"b{i}"] = np.asarray(b)
        return {"n_layers": len(self.params), "log_kappa": float(self.log_kappa), "info": self.info}, arrays

    @classmethod
    def _from_payload(cls, manifold, meta, arrays):
        params = tuple((arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(int(meta["n_layers"])))
        width = 2 * manifold.n_coords ** 2  # input features: real and imaginary parts of z z̄ᵀ/|z|²
        for i, (w, b) in enumerate(params):
            if w.ndim != 2 or w.shape[0] != width or np.shape(b) != (w.shape[1],):
                raise ValueError(f"layer {i}: W{i} {w.shape} and b{i} {np.shape(b)} do not follow a layer of "
                                 f"width {width}")
            width = w.shape[1]
        if width != 1:
            raise ValueError(f"the last layer has {width} outputs, expected 1 (φ)")
        return cls(manifold=manifold, params=params, log_kappa=float(meta.get("log_kappa", 0.0)),
                   info=meta.get("info", {}))


def train_network(method: NetworkMethod, train, test, *, seed: int = 0, time_budget: float = 0.0,
                  t_start: float | None = None, log=print):
    """Train the φ-network with Adam on minibatches of ``train`` (loss: weighted mean of
    (log det g − log|Ω|² − c₀)², c₀ trained too). Stops after ``method.epochs`` epochs or once
    ``time_budget`` > 0 seconds since ``t_start`` are spent.

    Returns (model, history, det g on ``test`` (n_test,), number of parameters, stopped by the budget?)."""
    t_start = time.perf_counter() if t_start is None else t_start
    n_c = train.manifold.n_coords
    sizes = [2 * n_c * n_c] + [method.width] * method.depth + [1]
    params = _init(jax.random.PRNGKey(seed), sizes)
    c0 = float(np.mean(np.log(fs_det(train) / train.omega_sq)))
    theta = {"params": params, "c0": jnp.asarray(c0)}
    opt = optax.adam(method.learning_rate)
    opt_state = opt.init(theta)
    z_tr, p_tr = jnp.asarray(train.points), jnp.asarray(train.jacobian)
    lo_tr = jnp.asarray(np.log(train.omega_sq))
    w_tr = jnp.asarray(train.weights / train.weights.mean())

    def logdet_batch(prm, z, P):
        g = jax.vmap(lambda a, b: _metric_point(prm, a, b))(z, P)
        return jnp.real(jnp.linalg.slogdet(g)[1])

    def loss_fn(th, z, P, lo, w):
        r = logdet_batch(th["params"], z, P) - lo - th["c0"]
        return jnp.mean(w * r * r)

    @jax.jit
    def step(th, st, z, P, lo, w):
        l, gr = jax.value_and_grad(loss_fn)(th, z, P, lo, w)
        upd, st = opt.update(gr, st, th)
        return optax.apply_updates(th, upd), st, l

    eval_ld = jax.jit(logdet_batch)

    def sig_test(prm):
        ld = np.concatenate([np.asarray(eval_ld(prm, jnp.asarray(test.points[i:i + 4096]), jnp.asarray(test.jacobian[i:i + 4096])))
                             for i in range(0, len(test), 4096)])
        return sigma_weighted(np.exp(ld) / test.omega_sq, test.weights), ld

    n_params = sum(int(np.size(w)) + int(np.size(b)) for w, b in params)
    log(f"  {n_params} parameters; {'epoch':>5} {'loss':>11} {'σ held-out':>10} {'total s':>8}")
    rng = np.random.default_rng(seed)
    history = []
    n_train = len(train)
    bs = min(method.batch_size, n_train)
    stopped = False
    for ep in range(method.epochs):
        perm = rng.permutation(n_train)
        losses = []
        for i in range(0, n_train - bs + 1, bs):
            idx = perm[i:i + bs]
            theta, opt_state, l = step(theta, opt_state, z_tr[idx], p_tr[idx], lo_tr[idx], w_tr[idx])
            losses.append(float(l))
        el = time.perf_counter() - t_start
        stopped = bool(time_budget and el > time_budget)
        last = ep == method.epochs - 1 or stopped
        rec = {"iteration": ep + 1, "loss": float(np.mean(losses)), "elapsed": el}
        if ep % max(1, method.epochs // 20) == 0 or last:
            rec["sigma_test"], _ = sig_test(theta["params"])
            log(f"  {ep + 1:>5} {rec['loss']:>11.4e} {rec['sigma_test']:>10.3e} {el:>8.1f}")
        history.append(rec)
        if last:
            break
    model = NetworkModel(manifold=train.manifold,
                         params=tuple((np.asarray(w), np.asarray(b)) for w, b in theta["params"]),
                         log_kappa=float(theta["c0"]), info={"width": method.width, "depth": method.depth})
    _, ld = sig_test(theta["params"])
    return model, history, np.exp(ld), n_params, stopped
