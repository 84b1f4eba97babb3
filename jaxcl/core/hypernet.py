"""Hypernetworks: pure functions from a task id to the parameter pytree of a target Flax module.

A hypernetwork ``H_psi`` holds a learned task-embedding table ``e`` and maps a task id ``t`` to
parameters ``theta_t = H_psi(e_t)`` laid out leaf for leaf like the ``params`` of a target module,
so that ``target.apply({"params": hnet.apply(psi, t)}, x)`` just works. The target's leaves are
read with ``jax.eval_shape(target.init, ...)``; nothing is wired by hand per model. A Flax NNX
target (``nnx.Module``) is split into its graph definition and parameter state first
(:mod:`jaxcl.core.nnx_target`): ``theta_t`` is then its ``nnx.Param`` state as a nested dict.

Structure (von Oswald et al., ICLR 2020; the partial-hypernetwork variant of Hemati et al., CoLLAs
2023)::

    e_t = E[t]                                 task embedding (dim 32)
    h_t = MLP(e_t)                             trunk, hidden sizes (50, 32), ReLU
    theta_t[leaf] = head_leaf(h_t, t)          one head per target leaf, chosen by its role

Each target leaf gets a head by its role (:mod:`jaxcl.core.heads`): channel-wise generation for
conv kernels, a linear head for dense kernels, per-task tables (or generated vectors) for biases
and normalisation scales and shifts, and one shared parameter for leaves left out of generation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import nnx, traverse_util

from jaxcl.core.heads import (  # noqa: F401  (head_name: part of the hypernetwork's API)
    HEADS,
    INITS,
    LeafSpec,
    Path,
    Role,
    fused_linear_heads,
    head_name,
    initial_fill,
    leaf_role,
    torch_uniform,
)
from jaxcl.core.nnx_target import NnxTarget, as_target
from jaxcl.types import PyTree

NEW_TASK_INITS = ("copy_prev", "random")
VECTOR_MODES = ("table", "generated")


def generate_all(path: Path) -> bool:
    """Path filter: every leaf of the target comes from the hypernetwork."""
    del path
    return True


def generate_under(*prefixes: str | Sequence[str]) -> Callable[[Path], bool]:
    """Path filter: generate the leaves under any of the given module paths.

    ``generate_under("stage3", ("head", "Dense_0"))`` generates everything below the top-level
    module ``stage3`` and below ``head/Dense_0``; every other leaf stays an ordinary (shared)
    parameter. An NNX target's paths are its attribute paths, list items by their index:
    ``generate_under("blocks/1", "classifier")``.
    """
    normalised = [tuple(p.split("/")) if isinstance(p, str) else tuple(p) for p in prefixes]

    def keep(path: Path) -> bool:
        return any(path[: len(p)] == p for p in normalised)

    return keep


def target_leaf_specs(
    target_params: PyTree, generate: Callable[[Path], bool] = generate_all, vectors: str = "table"
) -> tuple[LeafSpec, ...]:
    """Describe every leaf of a target's ``params`` pytree (arrays or ``ShapeDtypeStruct``s)."""
    flat = traverse_util.flatten_dict(_unfreeze(target_params))
    if not flat:
        raise ValueError("the target has no parameters to generate")
    specs = []
    for path, leaf in flat.items():
        role = leaf_role(path, leaf.shape, vectors) if generate(path) else "shared"
        specs.append(LeafSpec(tuple(path), tuple(leaf.shape), leaf.dtype, role))
    return tuple(specs)


def _unfreeze(tree: PyTree) -> dict:
    if isinstance(tree, Mapping):
        return {k: _unfreeze(v) for k, v in tree.items()}
    return tree


# ----------------------------------------------------------------------------------------------
# Configuration.


