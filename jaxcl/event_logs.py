"""A run's metrics as TensorBoard event files (``tensorboard --logdir OUT/tensorboard``).

Written with tensorboardX (the ``tensorboard`` extra), one event folder per strategy and seed:
per training step ``train/loss``, ``train/accuracy``, ``train/cosine`` and
``train/grad_rel_diff``; per experience ``i`` (as the step) ``eval/accuracy_exp_j`` for every
experience ``j <= i``, ``eval/aca`` (their mean) and ``time/experience_s``; and
``time/compile_s`` once.
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np

from jaxcl.engine import StreamResult
from jaxcl.strategies.base import METRIC_KEYS


def write_events(folder: str | pathlib.Path, result: StreamResult) -> pathlib.Path:
    """Write ``result``'s metrics as event files in ``folder``; return the folder."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise ImportError("TensorBoard logs need tensorboardX: pip install 'jaxcl[tensorboard]'"
                          ) from error
    folder = pathlib.Path(folder)
    if folder.exists():  # a resumed run writes the whole run again
        shutil.rmtree(folder)
    with SummaryWriter(logdir=str(folder)) as writer:
        for name in METRIC_KEYS:
            for step, value in enumerate(np.asarray(result.step_metrics[name])):
                writer.add_scalar(f"train/{name}", float(value), step)
        matrix = np.asarray(result.accuracy_matrix)
        for i in range(len(matrix)):
            for j in range(i + 1):
                writer.add_scalar(f"eval/accuracy_exp_{j}", float(matrix[i, j]), i)
            writer.add_scalar("eval/aca", float(matrix[i, : i + 1].mean()), i)
            writer.add_scalar("time/experience_s", float(result.time_per_experience[i]), i)
        writer.add_scalar("time/compile_s", float(result.compile_s), 0)
    return folder
