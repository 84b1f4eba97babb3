"""Your own labelled arrays as a stream: in memory (:func:`from_arrays`) or in a ``.npz`` file.

A user's arrays become the same class-incremental stream as every named benchmark
(:mod:`jaxcl.data.splits`): ``x_train, y_train, x_test, y_test`` with one integer label per
example; the classes are ``y_train``'s labels, in the order drawn from ``seed`` or in a
``class_order`` the user gives (a permutation of them, or a subset); experience ``t`` takes the
``t``-th ``classes_per_task`` of them, labels restarting at 0, inputs normalised per channel (the
last axis) with the training split's exact statistics (``uint8`` images divided by 255 first).
Images without a channel axis, ``(N, H, W)``, get one, ``(N, H, W, 1)``.

A ``.npz`` file (:func:`load_arrays`, ``load_benchmark("arrays", path=...)``) holds the four arrays
and, optionally, ``tasks``: the class split, an integer array ``(num_tasks, classes_per_task)``
whose row ``t`` names experience ``t``'s classes.

Bad input is refused with one line that names the file or array and the value, before anything
trains: mismatched lengths, labels that are not integers, test labels outside ``y_train``'s
classes, a class order that repeats a class or names one ``y_train`` lacks, fewer classes than
``num_tasks x classes_per_task``, a class of the stream with no test examples.
:mod:`jaxcl.data.image_folder` shares the split (:func:`user_stream`). Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from jaxcl.data.splits import check_split, ordered_stream, per_class_subset, seed_order
from jaxcl.types import Experience

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
"""The arrays a ``.npz`` file must hold; it may also hold ``tasks`` (module docstring)."""

ClassOrder = Sequence[int] | str | os.PathLike | None
"""A class order: the classes in experience order, a text file of them (integers separated by
white space or commas), or ``None`` (or empty): drawn from the seed."""


def _listed(values) -> str:
    values = [int(v) for v in values]
    return ", ".join(map(str, values[:12])) + (f", ... ({len(values)} in all)"
                                               if len(values) > 12 else "")


def checked_arrays(x_train: ArrayLike, y_train: ArrayLike, x_test: ArrayLike, y_test: ArrayLike,
                   where: str = "") -> dict:
    """``{"train": (x, y), "test": (x, y)}`` as numpy arrays, labels int64, images ``(N, H, W)``
    given a channel axis; ``ValueError`` (prefixed with ``where``, e.g. the file) on bad input."""
    out = {}
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{where}y_{split} must be one integer label per example, got "
                             f"{y.dtype} of shape {y.shape}")
        if x.ndim < 2 or len(x) != len(y) or not len(y):
            raise ValueError(f"{where}x_{split} of shape {x.shape} must hold one example per "
                             f"label of y_{split} ({len(y)} labels), and at least one")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"{where}x_{split} must hold numbers, got {x.dtype}")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
            raise ValueError(f"{where}x_{split} holds NaN or infinity (example {bad})")
        out[split] = (x[..., None] if x.ndim == 3 else x, y.astype(np.int64))
    if out["train"][0].shape[1:] != out["test"][0].shape[1:]:
        raise ValueError(f"{where}x_test's examples are {out['test'][0].shape[1:]} but x_train's "
                         f"{out['train'][0].shape[1:]}")
    classes = np.unique(out["train"][1])
    outside = np.setdiff1d(out["test"][1], classes)
    if len(outside):
        raise ValueError(f"{where}y_test holds labels {_listed(outside)} that y_train lacks "
                         f"(y_train's classes: {_listed(classes)})")
    return out


def read_order(class_order: ClassOrder) -> np.ndarray | None:
    """``class_order`` as an integer array (a file's integers, in order); ``None`` if not given."""
    if class_order is None:
        return None
    if isinstance(class_order, (str, os.PathLike)):
        path = pathlib.Path(class_order)
        if not path.is_file():
            raise ValueError(f"class_order file {str(path)!r} does not exist")
        tokens = [t for t in re.split(r"[\s,]+", path.read_text()) if t]
        bad = [t for t in tokens if not re.fullmatch(r"-?\d+", t)]
        if bad or not tokens:
            raise ValueError(f"class_order file {str(path)!r} must hold integer classes separated "
                             f"by white space or commas, got {bad[:3] or 'nothing'}")
        return np.array([int(t) for t in tokens])
    order = np.asarray(class_order)
    if order.size == 0:
        return None
    if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer):
        raise ValueError(f"class_order must be a sequence of integer classes, got {class_order!r}")
    return order


