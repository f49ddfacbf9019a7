"""``ntkflow cy`` (learn a Calabi–Yau metric) and ``ntkflow eval`` (evaluate a saved model).

The options of ``ntkflow cy`` are built from the settings dataclasses of :mod:`ntkflow.cy.config`: one
argparse group per concern (data, method, dual form, baselines, Levenberg–Marquardt, output), each
option with the help text and default of its field. An option that belongs to a method other than the
one chosen is refused (it would be silently ignored otherwise).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields

import numpy as np

from ntkflow.cy.config import (BergmanMethod, CYConfig, DataConfig, DonaldsonMethod, DualMethod, LMSettings,
                               NetworkMethod, OutputConfig, field_default)
from ntkflow.cy.distributed import ClusterSettings
from ntkflow.cy.job import default_k, evaluate_cicy_model, evaluate_model, jsonable, make_manifold, run_cy
from ntkflow.cy.model import CICYSectionModel, load
from ntkflow.cy.spectrum import register_cli as register_spectrum
from ntkflow.cy.sweep import check_psi_list, parse_psi_list, psi_label, run_sweep
from ntkflow.manifolds import add_manifold_options, check_on_manifold, load_points
from ntkflow.manifolds.cicy import load_cicy_points

__all__ = ["register", "config_from_args"]

#: (group title, dataclass) in --help order; a flag shared by several dataclasses (-k, --symmetry) is
#: listed once, in the first group that has it
_GROUPS = (
    ("data", DataConfig),
    ("method: bergman (the frozen u^k kernel, primal form; the default)", BergmanMethod),
    ("method: dual (kernel) form over Nystrom centres (--kernel gaussian|mixture|power, or --solver dual)", DualMethod),
    ("method: donaldson (balanced metrics)", DonaldsonMethod),
    ("method: network (finite-width phi-network, Adam)", NetworkMethod),
    ("Levenberg-Marquardt", LMSettings),
    ("output", OutputConfig),
)


def _flag(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _parse_tuple(text: str) -> tuple:
    try:
        return tuple(float(a) for a in text.split(",") if a.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0,1,0.5, received {text!r}") from None


def _add_field(group, f):
    """One option from a dataclass field: its flag, type, choices, help and shown default."""
    meta = f.metadata
    d = field_default(f)
    kw = {"dest": f.name, "default": d, "help": meta["help"] + " (default: %(default)s)"}
    if meta.get("choices"):
        kw["choices"] = meta["choices"]
    if meta.get("metavar"):
        kw["metavar"] = meta["metavar"]
    if isinstance(d, tuple):
        kw["type"] = _parse_tuple
        kw["help"] = meta["help"] + " (default: none)"
    elif isinstance(d, (int, float)):
        kw["type"] = type(d)
    if f.name == "k":  # None: the job's default_k (12, or chosen from the points without symmetry)
        kw["default"] = None
        kw["help"] = f"{meta['help']} (default: {d}; without symmetry on the bergman method the largest k <= 6 with N_k^2 <= n_train/2)"
    names = [meta["short"], _flag(f)] if meta.get("short") else [_flag(f)]
    group.add_argument(*names, **kw)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cy",
        help="learn a Calabi-Yau metric (frozen Bergman kernel + Gauss-Newton; dual kernel form; Donaldson and "
             "network baselines)",
        description=(
            "Fit g = g_FS + i dd-bar phi on a CY hypersurface so that det g / |Omega|^2 is constant, with phi in "
            "the symmetry-invariant degree-k (k,k) functions (the RKHS of the group-averaged u^k kernel: the "
            "frozen NTK of an infinite-width network), by Levenberg-Marquardt on log(det g/|Omega|^2) - c. "
            "Prints progress per iteration, checkpoints every iteration (Ctrl-C, then --resume), writes "
            "metrics.json, history.json, convergence.png and the model (ntkflow.load(DIR))."
        ),
    )
    add_manifold_options(p)
    for a in p._actions:  # --psi of ntkflow cy also takes a comma list: a moduli sweep (cy/sweep.py)
        if a.dest == "psi":
            a.type = parse_psi_list
            a.metavar = "PSI[,PSI...]"
            a.help = ("family parameter of the preset, e.g. 0.5 or 0.3+0.1j (dwork-quintic: Q = sum z^5 - 5 psi prod z); "
                      "a comma list 0,0.1,...,0.9 runs a moduli sweep: one fit per psi in order, each warm-started "
                      "from the previous one, written to OUTPUT/psi_<psi>/, with the table OUTPUT/sweep.json, "
                      "sweep.md, sweep.png; only with a preset (default: none)")
    sweep = p.add_argument_group("moduli sweep", "with a comma list of --psi (docs/cy.md, Moduli sweeps)")
    sweep.add_argument("--sweep-start", choices=("warm", "cold"), default="warm",
                       help="warm: each psi starts from the previous psi's fitted potential (carried by its "
                            "monomial-basis coefficients in the family's common symmetry group); cold: every psi "
                            "from Fubini-Study, for comparison (default: %(default)s)")
    seen = set()
    for title, cls in _GROUPS:
        g = p.add_argument_group(title, " ".join((cls.__doc__ or "").split()))
        if cls is BergmanMethod:
            g.add_argument("--method", choices=("bergman", "donaldson", "network"), default="bergman",
                           help="bergman: Gauss-Newton in the frozen-kernel function space (dense, matrix-free or "
                                "dual, see --solver); donaldson, network: the baselines (default: %(default)s)")
        if cls is DualMethod:
            g.add_argument("--kernel", choices=("bergman",) + tuple(f.metadata["choices"] for f in fields(DualMethod)
                                                                      if f.name == "kernel")[0],
                           default="bergman",
                           help="bergman: the primal u^k function space; gaussian exp((u-1)/s2), mixture sum_j a_j u^j, "
                                "power u^k: the dual (kernel) form over Nystrom centres (default: %(default)s)")
        for f in fields(cls):
            if not f.metadata.get("cli", True) or f.name == "kernel":
                continue
            if _flag(f) in seen:
                continue
            seen.add(_flag(f))
            _add_field(g, f)
    dist = p.add_argument_group(
        "cluster", "the matrix-free method on dask.distributed: training points sampled on the workers in blocks "
                   "(seed, block), products by map + reduce; the driver holds only parameter-sized vectors")
    where = dist.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="start an embedded dask LocalCluster of N worker processes (default: no cluster)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="join the dask scheduler at ADDRESS, e.g. tcp://host:8786 (default: no cluster)")
    dist.add_argument("--block-size", type=int, default=ClusterSettings.block_size, metavar="POINTS",
                      help="training points per block (fixes the points with --seed) (default: %(default)s)")
    dist.add_argument("--recompute-features", action="store_true",
                      help="rebuild each block's features in every task instead of keeping them on the workers "
                           "(less worker memory, more time) (default: off)")
    out = p.add_argument_group("output files")
    out.add_argument("-o", "--output", default="runs/cy", help="output directory (default: %(default)s)")
    out.add_argument("--resume", action="store_true",
                     help="continue from OUTPUT/checkpoint.npz + .json (same settings; a larger --max-iter or "
                          "--time-budget continues further) (default: off)")
    out.add_argument("-q", "--quiet", action="store_true", help="print nothing (default: off)")
    p.set_defaults(func=_run_cy)

    e = subparsers.add_parser(
        "eval",
        help="evaluate a saved model on a point file (sigma, Ricci measure, Euler characteristic)",
        description="Load DIR (written by ntkflow cy) and evaluate it on POINTS.npz (written by ntkflow sample).",
    )
    e.add_argument("model", metavar="DIR")
    e.add_argument("points", metavar="POINTS.npz")
    e.add_argument("--n-curvature", type=int, default=5000, help="points used for curvature (0: skip) (default: %(default)s)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=_run_eval)
    register_spectrum(subparsers)  # ntkflow spectrum DIR (cy/spectrum.py)


def _method_class(args):
    """The method dataclass the options ask for, and a sentence saying why."""
    if args.method in ("donaldson", "network"):
        if args.kernel != "bergman" or args.solver != "auto":
            raise ValueError(f"method: --kernel/--solver choose among the Gauss-Newton forms of --method bergman, "
                             f"received --method {args.method} with --kernel {args.kernel} --solver {args.solver}.")
        return DonaldsonMethod if args.method == "donaldson" else NetworkMethod
    if args.kernel != "bergman" or args.solver == "dual":
        if args.solver not in ("auto", "dual"):
            raise ValueError(f"solver: --kernel {args.kernel} is a dual (kernel) form; received --solver {args.solver} "
                             f"(use --solver auto or dual, or --kernel bergman for the primal paths).")
        return DualMethod
    return BergmanMethod


def config_from_args(args) -> CYConfig:
    """CYConfig from parsed ``ntkflow cy`` options; an option of another method than the chosen one is an error."""
    mcls = _method_class(args)
    values = {}
    for _, cls in _GROUPS:
        for f in fields(cls):
            if f.metadata.get("cli", True) and hasattr(args, f.name):
                values[f.name] = getattr(args, f.name)
    # options given for another method (their value differs from the default) would be silently ignored
    used = {f.name for f in fields(mcls)} | {"n_train", "n_test", "seed", "n_curvature",
                                             "kernel", "solver"}  # kernel, solver: read by _method_class
    if mcls is BergmanMethod:
        used |= {"max_iter", "time_budget", "loss", "irls_rounds"}
    elif mcls is DualMethod:
        used |= {"max_iter", "time_budget"}
    elif mcls is NetworkMethod:
        used |= {"time_budget"}  # Donaldson's T-operator runs --donaldson-iter iterations, no LM
    for _, cls in _GROUPS:
        for f in fields(cls):
            if f.name in used or not f.metadata.get("cli", True) or f.name not in values:
                continue
            if values[f.name] is not None and values[f.name] != field_default(f):
                owner = getattr(cls, "name", None) or cls.__name__
                raise ValueError(f"{f.name}: {_flag(f)} does not apply to the chosen method {mcls.name} (it belongs to "
                                 f"{owner}); received {_flag(f)} {values[f.name]}. Drop it or choose that method.")
    psi = args.psi
    if isinstance(psi, tuple):  # --psi a,b,c: the sweep (_run_cy) replaces psi by each value in turn
        psi = psi[0]
    data = DataConfig(manifold=args.manifold, psi=psi, hypersurface=args.hypersurface,
                      random_quintic=args.random_quintic, cicy=getattr(args, "cicy", None),
                      cicy_seed=getattr(args, "cicy_seed", None), n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    kw = {f.name: values[f.name] for f in fields(mcls) if f.name in values}
    if mcls is DualMethod:  # --solver dual with the Bergman kernel: u^k in the dual form
        kw["kernel"] = "power" if args.kernel == "bergman" else args.kernel
        kw.pop("solver", None)
    if "k" in kw and kw["k"] is None:
        kw.pop("k")
    method = mcls(**kw)
    cfg = CYConfig(data=data, method=method,
                   lm=LMSettings(max_iter=args.max_iter, time_budget=args.time_budget, loss=args.loss,
                                 irls_rounds=args.irls_rounds),
                   output=OutputConfig(n_curvature=args.n_curvature))
    return cfg


def _run_cy(args) -> int:
    psis = args.psi if isinstance(args.psi, tuple) else None
    sweep = psis is not None and len(psis) > 1
    if not sweep and getattr(args, "sweep_start", "warm") != "warm":
        raise ValueError(f"sweep_start: --sweep-start {args.sweep_start} chooses how the psi of a moduli sweep start; "
                         f"received {'a single --psi ' + psi_label(psis[0])[4:] if psis else 'no --psi'}. Give a "
                         f"comma list of --psi "
                         f"(e.g. --psi 0,0.1,0.2) or drop --sweep-start.")
    if sweep and getattr(args, "cicy", None) is not None:
        raise ValueError(f"psi: --psi {','.join(psi_label(p)[4:] for p in psis)} is a moduli sweep of a preset family "
                         f"(--manifold dwork-quintic, p5-33, bicubic, tetraquadric); a --cicy file has no family "
                         f"parameter. Drop --cicy or give one ψ.")
    if sweep:  # a list for something that is not a family, or a singular member: refused before anything runs
        check_psi_list(psis, manifold=args.manifold, hypersurface=args.hypersurface, random_quintic=args.random_quintic)
    cfg = config_from_args(args)
    if getattr(args, "k", None) is None and isinstance(cfg.method, BergmanMethod):
        k, why = default_k(make_manifold(cfg.data), cfg)
        cfg = cfg.with_(k=k)
        if why and not args.quiet:
            print(f"ntkflow cy: -k {k} ({why}; pass -k to choose)", flush=True)
    cluster = None
    if args.workers is not None or args.scheduler is not None:
        cluster = ClusterSettings(workers=args.workers, scheduler=args.scheduler, block_size=args.block_size,
                                  keep_features=not args.recompute_features)
    if sweep:
        res = run_sweep(cfg, psis, args.output, warm=args.sweep_start == "warm", resume=args.resume,
                        quiet=args.quiet, cluster=cluster)
        failed = [r["psi"] for r in res.rows if r.get("status") == "NONFINITE"]
        if failed:
            print(f"ntkflow cy: error: the fit failed for psi = {', '.join(failed)} (see their metrics.json)",
                  file=sys.stderr)
            return 1
        return 0
    res = run_cy(cfg, args.output, resume=args.resume, quiet=args.quiet, cluster=cluster)
    status = (res.metrics.get("status") or {}) if isinstance(res.metrics, dict) else {}
    if status.get("name") == "NONFINITE":  # a failed fit is reported as a failure (exit 1), its files kept
        print(f"ntkflow cy: error: the fit failed: {status.get('message', 'NONFINITE')}", file=sys.stderr)
        return 1
    return 0


def _run_eval(args) -> int:
    model = load(args.model)
    if isinstance(model, CICYSectionModel):  # points of the model's complete intersection (refused off it)
        ps = load_cicy_points(args.points, manifold=model.manifold)
        t = time.perf_counter()
        res = evaluate_cicy_model(model, ps, n_curvature=args.n_curvature,
                                  log=lambda msg: print(msg, file=sys.stderr, flush=True))
        res["seconds"] = time.perf_counter() - t
        return _print_eval(args, model, ps, res)
    ps = load_points(args.points)
    if ps.manifold.n_coords != model.manifold.n_coords or not np.array_equal(
            np.sort(ps.manifold.exponents, axis=0), np.sort(model.manifold.exponents, axis=0)):
        raise ValueError(f"points: {args.points} holds points of {ps.manifold.name}, the model is for {model.manifold.name}.")
    # the same monomials are not the same manifold (Dwork psi): every point must solve the model's Q
    check_on_manifold(model.manifold, ps.points, name=f"points: {args.points} for the model {args.model}")
    t = time.perf_counter()
    res = evaluate_model(model, ps, n_curvature=args.n_curvature)
    res["seconds"] = time.perf_counter() - t
    return _print_eval(args, model, ps, res)


def _print_eval(args, model, ps, res) -> int:
    if args.json:
        print(json.dumps(jsonable(res), indent=2))
        return 0
    print(f"model {args.model} ({model.kind}, k={getattr(model, 'k', '-')}) on {len(ps)} points of {ps.manifold.name}:")
    print(f"  sigma             {res['sigma']:.4e}")
    print(f"  kappa             {res['kappa']:.6g}   (Vol_K = {res['vol_kahler']:.5g}, int J^dim = {res['intersection_number']:g})")
    if "ricci_measure" in res:
        print(f"  Ricci measure     {res['ricci_measure']:.4e}   ({res['n_curvature']} points)")
        print(f"  Euler char.       {res['euler']:.2f} +- {res['euler_stderr']:.2f}")
    print(f"  ({res['seconds']:.1f} s)")
    return 0
