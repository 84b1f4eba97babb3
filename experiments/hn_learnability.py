"""Does HN-k learn each new experience at a practical budget, and what does it forget?

Trains Naive, Frozen-k (``--frozen``: the layers HN-k freezes, frozen alike after the first
experience, with one head per task trained directly: what those layers let any method learn at
the budget) and HN-k (each freeze depth of ``--depths``) under each variant of how HN-k starts
and trains a new task (:data:`VARIANTS`: the paper's settings, jaxcl's defaults, and the options
measured against them), over several seeds, at one or more budgets (``--budgets``, epochs per
experience; empty: ``--epochs``). For every strategy it prints the learning accuracy (``R[i][i]``
averaged over experiences) and the forgetting, each with its 95 % interval over seeds (Student's
t), their gaps to Naive (HN's learning accuracy minus Naive's; HN's forgetting over Naive's) and
HN-k's to Frozen-k, the
transfer (accuracy on an experience just before training it), and for HN-k, averaged over the
experiences after the first: the output regulariser's share of the objective
(``lambda L_H / (L_CE + lambda L_H)``) and how far (L2) the task's embedding and its per-task
tables moved from where the experience started them. ``learning_curves.png`` draws the training
accuracy along the steps of every strategy (first seed, first budget, moving average over 10
steps); with several budgets, ``learning_vs_budget.png`` draws the learning accuracy against the
steps per experience and the table names the first budget at which each variant comes within 5
points of Naive's learning accuracy.

    python -m experiments.hn_learnability --benchmark split_digits --model mlp --hidden 100 100 \\
        --depths 1 --batch-size 32 --epochs 5 --no-augment --seeds 100 101 102
    python -m experiments.hn_learnability --quick

The defaults are the study's except where noted; ``--variants`` picks from :data:`VARIANTS`.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

import numpy as np

from experiments import paper
from experiments.runner import (finish, load_streams, markdown_table, module_main,
                                run_strategies, strategy_for)
from experiments.settings import QUICK_SETTINGS, StrategyRun
from jaxcl import config as settings
from jaxcl.config import setting
from jaxcl.io import plots
from jaxcl.io.records import ci95
from jaxcl.learners import HN_PRESETS
from jaxcl.learners.hypernetwork import DIAGNOSTICS

NAME = "hn_learnability"


def _settings(new_task_init: str, hnet_init: str, task_lr_scale: float,
              reg_warmup: float) -> dict[str, Any]:
    return {"new_task_init": new_task_init, "hnet_init": hnet_init,
            "task_lr_scale": task_lr_scale, "reg_warmup": reg_warmup}


VARIANTS: dict[str, dict[str, Any]] = {
    "paper": _settings("copy_prev", "torch", 1.0, 0.0),
    "jaxcl": _settings("random", "torch", 1.0, 0.5),
    "random": _settings("random", "torch", 1.0, 0.0),
    "copy+warmup": _settings("copy_prev", "torch", 1.0, 0.5),
    "copy+task_lr": _settings("copy_prev", "torch", 10.0, 0.0),
    "jaxcl+task_lr": _settings("random", "torch", 10.0, 0.5),
    "jaxcl+lecun": _settings("random", "lecun", 1.0, 0.5),
    "lecun+warmup0.25": _settings("random", "lecun", 1.0, 0.25),
}
"""HN-k's settings for new tasks, by variant name, each written out in full so that a committed
run record re-runs to its numbers whatever jaxcl's defaults become: the paper's settings
(``paper``, :data:`jaxcl.learners.HN_PRESETS` ``["paper"]``); ``jaxcl``, a fresh ``N(0, I)``
embedding and the regulariser off for the first half of every later experience with the
reference's hypernetwork initialisation (jaxcl's first defaults); and single departures from
them: without the warm-up, the paper's with it, a 10x learning rate for the per-task parameters,
and LeCun-variance heads (``jaxcl+lecun``, jaxcl's defaults since the protocols of
``docs/protocols/hn_init_lecun*.md``), and those with a warm-up of a quarter of the experience
(``lecun+warmup0.25``, jaxcl's defaults since ``docs/protocols/hn_warmup_quarter.md``).
:func:`default_variant` names the one that is jaxcl's defaults."""


def default_variant() -> str:
    """The variant whose settings are jaxcl's defaults (:data:`jaxcl.learners.HN_PRESETS`
    ``["jaxcl"]``)."""
    return next(name for name, settings in VARIANTS.items() if settings == HN_PRESETS["jaxcl"])


def learning_gap_ok(hn: float, naive: float, points: float = 5.0) -> bool:
    """Whether HN's learning accuracy is within ``points`` percentage points of Naive's."""
    return 100 * (naive - hn) <= points


@dataclasses.dataclass(frozen=True)
class Config(StrategyRun):
    depths: tuple[int, ...] = setting((2,), "HN-k's freeze depths k (0 is HN-F)",
                                      effect="selection", distinct=True)
    variants: tuple[str, ...] = setting(
        ("paper", "lecun+warmup0.25"), "HN-k's new-task settings, each one of "
        + ", ".join(VARIANTS), effect="selection", distinct=True)
    budgets: tuple[int, ...] = setting((), "epochs per experience, one run of every strategy "
                                       "each (empty: --epochs)", effect="selection")
    baseline: str = setting("Naive", "the strategy HN-k is compared with (a label, e.g. Naive)",
                            effect="selection")
    frozen: bool = setting(True, "also train Frozen-k at every depth k >= 1: the same layers "
                           "frozen after the first experience, one head per task trained "
                           "directly, no hypernetwork; what those frozen layers let any method "
                           "learn at the budget", effect="selection")

    SET_BY_MODULE: typing.ClassVar[dict[str, str]] = {
        name: "each variant (--variants) sets it" for name in ("preset", *HN_PRESETS["paper"])}

    def __post_init__(self):
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise ValueError(f"variants {list(self.variants)}: each must be one of "
                             f"{tuple(VARIANTS)}")
        if any(not (isinstance(b, int) and b >= 1) for b in self.budgets):
            raise ValueError(f"budgets must be positive epoch counts, got {list(self.budgets)}")
        if len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"budgets {list(self.budgets)} repeat a budget")
        super().__post_init__()

    def labels(self):
        return (self.baseline, *self.references(), *(self.hn_label(k) for k in self.depths))

    def references(self) -> tuple[str, ...]:
        """Frozen-k for every depth k >= 1 when ``frozen`` (and not the baseline already)."""
        if not self.frozen:
            return ()
        return tuple(f"Frozen-{k}" for k in self.depths if k and f"Frozen-{k}" != self.baseline)

    @staticmethod
    def hn_label(k: int) -> str:
        return f"HN-{k}" if k else "HN-F"


