"""The Hypernet-SDE-Flow study's settings, as data, and the models they name.

:class:`Config` holds the run's options (:class:`experiments.settings.RunOptions`), the point
data (:class:`PointsData`), the models' shared settings (:class:`StudyModel`) and the loss
weights (:class:`StudyWeights`), each section checked by its own ``__post_init__``; every default
is its owner's (:class:`jaxcl.learners.sde_flow_variant.Variant`,
:class:`jaxcl.learners.sde_flow_variant.LossWeights`, :class:`jaxcl.models.sde_flow.SdeFlowConfig`,
:func:`jaxcl.data.points.point_tasks`) unless the study says otherwise. :func:`variant` and
:func:`cells` turn a config into the models the study trains.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

import jax

from experiments.settings import RunOptions
from jaxcl.config import check_distinct, section, setting
from jaxcl.core.lookahead import VIRTUAL_STEPS
from jaxcl.data.points import point_tasks
from jaxcl.learners.sde_flow import SdeFlowLearner
from jaxcl.learners.sde_flow_variant import LossWeights, Variant, param_count, stored_per_task
from jaxcl.models.sde_flow import NLL_KINDS, SdeFlowConfig

VARIANT_NAMES = ("mlp", "hypernet_sde_flow", "ablation_no_replay_sep", "ablation_penalties_x10",
                 "repair_order1", "repair_order2", "repair_generated_order1",
                 "repair_generated_order2", "mlp_task", "mlp_task_wide", "replay_mlp_task",
                 "hnet_mlp_order1", "hnet_mlp_order2", "repair_none", "oracle_stored")
"""Every model the study can train (:func:`variant`): the study's model and its ablations, the
repairs, and the fair baselines the repair is measured against."""
PROTOCOL_VARIANTS = ("mlp", "mlp_task", "mlp_task_wide", "replay_mlp_task", "hypernet_sde_flow",
                     "hnet_mlp_order1", "hnet_mlp_order2", "repair_none", "repair_order1",
                     "repair_order2", "oracle_stored")
"""The models of the fair study (``docs/protocols/sde_flow_fair.md``)."""
MAIN_VARIANTS = ("mlp", "mlp_task", "replay_mlp_task", "hnet_mlp_order1", "repair_none",
                 "repair_order1", "oracle_stored")
"""The default ``variants``, the main job's: the repair and the baselines of the protocol's
headline claims (2, 3, 5, 6, 7, 9); the wide MLP, order 2 and the study's own model are one
``--variants`` away."""
LATENTS = (1, 2, 3)
SWEEPS = ("none", "replay", "virtual_step")
"""``--sweep``: the variants (``none``), or a grid of cells that share one compiled program per
variant kind, with the MLP as reference (:func:`cells`)."""
REPLAY_MEMORY = (0, 1, 2, 5, 20)
REPLAY_GAMMAS = (0.1, 1.0)
VIRTUAL_LRS = (1e-5, 1e-4, 1e-3, 1e-2)
VIRTUAL_ADAM_LR = 1e-4
NUM_TASKS = 5

_POINTS = {name: p.default for name, p in inspect.signature(point_tasks).parameters.items()}
_WEIGHTS = LossWeights._field_defaults


@dataclasses.dataclass(frozen=True)
class PointsData:
    """The five tasks of 3-D points.

    :func:`jaxcl.data.points.point_tasks`; its defaults are these settings' defaults."""

    train_per_task: int = setting(_POINTS["train_per_task"], "training points per task, >= 2")
    test_per_task: int = setting(_POINTS["test_per_task"], "test points per task, >= 2")
    noise: float = setting(_POINTS["noise"], "Gaussian noise added to the points, >= 0")

    def __post_init__(self):
        for name in ("train_per_task", "test_per_task"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 2):
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0, got {self.noise!r}")


