"""Partial hypernetwork (HN-k) on a synthetic task-incremental stream: no regulariser vs look-ahead.

The same stream, initialisation and class order are trained three times: without the output
regulariser (``lambda = 0``), and with it through first- and second-order look-ahead gradients.
Prints the accuracy matrices and, last, a table of ACA, forgetting, learning accuracy and time;
writes ``config.json``, ``metrics.json`` and ``summary.md`` to ``--out``. No download.

    python -m experiments.partial_hnet_demo            # ResNet-k, k = 3, 16x16 images
    python -m experiments.partial_hnet_demo --quick    # MLP target, seconds

``metrics.json``: ``{"config": {...}, "variants": {name: {"aca", "learning_accuracy",
"forgetting", "bwt", "accuracy_matrix", "time_s", "compile_s", "mean_cosine"}}}``, fractions in
[0, 1], ``accuracy_matrix[i][j]`` the accuracy on task ``j`` after training task ``i``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import check_out, default_out, markdown_table, parse_config, write_results
from jaxcl import metrics
from jaxcl.hypernet import HypernetConfig
from jaxcl.models import MLP, split_resnet18
from jaxcl.partial_hypernet import Batch, PartialHypernet
from jaxcl.regularizers import previous_tasks
from jaxcl.streams import synthetic_image_stream
from jaxcl.training import scan_minibatches

MODELS = ("resnet", "mlp")


@dataclasses.dataclass(frozen=True)
class Config:
    """The demo's settings (every one a ``--flag``)."""

    seed: int = 0
    model: str = "resnet"  # "resnet" (slim ResNet-18 split at k) or "mlp"
    k: int = 3  # freeze depth of the ResNet
    nf: int = 8  # ResNet width (the study: 20)
    num_tasks: int = 5
    classes_per_task: int = 2
    image_size: int = 16
    train_per_class: int = 100
    test_per_class: int = 50
    noise: float = 2.0
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    coef: float = 0.5
    max_prev_tasks: int = 20

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r} is not one of {MODELS}")
        if self.batch_size > self.classes_per_task * self.train_per_class:
            raise ValueError(f"batch_size={self.batch_size} exceeds the "
                             f"{self.classes_per_task * self.train_per_class} examples of a task")


QUICK = {"model": "mlp", "image_size": 8, "train_per_class": 40, "test_per_class": 20,
         "epochs": 3, "num_tasks": 3}
VARIANTS = {"no_regularizer": (1, 0.0), "lookahead_order1": (1, None), "lookahead_order2": (2, None)}


def _learner(config: Config, order: int, coef: float, sample_x: jax.Array) -> PartialHypernet:
    hnet_config = HypernetConfig(num_tasks=config.num_tasks)
    if config.model == "mlp":
        stateless, stateful = MLP(config.classes_per_task, (64,)), None
    else:
        split = split_resnet18(config.k, config.classes_per_task, nf=config.nf)
        stateless, stateful = split.stateless, split.stateful
    return PartialHypernet.build(stateless, stateful, sample_x, hnet_config=hnet_config,
                                 learning_rate=config.learning_rate, order=order, coef=coef)


