"""``ntkflow ntk-study``: the metric-NTK's law of large numbers, its freezing, and its structure.

Five measurements, each a function returning a JSON-able dict (``run_study`` runs them all, writes
``study.json`` and PNG plots):

1. ``convergence``: ε_N = ‖Θ_N − Θ̄‖_F/‖Θ̄‖_F at initialisation against width N over many seeds
   (SharedMetric, dim 2), fitted slope of log mean ε_N vs log N (theory −1/2, CLT);
2. ``kernel_change``: δ_N = ‖Θ_N(θ_T) − Θ_N(θ_0)‖_F/‖Θ_N(θ_0)‖_F after full-batch GD to time T;
3. ``frozen_prediction``: the trained network's metric on held-out points against the frozen-NTK
   flow prediction f₀(S) − Θ̄(S,X)Θ̄⁻¹(I − e^{−Θ̄T/n})(f₀(X) − y) (same f₀), relative error vs N;
4. ``mixing``: ‖off-pattern part‖/‖Θ‖ of Θ_N and Θ̄ for (a) independent networks, (b) one shared
   network, (c) a Kähler potential;
5. ``invariant``: weights a_k of Θ̄ = Σ a_k u^k on the C*-invariant features, and a Monte-Carlo check
   of κ(u) over many random one-hidden-layer networks.

Slopes come with a bootstrap standard error over seeds (resampling seeds, refitting).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ntkflow.io import atomic_text, atomic_write

from .empirical import ntk_jax, flat_matrix, trainable_fn
from .infinite import infinite_metric_ntk, mixing_fraction
from .invariant import invariant_kappa, invariant_weights, closed_form_weights
from .linearised import frozen_ntk_prediction
from .metrics import IndependentMetric, KahlerPotentialMetric, ScalarModel, SharedMetric, invariant_features
from .networks import MLP, CosNet, GaussNet, with_width_mask

ARCHS = ("mlp-erf", "mlp-relu", "mlp-gelu", "cos-net", "gauss-net")


@dataclass(frozen=True)
class StudyConfig:
    """Sizes of ``ntkflow ntk-study`` (defaults run in about 2–3 minutes on 2 CPU cores)."""

    widths: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
    seeds: int = 24
    archs: tuple[str, ...] = ("mlp-erf", "mlp-relu", "cos-net", "gauss-net")
    n_points: int = 8
    n_heldout: int = 8
    d_in: int = 2
    dim: int = 2
    steps: int = 200
    lr_frac: float = 0.5  # η = lr_frac · n / λ_max(Θ̄)
    mixing_widths: tuple[int, ...] = (16, 64, 256, 1024)
    mixing_seeds: int = 8
    invariant_archs: tuple[str, ...] = ARCHS
    invariant_degree: int = 16
    mc_networks: int = 10_000
    mc_width: int = 16
    mc_points: int = 6
    seed: int = 0

    def __post_init__(self):
        for a in (*self.archs, *self.invariant_archs):
            if a not in ARCHS:
                raise ValueError(f"archs: unknown architecture {a!r}; choose from {ARCHS}.")
        if len(self.widths) < 2:
            raise ValueError(f"widths: need at least two widths to fit a slope, received {self.widths!r}.")


def make_net(arch: str, d_in: int, width: int, n_out: int = 1):
    """The study's architectures (NTK parameterisation, all parameters trained)."""
    if arch.startswith("mlp-"):
        return MLP(d_in, (width,), arch[4:], sigma_w=1.0, sigma_b=0.1, n_out=n_out)
    if arch == "cos-net":
        return CosNet(d_in, width, sigma_a=1.0, sigma_b=1.0, n_out=n_out, trainable=("a", "b", "c"))
    if arch == "gauss-net":
        return GaussNet(d_in, width, sigma_w0=1.0, sigma_b0=0.5, sigma_w1=1.0, sigma_b1=0.1, n_out=n_out)
    raise ValueError(f"arch: unknown architecture {arch!r}; choose from {ARCHS}.")


def fit_slope(widths, values) -> tuple[float, float]:
    """Least-squares slope and intercept of log(values) against log(widths)."""
    A = np.vstack([np.log(widths), np.ones(len(widths))]).T
    coef, *_ = np.linalg.lstsq(A, np.log(values), rcond=None)
    return float(coef[0]), float(coef[1])


