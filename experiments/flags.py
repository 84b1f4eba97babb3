"""The experiment modules' command line: a flag for every field of a module's config, the layers
of settings (defaults, ``--quick``, ``--config FILE``, flags), and refusals in one line."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import typing
from collections.abc import Callable
from typing import Any

from jaxcl.io import config_file, run_folder
from jaxcl.learners import HN_ORDERS


def parse_config(config_cls: type, argv: list[str] | None, *, name: str, description: str,
                 quick: dict):
    """``--field value`` for every field of ``config_cls``, plus ``--quick``, ``--config FILE``,
    ``--out DIR`` and ``--resume``/``--no-resume``, for experiment ``name``; ``--help`` shows
    every default.

    Tuple fields take several values (``--seeds 0 1 2``). Returns ``(config, out)``. The
    settings are layered: the defaults, then ``--quick``'s ``quick`` overrides, then the JSON
    file ``--config`` (:func:`jaxcl.io.config_file.read_config`: a run folder's ``config.json``
    re-runs that run), then explicit flags. A config with ``PRESETS`` (``{name: settings}``) and
    a ``preset`` field puts the named preset's settings under the file's and the flags'.
    """
    # Every flag defaults to None (so that --quick's settings yield to explicit flags); the
    # help texts name the config's defaults instead.
    parser = OneLineParser(prog=f"jaxcl run {name}", description=description)
    parser.add_argument("--quick", action="store_true", help=f"tiny settings: {quick}")
    parser.add_argument("--config", type=pathlib.Path, default=None,
                        help="a JSON file of settings, any of the options below by their field "
                             "names (a run folder's config.json re-runs that run); flags win")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="results folder (default: a fresh runs/<name>-<timestamp>)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                        help="resume from the checkpoints in --out (default: when it holds "
                             "some); --no-resume refuses such a folder")
    defaults = config_cls()
    hints = typing.get_type_hints(config_cls)
    notes = getattr(config_cls, "NOTES", {})
    helps = getattr(config_cls, "HELP", {})
    for field in dataclasses.fields(config_cls):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        text = (f"{helps[field.name]} " if field.name in helps else "") + f"(default: {shown})" + (
            f"; {notes[field.name]}" if field.name in notes else "")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        elif isinstance(default, tuple):
            kind = typing.get_args(hints[field.name])[0]
            parser.add_argument(flag, type=kind, nargs="+", default=None, help=text)
        elif field.name in getattr(config_cls, "ALL_WHEN_ZERO", ()):
            parser.add_argument(flag, type=_count_or_all(field.name), default=None,
                                help=text.replace("(default: 0)", "(default: all)"))
        else:
            kind = getattr(config_cls, "PARSE", {}).get(field.name, type(default))
            parser.add_argument(flag, type=kind, default=None, help=text)
    args = parser.parse_args(argv)
    given = [f for f in dataclasses.fields(config_cls) if getattr(args, f.name) is not None]
    if (args.resume is False and args.out is not None
            and (args.out / run_folder.CHECKPOINTS).exists()):
        raise FileExistsError(f"--out {args.out} holds checkpoints of an unfinished run and "
                              "--no-resume was given; resume it, or pass a new folder")
    values = dict(quick) if args.quick else {}
    if args.config is not None:
        values.update(config_file.read_config(config_cls, args.config, experiment=name))
    for f in dataclasses.fields(config_cls):
        value = getattr(args, f.name)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    presets = getattr(config_cls, "PRESETS", None)
    if presets is not None and "preset" in values:
        if values["preset"] not in presets:
            raise ValueError(f"preset {values['preset']!r} is not one of {tuple(presets)}")
        values = {**presets[values["preset"]], **values}
    config = dataclasses.replace(defaults, **values)
    unused = config.unused() if hasattr(config, "unused") else {}
    flags = [f"{_flag(f.name, getattr(args, f.name))} does nothing in this run: "
             f"{unused[f.name]}" for f in given if f.name in unused]
    if flags:
        raise ValueError(f"{'; '.join(flags)}; leave it out, so that config.json records only "
                         "what ran")
    return config, args.out


def _flag(name: str, value: Any) -> str:
    """A flag as it was typed: ``--order 2``, ``--seeds 0 1``, ``--no-augment``."""
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{flag}"
    return f"--{flag} " + (" ".join(map(str, value)) if isinstance(value, list) else str(value))


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose refusal is one line (the bad flag and value, and where the
    options are listed) and exit status 2, not the usage block before it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; `{self.prog} --help` lists every option\n")


def _count_or_all(name: str) -> Callable[[str], int]:
    """``--num-tasks 3`` or ``--num-tasks all`` (0 inside the config: the benchmark's own)."""
    def parse(text: str) -> int:
        if text == "all":
            return 0
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"{name} must be a positive integer or 'all' (the benchmark's own), got {text!r}")
        return value
    return parse


def parse_order(text: str) -> int | str:
    """``--order 1``, ``--order 2`` or ``--order none``: one of
    :data:`jaxcl.learners.HN_ORDERS`, as ``StrategyConfig.order`` and ``config.json`` hold it
    (the int 1 or 2, or the string ``"none"``)."""
    for order in HN_ORDERS:
        if text == str(order):
            return order
    raise argparse.ArgumentTypeError(
        f"order must be one of {', '.join(map(str, HN_ORDERS))}, got {text!r}")
