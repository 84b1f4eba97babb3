"""The engine: train any strategy over a stream, evaluate after every experience, time it all.

Each experience's arrays stay on the device. An epoch is one compiled ``jax.lax.scan`` over
shuffled minibatches (:func:`jaxcl.training.scan_minibatches`); the Python loop runs over
experiences and epochs only, which is also where the progress bar moves. The start and end of an
experience and the evaluation are compiled too. Every program is compiled ahead of time, once per
input shape (one shape for a whole split benchmark), and its compile time is reported apart from
the training time.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxcl.partial_hypernet import Batch
from jaxcl.strategies.base import METRIC_KEYS, Strategy
from jaxcl.streams import Experience
from jaxcl.training import CompiledPrograms, map_chunks, scan_minibatches

PyTree = Any


@dataclasses.dataclass
class StreamResult:
    """What one run over a stream measured.

    Attributes:
      accuracy_matrix: ``(N, N)``; ``[i, j]`` the test accuracy on experience ``j`` after training
        experience ``i``; entries with ``j > i`` are 0 (not evaluated).
      time_per_experience: wall seconds per experience (start, training, end, evaluation).
      time_s: their sum.
      compile_s: seconds spent compiling, apart from ``time_s``.
      step_metrics: ``{name: (steps,) array}`` over the whole run for ``METRIC_KEYS``, plus
        ``experience``, the experience of each step.
      memory_bytes: bytes the strategy keeps against forgetting at the end (32-bit).
      compilations: programs compiled for the run (5 when every experience has the same shapes:
        the epoch of the first and of later experiences, start, end, evaluation).
      state: the final strategy state.
    """

    accuracy_matrix: np.ndarray
    time_per_experience: list[float]
    time_s: float
    compile_s: float
    step_metrics: dict[str, np.ndarray]
    memory_bytes: int
    compilations: int = 0
    state: PyTree = None


def _epoch(strategy: Strategy, batch_size: int, augment, state, data: Batch, task_id, key,
           first: bool):
    def step(state, batch, k):
        if augment is not None:
            k_augment, k = jax.random.split(k)
            batch = batch._replace(x=augment(k_augment, batch.x))
        return strategy.train_step(state, batch, task_id, k, first=first)
    return scan_minibatches(step, state, data, key, epochs=1, batch_size=batch_size)


def _accuracy(strategy: Strategy, eval_batch_size: int, state, x, y, task_id):
    """Accuracy over ``x`` in minibatches of ``eval_batch_size`` (the remainder as one more)."""
    def correct(xy):
        xb, yb = xy
        return jnp.argmax(strategy.logits(state, xb, task_id), axis=-1) == yb

    return jnp.mean(map_chunks(correct, (x, y), eval_batch_size))


def train_stream(
    strategy: Strategy,
    stream: Sequence[Experience],
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    eval_batch_size: int = 256,
    progress: bool = True,
    label: str = "",
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> StreamResult:
    """Train ``strategy`` on every experience of ``stream`` in order; evaluate on all after each.

    ``augment(key, x)``, e.g. :func:`jaxcl.data.augment.random_crop_flip`, transforms every
    training minibatch on the device with a fresh key (evaluation sees the images unchanged).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    if eval_batch_size < 1:
        raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size!r}")
    smallest = min(e.x_train.shape[0] for e in stream)
    if not 1 <= batch_size <= smallest:
        raise ValueError(f"batch_size must be in 1..{smallest} (the smallest experience), "
                         f"got {batch_size!r}")
    init_key, key = jax.random.split(key)
    start = time.perf_counter()
    state = jax.jit(strategy.init)(init_key, stream[0].x_train[:batch_size])
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start

    epoch = CompiledPrograms(functools.partial(_epoch, strategy, batch_size, augment), ["first"])
    begin = CompiledPrograms(strategy.begin_experience)
    end = CompiledPrograms(strategy.end_experience)
    accuracy = CompiledPrograms(functools.partial(_accuracy, strategy, eval_batch_size))

    n = len(stream)
    matrix = np.zeros((n, n))
    times, logs = [], {name: [] for name in (*METRIC_KEYS, "experience")}
    for i, exp in enumerate(stream):
        task = jnp.int32(exp.task_id)
        data = Batch(exp.x_train, exp.y_train)
        exp_key = jax.random.fold_in(key, i)
        k_begin, k_end, k_train = jax.random.split(exp_key, 3)
        compile_before = epoch.compile_s + begin.compile_s + end.compile_s + accuracy.compile_s
        start = time.perf_counter()
        state = begin(state, task, k_begin)
        steps = exp.x_train.shape[0] // batch_size
        with tqdm(total=epochs * steps, desc=f"{label} experience {i}".strip(), leave=False,
                  disable=not progress, unit="step") as bar:
            for e in range(epochs):
                state, metrics = epoch(state, data, task, jax.random.fold_in(k_train, e),
                                       first=(i == 0))
                metrics = jax.device_get(metrics)
                for name in METRIC_KEYS:
                    logs[name].append(np.asarray(metrics[name]))
                logs["experience"].append(np.full(steps, i))
                bar.update(steps)
                bar.set_postfix(loss=f"{float(metrics['loss'][-1]):.3f}")
        state = end(state, data, task, k_end)
        for j, other in enumerate(stream[: i + 1]):
            matrix[i, j] = float(accuracy(state, other.x_test, other.y_test,
                                          jnp.int32(other.task_id)))
        compiled_now = epoch.compile_s + begin.compile_s + end.compile_s + accuracy.compile_s
        times.append(time.perf_counter() - start - (compiled_now - compile_before))
    compile_s = init_s + epoch.compile_s + begin.compile_s + end.compile_s + accuracy.compile_s
    return StreamResult(
        accuracy_matrix=matrix,
        time_per_experience=times,
        time_s=float(sum(times)),
        compile_s=compile_s,
        step_metrics={name: np.concatenate(v) for name, v in logs.items()},
        memory_bytes=int(strategy.memory_bytes(state)),
        compilations=sum(len(p.compiled) for p in (epoch, begin, end, accuracy)),
        state=state,
    )
