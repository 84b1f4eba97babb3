"""Latent replay vs partial hypernetwork on the noisy stream (the study's Table 1 and Figure 7).

Four experiences: clean, solarize, Gaussian blur, autocontrast + grayscale + blur
(:mod:`jaxcl.data.transforms`). LR-k and HN-k share the frozen depth k; the table gives the
learning accuracy of every experience (clean vs noisy) and the final ACA and forgetting. Beside
ours, the paper's learning accuracy per experience on its noisy stream (Table 1, 20 CIFAR-100
classes, 4 x 5, mean ± std over 3 runs; rows for k = 2, 3, 4) when the benchmark is a noisy stream
(``noisy_cifar``, ``synthetic_noisy``); ``metrics.json``'s ``paper`` also holds its normal-stream
rows. A line under the table names where our setting differs from the paper's. ``samples.png``
shows the first training images of each experience (the paper's Figure 5).

    python -m experiments.noisy_stream --k 3
    python -m experiments.noisy_stream --benchmark noisy_cifar --data-dir ~/tensorflow_datasets
    python -m experiments.noisy_stream --quick
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

import numpy as np

from experiments import paper
from experiments.runner import (finish, load_streams, markdown_table, module_main,
                                run_strategies, strategy_for)
from experiments.settings import QUICK_SETTINGS, DataSettings, StrategyRun
from jaxcl.config import section, setting
from jaxcl.data.transforms import NOISE_NAMES
from jaxcl.io import plots
from jaxcl.io.records import mean_std
from jaxcl.types import Experience

NAME = "noisy_stream"
PAPER_SETTING = {"benchmark": "noisy_cifar", "classes_per_task": 5, "memory_size": 200,
                 **paper.TRAINING, "seeds": 3}


@dataclasses.dataclass(frozen=True)
class Config(StrategyRun):
    data: DataSettings = section(DataSettings, benchmark="synthetic_noisy")
    k: int = setting(3, "freeze depth of LR-k and HN-k, 1..4", effect="selection")

    def labels(self):
        return (f"LR-{self.k}", f"HN-{self.k}")


QUICK = {**QUICK_SETTINGS, "num_tasks": 0, "k": 1}


def run(config: Config, out=None) -> dict:
    strategies = {label: strategy_for(config, label) for label in config.labels()}
    streams = load_streams(config)
    records, steps = run_strategies(config, strategies, out, streams=streams)
    n = len(records[config.labels()[0]]["accuracy_matrix"])
    names = [NOISE_NAMES[j] if j < len(NOISE_NAMES) else "" for j in range(n)]
    header = ["strategy", *[h for j in range(n) for h in (f"LA exp {j + 1}: {names[j]} (%)",
                                                          "paper")],
              "ACA (%)", "forgetting (%)"]
    noisy = paper.BENCHMARKS.get(config.data.benchmark) == "noisy_cifar"
    published = {stream: paper.paper_rows(paper.TABLE1 if noisy else {},
                                          {label: (label, stream) for label in records})
                 for stream in paper.STREAMS}
    rows = []
    for label, r in records.items():
        theirs = published["noisy"][label] if noisy else None
        theirs = tuple(theirs or ()) + (None,) * n
        rows.append([label, *[cell for j in range(n) for cell in (
            f"{100 * np.diag(r['accuracy_matrix'])[j]:.2f}", paper.paper_cell(theirs[j]))],
            mean_std(r, "aca", 100), mean_std(r, "forgetting", 100)])
    if noisy:
        source = ("paper columns: Hemati et al. (2023), Table 1, noisy stream, learning accuracy "
                  "(mean ± std over 3 runs; k = 2, 3, 4 only)")
        note = f"\n\n{paper.paper_notes(config, PAPER_SETTING)}"
    else:
        source = paper.no_columns("the paper's Table 1", "noisy_cifar", config)
        note = paper.hn_departures(config)
    table = f"{source}\n\n{markdown_table(header, rows)}{note}"
    return finish(out, NAME, config, records, steps, table,
                  paper={"source": "Hemati et al. (2023), Table 1", "rows_by_stream": published},
                  extra_files={"samples.png": samples(config, streams[0])})


SAMPLES = 8
"""Training images per experience in ``samples.png``."""


def samples(config: Config, stream: Sequence[Experience]) -> bytes:
    """The paper's Figure 5: the first :data:`SAMPLES` training images of each experience of
    ``stream`` (the first seed's), one row per experience, named by its corruption."""
    rows = {f"{e + 1}: {NOISE_NAMES[e] if e < len(NOISE_NAMES) else ''}":
            np.asarray(exp.x_train[:SAMPLES]) for e, exp in enumerate(stream)}
    return plots.image_grid(rows, f"{NAME}: {config.data.benchmark}, seed "
                                  f"{config.run.seeds[0]}, training images of each experience")


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
