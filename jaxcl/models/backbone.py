"""One place that turns a model name, a freeze depth and a head choice into network parts.

Every strategy splits the same networks: the slim ResNet-18 (``"resnet"``) at freeze depth
``k`` = 0..4, or the test MLP (``"mlp"``) after its first ``k`` hidden layers, looked up by name
in :data:`SPLITS`. The lower part ``g_phi`` (frozen after the first experience) is the same for
every strategy; the upper part ``h_omega`` either ends in one classifier (the hypernetwork
generates it per task) or in features for a :class:`MultiHeadClassifier` (Naive, EWC, Frozen,
Latent Replay: one linear head per task on shared features)::

    y = h_omega(g_phi(x))          g_phi = lower (None for k = 0: the identity), h_omega = upper
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcl.core.nnx_target import as_linen
from jaxcl.models.mlp import MLP
from jaxcl.models.resnet import FREEZE_DEPTHS, NUM_STAGES, SlimResNet18
from jaxcl.names import did_you_mean


class Split(NamedTuple):
    """A network split at freeze depth ``k``: ``lower`` is ``g_phi`` (the stem and the first ``k``
    stages; ``None`` when ``k = 0``), ``upper`` is ``h_omega``, the rest."""

    lower: nn.Module | None
    upper: nn.Module


def _split_resnet(k, *, num_classes, head, nf, hidden, norm, upper_norm, conv) -> Split:
    """The slim ResNet-18 after its stem and ``k`` stages (``k`` in :data:`FREEZE_DEPTHS`)."""
    del hidden
    if k not in FREEZE_DEPTHS:
        raise ValueError(f"freeze depth k={k!r} is not one of {FREEZE_DEPTHS}")
    upper = SlimResNet18(num_classes, nf, first_stage=k, last_stage=NUM_STAGES, stem=(k == 0),
                         classifier=head, norm=upper_norm, conv=conv)  # it checks norms, conv
    lower = None if k == 0 else SlimResNet18(num_classes, nf, first_stage=0, last_stage=k,
                                             stem=True, classifier=False, norm=norm, conv=conv)
    return Split(lower, upper)


def _split_mlp(k, *, num_classes, head, nf, hidden, norm, upper_norm, conv) -> Split:
    """The MLP after its first ``k`` hidden layers (it has no normalisation, no convolution)."""
    del nf, norm, upper_norm, conv
    if not 0 <= k <= len(hidden):
        raise ValueError(f"for the MLP with hidden={hidden}, k={k!r} must be in 0..{len(hidden)}")
    upper = MLP(num_classes, tuple(hidden[k:]), head=head)
    return Split(None if k == 0 else MLP(0, tuple(hidden[:k]), head=False), upper)


SPLITS: dict[str, Callable[..., Split]] = {"resnet": _split_resnet, "mlp": _split_mlp}
"""Model name -> the function that splits it at a freeze depth."""
MODELS = tuple(SPLITS)


def split_model(
    model: str,
    k: int,
    *,
    num_classes: int,
    head: bool,
    nf: int = 20,
    hidden: tuple[int, ...] = (64,),
    norm: str = "batch",
    upper_norm: str | None = None,
    conv: str = "auto",
) -> Split:
    """``model`` split after ``k`` blocks into ``Split(lower, upper)``.

    ``head`` says whether ``upper`` ends in a ``num_classes``-way classifier (the hypernetwork
    generates it per task) or in features (for a :class:`MultiHeadClassifier`). ``nf`` is the
    ResNet's width, ``hidden`` the MLP's hidden sizes. ``norm`` and ``upper_norm`` (default:
    ``norm``) are the ResNet's normalisation in ``lower`` and in ``upper``
    (:data:`jaxcl.models.resnet.NORMS`, checked by the ResNet); the MLP has none. ``conv`` is the
    ResNet's convolution (:data:`jaxcl.models.resnet.CONVS`: ``"auto"`` chunks the filter
    gradient on CPU, a matter of speed only).
    """
    if model not in SPLITS:
        raise ValueError(f"model={model!r} is not one of {MODELS}{did_you_mean(model, MODELS)}")
    return SPLITS[model](k, num_classes=num_classes, head=head, nf=nf, hidden=hidden, norm=norm,
                         upper_norm=norm if upper_norm is None else upper_norm, conv=conv)


class MultiHeadClassifier(nn.Module):
    """A feature extractor followed by one linear head per task.

    ``logits_b = W[t_b]^T pool(f(x_b)) + b[t_b]`` with ``W`` of shape ``(num_tasks, D, C)``; ``t`` a
    scalar task id or one per example (a replay batch mixes tasks). Spatial features are averaged
    over their spatial axes first. ``train`` goes to the feature extractor (running statistics).
    ``features`` is a Linen module or a Flax NNX module
    (:func:`jaxcl.core.nnx_target.as_linen` wraps it).
    """

    features: nn.Module
    num_tasks: int
    num_classes: int

    def __post_init__(self):
        object.__setattr__(self, "features", as_linen(self.features))
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, task_ids: jax.Array, train: bool = True) -> jax.Array:
        h = self.features(x, train)
        if h.ndim > 2:
            h = jnp.mean(h, axis=tuple(range(1, h.ndim - 1)))
        init = nn.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
        kernel = self.param("head_kernel", init, (self.num_tasks, h.shape[-1], self.num_classes))
        bias = self.param("head_bias", nn.initializers.zeros, (self.num_tasks, self.num_classes))
        t = jnp.broadcast_to(jnp.asarray(task_ids), h.shape[:1])
        return jnp.einsum("bd,bdc->bc", h, kernel[t]) + bias[t]


def split_variables(variables: dict) -> tuple[dict, dict]:
    """A Flax variables dict as ``(params, stats)``: ``{"params": ...}`` and the normalisation
    statistics (``{"batch_stats": ...}`` for ``norm="running"``, else ``{}``)."""
    params = {"params": variables["params"]}
    return params, {name: v for name, v in variables.items() if name != "params"}


def apply_model(module: nn.Module, params: dict, stats: dict, x: jax.Array, *args: Any,
                train: bool) -> tuple[jax.Array, dict]:
    """``module(x, *args, train)`` with ``params`` and ``stats`` (see :func:`split_variables`).

    Returns ``(output, stats)``: with running statistics and ``train`` the batch's statistics are
    used and the running averages updated; otherwise ``stats`` comes back unchanged.
    """
    variables = {**params, **stats}
    if train and stats:
        out, new_stats = module.apply(variables, x, *args, train=True, mutable=list(stats))
        return out, dict(new_stats)
    return module.apply(variables, x, *args, train=train), stats

