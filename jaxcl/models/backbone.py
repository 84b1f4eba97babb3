"""One place that turns a model name, a freeze depth and a head choice into network parts.

Every strategy splits the same networks: the slim ResNet-18 (``"resnet"``) at freeze depth
``k`` = 0..4, or the test MLP (``"mlp"``) after its first ``k`` hidden layers. The frozen part
``g_phi`` is the same for every strategy; the rest either ends in one classifier (the
hypernetwork generates it per task) or in features for a :class:`MultiHeadClassifier` (Naive,
EWC, Latent Replay: one linear head per task on shared features).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcl.models.mlp import MLP
from jaxcl.models.resnet import FREEZE_DEPTHS, NUM_STAGES, SlimResNet18

MODELS = ("resnet", "mlp")


class Backbone(NamedTuple):
    """``g_phi`` (``None`` when ``k = 0``) and the rest of the network."""

    frozen: nn.Module | None
    rest: nn.Module


def split_backbone(
    model: str,
    k: int,
    *,
    num_classes: int,
    head: bool,
    nf: int = 20,
    hidden: tuple[int, ...] = (64,),
    norm: str = "batch",
    rest_norm: str | None = None,
) -> Backbone:
    """Split ``model`` after ``k`` blocks; ``head`` says whether ``rest`` ends in a classifier.

    ``norm`` and ``rest_norm`` (default: ``norm``) are the ResNet's normalisation in ``g_phi`` and
    in the rest (:data:`jaxcl.models.resnet.NORMS`, checked by the ResNet); the MLP has none.
    """
    if model not in MODELS:
        raise ValueError(f"model={model!r} is not one of {MODELS}")
    if model == "resnet":
        if k not in FREEZE_DEPTHS:
            raise ValueError(f"freeze depth k={k!r} is not one of {FREEZE_DEPTHS}")
        rest_norm = norm if rest_norm is None else rest_norm  # SlimResNet18 checks both
        rest = SlimResNet18(num_classes, nf, first_stage=k, last_stage=NUM_STAGES,
                            stem=(k == 0), classifier=head, norm=rest_norm)
        frozen = None if k == 0 else SlimResNet18(num_classes, nf, first_stage=0, last_stage=k,
                                                   stem=True, classifier=False, norm=norm)
        return Backbone(frozen, rest)
    if not 0 <= k <= len(hidden):
        raise ValueError(f"for the MLP with hidden={hidden}, k={k!r} must be in 0..{len(hidden)}")
    rest = MLP(num_classes, tuple(hidden[k:]), head=head)
    return Backbone(None if k == 0 else MLP(0, tuple(hidden[:k]), head=False), rest)


class MultiHeadClassifier(nn.Module):
    """A feature extractor followed by one linear head per task.

    ``logits_b = W[t_b]^T pool(f(x_b)) + b[t_b]`` with ``W`` of shape ``(num_tasks, D, C)``; ``t`` a
    scalar task id or one per example (a replay batch mixes tasks). Spatial features are averaged
    over their spatial axes first. ``train`` goes to the feature extractor (running statistics).
    """

    features: nn.Module
    num_tasks: int
    num_classes: int

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


def apply_model(module: nn.Module, params: dict, stats: dict, x: jax.Array, *args,
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

