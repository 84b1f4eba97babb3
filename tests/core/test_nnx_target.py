"""Flax NNX targets: an NNX MLP and an NNX conv net against their Linen twins (generated shapes,
heads, reports, look-ahead gradients against finite differences), list paths, refusals, and the
README's custom-model example."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree
from support import central_difference, f64, later_state, lookahead_objective

from jaxcl import Batch, HypernetConfig, Hypernetwork, PartialHypernet
from jaxcl.core.hypernet import compression_table, generate_under, parameter_report
from jaxcl.core.nnx_target import NnxTarget, as_target
from jaxcl.core.regularizers import previous_tasks
from jaxcl.models import MLP

CONFIG = HypernetConfig(num_tasks=6, hidden=(12, 8), embedding_dim=6, chunk_dim=4)


class NnxMLP(nnx.Module):
    """The twin of ``jaxcl.models.MLP(2, (6,))`` on 5 features: the same paths and shapes."""

    def __init__(self, rngs):
        self.dense0 = nnx.Linear(5, 6, rngs=rngs)
        self.classifier = nnx.Linear(6, 2, rngs=rngs)

    def __call__(self, x):
        return self.classifier(jax.nn.relu(self.dense0(x.reshape(x.shape[0], -1))))


class NnxConvNet(nnx.Module):
    """Two 3x3 convs in a list (paths ``blocks/0``, ``blocks/1``), a layer norm, a classifier."""

    def __init__(self, rngs, channels=4):
        self.blocks = nnx.List([nnx.Conv(channels, 4, (3, 3), rngs=rngs) for _ in range(2)])
        self.norm = nnx.LayerNorm(4, rngs=rngs)
        self.classifier = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        for conv in self.blocks:
            x = jax.nn.relu(conv(x))
        return self.classifier(self.norm(x.mean(axis=(1, 2))))


class _LinenBlocks(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(2):
            x = nn.relu(nn.Conv(4, (3, 3), name=str(i))(x))
        return x


class LinenConvNet(nn.Module):
    """The Linen twin of :class:`NnxConvNet`: the same paths, shapes and computation."""

    @nn.compact
    def __call__(self, x):
        x = _LinenBlocks(name="blocks")(x)
        return nn.Dense(3, name="classifier")(nn.LayerNorm(name="norm")(x.mean(axis=(1, 2))))


def _twins(kind):
    """``(nnx (upper, lower), linen (upper, lower), x)``: the conv net has a lower part, a 3x3
    conv from the images' 3 channels to the 4 the upper part takes."""
    rngs = nnx.Rngs(0)
    if kind == "mlp":
        return (NnxMLP(rngs), None), (MLP(2, (6,)), None), jnp.zeros((8, 5))
    nnx_parts = (NnxConvNet(rngs), nnx.Conv(3, 4, (3, 3), rngs=rngs))
    return nnx_parts, (LinenConvNet(), nn.Conv(4, (3, 3))), jnp.zeros((8, 8, 8, 3))


@pytest.mark.parametrize("kind, generate", [("mlp", None), ("conv", None),
                                            ("conv", ("blocks/1", "classifier"))])
def test_generated_shapes_heads_and_reports_match_the_linen_twin(kind, generate):
    nnx_parts, linen_parts, x = _twins(kind)
    kwargs = {} if generate is None else {"generate": generate_under(*generate)}
    nnx_hnet, linen_hnet = (PartialHypernet.build(*parts, x, hnet_config=CONFIG, **kwargs).hnet
                            for parts in (nnx_parts, linen_parts))
    assert nnx_hnet.specs == linen_hnet.specs  # paths, shapes, dtypes and heads, leaf for leaf
    if generate is not None:
        shared = {spec.path[:2] for spec in nnx_hnet.specs if spec.role == "shared"}
        assert shared == {("blocks", "0"), ("norm", "scale"), ("norm", "bias")}
    psi = jax.eval_shape(nnx_hnet.init, jax.random.key(0), 0)
    generated = jax.eval_shape(nnx_hnet.apply, psi, jnp.int32(1))
    target = as_target(nnx_parts[0]).init(None)["params"]
    assert jax.tree.structure(generated) == jax.tree.structure(target)
    assert jax.tree.map(jnp.shape, generated) == jax.tree.map(jnp.shape, target)
    assert parameter_report(nnx_hnet) == parameter_report(linen_hnet)
    assert compression_table(nnx_hnet) == compression_table(linen_hnet)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_lookahead_gradients_match_the_linen_twin_and_finite_differences(kind, key, x64):
    """Orders 1 and 2 of HN on the NNX twin and on the Linen twin, float64, from the same state
    (the parameter trees correspond exactly, so the hypernetworks are one module and one seed
    gives one ``psi``): the same gradients (``-update`` of SGD(1)), each equal to central
    differences of its objective along random directions; order 1 misses order 2's Hessian
    term."""
    beta, coef = 0.5, 0.5  # a large virtual step, so that the Hessian term is far above rounding
    task = jnp.int32(3)
    ids, mask = previous_tasks(task, CONFIG.num_tasks, 4, jax.random.key(3))
    nnx_parts, linen_parts, x = _twins(kind)
    batch = Batch(jax.random.normal(key, x.shape), jnp.arange(x.shape[0]) % 2)
    learners = {twin: PartialHypernet.build(upper, lower, x, hnet_config=CONFIG, coef=coef,
                                            learning_rate=beta, optimizer=optax.sgd(1.0),
                                            max_prev_tasks=4)
                for twin, (upper, lower) in (("nnx", nnx_parts), ("linen", linen_parts))}
    # The two hypernetworks are the same module (specs and config): one seed, one psi for both.
    assert learners["nnx"].hnet == learners["linen"].hnet
    state, frozen, psi = later_state(learners["nnx"], key, x)
    state = state._replace(phi=f64(state.phi))  # the NNX lower part's phi, for both twins
    linen_phi = jax.eval_shape(learners["linen"].init, key, x).phi
    assert jax.tree.map(jnp.shape, linen_phi) == jax.tree.map(jnp.shape, state.phi)

    @jax.jit  # one program for both twins and both orders: about half the compile time
    def gradients(state):
        return {(twin, order): optax.tree.sub(state.psi, dataclasses.replace(
            learner, order=order).phase_step(state, batch, task, ids, mask, first=False)[0].psi)
            for twin, learner in learners.items() for order in (1, 2)}

    grads = gradients(state)
    for order in (1, 2):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13),
                     grads["nnx", order], grads["linen", order])

    features = learners["nnx"].features(state.phi, batch.x)
    objectives = [lookahead_objective(learners["nnx"], frozen, features, batch.y, task, ids,
                                      mask, beta=beta, coef=coef, inner_at=inner)
                  for inner in (psi, None)]  # orders 1 and 2

    flat, unravel = ravel_pytree(psi)  # flat: one draw and one shift per direction
    both = jax.jit(lambda q: jnp.stack([f(unravel(q)) for f in objectives]))
    for i in range(2):
        v = jax.random.normal(jax.random.key(i), flat.shape, flat.dtype)
        directional = [float(ravel_pytree(grads["nnx", order])[0] @ v) for order in (1, 2)]
        differences = np.asarray(central_difference(both, flat, v))
        np.testing.assert_allclose(directional, differences, rtol=1e-7)
        assert directional[0] != pytest.approx(differences[1], rel=1e-4)  # no Hessian term


