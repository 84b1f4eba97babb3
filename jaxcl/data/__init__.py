"""Benchmarks by name: ``make_stream(name, seed=..., **options)`` returns a list of experiences.

``load_benchmark(name, seed=..., data_dir=..., manual_dir=...)`` is the one entry for real data
as well: ``"synthetic_images"`` (the ``"synthetic"`` stream, no download), and, with the ``data``
extra installed, the TFDS benchmarks of :mod:`jaxcl.data.tfds_benchmarks`
(``"split_cifar100"``, ``"noisy_cifar"``, ``"split_fashion_mnist"``).

``"synthetic"`` needs no download (random class prototypes plus noise,
:func:`jaxcl.streams.synthetic_image_stream`); the class order, prototypes and noise come from
``seed``. ``"synthetic_noisy"`` is its four-experience noisy stream (clean, solarize, blur,
contrast + blur + grayscale). The real benchmarks of the study (Split-CIFAR100, Split-TinyImageNet, the noisy stream,
cross-dataset streams) register here when their TFDS loaders are installed.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxcl.streams import Experience, synthetic_image_stream


def _synthetic(seed: int, *, num_tasks: int = 5, classes_per_task: int = 2, image_size: int = 16,
               train_per_class: int = 100, test_per_class: int = 50, noise: float = 1.0,
               **_: object) -> list[Experience]:
    return synthetic_image_stream(
        jax.random.key(seed), num_tasks=num_tasks, classes_per_task=classes_per_task,
        train_per_class=train_per_class, test_per_class=test_per_class, noise=noise,
        image_shape=(image_size, image_size, 3))


def _synthetic_noisy(seed: int, *, classes_per_task: int = 2, **options) -> list[Experience]:
    """Four synthetic experiences corrupted as the noisy stream's (:mod:`jaxcl.data.transforms`):
    images squashed to [0, 1] with a sigmoid, corrupted, then centred, ``(x - 0.5) / 0.25``."""
    from jaxcl.data.transforms import NOISY_STREAM

    options = {**options, "num_tasks": len(NOISY_STREAM)}
    stream = _synthetic(seed, classes_per_task=classes_per_task, **options)
    key = jax.random.key(seed + 10_000)
    out = []
    for exp, corrupt in zip(stream, NOISY_STREAM):
        k_train, k_test = jax.random.split(jax.random.fold_in(key, exp.task_id))
        fix = lambda k, x: (corrupt(k, jax.nn.sigmoid(x)) - 0.5) / 0.25  # noqa: E731
        out.append(exp._replace(x_train=fix(k_train, exp.x_train), x_test=fix(k_test, exp.x_test)))
    return out


BENCHMARKS: dict[str, Callable[..., list[Experience]]] = {
    "synthetic": _synthetic, "synthetic_noisy": _synthetic_noisy}


def check_benchmark(name: str) -> None:
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark={name!r} is not one of {tuple(BENCHMARKS)}")


def make_stream(name: str, *, seed: int, **options) -> list[Experience]:
    """The stream ``name`` for ``seed``; options a benchmark does not use are ignored."""
    check_benchmark(name)
    return BENCHMARKS[name](seed, **options)


LOAD_BENCHMARKS = ("synthetic_images", "split_cifar100", "noisy_cifar", "split_fashion_mnist")


def load_benchmark(name: str, *, seed: int, data_dir=None, manual_dir=None,
                   **options) -> list[Experience]:
    """The stream ``name`` (one of :data:`LOAD_BENCHMARKS`) for ``seed``; TensorFlow Datasets is
    imported only for the TFDS benchmarks (see :func:`jaxcl.data.tfds_benchmarks.load_benchmark`
    for ``data_dir``, ``manual_dir`` and the options)."""
    if name not in LOAD_BENCHMARKS:
        raise ValueError(f"benchmark {name!r} is not one of {LOAD_BENCHMARKS}")
    if name == "synthetic_images":
        return make_stream("synthetic", seed=seed, **options)
    from jaxcl.data import tfds_benchmarks

    return tfds_benchmarks.load_benchmark(name, seed=seed, data_dir=data_dir,
                                          manual_dir=manual_dir, **options)
