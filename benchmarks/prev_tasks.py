"""Time the later-experience HN-k step against the number of real previous tasks.

The output regulariser's previous-task set has a fixed size, ``max_prev_tasks = 20`` slots
(:func:`jaxcl.core.regularizers.previous_tasks`), so that one compiled program serves every task.
``prev_chunk=None`` ("every slot") evaluates the hypernetwork on all 20 slots at once every step,
real or padding (the old program); the default, ``prev_chunk=1`` ("real slots"), evaluates it slot
by slot in a loop that skips the padding, the gradient taken in the same pass
(:func:`jaxcl.core.regularizers.output_regularizer_real_slots`).

A later-experience step (``train_step``, ``first=False``) of HN-k on a batch of 64 images of
32x32x3 and 5 classes, slim ResNet-18 with nf = 20, 21 tasks; the task id ``t`` (so ``t`` real
previous tasks) is a traced argument of one jitted step per (k, order, path). Median wall time of
``--repeats`` calls after ``--warmup`` calls; the four programs of a k (two orders, old and new)
run in turn call by call, so that a slow spell of the shared machine falls on all alike. The first
call of each program (its compilation) is reported apart, and the number of programs each jitted
step compiled after every ``t`` (``_cache_size``) shows that one program serves them all.

    python benchmarks/prev_tasks.py            # the table in docs/devnotes/performance.md
    python benchmarks/prev_tasks.py --quick    # tiny sizes, a smoke run of seconds

The last line is ``programs per step: N`` (1: one program per phase, whatever the number of
previous tasks).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from jaxcl import Batch, HypernetConfig, PartialHypernet
from jaxcl.models import split_model

MAX_PREV = 20
PATHS = {"every": None, "real": 1}
"""The ``prev_chunk`` of the two paths compared: every slot at once (the old program), and the
loop over real slots (the default)."""


def later_step(k: int, order: int, chunk: int | None, *, batch: int, size: int, nf: int):
    """``(jitted step(state, task_id, key), state)`` of one later-experience step."""
    split = split_model("resnet", k, num_classes=5, head=True, nf=nf)
    key = jax.random.key(0)
    x = jax.random.normal(key, (batch, size, size, 3))
    data = Batch(x, jax.random.randint(key, (batch,), 0, 5))
    learner = PartialHypernet.build(
        split.upper, split.lower, x, order=order, max_prev_tasks=MAX_PREV, prev_chunk=chunk,
        hnet_config=HypernetConfig(num_tasks=MAX_PREV + 1, chunk_dim=8,
                                   new_task_init="copy_prev"))
    state = learner.end_experience(learner.init(key, x), data, jnp.int32(0), key)
    step = jax.jit(lambda s, t, kk: learner.train_step(s, data, t, kk, first=False))
    return step, state


def time_k(k: int, prev: list[int], *, warmup: int, repeats: int, **sizes):
    """``{(order, path): ([median s per t], first-call s, programs)}`` for one k."""
    programs = {(o, p): later_step(k, o, b, **sizes) for o in (1, 2) for p, b in PATHS.items()}
    first = {}
    for name, (step, state) in programs.items():  # compile, once per program
        start = time.perf_counter()
        jax.block_until_ready(step(state, jnp.int32(1), jax.random.key(0)))
        first[name] = time.perf_counter() - start
    medians = {name: [] for name in programs}
    for t in prev:
        times = {name: [] for name in programs}
        for i in range(warmup + repeats):
            for name, (step, state) in programs.items():
                key = jax.random.key(i)
                start = time.perf_counter()
                jax.block_until_ready(step(state, jnp.int32(t), key))
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
        for name in programs:
            medians[name].append(statistics.median(times[name]))
    return {name: (medians[name], first[name], step._cache_size())
            for name, (step, _) in programs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="k=4, nf=4, 8x8 images, batch 8, t in 1 4 20, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--k", type=int, nargs="+", default=None, help="default: 0 4")
    parser.add_argument("--prev", type=int, nargs="+", default=[1, 2, 4, 5, 8, 12, 16, 20],
                        help="numbers of real previous tasks (task ids), 1..20")
    args = parser.parse_args(argv)
    sizes = {"batch": 64, "size": 32, "nf": 20, "warmup": args.warmup, "repeats": args.repeats}
    prev, ks = args.prev, args.k or [0, 4]
    if args.quick:
        sizes, prev = {"batch": 8, "size": 8, "nf": 4, "warmup": 0, "repeats": 1}, [1, 4, 20]
        ks = args.k or [4]
    if not all(1 <= t <= MAX_PREV for t in prev):
        parser.error(f"--prev takes numbers in 1..{MAX_PREV}, got {prev}")
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, jax {jax.__version__}, "
          f"batch {sizes['batch']} x {sizes['size']}x{sizes['size']}x3, nf {sizes['nf']}, "
          f"{MAX_PREV} slots, median of {sizes['repeats']} after {sizes['warmup']}")
    print("| k | order | previous tasks | every slot ms/step | real slots ms/step | every/real |")
    print("|---|---|---|---|---|---|")
    counts, compiles = set(), []
    for k in ks:
        result = time_k(k, prev, **sizes)
        for order in (1, 2):
            every, first_every, n_every = result[order, "every"]
            real, first_real, n_real = result[order, "real"]
            counts |= {n_every, n_real}
            compiles.append(f"| {k} | {order} | {first_every:.1f} | {first_real:.1f} | "
                            f"{n_every} | {n_real} |")
            for t, a, b in zip(prev, every, real, strict=True):
                print(f"| {k} | {order} | {t} | {1e3 * a:.1f} | {1e3 * b:.1f} | {a / b:.2f} |",
                      flush=True)
    print()
    print("| k | order | first call s, every slot | first call s, real slots | "
          "programs, every slot | programs, real slots |")
    print("|---|---|---|---|---|---|")
    print("\n".join(compiles))
    print(f"programs per step: {max(counts)}")
    return counts


if __name__ == "__main__":
    main()
