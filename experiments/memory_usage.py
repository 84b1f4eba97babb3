"""Memory kept against forgetting (the study's Table 6): LR-k's buffer and HN-k's hypernetwork.

Computed from the models' shapes (``jax.eval_shape``), no training, 32-bit, MiB = 2**20 bytes,
each beside the paper's, in the paper's two tables:

* LR-k: the exemplar shape C x H x W of one buffer entry (the features ``g_phi(x)`` at depth k;
  LR-0 is the raw image, a buffer of images jaxcl does not train, computed from the image shape)
  and the buffer's memory, on Split-CIFAR100 (200 entries, 20 x 5 classes, 32x32) and
  Split-TinyImageNet (400 entries, 20 x 10 classes, 64x64).
* HN-k (HN-F for k = 0): the parameters of the hypernetwork copy ``H*`` that HN-k keeps for its
  regulariser, and their memory. The paper prints one table for both benchmarks; its counts are
  those of ``hn_tasks`` = 20 task embeddings, an ``hn_classes`` = 100-way classifier and lookup
  dimension ``chunk_dim`` = 32, the defaults here.

``metrics.json``'s ``memory`` holds, for each benchmark and depth, ``lr_bytes`` and the exemplar
shape, and the (benchmark-independent) ``hn_params`` and ``hn_bytes``.

    python -m experiments.memory_usage
    python -m experiments.memory_usage --quick     # nf 4: not the paper's setting
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp

from experiments import paper
from experiments.runner import finish_tables, markdown_table, module_main
from jaxcl.config import check_distinct, setting
from jaxcl.core.hypernet import count_params
from jaxcl.learners import StrategyConfig, build_strategy
from jaxcl.models import FREEZE_DEPTHS

NAME = "memory_usage"
SETTINGS = {"split_cifar100": (200, 20, 5, 32), "split_tinyimagenet": (400, 20, 10, 64)}
"""Per benchmark: buffer entries, experiences, classes per experience, image size."""
TITLES = {"split_cifar100": "CIFAR-100", "split_tinyimagenet": "TinyImageNet"}
PAPER_SETTING = {"nf": 20, "hn_tasks": 20, "hn_classes": 100, "chunk_dim": 32}
MIB = 2**20


@dataclasses.dataclass(frozen=True)
class Config:
    nf: int = setting(20, "the ResNet's width (filters of its first stage), >= 1")
    depths: tuple[int, ...] = setting((0, 1, 2, 3, 4), "freeze depths k, each 0..4",
                                      distinct=True)
    benchmarks: tuple[str, ...] = setting(("split_cifar100", "split_tinyimagenet"),
                                          "benchmarks whose buffers are counted: "
                                          "split_cifar100, split_tinyimagenet", distinct=True)
    hn_tasks: int = setting(20, "HN-k's task embeddings, >= 1")
    hn_classes: int = setting(100, "HN-k's classifier outputs, >= 1")
    chunk_dim: int = setting(32, "d, the hypernetwork's lookup dimension per output channel, "
                             ">= 1")

    def __post_init__(self):
        check_distinct(self)
        for b in self.benchmarks:
            if b not in SETTINGS:
                raise ValueError(f"benchmark {b!r} is not one of {tuple(SETTINGS)}")
        for k in self.depths:
            if k not in FREEZE_DEPTHS:
                raise ValueError(f"freeze depth k={k!r} is not one of {FREEZE_DEPTHS}")
        StrategyConfig(strategy="hypernetwork", k=0, nf=self.nf, chunk_dim=self.chunk_dim)
        for name in ("hn_tasks", "hn_classes"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")


QUICK = {"nf": 4, "depths": (1, 4), "benchmarks": ("split_cifar100",)}


def latent_replay(k: int, nf: int, bench: str) -> tuple[tuple[int, int, int], int]:
    """LR-k's exemplar shape ``(C, H, W)`` and buffer bytes on ``bench`` (LR-0: raw images)."""
    memory, tasks, classes, size = SETTINGS[bench]
    if k == 0:
        return (3, size, size), 4 * memory * 3 * size * size
    config = StrategyConfig(strategy="latent_replay", k=k, nf=nf, memory_size=memory)
    x = jnp.zeros((2, size, size, 3))
    strategy = build_strategy(config, num_tasks=tasks, classes_per_task=classes, sample_x=x)
    state = jax.eval_shape(strategy.init, jax.random.key(0), x)
    _, h, w, c = state.buffer.features.shape
    return (c, h, w), strategy.memory_bytes(state)


