"""Target networks: the slim ResNet-18 split at freeze depth k, a small MLP, and their heads."""

from jaxcl.models.backbone import MODELS, Backbone, MultiHeadClassifier, split_backbone
from jaxcl.models.mlp import MLP
from jaxcl.models.resnet import FREEZE_DEPTHS, NORMS, ResNetSplit, SlimResNet18, split_resnet18

__all__ = ["MLP", "FREEZE_DEPTHS", "MODELS", "NORMS", "Backbone", "MultiHeadClassifier",
           "ResNetSplit", "SlimResNet18", "split_backbone", "split_resnet18"]
