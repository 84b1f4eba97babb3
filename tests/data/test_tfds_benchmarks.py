"""Real benchmarks through TFDS: Fashion-MNIST prepared offline from Debian's files (real data),
Split-CIFAR100 on TFDS mock data, and the clear error when a dataset cannot be had."""

import gzip
import re
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcl.data import tfds_benchmarks as tb
from jaxcl.data import tfds_builders as builders

# Fashion-MNIST's first ten training labels (ankle boot, T-shirt, T-shirt, dress, ...).
FIRST_TRAIN_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


ARRAYS: dict = {}
"""The module's cache of TFDS arrays (``load_benchmark(..., cache=ARRAYS)``): the tests that only
need the prepared Fashion-MNIST read it once."""


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """Fashion-MNIST prepared through TFDS from the Debian package's files, once per module."""
    assert all((builders.DEBIAN_FASHION_MNIST / f).exists()
               for f in builders.FASHION_MNIST_FILES), (
        f"the real Fashion-MNIST files are expected in {builders.DEBIAN_FASHION_MNIST}: "
        "apt-get install dataset-fashion-mnist (.ci/run does)")
    data_dir = tmp_path_factory.mktemp("tfds")
    stream = tb.load_benchmark("split_fashion_mnist", seed=0, data_dir=str(data_dir),
                               manual_dir=str(builders.DEBIAN_FASHION_MNIST), cache=ARRAYS)
    return data_dir, stream


@pytest.fixture(scope="module")
def fashion_arrays(fashion):
    """The prepared Fashion-MNIST splits as arrays, ``{"train": (x, y), "test": (x, y)}``."""
    builder = tfds.builder("fashion_mnist_files", data_dir=str(fashion[0]))
    assert builder.is_prepared()
    return builder, tb._arrays(builder)


def test_fashion_mnist_is_prepared_offline_from_the_real_files(fashion_arrays):
    builder, arrays = fashion_arrays
    assert builder.info.splits["train"].num_examples == 60_000
    assert builder.info.splits["test"].num_examples == 10_000
    assert builder.info.features["label"].num_classes == 10
    raw_x = builders.read_idx_gz(builders.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz")
    raw_y = builders.read_idx_gz(builders.DEBIAN_FASHION_MNIST / "train-labels-idx1-ubyte.gz")
    assert raw_y[:10].tolist() == FIRST_TRAIN_LABELS
    x, y = arrays["train"]
    assert x.shape == (60_000, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 6000))
    # TFDS shuffles the examples; per class, the pixel sums match the original files exactly.
    for c in range(10):
        assert x[y == c].sum(dtype=np.int64) == raw_x[raw_y == c].sum(dtype=np.int64)
    np.testing.assert_array_equal(np.bincount(arrays["test"][1], minlength=10), np.full(10, 1000))


def test_split_fashion_mnist_stream(fashion):
    data_dir, stream = fashion
    assert len(stream) == 5
    seen = set()
    for t, exp in enumerate(stream):
        assert exp.task_id == t and len(exp.classes) == 2 and not seen & set(exp.classes)
        seen |= set(exp.classes)
        assert exp.x_train.shape == (12_000, 28, 28, 1) and exp.x_test.shape == (2_000, 28, 28, 1)
        assert set(np.unique(exp.y_train).tolist()) == {0, 1}
    assert seen == set(range(10))
    # Normalised with the training split's statistics: mean ~0 and std ~1 over all of it.
    x = np.concatenate([np.asarray(e.x_train) for e in stream])
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3
    # The prepared copy is read once into the caller's cache (nothing is kept without one), and
    # another seed gives another class order.
    builder = tfds.builder("fashion_mnist_files", data_dir=str(data_dir))
    assert tb._arrays(builder) is not tb._arrays(builder)
    cache = {}
    assert tb._arrays(builder, cache) is tb._arrays(builder, cache)
    assert list(cache) == [str(builder.data_dir)]
    other = tb.load_benchmark("split_fashion_mnist", seed=1, data_dir=str(data_dir),
                              manual_dir=str(builders.DEBIAN_FASHION_MNIST), cache=cache)
    assert [e.classes for e in other] != [e.classes for e in stream]
    assert list(cache) == [str(builder.data_dir)]


