"""Hypernetwork properties: structure for every k, every head, vmap, counts, regulariser."""

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxcl.core.heads import FUSE_UP_TO, HEADS, LeafSpec, fused_linear_heads
from jaxcl.core.hypernet import (
    HypernetConfig,
    Hypernetwork,
    compression_table,
    count_params,
    generate_under,
    head_name,
    head_param_count,
    init_task_embedding,
    parameter_report,
)
from jaxcl.core.regularizers import output_regularizer, previous_tasks, task_outputs
from jaxcl.models import MLP, split_model

CONFIG = HypernetConfig(num_tasks=6)


def _shapes(tree):
    return jax.tree.map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), tree)


def _expected_roles(k):
    """Every leaf that HN-k generates for the slim ResNet-18, with its head's role, written out:
    the classifier; stages k+1..4 (two blocks each: two convs and two norms, plus a shortcut conv
    and norm in the first block of stages 2..4); and the stem too for k = 0."""
    roles = {("classifier", "kernel"): "dense", ("classifier", "bias"): "table"}
    if k == 0:
        roles |= {("stem_conv", "kernel"): "conv", ("stem_norm", "scale"): "table",
                  ("stem_norm", "bias"): "table"}
    for stage in range(k + 1, 5):
        for block in (0, 1):
            shortcut = ("shortcut",) if stage > 1 and block == 0 else ()
            for conv in ("conv1", "conv2", *(f"{s}_conv" for s in shortcut)):
                roles[(f"stage{stage}_block{block}", conv, "kernel")] = "conv"
            for norm in ("norm1", "norm2", *(f"{s}_norm" for s in shortcut)):
                for leaf in ("scale", "bias"):
                    roles[(f"stage{stage}_block{block}", norm, leaf)] = "table"
    return roles


# Leaf counts of _expected_roles, by hand: conv 1 + 8 x 2 + 3, table 1 + 2 x (1 + 16 + 3), ...
EXPECTED_COUNTS = {0: {"conv": 20, "table": 41, "dense": 1},
                   1: {"conv": 15, "table": 31, "dense": 1},
                   2: {"conv": 10, "table": 21, "dense": 1},
                   3: {"conv": 5, "table": 11, "dense": 1},
                   4: {"table": 1, "dense": 1}}


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_generated_tree_matches_target_for_every_k(k):
    split = split_model("resnet", k, num_classes=5, head=True)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    features = x
    if split.lower is not None:
        phi = jax.eval_shape(split.lower.init, jax.random.key(0), x)
        features = jax.eval_shape(split.lower.apply, phi, x)
    target = jax.eval_shape(split.upper.init, jax.random.key(0), features)["params"]
    hnet = Hypernetwork.for_target(split.upper, features, config=CONFIG)
    psi = jax.eval_shape(hnet.init, jax.random.key(0), 0)
    generated = jax.eval_shape(hnet.apply, psi, jnp.int32(3))
    assert jax.tree.structure(generated) == jax.tree.structure(target)
    assert _shapes(generated) == _shapes(target)
    roles = _expected_roles(k)
    assert set(traverse_util.flatten_dict(generated)) == set(roles)
    assert {spec.path: spec.role for spec in hnet.specs} == roles
    counts = {role: list(roles.values()).count(role) for role in set(roles.values())}
    assert counts == EXPECTED_COUNTS[k]
    # k = 4 generates only the classifier; k = 0 the stem and every stage too.
    stages = [f"stage{s}_block{b}" for s in range(k + 1, 5) for b in (0, 1)]
    stem = ["stem_conv", "stem_norm"] if k == 0 else []
    assert set(generated) == {"classifier", *stages, *stem}


def _mlp_hnet(generate=None, num_tasks=5):
    x = jnp.ones((3, 6))
    target = MLP(num_classes=4, hidden=(16,))
    kwargs = {} if generate is None else {"generate": generate}
    hnet = Hypernetwork.for_target(
        target, x, config=HypernetConfig(num_tasks=num_tasks, hidden=(20, 12), chunk_dim=4), **kwargs
    )
    return target, x, hnet


def test_vmap_over_task_ids_and_target_apply(key):
    target, x, hnet = _mlp_hnet()
    psi = jax.jit(hnet.init)(key, 0)
    ids = jnp.array([0, 3, 4], jnp.int32)
    many = jax.jit(jax.vmap(lambda t: hnet.apply(psi, t)))(ids)
    for i, t in enumerate(ids):
        one = jax.jit(hnet.apply)(psi, t)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-6), many, one)
        logits = target.apply({"params": one}, x)
        assert logits.shape == (3, 4)
    # Different tasks get different weights (embeddings differ at initialisation).
    k0, k3 = many["dense0"]["kernel"][0], many["dense0"]["kernel"][1]
    assert float(jnp.abs(k0 - k3).max()) > 1e-3


