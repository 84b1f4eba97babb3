"""Time an epoch through the engine's two loops against the bare jitted step.

On XLA CPU a convolution's gradient inside any XLA while loop is 20-45x slower than outside one
(jax-ml/jax issue 12868), so the engine's ``steps_in="auto"`` runs an epoch as a Python loop over
one compiled step on CPU and as one compiled ``lax.scan`` elsewhere (:mod:`jaxcl.train.steps`). For
Naive, LR-2 and HN-2 (slim ResNet-18 at nf = 20, batch 64, synthetic 32x32x3 images, 5 classes per
experience), one epoch of the first experience and of the second, three ways, one after another
in every round so that a slow spell of the shared machine falls on all alike:

* ``python``: the engine's Python loop over its compiled step (:class:`jaxcl.train.steps.PythonLoop`,
  with its per-epoch minibatch plan, the gather inside the step, the metrics stacked at the end);
* ``scan``: the engine's compiled scan (:class:`jaxcl.train.steps.ScanLoop`);
* ``bare``: ``strategy.train_step`` jitted by itself, called in a Python loop on the same
  minibatches (gathered beforehand) with the same keys.

Median milliseconds per step over ``--repeats`` epochs, after a first epoch of each (which
compiles the loops' programs) and ``--warmup`` more, and the ratios to bare; compile time
apart. The scan, 10-25x slower than the others on CPU, takes part in the first
``--scan-repeats`` rounds only; with 0 (the default) its time is that of its first epoch less
its compile seconds.

    python benchmarks/engine_loop.py                 # the table in docs/devnotes/performance.md (about 8 min on 2 cores)
    python benchmarks/engine_loop.py --quick         # tiny sizes, a smoke run

The last line is ``max python/bare ratio: X``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp

from jaxcl.data import load_benchmark
from jaxcl.learners import StrategyConfig, build_strategy
from jaxcl.train.programs import learner_steps
from jaxcl.train.steps import LOOPS, minibatch_plan, take_minibatch
from jaxcl.types import Batch

MODES = ("python", "scan", "bare")


def _seed_axis(tree):
    return jax.tree.map(lambda a: a[None], tree)


def time_epochs(strategy, state, exp, *, first: bool, args) -> dict[str, tuple[float, float]]:
    """``{mode: (median seconds per step, compile seconds)}`` of epochs of ``exp`` from ``state``
    (one seed, no seed axis), and the state the bare loop ended with."""
    data, task, key = Batch(exp.x_train, exp.y_train), jnp.int32(exp.task_id), jax.random.key(1)
    indices, keys = minibatch_plan(key, data.x.shape[0], args.batch_size)
    batches = [take_minibatch(data, idx) for idx in indices]
    steps = len(batches)

    start = time.perf_counter()
    bare = jax.jit(functools.partial(strategy.train_step, first=first)).lower(
        state, batches[0], task, keys[0]).compile()
    compile_s = {"bare": time.perf_counter() - start}
    loops = {mode: LOOPS[mode](learner_steps(strategy), batch_size=args.batch_size, seeds=1,
                               static_argnames=["first"]) for mode in ("python", "scan")}

    def bare_epoch(s):
        metrics = []
        for batch, k in zip(batches, keys, strict=True):
            s, m = bare(s, batch, task, k)
            metrics.append(m)
        return s, jax.tree.map(lambda *m: jnp.stack(m), *metrics)

    run = {"bare": bare_epoch}
    for mode, loop in loops.items():
        run[mode] = functools.partial(loop, "train", data=_seed_axis(data), task_id=task,
                                      keys=key[None, None], first=first)
    states = {mode: state if mode == "bare" else _seed_axis(state) for mode in MODES}
    times = {mode: [] for mode in MODES}
    for mode in MODES:  # compiles the loops; the bare step is compiled: a first epoch
        start = time.perf_counter()
        states[mode] = jax.block_until_ready(run[mode](states[mode])[0])
        first_s = time.perf_counter() - start
        if mode in loops:
            compile_s[mode] = sum(p.compile_s for p in loops[mode].programs)
        if mode == "scan" and args.scan_repeats == 0:
            times[mode].append((first_s - compile_s[mode]) / steps)
    for i in range(args.warmup + args.repeats):
        for mode in MODES:
            if mode == "scan" and not args.warmup <= i < args.warmup + args.scan_repeats:
                continue
            start = time.perf_counter()
            states[mode], metrics = run[mode](states[mode])
            jax.block_until_ready((states[mode], metrics))
            if i >= args.warmup:
                times[mode].append((time.perf_counter() - start) / steps)
    return {m: (statistics.median(times[m]), compile_s[m]) for m in MODES}, states["bare"]


def main(argv=None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="+", default=["Naive", "LR-2", "HN-2"])
    parser.add_argument("--nf", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-per-class", type=int, default=64,
                        help="5 classes: 5 * this / batch size steps per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--scan-repeats", type=int, default=0,
                        help="rounds the scan takes part in (0: its first epoch, see above)")
    parser.add_argument("--quick", action="store_true",
                        help="nf 4, 8x8 images, batch 8, 2 steps per epoch, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.nf, args.image_size, args.train_per_class, args.batch_size = 4, 8, 4, 8
        args.repeats = 1
    steps = 5 * args.train_per_class // args.batch_size
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}; slim ResNet-18 nf "
          f"{args.nf}, batch {args.batch_size} x {args.image_size}x{args.image_size}x3, "
          f"{steps} steps per epoch, median of {args.repeats} (scan: "
          f"{args.scan_repeats or 'its first epoch less compile time'})", flush=True)
    print("| strategy | experience | python ms/step | scan ms/step | bare ms/step | python/bare "
          "| scan/bare | compile s (python, scan, bare) |\n|---|---|---|---|---|---|---|---|",
          flush=True)
    ratios = []
    for label in args.labels:
        stream = load_benchmark("synthetic", seed=0, num_tasks=2, classes_per_task=5,
                                image_size=args.image_size, train_per_class=args.train_per_class,
                                test_per_class=4)
        config = StrategyConfig.from_label(label, model="resnet", nf=args.nf,
                                           batch_size=args.batch_size)
        strategy = build_strategy(config, num_tasks=2, classes_per_task=5,
                                  sample_x=stream[0].x_train[:args.batch_size])
        key = jax.random.key(0)
        state = jax.jit(strategy.init)(key, stream[0].x_train[:args.batch_size])
        for i, exp in enumerate(stream):
            state = jax.jit(strategy.begin_experience)(state, jnp.int32(exp.task_id), key)
            result, state = time_epochs(strategy, state, exp, first=(i == 0), args=args)
            (python, cp), (scan, cs), (bare, cb) = (result[m] for m in MODES)
            ratios.append(python / bare)
            print(f"| {label} | {i + 1} | {1e3 * python:.0f} | {1e3 * scan:.0f} | "
                  f"{1e3 * bare:.0f} | {python / bare:.2f} | {scan / bare:.1f} | "
                  f"{cp:.0f}, {cs:.0f}, {cb:.0f} |", flush=True)
            state = jax.jit(strategy.end_experience)(
                state, Batch(exp.x_train, exp.y_train), jnp.int32(exp.task_id), key)
    print(f"max python/bare ratio: {max(ratios):.2f}")
    return ratios


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(total {time.perf_counter() - start:.0f} s)")
