"""Class-incremental splits of labelled arrays into a stream, shared by every real benchmark.

Whatever reads the data (TFDS for the named benchmarks, :mod:`jaxcl.data.image_folder` for a
folder of images, :mod:`jaxcl.data.user_data` for a user's arrays), it hands over
``{"train": (x, y), "test": (x, y)}`` and this module makes the experiences: classes in an order
(from ``seed`` with ``jax.random.permutation``, or the user's), ``classes_per_task`` of them per
experience, labels restarting at 0 in each, images normalised per channel (the last axis) with
the mean and standard deviation of the *whole* training split, ``x = (x / s - mean) / std`` with
``s = 255`` for ``uint8`` images and ``s = 1`` otherwise.

The statistics are exact: a byte image's from each channel's histogram of its 256 values, any
other array's accumulated in float64 (a float32 mean over CIFAR's 51 million values per channel
saturates). Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcl.types import Experience

Arrays = dict[str, np.ndarray]
"""A split's arrays by name (``x_train``, ``y_train``, ``x_test``, ``y_test``)."""

_CHUNK_VALUES = 1 << 22
"""Values per chunk when accumulating a float array's statistics (32 MiB of float64)."""


def per_class_subset(arrays: Arrays, per_class: dict[str, int], seed: int) -> Arrays:
    """At most ``per_class[split]`` examples of every class of each split (0: all), drawn at
    random from ``seed``, in their original order: a smaller benchmark for a small machine."""
    out = dict(arrays)
    for i, (split, n) in enumerate(sorted(per_class.items())):
        if not n:
            continue
        if not (isinstance(n, int) and n > 0):
            raise ValueError(f"{split}_per_class must be a positive integer (or 0: all), got {n!r}")
        x, y = arrays[split]
        rng = np.random.default_rng([seed, i])
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n]
                                       for c in np.unique(y)]))
        out[split] = (x[keep], y[keep])
    return out


