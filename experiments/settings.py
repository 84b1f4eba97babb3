"""The experiment modules' settings, as data: the run's options and the data's settings, each a
section checked by its own ``__post_init__``, and :class:`StrategyRun`, the config every
strategy-comparison module extends with the fields that say what it runs.

A config holds sections by owner (:mod:`jaxcl.config`): ``run`` (:class:`RunOptions`: seeds, the
training's length, how the run is carried out), ``data`` (:class:`DataSettings`: the stream) and
``strategy`` (:class:`jaxcl.learners.StrategyConfig`: the settings every strategy it trains
shares). Every setting is defined once, with its help; ``experiments.flags`` makes a flag of each.
What runs these configs is :mod:`experiments.runner`.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any

import jax

from jaxcl.config import check_distinct, repeated, section, setting
from jaxcl.io.event_logs import summary_writer
from jaxcl.learners import HN_PRESETS, LABELS, REFERENCE_SETUP, StrategyConfig
from jaxcl.learners.strategies import PAPER_MEMORY_SIZE
from jaxcl.train.parallel import check_devices
from jaxcl.train.steps import STEPS_IN


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Seeds, the training's length, and how the run is carried out.

    How: devices, the loop, checkpoints, event files, progress bars, the compilation cache."""

    seeds: tuple[int, ...] = setting(
        (0,), "one run per seed, each its own data order and initialisation; distinct")
    epochs: int = setting(1, "epochs per experience, >= 1")
    devices: int = setting(1, "data-parallel over this many devices (dividing the batch)")
    steps_in: str = setting("auto", "python, scan or auto",
                            note="auto is python on CPU, where a convolution's gradient inside "
                                 "an XLA loop is 20-45x slower, and scan elsewhere")
    checkpoint_epochs: int = setting(
        0, "also checkpoint every N epochs inside an experience; 0: after experiences only",
        effect="run")
    checkpoint_seconds: float = setting(
        0.0, "write a checkpoint only once this many seconds have passed since the last one "
        "(or the start); 0: at the end of every experience (and every checkpoint_epochs)",
        effect="run")
    keep_checkpoints: bool = setting(
        False, "keep OUT/checkpoints after the run has finished (they are there to resume an "
        "unfinished run)", effect="run")
    tensorboard: bool = setting(False, "also write TensorBoard event files in OUT/tensorboard",
                                effect="run")
    progress: bool = setting(True, "progress bars", effect="run")
    workers: int = setting(
        1, "train this many models at once, each in its own thread (0: one per CPU core); the "
        "numbers are the same", effect="run")
    compile_cache: bool = setting(
        True, "keep compiled programs on disk and load them in later runs (JAX's persistent "
        "compilation cache; the numbers are the same)", effect="run")
    compile_cache_dir: str = setting(
        "", "the cache's folder; empty: $JAXCL_COMPILE_CACHE, else ~/.cache/jaxcl/jax",
        effect="run")

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if repeated(self.seeds):
            raise ValueError(f"seeds {list(self.seeds)} name {sorted(repeated(self.seeds))} more "
                             "than once; a seed trained twice gives the same numbers twice (a "
                             "false '± 0')")
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.checkpoint_epochs, int) and self.checkpoint_epochs >= 0):
            raise ValueError(f"checkpoint_epochs must be a positive integer (or 0, the "
                             f"default), got {self.checkpoint_epochs!r}")
        if not (isinstance(self.checkpoint_seconds, (int, float))
                and self.checkpoint_seconds >= 0):
            raise ValueError(f"checkpoint_seconds must be a number >= 0, got "
                             f"{self.checkpoint_seconds!r}")
        if not (isinstance(self.workers, int) and self.workers >= 0):
            raise ValueError(f"workers must be a non-negative integer (0: one per CPU core), "
                             f"got {self.workers!r}")
        if self.steps_in not in STEPS_IN:  # the name only: "auto" needs the backend, not yet
            raise ValueError(f"steps_in must be one of {STEPS_IN}, got {self.steps_in!r}")
        if self.tensorboard:
            summary_writer()


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The stream: its benchmark, shape and options, and where its files are read from.

    A benchmark of :func:`jaxcl.data.load_benchmark`. ``synthetic`` needs no download (the
    study's Split-CIFAR100 shape, 20 experiences x 5 classes of 32x32 images); real benchmarks
    are read through TFDS; your own data are an image folder or an ``.npz`` file."""

    benchmark: str = setting(
        "synthetic", "the stream: synthetic, synthetic_images, synthetic_noisy, split_cifar100, "
        "split_tinyimagenet, noisy_cifar, noisy_fashion_mnist, cross_dataset, split_fashion_mnist, "
        "split_digits "
        "(scikit-learn's 8x8 digits, offline); your own data: image_folder (--data-path DIR "
        "holding DIR/train/<class>/*.png (.jpg, .jpeg, .ppm) and DIR/test/<class>/...) or arrays "
        "(--data-path FILE.npz holding x_train, y_train, x_test, y_test, optionally tasks), with "
        "--num-tasks, --classes-per-task and --class-order",
        note="built in, no download; the paper's Table 2 is split_cifar100 (our default differs "
             "on purpose: a first run needs no data)")
    data_dir: str = setting("", "TFDS's folder of prepared datasets, created if missing ('' : "
                            "TFDS's default)", effect="source")
    manual_dir: str = setting("", "a folder holding the datasets' original files, prepared "
                              "offline; several separated by ':', searched in order",
                              effect="source")
    download: bool = setting(True, "let TFDS download a dataset that is neither prepared in "
                             "--data-dir nor in --manual-dir; --no-download refuses such a "
                             "dataset at once (offline)", effect="source")
    datasets: tuple[str, ...] = setting((), "cross_dataset's datasets, two or more of "
                                        "fashion_mnist, svhn, gtsrb, cifar10, cifar100, digits "
                                        "(scikit-learn's, offline)")
    data_path: str = setting("", "image_folder's folder or arrays' .npz file")
    class_order: tuple[int, ...] = setting(
        (), "image_folder's or arrays' classes in experience order (labels; an image folder's "
        "sorted class folders are 0, 1, ...), a permutation or subset; empty: drawn from the "
        "seed")
    num_tasks: int = setting(0, "experiences, >= 1, or all: the benchmark's own",
                             all_when_zero=True)
    classes_per_task: int = setting(0, "classes per experience, >= 1, or all: the benchmark's "
                                    "own", all_when_zero=True)
    image_size: int = setting(32, "synthetic images' side and image_folder's (every image "
                              "resized), >= 1")
    train_per_class: int = setting(0, "training examples per class, >= 0",
                                   note="0: synthetic 500, split_digits 100, real data all")
    test_per_class: int = setting(0, "test examples per class, >= 0",
                                  note="0: synthetic 100, split_digits 50, real data all")
    rgb32: bool = setting(False, "bring Split-Fashion-MNIST to 32x32x3")
    noise: float = setting(1.0, "the synthetic streams' noise around each class prototype")
    clean: bool = setting(False, "the noisy streams (noisy_cifar, noisy_fashion_mnist, "
                          "synthetic_noisy) without their corruptions: the paper's normal stream "
                          "of Table 1, the same classes and images")
    augment: bool = setting(True, "random crop (padding 4) and horizontal flip of every "
                            "training minibatch")
    crop: bool = setting(True, "--augment's random crop beside its flip; --no-crop: flips "
                         "only", note="the reference flips Split-TinyImageNet only")
    resize: int = setting(0, "Split-TinyImageNet's images brought to this side (bilinear), >= 0",
                          note="0: its own 64, as the paper's text says; the reference's code "
                               "runs 32")

    def __post_init__(self):
        from jaxcl.data import check_benchmark

        if not (isinstance(self.image_size, int) and self.image_size >= 1):
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        for name in ("num_tasks", "classes_per_task", "train_per_class", "test_per_class",
                     "resize"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{name} must be a positive integer (or 0, the default), got "
                                 f"{value!r}")
        if repeated(self.class_order):
            raise ValueError(f"class_order {list(self.class_order)} repeats a class")
        check_benchmark(self.benchmark, stream_options(self),
                        data_dir=self.data_dir or None, manual_dir=self.manual_dir or None)


def stream_options(data: DataSettings) -> dict[str, Any]:
    """The options :func:`jaxcl.data.load_benchmark` gets: the shape where set, your own data's
    ``path`` and ``class_order``, and the synthetic streams' own settings."""
    from jaxcl.data import SYNTHETIC

    options = {n: getattr(data, n) for n in ("num_tasks", "classes_per_task", "datasets",
                                             "class_order", "train_per_class", "test_per_class",
                                             "rgb32", "clean", "resize") if getattr(data, n)}
    if data.data_path:
        options["path"] = data.data_path
    if data.benchmark == "image_folder":
        options["image_size"] = data.image_size
    if data.benchmark in SYNTHETIC:
        options.update(image_size=data.image_size, noise=data.noise,
                       train_per_class=data.train_per_class or 500,
                       test_per_class=data.test_per_class or 100)
    return options


@dataclasses.dataclass(frozen=True)
class StrategyRun:
    """The config of a module that trains strategies over a seeded stream: the run's options,
    the data, the settings every strategy shares, and the runner's own. Each module subclasses
    it with the fields that say what it trains (:meth:`labels`) and its own defaults.

    The defaults are the study's settings (Hemati et al. 2023, Sec. 4 and App. A, and its
    reference implementation): Adam 1e-3, batch 64, 100 epochs per experience, random crop +
    flip, embedding 32 -> 50 -> 32 with lookup dimension d = 32, lambda = 0.5, first-order
    look-ahead (Table 2's setting), EWC lambda 1, LR buffers of 200 / 400 replayed with c = 1;
    except HN-k's settings for new tasks, jaxcl's (:data:`jaxcl.learners.HN_PRESETS`;
    ``--preset paper`` restores the paper's)."""

    NOTES: typing.ClassVar[dict[str, str]] = {
        "seeds": "the paper reports 3 runs (--seeds 0 1 2)"}
    """A module's ``--help`` notes beside its own defaults, over the settings' own."""

    SET_BY_MODULE: typing.ClassVar[dict[str, str]] = {}
    """Shared settings a module sets itself for every strategy it trains, each with how (e.g.
    ``first_vs_second_order`` trains order 1 beside order 2): a value given has no effect."""

    SYNTHETIC_OPTIONS: typing.ClassVar[dict[str, Any]] = {}
    """Options a module gives the synthetic streams where the data settings give none (e.g.
    ``freeze_depth``: two experiences)."""

    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {
        name: {**HN_PRESETS[name], **REFERENCE_SETUP[name]} for name in HN_PRESETS}
    """``--preset NAME``: HN-k's new-task settings and the rest of the reference's setup where
    jaxcl differs (:data:`jaxcl.learners.REFERENCE_SETUP`), under the file's and the flags'."""

    run: RunOptions = section(RunOptions, epochs=100)
    data: DataSettings = section(DataSettings)
    strategy: StrategyConfig = section(StrategyConfig)
    preset: str = setting("jaxcl", "HN-k's settings for new tasks and the reference's setup, one "
                          "of " + ", ".join(HN_PRESETS) + ": jaxcl (the defaults below) or paper "
                          "(the reference's: copy_prev, torch, 1, 0.0; LR-k's lower part in "
                          "training mode, Avalanche's quotas; 10 HN outputs); flags and --config "
                          "win over it", effect="selection")
    eval_batch_size: int = setting(256, "evaluation minibatch, >= 1")
    seeds_together: bool = setting(True, "train all seeds as one vmapped program")

    def __post_init__(self):
        check_distinct(self)
        if self.preset not in HN_PRESETS:
            raise ValueError(f"preset={self.preset!r} is not one of {tuple(HN_PRESETS)}")
        if not (isinstance(self.eval_batch_size, int) and self.eval_batch_size >= 1):
            raise ValueError(f"eval_batch_size must be a positive integer, got "
                             f"{self.eval_batch_size!r}")
        check_devices(self.run.devices, self.strategy.batch_size)
        for label in self.labels():
            strategy_for(self, label)  # every strategy setting is checked before any work
        check_memory(self)

    def labels(self) -> tuple[str, ...]:
        """The strategy labels the module trains."""
        return ()

    def unused(self) -> dict[str, str]:
        """Every setting that has no effect on this run, each with why: the module sets it
        (:attr:`SET_BY_MODULE`), the benchmark does not take it, no strategy reads it, or the
        model has no such part. A flag naming one is refused (``experiments.flags``);
        ``config.json`` lists them under ``"unused"``, so that it says exactly what ran."""
        from jaxcl.data import BENCHMARK_OPTIONS, OWN_DATA, SYNTHETIC

        out = dict(self.SET_BY_MODULE)
        data, strategy = self.data, self.strategy
        takes = BENCHMARK_OPTIONS.get(data.benchmark, ())
        for name in ("image_size", "noise", "clean", "resize"):
            if name not in takes:
                out[name] = f"benchmark {data.benchmark} does not take it"
        if not data.augment:
            out["crop"] = "--no-augment: no minibatch is cropped or flipped"
        if data.benchmark in (*SYNTHETIC, *OWN_DATA, "split_digits"):
            out["download"] = f"benchmark {data.benchmark} downloads nothing"
        labels = self.labels()
        kinds = {LABELS.get(label.split("-")[0]) for label in labels}
        named = ", ".join(labels)
        for kind, names, what in (("hypernetwork", HN_ONLY, "HN-k"),
                                  ("ewc", ("ewc_lambda",), "EWC"),
                                  ("latent_replay", LR_ONLY, "LR-k")):
            if kind not in kinds:
                out.update({n: f"no {what} among the strategies ({named})" for n in names
                            if n not in out})
        if not kinds & {"hypernetwork", "latent_replay"} and "preset" not in out:
            out["preset"] = f"no HN-k or LR-k among the strategies ({named})"
        if strategy.model != "resnet":
            out.update(nf=f"model {strategy.model} is not the ResNet",
                       norm=f"model {strategy.model} has no normalisation",
                       conv=f"model {strategy.model} has no convolution")
        if strategy.model != "mlp":
            out["hidden"] = f"model {strategy.model} is not the MLP"
        return out


HN_ONLY = ("order", "coef", "chunk_dim", "max_prev_tasks", "embedding_dim", "new_task_init",
           "hnet_init", "task_lr_scale", "reg_warmup", "hn_outputs")
"""The settings only HN-k reads."""
LR_ONLY = ("memory_size", "replay_coef", "lower_train", "buffer_quotas")
"""The settings only LR-k reads."""


def strategy_for(config: StrategyRun, label: str, **overrides: Any) -> StrategyConfig:
    """The :class:`StrategyConfig` of ``label`` with ``config``'s shared settings and
    ``overrides``; LR-k's buffer at 0 becomes the benchmark's (400 on Split-TinyImageNet, else
    200)."""
    shared = {f.name: getattr(config.strategy, f.name) for f in dataclasses.fields(StrategyConfig)
              if f.metadata.get("flag", True)}
    shared["memory_size"] = config.strategy.memory_size or (
        400 if config.data.benchmark == "split_tinyimagenet" else PAPER_MEMORY_SIZE)
    return StrategyConfig.from_label(label, **{**shared, **overrides})


@dataclasses.dataclass(frozen=True)
class HypernetRun(StrategyRun):
    """The config of modules that compare variants of one HN-k (k = 0 is HN-F)."""

    k: int = setting(3, "freeze depth: the stem and the first k stages of the ResNet (HN: 0..4, "
                        "0 is HN-F)", effect="selection")

    def labels(self):
        return (f"HN-{self.k}",) if self.k else ("HN-F",)


QUICK_SETTINGS = {"model": "mlp", "num_tasks": 3, "classes_per_task": 2, "image_size": 8,
                  "train_per_class": 40, "test_per_class": 20, "epochs": 2, "batch_size": 16,
                  "memory_size": 12, "augment": False, "chunk_dim": 8, "progress": False}
"""``--quick``: a stream and models small enough to run every module in seconds."""


def title(config: StrategyRun, experiment: str, what: str = "") -> str:
    """The line above a module's table: what ran, on which stream, how long, which seeds."""
    what = f"{what}, " if what else ""
    data = config.data
    shape = "".join(f", {n} {getattr(data, n)}" for n in ("num_tasks", "classes_per_task")
                    if getattr(data, n))
    return (f"{experiment}: {what}{data.benchmark}{shape}, {config.strategy.model}, "
            f"{config.run.epochs} epochs, seeds {list(config.run.seeds)}")


def device_memory() -> int:
    """Bytes this process's first device can hold: its allocator's limit on an accelerator, the
    host's physical memory on CPU (whose device reports none)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(n: int) -> str:
    return f"{n / 2**40:.1f} TiB" if n >= 2**40 else f"{n / 2**30:.1f} GiB"


ACTIVATION_MAPS = 4
"""Full-resolution activation maps per image the slim ResNet keeps for its backward pass, at
least (the stem's convolution, normalisation and ReLU, and the first block's input): the lower
bound :func:`check_memory` counts."""


def memory_estimate(config: StrategyRun) -> dict[str, int]:
    """Bytes the run needs at least, by what needs them, where the image size sets it (the
    synthetic streams and image folders): the stream on the device (float32 images, the
    synthetic ones' class prototypes too) and one minibatch's full-resolution activations (the
    ResNet: :data:`ACTIVATION_MAPS` maps of ``nf`` channels; the MLP: its first layer's weights
    with their gradient and Adam's two moments). Empty where the benchmark fixes the image
    size."""
    from jaxcl.data import SYNTHETIC

    data, strategy = config.data, config.strategy
    if "image_size" in config.unused():
        return {}
    pixels, out = data.image_size ** 2, {}
    if data.benchmark in SYNTHETIC:
        tasks = 4 if data.benchmark == "synthetic_noisy" else (data.num_tasks or 20)
        images = tasks * (data.classes_per_task or 5) * (
            (data.train_per_class or 500) + (data.test_per_class or 100) + 1)
        out["the synthetic stream"] = 4 * images * pixels * 3
    if strategy.model == "resnet":
        out["one minibatch's activations"] = (4 * strategy.batch_size * pixels * strategy.nf
                                              * ACTIVATION_MAPS)
    else:
        out["the MLP's first layer with its gradient and Adam's moments"] = (
            4 * 4 * pixels * 3 * strategy.hidden[0])
    return out


def check_memory(config: StrategyRun) -> None:
    """Refuse, before any data is made or anything compiles, a run whose
    :func:`memory_estimate` exceeds the default device's memory (its allocator's limit on an
    accelerator, the host's physical memory on CPU), naming the option and the bytes: XLA would
    otherwise abort the process with no line of its own."""
    need = memory_estimate(config)
    total = sum(need.values())
    limit = device_memory()
    if total > limit:
        parts = ", ".join(f"{what} {_gib(n)}" for what, n in need.items())
        raise ValueError(
            f"image_size={config.data.image_size} needs at least {_gib(total)} ({parts}); the "
            f"device holds {_gib(limit)}: use a smaller --image-size" + (
                ", fewer --train-per-class or --num-tasks" if len(need) > 1 else ""))


__all__ = ["DataSettings", "HypernetRun", "QUICK_SETTINGS", "RunOptions", "StrategyRun",
           "check_memory", "memory_estimate", "stream_options", "strategy_for", "title"]
