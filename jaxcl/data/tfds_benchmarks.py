"""Real benchmarks through TensorFlow Datasets, online or offline, as the engine's experiences.

``load_benchmark(name, seed=..., data_dir=..., manual_dir=..., download=..., cache=...)`` (through
:func:`jaxcl.data.load_benchmark`, which also serves ``synthetic_images``) returns a list of
:class:`jaxcl.data.synthetic_images.Experience` on the device:

* ``split_cifar100``: TFDS ``cifar100``, 20 experiences x 5 classes (the study's Split-CIFAR100).
* ``noisy_cifar``: the study's noisy stream (Section 4.2) on CIFAR-100, 4 experiences x 5
  classes, each corrupted by its transform of :mod:`jaxcl.data.transforms`.
* ``split_fashion_mnist``: Fashion-MNIST, 5 experiences x 2 classes, 28x28x1.
* ``noisy_fashion_mnist``: the noisy stream on Fashion-MNIST at 32x32x3, 4 experiences x 2
  classes. Both noisy streams take ``clean=True``: the same classes and images uncorrupted, the
  paper's normal stream of Table 1.

Every split draws its class order from ``seed`` (``jax.random.permutation``), gives each
experience its classes' training and test examples, labels restarting at 0, and normalises the
images per channel with the mean and standard deviation of the whole training split,
``x = (u8 / 255 - mean) / std`` (:mod:`jaxcl.data.splits`, which user data shares).

Where the data comes from, in this order: a TFDS-prepared copy in ``data_dir`` (TFDS caches it
there and reuses it, and creates the folder when it does not exist yet); the original files in
``manual_dir``, prepared with no network access; a TFDS download, unless ``download=False``.
``manual_dir`` may name several folders (a sequence, or one string separated by ``os.pathsep``,
``a:b``), searched in order: each dataset is prepared from the first that holds all its files, so
the cross-dataset stream's archives need not be gathered into one folder. The loader never
probes the network: with ``download=False`` a dataset that is not prepared fails at once, and a
download that fails (at its first connection error: TFDS's retries are off, see
``_no_retries``) fails with the same :class:`DataNotAvailableError`, naming the dataset,
``data_dir``, ``manual_dir``, the files expected there and how to prepare the data offline.

Nothing is kept between calls behind the caller's back: the arrays read from a prepared dataset
are kept only in a ``cache`` the caller passes (a dict, e.g. one per run, so that a stream built
for every seed reads each dataset from TFDS once).

The builders of datasets TFDS's catalogue lacks, or reads from other files, are in
:mod:`jaxcl.data.tfds_builders`.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcl.data import manual_folders
from jaxcl.data.splits import (
    channel_stats,
    check_split,
    class_experience,
    per_class_subset,
    split_stream,
)
from jaxcl.data.tfds_builders import (
    FASHION_MNIST_FILES,
    GTSRB_ZIPS,
    TINY_IMAGENET_ZIP,
    tfds,
)
from jaxcl.types import Experience


class DataNotAvailableError(FileNotFoundError):
    """A dataset is neither prepared, nor in the manual directory, nor downloaded."""


ArrayCache = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
"""A prepared dataset's folder -> its splits as read-only arrays (:func:`_arrays`)."""


class Source(NamedTuple):
    """Where a benchmark's data comes from (module docstring): TFDS's ``data_dir`` (its default
    when ``None``), the ``manual_dir`` of original files, whether TFDS may ``download``, and the
    caller's ``cache`` of arrays already read (``None``: read every time)."""

    data_dir: str | None = None
    manual_dir: str | Sequence[str] | None = None
    download: bool = True
    cache: ArrayCache | None = None


