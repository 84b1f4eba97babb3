"""Build ``docs/results/paper_claims.md``: the partial-hypernetwork paper's claims, each with its
verdict under the protocol ``docs/protocols/paper_claims.md``, from the run records in
``docs/runs/paper_claims/``.

The verdicts come from :mod:`experiments.paper_claims_rules` (the protocol's rules, written
before the runs); every number is read from a run folder's ``metrics.json``, and each run's
section names the command that re-runs it. The page is regenerated, never edited:

    python -m experiments.paper_claims_page            # writes the page and README's verdicts
    python -m experiments.paper_claims_page --check    # exit 1 if either is stale

A test runs ``--check``, so a record committed without its page, or a page edited by hand,
fails CI.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np


from experiments.paper_claims_rules import (
    CLAIMS,
    FREEZE_STREAMS,
    LEARNED,
    LEARNED_5WAY,
    SAME_RUN,
    comparisons,
    freeze_learned,
    learned,
    same_run_differences,
    verdict,
)
from jaxcl.io.report import page_builder_cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNS = ROOT / "docs" / "runs" / "paper_claims"
PAGE = ROOT / "docs" / "results" / "paper_claims.md"

SECTIONS = {
    "split_fmnist": "R1: Naive, EWC, LR-2 and HN-2 on Split-Fashion-MNIST, slim ResNet-18 (claims "
                    "1, 2)",
    "mlp_split": "M1: Naive, EWC, LR-k and HN-k on Split-Fashion-MNIST, MLP (claims 1, 2)",
    "mlp_lookahead": "M2a: HN-1 with and without look-ahead, MLP (claim 4; the paper's Figure 11 "
                     "is accuracy_over_stream.png)",
    "mlp_orders": "M2b: HN-1, first- and second-order look-ahead, MLP (claim 4)",
    "mlp_noisy": "M3: LR-k and HN-k on the noisy stream and its normal twin, MLP (claims 2, 3; "
                 "Figures 5, 7, 8)",
    "mlp_freeze_similar": "M4, stream S: Fashion-MNIST, then other Fashion-MNIST classes, MLP "
                          "(claim 5)",
    "mlp_freeze_simpler": "M4, stream E: Fashion-MNIST, then digits, MLP (claim 5)",
    "mlp_freeze_harder": "M4, stream H: digits, then Fashion-MNIST, MLP (claim 5)",
}
"""Run folder -> its section's title, in page order."""

FIGURES = ("samples.png", "first_experience.png", "aca_by_depth.png", "forgetting_by_depth.png",
           "accuracy_over_stream.png", "order_cosine_over_steps.png",
           "grad_rel_diff_over_steps.png", "learning_accuracy_vs_k.png")
"""The figures a section shows, where its run folder holds them."""

INTRO = """\
# The partial-hypernetwork paper's claims, tested on real data at a CPU's scale

This page is built by `python -m experiments.paper_claims_page` from the run records in
`docs/runs/paper_claims/`; do not edit it by hand. The protocol, committed before the runs, is
[docs/protocols/paper_claims.md](../protocols/paper_claims.md): it fixed the runs, the seeds
(600-602 for the ResNet, 600-604 for the MLP; no earlier run used them), the comparisons and the
rules that turn them into verdicts.

**The scale is not the paper's.** Hemati et al. (2023) trained the slim ResNet-18 for 100 epochs
an experience on Split-CIFAR100 (20 x 5 classes) and Split-TinyImageNet. Here, on
Fashion-MNIST: R1 trains the same slim ResNet-18 (nf 20) at 32x32x3, 5 x 2 classes, 120 steps
an experience, three seeds; the rest (amendment 2 of the protocol: the ResNet runs cost three
times the plan) train a 100-100 MLP at 30 steps an experience, five seeds, where HN-k generates
the layers above its freeze depth k (HN-2: the classifier alone). No augmentation; jaxcl's
HN-k defaults (they depart from the paper's settings where the [HN-k learnability
page](hn_learnability.md) says why); the lower part trained on the first experience (the
reference loads it from a checkpoint it does not publish). Every verdict is "at this scale": a
claim that holds here may not at the paper's, and the reverse. With three or five seeds an
interval is wide (Student's t with 2 degrees of freedom is 4.30, with 4 it is 2.78), so
"inconclusive" often means "too few seeds to tell", not "no effect". The paper-scale runs are
one command each: `experiments/configs/paper/`.

Columns: each comparison's mean per-seed difference in percentage points, with its 95 % interval
(paired by seed, Student's t, ddof 1); its outcome (as claimed, against, unclear, or
inconclusive where a strategy involved did not learn its stream); and what the protocol prints
beside it.
"""


