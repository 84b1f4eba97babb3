"""Compression of channel-wise generation (the study's Table 3), computed from the models.

For the hypernetwork that generates the whole slim ResNet-18 (HN-F, ``k = 0``, the largest
target) and each lookup dimension d: the hypernetwork's total parameters (task embeddings, trunk,
every head and per-task table, :func:`jaxcl.core.hypernet.parameter_report`) and the compression level
``1 - params / params at the largest d`` (the paper's d = 64), each beside the paper's. The
defaults are the paper's setting (10 task embeddings, a 10-way classifier, nf 20, trunk
``32 -> 50 -> 32``), where the counts equal the paper's exactly; the paper truncates the level to
a whole percent. An extra column keeps jaxcl's own ratio for the generated (conv and dense) heads
only: a direct linear head's parameters ``h * prod(shape)`` over channel-wise generation's.

    python -m experiments.compression
    python -m experiments.compression --quick     # nf 4: not the paper's setting
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp

from experiments import paper
from experiments.runner import finish_tables, markdown_table, module_main
from jaxcl.config import check_distinct, setting
from jaxcl.core.hypernet import (
    HypernetConfig,
    Hypernetwork,
    compression_table,
    parameter_report,
)
from jaxcl.models import split_model

NAME = "compression"
PAPER_SETTING = {"nf": 20, "k": 0, "num_tasks": 10, "num_classes": 10,
                 "chunk_dims": (4, 8, 16, 32, 64)}
"""The setting of the paper's Table 3 (HN-F, 10 task embeddings, a 10-way classifier)."""


@dataclasses.dataclass(frozen=True)
class Config:
    nf: int = setting(20, "the ResNet's width (filters of its first stage), >= 1")
    k: int = setting(0, "freeze depth: the hypernetwork generates the stages above k, 0..4")
    num_tasks: int = setting(10, "task embeddings, >= 1")
    num_classes: int = setting(10, "the classifier's outputs, >= 1")
    chunk_dims: tuple[int, ...] = setting((4, 8, 16, 32, 64), "lookup dimensions d, one row "
                                          "each, >= 1", distinct=True)

    def __post_init__(self):
        check_distinct(self)
        split_model("resnet", self.k, num_classes=self.num_classes, head=True,
                    nf=self.nf)  # validates k and nf
        HypernetConfig(num_tasks=self.num_tasks)  # validates num_tasks
        if not self.chunk_dims or any(d < 1 for d in self.chunk_dims):
            raise ValueError(f"chunk_dims must be positive, got {self.chunk_dims}")


QUICK = {"nf": 4}


def total_params(hnet: Hypernetwork) -> int:
    """Every parameter of the hypernetwork: embeddings and trunk plus every head."""
    heads, trunk = parameter_report(hnet)
    return trunk + sum(h.params for h in heads)


def run(config: Config, out=None) -> dict:
    split = split_model("resnet", config.k, num_classes=config.num_classes, head=True,
                        nf=config.nf)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    if split.lower is not None:
        x = jax.eval_shape(lambda x: split.lower.apply(
            split.lower.init(jax.random.key(0), x), x), x)
    hnet = Hypernetwork.for_target(split.upper, x,
                                   config=HypernetConfig(num_tasks=config.num_tasks))
    params = {d: total_params(dataclasses.replace(
        hnet, config=dataclasses.replace(hnet.config, chunk_dim=d))) for d in config.chunk_dims}
    reference = max(config.chunk_dims)
    heads = {row["chunk_dim"]: row for row in compression_table(hnet, config.chunk_dims)}
    rows = [{"chunk_dim": d, "params": params[d],
             "compression_level": 1 - params[d] / params[reference],
             "head_params": heads[d]["params"], "direct_head_params": heads[d]["direct_params"],
             "compression": heads[d]["compression"]} for d in config.chunk_dims]
    published = paper.paper_rows(paper.TABLE3, {str(d): d for d in config.chunk_dims})
    cells = []
    for r in rows:
        theirs = published[str(r["chunk_dim"])] or {}
        cells.append([r["chunk_dim"], f"{r['params']:,}", paper.paper_cell(theirs.get("params")),
                      f"{100 * r['compression_level']:.1f}%",
                      paper.paper_cell(theirs.get("compression_pct"), suffix="%"),
                      f"{r['compression']:.2f}"])
    table = markdown_table(["d", "hypernetwork parameters", "paper",
                            f"compression vs d = {reference}", "paper",
                            "generated heads: direct / ours"], cells)
    table = ("paper columns: Hemati et al. (2023), Table 3 (HN-F; compression truncated to a "
             f"whole percent)\n\n{table}\n\n{paper.differences(config, PAPER_SETTING)}")
    title = f"{NAME}: ResNet-{config.k} (nf={config.nf}), hypernetwork parameters against d"
    metrics = {"schema": "jaxcl.compression/2", "experiment": NAME,
               "config": dataclasses.asdict(config), "rows": rows}
    return finish_tables(out, experiment=NAME, config=config, title=title, table=table, metrics=metrics,
                         paper={"source": "Hemati et al. (2023), Table 3",
                                "setting": PAPER_SETTING, "rows": published})


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
