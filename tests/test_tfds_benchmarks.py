"""Real benchmarks through TFDS: Fashion-MNIST prepared offline from Debian's files (real data),
Split-CIFAR100 on TFDS mock data, and the clear error when a dataset cannot be had."""

import gzip
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcl.data import tfds_benchmarks as tb

# Fashion-MNIST's first ten training labels (ankle boot, T-shirt, T-shirt, dress, ...).
FIRST_TRAIN_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """Fashion-MNIST prepared through TFDS from the Debian package's files, once per module."""
    assert all((tb.DEBIAN_FASHION_MNIST / f).exists() for f in tb.FASHION_MNIST_FILES), (
        f"the real Fashion-MNIST files are expected in {tb.DEBIAN_FASHION_MNIST}: "
        "apt-get install dataset-fashion-mnist (.ci/run does)")
    data_dir = tmp_path_factory.mktemp("tfds")
    stream = tb.load_benchmark("split_fashion_mnist", seed=0, data_dir=str(data_dir),
                               manual_dir=str(tb.DEBIAN_FASHION_MNIST))
    return data_dir, stream


def test_fashion_mnist_is_prepared_offline_from_the_real_files(fashion):
    data_dir, _ = fashion
    builder = tfds.builder("fashion_mnist_files", data_dir=str(data_dir))
    assert builder.is_prepared()
    assert builder.info.splits["train"].num_examples == 60_000
    assert builder.info.splits["test"].num_examples == 10_000
    assert builder.info.features["label"].num_classes == 10
    arrays = tb._arrays(builder)
    raw_x = tb.read_idx_gz(tb.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz")
    raw_y = tb.read_idx_gz(tb.DEBIAN_FASHION_MNIST / "train-labels-idx1-ubyte.gz")
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
    # The cached copy is reused, and another seed gives another class order.
    other = tb.load_benchmark("split_fashion_mnist", seed=1, data_dir=str(data_dir),
                              manual_dir=str(tb.DEBIAN_FASHION_MNIST))
    assert [e.classes for e in other] != [e.classes for e in stream]


def test_recompressed_copies_pass_and_other_content_fails(tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    content = gzip.decompress((tb.DEBIAN_FASHION_MNIST / name).read_bytes())
    recompressed = tmp_path / name
    recompressed.write_bytes(gzip.compress(content, compresslevel=1))
    assert recompressed.read_bytes() != (tb.DEBIAN_FASHION_MNIST / name).read_bytes()
    labels = tb.read_idx_gz(recompressed, tb.FASHION_MNIST_FILES[name])
    assert labels.shape == (10_000,)
    changed = bytearray(content)
    changed[-1] = (changed[-1] + 1) % 10
    recompressed.write_bytes(gzip.compress(bytes(changed)))
    with pytest.raises(ValueError, match=f"{name} does not hold the original content"):
        tb.read_idx_gz(recompressed, tb.FASHION_MNIST_FILES[name])


def test_split_cifar100_on_mock_data(tmp_path, monkeypatch):
    monkeypatch.setattr(tb, "_online", lambda: True)  # download_and_prepare is mocked
    with tfds.testing.mock_data(num_examples=1000, policy=tfds.testing.MockPolicy.USE_CODE):
        a = tb.load_benchmark("split_cifar100", seed=0, data_dir=str(tmp_path))
        b = tb.load_benchmark("split_cifar100", seed=1, data_dir=str(tmp_path))
        again = tb.load_benchmark("split_cifar100", seed=0, data_dir=str(tmp_path))
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


def test_missing_dataset_offline_fails_at_once_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(tb, "_online", lambda: False)
    start = time.perf_counter()
    with pytest.raises(tb.DataNotAvailableError,
                       match=r"'cifar100' is not prepared.*cifar-100-binary\.tar\.gz.*manual_dir"):
        tb.load_benchmark("split_cifar100", seed=0, data_dir=str(tmp_path / "tfds"),
                          manual_dir=str(tmp_path))
    assert time.perf_counter() - start < 10


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


def test_noisy_cifar_on_mock_data(tmp_path, monkeypatch):
    monkeypatch.setattr(tb, "_online", lambda: True)
    with tfds.testing.mock_data(num_examples=1000, policy=tfds.testing.MockPolicy.USE_CODE):
        stream = tb.load_benchmark("noisy_cifar", seed=0, data_dir=str(tmp_path))
        again = tb.load_benchmark("noisy_cifar", seed=0, data_dir=str(tmp_path))
        clean = tb.load_benchmark("split_cifar100", seed=0, data_dir=str(tmp_path), num_tasks=4)
        x_train = tb._arrays(tfds.builder("cifar100", data_dir=str(tmp_path)))["train"][0]
    assert len(stream) == 4 and all(len(e.classes) == 5 for e in stream)
    # The first 20 classes of the seed's order, as the clean split draws them.
    assert [e.classes for e in stream] == [e.classes for e in clean]
    np.testing.assert_array_equal(stream[0].x_train, clean[0].x_train)  # experience 1 is clean
    for a, b in zip(stream, again):
        np.testing.assert_array_equal(a.x_train, b.x_train)  # corruptions are deterministic
    scaled = x_train.astype(np.float32) / 255.0
    mean, std = scaled.mean(axis=(0, 1, 2)), scaled.std(axis=(0, 1, 2)) + 1e-6
    unit = [np.asarray(e.x_train) * std + mean for e in stream]  # back to [0, 1]
    assert not np.allclose(unit[1], np.asarray(clean[1].x_train) * std + mean)  # solarized
    roughness = [float(np.abs(np.diff(u, axis=2)).mean()) for u in unit]
    assert roughness[2] < 0.5 * float(
        np.abs(np.diff(np.asarray(clean[2].x_train) * std + mean, axis=2)).mean())  # blurred
    np.testing.assert_allclose(unit[3][..., 0], unit[3][..., 1], atol=1e-4)  # grayscale
    np.testing.assert_allclose(unit[3][..., 1], unit[3][..., 2], atol=1e-4)