SPLIT = {"split_fmnist": ("split_fmnist_naive", "split_fmnist_rest")}
"""Runs the protocol made as several commands (amendment 3): name -> their folders."""


def folders(name: str) -> tuple[str, ...]:
    """The run folders that make the protocol's run ``name``."""
    return SPLIT.get(name, (name,))


def load(folder: str) -> dict:
    """A run folder's ``metrics.json``."""
    return json.loads((RUNS / folder / "metrics.json").read_text())


def records() -> dict[str, dict]:
    """Every committed run of the protocol, by name; a run made by several commands is their
    strategies together, once all are committed."""
    out = {}
    for name in SECTIONS:
        if all((RUNS / f / "metrics.json").exists() for f in folders(name)):
            parts = [load(f) for f in folders(name)]
            out[name] = {**parts[0], "strategies": {
                label: r for part in parts for label, r in part["strategies"].items()}}
    return out


def verdict_lines(recs: dict[str, dict]) -> tuple[list[str], list[str]]:
    """Each claim's verdict as a list item, and every comparison as a table row."""
    rows = ["| claim | comparison | difference (points) | seeds | outcome | beside it |",
            "|---|---|---|---|---|---|"]
    lines = []
    for claim in CLAIMS:
        if not all(run in recs for run in claim.runs):
            lines.append(f"- **{claim.number}. {claim.text}** ({claim.source}): not run yet.")
            continue
        found = comparisons(claim, recs)
        for c in found:
            diff = c.cell() if c.seeds else "—"
            rows.append(f"| {claim.number} | {c.what} | {diff} | {c.seeds or '—'} | {c.outcome} "
                        f"| {c.note} |")
        lines.append(f"- **{claim.number}. {claim.text}** ({claim.source}): "
                     f"**{verdict(found)}** ({len(found)} comparison"
                     f"{'s' if len(found) > 1 else ''}).")
    return lines, rows


def verdict_section(recs: dict[str, dict]) -> str:
    """The verdicts: each claim's, then one table of every comparison."""
    lines, rows = verdict_lines(recs)
    return "\n".join(["## Verdicts", "", *lines, "", *rows, ""])


README = ROOT / "README.md"
MARKS = ("<!-- claims: experiments.paper_claims_page -->\n", "<!-- /claims -->")


def readme_with_verdicts(text: str) -> str:
    """The README with the claims' verdicts between :data:`MARKS` replaced by the records'."""
    start, end = text.index(MARKS[0]) + len(MARKS[0]), text.index(MARKS[1])
    return text[:start] + "\n".join(verdict_lines(records())[0]) + "\n" + text[end:]


def _mean(m: dict, label: str, key: str) -> float:
    return 100 * m["strategies"][label][key]


def _diag(m: dict, label: str) -> np.ndarray:
    return 100 * np.diag(np.asarray(m["strategies"][label]["accuracy_matrix"]))


