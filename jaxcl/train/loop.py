"""The engine: train any strategy over a stream, evaluate after every experience, time it all.

Each experience's arrays stay on the device. An epoch runs the strategy's compiled step over
shuffled minibatches in one of two loops, a value (``steps_in``, :mod:`jaxcl.train.steps`): one
compiled ``jax.lax.scan`` per epoch (``"scan"``, GPU and TPU), or a Python loop over the compiled
step (``"python"``, CPU, where a convolution's gradient inside an XLA loop is 20-45x slower); both
train the same minibatches with the same keys. The progress bar moves once per epoch. The start
and end of an experience, a strategy's consolidation pass (run in the same loop,
:class:`jaxcl.learners.base.Consolidating`) and the evaluation are compiled too. Every program
is compiled ahead of time, once per input shape (one shape for a whole split benchmark), and its
compile time is reported apart from the training time.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxcl.io.checkpoints import resume
from jaxcl.learners.base import METRIC_KEYS, Learner
from jaxcl.train.parallel import (
    check_devices,
    data_mesh,
    local,
    over_seeds,
    replicate,
    replicated,
    shard_batch,
)
from jaxcl.train.steps import (  # noqa: F401  (NonFiniteError: part of the engine's interface)
    LOOPS,
    CompiledPrograms,
    NonFiniteError,
    TaskStep,
    check_finite,
    resolve_steps_in,
)
from jaxcl.types import Batch, Experience, PyTree

MAX_LOG_BYTES = 4 * 2**30
"""The largest per-step log (float32 for every metric, step and seed) a run may hold: a run that
would need more is refused before anything compiles, saying how much."""


@dataclasses.dataclass
class RunResult:
    """What one run of a learner over a stream measured.

    Attributes:
      matrix: ``(N, N)``; ``[i, j]`` the learner's evaluation (``evaluation``: accuracy, or MSE)
        on experience ``j`` after training experience ``i``; entries with ``j > i`` are 0 unless
        the learner ``evaluates_unseen``.
      evaluation: what ``matrix`` holds, the learner's ``evaluation``.
      time_per_experience: wall seconds per experience (start, training, end, evaluation); for
        seeds trained together (:func:`train_seeds`), the seconds of all of them.
      time_s: their sum.
      compile_s: seconds spent compiling, apart from ``time_s``.
      step_metrics: ``{name: (steps,) array}`` over the whole run for ``METRIC_KEYS``, plus
        ``experience``, the experience of each step.
      memory_bytes: bytes the strategy keeps against forgetting at the end (32-bit).
      compilations: programs compiled for the run. When every experience has the same shapes:
        with ``steps_in="python"`` 6 (the step of the first and of later experiences, the
        epoch's minibatch plan, start, end, evaluation), with ``"scan"`` 5 (the epoch of the
        first and of later experiences, start, end, evaluation); one more for a strategy with a
        consolidation pass (EWC: its step, or its scan).
      state: the final strategy state.
    """

    matrix: np.ndarray
    evaluation: str
    time_per_experience: list[float]
    time_s: float
    compile_s: float
    step_metrics: dict[str, np.ndarray]
    memory_bytes: int
    compilations: int = 0
    state: PyTree = None


def _train_step(strategy: Learner, augment, mesh, state, batch: Batch, task_id, key, *,
                first: bool):
    batch = shard_batch(batch, mesh)  # data parallel: each device takes its share
    if augment is not None:
        k_augment, key = jax.random.split(key)
        batch = batch._replace(x=augment(k_augment, batch.x))
    return strategy.train_step(state, batch, task_id, key, first=first)


def _consolidate_step(strategy: Learner, mesh, state, batch: Batch, task_id, key):
    return strategy.consolidate(state, shard_batch(batch, mesh), task_id, key), {}


def strategy_steps(strategy: Learner, *, augment=None, mesh=None) -> dict[str, TaskStep]:
    """The steps the engine runs over an experience's minibatches, per seed: ``"train"``
    (``train_step`` on the minibatch, augmented with a key split off the step's, sharded over
    ``mesh``) and, for a strategy that has ``consolidate``, ``"consolidate"`` (no metrics)."""
    steps = {"train": functools.partial(_train_step, strategy, augment, mesh)}
    if callable(getattr(strategy, "consolidate", None)):
        steps["consolidate"] = functools.partial(_consolidate_step, strategy, mesh)
    return steps


def _evaluate(learner: Learner, batch_size: int, state, x, y, task_id, index):
    """``learner.evaluate`` on experience ``index``'s test set with the evaluation key of that
    position, ``fold_in(key(0), index)``: the same in every run and seed."""
    key = jax.random.fold_in(jax.random.key(0), index)
    return learner.evaluate(state, x, y, task_id, key, batch_size=batch_size)


def _layout(stream: Sequence[Experience]) -> list[tuple]:
    return [(e.task_id, e.x_train.shape, e.x_test.shape) for e in stream]


def stackable(streams: Sequence[Sequence[Experience]]) -> bool:
    """Whether the streams agree in task ids and shapes, so that :func:`train_seeds` can train
    them together."""
    return all(_layout(s) == _layout(streams[0]) for s in streams)


def _stack(streams: Sequence[Sequence[Experience]]) -> list[Experience]:
    """The seeds' streams as one stream whose arrays have a leading seed axis."""
    first = streams[0]
    for seed, stream in enumerate(streams):
        if _layout(stream) != _layout(first):
            raise ValueError(f"stream {seed} differs from stream 0 in task ids or shapes "
                             f"({_layout(stream)} against {_layout(first)}); vmapped seeds "
                             "need equal shapes, so train these seeds one by one")
    return [Experience(exp.task_id, exp.classes,
                       *(jnp.stack([s[i][f] for s in streams]) for f in range(2, 6)))
            for i, exp in enumerate(first)]


