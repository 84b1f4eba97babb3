"""Build ``docs/results/hn_learnability.md`` from the run records of ``experiments.hn_learnability``.

Every number on the page comes from a run folder under ``docs/runs/hn_learnability/`` (its
``metrics.json``, ``config.json`` and ``summary.md``); each section names the command that re-runs
it (the folder's ``config.json`` holds every setting). The page is regenerated, never edited:

    python -m experiments.hn_learnability_page            # writes the page and README's headline
    python -m experiments.hn_learnability_page --check    # exit 1 if either is stale

A test runs ``--check``, so a run record committed without its page, or a page edited by hand,
fails CI.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np


from experiments.hn_learnability_rules import QUESTIONS, Question, budget_of, rule
from jaxcl.io.records import ci95
from jaxcl.io.report import page_builder_cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNS = ROOT / "docs" / "runs" / "hn_learnability"
PAGE = ROOT / "docs" / "results" / "hn_learnability.md"

SECTIONS = {
    "Split-Digits, MLP 100-100, 30 steps an experience": ("digits_mlp_30steps",),
    "Split-Fashion-MNIST subset, MLP 100-100, 30 steps an experience": ("fmnist_mlp_30steps",),
    "Split-Fashion-MNIST, slim ResNet-18, 120 steps an experience": (
        "fmnist_resnet_120steps_paper", "fmnist_resnet_120steps_jaxcl",
        "fmnist_resnet_120steps_lecun"),
    "Split-Digits, MLP 100-100: learning against the budget": ("digits_mlp_budgets",),
    "Split-Digits, MLP 100-100: learning against the budget, jaxcl's defaults with LeCun heads": (
        "digits_mlp_budgets_lecun",),
    "LeCun-variance heads on fresh seeds: Split-Fashion-MNIST subset, MLP 100-100, 30 steps": (
        "fmnist_mlp_30steps_seeds300",),
    "LeCun-variance heads on fresh seeds: Split-Digits, MLP 100-100, 30 steps": (
        "digits_mlp_30steps_seeds300",),
    "LeCun-variance heads, ten fresh seeds: Split-Fashion-MNIST subset, MLP 100-100, 30 steps": (
        "fmnist_mlp_30steps_seeds400",),
    "LeCun-variance heads, ten fresh seeds: Split-Digits, MLP 100-100, 30 steps": (
        "digits_mlp_30steps_seeds400",),
    "LeCun-variance heads, fresh seeds: Split-Fashion-MNIST, slim ResNet-18, 120 steps": (
        "fmnist_resnet_120steps_seeds400",),
    "A quarter-experience warm-up, ten fresh seeds: Split-Fashion-MNIST subset, MLP 100-100, "
    "30 steps": ("fmnist_mlp_30steps_seeds500",),
    "A quarter-experience warm-up, ten fresh seeds: Split-Digits, MLP 100-100, 30 steps": (
        "digits_mlp_30steps_seeds500",),
    "A quarter-experience warm-up, fresh seeds: Split-Fashion-MNIST, slim ResNet-18, 120 steps": (
        "fmnist_resnet_120steps_seeds500",),
}
"""Section titles in page order, each with its run folders: one, or several runs of one command
split by ``--variants`` (run side by side), whose baseline rows must agree bitwise; a section
whose folders are not all there is left out."""

SETTINGS = {
    "new_task_init": ("a new task's embedding", {
        "random": "`new_task_init=\"random\"`: a fresh `N(0, I)` draw",
        "copy_prev": "`\"copy_prev\"`: a copy of the previous task's"}),
    "reg_warmup": ("the output regulariser", {
        0.5: "off for the first half of each later experience (`reg_warmup=0.5`)",
        0.25: "off for the first quarter of each later experience (`reg_warmup=0.25`)",
        0.0: "on from the first step (`reg_warmup=0`)"}),
    "hnet_init": ("the hypernetwork's initialisation", {
        "torch": "`hnet_init=\"torch\"`, the reference's (PyTorch's `nn.Linear` default)",
        "lecun": "`hnet_init=\"lecun\"`: each generated kernel starts with the variance of "
                 "Flax's LeCun-normal default for that layer (`jaxcl.core.heads`)"}),
    "task_lr_scale": ("the per-task parameters' learning rate", {
        1.0: "`task_lr_scale=1`", 10.0: "`task_lr_scale=10`"}),
}
"""HN-k's new-task settings (:data:`jaxcl.learners.HN_PRESETS`) in words, for the page's table."""


def presets_table() -> str:
    """jaxcl's defaults beside the paper's settings, read off :data:`jaxcl.learners.HN_PRESETS`."""
    from jaxcl.learners import HN_PRESETS

    rows = ["| setting | jaxcl (default) | paper (`--preset paper`, "
            "`StrategyConfig.from_label(..., preset=\"paper\")`) |", "|---|---|---|"]
    for name, (what, words) in SETTINGS.items():
        ours, theirs = HN_PRESETS["jaxcl"][name], HN_PRESETS["paper"][name]
        rows.append(f"| {what} | {words[ours]} | "
                    f"{'the same' if ours == theirs else words[theirs]} |")
    return "\n".join(rows)


INTRO = """\
# HN-k learns what it is shown: the measurements behind HN-k's defaults

