"""The classification losses every learner shares, once.

``cross_entropy`` is the mean softmax cross-entropy over a minibatch with integer labels (the
``L_CE`` of every strategy and of the look-ahead), ``accuracy`` the fraction of argmax hits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``L_CE = mean_b -log softmax(logits_b)[y_b]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``mean_b [argmax logits_b = y_b]``."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)
