"""First- vs second-order look-ahead (the study's Table 5 and Figure 12).

The same stream, initialisation and class order trained with HN-k, order 1 and order 2: ACA,
learning accuracy, time, the mean cosine similarity of the task and regulariser gradients, and the
relative difference ``|g_order2 - g_order1| / |g_order1|`` along the order-2 run, and their
cosine over the first epoch of experience 2, one line per seed (``order_cosine_over_steps.png``,
the paper's Figure 12, which shows HN-4: ``--k 4``). Both cost nothing extra: the order-2
look-ahead already computes the order-1 gradient at the same ``psi``
(:attr:`jaxcl.core.lookahead.LookaheadInfo.hessian_term`). Beside ours, the paper's ACA,
learning accuracy and time (Table 5, Split-CIFAR100) when the benchmark is Split-CIFAR100 or the
synthetic stream of its shape; a line under the table names where our setting differs from the
paper's.

    python -m experiments.first_vs_second_order --k 3
    python -m experiments.first_vs_second_order --quick
"""

from __future__ import annotations

import dataclasses
import sys
import typing

import numpy as np

from experiments import paper
from experiments.runner import finish, markdown_table, module_main, run_strategies, strategy_for
from experiments.settings import QUICK_SETTINGS, HypernetRun
from jaxcl.io import plots
from jaxcl.io.records import mean_std

NAME = "first_vs_second_order"
PAPER_SETTING = paper.SPLIT_CIFAR100


@dataclasses.dataclass(frozen=True)
class Config(HypernetRun):
    SET_BY_MODULE: typing.ClassVar[dict[str, str]] = {"order": "this module trains order 1 beside order 2"}


QUICK = {**QUICK_SETTINGS, "k": 1}


def run(config: Config, out=None) -> dict:
    base = config.labels()[0]
    keys = {f"{base} order {o}": (base, o) for o in (1, 2)}
    strategies = {label: strategy_for(config, base, order=o) for label, (_, o) in keys.items()}
    records, steps = run_strategies(config, strategies, out)
    cifar = paper.BENCHMARKS.get(config.data.benchmark) == "split_cifar100"
    published = paper.paper_rows(paper.TABLE5 if cifar else {}, keys)
    rows = [[label, mean_std(r, "aca", 100), *paper.cells(published[label], ("aca",)),
             mean_std(r, "learning_accuracy", 100),
             *paper.cells(published[label], ("learning_accuracy",)),
             mean_std(r, "forgetting", 100), mean_std(r, "time_s", 1, 1),
             *paper.cells(published[label], ("time_min",)), mean_std(r, "mean_cosine", 1, 3)]
            for label, r in records.items()]
    o2 = records[f"{base} order 2"]
    table = markdown_table(["variant", "ACA (%)", "paper", "learning acc. (%)", "paper",
                            "forgetting (%)", "train time (s)", "paper", "mean cos(g_CE, g_H)"],
                           rows)
    if cifar:
        source = "paper columns: Hemati et al. (2023), Table 5, split_cifar100"
        table = f"{source}\n\n{table}\n\n{paper.paper_notes(config, PAPER_SETTING)}"
    else:
        source = paper.no_columns("the paper's Table 5", "split_cifar100", config)
        table = f"{source}\n\n{table}{paper.hn_departures(config)}"
    ratio = o2["time_s"] / max(records[f"{base} order 1"]["time_s"], 1e-9)
    table += (f"\n\nalong the order-2 run, mean |g_order2 - g_order1| / |g_order1| = "
              f"{mean_std(o2, 'mean_grad_rel_diff', 1, 4)} (free: same pass); "
              f"order-2 / order-1 training time: {ratio:.2f}")
    seed = config.run.seeds[0]
    log = steps[f"{base} order 2"][seed]
    later = log["experience"] > 0
    extra_files = {}
    if later.any():
        extra_files["grad_rel_diff_over_steps.png"] = plots.series_over_steps(
            {"order 2 vs order 1": log["grad_rel_diff"][later]},
            "|g2 - g1| / |g1|", f"{NAME}: gradient difference along the order-2 run (seed {seed})")
    cosines = first_epoch_cosines(config, steps[f"{base} order 2"])
    if cosines:
        extra_files["order_cosine_over_steps.png"] = plots.series_over_steps(
            {f"seed {s}": c for s, c in cosines.items()}, "cos(g order 2, g order 1)",
            f"{NAME}: {base}, first epoch of experience 2, each seed",
            xlabel="step of experience 2's first epoch", zero_line=False)
        table += ("\n\nthe paper's Figure 12, cos(g_order2, g_order1) over the first epoch of "
                  "experience 2 (order_cosine_over_steps.png), 1 - its mean, per seed: " + ", ".join(
                      f"{s}: {1 - np.mean(c):.2e}" for s, c in cosines.items()))
    extra = {"time_ratio_order2_order1": ratio,
             "grad_rel_diff_per_step": np.asarray(log["grad_rel_diff"]).tolist(),
             "order_cosine_first_epoch_exp2": {str(s): np.asarray(c).tolist()
                                               for s, c in cosines.items()}}
    return finish(out, NAME, config, records, steps, table, what=base, extra=extra,
                         extra_files=extra_files,
                         paper={"source": "Hemati et al. (2023), Table 5", "rows": published})


def first_epoch_cosines(config: Config, logs: dict) -> dict[int, np.ndarray]:
    """The paper's Figure 12: along each seed's order-2 run, the cosine of the order-2 and
    order-1 gradients at the same ``psi`` (``order_cosine``), over the first epoch of experience
    2 (the first experience with a regulariser); empty for a stream of one experience."""
    out = {}
    for seed, log in logs.items():
        second = np.flatnonzero(np.asarray(log["experience"]) == 1)
        if len(second):
            out[seed] = np.asarray(log["order_cosine"])[second[:len(second) // config.run.epochs]]
    return out


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
