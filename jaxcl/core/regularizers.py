"""Continual-learning regularisers on hypernetwork outputs.

The output regulariser of von Oswald et al. (ICLR 2020), used by Hemati et al. (CoLLAs 2023):
the hypernetwork's outputs for earlier tasks must stay close to those of a frozen copy ``H*``
(its variables ``psi_prev``) taken at the end of the previous experience::

    L_H(psi) = 1/|J| sum_{j in J} || H_psi(e_j) - H*(e*_j) ||^2

summed over every task-conditioned output (generated leaves and per-task tables; shared leaves
do not depend on the task and are left out). ``J`` is a fixed-size set of previous task ids with
a mask, so that the compiled step does not change as the number of tasks grows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcl.core.hypernet import Hypernetwork
from jaxcl.types import PyTree


def task_outputs(hnet: Hypernetwork, psi: PyTree, task_ids: jax.Array) -> PyTree:
    """``H_psi(e_j)`` for each ``j`` in ``task_ids``, stacked along a leading axis (``vmap``)."""
    return jax.vmap(lambda t: hnet.apply(psi, t, task_only=True))(task_ids)


def output_regularizer(
    hnet: Hypernetwork,
    psi: PyTree,
    targets: PyTree,
    task_ids: jax.Array,
    mask: jax.Array,
) -> jax.Array:
    """``L_H(psi)``: masked mean over tasks of the squared distance to the frozen outputs.

    Args:
      hnet: the hypernetwork.
      psi: the hypernetwork's variables.
      targets: ``H*(e*_j)`` for ``j`` in ``task_ids``, from :func:`task_outputs` of the frozen copy.
      task_ids: ``(n,)`` int previous task ids (padding entries are ignored through ``mask``).
      mask: ``(n,)`` bool, which entries of ``task_ids`` are real previous tasks.

    Returns:
      A scalar; 0 when no entry of ``mask`` is set.
    """
    outputs = task_outputs(hnet, psi, task_ids)
    per_leaf = jax.tree.map(
        lambda a, b: jnp.sum(jnp.square(a - b).reshape(a.shape[0], -1), axis=1), outputs, targets
    )
    per_task = sum(jax.tree.leaves(per_leaf))
    weights = mask.astype(per_task.dtype)
    return jnp.sum(per_task * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def previous_tasks(
    task_id: jax.Array, num_tasks: int, max_prev: int, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """A fixed-size set of previous task ids and its mask.

    All previous tasks ``0 .. task_id - 1`` when there are at most ``max_prev`` of them;
    otherwise ``max_prev`` of them drawn uniformly without replacement with ``key``.

    Returns:
      ``(ids, mask)``, both of shape ``(max_prev,)``.
    """
    scores = jax.random.uniform(key, (num_tasks,))
    scores = jnp.where(jnp.arange(num_tasks) < task_id, scores, jnp.inf)
    ids = jnp.argsort(scores)[:max_prev].astype(jnp.int32)
    if max_prev > num_tasks:
        ids = jnp.pad(ids, (0, max_prev - num_tasks), constant_values=num_tasks - 1)
    n_valid = jnp.minimum(task_id, max_prev)
    return ids, jnp.arange(max_prev) < n_valid
