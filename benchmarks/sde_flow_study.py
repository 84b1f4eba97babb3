"""Time the default Hypernet-SDE-Flow study end to end, and show where a training step's time goes.

Part 1, end to end: the MLP baseline and the Hypernet-SDE-Flow model (the study's two models),
five tasks of 300 points, 300 epochs each, batch 50, AdamW: every compilation and every training
step, in one fresh process. The target is under 60 seconds on a 2-core CPU.

Part 2, one Hypernet-SDE-Flow step taken apart: the gradient of each piece of the loss alone,
compiled, median over repeated calls: generating the parameters, the encoder and decoder, the
flow NLL, the two SDE solves (with the Brownian path sampled on the solver grid or as Diffrax's
virtual Brownian tree; stepped in a scan, the default, or through ``diffeqsolve`` with the
reverse-only or the forward-and-reverse adjoint), a Hessian-vector product through a solve
(what order 2 adds), and the whole loss; then a repair step of order 1 and of order 2.

Part 3, the main job (``python -m experiments.sde_flow_forgetting``, its defaults) in fresh
processes: cold (an empty compilation cache) and warm (the cache the cold run filled), its wall
time, training and compile seconds as it prints them.

Part 4, the cost of a model-step as models are stacked: a model's training step vmapped over
``S`` copies (seeds, or variants differing in traced weights), ``S`` = 1, 8, 40, 200, run in a
compiled scan of steps, for each kind of model of the main job; milliseconds per step of the
stack and per model, and the step's GFLOP/s by XLA's cost analysis.

    python benchmarks/sde_flow_study.py            # the numbers in docs/devnotes/performance.md
    python benchmarks/sde_flow_study.py --quick    # a smoke run (3 epochs)
    python benchmarks/sde_flow_study.py --parts 3 4
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxcl.core.regularizers import task_outputs
from jaxcl.data.points import point_tasks
from jaxcl.learners import sde_flow as step
from jaxcl.learners import sde_flow_variant as cl
from jaxcl.learners.sde_flow import SdeFlowLearner
from jaxcl.models import sde_flow as sf
from jaxcl.train.loop import train_stream


def end_to_end(epochs: int) -> list[list]:
    tasks = point_tasks(jax.random.key(0))
    rows = []
    wall = time.perf_counter()
    for name, model in (("mlp", sf.SdeFlowConfig(model="mlp")),
                        ("hypernet_sde_flow", sf.SdeFlowConfig())):
        variant = cl.Variant(model=model, epochs=epochs)
        learner = SdeFlowLearner.build(variant, num_tasks=len(tasks),
                                       train_per_task=tasks[0].x_train.shape[0])
        start = time.perf_counter()
        run = train_stream(learner, tasks, key=jax.random.key(0), epochs=variant.epochs,
                           batch_size=variant.batch_size, steps_in="scan")  # as the study
        total = time.perf_counter() - start
        steps = len(run.step_metrics["loss"])
        rows.append([name, f"{run.compile_s:.1f}", f"{run.time_s:.1f}", f"{total:.1f}", steps,
                     f"{1e3 * run.time_s / steps:.2f}"])
    rows.append(["both, wall clock", "", "", f"{time.perf_counter() - wall:.1f}", "", ""])
    return rows


def median_ms(fn, *args, repeats: int) -> tuple[float, float]:
    """``(compile seconds, median milliseconds per call)`` of ``jax.jit(fn)(*args)``."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return compile_s, 1e3 * statistics.median(times)


def pieces(repeats: int) -> list[list]:
    variant = cl.Variant()
    cfg = variant.model
    hnet = cl.hypernetwork(variant, 5)
    psi = cl.init(variant, jax.random.key(0), 5)
    tasks = point_tasks(jax.random.key(0))
    x, task = tasks[2].x_train[:50], jnp.int32(2)
    memory = jnp.stack([e.x_train[:20] for e in tasks])
    key = jax.random.key(1)
    theta = hnet.apply(psi, 2)
    z = jax.random.normal(key, (150, cfg.latent_dim))  # batch + memory, as one solve sees it

    def sde_loss(brownian, adjoint):
        def loss(sde_params):
            drift, diffusion = sf._neural_sde(cfg, reverse=False, per_example=False)
            y = sf.solve_sde(drift, diffusion, z, key, args=sde_params, steps=cfg.sde_steps,
                             brownian=brownian, adjoint=adjoint)
            return jnp.mean(y**2)
        return jax.grad(loss)

    def sde_hvp(adjoint):
        """A Hessian-vector product through one solve, forward over reverse (order 2's)."""
        grad = sde_loss("grid", adjoint)
        return lambda p: jax.jvp(grad, (p,), (p,))[1]

    def square_sum(tree):
        return sum(jnp.sum(a**2) for a in jax.tree.leaves(tree))

    cases = {
        "generate theta_j, 5 tasks (vmap)": (
            jax.grad(lambda p: square_sum(jax.vmap(lambda j: hnet.apply(p, j))(jnp.arange(5)))),
            psi),
        "encoder + decoder": (
            jax.grad(lambda t: jnp.mean(sf.decode(cfg, t, sf.encode(cfg, t, x)) ** 2)), theta),
        "flow NLL": (jax.grad(lambda f: jnp.mean(sf.flow_nll(cfg, f, z))), theta["flow"]),
        "one SDE solve, grid path, scan (the default)": (sde_loss("grid", "scan"), theta["sde"]),
        "one SDE solve, grid path, checkpoint adjoint": (sde_loss("grid", "checkpoint"),
                                                         theta["sde"]),
        "one SDE solve, grid path, direct adjoint": (sde_loss("grid", "direct"), theta["sde"]),
        "Hessian-vector product of one solve, scan": (sde_hvp("scan"), theta["sde"]),
        "Hessian-vector product of one solve, direct adjoint": (sde_hvp("direct"), theta["sde"]),
        "one SDE solve, virtual Brownian tree": (sde_loss("tree", "checkpoint"), theta["sde"]),
        "whole loss (the study's step)": (
            jax.grad(lambda p: step.loss_terms(variant, cl.LossWeights(), hnet, p, x, task, memory,
                                             0.5, key)[0]), psi),
    }
    rows = []
    for name, (fn, arg) in cases.items():
        compile_s, ms = median_ms(fn, arg, repeats=repeats)
        rows.append([name, f"{ms:.3f}", f"{compile_s:.1f}"])
    targets = task_outputs(hnet, psi, jnp.arange(5))
    for order in (1, 2):
        repair = dataclasses.replace(variant, shared="frozen", order=order)

        def grad(p, repair=repair):
            return step.objective_grad(repair, cl.LossWeights(), hnet, p, x, task, memory, targets,
                                     0.5, key)[0]

        compile_s, ms = median_ms(grad, psi, repeats=repeats)
        rows.append([f"repair step gradient, order {order}", f"{ms:.3f}", f"{compile_s:.1f}"])
    return rows


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def main_job(quick: bool) -> list[list]:
    """Part 3: the main job cold and warm, each in a fresh process, the cache in a temporary
    folder; the job's own summary line gives its training and compile seconds."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in ("cold", "warm"):
            cmd = [sys.executable, "-m", "experiments.sde_flow_forgetting", "--compile-cache",
                   "--compile-cache-dir", f"{tmp}/cache", "--out", f"{tmp}/{run}",
                   *(["--quick"] if quick else [])]
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            wall = time.perf_counter() - start
            line = next(l for l in out.splitlines() if l.startswith("cost: "))
            rows.append([run, f"{wall:.1f}", line.removeprefix("cost: ")])
    return rows


STACKS = (1, 8, 40, 200)
STACK_MODELS = ("mlp", "mlp_task", "replay_mlp_task", "hnet_mlp_order1", "repair_none",
                "repair_order1")
"""Part 4's models: every model the main job trains (the oracle is derived from
``repair_order1``'s training)."""


