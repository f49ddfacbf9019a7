"""The job behind ``ntkflow cy``: sample → choose the method → fit → evaluate → write, for every method.

``run_cy(CYConfig(...), out_dir)`` samples training and held-out points on the manifold, then

- ``bergman`` (the frozen u^k kernel, primal): builds the Monge–Ampère least-squares problem in the
  symmetric basis (:class:`ntkflow.cy.gauss_newton.MAProblem`, whitened, solved by ``DenseSolve``) or
  matrix-free over the full Hermitian H (:class:`ntkflow.cy.matrixfree.PrimalProblem`, ``CGSolve``);
- ``dual`` (kernel form over Nyström centres, :class:`ntkflow.cy.dual.DualProblem`, ``CGSolve``);

and fits every one of them with the same :func:`ntkflow.solvers.least_squares.levenberg_marquardt`, the
same hooks (held-out σ, progress table, time budget, checkpoint with history) and the same resume
(``resume=True`` continues from ``OUT/checkpoint.{npz,json}``, equal to the uninterrupted run). The
baselines ``donaldson`` (balanced metric, T-operator) and ``network`` (finite φ-network, Adam) fit their
own way. All methods end in one epilogue: σ held-out/train, κ, Ricci measure and Euler characteristic
(:func:`evaluate_model`), one ``metrics.json`` schema with the run's ``status`` (method extras under
``method_info``), ``history.json``, ``convergence.png`` and the model (``ntkflow.load(out_dir)``).
"""
from __future__ import annotations

import enum
import functools
import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace

import jax
import matplotlib
import numpy as np
from scipy.sparse import coo_matrix, vstack
from scipy.sparse.linalg import lsqr

from ntkflow.cy import algebra, basis as basis_mod
from ntkflow.cy.algebra import Factors
from ntkflow.cy.config import (BergmanMethod, CYConfig, DataConfig, DonaldsonMethod, DualMethod, NetworkMethod)
from ntkflow.cy.curvature import holomorphic_curvature
from ntkflow.cy.distributed import ClusterSettings, DistributedPrimalProblem, heldout_seed, open_client, peak_memory
from ntkflow.cy.donaldson import balanced_metric
from ntkflow.cy.dual import DualKernelModel, DualProblem, choose_form, kernel_spec, make_kernel, select_dual_centers
from ntkflow.cy.gauss_newton import (MAProblem, jacobian0_rows, transform_basis, whitened_hessians, whitening,
                                   whitening_qr)
from ntkflow.cy.matrixfree import PrimalProblem, hermitian_basis, resolve_link
from ntkflow.cy.model import BergmanModel, CICYSectionModel, DonaldsonModel
from ntkflow.cy.network import train_network
from ntkflow.cy.problems import fitted_constant
from ntkflow.engine.devices import describe_mesh, device_mesh
from ntkflow.io import atomic_json, atomic_write
from ntkflow.manifolds import (PointSet, build_manifold, curvature, euler_characteristic, fs_det, kappa,
                               load_hypersurface_file, monomials, random_quintic, ricci_measure, sample, sigma,
                               sigma_weighted, volume_kahler)
from ntkflow.manifolds.cicy import (CompleteIntersection, cicy_euler_characteristic, cicy_fs_det,
                                    sample_cicy)
from ntkflow.manifolds.cicy_files import build_cicy, is_cicy_preset
from ntkflow.solvers.least_squares import (CGSolve, CheckpointHook, DenseSolve, LMConfig, LMState, LMStatus,
                                           ProgressHook, levenberg_marquardt, load_checkpoint, time_budget)

__all__ = ["CYResult", "Fit", "run_cy", "make_manifold", "evaluate_model", "evaluate_cicy_model", "cicy_factors", "load_hypersurface_file",
           "random_quintic", "default_k", "choose_basis", "symmetry_of", "cicy_symmetry", "choose_solver", "write_outputs",
           "basis_coefficients", "basis_values", "minimal_extension", "symmetry_fingerprint"]

#: the dense path stores the basis Hessians of all points; above this many GB it goes matrix-free
DENSE_MEMORY_GB = 8.0


@dataclass(frozen=True)
class CYResult:
    metrics: dict
    model: object
    history: tuple
    out_dir: str | None


@dataclass(frozen=True)
class Fit:
    """What a method's fit hands to the common epilogue.

    det_test (n_test,): det g of the fitted metric on the held-out points (closed form of the method);
    status/message: why the fit stopped (an :class:`LMStatus` for every method); info: the method's
    extras (``metrics["method_info"]``)."""

    model: object
    history: tuple
    det_test: np.ndarray
    sigma_train: float | None
    iterations: int
    status: LMStatus
    message: str
    solver: str
    info: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# manifold and data
# ----------------------------------------------------------------------------------------------


def make_manifold(data: DataConfig):
    """The manifold of ``data``: a CICY (``cicy`` file, or a CICY preset with ``psi`` or ``cicy_seed``:
    :func:`ntkflow.manifolds.cicy_files.build_cicy`), else the hypersurface: a file, a random quintic, or a preset
    (ntkflow.manifolds.build_manifold)."""
    if data.cicy is not None or is_cicy_preset(data.manifold):
        return build_cicy(data.manifold, psi=data.psi, seed=data.cicy_seed, path=data.cicy)
    if data.cicy_seed is not None:
        raise ValueError(f"cicy_seed: --cicy-seed {data.cicy_seed} draws a random member of a CICY preset; received "
                         f"manifold {data.manifold!r}. Pass --manifold bicubic|tetraquadric|p5-33.")
    return build_manifold(data.manifold, psi=data.psi, hypersurface=data.hypersurface or None,
                          random_quintic_seed=data.random_quintic)


def symmetry_of(manifold, method):
    """The group a method uses: detected (``symmetry="auto"``) or trivial (``"none"``)."""
    if getattr(method, "symmetry", "none") == "auto":
        return basis_mod.detect_symmetry(manifold.exponents, manifold.coefficients)
    return basis_mod.no_symmetry(manifold.n_coords)


def choose_basis(manifold, method, symmetry=None):
    """(basis, symmetry): the invariant degree-k basis when Γ is non-trivial, else all (k,k).

    ``symmetry`` (a :class:`~ntkflow.cy.basis.Symmetry`) replaces the detected group when the method uses
    one (``symmetry="auto"``): a moduli sweep passes the family's common group, the same for every ψ."""
    sym = symmetry if symmetry is not None and getattr(method, "symmetry", "none") == "auto" else \
        symmetry_of(manifold, method)
    return basis_mod.invariant_basis(manifold.n_coords, method.k, sym), sym


def symmetry_fingerprint(sym) -> str:
    """Short hash of a group (phases, modulus, permutations, conjugation): part of a checkpoint's fingerprint
    when the group is not the detected one (a sweep's common group changes the basis, not the settings)."""
    h = hashlib.sha256()
    for arr in (np.asarray(sym.phases, dtype=np.int64), np.asarray(sym.perms, dtype=np.int64)):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(f"{int(sym.modulus)}-{bool(sym.conjugation)}".encode())
    return h.hexdigest()[:12]


def basis_coefficients(basis, target) -> tuple[np.ndarray, float]:
    """(c, residual): the coefficients c (n_functions,) of ``basis`` whose Hermitian matrix
    H(c) = Σ_a c_a H^{(a)} is closest to the one-function pair basis ``target`` (same degree and monomials),
    in the Frobenius norm of the half pairs α ≤ β, and the relative residual ‖H(c) − H_target‖/‖H_target‖.

    This carries a potential φ = s†H s/|z|^{2k} from one member of a family to the next through its
    monomial-basis coefficients (points and whitening change with ψ, the ambient function does not);
    the residual is 0 (round-off) when φ is invariant under the group of ``basis``."""
    if target.n_functions != 1:
        raise ValueError(f"target: expected a one-function pair basis (a saved model's), received "
                         f"{target.n_functions} functions.")
    if target.k != basis.k or not np.array_equal(target.exponents, basis.exponents):
        raise ValueError(f"target: degree {target.k} with {target.n_monomials} monomials does not match the basis "
                         f"(degree {basis.k}, {basis.n_monomials} monomials); carry a potential only between equal k.")
    nk = basis.n_monomials
    code_b = basis.alpha.astype(np.int64) * nk + basis.beta
    code_t = target.alpha.astype(np.int64) * nk + target.beta
    uniq, row_b = np.unique(code_b, return_inverse=True)
    y = np.zeros(len(uniq), dtype=np.complex128)  # target H on the half pairs of the basis
    pos = np.searchsorted(uniq, code_t)
    inside = (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == code_t)
    np.add.at(y, pos[inside], target.weight[inside])
    outside = float(np.sum(np.abs(target.weight[~inside]) ** 2))  # pairs the group forbids
    a = coo_matrix((basis.weight, (row_b.reshape(-1), basis.func)), shape=(len(uniq), basis.n_functions)).tocsr()
    A = vstack([a.real, a.imag]).tocsr()  # (2 n_pairs, n_functions) real
    rhs = np.concatenate([y.real, y.imag])
    c = lsqr(A, rhs, atol=1e-15, btol=1e-15, iter_lim=10 * basis.n_functions + 100)[0]
    total = float(np.sum(np.abs(target.weight) ** 2))
    res = math.sqrt((float(np.sum((A @ c - rhs) ** 2)) + outside) / total) if total > 0 else 0.0
    return c, res


