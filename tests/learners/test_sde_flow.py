"""Continual training of the point autoencoders: gradients (finite, reaching every part, and
equal to finite differences), the formulas (the NLL's annealing, the separation, the forgetting),
the study's parameter count, frozen parts that stay frozen, and the output regulariser that holds
earlier tasks. Tasks are trained here through the learner's own functions
(:class:`jaxcl.learners.sde_flow.SdeFlowLearner`), as the loop calls them; the loop itself:
``tests/train/test_loop_sde_flow.py``."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.core import metrics
from jaxcl.core.regularizers import output_regularizer, task_outputs
from jaxcl.data.points import point_tasks
from jaxcl.learners import sde_flow as step
from jaxcl.learners import sde_flow_variant as cl
from jaxcl.learners.sde_flow import STEP_METRICS, SdeFlowLearner
from jaxcl.models.sde_flow import SdeFlowConfig, encode, encoder_log_volume, reconstruct
from jaxcl.train.loop import train_stream
from jaxcl.types import Batch

TINY_MODEL = SdeFlowConfig(hidden=(8,), flow_layers=2, flow_hidden=(8,), sde_hidden=(8,),
                           sde_steps=2)
TINY = cl.Variant(model=TINY_MODEL, embedding_dim=4, hnet_hidden=(8,), epochs=2, batch_size=10,
                  memory_per_task=4)
VARIANTS = {
    "mlp": dataclasses.replace(TINY, model=dataclasses.replace(TINY_MODEL, model="mlp")),
    "hypernet_sde_flow": TINY,
    "frozen_order1": dataclasses.replace(TINY, shared="frozen", order=1),
    "generated_order2": dataclasses.replace(TINY, shared="generated", order=2),
}


@pytest.fixture(scope="module")
def tasks():
    return point_tasks(jax.random.key(0), num_tasks=3, train_per_task=20, test_per_task=10)


def _setup(variant, tasks, task_id=1):
    """psi, a filled memory and the regulariser's targets (from a different copy of psi)."""
    num_tasks = len(tasks)
    hnet = cl.hypernetwork(variant, num_tasks) if variant.is_hypernet else None
    psi = cl.init(variant, jax.random.key(1), num_tasks)
    frozen = jax.tree.map(lambda a: a + 0.05 * jnp.cos(a), psi)
    memory = jnp.stack([e.x_train[: variant.memory_per_task] for e in tasks])
    targets = task_outputs(hnet, frozen, jnp.arange(num_tasks)) if variant.order else None
    return hnet, psi, memory, targets


# frozen_order1's gradient is the order-2 one without the Hessian term; the regulariser test
# below trains with it.
@pytest.mark.parametrize("name", ["mlp", "hypernet_sde_flow", "generated_order2"])
def test_gradients_are_finite_for_every_parameter(name, tasks):
    variant = VARIANTS[name]
    hnet, psi, memory, targets = _setup(variant, tasks)
    grad_fn = jax.jit(lambda p: step.objective_grad(
        variant, cl.LossWeights(), hnet, p, tasks[1].x_train[:10], jnp.int32(1), memory, targets,
        0.5, jax.random.key(2)))
    grad, metrics = grad_fn(psi)
    for path, g in jax.tree_util.tree_leaves_with_path(grad):
        assert bool(jnp.all(jnp.isfinite(g))), jax.tree_util.keystr(path)
    assert set(metrics) == set(STEP_METRICS)  # what the loop logs, every step
    assert all(bool(jnp.isfinite(v)) for v in metrics.values())
    assert (float(metrics["sigma"]) > 0) == variant.is_hypernet  # the MLP has no SDE
    heads = grad["params"] if variant.is_hypernet else grad
    # Every generated or shared part is reached by the gradient (not only finite: alive); the
    # flow through the NLL, in the paper's form by default.
    norms = {k: float(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(v)))
             for k, v in heads.items()}
    parts = ("sde", "back_sde", "flow") if variant.is_hypernet else ()
    for part in ("encoder", "decoder", *parts):
        assert max(v for k, v in norms.items() if part in k.split(":")[-1].split(".")[:1]
                   or k == part) > 0, part
    if variant.is_hypernet:
        assert norms["embedding"] > 0
        assert float(metrics["replay"]) > 0 and float(metrics["separation"]) > 0
    if variant.order:
        assert float(metrics["reg"]) > 0


