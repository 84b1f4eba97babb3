"""Scaling of the engine: data-parallel devices, and seeds vmapped into one program.

1. Step time of HN-k (k = 0 and 4, order 2, slim ResNet-18) trained data-parallel on 1, 2, 4 and
   8 devices: on a CPU these are simulated (``--xla_force_host_platform_device_count=8``) and
   share the same cores, so the table shows the cost of sharding, not a speed-up; on a GPU or TPU
   machine they are the real devices (as many as it has).
2. The cost of S seeds as one vmapped program against S separate runs (training seconds, compile
   seconds), S = 1, 2, 4.

Times are of the second experience (with the look-ahead regulariser over the first), per step,
compilation excluded and reported apart.

    python benchmarks/scaling.py            # the table in docs/devnotes/performance.md (CPU: about 10 min on 2 cores)
    python benchmarks/scaling.py --quick    # tiny sizes, a smoke run
"""

from __future__ import annotations

import os
import sys

if "jax" not in sys.modules and "--no-simulate" not in sys.argv:
    # Eight simulated devices where there is no accelerator; real devices are used as they are.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

from jaxcl.data import load_benchmark  # noqa: E402
from jaxcl.learners import StrategyConfig, build_strategy  # noqa: E402
from jaxcl.train.loop import train_seeds  # noqa: E402


def run(label: str, *, seeds: list[int], devices: int, args) -> tuple[float, float, float]:
    """``(seconds per step of experience 2, training seconds, compile seconds)`` of one run."""
    streams = [load_benchmark("synthetic", seed=s, num_tasks=2, classes_per_task=5,
                              image_size=args.image_size, train_per_class=args.train_per_class,
                              test_per_class=10) for s in seeds]
    config = StrategyConfig.from_label(label, model=args.model, nf=args.nf, order=2,
                                       batch_size=args.batch_size)
    strategy = build_strategy(config, num_tasks=2, classes_per_task=5,
                              sample_x=streams[0][0].x_train[:args.batch_size])
    result = train_seeds(strategy, streams, keys=[jax.random.key(s) for s in seeds],
                         epochs=args.epochs, batch_size=args.batch_size, devices=devices)[0]
    steps = args.epochs * (5 * args.train_per_class // args.batch_size)
    return result.time_per_experience[1] / steps, result.time_s, result.compile_s


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet")
    parser.add_argument("--nf", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-per-class", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--labels", nargs="+", default=["HN-F", "HN-4"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-simulate", action="store_true",
                        help="use the machine's devices as they are, even on a CPU")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.nf, args.image_size, args.train_per_class = "mlp", 8, 8, 16
        args.batch_size, args.epochs, args.devices, args.seeds = 16, 1, [1, 2], [1, 2]
        args.labels = ["HN-F", "HN-1"]
    devices = [d for d in args.devices if d <= jax.device_count()]
    print(f"{jax.device_count()} {jax.devices()[0].platform} devices; {args.model} nf={args.nf}, "
          f"{args.image_size}x{args.image_size}, batch {args.batch_size}, order 2", flush=True)

    print("\n| strategy | devices | ms / step | compile (s) |\n|---|---|---|---|")
    for label in args.labels:
        for d in devices:
            step, _, compile_s = run(label, seeds=[0], devices=d, args=args)
            print(f"| {label} | {d} | {1e3 * step:.1f} | {compile_s:.1f} |", flush=True)

    print("\n| strategy | seeds S | vmapped: train (s) | compile (s) | S separate runs: train (s)"
          " | compile (s) | separate / vmapped train |\n|---|---|---|---|---|---|---|")
    for label in args.labels:
        for count in args.seeds:
            _, together, together_c = run(label, seeds=list(range(count)), devices=1, args=args)
            alone = [run(label, seeds=[s], devices=1, args=args) for s in range(count)]
            apart, apart_c = sum(a[1] for a in alone), sum(a[2] for a in alone)
            print(f"| {label} | {count} | {together:.2f} | {together_c:.1f} | {apart:.2f} | "
                  f"{apart_c:.1f} | {apart / together:.2f}x |", flush=True)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
