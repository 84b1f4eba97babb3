"""The published numbers of Hemati, Lomonaco, Bacciu, Borth, "Partial Hypernetworks for Continual
Learning" (CoLLAs 2023), Tables 1-6, for printing beside ours (transcribed from the paper; see
``shared/PAPER_TABLES.md``).

A cell is ``(mean, std)`` where the paper gives mean ± std (three runs), a number where it gives
one, and ``None`` where it prints "—". Accuracies and forgetting are percentages, times minutes
(the paper prints them as "~N min"), memory MiB (the paper writes "MB" for 2**20 bytes).
``ResNet-k`` in the paper is freeze depth ``k``: rows here are keyed by jaxcl's labels (``LR-k``,
``HN-k``, ``HN-F`` for ``k = 0``). Notes:

* Table 2 was run with first-order look-ahead: its HN-F time (636 min) is Table 5's first-order
  row; so was Table 4's look-ahead row (636 min again).
* Table 3's compression percentages are truncated, not rounded: 1 - 451,661 / 1,124,081 = 59.8%,
  printed 59%. Its counts are HN-F's with 10 task embeddings and a 10-way classifier.
* Table 6's HN counts are those of 20 task embeddings, a 100-way classifier and ``d = 32``, one
  table for both benchmarks; its LR-0 row is the raw image buffer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxcl.config import flat

Cell = tuple[float, float] | float | int | None

STREAMS = ("normal", "noisy")
"""Table 1's streams; ``noisy`` is :data:`jaxcl.data.transforms.NOISE_NAMES`' four experiences."""

TABLE1: dict[tuple[str, str], tuple[Cell, ...]] = {
    ("LR-2", "normal"): ((93.2, 0.2), (94.3, 0.4), (91.2, 0.4), (92.2, 0.3)),
    ("LR-2", "noisy"): ((93.2, 0.2), (91.2, 0.6), (89.1, 1.3), (91.2, 0.9)),
    ("HN-2", "normal"): ((88.2, 1.4), (77.2, 0.3), (76.6, 0.7), (64.6, 0.3)),
    ("HN-2", "noisy"): ((88.2, 1.4), (76.6, 1.3), (65.0, 2.1), (50.0, 0.8)),
    ("LR-3", "normal"): ((93.1, 0.8), (94.3, 0.1), (89.9, 0.7), (92.3, 0.4)),
    ("LR-3", "noisy"): ((93.1, 0.8), (91.1, 0.9), (88.0, 1.2), (87.4, 0.7)),
    ("HN-3", "normal"): ((81.0, 0.6), (71.4, 0.5), (70.3, 0.4), (71.5, 0.4)),
    ("HN-3", "noisy"): ((81.0, 0.6), (69.1, 1.1), (66.2, 1.3), (68.1, 0.9)),
    ("LR-4", "normal"): ((93.1, 0.4), (91.3, 0.6), (85.1, 0.2), (89.7, 0.5)),
    ("LR-4", "noisy"): ((93.1, 0.4), (86.4, 1.2), (86.0, 0.6), (80.1, 0.9)),
    ("HN-4", "normal"): ((69.1, 0.3), (68.6, 0.2), (73.4, 0.2), (72.1, 0.1)),
    ("HN-4", "noisy"): ((69.1, 0.3), (68.4, 0.4), (73.4, 0.6), (67.5, 0.3)),
}
"""Learning accuracy of experiences 1-4 (20 CIFAR-100 classes, 4 x 5), by (label, stream)."""


def _t2(aca, forgetting, time_min):
    return {"aca": aca, "forgetting": forgetting, "time_min": time_min}


TABLE2: dict[str, dict[str, dict[str, Cell]]] = {
    "split_cifar100": {
        "Naive": _t2((33.7, 0.7), (58.9, 2.1), 120), "EWC": _t2((29.7, 1.0), (62.2, 0.9), 230),
        "LR-1": _t2((48.1, 1.2), (43.0, 0.8), 165), "HN-1": _t2((61.9, 1.7), (8.1, 0.6), 508),
        "LR-2": _t2((51.1, 0.8), (40.3, 1.1), 134), "HN-2": _t2((62.8, 1.6), (4.1, 0.5), 388),
        "LR-3": _t2((50.1, 2.2), (42.4, 1.3), 111), "HN-3": _t2((58.8, 1.0), (7.4, 0.9), 243),
        "LR-4": _t2((51.4, 1.3), (27.3, 2.4), 89), "HN-4": _t2((73.6, 0.9), (3.1, 0.4), 114),
        "HN-F": _t2((64.2, 1.2), (5.5, 1.4), 636),
    },
    "split_tinyimagenet": {
        "Naive": _t2((20.5, 1.7), (48.4, 0.9), 371), "EWC": _t2((22.4, 1.1), (34.5, 0.5), 431),
        "LR-1": _t2((30.6, 0.9), (38.1, 2.1), 323), "HN-1": _t2((35.2, 0.3), (8.0, 1.4), 905),
        "LR-2": _t2((30.0, 0.7), (38.8, 1.2), 245), "HN-2": _t2((39.9, 0.4), (10.2, 2.2), 660),
        "LR-3": _t2((26.5, 0.6), (36.9, 0.9), 204), "HN-3": _t2((31.4, 1.8), (5.2, 0.7), 416),
        "LR-4": _t2((31.8, 1.1), (25.9, 2.0), 143), "HN-4": _t2((36.1, 1.1), (10.0, 1.1), 176),
        "HN-F": _t2((39.9, 1.7), (7.2, 1.8), 1200),
    },
}
"""ACA, forgetting (Avalanche's) and time per strategy on Split-CIFAR100 (20 x 5) and
Split-TinyImageNet (20 x 10); first-order look-ahead."""

TABLE3: dict[int, dict[str, int]] = {
    4: {"params": 451_661, "compression_pct": 59},
    8: {"params": 496_489, "compression_pct": 55},
    16: {"params": 586_145, "compression_pct": 47},
    32: {"params": 765_457, "compression_pct": 31},
    64: {"params": 1_124_081, "compression_pct": 0},
}
"""HN-F's hypernetwork parameters and compression level ``1 - params / params(d=64)`` (truncated
to a whole percent) against the lookup dimension ``d``."""


def _t45(aca, learning_accuracy, time_min):
    return {"aca": aca, "learning_accuracy": learning_accuracy, "time_min": time_min}


TABLE4: dict[tuple[str, bool], dict[str, Cell]] = {
    ("HN-F", False): _t45(62.7, 65.0, 407), ("HN-F", True): _t45(62.8, 66.5, 636),
    ("HN-1", False): _t45(63.3, 68.0, 377), ("HN-1", True): _t45(61.5, 66.2, 509),
    ("HN-2", False): _t45(61.0, 64.2, 265), ("HN-2", True): _t45(63.2, 66.8, 389),
    ("HN-3", False): _t45(57.0, 59.3, 165), ("HN-3", True): _t45(59.4, 64.4, 243),
    ("HN-4", False): _t45(66.9, 73.4, 87), ("HN-4", True): _t45(74.3, 75.6, 115),
}
"""Split-CIFAR100, one seed, by (label, look-ahead): ACA, learning accuracy, time."""

TABLE5: dict[tuple[str, int], dict[str, Cell]] = {
    ("HN-F", 1): _t45(63.8, 66.5, 636), ("HN-F", 2): _t45(64.1, 66.2, 2406),
    ("HN-1", 1): _t45(66.5, None, 509), ("HN-1", 2): _t45(61.9, None, 1626),
    ("HN-2", 1): _t45(63.2, 66.8, 389), ("HN-2", 2): _t45(64.0, 64.7, 1104),
    ("HN-3", 1): _t45(59.4, 64.6, 243), ("HN-3", 2): _t45(56.6, 61.9, 585),
    ("HN-4", 1): _t45(74.3, 75.6, 115), ("HN-4", 2): _t45(73.1, 75.0, 122),
}
"""Split-CIFAR100, by (label, look-ahead order): ACA, learning accuracy, time."""

TABLE6_LR: dict[str, dict[str, dict[str, Any]]] = {
    "split_cifar100": {
        "LR-0": {"exemplar": (3, 32, 32), "mib": 2.34},
        "LR-1": {"exemplar": (20, 32, 32), "mib": 15.62},
        "LR-2": {"exemplar": (40, 16, 16), "mib": 7.81},
        "LR-3": {"exemplar": (80, 8, 8), "mib": 3.91},
        "LR-4": {"exemplar": (160, 4, 4), "mib": 1.95},
    },
    "split_tinyimagenet": {
        "LR-0": {"exemplar": (3, 64, 64), "mib": 18.75},
        "LR-1": {"exemplar": (20, 64, 64), "mib": 125.0},
        "LR-2": {"exemplar": (40, 32, 32), "mib": 62.50},
        "LR-3": {"exemplar": (80, 16, 16), "mib": 31.25},
        "LR-4": {"exemplar": (160, 8, 8), "mib": 15.62},
    },
}
"""LR-k's buffer: exemplar shape C x H x W and 32-bit memory (200 entries for CIFAR-100, 400 for
TinyImageNet)."""

TABLE6_HN: dict[str, dict[str, Any]] = {
    "HN-F": {"params": 1_272_877, "mib": 4.86}, "HN-1": {"params": 1_217_122, "mib": 4.64},
    "HN-2": {"params": 1_119_522, "mib": 4.27}, "HN-3": {"params": 924_322, "mib": 3.53},
    "HN-4": {"params": 533_922, "mib": 2.04},
}
"""HN-k's hypernetwork: parameters and 32-bit memory."""

