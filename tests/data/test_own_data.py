"""Your own data as a stream: image folders (PNG, JPEG and PPM, grey and RGB) and arrays (in
memory and in ``.npz`` files) that the tests write, every refusal of bad input, and the TFDS
folders' frictions (a ``data_dir`` still to be made, several manual folders)."""

import json
import os
import re

import numpy as np
import PIL.Image
import pytest

from jaxcl.data import check_benchmark, load_benchmark, manual_folders, splits
from jaxcl.streams import from_arrays

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 20)]
GREYS = [40, 90, 160, 220]
NAMES = ["ant", "bee", "cat", "dog"]  # class i is the i-th name in sorted order


def _save(path, value, size=(8, 8), grey=False):
    """A flat image of ``value`` (an RGB triple, or a grey level); flat images keep their values
    through any resize, so every pixel says its class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.new("L" if grey else "RGB", size, value).save(path)


def _write_folder(root, names=NAMES, train=True, test=True):
    """Per class: train ``0.png`` (RGB 8x8), ``1.jpg`` (RGB 10x6), ``2.png`` (grey) and, for the
    last class, ``3.PPM``; test ``0.png`` (RGB) and ``1.jpeg`` (grey)."""
    for i, name in enumerate(names):
        if train:
            _save(root / "train" / name / "0.png", COLOURS[i])
            _save(root / "train" / name / "1.jpg", COLOURS[i], size=(10, 6))
            _save(root / "train" / name / "2.png", GREYS[i], grey=True)
            if i == len(names) - 1:
                _save(root / "train" / name / "3.PPM", COLOURS[i], size=(5, 7))
        if test:
            _save(root / "test" / name / "0.png", COLOURS[i])
            _save(root / "test" / name / "1.jpeg", GREYS[i], grey=True)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("images"))


def _pixels(x, stats):
    """Normalised images back in bytes, ``x * std + mean`` times 255."""
    mean, std = stats
    return (np.asarray(x, np.float64) * std + mean) * 255.0


def test_image_folder_stream(folder):
    from jaxcl.data.image_folder import read_image_folder

    stream = load_benchmark("image_folder", seed=3, path=str(folder), classes_per_task=2,
                            image_size=4)
    arrays, names = read_image_folder(folder, 4)
    assert names == NAMES
    # Class order from the seed, as every benchmark draws it; two experiences of two classes.
    order = np.asarray(splits.seed_order(np.arange(4), 3)).tolist()
    assert [e.classes for e in stream] == [tuple(order[:2]), tuple(order[2:])]
    other = load_benchmark("image_folder", seed=4, path=str(folder), classes_per_task=2,
                           image_size=4)
    assert [e.classes for e in other] != [e.classes for e in stream]
    # Exact statistics: numpy float64 over the decoded training split.
    x_u8 = arrays["train"][0].astype(np.float64) / 255.0
    mean, std = x_u8.mean(axis=(0, 1, 2)), x_u8.std(axis=(0, 1, 2))
    got_mean, got_std = splits.channel_stats(arrays["train"][0])
    np.testing.assert_allclose(got_mean.ravel(), mean, rtol=1e-6)
    np.testing.assert_allclose(got_std.ravel(), std + 1e-6, rtol=1e-6)
    for exp in stream:
        assert exp.x_train.shape[1:] == (4, 4, 3) and exp.x_test.shape[1:] == (4, 4, 3)
        for split, x, y in (("train", exp.x_train, exp.y_train), ("test", exp.x_test, exp.y_test)):
            y = np.asarray(y)
            assert sorted(set(y.tolist())) == [0, 1]  # labels restart at 0 in each experience
            pixels = _pixels(x, (mean, std + 1e-6))
            for image, label in zip(pixels, y):
                c = exp.classes[label]
                flat = image.reshape(-1, 3)
                grey = np.ptp(flat.mean(axis=0)) < 1  # grey files come as three equal channels
                want = np.full(3, GREYS[c]) if grey else np.asarray(COLOURS[c])
                np.testing.assert_allclose(flat, np.broadcast_to(want, flat.shape), atol=4)
        counts = [np.bincount(np.asarray(exp.y_train)), np.bincount(np.asarray(exp.y_test))]
        want_train = [4 if c == 3 else 3 for c in exp.classes]  # the last class has a PPM too
        assert counts[0].tolist() == want_train and counts[1].tolist() == [2, 2]


def test_image_folder_sizes_channels_and_class_order(folder, tmp_path):
    stream = load_benchmark("image_folder", seed=0, path=str(folder), classes_per_task=1,
                            num_tasks=3, class_order=(2, 0, 3), image_size=(6, 5), channels=1)
    assert [e.classes for e in stream] == [(2,), (0,), (3,)]
    assert stream[0].x_train.shape == (3, 6, 5, 1)
    by_name = load_benchmark("image_folder", seed=0, path=str(folder), classes_per_task=2,
                             class_order=("dog", "ant"), image_size=4)
    assert [e.classes for e in by_name] == [(3, 0)]
    order_file = tmp_path / "order.txt"
    order_file.write_text("1, 3\n2 0\n")
    from_file = load_benchmark("image_folder", seed=0, path=str(folder), classes_per_task=2,
                               class_order=str(order_file), image_size=4)
    assert [e.classes for e in from_file] == [(1, 3), (2, 0)]


def _bad_folder(tmp_path, case):
    root = tmp_path / case
    if case == "empty class":
        _write_folder(root)
        for f in (root / "train" / "bee").iterdir():
            f.unlink()
        (root / "train" / "bee" / "notes.txt").write_text("no image")
    elif case == "missing in test":
        _write_folder(root, train=True, test=False)
        _write_folder(root, names=NAMES[:3], train=False, test=True)
    elif case == "unreadable png":
        _write_folder(root)
        (root / "train" / "cat" / "2.png").write_bytes(b"not a png")
    elif case == "unreadable ppm":
        _write_folder(root)
        (root / "test" / "dog" / "9.ppm").write_bytes(b"P6 garbage")
    elif case == "no test folder":
        _write_folder(root, test=False)
    return root


@pytest.mark.parametrize("case, options, message", [
    ("empty class", {}, r"train/bee holds no images \(\.png, \.jpg, \.jpeg, \.ppm\)"),
    ("missing in test", {}, r"test lacks the class folder\(s\) dog of .*train"),
    ("unreadable png", {}, r"train/cat/2\.png is not a readable image"),
    ("unreadable ppm", {}, r"test/dog/9\.ppm is not a readable image"),
    ("no test folder", {}, r"has no test folder"),
    ("nowhere", {}, r"path='.*nowhere' does not exist"),
    ("fine", {"num_tasks": 3}, r"3 x 2 must be positive and at most the 4 classes of .*train"),
    ("fine", {"classes_per_task": 3},
     r"the 4 classes of .*train do not split into experiences of classes_per_task=3"),
    ("fine", {"class_order": (1, 1)}, r"class_order must name distinct classes .* repeats 1"),
    ("fine", {"class_order": (0, 7)}, r"class_order must name distinct classes .* names 7"),
    ("fine", {"class_order": ("ant", "cow")}, r"class_order names \['cow'\], not class folders"),
])
def test_image_folder_refuses_bad_input(case, options, message, tmp_path, folder):
    root = folder if case == "fine" else _bad_folder(tmp_path, case)
    with pytest.raises(ValueError, match=message) as error:
        load_benchmark("image_folder", seed=0, path=str(root),
                       **{"classes_per_task": 2, "image_size": 4, **options})
    assert "\n" not in str(error.value)


def _arrays(rng, classes=6, train=10, test=5, shape=(4, 4, 3), dtype=np.float32):
    y_train, y_test = np.repeat(np.arange(classes), train), np.repeat(np.arange(classes), test)
    if dtype == np.uint8:
        x = [rng.integers(0, 256, (len(y), *shape), dtype=np.uint8) for y in (y_train, y_test)]
    else:
        x = [(rng.normal(size=(len(y), *shape)) * 3 + 10).astype(dtype) for y in (y_train, y_test)]
    return x[0], y_train, x[1], y_test


def test_from_arrays_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    x_train, y_train, x_test, y_test = _arrays(rng)
    y_train, y_test = y_train * 10 + 5, y_test * 10 + 5  # labels need not be 0..K-1
    stream = from_arrays(x_train, y_train, x_test, y_test, classes_per_task=2, seed=1)
    order = splits.seed_order(np.unique(y_train), 1).tolist()
    assert [list(e.classes) for e in stream] == [order[:2], order[2:4], order[4:]]
    x64 = x_train.astype(np.float64)
    mean, std = x64.mean(axis=(0, 1, 2)), x64.std(axis=(0, 1, 2)) + 1e-6
    for exp in stream:
        keep = np.isin(y_train, exp.classes)
        np.testing.assert_allclose(np.asarray(exp.x_train), (x64[keep] - mean) / std, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(exp.y_train),
                                      [exp.classes.index(c) for c in y_train[keep]])
        assert np.asarray(exp.y_test).tolist() == [exp.classes.index(c)
                                                   for c in y_test[np.isin(y_test, exp.classes)]]
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    cache = {}
    again = load_benchmark("arrays", seed=1, path=str(path), classes_per_task=2, cache=cache)
    assert len(cache) == 1
    for a, b in zip(stream, again):
        assert a.classes == b.classes
        np.testing.assert_array_equal(np.asarray(a.x_train), np.asarray(b.x_train))
    subset = load_benchmark("arrays", seed=1, path=str(path), classes_per_task=3, num_tasks=1,
                            class_order=(55, 5, 25), train_per_class=4, cache=cache)
    assert [e.classes for e in subset] == [(55, 5, 25)]
    assert np.bincount(np.asarray(subset[0].y_train)).tolist() == [4, 4, 4]
    # A class split in the file: its tasks array, row t experience t's classes.
    tasks = tmp_path / "tasks.npz"
    np.savez(tasks, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             tasks=np.array([[15, 35], [5, 45]]))
    split = load_benchmark("arrays", seed=1, path=str(tasks))
    assert [e.classes for e in split] == [(15, 35), (5, 45)]
    # uint8 images without a channel axis: divided by 255, given one.
    x_u8, y, xt_u8, yt = _arrays(rng, classes=2, shape=(3, 3), dtype=np.uint8)
    grey = from_arrays(x_u8, y, xt_u8, yt, classes_per_task=2, seed=0)
    assert grey[0].x_train.shape == (20, 3, 3, 1)
    u = x_u8.astype(np.float64) / 255.0  # both classes in one experience: every example, in order
    np.testing.assert_allclose(np.asarray(grey[0].x_test)[..., 0],
                               (xt_u8 / 255.0 - u.mean()) / (u.std() + 1e-6), atol=1e-5)


def test_float_statistics_are_exact_over_chunks(monkeypatch):
    """float64 accumulation, chunk by chunk: a float32 running sum of 10^6 values near 1e4 is
    off by about 1%; the statistics here are numpy's float64 ones, rounded once to float32."""
    rng = np.random.default_rng(1)
    x = (1e4 + rng.normal(size=(250_000, 2, 2, 1))).astype(np.float32)
    naive = np.cumsum(x.ravel(), dtype=np.float32)[-1] / x.size
    exact = x.astype(np.float64).mean()
    assert abs(naive - exact) > 1e-3 * exact  # the float32 running sum saturates
    monkeypatch.setattr(splits, "_CHUNK_VALUES", 4096)  # many chunks
    mean, std = splits.channel_stats(x)
    assert mean.shape == std.shape == (1, 1, 1, 1)
    assert mean.ravel()[0] == np.float32(exact)
    assert std.ravel()[0] == np.float32(x.astype(np.float64).std() + 1e-6)
    features = rng.normal(size=(30, 5)).astype(np.float64)
    mean, std = splits.channel_stats(features)
    assert mean.shape == (1, 5)
    np.testing.assert_allclose(mean.ravel(), features.mean(axis=0), rtol=1e-6)


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


