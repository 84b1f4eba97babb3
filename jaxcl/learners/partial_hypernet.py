"""The partial-hypernetwork learner (Hemati et al., CoLLAs 2023): its state and compiled step.

The network is split at freeze depth ``k`` into a stateful part ``g_phi`` with ordinary parameters
and a stateless part ``h_omega`` whose parameters a hypernetwork generates per task,
``omega_t = H_psi(e_t)``. Prediction for task ``t``: ``y = h_{H_psi(e_t)}(g_phi(x))``.

* First experience: ``phi`` and ``psi`` are trained together with plain gradients of the
  cross-entropy ``L_CE``.
* Later experiences: ``phi`` is frozen, and ``g_phi(x)`` is a constant of the step (computed outside
  every differentiated function, so no gradient flows through ``g_phi`` at all). ``psi`` is trained
  with :func:`jaxcl.core.lookahead.lookahead_grad` on ``L_CE(psi) + lambda L_H(psi')``, ``L_H`` the
  output regulariser against the frozen copy ``H*`` taken at the end of the previous experience.

Freeze depth, look-ahead order and the models are values of one :class:`PartialHypernet`; the task
id and the previous-task set are traced arrays, so one compiled step serves every task. The step
has two programs, one per phase (``train_stateful``, static): each compiles once for a whole run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxcl.core.hypernet import (
    HypernetConfig,
    Hypernetwork,
    generate_all,
    init_task_embedding,
)
from jaxcl.core.lookahead import ORDERS, lookahead_grad
from jaxcl.core.regularizers import output_regularizer, task_outputs
from jaxcl.types import Batch, PyTree


class LearnerState(NamedTuple):
    """Everything the step reads and writes.

    Attributes:
      hparams: ``psi``, the hypernetwork's variables.
      stateful: ``phi``, the variables of ``g_phi`` (``{}`` for ``k = 0``).
      opt_state: ``{"hnet": ..., "stateful": ...}``, optimizer states for ``psi`` and ``phi``.
      frozen_hparams: ``H*``, the copy of ``psi`` taken at the end of the previous experience.
    """

    hparams: PyTree
    stateful: PyTree
    opt_state: dict[str, PyTree]
    frozen_hparams: PyTree


@dataclasses.dataclass(frozen=True)
class PartialHypernet:
    """A partial-hypernetwork learner: models, optimizers and look-ahead settings.

    Attributes:
      stateless: ``h_omega``, the module whose ``params`` the hypernetwork generates.
      stateful: ``g_phi``, or ``None`` when the hypernetwork generates everything (``k = 0``).
      hnet: the hypernetwork for ``stateless``.
      optimizer: the optax optimizer of ``psi`` and ``phi`` (the study: Adam, lr 1e-3).
      virtual_opt: the optax transformation of the virtual step (the reference: SGD with the
        training learning rate).
      order: look-ahead order, 1 or 2.
      coef: ``lambda``, the weight of the output regulariser.
    """

    stateless: nn.Module
    stateful: nn.Module | None
    hnet: Hypernetwork
    optimizer: optax.GradientTransformation
    virtual_opt: optax.GradientTransformation
    order: int = 2
    coef: float = 0.5

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"order={self.order!r} is not one of {ORDERS}")
        if not self.coef >= 0:
            raise ValueError(f"coef (lambda) must be >= 0, got {self.coef!r}")

    @classmethod
    def build(
        cls,
        stateless: nn.Module,
        stateful: nn.Module | None,
        sample_x: jax.Array,
        *,
        hnet_config: HypernetConfig,
        learning_rate: float = 1e-3,
        optimizer: optax.GradientTransformation | None = None,
        virtual_opt: optax.GradientTransformation | None = None,
        order: int = 2,
        coef: float = 0.5,
        generate: Callable[[tuple[str, ...]], bool] = generate_all,
    ) -> PartialHypernet:
        """A learner with the study's defaults: Adam(lr) to train, SGD(lr) as the virtual step."""
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        features = sample_x
        if stateful is not None:
            features = jax.eval_shape(
                lambda: stateful.apply(stateful.init(jax.random.key(0), sample_x), sample_x)
            )
        hnet = Hypernetwork.for_target(stateless, features, config=hnet_config, generate=generate)
        return cls(
            stateless=stateless,
            stateful=stateful,
            hnet=hnet,
            optimizer=optimizer if optimizer is not None else optax.adam(learning_rate),
            virtual_opt=virtual_opt if virtual_opt is not None else optax.sgd(learning_rate),
            order=order,
            coef=coef,
        )

    # -- pure functions ------------------------------------------------------------------------

    def init(self, key: jax.Array, sample_x: jax.Array) -> LearnerState:
        """Fresh state: ``psi``, ``phi``, optimizer states, and ``H* = psi`` (compiled)."""
        return jax.jit(self._init)(key, sample_x)

    def _init(self, key: jax.Array, sample_x: jax.Array) -> LearnerState:
        hnet_key, stateful_key = jax.random.split(key)
        hparams = self.hnet.init(hnet_key, 0)
        stateful = {} if self.stateful is None else self.stateful.init(stateful_key, sample_x)
        opt_state = {"hnet": self.optimizer.init(hparams), "stateful": self.optimizer.init(stateful)}
        return LearnerState(hparams, stateful, opt_state, hparams)

    def features(self, stateful: PyTree, x: jax.Array) -> jax.Array:
        """``g_phi(x)``, or ``x`` itself when nothing is stateful."""
        return x if self.stateful is None else self.stateful.apply(stateful, x)

    def logits(
        self, hparams: PyTree, stateful: PyTree, x: jax.Array, task_id: jax.Array
    ) -> jax.Array:
        """``h_{H_psi(e_t)}(g_phi(x))``: the weights are generated once for the whole batch."""
        omega = self.hnet.apply(hparams, task_id)
        return self.stateless.apply({"params": omega}, self.features(stateful, x))

    def begin_experience(
        self, state: LearnerState, task_id: int | jax.Array, key: jax.Array
    ) -> LearnerState:
        """Before training task ``task_id``: initialise its embedding (``config.new_task_init``)
        and start ``psi``'s optimizer afresh, as a new experience's optimizer is in the study."""
        hparams = init_task_embedding(
            state.hparams, task_id, mode=self.hnet.config.new_task_init, key=key
        )
        opt_state = {**state.opt_state, "hnet": self.optimizer.init(hparams)}
        return state._replace(hparams=hparams, opt_state=opt_state)

    def end_experience(self, state: LearnerState) -> LearnerState:
        """Take the frozen copy ``H* = psi`` that the next experience's regulariser compares to."""
        return state._replace(frozen_hparams=state.hparams)

    def step(
        self,
        state: LearnerState,
        batch: Batch,
        task_id: jax.Array,
        prev_ids: jax.Array,
        prev_mask: jax.Array,
        *,
        train_stateful: bool,
    ) -> tuple[LearnerState, dict[str, jax.Array]]:
        """One training step; ``train_stateful`` picks the phase (a static Python bool).

        Args:
          state: the learner state.
          batch: the current minibatch of task ``task_id``.
          task_id: int32 scalar.
          prev_ids: ``(n,)`` int32 previous task ids for the regulariser.
          prev_mask: ``(n,)`` bool, which ``prev_ids`` are real (all False in the first experience).
          train_stateful: True in the first experience (plain gradients for ``phi`` and ``psi``),
            False after (``phi`` frozen, look-ahead gradient for ``psi``).

        Returns:
          The new state and metrics: ``loss`` (L_CE), ``accuracy``, ``reg_loss`` (L_H(psi')),
          ``cosine`` (of the task and regulariser gradients), ``grad_norm``, ``grad_rel_diff``
          (``|g_order2 - g_order1| / |g_order1|`` at the same ``psi``; 0 for order 1).
        """
        if train_stateful:
            return self._first_experience_step(state, batch, task_id)
        return self._lookahead_step(state, batch, task_id, prev_ids, prev_mask)

    def _first_experience_step(self, state, batch, task_id):
        def loss_fn(params):
            logits = self.logits(params["hnet"], params["stateful"], batch.x, task_id)
            return _cross_entropy(logits, batch.y), logits

        params = {"hnet": state.hparams, "stateful": state.stateful}
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        new_params, opt_state = {}, {}
        for part in ("hnet", "stateful"):
            updates, opt_state[part] = self.optimizer.update(
                grads[part], state.opt_state[part], params[part]
            )
            new_params[part] = optax.apply_updates(params[part], updates)
        metrics = {
            "loss": loss,
            "accuracy": _accuracy(logits, batch.y),
            "reg_loss": jnp.zeros_like(loss),
            "cosine": jnp.zeros_like(loss),
            "grad_norm": optax.tree.norm(grads),
            "grad_rel_diff": jnp.zeros_like(loss),
        }
        new_state = LearnerState(new_params["hnet"], new_params["stateful"], opt_state,
                                 state.frozen_hparams)
        return new_state, metrics

    def _lookahead_step(self, state, batch, task_id, prev_ids, prev_mask):
        features = self.features(state.stateful, batch.x)  # a constant: phi is frozen
        targets = task_outputs(self.hnet, state.frozen_hparams, prev_ids)

        def task_loss(hparams):
            omega = self.hnet.apply(hparams, task_id)
            logits = self.stateless.apply({"params": omega}, features)
            return _cross_entropy(logits, batch.y), _accuracy(logits, batch.y)

        def reg_loss(hparams):
            return output_regularizer(self.hnet, hparams, targets, prev_ids, prev_mask)

        grads, info = lookahead_grad(
            task_loss, reg_loss, state.hparams,
            virtual_opt=self.virtual_opt, order=self.order, coef=self.coef, has_aux=True,
        )
        updates, hnet_opt_state = self.optimizer.update(
            grads, state.opt_state["hnet"], state.hparams
        )
        hparams = optax.apply_updates(state.hparams, updates)
        if info.hessian_term is None:
            rel_diff = jnp.zeros_like(info.task_loss)
        else:  # |g_order2 - g_order1| / |g_order1| at the same psi, from the same pass
            first_order = optax.tree.norm(optax.tree.sub(grads, info.hessian_term))
            rel_diff = optax.tree.norm(info.hessian_term) / jnp.maximum(first_order, 1e-30)
        metrics = {
            "loss": info.task_loss,
            "accuracy": info.aux,
            "reg_loss": info.reg_loss,
            "cosine": info.cosine,
            "grad_norm": optax.tree.norm(grads),
            "grad_rel_diff": rel_diff,
        }
        opt_state = {**state.opt_state, "hnet": hnet_opt_state}
        return state._replace(hparams=hparams, opt_state=opt_state), metrics

    def make_step(self) -> Callable[..., tuple[LearnerState, dict[str, jax.Array]]]:
        """The jit-compiled :meth:`step` (``train_stateful`` static; everything else traced)."""
        return jax.jit(self.step, static_argnames=("train_stateful",))


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)