def _prepared_builder(name: str, expected: tuple[str, ...], source: Source, *,
                      downloadable: bool = True):
    """A TFDS builder whose data is prepared, preparing it from ``source.manual_dir`` or, for a
    ``downloadable`` dataset and ``source.download``, by a TFDS download."""
    builder = tfds.builder(name, data_dir=source.data_dir)
    if builder.is_prepared():
        return builder
    manual = _manual_with(expected, source)
    if manual is not None:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
        return builder

    def unavailable(why: str) -> DataNotAvailableError:
        instructions = builder.MANUAL_DOWNLOAD_INSTRUCTIONS
        return DataNotAvailableError(
            f"dataset {name!r} is not prepared in data_dir="
            f"{source.data_dir or '~/tensorflow_datasets'} and {why}; to prepare it offline, put "
            f"{', '.join(expected)} in a folder and pass it as manual_dir (got manual_dir="
            f"{source.manual_dir!r})" + (f". {instructions}" if instructions else ""))

    if not downloadable:
        raise unavailable("is not downloadable")
    if not source.download:
        raise unavailable("downloads are off (download=False)")
    try:
        with _no_retries():
            builder.download_and_prepare()
    except Exception as error:  # noqa: BLE001  (TFDS raises many kinds on a failed download)
        raise unavailable(f"its download failed ({type(error).__name__}: "
                          f"{(str(error).strip().splitlines() or [''])[0][:200]})") from error
    return builder


@contextlib.contextmanager
def _no_retries():
    """TFDS's downloads without their retries, while the block runs.

    TFDS retries every HTTP request ten times with exponential back-off (urllib3's ``Retry``
    built from ``downloader.MAX_RETRIES``): with no network, 205 s of waiting before a failure
    that was certain at the first connection error. TFDS offers no other setting for it.
    """
    from tensorflow_datasets.core.download import downloader

    saved = downloader.MAX_RETRIES
    downloader.MAX_RETRIES = 0
    try:
        yield
    finally:
        downloader.MAX_RETRIES = saved


def _manual_with(expected: tuple[str, ...], source: Source) -> pathlib.Path | None:
    """The first folder of ``source.manual_dir`` that holds every file of ``expected``."""
    return next((folder for folder in manual_folders(source.manual_dir)
                 if all((folder / f).exists() for f in expected)), None)


def _split(builder, source: Source, seed, num_tasks, classes_per_task, corrupt=None, *,
           rgb32=False, train_per_class=0, test_per_class=0, side=0) -> list[Experience]:
    arrays = _arrays(builder, source.cache)
    if rgb32:
        arrays = {split: (to_rgb32(x), y) for split, (x, y) in arrays.items()}
    if side:
        arrays = {split: (resize(x, side), y) for split, (x, y) in arrays.items()}
    arrays = per_class_subset(arrays, {"train": train_per_class, "test": test_per_class}, seed)
    return split_stream(arrays, seed=seed, num_tasks=num_tasks,
                        classes_per_task=classes_per_task,
                        num_classes=builder.info.features["label"].num_classes, corrupt=corrupt)


def _arrays(builder, cache: ArrayCache | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x_u8, y), "test": (x_u8, y)}`` of a prepared builder (read-only arrays),
    taken from ``cache`` when it holds the builder's folder, and kept there when given."""
    folder = str(builder.data_dir)
    if cache is not None and folder in cache:
        return cache[folder]
    out = {}
    for split in ("train", "test"):
        # Batches rather than batch_size=-1: a dataset of unknown length (TFDS mock data)
        # cannot be read in one piece.
        batches = list(tfds.as_numpy(builder.as_dataset(split=split, batch_size=8192,
                                                        as_supervised=True)))
        x = np.concatenate([x for x, _ in batches])
        y = np.concatenate([y for _, y in batches]).astype(np.int32)
        x.flags.writeable = y.flags.writeable = False
        out[split] = (x, y)
    if cache is not None:
        cache[folder] = out
    return out


def _catalogue(name: str, files: tuple[str, ...]) -> Callable[[Source], Any]:
    """``builder(source)`` of the TFDS catalogue's ``name``, whose original ``files`` may lie in
    the manual folder."""
    return lambda source: _prepared_builder(name, files, source)


_cifar100 = _catalogue("cifar100", ("cifar-100-binary.tar.gz",))


def _split_cifar100(seed, source, num_tasks=20, classes_per_task=5, train_per_class=0,
                    test_per_class=0):
    return _split(_cifar100(source), source, seed, num_tasks, classes_per_task,
                  train_per_class=train_per_class, test_per_class=test_per_class)


