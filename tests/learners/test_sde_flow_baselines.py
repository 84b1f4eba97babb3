"""The fair baselines of the Hypernet-SDE-Flow study: the task-conditioned MLP reads its task, the
MLP replays what it stores, the hypernetwork over the plain MLP generates every weight, the
stored-weights oracle forgets nothing and learns exactly as the repair it is evaluated beside,
and the parameter counts and stored floats the study prints are the variants' own."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sde_flow_settings as study
from jaxcl.core.metrics import held_at_end
from jaxcl.data.points import point_tasks
from jaxcl.learners import sde_flow as step
from jaxcl.learners import sde_flow_variant as cl
from jaxcl.learners.sde_flow import SdeFlowLearner
from jaxcl.models.sde_flow import SdeFlowConfig, init_params, reconstruct
from jaxcl.train.loop import train_stream

TINY_MODEL = SdeFlowConfig(hidden=(8,), flow_layers=2, flow_hidden=(8,), sde_hidden=(8,),
                           sde_steps=2)
TINY = cl.Variant(model=TINY_MODEL, embedding_dim=4, hnet_hidden=(8,), epochs=2, batch_size=10,
                  memory_per_task=0)
MLP = dataclasses.replace(TINY_MODEL, model="mlp")
TOLD = dataclasses.replace(MLP, task_inputs=3)


@pytest.fixture(scope="module")
def tasks():
    return point_tasks(jax.random.key(0), num_tasks=3, train_per_task=20, test_per_task=10)


def test_the_task_conditioned_mlp_reads_its_task(tasks):
    """The same points decode differently under different tasks, and the loss's gradient reaches
    the weights on the task code; it has ``2 x tasks x width`` parameters more than the MLP."""
    params = init_params(TOLD, jax.random.key(1))
    x = tasks[0].x_test
    outs = [reconstruct(TOLD, params, x, jax.random.key(0),
                        task_ids=jnp.full(x.shape[:1], t)).x_hat for t in range(3)]
    assert float(jnp.min(jnp.abs(outs[0] - outs[1]))) > 0.0
    variant = dataclasses.replace(TINY, model=TOLD)
    memory = jnp.zeros((3, 0, 3))
    grad = jax.grad(lambda p: step.loss_terms(variant, cl.LossWeights(), None, p, x,
                                              jnp.int32(1), memory, jnp.float32(0.5),
                                              jax.random.key(0))[0])(params)
    task_rows = grad["encoder"]["dense_0"]["kernel"][3:]  # the rows the one-hot code meets
    assert float(jnp.abs(task_rows[1]).sum()) > 0.0  # task 1's row learns
    np.testing.assert_array_equal(task_rows[jnp.array([0, 2])], 0.0)  # the others are not read
    counts = {m: cl.param_count(dataclasses.replace(TINY, model=m), 3) for m in (MLP, TOLD)}
    assert counts[TOLD] - counts[MLP] == 2 * 3 * 8
    with pytest.raises(ValueError, match="task_inputs=3 is for model='mlp'"):
        dataclasses.replace(TINY_MODEL, task_inputs=3)


def test_the_mlp_replays_what_it_stores(tasks):
    """An MLP with a memory adds ``gamma`` times the stored points' MSE of finished tasks (only
    those) to its loss."""
    variant = dataclasses.replace(TINY, model=TOLD, memory_per_task=5)
    params = init_params(TOLD, jax.random.key(1))
    memory = jnp.stack([e.x_train[:5] for e in tasks])
    x = tasks[2].x_train[:10]
    weights = cl.LossWeights(replay=2.0)
    total, terms = step.loss_terms(variant, weights, None, params, x, jnp.int32(2), memory,
                                   jnp.float32(1.0), jax.random.key(0))
    expected = np.mean([float(jnp.mean(jnp.square(reconstruct(
        TOLD, params, memory[t], jax.random.key(0), task_ids=jnp.full((5,), t)).x_hat
        - memory[t]))) for t in (0, 1)])
    np.testing.assert_allclose(terms["replay"], expected, rtol=1e-5)
    np.testing.assert_allclose(total, terms["mse"] + 2.0 * terms["replay"], rtol=1e-6)


def test_the_hypernetwork_over_the_mlp_generates_every_weight(tasks):
    """``hypernet_mlp``'s ``theta_t`` is the MLP's whole pytree, one per task; what it keeps per
    task for its regulariser is that many floats; it shares nothing."""
    variant = dataclasses.replace(TINY, model=dataclasses.replace(MLP, model="hypernet_mlp"),
                                  order=1)
    hnet = cl.hypernetwork(variant, 3)
    psi = cl.init(variant, jax.random.key(1), 3)
    thetas = cl.all_task_params(variant, hnet, psi)
    mlp = init_params(MLP, jax.random.key(0))
    assert jax.tree.map(lambda a: a.shape[1:], thetas) == jax.tree.map(jnp.shape, mlp)
    assert not jax.tree.leaves(cl.shared_mask(psi)) or not any(jax.tree.leaves(
        cl.shared_mask(psi)))
    mlp_count = sum(a.size for a in jax.tree.leaves(mlp))
    assert cl.stored_per_task(variant) == {"points": 0, "targets": mlp_count, "weights": 0}
    with pytest.raises(ValueError, match="shares none"):
        dataclasses.replace(variant, shared="frozen")


def test_the_oracle_forgets_nothing_and_learns_as_its_repair(tasks):
    """The oracle trains exactly as the repair (the same seed gives the same diagonal) but
    decodes every finished task with the weights it ended with: every row below the diagonal
    repeats it, exactly, where the repair's own rows move."""
    # The hypernetwork over the MLP: the oracle's bookkeeping is the same for every model, and
    # this one compiles in seconds.
    repair = dataclasses.replace(TINY, model=dataclasses.replace(MLP, model="hypernet_mlp"),
                                 order="none")
    oracle = dataclasses.replace(repair, evaluate_stored=True)
    matrices = {}
    for name, v in (("repair", repair), ("oracle", oracle)):
        learner = SdeFlowLearner.build(v, num_tasks=3, train_per_task=20)
        matrices[name] = np.asarray(train_stream(learner, tasks, key=jax.random.key(4), epochs=2,
                                                 batch_size=10).matrix)
    np.testing.assert_array_equal(np.diag(matrices["oracle"]), np.diag(matrices["repair"]))
    for i in range(3):
        for j in range(i + 1):
            assert matrices["oracle"][i, j] == matrices["oracle"][j, j]
    assert not np.array_equal(matrices["repair"][2, :2], np.diag(matrices["repair"])[:2])
    # the study derives the oracle from its repair's training instead of training it again
    np.testing.assert_array_equal(held_at_end(matrices["repair"]), matrices["oracle"])
    assert cl.stored_per_task(oracle)["weights"] == cl.generated_count(oracle) > 0
    with pytest.raises(ValueError, match="evaluate_stored"):
        dataclasses.replace(TINY, model=MLP, evaluate_stored=True)