def test_arrays_refuse_bad_input(tmp_path):
    rng = np.random.default_rng(2)
    x, y, xt, yt = _arrays(rng)
    good = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt}
    cases = [
        (dict(good, y_train=y[:-1]), {},
         r"x_train of shape \(60, 4, 4, 3\) must hold one example per label of y_train \(59 "),
        (dict(good, y_test=np.where(yt == 5, 9, yt)), {},
         r"y_test holds labels 9 that y_train lacks \(y_train's classes: 0, 1, 2, 3, 4, 5\)"),
        (dict(good, y_train=y.astype(np.float32)), {}, r"y_train must be one integer label"),
        (dict(good, x_test=xt[..., :1]), {}, r"x_test's examples are \(4, 4, 1\) but x_train's"),
        (dict(good, x_train=np.where(x > 12, np.nan, x)), {}, r"x_train holds NaN or infinity"),
        (dict(good, labels=y), {}, r"it must hold x_train, .* it also holds labels"),
        ({k: v for k, v in good.items() if k != "y_test"}, {}, r"it lacks y_test"),
        (good, {"num_tasks": 4}, r"4 x 2 must be positive and at most the 6 classes of .*bad"),
        (good, {"class_order": (3, 8)}, r"names 8, not among them"),
        (good, {"class_order": (3, 3)}, r"repeats 3"),
        (dict(good, tasks=np.array([[0, 1]])), {"class_order": (1, 2)},
         r"class_order would replace it"),
        (dict(good, tasks=np.array([[0, 1]])), {"classes_per_task": 3}, r"have 2 classes each"),
        (dict(good, tasks=np.array([0, 1])), {}, r"tasks must be an integer array \(num_tasks"),
        (dict(good, y_test=yt[yt != 4], x_test=xt[yt != 4]), {}, r"classes 4 of .* no test"),
    ]
    for arrays, options, message in cases:
        path = _npz(tmp_path, **arrays)
        with pytest.raises(ValueError, match=message) as error:
            load_benchmark("arrays", seed=0, path=path, **{"classes_per_task": 2, **options})
        assert "\n" not in str(error.value) and "bad.npz" in str(error.value), message
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable \.npz file"):
        load_benchmark("arrays", seed=0, path=str(tmp_path / "junk.npz"), classes_per_task=2)
    with pytest.raises(ValueError, match=r"path='.*nothing.npz' does not exist"):
        load_benchmark("arrays", seed=0, path=str(tmp_path / "nothing.npz"), classes_per_task=2)
    with pytest.raises(ValueError, match=r"classes_per_task is needed"):
        from_arrays(x, y, xt, yt, classes_per_task=None, seed=0)
    with pytest.raises(ValueError, match=r"class_order file '.*none.txt' does not exist"):
        from_arrays(x, y, xt, yt, classes_per_task=2, seed=0,
                    class_order=str(tmp_path / "none.txt"))


