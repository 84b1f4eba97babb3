"""jaxcl: continual learning with hypernetworks in JAX.

Modules:
  core.hypernet, core.heads: hypernetworks as pure functions from task ids to a target's
    parameter pytree, and the heads that generate each leaf; core.nnx_target: Flax NNX modules
    as targets (split into graph definition and parameter state, merged for the forward pass).
  core.lookahead: exact first- and second-order look-ahead gradients through a virtual optax step.
  core.regularizers: the output regulariser on hypernetwork outputs.
  models: the slim ResNet-18 and an MLP, split at freeze depth k into ``lower`` and ``upper``
    (``split_model``), the Hypernet-SDE-Flow autoencoder (models.sde_flow).
  learners: every learner behind one protocol (learners.base.Learner): the strategies
    (learners.hypernetwork is the partial-hypernetwork learner HN-k, :class:`PartialHypernet`)
    and the Hypernet-SDE-Flow study's models (learners.sde_flow).
  train: the one loop that drives every learner (train.loop.train_seeds).
  data: benchmarks by name; streams: your own arrays as a stream (streams.from_arrays);
  io: checkpoints, run folders, config files, event files, plots, progress bars.
  config: settings as data (dataclass fields with their help, in sections by owner), which the
    strategies' config and the experiments' configs are made of.

Arrows point one way: config <- core <- models <- learners <- train <- io and the experiments.

``import jaxcl`` never imports TensorFlow; dataset loading lives behind the ``data`` extra.
"""

from jaxcl import models, streams
from jaxcl.core import heads, hypernet, lookahead, regularizers
from jaxcl.core.hypernet import HypernetConfig, Hypernetwork
from jaxcl.core.lookahead import LookaheadInfo, lookahead_grad
from jaxcl.learners.hypernetwork import HypernetState, PartialHypernet
from jaxcl.types import Batch, Experience, PyTree

__version__ = "0.1.0"
__all__ = [
    "Batch", "Experience", "HypernetConfig", "HypernetState", "Hypernetwork", "LookaheadInfo",
    "PartialHypernet", "PyTree", "heads", "hypernet", "lookahead", "lookahead_grad", "models",
    "regularizers", "streams",
]
