"""Benchmarks by name: ``make_stream(name, seed=..., **options)`` returns a list of experiences.

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
