"""Continual training of the point autoencoders: gradients (finite, and equal to finite
differences), frozen parts that stay frozen, and the output regulariser that holds earlier tasks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.core.regularizers import output_regularizer, task_outputs
from jaxcl.data.points import point_tasks
from jaxcl.learners import sde_flow as cl
from jaxcl.models.sde_flow import SdeFlowConfig, reconstruct

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
    """psi, a different frozen copy, a filled memory and the regulariser's targets."""
    num_tasks = tasks.num_tasks
    hnet = cl.hypernetwork(variant, num_tasks) if variant.is_hypernet else None
    psi = cl.init(variant, jax.random.key(1), num_tasks)
    frozen = jax.tree.map(lambda a: a + 0.05 * jnp.cos(a), psi)
    memory = tasks.x_train[:, : variant.memory_per_task]
    targets = task_outputs(hnet, frozen, jnp.arange(num_tasks)) if variant.order else None
    return hnet, psi, memory, targets


# frozen_order1's gradient is the order-2 one without the Hessian term; the regulariser test
# below trains with it.
@pytest.mark.parametrize("name", ["mlp", "hypernet_sde_flow", "generated_order2"])
def test_gradients_are_finite_for_every_parameter(name, tasks):
    variant = VARIANTS[name]
    hnet, psi, memory, targets = _setup(variant, tasks)
    grad_fn = jax.jit(lambda p: cl.objective_grad(
        variant, cl.LossWeights(), hnet, p, tasks.x_train[1, :10], jnp.int32(1), memory, targets,
        0.5, jax.random.key(2)))
    grad, metrics = grad_fn(psi)
    for path, g in jax.tree_util.tree_leaves_with_path(grad):
        assert bool(jnp.all(jnp.isfinite(g))), jax.tree_util.keystr(path)
    assert all(bool(jnp.isfinite(v)) for v in metrics.values())
    heads = grad["params"] if variant.is_hypernet else grad
    # Every generated or shared part is reached by the gradient (not only finite: alive).
    norms = {k: float(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(v)))
             for k, v in heads.items()}
    for part in ("encoder", "decoder") + (("sde", "back_sde") if variant.is_hypernet else ()):
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

    Order 0's objective is ``L``; order 2's is ``J(psi) = L(psi) + lambda L_H(psi - eta grad L)``,
    evaluated here with its own ``jax.grad``: an independent route to the same number.
    """
    variant = VARIANTS[name]
    hnet, psi, memory, targets = _setup(variant, tasks)
    to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
    psi, memory, targets = to64(psi), to64(memory), to64(targets)
    x = jnp.asarray(tasks.x_train[1, :10], jnp.float64)
    weights = cl.LossWeights(regularizer=0.7, virtual_lr=0.05)
    key, task = jax.random.key(2), jnp.int32(1)

    def loss(p):
        return cl.loss_terms(variant, weights, hnet, p, x, task, memory, 0.5, key, "direct")[0]

    def objective(p):
        if not variant.order:
            return loss(p)
        stepped = jax.tree.map(lambda a, g: a - weights.virtual_lr * g, p, jax.grad(loss)(p))
        reg = output_regularizer(hnet, stepped, targets, jnp.arange(3), jnp.arange(3) < task)
        return loss(p) + weights.regularizer * reg

    grad, _ = jax.jit(lambda p: cl.objective_grad(variant, weights, hnet, p, x, task, memory,
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
    f0, mean_f = cl.forgetting(m)
    assert f0 == pytest.approx(2.0)
    assert mean_f == pytest.approx(((3.0 - 1.0) + (2.5 - 2.0)) / 2)


def test_separation_formula():
    e = jax.random.normal(jax.random.key(0), (4, 3))
    for t in range(4):
        pairs = [(i, j) for j in range(t + 1) for i in range(j)]
        expected = (np.mean([np.exp(-np.sum((e[i] - e[j]) ** 2) / 3) for i, j in pairs])
                    if pairs else 0.0)
        assert float(cl.separation(e, jnp.int32(t))) == pytest.approx(expected, rel=1e-5)


def _train(variant, tasks, psi, frozen, memory, t):
    weights = cl.LossWeights(*(jnp.float32(w) for w in variant.weights))
    fn = jax.jit(cl.train_task, static_argnums=0)
    return fn(variant, weights, psi, frozen, memory, tasks.x_train[t], jnp.int32(t),
              jax.random.key(t))


def _shared(psi):
    return {k: v for k, v in psi["params"].items() if k.startswith("shared:")}


@pytest.mark.parametrize("shared", ["trained", "frozen"])
def test_shared_parts_freeze_after_task0_only_when_asked(shared, tasks):
    variant = dataclasses.replace(TINY, shared=shared)
    psi = cl.init(variant, jax.random.key(0), 3)
    memory = jnp.zeros((3, variant.memory_per_task, 3))
    psi1, memory, _ = _train(variant, tasks, psi, psi, memory, 0)
    psi2, memory, _ = _train(variant, tasks, psi1, psi1, memory, 1)
    moved0 = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), _shared(psi), _shared(psi1))
    moved1 = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), _shared(psi1), _shared(psi2))
    assert max(jax.tree.leaves(moved0)) > 0  # task 0 trains the shared parts either way
    if shared == "frozen":
        assert max(jax.tree.leaves(moved1)) == 0
    else:
        assert max(jax.tree.leaves(moved1)) > 0
    # The memory holds real points of the finished tasks.
    for t in (0, 1):
        d = jnp.abs(memory[t][:, None] - tasks.x_train[t][None]).sum(-1).min(axis=1)
        np.testing.assert_array_equal(d, 0.0)


def test_output_regularizer_holds_task0_outputs(tasks):
    """After task 1, the hypernetwork's outputs for task 0 moved less with the regulariser."""
    drift = {}
    for order in (0, 1):
        variant = dataclasses.replace(TINY, shared="frozen", order=order, epochs=10,
                                      weights=cl.LossWeights(regularizer=10.0))
        hnet = cl.hypernetwork(variant, 3)
        psi = cl.init(variant, jax.random.key(0), 3)
        memory = jnp.zeros((3, variant.memory_per_task, 3))
        psi1, memory, _ = _train(variant, tasks, psi, psi, memory, 0)
        psi2, _, _ = _train(variant, tasks, psi1, psi1, memory, 1)
        ids = jnp.arange(3)
        drift[order] = float(output_regularizer(hnet, psi2, task_outputs(hnet, psi1, ids), ids,
                                                ids < 1))
    assert drift[1] < 0.5 * drift[0], drift


