"""A folder of your own images as a stream, read through TFDS's ``ImageFolder`` builder.

The layout is torchvision's and TFDS's image folder: ``path/train/<class>/*.png`` (also ``.jpg``,
``.jpeg`` and ``.ppm``, any case) and ``path/test/<class>/...`` with the same class folders.
Class ``i`` is the ``i``-th class folder in sorted order, as ``ImageFolder`` labels them
(``Experience.classes`` holds these indices, :func:`class_names` their names); the stream is
split as every benchmark's (:func:`jaxcl.data.user_data.user_stream`): class order from the seed
or the user's, labels restarting at 0, per-channel normalisation with the training split's exact
statistics.

Reading: ``tfds.folder_dataset.ImageFolder`` lists the ``.png``, ``.jpg`` and ``.jpeg`` files and
its ``Image`` feature decodes them with TensorFlow's ``decode_image``. It lists no ``.ppm``, and
TensorFlow has no PPM decoder, so PPM files are decoded with Pillow (the ``data`` extra's, which
the GTSRB builder uses for GTSRB's PPM images). Every image is decoded to ``channels`` channels
(3, the default: grey images repeated to RGB, as ``ImageFolder``'s feature does and the ResNet's
colour statistics want; 1: colour images to grey) and resized to ``image_size`` (bilinear with
antialiasing, ``tf.image.resize``), rounded to bytes.

Bad folders are refused with one line that names the folder or file: a missing ``train`` or
``test`` folder, a class folder in one split but not the other, a class folder with no images,
an image that does not decode.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxcl.data.tfds_builders import tfds
from jaxcl.data.user_data import ClassOrder, user_stream
from jaxcl.types import Experience

EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm")
"""The image files read; TFDS's ``ImageFolder`` lists all but ``.ppm``."""

SPLITS = ("train", "test")


def class_names(path: str | os.PathLike) -> list[str]:
    """The class folders of ``path/train``, sorted: class ``i`` is ``class_names(path)[i]``."""
    return sorted(p.name for p in (pathlib.Path(path) / "train").iterdir() if p.is_dir())


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())


def _check_layout(root: pathlib.Path) -> list[str]:
    """The class names, after checking that both splits have the same non-empty class folders."""
    for split in SPLITS:
        if not (root / split).is_dir():
            raise ValueError(f"{root} has no {split} folder (an image folder is "
                             "path/train/<class>/*.png and path/test/<class>/...)")
    names = class_names(root)
    test = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    if not names:
        raise ValueError(f"{root / 'train'} holds no class folders")
    for split, missing in (("test", sorted(set(names) - set(test))),
                           ("train", sorted(set(test) - set(names)))):
        if missing:
            raise ValueError(f"{root / split} lacks the class folder(s) {', '.join(missing)} of "
                             f"{root / ('train' if split == 'test' else 'test')}")
    for split in SPLITS:
        for name in names:
            if not _image_files(root / split / name):
                raise ValueError(f"{root / split / name} holds no images "
                                 f"({', '.join(EXTENSIONS)})")
    return names


def _resize(image, size: tuple[int, int]):
    """A decoded image (``H x W x C`` bytes) as ``size`` bytes: ``tf.image.resize``, bilinear
    with antialiasing, rounded and clipped."""
    import tensorflow as tf

    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _unreadable(builder, split: str, error: Exception) -> ValueError:
    """The error naming the first file of ``split`` that does not decode (one at a time: only
    when the pipelined read has failed, which does not say which file)."""
    feature = builder.info.features["image"]
    examples = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    for example in examples:
        try:
            feature.decode_example(example["image"])
        except Exception as bad:  # noqa: BLE001  (TensorFlow's decoders raise several kinds)
            name = example["image/filename"].numpy().decode()
            return ValueError(f"{name} is not a readable image ({_first_line(bad)})")
    return ValueError(f"{builder.data_dir}/{split}: an image does not decode "
                      f"({_first_line(error)})")


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:200]


def _read_tfds(builder, split: str, labels: np.ndarray, size: tuple[int, int], channels: int):
    """The ``.png``/``.jpg``/``.jpeg`` images of ``split`` through ``ImageFolder``, resized, and
    their labels (``labels[i]``: ours of ``ImageFolder``'s label ``i``)."""
    import tensorflow as tf

    if split not in builder.info.splits or not builder.info.splits[split].num_examples:
        return np.zeros((0, *size, channels), np.uint8), np.zeros(0, np.int64)
    feature = builder.info.features["image"]
    dataset = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    dataset = dataset.map(lambda ex: (_resize(feature.decode_example(ex["image"]), size),
                                      ex["label"]), num_parallel_calls=tf.data.AUTOTUNE)
    try:
        batches = list(tfds.as_numpy(dataset.batch(256)))
    except tf.errors.OpError as error:
        raise _unreadable(builder, split, error) from None
    return (np.concatenate([x for x, _ in batches]),
            labels[np.concatenate([y for _, y in batches])])


