"""Continual-learning strategies behind one interface (:class:`Strategy`), built from values.

:class:`StrategyConfig` names a strategy and every setting it reads; :func:`build_strategy` turns
it, with the stream's shape, into a strategy object. Variants are values: ``LR-2`` is
``StrategyConfig("latent_replay", k=2)``, ``HN-F`` is ``StrategyConfig("hypernetwork", k=0)``.
"""

from __future__ import annotations

import dataclasses

import jax
import optax

from jaxcl.hypernet import NEW_TASK_INITS, HypernetConfig
from jaxcl.lookahead import ORDERS
from jaxcl.models import FREEZE_DEPTHS, MODELS, MultiHeadClassifier, split_backbone
from jaxcl.partial_hypernet import PartialHypernet
from jaxcl.strategies.base import METRIC_KEYS, Strategy
from jaxcl.strategies.finetune import EWC, FinetuneState, Naive
from jaxcl.strategies.hypernetwork import HypernetStrategy
from jaxcl.strategies.latent_replay import LatentReplay, ReplayBuffer, ReplayState

STRATEGIES = ("naive", "ewc", "latent_replay", "hypernetwork")


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    """A strategy and its settings (defaults: the study's).

    Attributes:
      strategy: one of ``STRATEGIES``.
      k: freeze depth (LR-k: 1..4; HN-k: 0..4, 0 is HN-F; unused by Naive and EWC).
      model: ``"resnet"`` (slim ResNet-18) or ``"mlp"`` (tests).
      nf: ResNet width. hidden: MLP hidden sizes.
      learning_rate: Adam's (the study: 1e-3).
      batch_size: training minibatch (the study: 64); also the EWC Fisher and replay batch.
      ewc_lambda: ``lambda_EWC`` (our default; the Fisher here is a mean of squared minibatch
        gradients, small, so useful values are large).
      memory_size: LR buffer capacity (the study: 200 for CIFAR-100, 400 for Tiny-ImageNet).
      replay_coef: LR's ``c``.
      order, coef, max_prev_tasks, embedding_dim, chunk_dim, new_task_init: HN settings.
      lookahead: HN only; False regularises ``psi`` itself, ``L_CE(psi) + lambda L_H(psi)`` (the
        virtual step is ``optax.set_to_zero()``), the study's "without look-ahead".
    """

    strategy: str = "hypernetwork"
    k: int = 3
    model: str = "resnet"
    nf: int = 20
    hidden: tuple[int, ...] = (64,)
    learning_rate: float = 1e-3
    batch_size: int = 64
    ewc_lambda: float = 100.0
    memory_size: int = 200
    replay_coef: float = 1.0
    order: int = 2
    coef: float = 0.5
    max_prev_tasks: int = 20
    embedding_dim: int = 32
    chunk_dim: int = 8
    new_task_init: str = "copy_prev"
    lookahead: bool = True

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r} is not one of {STRATEGIES}")
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r} is not one of {MODELS}")
        if self.model == "resnet" and self.k not in FREEZE_DEPTHS:
            raise ValueError(f"freeze depth k={self.k!r} is not one of {FREEZE_DEPTHS}")
        if self.strategy == "latent_replay" and self.k < 1:
            raise ValueError(f"latent replay needs a frozen part: k={self.k!r} must be >= 1")
        if self.order not in ORDERS:
            raise ValueError(f"order={self.order!r} is not one of {ORDERS}")
        if self.new_task_init not in NEW_TASK_INITS:
            raise ValueError(f"new_task_init={self.new_task_init!r} is not one of {NEW_TASK_INITS}")
        for name in ("learning_rate",):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("batch_size", "memory_size", "max_prev_tasks", "nf"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("ewc_lambda", "replay_coef", "coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    @property
    def label(self) -> str:
        """The name the study's tables use: Naive, EWC, LR-k, HN-k, HN-F."""
        if self.strategy == "naive":
            return "Naive"
        if self.strategy == "ewc":
            return "EWC"
        if self.strategy == "latent_replay":
            return f"LR-{self.k}"
        return "HN-F" if self.k == 0 else f"HN-{self.k}"

    @classmethod
    def from_label(cls, label: str, **settings) -> StrategyConfig:
        """``"Naive"``, ``"EWC"``, ``"LR-k"``, ``"HN-k"`` or ``"HN-F"`` with ``settings``."""
        name, _, depth = label.partition("-")
        kinds = {"Naive": "naive", "EWC": "ewc", "LR": "latent_replay", "HN": "hypernetwork"}
        if name not in kinds or bool(depth) != (name in ("LR", "HN")):
            raise ValueError(f"strategy label {label!r} is not Naive, EWC, LR-k, HN-k or HN-F")
        settings = {**settings, "strategy": kinds[name]}
        if depth:
            if not (depth == "F" and name == "HN") and not depth.isdigit():
                allowed = "a digit or F (HN only)" if name == "LR" else "a digit or F"
                raise ValueError(f"strategy label {label!r}: the freeze depth must be {allowed}")
            settings["k"] = 0 if depth == "F" else int(depth)
        return cls(**settings)


def build_strategy(
    config: StrategyConfig, *, num_tasks: int, classes_per_task: int, sample_x: jax.Array
) -> Strategy:
    """The strategy object for ``config`` on a stream of ``num_tasks`` x ``classes_per_task``."""
    optimizer = optax.adam(config.learning_rate)
    common = dict(num_classes=classes_per_task, nf=config.nf, hidden=config.hidden)
    if config.strategy in ("naive", "ewc"):
        backbone = split_backbone(config.model, 0, head=False, **common)
        net = MultiHeadClassifier(backbone.rest, num_tasks, classes_per_task)
        if config.strategy == "naive":
            return Naive(net, optimizer, batch_size=config.batch_size)
        return EWC(net, optimizer, batch_size=config.batch_size, ewc_lambda=config.ewc_lambda)
    if config.strategy == "latent_replay":
        backbone = split_backbone(config.model, config.k, head=False, **common)
        net = MultiHeadClassifier(backbone.rest, num_tasks, classes_per_task)
        return LatentReplay(backbone.frozen, net, optimizer, classes_per_task,
                            memory_size=config.memory_size, replay_coef=config.replay_coef,
                            replay_batch_size=config.batch_size)
    backbone = split_backbone(config.model, config.k, head=True, **common)
    hnet_config = HypernetConfig(num_tasks=num_tasks, embedding_dim=config.embedding_dim,
                                 chunk_dim=config.chunk_dim, new_task_init=config.new_task_init)
    learner = PartialHypernet.build(backbone.rest, backbone.frozen, sample_x,
                                    hnet_config=hnet_config, learning_rate=config.learning_rate,
                                    order=config.order if config.lookahead else 1,
                                    coef=config.coef,
                                    virtual_opt=None if config.lookahead else optax.set_to_zero())
    return HypernetStrategy(learner, max_prev_tasks=config.max_prev_tasks)


__all__ = ["EWC", "METRIC_KEYS", "STRATEGIES", "FinetuneState", "HypernetStrategy", "LatentReplay",
           "Naive", "ReplayBuffer", "ReplayState", "Strategy", "StrategyConfig", "build_strategy"]
