"""The built-in image benchmark: a task-incremental stream of synthetic images, no download.

:func:`synthetic_image_stream` needs no download: each class is a random prototype image and its
samples are the prototype plus Gaussian noise, ``x = p_c + sigma * eps``, ``eps ~ N(0, I)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcl.types import Experience


def synthetic_image_stream(
    key: jax.Array,
    *,
    num_tasks: int = 5,
    classes_per_task: int = 2,
    train_per_class: int = 100,
    test_per_class: int = 50,
    image_shape: tuple[int, ...] = (16, 16, 3),
    noise: float = 1.0,
) -> list[Experience]:
    """Random class prototypes plus noise, split into tasks; class order drawn from ``key``."""
    for name, value in [("num_tasks", num_tasks), ("classes_per_task", classes_per_task),
                        ("train_per_class", train_per_class), ("test_per_class", test_per_class)]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    num_classes = num_tasks * classes_per_task
    k_order, k_proto, k_train, k_test = jax.random.split(key, 4)
    order = jax.random.permutation(k_order, num_classes)
    prototypes = jax.random.normal(k_proto, (num_classes, *image_shape))

    def samples(k, per_class, classes):
        eps = jax.random.normal(k, (len(classes), per_class, *image_shape))
        x = prototypes[jnp.asarray(classes)][:, None] + noise * eps
        y = jnp.repeat(jnp.arange(len(classes)), per_class)
        return x.reshape(-1, *image_shape), y

    stream = []
    for t in range(num_tasks):
        classes = tuple(int(c) for c in order[t * classes_per_task:(t + 1) * classes_per_task])
        x_tr, y_tr = samples(jax.random.fold_in(k_train, t), train_per_class, classes)
        x_te, y_te = samples(jax.random.fold_in(k_test, t), test_per_class, classes)
        stream.append(Experience(t, classes, x_tr, y_tr, x_te, y_te))
    return stream
