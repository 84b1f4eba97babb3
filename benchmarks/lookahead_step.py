"""Time the compiled partial-hypernetwork step for every freeze depth k and look-ahead order.

A later-experience step (phi frozen, look-ahead gradient for psi, 20 previous-task slots of which
5 are real) on a batch of 64 images of 32x32x3 and 5 classes, slim ResNet-18 with nf = 20.
Median wall time of ``--repeats`` calls after ``--warmup`` calls, the two orders alternating
call by call; compile time reported apart.

    python benchmarks/lookahead_step.py            # the table in the README
    python benchmarks/lookahead_step.py --quick    # tiny sizes, a smoke run

The last line is ``max order2/order1 ratio: X``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from jaxcl import Batch, HypernetConfig, PartialHypernet
from jaxcl.models import split_model


def compile_step(k: int, order: int, *, batch: int, size: int, nf: int):
    """``(compile seconds, compiled step, state)`` of one later-experience step."""
    split = split_model("resnet", k, num_classes=5, head=True, nf=nf)
    key = jax.random.key(0)
    x = jax.random.normal(key, (batch, size, size, 3))
    data = Batch(x, jax.random.randint(key, (batch,), 0, 5))
    learner = PartialHypernet.build(split.upper, split.lower, x, order=order, max_prev_tasks=20,
                                    hnet_config=HypernetConfig(num_tasks=20))
    task = jnp.int32(5)
    state = learner.end_experience(learner.init(key, x), data, task, key)
    step = jax.jit(lambda s: learner.train_step(s, data, task, key, first=False))
    start = time.perf_counter()
    compiled = step.lower(state).compile()
    return time.perf_counter() - start, compiled, state


def time_orders(k: int, *, warmup: int, repeats: int, **sizes):
    """Compile times and median seconds per step of order 1 and order 2.

    The two orders run alternately, call after call, so that a slow spell of the machine falls on
    both alike and their ratio stays meaningful on a shared CPU.
    """
    programs = [compile_step(k, order, **sizes) for order in (1, 2)]
    states = [state for _, _, state in programs]
    times = [[], []]
    for i in range(warmup + repeats):
        for o, (_, compiled, _) in enumerate(programs):
            start = time.perf_counter()
            states[o], metrics = compiled(states[o])
            jax.block_until_ready(metrics)
            if i >= warmup:
                times[o].append(time.perf_counter() - start)
    return [c for c, _, _ in programs], [statistics.median(t) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="nf=4, 8x8 images, batch 8, 2 repeats")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--k", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    sizes = dict(batch=64, size=32, nf=20, warmup=args.warmup, repeats=args.repeats)
    if args.quick:
        sizes = dict(batch=8, size=8, nf=4, warmup=1, repeats=2)
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, jax {jax.__version__}, "
          f"batch {sizes['batch']} x {sizes['size']}x{sizes['size']}x3, nf {sizes['nf']}")
    print("| k | order 1 ms/step | order 2 ms/step | order2/order1 | compile s (o1, o2) |")
    print("|---|---|---|---|---|")
    ratios = []
    for k in args.k:
        (c1, c2), (t1, t2) = time_orders(k, **sizes)
        ratios.append(t2 / t1)
        print(f"| {k} | {1e3 * t1:.1f} | {1e3 * t2:.1f} | {t2 / t1:.2f} | {c1:.1f}, {c2:.1f} |",
              flush=True)
    print(f"max order2/order1 ratio: {max(ratios):.2f}")
    return ratios


if __name__ == "__main__":
    main()
