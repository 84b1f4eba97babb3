"""How many blocks can be frozen (the study's Figure 4).

Two-experience streams: HN-k for every freeze depth k is trained on experience 1 (which also
trains the frozen part) and then on experience 2 with the first k blocks frozen. The learning
accuracy in the second experience, ``R[1, 1]``, against k shows how far the features of the first
experience carry to the second.

    python -m experiments.freeze_depth
    python -m experiments.freeze_depth --quick
    python -m experiments.freeze_depth --benchmark cross_dataset --datasets cifar10 svhn

On synthetic data the stream has two experiences unless ``--num-tasks`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from experiments.common import QUICK_SETTINGS, RunSettings, markdown_table, module_main
from jaxcl import plots
from jaxcl.data import SYNTHETIC
from jaxcl.results import check_out

NAME = "freeze_depth"


@dataclasses.dataclass(frozen=True)
class Config(RunSettings):
    depths: tuple[int, ...] = (0, 1, 2, 3, 4)

    def labels(self):
        return tuple("HN-F" if k == 0 else f"HN-{k}" for k in self.depths)

    def stream_options(self):
        options = super().stream_options()
        if self.benchmark in SYNTHETIC:
            options.setdefault("num_tasks", 2)
        return options


QUICK = {**QUICK_SETTINGS, "num_tasks": 2, "depths": (0, 1)}


def run(config: Config, out=None) -> dict:
    if out is not None:
        check_out(out)
    strategies = {label: config.strategy(label) for label in config.labels()}
    records, steps = config.train(strategies, out)
    second = {label: [r["accuracy_matrix"][1][1] for r in rec["per_seed"]]
              for label, rec in records.items()}
    rows = [[k, label, f"{100 * np.mean(v):.2f} ± {100 * np.std(v):.2f}"]
            for k, (label, v) in zip(config.depths, second.items())]
    table = markdown_table(["frozen blocks k", "strategy", "learning acc. exp. 2 (%)"], rows)
    figure = plots.lines(list(config.depths), {"HN-k": [np.mean(v) for v in second.values()]},
                         "frozen blocks k", "learning accuracy, experience 2",
                         f"{NAME}: {config.benchmark}")
    return config.finish(out, NAME, records, steps, table,
                         extra={"learning_accuracy_exp2": second},
                         extra_files={"learning_accuracy_vs_k.png": figure})


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    main(sys.argv[1:])