def test_benchmark_checks_and_tfds_folders(tmp_path):
    with pytest.raises(ValueError, match=r"'arrays' needs path=: a \.npz file"):
        check_benchmark("arrays", {"classes_per_task": 2})
    with pytest.raises(ValueError, match=r"'image_folder' reads only path=; data_dir"):
        check_benchmark("image_folder", {"path": str(tmp_path)}, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"path='.*' is not a file"):
        check_benchmark("arrays", {"path": str(tmp_path)})
    # TFDS makes a data_dir that is not there yet; a file in its place is refused.
    check_benchmark("split_cifar100", data_dir=str(tmp_path / "new" / "tfds"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"data_dir='.*file' is not a folder"):
        check_benchmark("split_cifar100", data_dir=str(tmp_path / "file"))
    # Several manual folders, searched in order: each dataset from the first that has its files.
    from jaxcl.data import tfds_benchmarks as tb

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.zip").write_text("")
    joined = f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}"
    assert manual_folders(joined) == [tmp_path / "a", tmp_path / "b"]
    assert tb._manual_with(("x.zip",), tb.Source(manual_dir=joined)) == tmp_path / "b"
    assert tb._manual_with(("x.zip",), tb.Source(manual_dir=[str(tmp_path / "a")])) is None
    check_benchmark("cross_dataset", manual_dir=joined)
    with pytest.raises(ValueError, match=r"manual_dir '.*nowhere' is not a folder"):
        check_benchmark("cross_dataset", manual_dir=f"{joined}{os.pathsep}{tmp_path / 'nowhere'}")


