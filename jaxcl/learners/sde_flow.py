"""Continual training of the point autoencoders: the Hypernet-SDE-Flow study and its repair.

Tasks come in sequence (:mod:`jaxcl.data.points`); after each, the test MSE on every task
fills one row of the MSE matrix ``M[i, j]`` (after task ``i``, on task ``j``). A variant
(:class:`Variant`) is one model of the study:

* ``model="mlp"``: the MLP autoencoder, loss ``MSE``, nothing against forgetting.
* ``model="hypernet_sde_flow"``: ``theta_t = H_psi(e_t)`` generates the encoder and decoder
  (weights and biases); the flow and both SDEs are shared parameters of ``psi`` (or generated too,
  ``shared="generated"``). For a batch ``x`` of task ``t`` at step ``k`` of ``K``::

      L(psi) = MSE(x_hat, x) + beta_k NLL(z0) + gamma R + delta S
      beta_k = beta min(1, k / (a K))                               annealed within each task
      R      = mean_{j < t} MSE of the episodic memory of task j, decoded with theta_j
      S      = mean_{i < j <= t} exp(-|e_i - e_j|^2 / D)            pushes embeddings apart

  The memory keeps ``memory_per_task`` random training points of each finished task.
* The repair (``order`` 1 or 2): the partial-hypernetwork method of Hemati et al. (2023). After
  task 0 the shared flow and SDE networks are frozen (``shared="frozen"``) or generated per task
  (``shared="generated"``), and ``psi`` is trained on
  ``L(psi) + lambda L_H(psi')``, ``psi' = psi - eta grad L(psi)`` a virtual SGD step, ``L_H`` the
  output regulariser against the hypernetwork frozen at the end of the previous task
  (:func:`jaxcl.core.regularizers.output_regularizer`), through :func:`jaxcl.core.lookahead.lookahead_grad`
  (order 2 exact, order 1 without the Hessian term).

Every weight (``beta, gamma, delta, lambda, eta``) is a traced value (:class:`LossWeights`): the
study's model and both ablations run one compiled program. Training a task is one compiled
program, ``jax.lax.scan`` over every minibatch of every epoch (or over a few epochs at a time,
when the run checkpoints inside tasks), with AdamW started fresh for each task; the loop over
tasks stays in Python, where the MSE matrix is filled and the run is checkpointed. Several seeds
train as one vmapped program, on one device or data-parallel over many (:mod:`jaxcl.train.parallel`),
as the strategies of :mod:`jaxcl.train.loop` do.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from tqdm.auto import tqdm

from jaxcl.core.hypernet import (
    HypernetConfig,
    Hypernetwork,
    generate_all,
    generate_under,
    head_name,
)
from jaxcl.core.lookahead import ORDERS, lookahead_grad
from jaxcl.core.regularizers import output_regularizer, task_outputs
from jaxcl.data.points import PointTasks
from jaxcl.io.checkpoints import resume
from jaxcl.models.sde_flow import (
    PARTS,
    SdeFlowConfig,
    flow_nll,
    init_params,
    reconstruct,
)
from jaxcl.train.parallel import (
    check_devices,
    data_mesh,
    local,
    over_seeds,
    replicate,
    replicated,
    shard_batch,
)
from jaxcl.train.steps import CompiledPrograms, check_finite, minibatch_indices
from jaxcl.types import PyTree

SHARED_MODES = ("trained", "frozen", "generated")
STEP_METRICS = ("loss", "mse", "nll", "replay", "separation", "reg")


class LossWeights(NamedTuple):
    """The traced weights of the loss (module docstring).

    Attributes:
      nll: ``beta``, the flow NLL weight reached after annealing.
      replay: ``gamma``.
      separation: ``delta``.
      regularizer: ``lambda``, the output regulariser of the repair.
      virtual_lr: ``eta``, the learning rate of the repair's virtual SGD step.
    """

    nll: float = 0.01
    replay: float = 1.0
    separation: float = 0.1
    regularizer: float = 1.0
    virtual_lr: float = 0.01


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model of the study: everything but :class:`LossWeights` changes the program.

    Attributes:
      model: the autoencoder's shapes; ``model.model`` is ``"mlp"`` or ``"hypernet_sde_flow"``.
      embedding_dim: dimension ``D`` of the task embeddings.
      hnet_hidden: widths of the hypernetwork's trunk.
      shared: the flow and SDE networks: ``"trained"`` (shared, trained on every task, the
        study), ``"frozen"`` (shared, frozen after task 0), ``"generated"`` (generated per task).
      order: 0, no output regulariser (the study); 1 or 2, the repair's look-ahead order.
      epochs: epochs per task (300 in the study).
      batch_size: minibatch size; the remainder of an epoch is dropped.
      learning_rate: AdamW's (5e-4 in the study).
      weight_decay: AdamW's.
      anneal_fraction: ``a``, the fraction of a task over which ``beta`` ramps up.
      memory_per_task: points of each finished task kept for replay.
      weights: the traced loss weights.
    """

    model: SdeFlowConfig = SdeFlowConfig()
    embedding_dim: int = 32
    hnet_hidden: tuple[int, ...] = (50, 32)
    shared: str = "trained"
    order: int = 0
    epochs: int = 300
    batch_size: int = 50
    learning_rate: float = 5e-4
    weight_decay: float = 1e-4
    anneal_fraction: float = 0.5
    memory_per_task: int = 20
    weights: LossWeights = LossWeights()

    def __post_init__(self):
        if self.shared not in SHARED_MODES:
            raise ValueError(f"shared={self.shared!r} is not one of {SHARED_MODES}")
        if self.order not in (0, *ORDERS):
            raise ValueError(f"order={self.order!r} is not one of {(0, *ORDERS)} "
                             "(0: no output regulariser)")
        if self.model.model == "mlp" and (self.order or self.shared != "trained"):
            raise ValueError("the MLP baseline has no hypernetwork: it takes order=0 and "
                             f"shared='trained', got order={self.order!r}, shared={self.shared!r}")
        for name in ("embedding_dim", "epochs", "batch_size", "memory_per_task"):
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
        return self.model.model == "hypernet_sde_flow"

    @property
    def static(self) -> Variant:
        """The variant with default weights: what the compiled program depends on."""
        return dataclasses.replace(self, weights=LossWeights())

    @property
    def eval_static(self) -> Variant:
        """What the evaluation program depends on: the model and which parts are generated, not
        how they were trained (so the study and its repairs share one evaluation program)."""
        generated = self.shared == "generated"
        return Variant(model=self.model, embedding_dim=self.embedding_dim,
                       hnet_hidden=self.hnet_hidden, shared="generated" if generated else "trained")

    def check_tasks(self, tasks: PointTasks) -> None:
        """Refuse, before any compilation, data this variant cannot train on."""
        n = tasks.x_train.shape[1]
        if self.batch_size > n:
            raise ValueError(f"batch_size={self.batch_size} exceeds the {n} training points of a "
                             "task")
        if self.memory_per_task > n:
            raise ValueError(f"memory_per_task={self.memory_per_task} exceeds the {n} training "
                             "points of a task")
        if tasks.x_train.shape[-1] != self.model.data_dim:
            raise ValueError(f"points have dimension {tasks.x_train.shape[-1]}, the model "
                             f"data_dim={self.model.data_dim}")


