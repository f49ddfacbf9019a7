"""``ntkflow cy`` (learn a Calabi–Yau metric) and ``ntkflow eval`` (evaluate a saved model)."""
from __future__ import annotations

import argparse
import json
import os
import time

from ntkflow._checks import complex_arg as _complex

__all__ = ["register"]


def register(subparsers) -> None:
    from ntkflow.cy.job import CYConfig

    d = CYConfig()
    p = subparsers.add_parser(
        "cy",
        help="learn a Calabi-Yau metric (frozen Bergman kernel + Gauss-Newton; Donaldson and network baselines)",
        description=(
            "Fit g = g_FS + i dd-bar phi on a CY hypersurface so that det g / |Omega|^2 is constant, with phi in "
            "the symmetry-invariant degree-k (k,k) functions (the RKHS of the group-averaged u^k kernel: the "
            "frozen NTK of an infinite-width network), by Levenberg-Marquardt on log(det g/|Omega|^2) - c. "
            "Prints progress per iteration, checkpoints every iteration (Ctrl-C, then --resume), writes "
            "metrics.json, history.json, convergence.png and the model (ntkflow.load(DIR))."
        ),
    )
    p.add_argument("--manifold", default=d.manifold, help=f"preset name (default {d.manifold}): cubic-curve, quartic-k3, fermat-quintic, dwork-quintic")
    p.add_argument("--psi", type=_complex, default=None, help="family parameter (dwork-quintic)")
    p.add_argument("--hypersurface", default=None, metavar="FILE",
                   help="monomials + coefficients of any hypersurface (.json {exponents, coefficients}, .npz, or text lines 'e0 .. eN-1 re [im]')")
    p.add_argument("--random-quintic", type=int, default=None, metavar="SEED",
                   help="a quintic with random complex coefficients on all 126 monomials (no symmetry)")
    p.add_argument("--method", choices=("bergman", "donaldson", "network"), default=d.method)
    p.add_argument("-k", "--k", type=int, default=None,
                   help=f"kernel / Donaldson degree (default {d.k}; on a manifold without symmetry the Gauss-Newton "
                        f"job picks the largest k with N_k^2 <= n_train/2)")
    p.add_argument("--symmetry", choices=("auto", "none"), default=d.symmetry, help="use the detected symmetry group (auto) or not")
    p.add_argument("--n-train", type=int, default=d.n_train)
    p.add_argument("--n-test", type=int, default=d.n_test)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-iter", type=int, default=d.max_iter)
    p.add_argument("--n-curvature", type=int, default=d.n_curvature, help="held-out points for Ricci measure and Euler characteristic (0: skip)")
    p.add_argument("--whiten-rtol", type=float, default=d.whiten_rtol)
    p.add_argument("--donaldson-iter", type=int, default=d.donaldson_iter)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--depth", type=int, default=d.depth)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--time-budget", type=float, default=d.time_budget, help="network and matrix-free Gauss-Newton: stop after this many seconds (0: epochs / max-iter)")
    p.add_argument("--kernel", choices=("bergman", "gaussian", "mixture", "power"), default=d.kernel,
                   help="bergman (default): primal u^k function space (symmetric basis / matrix-free); gaussian "
                        "exp((u-1)/s2), mixture sum_j a_j u^j, power u^k: dual (kernel) form over Nystrom centres")
    p.add_argument("--s2", type=float, default=d.s2, help=f"s^2 of the Gaussian kernel (default {d.s2}); also the default mixture")
    p.add_argument("--mixture-coeffs", default=None, metavar="A0,A1,...",
                   help="mixture coefficients a_j >= 0 (default: 1/(j! s2^j), j = 0..k)")
    p.add_argument("--centers", type=int, default=d.centers, metavar="M", help=f"dual form: Nystrom centres (default {d.centers})")
    p.add_argument("--centers-method", choices=("uniform", "rpcholesky"), default=d.centers_method)
    p.add_argument("--ridge", type=float, default=d.ridge, help="dual form: RKHS penalty mu ||phi||_H^2 (default 0)")
    p.add_argument("--link", choices=("auto", "identity", "log"), default=d.link,
                   help="matrix-free u^k path: potential phi = F (identity) or K = log(s^+ H s)/(k pi) (log); "
                        "auto: log without symmetry and on the matrix-free path, identity on the symmetric dense path")
    p.add_argument("-o", "--output", default="runs/cy", help="output directory (default runs/cy)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.npz (same settings)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_run_cy)

    e = subparsers.add_parser(
        "eval",
        help="evaluate a saved model on a point file (sigma, Ricci measure, Euler characteristic)",
        description="Load DIR (written by ntkflow cy) and evaluate it on POINTS.npz (written by ntkflow sample).",
    )
    e.add_argument("model", metavar="DIR")
    e.add_argument("points", metavar="POINTS.npz")
    e.add_argument("--n-curvature", type=int, default=5000, help="points used for curvature (0: skip)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=_run_eval)


def _run_cy(args) -> int:
    from ntkflow.cy.job import CYConfig, run_cy

    hyp = args.hypersurface
    if args.random_quintic is not None:
        from ntkflow.cy.job import random_quintic

        os.makedirs(args.output, exist_ok=True)
        m = random_quintic(args.random_quintic)
        hyp = os.path.join(args.output, "hypersurface.json")
        with open(hyp, "w") as f:
            json.dump({"name": m.name, "exponents": m.exponents.tolist(),
                       "coefficients": [[c.real, c.imag] for c in m.coefficients.tolist()]}, f)
    cfg = CYConfig(manifold=args.manifold, psi=args.psi, hypersurface=hyp, method=args.method, k=CYConfig.k if args.k is None else args.k,
                   symmetry=args.symmetry, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                   max_iter=args.max_iter, n_curvature=args.n_curvature, whiten_rtol=args.whiten_rtol,
                   donaldson_iter=args.donaldson_iter, width=args.width, depth=args.depth,
                   epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                   time_budget=args.time_budget, kernel=args.kernel, s2=args.s2,
                   mixture_coeffs=_coeffs(args.mixture_coeffs), centers=args.centers,
                   centers_method=args.centers_method, ridge=args.ridge, link=args.link)
    if args.k is None:
        from dataclasses import replace

        from ntkflow.cy.job import default_k, make_manifold

        k, why = default_k(make_manifold(cfg), cfg)
        cfg = replace(cfg, k=k)
        if why and not args.quiet:
            print(f"ntkflow cy: -k {k} ({why}; pass -k to choose)", flush=True)
    run_cy(cfg, args.output, resume=args.resume, quiet=args.quiet)
    return 0


def _coeffs(text):
    if not text:
        return ()
    try:
        return tuple(float(a) for a in text.split(","))
    except ValueError:
        raise ValueError(f"mixture-coeffs: expected comma-separated numbers like 0,1,0.5, received {text!r}.") from None


def _run_eval(args) -> int:
    import numpy as np

    from ntkflow.cy.job import _jsonable, evaluate_model
    from ntkflow.cy.model import load
    from ntkflow.manifolds import load_points

    model = load(args.model)
    ps = load_points(args.points)
    if ps.manifold.n_coords != model.manifold.n_coords or not np.array_equal(
            np.sort(ps.manifold.exponents, axis=0), np.sort(model.manifold.exponents, axis=0)):
        raise ValueError(f"points: {args.points} holds points of {ps.manifold.name}, the model is for {model.manifold.name}.")
    t = time.perf_counter()
    res = evaluate_model(model, ps, n_curvature=args.n_curvature)
    res["seconds"] = time.perf_counter() - t
    if args.json:
        print(json.dumps(_jsonable(res), indent=2))
        return 0
    print(f"model {args.model} ({model.kind}, k={getattr(model, 'k', '-')}) on {len(ps)} points of {ps.manifold.name}:")
    print(f"  sigma             {res['sigma']:.4e}")
    print(f"  kappa             {res['kappa']:.6g}   (Vol_K = {res['vol_kahler']:.5g}, int J^dim = {res['intersection_number']:g})")
    if "ricci_measure" in res:
        print(f"  Ricci measure     {res['ricci_measure']:.4e}   ({res['n_curvature']} points)")
        print(f"  Euler char.       {res['euler']:.2f} +- {res['euler_stderr']:.2f}")
    print(f"  ({res['seconds']:.1f} s)")
    return 0
