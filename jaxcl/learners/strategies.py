"""Strategies as values: :class:`StrategyConfig`, the presets, and the registry that builds them.

:class:`StrategyConfig` names a strategy and every setting it reads; :func:`build_strategy` turns
it, with the stream's shape, into a strategy object through a small registry (:data:`BUILDERS`).
Variants are values: ``LR-2`` is ``StrategyConfig("latent_replay", k=2)``, ``HN-F`` is
``StrategyConfig("hypernetwork", k=0)``, ``Frozen-3`` is ``StrategyConfig("frozen", k=3)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax

from jaxcl.config import setting
from jaxcl.core.heads import INITS
from jaxcl.core.hypernet import NEW_TASK_INITS, HypernetConfig
from jaxcl.core.lookahead import Order, check_order, parse_order
from jaxcl.learners.base import Learner
from jaxcl.learners.finetune import EWC, Naive
from jaxcl.learners.hypernetwork import DEFAULTS as HN_DEFAULTS
from jaxcl.learners.hypernetwork import PartialHypernet
from jaxcl.learners.latent_replay import QUOTAS, Frozen, LatentReplay
from jaxcl.models import (
    CONVS,
    FREEZE_DEPTHS,
    MODELS,
    NORMS,
    MultiHeadClassifier,
    split_model,
)
from jaxcl.names import did_you_mean

STRATEGIES = ("naive", "ewc", "frozen", "latent_replay", "hypernetwork")
LABELS = {"Naive": "naive", "EWC": "ewc", "Frozen": "frozen", "LR": "latent_replay",
          "HN": "hypernetwork"}
"""Label prefix -> strategy; ``Frozen``, ``LR`` and ``HN`` take ``-k`` (``HN-F`` is k = 0)."""
EXAMPLE_LABELS = ("Naive", "EWC", *(f"Frozen-{k}" for k in range(5)),
                  *(f"LR-{k}" for k in range(1, 5)), *(f"HN-{k}" for k in range(1, 5)), "HN-F")
"""Every label of the slim ResNet's depths: what an unknown label is matched against."""
NORM_CHOICES = ("reference", *NORMS)
REFERENCE_NORMS = {
    "naive": ("batch", "batch"),
    "ewc": ("batch", "batch"),
    "frozen": ("batch", "batch"),
    "latent_replay": ("running", "running"),
    "hypernetwork": ("batch", "instance"),
}
"""Each strategy's normalisation in the reference implementation, ``(lower, upper)``: the plain
ResNet of Naive, EWC and ``FreezingNaive`` uses ``BatchNorm2d(track_running_stats=False)``
(batch statistics also in evaluation), the latent-replay model PyTorch's default ``BatchNorm2d``
(running statistics), and HN-k batch statistics in ``g_phi`` and the generated part run one sample
at a time (instance statistics). See :mod:`jaxcl.models.resnet`."""


HN_PRESETS: dict[str, dict[str, Any]] = {
    "jaxcl": {"new_task_init": HypernetConfig.new_task_init, "hnet_init": HypernetConfig.init,
              "task_lr_scale": HN_DEFAULTS["task_lr_scale"],
              "reg_warmup": HN_DEFAULTS["reg_warmup"]},
    "paper": {"new_task_init": "copy_prev", "hnet_init": "torch", "task_lr_scale": 1.0,
              "reg_warmup": 0.0},
}
"""How HN-k starts and trains each new task, by preset: ``"jaxcl"``, the defaults (of
:class:`jaxcl.core.hypernet.HypernetConfig` and :data:`jaxcl.learners.hypernetwork.DEFAULTS`: a
fresh embedding for a new task, the regulariser off for the first quarter of each later
experience, LeCun-variance heads), and ``"paper"``, the reference implementation's exactly (a new
task's embedding a copy of the previous task's, the regulariser on from the first step, PyTorch's
``nn.Linear`` initialisation). Each of jaxcl's departures was chosen under a protocol committed
before its runs; ``docs/results/hn_learnability.md`` holds the measurements."""

REFERENCE_SETUP: dict[str, dict[str, Any]] = {
    "jaxcl": {"lower_train": False, "buffer_quotas": "equal", "hn_outputs": 0},
    "paper": {"lower_train": True, "buffer_quotas": "avalanche", "hn_outputs": 10},
}
"""The rest of the reference implementation's setup where jaxcl differs, by preset: LR-k's lower
part kept in training mode (its running statistics drift with each experience), its buffer's
spare slots given out as Avalanche does, HN-k's generated classifier with 10 outputs whatever the
experience holds. ``--preset paper`` sets these beside :data:`HN_PRESETS` ``["paper"]``."""