def reading_section(recs: dict[str, dict]) -> str:
    """What the records show beside each verdict: the numbers the comparisons rest on, read off
    the same records (means over seeds, points), without changing any verdict."""
    lines = []
    if "split_fmnist" in recs:
        m = recs["split_fmnist"]
        lines.append(
            "- Claims 1-2 on the ResNet (R1): forgetting Naive {:.1f}, EWC {:.1f}, LR-2 {:.1f}, "
            "HN-2 {:.1f}; ACA LR-2 {:.1f}, HN-2 {:.1f}; learning accuracy LR-2 {:.1f}, HN-2 "
            "{:.1f}; memory LR-2 {:.2f} MiB, HN-2 {:.2f} MiB.".format(
                *(_mean(m, x, "forgetting") for x in ("Naive", "EWC", "LR-2", "HN-2")),
                *(_mean(m, x, "aca") for x in ("LR-2", "HN-2")),
                *(_mean(m, x, "learning_accuracy") for x in ("LR-2", "HN-2")),
                *(m["strategies"][x]["memory_bytes"] / 2**20 for x in ("LR-2", "HN-2"))))
    if "mlp_split" in recs:
        m = recs["mlp_split"]
        lines.append(
            "- Claims 1-2 on the MLP (M1): forgetting Naive {:.1f}, EWC {:.1f}, HN-1 {:.1f}, "
            "HN-2 {:.1f}, LR-1 {:.1f}, LR-2 {:.1f} (below zero: an earlier experience's accuracy "
            "rises after it, as replay keeps training the layers above the freeze, its head "
            "among them); "
            "learning accuracy LR-2 {:.1f}, HN-2 {:.1f} (LR-2 trains the classifier alone over "
            "frozen features). Memory is what each keeps against forgetting: LR-k's buffer "
            "of 200 features of 100 floats, {:.2f} MiB; HN-k's frozen copy of its hypernetwork, "
            "{:.2f} MiB for HN-1 (it generates the second hidden layer and the classifier) and "
            "{:.2f} MiB for HN-2 (the classifier alone).".format(
                *(_mean(m, x, "forgetting") for x in ("Naive", "EWC", "HN-1", "HN-2", "LR-1",
                                                        "LR-2")),
                *(_mean(m, x, "learning_accuracy") for x in ("LR-2", "HN-2")),
                *(m["strategies"][x]["memory_bytes"] / 2**20 for x in ("LR-1", "HN-1",
                                                                       "HN-2"))))
    if "mlp_noisy" in recs:
        m = recs["mlp_noisy"]
        low = {label: _diag(m, label).min() for label in m["strategies"]}
        failed = [f"{label} (lowest experience {v:.1f} %)" for label, v in low.items()
                  if v < 100 * LEARNED]
        lines.append(
            "- Claim 3 (M3): ACA normal / noisy: " + "; ".join(
                f"{kind}-{k} {_mean(m, f'{kind}-{k} normal', 'aca'):.1f} / "
                f"{_mean(m, f'{kind}-{k} noisy', 'aca'):.1f}"
                for k in (1, 2) for kind in ("LR", "HN")) +
            (". Below the learning floor: " + ", ".join(failed) if failed else "") + ".")
    if "mlp_lookahead" in recs and "mlp_orders" in recs:
        la, orders = recs["mlp_lookahead"]["strategies"], recs["mlp_orders"]["strategies"]
        o = orders["HN-1 order 2"]
        acas = [100 * r["aca"] for r in (*la.values(), *orders.values())]
        lr = json.loads((RUNS / "mlp_orders" / "config.json").read_text())["strategy"][
            "learning_rate"]
        lines.append(
            f"- Claim 4 (M2a, M2b): the virtual step is one SGD step at the learning rate, "
            f"{lr:g} (the reference's), so the regulariser is read close to psi itself; along "
            f"the order-2 run the second-order part is {o['mean_grad_rel_diff']:.1e} of the "
            f"first-order gradient (mean |g2 - g1| / |g1|), and the task and regulariser "
            f"gradients are nearly orthogonal (mean cosine {o['mean_cosine']:+.3f}). With and "
            f"without the look-ahead, and with either order, HN-1's mean ACA spans "
            f"{min(acas):.2f}-{max(acas):.2f} %.")
    if all(run in recs for run in FREEZE_STREAMS):
        parts, drops = [], []
        for run, name in FREEZE_STREAMS.items():
            la2 = [_diag(recs[run], f"Frozen-{k}")[1] for k in (0, 1, 2)]
            parts.append(f"{name.split(' ')[0]} {la2[0]:.1f} / {la2[1]:.1f} / {la2[2]:.1f}")
            drops.append(f"{name.split(' ')[0]} {la2[0] - la2[2]:.1f}")
        lines.append("- Claim 5 (M4): the second experience's learning accuracy at k = 0 / 1 / 2: "
                     + "; ".join(parts) + ". What freezing both hidden layers costs it (D, "
                     "points): " + ", ".join(drops) + ".")
    if not lines:
        return ""
    return "\n".join(["## What the records show", "", *lines, ""])