# ----------------------------------------------------------------------------------------------
# The model of a variant: parameters psi, and theta_t for a task.


def hypernetwork(variant: Variant, num_tasks: int) -> Hypernetwork:
    """``H_psi``: generates the encoder and decoder (and, if ``shared="generated"``, the rest)."""
    shapes = jax.eval_shape(functools.partial(init_params, variant.model), jax.random.key(0))
    generate = generate_all if variant.shared == "generated" else generate_under("encoder",
                                                                                 "decoder")
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


def _shared_mask(psi: PyTree) -> PyTree:
    """``True`` on the leaves of shared (not generated) heads."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: any(getattr(p, "key", "").startswith("shared:") for p in path), psi)


# ----------------------------------------------------------------------------------------------
# The loss.


def separation(embeddings: jax.Array, task_id: jax.Array) -> jax.Array:
    """``S = mean_{i < j <= t} exp(-|e_i - e_j|^2 / D)`` (0 while only one task is seen)."""
    n, dim = embeddings.shape
    sq = jnp.sum(jnp.square(embeddings[:, None, :] - embeddings[None, :, :]), axis=-1)
    ids = jnp.arange(n)
    pairs = (ids[:, None] < ids[None, :]) & (ids[None, :] <= task_id)
    kernel = jnp.exp(-sq / dim)
    return jnp.sum(jnp.where(pairs, kernel, 0.0)) / jnp.maximum(jnp.sum(pairs), 1)


def _per_task_mse(x_hat, x, num_groups):
    """Mean squared error of each of ``num_groups`` equal consecutive blocks of rows."""
    err = jnp.square(x_hat - x).reshape(num_groups, -1)
    return jnp.mean(err, axis=1)


def _per_example_parts(variant: Variant) -> tuple[str, ...]:
    """The model parts that differ between tasks (generated), hence between examples of a
    mixed batch."""
    if not variant.is_hypernet:
        return ()
    if variant.shared == "generated":
        return PARTS
    return ("encoder", "decoder")


def reconstruct_tasks(variant: Variant, thetas, x, task_ids, key, adjoint="checkpoint"):
    """``(x_hat, z0)`` for points ``x`` ``(n, d)`` of several tasks ``task_ids`` ``(n,)``, in one
    solve: every example goes through its own task's generated parts; shared parts are shared.
    ``thetas`` is :func:`all_task_params`."""
    if not variant.is_hypernet:
        return reconstruct(variant.model, thetas, x, key, adjoint)
    per_example = _per_example_parts(variant)
    theta = {part: jax.tree.map(lambda a: jnp.take(a, task_ids, axis=0), tree)
             if part in per_example else jax.tree.map(lambda a: a[0], tree)
             for part, tree in thetas.items()}
    return reconstruct(variant.model, theta, x, key, adjoint, per_example)


def loss_terms(variant: Variant, weights: LossWeights, hnet, psi, x, task_id, memory, progress,
               key, adjoint="checkpoint"):
    """``(L, terms)`` for one batch ``x`` of task ``task_id``; ``progress = k / K`` in [0, 1].

    The batch and the whole episodic memory go through the model together, each point with its
    own task id (the memory rows of tasks not yet seen are computed and masked out: one shape
    for every task).
    """
    cfg = variant.model
    n = x.shape[0]
    if not variant.is_hypernet:
        mse = jnp.mean(jnp.square(reconstruct(cfg, psi, x, key)[0] - x))
        zero = jnp.zeros((), mse.dtype)
        return mse, {"mse": mse, "nll": zero, "replay": zero, "separation": zero}
    num_tasks, per_task, _ = memory.shape
    points = jnp.concatenate([x, memory.reshape(-1, x.shape[-1])])
    ids = jnp.concatenate([jnp.full((n,), task_id, jnp.int32),
                           jnp.repeat(jnp.arange(num_tasks, dtype=jnp.int32), per_task)])
    thetas = all_task_params(variant, hnet, psi)
    x_hat, z0 = reconstruct_tasks(variant, thetas, points, ids, key, adjoint)
    mse = jnp.mean(jnp.square(x_hat[:n] - x))
    flow_t = jax.tree.map(lambda a: a[task_id], thetas["flow"])
    nll = jnp.mean(flow_nll(cfg, flow_t, z0[:n]))
    beta = weights.nll * jnp.minimum(1.0, progress / variant.anneal_fraction)
    per_task_mse = _per_task_mse(x_hat[n:], points[n:], num_tasks)
    seen = (jnp.arange(num_tasks) < task_id).astype(per_task_mse.dtype)
    replay = jnp.sum(per_task_mse * seen) / jnp.maximum(jnp.sum(seen), 1.0)
    sep = separation(psi["params"]["embedding"], task_id)
    total = mse + beta * nll + weights.replay * replay + weights.separation * sep
    return total, {"mse": mse, "nll": nll, "replay": replay, "separation": sep}


# ----------------------------------------------------------------------------------------------
# The compiled programs: one task's training, and the evaluation of every task.


def objective_grad(variant: Variant, weights: LossWeights, hnet, psi, x, task_id, memory,
                   targets, progress, key):
    """The gradient a training step follows, and the step's metrics.

    Order 0: ``grad L(psi)``. Orders 1 and 2: the look-ahead gradient of
    ``L(psi) + lambda L_H(psi - eta grad L(psi))``, ``L_H`` against ``targets`` (the frozen
    hypernetwork's outputs for every task, of which the tasks before ``task_id`` count).
    """
    adjoint = "direct" if variant.order == 2 else "checkpoint"  # order 2 differentiates forward

    def task_loss(p):
        return loss_terms(variant, weights, hnet, p, x, task_id, memory, progress, key, adjoint)

    if variant.order:
        ids = jnp.arange(memory.shape[0])
        grad, info = lookahead_grad(
            task_loss, lambda p: output_regularizer(hnet, p, targets, ids, ids < task_id), psi,
            virtual_opt=optax.sgd(weights.virtual_lr), order=variant.order,
            coef=weights.regularizer, has_aux=True)
        loss, terms, reg = info.task_loss, info.aux, info.reg_loss
    else:
        (loss, terms), grad = jax.value_and_grad(task_loss, has_aux=True)(psi)
        reg = jnp.zeros((), loss.dtype)
    return grad, {"loss": loss, "reg": reg, **terms}


def _optimizer(variant: Variant) -> optax.GradientTransformation:
    return optax.adamw(variant.learning_rate, weight_decay=variant.weight_decay)


def steps_per_task(variant: Variant, num_points: int) -> int:
    """``K = epochs x (num_points // batch_size)``, the minibatch steps of one task."""
    return variant.epochs * (num_points // variant.batch_size)


def start_task(variant: Variant, psi: PyTree) -> PyTree:
    """AdamW's state, fresh for every task."""
    return _optimizer(variant).init(psi)


def train_steps(variant: Variant, weights: LossWeights, psi, opt_state, frozen, memory, x,
                task_id, key, first_step, *, steps: int, mesh=None):
    """Steps ``first_step .. first_step + steps - 1`` of the ``K`` steps of task ``task_id``
    (:func:`steps_per_task`) on its points ``x``; returns ``(psi, opt_state, step_metrics)``.

    ``frozen`` is ``psi`` at the end of the previous task (the output regulariser's ``H*``);
    ``memory`` is ``(T, m, d)``. The task's minibatch order and step keys derive from ``key``
    alone, so the task trained in one call or in several (for progress and checkpoints) takes the
    same steps. One ``jax.lax.scan``; ``variant`` and ``steps`` are static, the rest traced. On a
    ``mesh`` each device takes its share of every minibatch.
    """
    num_tasks = memory.shape[0]
    hnet = hypernetwork(variant, num_tasks) if variant.is_hypernet else None
    optimizer = _optimizer(variant)
    targets = task_outputs(hnet, frozen, jnp.arange(num_tasks)) if variant.order else None
    frozen_leaves = _shared_mask(psi) if variant.shared == "frozen" else None
    k_index, k_steps, _ = jax.random.split(key, 3)  # the third is end_task's
    indices = minibatch_indices(k_index, x.shape[0], variant.batch_size, variant.epochs)
    total = indices.shape[0]
    step_keys = jax.random.split(k_steps, total)

    def window(a):
        return jax.lax.dynamic_slice_in_dim(a, first_step, steps)

    def step(carry, inputs):
        psi, opt_state = carry
        k, idx, k_step = inputs
        batch = shard_batch(jnp.take(x, idx, axis=0), mesh)
        grad, metrics = objective_grad(variant, weights, hnet, psi, batch, task_id, memory,
                                       targets, k / total, k_step)
        updates, opt_state = optimizer.update(grad, opt_state, psi)
        if frozen_leaves is not None:
            updates = jax.tree.map(lambda u, f: jnp.where(f & (task_id > 0), 0.0, u), updates,
                                   frozen_leaves)
        return (optax.apply_updates(psi, updates), opt_state), metrics

    (psi, opt_state), metrics = jax.lax.scan(
        step, (psi, opt_state),
        (first_step + jnp.arange(steps), window(indices), window(step_keys)))
    return psi, opt_state, metrics


def end_task(variant: Variant, memory, x, task_id, key):
    """The memory with task ``task_id``'s row: ``m`` of its training points ``x``, drawn at
    random (``key`` is the task's, as in :func:`train_steps`)."""
    k_memory = jax.random.split(key, 3)[2]
    keep = jax.random.permutation(k_memory, x.shape[0])[: memory.shape[1]]
    return memory.at[task_id].set(jnp.take(x, keep, axis=0))


def train_task(variant: Variant, weights: LossWeights, psi, frozen, memory, x, task_id, key):
    """Train on task ``task_id``'s points ``x``; returns ``(psi, memory, step_metrics)``.

    :func:`start_task`, every step of :func:`train_steps`, then :func:`end_task`.
    """
    psi, _, metrics = train_steps(variant, weights, psi, start_task(variant, psi), frozen,
                                  memory, x, task_id, key, 0,
                                  steps=steps_per_task(variant, x.shape[0]))
    return psi, end_task(variant, memory, x, task_id, key), metrics


def evaluate(variant: Variant, psi, x_test, key) -> jax.Array:
    """``(T,)`` test MSE of every task ``j``, decoded with ``theta_j`` (one fixed noise key)."""
    num_tasks, per_task, dim = x_test.shape
    hnet = hypernetwork(variant, num_tasks) if variant.is_hypernet else None
    points = x_test.reshape(-1, dim)
    ids = jnp.repeat(jnp.arange(num_tasks, dtype=jnp.int32), per_task)
    x_hat, _ = reconstruct_tasks(variant, all_task_params(variant, hnet, psi), points, ids, key)
    return _per_task_mse(x_hat, points, num_tasks)


class Programs(NamedTuple):
    """The compiled programs of a run of ``seeds`` seeds at once (:func:`jaxcl.train.parallel.over_seeds`)
    on ``devices`` devices. Variants that differ only in their :class:`LossWeights` share one
    compilation; ``variant`` is a static keyword argument of every program."""

    init: CompiledPrograms
    start: CompiledPrograms
    train: CompiledPrograms
    end: CompiledPrograms
    evaluate: CompiledPrograms
    seeds: int = 1
    devices: int = 1

    @classmethod
    def create(cls, seeds: int = 1, devices: int = 1) -> Programs:
        mesh = data_mesh(devices)
        jit = replicated(mesh)

        def program(fn, in_axes, *static):
            def with_static(*args, variant, **kwargs):
                fixed = functools.partial(fn, variant, **kwargs)
                return over_seeds(fixed, in_axes, seeds)(*args)
            return CompiledPrograms(with_static, ["variant", *static], **jit)

        train = functools.partial(train_steps, mesh=mesh)
        return cls(init=program(init, (0,), "num_tasks"),
                   start=program(start_task, (0,)),
                   train=program(train, (None, 0, 0, 0, 0, 0, None, 0, None), "steps"),
                   end=program(end_task, (0, 0, None, 0)),
                   evaluate=program(evaluate, (0, 0, 0)),
                   seeds=seeds, devices=devices)

    @property
    def programs(self) -> tuple[CompiledPrograms, ...]:
        return self[:5]

    @property
    def compilations(self) -> int:
        return sum(len(p.compiled) for p in self.programs)

    @property
    def compile_s(self) -> float:
        return sum(p.compile_s for p in self.programs)


# ----------------------------------------------------------------------------------------------
# A run over the tasks.


@dataclasses.dataclass
class StudyRun:
    """What one variant measured over the tasks.

    Attributes:
      mse_matrix: ``(T, T)``, ``[i, j]`` the test MSE on task ``j`` after training task ``i``
        (every ``j``; for ``j > i`` the hypernetwork uses task ``j``'s untrained embedding).
      forgetting_t0: ``M[T-1, 0] - M[0, 0]``.
      mean_forgetting: ``mean_{j < T-1} (M[T-1, j] - M[j, j])``.
      step_metrics: ``{name: (steps,)}`` for :data:`STEP_METRICS` plus ``task``.
      time_s: training and evaluation seconds, compilation excluded (for seeds trained
        together, the seconds of all of them).
      compile_s: compilation seconds of the programs this run compiled (0 when reused).
      time_per_task: ``time_s`` task by task.
      params: the final ``psi``.
    """

    mse_matrix: np.ndarray
    forgetting_t0: float
    mean_forgetting: float
    step_metrics: dict[str, np.ndarray]
    time_s: float
    compile_s: float
    time_per_task: list[float] = dataclasses.field(default_factory=list)
    params: PyTree = None


def forgetting(matrix: np.ndarray) -> tuple[float, float]:
    """``(forgetting_t0, mean_forgetting)`` of an MSE matrix (increases: positive is worse)."""
    m = np.asarray(matrix, dtype=float)
    last = m.shape[0] - 1
    if last == 0:
        return 0.0, 0.0
    return float(m[last, 0] - m[0, 0]), float(np.mean(m[last, :last] - np.diag(m)[:last]))


def run_tasks(variant: Variant, tasks: PointTasks, key: jax.Array, *,
              programs: Programs | None = None, progress=None, **options) -> StudyRun:
    """:func:`run_seeds` for one benchmark and one key; ``progress(task_id, metrics)`` gets
    floats."""
    report = None if progress is None else (
        lambda t, metrics: progress(t, {k: float(v[0]) for k, v in metrics.items()}))
    return run_seeds(variant, [tasks], [key], programs=programs, progress=report, **options)[0]


def run_seeds(variant: Variant, tasks: Sequence[PointTasks], keys: Sequence[jax.Array], *,
              programs: Programs | None = None, progress=None, label: str | None = None,
              devices: int = 1, checkpoint_dir: str | pathlib.Path | None = None,
              checkpoint_epochs: int = 0, run_name: str | None = None,
              settings: dict | None = None) -> list[StudyRun]:
    """Train ``variant`` on every task in order, evaluating all tasks after each; benchmark
    ``tasks[s]`` with ``keys[s]``, every seed in one vmapped program.

    Args:
      variant: the model.
      tasks: one benchmark per seed, all of one shape.
      keys: one key per seed (initialisation, minibatches, SDE noise, memory, evaluation noise).
      programs: compiled programs to reuse across variants (a fresh cache if ``None``), made
        with :meth:`Programs.create` for ``len(tasks)`` seeds and these ``devices``.
      progress: ``callable(task_id, metrics)`` after each task, ``metrics[name]`` an ``(S,)``
        array of the mean over the task's last 10 steps, e.g. to print.
      label: if given, a progress bar per task so named.
      devices: data-parallel over this many devices (:mod:`jaxcl.train.parallel`).
      checkpoint_dir: checkpoint after every task there (and every ``checkpoint_epochs`` epochs
        inside one when positive), and resume from the latest checkpoint of the same run: the
        same ``run_name`` (default: ``repr(variant)``), keys and shapes, and ``settings`` (any
        JSON-able description of what else can change a number: the study's options, the data's
        content hash) (:func:`jaxcl.io.checkpoints.resume`).

    A non-finite loss raises :class:`jaxcl.train.steps.NonFiniteError` naming the task, step and
    seed.
    """
    if len(tasks) != len(keys) or not tasks:
        raise ValueError(f"{len(tasks)} benchmarks for {len(keys)} keys; give one key per seed")
    shapes = {(t.x_train.shape, t.x_test.shape) for t in tasks}
    if len(shapes) > 1:
        raise ValueError(f"the seeds' benchmarks differ in shape ({sorted(shapes)}); seeds "
                         "trained together need one shape")
    for t in tasks:
        variant.check_tasks(t)
    if not (isinstance(checkpoint_epochs, int) and checkpoint_epochs >= 0):
        raise ValueError(f"checkpoint_epochs must be an integer >= 0, got {checkpoint_epochs!r}")
    check_devices(devices, variant.batch_size)
    seeds, num_tasks = len(tasks), tasks[0].num_tasks
    programs = programs or Programs.create(seeds, devices)
    if (programs.seeds, programs.devices) != (seeds, devices):
        raise ValueError(f"programs made for {programs.seeds} seeds on {programs.devices} "
                         f"devices cannot run {seeds} seeds on {devices}")
    put = functools.partial(replicate, mesh=data_mesh(devices))
    x_train, x_test = (put(jnp.stack([getattr(t, f) for t in tasks])) for f in ("x_train",
                                                                              "x_test"))
    k_init, k_eval, k_train = jnp.unstack(
        jnp.stack([jax.random.split(k, 3) for k in keys]), axis=1)
    k_init, k_eval = put(k_init), put(k_eval)
    fold_in = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    weights = put(LossWeights(*(jnp.float32(w) for w in variant.weights)))
    per_epoch = x_train.shape[2] // variant.batch_size
    total = steps_per_task(variant, x_train.shape[2])
    chunk = checkpoint_epochs if checkpoint_dir is not None and checkpoint_epochs else (
        variant.epochs)
    static, eval_static = variant.static, variant.eval_static

    compile_before = programs.compile_s
    start = time.perf_counter()
    psi = programs.init(k_init, variant=eval_static, num_tasks=num_tasks)
    memory = put(jnp.zeros((seeds, num_tasks, variant.memory_per_task, x_train.shape[-1]),
                           x_train.dtype))
    fresh = {"psi": psi, "opt_state": programs.start(psi, variant=static), "frozen": psi,
             "memory": memory}
    jax.block_until_ready(fresh)
    record = {"state": fresh, "matrix": np.zeros((seeds, num_tasks, num_tasks)),
              "times": np.zeros(num_tasks),
              "logs": {name: np.zeros((seeds, num_tasks * total), np.float32)
                       for name in STEP_METRICS}}
    init_s = time.perf_counter() - start - (programs.compile_s - compile_before)
    saver, (first_task, first_epoch), compiled_earlier = None, (0, 0), 0.0
    if checkpoint_dir is not None:
        saver, record, (first_task, first_epoch), compiled_earlier = resume(
            checkpoint_dir, {"run": run_name or repr(variant),
                             "keys": np.asarray(jax.random.key_data(jnp.stack(keys))).tolist(),
                             "shapes": [list(x_train.shape), list(x_test.shape)],
                             "settings": settings or {}},
            record, epochs=variant.epochs, message=label)
    state = record["state"]
    record["times"][0] += init_s if first_task == 0 and first_epoch == 0 else 0.0
    try:
        for t in range(first_task, num_tasks):
            task_id, task_keys = put(jnp.int32(t)), put(fold_in(k_train, t))
            x = x_train[:, t]
            compiled = programs.compile_s
            start, earlier_s = time.perf_counter(), record["times"][t]
            if not (t == first_task and first_epoch > 0):  # not resumed inside the task
                state = {**state, "frozen": state["psi"],
                         "opt_state": programs.start(state["psi"], variant=static)}
            epoch_from = first_epoch if t == first_task else 0
            with tqdm(total=total, initial=epoch_from * per_epoch, desc=f"{label} task {t}",
                      leave=False, disable=label is None, unit="step") as bar:
                for e in range(epoch_from, variant.epochs, chunk):
                    n = min(chunk, variant.epochs - e)
                    psi, opt_state, metrics = programs.train(
                        weights, state["psi"], state["opt_state"], state["frozen"],
                        state["memory"], x, task_id, task_keys, put(jnp.int32(e * per_epoch)),
                        variant=static, steps=n * per_epoch)
                    state = {**state, "psi": psi, "opt_state": opt_state}
                    metrics = local(metrics)
                    check_finite(metrics["loss"], experience=t, epoch=e,
                                 steps_per_epoch=per_epoch)
                    at = t * total + e * per_epoch
                    for name in STEP_METRICS:
                        record["logs"][name][:, at:at + n * per_epoch] = metrics[name]
                    bar.update(n * per_epoch)
                    bar.set_postfix(loss=f"{float(np.mean(metrics['loss'][:, -1])):.4f}")
                    if saver is not None and e + n < variant.epochs:
                        record["times"][t] = earlier_s + time.perf_counter() - start - (
                            programs.compile_s - compiled)
                        saver.save(t, e + n - 1, {**record, "state": state},
                                   compile_s=compiled_earlier + programs.compile_s
                                   - compile_before)
            state = {**state, "memory": programs.end(state["memory"], x, task_id, task_keys,
                                                     variant=static)}
            record["matrix"][:, t] = local(programs.evaluate(state["psi"], x_test, k_eval,
                                                             variant=eval_static))
            record["times"][t] = earlier_s + time.perf_counter() - start - (
                programs.compile_s - compiled)
            if saver is not None:
                saver.save(t, variant.epochs - 1, {**record, "state": state},
                           compile_s=compiled_earlier + programs.compile_s - compile_before)
            if progress is not None:
                last = slice(max(t * total, (t + 1) * total - 10), (t + 1) * total)
                progress(t, {name: record["logs"][name][:, last].mean(axis=1)
                             for name in STEP_METRICS})
    except KeyboardInterrupt:  # Ctrl-C: stop at the edge, saying what is kept
        if saver is None:
            raise
        raise saver.interrupted() from None
    finally:  # a NaN stop, too, leaves the checkpoints closed
        if saver is not None:
            saver.close()
    compile_s = compiled_earlier + programs.compile_s - compile_before
    task_of_step = np.repeat(np.arange(num_tasks), total)
    runs = []
    for s in range(seeds):
        matrix = record["matrix"][s]
        f0, mean_f = forgetting(matrix)
        runs.append(StudyRun(
            matrix, f0, mean_f,
            {**{name: record["logs"][name][s] for name in STEP_METRICS}, "task": task_of_step},
            float(record["times"].sum()), compile_s, [float(t) for t in record["times"]],
            jax.tree.map(lambda a, s=s: a[s], state["psi"])))
    return runs
