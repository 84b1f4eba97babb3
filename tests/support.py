"""What several test modules share: a tiny image stream, strategies built on it, a loop
interrupted at a chosen epoch, the scalars of TensorBoard event files, and the look-ahead
objective of the partial-hypernetwork learner written out for finite differences.

Imported by name (``from support import ...``): pytest puts ``tests/`` on the path for its
``conftest.py``.
"""

import contextlib
import pathlib

import jax
import jax.numpy as jnp
import optax
import pytest

from jaxcl.core.regularizers import output_regularizer, task_outputs
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


def hand_cross_entropy(logits, labels):
    """``mean_i (log sum_c exp z_ic - z_{i, y_i})``, written out."""
    picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


def f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def later_state(learner, key, x):
    """``(state, frozen, psi)``: a float64 later-experience state of a
    :class:`jaxcl.PartialHypernet` whose ``psi`` is ``frozen`` (``psi_prev``, H*) moved by 0.01,
    so that the regulariser is not at its minimum."""

    @jax.jit  # one program, not one per initialiser and leaf
    def make(key, x):
        start = learner.init(key, x)
        frozen = f64(start.psi)
        psi = jax.tree.map(lambda p: p + 0.01, frozen)
        state = start._replace(psi=psi, psi_prev=frozen,
                               opt_state={"psi": learner.optimizer.init(psi), "phi": ()})
        return state, frozen, psi

    return make(key, x)


def lookahead_objective(learner, frozen, features, y, task, ids, mask, *, beta, coef,
                        inner_at=None):
    """``J(psi) = L_CE(psi) + coef L_H(psi - beta grad L_CE(q))`` of a
    :class:`jaxcl.PartialHypernet` on ``features`` (``g_phi(x)``), written out over every
    previous-task slot, compiled. ``q = psi`` (``inner_at=None``): order 2's objective. ``q`` held
    at ``inner_at``: its gradient there is order 1's look-ahead gradient."""

    def ce(p):
        omega = learner.hnet.apply(p, task)
        return hand_cross_entropy(learner.upper.apply({"params": omega}, features), y)

    @jax.jit
    def objective(p):
        inner = jax.grad(ce)(p if inner_at is None else inner_at)
        virtual = jax.tree.map(lambda a, g: a - beta * g, p, inner)
        targets = task_outputs(learner.hnet, frozen, ids)
        return ce(p) + coef * output_regularizer(learner.hnet, virtual, targets, ids, mask)

    return objective


def central_difference(f, params, direction, eps=1e-6):
    """``(f(params + eps v) - f(params - eps v)) / (2 eps)``: the derivative of ``f`` along ``v``."""
    shifted = [f(optax.tree.add_scale(params, s * eps, direction)) for s in (1, -1)]
    return (shifted[0] - shifted[1]) / (2 * eps)
