"""jaxcl: continual learning with hypernetworks in JAX.

Modules:
  hypernet: hypernetworks as pure functions from task ids to a target's parameter pytree.
  lookahead: exact first- and second-order look-ahead gradients through a virtual optax step.
  regularizers: the output regulariser on hypernetwork outputs.
  partial_hypernet: the partial-hypernetwork learner and its compiled training step.
  models: the slim ResNet-18 split at freeze depth k, a small MLP, the Hypernet-SDE-Flow
    autoencoder (models.sde_flow).
  sde_flow_cl: continual training of the point autoencoders (the Hypernet-SDE-Flow study).

``import jaxcl`` never imports TensorFlow; dataset loading lives behind the ``data`` extra.
"""

from jaxcl import hypernet, lookahead, models, partial_hypernet, regularizers
from jaxcl.hypernet import HypernetConfig, Hypernetwork
from jaxcl.lookahead import LookaheadInfo, lookahead_grad
from jaxcl.partial_hypernet import Batch, LearnerState, PartialHypernet

__version__ = "0.1.0"
__all__ = [
    "Batch", "HypernetConfig", "Hypernetwork", "LearnerState", "LookaheadInfo", "PartialHypernet",
    "hypernet", "lookahead", "lookahead_grad", "models", "partial_hypernet", "regularizers",
]
