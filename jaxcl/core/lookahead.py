"""Exact look-ahead gradients: differentiate a regulariser through a virtual optimizer step.

Hemati et al. (CoLLAs 2023, Sec. 3.2) regularise the hypernetwork *after* a virtual update made with
the current task's gradient. With task loss ``L_CE``, regulariser ``L_H`` and coefficient ``lambda``::

    psi'  = psi + u(grad L_CE(psi))                    virtual optax update (SGD: u(g) = -beta g)
    J(psi) = L_CE(psi) + lambda * L_H(psi')            total objective
    grad J = g1 + g2,   g1 = grad L_CE(psi),   g2 = lambda * grad_psi L_H(psi'(psi))

Order 2 differentiates through the virtual update exactly; for SGD that is
``g2 = lambda (I - beta H_CE(psi)) grad L_H(psi')``, with the Hessian ``H_CE`` never formed: the
chain rule is applied by ``jax.vjp`` of the virtual step and one Hessian-vector product of
``L_CE``, taken forward-over-reverse (``jax.linearize`` of ``jax.grad``). Order 1 treats the inner
gradient as a constant (as ``jax.lax.stop_gradient`` would), which drops the Hessian term:
``g2 = lambda grad L_H(psi')``. Any optax ``GradientTransformation`` can make the virtual step; its
state starts fresh and is discarded. Adam-like steps divide by ``sqrt(v + eps_root)``: pass
``eps_root > 0`` (see :func:`virtual_adam`), or the order-2 gradient is NaN wherever a component of
``g1`` is exactly 0. Order ``"none"`` regularises ``psi`` itself, ``L_CE(psi) + lambda L_H(psi)``:
order 1 through a virtual step that does not move (``optax.set_to_zero()``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcl.types import PyTree

Order = Literal[1, 2, "none"]
ORDERS: tuple[Order, ...] = (1, 2, "none")
"""The look-ahead orders, everywhere in jaxcl: 1 and 2 through a virtual step, ``"none"`` the
regulariser on ``psi`` itself. Config files and ``config.json`` hold them as written here (the
ints 1 and 2, the string ``"none"``)."""

VIRTUAL_STEPS = ("sgd", "adam")
"""The virtual step's optimizers (:func:`virtual_step`)."""


def parse_order(text: str) -> Order:
    """``"1"``, ``"2"`` or ``"none"`` (command-line text) as one of :data:`ORDERS`."""
    for order in ORDERS:
        if text == str(order):
            return order
    raise ValueError(f"order must be one of {', '.join(map(str, ORDERS))}, got {text!r}")


def check_order(order: Any) -> Order:
    """``order`` if it is one of :data:`ORDERS` (``True`` is not 1), else a ``ValueError``."""
    if order not in ORDERS or isinstance(order, bool):
        raise ValueError(f"order={order!r} is not one of {ORDERS}")
    return order


class LookaheadInfo(NamedTuple):
    """What one look-ahead gradient computed on the way, at no extra pass.

    Attributes:
      task_loss: ``L_CE(psi)``.
      reg_loss: ``L_H(psi')``, the regulariser after the virtual step (before ``coef``).
      task_grad: ``g1 = grad L_CE(psi)``.
      reg_grad: ``g2 = coef * grad_psi L_H(psi')``.
      cosine: cosine similarity of ``g1`` and ``g2`` over all leaves (0 where either is 0).
      aux: what ``task_loss`` returned beside the loss when ``has_aux=True``, else ``None``.
      hessian_term: the part of ``reg_grad`` that comes through the Hessian of ``L_CE`` (order 2;
        ``None`` for order 1). ``grad - hessian_term`` is the first-order gradient at the same
        ``psi``, so one order-2 step also gives the order-1 gradient at no extra pass.
      hvp: ``v -> H_CE(psi) v`` (order 2; ``None`` for order 1), the linearisation the gradient
        already made: each call is one tangent pass (e.g. a power-iteration step,
        :func:`jaxcl.core.curvature.power_iteration`). Use it inside the same trace.
    """

    task_loss: jax.Array
    reg_loss: jax.Array
    task_grad: PyTree
    reg_grad: PyTree
    cosine: jax.Array
    aux: Any = None
    hessian_term: Any = None
    hvp: Any = None


def virtual_sgd(learning_rate: float) -> optax.GradientTransformation:
    """The reference virtual step: plain SGD, ``psi' = psi - beta * g``."""
    return optax.sgd(learning_rate)


def virtual_adam(learning_rate: float, *, eps_root: float = 1e-12,
                 **kwargs: Any) -> optax.GradientTransformation:
    """A virtual Adam step whose square root has a finite derivative (``eps_root > 0``)."""
    if not eps_root > 0:
        raise ValueError(f"eps_root must be > 0 for a differentiable virtual Adam, got {eps_root!r}")
    return optax.adam(learning_rate, eps_root=eps_root, **kwargs)


