"""Finite-width baseline: a φ-network trained by Adam (optax) on the same Monge–Ampère loss.

φ_θ(z) = MLP(features), features = (Re, Im) of z_i z̄_j / |z|² (C*-invariant, N² reals), tanh hidden
layers of width ``width``; K = (1/π)[log|z|² + φ_θ]; g = g_FS + (1/π) P ∂∂̄φ_θ P† by autodiff
(Wirtinger Hessian in the ambient coordinates); loss = weighted mean of
(log det g − log|Ω|² − c₀)² with c₀ trained too — the same residual the Gauss–Newton solver uses, so the
"finite vs infinite width" comparison is one command: ``ntkflow cy --method network``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from ntkflow.cy.model import _Model, register_kind

__all__ = ["NetworkModel", "run_network"]


def _init(key, sizes):
    import jax

    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, k1 = jax.random.split(key)
        params.append((jax.random.normal(k1, (a, b)) / np.sqrt(a), np.zeros(b)))
    return params


def _phi(params, z):
    """φ at one point z (N,) complex."""
    import jax.numpy as jnp

    h = jnp.sum(jnp.real(z) ** 2 + jnp.imag(z) ** 2)
    f = jnp.outer(z, jnp.conj(z)) / h
    x = jnp.concatenate([jnp.real(f).ravel(), jnp.imag(f).ravel()])
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = params[-1]
    return (x @ w + b)[0]


def _ddbar(fn, z):
    """Wirtinger Hessian ∂_I∂̄_J fn at z (N,) by real autodiff."""
    import jax
    import jax.numpy as jnp

    n = z.shape[0]
    v = jnp.concatenate([jnp.real(z), jnp.imag(z)])
    hr = jax.hessian(lambda u: fn(u[:n] + 1j * u[n:]))(v)
    return 0.25 * (hr[:n, :n] + hr[n:, n:] + 1j * (hr[:n, n:] - hr[n:, :n]))


def _metric_point(params, z, P):
    import jax.numpy as jnp

    h = jnp.sum(jnp.real(z) ** 2 + jnp.imag(z) ** 2)
    zb = jnp.conj(z)
    pz = P @ zb
    gfs = (P @ jnp.conj(P).T / h - jnp.outer(pz, jnp.conj(pz)) / h ** 2) / jnp.pi
    H = _ddbar(lambda u: _phi(params, u), z)
    return gfs + P @ H @ jnp.conj(P).T / jnp.pi


@dataclass(frozen=True, eq=False)
class NetworkModel(_Model):
    manifold: object
    params: tuple = field(repr=False)
    log_kappa: float = 0.0
    info: dict = field(default_factory=dict, repr=False)
    kind = "network"

    def _metric_ps(self, ps):
        import jax
        import jax.numpy as jnp

        fn = jax.jit(jax.vmap(lambda z, P: _metric_point(self.params, z, P)))
        out = []
        for lo in range(0, len(ps), 4096):
            out.append(np.asarray(fn(jnp.asarray(ps.points[lo:lo + 4096]), jnp.asarray(ps.jacobian[lo:lo + 4096]))))
        return np.concatenate(out)

    def _potential_z(self, z):
        import jax
        import jax.numpy as jnp

        from ntkflow.cy.model import as_pointset

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
        return cls(manifold=manifold, params=params, log_kappa=float(meta.get("log_kappa", 0.0)),
                   info=meta.get("info", {}))


register_kind("network", NetworkModel)


def run_network(config, out_dir=None, *, quiet=False, resume=False):
    """Train the φ-network with Adam on minibatches; evaluate like the other methods."""
    import jax
    import jax.numpy as jnp
    import optax

    from ntkflow.cy.job import CYResult, _printer, evaluate_model, finish_outputs, make_manifold, sigma_of
    from ntkflow.manifolds import fs_det, sample, sigma

    log = _printer(quiet)
    t_start = time.perf_counter()
    m = make_manifold(config)
    ps = sample(m, config.n_train + config.n_test, seed=config.seed, progress=False)
    train, test = ps.split(config.n_train)
    n_c = m.n_coords
    sizes = [2 * n_c * n_c] + [config.width] * config.depth + [1]
    key = jax.random.PRNGKey(config.seed)
    params = _init(key, sizes)
    c0 = float(np.mean(np.log(fs_det(train) / train.omega_sq)))
    theta = {"params": params, "c0": jnp.asarray(c0)}
    opt = optax.adam(config.learning_rate)
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
        return sigma_of(np.exp(ld) / test.omega_sq, test.weights), ld

    n_params = sum(int(np.size(w)) + int(np.size(b)) for w, b in params)
    log(f"ntkflow cy: {m.name}, method network (finite width {config.width} x {config.depth}, tanh, {n_params} parameters), Adam lr {config.learning_rate}")
    rng = np.random.default_rng(config.seed)
    history = []
    bs = min(config.batch_size, config.n_train)
    log(f"  {'epoch':>5} {'loss':>11} {'σ held-out':>10} {'total s':>8}")
    for ep in range(config.epochs):
        perm = rng.permutation(config.n_train)
        losses = []
        for i in range(0, config.n_train - bs + 1, bs):
            idx = perm[i:i + bs]
            theta, opt_state, l = step(theta, opt_state, z_tr[idx], p_tr[idx], lo_tr[idx], w_tr[idx])
            losses.append(float(l))
        el = time.perf_counter() - t_start
        last = ep == config.epochs - 1 or (config.time_budget and el > config.time_budget)
        rec = {"iteration": ep + 1, "loss": float(np.mean(losses)), "elapsed": el}
        if ep % max(1, config.epochs // 20) == 0 or last:
            rec["sigma_test"], _ = sig_test(theta["params"])
            log(f"  {ep + 1:>5} {rec['loss']:>11.4e} {rec['sigma_test']:>10.3e} {el:>8.1f}")
        history.append(rec)
        if last:
            break
    train_seconds = time.perf_counter() - t_start
    model = NetworkModel(manifold=m, params=tuple((np.asarray(w), np.asarray(b)) for w, b in theta["params"]),
                         log_kappa=float(theta["c0"]), info={"width": config.width, "depth": config.depth})
    s_te, ld = sig_test(theta["params"])
    det_te = np.exp(ld)
    ev = evaluate_model(model, test, n_curvature=0, det_g=det_te, log=log)
    metrics = {"manifold": m.name, "method": "network", "sigma_test": s_te, "kappa": ev["kappa"],
               "vol_kahler_test": ev["vol_kahler"], "n_parameters": n_params, "epochs": len(history),
               "fs_baseline": {"sigma_test": sigma(test, fs_det(test))},
               "timings": {"train": train_seconds, "total": time.perf_counter() - t_start},
               "settings": config.to_json()}
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        finish_outputs(out_dir, model, metrics, history, det_te / test.omega_sq, log=log,
                       title=f"{m.name}, network {config.width}x{config.depth}")
    log(f"  done: held-out σ = {s_te:.4e} after {len(history)} epochs, {metrics['timings']['total']:.1f} s")
    return CYResult(metrics=metrics, model=model, history=tuple(history), out_dir=out_dir)