def slope_with_error(widths, per_seed, key_seed: int = 0, n_boot: int = 400) -> dict:
    """Slope of log mean_s ε(N, s) vs log N with a bootstrap (over seeds) standard error.

    per_seed: (len(widths), seeds) array.
    """
    per_seed = np.asarray(per_seed)
    mean = per_seed.mean(1)
    slope, icpt = fit_slope(widths, mean)
    rng = np.random.default_rng(key_seed)
    S = per_seed.shape[1]
    boots = [fit_slope(widths, per_seed[:, rng.integers(0, S, S)].mean(1))[0] for _ in range(n_boot)]
    half = len(widths) // 2
    upper = fit_slope(np.asarray(widths)[half:], mean[half:])[0] if len(widths) - half >= 2 else float("nan")
    return {
        "widths": [int(w) for w in widths],
        "mean": mean.tolist(),
        "sem": (per_seed.std(1, ddof=1) / np.sqrt(S)).tolist() if S > 1 else [0.0] * len(widths),
        "slope": slope,
        "slope_err": float(np.std(boots)),
        "slope_upper_half": upper,  # fit on the larger half of the widths (asymptotic regime)
        "intercept": icpt,
    }


def target_metric(x) -> np.ndarray:
    """A smooth SPD target metric field on R², flat (n, 4)."""
    x = np.asarray(x)
    g11 = 1.0 + 0.3 * np.sin(np.pi * x[:, 0])
    g22 = 1.0 + 0.3 * np.cos(np.pi * x[:, 0] * x[:, 1])
    g12 = 0.2 * np.cos(np.pi * x[:, 1])
    return np.stack([g11, g12, g12, g22], axis=1)


def _points(cfg: StudyConfig):
    rng = np.random.default_rng(cfg.seed)
    X = rng.uniform(-1, 1, size=(cfg.n_points, cfg.d_in))
    S = rng.uniform(-1, 1, size=(cfg.n_heldout, cfg.d_in))
    return X, S


def study_convergence_and_training(cfg: StudyConfig) -> dict:
    """Studies 1–3 for every architecture in ``cfg.archs`` (module docstring)."""
    X, S = _points(cfg)
    Y = target_metric(X)
    n = len(X)
    p_out = cfg.dim * (cfg.dim + 1) // 2
    out = {}
    for ai, arch in enumerate(cfg.archs):
        model0 = SharedMetric(make_net(arch, cfg.d_in, cfg.widths[0], p_out), cfg.dim)
        XS = np.concatenate([X, S])
        Tbar_all = flat_matrix(infinite_metric_ntk(model0, XS))
        p = model0.flat_size
        Tbar = Tbar_all[: n * p, : n * p]
        Tbar_sx = Tbar_all[n * p :, : n * p]
        lam_max = float(np.linalg.eigvalsh(Tbar)[-1])
        lr = cfg.lr_frac * n / lam_max
        T_final = lr * cfg.steps
        model = SharedMetric(make_net(arch, cfg.d_in, max(cfg.widths), p_out), cfg.dim)
        keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), ai), len(cfg.widths) * cfg.seeds)
        eps, delta, pred = _all_widths(model, cfg, keys, X, S, Y, lr, Tbar, Tbar_sx, T_final)
        out[arch] = {
            "convergence": slope_with_error(cfg.widths, np.array(eps), cfg.seed),
            "kernel_change": slope_with_error(cfg.widths, np.array(delta), cfg.seed + 1),
            "frozen_prediction": slope_with_error(cfg.widths, np.array(pred), cfg.seed + 2),
            "lr": lr,
            "t_final": T_final,
        }
    return out


