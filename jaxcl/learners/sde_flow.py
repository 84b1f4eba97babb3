"""The Hypernet-SDE-Flow study's models as learners of the one loop: the learner, its step, the
gradient the step follows and the loss, read top-down.

A variant of the study (:class:`jaxcl.learners.sde_flow_variant.Variant`: the MLP baseline, the
Hypernet-SDE-Flow autoencoder, its ablations and its repairs) trains through
:func:`jaxcl.train.loop.train_seeds` like every strategy: seeds as one vmapped program, devices,
checkpoints and exact resume, the non-finite stop, compile time apart. Its evaluation is the
test MSE (lower is better) of every task, trained or not, after each task: the loop's evaluation
matrix is the study's MSE matrix ``M[i, j]``. Its state holds the loss weights, traced, so that
variants differing only in them share the loop's compiled programs (``cache``).

A step (:meth:`SdeFlowLearner.train_step`) follows :func:`objective_grad`: the gradient of the
loss ``L(psi)`` (:func:`loss_terms`) alone (``order=None``), or, as the repair, of
``L(psi) + lambda L_H(psi')`` with ``psi' = psi + u(grad L(psi))`` a virtual step
(:func:`virtual_optimizer`; frozen parts held still in it as in the real step), differentiated
through :func:`jaxcl.core.lookahead.lookahead_grad`. A probed repair (:func:`probed_grad`) also
measures what decides whether its order 2 means anything: the task loss's largest curvature
against the virtual step, and what the Hessian term adds to the order-1 regulariser gradient.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcl.core.curvature import power_iteration
from jaxcl.core.hypernet import Hypernetwork
from jaxcl.core.lookahead import lookahead_grad, tree_cosine, virtual_step
from jaxcl.core.regularizers import output_regularizer, task_outputs
from jaxcl.learners.base import bytes32
from jaxcl.learners.sde_flow_variant import (
    LossWeights,
    Variant,
    all_task_params,
    frozen_leaves,
    generated_parts,
    hold_still,
    nll_weight,
    separation,
    hypernetwork,
    init,
    optimizer,
    reconstruct_tasks,
    replayed,
)
from jaxcl.models.sde_flow import (
    SdeFlowConfig,
    collapse_metrics,
    encoder_log_volume,
    negative_log_likelihood,
    reconstruct,
)
from jaxcl.types import Batch, PyTree

STEP_METRICS = ("loss", "mse", "nll", "replay", "separation", "reg", "z0_std", "sigma",
                "decoder_gain", "encoder_log_det")
"""What every training step logs: the loss and its terms (:func:`loss_terms`), then what shows a
collapsing latent, for the batch of the current task
(:func:`jaxcl.models.sde_flow.collapse_metrics`): ``z0``'s standard deviation over the batch (mean
over coordinates), the diffusion's mean ``sigma``, the decoder's gain (the mean largest singular
value of ``dx_hat/dy``) and the encoder's mean log volume
(:func:`jaxcl.models.sde_flow.encoder_log_volume`; ``nll`` under ``nll="paper"`` is the
``nll="flow_only"`` value minus it). The collapse metrics look at the batch's first
:data:`WATCH_ROWS` points. A probed repair (``Variant.probe``) logs :data:`PROBE_METRICS` too."""

PROBE_METRICS = ("curvature", "step_curvature", "virtual_move", "correction_ratio",
                 "correction_cosine")
"""What a probed repair step logs besides the loss terms (:func:`objective_grad`)."""


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
      stored: the oracle's (``Variant.evaluate_stored``) generated weights of every task as it
        ended, stacked like :func:`all_task_params`' generated parts, with ``"ended"`` ``(T,)``
        marking the tasks stored (``{}`` for other variants).
    """

    psi: PyTree
    opt_state: PyTree
    targets: PyTree
    memory: jax.Array
    weights: LossWeights
    step: jax.Array
    probe: PyTree
    stored: PyTree = {}


