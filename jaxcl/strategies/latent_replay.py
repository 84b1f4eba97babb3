"""Latent Replay LR-k: a frozen feature extractor and a class-balanced buffer of its features.

After the first experience the stem and the first ``k`` stages ``g_phi`` are frozen; a buffer of
their output features (with labels and task ids) is replayed beside every new minibatch through
the trainable rest of the network and its per-task heads::

    L = L_CE(current batch) + c * L_CE(replayed batch)

The buffer (Pellegrini et al. 2020; the study: 200 entries for CIFAR-100, 400 for Tiny-ImageNet)
is class-balanced with a fixed capacity ``M``: after experience ``t`` every class seen so far holds
``q = M // (classes seen)`` slots. Old classes keep their first ``q`` entries; each new class gets
``q`` of its examples drawn at random. Slots of class ``c`` are ``c*q .. c*q + q - 1``, so the
whole update is a fixed-shape scatter and compiles once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxcl.training import map_chunks
from jaxcl.strategies.base import accuracy, adam_update, cross_entropy, step_metrics

PyTree = Any


class ReplayBuffer(NamedTuple):
    """``features (M, ...)``, ``labels (M,)``, ``task_ids (M,)``, ``valid (M,)`` bool."""

    features: jax.Array
    labels: jax.Array
    task_ids: jax.Array
    valid: jax.Array


class ReplayState(NamedTuple):
    frozen: PyTree  # phi
    rest: PyTree  # the trainable rest and its heads
    opt_state: dict[str, PyTree]
    buffer: ReplayBuffer


@dataclasses.dataclass(frozen=True)
class LatentReplay:
    """LR-k.

    Attributes:
      frozen_net: ``g_phi`` (stem + first ``k`` stages), trained in the first experience only.
      net: a :class:`jaxcl.models.MultiHeadClassifier` over ``g_phi``'s features.
      optimizer: optax optimizer, reset at each experience.
      classes_per_task: classes in every experience (labels ``0 .. C-1``).
      memory_size: buffer capacity ``M``.
      replay_coef: ``c``.
      replay_batch_size: replayed examples per step (drawn with replacement from the buffer).
      feature_batch_size: minibatch of the pass that fills the buffer.
    """

    frozen_net: nn.Module
    net: nn.Module
    optimizer: optax.GradientTransformation
    classes_per_task: int
    memory_size: int = 200
    replay_coef: float = 1.0
    replay_batch_size: int = 64
    feature_batch_size: int = 256
    name: str = "latent_replay"

    def __post_init__(self):
        if self.frozen_net is None:
            raise ValueError("latent replay needs a frozen part: freeze depth k >= 1")
        if self.memory_size < 1:
            raise ValueError(f"memory_size must be >= 1, got {self.memory_size!r}")
        if not self.replay_coef >= 0:
            raise ValueError(f"replay_coef must be >= 0, got {self.replay_coef!r}")

    @property
    def num_tasks(self) -> int:
        """Task ids this strategy holds a head for: ``0 .. num_tasks - 1``."""
        return self.net.num_tasks

    def init(self, key, sample_x):
        k_frozen, k_rest = jax.random.split(key)
        frozen = self.frozen_net.init(k_frozen, sample_x)
        feats = jax.eval_shape(self.frozen_net.apply, frozen, sample_x)
        rest = self.net.init(k_rest, jnp.zeros(feats.shape, feats.dtype), 0)
        m = self.memory_size
        buffer = ReplayBuffer(jnp.zeros((m, *feats.shape[1:]), feats.dtype),
                              jnp.zeros((m,), jnp.int32), jnp.zeros((m,), jnp.int32),
                              jnp.zeros((m,), bool))
        opt_state = {"frozen": self.optimizer.init(frozen), "rest": self.optimizer.init(rest)}
        return ReplayState(frozen, rest, opt_state, buffer)

    def begin_experience(self, state, task_id, key):
        opt_state = {"frozen": self.optimizer.init(state.frozen),
                     "rest": self.optimizer.init(state.rest)}
        return state._replace(opt_state=opt_state)

    def train_step(self, state, batch, task_id, key, *, first):
        if first:  # train phi and the rest together, nothing to replay yet
            def loss_fn(params):
                feats = self.frozen_net.apply(params["frozen"], batch.x)
                logits = self.net.apply(params["rest"], feats, task_id)
                return cross_entropy(logits, batch.y), accuracy(logits, batch.y)

            params = {"frozen": state.frozen, "rest": state.rest}
            (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            new, opt_state = {}, {}
            for part in params:
                new[part], opt_state[part] = adam_update(
                    self.optimizer, grads[part], state.opt_state[part], params[part])
            state = state._replace(frozen=new["frozen"], rest=new["rest"], opt_state=opt_state)
            return state, step_metrics(loss, acc)

        buf = state.buffer
        n = self.replay_batch_size
        idx = jax.random.choice(key, buf.valid.shape[0], (n,), p=buf.valid / buf.valid.sum())
        feats = self.frozen_net.apply(state.frozen, batch.x)  # a constant: phi is frozen
        x = jnp.concatenate([feats, buf.features[idx]])
        tasks = jnp.concatenate([jnp.broadcast_to(task_id, batch.y.shape), buf.task_ids[idx]])
        b = batch.y.shape[0]

        def loss_fn(rest):
            logits = self.net.apply(rest, x, tasks)
            ce = cross_entropy(logits[:b], batch.y)
            replay = cross_entropy(logits[b:], buf.labels[idx])
            return ce + self.replay_coef * replay, (ce, accuracy(logits[:b], batch.y))

        grads, (ce, acc) = jax.grad(loss_fn, has_aux=True)(state.rest)
        rest, rest_opt = adam_update(self.optimizer, grads, state.opt_state["rest"], state.rest)
        opt_state = {**state.opt_state, "rest": rest_opt}
        return state._replace(rest=rest, opt_state=opt_state), step_metrics(ce, acc)

    def features(self, frozen: PyTree, x: jax.Array) -> jax.Array:
        """``g_phi(x)`` in minibatches of ``feature_batch_size`` (the remainder as one more)."""
        return map_chunks(lambda xb: self.frozen_net.apply(frozen, xb), x,
                          self.feature_batch_size)

    def end_experience(self, state, data, task_id, key):
        """Rebalance the buffer for the classes seen so far and add this experience's classes."""
        buf, m, c = state.buffer, self.memory_size, self.classes_per_task
        seen = (task_id + 1) * c
        q_old = m // jnp.maximum(task_id * c, 1)
        q_new = m // seen
        # Old entries: class slot cls, rank i - cls*q_old within it; keep the first q_new.
        cls = buf.task_ids * c + buf.labels
        rank = jnp.arange(m) - cls * q_old
        keep = buf.valid & (rank < q_new)
        pos_old = jnp.where(keep, cls * q_new + rank, m)
        # New entries: a random permutation, grouped by label (stable), first q_new of each.
        perm = jax.random.permutation(key, data.y.shape[0])
        order = perm[jnp.argsort(data.y[perm], stable=True)]
        labels = data.y[order]
        start = jnp.searchsorted(labels, labels, side="left")
        rank_new = jnp.arange(labels.shape[0]) - start
        pos_new = jnp.where(rank_new < q_new, (task_id * c + labels) * q_new + rank_new, m)
        feats = self.features(state.frozen, data.x[order])

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
        return state._replace(buffer=buffer)

    def logits(self, state, x, task_id):
        return self.net.apply(state.rest, self.frozen_net.apply(state.frozen, x), task_id)

    def memory_bytes(self, state):
        return 4 * int(state.buffer.features.size)
