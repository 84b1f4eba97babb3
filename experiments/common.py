"""What every experiment module shares at its edge: a command line from a config dataclass, and a
results folder written atomically (a failed run never leaves half-written or overwritten results).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any


def parse_config(config_cls: type, argv: list[str] | None, *, description: str, quick: dict):
    """``--field value`` for every field of ``config_cls``, plus ``--quick`` and ``--out DIR``.

    Returns ``(config, out)``. ``--quick`` applies the ``quick`` overrides first; explicit flags win.
    """
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"tiny settings: {quick}")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="results folder (default: a fresh runs/<name>-<timestamp>)")
    defaults = config_cls()
    for field in dataclasses.fields(config_cls):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"(default: {default})")
        else:
            parser.add_argument(flag, type=type(default), default=None, help=f"(default: {default})")
    args = parser.parse_args(argv)
    values = dict(quick) if args.quick else {}
    values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
                   if getattr(args, f.name) is not None})
    return dataclasses.replace(defaults, **values), args.out


def default_out(name: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return pathlib.Path("runs") / f"{name}-{stamp}"


def check_out(out: pathlib.Path) -> None:
    """Refuse, before any work, an ``--out`` that is a file or a folder with anything in it."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} already exists and is not an empty folder; "
                              "pass a new folder so that earlier results stay as they are")


def write_results(out: pathlib.Path, files: dict[str, Any]) -> None:
    """Write ``{name: json-able object or str}`` into ``out`` all at once.

    Everything goes to a temporary folder beside ``out`` first, which is then renamed to ``out``
    (an empty ``out`` is replaced): readers see no results or all of them.
    """
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for name, content in files.items():
            text = content if isinstance(content, str) else json.dumps(content, indent=2)
            (tmp / name).write_text(text)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