def default_k(manifold, config: CYConfig) -> tuple[int, str]:
    """The CLI's degree when ``-k`` is not given: ``method.k`` (12), except for the Bergman method on a
    manifold without usable symmetry, where every Hermitian H over the N_k monomials is a parameter:
    there the largest k ≤ min(method.k, 6) with N_k² ≤ n_train/2 (measured on the random quintic: more
    parameters than that fit the Monte-Carlo noise of the points, and k = 6 is the largest degree
    measured on 2 cores, docs/cy.md). Returns (k, reason or "")."""
    method, n_train = config.method, config.data.n_train
    if isinstance(manifold, CompleteIntersection):
        if not isinstance(method, BergmanMethod):
            return getattr(method, "k", 0), ""
        sym = cicy_symmetry(manifold) if method.symmetry == "auto" else None
        if sym is not None and not sym.trivial and method.solver != "matrix-free" and method.link != "log":
            # the dense symmetric path: the largest k ≤ min(k, 8) whose basis Hessians (all points) fit 2 GB
            # (measured: P⁵[3,3] k = 6 in 15-20 s, bicubic k = 6 in 32 s, tetraquadric k = 4 in 3 min, docs/cy.md)
            n_pts, best = n_train + config.data.n_test, None
            for k in range(1, min(method.k, 8) + 1):
                f = cicy_factors(manifold, k, method.kahler_class)
                nf = basis_mod.invariant_basis(manifold.n_coords, k, sym, exponents=f.exponents()).n_functions
                if k > 1 and nf * n_pts * manifold.dim ** 2 * 8 > 2e9:
                    break
                best = (k, nf)
            return best[0], (f"complete intersection with symmetry ({sym.describe()}): the largest k ≤ 8 whose "
                             f"{best[1]} invariant functions' Hessians on {n_pts} points fit 2 GB")
        # no symmetry: the full Hermitian H, the rule of the hypersurface over N_k = Π C(k+n_a, n_a)
        n_k = lambda k: math.prod(math.comb(k + n, n) for n in manifold.ambient)  # noqa: E731
        k = 1
        while k < min(method.k, 6) and n_k(k + 1) ** 2 <= n_train / 2:
            k += 1
        return k, (f"complete intersection, no symmetry: N_k² = {n_k(k) ** 2} real parameters for {n_train} training "
                   f"points; the largest k ≤ 6 with N_k² ≤ n_train/2")
    if not isinstance(method, BergmanMethod) or not symmetry_of(manifold, method).trivial:
        return getattr(method, "k", 0), ""
    n = manifold.n_coords
    k = 1
    while k < min(method.k, 6) and math.comb(k + 1 + n - 1, n - 1) ** 2 <= n_train / 2:
        k += 1
    return k, (f"no symmetry: N_k² = {math.comb(k + n - 1, n - 1) ** 2} real parameters for {n_train} "
               f"training points; the largest k ≤ 6 with N_k² ≤ n_train/2")


def choose_solver(method: BergmanMethod, n_functions: int, n_points: int, dim: int, trivial: bool) -> tuple[str, str, str]:
    """(solver, link, why) for the Bergman method: ``--solver auto`` is dense when the basis Hessians of all
    points fit in DENSE_MEMORY_GB and the link is identity, else matrix-free; ``--link auto`` is log without
    symmetry and on the matrix-free path, identity on the dense path."""
    mem = n_points * n_functions * dim ** 2 * 8 / 1e9
    wants_log = method.link == "log" or (method.link == "auto" and trivial)
    if method.solver == "dense":
        return "dense", "identity", f"--solver dense ({mem:.2f} GB of Hessians)"
    if method.solver == "matrix-free":
        return "matrix-free", resolve_link(method.link), "--solver matrix-free"
    if getattr(method, "devices", None) is not None:
        return "matrix-free", resolve_link(method.link), f"--devices {method.devices} (the matrix-free path is sharded)"
    if getattr(method, "preconditioner", "jacobi") != "jacobi":
        return ("matrix-free", resolve_link(method.link),
                f"--preconditioner {method.preconditioner} (it preconditions the matrix-free CG)")
    if mem > DENSE_MEMORY_GB:
        return "matrix-free", resolve_link(method.link), f"dense Hessian storage would need {mem:.1f} GB"
    if wants_log:
        why = ("no symmetry, --link auto: the log link" if method.link == "auto" else
               "--link log (the symmetric basis is linear in φ; the log link runs on the full Hermitian H)")
        return "matrix-free", "log", why
    return "dense", "identity", f"{mem:.2f} GB of Hessians"


# ----------------------------------------------------------------------------------------------
# evaluation shared by all methods
# ----------------------------------------------------------------------------------------------


def evaluate_model(model, ps, *, n_curvature: int = 10_000, det_g=None, log=None) -> dict:
    """σ, κ, Vol_K, Ricci measure and Euler characteristic of ``model`` on the point set ``ps``.

    Curvature uses the first ``n_curvature`` points (autodiff of the model's metric function)."""
    t0 = time.perf_counter()
    if det_g is None:
        det_g = np.real(np.linalg.det(model.metric(ps)))
    out = {"n_points": len(ps), "sigma": sigma(ps, det_g), "kappa": kappa(ps, det_g),
           "vol_kahler": volume_kahler(ps, det_g), "intersection_number": ps.manifold.intersection_number}
    if n_curvature:
        sub = ps[: min(n_curvature, len(ps))]
        t1 = time.perf_counter()
        if hasattr(model, "gfun"):
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


def _sigma_or_nan(ps, det):
    if not np.all(np.isfinite(det)) or np.any(det <= 0):
        return float("nan")
    return sigma(ps, det) if isinstance(ps, PointSet) else sigma_weighted(det / ps.omega_sq, ps.weights)


def cicy_factors(manifold: CompleteIntersection, k: int, kahler_class=()) -> Factors:
    """The sections of degree k·t_a in factor a of the ambient of ``manifold`` (``kahler_class`` t, one entry per
    factor; empty: t = (1, …, 1)): the metrics of :class:`PrimalProblem` are then in the class Σ_a t_a J_a."""
    t = tuple(kahler_class) or (1.0,) * manifold.n_factors
    if len(t) != manifold.n_factors:
        raise ValueError(f"kahler_class: expected {manifold.n_factors} entries (one per factor of {manifold.name}, "
                         f"ambient {manifold.ambient}), received {list(t)}.")
    return Factors(tuple(n + 1 for n in manifold.ambient), tuple(int(round(k * float(ta))) for ta in t))


def cicy_symmetry(manifold: CompleteIntersection):
    """The symmetry group of a complete intersection (:func:`ntkflow.cy.basis.detect_symmetry_products`)."""
    return basis_mod.detect_symmetry_products(manifold.polynomials, tuple(n + 1 for n in manifold.ambient))