@dataclasses.dataclass(frozen=True)
class HypernetConfig:
    """What a hypernetwork is made of.

    Attributes:
      num_tasks: rows of the task-embedding table (and of every per-task table): the most tasks
        the hypernetwork can serve.
      embedding_dim: dimension of a task embedding ``e_t``.
      hidden: widths of the trunk MLP; its last width ``h`` feeds every head.
      chunk_dim: dimension ``d`` of the per-output-channel lookup vectors of the conv heads (the
        paper's 32).
      new_task_init: how :func:`init_task_embedding` initialises a new task's embedding:
        ``"random"`` draws ``N(0, 1)``; ``"copy_prev"`` (the reference's) copies task ``t - 1``'s,
        with which a new task starts as the previous task's network and HN-k learns new tasks
        slowly at small budgets (``docs/results/hn_learnability.md``).
      vectors: biases and normalisation scales and shifts of generated layers: ``"table"``, a
        per-task table; ``"generated"``, generated from ``h_t`` like the kernels.
      init: how the trunk and the generated heads start, one of
        :data:`jaxcl.core.heads.INITS`: ``"lecun"`` (generated kernels with LeCun variance, a He
        trunk) or ``"torch"`` (the reference's PyTorch ``nn.Linear`` default everywhere).
    """

    num_tasks: int
    embedding_dim: int = 32
    hidden: tuple[int, ...] = (50, 32)
    chunk_dim: int = 32
    new_task_init: str = "random"
    vectors: str = "table"
    init: str = "lecun"

    def __post_init__(self):
        _check_positive_int("num_tasks", self.num_tasks)
        _check_positive_int("embedding_dim", self.embedding_dim)
        _check_positive_int("chunk_dim", self.chunk_dim)
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise ValueError(f"hidden must be a non-empty tuple of widths, got {self.hidden!r}")
        for width in self.hidden:
            _check_positive_int("hidden width", width)
        if self.new_task_init not in NEW_TASK_INITS:
            raise ValueError(
                f"new_task_init={self.new_task_init!r} is not one of {NEW_TASK_INITS}"
            )
        if self.vectors not in VECTOR_MODES:
            raise ValueError(f"vectors={self.vectors!r} is not one of {VECTOR_MODES}")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is not one of {INITS}")

    @property
    def trunk_dim(self) -> int:
        return self.hidden[-1]


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# ----------------------------------------------------------------------------------------------
# The hypernetwork.


class Hypernetwork(nn.Module):
    """``t -> theta_t``: task embedding, trunk MLP, one head per target leaf.

    Build it with :meth:`for_target`. ``hnet.init(key, 0)`` gives its variables ``psi``;
    ``hnet.apply(psi, t)`` gives the target's ``params`` for task ``t`` (a traced integer: one
    compilation serves every task; ``jax.vmap`` over task ids generates many tasks at once).
    With ``task_only=True`` only the task-conditioned leaves are returned (generated leaves and
    per-task tables, not shared ones): the outputs the CL output regulariser compares.
    """

    specs: tuple[LeafSpec, ...]
    config: HypernetConfig

    @classmethod
    def for_target(
        cls,
        target: nn.Module | nnx.Module | NnxTarget,
        *sample_args: Any,
        config: HypernetConfig,
        generate: Callable[[Path], bool] = generate_all,
        **sample_kwargs: Any,
    ) -> Hypernetwork:
        """A hypernetwork for ``target``, a Linen or NNX module (:func:`as_target`), whose
        shapes come from ``jax.eval_shape(target.init)``."""
        target = as_target(target)
        shapes = jax.eval_shape(target.init, jax.random.key(0), *sample_args, **sample_kwargs)
        if "params" not in shapes:
            raise ValueError(f"{type(target).__name__} has no 'params' collection to generate")
        return cls.for_params(shapes["params"], config=config, generate=generate)

    @classmethod
    def for_params(
        cls,
        params: PyTree,
        *,
        config: HypernetConfig,
        generate: Callable[[Path], bool] = generate_all,
    ) -> Hypernetwork:
        """A hypernetwork for a parameter pytree (arrays or ``ShapeDtypeStruct``s) of any model,
        e.g. one that several Flax modules and a Diffrax solve share."""
        return cls(specs=target_leaf_specs(params, generate, config.vectors), config=config)

    @nn.compact
    def __call__(self, task_id: jax.Array, task_only: bool = False) -> PyTree:
        cfg = self.config
        task_id = jnp.asarray(task_id, jnp.int32)
        table = self.param(
            "embedding", nn.initializers.normal(1.0), (cfg.num_tasks, cfg.embedding_dim), jnp.float32
        )
        h = table[task_id]
        for i, width in enumerate(cfg.hidden):
            if cfg.init == "torch":
                dense = nn.Dense(width, kernel_init=torch_uniform(h.shape[-1]),
                                 bias_init=torch_uniform(h.shape[-1]), name=f"trunk_{i}")
            else:
                dense = nn.Dense(width, kernel_init=nn.initializers.he_normal(),
                                 name=f"trunk_{i}")
            h = nn.relu(dense(h))
        leaves = {}
        if not self.is_initializing():  # small linear heads: one matrix product for all
            leaves = fused_linear_heads(self.variables["params"], self.specs, h)
        for spec in self.specs:
            if (task_only and spec.role == "shared") or spec.path in leaves:
                continue
            kwargs: dict[str, Any] = {}
            if spec.role in ("table", "vector", "shared"):
                kwargs["fill"] = initial_fill(spec)
            if spec.role == "table":
                kwargs["num_tasks"] = cfg.num_tasks
            if spec.role in ("conv", "dense"):
                kwargs["scheme"] = cfg.init
            head = HEADS[spec.role](
                shape=spec.shape, chunk_dim=cfg.chunk_dim, name=head_name(spec), **kwargs
            )
            leaves[spec.path] = head(h, task_id)
        return traverse_util.unflatten_dict(leaves)


