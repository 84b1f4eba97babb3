"""The heads of a hypernetwork: each maps the trunk output ``h_t`` to one leaf of the target.

A hypernetwork (:mod:`jaxcl.core.hypernet`) gives every leaf of its target's ``params`` its own
head, chosen by the leaf's role (:func:`leaf_role`, :data:`HEADS`). This module holds the roles,
the heads and how each starts; the hypernetwork holds the embedding table and the trunk that feed
them, and the parameter counts that compare them.

Heads, by the leaf's role (see :data:`HEADS`):

* ``conv`` (kernels of rank >= 3, shape ``(..., c_in, c_out)``): channel-wise generation. Output
  channel ``c`` has a learned lookup vector ``l_c`` of dimension ``d``; one shared linear map takes
  ``[h_t, l_c]`` to that channel's kernel, ``W[..., c] = A [h_t; l_c] + b``. Parameters:
  ``d * c_out + (h + d + 1) * prod(kernel_shape[:-1])`` instead of ``h * prod(kernel_shape)``.
* ``dense`` (rank-2 kernels): a linear head ``W = reshape(A h_t + b)``.
* ``table`` (biases, normalisation scales and shifts): a per-task table, not generated,
  initialised to 1 for scales and 0 otherwise.
* ``vector`` (the same leaves with ``HypernetConfig(vectors="generated")``): generated as well,
  ``v = A h_t + b`` with ``A`` initialised to 0, so that every task starts from the table's fill;
  weights and biases then both come from ``e_t``, as in the "DynamicLinear" layers of the
  Hypernet-SDE-Flow study.
* ``shared`` (leaves the ``generate`` filter leaves out): one ordinary trained parameter, the same
  for every task.

How the generated heads and the trunk start is a value, :data:`INITS`:

* ``"lecun"``: a generated kernel has, at initialisation, the variance of Flax's default (LeCun
  normal, ``1 / fan_in``) initialiser of the same leaf; the trunk uses He initialisation so that
  ``E[h^2] ~ 1`` at every depth.
* ``"torch"``: the reference implementation's, PyTorch's default ``nn.Linear``: weights and biases
  of the trunk and of every head's linear map uniform on ``+-1 / sqrt(fan_in)`` (variance
  ``1 / (3 fan_in)``), ``fan_in`` the linear map's input width. With a 32-dimensional ``N(0, 1)``
  embedding and the trunk 32 -> 50 -> 32 this gives ``E[h^2] ~ 0.03`` and, in a conv head whose
  input is ``[h_t; l_c]`` with ``N(0, 1)`` lookups of dimension ``d``, a generated-kernel variance
  of ``(h E[h^2] + d + 1) / (3 (h + d))`` whatever the kernel's size (std ~0.42 at h = d = 32):
  the kernels are mostly the task-independent lookup term.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Path = tuple[str, ...]
Role = Literal["conv", "dense", "table", "vector", "shared"]
INITS = ("lecun", "torch")
"""How the trunk and the generated heads start (the module docstring gives both)."""


# ----------------------------------------------------------------------------------------------
# Leaves of the target and their roles.


class LeafSpec(NamedTuple):
    """One leaf of the target's ``params``: where it is, its shape and dtype, and its head."""

    path: Path
    shape: tuple[int, ...]
    dtype: Any
    role: Role


def leaf_role(path: Path, shape: Sequence[int], vectors: str = "table") -> Role:
    """The head a generated leaf gets: ``conv`` or ``dense`` kernels, else ``vectors``' head
    (a per-task ``table``, or a generated ``vector``)."""
    if path[-1] == "kernel" and len(shape) >= 3:
        return "conv"
    if path[-1] == "kernel" and len(shape) == 2:
        return "dense"
    return "vector" if vectors == "generated" else "table"


# ----------------------------------------------------------------------------------------------
# Heads. Each one maps the trunk output h_t (and the task id) to one leaf of the target.


def _kernel_init(fan_in: int):
    """Head-matrix init that gives generated kernels LeCun variance ``1 / fan_in``.

    The head's inputs have second moment ~1, so ``Var(A) = 1 / (fan_in * n_inputs)`` gives
    ``Var(A x) = 1 / fan_in``.
    """
    return nn.initializers.variance_scaling(1.0 / fan_in, "fan_in", "truncated_normal")


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's default ``nn.Linear`` initialiser of weights and biases alike:
    ``U(-1 / sqrt(fan_in), 1 / sqrt(fan_in))``, ``fan_in`` the layer's input width."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def linear(features: int, fan_in: int, scheme: str, *, lecun_fan_in: int, name: str) -> nn.Dense:
    """A head's linear map by ``scheme`` (:data:`INITS`): ``"lecun"`` draws its matrix so that the
    output has variance ``1 / lecun_fan_in`` (the generated leaf's fan-in) and starts its bias at
    0; ``"torch"`` draws matrix and bias by :func:`torch_uniform` of its own input width
    ``fan_in``."""
    if scheme == "torch":
        return nn.Dense(features, kernel_init=torch_uniform(fan_in),
                        bias_init=torch_uniform(fan_in), name=name)
    return nn.Dense(features, kernel_init=_kernel_init(lecun_fan_in), name=name)


class Head(nn.Module):
    """What every head is made for: the ``shape`` of the leaf it makes, and ``chunk_dim``, the
    lookup dimension ``d`` (read by the conv head only); each head adds its own settings."""

    shape: tuple[int, ...]
    chunk_dim: int


