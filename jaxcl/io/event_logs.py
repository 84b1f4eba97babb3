"""A run's metrics as TensorBoard event files (``tensorboard --logdir OUT/tensorboard``).

Written with tensorboardX (the ``tensorboard`` extra), one event folder per model and seed: every
per-step metric as ``train/<name>`` against the step; after experience ``i`` (as the step),
``eval/<metric>_exp_j`` for every experience ``j <= i``, their mean (``eval/aca`` for accuracy,
``eval/mean_mse`` for the test MSE), and ``time/experience_s``; ``time/compile_s`` once. The
strategies log accuracy (:func:`write_events`), the point autoencoders test MSE
(:func:`write_study_events`).
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Mapping, Sequence

import numpy as np


def summary_writer():
    """tensorboardX's ``SummaryWriter`` class, or an ``ImportError`` that says how to install it
    (run options call this up front, so a missing writer stops a run before any work)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise ImportError("--tensorboard needs tensorboardX, which is not installed: "
                          "pip install 'jaxcl[tensorboard]'") from error
    return SummaryWriter


def write_scalars(folder: str | pathlib.Path, *, steps: Mapping[str, np.ndarray],
                  matrix: np.ndarray, metric: str, mean: str, times: Sequence[float],
                  compile_s: float) -> pathlib.Path:
    """Write the per-step metrics ``steps``, the evaluation ``matrix`` (``[i, j]``: after
    experience ``i``, on ``j``; only ``j <= i`` is written) of ``metric`` and its row means as
    ``eval/<mean>``, the seconds per experience and the compile seconds as event files in
    ``folder``; return the folder."""
    SummaryWriter = summary_writer()
    folder = pathlib.Path(folder)
    if folder.exists():  # a resumed run writes the whole run again
        shutil.rmtree(folder)
    with SummaryWriter(logdir=str(folder)) as writer:
        for name, values in steps.items():
            for step, value in enumerate(np.asarray(values)):
                writer.add_scalar(f"train/{name}", float(value), step)
        matrix = np.asarray(matrix)
        for i in range(len(matrix)):
            for j in range(i + 1):
                writer.add_scalar(f"eval/{metric}_exp_{j}", float(matrix[i, j]), i)
            writer.add_scalar(f"eval/{mean}", float(matrix[i, : i + 1].mean()), i)
            writer.add_scalar("time/experience_s", float(times[i]), i)
        writer.add_scalar("time/compile_s", float(compile_s), 0)
    return folder


def write_events(folder: str | pathlib.Path, result) -> pathlib.Path:
    """A strategy's :class:`jaxcl.train.loop.RunResult`: ``train/loss``, ``train/accuracy``,
    ``train/cosine``, ``train/grad_rel_diff``, ``eval/accuracy_exp_j`` and ``eval/aca``."""
    from jaxcl.learners.base import METRIC_KEYS

    return write_scalars(folder, steps={n: result.step_metrics[n] for n in METRIC_KEYS},
                         matrix=result.matrix, metric="accuracy", mean="aca",
                         times=result.time_per_experience, compile_s=result.compile_s)


def write_study_events(folder: str | pathlib.Path, run) -> pathlib.Path:
    """A point autoencoder's :class:`jaxcl.learners.sde_flow.StudyRun`: ``train/<term>`` for every term
    of the loss, ``eval/mse_exp_j`` (test MSE on task ``j``) and ``eval/mean_mse``."""
    from jaxcl.learners.sde_flow import STEP_METRICS

    return write_scalars(folder, steps={n: run.step_metrics[n] for n in STEP_METRICS},
                         matrix=run.mse_matrix, metric="mse", mean="mean_mse",
                         times=run.time_per_task, compile_s=run.compile_s)
