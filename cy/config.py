"""Settings of ``ntkflow cy``: one small frozen dataclass per concern, composed in :class:`CYConfig`.

    CYConfig(data=DataConfig(...), method=BergmanMethod(...) | DualMethod(...) | DonaldsonMethod(...)
             | NetworkMethod(...), lm=LMSettings(...), output=OutputConfig(...))

A setting that belongs to one method lives in that method's dataclass only (the link in
:class:`BergmanMethod`, the kernel, centres and ridge in :class:`DualMethod`), so an invalid combination
cannot be written down. Every field carries its command-line flag and help in its metadata
(``option(...)``); :mod:`ntkflow.cy.cli` builds one argparse group per dataclass from them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import ClassVar

import numpy as np

from ntkflow._checks import nonneg_float, positive_float, positive_int
from ntkflow.engine.devices import parse_devices

__all__ = ["DataConfig", "BergmanMethod", "DualMethod", "DonaldsonMethod", "NetworkMethod", "LMSettings",
           "OutputConfig", "CYConfig", "METHODS", "SOLVERS", "PRECONDITIONERS", "LINKS", "KERNELS", "CENTER_METHODS", "option",
           "field_default", "config_from_json"]

SOLVERS = ("auto", "dense", "matrix-free", "dual")
#: preconditioners of the matrix-free Gauss–Newton CG (ntkflow.solvers.CGSolve)
PRECONDITIONERS = ("jacobi", "nystrom")
LINKS = ("auto", "identity", "log")
#: kernels of the dual (kernel) form; "bergman" on the command line is the primal u^k method
KERNELS = ("gaussian", "mixture", "power")
CENTER_METHODS = ("uniform", "rpcholesky")


def option(default, help: str, *, flag: str | None = None, short: str | None = None, choices=None,
           metavar: str | None = None, cli: bool = True):
    """A dataclass field with its command-line flag (``--field-name`` unless given) and help text."""
    meta = {"help": help, "flag": flag, "short": short, "choices": choices, "metavar": metavar, "cli": cli}
    if isinstance(default, (list, dict, set)):
        raise TypeError("option: defaults must be immutable (use a tuple).")
    return field(default=default, metadata=meta)


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {allowed}, received {value!r}.")


def _integer(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, received {value!r}.")
    return int(value)


@dataclass(frozen=True)
class DataConfig:
    """The manifold and the points: training and held-out points are one sample (``seed``), split."""

    manifold: str = option("fermat-quintic", "preset name: cubic-curve, quartic-k3, fermat-quintic, dwork-quintic",
                           cli=False)
    psi: complex | None = option(None, "family parameter of the preset (dwork-quintic)", cli=False)
    hypersurface: str | None = option(None, "file of monomials + coefficients (overrides manifold)", cli=False)
    random_quintic: int | None = option(None, "seed of a quintic with random coefficients (no symmetry)", cli=False)
    cicy: str | None = option(None, "CICY definition file (.json or .npz with the cicy_* keys; overrides manifold)",
                              cli=False)
    cicy_seed: int | None = option(None, "seed of random coefficients for a CICY preset (bicubic, tetraquadric, p5-33)",
                                   cli=False)
    n_train: int = option(10_000, "training points")
    n_test: int = option(10_000, "held-out points (σ, κ, curvature)")
    seed: int = option(0, "sampling seed (held-out points are the tail of the same sample)")

    def __post_init__(self):
        positive_int("n_train", self.n_train)
        positive_int("n_test", self.n_test)
        _integer("seed", self.seed)
        if self.hypersurface is not None and self.random_quintic is not None:
            raise ValueError(f"hypersurface: give a hypersurface file or a random quintic seed, not both "
                             f"(received {self.hypersurface!r} and {self.random_quintic!r}).")
        if self.random_quintic is not None:
            _integer("random_quintic", self.random_quintic)
        if self.cicy is not None and (self.hypersurface is not None or self.random_quintic is not None):
            raise ValueError(f"cicy: a CICY file defines the manifold; received it with hypersurface="
                             f"{self.hypersurface!r}, random_quintic={self.random_quintic!r}. Give one of them.")
        if self.cicy_seed is not None:
            _integer("cicy_seed", self.cicy_seed)
            if self.cicy is not None or self.psi is not None:
                raise ValueError(f"cicy_seed: random coefficients ({self.cicy_seed}) replace the preset's; received them "
                                 f"with cicy={self.cicy!r}, psi={self.psi!r}. Drop one.")


@dataclass(frozen=True)
class BergmanMethod:
    """The primal u^k method: φ in the degree-k (k,k) functions (the RKHS of the frozen u^k kernel), fitted
    by Gauss–Newton, densely in the symmetric basis or matrix-free over the full Hermitian H."""

    name: ClassVar[str] = "bergman"
    k: int = option(12, "kernel degree (u^k)", short="-k")
    symmetry: str = option("auto", "use the detected symmetry group (auto) or not (none)", choices=("auto", "none"))
    solver: str = option("auto", "dense: Levenberg-Marquardt on the whitened symmetric basis; matrix-free: "
                                 "CG on the full Hermitian H; dual: the kernel form over Nystrom centres; auto: "
                                 "dense when the basis Hessians fit in 8 GB and the link is identity, else "
                                 "matrix-free (dual when --kernel is not bergman)", choices=SOLVERS)
    link: str = option("auto", "potential from F = s^+Hs/|z|^2k: identity phi = F or log K = log(s^+Hs)/(k pi) "
                               "(matrix-free only); auto: log without symmetry or on the matrix-free path",
                       choices=LINKS)
    whiten_rtol: float = option(1e-10, "dense path: relative singular-value cut of the basis orthogonalisation")
    dense_chunk: int = option(0, "dense path: stream the basis Hessians over chunks of this many points (0: all at "
                                 "once); keeps J0 (n x p) and the whitened Hessians (n x q x d^2) instead of the raw "
                                 "ones (2 n x p x d^2), whitens by QR + SVD, accumulates the normal equations chunk by "
                                 "chunk (docs/cy.md)")
    cg_rtol: float = option(1e-2, "matrix-free: CG relative tolerance per step", cli=False)
    cg_maxiter: int = option(60, "matrix-free: CG iterations per step", cli=False)
    preconditioner: str = option("jacobi", "matrix-free: preconditioner of the Gauss-Newton CG: jacobi (diagonal) or "
                                           "nystrom (randomized Nystrom sketch of the Jacobi-scaled Gram, built once "
                                           "per step with --precond-rank products; measured slower than jacobi on "
                                           "the quintic, whose Gram has no dominant low-rank part: docs/solvers.md)",
                                 choices=PRECONDITIONERS)
    precond_rank: int = option(64, "matrix-free: rank of the Nystrom sketch (--preconditioner nystrom)")
    product_dtype: str = option("float64", "matrix-free: dtype of the Gauss-Newton products J V, J^T U: float64, or "
                                           "float32 (opt-in: complex64 GEMMs, about 2x faster, products with "
                                           "relative error ~1e-6; the residual, the loss and sigma stay float64; "
                                           "docs/cy.md)", choices=("float64", "float32"))
    devices: int | str | None = option(None, "matrix-free and dual forms: shard the points over N JAX devices (or all visible); "
                                             "on CPU the devices are forced with XLA_FLAGS="
                                             "--xla_force_host_platform_device_count=N (a correctness check)",
                                       metavar="N|all")
    kahler_class: tuple = option((), "complete intersections: the Kaehler class t, one entry per projective factor; the "
                                     "sections have degree k*t_a in factor a (k*t_a must be integers) and the metric is "
                                     "in the class sum_a t_a J_a (empty: t = 1 in every factor)", metavar="T1,T2,...")

    def __post_init__(self):
        positive_int("k", self.k)
        t = tuple(self.kahler_class)
        for i, ta in enumerate(t):
            positive_float(f"kahler_class[{i}]", ta)
            if abs(self.k * float(ta) - round(self.k * float(ta))) > 1e-9:
                raise ValueError(f"kahler_class: k·t_a must be an integer degree, received k = {self.k}, t[{i}] = {ta} "
                                 f"(k·t = {self.k * float(ta):g}); choose t with k·t integer (e.g. -k 2 --kahler-class 1,1.5).")
        object.__setattr__(self, "kahler_class", tuple(float(ta) for ta in t))
        _choice("symmetry", self.symmetry, ("auto", "none"))
        _choice("solver", self.solver, ("auto", "dense", "matrix-free"))
        object.__setattr__(self, "devices", parse_devices(self.devices))
        if self.devices is not None and self.solver == "dense":
            raise ValueError(f"devices: --devices {self.devices} shards the matrix-free path; received --solver dense. "
                             f"Pass --solver matrix-free (or auto), or drop --devices.")
        _choice("link", self.link, LINKS)
        positive_float("whiten_rtol", self.whiten_rtol)
        if _integer("dense_chunk", self.dense_chunk) < 0:
            raise ValueError(f"dense_chunk: expected 0 (all points at once) or a positive number of points, received "
                             f"{self.dense_chunk}.")
        if self.dense_chunk and self.solver == "matrix-free":
            raise ValueError(f"dense_chunk: --dense-chunk {self.dense_chunk} streams the dense path; received --solver "
                             f"matrix-free. Pass --solver dense (or auto), or drop --dense-chunk.")
        positive_float("cg_rtol", self.cg_rtol)
        positive_int("cg_maxiter", self.cg_maxiter)
        _choice("preconditioner", self.preconditioner, PRECONDITIONERS)
        positive_int("precond_rank", self.precond_rank)
        _choice("product_dtype", self.product_dtype, ("float64", "float32"))
        if self.solver == "dense" and self.product_dtype != "float64":
            raise ValueError(f"product_dtype: --product-dtype {self.product_dtype} sets the matrix-free products; the "
                             f"dense solver factorises float64 normal equations. Pass --solver matrix-free or drop it.")
        if self.solver == "dense" and self.preconditioner != "jacobi":
            raise ValueError(f"preconditioner: {self.preconditioner!r} preconditions the matrix-free CG; the dense "
                             f"solver factorises the normal equations. Pass --solver matrix-free or drop it.")
        if self.solver == "dense" and self.link == "log":
            raise ValueError("link: 'log' runs on the full Hermitian H (solver 'matrix-free'); the dense symmetric "
                             "basis is linear in phi. Pass --solver matrix-free or --link identity.")


@dataclass(frozen=True)
class DualMethod:
    """The dual (kernel) form: φ = Σ_b α_b k(·, c_b) over Nyström centres (cy/dual.py)."""

    name: ClassVar[str] = "dual"
    kernel: str = option("gaussian", "gaussian exp((u-1)/s2), mixture sum_j a_j u^j, power u^k", choices=KERNELS)
    k: int = option(12, "degree of the power kernel and of the default mixture", short="-k")
    s2: float = option(0.2, "s^2 of the Gaussian kernel (also the default mixture's coefficients)")
    mixture_coeffs: tuple = option((), "mixture coefficients a_j >= 0 (empty: 1/(j! s2^j), j = 0..k)",
                                   metavar="A0,A1,...")
    centers: int = option(1000, "Nystrom centres m", metavar="M")
    centers_method: str = option("uniform", "how the centres are picked among the training points",
                                 choices=CENTER_METHODS)
    ridge: float = option(0.0, "RKHS penalty mu ||phi||_H^2")
    cg_rtol: float = option(1e-4, "CG relative tolerance per step", cli=False)
    cg_maxiter: int = option(300, "CG iterations per step", cli=False)
    jacobian: str = option("auto", "auto (dense J when n*m <= dense_max_entries), lazy or dense", cli=False)
    dense_max_entries: int = option(25_000_000, "largest n*m for the dense J", cli=False)
    tile: int = option(256, "rows per JAX tile of the lazy products", cli=False)
    devices: int | str | None = option(None, "shard the rows of the Jacobian products over N JAX devices (or all)",
                                       metavar="N|all")

    def __post_init__(self):
        _choice("kernel", self.kernel, KERNELS)
        positive_int("k", self.k)
        positive_float("s2", self.s2)
        object.__setattr__(self, "mixture_coeffs", tuple(float(nonneg_float(f"mixture_coeffs[{i}]", a))
                                                         for i, a in enumerate(self.mixture_coeffs)))
        positive_int("centers", self.centers)
        _choice("centers_method", self.centers_method, CENTER_METHODS)
        nonneg_float("ridge", self.ridge)
        positive_float("cg_rtol", self.cg_rtol)
        positive_int("cg_maxiter", self.cg_maxiter)
        _choice("jacobian", self.jacobian, ("auto", "lazy", "dense"))
        positive_int("dense_max_entries", self.dense_max_entries)
        positive_int("tile", self.tile)
        object.__setattr__(self, "devices", parse_devices(self.devices))


@dataclass(frozen=True)
class DonaldsonMethod:
    """Donaldson's balanced metric of degree k by the T-operator (the algebraic baseline)."""

    name: ClassVar[str] = "donaldson"
    k: int = option(12, "Donaldson degree", short="-k")
    symmetry: str = option("auto", "use the detected symmetry group (auto) or not (none)", choices=("auto", "none"))
    iterations: int = option(12, "T-operator iterations", flag="--donaldson-iter")

    def __post_init__(self):
        positive_int("k", self.k)
        _choice("symmetry", self.symmetry, ("auto", "none"))
        positive_int("iterations", self.iterations)