def stack_cost(stacks: Sequence[int], steps: int, models: Sequence[str] = STACK_MODELS
               ) -> list[list]:
    """Part 4: ms per step of ``S`` stacked copies of a model's training step (a later task,
    task 3, with its memory), in a compiled scan of ``steps`` steps, best of 3 runs."""
    from experiments.sde_flow_settings import Config, learner, tasks, variant
    from jaxcl.types import Batch

    config = Config()
    x = tasks(config, 0)[3].x_train[:config.model.batch_size]
    batch = Batch(x, jnp.zeros(x.shape[:1], jnp.int32))
    rows = []
    for name in models:
        model = learner(config, variant(config, name))

        def one(state, key, model=model):
            return model.train_step(state, batch, jnp.int32(3), key, first=False)

        for size in stacks:
            keys = jax.random.split(jax.random.key(0), size)
            state = jax.jit(jax.vmap(lambda k, model=model: model.init(k, x)))(keys)

            def run(state, keys, one=one):
                def body(s, i):
                    s, m = jax.vmap(one)(s, jax.vmap(jax.random.fold_in, (0, None))(keys, i))
                    return s, m["loss"]
                return jax.lax.scan(body, state, jnp.arange(steps))

            compiled = jax.jit(run).lower(state, keys).compile()
            flops = jax.jit(jax.vmap(one)).lower(state, keys).compile().cost_analysis()
            flops = (flops[0] if isinstance(flops, list) else flops).get("flops", 0.0)
            jax.block_until_ready(compiled(state, keys))
            best = min(_timed(compiled, state, keys) for _ in range(3)) / steps
            rows.append([name, size, f"{1e3 * best:.2f}", f"{1e3 * best / size:.3f}",
                         f"{flops / size / 1e6:.2f}", f"{flops / best / 1e9:.2f}"])
            print("| " + " | ".join(map(str, rows[-1])) + " |", flush=True)
    return rows


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs, 5 repeats, stacks 1 2")
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3, 4],
                        choices=[1, 2, 3, 4])
    parser.add_argument("--models", nargs="+", default=list(STACK_MODELS),
                        choices=STACK_MODELS, help="part 4's models")
    parser.add_argument("--stacks", type=int, nargs="+", default=list(STACKS),
                        help="part 4's stack sizes S")
    args = parser.parse_args(argv)
    epochs, repeats = (3, 5) if args.quick else (300, 50)
    print(f"device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s)\n")
    if 1 in args.parts:
        print(f"End to end, 5 tasks x 300 points, {epochs} epochs per task, batch 50:\n")
        print(table(["model", "compile s", "train s", "total s", "steps", "ms / step"],
                    end_to_end(epochs)))
    if 2 in args.parts:
        print(f"\nOne Hypernet-SDE-Flow step taken apart (gradients; median of {repeats}):\n")
        print(table(["piece", "ms", "compile s"], pieces(repeats)))
    if 3 in args.parts:
        print("\nThe main job in fresh processes (cold: empty compilation cache; warm: the cold "
              "run's):\n")
        print(table(["run", "wall s", "the job's summary"], main_job(args.quick)))
    if 4 in args.parts:
        print("\nA model's step stacked S times (vmap), in a compiled scan, task 3:\n")
        print(table(["model", "S", "ms / step", "ms / model-step", "MFLOP / model-step",
                     "GFLOP/s"], stack_cost((1, 2) if args.quick else args.stacks,
                                            5 if args.quick else 20, args.models)))


if __name__ == "__main__":
    main()
