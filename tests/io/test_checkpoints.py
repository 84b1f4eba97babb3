"""A Ctrl-C while a checkpoint is written stops the run once it is written, never lost.

Orbax's ``CheckpointManager.wait_until_finished`` catches ``BaseException`` (orbax-checkpoint's
``checkpoint_manager.py``): a ``KeyboardInterrupt`` raised while it waits would be logged and
swallowed, the checkpoint being written deleted, and the run would go on as if never
interrupted. :class:`jaxcl.io.checkpoints.RunCheckpoints` holds the signal until the checkpoint
is on disk, then raises.
"""

import os
import signal

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.io.checkpoints import RunCheckpoints

RECORD = {"state": {"w": jnp.arange(3.0)}, "times": np.zeros(2)}


def test_a_sigint_during_a_save_is_raised_after_the_checkpoint_is_written(tmp_path):
    # A process started in the background of a shell ignores SIGINT from birth; the test needs
    # Python's own handler, and puts back what it found.
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupted_save(tmp_path)
    finally:
        signal.signal(signal.SIGINT, found)


def _interrupted_save(tmp_path):
    saver = RunCheckpoints(tmp_path / "run")
    saver.resume({"run": "x"}, RECORD, epochs=2)
    manager = saver._open()
    save = manager.save

    def interrupted_save(*args, **kwargs):  # the signal comes in the middle of the save
        os.kill(os.getpid(), signal.SIGINT)
        return save(*args, **kwargs)

    manager.save = interrupted_save
    with pytest.raises(KeyboardInterrupt):
        saver.save(0, 1, RECORD, compile_s=1.0)
    manager.save = save
    saver.close()
    assert saver.saved == (0, 1) and "after experience 0, epoch 1" in str(saver.interrupted())
    restored, after, _ = RunCheckpoints(tmp_path / "run").resume({"run": "x"}, RECORD, epochs=2)
    assert after == (1, 0)  # the checkpoint of (0, 1) is there
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_a_minimum_interval_skips_writes_until_it_has_passed(tmp_path, monkeypatch):
    import jaxcl.io.checkpoints as checkpoints

    clock = [100.0]
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: clock[0])
    saver = RunCheckpoints(tmp_path / "run", min_interval_s=60.0)
    saver.resume({"run": "x"}, RECORD, epochs=1)
    clock[0] += 59.0
    saver.save(0, 0, RECORD, compile_s=0.0)  # 59 s after the start: not written
    assert saver.saved is None and "interrupted before the first checkpoint" in str(
        saver.interrupted())
    clock[0] += 1.0
    saver.save(1, 0, RECORD, compile_s=0.0)  # 60 s: written, and the interval starts again
    clock[0] += 30.0
    saver.save(2, 0, RECORD, compile_s=0.0)
    saver.close()
    assert saver.saved == (1, 0)
    _, after, _ = RunCheckpoints(tmp_path / "run").resume({"run": "x"}, RECORD, epochs=1)
    assert after == (2, 0)
    with pytest.raises(ValueError, match="min_interval_s must be >= 0, got -1"):
        RunCheckpoints(tmp_path / "other", min_interval_s=-1)
