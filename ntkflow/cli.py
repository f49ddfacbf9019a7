"""The ``ntkflow`` command. Each subpackage registers its own subcommands through a
``register(subparsers)`` function in its ``cli`` module; they are imported lazily so that
``ntkflow --help`` stays fast."""
from __future__ import annotations

import argparse
import importlib
import sys

# (module providing register(subparsers)); order = order in --help
_COMMAND_MODULES = (
    "ntkflow.manifolds.cli",
    "ntkflow.ntk.cli",
    "ntkflow.cy.cli",
    "ntkflow.ricci.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ntkflow",
        description="Neural-network metric flows in the infinite-width limit.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:  # a subpackage without commands yet
            if exc.name != mod_name:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"ntkflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
