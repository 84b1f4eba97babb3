"""The noisy stream's corruptions against the reference's torchvision transforms, by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.data import make_stream
from jaxcl.data import transforms as T


def kernel(sigma):
    """torchvision's 5-tap Gaussian kernel, written out: exp(-0.5 (i / sigma)^2), i = -2..2."""
    w = np.exp(-0.5 * (np.array([-2.0, -1.0, 0.0, 1.0, 2.0]) / sigma) ** 2)
    return w / w.sum()


def delta(batch=1, size=9, channels=1, at=(4, 4)):
    return jnp.zeros((batch, size, size, channels)).at[:, at[0], at[1], :].set(1.0)


def test_solarize_inverts_at_and_above_the_threshold():
    x = jnp.array([0.0, 0.2, 0.49, 0.5, 0.51, 0.7, 1.0]).reshape(1, 1, 7, 1)
    np.testing.assert_allclose(T.solarize(x, 0.5)[0, 0, :, 0],
                               [0.0, 0.2, 0.49, 0.5, 0.49, 0.3, 0.0], atol=1e-7)


def test_experience_2_solarizes_every_image(key):
    # Every pixel >= 0.5, so every image changes: RandomSolarize(0.5, p=1.0), not p=0.5.
    x = 0.5 + 0.5 * jax.random.uniform(key, (64, 4, 4, 3))
    for k in jax.random.split(key, 3):
        np.testing.assert_allclose(T.NOISY_STREAM[1](k, x), 1.0 - x, atol=1e-7)


def test_experience_3_blurs_with_sigma_0_9(x64):
    w = kernel(0.9)
    # Differs from the old sigma 1.0 blur by more than the tolerance below.
    assert np.abs(np.outer(w, w) - np.outer(kernel(1.0), kernel(1.0))).max() > 1e-2
    expected = np.zeros((9, 9))
    expected[2:7, 2:7] = np.outer(w, w)
    out = T.NOISY_STREAM[2](jax.random.key(0), delta(channels=2, batch=3).astype(jnp.float64))
    assert out.shape == (3, 9, 9, 2)
    for image in range(3):
        for channel in range(2):
            np.testing.assert_allclose(out[image, :, :, channel], expected, atol=1e-12)


def test_blur_pads_by_reflection_without_repeating_the_edge(x64):
    # A delta in row 1: the reflected copy in padded row -1 adds w[1] (rows 0 and 1 of the
    # output get w[3] + w[1] = 2 w[1] and w[2] + w[0]); edge or symmetric padding would not.
    w = kernel(0.9)
    rows = np.array([2 * w[1], w[0] + w[2], w[1], w[0], 0, 0, 0, 0, 0])
    cols = np.array([0, 0, w[0], w[1], w[2], w[1], w[0], 0, 0])
    out = T.gaussian_blur(delta(at=(1, 4)).astype(jnp.float64), 0.9, kernel_size=5)
    np.testing.assert_allclose(out[0, :, :, 0], np.outer(rows, cols), atol=1e-12)
    const = jnp.full((1, 6, 7, 3), 0.3, jnp.float64)
    np.testing.assert_allclose(T.gaussian_blur(const, 0.9), const, atol=1e-12)


def test_autocontrast_stretches_each_channel_of_each_image_to_0_1():
    # Image 0: channel 0 spans [0.2, 0.6], channel 1 is constant (left as it is), channel 2
    # spans [0.1, 0.9]. Image 1: channel 0 spans [0.5, 0.7], so the stretch is per image.
    x = np.zeros((2, 2, 2, 3), np.float32)
    x[0, ..., 0] = [[0.2, 0.3], [0.4, 0.6]]
    x[0, ..., 1] = 0.7
    x[0, ..., 2] = [[0.1, 0.1], [0.1, 0.9]]
    x[1, ..., 0] = [[0.5, 0.55], [0.6, 0.7]]
    x[1, ..., 1] = [[0.0, 1.0], [0.0, 1.0]]
    x[1, ..., 2] = 0.0
    expected = np.zeros_like(x)
    expected[0, ..., 0] = [[0.0, 0.25], [0.5, 1.0]]
    expected[0, ..., 1] = 0.7
    expected[0, ..., 2] = [[0.0, 0.0], [0.0, 1.0]]
    expected[1, ..., 0] = [[0.0, 0.25], [0.5, 1.0]]
    expected[1, ..., 1] = [[0.0, 1.0], [0.0, 1.0]]
    expected[1, ..., 2] = 0.0
    np.testing.assert_allclose(T.autocontrast(jnp.asarray(x)), expected, atol=1e-6)


