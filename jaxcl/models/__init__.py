"""Target networks: the slim ResNet-18 split at freeze depth k, and a small MLP."""

from jaxcl.models.mlp import MLP
from jaxcl.models.resnet import FREEZE_DEPTHS, NORMS, ResNetSplit, SlimResNet18, split_resnet18

__all__ = ["MLP", "FREEZE_DEPTHS", "NORMS", "ResNetSplit", "SlimResNet18", "split_resnet18"]