def init_task_embedding(
    psi: PyTree, task_id: int | jax.Array, *, mode: str, key: jax.Array
) -> PyTree:
    """Initialise task ``task_id``'s embedding before training it.

    ``mode="copy_prev"`` sets ``e_t = e_{t-1}`` (task 0 keeps its random initialisation);
    ``mode="random"`` draws ``e_t ~ N(0, I)``. Pure: returns new ``psi``.
    """
    if mode not in NEW_TASK_INITS:
        raise ValueError(f"mode={mode!r} is not one of {NEW_TASK_INITS}")
    table = psi["params"]["embedding"]
    task_id = jnp.asarray(task_id, jnp.int32)
    if mode == "copy_prev":
        row = jnp.where(task_id > 0, table[jnp.maximum(task_id - 1, 0)], table[task_id])
    else:
        row = jax.random.normal(key, table.shape[1:], table.dtype)
    params = {**psi["params"], "embedding": table.at[task_id].set(row)}
    return {**psi, "params": params}


TASK = "task"
SHARED = "shared"


def is_task_param(path: tuple) -> bool:
    """Whether a leaf of ``psi`` at ``path`` (keys, as ``jax.tree_util`` paths give them) holds
    per-task values: the embedding table, or a per-task table head (``table:...``)."""
    keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    return (len(keys) >= 2 and keys[0] == "params"
            and (keys[1] == "embedding" or str(keys[1]).startswith("table:")))


def task_param_labels(tree: PyTree) -> PyTree:
    """``"task"`` for the per-task leaves of a hypernetwork's variables (:func:`is_task_param`),
    ``"shared"`` for every other leaf (of ``psi`` or of any other pytree, e.g. ``phi``): the
    labels of ``optax.multi_transform``."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: TASK if is_task_param(path) else SHARED, tree)


def hypernet_optimizer(learning_rate: float, task_lr_scale: float = 1.0
                       ) -> optax.GradientTransformation:
    """Adam at ``learning_rate``; with ``task_lr_scale != 1``, the per-task leaves (the
    embedding table and the per-task tables, :func:`jaxcl.core.hypernet.task_param_labels`) at
    ``task_lr_scale * learning_rate`` through ``optax.multi_transform``, every other leaf (the
    trunk, the heads, ``phi``) at ``learning_rate``.

    A new task's own parameters are a 32-value embedding and a few table rows; Adam moves each by
    about the learning rate a step, so at 1e-3 a task has moved its embedding (norm ~5.7) by a
    few percent after a hundred steps. A larger rate for them alone lets a new task find its
    weights without moving what earlier tasks share."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not task_lr_scale > 0:
        raise ValueError(f"task_lr_scale must be > 0, got {task_lr_scale!r}")
    if task_lr_scale == 1.0:
        return optax.adam(learning_rate)
    return optax.multi_transform({TASK: optax.adam(learning_rate * task_lr_scale),
                                  SHARED: optax.adam(learning_rate)}, task_param_labels)