@pytest.mark.parametrize("name", ["hypernet_sde_flow", "generated_order2"])
def test_gradient_matches_finite_differences(name, tasks, x64):
    """``<grad, v>`` against the central difference of the objective, float64.

    Order ``None``'s objective is ``L``; order 2's is
    ``J(psi) = L(psi) + lambda L_H(psi - eta grad L)``, evaluated here with its own ``jax.grad``:
    an independent route to the same number.
    """
    variant = VARIANTS[name]
    hnet, psi, memory, targets = _setup(variant, tasks)
    to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
    psi, memory, targets = to64(psi), to64(memory), to64(targets)
    x = jnp.asarray(tasks[1].x_train[:10], jnp.float64)
    weights = cl.LossWeights(coef=0.7, virtual_lr=0.05)
    key, task = jax.random.key(2), jnp.int32(1)

    def loss(p):
        return step.loss_terms(variant, weights, hnet, p, x, task, memory, 0.5, key, "direct")[0]

    def objective(p):
        if not variant.order:
            return loss(p)
        stepped = jax.tree.map(lambda a, g: a - weights.virtual_lr * g, p, jax.grad(loss)(p))
        reg = output_regularizer(hnet, stepped, targets, jnp.arange(3), jnp.arange(3) < task)
        return loss(p) + weights.coef * reg

    grad, _ = jax.jit(lambda p: step.objective_grad(variant, weights, hnet, p, x, task, memory,
                                                  targets, 0.5, key))(psi)
    leaves, tree = jax.tree.flatten(psi)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    v = jax.tree.unflatten(tree, [jax.random.normal(k, a.shape, a.dtype) for a, k in
                                  zip(leaves, keys)])
    eps = 1e-5
    shift = lambda s: jax.tree.map(lambda a, b: a + s * b, psi, v)
    f = jax.jit(objective)
    fd = (f(shift(eps)) - f(shift(-eps))) / (2 * eps)
    analytic = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(v)))
    np.testing.assert_allclose(float(analytic), float(fd), rtol=1e-6)


def test_forgetting_formula():
    m = np.array([[1.0, 9.0, 9.0], [1.5, 2.0, 9.0], [3.0, 2.5, 0.5]])
    summary = metrics.error_summary(m)
    assert summary["forgetting_t0"] == pytest.approx(2.0)
    assert summary["mean_forgetting"] == pytest.approx(((3.0 - 1.0) + (2.5 - 2.0)) / 2)
    assert summary["final_mse"] == pytest.approx((3.0 + 2.5 + 0.5) / 3)
    assert summary["diagonal_mse"] == pytest.approx((1.0 + 2.0 + 0.5) / 3)
    assert metrics.SUMMARIES["mse"] is metrics.error_summary  # the study's matrix: an error


def test_the_nll_weight_is_annealed_within_each_task(tasks):
    """``beta_k = beta min(1, k / (a K))`` (:func:`step.nll_weight`), and the loss weighs the NLL
    (the paper's, ``-log p(x)``) by it; the batch's collapse metrics come with the terms."""
    variant = dataclasses.replace(TINY, anneal_fraction=0.5)
    weights = cl.LossWeights(nll=0.2)
    for progress, beta in ((0.0, 0.0), (0.125, 0.05), (0.25, 0.1), (0.5, 0.2), (1.0, 0.2)):
        assert float(step.nll_weight(variant, weights, progress)) == pytest.approx(beta)
    hnet, psi, memory, _ = _setup(variant, tasks)
    x, task = tasks[1].x_train[:10], jnp.int32(1)
    terms_at = jax.jit(lambda progress: step.loss_terms(variant, weights, hnet, psi, x, task,
                                                      memory, progress, jax.random.key(2)))
    for progress in (0.0, 0.25, 1.0):
        total, terms = terms_at(progress)
        beta = step.nll_weight(variant, weights, progress)
        rest = terms["mse"] + weights.replay * terms["replay"] + weights.separation * terms[
            "separation"]
        assert float(total) == pytest.approx(float(rest + beta * terms["nll"]), rel=1e-6)
    assert abs(float(terms["nll"])) > 1e-2  # a weight on nothing would pass the line above
    theta = hnet.apply(psi, 1)
    np.testing.assert_allclose(terms["encoder_log_det"],
                               jnp.mean(encoder_log_volume(TINY_MODEL, theta["encoder"], x)),
                               rtol=1e-5)
    np.testing.assert_allclose(terms["z0_std"],
                               jnp.mean(jnp.std(encode(TINY_MODEL, theta, x), axis=0)), rtol=1e-5)
    assert 0 < float(terms["sigma"]) < TINY_MODEL.diffusion_scale