@dataclasses.dataclass(frozen=True)
class SdeFlowLearner:
    """A variant of the study over ``num_tasks`` tasks of ``steps_per_task`` steps each.

    Build with :meth:`build`. Learners that differ only in ``weights`` compare equal (the
    weights enter the state at ``init``, nowhere else), so that the loop's ``cache`` gives them
    one set of compiled programs. ``order="none"`` is built as order 1 at ``virtual_lr = 0``
    (``psi' = psi``): order 1's programs, the same gradient op by op to the bit (compiled, XLA
    may round otherwise: ``docs/devnotes/performance.md``).
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
        if variant.order == "none":  # order 1 at a zero virtual step: order 1's program
            variant = dataclasses.replace(variant, order=1,
                                          weights=variant.weights._replace(virtual_lr=0.0))
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
        stored = {}
        if self.variant.evaluate_stored:
            thetas = all_task_params(self.variant, self._hnet, psi)
            stored = {"theta": {part: thetas[part] for part in generated_parts(self.variant)},
                      "ended": jnp.zeros((self.num_tasks,), bool)}
        return SdeFlowState(psi, optimizer(self.variant).init(psi), self._targets(psi), memory,
                            weights, jnp.int32(0), probe, stored)

    def begin_experience(self, state: SdeFlowState, task_id: jax.Array,
                         key: jax.Array) -> SdeFlowState:
        """AdamW afresh, the step count at 0, and the regulariser's targets from ``psi`` now."""
        return state._replace(opt_state=optimizer(self.variant).init(state.psi),
                              targets=self._targets(state.psi), step=jnp.zeros_like(state.step))

    def train_step(self, state: SdeFlowState, batch: Batch, task_id: jax.Array, key: jax.Array,
                   *, first: bool) -> tuple[SdeFlowState, dict[str, jax.Array]]:
        """One AdamW step along :func:`objective_grad`; with
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

    def end_experience(self, state: SdeFlowState, data: Batch, task_id: jax.Array,
                       key: jax.Array) -> SdeFlowState:
        """The memory gets task ``task_id``'s row: ``m`` of its training points, at random; the
        oracle stores the task's generated weights."""
        if self.variant.evaluate_stored:
            thetas = all_task_params(self.variant, self._hnet, state.psi)
            theta = jax.tree.map(lambda old, new: old.at[task_id].set(new[task_id]),
                                 state.stored["theta"],
                                 {part: thetas[part] for part in state.stored["theta"]})
            state = state._replace(stored={"theta": theta,
                                           "ended": state.stored["ended"].at[task_id].set(True)})
        if not self.variant.memory_per_task:
            return state
        keep = jax.random.permutation(key, data.x.shape[0])[: state.memory.shape[1]]
        return state._replace(memory=state.memory.at[task_id].set(jnp.take(data.x, keep,
                                                                            axis=0)))

    def evaluate(self, state: SdeFlowState, x: jax.Array, y: jax.Array, task_id: jax.Array,
                 key: jax.Array, *, batch_size: int) -> jax.Array:
        """Test MSE of task ``task_id``'s points ``x``, decoded with ``theta_task_id``, with the
        loop's fixed noise ``key`` (one solve: ``batch_size`` is not needed for a few hundred
        points); the oracle decodes a finished task with the weights it stored."""
        thetas = all_task_params(self.variant, self._hnet, state.psi)
        if self.variant.evaluate_stored:  # a finished task through the weights it ended with
            ended = state.stored["ended"][task_id]
            thetas = {**thetas, **jax.tree.map(lambda now, kept: jnp.where(ended, kept, now),
                                               {part: thetas[part]
                                                for part in state.stored["theta"]},
                                               state.stored["theta"])}
        ids = jnp.full(x.shape[:1], task_id, jnp.int32)
        x_hat = reconstruct_tasks(self.variant, thetas, x, ids, key,
                                  sde_gate=state.weights.sde_gate).x_hat
        return jnp.mean(jnp.square(x_hat - x))

    def memory_bytes(self, state: SdeFlowState) -> int:
        """The episodic memory, the regulariser's targets and the oracle's stored weights."""
        return bytes32((state.memory, state.targets, state.stored))


# The gradient a step follows: plain, look-ahead, or probed.


def virtual_optimizer(variant: Variant, weights: LossWeights, psi: PyTree,
                      task_id: jax.Array) -> optax.GradientTransformation:
    """The repair's virtual step (``variant.virtual`` at ``eta``); with ``shared="frozen"`` it
    leaves the shared leaves where they are after task 0, as the real step does."""
    inner = virtual_step(variant.virtual, weights.virtual_lr)
    if variant.shared != "frozen":
        return inner
    frozen = frozen_leaves(variant, psi, task_id)
    return optax.chain(inner, optax.stateless(lambda u, _: hold_still(u, frozen)))


