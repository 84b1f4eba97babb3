"""What every experiment module shares: its config dataclasses (read from the command line by
:mod:`experiments.flags`), training a set of strategies over a stream for several seeds, and
writing the run folder (:mod:`jaxcl.io.run_folder`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import typing
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxcl.data.augment import random_crop_flip
from experiments.flags import parse_config, parse_order
from jaxcl.io import compile_cache, interrupts, run_folder
from jaxcl.io.checkpoints import RunCheckpoints, content_digest
from jaxcl.io.event_logs import summary_writer
from jaxcl.io.progress import ProgressBar
from jaxcl.io.records import seed_record, strategy_record
from jaxcl.learners import HN_PRESETS, StrategyConfig, build_strategy
from jaxcl.train.loop import NearChanceWarning, stackable, train_seeds
from jaxcl.train.parallel import check_devices
from jaxcl.train.steps import STEPS_IN
from jaxcl.types import Experience


def device_memory() -> int:
    """Bytes this process's first device can hold: its allocator's limit on an accelerator, the host's
    physical memory on CPU (whose device reports none)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(n: int) -> str:
    return f"{n / 2**40:.1f} TiB" if n >= 2**40 else f"{n / 2**30:.1f} GiB"


def _repeated(values: Sequence) -> list:
    """The values that occur more than once, each once, in the order they first occur."""
    values = list(values)
    return [v for i, v in enumerate(values) if values.count(v) > 1 and v not in values[:i]]


def default_out(name: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return pathlib.Path("runs") / f"{name}-{stamp}"


def interruptible(report: Callable) -> Callable:
    """``report`` (what the loop reports its events to) that first raises a Ctrl-C swallowed
    since the last event (:func:`jaxcl.io.interrupts.raise_pending`): the loop stops there,
    keeping its checkpoint."""
    def checked(event):
        interrupts.raise_pending()
        report(event)
    return checked


def run_strategies(
    strategies: dict[str, StrategyConfig],
    stream_for_seed: Callable[[int], Sequence[Experience]],
    *,
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    eval_batch_size: int = 256,
    progress: bool = True,
    augment: bool = False,
    devices: int = 1,
    seeds_together: bool = True,
    checkpoints: pathlib.Path | None = None,
    checkpoint_epochs: int = 0,
    tensorboard: pathlib.Path | None = None,
    steps_in: str = "auto",
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[int, dict]]]:
    """Train every strategy on the stream of every seed (same stream and init key per seed).

    All seeds train as one vmapped program (:func:`jaxcl.train.loop.train_seeds`) when
    ``seeds_together`` and their streams have equal shapes, else one after another.
    ``checkpoints``: the folder of the run's checkpoints, one subfolder per strategy (and seed
    group), after every experience and every ``checkpoint_epochs`` epochs (0: only after
    experiences); a killed run started again resumes from them. ``tensorboard``: a folder for event
    files, ``<label>/seed_<seed>`` (:mod:`jaxcl.io.event_logs`). A checkpoint's fingerprint holds
    the strategy's settings, ``options`` (the run's other settings that can change a number) and
    the content hash of every seed's stream, so that resuming another run's checkpoints is
    refused. Returns ``(records, steps)``:
    :func:`jaxcl.io.records.strategy_record` per label, and the per-step logs
    ``steps[label][seed]``.
    """
    streams = [stream_for_seed(seed) for seed in seeds]
    interrupts.raise_pending()  # a Ctrl-C swallowed while the data loaded
    shape = streams[0][0].x_train.shape
    if augment and len(shape) != 4:
        raise ValueError(f"augment crops and flips images (N, H, W, C), but the stream's inputs "
                         f"have shape {shape}; pass --no-augment")
    together = seeds_together and stackable(streams)
    groups = [list(range(len(seeds)))] if together else [[i] for i in range(len(seeds))]
    if seeds_together and not together:
        print("  the seeds' streams differ in shape: training them one after another", flush=True)
    digests = [content_digest(stream) for stream in streams] if checkpoints is not None else []
    per_seed = {label: [] for label in strategies}
    steps: dict[str, dict[int, dict]] = {label: {} for label in strategies}
    for label, config in strategies.items():
        for group in groups:
            group_seeds = [seeds[i] for i in group]
            strategy = build_strategy(config, num_tasks=len(streams[group[0]]),
                                      classes_per_task=len(streams[group[0]][0].classes),
                                      sample_x=streams[group[0]][0].x_train[:batch_size])
            name = f"{label}-seeds-{'-'.join(map(str, group_seeds))}".replace("/", "_")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NearChanceWarning)
                seed_results = train_seeds(
                    strategy, [streams[i] for i in group],
                    keys=[jax.random.key(seed) for seed in group_seeds], epochs=epochs,
                    batch_size=batch_size, eval_batch_size=eval_batch_size,
                    on_event=interruptible(ProgressBar(progress)),
                    label=f"{label} seeds {group_seeds}",
                    devices=devices, augment=random_crop_flip if augment else None,
                    checkpoints=None if checkpoints is None else RunCheckpoints(
                        checkpoints / name, name=f"{label} seeds {group_seeds}", report=print),
                    checkpoint_epochs=checkpoint_epochs, run_name=label, steps_in=steps_in,
                    settings={"strategy": dataclasses.asdict(config), "options": options or {},
                              "data": [digests[i] for i in group] if digests else []})
            for warning in caught:  # the near-chance advice: one line each
                if issubclass(warning.category, NearChanceWarning):
                    print(f"  warning: {warning.message}", flush=True)
                else:
                    warnings.showwarning(warning.message, warning.category, warning.filename,
                                         warning.lineno)
            for seed, result in zip(group_seeds, seed_results):
                record = seed_record(seed, result)
                per_seed[label].append(record)
                steps[label][seed] = result.step_metrics
                if tensorboard is not None and jax.process_index() == 0:
                    from jaxcl.io.event_logs import write_events

                    write_events(tensorboard / label.replace("/", "_") / f"seed_{seed}", result)
                print(f"  {label} seed {seed}: ACA {record['aca']:.3f}, forgetting "
                      f"{record['forgetting']:.3f}, {record['time_s']:.1f} s "
                      f"(+{record['compile_s']:.1f} s compile)", flush=True)
    records = {label: strategy_record(r) for label, r in per_seed.items()}
    for label, config in strategies.items():  # the resolved settings, normalisation included
        records[label]["settings"] = {**dataclasses.asdict(config), "norms": list(config.norms)}
    return records, steps