def _scale(x: np.ndarray) -> float:
    """``s`` of the module docstring: byte images are brought to [0, 1]."""
    return 255.0 if x.dtype == np.uint8 else 1.0


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (last axis) mean and standard deviation of ``x / s`` (``s``: 255 for uint8,
    else 1), float32 of shape ``(1, ..., 1, C)``, ``std`` plus ``1e-6``.

    Exact: for uint8, from each channel's histogram of the 256 byte values (no float copy of the
    split); otherwise two passes over chunks accumulated in float64, ``mean = sum(x) / n`` then
    ``var = sum((x - mean)^2) / n`` (no cancellation of ``E[x^2] - mean^2``).
    """
    shape = (1,) * (x.ndim - 1) + (-1,)
    if x.dtype == np.uint8:
        values = np.arange(256) / 255.0
        counts = np.stack([np.bincount(x[..., c].ravel(), minlength=256)
                           for c in range(x.shape[-1])]) / (x.size // x.shape[-1])
        mean = counts @ values
        var = counts @ values**2 - mean**2
    else:
        rows = x.reshape(-1, x.shape[-1])
        step = max(1, _CHUNK_VALUES // rows.shape[1])
        def chunks():  # one float64 chunk at a time, never a float64 copy of the split
            return (rows[i:i + step].astype(np.float64) for i in range(0, len(rows), step))

        mean = sum(c.sum(axis=0) for c in chunks()) / len(rows)
        var = sum(((c - mean) ** 2).sum(axis=0) for c in chunks()) / len(rows)
    std = np.sqrt(np.maximum(var, 0.0)) + 1e-6
    return mean.reshape(shape).astype(np.float32), std.reshape(shape).astype(np.float32)


def class_experience(arrays: Arrays, classes: Sequence[int], task_id: int,
                     stats: tuple[np.ndarray, np.ndarray] | None, *,
                     corrupt: Callable | None = None, key: jax.Array | None = None) -> Experience:
    """Experience ``task_id``: the training and test examples of ``classes`` (labels ``classes[i]
    -> i``), inputs ``(x / s - mean) / std`` with ``stats = (mean, std)`` (module docstring);
    ``corrupt(key, x)`` first corrupts the images in [0, 1] (``key`` for the training split,
    ``fold_in(key, 1)`` for the test split)."""
    mean, std = stats
    classes = np.asarray(classes)
    sorter = np.argsort(classes)

    def pick(split):
        x, y = arrays[split]
        keep = np.isin(y, classes)
        labels = sorter[np.searchsorted(classes, y[keep], sorter=sorter)].astype(np.int32)
        images = x[keep].astype(np.float32)
        images = jnp.asarray(images / 255.0 if x.dtype == np.uint8 else images)
        if corrupt is not None:
            images = corrupt(key if split == "train" else jax.random.fold_in(key, 1), images)
        return (images - mean) / std, jnp.asarray(labels)

    return Experience(task_id, tuple(int(c) for c in classes), *pick("train"), *pick("test"))


def check_split(num_tasks: int | None, classes_per_task: int | None, num_classes: int,
                what: str = "") -> None:
    """Raise ``ValueError`` unless ``num_tasks x classes_per_task`` is positive and at most
    ``num_classes`` (``what``: where the classes come from, for the message)."""
    if not (isinstance(num_tasks, int) and isinstance(classes_per_task, int)
            and num_tasks >= 1 and classes_per_task >= 1
            and num_tasks * classes_per_task <= num_classes):
        raise ValueError(f"num_tasks x classes_per_task = {num_tasks} x {classes_per_task} must be "
                         f"positive and at most the {num_classes} classes{what}")


def ordered_stream(arrays: Arrays, order: Sequence[int], *, seed: int, num_tasks: int,
                   classes_per_task: int, corrupt: Sequence[Callable] | None = None,
                   ) -> list[Experience]:
    """Experience ``t`` takes classes ``order[t * classes_per_task:(t + 1) * classes_per_task]``
    of ``{"train": (x, y), "test": (x, y)}`` (module docstring).

    ``corrupt[t](key, x)``, if given, corrupts experience ``t``'s images in [0, 1] before they are
    normalised (with the clean training split's statistics); its keys come from ``seed``, so the
    stream is deterministic.
    """
    check_split(num_tasks, classes_per_task, len(order))
    if corrupt is not None and len(corrupt) != num_tasks:
        raise ValueError(f"corrupt has {len(corrupt)} transforms for {num_tasks} experiences")
    stats = channel_stats(arrays["train"][0])
    noise_key = jax.random.fold_in(jax.random.key(seed), 1)
    return [class_experience(arrays, order[t * classes_per_task:(t + 1) * classes_per_task], t,
                             stats, corrupt=None if corrupt is None else corrupt[t],
                             key=jax.random.fold_in(noise_key, t))
            for t in range(num_tasks)]


def seed_order(classes: Sequence[int], seed: int) -> np.ndarray:
    """``classes`` in the order drawn from ``seed``: ``classes[jax.random.permutation(key(seed),
    len(classes))]`` (for classes ``0..K-1``, the permutation itself)."""
    return np.asarray(classes)[np.asarray(jax.random.permutation(jax.random.key(seed),
                                                                 len(classes)))]


def split_stream(arrays: Arrays, *, seed: int, num_tasks: int, classes_per_task: int,
                 num_classes: int, corrupt: Sequence[Callable] | None = None) -> list[Experience]:
    """Class-incremental splits of classes ``0..num_classes-1`` in the order drawn from ``seed``
    (:func:`seed_order`, :func:`ordered_stream`)."""
    check_split(num_tasks, classes_per_task, num_classes)
    return ordered_stream(arrays, seed_order(np.arange(num_classes), seed), seed=seed,
                          num_tasks=num_tasks, classes_per_task=classes_per_task, corrupt=corrupt)
