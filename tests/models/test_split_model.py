"""The slim ResNet-18: parameter count by hand, the split at every k, normalisation modes."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxcl.core.hypernet import count_params
from jaxcl.models import MLP, MODELS, SlimResNet18, split_model


def _hand_count(nf, num_classes):
    """Conv kernels (no biases), two affine parameters per normalised channel, the classifier."""
    total = 3 * 3 * 3 * nf + 2 * nf  # stem
    c_in = nf
    for stage in range(4):
        c = nf * 2**stage
        for block in range(2):
            total += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c
            if c_in != c:
                total += c_in * c + 2 * c  # projection shortcut
            c_in = c
    return total + (8 * nf + 1) * num_classes


def test_parameter_count_matches_hand_count():
    shapes = jax.eval_shape(SlimResNet18(100).init, jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    assert count_params(shapes["params"]) == _hand_count(20, 100)
    assert shapes["params"]["classifier"]["kernel"].shape == (160, 100)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_split_composes_to_the_full_network(k, key):
    x = jax.random.normal(key, (4, 16, 16, 3))
    full = SlimResNet18(num_classes=3, nf=4)
    params = jax.jit(full.init)(key, x)["params"]
    split = split_model("resnet", k, num_classes=3, head=True, nf=4)
    flat = traverse_util.flatten_dict(params)

    def part(module, inputs):
        names = jax.eval_shape(module.init, key, inputs)["params"]
        return {"params": traverse_util.unflatten_dict(
            {p: flat[p] for p in traverse_util.flatten_dict(names)}
        )}

    features = x
    if split.lower is not None:
        phi = part(split.lower, x)
        features = jax.jit(split.lower.apply)(phi, x)
    omega = part(split.upper, features)
    np.testing.assert_allclose(
        jax.jit(split.upper.apply)(omega, features),
        jax.jit(full.apply)({"params": params}, x),
        rtol=1e-5, atol=1e-5,
    )


def test_batch_statistics_mode_has_no_state_and_uses_the_batch(key):
    x = jax.random.normal(key, (8, 8, 8, 3))
    model = SlimResNet18(num_classes=2, nf=4)  # norm="batch"
    variables = jax.jit(model.init)(key, x)
    assert set(variables) == {"params"}
    apply = jax.jit(model.apply)
    full = apply(variables, x)
    half = apply(variables, x[:4])
    # The same samples give other outputs in another batch: statistics are the batch's own.
    assert float(jnp.abs(full[:4] - half).max()) > 1e-4


def test_running_statistics_mode(key):
    x = jax.random.normal(key, (8, 8, 8, 3))
    model = SlimResNet18(num_classes=2, nf=4, norm="running")
    variables = jax.jit(model.init)(key, x)
    assert set(variables) == {"params", "batch_stats"}
    train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    _, updates = train(variables, x)
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
    evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
    full = evaluate(variables, x)
    np.testing.assert_allclose(full[:4], evaluate(variables, x[:4]), rtol=1e-5, atol=1e-6)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="k=5"):
        split_model("resnet", 5, num_classes=3, head=True)
    with pytest.raises(ValueError, match="'group'"):
        split_model("resnet", 2, num_classes=3, head=True, norm="group")
    with pytest.raises(ValueError, match="'group'"):
        split_model("resnet", 2, num_classes=3, head=True, upper_norm="group")
    with pytest.raises(ValueError, match="k=2"):
        split_model("mlp", 2, num_classes=3, head=True, hidden=(8,))
    with pytest.raises(ValueError, match=re.escape(f"model='vit' is not one of {MODELS}")):
        split_model("vit", 0, num_classes=3, head=True)
    with pytest.raises(ValueError, match="'layer'"):
        SlimResNet18(3, norm="layer")
    with pytest.raises(ValueError, match=re.escape("conv='cudnn' is not one of")):
        split_model("resnet", 1, num_classes=3, head=True, conv="cudnn")


def test_conv_choice_changes_speed_not_numbers(key):
    """On CPU ``"auto"`` is the chunked convolution: the stem and stage 1 at batch 48 x 32x32x8
    (1.5 MB, above the 1 MB that is left whole) take their filter gradients in chunks of 10
    samples, with the same values (its gradients: ``tests/models/test_conv.py``)."""
    assert jax.default_backend() == "cpu"
    x = jax.random.normal(key, (48, 32, 32, 3))
    nets = {conv: SlimResNet18(3, nf=8, last_stage=1, conv=conv) for conv in ("auto", "xla")}
    params = nets["xla"].init(key, x)

    def loss(p, conv):
        return jnp.sum(nets[conv].apply(p, x) ** 2)

    jaxprs = {conv: str(jax.make_jaxpr(jax.grad(loss), static_argnums=1)(params, conv))
              for conv in nets}
    # Filter gradients (the filter's shape): the stem's and stage 1's four, 5 chunks each.
    for conv, chunks in (("auto", 5), ("xla", 1)):
        assert jaxprs[conv].count("f32[3,3,3,8] = conv_general_dilated") == chunks
        assert jaxprs[conv].count("f32[3,3,8,8] = conv_general_dilated") == 4 * chunks
    np.testing.assert_allclose(nets["auto"].apply(params, x), nets["xla"].apply(params, x),
                               rtol=1e-6, atol=1e-6)


def test_mlp(key):
    x = jnp.ones((5, 2, 3))
    out = MLP(num_classes=4, hidden=(8, 8)).init_with_output(key, x)[0]
    assert out.shape == (5, 4)
