"""Run folders: what an experiment's ``--out DIR`` holds, written at once, with its plots.

The files of a finished run, from its records (:mod:`jaxcl.io.records`, which documents
``metrics.json``) and its per-step logs; the refusal of an ``--out`` that holds a finished run;
the removal of a finished run's checkpoints. Every experiment writes one folder::

    config.json           the settings, each strategy's resolved ("strategy_settings") and
                          its provenance (versions, commit, devices, CPU): ``--config`` re-runs it
    metrics.json          :mod:`jaxcl.io.records`
    accuracy_matrix.csv   strategy, seed, row i, then R[i, 0..N-1] (seed "mean": over seeds)
    steps.csv             strategy, seed, step, experience, loss, cosine, grad_rel_diff
    summary.md            the experiment's table(s)
    *.png                 accuracy heat maps, accuracy over the stream, cosine over steps

Results are written to a temporary folder and renamed into place (:func:`write_files`): a failed
run leaves no result files, and a folder holding a finished run (or anything but an unfinished
run's ``checkpoints/``) is refused. A run that checkpoints first claims the folder
(:func:`claim`: ``checkpoints/run.json`` names the experiment and its settings), so that a rerun
of another run is refused before it can resume, overwrite or delete that run's checkpoints.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jaxcl.io import plots
from jaxcl.io.config_file import provenance
from jaxcl.io.records import SCHEMA

CHECKPOINTS = "checkpoints"
"""The folder inside ``--out`` where a run keeps its checkpoints (:mod:`jaxcl.io.checkpoints`)."""

MANIFEST = "run.json"
"""The file in ``--out/checkpoints`` that says which run the checkpoints belong to: the
experiment's name and every setting of it that can change a number (:func:`claim`)."""


def has_checkpoints(out: pathlib.Path) -> bool:
    """Whether ``out/checkpoints`` holds a checkpoint (a numbered step folder of some run)."""
    folder = pathlib.Path(out) / CHECKPOINTS
    return folder.is_dir() and any(
        step.is_dir() and step.name.isdigit()
        for run in folder.iterdir() if run.is_dir() for step in run.iterdir())


def claim(out: pathlib.Path, experiment: str, settings: dict[str, Any]) -> None:
    """Before a checkpointed run starts in ``out``: write ``out/checkpoints/run.json`` (the
    experiment and ``settings``), or, when the folder already holds checkpoints, refuse with
    :class:`jaxcl.io.checkpoints.CheckpointMismatchError` unless they are this very run's,
    naming the experiment and each setting that differs. So a rerun with other strategies or
    options never resumes, overwrites or deletes another run's checkpoints."""
    import jax

    from jaxcl.io.checkpoints import CheckpointMismatchError, fingerprint_diff

    folder = pathlib.Path(out) / CHECKPOINTS
    mine = json.loads(json.dumps({"experiment": experiment, "settings": settings}))
    if has_checkpoints(out):
        path = folder / MANIFEST
        if not path.is_file():
            raise CheckpointMismatchError(
                f"--out {out} holds checkpoints without {MANIFEST} (from an older jaxcl or "
                "another program), so it cannot say whose they are; pass another --out, or "
                f"delete {folder} to start again")
        theirs = json.loads(path.read_text())
        if theirs != mine:
            what = theirs.get("experiment", "?")
            strategies = theirs.get("settings", {}).get("strategies")
            of = f" ({', '.join(map(str, strategies))})" if strategies else ""
            raise CheckpointMismatchError(
                f"--out {out} holds the checkpoints of an unfinished run of {what}{of}; this "
                f"command differs in {fingerprint_diff(theirs, mine)}. Rerun that run's command "
                f"to resume it (its settings are in {path}), or pass another --out")
        return
    if jax.process_index() == 0:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).write_text(json.dumps(mine, indent=2))


def release(out: pathlib.Path, *, created: bool) -> None:
    """After a run that failed or was interrupted: remove what it wrote and nothing can resume
    from (``out/checkpoints`` without a checkpoint, and ``out`` itself when the run created it
    and it is left empty); a checkpoint is kept."""
    import jax

    out = pathlib.Path(out)
    if jax.process_index() != 0 or has_checkpoints(out):
        return
    folder = out / CHECKPOINTS
    if folder.is_dir():
        shutil.rmtree(folder)
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def check_out(out: pathlib.Path) -> None:
    """Refuse, before any work, an ``--out`` that is a file, holds a finished run
    (``metrics.json``), or holds anything but an unfinished run's checkpoints."""
    out = pathlib.Path(out)
    if not out.exists():
        return
    if not out.is_dir() or (out / "metrics.json").exists() or (
            any(out.iterdir()) and not (out / CHECKPOINTS).is_dir()):
        raise FileExistsError(f"--out {out} already exists and holds a finished run or other "
                              "files; pass a new folder so that earlier results stay as they are")


