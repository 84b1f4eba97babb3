"""With and without look-ahead (the study's Table 4).

HN-k trained with the output regulariser applied after the virtual update (look-ahead, order
``--order``) and applied to ``psi`` itself, ``L_CE(psi) + lambda L_H(psi)`` (no look-ahead); same
stream, initialisation and class order.

    python -m experiments.lookahead_ablation --k 3
    python -m experiments.lookahead_ablation --quick
"""

from __future__ import annotations

import sys

from experiments.common import HypernetSettings, QUICK_SETTINGS, markdown_table, module_main
from jaxcl.results import check_out, mean_std

NAME = "lookahead_ablation"
Config = HypernetSettings


QUICK = {**QUICK_SETTINGS, "k": 1}


def run(config: Config, out=None) -> dict:
    if out is not None:
        check_out(out)
    base = config.labels()[0]
    strategies = {f"{base} with look-ahead (order {config.order})": config.strategy(base),
                  f"{base} without look-ahead": config.strategy(base, lookahead=False)}
    records, steps = config.train(strategies, out)
    rows = [[label, mean_std(r, "aca", 100), mean_std(r, "forgetting", 100),
             mean_std(r, "learning_accuracy", 100), mean_std(r, "time_s", 1, 1)]
            for label, r in records.items()]
    table = markdown_table(["variant", "ACA (%)", "forgetting (%)", "learning acc. (%)",
                            "train time (s)"], rows)
    return config.finish(out, NAME, records, steps, table)


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    main(sys.argv[1:])
