"""Flax NNX modules as targets: an ``nnx.Module`` behind the ``init``/``apply`` pair that the rest
of jaxcl calls on Linen modules.

NNX keeps a module's parameters inside the object; a hypernetwork must write them as a pytree.
:class:`NnxTarget` splits a built module once into its graph definition and its parameter state
(``graphdef, params = nnx.split(module, nnx.Param)``), presents the parameters as a plain nested
dict of arrays, and merges a generated or trained dict back for each forward pass::

    target = as_target(module)              # an nnx.Module -> NnxTarget; a Linen module as it is
    variables = target.init(key, x)         # {"params": {"layers": {"0": {"kernel": ...}, ...}}}
    y = target.apply(variables, x)          # nnx.merge(graphdef, params)(x)

so :meth:`jaxcl.core.hypernet.Hypernetwork.for_target` (its heads, its ``generate`` path filter,
its compression report) and :class:`jaxcl.learners.hypernetwork.PartialHypernet` take it as they
take a Linen module. A leaf's path is its attribute path, an item of a list (``nnx.List``) named
by its index as a string (``("layers", "0", "kernel")``, ``generate_under("layers/0")``); the way
back maps each path to NNX's own key, never by sorted order (``"10"`` sorts before ``"2"``).

Why not Flax's own bridge, ``flax.nnx.bridge.ToLinen``: in Flax 0.12 it takes an NNX class and
its constructor's arguments, not the module a user has built; it builds the module again, running
every initialiser, inside each ``apply`` (a two-layer MLP's traced forward pass: 60 operations
through the bridge, 33 through ``nnx.merge``; the look-ahead step traces the target several
times); and on the way back it refuses the string keys of list items (``KeyError: 'Invalid key:
0'``) that the path filter and the heads' names need. ``nnx.split`` and ``nnx.merge``, NNX's
documented functional API, do all the work; this module names paths and checks what comes in.

Only ``nnx.Param`` variables are allowed. A module that holds other state (the ``BatchStat`` of
``nnx.BatchNorm``, the ``RngKey`` and ``RngCount`` of ``nnx.Dropout(rngs=...)``, any other
``nnx.Variable``) is refused, each path and type named: a generated network is a pure function of
the parameters the hypernetwork writes, as :class:`jaxcl.learners.StrategyConfig` refuses running
statistics for HN-k. ``nnx.LayerNorm`` and ``nnx.GroupNorm`` keep only parameters.

NNX initialises a module when it is built, with the ``nnx.Rngs`` its constructor takes: ``init``
returns those values whatever key it is given (a lower part ``g_phi`` starts alike in every seed).

Inside a Linen parent (the strategies' :class:`jaxcl.models.MultiHeadClassifier`, whose feature
extractor is a Linen submodule), :func:`as_linen` wraps the target in :class:`NnxFeatures`, a
Linen module with one parameter, the nested dict, so that Naive, EWC, Frozen-k and LR-k train an
NNX model too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx, traverse_util

from jaxcl.types import PyTree

NnxPath = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class NnxTarget:
    """An ``nnx.Module`` as ``init(key, *args) -> {"params": dict}`` and
    ``apply({"params": dict}, *args) -> nnx.merge(graphdef, params)(*args)``.

    Build it with :meth:`from_module` (or :func:`as_target`). Two targets are equal when their
    graph definitions and parameter paths, shapes and dtypes are: the compiled programs of a
    learner read its parameters from its state, never the initial values kept here.

    Attributes:
      graphdef: the module's static structure (``nnx.split``'s first output).
      paths: each parameter's NNX path (attribute names, list indices as ints).
      leaves: each parameter's shape and dtype, in the order of ``paths``.
      initial: each parameter's value when the module was split, in the order of ``paths``.
    """

    graphdef: Any = dataclasses.field(repr=False)
    paths: tuple[NnxPath, ...]
    leaves: tuple[jax.ShapeDtypeStruct, ...] = dataclasses.field(repr=False)
    initial: tuple[jax.Array, ...] = dataclasses.field(compare=False, repr=False)

    @classmethod
    def from_module(cls, module: nnx.Module) -> NnxTarget:
        """Split ``module`` into its graph definition and its ``nnx.Param`` state; any other
        state is refused with its paths and types."""
        graphdef, params, rest = nnx.split(module, nnx.Param, ...)
        others = [f"{'/'.join(map(str, path))} ({type(var).__name__})"
                  for path, var in nnx.to_flat_state(rest)]
        if others:
            raise ValueError(
                f"the NNX module {type(module).__name__} holds state other than nnx.Param: "
                f"{', '.join(others)}; a target may hold only nnx.Param variables (normalise with "
                "nnx.LayerNorm or nnx.GroupNorm, build nnx.Dropout without rngs)")
        flat = traverse_util.flatten_dict(nnx.to_pure_dict(params))
        leaves = tuple(jax.ShapeDtypeStruct(v.shape, v.dtype) for v in flat.values())
        return cls(graphdef, tuple(flat), leaves, tuple(flat.values()))

    @property
    def names(self) -> tuple[tuple[str, ...], ...]:
        """Each parameter's path as the hypernetwork names it: every key a string."""
        return tuple(tuple(map(str, path)) for path in self.paths)

    def init(self, key: jax.Array, *args: Any, **kwargs: Any) -> dict[str, PyTree]:
        """``{"params": the module's own values}`` as a nested dict with string keys; ``key``
        and the sample inputs are not needed (NNX built the parameters with the module)."""
        del key, args, kwargs
        return {"params": traverse_util.unflatten_dict(dict(zip(self.names, self.initial)))}

    def apply(self, variables: Mapping[str, PyTree], *args: Any, **kwargs: Any) -> Any:
        """``module(*args, **kwargs)`` with the parameters ``variables["params"]`` (a nested dict
        laid out as :meth:`init`'s, with string or integer keys)."""
        if set(variables) != {"params"}:
            raise ValueError(f"an NNX target takes the collection 'params' only, got "
                             f"{sorted(variables)}")
        given = {tuple(map(str, path)): value for path, value
                 in traverse_util.flatten_dict(variables["params"]).items()}
        names = self.names
        missing, extra = [n for n in names if n not in given], sorted(set(given) - set(names))
        if missing or extra:
            raise ValueError(f"the parameters do not fit the NNX target: missing "
                             f"{_joined(missing)}, unexpected {_joined(extra)}")
        for name, leaf in zip(names, self.leaves):
            if jnp.shape(given[name]) != leaf.shape:
                raise ValueError(f"parameter {'/'.join(name)} has shape "
                                 f"{jnp.shape(given[name])}, the NNX target's is {leaf.shape}")
        state = traverse_util.unflatten_dict(
            {path: given[name] for path, name in zip(self.paths, names)})
        return nnx.merge(self.graphdef, state)(*args, **kwargs)