PAPER_MEMORY_SIZE = 200
"""LR-k's buffer entries when ``memory_size`` is 0: the paper's on Split-CIFAR100 (experiments on
Split-TinyImageNet resolve 0 to its 400 themselves, :func:`experiments.settings.strategy_for`)."""

_SEE = "see docs/results/hn_learnability.md"


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    """A strategy and every setting it reads, shared by the strategies an experiment trains.

    Defaults: the study's (Hemati et al. 2023, Sec. 4 / App. A), except HN-k's for new tasks
    (:data:`HN_PRESETS`). Each field is a
    :func:`jaxcl.config.setting` with its help; an experiment's config holds one as its
    ``strategy`` section, the settings every strategy it trains shares (its labels choose
    ``strategy`` and ``k``). ``Frozen-3`` is ``StrategyConfig("frozen", k=3)``, ``HN-F``
    ``StrategyConfig("hypernetwork", k=0)`` (:meth:`from_label`)."""

    strategy: str = setting("hypernetwork", "one of " + ", ".join(STRATEGIES), flag=False)
    k: int = setting(3, "freeze depth (Frozen-k: 0..4, LR-k: 1..4; HN-k: 0..4, 0 is HN-F; "
                        "unused by Naive, EWC)", flag=False)
    model: str = setting("resnet", "resnet (slim ResNet-18) or mlp")
    nf: int = setting(20, "the ResNet's width (filters of its first stage), >= 1")
    hidden: tuple[int, ...] = setting((64,), "the MLP's hidden widths, each >= 1")
    norm: str = setting("reference", "the ResNet's normalisation: reference (each strategy's as "
                        "in the reference implementation), batch, instance or running; HN-k "
                        "takes reference, batch or instance (a generated network keeps no "
                        "running statistics)")
    conv: str = setting("auto", "the ResNet's convolution, one of " + ", ".join(CONVS) +
                        " (speed only: equal to float rounding)",
                        note="auto takes filter gradients in batch chunks on CPU")
    learning_rate: float = setting(1e-3, "Adam's learning rate, > 0")
    batch_size: int = setting(64, "training minibatch, >= 1 (also EWC's Fisher pass and LR's "
                              "replay)")
    ewc_lambda: float = setting(1.0, "EWC's lambda, >= 0")
    memory_size: int = setting(0, "LR-k's buffer entries, >= 0; 0: the paper's, 200 (400 on "
                               "split_tinyimagenet)")
    replay_coef: float = setting(1.0, "LR-k's c, the replayed batch's weight, >= 0")
    order: Order = setting(HN_DEFAULTS["order"], "HN-k's look-ahead order: 1, 2, or none (the "
                           "regulariser on psi itself)", parse=parse_order,
                           note="the paper's Table 2 ran order 1")
    coef: float = setting(HN_DEFAULTS["coef"], "lambda, HN-k's output regulariser's weight, >= 0")
    max_prev_tasks: int = setting(HN_DEFAULTS["max_prev_tasks"],
                                  "previous tasks HN-k regularises per step, >= 1")
    embedding_dim: int = setting(HypernetConfig.embedding_dim, "HN-k's task-embedding size, >= 1")
    chunk_dim: int = setting(HypernetConfig.chunk_dim,
                             "d, the hypernetwork's lookup dimension per output channel, >= 1")
    new_task_init: str = setting(
        HN_PRESETS["jaxcl"]["new_task_init"], "how a new task's embedding starts: random "
        "(N(0, I)) or copy_prev (the previous task's)",
        note=f"the paper's is copy_prev (--preset paper); ours learns new tasks at small "
             f"budgets, {_SEE}")
    hnet_init: str = setting(
        HN_PRESETS["jaxcl"]["hnet_init"], "how the hypernetwork's trunk and heads start: lecun "
        "(each generated kernel with the variance of Flax's LeCun-normal default) or torch "
        "(PyTorch's Linear default, the reference's)",
        note=f"the paper's is torch (--preset paper), {_SEE}")
    task_lr_scale: float = setting(
        HN_PRESETS["jaxcl"]["task_lr_scale"], "HN-k's learning rate for task embeddings and "
        "per-task tables, as a multiple of --learning-rate, > 0")
    reg_warmup: float = setting(
        HN_PRESETS["jaxcl"]["reg_warmup"], "the fraction of each later experience, at its "
        "start, with HN-k's regulariser off, in [0, 1)",
        note=f"the paper's is 0 (--preset paper), {_SEE}")
    lower_train: bool = setting(
        REFERENCE_SETUP["jaxcl"]["lower_train"], "keep LR-k's frozen lower part in training mode "
        "after the first experience: current batches normalised by their own statistics, the "
        "running ones drifting towards each new experience (evaluation uses them)",
        note="the reference's (--preset paper); jaxcl freezes the statistics with the weights")
    buffer_quotas: str = setting(
        REFERENCE_SETUP["jaxcl"]["buffer_quotas"], "LR-k's buffer slots per class seen: equal "
        "(M // classes) or avalanche (the remainder to the first classes, all M used)",
        note="avalanche is the reference's (--preset paper)")
    hn_outputs: int = setting(
        REFERENCE_SETUP["jaxcl"]["hn_outputs"], "HN-k's generated classifier's outputs, >= the "
        "classes per experience; 0: the classes per experience",
        note="the reference generates 10 (--preset paper)")

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r} is not one of {STRATEGIES}")
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r} is not one of {MODELS}"
                             f"{did_you_mean(self.model, MODELS)}")
        if self.model == "resnet" and self.k not in FREEZE_DEPTHS:
            raise ValueError(f"freeze depth k={self.k!r} is not one of {FREEZE_DEPTHS}")
        if self.strategy == "latent_replay" and self.k < 1:
            raise ValueError(f"latent replay needs a frozen part: k={self.k!r} must be >= 1")
        if self.norm not in NORM_CHOICES:
            raise ValueError(f"norm={self.norm!r} is not one of {NORM_CHOICES}")
        if self.strategy == "hypernetwork" and "running" in self.norms:
            raise ValueError(f"norm={self.norm!r}: a hypernetwork's target is a pure function of "
                             "its generated parameters and keeps no running statistics; use "
                             "'reference', 'batch' or 'instance'")
        check_order(self.order)
        if self.conv not in CONVS:
            raise ValueError(f"conv={self.conv!r} is not one of {CONVS}")
        if self.new_task_init not in NEW_TASK_INITS:
            raise ValueError(f"new_task_init={self.new_task_init!r} is not one of {NEW_TASK_INITS}")
        if self.hnet_init not in INITS:
            raise ValueError(f"hnet_init={self.hnet_init!r} is not one of {INITS}")
        if self.buffer_quotas not in QUOTAS:
            raise ValueError(f"buffer_quotas={self.buffer_quotas!r} is not one of {QUOTAS}")
        if not (isinstance(self.hn_outputs, int) and self.hn_outputs >= 0):
            raise ValueError(f"hn_outputs must be 0 or a positive integer, got "
                             f"{self.hn_outputs!r}")
        if not self.task_lr_scale > 0:
            raise ValueError(f"task_lr_scale must be > 0, got {self.task_lr_scale!r}")
        if not 0.0 <= self.reg_warmup < 1.0:
            raise ValueError(f"reg_warmup must be a fraction in [0, 1), got {self.reg_warmup!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.hidden or any(not (isinstance(w, int) and w >= 1) for w in self.hidden):
            raise ValueError(f"hidden must be one or more positive widths, got {list(self.hidden)}")
        for name in ("batch_size", "max_prev_tasks", "nf", "embedding_dim", "chunk_dim"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not (isinstance(self.memory_size, int) and self.memory_size >= 0):
            raise ValueError(f"memory_size must be a positive integer (or 0, the paper's), got "
                             f"{self.memory_size!r}")
        for name in ("ewc_lambda", "replay_coef", "coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    @property
    def norms(self) -> tuple[str, str]:
        """The resolved normalisation ``(lower, upper)``."""
        if self.norm == "reference":
            return REFERENCE_NORMS[self.strategy]
        return (self.norm, self.norm)

    @property
    def label(self) -> str:
        """The name the study's tables use: Naive, EWC, Frozen-k, LR-k, HN-k, HN-F."""
        prefix = {kind: prefix for prefix, kind in LABELS.items()}[self.strategy]
        if self.strategy in ("naive", "ewc"):
            return prefix
        return "HN-F" if self.strategy == "hypernetwork" and self.k == 0 else f"{prefix}-{self.k}"

    @classmethod
    def from_label(cls, label: str, *, preset: str | None = None,
                   **settings: Any) -> StrategyConfig:
        """``"Naive"``, ``"EWC"``, ``"Frozen-k"``, ``"LR-k"``, ``"HN-k"`` or ``"HN-F"`` with
        ``settings``; ``preset`` (a key of :data:`HN_PRESETS`, e.g. ``"paper"``) fills the
        settings it names that ``settings`` does not give."""
        if preset is not None:
            if preset not in HN_PRESETS:
                raise ValueError(f"preset={preset!r} is not one of {tuple(HN_PRESETS)}")
            settings = {**HN_PRESETS[preset], **settings}
        name, _, depth = label.partition("-")
        with_depth = name in ("Frozen", "LR", "HN")
        if name not in LABELS or bool(depth) != with_depth:
            raise ValueError(f"strategy label {label!r} is not Naive, EWC, Frozen-k, LR-k, HN-k "
                             f"or HN-F{did_you_mean(label, EXAMPLE_LABELS)}")
        settings = {**settings, "strategy": LABELS[name]}
        if depth:
            if not (depth == "F" and name == "HN") and not depth.isdigit():
                allowed = "a digit or F" if name == "HN" else "a digit or F (HN only)"
                raise ValueError(f"strategy label {label!r}: the freeze depth must be {allowed}")
            settings["k"] = 0 if depth == "F" else int(depth)
        config = cls(**settings)
        if depth and config.model == "mlp" and config.k > len(config.hidden):
            raise ValueError(f"strategy label {label!r}: the MLP with hidden="
                             f"{tuple(config.hidden)} has freeze depths 0..{len(config.hidden)}")
        return config


def _split(config: StrategyConfig, num_classes: int, *, head: bool):
    """``config``'s model split at its freeze depth, with its normalisations."""
    norm, upper_norm = config.norms
    return split_model(config.model, config.k, head=head, num_classes=num_classes, nf=config.nf,
                       hidden=config.hidden, norm=norm, upper_norm=upper_norm, conv=config.conv)


def _multi_head(config: StrategyConfig, num_tasks: int, classes_per_task: int):
    """``g_phi`` (``None`` for k = 0) and a multi-head network over its features."""
    split = _split(config, classes_per_task, head=False)
    return split.lower, MultiHeadClassifier(split.upper, num_tasks, classes_per_task)


def _naive(config, num_tasks, classes_per_task, sample_x, optimizer):
    whole = dataclasses.replace(config, k=0)
    return Naive(_multi_head(whole, num_tasks, classes_per_task)[1], optimizer,
                 batch_size=config.batch_size)


def _ewc(config, num_tasks, classes_per_task, sample_x, optimizer):
    whole = dataclasses.replace(config, k=0)
    return EWC(_multi_head(whole, num_tasks, classes_per_task)[1], optimizer,
               batch_size=config.batch_size, ewc_lambda=config.ewc_lambda)


def _frozen(config, num_tasks, classes_per_task, sample_x, optimizer):
    lower, net = _multi_head(config, num_tasks, classes_per_task)
    return Frozen(lower, net, optimizer)


def _latent_replay(config, num_tasks, classes_per_task, sample_x, optimizer):
    lower, net = _multi_head(config, num_tasks, classes_per_task)
    return LatentReplay(lower, net, optimizer, lower_train=config.lower_train,
                        classes_per_task=classes_per_task,
                        memory_size=config.memory_size or PAPER_MEMORY_SIZE,
                        replay_coef=config.replay_coef, replay_batch_size=config.batch_size,
                        quotas=config.buffer_quotas)


def _hypernetwork(config, num_tasks, classes_per_task, sample_x, optimizer):
    if config.hn_outputs and config.hn_outputs < classes_per_task:
        raise ValueError(f"hn_outputs={config.hn_outputs} is fewer than the {classes_per_task} "
                         "classes of an experience; 0 gives one output per class")
    split = _split(config, config.hn_outputs or classes_per_task, head=True)
    del optimizer  # HN-k's own: Adam, the per-task leaves at their own rate
    hnet_config = HypernetConfig(num_tasks=num_tasks, embedding_dim=config.embedding_dim,
                                 chunk_dim=config.chunk_dim, new_task_init=config.new_task_init,
                                 init=config.hnet_init)
    return PartialHypernet.build(split.upper, split.lower, sample_x, hnet_config=hnet_config,
                                 learning_rate=config.learning_rate,
                                 task_lr_scale=config.task_lr_scale, order=config.order,
                                 coef=config.coef, max_prev_tasks=config.max_prev_tasks,
                                 reg_warmup=config.reg_warmup)


BUILDERS = {"naive": _naive, "ewc": _ewc, "frozen": _frozen, "latent_replay": _latent_replay,
            "hypernetwork": _hypernetwork}


def build_strategy(
    config: StrategyConfig, *, num_tasks: int, classes_per_task: int, sample_x: jax.Array
) -> Learner:
    """The strategy object for ``config`` on a stream of ``num_tasks`` x ``classes_per_task``."""
    optimizer = optax.adam(config.learning_rate)
    return BUILDERS[config.strategy](config, num_tasks, classes_per_task, sample_x, optimizer)
