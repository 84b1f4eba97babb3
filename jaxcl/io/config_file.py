"""Config files: a run folder's ``config.json`` read back as an experiment's settings, and what
a reader needs besides the settings to reproduce a run (versions, commit, devices).

An experiment's settings are a frozen dataclass of sections (:mod:`jaxcl.config`: ``run``,
``data``, ``strategy``, ...), each setting with a type (``int``, ``float``, ``str``, ``bool``,
``tuple[int, ...]``, ``int | str``) and checked by its section. A config file is JSON holding any
subset of them, in their sections (``{"run": {"seeds": [0, 1]}, "strategy": {"order": 2}}``) or
by name alone (``{"seeds": [0, 1], "order": 2}``, the flat layout run folders held before the
sections; names are unique across sections): the ``config.json`` a run writes is one, so
``jaxcl run NAME --config runs/X/config.json`` re-runs ``X``. JSON and not a Python file
(``ml_collections``, as the Flax examples and big_vision use): the file a run writes is then the
file a user edits, it runs no code, and the dataclass is already the schema. Reading refuses unknown keys and values of the
wrong type with the key named; the dataclass's own checks then see the values as flags give them.

``config.json`` also holds, under :data:`DERIVED` keys, what a run worked out or ran on: each
strategy's resolved settings (``"strategy_settings"``), the settings that had no effect on the
run and why (``"unused"``), the experiment it is for (``"experiment"``: another experiment's file
is refused, naming it) and :func:`provenance`. Reading skips them.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import types
import typing
from typing import Any

from jaxcl import config as settings

DERIVED = ("strategy_settings", "provenance", "unused", "experiment")
"""Keys of a written ``config.json`` that are not settings: read back, they are skipped."""

PACKAGES = ("jaxcl", "jax", "jaxlib", "flax", "optax", "diffrax", "distrax", "numpy")
"""The packages whose versions :func:`provenance` records."""


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(json.dumps(v) for v in typing.get_args(hint))
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, str(hint))


def _coerce(hint: Any, value: Any) -> tuple[bool, Any]:
    """``(True, value as the field holds it)`` if ``value`` (from JSON) has type ``hint``."""
    if typing.get_origin(hint) is typing.Literal:
        ok = any(value == v and type(value) is type(v) for v in typing.get_args(hint))
        return ok, value if ok else None
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for option in typing.get_args(hint):
            ok, out = _coerce(option, value)
            if ok:
                return True, out
        return False, None
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            return False, None
        items = [_coerce(item, v) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if hint is str:
        return isinstance(value, str), value
    return False, None


def read_config(config_cls: type, path: str | pathlib.Path, *, experiment: str | None = None
                ) -> dict[str, Any]:
    """The settings in JSON file ``path`` for dataclass ``config_cls``, as ``{field: value}``
    (tuples for lists), ready for ``dataclasses.replace``; :data:`DERIVED` keys are skipped.

    Raises ``ValueError`` naming the file and the key for a file that is not a JSON object, an
    unknown key, or a value of the wrong type, and for a run's ``config.json`` whose
    ``"experiment"`` is not ``experiment`` (naming the command that re-runs it); ``OSError``
    naming the file for one that is missing, a folder, or cannot be read.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        hint = f" (a run folder's is {path / 'config.json'})" if (
            path / "config.json").is_file() else ""
        raise IsADirectoryError(f"config {path} is a folder; give a JSON file of settings{hint}")
    if not path.exists():
        raise FileNotFoundError(f"config {path}: no such file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"config {path}: not JSON ({error})") from None
    if not isinstance(data, dict):
        kind = type(data).__name__  # bad input, refused like all bad input: a ValueError
        message = f"config {path}: must be a JSON object of settings, got {kind}"
        raise ValueError(message)  # noqa: TRY004
    theirs = data.get("experiment")
    beside = path.parent / "metrics.json"  # an older run folder's config.json names none
    if theirs is None and path.name == "config.json" and beside.is_file():
        try:
            theirs = json.loads(beside.read_text()).get("experiment")
        except (OSError, ValueError, AttributeError):
            theirs = None
    if experiment is not None and theirs is not None and theirs != experiment:
        raise ValueError(f"config {path} is the config.json of a {theirs} run, not of "
                         f"{experiment}; re-run it with jaxcl run {theirs} --config {path}")
    fields = settings.fields_by_name(config_cls)
    hints = settings.types_of(config_cls)
    sections = {f.name: settings.section_type(f) for f in dataclasses.fields(config_cls)
                if settings.is_section(f)}
    items = []
    for key, value in data.items():
        if key in sections and isinstance(value, dict):
            set_by_config = {f.name for f in dataclasses.fields(sections[key])
                             if not f.metadata.get("flag", True)}  # a strategy's kind and depth
            items += [(k, v) for k, v in value.items() if k not in set_by_config]
        elif key not in DERIVED:
            items.append((key, value))
    values = {}
    for key, value in items:
        if key not in fields:
            owner = experiment or f"{config_cls.__module__}.{config_cls.__qualname__}"
            raise ValueError(f"config {path}: unknown key {key!r}; {owner} takes "
                             f"{', '.join(fields)}")
        ok, values[key] = _coerce(hints[key], value)
        if not ok:
            raise ValueError(f"config {path}: {key!r} must be {_type_name(hints[key])}, got "
                             f"{value!r}")
    return values


def _git(*args: str, cwd: pathlib.Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def provenance() -> dict[str, Any]:
    """What a run ran on: package versions (:data:`PACKAGES`; ``None`` where not installed),
    Python, jaxcl's git commit and whether tracked files differed from it (``None`` outside a
    git checkout), JAX's backend, device kind and count, the process count, and the host's CPU
    model and cores (``host``: timings are the host's, and float rounding can differ between CPU
    models, so a run re-runs bitwise on the CPU it names)."""
    import jax

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    source = pathlib.Path(__file__).resolve().parents[2]
    commit = _git("rev-parse", "HEAD", cwd=source) if (source / ".git").exists() else None
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no", cwd=source)
        dirty = None if status is None else bool(status)
    return {"versions": versions, "python": platform.python_version(), "git_commit": commit,
            "git_dirty": dirty, "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
            "process_count": jax.process_count(),
            "host": {"cpu": cpu_model(), "cores": os.cpu_count()}}


def cpu_model() -> str | None:
    """The host CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``),
    ``None`` where neither says."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None