def finish(out: pathlib.Path | None, *, experiment: str, config: Any, seeds: Sequence[int],
           records: dict, steps: dict, title: str, table: str, extra: dict | None = None,
           extra_files: dict | None = None, paper: dict | None = None) -> dict:
    """Print the table last, write the run folder; return ``metrics.json``'s content (with the
    paper's numbers under ``"paper"`` when given, :mod:`experiments.paper`)."""
    config_dict = dataclasses.asdict(config)
    if hasattr(config, "unused"):  # what had no effect, and why: config.json says what ran
        config_dict["unused"] = config.unused()
    settings = {label: r["settings"] for label, r in records.items() if "settings" in r}
    if settings:  # each strategy's resolved settings (e.g. norm "reference" -> its norms)
        config_dict["strategy_settings"] = settings
    files = run_folder.run_files(experiment=experiment, config=config_dict, seeds=list(seeds),
                                 records=records, steps=steps,
                                 summary_md=f"# {title}\n\n{table}\n", extra=extra, paper=paper)
    files.update(extra_files or {})
    print(f"\n{title}\n{table}")
    if out is not None:
        run_folder.write_files(out, files)
        print(f"\nresults: {out}")
        dropped = run_folder.drop_checkpoints(out, keep=getattr(config, "keep_checkpoints", True))
        if dropped:
            print(dropped)
    return files["metrics.json"]


def finish_tables(out: pathlib.Path | None, *, experiment: str, config: Any, title: str,
                  table: str, metrics: dict, paper: dict | None = None) -> dict:
    """For modules that train nothing: print the table, write config, metrics (the paper's
    numbers under ``"paper"`` when given) and summary."""
    if paper is not None:
        metrics = {**metrics, "paper": paper}
    print(f"{title}\n{table}")
    if out is not None:
        run_folder.write_files(out, {"config.json": run_folder.config_json(
                                         dataclasses.asdict(config), experiment),
                                     "metrics.json": metrics,
                                     "summary.md": f"# {title}\n\n{table}\n"})
        print(f"\nresults: {out}")
    return metrics