def task_private(hnet: Hypernetwork, psi: PyTree, task_id: jax.Array) -> dict[str, jax.Array]:
    """What only task ``task_id`` reads: its embedding row ``e_t`` and its row of every per-task
    table, as ``{"embedding": e_t, "table:...": row, ...}``."""
    params = psi["params"]
    out = {"embedding": params["embedding"][task_id]}
    for spec in hnet.specs:
        if spec.role == "table":
            out[head_name(spec)] = params[head_name(spec)]["table"][task_id]
    return out


# ----------------------------------------------------------------------------------------------
# Parameter counts and compression.


class HeadReport(NamedTuple):
    """Parameter count of one head against direct linear generation of the same leaf."""

    path: Path
    role: Role
    shape: tuple[int, ...]
    params: int
    direct_params: int

    @property
    def compression(self) -> float:
        return self.direct_params / self.params if self.params else math.inf


def head_param_count(spec: LeafSpec, config: HypernetConfig) -> int:
    """Trainable parameters of the head that serves ``spec`` (formulas in
    :mod:`jaxcl.core.heads`)."""
    h, d, size = config.trunk_dim, config.chunk_dim, math.prod(spec.shape)
    if spec.role == "conv":
        c_out = spec.shape[-1]
        return d * c_out + (h + d + 1) * (size // c_out)
    if spec.role in ("dense", "vector"):
        return (h + 1) * size
    if spec.role == "table":
        return config.num_tasks * size
    return size


def direct_param_count(spec: LeafSpec, config: HypernetConfig) -> int:
    """Parameters of a direct linear head ``h * prod(shape)`` (the compression baseline)."""
    if spec.role in ("conv", "dense"):
        return config.trunk_dim * math.prod(spec.shape)
    return head_param_count(spec, config)


def parameter_report(hnet: Hypernetwork) -> tuple[list[HeadReport], int]:
    """Per-head reports and the parameter count of the embedding table plus trunk."""
    cfg = hnet.config
    heads = [
        HeadReport(s.path, s.role, s.shape, head_param_count(s, cfg), direct_param_count(s, cfg))
        for s in hnet.specs
    ]
    trunk = cfg.num_tasks * cfg.embedding_dim
    fan_in = cfg.embedding_dim
    for width in cfg.hidden:
        trunk += (fan_in + 1) * width
        fan_in = width
    return heads, trunk


def compression_table(
    hnet: Hypernetwork, chunk_dims: Sequence[int] = (4, 8, 16, 32, 64)
) -> list[dict[str, float]]:
    """Generated-head parameters and compression (direct / ours) for each lookup dimension ``d``.

    Only the generated (conv and dense) heads count: tables and shared leaves cost the same
    either way. This is the shape of Table 3 of Hemati et al. (2023).
    """
    rows = []
    for d in chunk_dims:
        cfg = dataclasses.replace(hnet.config, chunk_dim=d)
        generated = [s for s in hnet.specs if s.role in ("conv", "dense")]
        ours = sum(head_param_count(s, cfg) for s in generated)
        direct = sum(direct_param_count(s, cfg) for s in generated)
        rows.append({"chunk_dim": d, "params": ours, "direct_params": direct,
                     "compression": direct / ours if ours else math.inf})
    return rows


def count_params(tree: PyTree) -> int:
    """Number of scalars in a pytree of arrays."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