class _Deep(nnx.Module):
    """Twelve layers in a list: ``"10"`` and ``"11"`` sort before ``"2"`` as strings."""

    def __init__(self, rngs):
        self.layers = nnx.List([nnx.Linear(3, 3, rngs=rngs) for _ in range(12)])

    def __call__(self, x):
        for layer in self.layers:
            x = jnp.tanh(layer(x))
        return x


def test_list_items_are_mapped_back_by_path_not_by_sorted_order(key):
    module = _Deep(nnx.Rngs(1))
    target = as_target(module)
    x = jax.random.normal(key, (2, 3))
    params = target.init(key)["params"]
    assert sorted(params["layers"]) == sorted(str(i) for i in range(12))
    np.testing.assert_allclose(target.apply({"params": params}, x), module(x), rtol=1e-6)
    hnet = Hypernetwork.for_target(module, config=CONFIG, generate=generate_under("layers/10"))
    assert {s.path for s in hnet.specs if s.role != "shared"} == {
        ("layers", "10", "kernel"), ("layers", "10", "bias")}
    assert as_target(target) is target and target == as_target(_Deep(nnx.Rngs(2)))


class _WithState(nnx.Module):
    """A dense layer, then ``layer(rngs)``: one that holds state besides its parameters."""

    def __init__(self, layer, rngs):
        self.dense = nnx.Linear(5, 4, rngs=rngs)
        self.layer = layer(rngs)

    def __call__(self, x):
        return self.layer(self.dense(x))


@pytest.mark.parametrize("layer, match", [
    (lambda rngs: nnx.BatchNorm(4, rngs=rngs),
     (r"_WithState holds state other than nnx.Param: layer/mean \(BatchStat\), "
      r"layer/var \(BatchStat\)")),
    (lambda rngs: nnx.Dropout(0.5, rngs=rngs),
     r"layer/rngs/count \(RngCount\), layer/rngs/key \(RngKey\)"),
], ids=["batch_norm", "dropout"])
def test_state_other_than_params_is_refused_naming_path_and_type(layer, match):
    with pytest.raises(ValueError, match=match):
        PartialHypernet.build(_WithState(layer, nnx.Rngs(0)), None, jnp.zeros((2, 5)),
                              hnet_config=CONFIG)


def test_bad_targets_and_parameters_are_named(key):
    with pytest.raises(TypeError, match="NNX module .flax.nnx.Module., got int: 3"):
        Hypernetwork.for_target(3, config=CONFIG)
    target = as_target(NnxMLP(nnx.Rngs(0)))
    assert isinstance(target, NnxTarget)
    params = target.init(key)["params"]
    x = jnp.zeros((2, 5))
    with pytest.raises(ValueError, match="'params' only, got \\['batch_stats', 'params'\\]"):
        target.apply({"params": params, "batch_stats": {}}, x)
    wrong = {**params, "classifier": {"kernel": params["classifier"]["kernel"], "b": 0.0}}
    with pytest.raises(ValueError, match="missing classifier/bias, unexpected classifier/b"):
        target.apply({"params": wrong}, x)
    wrong = {**params, "dense0": {**params["dense0"], "bias": jnp.zeros(7)}}
    with pytest.raises(ValueError,
                       match=r"dense0/bias has shape \(7,\), the NNX target's is \(6,\)"):
        target.apply({"params": wrong}, x)
