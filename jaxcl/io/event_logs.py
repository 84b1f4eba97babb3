"""A run's metrics as TensorBoard event files (``tensorboard --logdir OUT/tensorboard``).

Written with tensorboardX (the ``tensorboard`` extra), one event folder per model and seed, from
the loop's one result type (:class:`jaxcl.train.loop.RunResult`) by :func:`write_events`: every
per-step metric the learner logs as ``train/<name>`` against the step; after experience ``i``
(as the step) the evaluation matrix's row as ``eval/<metric>_exp_j`` and its mean (accuracy:
``eval/accuracy_exp_j`` for ``j <= i`` and ``eval/aca``; test MSE: ``eval/mse_exp_j`` for every
task ``j``, as the SDE study evaluates them all after each, and ``eval/mean_mse``; the mean is
over the experiences trained so far, ``j <= i``), and ``time/experience_s``; ``time/compile_s``
once.
"""

from __future__ import annotations

import pathlib
import shutil
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from jaxcl.train.loop import RunResult


def summary_writer() -> type:
    """tensorboardX's ``SummaryWriter`` class, or an ``ImportError`` that says how to install it
    (run options call this up front, so a missing writer stops a run before any work)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise ImportError("--tensorboard needs tensorboardX, which is not installed: "
                          "pip install 'jaxcl[tensorboard]'") from error
    return SummaryWriter


EVALUATIONS = {"accuracy": ("accuracy", "aca", False), "mse": ("mse", "mean_mse", True)}
"""A result's ``evaluation`` -> (the tags' metric, the tag of the mean of ``j <= i``, whether every
entry of a row is written or only ``j <= i``)."""


def write_events(folder: str | pathlib.Path, result: RunResult) -> pathlib.Path:
    """Write a :class:`jaxcl.train.loop.RunResult` as event files in ``folder`` (module
    docstring): ``result.step_metrics`` but ``"experience"`` as ``train/<name>``, ``result.matrix``
    per ``result.evaluation``, ``result.time_per_experience`` and ``result.compile_s``; return the
    folder. A folder that exists (a resumed run's) is written again from the start."""
    if result.evaluation not in EVALUATIONS:
        raise ValueError(f"evaluation={result.evaluation!r} is not one of {tuple(EVALUATIONS)}")
    metric, mean, every = EVALUATIONS[result.evaluation]
    SummaryWriter = summary_writer()
    folder = pathlib.Path(folder)
    if folder.exists():  # a resumed run writes the whole run again
        shutil.rmtree(folder)
    with SummaryWriter(logdir=str(folder)) as writer:
        for name, values in result.step_metrics.items():
            if name == "experience":
                continue
            for step, value in enumerate(np.asarray(values)):
                writer.add_scalar(f"train/{name}", float(value), step)
        matrix = np.asarray(result.matrix)
        for i in range(len(matrix)):
            for j, value in enumerate(matrix[i] if every else matrix[i, : i + 1]):
                writer.add_scalar(f"eval/{metric}_exp_{j}", float(value), i)
            writer.add_scalar(f"eval/{mean}", float(matrix[i, : i + 1].mean()), i)
            writer.add_scalar("time/experience_s", float(result.time_per_experience[i]), i)
        writer.add_scalar("time/compile_s", float(result.compile_s), 0)
    return folder