BENCHMARKS: dict[str, str] = {
    "split_cifar100": "split_cifar100", "split_tinyimagenet": "split_tinyimagenet",
    "noisy_cifar": "noisy_cifar"}
"""The jaxcl benchmarks that are the paper's: only a run on one of them prints the paper's
numbers beside its own. The synthetic streams have the paper's shapes but not its images, so a
run on them names the paper's benchmark (:func:`no_columns`) and puts none of its numbers in
our columns."""


def no_columns(table: str, benchmarks: str, config: Any) -> str:
    """The line over a table that prints no paper numbers: which benchmark the paper's
    ``table`` used, and the run's."""
    return (f"paper columns: none ({table} is on {benchmarks}; this run is on "
            f"{flat(config)['benchmark']}, so its numbers are not put beside the paper's)")

TRAINING: dict[str, Any] = {"model": "resnet", "nf": 20, "epochs": 100, "batch_size": 64,
                            "learning_rate": 1e-3, "coef": 0.5, "chunk_dim": 32, "augment": True,
                            "norm": "reference", "train_per_class": 0, "test_per_class": 0,
                            "new_task_init": "copy_prev", "hnet_init": "torch",
                            "task_lr_scale": 1.0, "reg_warmup": 0.0, "lower_train": True,
                            "buffer_quotas": "avalanche", "hn_outputs": 10}