def _noisy(builder, source, seed, classes_per_task, *, clean=False, rgb32=False,
           train_per_class=0, test_per_class=0):
    """The study's noisy stream on ``builder``'s dataset: its first ``4 * classes_per_task``
    classes in seed order, 4 experiences, each corrupted by its transform of
    :data:`jaxcl.data.transforms.NOISY_STREAM` (clean, solarize, Gaussian blur, autocontrast +
    grayscale + blur); ``clean``: the same classes and images uncorrupted (Table 1's normal
    stream)."""
    from jaxcl.data.transforms import NOISY_STREAM

    return _split(builder, source, seed, len(NOISY_STREAM), classes_per_task,
                  corrupt=None if clean else NOISY_STREAM, rgb32=rgb32,
                  train_per_class=train_per_class, test_per_class=test_per_class)


def _noisy_cifar(seed, source, classes_per_task=5, clean=False, train_per_class=0,
                 test_per_class=0):
    """The study's noisy stream (:func:`_noisy`) on CIFAR-100, 4 experiences x 5 classes."""
    return _noisy(_cifar100(source), source, seed, classes_per_task, clean=clean,
                  train_per_class=train_per_class, test_per_class=test_per_class)


def _noisy_fashion_mnist(seed, source, classes_per_task=2, clean=False, train_per_class=0,
                         test_per_class=0):
    """The noisy stream (:func:`_noisy`) on Fashion-MNIST at 32x32x3 (:func:`to_rgb32`), 4
    experiences x 2 classes: the paper's Table 1 on data that can be had offline."""
    return _noisy(_fashion_mnist_builder(source), source, seed, classes_per_task, clean=clean,
                  rgb32=True, train_per_class=train_per_class, test_per_class=test_per_class)


def _fashion_mnist_builder(source: Source):
    files = tuple(FASHION_MNIST_FILES)
    if _manual_with(files, source) is not None:
        return _prepared_builder("fashion_mnist_files", files, source)
    return _prepared_builder("fashion_mnist", files, source)


def _split_fashion_mnist(seed, source, num_tasks=5, classes_per_task=2, rgb32=False,
                         train_per_class=0, test_per_class=0):
    """Split Fashion-MNIST, 28x28x1, or 32x32x3 with ``rgb32`` (:func:`to_rgb32`, as the
    cross-dataset stream brings it), for the slim ResNet."""
    return _split(_fashion_mnist_builder(source), source, seed, num_tasks, classes_per_task,
                  rgb32=rgb32, train_per_class=train_per_class, test_per_class=test_per_class)


def _split_tinyimagenet(seed, source, num_tasks=20, classes_per_task=10, train_per_class=0,
                        test_per_class=0, resize=0):
    """Split-TinyImageNet at 64x64, or at ``resize`` (the reference's code runs it at 32)."""
    builder = _prepared_builder("tiny_imagenet", (TINY_IMAGENET_ZIP,), source, downloadable=False)
    return _split(builder, source, seed, num_tasks, classes_per_task,
                  train_per_class=train_per_class, test_per_class=test_per_class, side=resize)


CROSS_DATASETS: dict[str, Callable] = {
    "fashion_mnist": _fashion_mnist_builder,
    "svhn": _catalogue("svhn_cropped", ("train_32x32.mat", "test_32x32.mat", "extra_32x32.mat")),
    "gtsrb": lambda source: _prepared_builder("gtsrb", GTSRB_ZIPS, source, downloadable=False),
    "cifar10": _catalogue("cifar10", ("cifar-10-binary.tar.gz",)),
    "cifar100": _cifar100,
}
"""The cross-dataset streams' datasets: name -> ``builder(source)`` (a :class:`Source`)."""


def resize(x_u8: np.ndarray, side: int, chunk: int = 4096) -> np.ndarray:
    """NHWC uint8 images brought to ``side x side`` (bilinear, ``jax.image.resize``, rounded
    back to uint8); unchanged where they are that size already."""
    if x_u8.shape[1:3] == (side, side):
        return x_u8
    fn = jax.jit(lambda x: jax.image.resize(
        x.astype(jnp.float32), (x.shape[0], side, side, x.shape[3]), "bilinear"))
    return np.concatenate([np.clip(np.rint(np.asarray(fn(x_u8[i:i + chunk]))), 0,
                                   255).astype(np.uint8) for i in range(0, len(x_u8), chunk)])


