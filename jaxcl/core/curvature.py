"""The largest curvature of a loss, by power iteration on Hessian-vector products.

A look-ahead step ``psi' = psi - eta grad L(psi)`` is a small step only while ``eta`` times the
largest curvature of ``L`` stays well below 1 (beyond 2, SGD on the quadratic model diverges).
:func:`top_curvature` estimates that curvature, ``lambda_max = max_v v^T H v / v^T v``, from a
few Hessian-vector products, the Hessian never formed::

    v_{i+1} = H v_i / |H v_i|,      lambda_i = v_i^T H v_i        (v_i of unit norm)

Each product is one tangent pass of ``jax.linearize`` of ``jax.grad`` (forward over reverse), the
residuals of the gradient kept from the first. Power iteration finds the eigenvalue of largest
magnitude: a strongly negative one can win, so the Rayleigh quotient is returned with its sign.
Warm-starting ``v`` from the previous call (a training step's) lets one product per step track
the top direction while the Hessian drifts slowly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcl.types import PyTree


class Curvature(NamedTuple):
    """A power-iteration estimate.

    Attributes:
      value: the Rayleigh quotient ``v^T H v`` of the last unit vector ``v``.
      vector: ``H v / |H v|``, the next iterate (unit norm): the warm start of the next call.
    """

    value: jax.Array
    vector: PyTree


def unit(tree: PyTree) -> PyTree:
    """``tree / |tree|`` over all leaves (the zero tree stays zero)."""
    norm = optax.tree.norm(tree)
    return optax.tree.scale(jnp.where(norm > 0, 1.0 / jnp.where(norm > 0, norm, 1.0), 0.0), tree)


def power_iteration(hvp: Callable[[PyTree], PyTree], start: PyTree, iters: int) -> Curvature:
    """``iters`` steps of power iteration on the linear map ``hvp`` from ``start`` (any nonzero
    pytree; it is normalised first). ``iters`` is a Python int, unrolled."""
    if not (isinstance(iters, int) and iters >= 1):
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    v = unit(start)
    value = jnp.zeros((), jnp.result_type(*jax.tree.leaves(v)))
    for _ in range(iters):
        hv = hvp(v)
        value = optax.tree.vdot(v, hv)
        v = unit(hv)
    return Curvature(value, v)


def top_curvature(loss: Callable[[PyTree], jax.Array], params: PyTree, start: PyTree,
                  iters: int = 5) -> Curvature:
    """The largest-magnitude eigenvalue of ``d^2 loss / d params^2`` at ``params``, by
    :func:`power_iteration` from ``start``, each product a tangent pass of ``jax.linearize`` of
    ``jax.grad(loss)``."""
    _, hvp = jax.linearize(jax.grad(loss), params)
    return power_iteration(hvp, start, iters)
