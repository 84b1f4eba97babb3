"""The partial-hypernetwork learner HN-k (Hemati et al., CoLLAs 2023; HN-F is k = 0).

The network is split at freeze depth ``k`` (:func:`jaxcl.models.split_model`) into a lower part
``g_phi`` with ordinary parameters ``phi`` and an upper part ``h_omega`` whose parameters a
hypernetwork generates per task, ``omega_t = H_psi(e_t)``. Prediction for task ``t``::

    y = h_{H_psi(e_t)}(g_phi(x))

* First experience: ``phi`` and ``psi`` are trained together with plain gradients of the
  cross-entropy ``L_CE``.
* Later experiences: ``phi`` is frozen, and ``g_phi(x)`` is a constant of the step (computed outside
  every differentiated function, so no gradient flows through ``g_phi`` at all). ``psi`` is trained
  with :func:`jaxcl.core.lookahead.lookahead_grad` on::

      L_CE(psi) + lambda L_H(psi'),   psi' = psi + u(grad L_CE(psi))   (order 1 or 2)
      L_CE(psi) + lambda L_H(psi)                                      (order "none")

  ``L_H`` the output regulariser (:func:`jaxcl.core.regularizers.output_regularizer`) against the
  frozen copy ``psi_prev`` (``H*``) taken at the end of the previous experience, over up to
  ``max_prev_tasks`` previous tasks drawn per step (a fixed-size, masked set). Order ``"none"``
  regularises ``psi`` itself: the virtual step is ``optax.set_to_zero()``, so ``psi' = psi``.
  ``L_H`` and its targets are evaluated on the real previous tasks only, in a loop over the slots
  that skips the padding (:func:`jaxcl.core.regularizers.output_regularizer_real_slots`): the
  same loss and gradient as over every slot, and an early experience no longer pays for
  ``max_prev_tasks`` hypernetwork evaluations.

``h_omega`` and ``g_phi`` are Flax Linen or NNX modules (an ``nnx.Module`` is split into its graph
definition and parameter state, :mod:`jaxcl.core.nnx_target`; the hypernetwork writes that state).
Freeze depth, look-ahead order and the models are values of one :class:`PartialHypernet`; the task
id and the previous-task set are traced arrays, so one compiled step serves every task. The step
has two programs, one per phase (``first``, static): each compiles once for a whole run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxcl.core.hypernet import (
    HypernetConfig,
    Hypernetwork,
    generate_all,
    hypernet_optimizer,
    init_task_embedding,
    task_private,
)
from jaxcl.core.lookahead import Order, check_order, lookahead_grad, virtual_step
from jaxcl.core.losses import accuracy, cross_entropy
from jaxcl.core.nnx_target import NnxTarget, as_target
from jaxcl.core.regularizers import (
    auto_prev_chunk,
    fillable_slots,
    output_regularizer,
    output_regularizer_real_slots,
    previous_tasks,
    task_outputs,
)
from jaxcl.learners.base import (
    METRIC_KEYS,
    Classifier,
    apply_optimizer,
    bytes32,
    step_metrics,
)
from jaxcl.types import Batch, PyTree

DEFAULTS = {"order": 1, "coef": 0.5, "max_prev_tasks": 20, "reg_warmup": 0.25,
            "task_lr_scale": 1.0}
"""HN-k's training defaults, defined here once (:class:`PartialHypernet`,
:meth:`PartialHypernet.build` and :class:`jaxcl.learners.StrategyConfig` read them): first-order
look-ahead (the paper's Table 2), ``lambda`` 0.5 and 20 previous tasks a step (the paper's), the
regulariser off for the first quarter of each later experience and one learning rate for the
per-task leaves (jaxcl's; the paper's ``reg_warmup`` is 0, :data:`jaxcl.learners.HN_PRESETS`)."""

DIAGNOSTICS = ("reg_share", "embedding_shift", "table_shift")
"""HN-k's step metrics beyond :data:`jaxcl.learners.base.METRIC_KEYS`: ``reg_share``, the
regulariser's share ``lambda L_H / (L_CE + lambda L_H)`` of the step's objective (0 in the first
experience and while the regulariser is warming up); ``embedding_shift`` and ``table_shift``, how
far (L2) the current task's embedding ``e_t`` and its rows of the per-task tables have moved
from where :meth:`PartialHypernet.begin_experience` started them. Beside them, ``order_cosine``:
the cosine of the order-2 and order-1 gradients at the same ``psi`` (0 unless order 2; the
paper's Figure 12)."""


class HypernetState(NamedTuple):
    """Everything the step reads and writes.

    Attributes:
      psi: the hypernetwork's variables.
      phi: the variables of the lower part ``g_phi`` (``{}`` for ``k = 0``).
      opt_state: ``{"psi": ..., "phi": ...}``, the optimizer states of ``psi`` and ``phi``.
      psi_prev: ``H*``, the copy of ``psi`` taken at the end of the previous experience.
      step: int32, steps taken in the current experience (the regulariser's warm-up reads it).
      prev_steps: int32, the steps the previous experience took (the warm-up's unit).
      task_start: the current task's own parameters as the experience began
        (:func:`jaxcl.core.hypernet.task_private`), which the shift diagnostics measure from.
    """

    psi: PyTree
    phi: PyTree
    opt_state: dict[str, PyTree]
    psi_prev: PyTree
    step: jax.Array
    prev_steps: jax.Array
    task_start: PyTree


@dataclasses.dataclass(frozen=True)
class PartialHypernet(Classifier):
    """HN-k: models, optimizers and look-ahead settings.

    Attributes:
      upper: ``h_omega``, the module whose ``params`` the hypernetwork generates (Linen, or an
        NNX module as an :class:`jaxcl.core.nnx_target.NnxTarget`).
      lower: ``g_phi``, or ``None`` when the hypernetwork generates everything (``k = 0``).
      hnet: the hypernetwork for ``upper``.
      optimizer: the optax optimizer of ``psi`` and ``phi`` (the study: Adam, lr 1e-3;
        :func:`jaxcl.core.hypernet.hypernet_optimizer` gives the per-task leaves a rate of their own).
      virtual_opt: the optax transformation of the virtual step of orders 1 and 2 (the
        reference: SGD with the training learning rate).
      order: look-ahead order, one of :data:`jaxcl.core.lookahead.ORDERS`: 1, 2, or ``"none"``
        (no virtual step).
      coef: ``lambda``, the weight of the output regulariser.
      max_prev_tasks: previous tasks in the regulariser per step (the study: 20).
      prev_chunk: previous-task slots the regulariser evaluates together in its loop over the
        slots, which skips chunks of padding (1: exactly the real previous tasks;
        :func:`jaxcl.core.regularizers.output_regularizer_real_slots`); ``None`` evaluates at once
        every slot a task can fill, real or padding (:func:`jaxcl.core.regularizers.fillable_slots`).
      reg_warmup: the fraction of every experience after the first, at its start, in which the
        regulariser is off (``lambda = 0``), in [0, 1): the first
        ``floor(reg_warmup * n_prev)`` steps, ``n_prev`` the steps the previous experience took
        (a split stream's experiences are alike; 0, the paper's: on from the first step). A new
        task first finds its weights; then the regulariser holds earlier tasks' outputs.
    """

    upper: nn.Module | NnxTarget
    lower: nn.Module | NnxTarget | None
    hnet: Hypernetwork
    optimizer: optax.GradientTransformation
    virtual_opt: optax.GradientTransformation
    order: Order = DEFAULTS["order"]
    coef: float = DEFAULTS["coef"]
    max_prev_tasks: int = DEFAULTS["max_prev_tasks"]
    prev_chunk: int | None = 1
    reg_warmup: float = DEFAULTS["reg_warmup"]
    name: str = "hypernetwork"
    step_metrics = (*METRIC_KEYS, *DIAGNOSTICS, "order_cosine")

    def __post_init__(self):
        check_order(self.order)
        if not self.coef >= 0:
            raise ValueError(f"coef (lambda) must be >= 0, got {self.coef!r}")
        if not (isinstance(self.max_prev_tasks, int) and self.max_prev_tasks >= 1):
            raise ValueError(f"max_prev_tasks must be >= 1, got {self.max_prev_tasks!r}")
        if not (self.prev_chunk is None
                or (isinstance(self.prev_chunk, int) and self.prev_chunk >= 1)):
            raise ValueError(f"prev_chunk must be None or >= 1, got {self.prev_chunk!r}")
        if not 0.0 <= self.reg_warmup < 1.0:
            raise ValueError(f"reg_warmup must be a fraction in [0, 1), got {self.reg_warmup!r}")

    @classmethod
    def build(
        cls,
        upper: nn.Module | nnx.Module,
        lower: nn.Module | nnx.Module | None,
        sample_x: jax.Array,
        *,
        hnet_config: HypernetConfig,
        learning_rate: float = 1e-3,
        task_lr_scale: float = DEFAULTS["task_lr_scale"],
        optimizer: optax.GradientTransformation | None = None,
        virtual_opt: optax.GradientTransformation | None = None,
        order: Order = DEFAULTS["order"],
        coef: float = DEFAULTS["coef"],
        max_prev_tasks: int = DEFAULTS["max_prev_tasks"],
        prev_chunk: int | None | str = "auto",
        reg_warmup: float = DEFAULTS["reg_warmup"],
        generate: Callable[[tuple[str, ...]], bool] = generate_all,
    ) -> PartialHypernet:
        """A learner with jaxcl's defaults (:data:`DEFAULTS`; ``hnet_config`` says how the
        hypernetwork starts): Adam(lr) to train (the per-task leaves at ``task_lr_scale * lr``,
        :func:`jaxcl.core.hypernet.hypernet_optimizer`, unless ``optimizer`` is given), SGD(lr)
        as the virtual step; ``prev_chunk="auto"`` as
        :func:`jaxcl.core.regularizers.auto_prev_chunk` says. ``upper`` and ``lower`` are Linen or
        NNX modules (:func:`as_target`); ``generate`` filters the paths of ``upper``'s
        parameters."""
        default_optimizer = hypernet_optimizer(learning_rate, task_lr_scale)
        upper, lower = as_target(upper), None if lower is None else as_target(lower)
        features = sample_x if lower is None else jax.eval_shape(
            lambda: lower.apply(lower.init(jax.random.key(0), sample_x), sample_x))
        hnet = Hypernetwork.for_target(upper, features, config=hnet_config, generate=generate)
        prev_chunk = auto_prev_chunk(hnet) if prev_chunk == "auto" else prev_chunk
        return cls(
            upper=upper,
            lower=lower,
            hnet=hnet,
            optimizer=optimizer if optimizer is not None else default_optimizer,
            virtual_opt=virtual_opt if virtual_opt is not None else virtual_step("sgd",
                                                                                 learning_rate),
            order=order,
            coef=coef,
            max_prev_tasks=max_prev_tasks,
            prev_chunk=prev_chunk,
            reg_warmup=reg_warmup,
        )

    @property
    def near_chance_hint(self) -> str:
        """The likely cause of a new task that stays near chance, and what helps (the loop's
        :func:`jaxcl.train.loop.near_chance_advice`)."""
        if self.hnet.config.new_task_init == "copy_prev":
            return ("a new task starts as a copy of the previous task's network and the "
                    "regulariser holds the shared weights still: start it afresh "
                    "(new_task_init='random', --new-task-init random) or train longer")
        if self.coef > 0:
            return ("the output regulariser holds the shared weights still while the new task's "
                    f"loss is high: switch it off for a larger part of each experience's start "
                    f"(reg_warmup, --reg-warmup; now {self.reg_warmup:g}), lower lambda (coef), "
                    "or train longer")
        return "train longer or with a larger learning rate"

    @property
    def num_tasks(self) -> int:
        """Rows of the hypernetwork's task-embedding table: task ids ``0 .. num_tasks - 1``."""
        return self.hnet.config.num_tasks

    # -- the Learner protocol: pure functions --------------------------------------------------

    def init(self, key: jax.Array, sample_x: jax.Array) -> HypernetState:
        """Fresh state: ``psi``, ``phi``, optimizer states, and ``psi_prev = psi``."""
        psi_key, phi_key = jax.random.split(key)
        psi = self.hnet.init(psi_key, 0)
        phi = {} if self.lower is None else self.lower.init(phi_key, sample_x)
        opt_state = {"psi": self.optimizer.init(psi), "phi": self.optimizer.init(phi)}
        zero = jnp.zeros((), jnp.int32)
        return HypernetState(psi, phi, opt_state, psi, zero, zero,
                             task_private(self.hnet, psi, 0))

    def features(self, phi: PyTree, x: jax.Array) -> jax.Array:
        """``g_phi(x)``, or ``x`` itself when there is no lower part."""
        return x if self.lower is None else self.lower.apply(phi, x)

    def logits(self, state: HypernetState, x: jax.Array, task_id: jax.Array) -> jax.Array:
        """``h_{H_psi(e_t)}(g_phi(x))``: the weights are generated once for the whole batch."""
        omega = self.hnet.apply(state.psi, task_id)
        return self.upper.apply({"params": omega}, self.features(state.phi, x))

    def begin_experience(
        self, state: HypernetState, task_id: int | jax.Array, key: jax.Array
    ) -> HypernetState:
        """Before training task ``task_id``: initialise its embedding (``config.new_task_init``)
        and start ``psi``'s optimizer afresh, as a new experience's optimizer is in the study."""
        psi = init_task_embedding(state.psi, task_id, mode=self.hnet.config.new_task_init, key=key)
        opt_state = {**state.opt_state, "psi": self.optimizer.init(psi)}
        return state._replace(psi=psi, opt_state=opt_state, step=jnp.zeros_like(state.step),
                              task_start=task_private(self.hnet, psi, task_id))

    def train_step(
        self, state: HypernetState, batch: Batch, task_id: jax.Array, key: jax.Array, *,
        first: bool,
    ) -> tuple[HypernetState, dict[str, jax.Array]]:
        """One training step: up to ``max_prev_tasks`` previous tasks drawn with ``key``
        (:func:`jaxcl.core.regularizers.previous_tasks`), then :meth:`phase_step`; the metrics
        are the common ones (:data:`jaxcl.learners.base.METRIC_KEYS`)."""
        ids, mask = previous_tasks(task_id, self.num_tasks, self.max_prev_tasks, key)
        state, m = self.phase_step(state, batch, task_id, ids, mask, first=first)
        return state, step_metrics(m["loss"], m["accuracy"], cosine=m["cosine"],
                                   grad_rel_diff=m["grad_rel_diff"],
                                   **{name: m[name] for name in (*DIAGNOSTICS, "order_cosine")})

    def end_experience(
        self, state: HypernetState, data: Batch, task_id: jax.Array, key: jax.Array
    ) -> HypernetState:
        """Take the frozen copy ``psi_prev = psi`` that the next experience's regulariser
        compares to, and count the experience's steps (the next warm-up's unit)."""
        return state._replace(psi_prev=state.psi, prev_steps=state.step)

    def memory_bytes(self, state: HypernetState) -> int:
        """The frozen copy ``psi_prev`` (``H*``) kept for the regulariser."""
        return bytes32(state.psi_prev)

    # -- the two phases ------------------------------------------------------------------------

    def phase_step(
        self,
        state: HypernetState,
        batch: Batch,
        task_id: jax.Array,
        prev_ids: jax.Array,
        prev_mask: jax.Array,
        *,
        first: bool,
    ) -> tuple[HypernetState, dict[str, jax.Array]]:
        """The step of one phase for a given previous-task set, with every diagnostic.

        Args:
          state: the learner state.
          batch: the current minibatch of task ``task_id``.
          task_id: int32 scalar.
          prev_ids: ``(n,)`` int32 previous task ids for the regulariser.
          prev_mask: ``(n,)`` bool, which ``prev_ids`` are real (all False in the first experience).
          first: True in the first experience (plain gradients for ``phi`` and ``psi``), False
            after (``phi`` frozen, look-ahead gradient for ``psi``); a static Python bool.

        Returns:
          The new state and metrics: ``loss`` (L_CE), ``accuracy``, ``reg_loss`` (L_H(psi')),
          ``cosine`` (of the task and regulariser gradients), ``grad_norm``, ``grad_rel_diff``
          (``|g_order2 - g_order1| / |g_order1|`` at the same ``psi``; 0 for order 1), and the
          :data:`DIAGNOSTICS`.
        """
        if first:
            state, metrics = self._first_step(state, batch, task_id)
        else:
            state, metrics = self._lookahead_step(state, batch, task_id, prev_ids, prev_mask)
        now = task_private(self.hnet, state.psi, task_id)
        shift = jax.tree.map(jnp.subtract, now, state.task_start)
        metrics["embedding_shift"] = optax.tree.norm(shift.pop("embedding"))
        metrics["table_shift"] = optax.tree.norm(shift)
        return state._replace(step=state.step + 1), metrics

    def _first_step(self, state, batch, task_id):
        def loss_fn(params):
            omega = self.hnet.apply(params["psi"], task_id)
            logits = self.upper.apply({"params": omega}, self.features(params["phi"], batch.x))
            return cross_entropy(logits, batch.y), logits

        params = {"psi": state.psi, "phi": state.phi}
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        new, opt_state = {}, {}
        for part in ("psi", "phi"):
            new[part], opt_state[part] = apply_optimizer(
                self.optimizer, grads[part], state.opt_state[part], params[part])
        metrics = {
            "loss": loss,
            "accuracy": accuracy(logits, batch.y),
            "reg_loss": jnp.zeros_like(loss),
            "cosine": jnp.zeros_like(loss),
            "grad_norm": optax.tree.norm(grads),
            "grad_rel_diff": jnp.zeros_like(loss),
            "reg_share": jnp.zeros_like(loss),
            "order_cosine": jnp.zeros_like(loss),
        }
        return state._replace(psi=new["psi"], phi=new["phi"], opt_state=opt_state), metrics

    def _lookahead_step(self, state, batch, task_id, prev_ids, prev_mask):
        features = self.features(state.phi, batch.x)  # a constant: phi is frozen

        def task_loss(psi):
            omega = self.hnet.apply(psi, task_id)
            logits = self.upper.apply({"params": omega}, features)
            return cross_entropy(logits, batch.y), accuracy(logits, batch.y)

        if self.prev_chunk is None:  # every slot at once, real or padding
            prev_ids, prev_mask = fillable_slots(prev_ids, prev_mask, self.num_tasks)
            targets = task_outputs(self.hnet, state.psi_prev, prev_ids)

            def reg_loss(psi):
                return output_regularizer(self.hnet, psi, targets, prev_ids, prev_mask)
        else:  # a loop over the real slots: hypernetwork evaluations only, no convolution

            def reg_loss(psi):
                return output_regularizer_real_slots(self.hnet, psi, state.psi_prev, prev_ids,
                                                     prev_mask, chunk=self.prev_chunk)

        warmup = jnp.floor(self.reg_warmup * state.prev_steps)
        coef = jnp.where(state.step < warmup, 0.0, self.coef)  # off while warming up
        grads, info = lookahead_grad(
            task_loss, reg_loss, state.psi,
            virtual_opt=self.virtual_opt, order=self.order, coef=coef, has_aux=True,
        )
        psi, psi_opt = apply_optimizer(self.optimizer, grads, state.opt_state["psi"], state.psi)
        if info.hessian_term is None:
            rel_diff = order_cosine = jnp.zeros_like(info.task_loss)
        else:  # order 2 against order 1 at the same psi, from the same pass
            g1 = optax.tree.sub(grads, info.hessian_term)
            first_order = optax.tree.norm(g1)
            rel_diff = optax.tree.norm(info.hessian_term) / jnp.maximum(first_order, 1e-30)
            order_cosine = optax.tree.vdot(grads, g1) / jnp.maximum(
                optax.tree.norm(grads) * first_order, 1e-30)
        metrics = {
            "loss": info.task_loss,
            "accuracy": info.aux,
            "reg_loss": info.reg_loss,
            "cosine": info.cosine,
            "grad_norm": optax.tree.norm(grads),
            "grad_rel_diff": rel_diff,
            "order_cosine": order_cosine,
            "reg_share": coef * info.reg_loss / jnp.maximum(info.task_loss + coef * info.reg_loss,
                                                            1e-30),
        }
        opt_state = {**state.opt_state, "psi": psi_opt}
        return state._replace(psi=psi, opt_state=opt_state), metrics
