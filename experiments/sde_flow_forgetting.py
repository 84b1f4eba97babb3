"""The Hypernet-SDE-Flow forgetting study, its two ablations, and its repair by partial hypernetworks.

Five tasks of 3-D points (:mod:`jaxcl.data.points`), trained in sequence, 300 epochs each
with AdamW at 5e-4. After each task the test MSE on every task fills one row of the MSE matrix.
Models (:mod:`jaxcl.learners.sde_flow_model`, trained as learners of the one loop,
:mod:`jaxcl.learners.sde_flow`; ``--variants`` picks a subset):

=============================  ===============================================================
``mlp``                        MLP autoencoder, nothing against forgetting
``hypernet_sde_flow``          the study's model: MSE + beta NLL + gamma replay + delta sep.
``ablation_no_replay_sep``     the same without replay and separation (gamma = delta = 0)
``ablation_penalties_x10``     replay and separation weights times ``ablation_factor``
``repair_order1`` / ``2``      flow and SDEs frozen after task 0; output regulariser through a
                               first- / second-order look-ahead; replay weight 0 (see below)
``repair_generated_order1/2``  the same with flow and SDE networks generated per task too
=============================  ===============================================================

The repairs store no data: their memory holds 0 points per task (``memory_per_task=0``, replay
weight 0). What they
keep against forgetting is the hypernetwork's outputs at the start of each task (the output
regulariser's targets), counted by ``memory_bytes``.

The NLL (``--nll``, :func:`jaxcl.models.sde_flow.negative_log_likelihood`): ``paper`` (the
default) is the paper's Eq. 2, ``-log p(x) = -log N(u; 0, I) - log|det du/dz0| - log_vol(x)``
with ``u = F(Enc(x))`` through the encoder and the flow; ``flow_only`` is ``-log p(z0)``, the encoder's Jacobian dropped, which rewards shrinking ``z0``.
``--latent`` (1, 2 or 3; the paper gives no size) sets both models' latent; below 3, ``log_vol``
is ``0.5 log det(J J^T)`` of the ``latent x 3`` encoder Jacobian ``J`` (rectangular flows).

``--sweep`` trains a grid of cells beside the MLP instead of ``--variants``
(:meth:`Config.cells`); cells that differ only in traced weights share one compiled program:

* ``replay``: the study's model with 0, 1, 2, 5 or 20 replayed points per finished task times
  ``gamma`` 0.1 or 1, then at all 20 points without separation, with ``beta`` ramped once per run
  rather than per task, and with identity SDEs. Table and ``sweep_replay.png`` (forgetting
  against memory, a line per ``gamma``, the MLP and the published +0.38 as references).
* ``virtual_step``: ``repair_order1`` and ``repair_order2`` with a virtual SGD step of 1e-5 ..
  1e-2 and a virtual Adam step, each probed (``--probe``: every step logs the largest curvature
  of the task loss, step x curvature, and the ratio and cosine of order 2's correction to the
  order-1 regulariser gradient). Table and ``sweep_virtual_step.png``.

Every run reports paired comparisons by seed (model minus reference, per-seed differences, their
95 % interval): every model against the MLP; in the replay sweep, every cell against the
study's; in the virtual-step sweep, order 2 against order 1 at each step.

The run folder (``--out DIR``)::

    config.json, summary.md             the settings; every table below, in Markdown
    mse_matrices.csv                    model, seed ("mean" over seeds), after_task, task_0..
    forgetting.csv                      the forgetting table, with the study's numbers
    steps.csv                           model, seed, step, task, then every step's metrics
                                        (jaxcl.learners.sde_flow.STEP_METRICS: the loss terms,
                                        z0_std, sigma, decoder_gain, encoder_log_det; probed
                                        repairs' PROBE_METRICS too), the first seed
    sweep_<sweep>.png                   the sweep's figure (--sweep)
    mse_matrix_<model>.png              heat maps of the MSE matrices
    checkpoints/<model>/                the latest checkpoints (orbax) while the run is unfinished:
                                        a killed run resumes; removed when it finishes unless
                                        ``--keep-checkpoints``
    tensorboard/<model>/seed_<s>/       event files (``--tensorboard``)
    metrics.json                        schema "jaxcl.sde_flow/1":
      {"schema", "experiment", "config", "seeds",
       "reference": {"mlp": {"forgetting_t0"}, "hypernet_sde_flow": {...}, "ratio"},
       "paired": [{"model", "against", "metric", "diff", "ci95", "lower_in", "seeds"}],
       "programs": compiled loop programs the run added,
       "<model>": {"mse_matrix": [[...]] (mean over seeds), "forgetting_t0", "mean_forgetting",
                   "<same>_std", "<same>_ci95" (the forgetting's 95 % interval's half-width,
                   Student's t; null for one seed), "time_s", "compile_s",
                   "end_of_task": {"z0_std", "sigma", "decoder_gain", "encoder_log_det": one
                                   value per task, the mean of its last 10 steps and the seeds},
                   "probe": {"curvature", "step_curvature", "virtual_move", "correction_ratio",
                             "correction_cosine": {"start_of_task", "end_of_task": per task,
                             first / last 10 steps, median over seeds}} (probed repairs only),
                   "per_seed": [{"seed", "mse_matrix", "forgetting_t0", "mean_forgetting"}]},
       ...one entry per model run}

``forgetting_t0 = M[4, 0] - M[0, 0]`` (the MSE increase on task 0 from after task 0 to after the
last task; positive is forgetting); ``mean_forgetting`` averages ``M[4, j] - M[j, j]`` over
``j = 0..3``.

    python -m experiments.sde_flow_forgetting            # the study, about 4.5 minutes on 2 cores
    python -m experiments.sde_flow_forgetting --quick    # seconds of training, for tests
    jaxcl run sde_flow_forgetting --seeds 0 1 2 --devices 2 --out runs/sde   # the same entry
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys
import typing
from typing import Any

import jax
import numpy as np

from experiments.common import RunOptions, markdown_table, module_main
from jaxcl.core import metrics as cl_metrics
from jaxcl.data.points import point_tasks
from jaxcl.io import plots, run_folder
from jaxcl.io.checkpoints import RunCheckpoints, content_digest
from jaxcl.io.event_logs import write_events
from jaxcl.io.records import ci95
from jaxcl.learners.sde_flow import STEP_METRICS, SdeFlowLearner
from jaxcl.learners.sde_flow_grad import PROBE_METRICS
from jaxcl.learners.sde_flow_model import LossWeights, Variant
from jaxcl.models.sde_flow import NLL_KINDS, SdeFlowConfig
from jaxcl.train.events import ExperienceEnded
from jaxcl.train.loop import RunResult, train_seeds

NAME = "sde_flow_forgetting"
SCHEMA = "jaxcl.sde_flow/1"
# The study's forgetting on task 0 (MSE after task 4 minus after task 0).
REFERENCE = {"mlp": 0.0016, "hypernet_sde_flow": 0.3822}
VARIANT_NAMES = ("mlp", "hypernet_sde_flow", "ablation_no_replay_sep", "ablation_penalties_x10",
                 "repair_order1", "repair_order2", "repair_generated_order1",
                 "repair_generated_order2")
LATENTS = (1, 2, 3)
SWEEPS = ("none", "replay", "virtual_step")
"""``--sweep``: the variants (``none``), or a grid of cells that share one compiled program per
variant kind, with the MLP as reference (:meth:`Config.cells`)."""
REPLAY_MEMORY = (0, 1, 2, 5, 20)
REPLAY_GAMMAS = (0.1, 1.0)
VIRTUAL_LRS = (1e-5, 1e-4, 1e-3, 1e-2)
VIRTUAL_ADAM_LR = 1e-4
COLLAPSE = ("z0_std", "sigma", "decoder_gain", "encoder_log_det")
"""The step metrics that show a collapsing latent, summarised per task in ``end_of_task``."""


@dataclasses.dataclass(frozen=True)
class Config(RunOptions):
    """The study's settings (weights and memory size are ours: the study does not give them).

    All seeds train as one vmapped program; ``devices`` trains data-parallel over that many
    devices (it must divide ``batch_size``). The run checkpoints every model after every task in
    ``OUT/checkpoints/<model>`` (and every ``checkpoint_epochs`` epochs inside one if positive),
    and a killed run started again with the same command resumes. ``tensorboard`` also writes
    the metrics as event files in ``OUT/tensorboard/<model>/seed_<s>``. ``coef`` is the repair's
    ``lambda`` (the output regulariser's weight, as everywhere in jaxcl).
    """

    HELP: typing.ClassVar[dict[str, str]] = {
        **RunOptions.HELP,
        "epochs": "epochs per task, >= 1",
        "learning_rate": "AdamW's learning rate, > 0",
        "variants": "models to train: " + ", ".join(VARIANT_NAMES),
        "train_per_task": "training points per task, >= 2",
        "test_per_task": "test points per task, >= 2",
        "noise": "Gaussian noise added to the points, >= 0",
        "coef": "lambda, the repair's output regulariser weight, >= 0",
        "latent": "latent size of both models, 1, 2 or 3 (the data are 3-D; the paper gives no "
                  "size)",
        "nll": "the NLL: paper (-log p(x) through encoder and flow, the paper's Eq. 2) or "
               "flow_only (-log p(z0), the encoder's Jacobian dropped)",
        "nll_weight": "beta, the NLL's weight after annealing, >= 0",
        "memory_per_task": "training points of each finished task stored for replay by the "
                           "study's model and its ablations (the repairs store none)",
        "virtual_lr": "eta, the repairs' virtual step size, >= 0",
        "virtual": "the repairs' virtual step: sgd or adam (eps_root > 0)",
        "probe": "the repairs log the task loss's largest curvature, step x curvature and "
                 "what order 2 adds (correction ratio, cosine) every step",
        "sweep": "none (the variants), replay (memory per task x gamma, separation off, beta "
                 "annealed once, identity SDEs; the study's model) or virtual_step (orders 1 and "
                 "2 over the virtual step, probed); a sweep replaces --variants",
    }
    NOTES: typing.ClassVar[dict[str, str]] = {
        "virtual_lr": "1e-3 keeps the virtual SGD step small (step x curvature about 0.3 with "
                      "the paper NLL, --sweep virtual_step); at 1e-2 it is about 3",
        "steps_in": "scan: these models hold no convolution, and on CPU a step inside the "
                    "epoch's scan costs 0.6x one called from Python (3.8 against 6.3 ms, the "
                    "default model); auto would pick python on CPU",
    }
    DISTINCT = ("variants",)
    NO_EFFECT: typing.ClassVar[tuple[str, ...]] = (*RunOptions.NO_EFFECT, "variants")
    """Settings that cannot change a variant's numbers: which variants run (each checkpoints
    apart), how often checkpoints are taken, event files, progress bars."""

    epochs: int = 300
    batch_size: int = 50
    learning_rate: float = 5e-4
    steps_in: str = "scan"
    variants: tuple[str, ...] = VARIANT_NAMES
    train_per_task: int = 300
    test_per_task: int = 100
    noise: float = 0.05
    latent: int = 3
    nll: str = "paper"
    hidden: tuple[int, ...] = (32, 32)
    sde_steps: int = 8
    nll_weight: float = 0.01
    replay: float = 1.0
    separation: float = 0.1
    memory_per_task: int = 20
    coef: float = 1.0
    virtual_lr: float = 0.001
    virtual: str = "sgd"
    probe: bool = False
    sweep: str = "none"
    ablation_factor: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        unknown = [v for v in self.variants if v not in VARIANT_NAMES]
        if unknown or not self.variants:
            raise ValueError(f"variants {unknown or '()'} not known; choose from {VARIANT_NAMES}")
        if self.latent not in LATENTS:
            raise ValueError(f"latent={self.latent!r} is not one of {LATENTS}: the points are "
                             "3-D, and the encoder keeps or compresses their dimension")
        if self.nll not in NLL_KINDS:
            raise ValueError(f"nll={self.nll!r} is not one of {NLL_KINDS}")
        if self.sweep not in SWEEPS:
            raise ValueError(f"sweep={self.sweep!r} is not one of {SWEEPS}")
        if not self.ablation_factor > 0:
            raise ValueError(f"ablation_factor must be > 0, got {self.ablation_factor!r}")
        for name in ("train_per_task", "test_per_task"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 2):
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        for variant in self.cells().values():  # every model's settings, before any work
            self.learner(variant)

    def variant(self, name: str) -> Variant:
        """The :class:`jaxcl.learners.sde_flow_model.Variant` of model ``name``."""
        model = SdeFlowConfig(latent_dim=self.latent, nll=self.nll, hidden=self.hidden,
                              sde_steps=self.sde_steps)
        weights = LossWeights(nll=self.nll_weight, replay=self.replay,
                              separation=self.separation, coef=self.coef,
                              virtual_lr=self.virtual_lr)
        base = Variant(model=model, epochs=self.epochs, batch_size=self.batch_size,
                       learning_rate=self.learning_rate, memory_per_task=self.memory_per_task,
                       virtual=self.virtual, weights=weights)
        w = self.ablation_factor
        changes: dict[str, dict[str, Any]] = {
            "mlp": {"model": dataclasses.replace(model, model="mlp")},
            "hypernet_sde_flow": {},
            "ablation_no_replay_sep": {"weights": weights._replace(replay=0.0, separation=0.0)},
            "ablation_penalties_x10": {"weights": weights._replace(
                replay=w * self.replay, separation=w * self.separation)},
        }
        for shared, prefix in (("frozen", "repair_order"), ("generated", "repair_generated_order")):
            for order in (1, 2):
                changes[f"{prefix}{order}"] = {"shared": shared, "order": order,
                                               "probe": self.probe, "memory_per_task": 0,
                                               "weights": weights._replace(replay=0.0)}
        return dataclasses.replace(base, **changes[name])

    def cells(self) -> dict[str, Variant]:
        """Every model the run trains, by name: ``variants``, or the ``sweep``'s cells beside
        the MLP.

        * ``replay``: the study's model with the first ``m`` of the stored points replayed,
          ``m`` in :data:`REPLAY_MEMORY` (those up to ``memory_per_task``) times ``gamma`` in
          :data:`REPLAY_GAMMAS`; then, at all stored points and the run's ``gamma``, without
          separation (``delta = 0``), with ``beta`` annealed once per run instead of per task,
          and with both SDEs the identity. All differ only in traced weights: one program.
        * ``virtual_step``: ``repair_order1`` and ``repair_order2``, probed, with a virtual SGD
          step of each size in :data:`VIRTUAL_LRS` and a virtual Adam step of
          :data:`VIRTUAL_ADAM_LR`: one program per order and virtual optimizer.
        """
        if self.sweep == "none":
            return {name: self.variant(name) for name in self.variants}
        cells = {"mlp": self.variant("mlp")}
        if self.sweep == "replay":
            study = self.variant("hypernet_sde_flow")
            w = study.weights
            for gamma in REPLAY_GAMMAS:
                for m in (m for m in REPLAY_MEMORY if m <= self.memory_per_task):
                    cells[f"replay_m{m}_g{gamma:g}"] = dataclasses.replace(
                        study, weights=w._replace(replay=gamma, memory=float(m)))
            for name, change in (("no_separation", {"separation": 0.0}),
                                 ("beta_once", {"anneal_per_task": 0.0}),
                                 ("identity_sde", {"sde_gate": 0.0})):
                cells[f"replay_{name}"] = dataclasses.replace(study, weights=w._replace(**change))
            return cells
        for order in (1, 2):
            repair = self.variant(f"repair_order{order}")
            for virtual, lrs in (("sgd", VIRTUAL_LRS), ("adam", (VIRTUAL_ADAM_LR,))):
                for lr in lrs:
                    cells[f"vstep_o{order}_{virtual}_{lr:g}"] = dataclasses.replace(
                        repair, virtual=virtual, probe=True,
                        weights=repair.weights._replace(virtual_lr=lr))
        return cells

    def learner(self, variant: Variant) -> SdeFlowLearner:
        """The learner of ``variant`` (its settings checked against the tasks' size)."""
        return SdeFlowLearner.build(variant, num_tasks=5, train_per_task=self.train_per_task)

    def tasks(self, seed: int):
        """The five point tasks of ``seed``, as a stream."""
        return point_tasks(jax.random.key(seed), train_per_task=self.train_per_task,
                           test_per_task=self.test_per_task, noise=self.noise)


QUICK = {"epochs": 3, "train_per_task": 40, "test_per_task": 20, "batch_size": 20,
         "memory_per_task": 5, "hidden": (8,), "sde_steps": 2, "progress": False}


def _record(runs: list[tuple[int, RunResult]]) -> dict[str, Any]:
    per_seed = [{"seed": s, "mse_matrix": r.matrix.tolist(), **cl_metrics.error_summary(r.matrix)}
                for s, r in runs]
    scalars = [{**p, "time_s": r.time_s, "compile_s": r.compile_s}
               for p, (_, r) in zip(per_seed, runs)]
    out: dict[str, Any] = {"mse_matrix": np.mean([r.matrix for _, r in runs], axis=0).tolist()}
    for name in ("forgetting_t0", "mean_forgetting", "time_s", "compile_s"):
        values = np.array([row[name] for row in scalars], dtype=float)
        out[name], out[f"{name}_std"] = float(values.mean()), float(values.std())
        if name in ("forgetting_t0", "mean_forgetting"):
            out[f"{name}_ci95"] = ci95(values)
    out["end_of_task"] = {name: np.mean([_end_of_task(r.step_metrics, name) for _, r in runs],
                                        axis=0).tolist() for name in COLLAPSE}
    probed = [m for m in PROBE_METRICS if m in runs[0][1].step_metrics]
    if probed:
        # The median over seeds: one seed's power iteration can spike for a few steps while its
        # vector turns to a new top direction, and a mean would report that seed alone.
        out["probe"] = {name: {"start_of_task": np.median([_start_of_task(r.step_metrics, name)
                                                           for _, r in runs], axis=0).tolist(),
                               "end_of_task": np.median([_end_of_task(r.step_metrics, name)
                                                         for _, r in runs], axis=0).tolist()}
                        for name in probed}
    out["per_seed"] = per_seed
    return out


def paired(records: dict[str, dict], model: str, against: str,
           metric: str = "forgetting_t0") -> dict[str, Any]:
    """``model`` against ``against``, paired by seed: the mean of the per-seed differences of
    ``metric`` (``model`` minus ``against``), its 95 % interval (:func:`ci95`; ``None`` for one
    seed) and in how many seeds ``model`` is lower."""
    a = {row["seed"]: row[metric] for row in records[model]["per_seed"]}
    b = {row["seed"]: row[metric] for row in records[against]["per_seed"]}
    seeds = [s for s in a if s in b]
    diff = np.array([a[s] - b[s] for s in seeds], dtype=float)
    return {"model": model, "against": against, "metric": metric, "diff": float(diff.mean()),
            "ci95": ci95(diff), "lower_in": int(np.sum(diff < 0)), "seeds": len(seeds)}


def _interval(value: float, half: float | None, digits: int = 4) -> str:
    return "—" if half is None else f"[{value - half:+.{digits}f}, {value + half:+.{digits}f}]"


def comparisons(config: Config, records: dict[str, dict]) -> list[dict[str, Any]]:
    """The paired comparisons a run reports: every model against the MLP; in the replay sweep
    every cell against the study's (all points, the run's ``gamma``); in the virtual-step sweep
    order 2 against order 1 at each virtual step."""
    out = [paired(records, name, "mlp") for name in records if name != "mlp" and "mlp" in records]
    if config.sweep == "replay":
        study = f"replay_m{config.memory_per_task}_g{config.replay:g}"
        if study in records:
            out += [paired(records, name, study) for name in records
                    if name not in ("mlp", study)]
    if config.sweep == "virtual_step":
        out += [paired(records, name, name.replace("_o2_", "_o1_")) for name in records
                if "_o2_" in name]
    return out


def _paired_table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["model", "against", "difference of the task-0 increase", "95 % interval",
         "seeds where lower"],
        [[r["model"], r["against"], f"{r['diff']:+.4f}", _interval(r["diff"], r["ci95"]),
          f"{r['lower_in']}/{r['seeds']}"] for r in rows])