@dataclasses.dataclass(frozen=True)
class StudyModel:
    """What every model of the study shares: the autoencoder's shapes and its training."""

    latent: int = setting(2, "latent size of both models, 1, 2 or 3 (the data are 3-D; the "
                          "paper gives no size)", note="2: the fair protocol's, where the plain "
                          "MLP forgets (docs/protocols/sde_flow_fair.md)")
    nll: str = setting(SdeFlowConfig.nll, "the NLL: paper (-log p(x) through encoder and flow, the "
                       "paper's Eq. 2; below latent 3 a heuristic), rectangular (the density on "
                       "the decoder's manifold, rectangular flows) or flow_only (-log p(z0))",
                       note="paper: the fair protocol's (amendment 1: rectangular reached -inf "
                       "at latent 2, the decoder's volume collapsing)")
    hidden: tuple[int, ...] = setting(SdeFlowConfig.hidden, "hidden widths of the encoder and "
                                      "of the decoder, each >= 1")
    sde_steps: int = setting(SdeFlowConfig.sde_steps, "fixed solver steps of each SDE, >= 1")
    batch_size: int = setting(Variant.batch_size, "training minibatch, >= 1")
    learning_rate: float = setting(Variant.learning_rate, "AdamW's learning rate, > 0")
    memory_per_task: int = setting(Variant.memory_per_task, "training points of each finished "
                                   "task stored for replay by the study's model and its "
                                   "ablations (the repairs store none)")
    virtual: str = setting(Variant.virtual, "the repairs' virtual step: sgd or adam "
                           "(eps_root > 0)")
    probe: bool = setting(Variant.probe, "the repairs log the task loss's largest curvature, "
                          "step x curvature and what order 2 adds (correction ratio, cosine) "
                          "every step")

    def __post_init__(self):
        if self.latent not in LATENTS:
            raise ValueError(f"latent={self.latent!r} is not one of {LATENTS}: the points are "
                             "3-D, and the encoder keeps or compresses their dimension")
        if self.nll not in NLL_KINDS:
            raise ValueError(f"nll={self.nll!r} is not one of {NLL_KINDS}")
        if self.virtual not in VIRTUAL_STEPS:
            raise ValueError(f"virtual={self.virtual!r} is not one of {VIRTUAL_STEPS}")


