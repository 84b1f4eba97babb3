"""The Hypernet-SDE-Flow study trains through the one loop of every learner (issue 16).

Its learner (:class:`jaxcl.learners.sde_flow.SdeFlowLearner`) goes through
:func:`jaxcl.train.loop.train_seeds` as the strategies do: two seeds vmapped in one program equal
the two seeds run alone, a run killed after a task resumes from its checkpoint to bitwise-equal
numbers, and variants that differ only in their loss weights share one set of compiled programs
(the weights are traced, not baked in). The study's other scale tests (a run stopped inside a
task, the NaN stop, the experiment's run folder and its resume) are in ``tests/train/test_sde_flow_run.py``,
which shares this module's compiled programs.
"""

import dataclasses
import importlib.util

import jax
import numpy as np
import pytest

from jaxcl.data.points import point_tasks
from jaxcl.io.checkpoints import RunCheckpoints
from jaxcl.learners.sde_flow import STEP_METRICS, SdeFlowLearner, SdeFlowState
from jaxcl.learners.sde_flow_variant import LossWeights, Variant
from jaxcl.models.sde_flow import SdeFlowConfig
from jaxcl.train import loop
from jaxcl.train.events import ExperienceEnded, ExperienceStarted
from jaxcl.train.loop import RunResult, train_seeds, train_stream
from jaxcl.train.steps import resolve_steps_in

# The repair (frozen flow and SDEs, first-order look-ahead): its state holds everything a variant
# can hold (the hypernetwork, AdamW, the regulariser's targets, the memory, the weights).
TINY = Variant(model=SdeFlowConfig(hidden=(8,), flow_layers=2, flow_hidden=(8,), sde_hidden=(8,),
                                   sde_steps=2),
               embedding_dim=4, hnet_hidden=(8,), epochs=2, batch_size=10, memory_per_task=4,
               shared="frozen", order=1)
NUM_TASKS, TRAIN_PER_TASK = 3, 20
RUN = {"epochs": TINY.epochs, "batch_size": TINY.batch_size}
KEYS = (jax.random.key(5), jax.random.key(6))
# The SDE learner's programs: the step (one for every experience: trains_first_apart is False),
# start, end, evaluation, and on CPU (the "python" loop) the epoch's minibatch plan.
PROGRAMS = {"python": 5, "scan": 4}[resolve_steps_in("auto")]
CACHES: dict[int, dict] = {1: {}, 2: {}}
"""Compiled programs by number of seeds, for the learners of TINY's shapes only (whatever its
weights): shared by the tests here and in ``tests/train/test_sde_flow_run.py``, so each compiles once."""


def learner(variant: Variant = TINY) -> SdeFlowLearner:
    return SdeFlowLearner.build(variant, num_tasks=NUM_TASKS, train_per_task=TRAIN_PER_TASK)


def tasks(seed: int):
    return point_tasks(jax.random.key(seed), num_tasks=NUM_TASKS, train_per_task=TRAIN_PER_TASK,
                       test_per_task=10)


def run(streams, keys=KEYS, variant: Variant = TINY, **options) -> list[RunResult]:
    """``train_seeds`` of ``variant`` over ``streams``, with the shared programs."""
    return train_seeds(learner(variant), streams, keys=list(keys)[: len(streams)],
                       cache=CACHES[len(streams)], **{**RUN, **options})


def assert_same_run(a: RunResult, b: RunResult) -> None:
    """Bitwise: the matrix, every step metric and the final state (``psi`` and the rest)."""
    np.testing.assert_array_equal(a.matrix, b.matrix)
    for name in (*STEP_METRICS, "experience"):
        np.testing.assert_array_equal(a.step_metrics[name], b.step_metrics[name], err_msg=name)
    jax.tree_util.tree_map_with_path(
        lambda path, x, y: np.testing.assert_array_equal(
            np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path)), a.state, b.state)


@pytest.fixture(scope="module")
def streams():
    return [tasks(0), tasks(1)]