def test_grayscale_uses_torchvision_weights(x64):
    x = jnp.eye(3, dtype=jnp.float64).reshape(3, 1, 1, 3)  # pure red, green, blue
    grey = T.grayscale(x)
    np.testing.assert_allclose(grey[:, 0, 0, :], [[0.2989] * 3, [0.587] * 3, [0.114] * 3],
                               rtol=1e-12)


def sigma_of_blurred_delta(image):
    """The sigma of a blurred centred delta, from the ratio of neighbour to centre:
    exp(-0.5 / sigma^2)."""
    ratio = float(image[4, 5] / image[4, 4])
    return np.sqrt(-0.5 / np.log(ratio))


def test_experience_4_is_autocontrast_grayscale_then_blur_with_sigma_in_0_6_0_7(key, x64):
    # A bright centre on a grey background in every channel: autocontrast maps it to a 0/1
    # delta, grayscale to 0.2989 + 0.587 + 0.114 = 0.9999 on all channels, the blur to
    # 0.9999 outer(w, w) with w the kernel at the image's sigma.
    n = 16
    x = (0.25 + 0.5 * delta(batch=n, channels=3)).astype(jnp.float64)
    out = np.asarray(T.NOISY_STREAM[3](key, x))
    centre_06, centre_07 = 0.9999 * kernel(0.6)[2] ** 2, 0.9999 * kernel(0.7)[2] ** 2
    sigmas = []
    for image in out:
        assert centre_07 <= image[4, 4, 0] <= centre_06
        sigma = sigma_of_blurred_delta(image[..., 0])
        assert 0.6 <= sigma <= 0.7
        expected = np.zeros((9, 9))
        expected[2:7, 2:7] = 0.9999 * np.outer(kernel(sigma), kernel(sigma))
        for channel in range(3):
            np.testing.assert_allclose(image[..., channel], expected, atol=1e-10)
        sigmas.append(sigma)
    assert len(set(np.round(sigmas, 8))) == n  # a sigma per image
    np.testing.assert_array_equal(out, T.NOISY_STREAM[3](key, x))
    assert not np.array_equal(out, T.NOISY_STREAM[3](jax.random.key(1), x))


def test_experience_1_is_clean(key):
    x = jax.random.uniform(key, (2, 4, 4, 3))
    np.testing.assert_array_equal(T.NOISY_STREAM[0](key, x), x)


def test_synthetic_noisy_stream_applies_the_transforms_before_centring():
    kw = dict(classes_per_task=2, image_size=8, train_per_class=4, test_per_class=4)
    a = make_stream("synthetic_noisy", seed=3, **kw)
    b = make_stream("synthetic_noisy", seed=3, **kw)
    clean = make_stream("synthetic", seed=3, num_tasks=4, **kw)
    assert len(a) == 4
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea.x_train, eb.x_train)
    unit = [np.asarray(e.x_train) * 0.25 + 0.5 for e in a]  # undo (x - 0.5) / 0.25
    squashed = [jax.nn.sigmoid(e.x_train) for e in clean]
    np.testing.assert_allclose(unit[0], squashed[0], atol=1e-6)
    np.testing.assert_allclose(unit[1], T.solarize(squashed[1]), atol=1e-6)
    np.testing.assert_allclose(unit[2], T.gaussian_blur(squashed[2], 0.9), atol=1e-6)
    grey = unit[3]
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-6)  # grayscale experience
    np.testing.assert_allclose(grey[..., 1], grey[..., 2], atol=1e-6)
    # Table 1's normal stream: the same images squashed and centred, none corrupted.
    normal = make_stream("synthetic_noisy", seed=3, clean=True, **kw)
    for e, plain in zip(normal, squashed):
        np.testing.assert_allclose(np.asarray(e.x_train) * 0.25 + 0.5, plain, atol=1e-6)
    assert [e.classes for e in normal] == [e.classes for e in a]


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


def test_flip_only_mirrors_or_keeps_each_image():
    """``--no-crop`` (the reference's Split-TinyImageNet): each image as it is or mirrored."""
    from jaxcl.data.augment import FLIP_ONLY

    x = jax.random.normal(jax.random.key(0), (32, 5, 5, 3))
    out = np.asarray(FLIP_ONLY(jax.random.key(1), x))
    kept = [np.array_equal(o, a) for o, a in zip(out, np.asarray(x))]
    mirrored = [np.array_equal(o, a[:, ::-1]) for o, a in zip(out, np.asarray(x))]
    assert all(k or m for k, m in zip(kept, mirrored)) and 0 < sum(mirrored) < 32
