"""Latent replay vs partial hypernetwork on the noisy stream (the study's Table 1 and Figure 7).

Four experiences: clean, random solarize, Gaussian blur, contrast + blur + grayscale
(:mod:`jaxcl.data.transforms`). LR-k and HN-k share the frozen depth k; the table gives the
learning accuracy of every experience (clean vs noisy) and the final ACA and forgetting.

    python -m experiments.noisy_stream --k 3
    python -m experiments.noisy_stream --benchmark noisy_cifar --data-dir ~/tensorflow_datasets
    python -m experiments.noisy_stream --quick
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from experiments.common import QUICK_SETTINGS, RunSettings, markdown_table, module_main
from jaxcl.data.transforms import NOISE_NAMES
from jaxcl.results import check_out, mean_std

NAME = "noisy_stream"


@dataclasses.dataclass(frozen=True)
class Config(RunSettings):
    benchmark: str = "synthetic_noisy"
    k: int = 3

    def labels(self):
        return (f"LR-{self.k}", f"HN-{self.k}")


QUICK = {**QUICK_SETTINGS, "num_tasks": 0, "k": 1}


def run(config: Config, out=None) -> dict:
    if out is not None:
        check_out(out)
    strategies = {label: config.strategy(label) for label in config.labels()}
    records, steps = config.train(strategies, out)
    n = len(records[config.labels()[0]]["accuracy_matrix"])
    header = ["strategy", *[f"LA exp {j + 1}: {NOISE_NAMES[j] if j < len(NOISE_NAMES) else ''} (%)" for j in range(n)],
              "ACA (%)", "forgetting (%)"]
    rows = [[label, *[f"{100 * np.diag(r['accuracy_matrix'])[j]:.2f}" for j in range(n)],
             mean_std(r, "aca", 100), mean_std(r, "forgetting", 100)]
            for label, r in records.items()]
    table = markdown_table(header, rows)
    return config.finish(out, NAME, records, steps, table)


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    main(sys.argv[1:])
