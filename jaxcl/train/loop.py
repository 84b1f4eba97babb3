"""The one experience loop: every learner, over a stream, for many seeds at once.

A learner (:class:`jaxcl.learners.base.Learner`: the strategies of the partial-hypernetwork
study and the Hypernet-SDE-Flow study's models alike) is a few pure functions over its state.
:func:`train_seeds` runs it over each experience of a stream in order and evaluates it after
each, filling one row of the evaluation matrix (accuracy, or test MSE: the learner says). The
seeds' streams train as one vmapped program, on one device or data-parallel over many
(:mod:`jaxcl.train.parallel`). An epoch runs the learner's compiled step over shuffled
minibatches in one of two loops, a value (``steps_in``, :mod:`jaxcl.train.steps`): one compiled
``jax.lax.scan`` over the epochs up to the next epoch checkpoint (``"scan"``, GPU and TPU), or a
Python loop over the compiled step
(``"python"``, CPU, where a convolution's gradient inside an XLA loop is 20-45x slower); both
train the same minibatches with the same keys. Every program is compiled ahead of time, once per
input shape (:mod:`jaxcl.train.programs`), and its compile time is reported apart from the
training time. A non-finite loss stops the run, naming where.

The loop touches nothing outside: it reports through ``on_event`` (:mod:`jaxcl.train.events`)
and resumes from and saves to a :class:`jaxcl.train.events.Checkpointer` that the edge hands it
(:class:`jaxcl.io.checkpoints.RunCheckpoints`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcl.learners.base import Learner
from jaxcl.train.events import (
    Checkpointer,
    EpochEnded,
    ExperienceEnded,
    ExperienceStarted,
    OnEvent,
)
from jaxcl.train.parallel import check_devices, data_mesh, local, over_seeds, replicate
from jaxcl.train.programs import LoopPrograms
from jaxcl.train.steps import (  # noqa: F401  (NonFiniteError: part of the loop's interface)
    NonFiniteError,
    check_finite,
    resolve_steps_in,
    thread_compile_s,
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
      transfer: ``(N,)``; ``[i]`` the evaluation of experience ``i`` just before it is trained
        (after ``begin_experience``): what the learner brings to a task it has not seen (for a
        classifier, chance when nothing carries over).
      evaluation: what ``matrix`` holds, the learner's ``evaluation``.
      time_per_experience: wall seconds per experience (start, training, end, evaluation); for
        seeds trained together (:func:`train_seeds`), the seconds of all of them.
      time_s: their sum.
      compile_s: seconds spent compiling, apart from ``time_s``.
      step_metrics: ``{name: (steps,) array}`` over the whole run for the learner's
        ``step_metrics``, plus ``experience``, the experience of each step.
      memory_bytes: bytes the learner keeps against forgetting at the end (32-bit).
      compilations: programs its :class:`jaxcl.train.programs.LoopPrograms` hold (with a shared
        ``cache``, those of earlier runs too). When every experience has the same shapes: with
        ``steps_in="python"`` 6 (the step of the first and of later experiences, the epoch's
        minibatch plan, start, end, evaluation), with ``"scan"`` 5 (the epoch of the first and
        of later experiences, start, end, evaluation); one more for a learner with a
        consolidation pass (EWC: its step, or its scan), one less for a learner whose first
        experience is no program of its own (``trains_first_apart`` False).
      state: the final learner state.
    """

    matrix: np.ndarray
    evaluation: str
    transfer: np.ndarray
    time_per_experience: list[float]
    time_s: float
    compile_s: float
    step_metrics: dict[str, np.ndarray]
    memory_bytes: int
    compilations: int = 0
    state: PyTree = None


class NearChanceWarning(UserWarning):
    """An experience's learning accuracy stayed near chance (:func:`near_chance_advice`)."""


def near_chance(accuracy: float, classes: int) -> bool:
    """Whether ``accuracy`` over ``classes`` classes is within a quarter of the way from chance
    ``1 / classes`` to 1: ``accuracy < c + (1 - c) / 4``."""
    chance = 1.0 / classes
    return accuracy < chance + (1.0 - chance) / 4


