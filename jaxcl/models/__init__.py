"""Target networks: the slim ResNet-18 split at freeze depth k, a small MLP, and their heads."""

from jaxcl.models.backbone import (
    MODELS,
    Backbone,
    MultiHeadClassifier,
    apply_model,
    split_backbone,
    split_variables,
)
from jaxcl.models.mlp import MLP
from jaxcl.models.resnet import (
    FREEZE_DEPTHS,
    NORMS,
    ResNetSplit,
    SlimResNet18,
    split_resnet18,
)

__all__ = ["MLP", "FREEZE_DEPTHS", "MODELS", "NORMS", "Backbone", "MultiHeadClassifier",
           "ResNetSplit", "SlimResNet18", "apply_model", "split_backbone", "split_resnet18",
           "split_variables"]
