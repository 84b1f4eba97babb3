"""Frozen-k and Latent Replay LR-k: a feature extractor frozen after the first experience.

Both train one multi-head network; after the first experience the lower part ``g_phi`` (the stem
and the first ``k`` stages) is frozen, with its normalisation statistics, and only the upper part
and its per-task heads learn. Frozen-k (the study's Figure 4, the reference's ``FreezingNaive``)
does nothing else. LR-k (Pellegrini et al. 2020, the reference's ``LatentReplay1``) also replays a
class-balanced buffer of ``g_phi``'s features::

    L = L_CE(current batch) + c * L_CE(replayed batch)

The current and the replayed minibatch go through the upper part in two passes, as in
the reference, so that with batch statistics neither normalises the other.

The buffer (the study: 200 entries for CIFAR-100, 400 for Tiny-ImageNet) is class-balanced with
a fixed capacity ``M`` (Avalanche's ``ClassBalancedBuffer``): after experience ``t`` every class
seen so far holds ``q = M // (classes seen)`` slots, and with ``quotas="avalanche"`` (the
reference's) the first ``M mod (classes seen)`` classes one more, so that all ``M`` are used
(``"equal"``, the default: 195 of 200 slots with 15 classes). Old classes keep their first
entries; each new class gets its quota of its examples drawn at random. Each class's slots are
one contiguous run, so the whole update is a fixed-shape scatter and compiles once.

What the buffer stores is exactly ``g_phi(x)`` as the rest of the network will see it in every
later step and in evaluation: ``g_phi`` is applied with ``train=False`` (running statistics as
frozen at the end of the first experience, or per-sample statistics), and the examples are fed in
a random order, so that with batch statistics no chunk is one class. The reference computes the
features in evaluation mode too, but keeps ``g_phi`` in training mode afterwards: its running
statistics keep moving and the current minibatch is normalised by its own statistics, so its
stored and its live features differ. Here ``g_phi`` is frozen whole, or, with
``lower_train=True``, kept in training mode as the reference keeps it (the statistics still
change nothing but themselves: ``phi`` gets no gradient).

Replayed minibatches are drawn from the buffer without replacement, as the reference's shuffled
``DataLoader(drop_last=True)`` over the buffer does: a random order of the valid entries is
consumed ``n`` at a time and drawn anew when fewer than ``n`` remain (or at every step when the
buffer holds fewer than ``n``; then the missing entries carry zero weight).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxcl.core.chunks import map_chunks
from jaxcl.core.losses import accuracy, cross_entropy
from jaxcl.core.nnx_target import as_linen
from jaxcl.learners.base import Classifier, apply_optimizer, step_metrics
from jaxcl.models import apply_model, split_variables
from jaxcl.types import Batch, PyTree


QUOTAS = ("equal", "avalanche")
"""How the buffer's slots are shared among the classes seen (:class:`LatentReplay`)."""


class ReplayBuffer(NamedTuple):
    """``features (M, ...)``, ``labels (M,)``, ``task_ids (M,)``, ``valid (M,)`` bool."""

    features: jax.Array
    labels: jax.Array
    task_ids: jax.Array
    valid: jax.Array


class FrozenState(NamedTuple):
    """``lower``: ``phi``, the variables of ``g_phi`` (``{"params": ...}``, ``{}`` for k = 0);
    ``upper``: those of the upper part and its heads; ``*_stats``: their normalisation statistics
    (``{}`` unless ``norm="running"``); ``opt_state``: ``{"lower": ..., "upper": ...}``."""

    lower: PyTree
    lower_stats: PyTree
    upper: PyTree
    upper_stats: PyTree
    opt_state: dict[str, PyTree]


class ReplayState(NamedTuple):
    """:class:`FrozenState`'s fields, the buffer, and the replay order and position in it."""

    lower: PyTree
    lower_stats: PyTree
    upper: PyTree
    upper_stats: PyTree
    opt_state: dict[str, PyTree]
    buffer: ReplayBuffer
    replay_order: jax.Array  # (M,) slots, the valid ones first in a random order
    replay_pos: jax.Array  # minibatches of this order used so far