def virtual_step(kind: str, learning_rate: float) -> optax.GradientTransformation:
    """The virtual step of orders 1 and 2: ``"sgd"`` (:func:`virtual_sgd`, the reference's) or
    ``"adam"`` (:func:`virtual_adam`), at ``learning_rate``."""
    if kind not in VIRTUAL_STEPS:
        raise ValueError(f"virtual step {kind!r} is not one of {VIRTUAL_STEPS}")
    return virtual_sgd(learning_rate) if kind == "sgd" else virtual_adam(learning_rate)


def tree_cosine(a: PyTree, b: PyTree) -> jax.Array:
    """``<a, b> / (|a| |b|)`` over all leaves of two pytrees; 0 if either is the zero tree."""
    dot = optax.tree.vdot(a, b)
    norms = optax.tree.norm(a) * optax.tree.norm(b)
    return jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1.0), 0.0)


def lookahead_grad(
    task_loss: Callable[[PyTree], jax.Array],
    reg_loss: Callable[[PyTree], jax.Array],
    params: PyTree,
    *,
    virtual_opt: optax.GradientTransformation | float,
    order: Order,
    coef: float | jax.Array,
    has_aux: bool = False,
) -> tuple[PyTree, LookaheadInfo]:
    """Gradient of ``L_CE(psi) + coef * L_H(psi')`` with respect to ``psi``, ``psi'`` a virtual step.

    Args:
      task_loss: ``psi -> L_CE(psi)``, a scalar (the current batch is closed over); with
        ``has_aux``, ``psi -> (L_CE(psi), aux)``, as for ``jax.grad``.
      reg_loss: ``psi -> L_H(psi)``, a scalar (the frozen hypernetwork and the previous tasks are
        closed over).
      params: ``psi``.
      virtual_opt: the optax transformation of the virtual step; a float ``beta`` means SGD.
      order: one of :data:`ORDERS`: 2 differentiates through the virtual step exactly; 1 stops
        the gradient of the inner gradient (first-order approximation); ``"none"`` takes no
        virtual step (``virtual_opt`` unused). A Python value: it changes the program.
      coef: ``lambda``.
      has_aux: whether ``task_loss`` returns ``(loss, aux)``; ``aux`` comes back in ``info``.

    Returns:
      ``(grad, info)``: the total gradient ``g1 + g2``, a pytree like ``params``, and a
      :class:`LookaheadInfo` with the two parts, the losses and the cosine similarity.
    """
    check_order(order)
    if order == "none":  # L_CE(psi) + lambda L_H(psi): psi' = psi
        virtual_opt, order = optax.set_to_zero(), 1
    if isinstance(virtual_opt, (int, float)):
        if not virtual_opt > 0:
            raise ValueError(f"the virtual SGD learning rate must be > 0, got {virtual_opt!r}")
        virtual_opt = virtual_sgd(float(virtual_opt))

    loss_and_aux = task_loss if has_aux else (lambda psi: (task_loss(psi), None))

    def task_grad(psi):
        (loss, aux), g = jax.value_and_grad(loss_and_aux, has_aux=True)(psi)
        return g, (loss, aux)

    def virtual_step(g, psi):
        updates, _ = virtual_opt.update(g, virtual_opt.init(psi), psi)
        return optax.apply_updates(psi, updates)

    if order == 2:
        # Forward-over-reverse: linearising the gradient keeps the residuals of its forward and
        # backward passes, so the Hessian-vector product below is one tangent pass, not a second
        # reverse pass through the backward pass (about half the time of jax.grad over jax.grad).
        g1, hvp, (loss, aux) = jax.linearize(task_grad, params, has_aux=True)
    else:
        g1, (loss, aux) = task_grad(params)
    psi_virtual, pullback = jax.vjp(virtual_step, g1, params)
    reg, v = jax.value_and_grad(reg_loss)(psi_virtual)
    through_g, through_psi = pullback(v)
    # d psi'/d psi = d u/d psi + (d u/d g) H_CE; H_CE is symmetric, so its transpose product is hvp.
    hessian_term = None if order == 1 else optax.tree.scale(coef, hvp(through_g))
    g2 = optax.tree.scale(coef, through_psi)
    if hessian_term is not None:
        g2 = optax.tree.add(g2, hessian_term)
    total = optax.tree.add(g1, g2)
    return total, LookaheadInfo(loss, reg, g1, g2, tree_cosine(g1, g2), aux, hessian_term,
                                None if order == 1 else hvp)
