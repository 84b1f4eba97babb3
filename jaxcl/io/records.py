"""The records of a run: JSON-able dicts of its numbers, the stable ``metrics.json`` schema.

Kept apart from the files (:mod:`jaxcl.io.run_folder`) so that a study, a test or a notebook can
turn a :class:`jaxcl.train.loop.RunResult` into the numbers a run folder reports without writing
anything: :func:`seed_record` per seed, :func:`strategy_record` over seeds, :func:`mean_std` for a
table's cell, and the statistics over seeds: :func:`ci95`, :func:`paired`. Nothing here touches a file, draws or prints.

``metrics.json`` (schema ``"jaxcl.run/2"``; fractions in [0, 1], times in seconds)::

    {"schema": "jaxcl.run/2", "experiment": str, "config": {...}, "seeds": [int, ...],
     "strategies": {label: {
         "aca", "learning_accuracy", "forgetting", "max_forgetting", "bwt", "transfer_accuracy",
         "time_s", "compile_s", "mean_cosine", "mean_grad_rel_diff":  mean over seeds (float)
         "<same>_std":                             standard deviation over seeds (0 for one seed)
         "accuracy_matrix": [[...], ...],          mean over seeds, R[i][j] after i, on j (j <= i)
         "transfer": [...],                        mean over seeds, T[j]: on j just before
                                                   training it
         "time_per_experience_s": [...],           mean over seeds
         "memory_bytes": int,                      kept against forgetting, 32-bit
         "per_seed": [{"seed", "aca", ..., "accuracy_matrix", "time_per_experience_s"}, ...],
         "settings": {...}}},                      the resolved StrategyConfig, with "norms"
     "extra": {...},                               experiment-specific tables
     "paper": {...}}                               the paper's numbers for the printed rows
                                                   (study modules; :mod:`experiments.paper`)

With ``R[i][j]`` the accuracy on experience ``j`` after training ``i`` and ``N`` experiences,
``forgetting`` is Avalanche's, as in the study's Table 2: ``mean_{j < N-1} (R[j][j] - R[N-1][j])``
(= ``-bwt``); ``max_forgetting`` is Chaudhry et al.'s (2018):
``mean_{j < N-1} (max_{j <= i < N-1} R[i][j] - R[N-1][j])`` (see :mod:`jaxcl.core.metrics`). Schema
``"jaxcl.run/1"`` had no ``max_forgetting`` and stored Chaudhry et al.'s under ``forgetting``.

``mean_cosine`` and ``mean_grad_rel_diff`` average the per-step values over the experiences after
the first (0 where a strategy has no regulariser). ``transfer_accuracy`` is the mean of ``T[j]``
over ``j >= 1``: what a strategy brings to a task before training it (chance when nothing carries
over; :attr:`jaxcl.train.loop.RunResult.transfer`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from jaxcl.core import metrics as cl_metrics

if TYPE_CHECKING:
    from jaxcl.train.loop import RunResult

SCHEMA = "jaxcl.run/2"
SCALARS = ("aca", "learning_accuracy", "forgetting", "max_forgetting", "bwt", "transfer_accuracy",
           "time_s", "compile_s", "mean_cosine", "mean_grad_rel_diff")


def seed_record(seed: int, result: RunResult) -> dict[str, Any]:
    """The per-seed entry of a strategy, from its run's result (an accuracy matrix)."""
    later = result.step_metrics["experience"] > 0
    mean_later = lambda v: float(np.mean(v[later])) if later.any() else 0.0  # noqa: E731
    return {
        "seed": seed,
        **cl_metrics.summary(result.matrix),
        "transfer_accuracy": float(np.mean(result.transfer[1:])) if len(result.transfer) > 1
        else 0.0,
        "time_s": result.time_s,
        "compile_s": result.compile_s,
        "mean_cosine": mean_later(result.step_metrics["cosine"]),
        "mean_grad_rel_diff": mean_later(result.step_metrics["grad_rel_diff"]),
        "accuracy_matrix": np.asarray(result.matrix).tolist(),
        "transfer": np.asarray(result.transfer).tolist(),
        "time_per_experience_s": list(map(float, result.time_per_experience)),
        "memory_bytes": result.memory_bytes,
    }


def strategy_record(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every scalar, mean accuracy matrix."""
    out: dict[str, Any] = {}
    for name in SCALARS:
        values = np.array([r[name] for r in per_seed], dtype=float)
        out[name], out[f"{name}_std"] = float(values.mean()), float(values.std())
    out["accuracy_matrix"] = np.mean([r["accuracy_matrix"] for r in per_seed], axis=0).tolist()
    out["transfer"] = np.mean([r["transfer"] for r in per_seed], axis=0).tolist()
    out["time_per_experience_s"] = np.mean(
        [r["time_per_experience_s"] for r in per_seed], axis=0).tolist()
    out["memory_bytes"] = int(per_seed[0]["memory_bytes"])
    out["per_seed"] = per_seed
    return out


def ci95(values: ArrayLike) -> float | None:
    """Half-width of the 95 % confidence interval of the mean of ``values`` (Student's t):
    ``t_{0.975, n-1} s / sqrt(n)``, ``s`` the sample standard deviation; ``None`` for one value."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return None
    return float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n))


def paired(a: dict[Any, float], b: dict[Any, float]) -> dict[str, Any]:
    """``a`` against ``b``, paired by seed (both keyed by seed; the seeds both hold): the mean of
    the per-seed differences ``a - b``, its 95 % interval's half-width (:func:`ci95`; ``None``
    for one seed), in how many seeds ``a`` is lower, and over how many."""
    seeds = [s for s in a if s in b]
    diff = np.array([a[s] - b[s] for s in seeds], dtype=float)
    return {"diff": float(diff.mean()), "ci95": ci95(diff), "lower_in": int(np.sum(diff < 0)),
            "seeds": len(seeds)}


def mean_std(record: dict[str, Any], name: str, scale: float = 1.0, digits: int = 2) -> str:
    """``"mean ± std"`` of a scalar of a strategy record (``scale=100`` for percentages); a
    record of one seed has no spread, ``"mean ± —"``."""
    mean = f"{scale * record[name]:.{digits}f}"
    if len(record.get("per_seed", ())) == 1:
        return f"{mean} ± —"
    return f"{mean} ± {scale * record[f'{name}_std']:.{digits}f}"
