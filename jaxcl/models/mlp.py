"""A small MLP: the fast target for tests and demos, as a classifier or as a feature extractor."""

from __future__ import annotations

import flax.linen as nn
import jax


class MLP(nn.Module):
    """``x -> Dense -> ReLU -> ... [-> Dense(num_classes)]``, on flattened inputs.

    With ``head=False`` the module stops at the last hidden layer (or returns the flattened input
    when ``hidden`` is empty): the feature extractor of the multi-head baselines.
    """

    num_classes: int = 0
    hidden: tuple[int, ...] = (32,)
    head: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        del train  # the same signature as the ResNet parts
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"dense{i}")(x))
        if self.head:
            x = nn.Dense(self.num_classes, name="classifier")(x)
        return x