def test_recompressed_copies_pass_and_other_content_fails(tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    content = gzip.decompress((builders.DEBIAN_FASHION_MNIST / name).read_bytes())
    recompressed = tmp_path / name
    recompressed.write_bytes(gzip.compress(content, compresslevel=1))
    assert recompressed.read_bytes() != (builders.DEBIAN_FASHION_MNIST / name).read_bytes()
    labels = builders.read_idx_gz(recompressed, builders.FASHION_MNIST_FILES[name])
    assert labels.shape == (10_000,)
    changed = bytearray(content)
    changed[-1] = (changed[-1] + 1) % 10
    recompressed.write_bytes(gzip.compress(bytes(changed)))
    with pytest.raises(ValueError, match=f"{name} does not hold the original content"):
        builders.read_idx_gz(recompressed, builders.FASHION_MNIST_FILES[name])


def test_split_cifar100_on_mock_data(tmp_path):
    cache = {}  # the seeds' streams read the dataset once
    with tfds.testing.mock_data(num_examples=1000, policy=tfds.testing.MockPolicy.USE_CODE):
        a = tb.load_benchmark("split_cifar100", seed=0, data_dir=str(tmp_path), cache=cache)
        b = tb.load_benchmark("split_cifar100", seed=1, data_dir=str(tmp_path), cache=cache)
        again = tb.load_benchmark("split_cifar100", seed=0, data_dir=str(tmp_path))
    assert len(cache) == 1
    assert len(a) == 20
    classes = [c for exp in a for c in exp.classes]
    assert len(classes) == len(set(classes)) == 100
    for exp in a:
        assert exp.x_train.shape[1:] == (32, 32, 3) and exp.x_train.shape[0] > 0
        assert set(np.unique(exp.y_train).tolist()) <= set(range(5))
        assert set(np.unique(exp.y_test).tolist()) <= set(range(5))
        assert np.isfinite(np.asarray(exp.x_train)).all()
    assert [e.classes for e in again] == [e.classes for e in a]
    assert [e.classes for e in b] != [e.classes for e in a]


def test_missing_dataset_offline_fails_at_once_and_says_what_to_do(tmp_path):
    (tmp_path / "tfds").mkdir()
    start = time.perf_counter()
    with pytest.raises(tb.DataNotAvailableError,
                       match=r"'cifar100' is not prepared in data_dir=.*tfds and downloads are off "
                             r"\(download=False\); to prepare it offline, put "
                             r"cifar-100-binary\.tar\.gz in a folder and pass it as manual_dir"):
        tb.load_benchmark("split_cifar100", seed=0, data_dir=str(tmp_path / "tfds"),
                          manual_dir=str(tmp_path), download=False)
    assert time.perf_counter() - start < 10


def test_a_failed_download_says_what_to_do(tmp_path, monkeypatch):
    """No network probe: TFDS tries the download, and its failure names the dataset, the
    folders and how to prepare the data offline."""
    builder_class = type(tfds.builder("cifar100", data_dir=str(tmp_path)))

    def no_network(self, *args, **kwargs):
        raise ConnectionError("Name or service not known\nmore lines")

    monkeypatch.setattr(builder_class, "download_and_prepare", no_network)
    with pytest.raises(tb.DataNotAvailableError,
                       match=r"'cifar100' is not prepared in data_dir=.* and its download failed "
                             r"\(ConnectionError: Name or service not known\); to prepare it "
                             r"offline, put cifar-100-binary\.tar\.gz in a folder and pass it as "
                             r"manual_dir \(got manual_dir=None\)"):
        tb.load_benchmark("split_cifar100", seed=0, data_dir=str(tmp_path))


def test_one_entry_and_bad_names_and_folders(tmp_path):
    from jaxcl.data import load_benchmark

    stream = load_benchmark("synthetic_images", seed=0, num_tasks=2, classes_per_task=2,
                            image_size=8, train_per_class=4, test_per_class=2)
    assert len(stream) == 2 and stream[0].x_train.shape == (8, 8, 8, 3)
    with pytest.raises(ValueError, match="'cifar7' is not one of"):
        load_benchmark("cifar7", seed=0)
    with pytest.raises(ValueError, match="'cifar7' is not one of"):
        tb.load_benchmark("cifar7", seed=0)
    with pytest.raises(ValueError, match="is not a folder"):
        tb.load_benchmark("split_cifar100", seed=0, manual_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="at most the 10 classes"):
        tb.split_stream({"train": (np.zeros((10, 2, 2, 1), np.uint8), np.arange(10)),
                         "test": (np.zeros((10, 2, 2, 1), np.uint8), np.arange(10))},
                        seed=0, num_tasks=6, classes_per_task=2, num_classes=10)


def _kernel(sigma):
    """torchvision's 5-tap Gaussian kernel: exp(-0.5 (i / sigma)^2), i = -2..2, sum 1."""
    w = np.exp(-0.5 * (np.arange(-2.0, 3.0) / sigma) ** 2)
    return w / w.sum()


def _blur(x, sigma):
    """torchvision's GaussianBlur(5, sigma) of NHWC images, in numpy: reflect padding, separable."""
    w, (h, wd) = _kernel(sigma), x.shape[1:3]
    p = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    rows = sum(w[j] * p[:, j:j + h] for j in range(5))
    return sum(w[j] * rows[:, :, j:j + wd] for j in range(5))


def test_noisy_cifar_on_mock_data(tmp_path):
    from scipy.optimize import minimize_scalar

    with tfds.testing.mock_data(num_examples=1000, policy=tfds.testing.MockPolicy.USE_CODE):
        stream = tb.load_benchmark("noisy_cifar", seed=0, data_dir=str(tmp_path))
        again = tb.load_benchmark("noisy_cifar", seed=0, data_dir=str(tmp_path))
        clean = tb.load_benchmark("split_cifar100", seed=0, data_dir=str(tmp_path), num_tasks=4)
        x_u8, y = tb._arrays(tfds.builder("cifar100", data_dir=str(tmp_path)))["train"]
    assert len(stream) == 4 and all(len(e.classes) == 5 for e in stream)
    # The first 20 classes of the seed's order, as the clean split draws them.
    assert [e.classes for e in stream] == [e.classes for e in clean]
    np.testing.assert_array_equal(stream[0].x_train, clean[0].x_train)  # experience 1 is clean
    for a, b in zip(stream, again):
        np.testing.assert_array_equal(a.x_train, b.x_train)  # corruptions are deterministic
    # Each experience's training images in [0, 1] before and after the corruption, which the
    # loader applies before normalising with the clean training split's statistics.
    mean, std = tb.channel_stats(x_u8)
    before = [x_u8[np.isin(y, e.classes)].astype(np.float64) / 255.0 for e in stream]
    after = [np.asarray(e.x_train, np.float64) * std + mean for e in stream]
    np.testing.assert_allclose(after[1], np.where(before[1] >= 0.5, 1.0 - before[1], before[1]),
                               atol=1e-6)  # RandomSolarize(0.5, p=1.0)
    np.testing.assert_allclose(after[2], _blur(before[2], 0.9), atol=1e-6)  # GaussianBlur(5, 0.9)
    # RandomAutocontrast(p=1.0), Grayscale(3), GaussianBlur(5, sigma ~ U[0.6, 0.7]) per image.
    lo, hi = before[3].min(axis=(1, 2), keepdims=True), before[3].max(axis=(1, 2), keepdims=True)
    stretched = np.where(hi > lo, (before[3] - lo) / np.where(hi > lo, hi - lo, 1.0), before[3])
    grey = stretched @ np.array([0.2989, 0.587, 0.114])
    grey = np.repeat(grey[..., None], 3, axis=-1)
    sigmas = []
    for i in range(4):
        fit = minimize_scalar(lambda s: float(np.sum((_blur(grey[i:i + 1], s) - after[3][i]) ** 2)),
                              bounds=(0.3, 1.5), method="bounded", options={"xatol": 1e-7})
        assert 0.6 - 1e-4 <= fit.x <= 0.7 + 1e-4, fit.x
        np.testing.assert_allclose(after[3][i], _blur(grey[i:i + 1], fit.x)[0], atol=1e-5)
        sigmas.append(fit.x)
    assert np.ptp(sigmas) > 1e-3  # drawn per image


# --- Tiny-ImageNet and GTSRB from fake archives in the originals' layout --------------------

def _colour(label: int) -> tuple[int, int, int]:
    """A flat colour per class, far enough apart to survive JPEG and resizing."""
    return (40 + 5 * (label % 40), 40 + 40 * (label // 40), 200 - 3 * (label % 40))


def _image_bytes(label: int, size: tuple[int, int], fmt: str, grey: bool = False) -> bytes:
    import io

    import PIL.Image

    image = PIL.Image.new("RGB", size, _colour(label))
    if grey:
        image = image.convert("L")
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def fake_archives(tmp_path_factory):
    """A tiny-imagenet-200.zip (200 classes, 2 training and 1 validation image each; wnids.txt
    not in sorted order; one grey JPEG) and the three GTSRB archives (43 classes, 2 training
    images of different sizes each, 1 test image each), with flat colours that encode the class."""
    import random
    import zipfile

    folder = tmp_path_factory.mktemp("manual")
    wnids = [f"n{1000 + 7 * i:08d}" for i in range(200)]
    listed = wnids[:]
    random.Random(0).shuffle(listed)
    root = "tiny-imagenet-200/"
    with zipfile.ZipFile(folder / builders.TINY_IMAGENET_ZIP, "w") as z:
        z.writestr(root + "wnids.txt", "\n".join(listed) + "\n")
        z.writestr(root + "words.txt", "".join(f"{w}\tthing {w}\n" for w in wnids))
        annotations = []
        for label, w in enumerate(wnids):  # wnids are made in sorted order: label = index
            for j in range(2):
                z.writestr(f"{root}train/{w}/images/{w}_{j}.JPEG",
                           _image_bytes(label, (64, 64), "JPEG", grey=(label, j) == (3, 1)))
            z.writestr(f"{root}train/{w}/{w}_boxes.txt", "")
            z.writestr(f"{root}val/images/val_{label}.JPEG", _image_bytes(label, (64, 64), "JPEG"))
            annotations.append(f"val_{label}.JPEG\t{w}\t0\t0\t63\t63")
        z.writestr(root + "val/val_annotations.txt", "\n".join(annotations) + "\n")
        z.writestr(root + "test/images/test_0.JPEG", _image_bytes(0, (64, 64), "JPEG"))

    train, test, truth = (folder / name for name in builders.GTSRB_ZIPS)
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    with zipfile.ZipFile(train, "w") as z:
        for c in range(43):
            d = f"GTSRB/Final_Training/Images/{c:05d}/"
            rows = []
            for j, size in enumerate([(30, 34), (61, 57)]):
                z.writestr(f"{d}00000_{j:05d}.ppm", _image_bytes(c, size, "PPM"))
                rows.append(f"00000_{j:05d}.ppm;{size[0]};{size[1]};1;1;{size[0] - 1};"
                            f"{size[1] - 1};{c}\n")
            z.writestr(f"{d}GT-{c:05d}.csv", header + "".join(rows))
    test_labels = [(5 * i) % 43 for i in range(43)]
    with zipfile.ZipFile(test, "w") as z:
        d = "GTSRB/Final_Test/Images/"
        for i, c in enumerate(test_labels):
            z.writestr(f"{d}{i:05d}.ppm", _image_bytes(c, (44, 40), "PPM"))
        z.writestr(d + "GT-final_test.test.csv", header.replace(";ClassId", "") + "".join(
            f"{i:05d}.ppm;44;40;1;1;43;39\n" for i in range(43)))
    with zipfile.ZipFile(truth, "w") as z:
        z.writestr("GT-final_test.csv", header + "".join(
            f"{i:05d}.ppm;44;40;1;1;43;39;{c}\n" for i, c in enumerate(test_labels)))
    return folder


def _labels_match_colours(x, y, atol):
    expected = np.array([_colour(int(c)) for c in y], np.float32)
    np.testing.assert_allclose(x.reshape(len(x), -1, 3).mean(axis=1), expected, atol=atol)


def test_tiny_imagenet_builder_reads_the_original_zip(fake_archives, tmp_path):
    stream = tb.load_benchmark("split_tinyimagenet", seed=0, data_dir=str(tmp_path),
                               manual_dir=str(fake_archives))
    builder = tfds.builder("tiny_imagenet", data_dir=str(tmp_path))
    assert builder.info.splits["train"].num_examples == 400
    assert builder.info.splits["test"].num_examples == 200
    arrays = tb._arrays(builder)
    for split in ("train", "test"):
        x, y = arrays[split]
        assert x.shape[1:] == (64, 64, 3) and x.dtype == np.uint8
        grey = (y == 3) & (x.std(axis=-1).max(axis=(1, 2)) == 0)
        ok = ~grey  # the grey JPEG decodes to three equal channels; the others keep their colour
        _labels_match_colours(x[ok], y[ok], atol=3)
    assert len(stream) == 20
    classes = [c for exp in stream for c in exp.classes]
    assert sorted(classes) == list(range(200))
    for exp in stream:
        assert exp.x_train.shape == (20, 64, 64, 3) and exp.x_test.shape == (10, 64, 64, 3)
        assert sorted(np.asarray(exp.y_test).tolist()) == list(range(10))


def test_gtsrb_builder_reads_the_original_archives(fake_archives, tmp_path):
    builder = tb.CROSS_DATASETS["gtsrb"](tb.Source(str(tmp_path), str(fake_archives)))
    assert builder.info.splits["train"].num_examples == 86
    assert builder.info.splits["test"].num_examples == 43
    arrays = tb._arrays(builder)
    np.testing.assert_array_equal(np.bincount(arrays["train"][1], minlength=43), np.full(43, 2))
    for split in ("train", "test"):
        x, y = arrays[split]
        assert x.shape[1:] == (32, 32, 3)
        _labels_match_colours(x, y, atol=1)  # test labels come from the separate GT archive
    with pytest.raises(tb.DataNotAvailableError, match="'gtsrb' is not prepared.*not downloadable.*GTSRB_"):
        tb.CROSS_DATASETS["gtsrb"](tb.Source(str(tmp_path / "other")))


def test_cross_dataset_stream_real_fashion_mnist_then_gtsrb(fashion, fashion_arrays,
                                                            fake_archives):
    data_dir, _ = fashion
    # Each dataset's files in a folder of its own: manual_dir names both, searched in order.
    stream = tb.load_benchmark("cross_dataset", seed=0, data_dir=str(data_dir),
                               manual_dir=(str(builders.DEBIAN_FASHION_MNIST), str(fake_archives)),
                               datasets=("fashion_mnist", "gtsrb"))
    assert [e.task_id for e in stream] == [0, 1] and [len(e.classes) for e in stream] == [5, 5]
    assert stream[0].x_train.shape == (30_000, 32, 32, 3) and stream[1].x_train.shape == (10, 32, 32, 3)
    for exp in stream:
        assert sorted(set(np.asarray(exp.y_train).tolist())) == list(range(5))
    # Each dataset normalised with its own (converted) training split's statistics.
    gtsrb = tb._arrays(tfds.builder("gtsrb", data_dir=str(data_dir)))
    for exp, arrays in zip(stream, (fashion_arrays[1], gtsrb)):
        x_all, y_all = arrays["train"]
        converted = tb.to_rgb32(x_all)
        mean, std = tb.channel_stats(converted)
        mean_kept, _ = tb.channel_stats(converted[np.isin(y_all, exp.classes)])
        np.testing.assert_allclose(np.asarray(exp.x_train).mean(axis=(0, 1, 2), keepdims=True),
                                   (mean_kept - mean) / std, atol=1e-4)
    x = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    mean, std = tb.channel_stats(x)  # exact: the histogram's moments are numpy's
    np.testing.assert_allclose(mean.ravel(), (x / 255.0).mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std.ravel(), (x / 255.0).std(axis=(0, 1, 2)), rtol=1e-5)
    x0 = np.asarray(stream[0].x_train)
    np.testing.assert_array_equal(x0[..., 0], x0[..., 1])  # grey repeated on three channels


def test_cross_dataset_and_tinyimagenet_on_mock_data(tmp_path):
    manual = tmp_path / "manual"  # the manual-only builders look for their archives' names
    manual.mkdir()
    for name in (*builders.GTSRB_ZIPS, builders.TINY_IMAGENET_ZIP):
        (manual / name).touch()
    kw = {"data_dir": str(tmp_path), "manual_dir": str(manual)}
    with tfds.testing.mock_data(num_examples=200, policy=tfds.testing.MockPolicy.USE_CODE):
        stream = tb.load_benchmark("cross_dataset", seed=0, datasets=tuple(tb.CROSS_DATASETS), **kw)
        other = tb.load_benchmark("cross_dataset", seed=1, datasets=tuple(tb.CROSS_DATASETS), **kw)
        tiny = tb.load_benchmark("split_tinyimagenet", seed=0, **kw)
        tiny32 = tb.load_benchmark("split_tinyimagenet", seed=0, resize=32, **kw)
    assert len(stream) == 5
    for exp in stream:
        assert exp.x_train.shape[1:] == (32, 32, 3) and len(set(exp.classes)) == 5
        assert set(np.unique(exp.y_train).tolist()) <= set(range(5))
    assert [e.classes for e in other] != [e.classes for e in stream]
    assert len(tiny) == 20 and len({c for e in tiny for c in e.classes}) == 200
    assert tiny[0].x_train.shape[1:] == (64, 64, 3)
    assert tiny32[0].x_train.shape[1:] == (32, 32, 3)  # the reference's code's size
    assert [e.classes for e in tiny32] == [e.classes for e in tiny]
    with pytest.raises(ValueError, match="two or more different datasets"):
        tb.load_benchmark("cross_dataset", seed=0, datasets=("cifar10", "mnist"))


def test_fashion_mnist_at_32x32x3_and_fewer_images_per_class(fashion):
    """The slim ResNet's input (``rgb32``, as the cross-dataset stream brings it) and a smaller
    benchmark for a small machine (at most N images per class, drawn from the seed)."""
    data_dir, full = fashion
    kw = dict(data_dir=str(data_dir), manual_dir=str(builders.DEBIAN_FASHION_MNIST), rgb32=True,
              train_per_class=30, test_per_class=10, cache=ARRAYS)
    stream = tb.load_benchmark("split_fashion_mnist", seed=0, **kw)
    assert [e.classes for e in stream] == [e.classes for e in full]
    for exp in stream:
        assert exp.x_train.shape == (60, 32, 32, 3) and exp.x_test.shape == (20, 32, 32, 3)
        np.testing.assert_array_equal(np.bincount(exp.y_train), [30, 30])
        np.testing.assert_array_equal(np.bincount(exp.y_test), [10, 10])
        x = np.asarray(exp.x_train)
        assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])
    x = np.concatenate([np.asarray(e.x_train) for e in stream])
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3  # the subset's stats
    again = tb.load_benchmark("split_fashion_mnist", seed=0, **kw)
    np.testing.assert_array_equal(np.asarray(again[0].x_train), np.asarray(stream[0].x_train))
    with pytest.raises(ValueError, match="train_per_class must be a positive integer"):
        tb.load_benchmark("split_fashion_mnist", seed=0, **{**kw, "train_per_class": -3})


def test_benchmark_options_are_the_loaders_keywords():
    import inspect

    from jaxcl import data
    from jaxcl.data.digits import load_split_digits
    from jaxcl.data.image_folder import load_image_folder
    from jaxcl.data.user_data import load_arrays

    loaders = {**{n: data.BENCHMARKS[n] for n in ("synthetic", "synthetic_noisy")},
               "synthetic_images": data.BENCHMARKS["synthetic"], **tb.LOADERS,
               "image_folder": load_image_folder, "arrays": load_arrays,
               "split_digits": load_split_digits}
    assert set(loaders) == set(data.BENCHMARK_OPTIONS)
    for name, loader in loaders.items():
        keywords = {p.name for p in inspect.signature(loader).parameters.values()
                    if p.default is not inspect.Parameter.empty
                    or p.kind is inspect.Parameter.KEYWORD_ONLY} - {"cache"}
        if name == "synthetic_noisy":  # passes the synthetic options on, less num_tasks
            keywords = {"classes_per_task", "clean", *inspect.signature(
                data.BENCHMARKS["synthetic"]).parameters} - {"seed", "num_tasks"}
        assert keywords == set(data.BENCHMARK_OPTIONS[name]), name


def test_experiment_module_runs_on_real_fashion_mnist(fashion, tmp_path):
    from experiments import split_benchmark

    data_dir, _ = fashion
    argv = ["--quick", "--benchmark", "split_fashion_mnist", "--data-dir", str(data_dir),
            "--manual-dir", str(builders.DEBIAN_FASHION_MNIST), "--num-tasks", "2", "--epochs", "1",
            "--train-per-class", "0", "--test-per-class", "0",  # all of it, not --quick's 40
            "--batch-size", "256", "--strategies", "Naive"]
    metrics = split_benchmark.main([*argv, "--out", str(tmp_path / "run")])
    record = metrics["strategies"]["Naive"]
    assert np.asarray(record["accuracy_matrix"]).shape == (2, 2)
    assert record["learning_accuracy"] > 0.75  # two-class Fashion-MNIST tasks are easy
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"benchmark": "split_fashion_mnist"' in config


@pytest.mark.parametrize("argv, message", [
    (["--benchmark", "cross_dataset", "--num-tasks", "3"], "'cross_dataset' does not take 'num_tasks'"),
    (["--benchmark", "split_cifar100", "--data-dir", "/dev/null"], "data_dir='/dev/null' is not a folder"),
    (["--benchmark", "imagenet"], "benchmark='imagenet' is not one of"),
    (["--benchmark", "split_cifar100", "--num-tasks", "-1"], "num_tasks must be a positive"),
])
def test_experiment_module_refuses_bad_data_options_before_any_work(argv, message, tmp_path,
                                                                     capsys):
    from experiments import split_benchmark

    with pytest.raises((ValueError, SystemExit)) as error:  # SystemExit: argparse's own refusal
        split_benchmark.main(["--quick", "--num-tasks", "all", *argv, "--out", str(tmp_path / "r")])
    text = str(error.value) if error.type is ValueError else capsys.readouterr().err
    assert re.search(message, text), text
    assert not (tmp_path / "r").exists()


def test_loading_a_tfds_benchmark_prints_no_tensorflow_log_lines_and_distrax_still_imports(
        fashion):
    """TensorFlow's native start-up lines are kept quiet, and distrax (whose TFP substrate fails
    on a fully loaded TensorFlow without tf_keras) imports after a TFDS benchmark too."""
    import subprocess
    import sys

    data_dir, _ = fashion
    code = ("from jaxcl.data import load_benchmark; "
            f"s = load_benchmark('split_fashion_mnist', seed=0, data_dir={str(data_dir)!r}, "
            f"manual_dir={str(builders.DEBIAN_FASHION_MNIST)!r}, train_per_class=5, test_per_class=5); "
            "import jaxcl.models.sde_flow; print(len(s))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
    assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr, done.stderr


def test_noisy_fashion_mnist_and_its_normal_twin(fashion):
    """The noisy stream on real Fashion-MNIST (32x32x3, 4 experiences x 2 classes) and, with
    ``clean``, the same classes and images uncorrupted (the paper's Table 1 rows)."""
    data_dir, _ = fashion
    kw = dict(data_dir=str(data_dir), manual_dir=str(builders.DEBIAN_FASHION_MNIST),
              train_per_class=20, test_per_class=10, cache=ARRAYS)
    noisy = tb.load_benchmark("noisy_fashion_mnist", seed=2, **kw)
    normal = tb.load_benchmark("noisy_fashion_mnist", seed=2, clean=True, **kw)
    plain = tb.load_benchmark("split_fashion_mnist", seed=2, rgb32=True, **kw)
    assert len(noisy) == len(normal) == 4
    assert [e.classes for e in noisy] == [e.classes for e in normal] == [
        e.classes for e in plain[:4]]
    for e, (a, b, c) in enumerate(zip(noisy, normal, plain)):
        assert a.x_train.shape == (40, 32, 32, 3) and a.x_test.shape == (20, 32, 32, 3)
        np.testing.assert_array_equal(np.asarray(b.x_train), np.asarray(c.x_train))
        same = np.array_equal(np.asarray(a.x_train), np.asarray(b.x_train))
        assert same == (e == 0), e  # the first experience is the clean one
    with pytest.raises(ValueError, match="does not take 'rgb32'"):
        tb.load_benchmark("noisy_fashion_mnist", seed=0, rgb32=True, **kw)


def test_cross_dataset_digits_then_fashion_mnist(fashion):
    """scikit-learn's digits, offline, as a cross-dataset stream's dataset: 32x32x3, per-class
    subsets drawn from the seed, normalised with the subset's own statistics."""
    from jaxcl.data.digits import digits_arrays

    data_dir, _ = fashion
    kw = dict(data_dir=str(data_dir), manual_dir=str(builders.DEBIAN_FASHION_MNIST),
              datasets=("digits", "fashion_mnist"), train_per_class=30, test_per_class=10,
              cache=ARRAYS)
    stream = tb.load_benchmark("cross_dataset", seed=1, **kw)
    assert [len(e.classes) for e in stream] == [5, 5]
    for exp in stream:
        assert exp.x_train.shape == (150, 32, 32, 3) and exp.x_test.shape == (50, 32, 32, 3)
        np.testing.assert_array_equal(np.bincount(exp.y_train), [30] * 5)
        x = np.asarray(exp.x_train)
        assert np.array_equal(x[..., 0], x[..., 2])  # grey on three channels
    # The digits experience holds digits of its classes brought to 32x32x3: each image, up to
    # the normalisation's affine map (z-scored), is one of them.
    x_train, y_train, _, _ = digits_arrays()
    kept = np.isin(y_train, stream[0].classes)
    big = tb.to_rgb32(np.rint(x_train[kept] * 255).astype(np.uint8))[..., 0].reshape(
        int(kept.sum()), -1).astype(float)

    def z(a):
        return (a - a.mean(axis=1, keepdims=True)) / a.std(axis=1, keepdims=True)

    ours = z(np.asarray(stream[0].x_train)[..., 0].reshape(150, -1).astype(float))
    nearest = ((ours[:, None, :] - z(big)[None]) ** 2).mean(axis=-1).min(axis=1)
    assert nearest.max() < 1e-6
    again = tb.load_benchmark("cross_dataset", seed=1, **kw)
    np.testing.assert_array_equal(np.asarray(again[0].x_train), np.asarray(stream[0].x_train))
    other = tb.load_benchmark("cross_dataset", seed=2, **kw)
    assert [e.classes for e in other] != [e.classes for e in stream]
