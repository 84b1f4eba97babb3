"""The interface every continual-learning strategy implements: pure functions over a state pytree.

A strategy is a frozen dataclass of settings and models; its state is a pytree of arrays. The
engine (:mod:`jaxcl.engine`) drives every strategy the same way::

    state = s.init(key, sample_x)
    for each experience t:
        state = s.begin_experience(state, t, key)
        for each minibatch:  state, metrics = s.train_step(state, batch, t, key, first=(t == 0))
        for each minibatch:  state = s.consolidate(state, batch, t, key)   # if s has it, once
        state = s.end_experience(state, train_data, t, key)
        accuracy of s.logits(state, x_test_j, j) for every j

All of them are pure and traceable (task ids are traced int32 scalars), so the engine compiles
each once per run. ``consolidate`` is optional (:class:`Consolidating`): one pass over the
experience's minibatches after training, for work that takes a gradient per minibatch, such as
EWC's Fisher. The engine runs it as it runs ``train_step`` (one compiled step in a Python loop
on CPU, where a convolution's gradient inside an XLA loop is 20-45x slower, see
:mod:`jaxcl.training`), so ``end_experience`` should hold no loop over minibatches with a
gradient in it. ``first`` is static: the first experience may train what later ones freeze.
``train_step`` metrics always hold ``loss``, ``accuracy``, ``cosine`` (task vs regulariser
gradient; 0 where there is no regulariser) and ``grad_rel_diff`` (order-2 vs order-1 look-ahead
gradient; 0 elsewhere), so that runs of different strategies log alike.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax

from jaxcl.partial_hypernet import Batch

PyTree = Any
METRIC_KEYS = ("loss", "accuracy", "cosine", "grad_rel_diff")


class Strategy(Protocol):
    """What the engine calls; see the module docstring for the order of calls."""

    name: str
    num_tasks: int  # task ids it holds (heads, embeddings): 0 .. num_tasks - 1

    def init(self, key: jax.Array, sample_x: jax.Array) -> PyTree: ...

    def begin_experience(self, state: PyTree, task_id: jax.Array, key: jax.Array) -> PyTree: ...

    def train_step(
        self, state: PyTree, batch: Batch, task_id: jax.Array, key: jax.Array, *, first: bool
    ) -> tuple[PyTree, dict[str, jax.Array]]: ...

    def end_experience(
        self, state: PyTree, data: Batch, task_id: jax.Array, key: jax.Array
    ) -> PyTree: ...

    def logits(self, state: PyTree, x: jax.Array, task_id: jax.Array) -> jax.Array: ...

    def memory_bytes(self, state: PyTree) -> int:
        """Bytes kept against forgetting (32-bit), as in the study's memory table."""
        ...


class Consolidating(Strategy, Protocol):
    """A strategy with a consolidation pass after each experience's training.

    After the last epoch of experience ``t`` the engine runs ``consolidate(state, batch, t, key)``
    over one pass of the experience's minibatches (the training batch size, a fresh permutation,
    one key per minibatch, no augmentation), then ``end_experience``, which finishes what the
    pass gathered (EWC: the mean of the squared minibatch gradients).
    """

    def consolidate(self, state: PyTree, batch: Batch, task_id: jax.Array,
                    key: jax.Array) -> PyTree: ...


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def step_metrics(loss: jax.Array, acc: jax.Array, **extra: jax.Array) -> dict[str, jax.Array]:
    """The common metric dict; keys of ``METRIC_KEYS`` not given are 0."""
    out = {"loss": loss, "accuracy": acc, "cosine": jnp.zeros_like(loss),
           "grad_rel_diff": jnp.zeros_like(loss)}
    out.update(extra)
    return out


def bytes32(tree: PyTree) -> int:
    """Bytes of a pytree's entries stored as 32-bit numbers."""
    return 4 * sum(int(x.size) for x in jax.tree.leaves(tree))


def adam_update(optimizer, grads, opt_state, params):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
