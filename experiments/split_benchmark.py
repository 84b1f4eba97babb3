"""Split benchmark (the study's Table 2): ACA, forgetting, time and memory of every strategy.

Naive, EWC, LR-k and HN-k (k = 1..4) and HN-F on one task-incremental stream, several seeds,
mean ± std. Prints the table last; writes the run folder (see :mod:`jaxcl.results`).

    python -m experiments.split_benchmark --seeds 0 1 2
    python -m experiments.split_benchmark --quick
"""

from __future__ import annotations

import dataclasses
import sys

from experiments.common import QUICK_SETTINGS, RunSettings, markdown_table, module_main
from jaxcl.results import check_out, mean_std

NAME = "split_benchmark"


@dataclasses.dataclass(frozen=True)
class Config(RunSettings):
    strategies: tuple[str, ...] = ("Naive", "EWC", "LR-1", "LR-2", "LR-3", "LR-4",
                                   "HN-1", "HN-2", "HN-3", "HN-4", "HN-F")

    def labels(self):
        return self.strategies


QUICK = {**QUICK_SETTINGS, "strategies": ("Naive", "EWC", "LR-1", "HN-1", "HN-F")}


def run(config: Config, out=None) -> dict:
    if out is not None:
        check_out(out)
    records, steps = config.train({label: config.strategy(label) for label in config.strategies}, out)
    rows = [[label, mean_std(r, "aca", 100), mean_std(r, "forgetting", 100),
             mean_std(r, "learning_accuracy", 100), mean_std(r, "time_s", 1, 1),
             f"{r['memory_bytes'] / 2**20:.2f}"] for label, r in records.items()]
    table = markdown_table(["strategy", "ACA (%)", "forgetting (%)", "learning acc. (%)",
                            "train time (s)", "memory (MiB)"], rows)
    return config.finish(out, NAME, records, steps, table)


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    main(sys.argv[1:])