@pytest.fixture(scope="module")
def plain(streams):
    """Both seeds in one vmapped run, uninterrupted."""
    return run(streams)


def test_two_seeds_vmapped_equal_the_one_seed_runs(streams, plain):
    assert all(isinstance(r, RunResult) and isinstance(r.state, SdeFlowState) for r in plain)
    assert plain[0].evaluation == "mse" and plain[0].compilations == PROGRAMS
    for seed, (stream, key, joint) in enumerate(zip(streams, KEYS, plain)):
        alone = train_stream(learner(), stream, key=key, cache=CACHES[1], **RUN)
        assert alone.compilations == PROGRAMS
        # Every task evaluated after every task (the study's MSE matrix), all positive.
        assert joint.matrix.shape == (NUM_TASKS, NUM_TASKS) and np.all(joint.matrix > 0)
        np.testing.assert_allclose(joint.matrix, alone.matrix, rtol=1e-5, err_msg=f"seed {seed}")
        for name in STEP_METRICS:
            np.testing.assert_allclose(joint.step_metrics[name], alone.step_metrics[name],
                                       rtol=1e-4, atol=1e-6, err_msg=f"seed {seed}: {name}")
        for a, b in zip(jax.tree.leaves(joint.state.psi), jax.tree.leaves(alone.state.psi)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=f"seed {seed}")
        assert len(joint.step_metrics["loss"]) == NUM_TASKS * TINY.epochs * (
            TRAIN_PER_TASK // TINY.batch_size)
    # Two seeds, two runs: the vmap did not train one seed twice.
    assert not np.allclose(plain[0].matrix, plain[1].matrix)


def test_the_loop_keeps_the_frozen_parts_frozen_after_task_0(streams):
    """TINY freezes the flow and both SDEs after task 0: through the loop (the task id traced)
    they end where task 0 left them, while the hypernetwork's own weights train on."""
    kw = {"key": KEYS[0], "cache": CACHES[1], **RUN}
    after0 = train_stream(learner(), streams[0][:1], **kw).state.psi["params"]
    after2 = train_stream(learner(), streams[0], **kw).state.psi["params"]
    start = learner().init(jax.random.split(KEYS[0])[0], streams[0][0].x_train).psi["params"]
    shared = [name for name in after0 if name.startswith("shared:")]
    assert shared and len(shared) < len(after0)
    for name in shared:
        assert not all(np.array_equal(a, b) for a, b in zip(  # task 0 trains them
            jax.tree.leaves(start[name]), jax.tree.leaves(after0[name]))), name
        for a, b in zip(jax.tree.leaves(after0[name]), jax.tree.leaves(after2[name])):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert not np.allclose(after0["embedding"], after2["embedding"])


class Killed(Exception):
    """Stands for a kill of the process (a custom exception: nothing catches it on the way)."""


def test_a_run_killed_after_task_1_resumes_to_bitwise_equal_numbers(streams, plain, tmp_path):
    folder = tmp_path / "checkpoints"

    seen = []

    def kill_after_task_1(event):
        seen.append(event)
        if isinstance(event, ExperienceEnded) and event.experience == 1:
            raise Killed

    with pytest.raises(Killed):
        run(streams, checkpoints=RunCheckpoints(folder), on_event=kill_after_task_1)
    started = [e for e in seen if isinstance(e, ExperienceStarted)]
    assert [(e.experience, e.experiences) for e in started] == [(0, NUM_TASKS), (1, NUM_TASKS)]
    # Checkpoints after task 0 and task 1 (position: task * epochs + last epoch).
    assert sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) == [1, 3]
    events = []
    resumed = run(streams, checkpoints=RunCheckpoints(folder), on_event=events.append)
    # Only task 2 trained again: tasks 0 and 1 came from the checkpoint.
    assert [e.experience for e in events if isinstance(e, ExperienceStarted)] == [2]
    for a, b in zip(plain, resumed):
        assert_same_run(a, b)
    assert resumed[0].compilations == plain[0].compilations == PROGRAMS  # nothing new compiled


