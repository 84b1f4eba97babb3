"""Seeds and devices: S seeds as one vmapped program, and data parallelism over a device mesh.

The loop (:mod:`jaxcl.train.loop`, for every learner) runs every seed of a run in one compiled
program, :func:`over_seeds`, and on
``devices > 1`` shard each minibatch along a one-axis ``("data",)`` mesh (:func:`data_mesh`,
:func:`shard_batch`) while states and data are replicated (:func:`replicate`). Outputs are
replicated too and read from this host's copy (:func:`local`), so the same code runs on one CPU,
one GPU, the devices of one host, or every host of a TPU pod after
``jax.distributed.initialize()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcl.types import PyTree


def over_seeds(fn: Callable, in_axes: tuple[int | None, ...], seeds: int) -> Callable:
    """``fn`` over a leading seed axis of the arguments whose axis is 0 (``None``: shared).

    Several seeds: ``jax.vmap``. One seed: ``fn`` itself on the arguments without the axis, its
    outputs given the axis back; a vmap of size 1 would only cost compile time (a third more for
    the ResNet's programs).
    """
    if seeds > 1:
        return jax.vmap(fn, in_axes=in_axes)

    def one(*args):
        args = [a if axis is None else jax.tree.map(lambda v: v[0], a)
                for a, axis in zip(args, in_axes, strict=True)]
        return jax.tree.map(lambda v: v[None], fn(*args))
    return one


def check_devices(devices: int, batch_size: int) -> None:
    """Raise ``ValueError`` unless ``devices`` is in 1..the devices JAX sees (all hosts') and
    divides ``batch_size``."""
    available = jax.device_count()
    if not (isinstance(devices, int) and 1 <= devices <= available):
        raise ValueError(f"devices must be in 1..{available} (the devices JAX sees), got "
                         f"{devices!r}")
    if batch_size % devices:
        raise ValueError(f"batch_size={batch_size} must be a multiple of devices={devices}")


def data_mesh(devices: int) -> Mesh | None:
    """A one-axis ``("data",)`` mesh of the first ``devices`` devices (all hosts'), or ``None``
    for one device (checked with :func:`check_devices` first)."""
    if devices == 1:
        return None
    return jax.make_mesh((devices,), ("data",), devices=jax.devices()[:devices],
                         axis_types=(jax.sharding.AxisType.Auto,))


def shard_batch(batch: PyTree, mesh: Mesh | None) -> PyTree:
    """Inside a compiled step: each device of ``mesh`` takes its share of the minibatch (the
    leading axis of every leaf; under :func:`over_seeds` the seed axis stays whole)."""
    if mesh is None:
        return batch
    return jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P("data")))


def replicated(mesh: Mesh | None) -> dict[str, Any]:
    """``jax.jit`` options that make a program's outputs replicated on ``mesh``, so that each
    program compiles for one input layout."""
    return {} if mesh is None else {"out_shardings": NamedSharding(mesh, P())}


def replicate(tree: PyTree, mesh: Mesh | None) -> PyTree:
    """Every leaf on every device of ``mesh``, all hosts' (from each host's identical copy)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P())

    def put(a):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(a)),
                                            impl=jax.random.key_impl(a))
        return jax.make_array_from_process_local_data(sharding, np.asarray(a))
    return jax.tree.map(put, tree)


def local(tree: PyTree) -> PyTree:
    """Replicated (maybe multi-host) arrays as this host's numpy copy."""
    return jax.tree.map(lambda a: np.asarray(
        a if a.is_fully_addressable else a.addressable_data(0)), tree)
