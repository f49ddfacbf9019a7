"""The ``ntkflow`` command. Each subpackage registers its own subcommands through a
``register(subparsers)`` function in its ``cli`` module; they are imported lazily so that
``ntkflow --help`` stays fast.

Exit statuses and errors (one line ``ntkflow CMD: error: ...`` on stderr, no traceback):

- 0 success; 2 usage or bad input (argparse errors, ``ValueError``/``TypeError`` from the settings checks);
- 1 runtime failure: a file that cannot be read or written (:class:`ntkflow.io.NtkflowFileError`, any
  ``OSError`` such as a missing, unreadable or existing file, a full disk), an output directory locked by
  another run (:class:`ntkflow.io.RunLockedError`), an unreachable dask scheduler (``ConnectionError``,
  ``TimeoutError``), out of memory, or a subcommand reporting failure (e.g. a fit that did not converge);
- 130 interrupted (Ctrl-C): what was checkpointed stays, ``--resume`` continues.

Anything else is a bug and ends in a traceback; ``ntkflow --debug CMD ...`` shows the traceback of the
expected failures too. ``ntkflow cy`` and ``ntkflow ricci`` hold :class:`ntkflow.io.RunLock` on their
output directory while they run.
"""
from __future__ import annotations

import argparse
import importlib
import pathlib
import subprocess
import sys

from ntkflow.io import NtkflowFileError, RunLock


def _ricci_default_output(args) -> str:
    """ntkflow ricci's default output directory (as ricci/cli.py forms it): runs/ricci/CASE."""
    case = args.case if args.case is not None else (
        "custom" if args.metric_file else importlib.import_module("ntkflow.ricci.job").RicciConfig.case)
    return f"runs/ricci/{case}"


#: commands that write the output directory ``args.output`` (locked while they run) -> its default when None
_LOCKED_OUTPUT = {"cy": None, "ricci": _ricci_default_output}

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
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of the one-line message")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:  # a subpackage without commands yet
            if exc.name != mod_name:
                raise
            continue
        mod.register(sub)
    _register_bench(sub)
    return parser


def _register_bench(sub) -> None:
    """``ntkflow bench``: runs ``python -m bench`` of the repository checkout around the working directory.

    The benchmarks (bench/) are not part of the installed package and the package never imports them;
    this command only starts them, as a separate process, from a checkout."""
    p = sub.add_parser(
        "bench", help="run the benchmark suite of this checkout (python -m bench)",
        description="Runs `python -m bench` (bench/suite.py) of the ntkflow repository checkout that contains the "
                    "working directory: every benchmark section, JSON + plots under --out, machine, devices and "
                    "library versions recorded; --update-readme rewrites README's performance tables. The "
                    "benchmarks are not installed with the package: run this inside a clone of the repository.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="CI-sized sections (a few minutes on 2 cores)")
    mode.add_argument("--full", action="store_true", help="the acceptance sizes (hours on 2 cores)")
    p.add_argument("--out", default=None, help="output folder (default: a fresh bench/results/run-<mode>-<time>)")
    p.add_argument("--sections", nargs="+", default=None, metavar="NAME", help="run only these sections")
    p.add_argument("--update-readme", action="store_true", help="rewrite README.md's bench region from this run")
    p.add_argument("--list", action="store_true", help="list the sections and their commands, run nothing")
    p.set_defaults(func=_run_bench)


def bench_checkout(start: pathlib.Path) -> pathlib.Path | None:
    """The nearest folder at or above ``start`` holding ``bench/suite.py`` and ``pyproject.toml``, else None."""
    for d in (start, *start.parents):
        if (d / "bench" / "suite.py").is_file() and (d / "pyproject.toml").is_file():
            return d
    return None


def _run_bench(args) -> int:
    root = bench_checkout(pathlib.Path.cwd().resolve())
    if root is None:
        raise FileNotFoundError(
            f"no ntkflow repository checkout at or above {pathlib.Path.cwd()} (looked for bench/suite.py); the "
            "benchmarks are not installed with the package: cd into a clone of the ntkflow repository and run "
            "`ntkflow bench --quick` (or `python -m bench --quick`) there")
    argv = ["--quick" if args.quick else "--full"]
    if args.out is not None:
        argv += ["--out", str(pathlib.Path(args.out).resolve())]
    if args.sections:
        argv += ["--sections", *args.sections]
    argv += ["--update-readme"] * args.update_readme + ["--list"] * args.list
    print(f"ntkflow bench: python -m bench {' '.join(argv)}  (in {root})", flush=True)
    return subprocess.call([sys.executable, "-m", "bench", *argv], cwd=root)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        print("ntkflow: error: choose a COMMAND (`ntkflow --help` lists them)", file=sys.stderr)
        return 2
    try:
        rc = _run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\nntkflow {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        status = exit_status(exc)
        if status is None or args.debug:
            raise
        print(f"ntkflow {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return status
    return int(rc or 0)


def _run(args) -> int:
    if args.command in _LOCKED_OUTPUT and hasattr(args, "output"):
        out = args.output
        if out is None:
            out = _LOCKED_OUTPUT[args.command](args)
        with RunLock(out, command="ntkflow " + " ".join(sys.argv[1:] or [args.command])):
            return args.func(args)
    return args.func(args)


def exit_status(exc: BaseException) -> int | None:
    """The exit status of an expected failure (module docstring), None for a bug (traceback)."""
    if isinstance(exc, (NtkflowFileError, OSError, MemoryError)):  # OSError: ConnectionError, TimeoutError too
        return 1
    if isinstance(exc, (ValueError, TypeError)):
        return 2
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text = f"{text} ({exc.filename})"
    if isinstance(exc, MemoryError):
        text = f"out of memory ({text}); use fewer points or a smaller basis"
    return text


if __name__ == "__main__":
    raise SystemExit(main())
