"""TFDS builders for the datasets the study needs that TFDS's catalogue lacks or reads otherwise.

Each is a ``GeneratorBasedBuilder`` prepared from the original files in TFDS's manual directory,
with no network: :class:`FashionMnistFiles`, :class:`TinyImagenet` and :class:`Gtsrb`
(:mod:`jaxcl.data.tfds_benchmarks` turns them into streams). Importing this module registers
them with TFDS; it also imports TFDS itself, with TensorFlow's native start-up lines kept quiet.

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
import zipfile

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
        try:
            import tensorflow as tf
            import tensorflow_datasets
        except ModuleNotFoundError as missing:
            raise ImportError(
                f"the TFDS benchmarks and image folders read data through TensorFlow Datasets "
                f"({missing.name} is not installed): install the data extra, pip install "
                "'jaxcl[data]' (or pip install -e '.[data]' in a clone)") from None

        tf.constant(0)  # TensorFlow's first op prints the oneDNN notice: here, not later
    return tensorflow_datasets


tfds = _import_tfds_quietly()

FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
"""The original file names and the SHA-256 of their decompressed content."""

DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")


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
