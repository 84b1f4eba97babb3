"""Compression of channel-wise generation (the study's Table 3), computed from the models.

For the hypernetwork that generates the whole slim ResNet-18 (HN-F, the largest target) and for
each lookup dimension d: the parameters of the generated heads with channel-wise generation,
against a direct linear head ``h * prod(shape)`` per leaf, and their ratio.

    python -m experiments.compression
    python -m experiments.compression --quick
"""

from __future__ import annotations

import dataclasses
import sys

import jax.numpy as jnp

from experiments.common import finish_tables, markdown_table, module_main
from jaxcl.hypernet import Hypernetwork, HypernetConfig, compression_table
from jaxcl.models import split_resnet18
from jaxcl.results import check_out

NAME = "compression"


@dataclasses.dataclass(frozen=True)
class Config:
    nf: int = 20
    k: int = 0
    num_classes: int = 5
    chunk_dims: tuple[int, ...] = (4, 8, 16, 32, 64)

    def __post_init__(self):
        split_resnet18(self.k, self.num_classes, nf=self.nf)  # validates k and nf
        if any(d < 1 for d in self.chunk_dims):
            raise ValueError(f"chunk_dims must be positive, got {self.chunk_dims}")


QUICK = {"nf": 4}


def run(config: Config, out=None) -> dict:
    if out is not None:
        check_out(out)
    split = split_resnet18(config.k, config.num_classes, nf=config.nf)
    x = jnp.zeros((2, 32, 32, 3))
    if split.stateful is not None:
        import jax
        x = jax.eval_shape(lambda: split.stateful.apply(
            split.stateful.init(jax.random.key(0), x), x))
    hnet = Hypernetwork.for_target(split.stateless, x, config=HypernetConfig(num_tasks=20))
    rows = compression_table(hnet, config.chunk_dims)
    keys = list(rows[0])
    table = markdown_table(keys, [[r[k] for k in keys] for r in rows])
    title = f"{NAME}: ResNet-{config.k} (nf={config.nf}), generated heads"
    metrics = {"schema": "jaxcl.compression/1", "experiment": NAME,
               "config": dataclasses.asdict(config), "rows": rows}
    return finish_tables(out, config=config, title=title, table=table, metrics=metrics)


main = module_main(NAME, Config, QUICK, run, __doc__)

if __name__ == "__main__":
    main(sys.argv[1:])
