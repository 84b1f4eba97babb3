"""What a learner is: a few pure functions over its state pytree, which the one loop drives.

A learner is a frozen dataclass of settings and models; its state is a pytree of arrays. The loop
(:mod:`jaxcl.train.loop`) drives every learner the same way, the strategies of the
partial-hypernetwork study and the Hypernet-SDE-Flow study's models alike::

    state = s.init(key, sample_x)
    for each experience t:
        state = s.begin_experience(state, t, key)
        for each minibatch:  state, metrics = s.train_step(state, batch, t, key, first=(t == 0))
        for each minibatch:  state = s.consolidate(state, batch, t, key)   # if s has it, once
        state = s.end_experience(state, train_data, t, key)
        M[t, j] = s.evaluate(state, x_test_j, y_test_j, j, key_j, batch_size=...)  for every j

All of them are pure and traceable (task ids are traced int32 scalars), so the loop compiles each
once per run. ``consolidate`` is optional (:class:`Consolidating`): one pass over the experience's
minibatches after training, for work that takes a gradient per minibatch, such as EWC's Fisher.
The loop runs it as it runs ``train_step`` (one compiled step in a Python loop on CPU, where a
convolution's gradient inside an XLA loop is 20-45x slower, see :mod:`jaxcl.train.steps`), so
``end_experience`` should hold no loop over minibatches with a gradient in it. ``first`` is
static: the first experience may train what later ones freeze.

A learner names its evaluation (``evaluation``: ``"accuracy"``, higher is better, or ``"mse"``,
lower is better), whether experiences not yet trained are evaluated too (``evaluates_unseen``),
and the metrics its ``train_step`` returns (``step_metrics``). The classifiers
(:class:`Classifier`) evaluate accuracy and log ``loss``, ``accuracy``, ``cosine`` (task vs
regulariser gradient; 0 where there is no regulariser) and ``grad_rel_diff`` (order-2 vs order-1
look-ahead gradient; 0 elsewhere), so that runs of different strategies log alike.
"""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp
import optax

from jaxcl.core.chunks import map_chunks
from jaxcl.types import Batch, PyTree

METRIC_KEYS = ("loss", "accuracy", "cosine", "grad_rel_diff")


class Learner(Protocol):
    """What the loop calls; see the module docstring for the order of calls."""

    name: str
    num_tasks: int  # task ids it holds (heads, embeddings): 0 .. num_tasks - 1
    evaluation: str  # "accuracy" (higher is better) or "mse" (lower is better)
    evaluates_unseen: bool  # whether M[t, j] is evaluated for j > t too
    step_metrics: tuple[str, ...]  # the keys of train_step's metrics
    # Optional: trains_first_apart (bool, default True): whether the first experience's
    # train_step is a program of its own; run_options ({"epochs": ..., "batch_size": ...}): what
    # a learner built for one run length expects, which the loop checks.

    def init(self, key: jax.Array, sample_x: jax.Array) -> PyTree: ...

    def begin_experience(self, state: PyTree, task_id: jax.Array, key: jax.Array) -> PyTree: ...

    def train_step(
        self, state: PyTree, batch: Batch, task_id: jax.Array, key: jax.Array, *, first: bool
    ) -> tuple[PyTree, dict[str, jax.Array]]: ...

    def end_experience(
        self, state: PyTree, data: Batch, task_id: jax.Array, key: jax.Array
    ) -> PyTree: ...

    def evaluate(self, state: PyTree, x: jax.Array, y: jax.Array, task_id: jax.Array,
                 key: jax.Array, *, batch_size: int) -> jax.Array:
        """The evaluation of experience ``task_id``'s test set ``(x, y)``, a scalar;
        ``batch_size`` bounds the examples a call holds at once, ``key`` is the same in every
        run (e.g. the order examples are read in, or a solver's noise)."""
        ...

    def memory_bytes(self, state: PyTree) -> int:
        """Bytes kept against forgetting (32-bit), as in the study's memory table."""
        ...


class Consolidating(Learner, Protocol):
    """A strategy with a consolidation pass after each experience's training.

    After the last epoch of experience ``t`` the loop runs ``consolidate(state, batch, t, key)``
    over one pass of the experience's minibatches (the training batch size, a fresh permutation,
    one key per minibatch, no augmentation), then ``end_experience``, which finishes what the
    pass gathered (EWC: the mean of the squared minibatch gradients).
    """

    def consolidate(self, state: PyTree, batch: Batch, task_id: jax.Array,
                    key: jax.Array) -> PyTree: ...


class Classifier:
    """What the classifiers share: accuracy as the evaluation, the common step metrics.

    A subclass defines ``logits(state, x, task_id)``.
    """

    evaluation = "accuracy"
    evaluates_unseen = False
    step_metrics = METRIC_KEYS

    def evaluate(self, state: PyTree, x: jax.Array, y: jax.Array, task_id: jax.Array,
                 key: jax.Array, *, batch_size: int) -> jax.Array:
        """Accuracy over ``x`` in minibatches of ``batch_size`` (the remainder as one more).

        The examples are read in a fixed pseudo-random order, a permutation from ``key`` (the
        loop's: the same in every run). The test sets are class-sorted, and a model that
        normalises with the minibatch's statistics in evaluation (``norm="batch"``) would
        otherwise see chunks of one or two classes; for a model that classifies each example by
        itself the accuracy is the same in any order.
        """
        order = jax.random.permutation(key, x.shape[0])
        x, y = jnp.take(x, order, axis=0), jnp.take(y, order, axis=0)

        def correct(xy):
            xb, yb = xy
            return jnp.argmax(self.logits(state, xb, task_id), axis=-1) == yb

        return jnp.mean(map_chunks(correct, (x, y), batch_size))


def step_metrics(loss: jax.Array, acc: jax.Array, **extra: jax.Array) -> dict[str, jax.Array]:
    """The common metric dict; keys of ``METRIC_KEYS`` not given are 0."""
    out = {"loss": loss, "accuracy": acc, "cosine": jnp.zeros_like(loss),
           "grad_rel_diff": jnp.zeros_like(loss)}
    out.update(extra)
    return out


def bytes32(tree: PyTree) -> int:
    """Bytes of a pytree's entries stored as 32-bit numbers."""
    return 4 * sum(int(x.size) for x in jax.tree.leaves(tree))


def apply_optimizer(
    optimizer: optax.GradientTransformation, grads: PyTree, opt_state: PyTree, params: PyTree
) -> tuple[PyTree, PyTree]:
    """One step of any optax optimizer: ``(u, s') = optimizer.update(g, s, theta)``, then
    ``theta' = theta + u``. Returns ``(theta', s')``; every learner's update goes through it."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
