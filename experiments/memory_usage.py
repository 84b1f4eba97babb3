"""Memory kept against forgetting (the study's Table 6): HN-k's frozen hypernetwork vs LR-k's buffer.

Computed from the models' shapes (``jax.eval_shape``), no training: for each freeze depth k, the
bytes of the hypernetwork copy ``H*`` that HN-k keeps for its regulariser, and the bytes of LR-k's
latent buffer (capacity x feature size), 32-bit, on Split-CIFAR100 (200 entries, 20 x 5 classes,
32x32) and Split-TinyImageNet (400 entries, 20 x 10 classes, 64x64).

    python -m experiments.memory_usage
    python -m experiments.memory_usage --quick
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp

from experiments.common import finish_tables, markdown_table, module_main
from jaxcl.results import check_out
from jaxcl.strategies import StrategyConfig, build_strategy

NAME = "memory_usage"
SETTINGS = {"split_cifar100": (200, 20, 5, 32), "split_tinyimagenet": (400, 20, 10, 64)}


@dataclasses.dataclass(frozen=True)
class Config:
    nf: int = 20
    depths: tuple[int, ...] = (1, 2, 3, 4)
    benchmarks: tuple[str, ...] = ("split_cifar100", "split_tinyimagenet")

    def __post_init__(self):
        for b in self.benchmarks:
            if b not in SETTINGS:
                raise ValueError(f"benchmark {b!r} is not one of {tuple(SETTINGS)}")
        for k in self.depths:
            StrategyConfig("latent_replay", k=k)  # validates k


QUICK = {"nf": 4, "depths": (1, 4), "benchmarks": ("split_cifar100",)}


def memory_bytes(label: str, k: int, nf: int, memory: int, tasks: int, classes: int, size: int):
    config = StrategyConfig.from_label(label.replace("k", str(k)), nf=nf, memory_size=memory)
    x = jnp.zeros((2, size, size, 3))
    strategy = build_strategy(config, num_tasks=tasks, classes_per_task=classes, sample_x=x)
    state = jax.eval_shape(strategy.init, jax.random.key(0), x)
    return strategy.memory_bytes(state)


def run(config: Config, out=None) -> dict:
    if out is not None:
        check_out(out)
    rows, data = [], {}
    for bench in config.benchmarks:
        memory, tasks, classes, size = SETTINGS[bench]
        for k in config.depths:
            hn = memory_bytes("HN-k", k, config.nf, memory, tasks, classes, size)
            lr = memory_bytes("LR-k", k, config.nf, memory, tasks, classes, size)
            data[f"{bench}/k={k}"] = {"hn_bytes": hn, "lr_bytes": lr}
            rows.append([bench, k, f"{hn / 2**20:.2f}", f"{lr / 2**20:.2f}", f"{lr / hn:.2f}"])
    table = markdown_table(["benchmark", "k", "HN-k: H* (MiB)", "LR-k: buffer (MiB)",
                            "LR / HN"], rows)
    title = f"{NAME}: bytes kept against forgetting, 32-bit, nf={config.nf}"
    metrics = {"schema": "jaxcl.memory/1", "experiment": NAME,
               "config": dataclasses.asdict(config), "memory": data}
    return finish_tables(out, config=config, title=title, table=table, metrics=metrics)


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    main(sys.argv[1:])
