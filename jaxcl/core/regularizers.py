"""Continual-learning regularisers on hypernetwork outputs.

The output regulariser of von Oswald et al. (ICLR 2020), used by Hemati et al. (CoLLAs 2023):
the hypernetwork's outputs for earlier tasks must stay close to those of a frozen copy ``H*``
(its variables ``psi_prev``) taken at the end of the previous experience::

    L_H(psi) = 1/|J| sum_{j in J} || H_psi(e_j) - H*(e*_j) ||^2

summed over every task-conditioned output (generated leaves and per-task tables; shared leaves
do not depend on the task and are left out). ``J`` is a fixed-size set of previous task ids with
a mask, so that the compiled step does not change as the number of tasks grows.

A fixed size alone makes every step pay for all its slots, real or padding.
:func:`output_regularizer_real_slots` is the same ``L_H`` evaluated slot by slot (or chunk by
chunk) in a loop that skips the padding: one compiled program still serves every task, and a
step with 3 real previous tasks evaluates the hypernetwork on 3 slots, not on 20.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxcl.core.hypernet import Hypernetwork
from jaxcl.types import PyTree


def task_outputs(hnet: Hypernetwork, psi: PyTree, task_ids: jax.Array) -> PyTree:
    """``H_psi(e_j)`` for each ``j`` in ``task_ids``, stacked along a leading axis (``vmap``)."""
    return jax.vmap(lambda t: hnet.apply(psi, t, task_only=True))(task_ids)


def task_distances(outputs: PyTree, targets: PyTree) -> jax.Array:
    """``(n,)``: ``|| H_psi(e_j) - H*(e*_j) ||^2`` for each of ``n`` stacked outputs, over all leaves."""
    per_leaf = jax.tree.map(
        lambda a, b: jnp.sum(jnp.square(a - b).reshape(a.shape[0], -1), axis=1), outputs, targets
    )
    return sum(jax.tree.leaves(per_leaf))


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
    per_task = task_distances(task_outputs(hnet, psi, task_ids), targets)
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


def masked_slot_mean(
    per_slot: Callable[[PyTree, jax.Array], jax.Array],
    params: PyTree,
    task_ids: jax.Array,
    mask: jax.Array,
    *,
    chunk: int = 1,
) -> jax.Array:
    """``sum_j m_j l_j(params) / max(sum_j m_j, 1)``, evaluated only on chunks that hold a real slot.

    The slots are cut into chunks of ``chunk`` (the last padded with its last id, masked out); a
    ``jax.lax.scan`` over the chunks evaluates ``per_slot`` on a chunk under ``jax.lax.cond`` only
    where the chunk has a real slot. The trip count is static, so one compiled program serves
    every mask, and a mask with ``r`` real slots first costs ``ceil(r / chunk)`` evaluations.

    Differentiating through the loop would keep the residuals of every chunk, skipped or not
    (``cond`` joins its branches' residuals, zero-filled), and cost what the skipping saves; so a
    ``jax.custom_jvp`` takes each chunk's gradient in the same pass as its value (one
    params-sized sum is all that is kept), and the tangent is ``<grad, dparams>``. The rule is
    itself differentiable (loop and ``cond`` are), so forward-over-reverse and higher orders work.
    Only ``params`` may be differentiated: what ``per_slot`` closes over is a constant, and
    differentiating with respect to it raises ``jax.errors.UnexpectedTracerError`` (a rule of
    ``jax.custom_jvp`` covers its arguments only), never a silent zero.

    Args:
      per_slot: ``(params, ids) -> (len(ids),)`` the loss of each slot of a chunk.
      params: the differentiated variables.
      task_ids: ``(n,)`` int slot ids.
      mask: ``(n,)`` bool, which slots are real (anywhere; real slots first are cheapest).
      chunk: slots evaluated together (static); 1 evaluates exactly the real slots.

    Returns:
      A scalar; 0 when no entry of ``mask`` is set.
    """
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    n = task_ids.shape[0]
    count = -(-n // chunk)
    pad = count * chunk - n
    ids = jnp.pad(task_ids, (0, pad), mode="edge").reshape(count, chunk)
    real = jnp.pad(mask, (0, pad)).reshape(count, chunk)

    def loop(p, with_grad):
        def chunk_sum(q, i, m):
            losses = per_slot(q, i)
            return jnp.sum(losses * m.astype(losses.dtype))

        value = jax.value_and_grad(chunk_sum) if with_grad else (
            lambda q, i, m: (chunk_sum(q, i, m), None))
        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                            jax.eval_shape(value, p, ids[0], real[0]))

        def body(acc, xs):
            part = jax.lax.cond(jnp.any(xs[1]), value, lambda *_: zero, p, *xs)
            return jax.tree.map(jnp.add, acc, part), None

        (total, grad), _ = jax.lax.scan(body, zero, (ids, real))
        denom = jnp.maximum(jnp.sum(mask.astype(total.dtype)), 1.0)
        return total / denom, jax.tree.map(lambda g: g / denom, grad)

    @jax.custom_jvp
    def mean(p):
        return loop(p, with_grad=False)[0]

    @mean.defjvp
    def mean_jvp(primals, tangents):
        value, grad = loop(primals[0], with_grad=True)
        return value, optax.tree.vdot(grad, tangents[0])

    return mean(params)


def output_regularizer_real_slots(
    hnet: Hypernetwork,
    psi: PyTree,
    psi_prev: PyTree,
    task_ids: jax.Array,
    mask: jax.Array,
    *,
    chunk: int = 1,
) -> jax.Array:
    """:func:`output_regularizer` against ``H* = H_{psi_prev}``, evaluated on real slots only.

    The same ``L_H(psi)`` (to float rounding: the sums run in another order) and gradient with
    respect to ``psi``; the targets ``H*(e*_j)`` too are computed only for the chunks evaluated.
    See :func:`masked_slot_mean` for the loop and its gradient; ``psi_prev`` is a constant.

    Args:
      hnet: the hypernetwork.
      psi: the hypernetwork's variables.
      psi_prev: the frozen copy's variables.
      task_ids: ``(n,)`` int previous task ids.
      mask: ``(n,)`` bool, which entries of ``task_ids`` are real previous tasks.
      chunk: slots evaluated together (static; 1: exactly the real ones).

    Returns:
      A scalar; 0 when no entry of ``mask`` is set.
    """

    def per_slot(p, ids):
        return task_distances(task_outputs(hnet, p, ids), task_outputs(hnet, psi_prev, ids))

    return masked_slot_mean(per_slot, psi, task_ids, mask, chunk=chunk)


LOOP_SLOTS_FROM = 100_000
"""HN-k's ``prev_chunk="auto"`` (:func:`auto_prev_chunk`): the generated floats per task from
which the output regulariser loops over the real previous tasks (``prev_chunk=1``) instead of
evaluating every slot at once. Below it the loop's own cost is more than the padding it skips: on
a 100-100 MLP (11,110 generated floats) HN-1's step took 9.3 ms looping and 4.2 ms with every
slot at once; on the slim ResNet at k = 0 (about a million) the loop was 1.25-1.7x faster
(``benchmarks/small_target.py``, ``benchmarks/prev_tasks.py``)."""


def generated_floats(hnet: Hypernetwork) -> int:
    """The floats the hypernetwork generates (or keeps per task) for one task."""
    return sum(math.prod(spec.shape) for spec in hnet.specs if spec.role != "shared")


def auto_prev_chunk(hnet: Hypernetwork) -> int | None:
    """``1`` (loop over the real previous tasks, :func:`output_regularizer_real_slots`) when
    ``hnet`` generates at least :data:`LOOP_SLOTS_FROM` floats a task, else ``None`` (every slot
    at once, :func:`output_regularizer`)."""
    return None if generated_floats(hnet) < LOOP_SLOTS_FROM else 1


def fillable_slots(ids: jax.Array, mask: jax.Array, num_tasks: int
                   ) -> tuple[jax.Array, jax.Array]:
    """The first ``num_tasks - 1`` slots of :func:`previous_tasks`' ``(ids, mask)``: no task has
    more previous tasks, and the real ones come first, so the slots dropped are padding and no
    number changes."""
    slots = max(min(ids.shape[0], num_tasks - 1), 1)
    return ids[:slots], mask[:slots]