@dataclass(frozen=True)
class NetworkMethod:
    """The finite-width φ-network trained by Adam (the finite-width baseline)."""

    name: ClassVar[str] = "network"
    width: int = option(64, "hidden width")
    depth: int = option(3, "hidden layers")
    epochs: int = option(200, "epochs (or until --time-budget)")
    batch_size: int = option(5000, "minibatch size")
    learning_rate: float = option(1e-3, "Adam learning rate")

    def __post_init__(self):
        for name in ("width", "depth", "epochs", "batch_size"):
            positive_int(name, getattr(self, name))
        positive_float("learning_rate", self.learning_rate)


@dataclass(frozen=True)
class LMSettings:
    """Where the optimisation stops and how it starts (Levenberg–Marquardt; the network uses time_budget)."""

    max_iter: int = option(20, "Levenberg-Marquardt iterations at most (rejected steps count)")
    lam0: float = option(1e-3, "initial damping lambda", cli=False)
    gtol: float = option(1e-6, "stop when an accepted step lowers the loss by less than gtol (relative)", cli=False)
    time_budget: float = option(0.0, "stop after this many seconds on every path (0: none); --resume continues")
    loss: str = option("l2", "l2: the Monge-Ampere least squares mean w (log eta - c)^2; sigma: then reweight toward "
                             "the L1 norm mean w |log eta - c| (~ the sigma measure) by --irls-rounds rounds of "
                             "iteratively reweighted least squares (dense solver only)", choices=("l2", "sigma"))
    irls_rounds: int = option(6, "with --loss sigma: reweighting rounds (each a Levenberg-Marquardt run to gtol)")

    def __post_init__(self):
        _choice("loss", self.loss, ("l2", "sigma"))
        positive_int("irls_rounds", self.irls_rounds)
        positive_int("max_iter", self.max_iter)
        positive_float("lam0", self.lam0)
        nonneg_float("gtol", self.gtol)
        nonneg_float("time_budget", self.time_budget)


