"""Image corruptions of the noisy stream (the study's Section 4.2), in JAX, on NHWC in [0, 1].

Experience ``e`` of the noisy stream gets ``NOISY_STREAM[e]``: clean; random solarize; Gaussian
blur; contrast + Gaussian blur + grayscale. Every transform is vectorised over the batch and is a
pure function of its inputs (random ones of an explicit key), so a stream is deterministic.

* solarize: ``x -> 1 - x`` where ``x >= threshold``; random solarize does it to each image with
  probability ``p``.
* Gaussian blur: separable convolution with ``w_i ∝ exp(-i^2 / (2 sigma^2))``, ``|i| <= 2 sigma``,
  edges padded by reflection.
* contrast: ``m + f (x - m)``, ``m`` the image's mean grey level, clipped to [0, 1].
* grayscale: ``0.299 r + 0.587 g + 0.114 b`` on all three channels.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def solarize(x: jax.Array, threshold: float = 0.5) -> jax.Array:
    return jnp.where(x >= threshold, 1.0 - x, x)


def random_solarize(key: jax.Array, x: jax.Array, p: float = 0.5, threshold: float = 0.5):
    chosen = jax.random.bernoulli(key, p, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(chosen, solarize(x, threshold), x)


def gaussian_blur(x: jax.Array, sigma: float = 1.0) -> jax.Array:
    radius = max(1, int(round(2 * sigma)))
    i = jnp.arange(-radius, radius + 1, dtype=x.dtype)
    w = jnp.exp(-(i**2) / (2 * sigma**2))
    w = w / w.sum()
    x = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    n = 2 * radius + 1
    rows = sum(w[j] * x[:, j:x.shape[1] - n + 1 + j] for j in range(n))
    return sum(w[j] * rows[:, :, j:rows.shape[2] - n + 1 + j] for j in range(n))


def grayscale(x: jax.Array) -> jax.Array:
    grey = x @ jnp.array([0.299, 0.587, 0.114], x.dtype)
    return jnp.repeat(grey[..., None], 3, axis=-1)


def adjust_contrast(x: jax.Array, factor: float) -> jax.Array:
    mean = jnp.mean(grayscale(x), axis=(1, 2, 3), keepdims=True)
    return jnp.clip(mean + factor * (x - mean), 0.0, 1.0)


NOISY_STREAM: tuple[Callable[[jax.Array, jax.Array], jax.Array], ...] = (
    lambda key, x: x,
    lambda key, x: random_solarize(key, x),
    lambda key, x: gaussian_blur(x, 1.0),
    lambda key, x: grayscale(gaussian_blur(adjust_contrast(x, 0.5), 1.0)),
)
NOISE_NAMES = ("clean", "random solarize", "Gaussian blur", "contrast + blur + grayscale")