This page is built by `python -m experiments.hn_learnability_page` from the run records in
`docs/runs/hn_learnability/`; do not edit it by hand. The protocol, committed before these runs,
is [docs/protocols/hn_learnability.md](../protocols/hn_learnability.md); it also says which earlier,
exploratory runs chose the defaults.

**The defaults depart from the paper's settings** (`jaxcl.learners.HN_PRESETS`):

{presets}

Why: with `copy_prev` a new task starts as the previous task's network, and its own parameters
(a 32-value embedding and a few table rows) move about the learning rate a step; with the
regulariser on from the first step, while the new task's loss is high, the shared weights are
held still. Each table below prints HN-k under the paper's settings (`paper`), jaxcl's
(`jaxcl`), and single departures, beside Naive given the same model, optimizer, batch, steps and
task identity. `config.json` of every run records the preset and each setting; every printed
table of the study modules lists the settings in which a run differs from the paper's.

What the learning curves show beside the tables: with a warm-up the training accuracy of a
new task on the slim ResNet dips at the step where the regulariser switches on (a half or a
quarter of the way through the experience) and recovers before its end; with the reference's
initialisation and the half warm-up the dip reaches down to 25-50 % in some experiences, with
LeCun heads it is a few points (the ResNet sections' plots). The switch is abrupt; a ramp in its
place has not been measured.

**At larger budgets.** The last budget section was run after the LeCun verdict, outside any
protocol's rule, to check that jaxcl's defaults are no worse than the paper's settings as the
budget grows, up to 300 steps an experience (the paper trained 3,900 on Split-CIFAR100, which
this CPU cannot); its Naive, Frozen-k and `paper` rows repeat the section before it.

**What the frozen layers allow.** HN-k freezes the stem and its first k blocks after the first
experience (for the 100-100 MLP, HN-2 freezes both hidden layers and generates only the linear
classifier). Beside Naive, which trains everything, each MLP table also prints Frozen-k: the
same layers frozen alike, with one head per task trained directly and no hypernetwork. The
targets are Naive's: HN-k's learning accuracy within 5 points of it, and its forgetting at most a
third of it, at each budget. Frozen-k says how much of a gap to it the freeze depth itself leaves at
the budget, so that a shortfall of HN-k is read as the hypernetwork's or the frozen layers'.
Frozen-k was added after the protocol's runs: the MLP runs were repeated with it on the same
seeds, and every other row is the same to the last digit as in the first runs.

**LeCun-variance heads.** The `jaxcl+lecun` rows learned more at HN-2 in the first protocol's
runs; two protocols committed before their runs tested them against the reference's
initialisation on fresh seeds, with a decision rule written in advance
([docs/protocols/hn_init_lecun.md](../protocols/hn_init_lecun.md), seeds 300-302, and
[docs/protocols/hn_init_lecun_seeds400.md](../protocols/hn_init_lecun_seeds400.md), the same rule
on ten MLP seeds 400-409 and three ResNet seeds 400-402); a section near the end of this page
reads the rule off the records, clause by clause.

**A shorter warm-up.** With LeCun heads, HN-2 on the MLP still forgot more than a third of
Naive's forgetting; an exploratory run pointed at the warm-up's length, and a protocol committed
before its runs ([docs/protocols/hn_warmup_quarter.md](../protocols/hn_warmup_quarter.md), MLP
seeds 500-509, ResNet seeds 500-502) puts a quarter-experience warm-up against the half; the last
section reads its rule off the records.

Columns: learning accuracy, the mean of `R[i][i]`; forgetting, Avalanche's, the mean of
`R[i][i] - R[N-1][i]` over `i < N-1`; both as mean ± 95 % interval over the seeds (Student's t).
`vs Naive`: learning accuracy minus Naive's (points); `vs Frozen-k`: HN-k's minus Frozen-k's
(points); `F / F_Naive`: HN-k's forgetting over
Naive's; transfer: accuracy on an experience just before training it; reg. share: the
regulariser's share `lambda L_H / (L_CE + lambda L_H)` of the objective, the embedding and table
shifts: how far (L2) the task's embedding and its per-task table rows moved in its experience,
each averaged over the experiences after the first.
"""


def _command(name: str) -> str:
    return (f"jaxcl run hn_learnability --config docs/runs/hn_learnability/{name}/config.json "
            f"--out runs/{name}-again")


def _mean_ci(values) -> str:
    half = ci95(100 * np.asarray(values, dtype=float))
    return f"{100 * np.mean(values):.1f}" + ("" if half is None else f" ± {half:.1f}")


def target_lines(metrics: dict) -> list[str]:
    """The targets for every row of jaxcl's defaults (the variant
    :func:`experiments.hn_learnability.default_variant`, or ``jaxcl`` in a record that did not
    run it): learning accuracy within 5 points of the baseline's, forgetting at most a third of
    its (read off the run's means; the intervals beside them). Where the run trained Frozen-k,
    the line adds what those frozen layers let a head trained directly learn; where the
    baseline's forgetting interval reaches 0, it says that the ratio compares noise."""
    from experiments.hn_learnability import default_variant, frozen_of

    base = metrics["config"]["baseline"]
    lines = []
    for budget in metrics["extra"]["budgets"].values():
        la, fg = budget["learning_accuracy"], budget["forgetting"]
        base_f = 100 * np.asarray(fg[base], dtype=float)
        noise = base_f.mean() - (ci95(base_f) or 0.0) <= 0
        ran = {label.split(" ", 1)[1] for label in la if " " in label}
        variant = default_variant() if default_variant() in ran else "jaxcl"
        for label in la:
            if not label.endswith(" " + variant):
                continue
            gap = 100 * (np.mean(la[base]) - np.mean(la[label]))
            ratio_ok = np.mean(fg[label]) <= np.mean(fg[base]) / 3
            frozen = frozen_of(label)
            lines.append(
                f"- {label}, {budget['steps_per_experience']} steps an experience: learning "
                f"accuracy {gap:.1f} points below {base}'s ({'within' if gap <= 5 else 'outside'}"
                f" 5)" + (f"; {frozen}, the same frozen layers with heads trained directly, "
                          f"learns {_mean_ci(la[frozen])}" if frozen in la else "") +
                f"; forgetting {_mean_ci(fg[label])} against {base}'s {_mean_ci(fg[base])} "
                f"({'at most' if ratio_ok else 'more than'} a third of its mean"
                + ("; its interval reaches 0, so the ratio compares noise" if noise else "")
                + ")")
    return lines


def merged(folders: tuple[str, ...]) -> tuple[dict, str]:
    """The metrics of one run folder, or of several runs of one command split by ``--variants``
    (one budget each): their strategies together, the baseline's records checked to be the same
    in every folder. Returns ``(metrics, summary)``; the summary's table is rebuilt from the
    merged records with the module's own rows and notes."""
    from experiments import hn_learnability as hl
    from experiments.runner import markdown_table

    runs = [json.loads((RUNS / f / "metrics.json").read_text()) for f in folders]
    summaries = [(RUNS / f / "summary.md").read_text().split("\n", 2)[2].strip() for f in folders]
    if len(runs) == 1:
        return runs[0], summaries[0]
    base = runs[0]["config"]["baseline"]
    for f, run in zip(folders[1:], runs[1:]):
        shared = [label for label in run["strategies"] if label in runs[0]["strategies"]]
        for label in shared:  # the baseline and Frozen-k: the same in every folder
            for key in ("learning_accuracy", "forgetting", "accuracy_matrix"):
                if ([r[key] for r in run["strategies"][label]["per_seed"]]
                        != [r[key] for r in runs[0]["strategies"][label]["per_seed"]]):
                    raise ValueError(f"{f}: its {label} {key} differs from {folders[0]}'s; "
                                     "the folders are not runs of one command")
    (epochs, first), = runs[0]["extra"]["budgets"].items()
    budget = {name: {} for name in ("diagnostics", "learning_accuracy", "forgetting",
                                    "transfer")}
    records = {}
    for run in runs:
        records.update(run["strategies"])
        for name in budget:
            budget[name].update(run["extra"]["budgets"][epochs][name])
    budget["steps_per_experience"] = first["steps_per_experience"]
    variants = [v for run in runs for v in run["config"]["variants"]]
    rows = hl.budget_rows(argparse.Namespace(baseline=base), records, budget["diagnostics"],
                          first["steps_per_experience"], int(epochs))
    differs = next(line for line in summaries[0].splitlines()
                   if line.startswith(("differs from", "setting as")))
    summary = "\n\n".join([markdown_table(hl.HEADER, rows), differs,
                            hl.variants_line(variants), hl.LEGEND])
    metrics = {"config": runs[0]["config"], "seeds": runs[0]["seeds"],
               "extra": {"budgets": {epochs: budget}}}
    return metrics, summary


def section(title: str, folders: tuple[str, ...]) -> str:
    metrics, summary = merged(folders)
    runs = "the folder's" if len(folders) == 1 else (
        f"{len(folders)} runs of one command, split by `--variants` and run side by side; each "
        "folder's")
    parts = [f"## {title}", "", f"Seeds {metrics['seeds']}. Re-run ({runs} `config.json` holds "
             "every setting):", "", "```", *map(_command, folders), "```", "", summary, "",
             "Against the targets:", "", *target_lines(metrics), ""]
    for name in folders:
        for png in ("learning_curves.png", "learning_vs_budget.png"):
            if (RUNS / name / png).exists():
                parts += [f"![{png}](../runs/hn_learnability/{name}/{png})", ""]
    return "\n".join(parts)


def rule_section(question: Question) -> str:
    """A question's protocols, each rule read off its committed runs; the last protocol whose
    runs are all committed decides, and the verdict says what jaxcl's default is."""
    parts, verdict = [], None
    for protocol, seeds, mlp, resnet in question.protocols:
        if not all((RUNS / f / "metrics.json").exists() for f in (*mlp, *resnet)):
            continue
        lines, verdict = rule({f: merged((f,))[0] for f in mlp}, merged(resnet)[0],
                              question.old, question.new, question.extra)
        parts += [f"[docs/protocols/{protocol}](../protocols/{protocol}), committed before its "
                  f"runs ({seeds}), read off the means:", "", *lines, ""]
    if verdict is None:
        return ""
    return "\n".join([
        f"## {question.title} The protocols' rule", "", *parts,
        "Verdict by the rule of the last protocol: " + (
            f"every clause holds; {question.adopted}." if verdict else
            f"a clause fails, so {question.kept}."), ""])


README = ROOT / "README.md"
HEADLINE = SECTIONS["Split-Fashion-MNIST, slim ResNet-18, 120 steps an experience"]
"""The runs whose table heads the README's results: Naive and HN-2 under the paper's settings and
under jaxcl's (first) defaults."""
RESNET_RUNS = tuple(folders for title, folders in SECTIONS.items() if "ResNet" in title)
"""The ResNet sections' runs, oldest first: where the headline finds jaxcl's current defaults
when the :data:`HEADLINE` runs predate them."""
HEADLINE_MARKS = ("<!-- headline: experiments.hn_learnability_page -->\n", "<!-- /headline -->")
DESCRIBED = {"paper": "the paper's settings",
             "jaxcl+lecun": "a fresh embedding, the regulariser off for the first half, "
                            "LeCun heads",
             "lecun+warmup0.25": "a fresh embedding, the regulariser off for the first quarter, "
                                 "LeCun heads"}
"""Variants of the headline in words."""


def headline() -> str:
    """The README's results table: Naive, and HN-2 under the paper's settings and under jaxcl's
    defaults, from the :data:`HEADLINE` runs; where they did not run jaxcl's current defaults,
    also Naive and those defaults from the newest ResNet run that did (its seeds beside)."""
    from experiments import hn_learnability as hl
    from experiments.runner import markdown_table

    default = hl.default_variant()

    def name(variant):
        return "jaxcl's defaults" if variant == default else DESCRIBED[variant]

    def rows(metrics, variants):
        budget = budget_of(metrics)
        la, fg = budget["learning_accuracy"], budget["forgetting"]
        seeds = ", ".join(map(str, metrics["seeds"]))
        out = [["Naive", seeds, _mean_ci(la["Naive"]), _mean_ci(fg["Naive"])]]
        for variant in variants:
            label = f"HN-2 {variant}"
            out.append([f"HN-2, {name(variant)}", seeds, _mean_ci(la[label]), _mean_ci(fg[label])])
        return out

    def has_default(metrics):
        return f"HN-2 {default}" in budget_of(metrics)["learning_accuracy"]

    first = merged(HEADLINE)[0]
    table = rows(first, ("paper", "jaxcl+lecun"))
    if not has_default(first):
        committed = (merged(f)[0] for f in reversed(RESNET_RUNS)
                     if all((RUNS / x / "metrics.json").exists() for x in f))
        table += rows(next(m for m in committed if has_default(m)), (default,))
    return markdown_table(["strategy", "seeds", "learning accuracy (%)", "forgetting (%)"],
                          table) + "\n"


def readme_with_headline(text: str) -> str:
    """``text`` (the README) with its headline block replaced by :func:`headline`."""
    start, end = HEADLINE_MARKS
    head, found, rest = text.partition(start)
    if not found or end not in rest:
        raise ValueError(f"README.md has no {start.strip()} ... {end} block")
    return head + start + headline() + end + rest.split(end, 1)[1]


def page() -> str:
    sections = [section(title, folders) for title, folders in SECTIONS.items()
                if all((RUNS / f / "metrics.json").exists() for f in folders)]
    rules = [text for text in map(rule_section, QUESTIONS) if text]
    return (INTRO.format(presets=presets_table()) + "\n" + "\n".join(sections)
            + "".join("\n" + text for text in rules))


def cli(argv: list[str] | None = None) -> int:
    """``python -m experiments.hn_learnability_page [--check]``."""
    return page_builder_cli(argv, module="experiments.hn_learnability_page",
                            description=__doc__.splitlines()[0], root=ROOT,
                            pages=lambda: {PAGE: page(),
                                           README: readme_with_headline(README.read_text())})


if __name__ == "__main__":
    sys.exit(cli())