def module_main(name: str, config_cls: type, quick: dict, run: Callable, doc: str) -> Callable:
    """The ``main(argv)`` of an experiment module: parse, refuse an ``--out`` that holds a
    finished run (:func:`jaxcl.io.run_folder.check_out`) before any work, then
    ``run(config, out)``. A training run first claims ``out`` (:func:`jaxcl.io.run_folder.claim`:
    an unfinished run of other settings is refused there); if it fails, what it wrote and
    nothing can resume from is removed (:func:`jaxcl.io.run_folder.release`)."""
    def main(argv: list[str] | None = None):
        config, out = parse_config(config_cls, argv, name=name,
                                   description=doc.splitlines()[0], quick=quick)
        out = out if out is not None else default_out(name)
        run_folder.check_out(out)
        if not isinstance(config, RunOptions):  # trains nothing, checkpoints nothing
            return run(config, out)
        created = not out.exists()
        run_folder.claim(out, name, config.identity())
        config.use_compile_cache()
        try:
            with interrupts.kept():
                return run(config, out)
        except BaseException:  # a failed or interrupted run leaves only what can resume
            run_folder.release(out, created=created)
            raise
    return main


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The options of every experiment that trains: seeds, the training's length and pace, and
    how the run is carried out (devices, the loop, checkpoints, event files, progress bars).
    Each experiment's config subclasses it, with its own defaults where they differ, so that a
    setting has one name, one check and one ``--help`` line everywhere."""

    HELP: typing.ClassVar[dict[str, str]] = {
        "seeds": "one run per seed, each its own data order and initialisation; distinct",
        "epochs": "epochs per experience, >= 1",
        "batch_size": "training minibatch, >= 1",
        "learning_rate": "the optimizer's learning rate, > 0",
        "devices": "data-parallel over this many devices (dividing the batch)",
        "checkpoint_epochs": "also checkpoint every N epochs inside an experience; 0: after "
                             "experiences only",
        "keep_checkpoints": "keep OUT/checkpoints after the run has finished (they are there "
                            "to resume an unfinished run)",
        "tensorboard": "also write TensorBoard event files in OUT/tensorboard",
        "progress": "progress bars",
        "steps_in": "python, scan or auto",
        "compile_cache": "keep compiled programs on disk and load them in later runs "
                         "(JAX's persistent compilation cache; the numbers are the same)",
        "compile_cache_dir": "the cache's folder; empty: $JAXCL_COMPILE_CACHE, else "
                             "~/.cache/jaxcl/jax",
    }
    """One line per option for ``--help``: what it does and what values it takes."""

    NOTES: typing.ClassVar[dict[str, str]] = {
        "steps_in": "auto is python on CPU, where a convolution's gradient inside an XLA loop "
                    "is 20-45x slower, and scan elsewhere",
    }
    """``--help`` notes beside the defaults."""

    NO_EFFECT: typing.ClassVar[tuple[str, ...]] = (
        "checkpoint_epochs", "keep_checkpoints", "tensorboard", "progress", "compile_cache",
        "compile_cache_dir")
    """Settings that cannot change a number: how often checkpoints are taken (a resumed run ends
    bitwise equal to an uninterrupted one), event files, progress bars and the compilation
    cache (a cached program is the program the compiler builds)."""

    DATA_SOURCE: typing.ClassVar[tuple[str, ...]] = ()
    """Settings that say where the data are read from, not what they are (their content is
    fingerprinted): neither in a checkpoint's fingerprint nor in a run's :meth:`identity`."""

    DISTINCT: typing.ClassVar[tuple[str, ...]] = ()
    """A module's list settings whose entries must differ (each names one run or row): a
    repeat is refused rather than silently merged."""

    seeds: tuple[int, ...] = (0,)
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    devices: int = 1
    checkpoint_epochs: int = 0
    keep_checkpoints: bool = False
    tensorboard: bool = False
    progress: bool = True
    steps_in: str = "auto"
    compile_cache: bool = True
    compile_cache_dir: str = ""

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        repeated = sorted(_repeated(self.seeds))
        if repeated:
            raise ValueError(f"seeds {list(self.seeds)} name {repeated} more than once; a seed "
                             "trained twice gives the same numbers twice (a false '± 0')")
        for name in self.DISTINCT:
            values = list(getattr(self, name))
            if _repeated(values):
                raise ValueError(f"{name} {values} name {_repeated(values)} more than once; each "
                                 "is one run, give it once")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not (isinstance(self.checkpoint_epochs, int) and self.checkpoint_epochs >= 0):
            raise ValueError(f"checkpoint_epochs must be a positive integer (or 0, the "
                             f"default), got {self.checkpoint_epochs!r}")
        check_devices(self.devices, self.batch_size)
        if self.steps_in not in STEPS_IN:  # the name only: "auto" needs the backend, not yet
            raise ValueError(f"steps_in must be one of {STEPS_IN}, got {self.steps_in!r}")
        if self.tensorboard:
            summary_writer()

    def fingerprint(self) -> dict[str, Any]:
        """Every setting that can change a number (all but ``NO_EFFECT``): part of every
        checkpoint's fingerprint, so that resuming another run's checkpoints is refused."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in self.NO_EFFECT}

    def identity(self) -> dict[str, Any]:
        """Every field of this experiment's config but how the run is carried out
        (:attr:`RunOptions.NO_EFFECT`) and where the data are read from: the run an unfinished
        ``--out``'s checkpoints belong to (:func:`jaxcl.io.run_folder.claim`). Which strategies
        or variants run is part of it, though each checkpoints apart: a run of fewer would
        delete the others' checkpoints when it finishes."""
        skip = {*RunOptions.NO_EFFECT, *self.DATA_SOURCE}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in skip}

    def use_compile_cache(self) -> None:
        """JAX's persistent compilation cache on (in ``compile_cache_dir``) or off, as asked
        (:mod:`jaxcl.io.compile_cache`); before anything compiles."""
        if self.compile_cache:
            compile_cache.enable(self.compile_cache_dir or None)
        else:
            compile_cache.disable()

    def on_event(self, label_lines: Callable | None = None) -> Callable:
        """What the loop reports to: a progress bar when ``progress``, then ``label_lines``."""
        bar = ProgressBar(self.progress)

        def report(event):
            bar(event)
            if label_lines is not None:
                label_lines(event)
        return interruptible(report)