def sweep_tables(config: Config, cells: dict[str, Variant],
                 records: dict[str, dict]) -> tuple[str, bytes | None]:
    """The sweep's own table (Markdown) and figure (PNG; ``None`` without a sweep)."""
    if config.sweep == "none":
        return "", None
    mlp = records["mlp"]["forgetting_t0"]
    if config.sweep == "replay":
        rows = []
        for name, v in cells.items():
            if name == "mlp":
                continue
            w, rec = v.weights, records[name]
            rows.append([name, f"{min(w.memory, v.memory_per_task):g}", f"{w.replay:g}",
                         f"{w.separation:g}", "per task" if w.anneal_per_task else "once",
                         "learned" if w.sde_gate else "identity",
                         _pm(rec, "forgetting_t0"), _interval(rec["forgetting_t0"],
                                                              rec["forgetting_t0_ci95"]),
                         _pm(rec, "mean_forgetting"),
                         _interval(rec["mean_forgetting"], rec["mean_forgetting_ci95"])])
        table = markdown_table(["cell", "memory per task", "gamma", "delta", "beta ramp", "SDEs",
                                "task-0 increase", "95 % interval", "mean t0..3",
                                "95 % interval"], rows)
        memory = [m for m in REPLAY_MEMORY if m <= config.memory_per_task]
        curves = {f"gamma {g:g}": [records[f"replay_m{m}_g{g:g}"]["forgetting_t0"]
                                   for m in memory] for g in REPLAY_GAMMAS}
        errors = {f"gamma {g:g}": [records[f"replay_m{m}_g{g:g}"]["forgetting_t0_ci95"] or 0.0
                                   for m in memory] for g in REPLAY_GAMMAS}
        figure = plots.lines(memory, curves, "replayed points per finished task",
                             "task-0 forgetting (MSE increase)",
                             f"Hypernet-SDE-Flow, {config.epochs} epochs a task, "
                             f"{len(config.seeds)} seeds: mean, 95 % interval",
                             errors=errors, xscale="symlog", yscale="symlog",
                             references={"MLP (ours)": mlp,
                                         "study's model (published)": REFERENCE[
                                             "hypernet_sde_flow"]})
        return "## The replay sweep\n\n" + table, figure
    rows, curves, errors = [], {}, {}
    for name, v in cells.items():
        if name == "mlp":
            continue
        rec = records[name]
        probe = rec["probe"]
        rows.append([name, v.order, v.virtual, f"{v.weights.virtual_lr:g}",
                     _pm(rec, "forgetting_t0"), _interval(rec["forgetting_t0"],
                                                          rec["forgetting_t0_ci95"]),
                     *(f"{probe[m][when][1]:.3g}" for m in ("step_curvature", "correction_ratio",
                                                            "correction_cosine")
                       for when in ("start_of_task", "end_of_task"))])
        if v.virtual == "sgd":
            curves.setdefault(f"order {v.order}", []).append(rec["forgetting_t0"])
            errors.setdefault(f"order {v.order}", []).append(rec["forgetting_t0_ci95"] or 0.0)
    table = markdown_table(
        ["cell", "order", "virtual step", "eta", "task-0 increase", "95 % interval",
         "step x curvature, task 1 start", "end", "correction ratio, task 1 start", "end",
         "correction cosine, task 1 start", "end"], rows)
    figure = plots.lines(list(VIRTUAL_LRS), curves, "virtual SGD step eta",
                         "task-0 forgetting (MSE increase)",
                         f"repair (flow and SDEs frozen), {config.epochs} epochs a task, "
                         f"{len(config.seeds)} seeds: mean, 95 % interval",
                         errors=errors, xscale="log", references={"MLP (ours)": mlp})
    note = ("Step x curvature is |virtual step| / |grad L| times the largest Hessian eigenvalue "
            "of the task loss over the moving parameters (eta lambda_max for SGD); the "
            "correction is what order 2 adds to the order-1 regulariser gradient. Start: the "
            "mean of task 1's first 10 steps; end: of its last 10; the median over the seeds.")
    return "## The virtual-step sweep\n\n" + table + "\n\n" + note, figure