def test_the_study_gives_its_baselines_the_repairs_resources():
    """``mlp_task_wide`` has the fewest equal widths with at least the repair's parameters;
    ``replay_mlp_task`` stores as many floats per task as the repair's targets allow, capped
    at a task's training set; the plain MLPs store nothing."""
    config = study.Config(model=study.StudyModel(latent=2), variants=study.PROTOCOL_VARIANTS)
    models = study.cells(config)
    repair = cl.param_count(models["repair_order1"], study.NUM_TASKS)
    wide = models["mlp_task_wide"]
    assert cl.param_count(wide, study.NUM_TASKS) >= repair
    narrower = dataclasses.replace(wide, model=dataclasses.replace(
        wide.model, hidden=tuple(w - 1 for w in wide.model.hidden)))
    assert cl.param_count(narrower, study.NUM_TASKS) < repair
    targets = cl.stored_per_task(models["repair_order1"])["targets"]
    assert targets == cl.generated_count(models["repair_order1"]) == 2501
    budget = models["replay_mlp_task"].memory_per_task
    assert budget == min(config.data.train_per_task, targets // 3) == 300
    small = study.Config(model=study.StudyModel(latent=2), data=study.PointsData(
        train_per_task=1000), variants=("replay_mlp_task",))
    assert study.cells(small)["replay_mlp_task"].memory_per_task == targets // 3
    for name in ("mlp", "mlp_task", "mlp_task_wide"):
        assert cl.stored_per_task(models[name]) == {"points": 0, "targets": 0, "weights": 0}
    assert set(study.MAIN_VARIANTS) < set(study.PROTOCOL_VARIANTS)


def test_order_none_is_order_one_at_a_zero_virtual_step_to_the_bit(tasks):
    """``order="none"`` (the regulariser on ``psi``) is built as order 1 with ``virtual_lr = 0``
    so that it shares order 1's programs: its gradient through the look-ahead's own "none" path
    (``optax.set_to_zero``) and through order 1 at a zero step are the same, bit for bit, op by
    op."""
    # The hypernetwork over the MLP: the mapping is the look-ahead's, the same for every model,
    # and this one runs op by op in seconds.
    none = dataclasses.replace(TINY, model=dataclasses.replace(MLP, model="hypernet_mlp"),
                               order="none")
    one = dataclasses.replace(none, order=1)
    hnet, psi = cl.hypernetwork(none, 3), cl.init(none, jax.random.key(0), 3)
    psi = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), psi)
    targets = step.task_outputs(hnet, cl.init(none, jax.random.key(2), 3), jnp.arange(3))
    args = (tasks[2].x_train[:10], jnp.int32(2), jnp.zeros((3, 0, 3)), targets, 0.5,
            jax.random.key(3))
    weights = cl.LossWeights(coef=2.0)
    g_none, _ = step.objective_grad(none, weights, hnet, psi, *args)
    g_one, _ = step.objective_grad(one, weights._replace(virtual_lr=0.0), hnet, psi, *args)
    g_moved, _ = step.objective_grad(one, weights._replace(virtual_lr=0.1), hnet, psi, *args)
    jax.tree.map(np.testing.assert_array_equal, g_none, g_one)
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, g_none, g_moved)))
    built = {o: SdeFlowLearner.build(dataclasses.replace(none, order=o), num_tasks=3,
                                     train_per_task=20) for o in ("none", 1)}
    assert built["none"] == built[1]  # one set of compiled programs
    assert built["none"].weights.virtual_lr == 0.0 and built[1].weights.virtual_lr > 0