class ChannelwiseConvHead(Head):
    """``W[..., c] = A [h_t; l_c] + b`` for each output channel ``c`` (lookup vectors ``l_c``)."""

    scheme: str = "lecun"

    @nn.compact
    def __call__(self, h: jax.Array, task_id: jax.Array) -> jax.Array:
        del task_id
        c_out = self.shape[-1]
        channel_size = math.prod(self.shape[:-1])
        lookup = self.param(
            "lookup", nn.initializers.normal(1.0), (c_out, self.chunk_dim), jnp.float32
        )
        inputs = jnp.concatenate([jnp.broadcast_to(h, (c_out, h.shape[-1])), lookup], axis=-1)
        per_channel = linear(channel_size, inputs.shape[-1], self.scheme,
                             lecun_fan_in=channel_size, name="linear")(inputs)
        return per_channel.T.reshape(self.shape)


class LinearHead(Head):
    """``W = reshape(A h_t + b)``: direct linear generation of a whole dense kernel."""

    scheme: str = "lecun"

    @nn.compact
    def __call__(self, h: jax.Array, task_id: jax.Array) -> jax.Array:
        del task_id
        flat = linear(math.prod(self.shape), h.shape[-1], self.scheme,
                      lecun_fan_in=math.prod(self.shape[:-1]), name="linear")(h)
        return flat.reshape(self.shape)


class VectorHead(Head):
    """``v = A h_t + b`` with ``A = 0`` and ``b = fill`` at initialisation: a generated bias or
    normalisation parameter that starts, for every task, where a table would."""

    fill: float = 0.0

    @nn.compact
    def __call__(self, h: jax.Array, task_id: jax.Array) -> jax.Array:
        del task_id
        flat = nn.Dense(math.prod(self.shape), kernel_init=nn.initializers.zeros,
                        bias_init=nn.initializers.constant(self.fill), name="linear")(h)
        return flat.reshape(self.shape)


class TaskTable(Head):
    """``theta_t = T[t]``: a per-task table, 1 for normalisation scales and 0 for the rest."""

    num_tasks: int = 1
    fill: float = 0.0

    @nn.compact
    def __call__(self, h: jax.Array, task_id: jax.Array) -> jax.Array:
        del h
        table = self.param(
            "table", nn.initializers.constant(self.fill), (self.num_tasks, *self.shape), jnp.float32
        )
        return table[task_id]


class SharedParam(Head):
    """One ordinary trained parameter, the same for every task (a leaf left out of generation)."""

    fill: float | None = None

    @nn.compact
    def __call__(self, h: jax.Array, task_id: jax.Array) -> jax.Array:
        del h, task_id
        if self.fill is None:  # a kernel: Flax's default Dense/Conv initialiser
            init = nn.initializers.lecun_normal()
        else:
            init = nn.initializers.constant(self.fill)
        return self.param("value", init, self.shape, jnp.float32)


HEADS: dict[str, type[nn.Module]] = {
    "conv": ChannelwiseConvHead,
    "dense": LinearHead,
    "table": TaskTable,
    "vector": VectorHead,
    "shared": SharedParam,
}
"""The head for each leaf role; registered heads are property-tested one by one."""


FUSE_UP_TO = 256
"""The largest head (outputs per task) :func:`fused_linear_heads` fuses; larger heads run alone."""


def fused_linear_heads(params: Any, specs: Sequence[LeafSpec], h: jax.Array,
                       up_to: int = FUSE_UP_TO) -> dict[Path, jax.Array]:
    """Every ``dense`` and ``vector`` leaf of at most ``up_to`` floats, ``theta[leaf] =
    reshape(A_leaf h + b_leaf)``, as one product ``h [A_1 ... A_n] + [b_1 ... b_n]`` split by
    leaf: the same numbers as each head alone (``LinearHead``, ``VectorHead``), in one operation
    instead of one per leaf. Small heads are fused because their step is per-operation overhead;
    large ones are left to their own modules: concatenating their kernels at every call, and the
    cotangent's contraction over thousands of concatenated outputs, cost more on XLA CPU than
    the operations saved (the study's hypernetworks, whose two 32x32 kernels' heads have 1,024
    outputs: 1.12 against 1.41 ms a step fusing all, ``docs/devnotes/performance.md``)."""
    linear = [s for s in specs if s.role in ("dense", "vector") and math.prod(s.shape) <= up_to]
    if not linear:
        return {}
    heads = [params[head_name(s)]["linear"] for s in linear]
    flat = (h @ jnp.concatenate([p["kernel"] for p in heads], axis=-1)
            + jnp.concatenate([p["bias"] for p in heads]))
    ends = list(itertools.accumulate(math.prod(s.shape) for s in linear))
    return {s.path: piece.reshape(s.shape)
            for s, piece in zip(linear, jnp.split(flat, ends[:-1], axis=-1))}


def head_name(spec: LeafSpec) -> str:
    """The name of a leaf's head inside ``psi["params"]``: its role and its target path."""
    return f"{spec.role}:{'.'.join(spec.path)}"


def initial_fill(spec: LeafSpec) -> float | None:
    """What a head of ``spec`` starts from: ``None`` for a kernel (its initialiser draws it), 1
    for a normalisation scale, 0 for the rest."""
    if spec.path[-1] == "kernel":
        return None
    return 1.0 if spec.path[-1] == "scale" else 0.0