def _end_of_task(log: dict[str, np.ndarray], name: str, last: int = 10) -> np.ndarray:
    """Metric ``name`` of one seed's step log, the mean of each task's last ``last`` steps."""
    tasks = np.asarray(log["experience"])
    return np.array([np.mean(np.asarray(log[name])[tasks == t][-last:])
                     for t in range(int(tasks.max()) + 1)])


def _start_of_task(log: dict[str, np.ndarray], name: str, first: int = 10) -> np.ndarray:
    """Metric ``name`` of one seed's step log, the mean of each task's first ``first`` steps."""
    tasks = np.asarray(log["experience"])
    return np.array([np.mean(np.asarray(log[name])[tasks == t][:first])
                     for t in range(int(tasks.max()) + 1)])


def _pm(record, name, digits=4):
    value, std = record[name], record[f"{name}_std"]
    return f"{value:+.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def tables(config: Config, records: dict[str, dict]) -> tuple[str, list[list]]:
    """The Markdown of every table, and the forgetting table as numbers for ``forgetting.csv``
    (header and rows; ``None`` where there is no value, an empty CSV cell)."""
    parts = []
    for name, rec in records.items():
        m = np.asarray(rec["mse_matrix"])
        n = m.shape[0]
        rows = [[f"after task {i}", *(f"{v:.4f}" for v in m[i])] for i in range(n)]
        parts.append(f"### Test MSE, {name} (row: after training task i; column: task j)\n\n"
                     + markdown_table(["", *(f"task {j}" for j in range(n))], rows))
    header = ["model", "MSE t0 after t0", "MSE t0 after t4", "increase (ours)",
              "95 % interval", "increase (study)", "increase / MLP's", "mean forgetting t0..3",
              "train s", "compile s"]
    # A ratio over the MLP's increase only where that increase is above zero beyond the seeds'
    # noise (its 95 % interval excludes zero; one seed has no interval, so no ratio).
    mlp_rec = records.get("mlp")
    mlp = (mlp_rec["forgetting_t0"] if mlp_rec is not None and mlp_rec["forgetting_t0_ci95"]
           is not None and mlp_rec["forgetting_t0"] - mlp_rec["forgetting_t0_ci95"] > 0
           else None)
    rows, numbers = [], []
    for name, rec in records.items():
        m = np.asarray(rec["mse_matrix"])
        study = REFERENCE.get(name)
        ratio = f"{rec['forgetting_t0'] / mlp:.3g}x" if mlp is not None else "—"
        half = rec["forgetting_t0_ci95"]
        interval = ("—" if half is None else f"[{rec['forgetting_t0'] - half:+.4f}, "
                    f"{rec['forgetting_t0'] + half:+.4f}]")
        numbers.append([name, float(m[0, 0]), float(m[-1, 0]), rec["forgetting_t0"],
                        rec["forgetting_t0_std"], half, study,
                        rec["forgetting_t0"] / mlp if mlp is not None else None,
                        rec["mean_forgetting"], rec["mean_forgetting_std"], rec["time_s"],
                        rec["compile_s"]])
        rows.append([name, f"{m[0, 0]:.4f}", f"{m[-1, 0]:.4f}", _pm(rec, "forgetting_t0"),
                     interval, f"{study:+.4f}" if study is not None else "—", ratio,
                     _pm(rec, "mean_forgetting"), f"{rec['time_s']:.1f}",
                     f"{rec['compile_s']:.1f}"])
    forgetting_md = markdown_table(header, rows)
    n = len(next(iter(records.values()))["mse_matrix"])
    collapse = markdown_table(
        ["model", "metric", *(f"task {t}" for t in range(n))],
        [[name, metric, *(f"{v:.3g}" for v in rec["end_of_task"][metric])]
         for name, rec in records.items() for metric in COLLAPSE])
    study_ratio = REFERENCE["hypernet_sde_flow"] / REFERENCE["mlp"]
    forgetting_md += (f"\n\nRatio of the task-0 increases in the study, Hypernet-SDE-Flow / MLP: "
                      f"{study_ratio:.0f}x. ± is the standard deviation over the seeds, the "
                      "interval the 95 % confidence interval of the mean (Student's t). A ratio "
                      "over the MLP's increase is shown only where the MLP's interval lies above "
                      "zero (not with one seed); a negative increase means the task got better."
                      + (f" Train and compile seconds are those of all {len(config.seeds)} "
                         "seeds together: one vmapped program." if len(config.seeds) > 1
                         else " One seed is one draw: in the default study (300 epochs a "
                         "task) rounding alone moves these numbers several-fold "
                         "(benchmarks/seed_drift.py); --seeds 0 1 2 gives the spread."))
    csv_header = ["model", "mse_t0_after_t0", "mse_t0_after_t4", "forgetting_t0",
                  "forgetting_t0_std", "forgetting_t0_ci95", "forgetting_t0_study",
                  "forgetting_t0_over_mlp",
                  "mean_forgetting", "mean_forgetting_std", "train_s", "compile_s"]
    return ("## Forgetting (MSE increase; positive is forgetting)\n\n" + forgetting_md + "\n\n"
            + f"## The latent at the end of each task (NLL {config.nll}, latent {config.latent}; "
            "mean of its last 10 steps and the seeds)\n\nz0_std: z0's standard deviation over "
            "the batch, mean over coordinates; sigma: the mean diffusion; decoder_gain: the "
            "largest singular value of dx_hat/dy, mean over the batch; encoder_log_det: the "
            "encoder's mean log volume.\n\n" + collapse + "\n\n"
            + "\n\n".join(parts)), [csv_header, *numbers]


