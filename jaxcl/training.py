"""Training an experience as one compiled scan over pre-shuffled minibatches.

The experience's arrays stay on the device; each epoch is a fresh permutation of the examples
(the remainder that does not fill a minibatch is dropped), and every step gets its own key from
``jax.random.split``. Pure: the caller jits :func:`scan_minibatches` with its step closed over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcl.partial_hypernet import Batch

PyTree = Any
Step = Callable[[PyTree, Batch, jax.Array], tuple[PyTree, dict[str, jax.Array]]]


def minibatch_indices(key: jax.Array, num_examples: int, batch_size: int, epochs: int) -> jax.Array:
    """``(epochs * steps_per_epoch, batch_size)`` example indices, one permutation per epoch."""
    if not 0 < batch_size <= num_examples:
        raise ValueError(f"batch_size must be in 1..{num_examples} (the examples), got {batch_size}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    steps = num_examples // batch_size
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_examples))(jax.random.split(key, epochs))
    return perms[:, : steps * batch_size].reshape(epochs * steps, batch_size)


def scan_minibatches(
    step: Step, state: PyTree, data: Batch, key: jax.Array, *, epochs: int, batch_size: int
) -> tuple[PyTree, dict[str, jax.Array]]:
    """Run ``step(state, batch, key)`` over every minibatch of ``epochs`` epochs.

    Returns the final state and the per-step metrics stacked along the first axis.
    """
    index_key, step_key = jax.random.split(key)
    indices = minibatch_indices(index_key, data.x.shape[0], batch_size, epochs)
    keys = jax.random.split(step_key, indices.shape[0])

    def body(state, inputs):
        idx, k = inputs
        return step(state, Batch(jnp.take(data.x, idx, axis=0), jnp.take(data.y, idx, axis=0)), k)

    return jax.lax.scan(body, state, (indices, keys))


def map_chunks(fn: Callable[[PyTree], PyTree], xs: PyTree, chunk_size: int) -> PyTree:
    """``fn`` over leading-axis chunks of ``chunk_size`` (``jax.lax.map``), outputs concatenated.

    The remainder that does not fill a chunk is one more call of its own size, so that every
    example is seen once and no chunk is padded (padding would change batch statistics).
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    size = min(chunk_size, n)
    full = (n // size) * size
    chunks = jax.tree.map(lambda a: a[:full].reshape(n // size, size, *a.shape[1:]), xs)
    out = jax.tree.map(lambda o: o.reshape(full, *o.shape[2:]), jax.lax.map(fn, chunks))
    if full < n:
        rest = fn(jax.tree.map(lambda a: a[full:], xs))
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)
    return out


class CompiledPrograms:
    """A jitted function compiled ahead of time once per input signature, compile time summed.

    ``programs(*args, **static)`` compiles on the first call with a new signature (pytree
    structure, shapes and dtypes of ``args``, values of the static keyword arguments) and reuses
    the executable after; ``len(programs.compiled)`` counts the compilations, ``compile_s`` their
    seconds, so that a run can report compile time apart from training time and prove that it
    compiled once. ``jit_options`` go to ``jax.jit`` (e.g. ``out_shardings``).
    """

    def __init__(self, fn: Callable, static_argnames: Sequence[str] = (), **jit_options):
        self.jitted = jax.jit(fn, static_argnames=tuple(static_argnames), **jit_options)
        self.compiled: dict[Any, Any] = {}
        self.compile_s = 0.0

    def __call__(self, *args, **static):
        leaves, tree = jax.tree.flatten(args)
        sig = (tree, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves),
               tuple(sorted(static.items())))
        if sig not in self.compiled:
            start = time.perf_counter()
            self.compiled[sig] = self.jitted.lower(*args, **static).compile()
            self.compile_s += time.perf_counter() - start
        return self.compiled[sig](*args)


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss; the run stops, its last checkpoint kept."""


def check_finite(loss: np.ndarray, *, experience: int, epoch: int, steps_per_epoch: int) -> None:
    """Raise :class:`NonFiniteError` at the first non-finite entry of ``loss`` ``(seeds, steps)``,
    the steps of experience ``experience`` from the start of epoch ``epoch`` on, naming where."""
    bad = ~np.isfinite(loss)
    if bad.any():
        seed, step = (int(v[0]) for v in np.nonzero(bad))
        raise NonFiniteError(
            f"non-finite loss {loss[seed, step]} at experience {experience}, epoch "
            f"{epoch + step // steps_per_epoch}, step {step % steps_per_epoch} of "
            f"{steps_per_epoch} (seed index {seed}); the run stops, and its last checkpoint is "
            "kept")