def test_experiment_module_runs_on_an_npz_and_refuses_bad_own_data(tmp_path, capsys):
    from experiments import split_benchmark

    rng = np.random.default_rng(3)
    x, y, xt, yt = _arrays(rng, classes=6, shape=(4, 4, 3), dtype=np.uint8)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    argv = ["--quick", "--benchmark", "arrays", "--data-path", str(path), "--strategies", "Naive",
            "--class-order", "5", "4", "3", "2", "1", "0", "--epochs", "1"]
    metrics = split_benchmark.main([*argv, "--out", str(tmp_path / "run")])
    assert np.asarray(metrics["strategies"]["Naive"]["accuracy_matrix"]).shape == (3, 3)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["data_path"] == str(path)
    assert saved["data"]["class_order"] == [5, 4, 3, 2, 1, 0]
    for bad, message in (
            (["--benchmark", "arrays"], r"'arrays' needs path="),
            (["--benchmark", "split_cifar100", "--class-order", "1", "2"],
             r"'split_cifar100' does not take 'class_order'"),
            (["--benchmark", "image_folder", "--data-path", str(tmp_path / "no")],
             r"path='.*no' does not exist"),
            (["--benchmark", "arrays", "--data-path", str(path), "--class-order", "1", "1"],
             r"class_order \[1, 1\] repeats a class"),
            (["--benchmark", "arrays", "--data-path", str(path), "--class-order", "1", "9"],
             r"names 9, not among them")):
        with pytest.raises(ValueError, match=message):
            split_benchmark.main(["--quick", *bad, "--out", str(tmp_path / "r")])
        assert not (tmp_path / "r").exists()
    flat = tmp_path / "features.npz"  # feature vectors cannot be cropped: said before compiling
    np.savez(flat, x_train=x.reshape(len(x), -1), y_train=y, x_test=xt.reshape(len(xt), -1),
             y_test=yt)
    with pytest.raises(ValueError, match=r"inputs have shape \(\d+, 48\); pass --no-augment"):
        split_benchmark.main(["--quick", "--benchmark", "arrays", "--data-path", str(flat),
                              "--augment", "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
    help_text = re.sub(r"\s+", " ", _help(split_benchmark, capsys))
    assert "image_folder (--data-path DIR" in help_text
    assert "arrays (--data-path FILE.npz" in help_text


def _help(module, capsys):
    with pytest.raises(SystemExit):
        module.main(["--help"])
    return capsys.readouterr().out