def test_the_study_model_has_the_parameters_its_docstring_says():
    """90,460 in ``psi`` for the study's shapes, counted from the formula: the hypernetwork's
    embeddings (5 x 32) and trunk (32 -> 50 -> 32), one linear head ``32 -> s`` per generated
    leaf of size ``s`` (every weight and bias of the 3 -> 32 -> 32 -> 3 encoder and decoder), and
    the shared flow and SDE networks as they are."""
    from jaxcl.core.hypernet import count_params
    from jaxcl.models.sde_flow import init_params

    variant = cl.Variant()
    psi = jax.eval_shape(lambda: cl.init(variant, jax.random.key(0), 5))
    model = jax.eval_shape(lambda: init_params(variant.model, jax.random.key(0)))
    leaves = [a.size for part in ("encoder", "decoder") for a in jax.tree.leaves(model[part])]
    assert sum(leaves) == 2 * (3 * 32 + 32 + 32 * 32 + 32 + 32 * 3 + 3)
    shared = sum(count_params(model[part]) for part in ("flow", "sde", "back_sde"))
    trunk = 32 * 50 + 50 + 50 * 32 + 32
    assert count_params(psi) == 5 * 32 + trunk + sum(33 * s for s in leaves) + shared == 90_460


def test_separation_formula():
    e = jax.random.normal(jax.random.key(0), (4, 3))
    for t in range(4):
        pairs = [(i, j) for j in range(t + 1) for i in range(j)]
        expected = (np.mean([np.exp(-np.sum((e[i] - e[j]) ** 2) / 3) for i, j in pairs])
                    if pairs else 0.0)
        assert float(step.separation(e, jnp.int32(t))) == pytest.approx(expected, rel=1e-5)


_BEGIN = jax.jit(lambda learner, *args: learner.begin_experience(*args), static_argnums=0)
_STEP = jax.jit(lambda learner, *args: learner.train_step(*args, first=False), static_argnums=0)
_END = jax.jit(lambda learner, *args: learner.end_experience(*args), static_argnums=0)


def _learner(variant, num_tasks=3):
    return SdeFlowLearner.build(variant, num_tasks=num_tasks, train_per_task=20)


def _train(learner, state, tasks, t):
    """Task ``t`` through the learner's functions as the loop calls them (one seed): start, every
    minibatch of every epoch in a fresh order, end."""
    exp, task = tasks[t], jnp.int32(t)
    k_begin, k_end, k_train = jax.random.split(jax.random.key(t), 3)
    state = _BEGIN(learner, state, task, k_begin)
    n, size = exp.x_train.shape[0], learner.variant.batch_size
    for epoch in range(learner.variant.epochs):
        k_order, k_steps = jax.random.split(jax.random.fold_in(k_train, epoch))
        order = jax.random.permutation(k_order, n)
        for b in range(n // size):
            idx = order[b * size:(b + 1) * size]
            state, _ = _STEP(learner, state, Batch(exp.x_train[idx], exp.y_train[idx]), task,
                             jax.random.fold_in(k_steps, b))
    return _END(learner, state, Batch(exp.x_train, exp.y_train), task, k_end)


def _shared(psi):
    return {k: v for k, v in psi["params"].items() if k.startswith("shared:")}


# Ten epochs here and below: the two tests share the frozen variant's compiled step.
@pytest.mark.parametrize("shared", ["trained", "frozen"])
def test_shared_parts_freeze_after_task0_only_when_asked(shared, tasks):
    learner = _learner(dataclasses.replace(TINY, shared=shared, epochs=10))
    state = learner.init(jax.random.key(0), tasks[0].x_train)
    psi = state.psi
    state = _train(learner, state, tasks, 0)
    psi1 = state.psi
    # The step count k of beta_k's annealing reaches K in a task and restarts with the next.
    assert int(state.step) == learner.steps_per_task == 10 * (20 // 10)
    assert int(_BEGIN(learner, state, jnp.int32(1), jax.random.key(0)).step) == 0
    state = _train(learner, state, tasks, 1)
    psi2, memory = state.psi, state.memory
    moved0 = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), _shared(psi), _shared(psi1))
    moved1 = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), _shared(psi1), _shared(psi2))
    assert len(jax.tree.leaves(moved0)) > 0  # the flow and both SDEs: shared heads
    assert max(jax.tree.leaves(moved0)) > 0  # task 0 trains the shared parts either way
    if shared == "frozen":
        assert max(jax.tree.leaves(moved1)) == 0
    else:
        assert max(jax.tree.leaves(moved1)) > 0
    # The generated parts (through the hypernetwork's own weights) keep training either way.
    rest = lambda p: {k: v for k, v in p["params"].items() if not k.startswith("shared:")}
    assert max(jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                                            rest(psi1), rest(psi2)))) > 0
    # The memory holds real points of the finished tasks, and nothing of the others yet.
    for t in (0, 1):
        d = jnp.abs(memory[t][:, None] - tasks[t].x_train[None]).sum(-1).min(axis=1)
        np.testing.assert_array_equal(d, 0.0)
    np.testing.assert_array_equal(memory[2], 0.0)