def train_variant(config: Config, stream, order: int, coef: float) -> dict:
    """Train one variant over the stream; return its metrics."""
    key = jax.random.key(config.seed)
    learner = _learner(config, order, coef, stream[0].x_train[: config.batch_size])

    @functools.partial(jax.jit, static_argnames="train_stateful")
    def fit(state, data, task_id, key, train_stateful):
        def step(state, batch, k):
            ids, mask = previous_tasks(task_id, config.num_tasks, config.max_prev_tasks, k)
            return learner.step(state, batch, task_id, ids, mask, train_stateful=train_stateful)
        return scan_minibatches(step, state, data, key, epochs=config.epochs,
                                batch_size=config.batch_size)

    @jax.jit
    def evaluate(state, x_test, y_test):
        def accuracy(x, y, t):
            logits = learner.logits(state.hparams, state.stateful, x, t)
            return jnp.mean(jnp.argmax(logits, -1) == y)
        return jax.vmap(accuracy)(x_test, y_test, jnp.arange(x_test.shape[0]))

    x_test = jnp.stack([e.x_test for e in stream])
    y_test = jnp.stack([e.y_test for e in stream])
    init_key, key = jax.random.split(key)
    state = learner.init(init_key, stream[0].x_train[: config.batch_size])

    start = time.perf_counter()
    data0 = Batch(stream[0].x_train, stream[0].y_train)
    compiled = {first: fit.lower(state, data0, jnp.int32(0), key, train_stateful=first).compile()
                for first in (True, False)}
    compiled_eval = evaluate.lower(state, x_test, y_test).compile()
    compile_s = time.perf_counter() - start

    rows, cosines, start = [], [], time.perf_counter()
    for exp in stream:
        key, k_begin, k_fit = jax.random.split(key, 3)
        first = exp.task_id == 0
        state = learner.begin_experience(state, exp.task_id, k_begin)
        state, step_metrics = compiled[first](
            state, Batch(exp.x_train, exp.y_train), jnp.int32(exp.task_id), k_fit
        )
        state = learner.end_experience(state)
        rows.append(np.asarray(compiled_eval(state, x_test, y_test)))
        if not first:
            cosines.append(float(jnp.mean(step_metrics["cosine"])))
        seen = " ".join(f"{a:.3f}" for a in rows[-1][: exp.task_id + 1])
        print(f"  task {exp.task_id}: loss {float(step_metrics['loss'][-1]):.3f}, "
              f"accuracy on tasks 0..{exp.task_id}: {seen}", flush=True)
    elapsed = time.perf_counter() - start
    matrix = np.stack(rows)
    return {**metrics.summary(matrix), "accuracy_matrix": matrix.tolist(), "time_s": elapsed,
            "compile_s": compile_s, "mean_cosine": float(np.mean(cosines)) if cosines else 0.0}


def run(config: Config, out=None) -> dict:
    """Run every variant; write the results folder if ``out`` is given; return the metrics."""
    if out is not None:
        check_out(out)
    stream = synthetic_image_stream(
        jax.random.key(config.seed + 1), num_tasks=config.num_tasks,
        classes_per_task=config.classes_per_task, train_per_class=config.train_per_class,
        test_per_class=config.test_per_class, noise=config.noise,
        image_shape=(config.image_size, config.image_size, 3),
    )
    results = {}
    for name, (order, coef) in VARIANTS.items():
        print(f"{name}:", flush=True)
        results[name] = train_variant(config, stream, order, config.coef if coef is None else coef)

    header = ["variant", "ACA", "forgetting", "learning acc.", "BWT", "train s", "compile s"]
    rows = [[name, r["aca"], r["forgetting"], r["learning_accuracy"], r["bwt"],
             f"{r['time_s']:.1f}", f"{r['compile_s']:.1f}"] for name, r in results.items()]
    table = markdown_table(header, rows)
    model = f"ResNet-{config.k} (nf={config.nf})" if config.model == "resnet" else "MLP"
    title = (f"HN on a synthetic stream: {config.num_tasks} tasks x {config.classes_per_task} "
             f"classes, {model}, {config.epochs} epochs, seed {config.seed}")
    for name, r in results.items():
        print(f"\n{name} accuracy matrix (row i: after task i):")
        print(np.array2string(np.asarray(r["accuracy_matrix"]), precision=3))
    print(f"\n{title}\n{table}")
    output = {"config": dataclasses.asdict(config), "variants": results}
    if out is not None:
        write_results(out, {"config.json": dataclasses.asdict(config), "metrics.json": output,
                            "summary.md": f"# {title}\n\n{table}\n"})
        print(f"\nresults: {out}")
    return output


def main(argv: list[str] | None = None) -> dict:
    config, out = parse_config(Config, argv, description=__doc__.splitlines()[0], quick=QUICK)
    return run(config, out if out is not None else default_out("partial_hnet_demo"))


if __name__ == "__main__":
    main(sys.argv[1:])