def near_chance_advice(learner: Learner, matrix: np.ndarray, classes: Sequence[int],
                       label: str = "") -> str:
    """One line when some experience's learning accuracy ``matrix[i, i]`` stayed near chance
    (:func:`near_chance`), with the learner's likely cause and remedy (its ``near_chance_hint``,
    when it has one); ``""`` when every experience learned."""
    stuck = [i for i in range(len(classes)) if near_chance(float(matrix[i, i]), classes[i])]
    if not stuck:
        return ""
    accs = ", ".join(f"{100 * matrix[i, i]:.0f} %" for i in stuck)
    hint = getattr(learner, "near_chance_hint", "")
    return (f"{label or learner.name}: experience{'s' * (len(stuck) > 1)} "
            f"{', '.join(map(str, stuck))} stayed near chance after training ({accs})"
            + (f"; {hint}" if hint else ""))


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


def _check_task_ids(learner: Learner, streams: Sequence[Sequence[Experience]]) -> None:
    """Refuse task ids the learner has no row for: inside the compiled step an index past the
    end of the embedding table (or of the heads) would be clamped to its last row, silently."""
    held = learner.num_tasks
    for stream in streams:
        bad = [int(e.task_id) for e in stream if not 0 <= int(e.task_id) < held]
        if bad:
            raise ValueError(
                f"the stream has task ids {bad} but {learner.name} holds {held} tasks (ids "
                f"0..{held - 1}: its task-embedding table or heads); build it for at least "
                f"{max(bad) + 1} tasks")


def _epochs_this_call(per_call: int | None, epoch: int, epochs: int, checkpoint_every: int
                      ) -> int:
    """How many epochs the next call of the minibatch loop runs from ``epoch`` on: the loop's
    ``epochs_per_call`` (``None``: all that are left), never past the next epoch checkpoint."""
    n = epochs - epoch if per_call is None else per_call
    if checkpoint_every:
        n = min(n, checkpoint_every - epoch % checkpoint_every)
    return min(n, epochs - epoch)


def train_stream(learner: Learner, stream: Sequence[Experience], *, key: jax.Array,
                 **options: Any) -> RunResult:
    """:func:`train_seeds` for one stream and one key."""
    return train_seeds(learner, [stream], keys=[key], **options)[0]


