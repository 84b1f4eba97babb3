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

from jaxcl import models
from jaxcl.core import hypernet, lookahead, regularizers
from jaxcl.core.hypernet import HypernetConfig, Hypernetwork
from jaxcl.core.lookahead import LookaheadInfo, lookahead_grad
from jaxcl.learners import partial_hypernet
from jaxcl.learners.partial_hypernet import LearnerState, PartialHypernet
from jaxcl.types import Batch, Experience, PyTree

__version__ = "0.1.0"
__all__ = [
    "Batch", "Experience", "HypernetConfig", "Hypernetwork", "LearnerState", "LookaheadInfo", "PartialHypernet", "PyTree",
    "hypernet", "lookahead", "lookahead_grad", "models", "partial_hypernet", "regularizers",
]
