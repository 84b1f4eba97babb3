"""The multi-head strategies (Naive, EWC, Frozen-k, LR-k) on Flax NNX models: a step equals the
step of the Linen twin given the same parameters, and an NNX latent-replay run trains."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from support import tiny_stream

from jaxcl import Batch
from jaxcl.core.nnx_target import NnxFeatures
from jaxcl.learners import EWC, Frozen, LatentReplay, Naive
from jaxcl.models import MLP, MultiHeadClassifier
from jaxcl.train.loop import train_stream

NUM_TASKS, CLASSES = 3, 2


class NnxDense(nnx.Module):
    """The twin of ``MLP(hidden=(width,), head=False)``: flatten, ``dense0``, ReLU."""

    def __init__(self, features, width, rngs):
        self.dense0 = nnx.Linear(features, width, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.dense0(x.reshape(x.shape[0], -1)))


def _learners(kind, features):
    """``(NNX learner, Linen twin)`` of ``kind`` on ``features``-wide flattened inputs."""
    optimizer = optax.adam(1e-2)
    rngs = nnx.Rngs(0)
    if kind in ("naive", "ewc"):
        cls = Naive if kind == "naive" else EWC
        nets = (MultiHeadClassifier(NnxDense(features, 8, rngs), NUM_TASKS, CLASSES),
                MultiHeadClassifier(MLP(hidden=(8,), head=False), NUM_TASKS, CLASSES))
        return [cls(net, optimizer, batch_size=16) for net in nets]
    lowers = (NnxDense(features, 8, rngs), MLP(hidden=(8,), head=False))
    uppers = (NnxDense(8, 6, rngs), MLP(hidden=(6,), head=False))
    cls = Frozen if kind == "frozen" else LatentReplay
    extra = {} if kind == "frozen" else {"classes_per_task": CLASSES, "memory_size": 8,
                                         "replay_batch_size": 4}
    return [cls(lower, MultiHeadClassifier(upper, NUM_TASKS, CLASSES), optimizer, **extra)
            for lower, upper in zip(lowers, uppers)]


@pytest.mark.parametrize("kind", ["naive", "ewc", "frozen", "latent_replay"])
def test_an_nnx_model_steps_as_its_linen_twin(kind, key):
    """Both phases: the NNX learner's step from its own initial parameters equals the Linen
    twin's step from the same parameters (losses, accuracies, updated parameters)."""
    stream = tiny_stream(num_tasks=NUM_TASKS)
    x, y = stream[0].x_train[:16], stream[0].y_train[:16]
    nnx_learner, linen_learner = _learners(kind, int(np.prod(x.shape[1:])))
    assert isinstance(nnx_learner.net.features, NnxFeatures)
    assert isinstance(getattr(nnx_learner, "lower", None), NnxFeatures | None)
    state = nnx_learner.init(key, x)
    # The NNX parameters sit one level deeper ({"nnx": ...}); dict keys sort alike, so the
    # leaves line up one for one with the twin's.
    structure = jax.tree.structure(linen_learner.init(key, x))
    twin = jax.tree.unflatten(structure, jax.tree.leaves(state))
    batch = Batch(x, y)
    for first, task in ((True, 0), (False, 1)):
        got, m_nnx = nnx_learner.train_step(state, batch, jnp.int32(task), key, first=first)
        want, m_linen = linen_learner.train_step(twin, batch, jnp.int32(task), key, first=first)
        for name in m_linen:
            np.testing.assert_allclose(m_nnx[name], m_linen[name], rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            nnx_learner.logits(got, x, jnp.int32(task)),
            linen_learner.logits(want, x, jnp.int32(task)), rtol=1e-5, atol=1e-6)
        state, twin = got, want


def test_latent_replay_trains_an_nnx_model(key):
    stream = tiny_stream(num_tasks=2)
    learner, _ = _learners("latent_replay", int(np.prod(stream[0].x_train.shape[1:])))
    result = train_stream(learner, stream, key=key, epochs=3, batch_size=16)
    # Through the whole loop (both phases compiled, the buffer filled): the first task is
    # learnt (two classes, chance 0.5), the second is above chance on the frozen features.
    assert result.matrix.shape == (2, 2) and result.matrix[0, 0] > 0.9, result.matrix
    assert result.matrix[1, 1] > 0.6, result.matrix