def user_stream(arrays: dict[str, np.ndarray], *, seed: int, classes_per_task: int | None, num_tasks: int | None = None,
                class_order: ClassOrder = None, train_per_class: int = 0,
                test_per_class: int = 0, where: str = "") -> list[Experience]:
    """The stream of checked arrays (:func:`checked_arrays`; module docstring). ``num_tasks``
    ``None``: every class of the order, which must then split into whole experiences."""
    classes = np.unique(arrays["train"][1])
    order = read_order(class_order)
    if order is None:
        order = seed_order(classes, seed)
    else:
        values, counts = np.unique(order, return_counts=True)
        repeated = values[counts > 1]
        unknown = np.setdiff1d(order, classes)
        if len(repeated) or len(unknown):
            raise ValueError(
                f"class_order must name distinct classes of {where or 'y_train'} (a permutation "
                f"or a subset of {_listed(classes)}); it " + (
                    f"repeats {_listed(repeated)}" if len(repeated) else
                    f"names {_listed(unknown)}, not among them"))
    if classes_per_task is None:
        raise ValueError(f"classes_per_task is needed: how many of the {len(order)} classes of "
                         f"{where or 'y_train'} each experience takes")
    if num_tasks is None:
        if not (isinstance(classes_per_task, int) and classes_per_task >= 1
                and len(order) % classes_per_task == 0):
            if class_order is not None:
                raise ValueError(
                    f"class_order [{_listed(order)}] names {len(order)} classes, which do not split "
                    f"into experiences of classes_per_task={classes_per_task!r}; give a multiple "
                    f"of {classes_per_task!r} classes (of the {len(classes)} of "
                    f"{where or 'y_train'}), or num_tasks (the first num_tasks x "
                    "classes_per_task of the order are used)")
            raise ValueError(f"the {len(order)} classes of {where or 'y_train'} do not split into "
                             f"experiences of classes_per_task={classes_per_task!r}; pass "
                             "num_tasks (the first num_tasks x classes_per_task classes are used) "
                             "or a class_order")
        num_tasks = len(order) // classes_per_task
    check_split(num_tasks, classes_per_task, len(order), f" of {where or 'y_train'}"
                if class_order is None else
                f" named by class_order (of the {len(classes)} of {where or 'y_train'})")
    order = order[:num_tasks * classes_per_task]
    untested = np.setdiff1d(order, arrays["test"][1])
    if len(untested):
        raise ValueError(f"classes {_listed(untested)} of {where or 'y_train'} have no test "
                         "examples")
    arrays = per_class_subset(arrays, {"train": train_per_class, "test": test_per_class}, seed)
    return ordered_stream(arrays, order, seed=seed, num_tasks=num_tasks,
                          classes_per_task=classes_per_task)


def from_arrays(x_train: ArrayLike, y_train: ArrayLike, x_test: ArrayLike, y_test: ArrayLike, *,
                classes_per_task: int, seed: int,
                class_order: ClassOrder = None, num_tasks: int | None = None,
                train_per_class: int = 0, test_per_class: int = 0) -> list[Experience]:
    """The stream of arrays already in memory (module docstring), one
    :class:`jaxcl.types.Experience` per ``classes_per_task`` classes.

    Args:
      x_train, y_train, x_test, y_test: inputs ``(N, ...)`` (``uint8`` images are divided by 255)
        and their integer labels ``(N,)``.
      classes_per_task: classes per experience.
      seed: the class order when ``class_order`` is not given, and the subsets' draw.
      class_order: the classes in experience order (a permutation or subset of ``y_train``'s
        labels), or a text file of them; ``None``: from ``seed``.
      num_tasks: experiences; ``None``: all the classes of the order, which must divide evenly.
      train_per_class, test_per_class: at most this many examples of each class (0: all).
    """
    return user_stream(checked_arrays(x_train, y_train, x_test, y_test), seed=seed,
                       classes_per_task=classes_per_task, num_tasks=num_tasks,
                       class_order=class_order, train_per_class=train_per_class,
                       test_per_class=test_per_class)


def read_npz(path: str | os.PathLike) -> tuple[dict, np.ndarray | None]:
    """The checked arrays of a ``.npz`` file and its ``tasks`` (``None`` when it has none)."""
    where = f"{path}: "
    try:
        with np.load(path, allow_pickle=False) as npz:
            content = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{where}not a readable .npz file of arrays ({error})") from error
    missing = [k for k in NPZ_KEYS if k not in content]
    unknown = [k for k in content if k not in (*NPZ_KEYS, "tasks")]
    if missing or unknown:
        raise ValueError(f"{where}it must hold {', '.join(NPZ_KEYS)} and may hold tasks; it "
                         + (f"lacks {', '.join(missing)}" if missing else
                            f"also holds {', '.join(unknown)}"))
    tasks = content.get("tasks")
    if tasks is not None and (tasks.ndim != 2 or not np.issubdtype(tasks.dtype, np.integer)
                              or not tasks.size):
        raise ValueError(f"{where}tasks must be an integer array (num_tasks, classes_per_task), "
                         f"got {tasks.dtype} of shape {tasks.shape}")
    return checked_arrays(*(content[k] for k in NPZ_KEYS), where=where), tasks


def load_arrays(seed: int, *, path: str | os.PathLike, num_tasks: int | None = None,
                classes_per_task: int | None = None, class_order: ClassOrder = None,
                train_per_class: int = 0, test_per_class: int = 0,
                cache: dict | None = None) -> list[Experience]:
    """The stream of the ``.npz`` file at ``path`` (module docstring; ``load_benchmark("arrays",
    path=...)``). Its ``tasks``, if any, is the class split (``num_tasks`` may take fewer rows);
    else ``class_order`` or the seed's order, ``classes_per_task`` per experience. ``cache``: a
    dict in which the file's checked arrays are kept, so that several seeds read it once."""
    key = f"arrays:{pathlib.Path(path).resolve()}"
    if cache is not None and key in cache:
        arrays, tasks = cache[key]
    else:
        arrays, tasks = read_npz(path)
        if cache is not None:
            cache[key] = arrays, tasks
    if tasks is not None:
        if read_order(class_order) is not None:
            raise ValueError(f"{path} holds tasks, its class split; class_order would replace "
                             "it: give one of them")
        if classes_per_task not in (None, tasks.shape[1]):
            raise ValueError(f"classes_per_task={classes_per_task!r}, but the tasks of {path} "
                             f"have {tasks.shape[1]} classes each")
        class_order, classes_per_task = tasks.ravel(), tasks.shape[1]
        num_tasks = tasks.shape[0] if num_tasks is None else num_tasks
    return user_stream(arrays, seed=seed, classes_per_task=classes_per_task, num_tasks=num_tasks,
                       class_order=class_order, train_per_class=train_per_class,
                       test_per_class=test_per_class, where=str(path))
