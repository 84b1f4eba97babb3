"""Slim ResNet-18 for 32x32 inputs, split at freeze depth k into a lower and an upper part.

The slim ResNet-18 used across CL papers (GEM, Avalanche's ``SlimResNet18``, Hemati et al. 2023):
a 3x3 stem conv with ``nf = 20`` filters, four stages of two BasicBlocks with ``nf, 2nf, 4nf, 8nf``
filters and strides 1, 2, 2, 2, normalisation after every conv, global average pooling and a
linear classifier on ``8 nf = 160`` features.

Freeze depth ``k`` in 0..4 splits the network (:func:`jaxcl.models.split_model`): the stem plus
the first ``k`` stages form the lower part ``g_phi`` (ordinary parameters, trained in the first
experience, frozen after); the rest plus the classifier form the upper part ``h_omega``, whose
parameters the hypernetwork generates. ``k = 0`` leaves no lower part (the hypernetwork generates
everything, HN-F);
``k = 4`` generates only the classifier. Both parts are the same :class:`SlimResNet18` module
with different stage ranges, so one definition serves every ``k``, and module paths
(``stem``, ``stage1`` .. ``stage4``, ``classifier``) do not depend on the split.

Normalisation (``norm``) is a named choice, because the reference implementation uses three
kinds in different places and each changes what a number means:

* ``"batch"``: every normalisation layer uses the mean and variance of the current batch, in
  training and in evaluation, and keeps no running statistics (PyTorch's
  ``BatchNorm2d(track_running_stats=False)``). A pure function of ``params``; the reference uses
  it for the plain ResNet of Naive, EWC and Frozen-k and for ``g_phi`` of HN-k. An evaluated
  accuracy then depends on how the test set is cut into batches. Implemented with
  ``flax.linen.LayerNorm`` reducing over the batch and spatial axes, which is exactly batch
  normalisation without state.
* ``"instance"``: statistics of each sample alone, per channel over the spatial axes
  (``flax.linen.InstanceNorm``). The reference runs the generated part ``h_omega`` of HN-k one
  sample at a time (``functorch.vmap`` over ``BatchNorm2d(track_running_stats=False)`` with a
  batch of one), which is exactly this. Pure, and independent of the batch.
* ``"running"``: ``flax.linen.BatchNorm`` with running averages (momentum 0.9, PyTorch's 0.1) in
  the ``batch_stats`` collection: batch statistics in training (``train=True``, apply with
  ``mutable=["batch_stats"]``), the running averages in evaluation (``train=False``). The
  reference's latent-replay model (PyTorch's default ``BatchNorm2d``). PyTorch keeps the unbiased
  batch variance in its running average; Flax keeps the biased one (a factor ``n / (n - 1)``,
  1.0002 for a batch of 64 at 32x32).

All three have the same ``scale`` and ``bias`` parameters, so parameter counts do not depend on
the choice.

The convolution (``conv``, :data:`CONVS`) is a choice of speed, not of numbers: ``"xla"`` is
``lax.conv_general_dilated``; ``"chunked"`` is :func:`jaxcl.models.conv.conv_general_dilated`,
the same value and input gradient with the filter gradient summed over batch chunks (about 1.7x
faster filter gradients on XLA:CPU at the study's sizes, equal to float32 rounding; convolutions
whose operands fit the L2 cache are not chunked); ``"auto"`` (the default) picks ``"chunked"``
when JAX's default backend is the CPU and ``"xla"`` elsewhere. ``benchmarks/xla_cpu_conv.py``
and ``benchmarks/torch_peer.py`` measure it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcl.models.conv import conv_general_dilated as chunked_conv

NORMS = ("batch", "instance", "running")
CONVS = ("auto", "xla", "chunked")
FREEZE_DEPTHS = (0, 1, 2, 3, 4)
NUM_STAGES = 4


def _norm(kind: str, train: bool, name: str) -> nn.Module:
    if kind == "batch":
        return nn.LayerNorm(reduction_axes=(0, 1, 2), feature_axes=-1, epsilon=1e-5, name=name)
    if kind == "instance":
        return nn.InstanceNorm(epsilon=1e-5, name=name)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def _conv_fn(kind: str):
    """The ``conv_general_dilated`` of ``nn.Conv`` for ``kind`` in :data:`CONVS` (``None``: Flax's
    default, ``lax``'s)."""
    if kind == "chunked" or (kind == "auto" and jax.default_backend() == "cpu"):
        return chunked_conv
    return None


class BasicBlock(nn.Module):
    """Two 3x3 convs with normalisation and a (projected when needed) shortcut."""

    features: int
    strides: int = 1
    norm: str = "batch"
    conv: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        conv = lambda f, k, s, name: nn.Conv(  # noqa: E731
            f, (k, k), strides=(s, s), padding=(k - 1) // 2, use_bias=False, name=name,
            conv_general_dilated=_conv_fn(self.conv),
        )
        y = conv(self.features, 3, self.strides, "conv1")(x)
        y = nn.relu(_norm(self.norm, train, "norm1")(y))
        y = conv(self.features, 3, 1, "conv2")(y)
        y = _norm(self.norm, train, "norm2")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(self.features, 1, self.strides, "shortcut_conv")(x)
            x = _norm(self.norm, train, "shortcut_norm")(x)
        return nn.relu(x + y)


class SlimResNet18(nn.Module):
    """Stages ``first_stage .. last_stage - 1`` of the slim ResNet-18, with stem and classifier.

    The full network is ``SlimResNet18(num_classes)``; :func:`jaxcl.models.split_model` builds
    the two parts for a freeze depth. Input: NHWC images (the stem) or the previous part's features.
    """

    num_classes: int
    nf: int = 20
    first_stage: int = 0
    last_stage: int = NUM_STAGES
    stem: bool = True
    classifier: bool = True
    norm: str = "batch"
    conv: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r} is not one of {NORMS}")
        if self.conv not in CONVS:
            raise ValueError(f"conv={self.conv!r} is not one of {CONVS}")
        if not 0 <= self.first_stage <= self.last_stage <= NUM_STAGES:
            raise ValueError(
                f"stages [{self.first_stage}, {self.last_stage}) are not within 0..{NUM_STAGES}"
            )

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        if self.stem:
            x = nn.Conv(self.nf, (3, 3), padding=1, use_bias=False, name="stem_conv",
                        conv_general_dilated=_conv_fn(self.conv))(x)
            x = nn.relu(_norm(self.norm, train, "stem_norm")(x))
        for stage in range(self.first_stage, self.last_stage):
            features = self.nf * 2**stage
            for block in range(2):
                strides = 2 if (stage > 0 and block == 0) else 1
                x = BasicBlock(features, strides, self.norm, self.conv,
                               name=f"stage{stage + 1}_block{block}")(x, train)
        if self.classifier:
            x = jnp.mean(x, axis=(1, 2))
            x = nn.Dense(self.num_classes, name="classifier")(x)
        return x