def test_mixed_batches_use_each_examples_task(tasks):
    """One solve over points of several tasks equals each task's own reconstruction."""
    for shared in ("trained", "generated"):
        variant = dataclasses.replace(
            TINY, shared=shared, model=dataclasses.replace(TINY_MODEL, diffusion_scale=0.0))
        hnet = cl.hypernetwork(variant, 3)
        psi = cl.init(variant, jax.random.key(0), 3)
        x = tasks.x_test[:, :4].reshape(-1, 3)
        ids = jnp.repeat(jnp.arange(3), 4)
        mixed, _ = jax.jit(lambda p: cl.reconstruct_tasks(
            variant, cl.all_task_params(variant, hnet, p), x, ids, jax.random.key(1)))(psi)
        own = jax.jit(lambda p, j, xj: reconstruct(variant.model, hnet.apply(p, j), xj,
                                                   jax.random.key(1))[0])
        for j in range(3):
            np.testing.assert_allclose(mixed[4 * j: 4 * j + 4], own(psi, j, x[4 * j: 4 * j + 4]),
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad,match", [
    ({"shared": "partly"}, "shared='partly'"), ({"order": 3}, "order=3"),
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
        cl.run_tasks(dataclasses.replace(TINY, batch_size=50), tasks, jax.random.key(0))
    with pytest.raises(ValueError, match="memory_per_task=30"):
        cl.run_tasks(dataclasses.replace(TINY, memory_per_task=30), tasks, jax.random.key(0))