def train_seeds(
    learner: Learner,
    streams: Sequence[Sequence[Experience]],
    *,
    keys: Sequence[jax.Array],
    epochs: int,
    batch_size: int,
    eval_batch_size: int = 256,
    on_event: OnEvent | None = None,
    label: str = "",
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    devices: int = 1,
    checkpoints: Checkpointer | None = None,
    checkpoint_epochs: int = 0,
    run_name: str | None = None,
    steps_in: str = "auto",
    settings: dict[str, Any] | None = None,
    cache: MutableMapping | None = None,
) -> list[RunResult]:
    """Train ``learner`` on every experience of each stream in order, evaluating after each;
    stream ``s`` with ``keys[s]``, all seeds in one vmapped program.

    Args:
      learner: any :class:`jaxcl.learners.base.Learner`.
      streams: one stream per seed; they must agree in task ids and shapes (those of one
        benchmark under several seeds do).
      keys: one key per seed: ``(init key, run key) = split(key)``; experience ``i``'s keys are
        ``split(fold_in(run key, i), 3)`` (begin, end, training), epoch ``e``'s
        ``fold_in(training key, e)``.
      epochs, batch_size: epochs per experience and the training minibatch (the remainder of an
        epoch is dropped). eval_batch_size: what an evaluation call holds at once.
      on_event: called with every :mod:`jaxcl.train.events` event (progress bars, lines).
      label: the run's name in events.
      augment: ``augment(key, x)``, e.g. :func:`jaxcl.data.augment.random_crop_flip`, transforms
        every training minibatch on the device with a fresh key (evaluation sees the data
        unchanged).
      devices: ``> 1`` trains data-parallel on a mesh of that many devices: every minibatch is
        sharded along its batch axis, states and data replicated, one compiled step.
      checkpoints: a checkpointer (:class:`jaxcl.train.events.Checkpointer`): the run saves after
        every experience, and after every ``checkpoint_epochs`` epochs inside one when that is
        positive, and resumes from its latest checkpoint if that is of the same run: the same
        ``run_name`` (default: the learner's ``name``; pass its settings, e.g. the config's
        repr), seeds' keys, shapes, epochs, batch size and loop, and ``settings`` (any JSON-able
        description of what else can change a number, e.g. the experiment's options and the
        data's content hash; a refusal names each entry that differs).
      steps_in: the loop over an epoch's minibatches (:mod:`jaxcl.train.steps`): ``"python"``
        (a Python loop over one compiled step per phase), ``"scan"`` (one compiled
        ``jax.lax.scan`` over the epochs up to the next epoch checkpoint) or ``"auto"``, ``"python"`` on CPU and ``"scan"``
        elsewhere. Both train the same minibatches with the same keys.
      cache: a dict in which learners that compare equal share their compiled programs
        (:meth:`jaxcl.train.programs.LoopPrograms.cached`); ``None``: fresh programs.

    After the last epoch of an experience a learner with ``consolidate`` gets one more pass over
    the experience's minibatches (in the same loop, no augmentation) before ``end_experience``.
    Each experience is also evaluated once just after ``begin_experience``, before any training
    (``RunResult.transfer``). When a classifier's learning accuracy on some experience (the
    seeds' mean) stays near chance, the run ends with one :class:`NearChanceWarning` naming the
    experiences and the learner's likely cause and remedy (:func:`near_chance_advice`).
    A non-finite loss raises :class:`NonFiniteError` naming the experience, step and seed.
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
    _check_task_ids(learner, streams)
    for name, value in getattr(learner, "run_options", {}).items():
        given = {"epochs": epochs, "batch_size": batch_size}[name]
        if given != value:
            raise ValueError(f"{learner.name} was built for {name}={value!r} (e.g. its annealing "
                             f"schedule), got {name}={given!r}; build it for this run")
    steps_in = resolve_steps_in(steps_in)
    if not (isinstance(checkpoint_epochs, int) and checkpoint_epochs >= 0):
        raise ValueError(f"checkpoint_epochs must be an integer >= 0, got {checkpoint_epochs!r}")
    stream = _stack(streams)
    seeds = len(streams)
    names = tuple(learner.step_metrics)
    total_steps = epochs * sum(exp.x_train.shape[1] // batch_size for exp in stream)
    log_bytes = 4 * len(names) * seeds * total_steps
    if log_bytes > MAX_LOG_BYTES:
        raise ValueError(
            f"epochs={epochs} over this stream is {total_steps:,} steps per seed; their "
            f"per-step logs would take {log_bytes / 2**30:.1f} GiB (the limit is "
            f"{MAX_LOG_BYTES / 2**30:.0f} GiB): train fewer epochs or seeds")
    report = on_event or (lambda event: None)
    mesh = data_mesh(devices)
    keys = jnp.stack([jax.random.split(k) for k in keys])  # (S, 2): init key, run key
    init_keys, keys = keys[:, 0], keys[:, 1]

    start = time.perf_counter()
    state = jax.jit(over_seeds(learner.init, (0, 0), seeds))(
        init_keys, stream[0].x_train[:, :batch_size])
    state = replicate(state, mesh)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start

    programs = LoopPrograms.cached(cache, learner, augment=augment, mesh=mesh,
                                   batch_size=batch_size, seeds=seeds, steps_in=steps_in,
                                   eval_batch_size=eval_batch_size)
    compiled_at_start = thread_compile_s()
    put = functools.partial(replicate, mesh=mesh)
    fold_in = jax.vmap(jax.random.fold_in, in_axes=(0, None))  # every seed's key with one value
    # (seeds, epochs): every seed's key folded with each epoch's number
    epoch_keys = jax.jit(jax.vmap(jax.vmap(jax.random.fold_in, in_axes=(None, 0)),
                                  in_axes=(0, None)))
    first_apart = getattr(learner, "trains_first_apart", True)

    n = len(stream)
    steps = [exp.x_train.shape[1] // batch_size for exp in stream]
    offsets = np.cumsum([0] + [epochs * k for k in steps])
    record = {"state": state, "matrix": np.zeros((seeds, n, n)),
              "transfer": np.zeros((seeds, n)), "times": np.zeros(n),
              "logs": {name: np.zeros((seeds, offsets[-1]), np.float32) for name in names}}
    done, compiled_before_s = (0, 0), 0.0
    if checkpoints is not None:
        record, done, compiled_before_s = checkpoints.resume({
            "run": run_name or learner.name, "seeds": seeds,
            "shapes": [list(e.x_train.shape) for e in stream], "epochs": epochs,
            "batch_size": batch_size, "keys": np.asarray(jax.random.key_data(keys)).tolist(),
            "steps_in": steps_in, "settings": settings or {}}, record, epochs=epochs)

    def compiled_s():  # this run's compile seconds so far, the earlier part's included
        return compiled_before_s + thread_compile_s() - compiled_at_start

    state = record["state"]
    first_experience, first_epoch = done
    try:
        for i in range(first_experience, n):
            exp = stream[i]
            task = put(jnp.int32(exp.task_id))
            data = put(Batch(exp.x_train, exp.y_train))
            k_begin, k_end, k_train = jnp.unstack(
                jax.vmap(lambda k: jax.random.split(k, 3))(fold_in(keys, i)), axis=1)
            k_begin, k_end, k_train, k_pass = put((k_begin, k_end, k_train, fold_in(k_end, 1)))
            compile_before = thread_compile_s()
            start, earlier_s = time.perf_counter(), record["times"][i]
            resumed = i == first_experience and first_epoch > 0  # inside the experience
            epoch_from = first_epoch if resumed else 0
            if not resumed:
                state = programs.begin(state, task, k_begin)
                record["transfer"][:, i] = local(programs.evaluate(state, *put((
                    exp.x_test, exp.y_test, jnp.int32(exp.task_id), jnp.int32(i)))))
            report(ExperienceStarted(label, i, n, epochs * steps[i], epoch_from * steps[i]))
            e = epoch_from
            while e < epochs:
                span = _epochs_this_call(programs.loop.epochs_per_call, e, epochs,
                                      checkpoint_epochs if checkpoints is not None else 0)
                state, metrics = programs.loop("train", state, data, task,
                                               put(epoch_keys(k_train, jnp.arange(e, e + span))),
                                               first=first_apart and i == 0)
                metrics = local(metrics)
                check_finite(metrics["loss"], experience=i, epoch=e, steps_per_epoch=steps[i])
                at = offsets[i] + e * steps[i]
                for name in names:
                    record["logs"][name][:, at:at + span * steps[i]] = metrics[name]
                e += span
                report(EpochEnded(label, i, e - 1, span * steps[i], metrics))
                if (checkpoints is not None and checkpoint_epochs and e < epochs
                        and e % checkpoint_epochs == 0):
                    record["times"][i] = earlier_s + time.perf_counter() - start - (
                        thread_compile_s() - compile_before)
                    checkpoints.save(i, e - 1, {**record, "state": state}, compile_s=compiled_s())
            if "consolidate" in programs.steps:
                state, _ = programs.loop("consolidate", state, data, task, k_pass[:, None])
            state = programs.end(state, data, task, k_end)
            for j, other in enumerate(stream if learner.evaluates_unseen else stream[: i + 1]):
                record["matrix"][:, i, j] = local(programs.evaluate(state, *put((
                    other.x_test, other.y_test, jnp.int32(other.task_id), jnp.int32(j)))))
            record["times"][i] = earlier_s + time.perf_counter() - start - (
                thread_compile_s() - compile_before)
            if checkpoints is not None:
                checkpoints.save(i, epochs - 1, {**record, "state": state}, compile_s=compiled_s())
            last = slice(max(offsets[i], offsets[i + 1] - 10), offsets[i + 1])
            report(ExperienceEnded(label, i, record["matrix"][:, i].copy(), {
                name: record["logs"][name][:, last].mean(axis=1) for name in names}))
    except KeyboardInterrupt:  # Ctrl-C: stop at the edge, saying what is kept
        if checkpoints is None:
            raise
        raise checkpoints.interrupted() from None
    except NonFiniteError as error:  # the same: what is there to look at or resume from
        if checkpoints is None:
            raise
        raise NonFiniteError(f"{error}; {checkpoints.kept()}") from None
    finally:  # a NaN stop, too, leaves the checkpoints closed
        if checkpoints is not None:
            checkpoints.close()
    compile_s = init_s + compiled_s()
    experience = np.concatenate([np.full(epochs * k, i) for i, k in enumerate(steps)])
    if learner.evaluation == "accuracy":  # the seeds' mean: one line per run
        advice = near_chance_advice(learner, record["matrix"].mean(axis=0),
                                    [len(e.classes) for e in stream], label)
        if advice:
            warnings.warn(advice, NearChanceWarning, stacklevel=3)

    def seed(tree, s):
        return jax.tree.map(lambda a: a[s], tree)

    return [RunResult(
        matrix=record["matrix"][s],
        evaluation=learner.evaluation,
        transfer=record["transfer"][s],
        time_per_experience=[float(t) for t in record["times"]],
        time_s=float(record["times"].sum()),
        compile_s=compile_s,
        step_metrics={**{name: record["logs"][name][s] for name in names},
                      "experience": experience},
        memory_bytes=int(learner.memory_bytes(seed(state, s))),
        compilations=programs.compilations,
        state=seed(state, s),
    ) for s in range(seeds)]
