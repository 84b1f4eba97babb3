"""Latent replay vs partial hypernetwork on the noisy stream (the study's Table 1, Figures 5-8).

Four experiences: clean, solarize, Gaussian blur, autocontrast + grayscale + blur
(:mod:`jaxcl.data.transforms`), and the normal stream beside it: the same classes and images
uncorrupted (``--streams``). LR-k and HN-k share the frozen depth k (``--k``, one or several);
LR-k is trained once per replay coefficient c (``--replay-coefs``). The table gives the learning
accuracy of every experience on each stream and the final ACA and forgetting. Beside ours, the
paper's learning accuracy per experience (Table 1, 20 CIFAR-100 classes, 4 x 5, mean ± std over
3 runs; rows for k = 2, 3, 4) when the benchmark is ``noisy_cifar``. A line under the table names
where our setting differs from the paper's. ``samples.png`` shows the first training images of
each experience (Figure 5); ``filters.png`` the first generated convolution of HN-k for
experiences 2 and 3 (Figure 6, on the ResNet); ``first_experience.png``, ``aca_by_depth.png``
and ``forgetting_by_depth.png`` Figure 7; ``accuracy_over_stream.png`` Figure 8.

    python -m experiments.noisy_stream --k 3
    python -m experiments.noisy_stream --benchmark noisy_fashion_mnist --manual-dir /usr/share/datasets/fashion-mnist
    python -m experiments.noisy_stream --benchmark noisy_cifar --data-dir ~/tensorflow_datasets
    python -m experiments.noisy_stream --quick
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Sequence

import jax
import numpy as np

from experiments import paper
from experiments.runner import (finish, load_streams, markdown_table, module_main,
                                run_strategies, strategy_for)
from experiments.settings import QUICK_SETTINGS, DataSettings, StrategyRun
from jaxcl.config import replace, section, setting
from jaxcl.data.transforms import NOISE_NAMES
from jaxcl.io import plots
from jaxcl.io.records import mean_std
from jaxcl.types import Experience

NAME = "noisy_stream"
PAPER_SETTING = {"benchmark": "noisy_cifar", "classes_per_task": 5, "memory_size": 200,
                 **paper.TRAINING, "seeds": 3}
NOISY = ("noisy_cifar", "noisy_fashion_mnist", "synthetic_noisy")
"""The benchmarks this module trains: the noisy streams, each with its clean twin."""


@dataclasses.dataclass(frozen=True)
class Config(StrategyRun):
    SET_BY_MODULE: typing.ClassVar[dict[str, str]] = {
        "clean": "this module trains each stream of --streams",
        "replay_coef": "each LR-k takes its c from --replay-coefs"}

    data: DataSettings = section(DataSettings, benchmark="synthetic_noisy")
    k: tuple[int, ...] = setting((3,), "freeze depths of LR-k and HN-k, each 1..4",
                                 effect="selection", distinct=True)
    streams: tuple[str, ...] = setting(
        paper.STREAMS, "Table 1's streams, normal and/or noisy: normal is the noisy stream's "
        "classes and images uncorrupted", effect="selection", distinct=True)
    replay_coefs: tuple[float, ...] = setting(
        (1.0,), "LR-k's replay coefficient c, one LR-k per value (the paper's c = 1; its Figure "
        "8 sets c = 0 beside it)", effect="selection", distinct=True)

    def __post_init__(self):
        if self.data.benchmark not in NOISY:
            raise ValueError(f"benchmark={self.data.benchmark!r}: this module trains a noisy "
                             f"stream, one of {NOISY}")
        bad = [s for s in self.streams if s not in paper.STREAMS]
        if bad or not self.streams:
            raise ValueError(f"streams {list(self.streams)}: each must be one of {paper.STREAMS}")
        if not self.replay_coefs or any(c < 0 for c in self.replay_coefs):
            raise ValueError(f"replay_coefs {list(self.replay_coefs)}: one or more c >= 0")
        super().__post_init__()

    def labels(self):
        return tuple(f"{kind}-{k}" for k in self.k for kind in ("LR", "HN"))

    def runs(self) -> dict[str, tuple[str, dict]]:
        """Each trained strategy: its row label -> (strategy label, overrides): LR-k once per
        replay coefficient (named by c when there are several), HN-k once."""
        out = {}
        for k in self.k:
            for c in self.replay_coefs:
                name = f"LR-{k}" if len(self.replay_coefs) == 1 else f"LR-{k} c={c:g}"
                out[name] = (f"LR-{k}", {"replay_coef": c})
            out[f"HN-{k}"] = (f"HN-{k}", {})
        return out


QUICK = {**QUICK_SETTINGS, "num_tasks": 0, "k": (1,)}


def run(config: Config, out=None) -> dict:
    records, steps, streams, results, strategies = {}, {}, {}, {}, {}
    for stream in config.streams:  # Table 1's rows: the same classes, clean and noisy
        this = replace(config, clean=stream == "normal")
        streams[stream] = load_streams(this)
        these = {f"{name} {stream}": strategy_for(this, label, **overrides)
                 for name, (label, overrides) in config.runs().items()}
        r, s = run_strategies(this, these, out, streams=streams[stream], results=results)
        records.update(r)
        steps.update(s)
        strategies.update(these)
    n = len(next(iter(records.values()))["accuracy_matrix"])
    names = [NOISE_NAMES[j] if j < len(NOISE_NAMES) else "" for j in range(n)]
    header = ["strategy", "stream", *[h for j in range(n) for h in (
        f"LA exp {j + 1}: {names[j]} (%)", "paper")], "ACA (%)", "forgetting (%)"]
    published = paper.BENCHMARKS.get(config.data.benchmark) == "noisy_cifar"
    rows = []
    for name, (label, overrides) in config.runs().items():
        as_paper = published and overrides.get("replay_coef", 1.0) == 1.0  # the paper's c
        for stream in config.streams:
            r = records[f"{name} {stream}"]
            theirs = paper.TABLE1.get((label, stream)) if as_paper else None
            theirs = tuple(theirs or ()) + (None,) * n
            rows.append([name, stream, *[cell for j in range(n) for cell in (
                f"{100 * np.diag(r['accuracy_matrix'])[j]:.2f}", paper.paper_cell(theirs[j]))],
                mean_std(r, "aca", 100), mean_std(r, "forgetting", 100)])
    if published:
        source = ("paper columns: Hemati et al. (2023), Table 1, learning accuracy "
                  "(mean ± std over 3 runs; k = 2, 3, 4, c = 1 only)")
        note = f"\n\n{paper.paper_notes(config, PAPER_SETTING)}"
    else:
        source = paper.no_columns("the paper's Table 1", "noisy_cifar", config)
        note = paper.hn_departures(config)
    table = f"{source}\n\n{markdown_table(header, rows)}{note}\n\n{OVER_TIME}"
    first = next(iter(streams.values()))[0]
    return finish(out, NAME, config, records, steps, table,
                  paper={"source": "Hemati et al. (2023), Table 1",
                         "rows_by_stream": {s: paper.paper_rows(
                             paper.TABLE1 if published else {},
                             {name: (label, s) for name, (label, _) in config.runs().items()})
                             for s in paper.STREAMS}},
                  extra_files={"samples.png": samples(config, first),
                               **figures(config, records),
                               **generated_filters(config, strategies, results, streams)})


OVER_TIME = ("Over time: accuracy is measured after each experience (the paper evaluates every "
             "epoch): first_experience.png (the paper's Figure 7, left), "
             "accuracy_over_stream.png (Figure 8 with --k 3 --replay-coefs 0 1), and with "
             "several --k, aca_by_depth.png and forgetting_by_depth.png (Figure 7, right).")


def figures(config: Config, records: dict) -> dict[str, bytes]:
    """The paper's Figure 7: the first experience's accuracy after each experience, a line per
    strategy and stream; with several depths, ACA and forgetting against k."""
    first = {label: np.asarray(r["accuracy_matrix"])[:, 0] for label, r in records.items()}
    n = len(next(iter(first.values())))
    out = {"first_experience.png": plots.lines(
        list(range(n)), first, "after training experience", "accuracy, experience 0",
        f"{NAME}: {config.data.benchmark}, the first experience over the stream")}
    if len(config.k) > 1:
        lr = {k: next(name for name, (label, _) in config.runs().items() if label == f"LR-{k}")
              for k in config.k}  # the first c's LR-k
        for key, what in (("aca", "ACA"), ("forgetting", "forgetting")):
            ys = {f"{kind} {stream}": [records[f"{lr[k] if kind == 'LR' else f'HN-{k}'} "
                                               f"{stream}"][key] for k in config.k]
                  for kind in ("LR", "HN") for stream in config.streams}
            out[f"{key}_by_depth.png"] = plots.lines(
                list(config.k), ys, "freeze depth k", what,
                f"{NAME}: {config.data.benchmark}, {what} against k")
    return out


FILTERS = 16
"""Output channels shown per experience in ``filters.png``."""


def generated_filters(config: Config, strategies: dict, results: dict,
                      streams: dict) -> dict[str, bytes]:
    """The paper's Figure 6: the first generated convolution of the first HN-k (with k = 2, the
    first of block 3) as the hypernetwork generates it, after the whole stream, for experiences 2
    and 3 and their difference, on the noisy stream (the first seed); for each of the first
    :data:`FILTERS` output channels, its 3x3 kernel over the first input channel. Nothing for
    the MLP or a stream of fewer than 3 experiences."""
    from jaxcl.learners import build_strategy

    stream = "noisy" if "noisy" in config.streams else config.streams[0]
    hn = next((f"{name} {stream}" for name, (label, _) in config.runs().items()
               if label.startswith("HN-")), None)
    first = streams[stream][0]
    if hn not in results or config.strategy.model != "resnet" or len(first) < 3:
        return {}
    seed = config.run.seeds[0]
    learner = build_strategy(strategies[hn], num_tasks=len(first),
                             classes_per_task=len(first[0].classes),
                             sample_x=first[0].x_train[:config.strategy.batch_size])
    psi = results[hn][seed].state.psi
    leaves = {t: jax.tree_util.tree_leaves_with_path(learner.hnet.apply(psi, t)) for t in (1, 2)}
    conv = next((i for i, (_, leaf) in enumerate(leaves[1]) if leaf.ndim == 4), None)
    if conv is None:
        return {}
    kernel = {t: np.asarray(leaves[t][conv][1])[:, :, 0, :FILTERS].transpose(2, 0, 1)
              for t in (1, 2)}
    where = jax.tree_util.keystr(leaves[1][conv][0])
    return {"filters.png": plots.filters(
        {"experience 2": kernel[1], "experience 3": kernel[2],
         "difference": kernel[2] - kernel[1]},
        f"{NAME}: {hn}, seed {seed}, generated {where} (input channel 0), after the stream")}


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