def learned_section(recs: dict[str, dict]) -> str:
    """Did every strategy learn its stream: each experience's learning accuracy (mean over
    seeds) against the protocol's floor."""
    rows = ["| run | strategy | learning accuracy by experience (%) | learned |",
            "|---|---|---|---|"]
    for folder, m in recs.items():
        for label, r in m["strategies"].items():
            diag = np.diag(np.asarray(r["accuracy_matrix"])) * 100
            if folder in FREEZE_STREAMS:
                ok = freeze_learned(m) if label == "Frozen-0" else learned(
                    m, label, LEARNED_5WAY, (0,))
            else:
                ok = learned(m, label)
            rows.append(f"| {folder} | {label} | {' / '.join(f'{v:.1f}' for v in diag)} | "
                        f"{'yes' if ok else 'no'} |")
    return "\n".join([
        "## Did every strategy learn?", "",
        f"The protocol's floor: every experience's mean learning accuracy at least "
        f"{100 * LEARNED:.0f} % (2-way) or {100 * LEARNED_5WAY:.0f} % (5-way, M4, where the "
        "frozen networks' second experience is the measurement and is not held to it).", "",
        *rows, ""])


def checks_section(recs: dict[str, dict]) -> str:
    """The protocol's one run recorded three times, checked equal."""
    differences = same_run_differences(recs)
    said = ("M1's HN-1, M2a's look-ahead run and M2b's order-1 run are one run recorded three "
            "times (the same settings, seeds and streams): ")
    said += ("their accuracy matrices are equal, seed by seed, to the last digit." if not
             differences else "they differ: " + "; ".join(differences) + ".")
    return "\n".join(["## The same seed gives the same numbers", "", said, ""])


def _command(folder: str) -> str:
    experiment = json.loads((RUNS / folder / "config.json").read_text())["experiment"]
    return (f"jaxcl run {experiment} --config docs/runs/paper_claims/{folder}/config.json "
            f"--out runs/{folder}-again")


def run_section(name: str, title: str) -> str:
    """A run's table as it printed it (each command's, for a run made by several), the commands
    that re-run it, and its figures."""
    made = folders(name)
    parts = [f"## {title}", "", "Re-run (each folder's `config.json` holds every setting):", "",
             "```", *map(_command, made), "```", ""]
    for folder in made:
        parts += [(RUNS / folder / "summary.md").read_text().split("\n", 1)[1].strip(), ""]
        for png in FIGURES:
            if (RUNS / folder / png).exists():
                parts += [f"![{png}](../runs/paper_claims/{folder}/{png})", ""]
    return "\n".join(parts)


def page() -> str:
    recs = records()
    parts = [INTRO, verdict_section(recs), reading_section(recs), learned_section(recs)]
    if sum(run in recs for run, _ in SAME_RUN) >= 2:
        parts.append(checks_section(recs))
    parts += [run_section(folder, title) for folder, title in SECTIONS.items() if folder in recs]
    return "\n".join(parts).rstrip() + "\n"


def cli(argv: list[str] | None = None) -> int:
    """``python -m experiments.paper_claims_page [--check]``."""
    return page_builder_cli(argv, module="experiments.paper_claims_page",
                            description=__doc__.splitlines()[0], root=ROOT,
                            pages=lambda: {PAGE: page(),
                                           README: readme_with_verdicts(README.read_text())})


if __name__ == "__main__":
    sys.exit(cli())