def test_linear_heads_fused_in_one_product_are_each_head_alone_values_and_gradients(x64, key):
    """``fused_linear_heads`` (what ``Hypernetwork`` runs: the heads of at most ``FUSE_UP_TO``
    floats fused, the larger alone) against every ``dense`` and ``vector`` leaf made by its own
    head module from the trunk's output, in float64."""
    target = MLP(num_classes=4, hidden=(16, 24))
    hnet = Hypernetwork.for_target(target, jnp.ones((2, 6)), config=HypernetConfig(
        num_tasks=3, hidden=(20, 12), chunk_dim=4, vectors="generated"))
    psi = jax.tree.map(lambda a: a.astype(jnp.float64), hnet.init(key, 0))
    psi = jax.tree.map(lambda a, k: a + 0.1 * jax.random.normal(k, a.shape, a.dtype), psi,
                       jax.tree.unflatten(jax.tree.structure(psi),
                                          list(jax.random.split(key, len(jax.tree.leaves(psi))))))
    linear = [s for s in hnet.specs if s.role in ("dense", "vector")]
    assert {s.role for s in linear} == {"dense", "vector"} and len(linear) == 6
    fused_paths = fused_linear_heads(psi["params"], hnet.specs, jnp.ones(12)).keys()
    assert 0 < len(fused_paths) < len(linear)  # some heads fused, the 16x24 kernel's alone
    assert ("dense1", "kernel") in {s.path for s in linear} - set(fused_paths)
    assert FUSE_UP_TO < 16 * 24

    def alone(psi, t):  # each head module on the trunk's output h_t
        _, state = hnet.apply(psi, t, capture_intermediates=True, mutable=["intermediates"])
        h = jax.nn.relu(state["intermediates"]["trunk_1"]["__call__"][0])
        return {s.path: HEADS[s.role](shape=s.shape, chunk_dim=4).apply(
            {"params": psi["params"][head_name(s)]}, h, t) for s in linear}

    def fused(psi, t):
        flat = traverse_util.flatten_dict(hnet.apply(psi, t))
        return {s.path: flat[s.path] for s in linear}

    def scalar(f):
        return lambda psi, t: sum(jnp.sum(jnp.sin(3.0 * v)) for v in f(psi, t).values())

    for t in range(3):
        got, want = fused(psi, jnp.int32(t)), alone(psi, jnp.int32(t))
        for path in want:
            np.testing.assert_allclose(got[path], want[path], rtol=1e-12, atol=1e-14)
        g_fused = jax.grad(scalar(fused))(psi, jnp.int32(t))
        g_alone = jax.grad(scalar(alone))(psi, jnp.int32(t))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14),
                     g_fused, g_alone)


def _head_inputs(role, shape):
    spec = LeafSpec(("m", "scale" if role == "table" else "kernel"), shape, jnp.float32, role)
    return spec


@pytest.mark.parametrize("role", sorted(HEADS))
def test_every_head(role, key):
    shape = {"conv": (3, 3, 16, 32), "dense": (40, 24), "table": (24,), "vector": (24,),
             "shared": (40, 24)}[role]
    kwargs = {"table": {"num_tasks": 3, "fill": 1.0}, "vector": {"fill": 1.0}}.get(role, {})
    head = HEADS[role](shape=shape, chunk_dim=8, **kwargs)
    h = jax.nn.relu(jax.random.normal(key, (3, 32))) * jnp.sqrt(2.0)  # E[h^2] = 1
    params = head.init(key, h[0], jnp.int32(0))
    outs = jax.vmap(lambda hi, t: head.apply(params, hi, t))(h, jnp.arange(3))
    assert outs.shape == (3, *shape)
    spec = LeafSpec(("m", "scale" if role in ("table", "vector") else "kernel"), shape, jnp.float32,
                    role)
    assert count_params(params) == head_param_count(spec, HypernetConfig(num_tasks=3,
                                                                         chunk_dim=8))
    if role in ("conv", "dense"):
        # Task-dependent, with the variance of Flax's default initialiser (1 / fan_in).
        assert float(jnp.abs(outs[0] - outs[1]).max()) > 1e-3
        fan_in = math.prod(shape[:-1])
        ratio = float(jnp.var(outs[0])) * fan_in
        assert 0.4 < ratio < 2.5, ratio
    elif role == "table":
        np.testing.assert_array_equal(outs, 1.0)  # scales start at 1, one row per task
        params = jax.tree.map(lambda t: t.at[1].add(2.0), params)
        assert float(head.apply(params, h[0], jnp.int32(1)).mean()) == 3.0
        assert float(head.apply(params, h[0], jnp.int32(2)).mean()) == 1.0
    elif role == "vector":
        np.testing.assert_array_equal(outs, 1.0)  # starts at the fill for every task...
        params = jax.tree.map(lambda a: a + 0.1, params)
        moved = jax.vmap(lambda hi: head.apply(params, hi, 0))(h)
        assert float(jnp.abs(moved[0] - moved[1]).max()) > 1e-3  # ...and is generated from h_t
    else:
        np.testing.assert_array_equal(outs[0], outs[2])  # the same for every task


