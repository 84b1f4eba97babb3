"""The traced switches of the Hypernet-SDE-Flow loss that the study's sweeps turn (replayed
points, the NLL's ramp, identity SDEs), the repair's virtual step (SGD or Adam, frozen parts held
still) and the probe that explains order 2: each against an independent computation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcl.core.regularizers import task_outputs
from jaxcl.data.points import point_tasks
from jaxcl.learners import sde_flow as step
from jaxcl.learners import sde_flow_variant as cl
from jaxcl.learners.sde_flow import SdeFlowLearner
from jaxcl.models.sde_flow import SdeFlowConfig, init_params, reconstruct
from jaxcl.types import Batch

TINY_MODEL = SdeFlowConfig(hidden=(8,), flow_layers=2, flow_hidden=(8,), sde_hidden=(8,),
                           sde_steps=2)
TINY = cl.Variant(model=TINY_MODEL, embedding_dim=4, hnet_hidden=(8,), epochs=2, batch_size=10,
                  memory_per_task=4)


@pytest.fixture(scope="module")
def tasks():
    return point_tasks(jax.random.key(0), num_tasks=3, train_per_task=20, test_per_task=10)


def test_gate_zero_makes_both_sdes_the_identity():
    params = init_params(TINY_MODEL, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 3))
    shut = reconstruct(TINY_MODEL, params, x, jax.random.key(2), sde_gate=0.0)
    np.testing.assert_array_equal(shut.zT, shut.z0)
    np.testing.assert_array_equal(shut.y0, shut.z0)
    live = reconstruct(TINY_MODEL, params, x, jax.random.key(2), sde_gate=1.0)
    assert float(jnp.max(jnp.abs(live.y0 - live.z0))) > 1e-3


def test_the_memory_weight_replays_the_first_stored_points_only(tasks):
    """Replaying 2 of 4 stored points per task is replaying a memory of those 2 (identity SDEs,
    so that no noise depends on how many rows the solve holds)."""
    hnet = cl.hypernetwork(TINY, len(tasks))
    psi = cl.init(TINY, jax.random.key(1), len(tasks))
    memory = jnp.stack([e.x_train[:4] for e in tasks])
    x, task, key = tasks[2].x_train[:10], jnp.int32(2), jax.random.key(3)

    def replay(variant, weights, mem):
        return step.loss_terms(variant, weights, hnet, psi, x, task, mem, 0.5, key)[1]["replay"]

    two = replay(TINY, cl.LossWeights(memory=2.0, sde_gate=0.0), memory)
    alone = replay(dataclasses.replace(TINY, memory_per_task=2), cl.LossWeights(sde_gate=0.0),
                   memory[:, :2])
    np.testing.assert_allclose(two, alone, rtol=1e-6)
    every = replay(TINY, cl.LossWeights(sde_gate=0.0), memory)
    assert abs(float(every) - float(two)) > 1e-4 * float(two)  # the other rows do count
    assert float(replay(TINY, cl.LossWeights(memory=0.0, sde_gate=0.0), memory)) == 0.0
    with pytest.raises(ValueError, match="weights.memory=5.0 exceeds memory_per_task=4"):
        dataclasses.replace(TINY, weights=cl.LossWeights(memory=5.0))


@pytest.mark.parametrize("per_task, beta_at_task_start", [(1.0, 0.0), (0.0, 0.2)])
def test_the_nll_ramp_restarts_per_task_or_runs_once(tasks, per_task, beta_at_task_start):
    """The weight a step gives the NLL, read back from its logged terms
    (``loss = mse + beta_k nll + gamma replay + delta sep``) at the first step of task 1: 0 when
    the ramp restarts with each task, the full ``beta`` when it ran once, over task 0."""
    weights = cl.LossWeights(nll=0.2, anneal_per_task=per_task)
    learner = SdeFlowLearner.build(dataclasses.replace(TINY, weights=weights), num_tasks=3,
                                   train_per_task=20)
    state = learner.init(jax.random.key(0), tasks[0].x_train)  # step 0, as a task begins
    batch = Batch(tasks[1].x_train[:10], tasks[1].y_train[:10])
    _, m = jax.jit(lambda s: learner.train_step(s, batch, jnp.int32(1), jax.random.key(1),
                                                first=False))(state)
    beta = (m["loss"] - m["mse"] - weights.replay * m["replay"]
            - weights.separation * m["separation"]) / m["nll"]
    np.testing.assert_allclose(beta, beta_at_task_start, atol=1e-5)


@pytest.mark.parametrize("virtual", ["sgd", "adam"])
def test_the_virtual_step_holds_frozen_parts_still(virtual):
    """With ``shared="frozen"`` the virtual step, like the real one, moves no shared leaf after
    task 0, and moves them in task 0."""
    variant = dataclasses.replace(TINY, shared="frozen", order=1, virtual=virtual)
    psi = cl.init(variant, jax.random.key(1), 3)
    grad = jax.tree.map(jnp.ones_like, psi)
    shared = cl.shared_mask(psi)
    for task, moves in ((0, True), (1, False)):
        opt = step.virtual_optimizer(variant, cl.LossWeights(virtual_lr=0.01), psi, jnp.int32(task))
        updates, _ = opt.update(grad, opt.init(psi), psi)
        for u, s in zip(jax.tree.leaves(updates), jax.tree.leaves(shared)):
            assert bool(jnp.all(u != 0)) == (moves or not s)


def test_the_probe_follows_its_order_and_measures_the_step(tasks):
    """A probed order-1 step (the order-2 gradient less its Hessian term) follows the same
    gradient as an unprobed one; its step x curvature is ``eta`` times the Rayleigh quotient
    (SGD), its vector of unit norm and off the frozen parts."""
    variant = dataclasses.replace(TINY, shared="frozen", order=1)
    hnet = cl.hypernetwork(variant, len(tasks))
    psi = cl.init(variant, jax.random.key(1), len(tasks))
    targets = task_outputs(hnet, jax.tree.map(lambda a: a + 0.05 * jnp.cos(a), psi),
                           jnp.arange(len(tasks)))
    memory = jnp.stack([e.x_train[:4] for e in tasks])
    weights = cl.LossWeights(virtual_lr=0.003)
    args = (hnet, psi, tasks[1].x_train[:10], jnp.int32(1), memory, targets, 0.5,
            jax.random.key(2))
    plain, _ = jax.jit(lambda: step.objective_grad(variant, weights, *args))()
    start = jax.tree.map(jnp.ones_like, psi)
    probed, m, vector = jax.jit(lambda: step.probed_grad(dataclasses.replace(variant, probe=True),
                                                       weights, *args, start))()
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(probed)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(m["step_curvature"], 0.003 * m["curvature"], rtol=1e-4)
    np.testing.assert_allclose(optax.tree.norm(vector), 1.0, rtol=1e-5)
    assert float(m["curvature"]) > 0 and float(m["correction_ratio"]) > 0
    assert -1.0 <= float(m["correction_cosine"]) <= 1.0
    # The frozen parts do not move: the vector has no component on them.
    for v, s in zip(jax.tree.leaves(vector), jax.tree.leaves(cl.shared_mask(psi))):
        assert bool(jnp.all(v == 0)) or not s


def test_a_probe_needs_a_look_ahead():
    with pytest.raises(ValueError, match="probe=True measures a look-ahead: it needs order 1 or "
                                         "2, got order=None"):
        dataclasses.replace(TINY, probe=True)
    with pytest.raises(ValueError, match="virtual='rmsprop' is not one of"):
        dataclasses.replace(TINY, virtual="rmsprop")


def test_a_repair_without_memory_stores_no_points(tasks):
    """``memory_per_task=0``: no memory in the state (nor in checkpoints), the batch alone goes
    through the model, and what the repair keeps is its regulariser's targets."""
    from jaxcl.learners.base import bytes32

    variant = dataclasses.replace(TINY, shared="frozen", order=1, memory_per_task=0,
                                  weights=cl.LossWeights(replay=0.0))
    learner = SdeFlowLearner.build(variant, num_tasks=3, train_per_task=20)
    state = learner.init(jax.random.key(0), tasks[0].x_train)
    assert state.memory == {}
    data = Batch(tasks[0].x_train, tasks[0].y_train)
    assert learner.end_experience(state, data, jnp.int32(0), jax.random.key(1)) is state
    batch = Batch(tasks[1].x_train[:10], tasks[1].y_train[:10])
    new, m = jax.jit(lambda s: learner.train_step(s, batch, jnp.int32(1), jax.random.key(2),
                                                  first=False))(state)
    assert float(m["replay"]) == 0.0 and np.isfinite(float(m["loss"]))
    assert learner.memory_bytes(new) == bytes32(new.targets) > 0
