"""What several test modules share: a tiny image stream, strategies built on it, a loop
interrupted at a chosen epoch, and the scalars of TensorBoard event files.

Imported by name (``from support import ...``): pytest puts ``tests/`` on the path for its
``conftest.py``.
"""

import contextlib
import pathlib

import pytest

from jaxcl.data import load_benchmark
from jaxcl.learners import StrategyConfig, build_strategy

ROOT = pathlib.Path(__file__).resolve().parents[1]
MLP = {"model": "mlp", "hidden": (16,), "batch_size": 16}


def tiny_stream(seed=0, num_tasks=3):
    return load_benchmark("synthetic", seed=seed, num_tasks=num_tasks, classes_per_task=2,
                          image_size=6, train_per_class=32, test_per_class=16, noise=1.5)


def build(label, stream, **settings):
    config = StrategyConfig.from_label(label, **{**MLP, **settings})
    return build_strategy(config, num_tasks=len(stream), classes_per_task=2,
                          sample_x=stream[0].x_train[:16])


@contextlib.contextmanager
def interrupted_at(monkeypatch, module, *, experience, epoch):
    """Inside the block, ``module``'s loop is interrupted when it checks the loss of
    (``experience``, ``epoch``): after the checkpoint of the epoch before, as by a kill. The
    block must be interrupted; after it the loop runs as before."""
    checked = module.check_finite

    def crash(loss, **where):
        if (where["experience"], where["epoch"]) == (experience, epoch):
            raise KeyboardInterrupt
        checked(loss, **where)

    monkeypatch.setattr(module, "check_finite", crash)
    with pytest.raises(KeyboardInterrupt):
        yield
    monkeypatch.setattr(module, "check_finite", checked)


def read_events(folder: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the TFRecord event files in ``folder``: ``{tag: [(step, value), ...]}``."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in folder.glob("events.out.tfevents.*"):
        data, at = path.read_bytes(), 0
        while at < len(data):  # record: length (8), its CRC (4), payload, its CRC (4)
            length = int.from_bytes(data[at:at + 8], "little")
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 16 + length
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return {tag: sorted(values) for tag, values in out.items()}
