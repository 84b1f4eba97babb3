"""The partial-hypernetwork step: compiles once per phase, freezes phi, trains psi with look-ahead."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcl import Batch, HypernetConfig, PartialHypernet
from jaxcl.lookahead import lookahead_grad
from jaxcl.models import MLP, split_resnet18
from jaxcl.regularizers import output_regularizer, previous_tasks, task_outputs

NUM_TASKS, MAX_PREV = 6, 3


def _batch(key, shape=(16, 8, 8, 3), classes=3):
    kx, ky = jax.random.split(key)
    return Batch(jax.random.normal(kx, shape), jax.random.randint(ky, (shape[0],), 0, classes))


def _learner(k, order, **kwargs):
    split = split_resnet18(k, num_classes=3, nf=4)
    x = jnp.zeros((16, 8, 8, 3))
    learner = PartialHypernet.build(
        split.stateless, split.stateful, x,
        hnet_config=HypernetConfig(num_tasks=NUM_TASKS, hidden=(12, 8), embedding_dim=6, chunk_dim=4),
        order=order, **kwargs,
    )
    return learner, x


def _run(learner, state, step, tasks, steps_per_task, key):
    """Train ``tasks`` in sequence, several steps each; return the state and last metrics."""
    metrics = None
    for t in tasks:
        for i in range(steps_per_task):
            k_batch, k_prev = jax.random.split(jax.random.fold_in(key, 100 * t + i))
            ids, mask = previous_tasks(jnp.int32(t), NUM_TASKS, MAX_PREV, k_prev)
            state, metrics = step(state, _batch(k_batch), jnp.int32(t), ids, mask,
                                  train_stateful=(t == 0))
        state = learner.end_experience(state)
    return state, metrics


@pytest.mark.parametrize("k, order", [(4, 2), (3, 1)])
def test_step_compiles_once_per_phase_for_a_whole_run(k, order, key):
    learner, x = _learner(k, order)
    state = learner.init(key, x)
    step = learner.make_step()
    state, metrics = _run(learner, state, step, range(5), 2, key)
    # Five tasks, two phases: the first experience and every later one share two programs.
    assert step._cache_size() == 2
    assert all(bool(jnp.isfinite(v)) for v in metrics.values())
    assert float(metrics["reg_loss"]) > 0


def _count_primitive(jaxpr, name):
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == name
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            count += _count_primitive(sub, name)
    return count


def test_no_gradient_flows_through_the_frozen_part(key):
    # k = 4: g_phi holds every conv (20 of them), h_omega only the classifier.
    learner, x = _learner(4, 2)
    state = learner.init(key, x)
    ids, mask = previous_tasks(jnp.int32(2), NUM_TASKS, MAX_PREV, key)

    def convs(train_stateful):
        jaxpr = jax.make_jaxpr(
            lambda s, b: learner.step(s, b, jnp.int32(2), ids, mask, train_stateful=train_stateful)
        )(state, _batch(key))
        return _count_primitive(jaxpr.jaxpr, "conv_general_dilated")

    # phi trained: 20 forward, 20 kernel-gradient and 19 input-gradient convs (the images need none).
    assert convs(True) == 59
    assert convs(False) == 20  # forward only: g_phi(x) is a constant of the step


def test_phases(key):
    learner, x = _learner(4, 2)
    step = learner.make_step()
    state = learner.init(key, x)
    ids, mask = previous_tasks(jnp.int32(0), NUM_TASKS, MAX_PREV, key)
    first, _ = step(state, _batch(key), jnp.int32(0), ids, mask, train_stateful=True)
    changed = lambda a, b: any(  # noqa: E731
        bool(jnp.any(u != v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )
    assert changed(first.stateful, state.stateful) and changed(first.hparams, state.hparams)
    frozen = learner.end_experience(first)
    ids, mask = previous_tasks(jnp.int32(1), NUM_TASKS, MAX_PREV, key)
    later, metrics = step(frozen, _batch(key), jnp.int32(1), ids, mask, train_stateful=False)
    assert not changed(later.stateful, frozen.stateful)
    assert not changed(later.opt_state["stateful"], frozen.opt_state["stateful"])
    assert not changed(later.frozen_hparams, frozen.frozen_hparams)
    assert changed(later.hparams, frozen.hparams)
    # psi' = psi - beta g1 moves the shared trunk, so earlier tasks' outputs move already.
    assert float(metrics["reg_loss"]) > 0.0


def test_lookahead_step_is_lookahead_grad_plus_the_optimizer(key):
    learner, x = _learner(3, 2)
    state = learner.end_experience(learner.init(key, x))
    state = state._replace(hparams=jax.tree.map(lambda p: p + 0.01, state.hparams))
    batch, task = _batch(key), jnp.int32(2)
    ids, mask = previous_tasks(task, NUM_TASKS, MAX_PREV, key)
    new, metrics = jax.jit(
        lambda s: learner.step(s, batch, task, ids, mask, train_stateful=False)
    )(state)

    @jax.jit
    def expected(state):
        features = learner.features(state.stateful, batch.x)
        targets = task_outputs(learner.hnet, state.frozen_hparams, ids)

        def task_loss(p):
            logits = learner.stateless.apply({"params": learner.hnet.apply(p, task)}, features)
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch.y).mean()

        grads, info = lookahead_grad(
            task_loss, lambda p: output_regularizer(learner.hnet, p, targets, ids, mask),
            state.hparams, virtual_opt=optax.sgd(1e-3), order=2, coef=0.5,
        )
        updates, _ = optax.adam(1e-3).update(grads, state.opt_state["hnet"], state.hparams)
        return optax.apply_updates(state.hparams, updates), info

    hparams, info = expected(state)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 new.hparams, hparams)
    assert float(metrics["reg_loss"]) > 0
    np.testing.assert_allclose(metrics["cosine"], info.cosine, rtol=1e-4)


def test_mlp_target_without_stateful_part(key):
    x = jnp.zeros((8, 5))
    learner = PartialHypernet.build(
        MLP(2, (6,)), None, x, hnet_config=HypernetConfig(num_tasks=3), order=1, coef=1.0
    )
    state = learner.init(key, x)
    assert state.stateful == {}
    batch = Batch(jax.random.normal(key, (8, 5)), jnp.arange(8) % 2)
    ids, mask = previous_tasks(jnp.int32(1), 3, 2, key)
    new, metrics = learner.make_step()(state, batch, jnp.int32(1), ids, mask, train_stateful=False)
    assert set(metrics) == {"loss", "accuracy", "reg_loss", "cosine", "grad_norm", "grad_rel_diff"}
    assert float(metrics["grad_rel_diff"]) == 0.0  # order 1 has no Hessian term


@pytest.mark.parametrize(
    "kwargs, match",
    [({"order": 3}, "order=3"), ({"coef": -1.0}, "-1.0"), ({"learning_rate": 0.0}, "learning_rate")],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _learner(2, **({"order": 2} | kwargs))
