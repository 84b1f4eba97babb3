"""How a hypernetwork starts, against the formulas of each scheme (``jaxcl.core.heads.INITS``).

``"torch"`` is the reference implementation's: PyTorch's default ``nn.Linear`` (weights and biases
uniform on ``+-1/sqrt(fan_in)``, variance ``1 / (3 fan_in)``) in the trunk and in every head's
linear map, ``N(0, 1)`` task embeddings and lookup vectors. Over many initialisations the second
moments then follow from the layer widths alone (ReLU halves a symmetric pre-activation's)::

    E[z_1^2] = (E[e^2] + 1 / n_0) / 3,            E[h_1^2] = E[z_1^2] / 2
    E[z_2^2] = (E[h_1^2] + 1 / n_1) / 3,          E[h_2^2] = E[z_2^2] / 2
    Var(conv kernel) = (n_h E[h^2] + d + 1) / (3 (n_h + d))
    Var(dense kernel) = (E[h^2] + 1 / n_h) / 3

with ``n_0 = 32`` (embedding), ``n_1 = 50``, ``n_h = 32`` (the trunk's widths) and ``d`` the
lookup dimension; for the study's sizes ``E[h_2^2] ~ 0.032`` and a conv kernel's std ~0.42.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.core.heads import INITS, LeafSpec, torch_uniform
from jaxcl.core.hypernet import HypernetConfig, Hypernetwork

CONV = LeafSpec(("block", "conv", "kernel"), (3, 3, 40, 80), jnp.float32, "conv")
DENSE = LeafSpec(("classifier", "kernel"), (160, 10), jnp.float32, "dense")


def _many_inits(init, n=400, d=32):
    """Trunk pre-activations and generated kernels of ``n`` independent initialisations."""
    hnet = Hypernetwork(specs=(CONV, DENSE),
                        config=HypernetConfig(num_tasks=1, chunk_dim=d, init=init))

    def one(key):
        psi = hnet.init(key, 0)
        out, state = hnet.apply(psi, 0, capture_intermediates=True)
        inter = state["intermediates"]
        z = [inter[f"trunk_{i}"]["__call__"][0] for i in range(2)]
        return psi, z, out

    return jax.vmap(one)(jax.random.split(jax.random.key(1), n))


def test_torch_uniform_bounds_and_variance():
    for fan_in in (3, 32, 1440):
        w = torch_uniform(fan_in)(jax.random.key(fan_in), (200_000,))
        bound = 1 / math.sqrt(fan_in)
        assert float(jnp.abs(w).max()) <= bound
        assert float(jnp.abs(w).max()) > 0.99 * bound
        np.testing.assert_allclose(float(jnp.var(w)), 1 / (3 * fan_in), rtol=0.02)


def test_torch_init_matches_pytorch_linear_in_trunk_and_heads():
    psi, _, _ = _many_inits("torch", n=4)
    params = psi["params"]
    for name, fan_in in (("trunk_0", 32), ("trunk_1", 50)):
        for leaf in ("kernel", "bias"):
            w = params[name][leaf]
            assert float(jnp.abs(w).max()) <= 1 / math.sqrt(fan_in)
            np.testing.assert_allclose(float(jnp.var(w)), 1 / (3 * fan_in), rtol=0.25)
    conv = params["conv:block.conv.kernel"]
    np.testing.assert_allclose(float(jnp.var(conv["lookup"])), 1.0, rtol=0.1)  # nn.Embedding
    for leaf in ("kernel", "bias"):  # Linear(n_h + d, prod(shape[:-1]))
        assert float(jnp.abs(conv["linear"][leaf]).max()) <= 1 / math.sqrt(32 + 32)
    dense = params["dense:classifier.kernel"]["linear"]
    for leaf in ("kernel", "bias"):  # Linear(n_h, prod(shape))
        assert float(jnp.abs(dense[leaf]).max()) <= 1 / math.sqrt(32)
        np.testing.assert_allclose(float(jnp.var(dense[leaf])), 1 / 96, rtol=0.05)


def test_torch_init_second_moments_follow_the_formulas():
    _, (z1, z2), out = _many_inits("torch")
    h1_ms = (1.0 + 1 / 32) / 3 / 2
    np.testing.assert_allclose(float(jnp.mean(z1 ** 2)), 2 * h1_ms, rtol=0.1)
    h2_ms = (h1_ms + 1 / 50) / 3 / 2
    np.testing.assert_allclose(float(jnp.mean(jax.nn.relu(z2) ** 2)), h2_ms, rtol=0.15)
    assert 0.025 < h2_ms < 0.04  # the reference's trunk output, ~0.03
    conv_var = (32 * h2_ms + 32 + 1) / (3 * (32 + 32))
    np.testing.assert_allclose(float(jnp.var(out["block"]["conv"]["kernel"])), conv_var, rtol=0.1)
    assert 0.40 < math.sqrt(conv_var) < 0.44  # std ~0.42 whatever the kernel's fan-in
    dense_var = (h2_ms + 1 / 32) / 3
    np.testing.assert_allclose(float(jnp.var(out["classifier"]["kernel"])), dense_var, rtol=0.1)


def test_lecun_init_gives_kernels_their_fan_in_variance():
    _, (z1, z2), out = _many_inits("lecun", n=100)
    np.testing.assert_allclose(float(jnp.mean(jax.nn.relu(z2) ** 2)), 1.0, rtol=0.25)  # He
    for leaf, spec in (("conv", CONV), ("classifier", DENSE)):
        kernel = out["block"]["conv"]["kernel"] if leaf == "conv" else out["classifier"]["kernel"]
        ratio = float(jnp.var(kernel)) * math.prod(spec.shape[:-1])
        assert 0.6 < ratio < 1.6, (leaf, ratio)


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match=r"init='xavier' is not one of \('lecun', 'torch'\)"):
        HypernetConfig(num_tasks=1, init="xavier")
    assert INITS == ("lecun", "torch")
