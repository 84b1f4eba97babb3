"""Target networks: the slim ResNet-18 and a small MLP, split at freeze depth k into a lower part
``g_phi`` and an upper part ``h_omega`` (:func:`split_model`), and per-task heads."""

from jaxcl.models.backbone import (
    MODELS,
    SPLITS,
    MultiHeadClassifier,
    Split,
    apply_model,
    split_model,
    split_variables,
)
from jaxcl.models.mlp import MLP
from jaxcl.models.resnet import CONVS, FREEZE_DEPTHS, NORMS, SlimResNet18

__all__ = ["MLP", "CONVS", "FREEZE_DEPTHS", "MODELS", "NORMS", "SPLITS", "MultiHeadClassifier",
           "SlimResNet18", "Split", "apply_model", "split_model", "split_variables"]
