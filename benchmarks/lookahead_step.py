"""Time the compiled partial-hypernetwork step for every freeze depth k and look-ahead order.

A later-experience step (phi frozen, look-ahead gradient for psi, ``--prev-slots`` previous-task
slots, 20 by default, of which 5 are real, in the library's default loop over them,
``prev_chunk=1``) on a batch of 64 images of 32x32x3 and 5 classes, slim ResNet-18 with nf = 20.
Median wall time of ``--repeats`` calls after ``--warmup`` calls, the two orders alternating call
by call; compile time reported apart.

Beside the time ratio order2/order1 the table gives what the two compiled programs cost:

* FLOPs: ``compiled.cost_analysis()["flops"]`` (XLA's HLO cost analysis; in jax 0.10.2
  ``cost_analysis()`` returns one dict, older versions a list of one dict per program, both read).
  XLA counts the body of a loop once, whatever its trip count, and a ``cond`` as its costliest
  branch; the regulariser's loop over the previous-task slots
  (:func:`jaxcl.core.regularizers.output_regularizer_real_slots`, ``prev_chunk`` slots a chunk)
  runs its body once per chunk holding a real previous task, so the count here adds
  ``(chunks run - 1)`` times the FLOPs of one chunk (``value_and_grad`` of the regulariser on one
  chunk, compiled apart): 4 chunks of one slot for 5 real previous tasks, the same for both
  orders. ``t/F`` is the time ratio over the FLOP ratio: 1 when order 2's extra time is all extra
  arithmetic at order 1's speed (the target: at most 1.1).
* Peak memory: ``compiled.memory_analysis()``, the sum ``temp_size_in_bytes +
  argument_size_in_bytes + output_size_in_bytes`` (no argument is donated here, so
  ``alias_size_in_bytes`` is 0 and nothing is counted twice).
* The floor of order 2: order 1's FLOPs plus one tangent pass through the gradient of the task
  loss, the least work that an exact order-2 gradient needs on top of order 1 (the Hessian-vector
  product ``H_CE v`` taken forward-over-reverse, with every residual of the gradient's forward and
  backward passes kept, none recomputed). The tangent pass is measured as the FLOPs of a compiled
  ``jax.jvp(jax.grad(L_CE), (psi,), (v,))`` (primal gradient and tangent) less those of a compiled
  ``jax.grad(L_CE)``, both on the same features and shapes; ``o2/floor`` is order 2's FLOPs over
  that floor (1 when order 2 recomputes nothing; above 1 by what it recomputes or adds).

    python benchmarks/lookahead_step.py            # the table in docs/devnotes/performance.md
    python benchmarks/lookahead_step.py --quick    # tiny sizes, a smoke run

The last line is ``max order2/order1 ratio: X``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from jaxcl import Batch, HypernetConfig, PartialHypernet
from jaxcl.core.losses import cross_entropy
from jaxcl.core.regularizers import output_regularizer_real_slots
from jaxcl.models import split_model

REAL_PREV = 5
"""Real previous tasks of the step timed (task 5 after tasks 0..4)."""


def build(k: int, order: int, *, batch: int, size: int, nf: int, prev_slots: int,
          conv: str = "auto"):
    """``(learner, state, data, task, key)`` of one later experience (task 5, ``REAL_PREV`` real
    previous tasks in ``prev_slots`` slots), the ResNet's convolution ``conv``."""
    split = split_model("resnet", k, num_classes=5, head=True, nf=nf, conv=conv)
    key = jax.random.key(0)
    x = jax.random.normal(key, (batch, size, size, 3))
    data = Batch(x, jax.random.randint(key, (batch,), 0, 5))
    learner = PartialHypernet.build(split.upper, split.lower, x, order=order,
                                    max_prev_tasks=prev_slots,
                                    hnet_config=HypernetConfig(
                                        num_tasks=20, chunk_dim=8, new_task_init="copy_prev"))
    task = jnp.int32(REAL_PREV)
    state = learner.end_experience(learner.init(key, x), data, task, key)
    return learner, state, data, task, key


def compile_step(k: int, order: int, **sizes):
    """``(compile seconds, compiled step, state)`` of one later-experience step."""
    learner, state, data, task, key = build(k, order, **sizes)
    step = jax.jit(lambda s: learner.train_step(s, data, task, key, first=False))
    start = time.perf_counter()
    compiled = step.lower(state).compile()
    return time.perf_counter() - start, compiled, state


def flops(compiled) -> float:
    """``cost_analysis()["flops"]``: a dict in jax 0.10.2, a list of one dict per program before."""
    cost = compiled.cost_analysis()
    return sum(c["flops"] for c in cost) if isinstance(cost, list) else cost["flops"]


