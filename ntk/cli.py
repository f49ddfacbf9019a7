"""``ntkflow ntk-study``: command-line entry of :mod:`ntkflow.ntk.study`."""
from __future__ import annotations

import argparse

from .study import ARCHS, StudyConfig, run_study


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (e.g. 16,64,256), received {s!r}") from None


def _strs(s: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in s.split(",") if v.strip())


def register(subparsers) -> None:
    """Add ``ntk-study`` to the ``ntkflow`` command."""
    d = StudyConfig()
    p = subparsers.add_parser(
        "ntk-study",
        help="metric-NTK: convergence to Θ̄ with width, freezing under GD, mixing, Σ a_k u^k weights",
        description="Measure the metric-NTK's law of large numbers (slope of ‖Θ_N−Θ̄‖/‖Θ̄‖ vs N), its change "
        "during gradient descent, trained network vs frozen-NTK flow, component mixing, and the weights a_k "
        "of Θ̄ = Σ a_k u^k on C*-invariant features. Writes study.json and ntk_*.png into --out.",
    )
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--widths", type=_ints, default=d.widths, help=f"comma-separated widths (default {d.widths})")
    p.add_argument("--seeds", type=int, default=d.seeds, help=f"networks per width (default {d.seeds})")
    p.add_argument("--archs", type=_strs, default=d.archs, help=f"from {ARCHS} (default {','.join(d.archs)})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"GD steps (default {d.steps})")
    p.add_argument("--mixing-widths", type=_ints, default=d.mixing_widths)
    p.add_argument("--mixing-seeds", type=int, default=d.mixing_seeds)
    p.add_argument("--invariant-archs", type=_strs, default=d.invariant_archs)
    p.add_argument("--invariant-degree", type=int, default=d.invariant_degree)
    p.add_argument("--mc-networks", type=int, default=d.mc_networks, help="random networks for the a_k MC check")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-plots", action="store_true", help="write JSON only")
    p.set_defaults(func=_run)


def _run(args) -> int:
    for name in ("seeds", "steps", "mixing_seeds", "invariant_degree", "mc_networks"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, received {getattr(args, name)}.")
    if args.seeds < 2:
        raise ValueError(f"--seeds: need >= 2 seeds for error bars, received {args.seeds}.")
    cfg = StudyConfig(
        widths=args.widths, seeds=args.seeds, archs=args.archs, steps=args.steps,
        mixing_widths=args.mixing_widths, mixing_seeds=args.mixing_seeds,
        invariant_archs=args.invariant_archs, invariant_degree=args.invariant_degree,
        mc_networks=args.mc_networks, seed=args.seed,
    )
    run_study(cfg, args.out, plots=not args.no_plots)
    return 0
