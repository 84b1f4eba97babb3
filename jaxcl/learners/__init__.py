"""Continual-learning strategies behind one interface (:class:`Learner`), built from values.

Every learner is a few pure functions over its state (:mod:`jaxcl.learners.base`): Naive and EWC
(:mod:`~jaxcl.learners.finetune`), Frozen-k and LR-k (:mod:`~jaxcl.learners.latent_replay`), HN-k
(:mod:`~jaxcl.learners.hypernetwork`) and the Hypernet-SDE-Flow study's models
(:mod:`~jaxcl.learners.sde_flow`). :class:`StrategyConfig` and :func:`build_strategy`
(:mod:`~jaxcl.learners.strategies`) name a strategy and build it for a stream.
"""

from jaxcl.learners.base import METRIC_KEYS, Consolidating, Learner
from jaxcl.learners.finetune import EWC, FinetuneState, Naive
from jaxcl.learners.hypernetwork import HypernetState, PartialHypernet
from jaxcl.learners.latent_replay import Frozen, FrozenState, LatentReplay, ReplayBuffer, ReplayState
from jaxcl.learners.strategies import (
    BUILDERS,
    EXAMPLE_LABELS,
    HN_PRESETS,
    LABELS,
    NORM_CHOICES,
    REFERENCE_NORMS,
    REFERENCE_SETUP,
    STRATEGIES,
    StrategyConfig,
    build_strategy,
)

__all__ = ["BUILDERS", "Consolidating", "EWC", "EXAMPLE_LABELS", "HN_PRESETS", "LABELS",
           "METRIC_KEYS", "NORM_CHOICES", "REFERENCE_NORMS", "REFERENCE_SETUP", "STRATEGIES", "FinetuneState", "Frozen",
           "FrozenState", "HypernetState", "LatentReplay", "Naive", "PartialHypernet",
           "ReplayBuffer", "ReplayState", "Learner", "StrategyConfig", "build_strategy"]