def step_flops(compiled, k: int, **sizes) -> float:
    """The FLOPs a later-experience step runs: XLA's count, which holds one pass of the
    regulariser's slot loop, plus the passes it leaves out (one per further chunk that holds a
    real previous task; none when ``prev_chunk`` is ``None``, every slot at once, no loop)."""
    learner, state, _, _, _ = build(k, 1, **sizes)
    chunk = learner.prev_chunk
    if chunk is None:
        return flops(compiled)
    real = min(REAL_PREV, learner.max_prev_tasks)
    ids, mask = jnp.arange(chunk, dtype=jnp.int32), jnp.ones((chunk,), bool)

    def reg(psi, psi_prev, ids, mask):  # all arguments: XLA would fold constant targets away
        return output_regularizer_real_slots(learner.hnet, psi, psi_prev, ids, mask, chunk=chunk)

    one_chunk = jax.jit(jax.value_and_grad(reg)).lower(state.psi, state.psi_prev, ids, mask)
    return flops(compiled) + (-(-real // chunk) - 1) * flops(one_chunk.compile())


def peak_bytes(compiled) -> int:
    """``temp + argument + output`` bytes of a compiled program (``memory_analysis()``)."""
    m = compiled.memory_analysis()
    return m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes


def tangent_flops(k: int, **sizes) -> float:
    """FLOPs of one tangent pass through ``grad L_CE``: ``jvp(grad)`` less ``grad``, compiled on
    the same features (``g_phi(x)``, an argument of both, so that neither counts ``g_phi``)."""
    learner, state, data, task, _ = build(k, 1, **sizes)
    features = learner.features(state.phi, data.x)

    def task_loss(psi, feats):
        omega = learner.hnet.apply(psi, task)
        return cross_entropy(learner.upper.apply({"params": omega}, feats), data.y)

    grad = jax.grad(task_loss)
    tangent = optax.tree.ones_like(state.psi)
    plain = jax.jit(grad).lower(state.psi, features).compile()
    jvp = jax.jit(lambda psi, v, feats: jax.jvp(lambda p: grad(p, feats), (psi,), (v,)))
    return flops(jvp.lower(state.psi, tangent, features).compile()) - flops(plain)


def time_orders(k: int, *, warmup: int, repeats: int, **sizes):
    """Compiled programs, compile times and median seconds per step of order 1 and order 2.

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
    compiled = [c for _, c, _ in programs]
    return compiled, [c for c, _, _ in programs], [statistics.median(t) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="nf=4, 8x8 images, batch 8, k = 3 unless --k, 2 repeats")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--k", "--ks", dest="k", type=int, nargs="+", default=None,
                        help="freeze depths (default 0..4)")
    parser.add_argument("--prev-slots", type=int, default=20,
                        help="max_prev_tasks, the regulariser's previous-task slots (5 are real)")
    args = parser.parse_args(argv)
    sizes = {"batch": 64, "size": 32, "nf": 20, "prev_slots": args.prev_slots}
    warmup, repeats = args.warmup, args.repeats
    if args.quick:
        sizes = {"batch": 8, "size": 8, "nf": 4, "prev_slots": args.prev_slots}
        warmup, repeats = 1, 2
    ks = args.k if args.k is not None else ([3] if args.quick else [0, 1, 2, 3, 4])
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, jax {jax.__version__}, "
          f"batch {sizes['batch']} x {sizes['size']}x{sizes['size']}x3, nf {sizes['nf']}, "
          f"{sizes['prev_slots']} previous-task slots (5 real), median of {repeats} after {warmup}")
    print("| k | order 1 ms/step | order 2 ms/step | order2/order1 | FLOP ratio | t/F "
          "| GFLOP (o1, o2, floor) | o2/floor | peak MB (o1, o2) | compile s (o1, o2) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for k in ks:
        (p1, p2), (c1, c2), (t1, t2) = time_orders(k, warmup=warmup, repeats=repeats, **sizes)
        f1, f2 = step_flops(p1, k, **sizes), step_flops(p2, k, **sizes)
        floor = f1 + tangent_flops(k, **sizes)
        m1, m2 = peak_bytes(p1) / 2**20, peak_bytes(p2) / 2**20
        ratios.append(t2 / t1)
        print(f"| {k} | {1e3 * t1:.1f} | {1e3 * t2:.1f} | {t2 / t1:.2f} | {f2 / f1:.2f} "
              f"| {(t2 / t1) / (f2 / f1):.2f} | {f1 / 1e9:.2f}, {f2 / 1e9:.2f}, {floor / 1e9:.2f} "
              f"| {f2 / floor:.2f} | {m1:.1f}, {m2:.1f} | {c1:.1f}, {c2:.1f} |", flush=True)
    print(f"max order2/order1 ratio: {max(ratios):.2f}")
    return ratios


if __name__ == "__main__":
    main()