@dataclasses.dataclass(frozen=True)
class Frozen(Classifier):
    """Frozen-k: fine-tune everything in the first experience, then only what follows ``g_phi``.

    Attributes:
      lower: ``g_phi`` (stem + first ``k`` stages), or ``None`` for ``k = 0`` (then Frozen-0 is
        Naive fine-tuning); a Linen or a Flax NNX module (:func:`jaxcl.core.nnx_target.as_linen`
        wraps the latter).
      net: a :class:`jaxcl.models.MultiHeadClassifier` of the upper part over ``g_phi``'s
        features.
      optimizer: optax optimizer, reset at each experience.
      lower_train: keep ``g_phi`` in training mode after the first experience, as the reference
        does: each current minibatch is normalised with its own statistics and the running ones
        (running normalisation only) follow every later experience's batches; evaluation and
        the buffer's features use them as they have drifted. ``False``: frozen whole.
    """

    lower: nn.Module | None
    net: nn.Module
    optimizer: optax.GradientTransformation
    lower_train: bool = False
    name: str = "frozen"

    @property
    def num_tasks(self) -> int:
        """Task ids this strategy holds a head for: ``0 .. num_tasks - 1``."""
        return self.net.num_tasks

    def __post_init__(self):
        if self.lower is not None:
            object.__setattr__(self, "lower", as_linen(self.lower))

    def _features(self, lower, lower_stats, x, *, train):
        if self.lower is None:
            return x, lower_stats
        return apply_model(self.lower, lower, lower_stats, x, train=train)

    def features(self, state: FrozenState, x: jax.Array) -> jax.Array:
        """``g_phi(x)`` as every step after the first experience and evaluation see it."""
        return self._features(state.lower, state.lower_stats, x, train=False)[0]

    def _init_parts(self, key, sample_x):
        k_lower, k_upper = jax.random.split(key)
        lower, lower_stats = ({}, {}) if self.lower is None else split_variables(
            self.lower.init(k_lower, sample_x))
        feats = jax.eval_shape(lambda: self._features(lower, lower_stats, sample_x,
                                                      train=False)[0])
        upper, upper_stats = split_variables(
            self.net.init(k_upper, jnp.zeros(feats.shape, feats.dtype), 0))
        opt_state = {"lower": self.optimizer.init(lower), "upper": self.optimizer.init(upper)}
        return FrozenState(lower, lower_stats, upper, upper_stats, opt_state), feats

    def init(self, key: jax.Array, sample_x: jax.Array) -> FrozenState:
        return self._init_parts(key, sample_x)[0]

    def begin_experience(self, state: FrozenState, task_id: jax.Array,
                         key: jax.Array) -> FrozenState:
        opt_state = {"lower": self.optimizer.init(state.lower),
                     "upper": self.optimizer.init(state.upper)}
        return state._replace(opt_state=opt_state)

    def _first_step(self, state, batch, task_id):
        """Train ``phi`` and the upper part together (batch statistics, running ones updated)."""
        def loss_fn(params):
            feats, lower_stats = self._features(params["lower"], state.lower_stats, batch.x,
                                                train=True)
            logits, upper_stats = apply_model(self.net, params["upper"], state.upper_stats,
                                              feats, task_id, train=True)
            return cross_entropy(logits, batch.y), (accuracy(logits, batch.y), lower_stats,
                                                    upper_stats)

        params = {"lower": state.lower, "upper": state.upper}
        (loss, (acc, lower_stats, upper_stats)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(params)
        new, opt_state = {}, {}
        for part in params:
            new[part], opt_state[part] = apply_optimizer(
                self.optimizer, grads[part], state.opt_state[part], params[part])
        state = state._replace(lower=new["lower"], lower_stats=lower_stats, upper=new["upper"],
                               upper_stats=upper_stats, opt_state=opt_state)
        return state, step_metrics(loss, acc)

    def _later_step(self, state, batch, task_id, replay=None):
        """Train the upper part on ``g_phi``'s features, a constant (``phi`` is frozen); ``replay``:
        ``(features, labels, task_ids, weights)`` of a replayed minibatch, weighted by ``c``."""
        if self.lower_train:  # the reference's: batch statistics, the running ones drift
            feats, lower_stats = self._features(state.lower, state.lower_stats, batch.x,
                                                train=True)
            state = state._replace(lower_stats=lower_stats)
        else:
            feats = self.features(state, batch.x)

        def loss_fn(upper):
            logits, stats = apply_model(self.net, upper, state.upper_stats, feats, task_id,
                                        train=True)
            ce = cross_entropy(logits, batch.y)
            loss = ce
            if replay is not None:
                r_feats, r_labels, r_tasks, r_weights = replay
                r_logits, stats = apply_model(self.net, upper, stats, r_feats, r_tasks,
                                              train=True)
                per_example = optax.softmax_cross_entropy_with_integer_labels(r_logits, r_labels)
                replayed = jnp.sum(r_weights * per_example) / jnp.maximum(r_weights.sum(), 1.0)
                loss = ce + self.replay_coef * replayed
            return loss, (ce, accuracy(logits, batch.y), stats)

        grads, (ce, acc, stats) = jax.grad(loss_fn, has_aux=True)(state.upper)
        upper, upper_opt = apply_optimizer(self.optimizer, grads, state.opt_state["upper"],
                                           state.upper)
        state = state._replace(upper=upper, upper_stats=stats,
                               opt_state={**state.opt_state, "upper": upper_opt})
        return state, step_metrics(ce, acc)

    def train_step(self, state: FrozenState, batch: Batch, task_id: jax.Array, key: jax.Array, *,
                   first: bool) -> tuple[FrozenState, dict[str, jax.Array]]:
        if first:
            return self._first_step(state, batch, task_id)
        return self._later_step(state, batch, task_id)

    def end_experience(self, state: FrozenState, data: Batch, task_id: jax.Array,
                       key: jax.Array) -> FrozenState:
        return state

    def logits(self, state: FrozenState, x: jax.Array, task_id: jax.Array) -> jax.Array:
        return apply_model(self.net, state.upper, state.upper_stats, self.features(state, x),
                           task_id, train=False)[0]

    def memory_bytes(self, state: FrozenState) -> int:
        return 0


@dataclasses.dataclass(frozen=True)
class LatentReplay(Frozen):
    """LR-k: :class:`Frozen` plus replay of a class-balanced buffer of ``g_phi``'s features.

    Attributes:
      classes_per_task: classes in every experience (labels ``0 .. C-1``).
      memory_size: buffer capacity ``M``.
      replay_coef: ``c``.
      replay_batch_size: replayed examples per step ``n``, drawn without replacement.
      feature_batch_size: minibatch of the pass that fills the buffer.
      quotas: ``"equal"`` (every class ``M // classes seen`` slots) or ``"avalanche"`` (the
        remainder to the first classes, Avalanche's ``ClassBalancedBuffer``).
    """

    classes_per_task: int = 2
    memory_size: int = 200
    replay_coef: float = 1.0
    replay_batch_size: int = 64
    feature_batch_size: int = 256
    quotas: str = "equal"
    name: str = "latent_replay"

    def __post_init__(self):
        super().__post_init__()
        if self.lower is None:
            raise ValueError("latent replay needs a lower part: freeze depth k >= 1")
        if self.memory_size < 1:
            raise ValueError(f"memory_size must be >= 1, got {self.memory_size!r}")
        if not self.replay_coef >= 0:
            raise ValueError(f"replay_coef must be >= 0, got {self.replay_coef!r}")
        if self.quotas not in QUOTAS:
            raise ValueError(f"quotas={self.quotas!r} is not one of {QUOTAS}")

    def init(self, key: jax.Array, sample_x: jax.Array) -> ReplayState:
        base, feats = self._init_parts(key, sample_x)
        m = self.memory_size
        buffer = ReplayBuffer(jnp.zeros((m, *feats.shape[1:]), feats.dtype),
                              jnp.zeros((m,), jnp.int32), jnp.zeros((m,), jnp.int32),
                              jnp.zeros((m,), bool))
        return ReplayState(*base, buffer, jnp.arange(m, dtype=jnp.int32), jnp.int32(0))

    def replay_indices(self, state: ReplayState, key: jax.Array) -> jax.Array:
        """The next replayed minibatch: ``(slots, weights, order, pos)``, the order drawn anew
        from ``key`` when this one has fewer than ``n`` entries left."""
        n, m = self.replay_batch_size, self.memory_size
        count = jnp.sum(state.buffer.valid)
        exhausted = state.replay_pos >= jnp.maximum(count // n, 1)
        order = jnp.where(exhausted, _valid_first(key, state.buffer.valid), state.replay_order)
        pos = jnp.where(exhausted, 0, state.replay_pos)
        at = pos * n + jnp.arange(n)
        return order[at % m], (at < count).astype(jnp.float32), order, pos + 1

    def train_step(self, state: ReplayState, batch: Batch, task_id: jax.Array, key: jax.Array, *,
                   first: bool) -> tuple[ReplayState, dict[str, jax.Array]]:
        if first:  # nothing to replay yet
            return self._first_step(state, batch, task_id)
        slots, weights, order, pos = self.replay_indices(state, key)
        buf = state.buffer
        replay = (buf.features[slots], buf.labels[slots], buf.task_ids[slots], weights)
        state, metrics = self._later_step(state, batch, task_id, replay)
        return state._replace(replay_order=order, replay_pos=pos), metrics

    def buffer_features(self, state: ReplayState, x: jax.Array) -> jax.Array:
        """:meth:`features` in minibatches of ``feature_batch_size`` (the remainder as one more);
        ``x`` should be in a random order (batch statistics see mixed chunks)."""
        return map_chunks(lambda xb: self.features(state, xb), x, self.feature_batch_size)

    def end_experience(self, state: ReplayState, data: Batch, task_id: jax.Array,
                       key: jax.Array) -> ReplayState:
        """Rebalance the buffer for the classes seen so far and add this experience's classes."""
        k_perm, k_order = jax.random.split(key)
        buf, m, c = state.buffer, self.memory_size, self.classes_per_task
        quota_old, offset_old = self._quotas(task_id * c)
        quota_new, offset_new = self._quotas((task_id + 1) * c)
        # Old entries: class cls, rank i - offset within its run; keep as many as its new quota.
        cls = buf.task_ids * c + buf.labels
        rank = jnp.arange(m) - offset_old(cls)
        keep = buf.valid & (rank < quota_new(cls))
        pos_old = jnp.where(keep, offset_new(cls) + rank, m)
        # New entries: features of a random permutation, then grouped by label (stable), the
        # first of each class kept up to its quota.
        perm = jax.random.permutation(k_perm, data.y.shape[0])
        feats_perm = self.buffer_features(state, data.x[perm])
        by_label = jnp.argsort(data.y[perm], stable=True)
        feats, labels = feats_perm[by_label], data.y[perm][by_label]
        start = jnp.searchsorted(labels, labels, side="left")
        rank_new = jnp.arange(labels.shape[0]) - start
        new_cls = task_id * c + labels
        pos_new = jnp.where(rank_new < quota_new(new_cls), offset_new(new_cls) + rank_new, m)

        def scatter(old, new, fill):
            out = jnp.full_like(old, fill)
            out = out.at[pos_old].set(old, mode="drop")
            return out.at[pos_new].set(new.astype(old.dtype), mode="drop")

        buffer = ReplayBuffer(
            scatter(buf.features, feats, 0),
            scatter(buf.labels, labels, 0),
            scatter(buf.task_ids, jnp.broadcast_to(task_id, labels.shape), 0),
            scatter(buf.valid, jnp.ones(labels.shape, bool), False),
        )
        return state._replace(buffer=buffer, replay_order=_valid_first(k_order, buffer.valid),
                              replay_pos=jnp.int32(0))

    def _quotas(self, seen: jax.Array):
        """``(quota, offset)``: class ``cls``'s slots and where its run starts when ``seen``
        classes share the buffer (:attr:`quotas`)."""
        m = self.memory_size
        q = m // jnp.maximum(seen, 1)
        extra = m - q * jnp.maximum(seen, 1) if self.quotas == "avalanche" else 0
        return (lambda cls: q + (cls < extra),
                lambda cls: cls * q + jnp.minimum(cls, extra))

    def memory_bytes(self, state: ReplayState) -> int:
        return 4 * int(state.buffer.features.size)


def _valid_first(key: jax.Array, valid: jax.Array) -> jax.Array:
    """Slot indices with the valid ones first, in a random order."""
    return jnp.argsort(jnp.where(valid, jax.random.uniform(key, valid.shape), 2.0)).astype(
        jnp.int32)
