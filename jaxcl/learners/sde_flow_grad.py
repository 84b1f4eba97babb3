"""The gradient a step of the Hypernet-SDE-Flow study follows: plain, look-ahead, or probed.

A variant of :mod:`jaxcl.learners.sde_flow_model` trains on its loss ``L(psi)``
(:func:`jaxcl.learners.sde_flow_model.loss_terms`) alone (``order=None``), or, as the repair, on
``L(psi) + lambda L_H(psi')`` with ``psi' = psi + u(grad L(psi))`` a virtual step (SGD or Adam,
:func:`virtual_optimizer`; frozen parts held still in it as in the real step), differentiated
through :func:`jaxcl.core.lookahead.lookahead_grad` (:func:`objective_grad`). A probed repair
(:func:`probed_grad`) also measures what decides whether its order 2 means anything: the task
loss's largest curvature against the virtual step, and what the Hessian term adds to the
order-1 regulariser gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxcl.core.curvature import power_iteration
from jaxcl.core.lookahead import lookahead_grad, tree_cosine, virtual_step
from jaxcl.core.regularizers import output_regularizer
from jaxcl.learners.sde_flow_model import LossWeights, Variant, loss_terms, shared_mask
from jaxcl.types import PyTree

PROBE_METRICS = ("curvature", "step_curvature", "virtual_move", "correction_ratio",
                 "correction_cosine")
"""What a probed repair step logs besides the loss terms (:func:`objective_grad`)."""


def virtual_optimizer(variant: Variant, weights: LossWeights, psi: PyTree, task_id):
    """The repair's virtual step (``variant.virtual`` at ``eta``); with ``shared="frozen"`` it
    leaves the shared leaves where they are after task 0, as the real step does."""
    inner = virtual_step(variant.virtual, weights.virtual_lr)
    if variant.shared != "frozen":
        return inner
    frozen = frozen_leaves(variant, psi, task_id)
    return optax.chain(inner, optax.stateless(lambda u, _: hold_still(u, frozen)))


def frozen_leaves(variant: Variant, psi: PyTree, task_id) -> PyTree:
    """``True`` on the leaves that do not move in task ``task_id`` (shared ones after task 0,
    with ``shared="frozen"``)."""
    if variant.shared != "frozen":
        return jax.tree.map(lambda _: jnp.zeros((), bool), psi)
    return jax.tree.map(lambda f: f & (task_id > 0), shared_mask(psi))


def hold_still(tree: PyTree, frozen: PyTree) -> PyTree:
    """``tree`` with its :func:`frozen_leaves` set to 0 (an update, or a direction)."""
    return jax.tree.map(lambda a, f: jnp.where(f, 0.0, a), tree, frozen)


def _objective(variant, weights, hnet, psi, x, task_id, memory, targets, progress, key):
    """The task loss ``psi -> (L, terms)``, the regulariser ``psi -> L_H`` and the virtual
    optimizer of a step."""
    def task_loss(p):  # the solves are scans (adjoint "scan"): order 2's jvp runs through them
        return loss_terms(variant, weights, hnet, p, x, task_id, memory, progress, key)

    ids = jnp.arange(memory.shape[0])

    def reg_loss(p):
        return output_regularizer(hnet, p, targets, ids, ids < task_id)

    return task_loss, reg_loss, virtual_optimizer(variant, weights, psi, task_id)


def objective_grad(variant: Variant, weights: LossWeights, hnet, psi, x, task_id, memory,
                   targets, progress, key):
    """The gradient a training step follows, and the step's metrics.

    Order ``None``: ``grad L(psi)``. Orders 1 and 2: the look-ahead gradient of
    ``L(psi) + lambda L_H(psi + u(grad L(psi)))``, ``u`` the virtual step
    (:func:`virtual_optimizer`: SGD, ``u(g) = -eta g``, or Adam), ``L_H`` against ``targets``
    (the outputs of the hypernetwork as the task began, for every task, of which the tasks
    before ``task_id`` count); ``"none"``: the gradient of ``L(psi) + lambda L_H(psi)`` (no
    virtual step).
    """
    task_loss, reg_loss, virtual = _objective(variant, weights, hnet, psi, x, task_id, memory,
                                              targets, progress, key)
    if variant.order is not None:
        grad, info = lookahead_grad(task_loss, reg_loss, psi, virtual_opt=virtual,
                                    order=variant.order, coef=weights.coef, has_aux=True)
        loss, terms, reg = info.task_loss, info.aux, info.reg_loss
    else:
        (loss, terms), grad = jax.value_and_grad(task_loss, has_aux=True)(psi)
        reg = jnp.zeros((), loss.dtype)
    return grad, {"loss": loss, "reg": reg, **terms}


def probed_grad(variant: Variant, weights: LossWeights, hnet, psi, x, task_id, memory, targets,
                progress, key, vector):
    """:func:`objective_grad` of a repair (order 1 or 2) with what explains its order 2, and
    the power iteration's next vector: ``(grad, metrics, vector)``.

    The order-2 look-ahead gradient is computed (its first-order part is the order-1 gradient at
    no extra pass, :class:`jaxcl.core.lookahead.LookaheadInfo`) and ``variant.order``'s is
    followed. With ``H`` the Hessian of the task loss over the leaves that move, ``g = grad L``,
    ``Delta = u(g)`` the virtual step, ``r1`` the order-1 regulariser gradient and ``c`` what
    order 2 adds to it (``lambda (d Delta / d g)^T H grad L_H(psi')``), ``metrics`` adds
    (:data:`PROBE_METRICS`)::

        curvature          lambda_max(H), v^T H v after probe_iters power-iteration products
                           from ``vector`` (warm start; :func:`jaxcl.core.curvature.power_iteration`)
        virtual_move       |Delta|
        step_curvature     |Delta| / |g| * lambda_max   (eta lambda_max for SGD: the look-ahead is
                           a small step only while it is well below 1)
        correction_ratio   |c| / |r1|
        correction_cosine  cos(c, r1)
    """
    task_loss, reg_loss, virtual = _objective(variant, weights, hnet, psi, x, task_id, memory,
                                              targets, progress, key)
    grad, info = lookahead_grad(task_loss, reg_loss, psi, virtual_opt=virtual, order=2,
                                coef=weights.coef, has_aux=True)
    first = optax.tree.sub(info.reg_grad, info.hessian_term)
    if variant.order == 1:
        grad = optax.tree.sub(grad, info.hessian_term)
    frozen = frozen_leaves(variant, psi, task_id)

    def moving(tree):
        return hold_still(tree, frozen)

    curvature = power_iteration(lambda v: moving(info.hvp(moving(v))), moving(vector),
                                variant.probe_iters)
    delta, _ = virtual.update(info.task_grad, virtual.init(psi), psi)
    move, g_norm = optax.tree.norm(delta), optax.tree.norm(moving(info.task_grad))
    probe = {"curvature": curvature.value, "virtual_move": move,
             "step_curvature": move / jnp.maximum(g_norm, 1e-30) * curvature.value,
             "correction_ratio": optax.tree.norm(info.hessian_term)
             / jnp.maximum(optax.tree.norm(first), 1e-30),
             "correction_cosine": tree_cosine(info.hessian_term, first)}
    return grad, {"loss": info.task_loss, "reg": info.reg_loss, **info.aux, **probe}, \
        curvature.vector
