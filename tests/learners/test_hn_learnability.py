"""HN-k's new-task options and diagnostics: per-task learning rate, regulariser warm-up, the shift
and share metrics, presets, and the loop's transfer evaluation and near-chance warning."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.core.hypernet import HypernetConfig, task_param_labels, task_private
from jaxcl.core.regularizers import previous_tasks
from jaxcl.learners import HN_PRESETS, StrategyConfig, build_strategy
from jaxcl.core.hypernet import hypernet_optimizer
from jaxcl.learners.hypernetwork import PartialHypernet
from jaxcl.models import MLP
from jaxcl.train.loop import (
    NearChanceWarning,
    near_chance,
    near_chance_advice,
    train_stream,
)
from jaxcl.types import Batch, Experience

X = jnp.zeros((8, 5))


def _learner(**kwargs):
    config = HypernetConfig(num_tasks=4, hidden=(12, 8), embedding_dim=6, chunk_dim=4,
                            init=kwargs.pop("init", "torch"),
                            new_task_init=kwargs.pop("new_task_init", "copy_prev"))
    return PartialHypernet.build(MLP(2, (6,)), MLP(0, (7,), head=False), X, hnet_config=config,
                                 **{"order": 1, "coef": 1.0, **kwargs})


def _batch(key):
    return Batch(jax.random.normal(key, (8, 5)), jnp.arange(8) % 2)


def test_task_labels_mark_the_embedding_and_tables_only(key):
    learner = _learner()
    psi = learner.init(key, X).psi
    labels = task_param_labels(psi)
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): v
            for path, v in jax.tree_util.tree_flatten_with_path(labels)[0]}
    task = sorted(p for p, v in flat.items() if v == "task")
    assert task == ["params/embedding", "params/table:classifier.bias/table",
                    "params/table:dense0.bias/table"]
    assert all(v == "shared" for p, v in flat.items() if p not in task)
    phi = learner.init(key, X).phi
    assert set(jax.tree.leaves(task_param_labels(phi))) == {"shared"}


def test_task_lr_scale_gives_the_task_rows_their_own_rate(key):
    """Adam's first update is ``lr * sign(g)`` per coordinate: the embedding row and the table
    rows move by ``scale * lr``, the trunk and heads by ``lr``, rows of other tasks not at all."""
    lr, scale = 1e-2, 10.0
    learner = _learner(learning_rate=lr, task_lr_scale=scale)
    state = learner.init(key, X)
    new, _ = jax.jit(learner.train_step, static_argnames="first")(
        state, _batch(key), jnp.int32(0), key, first=True)
    before, after = state.psi["params"], new.psi["params"]
    moved = lambda a, b: float(jnp.abs(a - b).max())  # noqa: E731
    np.testing.assert_allclose(moved(after["embedding"][0], before["embedding"][0]), scale * lr,
                               rtol=1e-4)
    assert moved(after["embedding"][1:], before["embedding"][1:]) == 0.0
    table = "table:classifier.bias"
    np.testing.assert_allclose(moved(after[table]["table"][0], before[table]["table"][0]),
                               scale * lr, rtol=1e-4)
    np.testing.assert_allclose(moved(after["trunk_0"]["kernel"], before["trunk_0"]["kernel"]), lr,
                               rtol=1e-4)
    np.testing.assert_allclose(moved(new.phi["params"]["dense0"]["kernel"],
                                     state.phi["params"]["dense0"]["kernel"]), lr, rtol=1e-4)
    with pytest.raises(ValueError, match="task_lr_scale must be > 0, got 0.0"):
        hypernet_optimizer(1e-3, 0.0)


def test_reg_warmup_switches_the_regulariser_off_then_on(key):
    """The first ``floor(reg_warmup * n_prev)`` steps of a later experience (``n_prev`` the steps
    of the one before) take exactly the gradient of the learner with ``coef = 0``; from then on
    the regulariser counts."""
    warm, plain = _learner(reg_warmup=0.3), _learner(coef=0.0)
    state = warm.init(key, X)
    for s in range(7):  # the first experience: 7 steps, so the warm-up is floor(2.1) = 2 steps
        state, _ = warm.train_step(state, _batch(jax.random.fold_in(key, 100 + s)), jnp.int32(0),
                                   key, first=True)
    state = warm.end_experience(state._replace(psi=jax.tree.map(lambda p: p + 0.05, state.psi)),
                                None, jnp.int32(0), key)
    assert int(state.prev_steps) == 7
    state = warm.begin_experience(state, jnp.int32(1), key)
    a = b = state
    shares = []
    for s in range(3):
        k = jax.random.fold_in(key, s)
        a, m = warm.train_step(a, _batch(k), jnp.int32(1), k, first=False)
        if s < 2:
            b, _ = plain.train_step(b, _batch(k), jnp.int32(1), k, first=False)
            jax.tree.map(np.testing.assert_array_equal, a.psi, b.psi)
        shares.append(float(m["reg_share"]))
    assert shares[:2] == [0.0, 0.0] and shares[2] > 0.0
    assert int(a.step) == 3
    assert int(warm.begin_experience(a, jnp.int32(2), key).step) == 0
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=f"reg_warmup must be a fraction in \\[0, 1\\), got {bad}"):
            _learner(reg_warmup=bad)


def test_shifts_measure_the_task_rows_from_where_the_experience_began(key):
    learner = _learner(new_task_init="random", task_lr_scale=5.0)
    state = learner.init(key, X)
    state = learner.begin_experience(learner.end_experience(state, None, jnp.int32(0), key),
                                     jnp.int32(1), key)
    start = task_private(learner.hnet, state.psi, 1)
    ids, mask = previous_tasks(jnp.int32(1), 4, 2, key)
    new, m = learner.phase_step(state, _batch(key), jnp.int32(1), ids, mask, first=False)
    now = new.psi["params"]
    np.testing.assert_allclose(float(m["embedding_shift"]),
                               float(jnp.linalg.norm(now["embedding"][1] - start["embedding"])),
                               rtol=1e-5)
    rows = [now[name]["table"][1] - start[name] for name in start if name != "embedding"]
    np.testing.assert_allclose(float(m["table_shift"]),
                               float(jnp.sqrt(sum(jnp.sum(r ** 2) for r in rows))), rtol=1e-5)
    assert float(m["embedding_shift"]) > 0


def test_presets_and_defaults():
    assert {k: getattr(StrategyConfig(), k) for k in HN_PRESETS["jaxcl"]} == HN_PRESETS["jaxcl"]
    paper = StrategyConfig.from_label("HN-2", preset="paper")
    assert {k: getattr(paper, k) for k in HN_PRESETS["paper"]} == HN_PRESETS["paper"]
    assert HN_PRESETS["paper"] == {"new_task_init": "copy_prev", "hnet_init": "torch",
                                   "task_lr_scale": 1.0, "reg_warmup": 0.0}
    mixed = StrategyConfig.from_label("HN-2", preset="paper", reg_warmup=0.5)
    assert (mixed.new_task_init, mixed.reg_warmup) == ("copy_prev", 0.5)
    with pytest.raises(ValueError, match="preset='fast' is not one of"):
        StrategyConfig.from_label("HN-2", preset="fast")
    with pytest.raises(ValueError, match="hnet_init='he' is not one of"):
        StrategyConfig(hnet_init="he")
    learner = build_strategy(dataclasses.replace(
        paper, model="mlp", hidden=(8, 8)), num_tasks=3, classes_per_task=2, sample_x=X)
    assert learner.hnet.config.new_task_init == "copy_prev"
    assert learner.hnet.config.init == "torch"


def test_near_chance_rule_and_advice():
    assert near_chance(0.55, 2) and not near_chance(0.7, 2)
    assert near_chance(0.3, 10) and not near_chance(0.35, 10)
    learner = _learner()
    matrix = np.array([[0.99, 0.0], [0.98, 0.51]])
    advice = near_chance_advice(learner, matrix, [2, 2], "HN-1")
    assert advice.startswith("HN-1: experience 1 stayed near chance after training (51 %)")
    assert "new_task_init='random'" in advice and "\n" not in advice
    assert near_chance_advice(learner, np.eye(2), [2, 2]) == ""
    assert "reg_warmup" in near_chance_advice(_learner(new_task_init="random"), matrix, [2, 2])


class Counter:
    """A learner whose state counts its training steps and whose evaluation is that count."""

    name, num_tasks, evaluation, evaluates_unseen = "counter", 3, "accuracy", False
    step_metrics = ("loss", "accuracy", "cosine", "grad_rel_diff")

    def init(self, key, x):
        return jnp.zeros((), jnp.float32)

    def begin_experience(self, state, task_id, key):
        return state + 100.0

    def train_step(self, state, batch, task_id, key, *, first):
        zero = jnp.zeros(())
        return state + 1.0, {"loss": zero, "accuracy": zero, "cosine": zero,
                             "grad_rel_diff": zero}

    def end_experience(self, state, data, task_id, key):
        return state

    def evaluate(self, state, x, y, task_id, key, *, batch_size):
        return state / 1000.0

    def memory_bytes(self, state):
        return 0


def _stream(n=3, per=8):
    x, y = jnp.zeros((per, 2)), jnp.arange(per) % 2
    return [Experience(i, (2 * i, 2 * i + 1), x, y, x, y) for i in range(n)]


def test_transfer_is_evaluated_after_begin_and_before_training():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NearChanceWarning)
        result = train_stream(Counter(), _stream(), key=jax.random.key(0), epochs=2,
                              batch_size=4)
    # Experience i begins (+100) after 4 steps in each earlier experience.
    np.testing.assert_allclose(result.transfer, [0.1, 0.204, 0.308], rtol=1e-6)
    np.testing.assert_allclose(np.diag(result.matrix), [0.104, 0.208, 0.312], rtol=1e-6)


def test_a_run_that_stays_at_chance_says_so_once():
    with pytest.warns(NearChanceWarning, match=r"counter: experiences 0, 1, 2 stayed near chance"
                      ) as caught:
        train_stream(Counter(), _stream(), key=jax.random.key(0), epochs=1, batch_size=4)
    assert len(caught) == 1
