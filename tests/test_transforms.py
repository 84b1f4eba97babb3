"""The noisy stream's corruptions against their formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.data import make_stream
from jaxcl.data import transforms as T


def test_transforms_match_their_formulas(key):
    x = jax.random.uniform(key, (3, 9, 9, 3))
    np.testing.assert_allclose(T.solarize(x, 0.5), np.where(x >= 0.5, 1 - x, x))
    grey = T.grayscale(x)
    np.testing.assert_allclose(grey[..., 0], x @ jnp.array([0.299, 0.587, 0.114]), rtol=1e-6)
    assert np.all(grey[..., 0] == grey[..., 2])
    # Blur keeps constant images and the mean of periodic-free interiors, and smooths noise.
    const = jnp.full((1, 9, 9, 3), 0.3)
    np.testing.assert_allclose(T.gaussian_blur(const, 1.0), const, rtol=1e-6)
    blurred = T.gaussian_blur(x, 1.0)
    assert blurred.shape == x.shape and float(blurred.std()) < float(x.std())
    # The blur is separable: a delta in the middle gives the outer product of the 1-D weights.
    delta = jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0)
    w = np.exp(-np.arange(-2, 3) ** 2 / 2.0)
    w /= w.sum()
    np.testing.assert_allclose(T.gaussian_blur(delta, 1.0)[0, 2:7, 2:7, 0], np.outer(w, w),
                               rtol=1e-5)
    c = T.adjust_contrast(x, 0.5)
    m = T.grayscale(x).mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(c, np.clip(m + 0.5 * (x - m), 0, 1), rtol=1e-6)
    flips = T.random_solarize(key, x, p=0.5)
    per_image = [bool(np.allclose(f, T.solarize(i))) for f, i in zip(flips, x)]
    assert all(p or np.allclose(f, i) for p, f, i in zip(per_image, flips, x))


def test_noisy_stream_is_deterministic_and_corrupted():
    kw = dict(classes_per_task=2, image_size=8, train_per_class=4, test_per_class=4)
    a = make_stream("synthetic_noisy", seed=3, **kw)
    b = make_stream("synthetic_noisy", seed=3, **kw)
    assert len(a) == 4
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea.x_train, eb.x_train)
    grey = a[3].x_train
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-6)  # grayscale experience


def test_random_crop_flip_is_a_window_of_the_padded_image_maybe_mirrored():
    from jaxcl.data.augment import random_crop_flip

    x = jax.random.normal(jax.random.key(0), (16, 5, 5, 3))
    np.testing.assert_array_equal(random_crop_flip(jax.random.key(1), x, padding=0,
                                                   flip_prob=0.0), x)
    np.testing.assert_array_equal(random_crop_flip(jax.random.key(1), x, padding=0,
                                                   flip_prob=1.0), x[:, :, ::-1])
    out = random_crop_flip(jax.random.key(2), x, padding=2)
    assert out.shape == x.shape
    padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
    flipped = 0
    for i in range(16):
        windows = [padded[i, r:r + 5, c:c + 5] for r in range(5) for c in range(5)]
        plain = any(np.array_equal(w, out[i]) for w in windows)
        mirrored = any(np.array_equal(w[:, ::-1], out[i]) for w in windows)
        assert plain or mirrored, i
        flipped += mirrored and not plain
    assert 0 < flipped < 16  # both outcomes of the coin occur
    np.testing.assert_array_equal(out, random_crop_flip(jax.random.key(2), x, padding=2))
    assert not np.array_equal(out, random_crop_flip(jax.random.key(3), x, padding=2))
    with pytest.raises(ValueError, match="NHWC"):
        random_crop_flip(jax.random.key(0), x[0])