def _read_ppm(folder: pathlib.Path, names: list[str], size: tuple[int, int], channels: int):
    """The ``.ppm`` images of a split folder (which ``ImageFolder`` does not list), through
    Pillow, resized as the others, and their labels."""
    import PIL.Image

    images, labels = [], []
    for label, name in enumerate(names):
        for path in _image_files(folder / name):
            if path.suffix.lower() != ".ppm":
                continue
            try:
                with PIL.Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB" if channels == 3 else "L"))
            except (OSError, ValueError) as error:
                raise ValueError(f"{path} is not a readable image ({_first_line(error)})") from None
            images.append(np.asarray(_resize(pixels.reshape(*pixels.shape[:2], channels), size)))
            labels.append(label)
    return (np.stack(images) if images else np.zeros((0, *size, channels), np.uint8),
            np.asarray(labels, np.int64))


def read_image_folder(path: str | os.PathLike, image_size: int | tuple[int, int] = 32,
                      channels: int = 3) -> dict[str, np.ndarray]:
    """``({"train": (x_u8, y), "test": (x_u8, y)}, class names)`` of the folder at ``path``
    (module docstring): images ``image_size`` (a side, or ``(height, width)``) with ``channels``
    channels, labels the indices of the sorted class names."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if not (len(size) == 2 and all(isinstance(s, int) and s >= 1 for s in size)):
        raise ValueError(f"image_size must be a positive integer or (height, width), got "
                         f"{image_size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 3 (RGB) or 1 (grey), got {channels!r}")
    root = pathlib.Path(path)
    names = _check_layout(root)
    builder = tfds.folder_dataset.ImageFolder(str(root), shape=(None, None, channels))
    theirs = builder.info.features["label"].names  # all splits' folders (a val/ may add some)
    labels = np.array([names.index(n) if n in names else -1 for n in theirs], np.int64)
    arrays = {}
    for split in SPLITS:
        parts = [_read_tfds(builder, split, labels, size, channels),
                 _read_ppm(root / split, names, size, channels)]
        arrays[split] = (np.concatenate([x for x, _ in parts]),
                         np.concatenate([y for _, y in parts]))
    return arrays, names


def load_image_folder(seed: int, *, path: str | os.PathLike, num_tasks: int | None = None,
                      classes_per_task: int | None = None, class_order: ClassOrder = None,
                      image_size: int | tuple[int, int] = 32, channels: int = 3,
                      train_per_class: int = 0, test_per_class: int = 0,
                      cache: dict | None = None) -> list[Experience]:
    """The stream of the image folder at ``path`` (``load_benchmark("image_folder", path=...)``).

    ``class_order``: class indices (or class folder names) in experience order, a permutation or
    subset, or a text file of indices; ``None``: from ``seed``. ``num_tasks`` ``None``: every
    class. ``cache``: a dict in which the decoded arrays are kept, so that several seeds decode
    the folder once. The other arguments are :func:`jaxcl.data.user_data.from_arrays`'s and
    :func:`read_image_folder`'s.
    """
    key = f"image_folder:{pathlib.Path(path).resolve()}:{image_size}:{channels}"
    if cache is not None and key in cache:
        arrays, names = cache[key]
    else:
        arrays, names = read_image_folder(path, image_size, channels)
        if cache is not None:
            cache[key] = arrays, names
    if class_order is not None and not isinstance(class_order, str) and any(
            isinstance(c, str) for c in class_order):
        unknown = [c for c in class_order if c not in names]
        if unknown:
            raise ValueError(f"class_order names {unknown}, not class folders of "
                             f"{pathlib.Path(path) / 'train'} ({', '.join(names)})")
        class_order = [names.index(c) for c in class_order]
    return user_stream(arrays, seed=seed, classes_per_task=classes_per_task, num_tasks=num_tasks,
                       class_order=class_order, train_per_class=train_per_class,
                       test_per_class=test_per_class, where=f"{pathlib.Path(path) / 'train'}")
