"""One model of the Hypernet-SDE-Flow study: its settings and its parameters.

A variant (:class:`Variant`) is one model of the study:

* ``model="mlp"``: the MLP autoencoder, loss ``MSE`` (plus ``gamma R``, replay, when it keeps a
  memory), told its task when ``model.task_inputs`` is the number of tasks (the task-conditioned
  MLP).
* ``model="hypernet_mlp"``: ``theta_t = H_psi(e_t)`` generates the whole MLP autoencoder (no flow,
  no SDEs): ``L = MSE + gamma R + delta S``, and the repair's output regulariser below with
  ``order`` set.
* ``model="hypernet_sde_flow"``: ``theta_t = H_psi(e_t)`` generates the encoder and decoder
  (weights and biases); the flow and both SDEs are shared parameters of ``psi`` (or generated too,
  ``shared="generated"``). For a batch ``x`` of task ``t`` at step ``k`` of ``K``::

      L(psi) = MSE(x_hat, x) + beta_k NLL + gamma R + delta S
      beta_k = beta min(1, k / (a K))                 annealed within each task (k from 0 each
                                                      task), or once (k from the run's start)
      R      = mean_{j < t} MSE of the episodic memory of task j, decoded with theta_j
               (its first ``memory`` points)
      S      = mean_{i < j <= t} exp(-|e_i - e_j|^2 / D)            pushes embeddings apart

  ``NLL`` is ``-log p(x)`` through the encoder and the flow (the paper's Eq. 2) or, with
  ``model.nll="flow_only"``, ``-log p(z0)`` through the flow alone
  (:func:`jaxcl.models.sde_flow.negative_log_likelihood`). The memory keeps
  ``memory_per_task`` random training points of each finished task. The SDEs can be switched to
  the identity (``sde_gate`` 0).
* The repair (``order`` 1 or 2): the partial-hypernetwork method of Hemati et al. (2023). After
  task 0 the shared flow and SDE networks are frozen (``shared="frozen"``) or generated per task
  (``shared="generated"``), and ``psi`` is trained on
  ``L(psi) + lambda L_H(psi')``, ``psi' = psi + u(grad L(psi))`` a virtual step (SGD,
  ``u(g) = -eta g``, or Adam; frozen parts held still in it as in the real step), ``L_H`` the
  output regulariser against the hypernetwork as it was when the task began
  (:func:`jaxcl.core.regularizers.output_regularizer`), through
  :func:`jaxcl.core.lookahead.lookahead_grad` (order 2 exact, order 1 without the Hessian term).
  A probed repair also logs the task loss's largest curvature and what order 2 adds
  (:func:`jaxcl.learners.sde_flow.probed_grad`).
* The stored-weights oracle (``evaluate_stored``): a hypernetwork variant trained as it is, but
  each task evaluated with the generated weights ``theta_j`` stored when task ``j`` ended, so that
  no finished task can be forgotten: the floor that storing every task's weights gives for free.

Every weight and switch (``beta, gamma, delta, lambda, eta``, the replayed points, the NLL's
ramp, the SDE gate: :class:`LossWeights`) is a traced value: the study's model, its ablations
and the replay sweep's cells run one compiled program. Besides the loss terms, every step
reports what shows a collapsing latent (:func:`jaxcl.models.sde_flow.collapse_metrics`, and the
encoder's mean log volume ``encoder_log_det``). The learner that trains a variant through the one
loop, its step, gradient and loss, read top-down in one file, is
:class:`jaxcl.learners.sde_flow.SdeFlowLearner`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxcl.core.hypernet import (
    HypernetConfig,
    Hypernetwork,
    generate_all,
    generate_under,
    head_name,
)
from jaxcl.core.lookahead import VIRTUAL_STEPS, Order, check_order
from jaxcl.models.sde_flow import PARTS, Reconstruction, SdeFlowConfig, init_params, reconstruct
from jaxcl.types import PyTree

SHARED_MODES = ("trained", "frozen", "generated")


class LossWeights(NamedTuple):
    """The traced weights and switches of the loss (module docstring): variants that differ only
    in these share one compiled program.

    Attributes:
      nll: ``beta``, the NLL's weight reached after annealing (:func:`jaxcl.learners.sde_flow.nll_weight`).
      replay: ``gamma``.
      separation: ``delta``.
      coef: ``lambda``, the output regulariser's weight in the repair.
      virtual_lr: ``eta``, the learning rate of the repair's virtual step.
      memory: the points per finished task that the replay term uses, the first ``memory`` of
        the ``memory_per_task`` stored (which fix the memory's shape); 0 replays nothing, and
        ``inf`` (the default) all that are stored.
      anneal_per_task: 1 restarts ``beta``'s ramp with every task; 0 ramps it once, over the
        run's first ``a K`` steps (:func:`jaxcl.learners.sde_flow.nll_weight`).
      sde_gate: multiplies both SDEs' drift and diffusion; 0 makes them the identity
        (:func:`jaxcl.models.sde_flow.latent_path`).
    """

    nll: float = 0.01
    replay: float = 1.0
    separation: float = 0.1
    coef: float = 1.0
    virtual_lr: float = 1e-3
    memory: float = float("inf")
    anneal_per_task: float = 1.0
    sde_gate: float = 1.0


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model of the study: everything but :class:`LossWeights` changes the program.

    Attributes:
      model: the autoencoder's shapes; ``model.model`` is one of
        :data:`jaxcl.models.sde_flow.MODEL_KINDS`.
      embedding_dim: dimension ``D`` of the task embeddings.
      hnet_hidden: widths of the hypernetwork's trunk.
      shared: the flow and SDE networks: ``"trained"`` (shared, trained on every task, the
        study), ``"frozen"`` (shared, frozen after task 0), ``"generated"`` (generated per task).
      order: ``None``, no output regulariser (the study); else the repair's look-ahead order,
        one of :data:`jaxcl.core.lookahead.ORDERS`: 1 or 2, or ``"none"``, the output
        regulariser on ``psi`` itself, without look-ahead.
      epochs: epochs per task (300 in the study).
      batch_size: minibatch size; the remainder of an epoch is dropped.
      learning_rate: AdamW's (5e-4 in the study).
      weight_decay: AdamW's.
      anneal_fraction: ``a``, the fraction of a task over which ``beta`` ramps up.
      memory_per_task: points of each finished task kept for replay (the memory's shape;
        ``weights.memory`` of them are replayed); 0 keeps none (the repairs: no stored data).
      virtual: the repair's virtual step, one of :data:`jaxcl.core.lookahead.VIRTUAL_STEPS`
        (:func:`jaxcl.core.lookahead.virtual_step`; Adam with ``eps_root > 0``, so that order 2
        is finite).
      probe: the repair logs, every step, the curvature of its task loss and what order 2
        changes (:mod:`jaxcl.learners.sde_flow`); each step then computes the
        order-2 gradient, and follows it or its first-order part as ``order`` says.
      probe_iters: power-iteration products per step, warm-started from the last step's vector.
      evaluate_stored: the oracle: store each task's generated weights when it ends and evaluate
        it with them ever after (module docstring).
      weights: the traced loss weights.

    The study's model (all defaults) has 90,460 parameters in ``psi``, 94 % of them the heads
    that generate the encoder and decoder (tested).
    """

    model: SdeFlowConfig = SdeFlowConfig()
    embedding_dim: int = 32
    hnet_hidden: tuple[int, ...] = (50, 32)
    shared: str = "trained"
    order: Order | None = None
    epochs: int = 300
    batch_size: int = 50
    learning_rate: float = 5e-4
    weight_decay: float = 1e-4
    anneal_fraction: float = 0.5
    memory_per_task: int = 20
    virtual: str = "sgd"
    probe: bool = False
    probe_iters: int = 1
    evaluate_stored: bool = False
    weights: LossWeights = LossWeights()

    def __post_init__(self):
        if self.shared not in SHARED_MODES:
            raise ValueError(f"shared={self.shared!r} is not one of {SHARED_MODES}")
        if self.order is not None:  # None: no output regulariser
            check_order(self.order)
        if self.model.model == "mlp" and (self.order is not None or self.shared != "trained"
                                          or self.evaluate_stored):
            raise ValueError("the MLP baseline has no hypernetwork: it takes order=None, "
                             "shared='trained' and evaluate_stored=False, got "
                             f"order={self.order!r}, shared={self.shared!r}, "
                             f"evaluate_stored={self.evaluate_stored!r}")
        if self.model.model == "hypernet_mlp" and self.shared != "trained":
            raise ValueError("model='hypernet_mlp' generates every weight and shares none: it "
                             f"takes shared='trained', got shared={self.shared!r}")
        if self.virtual not in VIRTUAL_STEPS:
            raise ValueError(f"virtual={self.virtual!r} is not one of {VIRTUAL_STEPS}")
        if self.probe and self.order not in (1, 2):
            raise ValueError(f"probe=True measures a look-ahead: it needs order 1 or 2, got "
                             f"order={self.order!r}")
        if not (isinstance(self.probe_iters, int) and self.probe_iters >= 1):
            raise ValueError(f"probe_iters must be a positive integer, got {self.probe_iters!r}")
        if self.memory_per_task < self.weights.memory < float("inf"):
            raise ValueError(f"weights.memory={self.weights.memory!r} exceeds memory_per_task="
                             f"{self.memory_per_task} (the points stored per task)")
        if not (isinstance(self.memory_per_task, int) and self.memory_per_task >= 0):
            raise ValueError("memory_per_task must be a non-negative integer, got "
                             f"{self.memory_per_task!r}")
        for name in ("embedding_dim", "epochs", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 < self.anneal_fraction <= 1:
            raise ValueError(f"anneal_fraction must be in (0, 1], got {self.anneal_fraction!r}")
        for name, value in self.weights._asdict().items():
            if not value >= 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {value!r}")

    @property
    def is_hypernet(self) -> bool:
        return self.model.model != "mlp"

    @property
    def static(self) -> Variant:
        """The variant with default weights: what the compiled program depends on."""
        return dataclasses.replace(self, weights=LossWeights())


# The model of a variant: parameters psi, and theta_t for a task.


def hypernetwork(variant: Variant, num_tasks: int) -> Hypernetwork:
    """``H_psi``: generates the encoder and decoder (and, if ``shared="generated"``, the rest)."""
    shapes = jax.eval_shape(functools.partial(init_params, variant.model), jax.random.key(0))
    generate = (generate_all if variant.shared == "generated" or not variant.model.has_latent_path
                else generate_under("encoder", "decoder"))
    config = HypernetConfig(num_tasks=num_tasks, embedding_dim=variant.embedding_dim,
                            hidden=variant.hnet_hidden, new_task_init="random", vectors="generated")
    return Hypernetwork.for_params(shapes, config=config, generate=generate)


def init(variant: Variant, key: jax.Array, num_tasks: int) -> PyTree:
    """``psi``: the autoencoder's parameters (MLP) or the hypernetwork's variables.

    Shared leaves start from the model's own initialisers (the flow as the identity).
    """
    k_model, k_hnet = jax.random.split(key)
    own = init_params(variant.model, k_model)
    if not variant.is_hypernet:
        return own
    hnet = hypernetwork(variant, num_tasks)
    psi = hnet.init(k_hnet, 0)
    flat = traverse_util.flatten_dict(own)
    params = dict(psi["params"])
    for spec in hnet.specs:
        if spec.role == "shared":
            params[head_name(spec)] = {"value": flat[spec.path]}
    return {**psi, "params": params}


def all_task_params(variant: Variant, hnet: Hypernetwork | None, psi: PyTree) -> PyTree:
    """``theta_j`` for every task ``j``, stacked on a leading axis (one ``vmap`` of ``H_psi``);
    the MLP's ``psi`` as it is."""
    if not variant.is_hypernet:
        return psi
    return jax.vmap(lambda j: hnet.apply(psi, j))(jnp.arange(hnet.config.num_tasks))


def shared_mask(psi: PyTree) -> PyTree:
    """``True`` on the leaves of shared (not generated) heads."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: any(getattr(p, "key", "").startswith("shared:") for p in path), psi)


def generated_parts(variant: Variant) -> tuple[str, ...]:
    """The model parts that differ between tasks (generated), hence between examples of a
    mixed batch."""
    if not variant.is_hypernet:
        return ()
    if variant.shared == "generated" and variant.model.has_latent_path:
        return PARTS
    return ("encoder", "decoder")


def reconstruct_tasks(variant: Variant, thetas: PyTree, x: jax.Array, task_ids: jax.Array,
                      key: jax.Array, adjoint: str = "scan",
                      sde_gate: float | jax.Array = 1.0) -> Reconstruction:
    """The :class:`jaxcl.models.sde_flow.Reconstruction` of points ``x`` ``(n, d)`` of several
    tasks ``task_ids`` ``(n,)``, in one solve: every example goes through its own task's
    generated parts; shared parts are shared. ``thetas`` is :func:`all_task_params`;
    ``sde_gate`` as in :func:`jaxcl.models.sde_flow.latent_path`; the task-conditioned MLP reads
    ``task_ids``."""
    if not variant.is_hypernet:
        return reconstruct(variant.model, thetas, x, key, adjoint, task_ids=task_ids)
    per_example = generated_parts(variant)
    theta = {part: jax.tree.map(lambda a: jnp.take(a, task_ids, axis=0), tree)
             if part in per_example else jax.tree.map(lambda a: a[0], tree)
             for part, tree in thetas.items()}
    return reconstruct(variant.model, theta, x, key, adjoint, per_example, sde_gate)


def replayed(variant: Variant, thetas: PyTree, x: jax.Array, task_id: jax.Array,
             memory: jax.Array, key: jax.Array, adjoint: str = "scan",
             sde_gate: float | jax.Array = 1.0, used: jax.Array | float = float("inf")
             ) -> tuple[Reconstruction, jax.Array]:
    """The batch ``x`` of task ``task_id`` and the episodic memory ``(T, m, d)`` through the
    model in one pass (each point through its own task's weights, :func:`reconstruct_tasks`):
    the batch's :class:`Reconstruction` and every task's replay MSE over its first ``used``
    stored points (:func:`per_task_mse`; 0 for the tasks not finished, whose rows are zeros).

    With the SDEs every row goes through (their noise is drawn for the whole array, so the rows
    present decide the batch's noise); without them (the MLP) only the rows of finished tasks,
    one ``lax.switch`` branch per number of them: the same numbers, in 2.4x fewer rows over a
    study of 5 tasks."""
    n, (num_tasks, per_task, d) = x.shape[0], memory.shape

    def through(seen: int):  # the batch and the first ``seen`` tasks' rows
        points = jnp.concatenate([x, memory[:seen].reshape(-1, d)])
        ids = jnp.concatenate([jnp.full((n,), task_id, jnp.int32),
                               jnp.repeat(jnp.arange(seen, dtype=jnp.int32), per_task)])
        rec = reconstruct_tasks(variant, thetas, points, ids, key, adjoint, sde_gate)
        task_mse = (per_task_mse(rec.x_hat[n:], points[n:], seen, used) if seen * per_task
                    else jnp.zeros((seen,), x.dtype))
        return (jax.tree.map(lambda a: a[:n], rec),
                jnp.concatenate([task_mse, jnp.zeros((num_tasks - seen,), x.dtype)]))

    if variant.model.has_latent_path or not per_task:
        return through(num_tasks)
    return jax.lax.switch(task_id, [functools.partial(through, i) for i in range(num_tasks)])


def optimizer(variant: Variant) -> optax.GradientTransformation:
    """AdamW with the variant's learning rate and weight decay, started afresh for every task."""
    return optax.adamw(variant.learning_rate, weight_decay=variant.weight_decay)


@functools.cache
def param_count(variant: Variant, num_tasks: int) -> int:
    """The floats that training moves: ``psi`` (the MLP's weights, or the hypernetwork's
    embeddings, trunk and heads with the shared parts)."""
    shapes = jax.eval_shape(lambda k: init(variant, k, num_tasks), jax.random.key(0))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))


def generated_count(variant: Variant) -> int:
    """The floats of one task's generated weights ``theta_t`` (0 without a hypernetwork)."""
    if not variant.is_hypernet:
        return 0
    shapes = jax.eval_shape(functools.partial(init_params, variant.model), jax.random.key(0))
    return sum(int(np.prod(leaf.shape)) for part in generated_parts(variant)
               for leaf in jax.tree.leaves(shapes[part]))


def stored_per_task(variant: Variant) -> dict[str, int]:
    """The floats a variant keeps for each finished task, by what they are: replayed ``points``
    (``memory_per_task x data_dim``), the output regulariser's ``targets`` (one task's generated
    weights), the oracle's ``weights`` (the same)."""
    generated = generated_count(variant)
    return {"points": variant.memory_per_task * variant.model.data_dim,
            "targets": generated if variant.order is not None else 0,
            "weights": generated if variant.evaluate_stored else 0}


def frozen_leaves(variant: Variant, psi: PyTree, task_id: jax.Array) -> PyTree:
    """``True`` on the leaves that do not move in task ``task_id`` (shared ones after task 0,
    with ``shared="frozen"``)."""
    if variant.shared != "frozen":
        return jax.tree.map(lambda _: jnp.zeros((), bool), psi)
    return jax.tree.map(lambda f: f & (task_id > 0), shared_mask(psi))


def hold_still(tree: PyTree, frozen: PyTree) -> PyTree:
    """``tree`` with its :func:`frozen_leaves` set to 0 (an update, or a direction)."""
    return jax.tree.map(lambda a, f: jnp.where(f, 0.0, a), tree, frozen)


def per_task_mse(x_hat: jax.Array, x: jax.Array, num_groups: int,
                 used: jax.Array | float) -> jax.Array:
    """Mean squared error of each of ``num_groups`` equal consecutive blocks of rows, over the
    first ``used`` rows of each block (0 where ``used`` is 0)."""
    err = jnp.sum(jnp.square(x_hat - x), axis=-1).reshape(num_groups, -1)
    rows = (jnp.arange(err.shape[1]) < used).astype(err.dtype)
    return jnp.sum(err * rows[None, :], axis=1) / jnp.maximum(jnp.sum(rows) * x.shape[-1], 1.0)


def separation(embeddings: jax.Array, task_id: jax.Array) -> jax.Array:
    """``S = mean_{i < j <= t} exp(-|e_i - e_j|^2 / D)`` (0 while only one task is seen)."""
    n, dim = embeddings.shape
    sq = jnp.sum(jnp.square(embeddings[:, None, :] - embeddings[None, :, :]), axis=-1)
    ids = jnp.arange(n)
    pairs = (ids[:, None] < ids[None, :]) & (ids[None, :] <= task_id)
    kernel = jnp.exp(-sq / dim)
    return jnp.sum(jnp.where(pairs, kernel, 0.0)) / jnp.maximum(jnp.sum(pairs), 1)


def nll_weight(variant: Variant, weights: LossWeights, progress: jax.Array) -> jax.Array:
    """``beta_k = beta min(1, k / (a K))`` at ``progress = k / K``, ``a`` the
    ``anneal_fraction``: ``k`` is the step within the current task (it restarts at 0 with every
    task) when ``weights.anneal_per_task`` is 1, the step since the run began when it is 0 (the
    learner passes the matching ``progress``)."""
    return weights.nll * jnp.minimum(1.0, progress / variant.anneal_fraction)
