"""Build ``docs/hn_learnability.md`` from the committed run records of ``experiments.hn_learnability``.

Every number on the page comes from a run folder under ``docs/runs/hn_learnability/`` (its
``metrics.json``, ``config.json`` and ``summary.md``); each section names the command that re-runs
it (the folder's ``config.json`` holds every setting). The page is regenerated, never edited:

    python -m experiments.hn_learnability_page            # writes docs/hn_learnability.md
    python -m experiments.hn_learnability_page --check    # exit 1 if the page is stale

A test runs ``--check``, so a run record committed without its page, or a page edited by hand,
fails CI.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from jaxcl.io.records import ci95

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNS = ROOT / "docs" / "runs" / "hn_learnability"
PAGE = ROOT / "docs" / "hn_learnability.md"

SECTIONS = {
    "digits_mlp_30steps": "Split-Digits, MLP 100-100, 30 steps an experience",
    "fmnist_mlp_30steps": "Split-Fashion-MNIST subset, MLP 100-100, 30 steps an experience",
    "fmnist_resnet_120steps": "Split-Fashion-MNIST, slim ResNet-18, 120 steps an experience",
    "digits_mlp_budgets": "Split-Digits, MLP 100-100: learning against the budget",
}
"""Run folders in page order, with their section titles; folders not listed are left out."""

INTRO = """\
# HN-k learns what it is shown: measurements behind the defaults (issue 26)

This page is built by `python -m experiments.hn_learnability_page` from the run records in
`docs/runs/hn_learnability/`; do not edit it by hand. The protocol, committed before these runs,
is [docs/protocols/hn_learnability.md](protocols/hn_learnability.md); it also says which earlier,
exploratory runs chose the defaults.

**The defaults depart from the paper's settings** (`jaxcl.learners.HN_PRESETS`):

| setting | jaxcl (default) | paper (`--preset paper`, `StrategyConfig.from_label(..., preset="paper")`) |
|---|---|---|
| a new task's embedding | `new_task_init="random"`: a fresh `N(0, I)` draw | `"copy_prev"`: a copy of the previous task's |
| the output regulariser | off for the first half of each later experience (`reg_warmup=0.5`) | on from the first step (`0`) |
| the hypernetwork's initialisation | `hnet_init="torch"`, the reference's (PyTorch's `nn.Linear` default) | the same |
| the per-task parameters' learning rate | `task_lr_scale=1` | the same |

Why: with `copy_prev` a new task starts as the previous task's network, and its own parameters
(a 32-value embedding and a few table rows) move about the learning rate a step; with the
regulariser on from the first step, while the new task's loss is high, the shared weights are
held still. Each table below prints HN-k under the paper's settings (`paper`), jaxcl's
(`jaxcl`), and single departures, beside Naive given the same model, optimizer, batch, steps and
task identity. `config.json` of every run records the preset and each setting; every printed
table of the study modules lists the settings in which a run differs from the paper's.

Columns: learning accuracy, the mean of `R[i][i]`; forgetting, Avalanche's, the mean of
`R[i][i] - R[N-1][i]` over `i < N-1`; both as mean ± 95 % interval over the seeds (Student's t).
`vs Naive`: HN-k's learning accuracy minus Naive's (points); `F / F_Naive`: HN-k's forgetting over
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
    """The issue's targets for every jaxcl row: learning accuracy within 5 points of the
    baseline's, forgetting at most a third of its (read off the run's means; the intervals
    beside them)."""
    base = metrics["config"]["baseline"]
    lines = []
    for budget in metrics["extra"]["budgets"].values():
        la, fg = budget["learning_accuracy"], budget["forgetting"]
        for label in la:
            if not label.endswith(" jaxcl"):
                continue
            gap = 100 * (np.mean(la[base]) - np.mean(la[label]))
            ratio_ok = np.mean(fg[label]) <= np.mean(fg[base]) / 3
            lines.append(
                f"- {label}, {budget['steps_per_experience']} steps an experience: learning "
                f"accuracy {gap:.1f} points below {base}'s ({'within' if gap <= 5 else 'outside'}"
                f" 5); forgetting {_mean_ci(fg[label])} against {base}'s {_mean_ci(fg[base])} "
                f"({'at most' if ratio_ok else 'more than'} a third of its mean)")
    return lines


def section(name: str, title: str) -> str:
    folder = RUNS / name
    metrics = json.loads((folder / "metrics.json").read_text())
    summary = (folder / "summary.md").read_text().split("\n", 2)[2].strip()
    seeds = metrics["seeds"]
    parts = [f"## {title}", "", f"Seeds {seeds}. Re-run (the folder's `config.json` holds every "
             f"setting):", "", "```", _command(name), "```", "", summary, "",
             "Against the targets:", "", *target_lines(metrics), ""]
    for png in ("learning_curves.png", "learning_vs_budget.png"):
        if (folder / png).exists():
            parts += [f"![{png}](runs/hn_learnability/{name}/{png})", ""]
    return "\n".join(parts)


def page() -> str:
    sections = [section(name, title) for name, title in SECTIONS.items()
                if (RUNS / name / "metrics.json").exists()]
    return INTRO + "\n" + "\n".join(sections)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/hn_learnability.md differs from the records' page")
    args = parser.parse_args(argv)
    text = page()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE.relative_to(ROOT)} is stale: run python -m "
                  "experiments.hn_learnability_page", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
