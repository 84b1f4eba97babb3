"""The interface every continual-learning strategy implements: pure functions over a state pytree.

A strategy is a frozen dataclass of settings and models; its state is a pytree of arrays. The
engine (:mod:`jaxcl.engine`) drives every strategy the same way::

    state = s.init(key, sample_x)
    for each experience t:
        state = s.begin_experience(state, t, key)
        for each minibatch:  state, metrics = s.train_step(state, batch, t, key, first=(t == 0))
        state = s.end_experience(state, train_data, t, key)
        accuracy of s.logits(state, x_test_j, j) for every j

All of them are pure and traceable (task ids are traced int32 scalars), so the engine compiles
each once per run. ``first`` is static: the first experience may train what later ones freeze.
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