def test_compression_matches_hand_count_for_one_conv_layer():
    # One 3x3 conv, 16 -> 32 channels; trunk output h = 32; lookup dimension d.
    shape, h = (3, 3, 16, 32), 32
    spec = LeafSpec(("conv", "kernel"), shape, jnp.float32, "conv")
    hnet = Hypernetwork(specs=(spec,), config=HypernetConfig(num_tasks=1, hidden=(50, h),
                                                             chunk_dim=8))
    rows = compression_table(hnet, (4, 8, 16, 32, 64))
    for row in rows:
        d = row["chunk_dim"]
        ours = d * 32 + (h + d + 1) * (3 * 3 * 16)
        direct = h * 3 * 3 * 16 * 32
        assert row["params"] == ours and row["direct_params"] == direct
        assert row["compression"] == pytest.approx(direct / ours)
    assert rows[1]["params"] == 8 * 32 + 41 * 144 == 6160
    # The report's counts are the real parameter counts of the initialised hypernetwork.
    psi = jax.eval_shape(hnet.init, jax.random.key(0), 0)["params"]
    heads, trunk = parameter_report(hnet)
    assert count_params(psi[head_name(spec)]) == heads[0].params == 6160
    assert count_params(psi) == heads[0].params + trunk


def test_generate_filter_keeps_other_leaves_shared(key):
    target, x, hnet = _mlp_hnet(generate=generate_under("classifier"))
    roles = {spec.path: spec.role for spec in hnet.specs}
    assert roles[("classifier", "kernel")] == "dense" and roles[("classifier", "bias")] == "table"
    assert roles[("dense0", "kernel")] == "shared" and roles[("dense0", "bias")] == "shared"
    psi = jax.jit(hnet.init)(key, 0)
    a, b = jax.jit(hnet.apply)(psi, 0), jax.jit(hnet.apply)(psi, 2)
    np.testing.assert_array_equal(a["dense0"]["kernel"], b["dense0"]["kernel"])
    only = jax.jit(lambda p: hnet.apply(p, 1, task_only=True))(psi)
    assert set(traverse_util.flatten_dict(only)) == {("classifier", "kernel"), ("classifier", "bias")}


def test_output_regularizer(key):
    _, _, hnet = _mlp_hnet()
    psi = jax.jit(hnet.init)(key, 0)
    ids = jnp.array([0, 1, 2], jnp.int32)
    reg = jax.jit(lambda p, f, m: output_regularizer(hnet, p, task_outputs(hnet, f, ids), ids, m))
    mask = jnp.array([True, True, False])
    assert float(reg(psi, psi, mask)) == 0.0  # psi equals the frozen copy
    moved = jax.tree.map(lambda p: p + 0.01, psi)
    value = float(reg(moved, psi, mask))
    assert value > 0
    # Independent: mean over the two real tasks of the summed squared differences.
    out_new = [jax.jit(hnet.apply)(moved, t) for t in (0, 1)]
    out_old = [jax.jit(hnet.apply)(psi, t) for t in (0, 1)]
    expected = np.mean([
        sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(jax.tree.leaves(n), jax.tree.leaves(o)))
        for n, o in zip(out_new, out_old)
    ])
    assert value == pytest.approx(expected, rel=1e-4)
    assert float(reg(moved, psi, jnp.zeros(3, bool))) == 0.0


@pytest.mark.parametrize("task_id", [0, 2, 7])
def test_previous_tasks(task_id, key):
    ids, mask = jax.jit(previous_tasks, static_argnums=(1, 2))(jnp.int32(task_id), 8, 4, key)
    assert ids.shape == mask.shape == (4,)
    real = set(np.asarray(ids)[np.asarray(mask)].tolist())
    assert len(real) == min(task_id, 4) and all(j < task_id for j in real)


def test_init_task_embedding(key):
    _, _, hnet = _mlp_hnet()
    psi = jax.jit(hnet.init)(key, 0)
    table = psi["params"]["embedding"]
    copied = init_task_embedding(psi, 3, mode="copy_prev", key=key)
    new = copied["params"]["embedding"]
    np.testing.assert_array_equal(new[3], table[2])
    np.testing.assert_array_equal(np.delete(new, 3, 0), np.delete(table, 3, 0))
    drawn = init_task_embedding(psi, 3, mode="random", key=jax.random.key(9))
    assert float(jnp.abs(drawn["params"]["embedding"][3] - table[3]).max()) > 0
    with pytest.raises(ValueError, match="'nearest'"):
        init_task_embedding(psi, 3, mode="nearest", key=key)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_tasks": 0}, "num_tasks must be a positive integer, got 0"),
        ({"num_tasks": 3, "hidden": ()}, "hidden"),
        ({"num_tasks": 3, "chunk_dim": -2}, "chunk_dim"),
        ({"num_tasks": 3, "new_task_init": "zeros"}, "'zeros'"),
    ],
)
def test_config_errors_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HypernetConfig(**kwargs)


def test_import_does_not_import_tensorflow():
    code = "import sys, jaxcl; print(any(m.split('.')[0] == 'tensorflow' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