@functools.cache
def _program_cache() -> dict:
    """One cache of compiled programs per process: variants differing only in their loss weights
    share programs, and a sweep, or a resumed run started again in the same process, compiles
    nothing twice."""
    return {}


def _task_lines(config: Config, seeds: list[int]):
    """One line per seed after every task: its loss, MSE and regulariser (last 10 steps)."""
    def report(event):
        if config.progress and isinstance(event, ExperienceEnded):
            m = event.metrics
            for i, seed in enumerate(seeds):
                print(f"    {event.label} seed {seed}: task {event.experience} done, loss "
                      f"{m['loss'][i]:.4f}, mse {m['mse'][i]:.4f}, reg {m['reg'][i]:.4f}",
                      flush=True)
    return report


def run(config: Config, out) -> dict:
    out = pathlib.Path(out)
    run_folder.check_out(out)
    seeds = list(config.seeds)
    streams = [config.tasks(seed) for seed in seeds]
    data = [content_digest(s) for s in streams]
    runs: dict[str, list[tuple[int, RunResult]]] = {}
    cells = config.cells()
    programs_before = len(_program_cache())
    for name, variant in cells.items():
        seed_runs = train_seeds(
            config.learner(variant), streams, keys=[jax.random.key(s) for s in seeds],
            epochs=variant.epochs, batch_size=variant.batch_size,
            on_event=config.on_event(_task_lines(config, seeds)), label=name,
            devices=config.devices, steps_in=config.steps_in,
            checkpoints=RunCheckpoints(out / run_folder.CHECKPOINTS / name, name=name,
                                       report=print),
            checkpoint_epochs=config.checkpoint_epochs, run_name=repr(variant),
            settings={"options": config.fingerprint(), "data": data}, cache=_program_cache())
        runs[name] = list(zip(seeds, seed_runs))
        for seed, result in runs[name]:
            forgetting = cl_metrics.error_summary(result.matrix)
            print(f"  {name} seed {seed}: forgetting t0 {forgetting['forgetting_t0']:+.4f}, "
                  f"mean {forgetting['mean_forgetting']:+.4f}", flush=True)
            if config.tensorboard and jax.process_index() == 0:
                write_events(out / "tensorboard" / name / f"seed_{seed}", result)
        together = f"seeds {seeds} in one program" if len(seeds) > 1 else f"seed {seeds[0]}"
        print(f"  {name}, {together}: {seed_runs[0].time_s:.1f} s "
              f"(+{seed_runs[0].compile_s:.1f} s compile)", flush=True)
    records = {name: _record(r) for name, r in runs.items()}
    title = (f"{NAME}: 5 tasks x {config.train_per_task} points, {config.epochs} epochs per "
             f"task, NLL {config.nll}, latent {config.latent}, seeds {list(config.seeds)}")
    summary, forgetting_rows = tables(config, records)
    pairs = comparisons(config, records)
    if pairs:
        summary += ("\n\n## Paired by seed (model minus reference; negative: the model forgets "
                    "less)\n\n" + _paired_table(pairs))
    sweep_md, sweep_png = sweep_tables(config, cells, records)
    programs = len(_program_cache()) - programs_before
    if sweep_md:
        summary += (f"\n\n{sweep_md}\n\n{len(cells)} models trained by {programs} compiled "
                    "loop programs (cells that differ only in traced weights share one).")
    study_ratio = REFERENCE["hypernet_sde_flow"] / REFERENCE["mlp"]
    metrics = {"schema": SCHEMA, "experiment": NAME, "config": dataclasses.asdict(config),
               "seeds": list(config.seeds),
               "reference": {"mlp": {"forgetting_t0": REFERENCE["mlp"]},
                             "hypernet_sde_flow": {"forgetting_t0": REFERENCE["hypernet_sde_flow"]},
                             "ratio": study_ratio},
               "paired": pairs, "programs": programs, **records}
    matrix_rows, step_rows = [], []
    step_names = STEP_METRICS + (PROBE_METRICS if any(v.probe for v in cells.values()) else ())
    for name, seeded in runs.items():
        for seed, r in seeded:
            matrix_rows += [[name, seed, i, *row] for i, row in enumerate(r.matrix.tolist())]
        matrix_rows += [[name, "mean", i, *row] for i, row in
                        enumerate(records[name]["mse_matrix"])]
        seed, r = seeded[0]
        log = r.step_metrics
        step_rows += [[name, seed, s, int(log["experience"][s]),
                       *(float(log[k][s]) if k in log else None for k in step_names)]
                      for s in range(len(log["loss"]))]
    n = len(next(iter(records.values()))["mse_matrix"])
    files: dict[str, Any] = {
        "config.json": run_folder.config_json(dataclasses.asdict(config), NAME),
        "metrics.json": metrics,
        "summary.md": f"# {title}\n\n{summary}\n",
        "mse_matrices.csv": run_folder.csv_text(
            ["model", "seed", "after_task", *(f"task_{j}" for j in range(n))],
            matrix_rows),
        "forgetting.csv": run_folder.csv_text(forgetting_rows[0], forgetting_rows[1:]),
        "steps.csv": run_folder.csv_text(["model", "seed", "step", "task", *step_names],
                                         step_rows),
    }
    if sweep_png is not None:
        files[f"sweep_{config.sweep}.png"] = sweep_png
    shared = (min(np.min(r["mse_matrix"]) for r in records.values()),
              max(np.max(r["mse_matrix"]) for r in records.values()))  # one scale: comparable
    for name, rec in records.items():
        files[f"mse_matrix_{name}.png"] = plots.matrix_heatmap(
            rec["mse_matrix"], f"{name}: test MSE (mean over seeds {list(config.seeds)})",
            label="test MSE", limits=shared)
    print(f"\n{title}\n\n{summary}")
    run_folder.write_files(out, files)
    print(f"\nresults: {out}")
    dropped = run_folder.drop_checkpoints(out, keep=config.keep_checkpoints)
    if dropped:
        print(dropped)
    return metrics


main = module_main(NAME, Config, QUICK, run, __doc__)


if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