@dataclass(frozen=True)
class OutputConfig:
    """Evaluation written with the results."""

    n_curvature: int = option(2_000, "held-out points for Ricci measure and Euler characteristic (0: skip)")

    def __post_init__(self):
        if _integer("n_curvature", self.n_curvature) < 0:
            raise ValueError(f"n_curvature: must be >= 0, received {self.n_curvature}.")


METHODS = {c.name: c for c in (BergmanMethod, DualMethod, DonaldsonMethod, NetworkMethod)}


@dataclass(frozen=True)
class CYConfig:
    """Settings of ``ntkflow cy`` (defaults: the main job, ≤ 5 min on 2 cores)."""

    data: DataConfig = field(default_factory=DataConfig)
    method: BergmanMethod | DualMethod | DonaldsonMethod | NetworkMethod = field(default_factory=BergmanMethod)
    lm: LMSettings = field(default_factory=LMSettings)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self):
        for name, cls in (("data", DataConfig), ("lm", LMSettings), ("output", OutputConfig)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"{name}: expected a {cls.__name__}, received {type(getattr(self, name)).__name__}.")
        if not isinstance(self.method, tuple(METHODS.values())):
            raise TypeError(f"method: expected one of {[c.__name__ for c in METHODS.values()]}, "
                            f"received {type(self.method).__name__}.")

    def to_json(self) -> dict:
        """Nested plain-JSON settings (metrics.json ``settings``; :func:`config_from_json` reads them back)."""
        data = asdict(self.data)
        data["psi"] = None if self.data.psi is None else [complex(self.data.psi).real, complex(self.data.psi).imag]
        method = {"name": self.method.name, **asdict(self.method)}
        for key in ("mixture_coeffs", "kahler_class"):
            if key in method:
                method[key] = list(method[key])
        return {"data": data, "method": method, "lm": asdict(self.lm), "output": asdict(self.output)}

    def fingerprint(self) -> str:
        """Hash of everything that determines the optimisation trajectory (not where it stops:
        max_iter and time_budget may change on --resume; not the evaluation settings)."""
        d = self.to_json()
        d["lm"].pop("max_iter")
        d["lm"].pop("time_budget")
        if d["lm"].get("loss") == "l2":  # the default keeps the fingerprints of earlier runs
            d["lm"].pop("loss")
            d["lm"].pop("irls_rounds")
        d["method"].pop("devices", None)  # where the products run, not what they compute (equal to 1e-10)
        if d["method"].get("dense_chunk") == 0:  # the default keeps the fingerprints of earlier runs
            d["method"].pop("dense_chunk")
        if d["method"].get("kahler_class") == []:  # the default (t = 1) keeps the fingerprints of earlier runs
            d["method"].pop("kahler_class")
        if d["method"].get("product_dtype") == "float64":  # the default keeps the fingerprints of earlier runs
            d["method"].pop("product_dtype")
        if d["method"].get("preconditioner") == "jacobi":  # the default keeps the fingerprints of earlier runs
            d["method"].pop("preconditioner")
            d["method"].pop("precond_rank")
        d.pop("output")
        for key in ("cicy", "cicy_seed"):  # absent (None) on hypersurfaces: the fingerprints of earlier runs stay
            if d["data"].get(key) is None:
                d["data"].pop(key, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def with_(self, **changes) -> "CYConfig":
        """A copy with fields of the parts replaced by name (``cfg.with_(k=6, max_iter=3)``)."""
        parts = {name: getattr(self, name) for name in ("data", "method", "lm", "output")}
        for key, value in changes.items():
            owner = [n for n, p in parts.items() if key in {f.name for f in fields(p)}]
            if not owner:
                raise ValueError(f"{key}: not a setting of {[type(p).__name__ for p in parts.values()]}.")
            parts[owner[0]] = replace(parts[owner[0]], **{key: value})
        return CYConfig(**parts)


def config_from_json(d: dict) -> CYConfig:
    """Inverse of :meth:`CYConfig.to_json`."""
    data = dict(d["data"])
    if data.get("psi") is not None:
        data["psi"] = complex(*data["psi"])
    method = dict(d["method"])
    cls = METHODS[method.pop("name")]
    for key in ("mixture_coeffs", "kahler_class"):
        if key in method:
            method[key] = tuple(method[key])
    return CYConfig(DataConfig(**data), cls(**method), LMSettings(**d["lm"]), OutputConfig(**d["output"]))


def field_default(f):
    """The default of a dataclass field (``default`` or ``default_factory()``)."""
    return f.default if f.default is not MISSING else f.default_factory()
