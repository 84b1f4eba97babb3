"""Image corruptions of the noisy stream (the study's Section 4.2), in JAX, on NHWC in [0, 1].

Experience ``e`` of the noisy stream gets ``NOISY_STREAM[e]``, as the reference implementation
(Hemati et al. 2023, github.com/HamedHemati/Partial-Hypernetworks-for-CL) composes torchvision
transforms on images in [0, 1] (after ``ToTensor``, before ``Normalize``):

1. clean;
2. solarize every image, ``RandomSolarize(0.5, p=1.0)``;
3. Gaussian blur, ``GaussianBlur(kernel_size=5, sigma=(0.9, 0.9))``;
4. ``RandomAutocontrast(p=1.0)``, then ``Grayscale(num_output_channels=3)``, then
   ``GaussianBlur(kernel_size=5, sigma=(0.6, 0.7))``, sigma drawn per image from U[0.6, 0.7].

The transforms follow ``torchvision.transforms.functional`` on float tensors:

* solarize: ``x -> 1 - x`` where ``x >= threshold``, else ``x``;
* Gaussian blur: the 1-D kernel ``w_i = exp(-0.5 (i / sigma)^2) / sum_i exp(-0.5 (i / sigma)^2)``
  for ``i`` in ``-(k-1)/2 .. (k-1)/2``, applied along rows and columns of every channel, edges
  padded by reflection of ``(k-1)/2`` pixels (not repeating the edge pixel);
* autocontrast, per image and per channel ``c``: ``clip((x - min_c) / (max_c - min_c), 0, 1)``
  with ``min_c``, ``max_c`` over the image's pixels; a constant channel is left as it is;
* grayscale: ``0.2989 r + 0.587 g + 0.114 b`` on all three channels.

Every transform is vectorised over the batch and a pure function of its inputs (random ones of an
explicit key), so a stream is deterministic. The stream builders (:mod:`jaxcl.data`,
:mod:`jaxcl.data.tfds_benchmarks`) apply the corruption once to the stored images, so its random
draws (experience 4's sigma) are made once per image when the stream is built, where torchvision
redraws them each time an image is loaded; and the reference applies its random crop and flip
before the corruption, where jaxcl's augmentation (:mod:`jaxcl.data.augment`) runs on the
corrupted, normalised images during training.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def solarize(x: jax.Array, threshold: float = 0.5) -> jax.Array:
    """``1 - x`` where ``x >= threshold``, else ``x`` (torchvision ``solarize``, bound 1)."""
    return jnp.where(x >= threshold, 1.0 - x, x)


def random_solarize(key: jax.Array, x: jax.Array, p: float = 1.0,
                    threshold: float = 0.5) -> jax.Array:
    """:func:`solarize` each image of the batch with probability ``p`` (``RandomSolarize``)."""
    chosen = jax.random.bernoulli(key, p, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(chosen, solarize(x, threshold), x)


def gaussian_kernel(sigma: float | jax.Array, kernel_size: int = 5,
                    dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """torchvision's 1-D Gaussian kernel: ``exp(-0.5 (i / sigma)^2)`` over
    ``i = -(k-1)/2 .. (k-1)/2``, normalised to sum 1."""
    i = jnp.arange(kernel_size, dtype=dtype) - (kernel_size - 1) / 2
    pdf = jnp.exp(-0.5 * (i / sigma) ** 2)
    return pdf / pdf.sum()


def gaussian_blur(x: jax.Array, sigma: float | jax.Array, kernel_size: int = 5) -> jax.Array:
    """Blur NHWC images with :func:`gaussian_kernel`, separably, reflect-padded by ``(k-1)/2``
    (torchvision ``gaussian_blur`` with one ``sigma`` for both axes)."""
    w = gaussian_kernel(sigma, kernel_size, x.dtype)
    r = (kernel_size - 1) // 2
    x = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    h, wd = x.shape[1] - 2 * r, x.shape[2] - 2 * r
    rows = sum(w[j] * x[:, j:j + h] for j in range(kernel_size))
    return sum(w[j] * rows[:, :, j:j + wd] for j in range(kernel_size))


def random_gaussian_blur(key: jax.Array, x: jax.Array, sigma_range: tuple[float, float],
                         kernel_size: int = 5) -> jax.Array:
    """:func:`gaussian_blur` with ``sigma ~ U[sigma_range]`` drawn for each image (``GaussianBlur``
    with a sigma range, which draws one sigma per call, i.e. per image)."""
    lo, hi = sigma_range
    sigmas = jax.random.uniform(key, (x.shape[0],), x.dtype, minval=lo, maxval=hi)
    return jax.vmap(lambda s, image: gaussian_blur(image[None], s, kernel_size)[0])(sigmas, x)


def autocontrast(x: jax.Array) -> jax.Array:
    """Per image and channel, ``clip((x - min) / (max - min), 0, 1)`` over the image's pixels;
    channels with ``max == min`` unchanged (torchvision ``autocontrast``, bound 1)."""
    lo = jnp.min(x, axis=(1, 2), keepdims=True)
    hi = jnp.max(x, axis=(1, 2), keepdims=True)
    scale = 1.0 / (hi - lo)
    flat = ~jnp.isfinite(scale)
    lo, scale = jnp.where(flat, 0.0, lo), jnp.where(flat, 1.0, scale)
    return jnp.clip((x - lo) * scale, 0.0, 1.0)


def grayscale(x: jax.Array) -> jax.Array:
    """``0.2989 r + 0.587 g + 0.114 b`` on all three channels (torchvision ``rgb_to_grayscale``,
    ``num_output_channels=3``)."""
    grey = 0.2989 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    return jnp.repeat(grey[..., None], 3, axis=-1)


NOISY_STREAM: tuple[Callable[[jax.Array, jax.Array], jax.Array], ...] = (
    lambda key, x: x,
    lambda key, x: random_solarize(key, x, p=1.0, threshold=0.5),
    lambda key, x: gaussian_blur(x, 0.9, kernel_size=5),
    lambda key, x: random_gaussian_blur(key, grayscale(autocontrast(x)), (0.6, 0.7), kernel_size=5),
)
NOISE_NAMES = ("clean", "solarize", "Gaussian blur", "autocontrast + grayscale + blur")
