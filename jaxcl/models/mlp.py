"""A small MLP classifier: the fast target for tests and demos."""

from __future__ import annotations

import flax.linen as nn
import jax


class MLP(nn.Module):
    """``x -> Dense -> ReLU -> ... -> Dense(num_classes)``, on flattened inputs."""

    num_classes: int
    hidden: tuple[int, ...] = (32,)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        del train  # the same signature as the ResNet parts
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"dense{i}")(x))
        return nn.Dense(self.num_classes, name="classifier")(x)