def hypernetwork(strategy_config: StrategyConfig, config: Config) -> tuple[int, int]:
    """HN-k's frozen hypernetwork ``H*`` (``psi_prev``): parameters and bytes, with ``config``'s
    HN shape."""
    x = jnp.zeros((2, 32, 32, 3))
    strategy = build_strategy(strategy_config, num_tasks=config.hn_tasks,
                              classes_per_task=config.hn_classes, sample_x=x)
    state = jax.eval_shape(strategy.init, jax.random.key(0), x)
    return count_params(state.psi_prev), strategy.memory_bytes(state)


def shape_text(shape) -> str:
    return " × ".join(map(str, shape))


def run(config: Config, out=None) -> dict:
    lr = {(b, k): latent_replay(k, config.nf, b) for b in config.benchmarks for k in config.depths}
    hn_configs = {k: StrategyConfig(strategy="hypernetwork", k=k, nf=config.nf,
                                    chunk_dim=config.chunk_dim) for k in config.depths}
    hn = {k: hypernetwork(c, config) for k, c in hn_configs.items()}
    label = {k: c.label for k, c in hn_configs.items()}  # HN-k, HN-F for k = 0
    lr_rows = []
    for k in config.depths:
        row = [f"LR-{k}"]
        for b in config.benchmarks:
            (shape, size), theirs = lr[b, k], paper.TABLE6_LR[b].get(f"LR-{k}") or {}
            row += [shape_text(shape), shape_text(theirs["exemplar"]) if theirs else "—",
                    f"{size / MIB:.2f}", paper.paper_cell(theirs.get("mib"), 2)]
        lr_rows.append(row)
    lr_header = ["model"]
    for b in config.benchmarks:
        lr_header += [f"{TITLES[b]} exemplar", "paper", f"{TITLES[b]} memory (MiB)", "paper"]
    hn_rows = [[label[k], f"{hn[k][0]:,}", *paper.cells(paper.TABLE6_HN.get(label[k]), ("params",)),
                f"{hn[k][1] / MIB:.2f}", *paper.cells(paper.TABLE6_HN.get(label[k]), ("mib",), 2)]
               for k in config.depths]
    table = "\n\n".join([
        "paper columns: Hemati et al. (2023), Table 6",
        markdown_table(lr_header, lr_rows),
        markdown_table(["model", "hypernetwork parameters", "paper", "memory (MiB)", "paper"],
                       hn_rows),
        f"LR: {', '.join(f'{TITLES[b]} {SETTINGS[b][0]} entries' for b in config.benchmarks)}; "
        f"HN: {config.hn_tasks} task embeddings, {config.hn_classes}-way classifier, "
        f"d = {config.chunk_dim}; " + paper.differences(config, PAPER_SETTING)])
    title = f"{NAME}: memory kept against forgetting, 32-bit, nf={config.nf}"
    data = {f"{b}/k={k}": {"exemplar_shape": list(lr[b, k][0]), "lr_bytes": lr[b, k][1],
                           "hn_params": hn[k][0], "hn_bytes": hn[k][1]}
            for b in config.benchmarks for k in config.depths}
    published = {"source": "Hemati et al. (2023), Table 6", "setting": PAPER_SETTING,
                 "lr": {b: paper.paper_rows(paper.TABLE6_LR[b],
                                            {f"LR-{k}": f"LR-{k}" for k in config.depths})
                        for b in config.benchmarks},
                 "hn": paper.paper_rows(paper.TABLE6_HN,
                                        {label[k]: label[k] for k in config.depths})}
    metrics = {"schema": "jaxcl.memory/2", "experiment": NAME,
               "config": dataclasses.asdict(config), "memory": data}
    return finish_tables(out, experiment=NAME, config=config, title=title, table=table, metrics=metrics,
                         paper=published)


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