def _all_widths(model, cfg, keys, X, S, Y, lr, Tbar, Tbar_sx, T_final):
    """Per-(width, seed) init, GD training and kernels; one compiled function for all widths (masks)."""
    n = len(X)
    Xj, Sj, Yj = jnp.asarray(X), jnp.asarray(S), jnp.asarray(Y)
    Nmax = max(cfg.widths)

    def per_seed(key, n_eff):
        params = with_width_mask(model.init(key), n_eff, Nmax)
        f, theta0 = trainable_fn(model, params)
        _, fp = model.split(params)
        fb = lambda t, xs: jax.vmap(f, in_axes=(None, 0))(t, xs)  # noqa: E731

        def loss(t):
            r = fb(t, Xj) - Yj
            return 0.5 * jnp.sum(r * r) / n

        def body(t, _):  # plain GD, θ ← θ − η∇L (= optax.sgd(η))
            g = jax.grad(loss)(t)
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, t, g), None

        thetaT, _ = jax.lax.scan(body, theta0, None, length=cfg.steps)
        K0 = ntk_jax(model, params, Xj)
        KT = ntk_jax(model, {**fp, **thetaT}, Xj)
        return K0, KT, fb(theta0, Xj), fb(theta0, Sj), fb(thetaT, Sj)

    widths = jnp.repeat(jnp.asarray(cfg.widths), cfg.seeds)
    batched = jax.jit(lambda kw: jax.lax.map(lambda a: jax.vmap(per_seed)(*a), kw))
    kr = keys.reshape(len(cfg.widths), cfg.seeds, *keys.shape[1:])
    K0, KT, f0X, f0S, fTS = (np.asarray(a) for a in batched((kr, widths.reshape(len(cfg.widths), cfg.seeds))))
    eps = np.zeros((len(cfg.widths), cfg.seeds))
    delta, pred = np.zeros_like(eps), np.zeros_like(eps)
    nT = np.linalg.norm(Tbar)
    for w in range(len(cfg.widths)):
        for s in range(cfg.seeds):
            k0 = flat_matrix(K0[w, s])
            eps[w, s] = np.linalg.norm(k0 - Tbar) / nT
            delta[w, s] = np.linalg.norm(flat_matrix(KT[w, s]) - k0) / np.linalg.norm(k0)
            _, fS = frozen_ntk_prediction(Tbar, Tbar_sx, f0X[w, s], f0S[w, s], Y, T_final)
            pred[w, s] = np.linalg.norm(fTS[w, s] - fS) / np.linalg.norm(fS)
    return eps, delta, pred


def study_mixing(cfg: StudyConfig) -> dict:
    """Study 4: mixing fraction of Θ_N and Θ̄ for independent, shared and Kähler-potential metrics."""
    X, _ = _points(cfg)
    X = X[:4]
    rng = np.random.default_rng(cfg.seed + 7)
    Z = rng.normal(size=(4, 2)) + 1j * rng.normal(size=(4, 2))
    out = {}
    builders = {
        "independent": lambda w: (IndependentMetric(make_net("mlp-erf", cfg.d_in, w, 1), 2), X),
        "shared": lambda w: (SharedMetric(make_net("mlp-erf", cfg.d_in, w, 3), 2), X),
        "kahler_potential": lambda w: (KahlerPotentialMetric(make_net("mlp-erf", 4, w, 1), 2), Z),
    }
    Nmax = max(cfg.mixing_widths)
    W = len(cfg.mixing_widths)
    for bi, (name, build) in enumerate(builders.items()):
        model, pts = build(Nmax)
        mix_bar = mixing_fraction(model, infinite_metric_ntk(model, pts))

        def one(key, n_eff, model=model, pts=pts):
            params = model.init(key)
            mask = (jnp.arange(Nmax) < n_eff).astype(jnp.float64)
            if isinstance(model, IndependentMetric):
                mask = jnp.broadcast_to(mask, (model.n_components, Nmax))
            return ntk_jax(model, {**params, "mask": mask}, pts)

        keys = jax.random.split(jax.random.PRNGKey(cfg.seed + 100 + bi), W * cfg.mixing_seeds)
        keys = keys.reshape(W, cfg.mixing_seeds, *keys.shape[1:])
        nw = jnp.repeat(jnp.asarray(cfg.mixing_widths), cfg.mixing_seeds).reshape(W, cfg.mixing_seeds)
        K = np.asarray(jax.jit(lambda a: jax.lax.map(lambda b: jax.vmap(one)(*b), a))((keys, nw)))
        finite = np.array([[mixing_fraction(model, K[w, s]) for s in range(cfg.mixing_seeds)] for w in range(W)])
        entry = {"infinite_width_mixing": mix_bar, "widths": list(map(int, cfg.mixing_widths)),
                 "mean": finite.mean(1).tolist(), "max": finite.max(1).tolist()}
        if finite.min() > 0 and mix_bar < 1e-12:
            entry["slope"] = slope_with_error(cfg.mixing_widths, finite, cfg.seed)["slope"]
        out[name] = entry
    return out