def strategies(config: Config) -> dict[str, Any]:
    """The baseline, Frozen-k (:meth:`Config.references`) and every HN-k under every variant,
    by row name (``"HN-2 paper"``)."""
    out = {label: strategy_for(config, label)
           for label in (config.baseline, *config.references())}
    for k in config.depths:
        for name in config.variants:
            out[f"{config.hn_label(k)} {name}"] = strategy_for(config, config.hn_label(k),
                                                               **VARIANTS[name])
    return out


QUICK = {**QUICK_SETTINGS, "depths": (1,), "variants": ("paper", "lecun+warmup0.25"),
         "hidden": (16, 16)}


def _interval(values, scale: float = 100.0) -> str:
    values = scale * np.asarray(values, dtype=float)
    half = ci95(values)
    return f"{values.mean():.1f}" + ("" if half is None else f" ± {half:.1f}")


def diagnostics(log_by_seed: dict[int, dict[str, np.ndarray]]) -> dict[str, float]:
    """HN-k's per-experience diagnostics averaged over the experiences after the first and over
    seeds: the regulariser's mean share, and the final shifts of embedding and tables."""
    out: dict[str, list[float]] = {name: [] for name in DIAGNOSTICS}
    for log in log_by_seed.values():
        if not set(DIAGNOSTICS) <= set(log):
            return {}
        exp = log["experience"]
        for i in range(1, int(exp.max()) + 1):
            steps = exp == i
            for name in DIAGNOSTICS:  # the share over the experience, the shifts at its end
                values = log[name][steps]
                out[name].append(float(values.mean() if name == "reg_share" else values[-1]))
    return {name: float(np.mean(v)) for name, v in out.items()}


def frozen_of(label: str) -> str | None:
    """The Frozen-k row an HN-k row (``"HN-2 jaxcl"``) is read against; None for HN-F."""
    depth = label.split(" ")[0].removeprefix("HN-")
    return f"Frozen-{depth}" if label.startswith("HN-") and depth.isdigit() else None


def budget_rows(config: Config, records: dict[str, dict], diag: dict[str, dict],
                steps_per_experience: int, epochs: int) -> list[list]:
    """One table row per strategy; ``vs Frozen-k``: an HN-k row's learning accuracy minus
    Frozen-k's, where the run trained it (empty otherwise)."""
    def mean_la(label):
        return np.mean([r["learning_accuracy"] for r in records[label]["per_seed"]])

    base = records[config.baseline]
    base_la = [r["learning_accuracy"] for r in base["per_seed"]]
    base_f = np.mean([r["forgetting"] for r in base["per_seed"]])
    rows = []
    for label, rec in records.items():
        la = [r["learning_accuracy"] for r in rec["per_seed"]]
        fg = [r["forgetting"] for r in rec["per_seed"]]
        d = diag.get(label, {})
        rows.append([
            label, f"{epochs} ({steps_per_experience})", _interval(la),
            "" if label == config.baseline else f"{100 * (np.mean(la) - np.mean(base_la)):+.1f}",
            f"{100 * (np.mean(la) - mean_la(frozen_of(label))):+.1f}"
            if frozen_of(label) in records else "",
            _interval(fg),
            "" if label == config.baseline or base_f <= 0 else f"{np.mean(fg) / base_f:.2f}",
            _interval([r["aca"] for r in rec["per_seed"]]),
            f"{100 * rec['transfer_accuracy']:.1f}",
            f"{d['reg_share']:.2f}" if d else "", f"{d['embedding_shift']:.3f}" if d else "",
            f"{d['table_shift']:.3f}" if d else ""])
    return rows


