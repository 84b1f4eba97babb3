"""The experiment modules' command line: a flag for every setting of a module's config, generated
from its fields (:mod:`jaxcl.config`), the layers of settings (defaults, ``--quick``,
``--config FILE``, flags), and refusals in one line.

A loop over the fields on :mod:`argparse` rather than a library that derives a command line from
dataclasses (tyro, simple-parsing): what is jaxcl's own here is not the parsing but its rules
(the four layers; a flag that has no effect in the run refused with the reason; ``all`` for a
count; one-line errors), and the flags keep the flat names the docs and run folders use."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import typing
from collections.abc import Callable
from typing import Any

from jaxcl import config as settings
from jaxcl.io import config_file, run_folder


def parse_config(config_cls: type, argv: list[str] | None, *, name: str, description: str,
                 quick: dict):
    """``--name value`` for every setting of ``config_cls`` (:func:`jaxcl.config.setting`, in
    whatever section it lives), plus ``--quick``, ``--config FILE``, ``--out DIR`` and
    ``--resume``/``--no-resume``, for experiment ``name``; ``--help`` shows each setting's help
    and default.

    Tuple settings take several values (``--seeds 0 1 2``). Returns ``(config, out)``. The
    settings are layered: the defaults, then ``--quick``'s ``quick`` overrides, then the JSON
    file ``--config`` (:func:`jaxcl.io.config_file.read_config`: a run folder's ``config.json``
    re-runs that run), then explicit flags. A config with ``PRESETS`` (``{name: settings}``) and
    a ``preset`` setting puts the named preset's settings under the file's and the flags'.
    """
    # Every flag defaults to None (so that --quick's settings yield to explicit flags); the
    # help texts name the config's defaults instead.
    parser = OneLineParser(prog=f"jaxcl run {name}", description=description)
    parser.add_argument("--quick", action="store_true", help=f"tiny settings: {quick}")
    parser.add_argument("--config", type=pathlib.Path, default=None,
                        help="a JSON file of settings, any of the options below by their names "
                             "(a run folder's config.json re-runs that run); flags win")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="results folder (default: a fresh runs/<name>-<timestamp>)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                        help="resume from the checkpoints in --out (default: when it holds "
                             "some); --no-resume refuses such a folder")
    defaults = settings.flat(config_cls())
    fields = settings.fields_by_name(config_cls)
    notes = getattr(config_cls, "NOTES", {})
    groups = _groups(parser, config_cls)
    types = settings.types_of(config_cls)
    for field in fields.values():
        default = defaults[field.name]
        flag = "--" + field.name.replace("_", "-")
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        note = notes.get(field.name, field.metadata.get("note", ""))
        text = f"{field.metadata.get('help', '')} (default: {shown})" + (
            f"; {note}" if note else "")
        group = groups[field.name]
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=text)
        elif isinstance(default, tuple):
            kind = typing.get_args(types[field.name])[0]
            group.add_argument(flag, type=kind, nargs="+", default=None, help=text)
        elif field.metadata.get("all_when_zero"):
            group.add_argument(flag, type=_count_or_all(field.name), default=None,
                               help=text.replace("(default: 0)", "(default: all)"))
        else:
            parse = field.metadata.get("parse")
            kind = _argparse_type(parse) if parse is not None else type(default)
            group.add_argument(flag, type=kind, default=None, help=text)
    args = parser.parse_args(argv)
    given = [n for n in fields if getattr(args, n) is not None]
    if (args.resume is False and args.out is not None
            and (args.out / run_folder.CHECKPOINTS).exists()):
        raise FileExistsError(f"--out {args.out} holds checkpoints of an unfinished run and "
                              "--no-resume was given; resume it, or pass a new folder")
    values = dict(quick) if args.quick else {}
    if args.config is not None:
        values.update(config_file.read_config(config_cls, args.config, experiment=name))
    for n in given:
        value = getattr(args, n)
        values[n] = tuple(value) if isinstance(value, list) else value
    presets = getattr(config_cls, "PRESETS", None)
    if presets is not None and "preset" in values:
        if values["preset"] not in presets:
            raise ValueError(f"preset {values['preset']!r} is not one of {tuple(presets)}")
        values = {**presets[values["preset"]], **values}
    config = settings.replace(config_cls(), **values)
    unused = config.unused() if hasattr(config, "unused") else {}
    flags = [f"{_flag(n, getattr(args, n))} does nothing in this run: {unused[n]}"
             for n in given if n in unused]
    if flags:
        raise ValueError(f"{'; '.join(flags)}; leave it out, so that config.json records only "
                         "what ran")
    return config, args.out


def _groups(parser: argparse.ArgumentParser, config_cls: type) -> dict[str, Any]:
    """``--help``'s group of every setting, by name: one per section (its name and its class's
    summary line), and the experiment's own settings last."""
    out, own = {}, None
    for field in dataclasses.fields(config_cls):
        if settings.is_section(field):
            cls = settings.section_type(field)
            about = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ").rstrip(".")
            group = parser.add_argument_group(f"{field.name}: {about}" if about else field.name)
            out.update({f.name: group for _, f in settings.settings_of(cls)})
        elif field.metadata.get("flag", True):
            if own is None:
                own = parser.add_argument_group(
                    "this experiment", "what it runs, and the settings of its own")
            out[field.name] = own
    return out


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` whose ``ValueError`` is argparse's one-line refusal."""
    def read(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    read.__name__ = getattr(parse, "__name__", "value")
    return read


def _flag(name: str, value: Any) -> str:
    """A flag as it was typed: ``--order 2``, ``--seeds 0 1``, ``--no-augment``."""
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{flag}"
    return f"--{flag} " + (" ".join(map(str, value)) if isinstance(value, list) else str(value))


class WholeFlagsFormatter(argparse.HelpFormatter):
    """Help text wrapped at spaces only, so that a flag named in it (``--data-path``) is never
    split at its hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose refusal is one line (the bad flag and value, and where the
    options are listed) and exit status 2, not the usage block before it; its help never splits
    a flag (:class:`WholeFlagsFormatter`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=WholeFlagsFormatter, **kwargs)

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
