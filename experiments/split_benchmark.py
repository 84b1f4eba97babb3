"""Split benchmark (the study's Table 2): ACA, forgetting, time and memory of every strategy.

Naive, EWC, LR-k and HN-k (k = 1..4) and HN-F on one task-incremental stream, several seeds,
mean ± std. Prints the table last; writes the run folder (see :mod:`jaxcl.io.run_folder`).
Beside ours, the paper's ACA, forgetting and time (Table 2): its Split-CIFAR100 columns for
``split_cifar100`` and the synthetic streams (the same 20 x 5 shape), its Split-TinyImageNet
columns for ``split_tinyimagenet``, none for other benchmarks; a line under the table names where
our setting differs from the paper's (Table 2 was run first-order, 3 seeds, 100 epochs).

    python -m experiments.split_benchmark --seeds 0 1 2
    python -m experiments.split_benchmark --quick
"""

from __future__ import annotations

import dataclasses
import sys

from experiments import paper
from experiments.runner import finish, markdown_table, module_main, run_strategies, strategy_for
from experiments.settings import QUICK_SETTINGS, StrategyRun
from jaxcl.config import setting
from jaxcl.io.records import mean_std

NAME = "split_benchmark"
PAPER_SETTING = {
    "split_cifar100": {"benchmark": "split_cifar100", "num_tasks": 20, "classes_per_task": 5,
                       "memory_size": 200, **paper.TRAINING, "ewc_lambda": 1.0, "order": 1,
                       "seeds": 3},
    "split_tinyimagenet": {"benchmark": "split_tinyimagenet", "num_tasks": 20,
                           "classes_per_task": 10, "memory_size": 400, **paper.TRAINING,
                           **paper.TINYIMAGENET, "ewc_lambda": 1.0, "order": 1, "seeds": 3},
}


@dataclasses.dataclass(frozen=True)
class Config(StrategyRun):
    strategies: tuple[str, ...] = setting(
        ("Naive", "EWC", "LR-1", "LR-2", "LR-3", "LR-4", "HN-1", "HN-2", "HN-3", "HN-4", "HN-F"),
        "strategy labels: Naive, EWC, Frozen-k (k 0..4), LR-k (k 1..4), HN-k (k 1..4), HN-F",
        effect="selection", distinct=True)

    def labels(self):
        return self.strategies


QUICK = {**QUICK_SETTINGS, "strategies": ("Naive", "EWC", "LR-1", "HN-1", "HN-F")}


def run(config: Config, out=None) -> dict:
    records, steps = run_strategies(
        config, {label: strategy_for(config, label) for label in config.strategies}, out)
    bench = paper.BENCHMARKS.get(config.data.benchmark)
    bench = bench if bench in paper.TABLE2 else None
    published = paper.paper_rows(paper.TABLE2.get(bench, {}), {label: label for label in records})
    rows = [[label, mean_std(r, "aca", 100), *paper.cells(published[label], ("aca",)),
             mean_std(r, "forgetting", 100), *paper.cells(published[label], ("forgetting",)),
             mean_std(r, "learning_accuracy", 100), mean_std(r, "time_s", 1, 1),
             *paper.cells(published[label], ("time_min",)), f"{r['memory_bytes'] / 2**20:.2f}"]
            for label, r in records.items()]
    table = markdown_table(["strategy", "ACA (%)", "paper", "forgetting (%)", "paper",
                            "learning acc. (%)", "train time (s)", "paper", "memory (MiB)"], rows)
    if bench is None:
        source = paper.no_columns("the paper's Table 2", "split_cifar100 and split_tinyimagenet",
                                  config)
        note = paper.hn_departures(config)
    else:
        source = f"paper columns: Hemati et al. (2023), Table 2, {bench}, mean ± std over 3 runs"
        note = f"\n\n{paper.paper_notes(config, PAPER_SETTING[bench])}"
    table = f"{source}\n\n{table}{note}"
    return finish(out, NAME, config, records, steps, table,
                         paper={"source": "Hemati et al. (2023), Table 2", "benchmark": bench,
                                "rows": published})


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