def study_invariant(cfg: StudyConfig) -> dict:
    """Study 5: a_k on the invariant features for each architecture, and a Monte-Carlo check of κ(u).

    MC: M random one-hidden-layer networks of width ``mc_width`` on F(z), F(z) ∈ R^{2N²} (N = 3); the
    mean scalar empirical NTK over networks equals κ(u) exactly for one hidden layer, so
    z = (mean − κ)/SEM should look standard normal.
    """
    rng = np.random.default_rng(cfg.seed + 11)
    N = 3
    Z = rng.normal(size=(cfg.mc_points, N)) + 1j * rng.normal(size=(cfg.mc_points, N))
    F = np.asarray(jax.vmap(invariant_features)(jnp.asarray(Z)))
    U = F @ F.T / F.shape[1]
    iu = np.triu_indices(cfg.mc_points)
    out = {}
    for ai, arch in enumerate(cfg.invariant_archs):
        net = make_net(arch, F.shape[1], cfg.mc_width)
        w = invariant_weights(net, cfg.invariant_degree)
        cf = closed_form_weights(net, cfg.invariant_degree)
        model = ScalarModel(net)
        chunk = 2000
        sums, sq, m = 0.0, 0.0, 0
        base = jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 200), ai)
        fn = jax.jit(jax.vmap(lambda k: ntk_jax(model, model.init(k), jnp.asarray(F))[:, :, 0, 0]))
        while m < cfg.mc_networks:
            c = min(chunk, cfg.mc_networks - m)
            K = np.asarray(fn(jax.random.split(jax.random.fold_in(base, m), c)))
            sums = sums + K.sum(0)
            sq = sq + (K * K).sum(0)
            m += c
        mean = sums / m
        sem = np.sqrt(np.maximum(sq / m - mean**2, 0.0) / (m - 1))
        kappa = np.real(invariant_kappa(net, U))
        series = w(U)
        zs = ((mean - kappa) / np.maximum(sem, 1e-300))[iu]
        out[arch] = {
            "weights": w.weights.tolist(),
            "weights_error": float(w.error.max()),
            "closed_form_max_diff": None if cf is None else float(np.abs(cf - w.weights).max()),
            "kappa_one": w.kappa_one,
            "tail": w.tail,
            "mc_networks": m,
            "mc_width": cfg.mc_width,
            "u": U[iu].tolist(),
            "mc_mean": mean[iu].tolist(),
            "mc_sem": sem[iu].tolist(),
            "kappa": kappa[iu].tolist(),
            "series": series[iu].tolist(),
            "max_abs_z": float(np.abs(zs).max()),
            "rms_z": float(np.sqrt(np.mean(zs**2))),
        }
    return out


