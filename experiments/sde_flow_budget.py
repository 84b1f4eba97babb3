"""Whether a shorter Hypernet-SDE-Flow run reaches the full run's conclusions: the page that
shows it, built from run records.

A main job trained for fewer epochs per task than the fair protocol's 300
(``docs/protocols/sde_flow_fair.md``) would end in a minute or two on a laptop's CPU, if it
reached the same conclusions. This module
reads run folders of :mod:`experiments.sde_flow_forgetting` on the same seeds, a full run and
shorter ones, and writes ``docs/results/sde_flow_budget.md``: for every claim of the protocol that
both runs' models allow, its verdict in each (:mod:`experiments.sde_flow_fair_rules`: paired by
seed, Holm over the comparisons present) and every tested comparison's outcome; then, per model
and metric, each run's mean and 95 % interval and whether the short run's mean lies inside the
full run's interval. The short run stands in for the full one where every verdict and every
outcome agree; its numbers themselves differ (fewer epochs learn less), and the tables say by how
much.

    python -m experiments.sde_flow_budget docs/results/runs/sde_flow_main_job \\
        docs/results/runs/sde_flow_budget_30 docs/results/runs/sde_flow_budget_60 \\
        --out docs/results/sde_flow_budget.md
    python -m experiments.sde_flow_budget FULL SHORT... --out PAGE --check   # the page is current
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

from experiments import sde_flow_fair_rules as rules
from experiments.runner import markdown_table

Records = Mapping[str, Mapping[str, Any]]


def _records(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {name: rec for name, rec in metrics.items()
            if isinstance(rec, Mapping) and "per_seed" in rec}


def claim_rows(short: Records, full: Records) -> list[list[str]]:
    """``[claim, full verdict, short verdict, same]`` for every claim both runs can read, then
    ``[claim + comparison, full outcome, short outcome, same]`` for each of its tests."""
    found = {"full": rules.results(full), "short": rules.results(short)}
    rows = []
    for claim in rules.CLAIMS:
        said = {run: rules.verdict(claim, found[run]) for run in found}
        if None in said.values():
            continue
        rows.append([f"**{claim.number}. {claim.text}**", said["full"], said["short"],
                     _same(said["full"], said["short"])])
        for t in claim.tests:
            a, b = found["full"][t], found["short"][t]
            rows.append([f"{claim.number}: {t}", f"{a.outcome} ({a.paired.cell()})",
                         f"{b.outcome} ({b.paired.cell()})", _same(a.outcome, b.outcome)])
    return rows


def metric_rows(short: Records, full: Records) -> list[list[str]]:
    """``[model, metric, full mean ± ci, short mean ± ci, short mean inside full interval]``
    for every model both runs trained and every metric of the rules."""
    rows = []
    for name in (n for n in full if n in short):
        for metric in rules.METRICS:
            f, s = full[name], short[name]
            ci = f.get(f"{metric}_ci95") or 0.0
            inside = abs(s[metric] - f[metric]) <= ci
            rows.append([name, metric, f"{f[metric]:+.4f} ± {ci:.4f}",
                         f"{s[metric]:+.4f} ± {s.get(f'{metric}_ci95') or 0.0:.4f}",
                         "yes" if inside else "no"])
    return rows


def _same(a: str, b: str) -> str:
    return "same" if a == b else "**differs**"


def section(short_dir: pathlib.Path, full_dir: pathlib.Path) -> tuple[str, bool]:
    """One short run against the full one: its Markdown section, and whether every verdict and
    outcome agree."""
    short_m, full_m = (json.loads((d / "metrics.json").read_text()) for d in (short_dir,
                                                                             full_dir))
    if short_m["seeds"] != full_m["seeds"]:
        raise ValueError(f"the runs differ in seeds ({short_m['seeds']} against "
                         f"{full_m['seeds']}): comparisons are paired by seed")
    short, full = _records(short_m), _records(full_m)
    claims = claim_rows(short, full)
    agree = all(row[-1] == "same" for row in claims)
    metrics = metric_rows(short, full)
    inside = sum(row[-1] == "yes" for row in metrics)
    epochs = {run: m["config"]["run"]["epochs"] for run, m in (("short", short_m),
                                                               ("full", full_m))}
    seconds = sum(r.get("time_s", 0.0) + r.get("compile_s", 0.0) for r in short.values())
    cols = [f"{epochs['full']} epochs", f"{epochs['short']} epochs"]
    verdict = ("every verdict and every tested outcome agree with the full run's" if agree
               else "some verdicts or outcomes differ from the full run's: it does not stand in "
               "for it")
    text = f"""## {epochs['short']} epochs a task

[{short_dir}]({_rel(short_dir)}), {seconds:.0f} s of training and compilation as it recorded
them: **{verdict}**. {inside} of {len(metrics)} model means lie inside the full run's 95 %
interval.

{markdown_table(['claim / comparison', *cols, 'agree'], claims)}

{markdown_table(['model', 'metric', *cols, 'short mean inside full interval'], metrics)}
"""
    return text, agree


def page(shorts: list[pathlib.Path], full_dir: pathlib.Path, command: str) -> tuple[str, bool]:
    """The page's Markdown, and whether some short run reaches the full run's conclusions."""
    full_m = json.loads((full_dir / "metrics.json").read_text())
    sections = [section(short, full_dir) for short in shorts]
    full_s = sum(r.get("time_s", 0.0) + r.get("compile_s", 0.0)
                 for r in _records(full_m).values())
    any_agree = any(agree for _, agree in sections)
    text = f"""<!-- built by: {command} -->
# The main job's budget: fewer epochs against the protocol's {full_m['config']['run']['epochs']}

Built by the command above from run records on the same seeds ({full_m['seeds']}); do not edit
by hand. The full run is [{full_dir}]({_rel(full_dir)}) ({full_m['config']['run']['epochs']}
epochs per task, {full_s:.0f} s of training and compilation as it recorded them). The claims and
their rules are the fair protocol's
([docs/protocols/sde_flow_fair.md](../protocols/sde_flow_fair.md)), applied to each run's models
and seeds alone; each table gives a claim's verdict, then each of its tested comparisons'
outcomes (mean ± 95 % half-width of the paired difference), then every model's numbers. The
shorter budgets were tried to make the main job fast, then checked here: exploratory, not a test
of the protocol.

**{'A shorter budget reaches the full run' + chr(39) + 's conclusions.' if any_agree else 'No shorter budget tried reaches the full run' + chr(39) + 's conclusions: the main job keeps the full size.'}**

""" + "\n".join(text for text, _ in sections)
    return text, any_agree


def _rel(folder: pathlib.Path) -> str:
    parts = pathlib.Path(folder).parts
    return "/".join(parts[2:]) if parts[:2] == ("docs", "results") else str(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full", type=pathlib.Path, help="the full run's folder")
    parser.add_argument("short", type=pathlib.Path, nargs="+", help="the short runs' folders")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="the page to write")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the page differs from what the records give")
    args = parser.parse_args(argv)
    command = (f"python -m experiments.sde_flow_budget {args.full} "
               f"{' '.join(map(str, args.short))} --out {args.out}")
    text, agree = page(args.short, args.full, command)
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run {command}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}: {'a short budget agrees' if agree else 'no short budget agrees'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