def evaluate_cicy_model(model: CICYSectionModel, ps, *, n_curvature: int = 0, det_g=None, log=None) -> dict:
    """σ, κ, Vol_K (and with ``n_curvature`` > 0 the Ricci measure and Euler characteristic from the 2-jets of the
    model's sections, :meth:`CICYSectionModel.curvature`; equal to autodiff of its potential, the tests) on a CICYPointSet: the keys of
    :func:`evaluate_model`. σ = Σ w |1 − η/⟨η⟩_w| / Σ w with η = det g/|Ω|² (:func:`sigma_weighted`)."""
    t0 = time.perf_counter()
    if det_g is None:
        det_g = np.real(np.linalg.det(model.metric(ps)))
    eta = np.asarray(det_g) / ps.omega_sq
    w = ps.weights
    t_class = np.asarray(model.factors.degrees, dtype=np.float64) / model.k
    out = {"n_points": len(ps), "sigma": _sigma_or_nan(ps, np.asarray(det_g)), "kappa": float(np.mean(w * eta) / np.mean(w)),
           "vol_kahler": float(np.mean(w * eta)), "intersection_number": ps.manifold.kahler_volume(t_class)}
    if n_curvature:
        sub = ps[: min(n_curvature, len(ps))]
        t1 = time.perf_counter()
        if log:
            log(f"  curvature of the model on {len(sub)} points from the 2-jets of the sections "
                f"(ntkflow.manifolds.cicy_jets; N_k = {int(np.asarray(model.H).shape[0])}); --n-curvature 0 skips it")
        curv = model.curvature(sub)
        chi, chi_err = cicy_euler_characteristic(sub, curv=curv)
        out.update({"n_curvature": len(sub), "ricci_measure": ricci_measure(sub, curv=curv),
                    "euler": chi, "euler_stderr": chi_err, "curvature_seconds": time.perf_counter() - t1})
        rel = np.abs(curv.det_g - det_g[: len(sub)]) / np.abs(det_g[: len(sub)])
        out["det_consistency"] = float(rel.max())  # closed-form metric against the jets' metric
        if log:
            log(f"  curvature on {len(sub)} held-out points: Ricci measure {out['ricci_measure']:.4g}, "
                f"Euler characteristic {chi:.2f} ± {chi_err:.2f} ({out['curvature_seconds']:.1f} s)")
    out["seconds"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------------------------
# plots and files
# ----------------------------------------------------------------------------------------------


def write_plots(out_dir, history, eta_test, *, title=""):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pyplot after choosing the backend

    it = [h["iteration"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    if history:
        ax[0].semilogy(it, [h["loss"] for h in history], "o-", label="loss (train)")
        for key, style, label in (("sigma_train", "s--", "σ train"), ("sigma_test", "^-", "σ held-out")):
            pts = [(h["iteration"], h[key]) for h in history if h.get(key) is not None]
            if pts:
                ax[0].semilogy(*zip(*pts), style, label=label)
    ax[0].set_xlabel("iteration")
    ax[0].legend()
    ax[0].set_title(title)
    eta = np.asarray(eta_test)
    ax[1].hist(eta / np.mean(eta), bins=100, log=True)
    ax[1].set_xlabel("η / mean(η) (held-out)")
    fig.tight_layout()
    path = os.path.join(out_dir, "convergence.png")
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=90))
    finally:
        plt.close(fig)
    return path


def jsonable(x):
    """Plain-JSON copy of metrics / history records (NumPy scalars, enums, complex numbers)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, enum.Enum):
        return x.name
    if isinstance(x, complex):
        return [x.real, x.imag]
    return x


def write_outputs(out_dir, model, metrics, history, eta_test, *, log=print, title=""):
    """model.json/npz, history.json, convergence.png, metrics.json (the one epilogue of every method)."""
    model.save(out_dir)
    atomic_json(os.path.join(out_dir, "history.json"), jsonable(list(history)), indent=1)
    try:
        write_plots(out_dir, list(history), eta_test, title=title)
    except Exception as exc:  # plotting must never lose a finished run
        log(f"  (plots skipped: {exc})")
    atomic_json(os.path.join(out_dir, "metrics.json"), jsonable(metrics), indent=2)
    log(f"  wrote {out_dir}/metrics.json, history.json, convergence.png, model.json, model.npz")


def _printer(quiet):
    def log(msg):
        if not quiet:
            print(msg, flush=True)
            sys.stdout.flush()

    return log


# ----------------------------------------------------------------------------------------------
# the Gauss–Newton methods: one problem each, one solver, the same hooks
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CarriedPotential:
    """A warm start of the dense path: the previous member's potential as a one-function pair basis."""

    basis: object
    manifold: object


@dataclass(frozen=True)
class _Setup:
    """A least-squares method ready to fit: problem, step solver, LM settings, σ of a θ."""

    problem: object
    solve: object
    lm: LMConfig
    sigma_train: object  # θ -> σ on the training points
    det_test: object  # θ -> det g (n_test,) on the held-out points
    model: object  # θ -> model
    solver: str
    info: dict
    timings: dict
    fingerprint: str | None = None  # of the checkpoint, when it is not config.fingerprint() (distributed points)
    initial: np.ndarray | None = None  # θ₀ of a warm start (None: the problem's own initial point)


def _setup_dense(config, method, m, b, sym, train, test, log, warm_start=None, factors: Factors | None = None) -> _Setup:
    """The dense path: LM on the whitened symmetric basis ``b``. ``factors``: a complete intersection, whose
    basis functions are the multi-degree ones of ``factors`` and whose reference metric is FS of the class
    Σ_a (k_a/k) J_a (the identity link of :class:`CICYSectionModel`); ``--dense-chunk`` streams its Hessians there too."""
    timings = {}
    chunk = method.dense_chunk or None  # --dense-chunk N: the raw Hessians streamed over N points, never all held
    t = time.perf_counter()
    if chunk is None:
        h_train = algebra.pair_hessians(b, train.points, train.jacobian, factors=factors)
        h_test = algebra.pair_hessians(b, test.points, test.jacobian, factors=factors)
        timings["hessians"] = time.perf_counter() - t
        log(f"  pulled-back Hessians of the basis: {timings['hessians']:.1f} s")
    else:
        t_cls = None if factors is None else np.asarray(factors.degrees, dtype=np.float64) / method.k
        j0 = jacobian0_rows(b, train.points, train.jacobian, chunk=chunk, factors=factors,
                            kahler_class=t_cls)  # (n, p): tr(g_FS⁻¹ G_a) at every point
        timings["jacobian0"] = time.perf_counter() - t
        log(f"  Laplacians of the basis, streamed over {chunk}-point chunks: {timings['jacobian0']:.1f} s")
    if factors is None:
        g0_tr = algebra.pack(algebra.fs_pulled(train.points, train.jacobian))
        g0_te = algebra.pack(algebra.fs_pulled(test.points, test.jacobian))
    else:
        t_class = np.asarray(factors.degrees, dtype=np.float64) / method.k
        g0_tr = algebra.pack(factors.fs_sum(train.points, train.jacobian, t_class))
        g0_te = algebra.pack(factors.fs_sum(test.points, test.jacobian, t_class))
    lo_tr, lo_te = np.log(train.omega_sq), np.log(test.omega_sq)
    t = time.perf_counter()
    if chunk is None:
        prob0 = MAProblem(g0=g0_tr, hess=h_train, log_omega=lo_tr, weights=train.weights, dim=m.dim)
        tmat = whitening(prob0, rtol=method.whiten_rtol)
    else:
        tmat, _ = whitening_qr(j0, train.weights, rtol=method.whiten_rtol)
    j0_warm = None  # (n, 1) Δ_FS φ_prev and (n, q) Δ_FS of the whitened basis, for the warm start below
    if warm_start is not None:
        t_warm = time.perf_counter()
        c_prev, h_res = basis_coefficients(b, warm_start.basis)
        if factors is None:
            c_prev, n_null = minimal_extension(b, c_prev, warm_start.manifold, seed=config.data.seed)
        else:  # complete intersections: carried as fitted (the whitening kept no direction that vanishes on X)
            n_null = 0
        if chunk is None:
            j0 = prob0.jacobian(np.zeros(prob0.n_params))[:, :-1]  # (n, p): tr(g_FS⁻¹ G_a) at every point
        j0_warm = (j0 @ c_prev, j0 @ tmat, h_res, n_null)
        timings["warm_start"] = time.perf_counter() - t_warm
    j0 = None
    if chunk is None:
        h_train, h_test = transform_basis(h_train, tmat), transform_basis(h_test, tmat)
    else:  # (n, q, d²) straight into the kept basis
        h_train = whitened_hessians(b, train.points, train.jacobian, tmat, chunk=chunk, factors=factors)
        h_test = whitened_hessians(b, test.points, test.jacobian, tmat, chunk=chunk, factors=factors)
    timings["whitening"] = time.perf_counter() - t
    log(f"  orthogonalised basis: {tmat.shape[1]} of {tmat.shape[0]} directions kept (rtol {method.whiten_rtol:g}), "
        f"{timings['whitening']:.1f} s" + ("" if chunk is None else
                                            f"; normal equations accumulated over {chunk}-point chunks"))
    prob = MAProblem(g0=g0_tr, hess=h_train, log_omega=lo_tr, weights=train.weights, dim=m.dim, chunk=chunk)
    prob_te = MAProblem(g0=g0_te, hess=h_test, log_omega=lo_te, weights=test.weights, dim=m.dim)

    def sigma_train(theta):
        ld, _, ok = prob.logdet(theta)
        return sigma_weighted(np.exp(ld - prob.log_omega), prob.weights) if ok else float("nan")

    def det_test(theta):
        ld, _, ok = prob_te.logdet(theta)
        return np.exp(ld) if ok else np.full(len(test), np.nan)

    def model(theta):
        info = {"k": method.k, "n_functions": b.n_functions, "n_kept": int(tmat.shape[1]),
                "symmetry": sym.describe(), "fingerprint": config.fingerprint()}
        if factors is not None:
            return CICYSectionModel(manifold=m, factors=factors, k=method.k, H=b.hermitian(tmat @ theta[:-1]),
                                    link="identity", log_kappa=float(theta[-1]),
                                    info={**info, "degrees": list(factors.degrees), "solver": "dense", "link": "identity"})
        return BergmanModel(manifold=m, basis=b.combined(tmat @ theta[:-1]), log_kappa=float(theta[-1]), info=info)

    lm = LMConfig(max_iter=config.lm.max_iter, lam0=config.lm.lam0, gtol=config.lm.gtol, scaling="identity")
    info = {"n_functions": b.n_functions, "n_kept": int(tmat.shape[1]), "n_pairs": b.n_pairs,
            "symmetry": sym.describe(), "link": "identity"}
    initial = None
    if j0_warm is not None:
        initial, info["warm_start"] = _warm_theta(prob, *j0_warm, log=log)
    return _Setup(prob, DenseSolve(), lm, sigma_train, det_test, model, "dense", info, timings, initial=initial)


def basis_values(basis, z, *, chunk: int = 1024) -> np.ndarray:
    """(n, n_functions) values f_a(z) = Σ_{p ∈ a} 2 Re(ω_p s_{α_p}(z) conj(s_{β_p}(z))) / |z|^{2k} of a pair basis
    (half pairs: a diagonal pair carries half its H entry, so H = Σ ω E + conj(ω) Eᵀ gives s†Hs)."""
    z = np.asarray(z, dtype=np.complex128)  # (n, N)
    out = np.empty((len(z), basis.n_functions))
    starts = basis.starts
    wr, wi = 2.0 * basis.weight.real, 2.0 * basis.weight.imag  # (n_pairs,)
    for lo in range(0, len(z), chunk):
        zz = z[lo:lo + chunk]
        s = monomials(zz, basis.exponents) / (np.sum(np.abs(zz) ** 2, axis=1) ** (basis.k / 2))[:, None]
        prod = s[:, basis.alpha] * np.conj(s[:, basis.beta])  # (c, n_pairs)
        terms = prod.real * wr if not np.any(wi) else prod.real * wr - prod.imag * wi  # 2 Re(ω s_α conj(s_β))
        out[lo:lo + chunk] = np.add.reduceat(terms, starts, axis=1)
    return out


def independent_on_points(basis, points, *, rtol: float = 1e-11, chunk: int = 256):
    """(basis', kept): the functions of ``basis`` whose values at ``points`` (M, N) of X are linearly independent,
    chosen by QR with column pivoting of the values (each column scaled to unit RMS); a column is dropped when
    |R_ii| ≤ rtol · |R_00|. A combination that vanishes at M > n_functions generic points of X vanishes on X, and
    so does its pulled-back Hessian i∂∂̄(f|_X): the dropped functions add nothing to the fit, only to the cost of
    the Hessians (every kept function still enters the whitening at --whiten-rtol, which drops near-dependent
    directions as before). The values use one common normalisation per point, |z|^{2k} over all coordinates,
    which leaves linear dependence unchanged for functions of one multi-degree."""
    from scipy.linalg import qr

    v = basis_values(basis, points, chunk=chunk)  # (M, p)
    scale = np.sqrt(np.mean(v * v, axis=0))
    v = v / np.where(scale > 0, scale, 1.0)[None, :]
    _, r, piv = qr(v, mode="economic", pivoting=True)
    d = np.abs(np.diag(r))
    rank = int(np.sum(d > rtol * d[0])) if len(d) else 0
    kept = np.sort(piv[:rank])
    return basis.subset(kept), kept


def _independent_on_training_points(basis, points):
    """:func:`independent_on_points` at min(p + 1000, n) training points drawn at random (fixed seed; p functions).
    Not the first ones: the sampler's points come in groups that share the coordinates of all factors but one
    (one random line per group), and the first p/2 + 500 of them showed spurious relations on the tetraquadric
    (647 of 1587 at k = 5, where 962 are independent). The full basis is kept when the rank comes within 100 of the
    number of points (too few points to see every relation)."""
    p, n = basis.n_functions, len(points)
    m = min(p + 1000, n)
    idx = np.sort(np.random.default_rng(0).choice(n, size=m, replace=False))
    kept_basis, _ = independent_on_points(basis, points[idx])
    return basis if kept_basis.n_functions > m - 100 else kept_basis


def minimal_extension(basis, coeffs, manifold, *, n_points: int | None = None, seed: int = 0, rtol: float = 1e-9):
    """(c', n_kernel): the coefficients of the same function on ``manifold`` X with no component along the
    functions of ``basis`` that vanish on X.

    φ = Σ c_a f_a is known only on X (where it was fitted); a combination F of basis functions with F|_X = 0
    (e.g. Re(Q₀ conj(Πz))/|z|^10 for the Fermat quintic X₀) can carry any coefficient — a fit may put
    round-off there — and is *not* zero on the next member X_ψ of the family. Here the values of the basis
    on ``n_points`` points of X (default 2·n_functions + 100: a non-zero combination vanishing at that many
    random points of X vanishes on X), each column scaled by the function's RMS over as many FS-random points
    of the ambient P^{N-1}, give by SVD the kernel V₀ (singular values < rtol · max); c' = c − V₀V₀ᵀc in the
    scaled coordinates, the smallest extension of φ|_X off X in that norm."""
    n_points = 2 * basis.n_functions + 100 if n_points is None else int(n_points)
    rng = np.random.default_rng(seed)
    n = manifold.n_coords
    amb = rng.standard_normal((n_points, n)) + 1j * rng.standard_normal((n_points, n))  # FS-uniform on P^{N-1}
    scale = np.sqrt(np.mean(basis_values(basis, amb) ** 2, axis=0))  # (p,) ambient RMS of each function
    scale = np.where(scale > 0, scale, 1.0)
    pts = sample(manifold, n_points, seed=seed, progress=False)
    v = basis_values(basis, pts.points) / scale[None, :]  # (n_points, p)
    _, sv, vt = np.linalg.svd(v, full_matrices=False)
    null = vt[sv <= rtol * sv[0]]  # (n_kernel, p) rows: scaled coefficient vectors of functions vanishing on X
    cs = np.asarray(coeffs, dtype=np.float64) * scale
    cs = cs - null.T @ (null @ cs)
    return cs / scale, int(len(null))


def _warm_theta(prob: MAProblem, t, jw, h_res, n_null, *, log):
    """θ₀ in the whitened basis of ``prob`` for the carried potential φ_prev: the weighted least-squares fit
    of Δ_FS φ_prev = ``t`` (n,) by the whitened columns ``jw`` (n, q), orthonormal ((jwᵀ W jw)/n = I), so
    θ = jwᵀ W t / n (exact up to round-off when φ_prev is in the span: Δ_FS has the constants as kernel),
    c₀ the optimal constant. When that is not positive definite at some of the new points or no better than
    the cold start (a large step in ψ, near the conifold), φ_prev scaled by s = 1/2, 1/4, 1/8 is tried too
    (g_FS + s∂∂̄φ is positive definite for small s) and the best is kept.
    Returns (θ₀, or None when no scale beats the cold start, info)."""
    w, n = prob.weights, len(t)
    full = jw.T @ (w * t) / n
    fit_res = math.sqrt(float(np.mean(w * (t - jw @ full) ** 2)) / max(float(np.mean(w * t * t)), 1e-300))
    cold = prob.initial()
    info = {"basis_residual": h_res, "projection_residual": fit_res, "loss_cold": float(prob.loss(cold)),
            "previous_kernel": n_null}
    best = None  # (loss, scale, θ) of the best positive-definite scale
    for scale in (1.0, 0.5, 0.25, 0.125):
        theta = np.zeros(prob.n_params)
        theta[:-1] = scale * full
        ld, _, ok = prob.logdet(theta)
        if not ok:
            continue
        theta[-1] = fitted_constant(ld - prob.log_omega, w)
        loss = float(prob.loss(theta))
        if best is None or loss < best[0]:
            best = (loss, scale, theta)
        if scale == 1.0 and loss < info["loss_cold"]:
            break  # the exact carry-over is better than the cold start: no need for a smaller scale
    if best is None:
        log("  warm start refused: the carried potential is not positive definite on these points (also scaled by "
            "1/8); cold start")
        return None, {**info, "used": False, "reason": "not positive definite"}
    loss, scale, theta = best
    info.update(scale=scale, loss_warm=loss)
    if not loss < info["loss_cold"]:
        log(f"  warm start refused: loss {loss:.4e} (best of the scales 1, 1/2, 1/4, 1/8) ≥ the cold start's "
            f"{info['loss_cold']:.4e}; cold start")
        return None, {**info, "used": False, "reason": "no better than the cold start"}
    log("  warm start: the previous potential carried over" + (f", scaled by {scale:g}" if scale != 1 else "")
        + f" (basis residual {h_res:.1e}, projection residual {fit_res:.1e}): loss {loss:.4e} "
          f"against {info['loss_cold']:.4e} cold")
    return theta, {**info, "used": True}


def _cg_progress(log, every: float = 30.0):
    """A CGSolve progress callback that logs the inner CG at most every ``every`` seconds (a Gauss–Newton step
    at k ≥ 7 on 10⁵+ points runs many minutes; the step's own line comes when it ends)."""
    last = [time.perf_counter()]

    def report(iteration: int, rel: float):
        now = time.perf_counter()
        if iteration == 1 and now - last[0] > 4 * every:  # a new solve after a long pause: restart the clock
            last[0] = now
        if now - last[0] >= every:
            log(f"         CG iteration {iteration}: relative residual {rel:.2e}")
            last[0] = now

    return report


def _primal_sigma_train(prob, theta) -> float:
    """σ on the training points of a matrix-free primal problem (NaN where g is not positive definite)."""
    r, _ = prob.residual(theta)
    return float("nan") if r is None else sigma_weighted(np.exp(np.asarray(r) + theta[-1]), prob.weights)


def _primal_det_test(prob, tprob, theta) -> np.ndarray:
    """det g (n_test,) on the held-out problem ``tprob`` of the monomial H that θ encodes in ``prob``."""
    Hm = prob.monomial_H(prob.unvec(theta)[0])
    return np.real(np.asarray(tprob.xp.linalg.det(tprob.metric(tprob.xp.asarray(Hm)))))


def _setup_matrix_free(config, method, m, link, train, test, log, *, client=None, cluster=None) -> _Setup:
    """The matrix-free primal problem in this process, or (``client``: a ``distributed.Client``) its blocks on
    the dask workers (:class:`ntkflow.cy.distributed.DistributedPrimalProblem`; ``train`` is then None)."""
    timings = {}
    t = time.perf_counter()
    devices = getattr(method, "devices", None)  # None: one device; N or "all": the points sharded over a mesh
    # an accelerator (or a device mesh) keeps the features on it
    backend = "numpy" if jax.default_backend() == "cpu" and devices is None else "jax"
    if client is not None:
        backend = "numpy"  # the held-out metric on the driver's host; the training blocks on the workers
        prob = DistributedPrimalProblem(client, m, config.data.n_train, method.k, seed=config.data.seed,
                                        block_size=cluster.block_size, link=link, keep_features=cluster.keep_features,
                                        timeout=cluster.timeout, product_dtype=getattr(method, "product_dtype", "float64"))
    else:
        prob = PrimalProblem(train.points, train.jacobian, train.weights, np.log(train.omega_sq), method.k,
                             backend=backend, link=link, devices=devices,
                             product_dtype=getattr(method, "product_dtype", "float64"))
    timings["features"] = time.perf_counter() - t
    dev = describe_mesh(prob.mesh)
    where = (f"{prob.n_blocks} blocks of ≤ {prob.block_size} points on the dask workers ({prob.where})"
             if client is not None else "the host (NumPy)" if backend == "numpy" else
             f"{dev['count']} {'/'.join(dev['kinds'])} devices, points sharded" if prob.mesh is not None else
             jax.devices()[0].device_kind)
    log(f"  matrix-free primal Gauss–Newton: H Hermitian over {prob.nk} whitened sections ({prob.n_params - 1} real "
        f"parameters), products on {where}, features {timings['features']:.1f} s")
    log("  link: " + ("log — K = (1/(kπ)) log s†Hs (Bergman/Donaldson form of the same u^k kernel function; "
                      "--link identity for φ = s†Hs/|z|^{2k})" if link == "log" else
                      "identity — φ = s†Hs/|z|^{2k} (the frozen u^k function space itself)"))
    if prob.n_params - 1 > prob.n // 2:
        log(f"  warning: {prob.n_params - 1} parameters for {prob.n} training points — Gauss–Newton will fit "
            f"the points' Monte-Carlo noise (held-out σ stalls while train σ → 0); measured on the random quintic: "
            f"n ≳ 2.5 × parameters (docs/cy.md). Use more --n-train or a smaller -k.")
    # held-out metric with the same GEMM products (monomial basis): far cheaper than the model's
    # pair-by-pair evaluation, which the tests check it against
    tprob = PrimalProblem(test.points, test.jacobian, test.weights, np.log(test.omega_sq), method.k, whiten=False,
                          backend=backend, link=link, devices=None if client is not None else devices)

    def sigma_train(theta):
        if client is not None:
            return prob.sigma_train(theta)  # two map-reduces over the blocks
        return _primal_sigma_train(prob, theta)

    det_test = functools.partial(_primal_det_test, prob, tprob)

    def model(theta):
        b = hermitian_basis(prob.monomial_H(prob.unvec(theta)[0]), prob.exps, method.k)
        info = {"k": method.k, "solver": "matrix-free", "link": link, "fingerprint": config.fingerprint()}
        if link == "log":
            return DonaldsonModel(manifold=m, basis=b, info=info)
        return BergmanModel(manifold=m, basis=b, log_kappa=float(theta[-1]), info=info)

    # one try per step, but a step that overshoots is first halved up to 3 times (loss evaluations only,
    # seconds) before it is rejected (a rejected step costs a whole linearisation + CG: minutes at k ≥ 7)
    lm = LMConfig(max_iter=config.lm.max_iter, lam0=config.lm.lam0, gtol=config.lm.gtol, scaling="marquardt",
                  max_tries=1, stop_on_reject=False, backtrack=3)
    info = {"link": link, "n_parameters": prob.n_params - 1, "n_sections": prob.nk, "backend": backend,
            "product_dtype": getattr(method, "product_dtype", "float64"),
            "devices": dev if backend == "jax" else None}
    fingerprint = None
    if client is not None:
        info.update(backend="dask", scheduler=prob.where, n_blocks=prob.n_blocks, block_size=prob.block_size,
                    keep_features=prob.keep_features, n_workers=len(client.scheduler_info()["workers"]))
        # the training points are the blocks of (seed, block_size), not the head of one sample
        fingerprint = f"{config.fingerprint()}-dask-blocks-{prob.block_size}"
    precond = getattr(method, "preconditioner", "jacobi")  # Jacobi, or the Nyström sketch of the scaled Gram
    solve = CGSolve(rtol=method.cg_rtol, maxiter=method.cg_maxiter, preconditioner=precond,
                    rank=getattr(method, "precond_rank", 64), seed=0, progress=_cg_progress(log))
    info["preconditioner"] = precond if precond == "jacobi" else f"{precond} (rank {solve.rank})"
    return _Setup(prob, solve, lm, sigma_train, det_test, model,
                  "matrix-free", info, timings, fingerprint)


def _setup_dual(config, method: DualMethod, m, train, test, log) -> _Setup:
    timings = {}
    base = make_kernel(method)
    form, why = choose_form(base, m.n_coords, method.centers, len(train))
    log(f"  {why}")
    t = time.perf_counter()
    centers = np.asarray(train.points)[select_dual_centers(base, train, method, seed=config.data.seed)]
    timings["centers"] = time.perf_counter() - t
    prob = DualProblem(base, centers, train.points, train.jacobian, train.weights, np.log(train.omega_sq),
                       jacobian=method.jacobian, dense_max_entries=method.dense_max_entries, tile=method.tile,
                       log_det_fs=np.log(fs_det(train)), devices=method.devices)
    why_mode = ("requested" if method.jacobian != "auto" else
                f"n·m = {prob.n * prob.m:.3g} {'≤' if prob.mode == 'dense' else '>'} {method.dense_max_entries:.3g}")
    mode = (f"J formed once per step ({why_mode}), CG products by BLAS" if prob.mode == "dense"
            else f"every CG product JᵀWJV one lazy pass sharded over {prob.mesh.size} devices, J never formed "
                 f"(--devices {method.devices})" if prob.mode == "sharded"
            else f"every CG product one lazy JAX pass, J never formed ({why_mode})")
    log(f"  centres: {method.centers} ({method.centers_method}, seed {config.data.seed}) in {timings['centers']:.1f} s; "
        f"Jacobian: {mode}; ridge μ = {method.ridge:g}")

    def sigma_train(theta):
        r, _ = prob.residual(theta)
        return float("nan") if r is None else sigma_weighted(np.exp(r + theta[-1]), prob.weights)

    def det_test(theta):
        return np.real(np.linalg.det(prob.metric(theta[:-1], test.points, test.jacobian)))

    def model(theta):
        return DualKernelModel(manifold=m, base=base, centers=centers, alpha=theta[:-1], log_kappa=float(theta[-1]),
                               info={"form": form, "centers_method": method.centers_method,
                                     "n_centers": method.centers, "kernel": kernel_spec(base),
                                     "ridge": method.ridge, "fingerprint": config.fingerprint()})

    lm = LMConfig(max_iter=config.lm.max_iter, lam0=config.lm.lam0, gtol=config.lm.gtol, scaling="marquardt",
                  max_tries=1, stop_on_reject=False, max_lam=1e8, mu=method.ridge)
    info = {"kernel": kernel_spec(base), "form": form, "why": why, "jacobian": prob.mode,
            "devices": describe_mesh(prob.mesh) if prob.mesh is not None else None,
            "n_centers": method.centers, "centers_method": method.centers_method, "ridge": method.ridge}
    return _Setup(prob, CGSolve(rtol=method.cg_rtol, maxiter=method.cg_maxiter), lm, sigma_train, det_test, model,
                  "dual", info, timings)


def _fit_least_squares(setup: _Setup, config: CYConfig, test, out_dir, *, resume, log, hooks, t_start) -> Fit:
    """Levenberg–Marquardt on ``setup.problem`` with the hooks of every path; resume from the checkpoint."""
    ckpt = None if out_dir is None else os.path.join(out_dir, "checkpoint")
    fp = setup.fingerprint or config.fingerprint()
    state = None
    if resume and ckpt and os.path.exists(ckpt + ".npz"):
        state, meta, _ = load_checkpoint(ckpt)
        if meta.get("fingerprint") != fp:
            raise ValueError(
                f"resume: the checkpoint {ckpt}.npz was written with different settings (fingerprint "
                f"{meta.get('fingerprint')} != {fp}); rerun with the same options, or without --resume / with a new -o.")
        log(f"  resumed from {ckpt}.npz at iteration {state.iteration} (loss {state.loss:.4e})"
            f"{' — already finished' if state.done else ''}")
    if state is None and setup.initial is not None:  # a warm start (moduli sweep): θ₀ carried from the last ψ
        state = LMState(theta=np.array(setup.initial, dtype=np.float64), lam=float(setup.lm.lam0),
                        loss=float(setup.problem.loss(setup.initial)))

    def sigma_hook(st, record):
        return {"sigma_train": setup.sigma_train(st.theta), "sigma_test": _sigma_or_nan(test, setup.det_test(st.theta)),
                "elapsed": time.perf_counter() - t_start}

    cols = [("iteration", ">4"), ("loss", ">11.4e"), ("sigma_train", ">10.3e"), ("sigma_test", ">10.3e"),
            ("lam", ">8.1e")]
    if isinstance(setup.solve, CGSolve):
        cols.append(("cg_iterations", ">6"))
    cols += [("step_seconds", ">7.2f"), ("elapsed", ">8.1f")]
    progress = ProgressHook(columns=tuple(cols), print_fn=log,
                            headers={"iteration": "iter", "sigma_train": "σ train", "sigma_test": "σ held-out",
                                     "lam": "λ", "cg_iterations": "CG it", "step_seconds": "step s",
                                     "elapsed": "total s"})
    all_hooks = [sigma_hook]
    if config.lm.time_budget > 0:
        all_hooks.append(time_budget(config.lm.time_budget, start=t_start))
    all_hooks.append(progress)
    if ckpt:
        all_hooks.append(CheckpointHook(ckpt, meta={"fingerprint": fp}))
    all_hooks.extend(hooks)
    lm = setup.lm if config.lm.time_budget <= 0 else replace(setup.lm, time_budget=None)
    log(progress.header())
    t = time.perf_counter()
    if config.lm.loss == "sigma" and not isinstance(setup.problem, MAProblem):
        raise ValueError(f"loss: 'sigma' reweights the dense least-squares problem; this run uses the "
                         f"{setup.solver} solver. Pass --solver dense (with --symmetry auto on a CICY), or --loss l2.")
    if config.lm.loss == "sigma" and state is not None and state.history:
        # a resumed reweighted run: its stored loss belongs to a reweighted objective; restart from its θ on L2
        state = replace(state, loss=float(setup.problem.loss(state.theta)), done=False)
    res = levenberg_marquardt(setup.problem, lm, solve=setup.solve, state=state, hooks=all_hooks)
    if config.lm.loss == "sigma" and res.status in (LMStatus.CONVERGED, LMStatus.MAX_ITER, LMStatus.NO_DECREASE):
        res = _reweight_toward_l1(setup.problem, lm, res, config.lm.irls_rounds, solve=setup.solve,
                                  hooks=all_hooks, log=log)
    timings = {**setup.timings, "gauss_newton": time.perf_counter() - t}
    if res.status is LMStatus.STOPPED and "KeyboardInterrupt" in res.message:
        log(f"  interrupted at iteration {res.iterations}; {'the checkpoint keeps it (--resume continues)' if ckpt else 'nothing written'}")
        raise KeyboardInterrupt(res.message)
    if res.status is LMStatus.TIME_BUDGET:
        log(f"  time budget {config.lm.time_budget:g} s reached (--resume with a larger --time-budget continues)")
    elif res.status is LMStatus.NONFINITE or res.status is LMStatus.NO_DECREASE:
        log(f"  {res.message}")
    theta = res.value
    return Fit(model=setup.model(theta), history=res.history, det_test=setup.det_test(theta),
               sigma_train=setup.sigma_train(theta), iterations=res.iterations, status=res.status,
               message=res.message, solver=setup.solver, info=setup.info, timings=timings)


def _reweight_toward_l1(problem: MAProblem, lm, res, rounds: int, *, solve, hooks, log):
    """Iteratively reweighted least squares from the L2 fit ``res`` toward min_θ mean w |r(θ)| (r = log det g(θ) −
    log|Ω|² − c, so mean w|r| ≈ σ for small r): each round solves min mean w' r² with w' = w / max(|r_prev|, δ),
    δ = 0.05 · mean w|r_prev| (bounded weights), by Levenberg–Marquardt to gtol from the last θ. The fixed point
    is the minimiser of the δ-smoothed L1 norm. Measured on the bicubic k = 6: held-out σ 3.92e-3 → 3.62e-3 in four
    rounds (docs/cy.md). Hand-written: scipy's least_squares(loss="soft_l1") would re-form the dense Jacobian, which
    the chunked normal equations of MAProblem avoid."""
    w0 = problem.weights
    for rnd in range(1, rounds + 1):
        r, _ = problem.residual(res.value)
        if r is None:
            break
        a = np.abs(r)
        delta = 0.05 * float(np.mean(w0 * a))
        reweighted = replace(problem, weights=w0 / np.maximum(a, delta))
        log(f"  reweighting round {rnd}/{rounds} toward the L1 norm (σ): mean w|r| = {float(np.mean(w0 * a)):.4e}, "
            f"δ = {delta:.2e}")
        state = replace(res.state, lam=float(lm.lam0), loss=float(reweighted.loss(res.value)), done=False)
        # max_iter counts from the start of the run: each round gets its own lm.max_iter steps
        res = levenberg_marquardt(reweighted, replace(lm, max_iter=state.iteration + lm.max_iter), solve=solve,
                                  state=state, hooks=hooks)
        if res.status not in (LMStatus.CONVERGED, LMStatus.MAX_ITER, LMStatus.NO_DECREASE):
            break
    return res


# ----------------------------------------------------------------------------------------------
# the baselines
# ----------------------------------------------------------------------------------------------


def _fit_donaldson(config, method: DonaldsonMethod, m, train, test, log) -> Fit:
    b, sym = choose_basis(m, method)
    log(f"  symmetry: {sym.describe()}; G in the span of {b.n_functions} invariant matrices (N_k = {b.n_monomials})")
    t = time.perf_counter()
    g, hist = balanced_metric(b, train.points, train.weights, iterations=method.iterations,
                              callback=lambda r: log(f"  {r['iteration']:>4}  change {r['change']:.3e}  {r['seconds']:.2f} s"))
    timings = {"t_operator": time.perf_counter() - t}
    model = DonaldsonModel(manifold=m, basis=b.combined(g), info={"k": method.k, "symmetry": sym.describe()})
    det_te = np.real(np.linalg.det(model.metric(test)))
    history = [{**r, "loss": r["change"]} for r in hist]
    history[-1]["sigma_test"] = sigma(test, det_te)
    ref = 3.1 / method.k ** 2 - 4.2 / method.k ** 3
    status = LMStatus.MAX_ITER
    message = (f"T-operator: {method.iterations} iterations, last relative change {hist[-1]['change']:.3g} "
               f"(more with --donaldson-iter)")
    return Fit(model=model, history=tuple(history), det_test=det_te, sigma_train=None, iterations=len(hist),
               status=status, message=message, solver="donaldson",
               info={"sigma_dklr_fit": ref, "n_functions": b.n_functions, "symmetry": sym.describe()},
               timings=timings)


def _fit_network(config, method: NetworkMethod, m, train, test, log, t_start) -> Fit:
    t = time.perf_counter()
    model, history, det_te, n_params, stopped = train_network(method, train, test, seed=config.data.seed,
                                                              time_budget=config.lm.time_budget, t_start=t_start,
                                                              log=log)
    status = LMStatus.TIME_BUDGET if stopped else LMStatus.MAX_ITER
    message = (f"Adam: {len(history)} epochs" + (f", time budget {config.lm.time_budget:g} s reached" if stopped else
                                                   " (more with --epochs)"))
    return Fit(model=model, history=tuple(history), det_test=det_te, sigma_train=None, iterations=len(history),
               status=status, message=message, solver="adam", info={"n_parameters": n_params},
               timings={"train": time.perf_counter() - t})


# ----------------------------------------------------------------------------------------------
# the job
# ----------------------------------------------------------------------------------------------


def run_cy(config: CYConfig = CYConfig(), out_dir: str | None = None, *, resume: bool = False,
           quiet: bool = False, hooks=(), client=None, cluster: ClusterSettings | None = None,
           symmetry=None, warm_start=None) -> CYResult:
    """Run the job (see the module docstring); returns metrics, model and history.

    ``hooks``: extra Levenberg–Marquardt hooks ``hook(state, record)`` run after the checkpoint of each
    step (tests interrupt a run with one that raises KeyboardInterrupt).

    ``client`` (a ``distributed.Client``) or ``cluster`` (:class:`ntkflow.cy.distributed.ClusterSettings`:
    ``--workers N`` / ``--scheduler ADDRESS``) run the matrix-free method on a dask cluster: the training
    points are sampled on the workers in blocks of ``cluster.block_size`` (seeds (seed, block)), the held-out
    points on the driver from their own stream (:func:`ntkflow.cy.distributed.heldout_seed`). A cluster this
    call starts (or joins) is closed when it returns.

    ``symmetry`` (a :class:`~ntkflow.cy.basis.Symmetry`) replaces the detected group of the Bergman method
    (a moduli sweep passes the family's common group; it joins the checkpoint's fingerprint).
    ``warm_start`` (a :class:`~ntkflow.cy.model.BergmanModel` of the same k, e.g. the previous ψ's result)
    starts the dense Bergman fit from that potential, carried over by its monomial-basis coefficients
    (:func:`basis_coefficients`) and projected on this run's whitened basis; it is refused (cold start,
    logged, ``method_info["warm_start"]``) when it is not better than the cold start, and ignored with a
    note on the other paths."""
    if not isinstance(config, CYConfig):
        raise TypeError(f"config: expected a CYConfig, received {type(config).__name__}.")
    if cluster is not None and not isinstance(cluster, ClusterSettings):
        raise TypeError(f"cluster: expected a ClusterSettings, received {type(cluster).__name__}.")
    if client is None and (cluster is None or not cluster.enabled):
        return _run_cy(config, out_dir, resume=resume, quiet=quiet, hooks=hooks, symmetry=symmetry,
                       warm_start=warm_start)
    method = config.method
    if not isinstance(method, BergmanMethod) or method.solver == "dense":
        raise ValueError(f"workers: --workers/--scheduler (a dask client) run the matrix-free primal method; received "
                         f"method {method.name}" + (f" with --solver {method.solver}" if isinstance(method, BergmanMethod)
                                                    else "") + ". Use --method bergman --solver matrix-free (or auto).")
    if getattr(method, "devices", None) is not None:  # refused, not silently dropped
        raise ValueError(f"devices: --devices {method.devices} shards the points of one process over its JAX devices; "
                         f"it does not combine with --workers/--scheduler (the points live on the dask workers). "
                         f"Drop one of them.")
    cluster = cluster if cluster is not None else ClusterSettings()
    owned = []
    if client is None:
        client, owned = open_client(cluster)
    try:
        return _run_cy(config, out_dir, resume=resume, quiet=quiet, hooks=hooks, client=client, cluster=cluster,
                       symmetry=symmetry, warm_start=warm_start)
    finally:
        for obj in owned:
            try:
                obj.close()
            except Exception:  # pragma: no cover - a cluster already gone
                pass


def _run_cy(config: CYConfig, out_dir, *, resume, quiet, hooks, client=None, cluster=None, symmetry=None,
            warm_start=None) -> CYResult:
    log = _printer(quiet)
    t_start = time.perf_counter()
    method = config.method
    if isinstance(method, NetworkMethod) and resume:
        raise ValueError("resume: the network baseline writes no checkpoint; rerun without --resume.")
    if resume and out_dir is not None and not isinstance(method, (NetworkMethod, DonaldsonMethod)) and not (
            os.path.exists(os.path.join(out_dir, "checkpoint.npz"))):
        # refused, not silently started afresh; nothing is written (checked before the directory is made)
        raise ValueError(f"resume: there is no checkpoint {os.path.join(out_dir, 'checkpoint.npz')!r} to resume from "
                         f"(the run stopped before its first step, or -o names another directory); rerun without "
                         f"--resume to start afresh.")
    if getattr(method, "devices", None) is not None:
        device_mesh(method.devices)  # too many devices is refused before anything is sampled or written
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    m = make_manifold(config.data)
    if isinstance(m, CompleteIntersection):
        return _run_cicy(config, m, out_dir, resume=resume, log=log, hooks=hooks, t_start=t_start, client=client,
                         warm_start=warm_start, symmetry=symmetry)
    t = time.perf_counter()
    if client is None:
        ps = sample(m, config.data.n_train + config.data.n_test, seed=config.data.seed, progress=False)
        train, test = ps.split(config.data.n_train)
    else:  # the training points are sampled on the workers, block by block
        train, test = None, sample(m, config.data.n_test, seed=heldout_seed(config.data.seed), progress=False)
    t_sample = time.perf_counter() - t
    points = (f"  points: {config.data.n_train} train + {config.data.n_test} held-out (seed {config.data.seed}), "
              f"sampled in {t_sample:.1f} s")
    if client is not None:
        points = (f"  points: {config.data.n_train} train, sampled on the dask workers in blocks of {cluster.block_size} "
                  f"(seed {config.data.seed}, block b), + {config.data.n_test} held-out on the driver, {t_sample:.1f} s")
    if isinstance(method, BergmanMethod) and method.kahler_class:
        raise ValueError(f"kahler_class: --kahler-class {','.join(f'{t:g}' for t in method.kahler_class)} sets the class "
                         f"on a product of projective spaces; {m.name} is a hypersurface (one class). Drop it.")
    if isinstance(method, BergmanMethod):
        b, sym = choose_basis(m, method, symmetry)
        log(f"ntkflow cy: {m.name} (N={m.n_coords}, dim={m.dim}), method bergman (frozen u^k kernel), k={method.k}")
        log(f"  symmetry: {sym.describe()}" + (" (given: the family's common group)" if symmetry is not None
                                                and method.symmetry == "auto" else ""))
        log(f"  basis: {b.description}")
        log(points)
        solver, link, why = choose_solver(method, b.n_functions, config.data.n_train + config.data.n_test, m.dim,
                                          sym.trivial)
        if client is not None and solver == "dense":
            solver, link = "matrix-free", resolve_link(method.link)
            why = f"--workers/--scheduler: the distributed path ({cluster.describe()})"
        if solver == "dense":
            log(f"  solver: primal form (u^{method.k} has a finite feature space), dense Levenberg–Marquardt on "
                f"{b.n_functions} basis functions ({why})")
            setup = _setup_dense(config, method, m, b, sym, train, test, log,
                                 warm_start=warm_start if isinstance(warm_start, BergmanModel) else None)
        else:
            log(f"  {why}: using the matrix-free primal Gauss–Newton "
                f"(primal form: u^{method.k} has a finite feature space, cost independent of the number of centres)")
            setup = _setup_matrix_free(config, method, m, link, train, test, log, client=client, cluster=cluster)
        if symmetry is not None and method.symmetry == "auto" and setup.fingerprint is None:
            # the basis depends on the group: a checkpoint of another group must not be resumed
            setup = replace(setup, fingerprint=f"{config.fingerprint()}-group-{symmetry_fingerprint(sym)}")
    elif isinstance(method, DualMethod):
        log(f"ntkflow cy: {m.name} (N={m.n_coords}, dim={m.dim}), kernel {method.kernel}, dual (kernel) form")
        log(points)
        setup = _setup_dual(config, method, m, train, test, log)
    elif isinstance(method, DonaldsonMethod):
        log(f"ntkflow cy: {m.name}, method donaldson (balanced metric, T-operator), k={method.k}")
        log(f"  points: {config.data.n_train} for the T-operator integral + {config.data.n_test} held-out")
        setup = None
    else:
        log(f"ntkflow cy: {m.name}, method network (finite width {method.width} x {method.depth}, tanh), "
            f"Adam lr {method.learning_rate}")
        setup = None
    if warm_start is not None and (setup is None or setup.initial is None) and \
            not (setup is not None and "warm_start" in setup.info):
        log(f"  warm start: not available for this path (method {method.name}"
            f"{', solver ' + setup.solver if setup is not None else ''}; it needs the dense Bergman path and a "
            f"Bergman model of the same k); cold start")
    fs = {"sigma_train": None if train is None else sigma(train, fs_det(train)), "sigma_test": sigma(test, fs_det(test))}
    if setup is not None:
        fs_train = "on the workers" if fs["sigma_train"] is None else f"{fs['sigma_train']:.4f}"
        log(f"  Fubini–Study: σ train {fs_train}, held-out {fs['sigma_test']:.4f}")
        fit = _fit_least_squares(setup, config, test, out_dir, resume=resume, log=log, hooks=hooks, t_start=t_start)
    elif isinstance(method, DonaldsonMethod):
        fit = _fit_donaldson(config, method, m, train, test, log)
    else:
        fit = _fit_network(config, method, m, train, test, log, t_start)
    return _finish(config, m, test, fit, fs, out_dir, log=log, t_start=t_start, t_sample=t_sample, client=client)


def _run_cicy(config: CYConfig, m: CompleteIntersection, out_dir, *, resume, log, hooks, t_start, client=None,
              warm_start=None, symmetry=None) -> CYResult:
    """The job on a complete intersection: exact points (:func:`sample_cicy`), then either the dense path on the
    invariant multi-degree basis of the member's group (:func:`cicy_symmetry`, or the family's common group
    ``symmetry`` of a sweep, warm-started from ``warm_start``) or the matrix-free primal problem over all
    multi-degree sections (:class:`PrimalProblem` with ``factors``: no symmetry, ``--symmetry none`` or
    ``--solver matrix-free``); the same LM, hooks, checkpoints and epilogue."""
    method = config.method
    if not isinstance(method, BergmanMethod):
        raise ValueError(f"method: complete intersections ({m.name}) run the matrix-free primal Bergman method; received "
                         f"--method {method.name}{' (dual form)' if isinstance(method, DualMethod) else ''}. Use --method "
                         f"bergman (the default) with --solver auto or matrix-free.")
    for what, bad in (("devices", getattr(method, "devices", None) is not None), ("workers", client is not None)):
        if bad:
            raise ValueError(f"{what}: not available on complete intersections yet (one process, one device); "
                             f"drop it for {m.name}.")
    factors = cicy_factors(m, method.k, method.kahler_class)
    if method.symmetry != "auto":
        sym = basis_mod.no_symmetry(m.n_coords)
    else:  # a sweep passes the family's common group, the same for every ψ
        sym = symmetry if symmetry is not None else cicy_symmetry(m)
    b = None
    if method.solver != "matrix-free" and (not sym.trivial or method.solver == "dense"):
        b = basis_mod.invariant_basis(m.n_coords, method.k, sym, exponents=factors.exponents())
        solver, link, why = choose_solver(method, b.n_functions, config.data.n_train + config.data.n_test, m.dim,
                                          sym.trivial)
    else:
        solver, link = "matrix-free", resolve_link(method.link)
        why = "--solver matrix-free" if method.solver == "matrix-free" else "no symmetry: the full Hermitian H"
    t_class = np.asarray(factors.degrees, dtype=np.float64) / method.k
    t = time.perf_counter()
    ps = sample_cicy(m, config.data.n_train + config.data.n_test, seed=config.data.seed)
    train, test = ps.split(config.data.n_train)
    t_sample = time.perf_counter() - t
    log(f"ntkflow cy: {m.name} (complete intersection in {' x '.join(f'P{n}' for n in m.ambient)}, configuration "
        f"{np.asarray(m.configuration).tolist()}, dim={m.dim}), method bergman (frozen multi-degree kernel "
        f"Π_a u_a^(k t_a)), k={method.k}, Kähler class t = {t_class.tolist()}: degrees {list(factors.degrees)}")
    log(f"  points: {config.data.n_train} train + {config.data.n_test} held-out (seed {config.data.seed}), sampled in "
        f"{t_sample:.1f} s")
    pruned = False
    n_pts = config.data.n_train + config.data.n_test
    if (b is not None and warm_start is None and b.n_functions > 1
            and choose_solver(method, 1, n_pts, m.dim, sym.trivial)[0] == "dense"):  # dense unless memory forbids it
        # the functions that are combinations of others on X add nothing but Hessian cost (P⁵[3,3] k = 8: 704 of 2320
        # independent); not on a sweep's warm start, whose carried potential is written in the full basis
        t = time.perf_counter()
        m_rows = min(b.n_functions + 1000, len(train))
        # values: ≈ 57 ns per (point, pair); pivoted QR ≈ 2Mp² − 2p³/3 flops at ≈ 6.5 GFlop/s on 2 cores (measured:
        # bicubic k = 9, 6732 × 5732, 49 s; k = 10, 12526 × 11526, 361 s; tetraquadric k = 6, 196 513 pairs, 113 s)
        est = (max(2.0 * m_rows * b.n_functions**2 - 2.0 * min(m_rows, b.n_functions)**3 / 3.0, 0.0) / 6.5e9
               + 5.7e-8 * m_rows * len(b.alpha))
        log(f"  independence on X: pivoted QR of {b.n_functions} invariant functions at {m_rows} training points "
            f"(about {est:.0f} s on 2 cores)")
        b, n_before = _independent_on_training_points(b, train.points), b.n_functions
        pruned = True
        log(f"  independent on X: {b.n_functions} of {n_before} invariant functions (values at "
            f"{m_rows} training points, pivoted QR), {time.perf_counter() - t:.1f} s")
        solver, link, why = choose_solver(method, b.n_functions, n_pts, m.dim, sym.trivial)
    log(f"  symmetry: {sym.describe()}" + (" (given: the family's common group)" if symmetry is not None
                                            and method.symmetry == "auto" else ""))
    warm = None  # the previous member's potential, carried on the dense path (same k, degrees and link)
    if (solver == "dense" and isinstance(warm_start, CICYSectionModel) and warm_start.link == "identity"
            and warm_start.k == method.k and warm_start.factors == factors):
        warm = _CarriedPotential(hermitian_basis(np.asarray(warm_start.H), factors.exponents(), method.k),
                                 warm_start.manifold)
    elif warm_start is not None:
        log(f"  warm start: not available here (it needs the dense path and a dense CICY model of the same k, "
            f"degrees and link); cold start")
    if solver == "dense":
        log(f"  basis: {b.description}")
        log(f"  solver: dense Levenberg–Marquardt on {b.n_functions} invariant multi-degree functions ({why})")
        setup = _setup_dense(config, method, m, b, sym, train, test, log, warm_start=warm, factors=factors)
    else:
        log(f"  solver: matrix-free ({why})")
        setup = _setup_cicy(config, method, m, factors, link, train, test, log)
    if symmetry is not None and method.symmetry == "auto":
        # the basis depends on the group: a checkpoint of another group must not be resumed
        setup = replace(setup, fingerprint=f"{config.fingerprint()}-group-{symmetry_fingerprint(sym)}")
    if pruned and solver == "dense":  # the basis depends on the points: a checkpoint of the full basis must not be resumed
        setup = replace(setup, fingerprint=f"{setup.fingerprint or config.fingerprint()}-independent-{b.n_functions}",
                        info={**setup.info, "n_functions": n_before, "n_independent": b.n_functions})
    fs = {"sigma_train": sigma_weighted(cicy_fs_det(train, t_class) / train.omega_sq, train.weights),
          "sigma_test": sigma_weighted(cicy_fs_det(test, t_class) / test.omega_sq, test.weights)}
    log(f"  Fubini–Study (class t): σ train {fs['sigma_train']:.4f}, held-out {fs['sigma_test']:.4f}")
    if config.output.n_curvature:  # measured: ~1 min to compile, ~0.9 s per point (P⁵[3,3], k = 4, loaded 2 cores)
        log(f"  note: the curvature at the end (--n-curvature {config.output.n_curvature}) differentiates the potential "
            f"four times by JAX: about a minute to compile and ~1 s per point on 2 CPU cores; --n-curvature 0 skips it")
    fit = _fit_least_squares(setup, config, test, out_dir, resume=resume, log=log, hooks=hooks, t_start=t_start)
    return _finish(config, m, test, fit, fs, out_dir, log=log, t_start=t_start, t_sample=t_sample)


def _setup_cicy(config, method, m, factors: Factors, link, train, test, log) -> _Setup:
    timings = {}
    t = time.perf_counter()
    backend = "numpy" if jax.default_backend() == "cpu" else "jax"
    dtype = getattr(method, "product_dtype", "float64")
    prob = PrimalProblem(train.points, train.jacobian, train.weights, np.log(train.omega_sq), method.k, backend=backend,
                         link=link, product_dtype=dtype, factors=factors, whiten_rtol=method.whiten_rtol)
    timings["features"] = time.perf_counter() - t
    n_sec = len(prob.exps)
    log(f"  matrix-free primal Gauss–Newton: sections of degrees {factors.degrees} ({n_sec} monomials, {prob.nk} kept "
        f"by the whitening at rtol {method.whiten_rtol:g}: the others vanish on X), {prob.n_params - 1} real parameters, "
        f"features {timings['features']:.1f} s")
    log("  link: " + ("log — K = (1/(kπ)) log sᵀHs̄" if link == "log" else
                      "identity — K = (1/π)[Σ_a log|z^(a)|² + sᵀHs̄ Π_a|z^(a)|^{-2k}]"))
    if prob.n_params - 1 > prob.n // 2:
        log(f"  warning: {prob.n_params - 1} parameters for {prob.n} training points — Gauss–Newton will fit the "
            f"points' Monte-Carlo noise; use more --n-train or a smaller -k.")
    tprob = PrimalProblem(test.points, test.jacobian, test.weights, np.log(test.omega_sq), method.k, whiten=False,
                          backend=backend, link=link, factors=factors)

    sigma_train = functools.partial(_primal_sigma_train, prob)
    det_test = functools.partial(_primal_det_test, prob, tprob)

    def model(theta):
        return CICYSectionModel(manifold=m, factors=factors, k=method.k, H=prob.monomial_H(prob.unvec(theta)[0]),
                                link=link, log_kappa=float(theta[-1]),
                                info={"k": method.k, "degrees": list(factors.degrees), "solver": "matrix-free",
                                      "link": link, "n_kept": prob.nk, "fingerprint": config.fingerprint()})

    lm = LMConfig(max_iter=config.lm.max_iter, lam0=config.lm.lam0, gtol=config.lm.gtol, scaling="marquardt",
                  max_tries=1, stop_on_reject=False, backtrack=3)
    info = {"link": link, "n_parameters": prob.n_params - 1, "n_sections": prob.nk, "n_monomials": n_sec,
            "degrees": list(factors.degrees), "backend": backend, "product_dtype": dtype, "symmetry": "none"}
    solve = CGSolve(rtol=method.cg_rtol, maxiter=method.cg_maxiter, preconditioner=method.preconditioner,
                    rank=method.precond_rank, seed=0, progress=_cg_progress(log))
    return _Setup(prob, solve, lm, sigma_train, det_test, model, "matrix-free", info, timings)


def _finish(config, m, test, fit: Fit, fs, out_dir, *, log, t_start, t_sample, client=None) -> CYResult:
    """The epilogue of every method: evaluate on the held-out points, one metrics schema, write."""
    t = time.perf_counter()
    evaluate = evaluate_cicy_model if isinstance(m, CompleteIntersection) else evaluate_model
    ev = evaluate(fit.model, test, n_curvature=config.output.n_curvature, det_g=fit.det_test, log=log)
    timings = {"sample": t_sample, **fit.timings, "evaluation": time.perf_counter() - t,
               "total": time.perf_counter() - t_start}
    method = config.method
    metrics = {
        "manifold": m.name, "method": method.name, "solver": fit.solver, "k": getattr(method, "k", None),
        "sigma_test": ev["sigma"], "sigma_train": fit.sigma_train,
        "kappa": ev["kappa"], "vol_kahler_test": ev["vol_kahler"], "intersection_number": ev["intersection_number"],
        "ricci_measure": ev.get("ricci_measure"), "euler": ev.get("euler"), "euler_stderr": ev.get("euler_stderr"),
        "n_curvature": ev.get("n_curvature", 0), "fs_baseline": fs,
        "iterations": fit.iterations, "converged": fit.status is LMStatus.CONVERGED,
        "status": {"name": fit.status.name, "message": fit.message},
        "timings": timings, "settings": config.to_json(), "fingerprint": config.fingerprint(),
        "method_info": fit.info,
        # peak resident memory of this process and (a dask run) of every worker, in bytes
        "memory": peak_memory(client),
    }
    if out_dir is not None:
        title = f"{m.name}, {method.name} ({fit.solver})" + (f" k={method.k}" if hasattr(method, "k") else "")
        write_outputs(out_dir, fit.model, metrics, fit.history, fit.det_test / test.omega_sq, log=log, title=title)
    train_part = "" if fit.sigma_train is None else f", train σ = {fit.sigma_train:.3e}"
    log(f"  done: held-out σ = {metrics['sigma_test']:.3e} (FS {fs['sigma_test']:.3f}){train_part}, "
        f"κ = {metrics['kappa']:.6g}, {fit.status.name.lower()} after {fit.iterations} iterations, "
        f"total {timings['total']:.1f} s")
    return CYResult(metrics=metrics, model=fit.model, history=tuple(fit.history), out_dir=out_dir)
