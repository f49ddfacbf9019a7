"""``ntkflow sample``: sample points on a Calabi–Yau hypersurface and write them to an .npz file."""
from __future__ import annotations

import argparse
import sys
import time

from ntkflow._checks import complex_arg as _complex

__all__ = ["register"]


def register(subparsers) -> None:
    from .presets import PRESETS

    p = subparsers.add_parser(
        "sample",
        help="sample points with Monte-Carlo weights on a Calabi-Yau hypersurface",
        description=(
            "Line-intersection sampling (Shiffman-Zelditch) of exactly N points, with weights "
            "(mean(w det g_FS/|Omega|^2) = int J^dim), |Omega|^2, patch and eliminated coordinates. "
            "Formats: ntkflow (points, weights, omega_sq, patch, elim + manifold spec) or cymetric "
            "(dataset.npz: X_train/X_val = [Re z, Im z], y = [weights, |Omega|^2], val_pullbacks)."
        ),
    )
    p.add_argument("manifold", metavar="MANIFOLD", choices=sorted(PRESETS), help=f"one of {', '.join(sorted(PRESETS))}")
    p.add_argument("-n", "--n-points", dest="n", type=int, required=True, help="number of points (exactly)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--psi", type=_complex, default=None, help="family parameter (dwork-quintic: Q = sum z^5 - 5 psi prod z)")
    p.add_argument("--format", choices=("ntkflow", "cymetric"), default="ntkflow", help="file layout (default ntkflow)")
    p.add_argument("--val-split", type=float, default=0.1, help="cymetric format: fraction of points in X_val (default 0.1)")
    p.add_argument("--chunk", type=int, default=16384, help="lines per batch (memory; results do not depend on it)")
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    prog.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    p.add_argument("-o", "--output", required=True, metavar="FILE.npz", help="output file")
    p.set_defaults(func=_run_sample)


def _run_sample(args) -> int:
    import numpy as np

    from .pointset import save_points
    from .presets import preset
    from .sampling import sample

    m = preset(args.manifold, psi=args.psi)
    t0 = time.perf_counter()
    ps = sample(m, args.n, seed=args.seed, chunk=args.chunk, progress=args.progress)
    dt = time.perf_counter() - t0
    path = save_points(args.output, ps, format=args.format, val_split=args.val_split)
    w = ps.weights
    sig = float(np.mean(np.abs(w - w.mean())) / w.mean())
    print(
        f"wrote {len(ps)} points of {m.name} ({args.format} format) to {path}; sampled in {dt:.2f} s; "
        f"Vol_CY = mean(w) = {w.mean():.6g}, sigma_FS = {sig:.4f}",
        file=sys.stdout,
    )
    return 0