"""The training settings the paper states (Sec. 4, App. A) and its reference implementation
uses, as settings of :class:`experiments.settings.StrategyRun` by name; each table adds its
own."""

TINYIMAGENET: dict[str, Any] = {"resize": 32, "crop": False}
"""Split-TinyImageNet as the reference's code ran it: resized to 32x32, flipped but not cropped
(the paper's text and Table 6 speak of 64x64: ``resize=0`` keeps that size)."""

SPLIT_CIFAR100 = {"benchmark": "split_cifar100", "num_tasks": 20, "classes_per_task": 5,
                  **TRAINING}
"""The setting of the paper's Split-CIFAR100 tables (20 experiences of 5 classes)."""


def paper_cell(value: Cell, digits: int = 1, suffix: str = "") -> str:
    """One of the paper's cells as printed: ``(61.9, 1.7)`` -> ``"61.9 ± 1.7"``, ``1124081`` ->
    ``"1,124,081"``, ``None`` -> ``"—"``."""
    if value is None:
        return "—"
    if isinstance(value, tuple):
        return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}{suffix}"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def paper_rows(table: Mapping, keys: Mapping[str, Any]) -> dict[str, Any]:
    """The paper's row for each of a module's labels (``keys``: our label -> the paper's key),
    ``None`` where the paper has no such row."""
    return {label: table.get(key) for label, key in keys.items()}