def to_rgb32(x_u8: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """NHWC uint8 images as 32x32x3 uint8: bilinear resize (:func:`resize`) where the size
    differs, grey channels repeated three times."""
    x_u8 = resize(x_u8, 32, chunk)
    return np.repeat(x_u8, 3, axis=-1) if x_u8.shape[-1] == 1 else x_u8


def _digits_u8(source: Source) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """scikit-learn's bundled 8x8 digits (:func:`jaxcl.data.digits.digits_arrays`) as uint8
    splits, and their 10 classes: a cross-dataset stream's dataset that needs no download."""
    from jaxcl.data.digits import digits_arrays

    x_train, y_train, x_test, y_test = digits_arrays()
    u8 = lambda x: np.rint(x * 255).astype(np.uint8)  # noqa: E731
    return {"train": (u8(x_train), y_train.astype(np.int32)),
            "test": (u8(x_test), y_test.astype(np.int32))}, 10


CROSS_OFFLINE: dict[str, Callable] = {"digits": _digits_u8}
"""Cross-dataset streams' datasets read without TFDS: name -> ``arrays(source)``."""


def _cross_arrays(name: str, source: Source):
    if name in CROSS_OFFLINE:
        return CROSS_OFFLINE[name](source)
    builder = CROSS_DATASETS[name](source)
    return _arrays(builder, source.cache), builder.info.features["label"].num_classes


def _cross_dataset(seed, source, datasets=("cifar10", "svhn"), classes_per_task=5,
                   train_per_class=0, test_per_class=0):
    """The study's two-experience cross-dataset stream (Section 4.1): experience ``t`` takes
    ``classes_per_task`` classes of ``datasets[t]`` drawn with ``fold_in(key(seed), t)``; every
    dataset is brought to 32x32x3 (:func:`to_rgb32`), subset per class where asked, and
    normalised with its own training split's statistics. ``Experience.classes`` are indices
    within the experience's dataset."""
    datasets = tuple(datasets)
    known = (*CROSS_DATASETS, *CROSS_OFFLINE)
    unknown = [d for d in datasets if d not in known]
    if unknown or len(datasets) < 2 or len(set(datasets)) != len(datasets):
        raise ValueError(f"datasets={datasets!r} must name two or more different datasets of "
                         f"{known}")
    stream = []
    for t, name in enumerate(datasets):
        arrays, num_classes = _cross_arrays(name, source)
        check_split(1, classes_per_task, num_classes, f" of {name}")
        arrays = {split: (to_rgb32(x), y) for split, (x, y) in arrays.items()}
        arrays = per_class_subset(arrays, {"train": train_per_class, "test": test_per_class},
                                  seed)
        key = jax.random.fold_in(jax.random.key(seed), t)
        classes = np.asarray(jax.random.permutation(key, num_classes))[:classes_per_task]
        stream.append(class_experience(arrays, classes, t, channel_stats(arrays["train"][0])))
    return stream


LOADERS: dict[str, Callable[..., list[Experience]]] = {
    "split_cifar100": _split_cifar100,
    "noisy_cifar": _noisy_cifar,
    "noisy_fashion_mnist": _noisy_fashion_mnist,
    "split_fashion_mnist": _split_fashion_mnist,
    "split_tinyimagenet": _split_tinyimagenet,
    "cross_dataset": _cross_dataset,
}


def load_benchmark(name: str, *, seed: int, data_dir: str | os.PathLike | None = None,
                   manual_dir: str | os.PathLike | None = None, download: bool = True,
                   cache: ArrayCache | None = None, **options: Any) -> list[Experience]:
    """The TFDS stream ``name`` (a key of :data:`LOADERS`) for ``seed``; the arguments are
    :func:`jaxcl.data.load_benchmark`'s."""
    from jaxcl.data import check_benchmark

    if name not in LOADERS:
        raise ValueError(f"benchmark {name!r} is not one of {tuple(LOADERS)}")
    check_benchmark(name, options, data_dir=data_dir, manual_dir=manual_dir)
    return LOADERS[name](seed, Source(data_dir, manual_dir, download, cache), **options)