def drop_checkpoints(out: pathlib.Path, *, keep: bool) -> str:
    """After a finished run (its ``metrics.json`` written): remove ``out/checkpoints`` unless
    ``keep``; returns one line saying which (empty when there were none)."""
    import jax

    folder = pathlib.Path(out) / CHECKPOINTS
    if not folder.is_dir():
        return ""
    if not has_checkpoints(out):  # only the manifest: the run took no checkpoint
        if jax.process_index() == 0:
            shutil.rmtree(folder)
        return ""
    if keep:
        return f"checkpoints kept in {folder}"
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    if jax.process_index() == 0:
        shutil.rmtree(folder)
    return f"checkpoints removed ({size / 2**20:.1f} MiB; --keep-checkpoints keeps them)"


def write_files(out: pathlib.Path, files: dict[str, Any]) -> None:
    """Write ``{name: json-able object, str or bytes}`` into ``out`` at once.

    The files are written to a temporary folder first. A new ``out`` is that folder renamed into
    place; into an ``out`` that holds the run's checkpoints each file is renamed, ``metrics.json``
    last, so that a run is finished exactly when its ``metrics.json`` exists. Only process 0
    of a multi-host run writes.
    """
    import jax

    if jax.process_index() != 0:  # multi-host: one writer
        return
    out = pathlib.Path(out)
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for name, content in files.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                text = content if isinstance(content, str) else json.dumps(content, indent=2)
                (tmp / name).write_text(text)
        if out.exists() and any(out.iterdir()):
            for name in sorted(files, key=lambda n: n == "metrics.json"):
                os.replace(tmp / name, out / name)
        else:
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def config_json(config: dict[str, Any], experiment: str) -> dict[str, Any]:
    """``config.json``'s content: the settings, the ``"experiment"`` they are for (so that
    ``--config`` with another experiment's file says whose it is) and, under ``"provenance"``,
    what the run ran on (:func:`jaxcl.io.config_file.provenance`) and the day it was written
    (``"date"``, UTC)."""
    day = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return {**config, "experiment": experiment, "provenance": {**provenance(), "date": day}}


def csv_text(header: list[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV file's text: the header row, then ``rows``."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def run_files(
    *,
    experiment: str,
    config: dict[str, Any],
    seeds: list[int],
    records: dict[str, dict[str, Any]],
    steps: dict[str, dict[int, dict[str, np.ndarray]]],
    summary_md: str,
    extra: dict[str, Any] | None = None,
    paper: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every file of a run folder, from the strategy records and the per-step logs; ``paper``,
    the published numbers of the table the run reproduces, goes into ``metrics.json`` under
    ``"paper"`` when given."""
    n = len(next(iter(records.values()))["accuracy_matrix"])
    matrix_rows = []
    for label, rec in records.items():
        for r in rec["per_seed"]:
            matrix_rows += [[label, r["seed"], i, *row] for i, row in enumerate(r["accuracy_matrix"])]
        matrix_rows += [[label, "mean", i, *row] for i, row in enumerate(rec["accuracy_matrix"])]
    step_rows = []
    for label, by_seed in steps.items():
        for seed, log in by_seed.items():
            for s in range(len(log["loss"])):
                step_rows.append([label, seed, s, int(log["experience"][s]), float(log["loss"][s]),
                                  float(log["cosine"][s]), float(log["grad_rel_diff"][s])])
    config = config_json(config, experiment)
    files: dict[str, Any] = {
        "config.json": config,
        "metrics.json": {"schema": SCHEMA, "experiment": experiment, "config": config,
                         "seeds": seeds, "strategies": records, "extra": extra or {},
                         **({"paper": paper} if paper is not None else {})},
        "accuracy_matrix.csv": csv_text(["strategy", "seed", "after_experience",
                                     *[f"exp{j}" for j in range(n)]], matrix_rows),
        "steps.csv": csv_text(["strategy", "seed", "step", "experience", "loss", "cosine",
                           "grad_rel_diff"], step_rows),
        "summary.md": summary_md,
    }
    for label, rec in records.items():
        safe = label.replace(" ", "_").replace("/", "_")
        files[f"accuracy_matrix_{safe}.png"] = plots.accuracy_heatmap(
            rec["accuracy_matrix"], f"{experiment}: {label} (mean over seeds {seeds})")
    files["accuracy_over_stream.png"] = plots.accuracy_over_stream(
        {label: np.asarray(rec["accuracy_matrix"]) for label, rec in records.items()}, experiment)
    cosines = {}
    for label, by_seed in steps.items():
        log = by_seed[seeds[0]]
        later = log["experience"] > 0
        if later.any() and np.any(log["cosine"][later] != 0):
            cosines[label] = log["cosine"][later]
    if cosines:
        files["cosine_over_steps.png"] = plots.series_over_steps(
            cosines, "cos(g_CE, g_H)", f"{experiment}: task vs regulariser gradient (seed {seeds[0]})")
    return files