def test_the_study_and_the_strategies_train_through_the_one_loop(streams, plain, tmp_path,
                                                                 monkeypatch):
    from support import build, tiny_stream

    from experiments import runner
    from experiments import sde_flow_forgetting as study
    from jaxcl.learners import sde_flow

    # One function for both: the strategies' experiments and the study call the runner's, which
    # calls the loop's.
    assert study.train_learners is runner.train_learners
    assert runner.train_seeds is loop.train_seeds
    # The study's own loop is gone.
    for old in ("run_seeds", "run_tasks", "train_task", "Programs", "StudyRun"):
        assert not hasattr(sde_flow, old), old
    assert importlib.util.find_spec("jaxcl.sde_flow_cl") is None

    # A strategy and the SDE learner through the same function, to the same kind of result.
    stream = tiny_stream(num_tasks=2)
    strategy = loop.train_seeds(build("Naive", stream), [stream], keys=[jax.random.key(0)],
                                epochs=1, batch_size=16)[0]
    for result, evaluation in ((strategy, "accuracy"), (plain[0], "mse")):
        assert type(result) is RunResult and result.evaluation == evaluation
        assert result.matrix.shape == (len(result.time_per_experience),) * 2

    # The experiment itself hands its learners to that function.
    seen = []

    def spy(learner, streams, **options):
        results = loop.train_seeds(learner, streams, **options)
        seen.append((learner, results))
        return results

    monkeypatch.setattr(runner, "train_seeds", spy)
    study.main(["--quick", "--variants", "mlp", "--epochs", "1", "--out", str(tmp_path / "study")])
    assert [learner.variant.model.model for learner, _ in seen] == ["mlp"]
    for learner, results in seen:
        assert isinstance(learner, SdeFlowLearner)
        assert all(type(r) is RunResult and r.matrix.shape == (5, 5) for r in results)


def test_variants_differing_only_in_loss_weights_share_programs_yet_differ(streams):
    """The loss weights live in the state, traced: the ablation compiles nothing new, and its
    numbers are its own (weights baked into the first program would give the first's numbers)."""
    cache = CACHES[1]
    base = train_stream(learner(), streams[0], key=KEYS[0], cache=cache, **RUN)
    assert len(cache) == 1 and base.compilations == PROGRAMS
    ablation = dataclasses.replace(TINY, weights=LossWeights(replay=0.0, separation=0.0,
                                                             coef=10.0))
    assert learner(ablation) == learner()  # equal learners: one cache entry
    other = train_stream(learner(ablation), streams[0], key=KEYS[0], cache=cache, **RUN)
    assert len(cache) == 1 and other.compilations == PROGRAMS
    np.testing.assert_array_equal(other.state.weights.coef, 10.0)
    np.testing.assert_array_equal(other.state.weights.replay, 0.0)
    # Task 0 has no earlier task to replay or regularise: the same row 0; then they part.
    np.testing.assert_allclose(other.matrix[0], base.matrix[0], rtol=1e-6)
    assert not np.allclose(other.matrix[1:], base.matrix[1:], rtol=1e-4)
    assert not np.allclose(other.step_metrics["loss"], base.step_metrics["loss"], rtol=1e-4)
    # And the programs give the first variant its own numbers again, bitwise.
    again = train_stream(learner(), streams[0], key=KEYS[0], cache=cache, **RUN)
    assert_same_run(again, base)


@pytest.mark.parametrize("option", ["epochs", "batch_size"])
def test_a_run_of_another_length_than_the_learner_was_built_for_is_refused(option, monkeypatch):
    """The annealing's ``K`` comes from the variant's epochs and minibatch: the loop refuses a
    run of other ones before anything compiles."""
    monkeypatch.setattr(jax, "jit", None)  # any compilation would fail with a TypeError
    with pytest.raises(ValueError, match=rf"built for {option}={RUN[option]} \(.*\), got "
                                         rf"{option}={RUN[option] - 1};"):
        train_seeds(learner(), [tasks(0)], keys=[KEYS[0]], **{**RUN, option: RUN[option] - 1})
