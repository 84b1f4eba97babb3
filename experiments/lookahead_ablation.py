"""With and without look-ahead (the study's Table 4).

HN-k trained with the output regulariser applied after the virtual update (look-ahead, order
``--order``, 1 or 2) and applied to ``psi`` itself, ``L_CE(psi) + lambda L_H(psi)`` (no
look-ahead: order ``"none"``); same stream, initialisation and class order. Beside ours, the paper's ACA, learning accuracy and time
(Table 4: Split-CIFAR100, one seed; its look-ahead was first-order) when the benchmark is
Split-CIFAR100 or the synthetic stream of its shape; a line under the table names where our
setting differs from the paper's.

    python -m experiments.lookahead_ablation --k 3
    python -m experiments.lookahead_ablation --quick
"""

from __future__ import annotations

import sys

from experiments import paper
from experiments.runner import finish, markdown_table, module_main, run_strategies, strategy_for
from experiments.settings import QUICK_SETTINGS, HypernetRun
from jaxcl.io.records import mean_std

NAME = "lookahead_ablation"
Config = HypernetRun
PAPER_SETTING = {**paper.SPLIT_CIFAR100, "order": 1, "seeds": 1}


QUICK = {**QUICK_SETTINGS, "k": 1}


def run(config: Config, out=None) -> dict:
    order = config.strategy.order
    if order == "none":
        raise ValueError("--order none: this module trains HN-k without look-ahead "
                         "beside HN-k with it; give the look-ahead order, 1 or 2")
    base = config.labels()[0]
    orders = {f"{base} with look-ahead (order {order})": order,
              f"{base} without look-ahead": "none"}
    strategies = {label: strategy_for(config, base, order=o) for label, o in orders.items()}
    records, steps = run_strategies(config, strategies, out)
    cifar = paper.BENCHMARKS.get(config.data.benchmark) == "split_cifar100"
    keys = {label: (base, o != "none") for label, o in orders.items()}
    published = paper.paper_rows(paper.TABLE4 if cifar else {}, keys)
    rows = [[label, mean_std(r, "aca", 100), *paper.cells(published[label], ("aca",)),
             mean_std(r, "forgetting", 100), mean_std(r, "learning_accuracy", 100),
             *paper.cells(published[label], ("learning_accuracy",)), mean_std(r, "time_s", 1, 1),
             *paper.cells(published[label], ("time_min",))] for label, r in records.items()]
    table = markdown_table(["variant", "ACA (%)", "paper", "forgetting (%)", "learning acc. (%)",
                            "paper", "train time (s)", "paper"], rows)
    if cifar:
        source = "paper columns: Hemati et al. (2023), Table 4, split_cifar100, one run"
        note = f"\n\n{paper.paper_notes(config, PAPER_SETTING)}"
    else:
        source = paper.no_columns("the paper's Table 4", "split_cifar100", config)
        note = paper.hn_departures(config)
    return finish(out, NAME, config, records, steps, f"{source}\n\n{table}{note}",
                         paper={"source": "Hemati et al. (2023), Table 4", "rows": published})


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
