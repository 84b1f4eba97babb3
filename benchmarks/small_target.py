"""Time HN-k's training step on a small target beside Naive's, and show where HN-k's extra time
goes.

The target is an MLP of two hidden layers of 100 (``--hidden``) on 28x28 inputs, batch 64, 10
classes, in a later experience (task 3, so three previous tasks in the output regulariser) of a
5-task stream. Every program is jitted, compiled ahead, and called in turn with the others, in
blocks of ``--block`` calls, so that a slow spell of the shared machine falls on all alike; the
median of the calls after each block's first (a training loop calls one step again and again,
its caches warm: a block's first call pays for what the previous program left in the caches)
over ``--repeats`` blocks after ``--warmup``. Beside each time: XLA's FLOPs and bytes accessed
of the compiled step, and the floats the step's state holds.

The rows: Naive; HN-k (k = 1: the first layer frozen after the first experience, the rest
generated; k = 0: everything generated) at the order given; and HN-k taken apart: without its
regulariser (``coef = 0``, the look-ahead's passes still run), its task loss's gradient alone,
the optimizer's update alone, and the regulariser as a loop over the real previous tasks
(``prev_chunk=1``, the default before ``"auto"`` chose every slot at once for small targets).

    python benchmarks/small_target.py              # the table in docs/devnotes/performance.md
    python benchmarks/small_target.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from jaxcl.learners.strategies import StrategyConfig, build_strategy
from jaxcl.types import Batch

NUM_TASKS, CLASSES, TASK = 5, 10, 3


def programs(hidden: tuple[int, ...], batch: int, order) -> dict[str, tuple]:
    """``{label: (compiled, args, state floats)}`` of every step timed."""
    key = jax.random.key(0)
    x = jax.random.normal(key, (batch, 28, 28, 1))
    data = Batch(x, jax.random.randint(key, (batch,), 0, CLASSES))
    configs = {"Naive": StrategyConfig("naive", model="mlp", hidden=hidden)}
    for k in (1, 0):
        configs[f"HN-{k}"] = StrategyConfig("hypernetwork", k=k, model="mlp", hidden=hidden,
                                            order=order)
    out = {}
    for label, config in configs.items():
        learner = build_strategy(config, num_tasks=NUM_TASKS, classes_per_task=CLASSES,
                                 sample_x=x)
        state = learner.end_experience(learner.init(key, x), data, jnp.int32(0), key)
        steps = {label: learner}
        if label == "HN-1":
            steps["HN-1, coef 0"] = dataclasses.replace(learner, coef=0.0)
            steps["HN-1, loop over the real slots"] = dataclasses.replace(learner, prev_chunk=1)
        for name, each in steps.items():
            def step(s, kk, each=each):
                return each.train_step(s, data, jnp.int32(TASK), kk, first=False)
            out[name] = _compiled(step, state, key)
        if label == "HN-1":
            def task_grad(psi, learner=learner, state=state):
                feats = learner.features(state.phi, data.x)

                def loss(p):
                    logits = learner.upper.apply({"params": learner.hnet.apply(p, TASK)}, feats)
                    return optax.softmax_cross_entropy_with_integer_labels(logits, data.y).mean()
                return jax.grad(loss)(psi)

            def update(psi, learner=learner, state=state):
                grads = jax.tree.map(jnp.ones_like, psi)
                updates, opt = learner.optimizer.update(grads, state.opt_state["psi"], psi)
                return optax.apply_updates(psi, updates), opt

            out["HN-1, task-loss gradient alone"] = _compiled(task_grad, state.psi)
            out["HN-1, optimizer update alone"] = _compiled(update, state.psi)
    return out


def _compiled(fn, *args):
    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    floats = sum(a.size for a in jax.tree.leaves(args) if hasattr(a, "size")
                 and jnp.issubdtype(a.dtype, jnp.floating))
    return compiled, args, cost.get("flops", 0.0), cost.get("bytes accessed", 0.0), floats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="hidden 16 16, 3 repeats")
    parser.add_argument("--hidden", type=int, nargs="+", default=[100, 100])
    parser.add_argument("--order", default="1", choices=["1", "2", "none"])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--block", type=int, default=5,
                        help="calls of a program in a row; the first is not counted (>= 2)")
    args = parser.parse_args(argv)
    if args.block < 2:
        parser.error(f"--block {args.block}: at least 2 (the first call of a block is not counted)")
    hidden, repeats, warmup = tuple(args.hidden), args.repeats, args.warmup
    if args.quick:
        hidden, repeats, warmup = (16, 16), 3, 1
    order = args.order if args.order == "none" else int(args.order)
    progs = programs(hidden, 64, order)
    times = {name: [] for name in progs}
    for i in range(warmup + repeats):
        for name, (compiled, call_args, *_) in progs.items():
            for j in range(args.block):
                start = time.perf_counter()
                jax.block_until_ready(compiled(*call_args))
                if i >= warmup and j > 0:
                    times[name].append(time.perf_counter() - start)
    naive = statistics.median(times["Naive"])
    print(f"device: {jax.devices()[0].device_kind}, MLP {hidden} on 28x28, batch 64, task "
          f"{TASK} of {NUM_TASKS}, order {order}, median over {repeats} blocks of {args.block} "
          "calls in turn, each block's first call not counted\n")
    print("| step | ms | / Naive | GFLOP | MB accessed | floats in its arguments |")
    print("|---|---|---|---|---|---|")
    for name, (_, _, flops, nbytes, floats) in progs.items():
        ms = statistics.median(times[name])
        print(f"| {name} | {1e3 * ms:.3f} | {ms / naive:.2f} | {flops / 1e9:.4f} | "
              f"{nbytes / 1e6:.1f} | {floats:,} |")


if __name__ == "__main__":
    main()
