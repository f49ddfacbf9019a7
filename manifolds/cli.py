"""``ntkflow sample``: sample points on a Calabi–Yau hypersurface or complete intersection and write them to an
.npz file; and the manifold options every command shares (:func:`add_manifold_options`, :func:`manifold_from_args`)."""
from __future__ import annotations

import argparse
import sys
import time

from ntkflow._checks import complex_arg

from .cicy import CICY_PRESETS, CompleteIntersection, cicy_fs_det, sample_cicy, save_cicy_points
from .cicy_files import build_cicy, is_cicy_preset
from .geometry import sigma_weighted
from .io import build_manifold
from .pointset import save_points
from .presets import PRESETS
from .sampling import sample

__all__ = ["register", "add_manifold_options", "manifold_from_args", "DEFAULT_MANIFOLD"]

#: the preset used when no manifold option is given
DEFAULT_MANIFOLD = "fermat-quintic"


def add_manifold_options(parser, *, positional: bool = False):
    """Add the manifold options to ``parser`` (an ArgumentParser, or an argument group to add them to):
    one mutually exclusive choice of ``--manifold NAME`` (a preset), ``--hypersurface FILE`` and
    ``--random-quintic SEED``, plus ``--psi`` for the preset family. ``positional=True`` also accepts the
    preset as an optional positional ``MANIFOLD`` (``ntkflow sample fermat-quintic``), in the same
    exclusive choice. Read the choice back with :func:`manifold_from_args`. Returns the group."""
    group = parser.add_argument_group("manifold (one of)") if isinstance(parser, argparse.ArgumentParser) else parser
    one = group.add_mutually_exclusive_group()
    choices = sorted(PRESETS) + sorted(CICY_PRESETS)
    names = ", ".join(sorted(PRESETS))
    cicy_names = ", ".join(sorted(CICY_PRESETS))
    if positional:
        one.add_argument("manifold_positional", metavar="MANIFOLD", nargs="?", default=None, choices=choices,
                         help=f"a preset, as --manifold (one of {names}, {cicy_names}; default: {DEFAULT_MANIFOLD})")
    one.add_argument("--manifold", default=DEFAULT_MANIFOLD, metavar="NAME", choices=choices,
                     help=f"a preset hypersurface: {names}; or a complete intersection: {cicy_names} (Fermat type; "
                          f"Dwork type with --psi, random coefficients with --cicy-seed) (default: {DEFAULT_MANIFOLD})")
    one.add_argument("--hypersurface", default=None, metavar="FILE",
                     help="any hypersurface from a file of monomials + coefficients: .json {exponents, coefficients, "
                          "name}, .npz with those arrays, or text lines 'e_0 ... e_(N-1) re [im]' (default: none)")
    one.add_argument("--random-quintic", dest="random_quintic", type=int, default=None, metavar="SEED",
                     help="a quintic with random complex Gaussian coefficients on all 126 monomials, no symmetry "
                          "(default: none)")
    one.add_argument("--cicy", default=None, metavar="FILE",
                     help="a complete intersection in a product of projective spaces from a definition file: .json "
                          "{ambient, configuration, equations: [{exponents, coefficients}]} or an .npz with the cicy_* "
                          "keys (docs/manifolds.md, Definition files) (default: none)")
    group.add_argument("--cicy-seed", dest="cicy_seed", type=int, default=None, metavar="SEED",
                       help="with a CICY preset (--manifold bicubic|tetraquadric|p5-33): every monomial of the "
                            "configuration with random complex Gaussian coefficients, no symmetry (default: none)")
    group.add_argument("--psi", type=complex_arg, default=None,
                       help="family parameter of the preset, e.g. 0.5 or 0.3+0.1j (dwork-quintic: "
                            "Q = sum z^5 - 5 psi prod z); only with a preset (default: none)")
    return group


def manifold_from_args(args):
    """The hypersurface chosen by the options of :func:`add_manifold_options` (a ValueError that names the
    option when ``--psi`` comes with a file or a random quintic, or a preset needs/refuses it)."""
    name = getattr(args, "manifold_positional", None) or args.manifold
    cicy_file, cicy_seed = getattr(args, "cicy", None), getattr(args, "cicy_seed", None)
    if cicy_file is not None or is_cicy_preset(name):
        return build_cicy(name, psi=args.psi, seed=cicy_seed, path=cicy_file)
    if cicy_seed is not None:
        raise ValueError(f"cicy_seed: --cicy-seed {cicy_seed} draws a random complete intersection of a CICY preset; "
                         f"received --manifold {name}. Pass --manifold bicubic|tetraquadric|p5-33 (or --random-quintic "
                         f"for a random quintic).")
    return build_manifold(name, psi=args.psi, hypersurface=args.hypersurface,
                          random_quintic_seed=args.random_quintic)


def register(subparsers) -> None:
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
    add_manifold_options(p, positional=True)
    p.add_argument("-n", "--n-points", dest="n", type=int, required=True, help="number of points (exactly)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--format", choices=("ntkflow", "cymetric"), default="ntkflow", help="file layout (default ntkflow)")
    p.add_argument("--val-split", type=float, default=0.1, help="cymetric format: fraction of points in X_val (default 0.1)")
    p.add_argument("--chunk", type=int, default=16384, help="lines per batch (memory; results do not depend on it) (default 16384)")
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress (default: shown for n >= 200000)")
    prog.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    p.add_argument("-o", "--output", required=True, metavar="FILE.npz", help="output file")
    p.set_defaults(func=_run_sample)


def _run_sample(args) -> int:
    m = manifold_from_args(args)
    t0 = time.perf_counter()
    if isinstance(m, CompleteIntersection):
        ps = sample_cicy(m, args.n, seed=args.seed, chunk=args.chunk, progress=args.progress)
        dt = time.perf_counter() - t0
        path = save_cicy_points(args.output, ps, format=args.format, val_split=args.val_split)
        w = ps.weights
        sig = sigma_weighted(cicy_fs_det(ps) / ps.omega_sq, w)  # the sampler's density is not J³ on a product
    else:
        ps = sample(m, args.n, seed=args.seed, chunk=args.chunk, progress=args.progress)
        dt = time.perf_counter() - t0
        path = save_points(args.output, ps, format=args.format, val_split=args.val_split)
        w = ps.weights
        sig = sigma_weighted(1.0 / w, w)  # FS: η = det g_FS/|Ω|² ∝ 1/w, so σ_FS = mean|w − w̄|/w̄
    print(
        f"wrote {len(ps)} points of {m.name} ({args.format} format) to {path}; sampled in {dt:.2f} s; "
        f"Vol_CY = mean(w) = {w.mean():.6g}, sigma_FS = {sig:.4f}",
        file=sys.stdout,
    )
    return 0
