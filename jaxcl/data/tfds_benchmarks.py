"""Real benchmarks through TensorFlow Datasets, online or offline, as the engine's experiences.

``load_benchmark(name, seed=..., data_dir=..., manual_dir=...)`` (through
:func:`jaxcl.data.load_benchmark`, which also serves ``synthetic_images``) returns a list of
:class:`jaxcl.streams.Experience` on the device:

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

import gzip
import hashlib
import pathlib
import socket
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from jaxcl.streams import Experience

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


def _online(host: str = "storage.googleapis.com", timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _prepared_builder(name: str, expected: tuple[str, ...], data_dir, manual_dir):
    """A TFDS builder whose data is prepared, preparing it from ``manual_dir`` or online."""
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    manual = pathlib.Path(manual_dir) if manual_dir is not None else None
    if manual is not None and all((manual / f).exists() for f in expected):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    elif _online():
        builder.download_and_prepare()
    else:
        raise DataNotAvailableError(
            f"dataset {name!r} is not prepared in data_dir={data_dir or '~/tensorflow_datasets'}"
            f" and cannot be downloaded now (no network); put {', '.join(expected)} in a "
            f"folder and pass it as manual_dir (got manual_dir={manual_dir!r})")
    return builder


def _split(builder, seed, num_tasks, classes_per_task) -> list[Experience]:
    return split_stream(_arrays(builder), seed=seed, num_tasks=num_tasks,
                        classes_per_task=classes_per_task,
                        num_classes=builder.info.features["label"].num_classes)


def _arrays(builder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split in ("train", "test"):
        # Batches rather than batch_size=-1: a dataset of unknown length (TFDS mock data) cannot
        # be read in one piece.
        batches = list(tfds.as_numpy(builder.as_dataset(split=split, batch_size=8192,
                                                        as_supervised=True)))
        out[split] = (np.concatenate([x for x, _ in batches]),
                      np.concatenate([y for _, y in batches]).astype(np.int32))
    return out


def split_stream(arrays, *, seed: int, num_tasks: int, classes_per_task: int,
                 num_classes: int, corrupt: Sequence[Callable] | None = None) -> list[Experience]:
    """Class-incremental splits of ``{"train": (x_u8, y), "test": (x_u8, y)}`` into experiences
    (module docstring): class order from ``seed``, labels restarting at 0, normalised images.

    ``corrupt[t](key, x)``, if given, corrupts experience ``t``'s images in [0, 1] before they are
    normalised (with the clean training split's statistics); its keys come from ``seed``, so the
    stream is deterministic.
    """
    x_train, _ = arrays["train"]
    needed = num_tasks * classes_per_task
    if not (isinstance(num_tasks, int) and isinstance(classes_per_task, int)
            and num_tasks >= 1 and classes_per_task >= 1 and needed <= num_classes):
        raise ValueError(f"num_tasks x classes_per_task = {num_tasks} x {classes_per_task} must be "
                         f"positive and at most the {num_classes} classes")
    scaled = x_train.astype(np.float32) / 255.0
    mean = scaled.mean(axis=(0, 1, 2), keepdims=True)
    std = scaled.std(axis=(0, 1, 2), keepdims=True) + 1e-6
    order = np.asarray(jax.random.permutation(jax.random.key(seed), num_classes))[:needed]

    if corrupt is not None and len(corrupt) != num_tasks:
        raise ValueError(f"corrupt has {len(corrupt)} transforms for {num_tasks} experiences")
    noise_key = jax.random.fold_in(jax.random.key(seed), 1)

    def pick(split, classes, t):
        x, y = arrays[split]
        keep = np.isin(y, classes)
        relabel = {c: i for i, c in enumerate(classes)}
        labels = np.array([relabel[int(c)] for c in y[keep]], np.int32)
        images = jnp.asarray(x[keep].astype(np.float32) / 255.0)
        if corrupt is not None:
            images = corrupt[t](jax.random.fold_in(noise_key, 2 * t + (split == "test")), images)
        return (images - mean) / std, jnp.asarray(labels)

    stream = []
    for t in range(num_tasks):
        classes = tuple(int(c) for c in order[t * classes_per_task:(t + 1) * classes_per_task])
        stream.append(Experience(t, classes, *pick("train", classes, t),
                                 *pick("test", classes, t)))
    return stream


def _split_cifar100(seed, data_dir, manual_dir, num_tasks=20, classes_per_task=5):
    builder = _prepared_builder("cifar100", ("cifar-100-binary.tar.gz",), data_dir, manual_dir)
    return _split(builder, seed, num_tasks, classes_per_task)


def _noisy_cifar(seed, data_dir, manual_dir, classes_per_task=5):
    """The study's noisy stream: the first 20 CIFAR-100 classes in seed order, 4 experiences x 5;
    clean, random solarize, Gaussian blur, contrast + blur + grayscale
    (:data:`jaxcl.data.transforms.NOISY_STREAM`)."""
    from jaxcl.data.transforms import NOISY_STREAM

    builder = _prepared_builder("cifar100", ("cifar-100-binary.tar.gz",), data_dir, manual_dir)
    return split_stream(_arrays(builder), seed=seed, num_tasks=len(NOISY_STREAM),
                        classes_per_task=classes_per_task,
                        num_classes=builder.info.features["label"].num_classes,
                        corrupt=NOISY_STREAM)


def _split_fashion_mnist(seed, data_dir, manual_dir, num_tasks=5, classes_per_task=2):
    files = tuple(FASHION_MNIST_FILES)
    if manual_dir is not None and all((pathlib.Path(manual_dir) / f).exists() for f in files):
        builder = _prepared_builder("fashion_mnist_files", files, data_dir, manual_dir)
    else:
        builder = _prepared_builder("fashion_mnist", files, data_dir, manual_dir)
    return _split(builder, seed, num_tasks, classes_per_task)


LOADERS: dict[str, Callable[..., list[Experience]]] = {
    "split_cifar100": _split_cifar100,
    "noisy_cifar": _noisy_cifar,
    "split_fashion_mnist": _split_fashion_mnist,
}


def load_benchmark(name: str, *, seed: int, data_dir=None, manual_dir=None,
                   **options) -> list[Experience]:
    """The stream ``name`` (a key of :data:`LOADERS`) for ``seed``.

    Args:
      name: the benchmark.
      seed: class order (and, for synthetic data, the data).
      data_dir: TFDS data directory (TFDS's default when ``None``).
      manual_dir: folder with the dataset's original files, for preparing offline.
      **options: ``num_tasks``, ``classes_per_task`` (and the synthetic stream's options).
    """
    if name not in LOADERS:
        raise ValueError(f"benchmark {name!r} is not one of {tuple(LOADERS)}")
    if manual_dir is not None and not pathlib.Path(manual_dir).is_dir():
        raise ValueError(f"manual_dir={str(manual_dir)!r} is not a folder")
    return LOADERS[name](seed, data_dir, manual_dir, **options)
