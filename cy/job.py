"""The main job: a Calabi–Yau metric from the frozen (infinite-width) Bergman kernel, by Gauss–Newton.

``run_cy(CYConfig(...), out_dir)`` samples training and held-out points, builds the function space
(the Γ-invariant real (k,k) functions for the manifold's symmetry group Γ, or all of them when Γ is
trivial), precomputes the pulled-back Hessians of the basis, whitens the basis on the training points,
runs Levenberg–Marquardt on r = log(det g_φ/|Ω|²) − c₀, checkpoints after every iteration, and writes
``metrics.json``, ``history.json``, plots and the model (``ntkflow.load(out_dir)``).

Other methods with the same data and evaluation: ``donaldson`` (balanced metrics, T-operator) and
``network`` (finite-width φ-network trained with optax), see donaldson.py and network.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from ntkflow._checks import nonneg_float, positive_float, positive_int
from ntkflow.cy import algebra, basis as basis_mod
from ntkflow.cy import gauss_newton as gn
from ntkflow.manifolds import sigma_weighted

__all__ = ["CYConfig", "CYResult", "run_cy", "make_manifold", "evaluate_model", "load_hypersurface_file", "default_k"]

METHODS = ("bergman", "donaldson", "network")
#: "bergman": the primal u^k path (symmetric basis or matrix-free); the others: the dual form (flows/dual.py)
KERNELS = ("bergman", "gaussian", "mixture", "power")
_DUAL_DEFAULTS = {"kernel": "bergman", "s2": 0.2, "mixture_coeffs": [], "centers": 1000, "centers_method": "uniform",
                  "ridge": 0.0, "link": "auto"}
LINKS = ("auto", "identity", "log")


@dataclass(frozen=True)
class CYConfig:
    """Settings of ``ntkflow cy`` (defaults: the main job, ≤ 5 min on 2 cores).

    manifold: preset name; psi: family parameter; hypersurface: path to a .json/.npz/.txt file with
    monomial exponents and coefficients (overrides ``manifold``); method: bergman | donaldson | network;
    k: kernel degree (u^k, Donaldson degree); symmetry: "auto" (detect and use Γ) or "none";
    n_train/n_test: points; seed: sampling seed (test points are the tail of the same sample);
    max_iter, lam0, gtol: LM; whiten_rtol: basis orthogonalisation cut; n_curvature: held-out points
    used for Ricci measure and Euler characteristic (0: skip).
    """

    manifold: str = "fermat-quintic"
    psi: complex | None = None
    hypersurface: str | None = None
    method: str = "bergman"
    k: int = 12
    symmetry: str = "auto"
    n_train: int = 10_000
    n_test: int = 10_000
    seed: int = 0
    max_iter: int = 20
    lam0: float = 1e-3
    gtol: float = 1e-6
    whiten_rtol: float = 1e-10
    n_curvature: int = 2_000
    # donaldson
    donaldson_iter: int = 12
    # network
    width: int = 64
    depth: int = 3
    epochs: int = 200
    batch_size: int = 5000
    learning_rate: float = 1e-3
    time_budget: float = 0.0  # seconds for the network (0: epochs decide)
    # dual (kernel) form, flows/dual.py: kernel "bergman" is the primal u^k path above (default)
    kernel: str = "bergman"
    s2: float = 0.2
    mixture_coeffs: tuple = ()
    centers: int = 1000
    centers_method: str = "uniform"
    ridge: float = 0.0
    # how the u^k kernel function F = s†Hs/|z|^{2k} becomes the potential (flows/matrixfree.py):
    # "identity" φ = F; "log" K = (1/(kπ)) log s†Hs (Bergman/Donaldson form); "auto": log on a
    # manifold without symmetry and on the matrix-free path, identity on the symmetric dense path
    link: str = "auto"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, received {self.method!r}.")
        if self.symmetry not in ("auto", "none"):
            raise ValueError(f"symmetry: expected 'auto' or 'none', received {self.symmetry!r}.")
        positive_int("k", self.k)
        positive_int("n_train", self.n_train)
        positive_int("n_test", self.n_test)
        positive_int("max_iter", self.max_iter)
        nonneg_float("lam0", self.lam0)
        nonneg_float("gtol", self.gtol)
        positive_float("whiten_rtol", self.whiten_rtol)
        if self.n_curvature < 0:
            raise ValueError(f"n_curvature: must be >= 0, received {self.n_curvature}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed: expected an integer, received {self.seed!r}.")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel: expected one of {KERNELS}, received {self.kernel!r}.")
        positive_float("s2", self.s2)
        object.__setattr__(self, "mixture_coeffs", tuple(float(nonneg_float(f"mixture_coeffs[{i}]", a))
                                                         for i, a in enumerate(self.mixture_coeffs)))
        positive_int("centers", self.centers)
        if self.centers_method not in ("uniform", "rpcholesky"):
            raise ValueError(f"centers_method: expected 'uniform' or 'rpcholesky', received {self.centers_method!r}.")
        nonneg_float("ridge", self.ridge)
        if self.link not in LINKS:
            raise ValueError(f"link: expected one of {LINKS}, received {self.link!r}.")
        if self.link == "log" and (self.method != "bergman" or self.kernel != "bergman"):
            raise ValueError(f"link: 'log' needs method 'bergman' with kernel 'bergman' (the primal u^k path), "
                             f"received method {self.method!r}, kernel {self.kernel!r}.")
        if self.kernel != "bergman" and self.method != "bergman":
            raise ValueError(f"kernel: {self.kernel!r} needs method 'bergman' (the Gauss–Newton job), received method {self.method!r}.")

    def to_json(self) -> dict:
        d = asdict(self)
        d["mixture_coeffs"] = list(self.mixture_coeffs)
        d["psi"] = None if self.psi is None else [complex(self.psi).real, complex(self.psi).imag]
        return d

    def fingerprint(self) -> str:
        """Hash of everything that determines the optimisation trajectory (not where it stops:
        max_iter and time_budget may change on --resume; not n_curvature)."""
        d = self.to_json()
        for key in ("n_curvature", "max_iter", "time_budget"):
            d.pop(key)
        for key, default in _DUAL_DEFAULTS.items():  # fields added with the dual form: hashed only when set,
            if d.get(key) == default:               # so fingerprints (and checkpoints) of older runs still match
                d.pop(key)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CYResult:
    metrics: dict
    model: object
    history: tuple
    out_dir: str | None


def load_hypersurface_file(path: str):
    """Hypersurface from a file of monomials and coefficients.

    Formats: ``.json`` {"exponents": [[...], ...], "coefficients": [re or [re, im], ...], "name": ...};
    ``.npz`` with ``exponents`` and ``coefficients``; text: one monomial per line,
    ``e_0 ... e_{N-1} re [im]``.
    """
    from ntkflow.manifolds import Hypersurface

    if not os.path.exists(path):
        raise FileNotFoundError(f"hypersurface: no such file {path!r}; write monomials and coefficients (see --help).")
    name = os.path.splitext(os.path.basename(path))[0]
    if path.endswith(".json"):
        with open(path) as f:
            d = json.load(f)
        exps = np.asarray(d["exponents"], dtype=np.int64)
        co = [complex(c[0], c[1]) if isinstance(c, (list, tuple)) else complex(c) for c in d["coefficients"]]
        name = d.get("name", name)
    elif path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            exps = np.asarray(f["exponents"], dtype=np.int64)
            co = np.asarray(f["coefficients"], dtype=np.complex128)
            if "name" in f.files:
                name = str(f["name"])
    else:
        rows = [ln.split() for ln in open(path) if ln.strip() and not ln.lstrip().startswith("#")]
        n = None
        exps, co = [], []
        for r in rows:
            vals = [float(x) for x in r]
            if n is None:
                # N exponents then 1 or 2 numbers; the exponents sum to N
                for cand in (len(vals) - 2, len(vals) - 1):
                    if cand > 0 and sum(vals[:cand]) == cand:
                        n = cand
                        break
                if n is None:
                    raise ValueError(f"hypersurface: cannot parse line {' '.join(r)!r} of {path}: expected N exponents summing to N, then re [im].")
            exps.append([int(v) for v in vals[:n]])
            co.append(complex(vals[n], vals[n + 1] if len(vals) > n + 1 else 0.0))
        exps = np.asarray(exps, dtype=np.int64)
    return Hypersurface(exps, np.asarray(co, dtype=np.complex128), name=name)


def make_manifold(config: CYConfig):
    from ntkflow.manifolds import preset

    if config.hypersurface:
        return load_hypersurface_file(config.hypersurface)
    return preset(config.manifold, psi=config.psi) if config.psi is not None else preset(config.manifold)


def random_quintic(seed: int = 0):
    """A quintic with random complex Gaussian coefficients on all 126 monomials (no symmetry)."""
    from ntkflow.manifolds import Hypersurface

    rng = np.random.default_rng(seed)
    exps = basis_mod.monomials(5, 5)
    co = rng.normal(size=len(exps)) + 1j * rng.normal(size=len(exps))
    return Hypersurface(exps, co, name=f"random-quintic-{seed}")


# ----------------------------------------------------------------------------------------------
# evaluation shared by all methods
# ----------------------------------------------------------------------------------------------


#: σ from η and weights: the one implementation is ntkflow.manifolds.sigma_weighted (this name is kept
#: for the callers in cy/ until they call it directly)
sigma_of = sigma_weighted


def evaluate_model(model, ps, *, n_curvature: int = 10_000, det_g=None, log=None) -> dict:
    """σ, κ, Vol_K, Ricci measure and Euler characteristic of ``model`` on the point set ``ps``.

    Curvature uses the first ``n_curvature`` points (autodiff of the model's metric function)."""
    from ntkflow.manifolds import curvature, euler_characteristic, ricci_measure
    from ntkflow.manifolds import kappa, sigma, volume_kahler

    t0 = time.perf_counter()
    if det_g is None:
        det_g = np.real(np.linalg.det(model.metric(ps)))
    out = {"n_points": len(ps), "sigma": sigma(ps, det_g), "kappa": kappa(ps, det_g),
           "vol_kahler": volume_kahler(ps, det_g), "intersection_number": ps.manifold.intersection_number}
    if n_curvature:
        sub = ps[: min(n_curvature, len(ps))]
        t1 = time.perf_counter()
        if hasattr(model, "gfun"):
            from ntkflow.cy.curvature import holomorphic_curvature

            curv = holomorphic_curvature(sub.manifold, model.gfun(), sub, batch=64)
        else:
            curv = curvature(sub, metric=model.metric_jax(), batch=256)
        chi, chi_err = euler_characteristic(sub, curv=curv)
        out.update({"n_curvature": len(sub), "ricci_measure": ricci_measure(sub, curv=curv),
                    "euler": chi, "euler_stderr": chi_err,
                    "curvature_seconds": time.perf_counter() - t1})
        # metric consistency between the closed form and the autodiff path
        rel = np.abs(curv.det_g - det_g[: len(sub)]) / np.abs(det_g[: len(sub)])
        out["det_consistency"] = float(rel.max())
        if log:
            log(f"  curvature on {len(sub)} held-out points: Ricci measure {out['ricci_measure']:.4g}, "
                f"Euler characteristic {chi:.2f} ± {chi_err:.2f} ({out['curvature_seconds']:.1f} s)")
    out["seconds"] = time.perf_counter() - t0
    return out


def fs_baseline(ps, *, n_curvature: int = 0) -> dict:
    from ntkflow.manifolds import fs_det, kappa, sigma

    d = fs_det(ps)
    out = {"sigma": sigma(ps, d), "kappa": kappa(ps, d)}
    if n_curvature:
        from ntkflow.manifolds import curvature, euler_characteristic, ricci_measure

        sub = ps[:n_curvature]
        curv = curvature(sub, batch=256)
        out["ricci_measure"] = ricci_measure(sub, curv=curv)
        out["euler"], out["euler_stderr"] = euler_characteristic(sub, curv=curv)
    return out


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------


def _atomic_savez(path, **arrays):
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def save_checkpoint(path, config: CYConfig, state: gn.LMState, extra: dict | None = None):
    arrays = state.to_arrays()
    arrays["fingerprint"] = np.array(config.fingerprint())
    arrays["history_json"] = np.array(json.dumps(list(state.history)))
    for k, v in (extra or {}).items():
        arrays[k] = np.asarray(v)
    _atomic_savez(path, **arrays)


def load_checkpoint(path, config: CYConfig):
    with np.load(path, allow_pickle=False) as f:
        arrs = {k: f[k] for k in f.files}
    fp = str(arrs["fingerprint"])
    if fp != config.fingerprint():
        raise ValueError(
            f"resume: the checkpoint {path!r} was written with different settings (fingerprint {fp} != "
            f"{config.fingerprint()}); rerun with the same options, or without --resume / with a new -o.")
    hist = tuple(json.loads(str(arrs["history_json"])))
    return gn.LMState.from_arrays(arrs, history=hist), arrs


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------


def write_plots(out_dir, history, eta_test, *, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [h["iteration"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    if history:
        ax[0].semilogy(it, [h["loss"] for h in history], "o-", label="loss (train)")
        if "sigma_train" in history[0]:
            ax[0].semilogy(it, [h["sigma_train"] for h in history], "s--", label="σ train")
        if "sigma_test" in history[0]:
            ax[0].semilogy(it, [h["sigma_test"] for h in history], "^-", label="σ held-out")
    ax[0].set_xlabel("iteration")
    ax[0].legend()
    ax[0].set_title(title)
    eta = np.asarray(eta_test)
    ax[1].hist(eta / np.mean(eta), bins=100, log=True)
    ax[1].set_xlabel("η / mean(η) (held-out)")
    fig.tight_layout()
    path = os.path.join(out_dir, "convergence.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# the Bergman / Gauss–Newton job
# ----------------------------------------------------------------------------------------------


def _printer(quiet):
    def log(msg):
        if not quiet:
            print(msg, flush=True)
            sys.stdout.flush()

    return log


def transform_basis(hess, tmat):
    """(n, p, d²) Hessians in the basis f' = f T: (n, q, d²) (BLAS matmul, chunked)."""
    out = np.empty((hess.shape[0], tmat.shape[1], hess.shape[2]))
    for lo in range(0, hess.shape[0], 8192):
        out[lo:lo + 8192] = np.swapaxes(np.swapaxes(hess[lo:lo + 8192], 1, 2) @ tmat, 1, 2)
    return out


def default_k(manifold, config: CYConfig) -> tuple[int, str]:
    """The CLI's degree when ``-k`` is not given: ``config.k`` (12), except for the Gauss–Newton job on a
    manifold without usable symmetry, where every Hermitian H over the N_k monomials is a parameter:
    there the largest k ≤ min(config.k, 6) with N_k² ≤ n_train/2 (measured on the random quintic: more
    parameters than that fit the Monte-Carlo noise of the points, and k = 6 is the largest degree
    measured on 2 cores, docs/cy.md). Returns (k, reason or "")."""
    from math import comb

    if config.method != "bergman" or config.kernel != "bergman":
        return config.k, ""
    if not symmetry_of(manifold, config).trivial:
        return config.k, ""
    n = manifold.n_coords
    k = 1
    while k < min(config.k, 6) and comb(k + 1 + n - 1, n - 1) ** 2 <= config.n_train / 2:
        k += 1
    return k, (f"no symmetry: N_k² = {comb(k + n - 1, n - 1) ** 2} real parameters for {config.n_train} "
               f"training points; the largest k ≤ 6 with N_k² ≤ n_train/2")


def symmetry_of(manifold, config: CYConfig):
    """The group the job uses: detected (``symmetry="auto"``) or trivial (``"none"``)."""
    if config.symmetry == "auto":
        return basis_mod.detect_symmetry(manifold.exponents, manifold.coefficients)
    return basis_mod.no_symmetry(manifold.n_coords)


def choose_basis(manifold, config: CYConfig):
    """(basis, symmetry): the invariant basis when Γ is non-trivial, else all (k,k)."""
    sym = symmetry_of(manifold, config)
    b = basis_mod.invariant_basis(manifold.n_coords, config.k, sym)
    return b, sym


def run_cy(config: CYConfig = CYConfig(), out_dir: str | None = None, *, resume: bool = False,
           quiet: bool = False, on_iteration=None) -> CYResult:
    """Run the main job (see the module docstring); returns metrics, model and history.

    ``on_iteration(state)`` is called after each LM iteration and its checkpoint (tests use it to
    simulate an interruption by raising KeyboardInterrupt)."""
    if config.method == "donaldson":
        from ntkflow.cy.donaldson import run_donaldson

        return run_donaldson(config, out_dir, quiet=quiet)
    if config.method == "network":
        from ntkflow.cy.network import run_network

        return run_network(config, out_dir, quiet=quiet, resume=resume)
    from ntkflow.manifolds import sample
    from ntkflow.cy.model import BergmanModel

    log = _printer(quiet)
    timings = {}
    t_start = time.perf_counter()
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    ckpt = None if out_dir is None else os.path.join(out_dir, "checkpoint.npz")
    m = make_manifold(config)
    t = time.perf_counter()
    ps = sample(m, config.n_train + config.n_test, seed=config.seed, progress=False)
    train, test = ps.split(config.n_train)
    timings["sample"] = time.perf_counter() - t
    if config.kernel != "bergman":
        from ntkflow.cy.dual import run_dual

        log(f"ntkflow cy: {m.name} (N={m.n_coords}, dim={m.dim}), kernel {config.kernel}, dual (kernel) form")
        log(f"  points: {config.n_train} train + {config.n_test} held-out (seed {config.seed}), sampled in {timings['sample']:.1f} s")
        return run_dual(config, m, train, test, out_dir, log=log, t_start=t_start, resume=resume)
    b, sym = choose_basis(m, config)
    log(f"ntkflow cy: {m.name} (N={m.n_coords}, dim={m.dim}), method bergman (frozen u^k kernel), k={config.k}")
    log(f"  symmetry: {sym.describe()}")
    log(f"  basis: {b.description}")
    log(f"  points: {config.n_train} train + {config.n_test} held-out (seed {config.seed}), sampled in {timings['sample']:.1f} s")
    mem = (config.n_train + config.n_test) * b.n_functions * m.dim ** 2 * 8 / 1e9
    use_log = config.link == "log" or (config.link == "auto" and sym.trivial)
    if mem > 8.0 or use_log:
        why = (f"dense Hessian storage would need {mem:.1f} GB" if mem > 8.0 else
               "no symmetry, --link auto: the log link" if config.link == "auto" else
               "--link log (the symmetric basis is linear in φ; the log link runs on the full Hermitian H)")
        log(f"  {why}: using the matrix-free primal Gauss–Newton "
            f"(primal form: u^{config.k} has a finite feature space, cost independent of the number of centres)")
        from ntkflow.cy.matrixfree import run_matrix_free

        return run_matrix_free(config, m, train, test, out_dir, log=log, t_start=t_start, resume=resume)
    log(f"  solver: primal form (u^{config.k} has a finite feature space), dense Levenberg–Marquardt on "
        f"{b.n_functions} basis functions ({mem:.2f} GB of Hessians)")
    t = time.perf_counter()
    h_train = algebra.pair_hessians(b, train.points, train.jacobian)
    h_test = algebra.pair_hessians(b, test.points, test.jacobian)
    timings["hessians"] = time.perf_counter() - t
    log(f"  pulled-back Hessians of the basis: {timings['hessians']:.1f} s")
    g0_tr = algebra.pack(algebra.fs_pulled(train.points, train.jacobian))
    g0_te = algebra.pack(algebra.fs_pulled(test.points, test.jacobian))
    prob_raw = gn.MAProblem(g0=g0_tr, hess=h_train, log_omega=np.log(train.omega_sq), weights=train.weights, dim=m.dim)
    t = time.perf_counter()
    tmat = gn.whitening(prob_raw, rtol=config.whiten_rtol)
    h_train = transform_basis(h_train, tmat)
    h_test = transform_basis(h_test, tmat)
    timings["whitening"] = time.perf_counter() - t
    log(f"  orthogonalised basis: {tmat.shape[1]} of {tmat.shape[0]} directions kept (rtol {config.whiten_rtol:g}), {timings['whitening']:.1f} s")
    prob = gn.MAProblem(g0=g0_tr, hess=h_train, log_omega=np.log(train.omega_sq), weights=train.weights, dim=m.dim)
    prob_te = gn.MAProblem(g0=g0_te, hess=h_test, log_omega=np.log(test.omega_sq), weights=test.weights, dim=m.dim)
    del prob_raw

    def sig(pr, theta):
        ld, _, ok = pr.logdet(theta)
        if not ok:
            return float("nan")
        return sigma_of(np.exp(ld - pr.log_omega), pr.weights)

    lm_cfg = gn.LMConfig(max_iter=config.max_iter, lam0=config.lam0, gtol=config.gtol)
    state = None
    if resume and ckpt and os.path.exists(ckpt):
        state, _ = load_checkpoint(ckpt, config)
        log(f"  resumed from {ckpt} at iteration {state.iteration} (loss {state.loss:.4e}){' — already finished' if state.done else ''}")
    if state is None:
        state = gn.initial_state(prob, lm_cfg)
    theta0 = np.zeros(prob.n_params)
    fs_sig_tr, fs_sig_te = sig(prob, theta0), sig(prob_te, theta0)
    log(f"  Fubini–Study: σ train {fs_sig_tr:.4f}, held-out {fs_sig_te:.4f}")
    log(f"  {'iter':>4} {'loss':>11} {'σ train':>10} {'σ held-out':>10} {'λ':>8} {'step s':>7} {'total s':>8}")
    t_lm = time.perf_counter()

    def callback(st):
        rec = dict(st.history[-1])
        rec["sigma_train"] = sig(prob, st.theta)
        rec["sigma_test"] = sig(prob_te, st.theta)
        rec["elapsed"] = time.perf_counter() - t_start
        st2 = gn.with_state(st, history=st.history[:-1] + (rec,))
        log(f"  {rec['iteration']:>4} {rec['loss']:>11.4e} {rec['sigma_train']:>10.3e} {rec['sigma_test']:>10.3e} "
            f"{rec['lam']:>8.1e} {rec['step_seconds']:>7.2f} {rec['elapsed']:>8.1f}{'' if rec['accepted'] else '  (rejected)'}")
        callback.state = st2
        if ckpt:
            save_checkpoint(ckpt, config, st2, extra={"whitening": tmat})
        if on_iteration is not None:
            on_iteration(st2)
        return False

    callback.state = state
    # run manually so that the history carries σ (callback replaces the last record)
    st = state
    while not st.done and st.iteration < lm_cfg.max_iter:
        st = gn.lm_step(prob, st, lm_cfg)
        callback(st)
        st = callback.state
    timings["gauss_newton"] = time.perf_counter() - t_lm
    theta = st.theta
    coeffs = tmat @ theta[:-1]
    model = BergmanModel(manifold=m, basis=b.combined(coeffs), log_kappa=float(theta[-1]),
                         info={"k": config.k, "n_functions": b.n_functions, "n_kept": int(tmat.shape[1]),
                               "symmetry": sym.describe(), "fingerprint": config.fingerprint()})
    # evaluation (closed form on all held-out points, curvature on a subset)
    t = time.perf_counter()
    ld_te, _, _ = prob_te.logdet(theta)
    det_te = np.exp(ld_te)
    ev = evaluate_model(model, test, n_curvature=config.n_curvature, det_g=det_te, log=log)
    ld_tr, _, _ = prob.logdet(theta)
    from ntkflow.manifolds import sigma as msigma

    sig_train = msigma(train, np.exp(ld_tr))
    timings["evaluation"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    metrics = {
        "manifold": m.name, "method": "bergman", "k": config.k,
        "sigma_test": ev["sigma"], "sigma_train": sig_train,
        "kappa": ev["kappa"], "vol_kahler_test": ev["vol_kahler"],
        "intersection_number": ev["intersection_number"],
        "ricci_measure": ev.get("ricci_measure"), "euler": ev.get("euler"),
        "euler_stderr": ev.get("euler_stderr"), "n_curvature": ev.get("n_curvature", 0),
        "fs_baseline": {"sigma_train": fs_sig_tr, "sigma_test": fs_sig_te},
        "n_functions": b.n_functions, "n_kept": int(tmat.shape[1]), "n_pairs": b.n_pairs,
        "iterations": st.iteration, "converged": bool(st.done),
        "timings": timings, "settings": config.to_json(), "symmetry": sym.describe(),
    }
    if out_dir is not None:
        finish_outputs(out_dir, model, metrics, st.history, np.exp(ld_te - prob_te.log_omega), log=log,
                       title=f"{m.name}, bergman k={config.k}")
    log(f"  done: held-out σ = {metrics['sigma_test']:.3e} (FS {fs_sig_te:.3f}), train σ = {sig_train:.3e}, "
        f"κ = {metrics['kappa']:.6g}, total {timings['total']:.1f} s")
    return CYResult(metrics=metrics, model=model, history=tuple(st.history), out_dir=out_dir)


def finish_outputs(out_dir, model, metrics, history, eta_test, *, log=print, title=""):
    model.save(out_dir)
    with open(os.path.join(out_dir, "history.json"), "w") as f:
        json.dump(list(history), f, indent=1)
    try:
        write_plots(out_dir, list(history), eta_test, title=title)
    except Exception as exc:  # plotting must never lose a finished run
        log(f"  (plots skipped: {exc})")
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(_jsonable(metrics), f, indent=2)
    log(f"  wrote {out_dir}/metrics.json, history.json, convergence.png, model.json, model.npz")


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, complex):
        return [x.real, x.imag]
    return x
