"""Continual-learning metrics from the evaluation matrix: accuracy, or an error such as test MSE.

``R[i, j]`` is the test accuracy on experience ``j`` after training experience ``i`` (entries with
``j > i`` are not used). With ``N`` experiences trained (last row ``N - 1``):

* average accuracy (ACA): ``1/N sum_j R[N-1, j]``;
* learning accuracy: ``1/N sum_j R[j, j]``;
* forgetting (Avalanche, the paper's Table 2): ``1/(N-1) sum_{j < N-1} (R[j, j] - R[N-1, j])``;
* max-based forgetting (Chaudhry et al. 2018):
  ``1/(N-1) sum_{j < N-1} (max_{j <= i < N-1} R[i, j] - R[N-1, j])``;
* backward transfer (BWT, Lopez-Paz & Ranzato 2017):
  ``1/(N-1) sum_{j < N-1} (R[N-1, j] - R[j, j])``, so that forgetting = -BWT.

For an error matrix ``M`` (lower is better: the Hypernet-SDE-Flow study's test MSE, every entry
evaluated) forgetting is an increase (:func:`error_summary`): ``forgetting_t0 = M[N-1, 0] -
M[0, 0]`` on the first task, and ``mean_forgetting``, the BWT formula applied to ``M``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _matrix(accuracy_matrix) -> np.ndarray:
    r = np.asarray(accuracy_matrix, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"the accuracy matrix must be square and non-empty, got shape {r.shape}")
    return r


def average_accuracy(accuracy_matrix: ArrayLike) -> float:
    """ACA: mean of the last row over every experience seen."""
    return float(_matrix(accuracy_matrix)[-1].mean())


def learning_accuracy(accuracy_matrix: ArrayLike) -> float:
    """Mean accuracy on each experience just after training it."""
    return float(np.diag(_matrix(accuracy_matrix)).mean())


def forgetting(accuracy_matrix: ArrayLike) -> float:
    """Avalanche's forgetting: mean drop from just-after-training accuracy to the final one.

    ``F = 1/(N-1) sum_{j < N-1} (R[j, j] - R[N-1, j])``, 0 for a single experience. This is
    Avalanche's ``forgetting_metrics`` / ``ExperienceForgetting`` (the accuracy recorded when an
    experience is first trained, minus the last one; Lomonaco et al. 2021, "Avalanche: an End-to-End
    Library for Continual Learning", CVPR Workshops), which Hemati et al. (2023) report in Table 2.
    It equals ``-BWT`` (:func:`backward_transfer`); :func:`max_forgetting` is Chaudhry et al.'s.
    """
    r = _matrix(accuracy_matrix)
    n = r.shape[0]
    if n == 1:
        return 0.0
    return float((np.diag(r)[: n - 1] - r[-1, : n - 1]).mean())


def max_forgetting(accuracy_matrix: ArrayLike) -> float:
    """Chaudhry et al.'s forgetting: mean drop from the best earlier accuracy to the final one.

    ``F_max = 1/(N-1) sum_{j < N-1} (max_{j <= i < N-1} R[i, j] - R[N-1, j])``, 0 for a single
    experience (Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning: Understanding
    Forgetting and Intransigence", ECCV). It is at least :func:`forgetting` (Avalanche's), and
    larger when an experience's accuracy rose after it was trained and fell again.
    """
    r = _matrix(accuracy_matrix)
    n = r.shape[0]
    if n == 1:
        return 0.0
    best = np.array([r[j:n - 1, j].max() for j in range(n - 1)])
    return float((best - r[-1, : n - 1]).mean())


def backward_transfer(accuracy_matrix: ArrayLike) -> float:
    """Mean change from just-after-training accuracy to the final one (negative: forgetting).

    ``BWT = 1/(N-1) sum_{j < N-1} (R[N-1, j] - R[j, j])`` (Lopez-Paz & Ranzato 2017, "Gradient
    Episodic Memory for Continual Learning", NeurIPS), 0 for a single experience.
    """
    r = _matrix(accuracy_matrix)
    n = r.shape[0]
    if n == 1:
        return 0.0
    return float((r[-1, : n - 1] - np.diag(r)[: n - 1]).mean())


def summary(accuracy_matrix: ArrayLike) -> dict[str, float]:
    """Every metric, keyed as in ``metrics.json``."""
    return {
        "aca": average_accuracy(accuracy_matrix),
        "learning_accuracy": learning_accuracy(accuracy_matrix),
        "forgetting": forgetting(accuracy_matrix),
        "max_forgetting": max_forgetting(accuracy_matrix),
        "bwt": backward_transfer(accuracy_matrix),
    }


def error_summary(error_matrix: ArrayLike) -> dict[str, float]:
    """Forgetting as the increase of an error (positive is forgetting), keyed as in the study's
    ``metrics.json``: ``forgetting_t0 = M[N-1, 0] - M[0, 0]`` and ``mean_forgetting =
    1/(N-1) sum_{j < N-1} (M[N-1, j] - M[j, j])`` (:func:`backward_transfer` of ``M``), both 0
    for a single experience; beside them the error left at the end, ``final_mse = 1/N sum_j
    M[N-1, j]``, and how well each task is learned when it is trained, ``diagonal_mse = 1/N
    sum_j M[j, j]``."""
    m = _matrix(error_matrix)
    return {"forgetting_t0": float(m[-1, 0] - m[0, 0]), "mean_forgetting": backward_transfer(m),
            "final_mse": float(np.mean(m[-1])), "diagonal_mse": float(np.mean(np.diag(m)))}


def held_at_end(matrix: ArrayLike) -> np.ndarray:
    """The evaluation matrix of a learner trained exactly as the one that gave ``matrix`` but
    evaluating every finished task with the parameters it ended that task with (the study's
    stored-weights oracle): ``M'[i, j] = M[j, j]`` for ``j < i``, ``M[i, j]`` otherwise.

    Exact, not an approximation, when an evaluation depends on nothing but the parameters and
    the task (the loop's evaluation key is fixed per task): task ``j``'s entry after task ``j``
    was measured with those very parameters."""
    m = np.array(_matrix(matrix))
    for j in range(m.shape[0]):
        m[j + 1:, j] = m[j, j]
    return m


SUMMARIES = {"accuracy": summary, "mse": error_summary}
"""The metrics of a matrix by the learner's ``evaluation``."""