def test_output_regularizer_holds_task0_outputs(tasks):
    """After task 1, the hypernetwork's outputs for task 0 moved less with the regulariser."""
    drift = {}
    for order in (None, 1):
        variant = dataclasses.replace(TINY, shared="frozen", order=order, epochs=10,
                                      weights=cl.LossWeights(coef=10.0))
        learner = _learner(variant)
        hnet = cl.hypernetwork(variant, 3)
        state = _train(learner, learner.init(jax.random.key(0), tasks[0].x_train), tasks, 0)
        psi1 = state.psi
        psi2 = _train(learner, state, tasks, 1).psi
        ids = jnp.arange(3)
        drift[order] = float(output_regularizer(hnet, psi2, task_outputs(hnet, psi1, ids), ids,
                                                ids < 1))
    assert drift[1] < 0.5 * drift[None], drift


def test_mixed_batches_use_each_examples_task(tasks):
    """One solve over points of several tasks equals each task's own reconstruction."""
    for shared in ("trained", "generated"):
        variant = dataclasses.replace(
            TINY, shared=shared, model=dataclasses.replace(TINY_MODEL, diffusion_scale=0.0))
        hnet = cl.hypernetwork(variant, 3)
        psi = cl.init(variant, jax.random.key(0), 3)
        x = jnp.concatenate([e.x_test[:4] for e in tasks])
        ids = jnp.repeat(jnp.arange(3), 4)
        mixed = jax.jit(lambda p: cl.reconstruct_tasks(
            variant, cl.all_task_params(variant, hnet, p), x, ids, jax.random.key(1)).x_hat)(psi)
        own = jax.jit(lambda p, j, xj: reconstruct(variant.model, hnet.apply(p, j), xj,
                                                   jax.random.key(1))[0])
        for j in range(3):
            np.testing.assert_allclose(mixed[4 * j: 4 * j + 4], own(psi, j, x[4 * j: 4 * j + 4]),
                                       rtol=1e-5, atol=1e-6)


def test_a_batch_without_memory_goes_through_its_tasks_weights_as_each_point_through_its_own(
        tasks, x64):
    """Without a memory the loss generates only the batch's task and shares its weights over
    the batch: the same loss and gradient, float64, as every point through its own task's
    weights (the path of a mixed batch, tested above)."""
    variant = dataclasses.replace(TINY, shared="frozen", order=1, memory_per_task=0)
    hnet = cl.hypernetwork(variant, 3)
    psi = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                       cl.init(variant, jax.random.key(1), 3))
    x = jnp.asarray(tasks[1].x_train[:10], jnp.float64)
    key, task, weights = jax.random.key(2), jnp.int32(1), cl.LossWeights()

    def shared(p):
        return step.loss_terms(variant, weights, hnet, p, x, task, jnp.zeros((3, 0, 3)), 0.5,
                               key)[1]["mse"]

    def per_point(p):
        rec = cl.reconstruct_tasks(variant, cl.all_task_params(variant, hnet, p), x,
                                   jnp.full((10,), task), key)
        return jnp.mean(jnp.square(rec.x_hat - x))

    np.testing.assert_allclose(shared(psi), per_point(psi), rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12),
                 jax.grad(shared)(psi), jax.grad(per_point)(psi))


@pytest.mark.parametrize("bad,match", [
    ({"shared": "partly"}, "shared='partly'"), ({"order": 3}, "order=3"),
    ({"order": 0}, "order=0 is not one of"),  # no regulariser is None now, not 0
    ({"epochs": 0}, "epochs"), ({"learning_rate": 0.0}, "learning_rate"),
    ({"anneal_fraction": 0.0}, "anneal_fraction"),
    ({"weights": cl.LossWeights(replay=-1.0)}, "replay"),
    ({"model": SdeFlowConfig(model="mlp"), "order": 1}, "MLP baseline"),
])
def test_bad_variant_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **bad)


def test_data_the_variant_cannot_use_is_refused_before_training(tasks):
    with pytest.raises(ValueError, match="batch_size=50 exceeds the 20"):
        _learner(dataclasses.replace(TINY, batch_size=50))
    with pytest.raises(ValueError, match="memory_per_task=30"):
        _learner(dataclasses.replace(TINY, memory_per_task=30))
    # The loop refuses a minibatch larger than a task, and tasks the learner holds no row for.
    with pytest.raises(ValueError, match=r"batch_size must be in 1\.\.20"):
        train_stream(_learner(TINY), tasks, key=jax.random.key(0), epochs=1, batch_size=50)
    with pytest.raises(ValueError, match=r"task ids \[2\] but sde_flow holds 2 tasks"):
        train_stream(_learner(TINY, num_tasks=2), tasks, key=jax.random.key(0), epochs=1,
                     batch_size=10)