def cells(row: Mapping | None, fields: tuple[str, ...], digits: int = 1) -> list[str]:
    """:func:`paper_cell` of each of ``fields`` of a paper row; all "—" where ``row`` is None."""
    row = row or {}
    return [paper_cell(row.get(f), digits, " min" if f == "time_min" else "") for f in fields]


HN_NEW_TASK = ("new_task_init", "hnet_init", "task_lr_scale", "reg_warmup")
"""HN-k's new-task settings (:data:`jaxcl.learners.HN_PRESETS`), where jaxcl's defaults depart
from the paper's; every printed table names the departures."""


def hn_departures(config: Any) -> str:
    """The lines under a table that has no paper columns (another benchmark): ``"\\n\\n"`` and
    :func:`differences` over HN-k's new-task settings alone, so that jaxcl's departures are named
    there too; nothing when no HN-k ran (``config.unused()`` holds them all)."""
    unused = config.unused() if hasattr(config, "unused") else {}
    if all(name in unused for name in HN_NEW_TASK):
        return ""
    line = differences(config, {name: TRAINING[name] for name in HN_NEW_TASK})
    if line.startswith("setting as"):
        line = "HN-k's settings for new tasks as the paper's (" + ", ".join(HN_NEW_TASK) + ")"
    return f"\n\n{line}"


def differences(config: Any, paper: Mapping[str, Any]) -> str:
    """One line naming each setting of ``config`` that differs from the paper's ``paper``.

    ``seeds`` compares the number of seeds; 0 for a stream shape (``num_tasks``,
    ``classes_per_task``, ``train_per_class``, ``test_per_class``) or a buffer (``memory_size``)
    is the benchmark's own, the paper's. A setting that had no effect on the run
    (``config.unused()``, e.g. HN-k's when no HN-k ran) is not a difference.
    """
    unused = config.unused() if hasattr(config, "unused") else {}
    settings, diffs = flat(config), []
    for name, want in paper.items():
        if name in unused:
            continue
        have = settings[name]
        if name == "seeds":
            have = len(have)
        elif name in ("num_tasks", "classes_per_task", "memory_size", "train_per_class",
                      "test_per_class") and have == 0:
            continue
        if have != want:
            diffs.append(f"{name} {have} (paper: {want})")
    if not diffs:
        return f"setting as the paper's ({', '.join(paper)})"
    return "differs from the paper's setting: " + "; ".join(diffs)


LOWER_PART = ("HN-k's lower part g_phi is trained here on the first experience, as the paper's "
              "Algorithm 1 says; the reference's scripts load it from a checkpoint they do not "
              "publish and train only the hypernetwork in the stream")
"""A setup difference from the reference that no setting expresses, printed under every table
with the paper's HN-k numbers beside ours."""


PARTIAL_BATCH = ("an epoch's last partial minibatch is dropped here (every step has one shape "
                 "and compiles once); the reference's loaders keep it: at most batch - 1 "
                 "images an epoch, a different subset each epoch")
"""The other setup difference no setting expresses, printed under every table with the paper's
numbers beside ours."""


def paper_notes(config: Any, paper: Mapping[str, Any]) -> str:
    """The lines under a table with the paper's columns: :func:`differences` from the paper's
    setting ``paper``, :data:`PARTIAL_BATCH` and, when HN-k ran, :data:`LOWER_PART`."""
    unused = config.unused() if hasattr(config, "unused") else {}
    lines = [differences(config, paper), PARTIAL_BATCH]
    if "order" not in unused:
        lines.append(LOWER_PART)
    return "\n\n".join(lines)