def _check_task_ids(strategy: Learner, streams: Sequence[Sequence[Experience]]) -> None:
    """Refuse task ids the strategy has no row for: inside the compiled step an index past the
    end of the embedding table (or of the heads) would be clamped to its last row, silently."""
    held = strategy.num_tasks
    for stream in streams:
        bad = [int(e.task_id) for e in stream if not 0 <= int(e.task_id) < held]
        if bad:
            raise ValueError(
                f"the stream has task ids {bad} but {strategy.name} holds {held} tasks (ids "
                f"0..{held - 1}: its task-embedding table or heads); build it for at least "
                f"{max(bad) + 1} tasks")


def train_stream(strategy: Learner, stream: Sequence[Experience], *, key: jax.Array,
                 **options) -> RunResult:
    """:func:`train_seeds` for one stream and one key."""
    return train_seeds(strategy, [stream], keys=[key], **options)[0]


def train_seeds(
    strategy: Learner,
    streams: Sequence[Sequence[Experience]],
    *,
    keys: Sequence[jax.Array],
    epochs: int,
    batch_size: int,
    eval_batch_size: int = 256,
    progress: bool = True,
    label: str = "",
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    devices: int = 1,
    checkpoint_dir: str | pathlib.Path | None = None,
    checkpoint_epochs: int = 0,
    run_name: str | None = None,
    steps_in: str = "auto",
    settings: dict[str, Any] | None = None,
) -> list[RunResult]:
    """Train ``strategy`` on every experience of each stream in order, evaluating on all after
    each; stream ``s`` with ``keys[s]``, all seeds in one vmapped program.

    The streams must agree in task ids and shapes (those of one benchmark under several seeds
    do). ``augment(key, x)``, e.g. :func:`jaxcl.data.augment.random_crop_flip`, transforms every
    training minibatch on the device with a fresh key (evaluation sees the images unchanged).
    ``devices > 1`` trains data-parallel on a mesh of that many devices: every minibatch is
    sharded along its batch axis, states and data replicated, one compiled step. With
    ``checkpoint_dir`` the run is checkpointed after every experience (:mod:`jaxcl.io.checkpoints`),
    and also after every ``checkpoint_epochs`` epochs inside one when that is positive, and resumes from the latest checkpoint there, if that is of the same run: the same
    ``run_name`` (default: the strategy's type; pass its settings, e.g. the ``StrategyConfig``'s
    repr), seeds' keys, shapes, epochs, batch size and loop, and ``settings`` (any JSON-able
    description of what else can change a number, e.g. the experiment's options and the data's
    content hash; a refusal names each entry that differs). A non-finite loss raises
    :class:`NonFiniteError` naming the experience, step and seed.

    ``steps_in`` is the loop over an epoch's minibatches (:mod:`jaxcl.train.steps`): ``"python"`` (a
    Python loop over one compiled step per phase), ``"scan"`` (one compiled ``jax.lax.scan`` per
    epoch) or ``"auto"``, ``"python"`` on CPU and ``"scan"`` elsewhere. Both train the same
    minibatches with the same keys, to float rounding the same run. After the last epoch of an
    experience a strategy with ``consolidate`` gets one more pass over the experience's
    minibatches (in the same loop, no augmentation) before ``end_experience``.
    """
    if len(streams) != len(keys) or not streams:
        raise ValueError(f"{len(streams)} streams for {len(keys)} keys; give one key per stream")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    if eval_batch_size < 1:
        raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size!r}")
    smallest = min(e.x_train.shape[0] for stream in streams for e in stream)
    if not 1 <= batch_size <= smallest:
        raise ValueError(f"batch_size must be in 1..{smallest} (the smallest experience), "
                         f"got {batch_size!r}")
    check_devices(devices, batch_size)
    _check_task_ids(strategy, streams)
    steps_in = resolve_steps_in(steps_in)
    mesh = data_mesh(devices)
    if not (isinstance(checkpoint_epochs, int) and checkpoint_epochs >= 0):
        raise ValueError(f"checkpoint_epochs must be an integer >= 0, got {checkpoint_epochs!r}")
    stream = _stack(streams)
    seeds = len(streams)
    total_steps = epochs * sum(exp.x_train.shape[1] // batch_size for exp in stream)
    log_bytes = 4 * len(METRIC_KEYS) * seeds * total_steps
    if log_bytes > MAX_LOG_BYTES:
        raise ValueError(
            f"epochs={epochs} over this stream is {total_steps:,} steps per seed; their "
            f"per-step logs would take {log_bytes / 2**30:.1f} GiB (the limit is "
            f"{MAX_LOG_BYTES / 2**30:.0f} GiB): train fewer epochs or seeds")
    keys = jnp.stack([jax.random.split(k) for k in keys])  # (S, 2): init key, run key
    init_keys, keys = keys[:, 0], keys[:, 1]

    start = time.perf_counter()
    state = jax.jit(over_seeds(strategy.init, (0, 0), seeds))(
        init_keys, stream[0].x_train[:, :batch_size])
    state = replicate(state, mesh)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start

    jit = replicated(mesh)
    steps_of = strategy_steps(strategy, augment=augment, mesh=mesh)
    loop = LOOPS[steps_in](steps_of, batch_size=batch_size, seeds=seeds,
                           static_argnames=["first"], **jit)
    begin = CompiledPrograms(over_seeds(strategy.begin_experience, (0, None, 0), seeds), **jit)
    end = CompiledPrograms(over_seeds(strategy.end_experience, (0, 0, None, 0), seeds), **jit)
    accuracy = CompiledPrograms(over_seeds(functools.partial(_evaluate, strategy,
                                                              eval_batch_size),
                                            (0, 0, 0, None, None), seeds), **jit)
    put = functools.partial(replicate, mesh=mesh)
    fold_in = jax.vmap(jax.random.fold_in, in_axes=(0, None))  # every seed's key with one value
    programs = (*loop.programs, begin, end, accuracy)

    n = len(stream)
    steps = [exp.x_train.shape[1] // batch_size for exp in stream]
    offsets = np.cumsum([0] + [epochs * k for k in steps])
    record = {"state": state, "matrix": np.zeros((seeds, n, n)), "times": np.zeros(n),
              "logs": {name: np.zeros((seeds, offsets[-1]), np.float32) for name in METRIC_KEYS}}
    saver, done, compiled_before_s = None, (0, 0), 0.0
    if checkpoint_dir is not None:
        saver, record, done, compiled_before_s = resume(checkpoint_dir, {
            "run": run_name or type(strategy).__name__, "seeds": seeds,
            "shapes": [list(e.x_train.shape) for e in stream], "epochs": epochs,
            "batch_size": batch_size, "keys": np.asarray(jax.random.key_data(keys)).tolist(),
            "steps_in": steps_in, "settings": settings or {}},
            record, epochs=epochs, message=label or run_name or type(strategy).__name__)
    compile_s = init_s + compiled_before_s

    state = record["state"]
    first_experience, first_epoch = done
    try:
        for i in range(first_experience, n):
            exp = stream[i]
            task = put(jnp.int32(exp.task_id))
            data = put(Batch(exp.x_train, exp.y_train))
            exp_keys = fold_in(keys, i)
            k_begin, k_end, k_train = jnp.unstack(
                jax.vmap(lambda k: jax.random.split(k, 3))(exp_keys), axis=1)
            k_begin, k_end, k_train, k_pass = put((k_begin, k_end, k_train, fold_in(k_end, 1)))
            compile_before = sum(p.compile_s for p in programs)
            start, earlier_s = time.perf_counter(), record["times"][i]
            resumed = i == first_experience and first_epoch > 0  # inside the experience
            if not resumed:
                state = begin(state, task, k_begin)
            with tqdm(total=epochs * steps[i], initial=(first_epoch if resumed else 0) * steps[i],
                      desc=f"{label} experience {i}".strip(), leave=False,
                      disable=not progress, unit="step") as bar:
                for e in range(first_epoch if resumed else 0, epochs):
                    state, metrics = loop("train", state, data, task,
                                          put(fold_in(k_train, e)), first=(i == 0))
                    metrics = local(metrics)
                    check_finite(metrics["loss"], experience=i, epoch=e, steps_per_epoch=steps[i])
                    at = offsets[i] + e * steps[i]
                    for name in METRIC_KEYS:
                        record["logs"][name][:, at:at + steps[i]] = metrics[name]
                    bar.update(steps[i])
                    bar.set_postfix(loss=f"{float(np.mean(metrics['loss'][:, -1])):.3f}")
                    if (saver is not None and checkpoint_epochs and e + 1 < epochs
                            and (e + 1) % checkpoint_epochs == 0):
                        compiled_now = sum(p.compile_s for p in programs)
                        record["times"][i] = earlier_s + time.perf_counter() - start - (
                            compiled_now - compile_before)
                        saver.save(i, e, {**record, "state": state},
                                   compile_s=compiled_before_s + compiled_now)
            if "consolidate" in steps_of:
                state, _ = loop("consolidate", state, data, task, k_pass)
            state = end(state, data, task, k_end)
            for j, other in enumerate(stream[: i + 1]):
                record["matrix"][:, i, j] = local(accuracy(state, *put((
                    other.x_test, other.y_test, jnp.int32(other.task_id), jnp.int32(j)))))
            compiled_now = sum(p.compile_s for p in programs)
            record["times"][i] = earlier_s + time.perf_counter() - start - (
                compiled_now - compile_before)
            if saver is not None:
                saver.save(i, epochs - 1, {**record, "state": state},
                           compile_s=compiled_before_s + compiled_now)
    except KeyboardInterrupt:  # Ctrl-C: stop at the edge, saying what is kept
        if saver is None:
            raise
        raise saver.interrupted() from None
    finally:  # a NaN stop, too, leaves the checkpoints closed
        if saver is not None:
            saver.close()
    compile_s += sum(p.compile_s for p in programs)
    experience = np.concatenate([np.full(epochs * k, i) for i, k in enumerate(steps)])
    def seed(tree, s):
        return jax.tree.map(lambda a: a[s], tree)

    return [RunResult(
        matrix=record["matrix"][s],
        evaluation=strategy.evaluation,
        time_per_experience=[float(t) for t in record["times"]],
        time_s=float(record["times"].sum()),
        compile_s=compile_s,
        step_metrics={**{name: record["logs"][name][s] for name in METRIC_KEYS},
                      "experience": experience},
        memory_bytes=int(strategy.memory_bytes(seed(state, s))),
        compilations=sum(len(p.compiled) for p in programs),
        state=seed(state, s),
    ) for s in range(seeds)]
