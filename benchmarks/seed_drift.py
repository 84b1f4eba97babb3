"""How far a seed trained inside a vmapped program drifts from the same seed trained alone.

Seeds vmapped together and the same seeds run apart compute the same steps, but XLA orders some
float sums differently in the batched program, so they agree to rounding only (the tests: 1e-7
after a few steps). This measures what those rounding differences grow into over a study of the
Hypernet-SDE-Flow model: seed 0 trained as part of ``--seeds 0 1`` against seed 0 by itself, at a
few training lengths, as the relative difference of the per-step loss at fractions of the run and
of the final MSE matrix, and the task-0 forgetting both ways. It is a property of the study's
training (not of the vmap): any change of rounding, another machine or XLA version included,
moves the per-seed numbers as much.

    python benchmarks/seed_drift.py                               # the table in docs/devnotes/performance.md
    python benchmarks/seed_drift.py --variant mlp --epochs 20 300
    python benchmarks/seed_drift.py --quick --epochs 2          # a smoke run, tiny tasks
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from experiments.runner import markdown_table
from experiments.sde_flow_settings import VARIANT_NAMES, Config, learner, tasks, variant
from jaxcl.config import make
from jaxcl.core.metrics import error_summary
from jaxcl.train.loop import train_seeds, train_stream

FRACTIONS = (0.01, 0.1, 0.5, 1.0)


def drift(name: str, epochs: int, **options) -> list:
    config = make(Config, epochs=epochs, seeds=(0, 1), **options)
    model = learner(config, variant(config, name))
    run = {"epochs": epochs, "batch_size": config.model.batch_size,
           "steps_in": config.run.steps_in}
    streams = [tasks(config, 0), tasks(config, 1)]
    keys = [jax.random.key(0), jax.random.key(1)]
    together = train_seeds(model, streams, keys=keys, **run)[0]
    alone = train_stream(model, streams[0], key=keys[0], **run)
    loss_a, loss_b = together.step_metrics["loss"], alone.step_metrics["loss"]
    rel = np.abs(loss_a - loss_b) / np.maximum(np.abs(loss_b), 1e-6)
    at = [rel[min(len(rel) - 1, int(len(rel) * f))] for f in FRACTIONS]
    matrix = np.max(np.abs(together.matrix - alone.matrix) / alone.matrix)
    return [name, epochs, *(f"{x:.1e}" for x in at), f"{matrix:.1e}",
            *(f"{error_summary(r.matrix)['forgetting_t0']:+.4f}" for r in (together, alone))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANT_NAMES, nargs="+",
                        default=["hypernet_sde_flow", "repair_order1"])
    parser.add_argument("--epochs", type=int, nargs="+", default=[20, 300])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: the tiny tasks and model of the study's --quick")
    args = parser.parse_args(argv)
    options = {}
    if args.quick:
        from experiments.sde_flow_settings import QUICK

        options = {k: v for k, v in QUICK.items() if k != "epochs"}
    rows = [drift(name, epochs, **options) for name in args.variant for epochs in args.epochs]
    header = ["model", "epochs / task", *(f"loss rel. diff at {f:.0%}" for f in FRACTIONS),
              "MSE matrix max rel. diff", "forgetting t0, vmapped", "forgetting t0, alone"]
    print(f"device: {jax.devices()[0].device_kind}; seed 0 in --seeds 0 1 against seed 0 alone\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