def _objective(variant, weights, hnet, psi, x, task_id, memory, targets, progress, key):
    """The task loss ``psi -> (L, terms)``, the regulariser ``psi -> L_H`` and the virtual
    optimizer of a step."""
    def task_loss(p):  # the solves are scans (adjoint "scan"): order 2's jvp runs through them
        return loss_terms(variant, weights, hnet, p, x, task_id, memory, progress, key)

    ids = jnp.arange(memory.shape[0])

    def reg_loss(p):
        return output_regularizer(hnet, p, targets, ids, ids < task_id)

    return task_loss, reg_loss, virtual_optimizer(variant, weights, psi, task_id)


def objective_grad(variant: Variant, weights: LossWeights, hnet: Hypernetwork | None, psi: PyTree,
                   x: jax.Array, task_id: jax.Array, memory: jax.Array, targets: PyTree,
                   progress: jax.Array, key: jax.Array) -> tuple[PyTree, dict[str, jax.Array]]:
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


def probed_grad(variant: Variant, weights: LossWeights, hnet: Hypernetwork | None, psi: PyTree,
                x: jax.Array, task_id: jax.Array, memory: jax.Array, targets: PyTree,
                progress: jax.Array, key: jax.Array,
                vector: PyTree) -> tuple[PyTree, dict[str, jax.Array], PyTree]:
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


# The loss.


WATCH_ROWS = 10
"""The collapse metrics look at the batch's first rows only: they are logged every step, and a
decoder Jacobian per point of a 50-point batch cost the MLP's step more than its training."""


def _watch(cfg: SdeFlowConfig, theta, x, rec, log_vol, sde_gate, task_id) -> dict:
    """The collapse metrics of the first :data:`WATCH_ROWS` points of a batch ``x`` of task
    ``task_id``, decoded with its ``theta``."""
    x, rec = x[:WATCH_ROWS], jax.tree.map(lambda a: a[:WATCH_ROWS], rec)
    ids = jnp.full(x.shape[:1], task_id, jnp.int32)
    log_vol = (encoder_log_volume(cfg, theta["encoder"], x, task_ids=ids) if log_vol is None
               else log_vol[:WATCH_ROWS])
    return {**collapse_metrics(cfg, theta, rec, sde_gate, task_id),
            "encoder_log_det": jnp.mean(jax.lax.stop_gradient(log_vol))}


def loss_terms(variant: Variant, weights: LossWeights, hnet: Hypernetwork | None, psi: PyTree,
               x: jax.Array, task_id: jax.Array, memory: jax.Array, progress: jax.Array,
               key: jax.Array, adjoint: str = "scan") -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(L, terms)`` for one batch ``x`` of task ``task_id``; ``progress = k / K`` in [0, 1].

    The batch and the episodic memory go through the model together, each point with its own
    task's weights (:func:`jaxcl.learners.sde_flow_variant.replayed`); without a memory only the
    batch's task is generated, its weights shared by the batch. ``terms``: the loss terms (``nll`` as ``model.nll`` says, before its
    weight ``beta_k``) and the batch's collapse metrics (module docstring)."""
    cfg = variant.model
    num_tasks, per_task, _ = memory.shape
    if variant.is_hypernet and not per_task:  # a matmul a layer, not a matvec a point
        theta_t = hnet.apply(psi, task_id)
        batch = reconstruct(cfg, theta_t, x, key, adjoint, sde_gate=weights.sde_gate)
        task_mse = jnp.zeros((num_tasks,), x.dtype)
    else:
        thetas = all_task_params(variant, hnet, psi)
        batch, task_mse = replayed(variant, thetas, x, task_id, memory, key, adjoint,
                                   weights.sde_gate, weights.memory)
        theta_t = (jax.tree.map(lambda a: a[task_id], thetas) if variant.is_hypernet else thetas)
    mse = jnp.mean(jnp.square(batch.x_hat - x))
    zero = jnp.zeros((), mse.dtype)
    nll, log_vol = zero, None
    if cfg.has_latent_path:
        nll_rows, log_vol = negative_log_likelihood(cfg, theta_t, x, batch.z0)
        nll = jnp.mean(nll_rows)
    if cfg.nll != "paper":  # the watched log volume is the encoder's
        log_vol = None
    seen = (jnp.arange(num_tasks) < task_id).astype(task_mse.dtype)
    replay = jnp.sum(task_mse * seen) / jnp.maximum(jnp.sum(seen), 1.0)
    sep = separation(psi["params"]["embedding"], task_id) if variant.is_hypernet else zero
    total = (mse + nll_weight(variant, weights, progress) * nll + weights.replay * replay
             + weights.separation * sep)
    return total, {"mse": mse, "nll": nll, "replay": replay, "separation": sep,
                   **_watch(cfg, theta_t, x, batch, log_vol, weights.sde_gate, task_id)}