def run_study(cfg: StudyConfig, out_dir, *, plots: bool = True, log=print) -> dict:
    """Run studies 1–5, write ``study.json`` (and PNGs) into ``out_dir``; return the results."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = {"config": dataclasses.asdict(cfg), "jax_version": jax.__version__}
    log("ntk-study: 1-3 convergence / kernel change / frozen prediction ...")
    res["training"] = study_convergence_and_training(cfg)
    log(f"  done ({time.perf_counter() - t0:.1f} s); 4 mixing ...")
    res["mixing"] = study_mixing(cfg)
    log(f"  done ({time.perf_counter() - t0:.1f} s); 5 invariant weights + MC ...")
    res["invariant"] = study_invariant(cfg)
    res["wall_s"] = time.perf_counter() - t0
    res["summary"] = summarise(res)
    atomic_text(out_dir / "study.json", json.dumps(res, indent=1))
    if plots:
        res["plots"] = make_plots(res, out_dir)
        atomic_text(out_dir / "study.json", json.dumps(res, indent=1))
    log(f"ntk-study: wrote {out_dir / 'study.json'} ({res['wall_s']:.1f} s)")
    for line in res["summary"]:
        log("  " + line)
    return res


def summarise(res) -> list[str]:
    lines = []
    for arch, r in res["training"].items():
        c, k, f = r["convergence"], r["kernel_change"], r["frozen_prediction"]
        lines.append(
            f"{arch}: |Θ_N−Θ̄|/|Θ̄| slope {c['slope']:+.3f}±{c['slope_err']:.3f}; "
            f"kernel change slope {k['slope']:+.3f}±{k['slope_err']:.3f}; "
            f"frozen-prediction error slope {f['slope']:+.3f}±{f['slope_err']:.3f}"
        )
    for name, r in res["mixing"].items():
        lines.append(
            f"mixing {name}: Θ̄ {r['infinite_width_mixing']:.3g}; Θ_N mean at N={r['widths'][0]}: "
            f"{r['mean'][0]:.3g}, at N={r['widths'][-1]}: {r['mean'][-1]:.3g}"
        )
    for arch, r in res["invariant"].items():
        lines.append(
            f"invariant {arch}: a_0..a_4 = {np.round(r['weights'][:5], 4).tolist()}, tail {r['tail']:.2e}; "
            f"MC ({r['mc_networks']} nets) max|z| {r['max_abs_z']:.2f}, rms z {r['rms_z']:.2f}"
        )
    return lines


def make_plots(res, out_dir, prefix: str = "ntk_") -> list[str]:
    """PNG figures of the study; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = []
    titles = {
        "convergence": (r"law of large numbers: $\|\Theta_N - \bar\Theta\| / \|\bar\Theta\|$ at init", "relative distance to the limit"),
        "kernel_change": (r"kernel change during GD: $\|\Theta_N(T) - \Theta_N(0)\| / \|\Theta_N(0)\|$", "relative change"),
        "frozen_prediction": ("trained net vs frozen-NTK flow, held-out points", "relative error"),
    }
    for name, (title, ylabel) in titles.items():
        fig, ax = plt.subplots(figsize=(5.2, 4.0))
        for arch, r in res["training"].items():
            e = r[name]
            W = np.array(e["widths"])
            line = ax.errorbar(W, e["mean"], yerr=e["sem"], fmt="o", ms=4, capsize=2,
                               label=f"{arch}: slope {e['slope']:+.2f}±{e['slope_err']:.2f}")
            ax.plot(W, np.exp(e["intercept"]) * W ** e["slope"], "-", color=line[0].get_color(), lw=1)
        W = np.array(res["config"]["widths"], dtype=float)
        ax.plot(W, 0.5 * W[0] ** 0.5 * W**-0.5 * ax.get_ylim()[1] / 2, "k:", lw=1, label=r"$\propto N^{-1/2}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("width N")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out_dir / f"{prefix}{name}.png"
        atomic_write(p, lambda f: fig.savefig(f, format="png", dpi=130))
        plt.close(fig)
        paths.append(str(p))

    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    floor = 1e-3
    for name, r in res["mixing"].items():
        mean = np.array(r["mean"])
        exact0 = bool(np.all(mean == 0))
        lab = f"{name} (finite N)" + (": exactly 0, drawn at the floor" if exact0 else "")
        line = ax.plot(r["widths"], np.maximum(mean, floor), "o-", label=lab)
        if r["infinite_width_mixing"] > 0:
            ax.axhline(r["infinite_width_mixing"], color=line[0].get_color(), ls="--", lw=1,
                       label=f"{name}: infinite width {r['infinite_width_mixing']:.2g}")
        else:
            ax.plot([], [], ls="--", color=line[0].get_color(), label=f"{name}: infinite width 0")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor / 1.5, 2)
    ax.set_xlabel("width N")
    ax.set_ylabel(r"mixing fraction $\|\Theta_{\{ij\}\neq\{kl\}}\| / \|\Theta\|$")
    ax.set_title("component mixing of the metric-NTK", fontsize=9)
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 0.1))
    fig.tight_layout()
    p = out_dir / f"{prefix}mixing.png"
    atomic_write(p, lambda f: fig.savefig(f, format="png", dpi=130))
    plt.close(fig)
    paths.append(str(p))

    fig, axs = plt.subplots(1, 2, figsize=(10, 4.0))
    for arch, r in res["invariant"].items():
        a = np.array(r["weights"])
        k = np.arange(len(a))
        axs[0].semilogy(k[a > 1e-18], a[a > 1e-18], "o-", ms=3, label=arch)
        u = np.array(r["u"])
        o = np.argsort(u)
        line = axs[1].plot(u[o], np.array(r["kappa"])[o], "-", lw=1)
        axs[1].errorbar(u, r["mc_mean"], yerr=3 * np.array(r["mc_sem"]), fmt="o", ms=3,
                        color=line[0].get_color(), label=f"{arch}: max|z| {r['max_abs_z']:.1f}")
    axs[0].set_xlabel("k")
    axs[0].set_ylabel("a_k")
    axs[0].set_title(r"$\bar\Theta = \sum_k a_k u^k$ on C*-invariant features", fontsize=9)
    axs[0].legend(fontsize=7)
    axs[1].set_xlabel("u = |⟨z,w⟩|²/(|z|²|w|²)")
    axs[1].set_ylabel(r"$\Theta(z, w)$")
    axs[1].set_title(r"$\kappa(u)$ (lines) vs Monte-Carlo mean $\pm$ 3 SEM over random networks", fontsize=9)
    axs[1].legend(fontsize=7)
    fig.tight_layout()
    p = out_dir / f"{prefix}invariant.png"
    atomic_write(p, lambda f: fig.savefig(f, format="png", dpi=130))
    plt.close(fig)
    paths.append(str(p))
    return paths