@dataclasses.dataclass(frozen=True)
class RunSettings(RunOptions):
    """Settings every strategy-comparison module shares. Each module subclasses it with its own
    defaults and adds its own fields.

    ``benchmark`` is any name of :func:`jaxcl.data.load_benchmark`: ``synthetic`` (no download;
    the study's Split-CIFAR100 shape, 20 experiences x 5 classes of 32x32 images) or a real one
    (``split_cifar100``, ``split_tinyimagenet``, ``noisy_cifar``, ``cross_dataset``,
    ``split_fashion_mnist``) read through TFDS from ``data_dir``, prepared from the original files
    in ``manual_dir`` when offline (empty: TFDS's default folder, no manual folder).
    ``datasets`` names the experiences' datasets of ``cross_dataset`` (empty: its default).
    Your own data: ``image_folder`` reads the folder ``data_path`` (``data_path/train/<class>/``
    and ``data_path/test/<class>/`` of .png, .jpg, .jpeg or .ppm images, resized to
    ``image_size``), ``arrays`` the ``.npz`` file ``data_path`` (``x_train, y_train, x_test,
    y_test``, optionally ``tasks``, its class split); ``class_order`` gives their classes in
    experience order (empty: drawn from the seed).
    ``num_tasks`` and ``classes_per_task`` at 0 keep the benchmark's own shape; ``image_size``
    shapes the synthetic streams and ``image_folder``, ``noise`` the synthetic streams only.
    ``train_per_class`` and ``test_per_class`` are the synthetic streams' examples per class
    (0: 500 and 100, Split-CIFAR100's) and, on real split benchmarks, at most that many per
    class, drawn from the seed (0: all).
    ``rgb32`` brings Split-Fashion-MNIST to 32x32x3 for the slim ResNet.
    ``augment`` crops and flips every training minibatch on the device
    (:mod:`jaxcl.data.augment`). ``memory_size`` 0 is the study's buffer for the benchmark: 400
    for ``split_tinyimagenet``, else 200. ``norm`` is the ResNet's normalisation
    (:data:`jaxcl.learners.NORM_CHOICES`; ``reference``: each strategy's as in the reference
    implementation, :data:`jaxcl.learners.REFERENCE_NORMS`).

    The defaults are the study's settings (Hemati et al. 2023, Sec. 4 and App. A, and its
    reference implementation): Adam 1e-3, batch 64, 100 epochs per experience, random crop +
    flip, embedding 32 -> 50 -> 32 with lookup dimension d = 32, lambda = 0.5, first-order
    look-ahead (Table 2's setting), EWC lambda 1, LR buffers of 200 / 400 replayed with c = 1;
    except HN-k's settings for new tasks, jaxcl's (:data:`jaxcl.learners.HN_PRESETS`;
    ``--preset paper`` restores the paper's). ``devices`` trains data-parallel over that many devices;
    ``seeds_together`` trains all seeds as one vmapped program. With ``--out``, the run checkpoints
    after every experience, and every ``checkpoint_epochs`` epochs inside one if positive.
    ``tensorboard`` also writes the
    metrics as TensorBoard event files in ``OUT/tensorboard`` (the ``tensorboard`` extra)."""

    NOTES: typing.ClassVar[dict[str, str]] = {
        **RunOptions.NOTES,
        "benchmark": "built in, no download; the paper's Table 2 is split_cifar100 (our default "
                     "differs on purpose: a first run needs no data)",
        "seeds": "the paper reports 3 runs (--seeds 0 1 2)",
        "norm": "reference: each strategy's normalisation as in the reference implementation",
        "memory_size": "0: the paper's buffer, 200 (400 on split_tinyimagenet)",
        "new_task_init": "the paper's is copy_prev (--preset paper); ours learns new tasks at "
                         "small budgets, see docs/results/hn_learnability.md",
        "reg_warmup": "the paper's is 0 (--preset paper), see docs/results/hn_learnability.md",
        "hnet_init": "the paper's is torch (--preset paper), see docs/results/hn_learnability.md",
        "train_per_class": "0: synthetic 500, split_digits 100, real data all",
        "test_per_class": "0: synthetic 100, split_digits 50, real data all",
    }
    """``--help`` notes beside the defaults: why a default differs from the paper's setting."""

    HELP: typing.ClassVar[dict[str, str]] = {
        **RunOptions.HELP,
        "benchmark": "the stream: synthetic, synthetic_images, synthetic_noisy, split_cifar100, "
                     "split_tinyimagenet, noisy_cifar, cross_dataset, split_fashion_mnist, "
                     "split_digits (scikit-learn's 8x8 digits, offline); your "
                     "own data: image_folder (--data-path DIR holding DIR/train/<class>/*.png "
                     "(.jpg, .jpeg, .ppm) and DIR/test/<class>/...) or arrays (--data-path "
                     "FILE.npz holding x_train, y_train, x_test, y_test, optionally tasks), with "
                     "--num-tasks, --classes-per-task and --class-order",
        "data_dir": "TFDS's folder of prepared datasets, created if missing ('' : TFDS's "
                    "default)",
        "manual_dir": "a folder holding the datasets' original files, prepared offline; several "
                      "separated by ':', searched in order",
        "download": "let TFDS download a dataset that is neither prepared in --data-dir nor in "
                    "--manual-dir; --no-download refuses such a dataset at once (offline)",
        "data_path": "image_folder's folder or arrays' .npz file",
        "class_order": "image_folder's or arrays' classes in experience order (labels; an image "
                       "folder's sorted class folders are 0, 1, ...), a permutation or subset; "
                       "empty: drawn from the seed",
        "datasets": "cross_dataset's datasets, two or more of fashion_mnist, svhn, gtsrb, "
                    "cifar10, cifar100",
        "seeds": "one run per seed, each its own class order and initialisation; distinct",
        "epochs": "epochs per experience, >= 1",
        "batch_size": "training minibatch, >= 1 (also EWC's Fisher pass and LR's replay)",
        "eval_batch_size": "evaluation minibatch, >= 1",
        "learning_rate": "Adam's learning rate, > 0",
        "model": "resnet (slim ResNet-18) or mlp",
        "nf": "the ResNet's width (filters of its first stage), >= 1",
        "hidden": "the MLP's hidden widths, each >= 1",
        "norm": "the ResNet's normalisation: reference, batch, instance or running",
        "num_tasks": "experiences, >= 1, or all: the benchmark's own",
        "classes_per_task": "classes per experience, >= 1, or all: the benchmark's own",
        "image_size": "synthetic images' side and image_folder's (every image resized), >= 1",
        "train_per_class": "training examples per class, >= 0",
        "test_per_class": "test examples per class, >= 0",
        "rgb32": "bring Split-Fashion-MNIST to 32x32x3",
        "noise": "the synthetic streams' noise around each class prototype",
        "order": "look-ahead order of HN-k: 1, 2, or none (the regulariser on psi itself)",
        "preset": "HN-k's settings for new tasks, one of " + ", ".join(HN_PRESETS) + ": jaxcl "
                  "(the defaults below) or paper (the reference's: copy_prev, torch, 1, 0.0); "
                  "flags and --config win over it",
        "new_task_init": "how a new task's embedding starts: random (N(0, I)) or copy_prev "
                         "(the previous task's)",
        "hnet_init": "how the hypernetwork's trunk and heads start: lecun (each generated "
                     "kernel with the variance of Flax's LeCun-normal default) or torch "
                     "(PyTorch's Linear default, the reference's)",
        "task_lr_scale": "HN-k's learning rate for task embeddings and per-task tables, as a "
                         "multiple of --learning-rate, > 0",
        "reg_warmup": "the fraction of each later experience, at its start, with HN-k's "
                      "regulariser off, in [0, 1)",
        "coef": "lambda, the output regulariser's weight, >= 0",
        "chunk_dim": "d, the hypernetwork's lookup dimension per output channel, >= 1",
        "ewc_lambda": "EWC's lambda, >= 0",
        "memory_size": "LR-k's buffer entries, >= 0",
        "max_prev_tasks": "previous tasks HN-k regularises per step, >= 1",
        "augment": "random crop (padding 4) and horizontal flip of every training minibatch",
        "seeds_together": "train all seeds as one vmapped program",
        "steps_in": "python, scan or auto",
        "strategies": "strategy labels: Naive, EWC, Frozen-k (k 0..4), LR-k (k 1..4), HN-k "
                      "(k 1..4), HN-F",
        "k": "freeze depth: the stem and the first k stages of the ResNet (HN: 0..4, 0 is HN-F)",
        "depths": "freeze depths k, each 0..4",
        "kinds": "Frozen (plain ResNet, the paper's Figure 4) and/or HN",
    }
    """One line per option for ``--help``: what it does and what values it takes."""

    benchmark: str = "synthetic"
    data_dir: str = ""
    manual_dir: str = ""
    download: bool = True
    datasets: tuple[str, ...] = ()
    data_path: str = ""
    class_order: tuple[int, ...] = ()
    epochs: int = 100
    eval_batch_size: int = 256
    model: str = "resnet"
    nf: int = 20
    hidden: tuple[int, ...] = (64,)
    norm: str = "reference"
    num_tasks: int = 0
    classes_per_task: int = 0
    image_size: int = 32
    train_per_class: int = 0
    test_per_class: int = 0
    rgb32: bool = False
    noise: float = 1.0
    order: int | str = 1
    coef: float = 0.5
    preset: str = "jaxcl"
    new_task_init: str = HN_PRESETS["jaxcl"]["new_task_init"]
    hnet_init: str = HN_PRESETS["jaxcl"]["hnet_init"]
    task_lr_scale: float = HN_PRESETS["jaxcl"]["task_lr_scale"]
    reg_warmup: float = HN_PRESETS["jaxcl"]["reg_warmup"]
    chunk_dim: int = 32
    ewc_lambda: float = 1.0
    memory_size: int = 0
    max_prev_tasks: int = 20
    augment: bool = True
    seeds_together: bool = True

    def __post_init__(self):
        from jaxcl.data import check_benchmark

        super().__post_init__()
        if not self.hidden or any(not (isinstance(w, int) and w >= 1) for w in self.hidden):
            raise ValueError(f"hidden must be one or more positive widths, got {list(self.hidden)}")
        for name in ("eval_batch_size", "image_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("num_tasks", "classes_per_task", "memory_size",
                     "train_per_class", "test_per_class"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{name} must be a positive integer (or 0, the default), got "
                                 f"{value!r}")
        if len(set(self.class_order)) != len(self.class_order):
            raise ValueError(f"class_order {list(self.class_order)} repeats a class")
        if self.preset not in self.PRESETS:
            raise ValueError(f"preset={self.preset!r} is not one of {tuple(self.PRESETS)}")
        check_benchmark(self.benchmark, self.stream_options(),
                        data_dir=self.data_dir or None, manual_dir=self.manual_dir or None)
        for label in self.labels():
            self.strategy(label)  # every strategy setting is checked before any work
        self.check_memory()

    ACTIVATION_MAPS: typing.ClassVar[int] = 4
    """Full-resolution activation maps per image the slim ResNet keeps for its backward pass, at
    least (the stem's convolution, normalisation and ReLU, and the first block's input): the
    lower bound :meth:`check_memory` counts."""

    def memory_estimate(self) -> dict[str, int]:
        """Bytes this run needs at least, by what needs them, where the image size sets it (the
        synthetic streams and image folders): the stream on the device (float32 images, the
        synthetic ones' class prototypes too) and one minibatch's full-resolution activations
        (the ResNet: ``ACTIVATION_MAPS`` maps of ``nf`` channels; the MLP: its first layer's
        weights with their gradient and Adam's two moments). Empty where the benchmark fixes
        the image size."""
        from jaxcl.data import SYNTHETIC

        if "image_size" in self.unused():
            return {}
        pixels, out = self.image_size ** 2, {}
        if self.benchmark in SYNTHETIC:
            tasks = 4 if self.benchmark == "synthetic_noisy" else (self.num_tasks or 20)
            images = tasks * (self.classes_per_task or 5) * (
                (self.train_per_class or 500) + (self.test_per_class or 100) + 1)
            out["the synthetic stream"] = 4 * images * pixels * 3
        if self.model == "resnet":
            out["one minibatch's activations"] = (4 * self.batch_size * pixels * self.nf
                                                  * self.ACTIVATION_MAPS)
        else:
            out["the MLP's first layer with its gradient and Adam's moments"] = (
                4 * 4 * pixels * 3 * self.hidden[0])
        return out

    def check_memory(self) -> None:
        """Refuse, before any data is made or anything compiles, a run whose
        :meth:`memory_estimate` exceeds the default device's memory (its allocator's limit on
        an accelerator, the host's physical memory on CPU), naming the option and the bytes:
        XLA would otherwise abort the process with no line of its own."""
        need = self.memory_estimate()
        total = sum(need.values())
        limit = device_memory()
        if total > limit:
            parts = ", ".join(f"{what} {_gib(n)}" for what, n in need.items())
            raise ValueError(
                f"image_size={self.image_size} needs at least {_gib(total)} ({parts}); the "
                f"device holds {_gib(limit)}: use a smaller --image-size" + (
                    ", fewer --train-per-class or --num-tasks" if len(need) > 1 else ""))

    def labels(self) -> tuple[str, ...]:
        """The strategy labels the module trains (overridden by modules)."""
        return ()

    SET_BY_MODULE: typing.ClassVar[dict[str, str]] = {}
    """Shared settings a module sets itself for every strategy it trains, each with how (e.g.
    ``first_vs_second_order`` trains order 1 beside order 2): a value given has no effect."""

    HN_ONLY: typing.ClassVar[tuple[str, ...]] = (
        "order", "coef", "chunk_dim", "max_prev_tasks", "preset", "new_task_init", "hnet_init",
        "task_lr_scale", "reg_warmup")
    """The settings only HN-k reads."""

    def unused(self) -> dict[str, str]:
        """Every setting that has no effect on this run, each with why: the module sets it
        (:attr:`SET_BY_MODULE`), the benchmark does not take it, no strategy reads it, or the
        model has no such part. A flag naming one is refused (:func:`parse_config`);
        ``config.json`` lists them under ``"unused"``, so that it says exactly what ran."""
        from jaxcl.data import BENCHMARK_OPTIONS, OWN_DATA, SYNTHETIC
        from jaxcl.learners import LABELS

        out = dict(self.SET_BY_MODULE)
        takes = BENCHMARK_OPTIONS.get(self.benchmark, ())
        for name in ("image_size", "noise"):
            if name not in takes:
                out[name] = f"benchmark {self.benchmark} does not take it"
        if self.benchmark in (*SYNTHETIC, *OWN_DATA, "split_digits"):
            out["download"] = f"benchmark {self.benchmark} downloads nothing"
        labels = self.labels()
        kinds = {LABELS.get(label.split("-")[0]) for label in labels}
        named = ", ".join(labels)
        for kind, names, what in (("hypernetwork", self.HN_ONLY, "HN-k"), ("ewc", ("ewc_lambda",),
                                  "EWC"), ("latent_replay", ("memory_size",), "LR-k")):
            if kind not in kinds:
                out.update({n: f"no {what} among the strategies ({named})" for n in names
                            if n not in out})
        if self.model != "resnet":
            out.update(nf=f"model {self.model} is not the ResNet",
                       norm=f"model {self.model} has no normalisation")
        if self.model != "mlp":
            out["hidden"] = f"model {self.model} is not the MLP"
        return out

    PARSE: typing.ClassVar[dict[str, Callable[[str], Any]]] = {"order": parse_order}

    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = HN_PRESETS
    """``--preset NAME``: HN-k's new-task settings (:data:`jaxcl.learners.HN_PRESETS`), under
    the file's and the flags' (:func:`parse_config`)."""
    """Options whose command-line text is parsed by a function of their own, not their type."""

    ALL_WHEN_ZERO: typing.ClassVar[tuple[str, ...]] = ("num_tasks", "classes_per_task")
    """Counts whose 0 means "the benchmark's own": ``all`` on the command line, 0 refused."""

    DATA_SOURCE: typing.ClassVar[tuple[str, ...]] = ("data_dir", "manual_dir", "download")

    NO_EFFECT: typing.ClassVar[tuple[str, ...]] = (*RunOptions.NO_EFFECT, *DATA_SOURCE, "preset")
    """Settings that cannot change a number: where the data are read from (their content is
    fingerprinted instead), how often checkpoints are taken (a resumed run ends bitwise equal to
    an uninterrupted one), event files and progress bars."""

    def fingerprint(self) -> dict[str, Any]:
        """Every shared setting that can change a number (all of :class:`RunSettings` but
        ``NO_EFFECT``; a module's own fields choose strategies, whose settings the checkpoint
        holds apart): part of every checkpoint's fingerprint (:func:`run_strategies`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(RunSettings)
                if f.name not in self.NO_EFFECT}

    def strategy(self, label: str, **overrides) -> StrategyConfig:
        """The :class:`StrategyConfig` for ``label`` with these settings."""
        shared = {name: getattr(self, name) for name in (
            "model", "nf", "hidden", "norm", "learning_rate", "batch_size", "ewc_lambda",
            "order", "coef", "chunk_dim", "max_prev_tasks", "new_task_init", "hnet_init",
            "task_lr_scale", "reg_warmup")}
        shared["memory_size"] = self.memory_size or (
            400 if self.benchmark == "split_tinyimagenet" else 200)
        return StrategyConfig.from_label(label, **{**shared, **overrides})

    def train(self, strategies: dict[str, StrategyConfig], out: pathlib.Path | None = None):
        """:func:`run_strategies` with these settings, checkpointed in ``out``'s
        ``checkpoints/`` when given: ``(records, steps)``."""
        arrays: dict = {}  # every seed's stream reads a TFDS dataset once
        return run_strategies(strategies, lambda seed: self.stream(seed, cache=arrays),
                              seeds=self.seeds, epochs=self.epochs,
                              batch_size=self.batch_size, eval_batch_size=self.eval_batch_size,
                              progress=self.progress, augment=self.augment,
                              devices=self.devices, seeds_together=self.seeds_together,
                              checkpoint_epochs=self.checkpoint_epochs, steps_in=self.steps_in,
                              options=self.fingerprint(),
                              checkpoints=None if out is None else
                              pathlib.Path(out) / run_folder.CHECKPOINTS,
                              tensorboard=pathlib.Path(out) / "tensorboard"
                              if out is not None and self.tensorboard else None)

    def title(self, experiment: str, what: str = "") -> str:
        what = f"{what}, " if what else ""
        shape = "".join(f", {n} {getattr(self, n)}" for n in ("num_tasks", "classes_per_task")
                        if getattr(self, n))
        return (f"{experiment}: {what}{self.benchmark}{shape}, {self.model}, {self.epochs} "
                f"epochs, seeds {list(self.seeds)}")

    def finish(self, out, experiment: str, records: dict, steps: dict, table: str, *,
               what: str = "", **kwargs) -> dict:
        """:func:`finish` with these settings' seeds and title: print the table, write the run
        folder, return ``metrics.json``'s content (``kwargs``: ``extra``, ``extra_files``,
        ``paper``)."""
        return finish(out, experiment=experiment, config=self, seeds=self.seeds, records=records,
                      steps=steps, title=self.title(experiment, what), table=table, **kwargs)

    def stream_options(self) -> dict[str, Any]:
        """The options :func:`jaxcl.data.load_benchmark` gets: the shape where set, your own
        data's ``path`` and ``class_order``, and the synthetic streams' own settings."""
        from jaxcl.data import SYNTHETIC

        options = {n: getattr(self, n) for n in ("num_tasks", "classes_per_task", "datasets",
                                                 "class_order", "train_per_class",
                                                 "test_per_class", "rgb32")
                   if getattr(self, n)}
        if self.data_path:
            options["path"] = self.data_path
        if self.benchmark == "image_folder":
            options["image_size"] = self.image_size
        if self.benchmark in SYNTHETIC:
            options.update(image_size=self.image_size, noise=self.noise,
                           train_per_class=self.train_per_class or 500,
                           test_per_class=self.test_per_class or 100)
        return options

    def stream(self, seed: int, cache: dict | None = None) -> list[Experience]:
        """The benchmark's stream for ``seed``; ``cache`` keeps the arrays of TFDS datasets
        read (:func:`jaxcl.data.load_benchmark`)."""
        from jaxcl.data import load_benchmark

        return load_benchmark(self.benchmark, seed=seed, data_dir=self.data_dir or None,
                              manual_dir=self.manual_dir or None, download=self.download,
                              cache=cache,
                              **self.stream_options())


@dataclasses.dataclass(frozen=True)
class HypernetSettings(RunSettings):
    """Settings of modules that compare variants of one HN-k (k = 0 is HN-F)."""

    k: int = 3

    def labels(self):
        return (f"HN-{self.k}",) if self.k else ("HN-F",)


QUICK_SETTINGS = {"model": "mlp", "num_tasks": 3, "classes_per_task": 2, "image_size": 8,
                  "train_per_class": 40, "test_per_class": 20, "epochs": 2, "batch_size": 16,
                  "memory_size": 12, "augment": False, "chunk_dim": 8, "progress": False}
