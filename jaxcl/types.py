"""The types every layer shares, defined once: a pytree, a minibatch, an experience of a stream.

A stream is a sequence of :class:`Experience`: each holds one task's train and test arrays, its
task id and the original ids of its classes. Labels restart at 0 inside each experience
(task-incremental: the task id is given at train and test time); a benchmark without labels (the
3-D point tasks of the Hypernet-SDE-Flow study) gives zeros and no classes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

PyTree = Any
"""A nested structure of arrays (``jax.tree`` leaves)."""


class Batch(NamedTuple):
    """A minibatch: inputs (NHWC images, feature rows or points) and integer labels."""

    x: jax.Array
    y: jax.Array


class Experience(NamedTuple):
    """One task of a stream."""

    task_id: int
    classes: tuple[int, ...]
    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
