"""Applying a function over an array's leading axis in chunks, without padding.

Evaluation and feature extraction run over whole test sets or buffers in chunks small enough for
memory. Padding the last chunk would change what a model that normalises with the batch's
statistics computes, so the remainder runs as one more call of its own size.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxcl.types import PyTree


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
