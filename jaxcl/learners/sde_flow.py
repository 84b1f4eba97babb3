"""The Hypernet-SDE-Flow study's models as learners of the one loop.

A variant of the study (:class:`jaxcl.learners.sde_flow_model.Variant`: the MLP baseline, the
Hypernet-SDE-Flow autoencoder, its ablations and its repairs) trains through
:func:`jaxcl.train.loop.train_seeds` like every strategy: seeds as one vmapped program, devices,
checkpoints and exact resume, the non-finite stop, compile time apart. Its evaluation is the
test MSE (lower is better) of every task, trained or not, after each task: the loop's evaluation
matrix is the study's MSE matrix ``M[i, j]``. Its state holds the loss weights, traced, so that
variants differing only in them share the loop's compiled programs (``cache``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcl.core.regularizers import task_outputs
from jaxcl.learners.base import bytes32
from jaxcl.learners.sde_flow_grad import (
    PROBE_METRICS,
    frozen_leaves,
    hold_still,
    objective_grad,
    probed_grad,
)
from jaxcl.learners.sde_flow_model import (
    LossWeights,
    Variant,
    all_task_params,
    hypernetwork,
    init,
    optimizer,
    reconstruct_tasks,
)
from jaxcl.types import Batch, PyTree

STEP_METRICS = ("loss", "mse", "nll", "replay", "separation", "reg", "z0_std", "sigma",
                "decoder_gain", "encoder_log_det")
"""What every training step logs: the loss and its terms
(:func:`jaxcl.learners.sde_flow_model.loss_terms`), then what shows a collapsing latent, for the
batch of the current task (:func:`jaxcl.models.sde_flow.collapse_metrics`): ``z0``'s standard
deviation over the batch (mean over coordinates), the diffusion's mean ``sigma``, the decoder's
gain (the mean largest singular value of ``dx_hat/dy``) and the encoder's mean log volume
(:func:`jaxcl.models.sde_flow.encoder_log_volume`; ``nll`` under ``nll="paper"`` is the
``nll="flow_only"`` value minus it). The collapse metrics look at the batch's first
:data:`jaxcl.learners.sde_flow_model.WATCH_ROWS` points. A probed repair
(``Variant.probe``) logs :data:`jaxcl.learners.sde_flow_grad.PROBE_METRICS` too."""


class SdeFlowState(NamedTuple):
    """What a variant's training reads and writes.

    Attributes:
      psi: the autoencoder's parameters (MLP) or the hypernetwork's variables.
      opt_state: AdamW's state, fresh for every task.
      targets: the outputs for every task of the hypernetwork as the task began, which the
        repair's output regulariser compares to (``{}`` without a regulariser).
      memory: ``(T, m, d)``, ``m`` training points of every finished task (zeros before);
        ``{}`` when ``m`` is 0 (nothing stored; checkpoints hold no empty arrays).
      weights: the traced :class:`LossWeights`.
      step: steps taken in the current task (``k`` of the annealing restarted per task; the
        run's ``k``, for the annealing done once, is ``task_id K + step``).
      probe: the power iteration's vector, like ``psi`` (``Variant.probe``; ``{}`` without).
    """

    psi: PyTree
    opt_state: PyTree
    targets: PyTree
    memory: jax.Array
    weights: LossWeights
    step: jax.Array
    probe: PyTree


@dataclasses.dataclass(frozen=True)
class SdeFlowLearner:
    """A variant of the study over ``num_tasks`` tasks of ``steps_per_task`` steps each.

    Build with :meth:`build`. Learners that differ only in ``weights`` compare equal (the
    weights enter the state at ``init``, nowhere else), so that the loop's ``cache`` gives them
    one set of compiled programs.
    """

    variant: Variant
    num_tasks: int
    steps_per_task: int
    weights: LossWeights = dataclasses.field(default=LossWeights(), compare=False)
    name: str = "sde_flow"
    evaluation = "mse"
    evaluates_unseen = True  # the study's matrix holds every task after each
    trains_first_apart = False  # one step program: the task id masks what task 0 trains

    @property
    def step_metrics(self) -> tuple[str, ...]:
        return STEP_METRICS + (PROBE_METRICS if self.variant.probe else ())

    @classmethod
    def build(cls, variant: Variant, *, num_tasks: int, train_per_task: int) -> SdeFlowLearner:
        """The learner of ``variant`` for tasks of ``train_per_task`` training points; refuses
        settings that cannot train on them before anything compiles."""
        for name in ("batch_size", "memory_per_task"):
            if getattr(variant, name) > train_per_task:
                raise ValueError(f"{name}={getattr(variant, name)} exceeds the {train_per_task} "
                                 "training points of a task")
        steps = variant.epochs * (train_per_task // variant.batch_size)
        return cls(variant.static, num_tasks, steps, variant.weights)

    @property
    def run_options(self) -> dict[str, int]:
        """The epochs and minibatch size the annealing's ``K`` was computed for; the loop refuses
        a run of other ones."""
        return {"epochs": self.variant.epochs, "batch_size": self.variant.batch_size}

    @property
    def _hnet(self):
        return hypernetwork(self.variant, self.num_tasks) if self.variant.is_hypernet else None

    def _targets(self, psi: PyTree) -> PyTree:
        if self.variant.order is None:
            return {}
        return task_outputs(self._hnet, psi, jnp.arange(self.num_tasks))

    def init(self, key: jax.Array, sample_x: jax.Array) -> SdeFlowState:
        """``psi`` (shared leaves from the model's own initialisers, the flow the identity), an
        empty memory and the weights."""
        psi = init(self.variant, key, self.num_tasks)
        memory = (jnp.zeros((self.num_tasks, self.variant.memory_per_task, sample_x.shape[-1]),
                            sample_x.dtype) if self.variant.memory_per_task else {})
        weights = LossWeights(*(jnp.float32(w) for w in self.weights))
        probe = (optax.tree.random_like(jax.random.fold_in(key, 1), psi, jax.random.normal)
                 if self.variant.probe else {})
        return SdeFlowState(psi, optimizer(self.variant).init(psi), self._targets(psi), memory,
                            weights, jnp.int32(0), probe)

    def begin_experience(self, state: SdeFlowState, task_id, key) -> SdeFlowState:
        """AdamW afresh, the step count at 0, and the regulariser's targets from ``psi`` now."""
        return state._replace(opt_state=optimizer(self.variant).init(state.psi),
                              targets=self._targets(state.psi), step=jnp.zeros_like(state.step))

    def train_step(self, state: SdeFlowState, batch: Batch, task_id, key, *, first: bool):
        """One AdamW step along :func:`jaxcl.learners.sde_flow_grad.objective_grad`; with
        ``shared="frozen"`` the shared leaves do not move after task 0."""
        k = jnp.where(state.weights.anneal_per_task > 0, state.step,
                      task_id * self.steps_per_task + state.step)
        memory = (state.memory if self.variant.memory_per_task
                  else jnp.zeros((self.num_tasks, 0, batch.x.shape[-1]), batch.x.dtype))
        args = (self.variant, state.weights, self._hnet, state.psi, batch.x, task_id, memory,
                state.targets, k / self.steps_per_task, key)
        if self.variant.probe:
            grad, metrics, probe = probed_grad(*args, state.probe)
        else:
            (grad, metrics), probe = objective_grad(*args), state.probe
        updates, opt_state = optimizer(self.variant).update(grad, state.opt_state, state.psi)
        updates = hold_still(updates, frozen_leaves(self.variant, state.psi, task_id))
        return state._replace(psi=optax.apply_updates(state.psi, updates), opt_state=opt_state,
                              step=state.step + 1, probe=probe), metrics

    def end_experience(self, state: SdeFlowState, data: Batch, task_id, key) -> SdeFlowState:
        """The memory gets task ``task_id``'s row: ``m`` of its training points, at random."""
        if not self.variant.memory_per_task:
            return state
        keep = jax.random.permutation(key, data.x.shape[0])[: state.memory.shape[1]]
        return state._replace(memory=state.memory.at[task_id].set(jnp.take(data.x, keep,
                                                                            axis=0)))

    def evaluate(self, state: SdeFlowState, x, y, task_id, key, *, batch_size: int):
        """Test MSE of task ``task_id``'s points ``x``, decoded with ``theta_task_id``, with the
        loop's fixed noise ``key`` (one solve: ``batch_size`` is not needed for a few hundred
        points)."""
        thetas = all_task_params(self.variant, self._hnet, state.psi)
        ids = jnp.full(x.shape[:1], task_id, jnp.int32)
        x_hat = reconstruct_tasks(self.variant, thetas, x, ids, key,
                                  sde_gate=state.weights.sde_gate).x_hat
        return jnp.mean(jnp.square(x_hat - x))

    def memory_bytes(self, state: SdeFlowState) -> int:
        """The episodic memory and the regulariser's targets."""
        return bytes32((state.memory, state.targets))
