"""Naive fine-tuning and EWC: one multi-head network trained on every experience in turn.

Naive trains the whole network on each new experience with nothing against forgetting. EWC
(Kirkpatrick et al., PNAS 2017) adds, for every finished experience ``s``, a quadratic penalty
weighted by the diagonal Fisher information ``F_s`` at the parameters ``theta*_s`` it ended with::

    L(theta) = L_CE(theta) + lambda_EWC * sum_s sum_i F_{s,i} (theta_i - theta*_{s,i})^2

as Avalanche's ``EWCPlugin`` (mode "separate") computes it, with ``F_s`` the mean over the
experience's minibatches of the squared minibatch gradient. The sum over experiences is kept in
a fixed size: ``A = sum_s F_s``, ``B = sum_s F_s theta*_s``, ``C = sum_s F_s theta*_s^2``, so that
the penalty is ``sum_i A_i theta_i^2 - 2 B_i theta_i + C_i`` and the state does not grow. The
engine's consolidation pass after training (:class:`jaxcl.learners.base.Consolidating`) adds
each minibatch's squared gradient (``consolidate``), and ``end_experience`` folds their mean in.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxcl.core.losses import accuracy, cross_entropy
from jaxcl.learners.base import Classifier, apply_optimizer, bytes32, step_metrics
from jaxcl.models import apply_model, split_variables
from jaxcl.types import Batch, PyTree


class FinetuneState(NamedTuple):
    """``params`` of the multi-head network (``{"params": ...}``), Adam's state, the EWC sums
    (zeros for Naive), and the normalisation statistics ``stats`` (``{}`` unless
    ``norm="running"``)."""

    params: PyTree
    opt_state: PyTree
    fisher: PyTree  # A = sum_s F_s
    fisher_anchor: PyTree  # B = sum_s F_s theta*_s
    fisher_const: jax.Array  # sum of C = sum_s F_s theta*_s^2 over all entries
    stats: PyTree = {}
    fisher_sum: PyTree = None  # EWC, during its consolidation pass: sum_b g_b^2 (None for Naive)
    fisher_steps: jax.Array | None = None  # the number of those minibatches b


@dataclasses.dataclass(frozen=True)
class Naive(Classifier):
    """Fine-tune everything, one head per task.

    Attributes:
      net: a :class:`jaxcl.models.MultiHeadClassifier`, applied as ``net.apply(params, x, t)``.
      optimizer: optax optimizer (the study: Adam, lr 1e-3), reset at each experience.
      batch_size: the training minibatch size it was built for (EWC's Fisher pass is the
        engine's consolidation pass, in the run's minibatches).
    """

    net: nn.Module
    optimizer: optax.GradientTransformation
    batch_size: int = 64
    name: str = "naive"

    @property
    def num_tasks(self) -> int:
        """Task ids this strategy holds a head for: ``0 .. num_tasks - 1``."""
        return self.net.num_tasks

    def _penalty(self, state: FinetuneState, params: PyTree) -> jax.Array:
        return jnp.zeros(())

    def init(self, key: jax.Array, sample_x: jax.Array) -> FinetuneState:
        params, stats = split_variables(self.net.init(key, sample_x, 0))
        zeros = jax.tree.map(jnp.zeros_like, params)
        return FinetuneState(params, self.optimizer.init(params), zeros, zeros, jnp.zeros(()),
                             stats)

    def begin_experience(self, state: FinetuneState, task_id: jax.Array,
                         key: jax.Array) -> FinetuneState:
        return state._replace(opt_state=self.optimizer.init(state.params))

    def train_step(self, state: FinetuneState, batch: Batch, task_id: jax.Array, key: jax.Array, *,
                   first: bool) -> tuple[FinetuneState, dict[str, jax.Array]]:
        def loss_fn(params):
            logits, stats = apply_model(self.net, params, state.stats, batch.x, task_id,
                                        train=True)
            ce = cross_entropy(logits, batch.y)
            return ce + self._penalty(state, params), (ce, accuracy(logits, batch.y), stats)

        grads, (ce, acc, stats) = jax.grad(loss_fn, has_aux=True)(state.params)
        params, opt_state = apply_optimizer(self.optimizer, grads, state.opt_state, state.params)
        return (state._replace(params=params, opt_state=opt_state, stats=stats),
                step_metrics(ce, acc))

    def end_experience(self, state: FinetuneState, data: Batch, task_id: jax.Array,
                       key: jax.Array) -> FinetuneState:
        return state

    def logits(self, state: FinetuneState, x: jax.Array, task_id: jax.Array) -> jax.Array:
        return apply_model(self.net, state.params, state.stats, x, task_id, train=False)[0]

    def memory_bytes(self, state: FinetuneState) -> int:
        return 0


@dataclasses.dataclass(frozen=True)
class EWC(Naive):
    """Naive plus the EWC penalty; ``ewc_lambda`` is ``lambda_EWC``."""

    ewc_lambda: float = 1.0
    name: str = "ewc"

    def __post_init__(self):
        if not self.ewc_lambda >= 0:
            raise ValueError(f"ewc_lambda must be >= 0, got {self.ewc_lambda!r}")

    def _penalty(self, state, params):
        quad = jax.tree.map(lambda a, b, p: jnp.sum(a * p * p - 2.0 * b * p), state.fisher,
                            state.fisher_anchor, params)
        return self.ewc_lambda * (sum(jax.tree.leaves(quad)) + state.fisher_const)

    def init(self, key: jax.Array, sample_x: jax.Array) -> FinetuneState:
        state = super().init(key, sample_x)
        return state._replace(fisher_sum=jax.tree.map(jnp.zeros_like, state.params),
                              fisher_steps=jnp.zeros(()))

    def consolidate(self, state: FinetuneState, batch: Batch, task_id: jax.Array,
                    key: jax.Array) -> FinetuneState:
        """One minibatch ``b`` of the Fisher pass: ``fisher_sum += g_b^2``, with ``g_b`` the
        gradient of the minibatch's mean cross-entropy at the parameters training ended with, the
        network in evaluation mode as Avalanche's ``EWCPlugin.compute_importances`` puts it
        (running statistics where ``norm="running"``; batch or instance statistics otherwise)."""
        def ce(params):
            logits = apply_model(self.net, params, state.stats, batch.x, task_id, train=False)[0]
            return cross_entropy(logits, batch.y)

        g = jax.grad(ce)(state.params)
        return state._replace(
            fisher_sum=jax.tree.map(lambda t, gi: t + gi * gi, state.fisher_sum, g),
            fisher_steps=state.fisher_steps + 1)

    def end_experience(self, state: FinetuneState, data: Batch, task_id: jax.Array,
                       key: jax.Array) -> FinetuneState:
        """Fold ``F = fisher_sum / fisher_steps`` (the diagonal empirical Fisher: the mean over
        the pass's minibatches of the squared minibatch gradient) into ``A``, ``B`` and ``C`` at
        ``theta* = params``, and empty the pass's sums. Without a pass ``F`` is 0."""
        f = jax.tree.map(lambda t: t / jnp.maximum(state.fisher_steps, 1.0), state.fisher_sum)
        p = state.params
        const = sum(jax.tree.leaves(jax.tree.map(lambda fi, pi: jnp.sum(fi * pi * pi), f, p)))
        return state._replace(
            fisher=jax.tree.map(jnp.add, state.fisher, f),
            fisher_anchor=jax.tree.map(lambda b, fi, pi: b + fi * pi, state.fisher_anchor, f, p),
            fisher_const=state.fisher_const + const,
            fisher_sum=jax.tree.map(jnp.zeros_like, state.fisher_sum),
            fisher_steps=jnp.zeros_like(state.fisher_steps),
        )

    def memory_bytes(self, state: FinetuneState) -> int:
        return bytes32((state.fisher, state.fisher_anchor))
