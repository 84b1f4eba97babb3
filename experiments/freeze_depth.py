"""How many blocks can be frozen (the study's Figure 4).

Two-experience streams: a plain multi-head slim ResNet-18 (``Frozen-k``, the reference's
``FreezingNaive``) is trained on experience 1, which trains every block, and then on experience 2
with the stem and the first k blocks frozen. The learning accuracy in the second experience,
``R[1, 1]``, against k shows how far the features of the first experience carry to the second.
``--kinds Frozen HN`` also trains HN-k (k = 0 is HN-F) for each depth beside it.

    python -m experiments.freeze_depth
    python -m experiments.freeze_depth --quick
    python -m experiments.freeze_depth --benchmark cross_dataset --datasets cifar10 svhn

On synthetic data the stream has two experiences unless ``--num-tasks`` says otherwise. The
paper's Figure 4 is a plot without published values, so no paper column is printed.
"""

from __future__ import annotations

import dataclasses
import sys
import typing

import numpy as np

from experiments import paper
from experiments.runner import finish, markdown_table, module_main, run_strategies, strategy_for
from experiments.settings import QUICK_SETTINGS, StrategyRun
from jaxcl.config import setting
from jaxcl.io import plots

NAME = "freeze_depth"


KINDS = ("Frozen", "HN")


def label(kind: str, k: int) -> str:
    """``Frozen-k`` or ``HN-k`` (``HN-F`` for k = 0)."""
    return "HN-F" if (kind, k) == ("HN", 0) else f"{kind}-{k}"


@dataclasses.dataclass(frozen=True)
class Config(StrategyRun):
    SYNTHETIC_OPTIONS: typing.ClassVar[dict] = {"num_tasks": 2}

    depths: tuple[int, ...] = setting((0, 1, 2, 3, 4), "freeze depths k, each 0..4",
                                      effect="selection", distinct=True)
    kinds: tuple[str, ...] = setting(("Frozen",), "Frozen (plain ResNet, the paper's Figure 4) "
                                     "and/or HN", effect="selection", distinct=True)

    def __post_init__(self):
        bad = [kind for kind in self.kinds if kind not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds {list(self.kinds)}: each must be one of {KINDS}")
        super().__post_init__()

    def labels(self):
        return tuple(label(kind, k) for kind in self.kinds for k in self.depths)


QUICK = {**QUICK_SETTINGS, "num_tasks": 2, "depths": (0, 1)}


def run(config: Config, out=None) -> dict:
    strategies = {name: strategy_for(config, name) for name in config.labels()}
    records, steps = run_strategies(config, strategies, out)
    second = {name: [r["accuracy_matrix"][1][1] for r in rec["per_seed"]]
              for name, rec in records.items()}
    rows = [[k, label(kind, k), f"{100 * np.mean(second[label(kind, k)]):.2f} ± "
             f"{100 * np.std(second[label(kind, k)]):.2f}"]
            for kind in config.kinds for k in config.depths]
    table = markdown_table(["frozen blocks k", "strategy", "learning acc. exp. 2 (%)"], rows)
    if "HN" in config.kinds:
        table += paper.hn_departures(config)
    curves = {f"{kind}-k": [np.mean(second[label(kind, k)]) for k in config.depths]
              for kind in config.kinds}
    figure = plots.lines(list(config.depths), curves, "frozen blocks k",
                         "learning accuracy, experience 2",
                         f"{NAME}: {config.data.benchmark}"
                         + (f" ({' then '.join(config.data.datasets)})"
                            if config.data.datasets else ""))
    return finish(out, NAME, config, records, steps, table,
                         extra={"learning_accuracy_exp2": second},
                         extra_files={"learning_accuracy_vs_k.png": figure})


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