def as_target(module: Any) -> nn.Module | NnxTarget:
    """What the hypernetwork and the learners apply: a Linen module or an :class:`NnxTarget` as it
    is, an ``nnx.Module`` split into an :class:`NnxTarget`; anything else is refused."""
    if isinstance(module, (nn.Module, NnxTarget)):
        return module
    if isinstance(module, nnx.Module):
        return NnxTarget.from_module(module)
    raise TypeError(f"a target must be a Flax Linen module (flax.linen.Module) or an NNX module "
                    f"(flax.nnx.Module), got {type(module).__name__}: {module!r:.80}")


class NnxFeatures(nn.Module):
    """An :class:`NnxTarget` as a Linen module: ``x, train -> module(x)``, its parameters one
    Linen parameter ``"nnx"`` laid out as :meth:`NnxTarget.init`'s dict. ``train`` is taken and
    ignored (an NNX module holds its own mode, and a target holds no statistics)."""

    target: NnxTarget

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        params = self.param("nnx", lambda key: self.target.init(key)["params"])
        return self.target.apply({"params": params}, x)


def as_linen(module: Any) -> nn.Module:
    """A Linen module as it is; an ``nnx.Module`` (or :class:`NnxTarget`) as
    :class:`NnxFeatures`, for a Linen parent or a learner that applies ``module(x, train=...)``."""
    target = as_target(module)
    return target if isinstance(target, nn.Module) else NnxFeatures(target)


def _joined(paths: list[tuple[str, ...]]) -> str:
    return ", ".join("/".join(p) for p in paths) or "none"
