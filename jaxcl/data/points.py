"""The Hypernet-SDE-Flow study's benchmark: five tasks of 3-D points, each from its own manifold.

Task ``t`` draws its points from one non-linear map of uniform parameters (``s``, ``u``, ``v``,
``h`` below), standardises each coordinate with the mean and standard deviation of its training
split (so that every task has roughly unit variance per coordinate and the tasks share one range),
then adds isotropic Gaussian noise of standard deviation ``noise``:

====  ============  ===========================================================================
 t    name          point
====  ============  ===========================================================================
 0    helix         ``(cos s, sin s, s / 2pi)``,                              ``s ~ U(0, 4pi)``
 1    saddle        ``(u, v, u^2 - v^2)``,                                    ``u, v ~ U(-1, 1)``
 2    swiss_roll    ``(s cos s, h, s sin s)``,                   ``s ~ U(1.5pi, 4.5pi), h ~ U(0, 10)``
 3    torus_knot    ``((2 + cos 3s) cos 2s, (2 + cos 3s) sin 2s, -sin 3s)``   ``s ~ U(0, 2pi)``
 4    sine_sheet    ``(u, v, sin(pi u) cos(pi v))``,                          ``u, v ~ U(-1, 1)``
====  ============  ===========================================================================

The helix and the (2, 3) torus knot are curves, the others surfaces. Everything is a pure function
of one PRNG key: the same key gives the same points.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxcl.types import Experience

PI = jnp.pi


def helix(key: jax.Array, n: int) -> jax.Array:
    s = jax.random.uniform(key, (n,), minval=0.0, maxval=4 * PI)
    return jnp.stack([jnp.cos(s), jnp.sin(s), s / (2 * PI)], axis=-1)


def saddle(key: jax.Array, n: int) -> jax.Array:
    u, v = jax.random.uniform(key, (2, n), minval=-1.0, maxval=1.0)
    return jnp.stack([u, v, u**2 - v**2], axis=-1)


def swiss_roll(key: jax.Array, n: int) -> jax.Array:
    k_s, k_h = jax.random.split(key)
    s = jax.random.uniform(k_s, (n,), minval=1.5 * PI, maxval=4.5 * PI)
    h = jax.random.uniform(k_h, (n,), minval=0.0, maxval=10.0)
    return jnp.stack([s * jnp.cos(s), h, s * jnp.sin(s)], axis=-1)


def torus_knot(key: jax.Array, n: int) -> jax.Array:
    s = jax.random.uniform(key, (n,), minval=0.0, maxval=2 * PI)
    r = 2.0 + jnp.cos(3 * s)
    return jnp.stack([r * jnp.cos(2 * s), r * jnp.sin(2 * s), -jnp.sin(3 * s)], axis=-1)


def sine_sheet(key: jax.Array, n: int) -> jax.Array:
    u, v = jax.random.uniform(key, (2, n), minval=-1.0, maxval=1.0)
    return jnp.stack([u, v, jnp.sin(PI * u) * jnp.cos(PI * v)], axis=-1)


MANIFOLDS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "helix": helix, "saddle": saddle, "swiss_roll": swiss_roll, "torus_knot": torus_knot,
    "sine_sheet": sine_sheet,
}
"""Task ``t`` is the ``t``-th manifold, in this order."""


def point_tasks(
    key: jax.Array,
    *,
    num_tasks: int = 5,
    train_per_task: int = 300,
    test_per_task: int = 100,
    noise: float = 0.05,
) -> list[Experience]:
    """The five-task 3-D point benchmark (module docstring), or its first ``num_tasks`` tasks, as
    a stream: experience ``t`` holds task ``t``'s points, ``x_train`` ``(train_per_task, 3)`` and
    ``x_test`` ``(test_per_task, 3)`` (held out, standardised with the training statistics); the
    labels are zeros and there are no classes (the points are reconstructed, not classified).

    Args:
      key: the one source of randomness.
      num_tasks: 1..5.
      train_per_task: training points per task (300 in the study).
      test_per_task: held-out points per task.
      noise: standard deviation of the Gaussian noise added after standardisation.
    """
    if not (isinstance(num_tasks, int) and 1 <= num_tasks <= len(MANIFOLDS)):
        raise ValueError(f"num_tasks must be an integer in 1..{len(MANIFOLDS)}, got {num_tasks!r}")
    for name, value in (("train_per_task", train_per_task), ("test_per_task", test_per_task)):
        if not (isinstance(value, int) and value >= 2):
            raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    names = tuple(MANIFOLDS)[:num_tasks]
    stream = []
    for t, name in enumerate(names):
        k_points, k_noise = jax.random.split(jax.random.fold_in(key, t))
        points = MANIFOLDS[name](k_points, train_per_task + test_per_task)
        mean = points[:train_per_task].mean(axis=0, keepdims=True)
        std = points[:train_per_task].std(axis=0, keepdims=True)
        points = (points - mean) / std + noise * jax.random.normal(k_noise, points.shape)
        stream.append(Experience(t, (), points[:train_per_task],
                                 jnp.zeros(train_per_task, jnp.int32), points[train_per_task:],
                                 jnp.zeros(test_per_task, jnp.int32)))
    return stream
