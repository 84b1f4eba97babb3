"""Training augmentation on the device: random crop with padding and horizontal flip (NHWC).

The usual augmentation of CIFAR-like benchmarks: pad each image by ``padding`` pixels of zeros
(zero is the normalised data's mean), take a random ``H x W`` window of the padded image, and
mirror it left-right with probability ``flip_prob``. Vectorised over the batch, a pure function
of an explicit key: the engine draws a fresh key for every minibatch
(``train_stream(..., augment=random_crop_flip)``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def random_crop_flip(key: jax.Array, x: jax.Array, padding: int = 4,
                     flip_prob: float = 0.5) -> jax.Array:
    """``x`` ``(n, H, W, C)`` randomly cropped from its zero-padded copy and randomly flipped."""
    if x.ndim != 4:
        raise ValueError(f"random_crop_flip takes NHWC images, got shape {x.shape}")
    if padding < 0 or not 0 <= flip_prob <= 1:
        raise ValueError(f"padding must be >= 0 and flip_prob in [0, 1], got {padding}, "
                         f"{flip_prob}")
    n, height, width, channels = x.shape
    k_row, k_col, k_flip = jax.random.split(key, 3)
    rows = jax.random.randint(k_row, (n,), 0, 2 * padding + 1)
    cols = jax.random.randint(k_col, (n,), 0, 2 * padding + 1)
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

    def crop(image, r, c):
        return jax.lax.dynamic_slice(image, (r, c, 0), (height, width, channels))

    cropped = jax.vmap(crop)(padded, rows, cols)
    flip = jax.random.bernoulli(k_flip, flip_prob, (n, 1, 1, 1))
    return jnp.where(flip, cropped[:, :, ::-1], cropped)


FLIP_ONLY = functools.partial(random_crop_flip, padding=0)
"""Random horizontal flips alone (the reference's Split-TinyImageNet augmentation)."""