@dataclasses.dataclass(frozen=True)
class StudyWeights:
    """The loss's weights, traced: models that differ only in these share one program.

    :class:`jaxcl.learners.sde_flow_variant.LossWeights`, whose defaults these are."""

    nll_weight: float = setting(_WEIGHTS["nll"], "beta, the NLL's weight after annealing, >= 0")
    replay: float = setting(_WEIGHTS["replay"], "gamma, the replay term's weight, >= 0")
    separation: float = setting(_WEIGHTS["separation"], "delta, the embeddings' separation "
                                "term's weight, >= 0")
    coef: float = setting(_WEIGHTS["coef"], "lambda, the repair's output regulariser weight, "
                          ">= 0")
    virtual_lr: float = setting(_WEIGHTS["virtual_lr"], "eta, the repairs' virtual step size, "
                                ">= 0", note="1e-3 keeps the virtual SGD step small (step x "
                                "curvature about 0.3 with the paper NLL, --sweep virtual_step); "
                                "at 1e-2 it is about 3")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) >= 0:
                raise ValueError(f"{field.name} must be >= 0, got {getattr(self, field.name)!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    """The study's settings (weights and memory size are ours: the study does not give them).

    All seeds train as one vmapped program; ``devices`` trains data-parallel over that many
    devices (it must divide ``batch_size``). The run checkpoints a model after a task in
    ``OUT/checkpoints/`` (and every ``checkpoint_epochs`` epochs inside one if positive) once
    ``checkpoint_seconds`` have passed since its last checkpoint, and a killed run started again
    with the same command resumes. ``tensorboard`` also writes the
    metrics as event files in ``OUT/tensorboard/<model>/seed_<s>``.
    """

    NOTES: typing.ClassVar[dict[str, str]] = {
        "steps_in": "scan: these models hold no convolution, and on CPU a step inside the "
                    "epoch's scan costs 0.6x one called from Python (3.8 against 6.3 ms, the "
                    "default model); auto would pick python on CPU",
        "checkpoint_seconds": "60: a model's five tasks train in seconds to a few minutes, and "
                              "writing a checkpoint after each cost the main job a fifth of its "
                              "time (0.46 s a write); a killed run loses at most a minute",
        "workers": "0: a model's step is many small operations that keep about one core busy, "
                   "so the models train side by side, one per core (the main job on 2 cores: "
                   "see docs/devnotes/performance.md)"}

    run: RunOptions = section(RunOptions, epochs=Variant.epochs, steps_in="scan",
                              seeds=(0, 1, 2, 3, 4), checkpoint_seconds=60.0,
                              workers=0)
    data: PointsData = section(PointsData)
    model: StudyModel = section(StudyModel)
    weights: StudyWeights = section(StudyWeights)
    variants: tuple[str, ...] = setting(MAIN_VARIANTS, "models to train: "
                                        + ", ".join(VARIANT_NAMES), effect="selection",
                                        distinct=True)
    sweep: str = setting("none", "none (the variants), replay (memory per task x gamma, "
                         "separation off, beta annealed once, identity SDEs; the study's model) "
                         "or virtual_step (orders 1 and 2 over the virtual step, probed); a "
                         "sweep replaces --variants")
    ablation_factor: float = setting(10.0, "the factor on replay and separation of "
                                     "ablation_penalties_x10, > 0")

    def __post_init__(self):
        from jaxcl.train.parallel import check_devices

        check_distinct(self)
        unknown = [v for v in self.variants if v not in VARIANT_NAMES]
        if unknown or not self.variants:
            raise ValueError(f"variants {unknown or '()'} not known; choose from {VARIANT_NAMES}")
        if self.sweep not in SWEEPS:
            raise ValueError(f"sweep={self.sweep!r} is not one of {SWEEPS}")
        if not self.ablation_factor > 0:
            raise ValueError(f"ablation_factor must be > 0, got {self.ablation_factor!r}")
        check_devices(self.run.devices, self.model.batch_size)
        for v in cells(self).values():  # every model's settings, before any work
            learner(self, v)


QUICK = {"epochs": 3, "train_per_task": 40, "test_per_task": 20, "batch_size": 20,
         "memory_per_task": 5, "hidden": (8,), "sde_steps": 2, "progress": False}
"""``--quick``: seconds of training, for tests."""


def variant(config: Config, name: str) -> Variant:
    """The :class:`jaxcl.learners.sde_flow_variant.Variant` of model ``name``."""
    m, w = config.model, config.weights
    model = SdeFlowConfig(latent_dim=m.latent, nll=m.nll, hidden=m.hidden, sde_steps=m.sde_steps)
    weights = LossWeights(nll=w.nll_weight, replay=w.replay, separation=w.separation,
                          coef=w.coef, virtual_lr=w.virtual_lr)
    base = Variant(model=model, epochs=config.run.epochs, batch_size=m.batch_size,
                   learning_rate=m.learning_rate, memory_per_task=m.memory_per_task,
                   virtual=m.virtual, weights=weights)
    f = config.ablation_factor
    mlp = dataclasses.replace(model, model="mlp")
    told = dataclasses.replace(mlp, task_inputs=NUM_TASKS)
    plain = dataclasses.replace(base, model=mlp, memory_per_task=0)  # stores nothing
    repair = dataclasses.replace(base, shared="frozen", order=1, memory_per_task=0,
                                 weights=weights._replace(replay=0.0))
    if name == "mlp_task_wide":  # as many parameters as the repair trains
        return dataclasses.replace(plain, model=dataclasses.replace(
            told, hidden=matched_width(told, param_count(repair, NUM_TASKS))))
    if name == "replay_mlp_task":  # as many floats stored per task as the repair keeps
        return dataclasses.replace(plain, model=told,
                                   memory_per_task=replay_budget(config, repair))
    if name in ("mlp", "mlp_task"):
        return dataclasses.replace(plain, model=told if name == "mlp_task" else mlp)
    changes: dict[str, dict[str, Any]] = {
        "repair_none": {"shared": "frozen", "order": "none", "memory_per_task": 0,
                        "weights": weights._replace(replay=0.0)},
        "oracle_stored": {"shared": "frozen", "order": 1, "memory_per_task": 0,
                          "evaluate_stored": True, "weights": weights._replace(replay=0.0)},
        "hypernet_sde_flow": {},
        "ablation_no_replay_sep": {"weights": weights._replace(replay=0.0, separation=0.0)},
        "ablation_penalties_x10": {"weights": weights._replace(
            replay=f * w.replay, separation=f * w.separation)},
    }
    for shared, prefix in (("frozen", "repair_order"), ("generated", "repair_generated_order")):
        for order in (1, 2):
            changes[f"{prefix}{order}"] = {"shared": shared, "order": order, "probe": m.probe,
                                           "memory_per_task": 0,
                                           "weights": weights._replace(replay=0.0)}
    for order in (1, 2):
        changes[f"hnet_mlp_order{order}"] = {
            "model": dataclasses.replace(model, model="hypernet_mlp"), "order": order,
            "memory_per_task": 0, "weights": weights._replace(replay=0.0)}
    return dataclasses.replace(base, **changes[name])


def replay_budget(config: Config, repair: Variant) -> int:
    """The points per task ``replay_mlp_task`` stores: as many 3-D points as fit in the floats
    the repair keeps per task (its regulariser's targets), at most a task's training set."""
    data_dim = repair.model.data_dim
    return min(config.data.train_per_task, stored_per_task(repair)["targets"] // data_dim)


def matched_width(model: SdeFlowConfig, target: int) -> tuple[int, ...]:
    """The hidden widths, all equal and as many as ``model.hidden``, of the narrowest
    encoder and decoder with at least ``target`` parameters together."""
    def count(width):
        wide = dataclasses.replace(model, hidden=(width,) * len(model.hidden))
        return sum((inputs + 1) * outputs for path, net in wide.stacks().items()
                   for inputs, outputs in zip((wide.input_dim(path), *net.features),
                                              net.features))

    width = max(model.hidden)
    while count(width) < target:
        width += 1
    return (width,) * len(model.hidden)


def cells(config: Config) -> dict[str, Variant]:
    """Every model the run trains, by name: ``variants``, or the ``sweep``'s cells beside the
    MLP.

    * ``replay``: the study's model with the first ``m`` of the stored points replayed, ``m`` in
      :data:`REPLAY_MEMORY` (those up to ``memory_per_task``) times ``gamma`` in
      :data:`REPLAY_GAMMAS`; then, at all stored points and the run's ``gamma``, without
      separation (``delta = 0``), with ``beta`` annealed once per run instead of per task, and
      with both SDEs the identity. All differ only in traced weights: one program.
    * ``virtual_step``: ``repair_order1`` and ``repair_order2``, probed, with a virtual SGD step
      of each size in :data:`VIRTUAL_LRS` and a virtual Adam step of :data:`VIRTUAL_ADAM_LR`:
      one program per order and virtual optimizer.
    """
    if config.sweep == "none":
        return {name: variant(config, name) for name in config.variants}
    out = {"mlp": variant(config, "mlp")}
    if config.sweep == "replay":
        study = variant(config, "hypernet_sde_flow")
        w = study.weights
        for gamma in REPLAY_GAMMAS:
            for m in (m for m in REPLAY_MEMORY if m <= config.model.memory_per_task):
                out[f"replay_m{m}_g{gamma:g}"] = dataclasses.replace(
                    study, weights=w._replace(replay=gamma, memory=float(m)))
        for name, change in (("no_separation", {"separation": 0.0}),
                             ("beta_once", {"anneal_per_task": 0.0}),
                             ("identity_sde", {"sde_gate": 0.0})):
            out[f"replay_{name}"] = dataclasses.replace(study, weights=w._replace(**change))
        return out
    for order in (1, 2):
        repair = variant(config, f"repair_order{order}")
        for virtual, lrs in (("sgd", VIRTUAL_LRS), ("adam", (VIRTUAL_ADAM_LR,))):
            for lr in lrs:
                out[f"vstep_o{order}_{virtual}_{lr:g}"] = dataclasses.replace(
                    repair, virtual=virtual, probe=True,
                    weights=repair.weights._replace(virtual_lr=lr))
    return out


def learner(config: Config, v: Variant) -> SdeFlowLearner:
    """The learner of ``v`` (its settings checked against the tasks' size)."""
    return SdeFlowLearner.build(v, num_tasks=NUM_TASKS,
                                train_per_task=config.data.train_per_task)


def tasks(config: Config, seed: int):
    """The five point tasks of ``seed``, as a stream."""
    d = config.data
    return point_tasks(jax.random.key(seed), train_per_task=d.train_per_task,
                       test_per_task=d.test_per_task, noise=d.noise)
