"""The command line: ``jaxcl list``, ``jaxcl run <experiment> [--option value ...]`` and
``jaxcl report RUN_DIR [RUN_DIR ...] [--out PAGE.md]``.

``jaxcl run NAME ARGS`` is ``python -m experiments.NAME ARGS``: the experiment module parses its
own options (``jaxcl run NAME --help`` lists every one with its default). ``--distributed`` (before
the experiment's name) first calls ``jax.distributed.initialize()``, which reads the coordinator,
process count and process id from the environment of a TPU pod, SLURM or Open MPI job, or from
``--coordinator``, ``--num-processes`` and ``--process-id``; every process then runs the same
command, and only process 0 writes results. ``jaxcl report`` builds a results page from finished
run folders (:mod:`jaxcl.io.report`); ``--check`` compares it with the page at ``--out``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import pathlib
import pkgutil
import sys
from collections.abc import Callable
from typing import Any

from jaxcl.names import did_you_mean


def _defines_main(source: str) -> bool:
    """Whether a module's source binds ``main`` at its top level (``def main`` or ``main = ...``)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            return True
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "main" for t in node.targets):
            return True
    return False


def _sources() -> dict[str, str]:
    import experiments as package

    folder = pathlib.Path(package.__path__[0])
    return {info.name: (folder / f"{info.name}.py").read_text()
            for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_")}


def experiment_names() -> list[str]:
    """The experiment modules of the ``experiments`` package: those with a ``main`` (found
    without importing them; ``settings``, ``runner``, ``flags``, ``paper`` and the like are
    helpers)."""
    return sorted(name for name, source in _sources().items() if _defines_main(source))


def experiments() -> dict[str, str]:
    """``{name: first line of its docstring}`` for every experiment module, read from the source
    without importing it (no JAX, no TensorFlow: ``jaxcl list`` answers at once)."""
    sources = _sources()
    return {name: (ast.get_docstring(ast.parse(sources[name])) or "").strip().splitlines()[0]
            for name in experiment_names()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxcl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the experiments, one line each")
    run = commands.add_parser("run", help="run an experiment (jaxcl run NAME --help: its options)")
    run.add_argument("--distributed", action="store_true",
                     help="call jax.distributed.initialize() first (multi-host)")
    run.add_argument("--coordinator", default=None, help="host:port of process 0 (distributed)")
    run.add_argument("--num-processes", type=int, default=None, help="processes (distributed)")
    run.add_argument("--process-id", type=int, default=None, help="this process (distributed)")
    run.add_argument("experiment", help="the experiment's name (jaxcl list)")
    run.add_argument("options", nargs=argparse.REMAINDER, help="the experiment's options")
    report = commands.add_parser(
        "report", help="a results page from run folders: their tables, plots, the command that "
                       "re-runs each, and what each ran on")
    report.add_argument("folders", nargs="+", type=pathlib.Path, help="finished run folders")
    report.add_argument("--out", type=pathlib.Path, default=None,
                        help="the page to write (default: print it); plots are linked relative "
                             "to its folder")
    report.add_argument("--title", default="Results", help="the page's title")
    report.add_argument("--intro", type=pathlib.Path, default=None,
                        help="a Markdown file put under the title: what the runs are and how to "
                             "read them (the numbers stay in the runs' tables)")
    report.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if --out differs from the page the folders "
                             "give")
    args = parser.parse_args(argv)

    if args.command == "report":
        from jaxcl.io import report as reports

        try:
            if args.check:
                if args.out is None:
                    raise ValueError("--check needs --out: the page to compare")
                reason = reports.stale(args.folders, args.out, title=args.title,
                                       intro=args.intro)
                if reason is not None:
                    print(f"jaxcl report: {reason}", file=sys.stderr)
                    return 1
            elif args.out is None:
                print(reports.page(args.folders, title=args.title, intro=args.intro), end="")
            else:
                reports.write(args.folders, args.out, title=args.title, intro=args.intro)
                print(f"wrote {args.out}")
        except (ValueError, OSError) as error:
            print(f"jaxcl report: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        return 0

    if args.command == "list":
        known = experiments()
        width = max(map(len, known))
        for name, line in known.items():
            print(f"{name:<{width}}  {line}")
        return 0
    if args.experiment not in experiment_names():
        parser.error(f"experiment {args.experiment!r} is not one of "
                     f"{', '.join(experiment_names())}"
                     f"{did_you_mean(args.experiment, experiment_names())}")
    if args.distributed:
        import jax

        jax.distributed.initialize(coordinator_address=args.coordinator,
                                   num_processes=args.num_processes, process_id=args.process_id)
    def main_of_module(argv):  # imported inside run_main: a Ctrl-C while JAX loads is one line
        return importlib.import_module(f"experiments.{args.experiment}").main(argv)

    return run_main(main_of_module, args.experiment, args.options)


def run_main(main: Callable[[list[str]], Any], name: str, argv: list[str]) -> int:
    """``main(argv)`` of experiment ``name`` at the edge of the program: bad input, data, files and
    non-finite losses end in one line and exit status 1; Ctrl-C in one line saying where the
    checkpoint is, and exit status 130. ``python -m experiments.NAME`` answers the same way."""
    try:
        main(argv)
    except (ValueError, OSError, ImportError, FloatingPointError) as error:  # input, data, NaN
        print(f"jaxcl run {name}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:  # a bare one: before any checkpoint (e.g. loading)
        from jaxcl.io.checkpoints import INTERRUPTED_EARLY

        print(f"jaxcl run {name}: {str(interrupt) or INTERRUPTED_EARLY}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
