"""Real benchmarks through TensorFlow Datasets, online or offline, as the engine's experiences.

``load_benchmark(name, seed=..., data_dir=..., manual_dir=...)`` (through
:func:`jaxcl.data.load_benchmark`, which also serves ``synthetic_images``) returns a list of
:class:`jaxcl.data.synthetic_images.Experience` on the device:

* ``split_cifar100``: TFDS ``cifar100``, 20 experiences x 5 classes (the study's Split-CIFAR100).
* ``noisy_cifar``: the study's noisy stream (Section 4.2) on CIFAR-100, 4 experiences x 5
  classes, each corrupted by its transform of :mod:`jaxcl.data.transforms`.
* ``split_fashion_mnist``: Fashion-MNIST, 5 experiences x 2 classes, 28x28x1.

Every split draws its class order from ``seed`` (``jax.random.permutation``), gives each
experience its classes' training and test examples, labels restarting at 0, and normalises the
images per channel with the mean and standard deviation of the whole training split,
``x = (u8 / 255 - mean) / std``.

Where the data comes from, in this order: a TFDS-prepared copy in ``data_dir`` (TFDS caches it
there and reuses it); the original files in ``manual_dir``, prepared with no network access; a
TFDS download, when the network answers. Otherwise the loader fails at once, naming the dataset,
the files it expects and where to put them; it never waits on a download.

Fashion-MNIST from files goes through :class:`FashionMnistFiles`, a TFDS builder that checks
the original idx files by the SHA-256 of their *decompressed content*: a recompressed copy with
the same content (Debian's ``dataset-fashion-mnist`` installs one under
``/usr/share/datasets/fashion-mnist``) is accepted, where TFDS's own ``fashion_mnist`` would reject
it for its different gzip bytes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import pathlib
import socket
import zipfile
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image


def _import_tfds_quietly():
    """``tensorflow_datasets``, with TensorFlow's native start-up lines (absl's pre-init warning,
    the oneDNN notice), which its C++ writes straight to file descriptor 2, sent to /dev/null
    while it loads (all of it, and its first op); Python errors still raise as usual."""
    import contextlib
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with contextlib.ExitStack() as stack:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no real stderr (e.g. captured): nothing to hide
            saved = None
        if saved is not None:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
            stack.callback(os.close, saved)
            stack.callback(os.dup2, saved, 2)
        import tensorflow as tf
        import tensorflow_datasets

        tf.constant(0)  # TensorFlow's first op prints the oneDNN notice: here, not later
    return tensorflow_datasets


tfds = _import_tfds_quietly()

from jaxcl.types import Experience

FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
"""The original file names and the SHA-256 of their decompressed content."""

DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")


class DataNotAvailableError(FileNotFoundError):
    """A dataset is neither prepared, nor in the manual directory, nor downloadable now."""


def read_idx_gz(path: pathlib.Path, sha256: str | None = None) -> np.ndarray:
    """An idx file (gzip of any compression), checked against the SHA-256 of its content."""
    content = gzip.decompress(pathlib.Path(path).read_bytes())
    if sha256 is not None and hashlib.sha256(content).hexdigest() != sha256:
        raise ValueError(f"{path} does not hold the original content (SHA-256 of the "
                         f"decompressed bytes is not {sha256})")
    ndim = content[3]
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(content, np.uint8, offset=4 + 4 * ndim).reshape(shape)


class FashionMnistFiles(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST prepared from its four original idx files in the manual directory."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the four original Fashion-MNIST files (" + ", ".join(FASHION_MNIST_FILES)
        + ") in the manual directory; any gzip of the original content is accepted. On Debian: "
        f"`apt-get install dataset-fashion-mnist` puts them in {DEBIAN_FASHION_MNIST}.")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10)}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        def read(name):
            return read_idx_gz(dl_manager.manual_dir / name, FASHION_MNIST_FILES[name])
        return {
            split: self._generate_examples(read(f"{prefix}-images-idx3-ubyte.gz"),
                                           read(f"{prefix}-labels-idx1-ubyte.gz"))
            for split, prefix in (("train", "train"), ("test", "t10k"))}

    def _generate_examples(self, images, labels):
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image[..., None], "label": int(label)}


TINY_IMAGENET_ZIP = "tiny-imagenet-200.zip"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
    """Tiny-ImageNet (200 classes, 64x64) prepared from the original ``tiny-imagenet-200.zip``.

    The zip holds ``tiny-imagenet-200/wnids.txt`` (the 200 WordNet ids),
    ``train/<wnid>/images/*.JPEG`` (500 per class) and ``val/images/*.JPEG`` with their classes in
    ``val/val_annotations.txt`` (tab-separated: file, wnid, box). The labelled ``val`` images are
    the test split (the ``test`` images have no labels). Label ``i`` is the ``i``-th wnid in sorted
    order, as an image-folder reader gives; the JPEG bytes are kept as they are (grey images are
    decoded to three channels).
    """

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download {TINY_IMAGENET_URL} and put {TINY_IMAGENET_ZIP} (unopened) in the manual "
        "directory.")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(64, 64, 3), encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(num_classes=200)}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        path = dl_manager.manual_dir / TINY_IMAGENET_ZIP
        return {"train": self._generate_examples(path, "train"),
                "test": self._generate_examples(path, "val")}

    def _generate_examples(self, path, split):
        with zipfile.ZipFile(path) as archive:
            root = "tiny-imagenet-200/"
            wnids = sorted(archive.read(root + "wnids.txt").decode().split())
            if len(wnids) != 200:
                raise ValueError(f"{path}: wnids.txt names {len(wnids)} classes, not 200")
            label = {w: i for i, w in enumerate(wnids)}
            if split == "train":
                files = [(n, n.split("/")[2]) for n in archive.namelist()
                         if n.startswith(root + "train/") and n.endswith(".JPEG")]
            else:
                lines = archive.read(root + "val/val_annotations.txt").decode().splitlines()
                files = [(f"{root}val/images/{f}", w)
                         for f, w, *_ in (line.split("\t") for line in lines if line.strip())]
            for name, wnid in sorted(files):
                yield name, {"image": io.BytesIO(archive.read(name)), "label": label[wnid]}


GTSRB_ZIPS = ("GTSRB_Final_Training_Images.zip", "GTSRB_Final_Test_Images.zip",
              "GTSRB_Final_Test_GT.zip")
GTSRB_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"


class Gtsrb(tfds.core.GeneratorBasedBuilder):
    """GTSRB (43 traffic-sign classes) prepared from the three original archives, every image
    resized to 32x32 (bilinear, the whole image).

    ``GTSRB_Final_Training_Images.zip`` holds ``GTSRB/Final_Training/Images/000NN/*.ppm`` with a
    ``GT-000NN.csv`` per class; ``GTSRB_Final_Test_Images.zip`` holds
    ``GTSRB/Final_Test/Images/*.ppm``, whose classes are in ``GT-final_test.csv`` of
    ``GTSRB_Final_Test_GT.zip``. The CSVs are ``;``-separated with columns ``Filename`` and
    ``ClassId``.
    """

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download {', '.join(GTSRB_ZIPS)} from {GTSRB_URL} and put them (unopened) in the "
        "manual directory.")
    SIZE = 32

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(self.SIZE, self.SIZE, 3)),
                "label": tfds.features.ClassLabel(num_classes=43)}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        train, test, truth = (dl_manager.manual_dir / name for name in GTSRB_ZIPS)
        return {"train": self._generate_examples(train, None),
                "test": self._generate_examples(test, truth)}

    def _generate_examples(self, images_zip, truth_zip):
        with zipfile.ZipFile(images_zip) as archive:
            names = archive.namelist()
            if truth_zip is None:  # training: a GT-000NN.csv beside each class's images
                tables = [(n.rsplit("/", 1)[0], archive.read(n)) for n in names
                          if n.endswith(".csv")]
            else:  # test: the classes are in the separate ground-truth archive
                folder = next(n for n in names if n.endswith(".ppm")).rsplit("/", 1)[0]
                with zipfile.ZipFile(truth_zip) as truth:
                    tables = [(folder, truth.read(n)) for n in truth.namelist()
                              if n.endswith(".csv")]
            labels = {f"{folder}/{row['Filename']}": int(row["ClassId"])
                      for folder, raw in tables
                      for row in csv.DictReader(io.StringIO(raw.decode()), delimiter=";")}
            for name in sorted(labels):
                image = PIL.Image.open(io.BytesIO(archive.read(name))).convert("RGB")
                image = image.resize((self.SIZE, self.SIZE), PIL.Image.BILINEAR)
                yield name, {"image": np.asarray(image), "label": labels[name]}


def _online(host: str = "storage.googleapis.com", timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _prepared_builder(name: str, expected: tuple[str, ...], data_dir, manual_dir, *,
                      downloadable: bool = True):
    """A TFDS builder whose data is prepared, preparing it from ``manual_dir`` or, for a
    ``downloadable`` dataset, online."""
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    manual = pathlib.Path(manual_dir) if manual_dir is not None else None
    if manual is not None and all((manual / f).exists() for f in expected):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    elif downloadable and _online():
        builder.download_and_prepare()
    else:
        why = "cannot be downloaded now (no network)" if downloadable else "is not downloadable"
        raise DataNotAvailableError(
            f"dataset {name!r} is not prepared in data_dir={data_dir or '~/tensorflow_datasets'}"
            f" and {why}; put {', '.join(expected)} in a folder and pass it as manual_dir (got "
            f"manual_dir={manual_dir!r})" + (f". {builder.MANUAL_DOWNLOAD_INSTRUCTIONS}"
                                             if builder.MANUAL_DOWNLOAD_INSTRUCTIONS else ""))
    return builder


def _split(builder, seed, num_tasks, classes_per_task, corrupt=None, *, rgb32=False,
           train_per_class=0, test_per_class=0) -> list[Experience]:
    arrays = _arrays(builder)
    if rgb32:
        arrays = {split: (to_rgb32(x), y) for split, (x, y) in arrays.items()}
    arrays = per_class_subset(arrays, {"train": train_per_class, "test": test_per_class}, seed)
    return split_stream(arrays, seed=seed, num_tasks=num_tasks,
                        classes_per_task=classes_per_task,
                        num_classes=builder.info.features["label"].num_classes, corrupt=corrupt)


def per_class_subset(arrays, per_class: dict[str, int], seed: int):
    """At most ``per_class[split]`` examples of every class of each split (0: all), drawn at
    random from ``seed``, in their original order: a smaller benchmark for a small machine."""
    out = dict(arrays)
    for i, (split, n) in enumerate(sorted(per_class.items())):
        if not n:
            continue
        if not (isinstance(n, int) and n > 0):
            raise ValueError(f"{split}_per_class must be a positive integer (or 0: all), got {n!r}")
        x, y = arrays[split]
        rng = np.random.default_rng([seed, i])
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n]
                                       for c in np.unique(y)]))
        out[split] = (x[keep], y[keep])
    return out


_ARRAYS: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
"""Prepared folder -> its splits as arrays: a run that builds a stream per seed reads each
dataset from TFDS once (the last four datasets are kept)."""


def _arrays(builder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x_u8, y), "test": (x_u8, y)}`` of a prepared builder (read-only arrays)."""
    folder = str(builder.data_dir)
    if folder not in _ARRAYS:
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
        while len(_ARRAYS) >= 4:
            _ARRAYS.pop(next(iter(_ARRAYS)))
        _ARRAYS[folder] = out
    return _ARRAYS[folder]


def channel_stats(x_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``x_u8 / 255`` (shapes ``(1, 1, 1, C)``),
    exact, from each channel's histogram of the 256 byte values (no float copy of the split)."""
    values = np.arange(256) / 255.0
    counts = np.stack([np.bincount(x_u8[..., c].ravel(), minlength=256)
                       for c in range(x_u8.shape[-1])]) / (x_u8.size // x_u8.shape[-1])
    mean = counts @ values
    std = np.sqrt(np.maximum(counts @ values**2 - mean**2, 0.0)) + 1e-6
    return (mean.reshape(1, 1, 1, -1).astype(np.float32),
            std.reshape(1, 1, 1, -1).astype(np.float32))


def class_experience(arrays, classes: Sequence[int], task_id: int, stats, *,
                     corrupt: Callable | None = None, key: jax.Array | None = None) -> Experience:
    """Experience ``task_id``: the training and test examples of ``classes`` (labels ``classes[i]
    -> i``), images ``(u8 / 255 - mean) / std`` with ``stats = (mean, std)``; ``corrupt(key, x)``
    first corrupts the images in [0, 1] (``key`` for the training split, ``fold_in(key, 1)`` for
    the test split)."""
    mean, std = stats

    def pick(split):
        x, y = arrays[split]
        keep = np.isin(y, classes)
        relabel = np.full(int(max(y.max(), max(classes))) + 1, -1, np.int32)
        relabel[list(classes)] = np.arange(len(classes), dtype=np.int32)
        images = jnp.asarray(x[keep].astype(np.float32) / 255.0)
        if corrupt is not None:
            images = corrupt(key if split == "train" else jax.random.fold_in(key, 1), images)
        return (images - mean) / std, jnp.asarray(relabel[y[keep]])

    return Experience(task_id, tuple(int(c) for c in classes), *pick("train"), *pick("test"))


def _check_split(num_tasks, classes_per_task, num_classes: int) -> None:
    if not (isinstance(num_tasks, int) and isinstance(classes_per_task, int)
            and num_tasks >= 1 and classes_per_task >= 1
            and num_tasks * classes_per_task <= num_classes):
        raise ValueError(f"num_tasks x classes_per_task = {num_tasks} x {classes_per_task} must be "
                         f"positive and at most the {num_classes} classes")


def split_stream(arrays, *, seed: int, num_tasks: int, classes_per_task: int,
                 num_classes: int, corrupt: Sequence[Callable] | None = None) -> list[Experience]:
    """Class-incremental splits of ``{"train": (x_u8, y), "test": (x_u8, y)}`` into experiences
    (module docstring): class order from ``seed``, labels restarting at 0, normalised images.

    ``corrupt[t](key, x)``, if given, corrupts experience ``t``'s images in [0, 1] before they are
    normalised (with the clean training split's statistics); its keys come from ``seed``, so the
    stream is deterministic.
    """
    _check_split(num_tasks, classes_per_task, num_classes)
    if corrupt is not None and len(corrupt) != num_tasks:
        raise ValueError(f"corrupt has {len(corrupt)} transforms for {num_tasks} experiences")
    stats = channel_stats(arrays["train"][0])
    order = np.asarray(jax.random.permutation(jax.random.key(seed), num_classes))
    noise_key = jax.random.fold_in(jax.random.key(seed), 1)
    return [class_experience(arrays, order[t * classes_per_task:(t + 1) * classes_per_task], t,
                             stats, corrupt=None if corrupt is None else corrupt[t],
                             key=jax.random.fold_in(noise_key, t))
            for t in range(num_tasks)]


def _catalogue(name: str, files: tuple[str, ...]) -> Callable:
    """``builder(data_dir, manual_dir)`` of the TFDS catalogue's ``name``, whose original
    ``files`` may lie in the manual folder."""
    return lambda data_dir, manual_dir: _prepared_builder(name, files, data_dir, manual_dir)


_cifar100 = _catalogue("cifar100", ("cifar-100-binary.tar.gz",))


def _split_cifar100(seed, data_dir, manual_dir, num_tasks=20, classes_per_task=5,
                    train_per_class=0, test_per_class=0):
    return _split(_cifar100(data_dir, manual_dir), seed, num_tasks, classes_per_task,
                  train_per_class=train_per_class, test_per_class=test_per_class)


def _noisy_cifar(seed, data_dir, manual_dir, classes_per_task=5):
    """The study's noisy stream: the first 20 CIFAR-100 classes in seed order, 4 experiences x 5;
    clean, solarize (every image), Gaussian blur (sigma 0.9), autocontrast + grayscale + blur
    (:data:`jaxcl.data.transforms.NOISY_STREAM`)."""
    from jaxcl.data.transforms import NOISY_STREAM

    return _split(_cifar100(data_dir, manual_dir), seed, len(NOISY_STREAM), classes_per_task,
                  corrupt=NOISY_STREAM)


def _fashion_mnist_builder(data_dir, manual_dir):
    files = tuple(FASHION_MNIST_FILES)
    if manual_dir is not None and all((pathlib.Path(manual_dir) / f).exists() for f in files):
        return _prepared_builder("fashion_mnist_files", files, data_dir, manual_dir)
    return _prepared_builder("fashion_mnist", files, data_dir, manual_dir)


def _split_fashion_mnist(seed, data_dir, manual_dir, num_tasks=5, classes_per_task=2,
                         rgb32=False, train_per_class=0, test_per_class=0):
    """Split Fashion-MNIST, 28x28x1, or 32x32x3 with ``rgb32`` (:func:`to_rgb32`, as the
    cross-dataset stream brings it), for the slim ResNet."""
    return _split(_fashion_mnist_builder(data_dir, manual_dir), seed, num_tasks, classes_per_task,
                  rgb32=rgb32, train_per_class=train_per_class, test_per_class=test_per_class)


def _split_tinyimagenet(seed, data_dir, manual_dir, num_tasks=20, classes_per_task=10,
                        train_per_class=0, test_per_class=0):
    builder = _prepared_builder("tiny_imagenet", (TINY_IMAGENET_ZIP,), data_dir, manual_dir,
                                downloadable=False)
    return _split(builder, seed, num_tasks, classes_per_task, train_per_class=train_per_class,
                  test_per_class=test_per_class)


CROSS_DATASETS: dict[str, Callable] = {
    "fashion_mnist": _fashion_mnist_builder,
    "svhn": _catalogue("svhn_cropped", ("train_32x32.mat", "test_32x32.mat", "extra_32x32.mat")),
    "gtsrb": lambda data_dir, manual_dir: _prepared_builder(
        "gtsrb", GTSRB_ZIPS, data_dir, manual_dir, downloadable=False),
    "cifar10": _catalogue("cifar10", ("cifar-10-binary.tar.gz",)),
    "cifar100": _cifar100,
}
"""The cross-dataset streams' datasets: name -> ``builder(data_dir, manual_dir)``."""


def to_rgb32(x_u8: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """NHWC uint8 images as 32x32x3 uint8: bilinear resize (``jax.image.resize``) where the size
    differs, grey channels repeated three times."""
    if x_u8.shape[1:3] != (32, 32):
        resize = jax.jit(lambda x: jax.image.resize(
            x.astype(jnp.float32), (x.shape[0], 32, 32, x.shape[3]), "bilinear"))
        x_u8 = np.concatenate([
            np.clip(np.rint(np.asarray(resize(x_u8[i:i + chunk]))), 0, 255).astype(np.uint8)
            for i in range(0, len(x_u8), chunk)])
    return np.repeat(x_u8, 3, axis=-1) if x_u8.shape[-1] == 1 else x_u8


def _cross_dataset(seed, data_dir, manual_dir, datasets=("cifar10", "svhn"), classes_per_task=5):
    """The study's two-experience cross-dataset stream (Section 4.1): experience ``t`` takes
    ``classes_per_task`` classes of ``datasets[t]`` drawn with ``fold_in(key(seed), t)``; every
    dataset is brought to 32x32x3 (:func:`to_rgb32`) and normalised with its own training split's
    statistics. ``Experience.classes`` are indices within the experience's dataset."""
    datasets = tuple(datasets)
    unknown = [d for d in datasets if d not in CROSS_DATASETS]
    if unknown or len(datasets) < 2 or len(set(datasets)) != len(datasets):
        raise ValueError(f"datasets={datasets!r} must name two or more different datasets of "
                         f"{tuple(CROSS_DATASETS)}")
    stream = []
    for t, name in enumerate(datasets):
        builder = CROSS_DATASETS[name](data_dir, manual_dir)
        num_classes = builder.info.features["label"].num_classes
        _check_split(1, classes_per_task, num_classes)
        arrays = {split: (to_rgb32(x), y) for split, (x, y) in _arrays(builder).items()}
        key = jax.random.fold_in(jax.random.key(seed), t)
        classes = np.asarray(jax.random.permutation(key, num_classes))[:classes_per_task]
        stream.append(class_experience(arrays, classes, t, channel_stats(arrays["train"][0])))
    return stream


LOADERS: dict[str, Callable[..., list[Experience]]] = {
    "split_cifar100": _split_cifar100,
    "noisy_cifar": _noisy_cifar,
    "split_fashion_mnist": _split_fashion_mnist,
    "split_tinyimagenet": _split_tinyimagenet,
    "cross_dataset": _cross_dataset,
}


def load_benchmark(name: str, *, seed: int, data_dir=None, manual_dir=None,
                   **options) -> list[Experience]:
    """The TFDS stream ``name`` (a key of :data:`LOADERS`) for ``seed``; the arguments are
    :func:`jaxcl.data.load_benchmark`'s."""
    from jaxcl.data import check_benchmark

    if name not in LOADERS:
        raise ValueError(f"benchmark {name!r} is not one of {tuple(LOADERS)}")
    check_benchmark(name, options, data_dir=data_dir, manual_dir=manual_dir)
    return LOADERS[name](seed, data_dir, manual_dir, **options)
