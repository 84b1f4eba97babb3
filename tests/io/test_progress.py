"""The edge's handlers of a run: the progress bar drawn from the loop's events, and checkpoints
that report through the caller's ``report`` and never print."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from support import read_events

from jaxcl.io.checkpoints import (
    CheckpointCorruptError,
    CheckpointMismatchError,
    RunCheckpoints,
    RunInterrupted,
)
from jaxcl.io.progress import ProgressBar
from jaxcl.train.events import EpochEnded, ExperienceEnded, ExperienceStarted


def _epoch(experience, epoch, losses):
    losses = np.asarray(losses, np.float32)  # (seeds, steps)
    return EpochEnded("HN-1", experience, epoch, losses.shape[1], {"loss": losses})


def _end(experience):
    return ExperienceEnded("HN-1", experience, np.zeros((2, 2)), {"loss": np.zeros(2)})


def test_progress_bar_counts_the_steps_of_each_experience():
    out = io.StringIO()
    bar = ProgressBar(True, file=out)
    bar(ExperienceStarted("HN-1", 0, 2, steps=8, done=0))
    assert (bar.bar.n, bar.bar.total, bar.bar.unit, bar.bar.leave) == (0, 8, "step", False)
    bar(_epoch(0, 0, [[9.0, 1.0, 2.0, 3.0], [9.0, 1.0, 2.0, 5.0]]))
    assert bar.bar.n == 4 and bar.bar.postfix == "loss=4.000"  # mean over seeds, last step
    bar(_epoch(0, 1, [[1.0] * 4, [2.0] * 4]))
    assert bar.bar.n == 8 and bar.bar.postfix == "loss=1.500"
    first = bar.bar
    bar(_end(0))
    assert bar.bar is None and first.n == 8 and "HN-1 experience 0" in out.getvalue()
    # A run resumed inside experience 1: the bar starts at the steps already taken.
    bar(ExperienceStarted("HN-1", 1, 2, steps=8, done=4))
    assert (bar.bar.n, bar.bar.total) == (4, 8)
    bar(_epoch(1, 1, [[0.5] * 4, [0.5] * 4]))
    assert bar.bar.n == 8
    bar(_end(1))
    assert bar.bar is None and "HN-1 experience 1" in out.getvalue()


def test_a_disabled_progress_bar_draws_nothing():
    out = io.StringIO()
    bar = ProgressBar(False, file=out)
    bar(ExperienceStarted("Naive", 0, 1, steps=4, done=0))
    bar(_epoch(0, 0, [[1.0, 2.0]]))
    bar(_end(0))
    assert out.getvalue() == ""


def test_checkpoints_report_through_report_and_never_print(tmp_path, capsys):
    record = {"state": {"w": jnp.arange(3.0)}, "times": np.zeros(2), "logs": np.zeros((1, 4))}
    fingerprint = {"strategy": "Naive", "seeds": [0]}

    fresh = RunCheckpoints(tmp_path / "run", name="Naive")  # no report: silent
    assert not (tmp_path / "run").exists()  # opened lazily, by resume
    with pytest.raises(RuntimeError, match="save before resume"):
        fresh.save(0, 0, record, compile_s=0.0)
    assert fresh.resume(fingerprint, record, epochs=2) == (record, (0, 0), 0.0)
    assert "interrupted before the first checkpoint; nothing is kept" in str(fresh.interrupted())
    fresh.save(0, 1, {**record, "times": np.array([1.5, 0.0])}, compile_s=2.0)
    fresh.save(1, 0, {**record, "times": np.array([1.5, 0.25])}, compile_s=3.0)
    interrupted = fresh.interrupted()
    assert isinstance(interrupted, RunInterrupted)
    assert "after experience 1, epoch 0" in str(interrupted)
    fresh.close()

    lines = []
    again = RunCheckpoints(tmp_path / "run", name="Naive", report=lines.append)
    restored, after, compile_s = again.resume(fingerprint, record, epochs=2)
    again.close()
    assert after == (1, 1) and compile_s == 3.0
    assert lines == [f"Naive resumed from {(tmp_path / 'run').absolute()}: after experience 1, "
                     "epoch 0"]
    assert isinstance(restored["times"], np.ndarray) and restored["times"].flags.writeable
    np.testing.assert_array_equal(restored["times"], [1.5, 0.25])
    np.testing.assert_array_equal(restored["state"]["w"], [0.0, 1.0, 2.0])

    with pytest.raises(CheckpointMismatchError, match=r"seeds: \[0\] in the checkpoint, \[1\] now"):
        RunCheckpoints(tmp_path / "run").resume({**fingerprint, "seeds": [1]}, record, epochs=2)

    # Damage the newest (position 2): the one before it restores, and the skip is reported.
    for f in (tmp_path / "run" / "2" / "tree").rglob("*"):
        if f.is_file() and f.stat().st_size > 64:
            f.write_bytes(f.read_bytes()[:16])
    lines.clear()
    damaged = RunCheckpoints(tmp_path / "run", name="Naive", report=lines.append)
    _, after, _ = damaged.resume(fingerprint, record, epochs=2)
    damaged.close()
    assert after == (1, 0) and len(lines) == 2
    assert lines[0].startswith(f"checkpoint 2 in {(tmp_path / 'run').absolute()} does not restore")
    assert lines[1].endswith("after experience 0, epoch 1")
    for f in (tmp_path / "run" / "1" / "tree").rglob("*"):
        if f.is_file() and f.stat().st_size > 64:
            f.write_bytes(f.read_bytes()[:16])
    silent = RunCheckpoints(tmp_path / "run")
    with pytest.raises(CheckpointCorruptError, match="none of the 2 checkpoints"):
        silent.resume(fingerprint, record, epochs=2)
    silent.close()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("evaluation", ["accuracy", "mse"])
def test_one_event_writer_for_every_result(tmp_path, evaluation):
    """Every logged metric but ``experience`` as ``train/<name>``; the matrix per its evaluation
    (accuracy: ``j <= i``; MSE: every task after each), its mean over ``j <= i``."""
    from types import SimpleNamespace

    from jaxcl.io.event_logs import write_events

    matrix = np.array([[0.5, 0.25], [0.75, 1.0]])
    result = SimpleNamespace(
        matrix=matrix, evaluation=evaluation, time_per_experience=[1.0, 2.0], compile_s=3.0,
        step_metrics={"experience": np.array([0, 0, 1]), "loss": np.array([3.0, 2.0, 1.0]),
                      "nll": np.array([0.5, 0.25, 0.125])})
    events = read_events(write_events(tmp_path / "seed_0", result))
    metric, mean = ("accuracy", "aca") if evaluation == "accuracy" else ("mse", "mean_mse")
    assert events["train/loss"] == [(0, 3.0), (1, 2.0), (2, 1.0)]
    assert events["train/nll"] == [(0, 0.5), (1, 0.25), (2, 0.125)]
    assert events[f"eval/{metric}_exp_0"] == [(0, 0.5), (1, 0.75)]
    assert events[f"eval/{metric}_exp_1"] == ([(1, 1.0)] if evaluation == "accuracy"
                                              else [(0, 0.25), (1, 1.0)])
    assert events[f"eval/{mean}"] == [(0, 0.5), (1, 0.875)]
    assert events["time/experience_s"] == [(0, 1.0), (1, 2.0)] and events["time/compile_s"] == [
        (0, 3.0)]
    assert not any("experience" in tag for tag in events if tag.startswith("train/"))
