"""``ntkflow ricci CASE``: Hamilton's Ricci flow (reference solvers) and the finite-σ generalised Ricci flow
of a frozen Gaussian kernel from a built-in or user metric; progress, checkpoints, JSON and plots."""
from __future__ import annotations

import argparse

from ntkflow.ricci.job import CASES, DOMAINS, RicciConfig, run_ricci

__all__ = ["register"]


def register(subparsers) -> None:
    d = RicciConfig()
    cases = "; ".join(f"{k}: {c.description}" for k, c in CASES.items())
    p = subparsers.add_parser(
        "ricci",
        help="Ricci flow and the finite-sigma generalised Ricci flow on T2, T3, S2, S3 (built-in or user metrics)",
        description=(
            "Flow an initial metric by Hamilton's Ricci flow dg/dt = -2 Ric (spectral reference solvers, where the "
            "case has one) and by the finite-sigma flow of a frozen Gaussian kernel of width sigma (one flow per "
            "sigma > 0; sigma = 0 is the local flow of ntkflow.ricci.local). Prints progress per accepted time step, "
            "checkpoints after each (Ctrl-C keeps the last good state; continue with --resume), stops at a "
            "singularity (extinction, neckpinch) with a message and the last good state, and writes "
            "results.json, states.npz, curvature.png, metric.png, bump.png and (several sigma) sigma_error.png. "
            f"Cases — {cases}."
        ),
    )
    g = p.add_argument_group("case")
    g.add_argument("case", nargs="?", default=None, metavar="CASE",
                   help=f"built-in case: {', '.join(CASES)} (default {d.case}; omit with --metric-file)")
    g.add_argument("--metric-file", default=None, metavar="FILE",
                   help="a Python file defining metric(x) with jax.numpy: on Tn theta -> symmetric nxn, on Sn the "
                        "embedded x -> symmetric (n+1)x(n+1) whose restriction to T_xSn is the metric (round radius r: "
                        "r**2 * eye); see docs/ricci.md (default: none)")
    g.add_argument("--domain", choices=DOMAINS, default=None, help="domain of --metric-file (default: none; required with it)")
    f = p.add_argument_group("flow")
    f.add_argument("--sigma", type=float, nargs="+", default=list(d.sigma), metavar="S",
                   help=f"kernel widths; 0 = the local flow (ntkflow.ricci.local; Hamilton's flow, also solved by the reference "
                        f"solver where the case has one); several values give the error against sigma (default {' '.join(map(str, d.sigma))})")
    f.add_argument("--t-end", type=float, default=None, help="final time (default: the case's, e.g. 90%% of the extinction time of a round sphere)")
    f.add_argument("--points", type=int, default=d.points,
                   help=f"collocation points of the finite-sigma flow (grid rules round up: k^n on Tn, 2k^2 on S2, 4k^3 on S3; default {d.points})")
    f.add_argument("--seed", type=int, default=d.seed, help="random collocation points with this seed instead of the grid rule (default: grid)")
    f.add_argument("--collocation", action=argparse.BooleanOptionalAction, default=d.collocation,
                   help="run the flows on collocation points (local flow for sigma = 0, kernel flow for sigma > 0); "
                        "--no-collocation keeps only the spectral solvers: the reference and, on conformal T2, the "
                        "spectral finite-sigma flows (default: on)")
    f.add_argument("--backend", choices=("keops", "jax", "dense"), default=d.backend, help=f"kernel backend of the finite-sigma flow (default {d.backend})")
    n = p.add_argument_group("numerics")
    n.add_argument("--degree", type=int, default=d.degree,
                   help=f"spectral degree of the local flow (sigma = 0; Fourier |k| <= L on Tn, polynomials of degree L on Sn) (default {d.degree})")
    n.add_argument("--resolution", type=int, default=d.resolution,
                   help="reference solver grid (T2: n per direction; S2: Legendre degree; S3: points on [0, pi]) (default 0: the case's)")
    n.add_argument("--method", choices=("RK45", "DOP853", "RK23"), default=d.method, help=f"Runge-Kutta pair (default {d.method})")
    n.add_argument("--rtol", type=float, default=d.rtol, help=f"relative tolerance (default {d.rtol:g})")
    n.add_argument("--atol", type=float, default=d.atol, help=f"absolute tolerance (default {d.atol:g})")
    n.add_argument("--curvature-limit", type=float, default=d.curvature_limit,
                   help=f"stop when |curvature| exceeds this: extinction / neckpinch (default {d.curvature_limit:g})")
    n.add_argument("--max-steps", type=int, default=d.max_steps, help=f"at most this many steps per flow (default {d.max_steps})")
    n.add_argument("--snapshots", type=int, default=d.snapshots, help=f"states kept for the bump picture (default {d.snapshots})")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", default=None, help="output directory (default runs/ricci/CASE)")
    o.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.json (same settings) (default: off)")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress output (default: off)")
    p.set_defaults(func=_run_ricci)


def _run_ricci(args) -> int:
    if args.case is not None and args.metric_file is not None:
        raise ValueError(f"case: pass either a built-in CASE or --metric-file, received both ({args.case!r} and {args.metric_file!r}).")
    case = args.case if args.case is not None else ("custom" if args.metric_file else RicciConfig.case)
    cfg = RicciConfig(case=case, metric_file=args.metric_file, domain=args.domain, sigma=tuple(args.sigma),
                      t_end=args.t_end, points=args.points, backend=args.backend, resolution=args.resolution,
                      method=args.method, rtol=args.rtol, atol=args.atol, curvature_limit=args.curvature_limit,
                      max_steps=args.max_steps, seed=args.seed, snapshots=args.snapshots,
                      collocation=args.collocation, degree=args.degree)
    out = args.output or f"runs/ricci/{case}"
    res = run_ricci(cfg, out, resume=args.resume, quiet=args.quiet)
    return 130 if res.status == "interrupted" else 0