LEGEND = ("Mean ± 95 % interval over seeds (Student's t). Learning accuracy: mean of R[i][i]; "
          "forgetting: Avalanche's, mean of R[i][i] - R[N-1][i] over i < N-1; transfer: accuracy "
          "on an experience just before training it, over experiences after the first. HN-k's "
          "reg. share and shifts: means over experiences after the first.")


def variants_line(variants) -> str:
    """The line under a table naming each variant's departures from the paper's settings."""
    ref = HN_PRESETS["paper"]
    return ("HN-k's new-task settings by variant (paper: " + ", ".join(
        f"{k} {v}" for k, v in ref.items()) + "): " + "; ".join(
        f"{name} " + (", ".join(f"{k} {v}" for k, v in VARIANTS[name].items() if v != ref[k])
                      or "as the paper") for name in variants))


HEADER = ["strategy", "epochs (steps) / exp.", "learning acc. (%)", "vs Naive (points)",
          "vs Frozen-k (points)",
          "forgetting (%)", "F / F_Naive", "ACA (%)", "transfer (%)", "reg. share",
          "embedding shift", "table shift"]


def run(config: Config, out=None) -> dict:
    budgets = config.budgets or (config.run.epochs,)
    streams = load_streams(config)  # once for every budget
    per_epoch = streams[0][0].x_train.shape[0] // config.strategy.batch_size
    all_rows, extra, steps_out, records_out = [], {"budgets": {}}, {}, {}
    figures: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    for b, epochs in enumerate(budgets):
        run_config = settings.replace(config, epochs=epochs)
        steps_per_experience = epochs * per_epoch
        records, steps = run_strategies(run_config, strategies(run_config),
                                        None if out is None or len(budgets) > 1 else out,
                                        streams=streams)
        diag = {label: diagnostics(steps[label]) for label in records}
        all_rows += budget_rows(config, records, diag, steps_per_experience, epochs)
        extra["budgets"][str(epochs)] = {
            "steps_per_experience": steps_per_experience,
            "diagnostics": diag,
            "learning_accuracy": {label: [r["learning_accuracy"] for r in rec["per_seed"]]
                                  for label, rec in records.items()},
            "forgetting": {label: [r["forgetting"] for r in rec["per_seed"]]
                           for label, rec in records.items()},
            "transfer": {label: rec["transfer"] for label, rec in records.items()}}
        for label, rec in records.items():
            curves.setdefault(label, []).append(rec["learning_accuracy"])
            suffix = "" if len(budgets) == 1 else f" @{epochs}"
            records_out[label + suffix] = rec
            steps_out[label + suffix] = steps[label]
        if b == 0:
            seed = config.run.seeds[0]
            panels = {hn: {label.removeprefix(hn + " "): steps[label][seed]["accuracy"]
                           for label in steps
                           if label in (config.baseline, frozen_of(hn + " "))
                           or label.startswith(hn + " ")}
                      for hn in map(config.hn_label, config.depths)}
            figures["learning_curves.png"] = plots.learning_curves(
                panels, steps[config.baseline][seed]["experience"],
                f"{NAME}: {config.data.benchmark}, {config.strategy.model}, seed {seed}, "
                f"{steps_per_experience} steps / experience")
    notes = [paper.differences(config, {**{k: v for k, v in paper.TRAINING.items()
                                           if k not in HN_PRESETS["paper"]}, "seeds": 3}),
             variants_line(config.variants)]
    if len(budgets) > 1:
        xs = [b * per_epoch for b in budgets]
        figures["learning_vs_budget.png"] = plots.lines(
            xs, curves, "steps per experience", "learning accuracy",
            f"{NAME}: {config.data.benchmark}")
        base = curves[config.baseline]
        reach = {label: next((f"{xs[i]}" for i, v in enumerate(vals)
                              if learning_gap_ok(v, base[i])), f"> {xs[-1]}")
                 for label, vals in curves.items() if label != config.baseline}
        extra["steps_to_baseline"] = reach
        notes.append("steps per experience to come within 5 points of "
                     f"{config.baseline}'s learning accuracy: "
                     + "; ".join(f"{label} {steps}" for label, steps in reach.items()))
    table = "\n\n".join([markdown_table(HEADER, all_rows), *notes, LEGEND])
    return finish(out, NAME, config, records_out, steps_out, table, extra=extra,
                         extra_files=figures)


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
