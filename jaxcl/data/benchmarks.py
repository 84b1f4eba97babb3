"""Benchmarks by name: ``load_benchmark(name, seed=..., data_dir=..., manual_dir=...)``.

The one entry for every stream, synthetic or real; it returns a list of
:class:`jaxcl.data.synthetic_images.Experience` on the device.

* ``"synthetic"`` (alias ``"synthetic_images"``): no download; random class prototypes plus noise
  (:func:`jaxcl.data.synthetic_images.synthetic_image_stream`), class order, prototypes and noise from ``seed``.
* ``"synthetic_noisy"``: its four-experience noisy stream (:data:`jaxcl.data.transforms.NOISE_NAMES`:
  clean, solarize, Gaussian blur, autocontrast + grayscale + blur).
* With the ``data`` extra, the study's real benchmarks through TFDS
  (:mod:`jaxcl.data.tfds_benchmarks`): ``"split_cifar100"``, ``"split_tinyimagenet"``,
  ``"noisy_cifar"``, ``"cross_dataset"`` and ``"split_fashion_mnist"``.
* ``"split_digits"``: scikit-learn's bundled 8x8 digits (:mod:`jaxcl.data.digits`), real data
  with no download, 5 experiences x 2 classes.
* Your own data, at ``path=``: ``"image_folder"``, a folder ``path/train/<class>/*.png`` (also
  ``.jpg``, ``.jpeg``, ``.ppm``) and ``path/test/<class>/...`` read through TFDS's ``ImageFolder``
  (:mod:`jaxcl.data.image_folder`, the ``data`` extra); ``"arrays"``, a ``.npz`` file of
  ``x_train, y_train, x_test, y_test`` (:mod:`jaxcl.data.user_data`; arrays already in memory go
  through :func:`jaxcl.streams.from_arrays`).

:data:`BENCHMARK_OPTIONS` lists the options each benchmark takes, so a configuration is checked
(:func:`check_benchmark`) before anything is loaded or compiled; TensorFlow Datasets is imported
only when a TFDS benchmark is loaded. ``make_stream`` is the synthetic streams' entry.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax

from jaxcl.data.synthetic_images import synthetic_image_stream
from jaxcl.names import did_you_mean
from jaxcl.types import Experience


def _synthetic(seed: int, *, num_tasks: int = 20, classes_per_task: int = 5, image_size: int = 16,
               train_per_class: int = 100, test_per_class: int = 50,
               noise: float = 1.0) -> list[Experience]:
    return synthetic_image_stream(
        jax.random.key(seed), num_tasks=num_tasks, classes_per_task=classes_per_task,
        train_per_class=train_per_class, test_per_class=test_per_class, noise=noise,
        image_shape=(image_size, image_size, 3))


def _synthetic_noisy(seed: int, *, classes_per_task: int = 5, clean: bool = False,
                     **options) -> list[Experience]:
    """Four synthetic experiences corrupted as the noisy stream's (:mod:`jaxcl.data.transforms`):
    images squashed to [0, 1] with a sigmoid, corrupted (not with ``clean``: Table 1's normal
    stream), then centred, ``(x - 0.5) / 0.25``."""
    from jaxcl.data.transforms import NOISY_STREAM

    options = {**options, "num_tasks": len(NOISY_STREAM)}
    stream = _synthetic(seed, classes_per_task=classes_per_task, **options)
    key = jax.random.key(seed + 10_000)
    out = []
    for exp, corrupt in zip(stream, NOISY_STREAM):
        if clean:
            corrupt = lambda k, x: x  # noqa: E731
        k_train, k_test = jax.random.split(jax.random.fold_in(key, exp.task_id))
        fix = lambda k, x, corrupt=corrupt: (corrupt(k, jax.nn.sigmoid(x)) - 0.5) / 0.25  # noqa: E731
        out.append(exp._replace(x_train=fix(k_train, exp.x_train), x_test=fix(k_test, exp.x_test)))
    return out


BENCHMARKS: dict[str, Callable[..., list[Experience]]] = {
    "synthetic": _synthetic, "synthetic_noisy": _synthetic_noisy}


_SYNTHETIC_OPTIONS = ("classes_per_task", "image_size", "train_per_class", "test_per_class",
                      "noise")
_SUBSET_OPTIONS = ("train_per_class", "test_per_class")  # real data: at most this many (0: all)
BENCHMARK_OPTIONS: dict[str, tuple[str, ...]] = {
    "synthetic": ("num_tasks", *_SYNTHETIC_OPTIONS),
    "synthetic_images": ("num_tasks", *_SYNTHETIC_OPTIONS),
    "synthetic_noisy": (*_SYNTHETIC_OPTIONS, "clean"),
    "split_cifar100": ("num_tasks", "classes_per_task", *_SUBSET_OPTIONS),
    "split_tinyimagenet": ("num_tasks", "classes_per_task", "resize", *_SUBSET_OPTIONS),
    "split_fashion_mnist": ("num_tasks", "classes_per_task", "rgb32", *_SUBSET_OPTIONS),
    "noisy_cifar": ("classes_per_task", "clean", *_SUBSET_OPTIONS),
    "noisy_fashion_mnist": ("classes_per_task", "clean", *_SUBSET_OPTIONS),
    "cross_dataset": ("datasets", "classes_per_task", *_SUBSET_OPTIONS),
    "image_folder": ("path", "num_tasks", "classes_per_task", "class_order", "image_size",
                     "channels", *_SUBSET_OPTIONS),
    "arrays": ("path", "num_tasks", "classes_per_task", "class_order", *_SUBSET_OPTIONS),
    "split_digits": ("num_tasks", "classes_per_task", *_SUBSET_OPTIONS),
}
"""Every benchmark name and the options it takes (the loaders' keyword arguments)."""

SYNTHETIC = ("synthetic", "synthetic_images", "synthetic_noisy")
OWN_DATA = ("image_folder", "arrays")
"""The benchmarks that read the user's data at ``path`` rather than TFDS's."""


def manual_folders(manual_dir: str | Sequence[str] | None) -> list[pathlib.Path]:
    """The folders of ``manual_dir``, in search order: none for ``None``, a string's parts split
    at ``os.pathsep`` (``"a:b"`` on POSIX), or a sequence's entries."""
    if manual_dir is None:
        return []
    parts = manual_dir.split(os.pathsep) if isinstance(manual_dir, str) else manual_dir
    return [pathlib.Path(p) for p in parts if str(p)]


def check_benchmark(name: str, options: Iterable[str] | Mapping[str, Any] = (), *,
                    data_dir: str | os.PathLike | None = None,
                    manual_dir: str | os.PathLike | None = None) -> None:
    """Raise ``ValueError`` unless ``name`` is a benchmark, every option name is one it takes, the
    manual folders exist, ``data_dir`` is a folder or not there yet (TFDS creates it), and, for
    your own data (:data:`OWN_DATA`), ``path`` is given (when ``options`` is a mapping, it exists:
    a folder holding ``train/`` and ``test/`` for ``image_folder``, a file for ``arrays``); nothing
    is loaded."""
    if name not in BENCHMARK_OPTIONS:
        raise ValueError(f"benchmark={name!r} is not one of {tuple(BENCHMARK_OPTIONS)}"
                         f"{did_you_mean(name, BENCHMARK_OPTIONS)}")
    unknown = [o for o in options if o not in BENCHMARK_OPTIONS[name]]
    if unknown:
        raise ValueError(f"benchmark {name!r} does not take {', '.join(map(repr, unknown))}; it "
                         f"takes {BENCHMARK_OPTIONS[name]}")
    if data_dir is not None and pathlib.Path(data_dir).exists() and not pathlib.Path(
            data_dir).is_dir():
        raise ValueError(f"data_dir={str(data_dir)!r} is not a folder (a missing one is created)")
    for folder in manual_folders(manual_dir):
        if not folder.is_dir():
            raise ValueError(f"manual_dir {str(folder)!r} is not a folder")
    if name in OWN_DATA:
        _check_path(name, options, data_dir, manual_dir)


def _check_path(name: str, options, data_dir, manual_dir) -> None:
    """Your own data: ``path`` given and there, and no TFDS folders (they would do nothing)."""
    if "path" not in options:
        raise ValueError(f"benchmark {name!r} needs path=: " + (
            "a folder holding train/<class>/ and test/<class>/ image folders"
            if name == "image_folder" else "a .npz file of x_train, y_train, x_test, y_test"))
    if data_dir is not None or manual_dir is not None:
        raise ValueError(f"benchmark {name!r} reads only path=; data_dir and manual_dir are "
                         f"TFDS's folders (got data_dir={data_dir!r}, manual_dir={manual_dir!r})")
    if not isinstance(options, Mapping):
        return
    path = pathlib.Path(options["path"])
    if not path.exists():
        raise ValueError(f"path={str(path)!r} does not exist")
    if name == "arrays" and not path.is_file():
        raise ValueError(f"path={str(path)!r} is not a file (arrays reads a .npz file)")
    if name == "image_folder":
        missing = [s for s in ("train", "test") if not (path / s).is_dir()]
        if missing:
            raise ValueError(f"path={str(path)!r} has no {' or '.join(missing)} folder (an image "
                             "folder is path/train/<class>/*.png and path/test/<class>/...)")


def make_stream(name: str, *, seed: int, **options: Any) -> list[Experience]:
    """The synthetic stream ``name`` (``"synthetic"`` or ``"synthetic_noisy"``) for ``seed``."""
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark={name!r} is not one of {tuple(BENCHMARKS)}")
    return BENCHMARKS[name](seed, **options)


def load_benchmark(name: str, *, seed: int, data_dir: str | os.PathLike | None = None,
                   manual_dir: str | os.PathLike | None = None, download: bool = True,
                   cache: dict | None = None, **options: Any) -> list[Experience]:
    """The stream ``name`` (a key of :data:`BENCHMARK_OPTIONS`) for ``seed``.

    Args:
      name: the benchmark.
      seed: class order (and, for synthetic data, the data itself).
      data_dir: TFDS data directory (TFDS's default when ``None``); prepared data is cached there.
      manual_dir: folder with datasets' original files, to prepare them with no network; or
        several, searched in order (a sequence, or a string separated by ``os.pathsep``).
      download: whether TFDS may download a dataset that is neither prepared nor in
        ``manual_dir``; with ``False`` such a dataset fails at once (nothing probes the network).
      cache: a dict the caller keeps (e.g. one per run) in which the arrays of every TFDS
        dataset read are kept, so that the streams of several seeds read it once; ``None``
        reads it every time. Synthetic streams ignore ``download`` and ``cache``.
      **options: the benchmark's options (:data:`BENCHMARK_OPTIONS`), e.g. ``num_tasks``,
        ``classes_per_task``; left out, each benchmark has the study's shape. Your own data
        (:data:`OWN_DATA`) takes ``path`` and, where it holds no class split, ``classes_per_task``.
    """
    check_benchmark(name, options, data_dir=data_dir, manual_dir=manual_dir)
    if name in SYNTHETIC:
        return make_stream("synthetic" if name == "synthetic_images" else name, seed=seed,
                           **options)
    if name == "split_digits":
        from jaxcl.data.digits import load_split_digits
        return load_split_digits(seed, cache=cache, **options)
    if name == "arrays":
        from jaxcl.data.user_data import load_arrays

        return load_arrays(seed, cache=cache, **options)
    if name == "image_folder":
        from jaxcl.data.image_folder import load_image_folder

        return load_image_folder(seed, cache=cache, **options)
    from jaxcl.data import tfds_benchmarks

    return tfds_benchmarks.load_benchmark(name, seed=seed, data_dir=data_dir,
                                          manual_dir=manual_dir, download=download, cache=cache,
                                          **options)
