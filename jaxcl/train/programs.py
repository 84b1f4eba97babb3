"""The compiled programs of a learner's run: its steps, the start and end of an experience, and
the evaluation, each over every seed at once and, on a mesh, over every device.

:class:`LoopPrograms` builds them from the learner and the run's shapes of training (minibatch
size, seeds, devices, the loop over an epoch's minibatches). Every program is compiled ahead of
time, once per input signature, and counts its compilations and their seconds
(:class:`jaxcl.train.steps.CompiledPrograms`). Learners that compare equal share programs: the
Hypernet-SDE-Flow variants that differ only in their loss weights (which live in the state,
traced) compile once when the caller hands the loop one ``cache`` for all of them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

import jax

from jaxcl.learners.base import Learner
from jaxcl.train.parallel import over_seeds, replicated, shard_batch
from jaxcl.train.steps import LOOPS, CompiledPrograms, TaskStep
from jaxcl.types import Batch

_CACHE_LOCK = threading.Lock()  # runs in threads that share a cache make each entry once


def _train_step(learner: Learner, augment, mesh, state, batch: Batch, task_id, key, *,
                first: bool):
    batch = shard_batch(batch, mesh)  # data parallel: each device takes its share
    if augment is not None:
        k_augment, key = jax.random.split(key)
        batch = batch._replace(x=augment(k_augment, batch.x))
    return learner.train_step(state, batch, task_id, key, first=first)


def _consolidate_step(learner: Learner, mesh, state, batch: Batch, task_id, key):
    return learner.consolidate(state, shard_batch(batch, mesh), task_id, key), {}


def learner_steps(learner: Learner, *, augment: Callable | None = None,
                  mesh: jax.sharding.Mesh | None = None) -> dict[str, TaskStep]:
    """The steps the loop runs over an experience's minibatches, per seed: ``"train"``
    (``train_step`` on the minibatch, augmented with a key split off the step's, sharded over
    ``mesh``) and, for a learner that has ``consolidate``, ``"consolidate"`` (no metrics)."""
    steps = {"train": functools.partial(_train_step, learner, augment, mesh)}
    if callable(getattr(learner, "consolidate", None)):
        steps["consolidate"] = functools.partial(_consolidate_step, learner, mesh)
    return steps


def _evaluate(learner: Learner, batch_size: int, state, x, y, task_id, index):
    """``learner.evaluate`` on experience ``index``'s test set with the evaluation key of that
    position, ``fold_in(key(0), index)``: the same in every run and seed."""
    key = jax.random.fold_in(jax.random.key(0), index)
    return learner.evaluate(state, x, y, task_id, key, batch_size=batch_size)


class LoopPrograms:
    """A learner's compiled programs for runs of ``seeds`` seeds on ``mesh``.

    ``loop(name, state, data, task_id, key, first=...)`` runs an epoch of step ``name``
    (:data:`jaxcl.train.steps.LOOPS`); ``begin``, ``end`` and ``evaluate`` are the experience's
    start, end and one evaluation. ``programs`` lists them all (to count compilations).
    """

    def __init__(self, learner: Learner, *, augment: Callable | None, mesh, batch_size: int,
                 seeds: int, steps_in: str, eval_batch_size: int):
        jit = replicated(mesh)
        self.steps = learner_steps(learner, augment=augment, mesh=mesh)
        self.loop = LOOPS[steps_in](self.steps, batch_size=batch_size, seeds=seeds,
                                    static_argnames=["first"], **jit)
        self.begin = CompiledPrograms(over_seeds(learner.begin_experience, (0, None, 0), seeds),
                                      **jit)
        self.end = CompiledPrograms(over_seeds(learner.end_experience, (0, 0, None, 0), seeds),
                                    **jit)
        self.evaluate = CompiledPrograms(over_seeds(
            functools.partial(_evaluate, learner, eval_batch_size), (0, 0, 0, None, None),
            seeds), **jit)
        self.programs = (*self.loop.programs, self.begin, self.end, self.evaluate)

    @property
    def compilations(self) -> int:
        return sum(len(p.compiled) for p in self.programs)

    @property
    def compile_s(self) -> float:
        return sum(p.compile_s for p in self.programs)

    @classmethod
    def cached(cls, cache: MutableMapping[Any, LoopPrograms] | None, learner: Learner,
               **options: Any) -> LoopPrograms:
        """The programs for ``learner`` and ``options`` from ``cache`` (made and kept there when
        new); fresh ones when ``cache`` is ``None``. The mesh is keyed by its devices."""
        if cache is None:
            return cls(learner, **options)
        mesh = options["mesh"]
        key = (learner, tuple(sorted((k, v) for k, v in options.items() if k != "mesh")),
               None if mesh is None else tuple(mesh.devices.flat))
        with _CACHE_LOCK:
            if key not in cache:
                cache[key] = cls(learner, **options)
            return cache[key]
