"""Nothing lost, nothing misreported (issue 27): a rerun into an unfinished run's ``--out`` with
other strategies, options or another experiment is refused before it can resume, overwrite or
delete that run's checkpoints; a run that fails before its first checkpoint leaves nothing."""

import json

import pytest

from jaxcl.cli import run_main
from jaxcl.config import flat
from jaxcl.io import run_folder


def _files(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size)
                  for p in folder.rglob("*") if p.is_file())


def _interrupt_after_first_experience(monkeypatch):
    from jaxcl.train import loop as engine

    checked = engine.check_finite

    def ctrl_c(loss, **where):
        if where["experience"] == 1:
            raise KeyboardInterrupt
        checked(loss, **where)

    monkeypatch.setattr(engine, "check_finite", ctrl_c)
    return lambda: monkeypatch.setattr(engine, "check_finite", checked)


def test_a_rerun_with_other_strategies_keeps_the_unfinished_runs_checkpoints(
        tmp_path, monkeypatch, capsys):
    from experiments import freeze_depth, split_benchmark

    out = tmp_path / "D"
    hn1 = ["--quick", "--strategies", "HN-1", "--order", "1", "--no-progress", "--out", str(out)]
    restore = _interrupt_after_first_experience(monkeypatch)
    assert run_main(split_benchmark.main, "split_benchmark", hn1) == 130
    capsys.readouterr()
    before = _files(out)
    assert any(name.startswith("checkpoints/HN-1-seeds-0/") for name, _ in before)
    manifest = json.loads((out / "checkpoints" / run_folder.MANIFEST).read_text())
    assert manifest["experiment"] == "split_benchmark"
    assert manifest["settings"]["strategies"] == ["HN-1"]
    restore()

    # The case: Naive into HN-1's folder used to exit 0 and delete HN-1's checkpoint.
    naive = ["--quick", "--strategies", "Naive", "--no-progress", "--out", str(out)]
    assert run_main(split_benchmark.main, "split_benchmark", naive) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert ("holds the checkpoints of an unfinished run of split_benchmark (HN-1); this command "
            "differs in settings.strategies: ['HN-1'] in the checkpoint, ['Naive'] now") in err[0]
    assert _files(out) == before
    # Another experiment is refused alike, naming the experiment whose run it is.
    assert run_main(freeze_depth.main, "freeze_depth", ["--quick", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "experiment: 'split_benchmark' in the checkpoint, 'freeze_depth' now" in err
    assert _files(out) == before
    # The run's own command resumes it and finishes; then its checkpoints go.
    assert run_main(split_benchmark.main, "split_benchmark", hn1) == 0
    assert "resumed from" in capsys.readouterr().out
    assert (out / "metrics.json").exists() and not (out / "checkpoints").exists()


def test_checkpoints_without_a_manifest_are_refused_and_a_manifest_alone_is_not_a_run(
        tmp_path, capsys):
    from experiments import split_benchmark

    out = tmp_path / "D"
    step = out / "checkpoints" / "HN-1-seeds-0" / "0"
    step.mkdir(parents=True)
    (step / "data").write_text("an older run's checkpoint")
    argv = ["--quick", "--strategies", "Naive", "--no-progress", "--out", str(out)]
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 1
    assert "holds checkpoints without run.json" in capsys.readouterr().err
    assert (step / "data").read_text() == "an older run's checkpoint"

    # A run that stopped before its first checkpoint left only (at most) its manifest: any run
    # may use the folder.
    other = tmp_path / "E"
    run_folder.claim(other, "freeze_depth", {"strategies": ["HN-2"]})
    assert not run_folder.has_checkpoints(other)
    assert run_main(split_benchmark.main, "split_benchmark", [*argv[:-1], str(other)]) == 0
    assert (other / "metrics.json").exists() and not (other / "checkpoints").exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch,
                                                                        capsys):
    from experiments import split_benchmark
    from jaxcl.train import loop as engine

    def ctrl_c(loss, **where):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "check_finite", ctrl_c)
    out = tmp_path / "D"
    argv = ["--quick", "--strategies", "Naive", "--no-progress", "--out", str(out)]
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["jaxcl run split_benchmark: interrupted before the first checkpoint; nothing "
                   "is kept, rerun the same command to start again"]
    assert not out.exists()
    # A folder that was there before stays (empty), as it was.
    out.mkdir()
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 130
    assert out.is_dir() and not any(out.iterdir())


def _npz(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "good.npz"
    np.savez(path, x_train=rng.normal(size=(60, 8, 8, 1)).astype("float32"),
             y_train=np.repeat(np.arange(6), 10), x_test=rng.normal(size=(30, 8, 8, 1)).astype(
                 "float32"), y_test=np.repeat(np.arange(6), 5))
    return path


@pytest.mark.parametrize("module, argv, message", [
    ("split_benchmark", ["--strategies", "Naive", "--order", "2"],
     "--order 2 does nothing in this run: no HN-k among the strategies (Naive)"),
    ("split_benchmark", ["--benchmark", "arrays", "--data-path", "NPZ", "--image-size", "64",
                         "--num-tasks", "3"],
     "--image-size 64 does nothing in this run: benchmark arrays does not take it"),
    ("split_benchmark", ["--benchmark", "split_digits", "--noise", "2.0"],
     "--noise 2.0 does nothing in this run: benchmark split_digits does not take it"),
    ("split_benchmark", ["--strategies", "Naive", "HN-1", "--nf", "8"],
     "--nf 8 does nothing in this run: model mlp is not the ResNet"),
    ("split_benchmark", ["--strategies", "HN-1", "--memory-size", "50", "--ewc-lambda", "2"],
     "--ewc-lambda 2.0 does nothing in this run: no EWC among the strategies (HN-1); "
     "--memory-size 50 does nothing in this run: no LR-k among the strategies (HN-1)"),
    ("first_vs_second_order", ["--order", "2"],
     "--order 2 does nothing in this run: this module trains order 1 beside order 2"),
    ("freeze_depth", ["--kinds", "Frozen", "--preset", "paper"],
     "--preset paper does nothing in this run: no HN-k or LR-k among the strategies"),
])
def test_an_option_that_does_nothing_is_refused_in_one_line(module, argv, message, tmp_path,
                                                            capsys):
    import importlib

    argv = [str(_npz(tmp_path)) if a == "NPZ" else a for a in argv]
    main = importlib.import_module(f"experiments.{module}").main
    assert run_main(main, module, ["--quick", *argv, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert err[0].endswith("leave it out, so that config.json records only what ran")
    assert not (tmp_path / "r").exists()


def test_config_json_lists_what_had_no_effect_and_reads_back(tmp_path):
    from experiments import split_benchmark

    out = tmp_path / "r"
    split_benchmark.main(["--quick", "--strategies", "Naive", "--out", str(out)])
    config = json.loads((out / "config.json").read_text())
    unused = config["unused"]
    assert unused["order"] == unused["reg_warmup"] == "no HN-k among the strategies (Naive)"
    assert unused["memory_size"] == "no LR-k among the strategies (Naive)"
    assert unused["nf"] == "model mlp is not the ResNet" and "hidden" not in unused
    assert "image_size" not in unused and "noise" not in unused  # the synthetic stream's own
    assert set(unused) <= set(flat(split_benchmark.Config()))
    # Nor are they listed as departures from the paper under the table (on the synthetic
    # stream the table has no paper columns, and no HN-k ran: no HN-k settings are named).
    summary = (out / "summary.md").read_text()
    assert "paper columns: none" in summary
    assert "new_task_init" not in summary and "reg_warmup" not in summary
    assert "setting as the paper's" not in summary
    # A run folder's config.json re-runs it, "unused" and all (the file's values are not flags).
    again = split_benchmark.main(["--config", str(out / "config.json"), "--out",
                                  str(tmp_path / "again")])
    assert again["config"]["unused"] == unused


@pytest.mark.parametrize("module, argv, message", [
    ("split_benchmark", ["--strategies", "HN4"], "is not Naive, EWC, Frozen-k, LR-k, HN-k or HN-F; "
                                                 "did you mean 'HN-4'?"),
    ("split_benchmark", ["--strategies", "Navie"], "did you mean 'Naive'?"),
    ("split_benchmark", ["--strategies", "hn-1"], "did you mean 'HN-1'?"),
    ("split_benchmark", ["--benchmark", "split_cifar"], "did you mean 'split_cifar100'?"),
    ("split_benchmark", ["--model", "resnt"], "did you mean 'resnet'?"),
    ("split_benchmark", ["--strategies", "Naive", "Naive"],
     "strategies ['Naive', 'Naive'] name ['Naive'] more than once; each is one run, give it once"),
    ("freeze_depth", ["--depths", "1", "2", "1"], "depths [1, 2, 1] name [1] more than once"),
    ("hn_learnability", ["--variants", "jaxcl", "paper", "jaxcl"],
     "variants ['jaxcl', 'paper', 'jaxcl'] name ['jaxcl'] more than once"),
    ("sde_flow_forgetting", ["--variants", "mlp", "mlp"],
     "variants ['mlp', 'mlp'] name ['mlp'] more than once"),
    ("split_benchmark", ["--config", "MISSING"], "FileNotFoundError: config "),
    ("split_benchmark", ["--config", "FOLDER"], "IsADirectoryError: config "),
    ("split_benchmark", ["--benchmark", "arrays", "--data-path", "NPZ", "--classes-per-task", "2",
                         "--class-order", "0", "1", "2", "--num-tasks", "all"],
     "class_order [0, 1, 2] names 3 classes, which do not split into experiences of "
     "classes_per_task=2; give a multiple of 2 classes (of the 6 of "),
    ("split_benchmark", ["--benchmark", "arrays", "--data-path", "NPZ", "--classes-per-task", "2",
                         "--class-order", "0", "1", "2"],  # --quick: 3 tasks
     "num_tasks x classes_per_task = 3 x 2 must be positive and at most the 3 classes named by "
     "class_order (of the 6 of "),
])
def test_friendlier_refusals_in_one_line(module, argv, message, tmp_path, capsys):
    import importlib

    (tmp_path / "folder").mkdir()
    subs = {"NPZ": str(_npz(tmp_path)), "MISSING": str(tmp_path / "nope.json"),
            "FOLDER": str(tmp_path / "folder")}
    argv = [subs.get(a, a) for a in argv]
    main = importlib.import_module(f"experiments.{module}").main
    assert run_main(main, module, ["--quick", *argv, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


def test_another_experiments_config_json_names_its_experiment(tmp_path, capsys):
    from experiments import freeze_depth, split_benchmark

    freeze_depth.main(["--quick", "--depths", "1", "--out", str(tmp_path / "fd")])
    config = tmp_path / "fd" / "config.json"
    assert json.loads(config.read_text())["experiment"] == "freeze_depth"
    assert run_main(split_benchmark.main, "split_benchmark",
                    ["--config", str(config), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert (f"config {config} is the config.json of a freeze_depth run, not of split_benchmark; "
            f"re-run it with jaxcl run freeze_depth --config {config}") in err
    # An older run folder's config.json names no experiment: its metrics.json beside it does.
    older = json.loads(config.read_text())
    del older["experiment"]
    config.write_text(json.dumps(older))
    assert run_main(split_benchmark.main, "split_benchmark",
                    ["--config", str(config), "--out", str(tmp_path / "r")]) == 1
    assert "is the config.json of a freeze_depth run" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, message", [
    (["--order", "3"], "error: argument --order: order must be one of 1, 2, none, got '3'"),
    (["--num-tasks", "2.5"], "error: argument --num-tasks: num_tasks must be a positive integer"),
    (["--class-order", "cat", "dog"], "error: argument --class-order: invalid int value: 'cat'"),
])
def test_a_flags_type_error_is_one_line_not_the_usage(argv, message, capsys):
    from experiments import split_benchmark

    with pytest.raises(SystemExit) as stop:
        split_benchmark.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert err[0].endswith("`jaxcl run split_benchmark --help` lists every option")


def test_image_folders_without_the_data_extra_say_which_extra(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "jaxcl.data.tfds_builders", raising=False)
    with pytest.raises(ImportError, match=r"install the data extra, pip install 'jaxcl\[data\]'"):
        importlib.import_module("jaxcl.data.tfds_builders")


def test_the_manifest_names_the_variants_of_a_run():
    """Which variants run is not in a checkpoint's fingerprint (each checkpoints apart), but it
    is the run's identity: a run of fewer would delete the others' checkpoints when it ends."""
    from experiments import sde_flow_forgetting
    from jaxcl import config as settings

    every = sde_flow_forgetting.Config()
    fewer = settings.replace(every, variants=every.variants[:1])
    assert "variants" not in settings.fingerprint(every)
    assert settings.identity(every) != settings.identity(fewer)
    assert not {"progress", "compile_cache_dir"} & set(settings.identity(every))


def test_ctrl_c_while_data_load_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import jaxcl.data
    from experiments import split_benchmark

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jaxcl.data, "load_benchmark", ctrl_c)
    out = tmp_path / "r"
    argv = ["--quick", "--strategies", "Naive", "--out", str(out)]
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 130
    from jaxcl.io.checkpoints import INTERRUPTED_EARLY

    assert capsys.readouterr().err.strip().splitlines() == [
        f"jaxcl run split_benchmark: {INTERRUPTED_EARLY}"]
    assert not out.exists()


def test_sigint_while_tfds_prepares_the_data_ends_in_one_line(tmp_path):
    """A real Ctrl-C while TFDS prepares Fashion-MNIST from the Debian package's files (its
    worker threads running): exit status 130, one line, no traceback, nothing written."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from support import ROOT

    from jaxcl.data import tfds_builders

    for wait in (0.0, 1.5):  # as preparation starts, and inside it
        data_dir, out = tmp_path / f"tfds{wait}", tmp_path / f"run{wait}"
        command = [sys.executable, "-m", "experiments.split_benchmark", "--benchmark",
                   "split_fashion_mnist", "--manual-dir", str(tfds_builders.DEBIAN_FASHION_MNIST),
                   "--data-dir", str(data_dir), "--model", "mlp", "--strategies", "Naive",
                   "--epochs", "1", "--no-augment", "--no-progress", "--out", str(out)]
        proc = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while not (data_dir / "fashion_mnist_files").exists():  # TFDS has begun preparing
            assert proc.poll() is None and time.monotonic() < deadline, "preparation never began"
            time.sleep(0.05)
        time.sleep(wait)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.startswith("jaxcl run ")]
        assert proc.returncode == 130, (wait, proc.returncode, err[-2000:])
        assert lines == ["jaxcl run split_benchmark: interrupted before the first checkpoint; "
                         "nothing is kept, rerun the same command to start again"], err[-2000:]
        assert "Traceback" not in err and not out.exists()


def test_a_failed_download_fails_at_the_first_connection_error(tmp_path):
    """With no network (name resolution fails), a dataset neither prepared nor in manual_dir
    used to wait 205 s for TFDS's ten retries; it fails at the first, naming the dataset."""
    import subprocess
    import sys

    from support import ROOT

    code = f"""
import socket, time
def offline(*args, **kwargs):
    raise socket.gaierror(-2, "Name or service not known")
socket.getaddrinfo = offline
from tensorflow_datasets.core.utils import gcs_utils
gcs_utils.is_dataset_on_gcs = lambda *args, **kwargs: False  # TFDS's prepared copies: offline
from jaxcl.data import tfds_benchmarks as tb
from tensorflow_datasets.core.download import downloader
start = time.perf_counter()
try:
    tb.load_benchmark("split_cifar100", seed=0, data_dir={str(tmp_path / "tfds")!r})
except tb.DataNotAvailableError as error:
    print(round(time.perf_counter() - start, 1), downloader.MAX_RETRIES, "|", error)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    last = (done.stdout.strip().splitlines() or [""])[-1]  # after TFDS's own lines
    seconds, retries, _, message = last.split(" ", 3)
    assert float(seconds) < 20, done.stdout  # was 205 s
    assert retries == "10"  # TFDS's setting is back once the download has failed
    assert "dataset 'cifar100' is not prepared" in message and "its download failed" in message
    assert "cifar-100-binary.tar.gz" in message  # what to put in manual_dir


@pytest.mark.parametrize("size", ["100000", "4096"])
def test_an_image_size_that_cannot_fit_is_refused_before_any_work(size, tmp_path, capsys):
    """It used to abort inside XLA (exit 134, a C++ stack trace)."""
    from experiments import split_benchmark

    argv = ["--quick", "--strategies", "Naive", "--image-size", size, "--out", str(tmp_path / "r")]
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"image_size={size} needs at least " in err[0], err
    assert "the synthetic stream" in err[0] and "the device holds" in err[0]
    assert not (tmp_path / "r").exists()


def test_the_memory_estimate_counts_the_stream_and_the_first_activations():
    from experiments import split_benchmark
    from experiments.settings import memory_estimate
    from jaxcl.config import make, replace

    config = make(split_benchmark.Config, strategies=("Naive",), image_size=32, num_tasks=2,
                  classes_per_task=3, train_per_class=10, test_per_class=5)
    need = memory_estimate(config)
    assert need["the synthetic stream"] == 4 * 2 * 3 * (10 + 5 + 1) * 32 * 32 * 3
    assert need["one minibatch's activations"] == 4 * 64 * 32 * 32 * 20 * 4
    mlp = replace(config, model="mlp", hidden=(50,))
    assert memory_estimate(mlp)["the MLP's first layer with its gradient and Adam's moments"] == (
        4 * 4 * 32 * 32 * 3 * 50)
    # Where the benchmark fixes the image size, nothing depends on --image-size.
    assert memory_estimate(replace(config, benchmark="split_digits")) == {}


@pytest.fixture
def ctrl_c_heard():
    """Python's own SIGINT handler for the test: a pytest started in a shell's background (as
    ``cmd &`` without job control) inherits SIGINT ignored, and a run there rightly stays deaf to
    it (:func:`jaxcl.io.interrupts.kept`); these tests are about a terminal's Ctrl-C."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_heard")
def test_a_ctrl_c_swallowed_on_its_way_still_stops_the_run(tmp_path, monkeypatch, capsys):
    """Python drops a KeyboardInterrupt raised inside a garbage-collection callback (JAX's
    ``_xla_gc_callback``): "Exception ignored in ...", and the run went on. The run remembers
    the signal and stops at its next event."""
    import os
    import signal

    import jaxcl.data
    from experiments import split_benchmark

    load = jaxcl.data.load_benchmark

    def load_and_swallow(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C ...
        except KeyboardInterrupt:
            pass  # ... swallowed, as a gc callback would
        return load(*args, **kwargs)

    monkeypatch.setattr(jaxcl.data, "load_benchmark", load_and_swallow)
    out = tmp_path / "r"
    argv = ["--quick", "--strategies", "Naive", "--out", str(out)]
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["jaxcl run split_benchmark: interrupted before the first checkpoint; nothing "
                   "is kept, rerun the same command to start again"]
    assert not out.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


@pytest.mark.usefixtures("ctrl_c_heard")
def test_a_ctrl_c_swallowed_during_training_stops_at_the_next_epoch(tmp_path, monkeypatch, capsys):
    import os
    import signal

    from experiments import split_benchmark
    from jaxcl.train import loop as engine

    checked = engine.check_finite

    def swallow_in_experience_1(loss, **where):
        if (where["experience"], where["epoch"]) == (1, 0):
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                pass
        checked(loss, **where)

    monkeypatch.setattr(engine, "check_finite", swallow_in_experience_1)
    argv = ["--quick", "--strategies", "Naive", "--out", str(tmp_path / "r")]
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted; the checkpoint (after experience 0, epoch 1)" in err[0]


def test_ctrl_c_while_jaxcl_run_imports_the_experiment_is_one_line(monkeypatch, capsys):
    import importlib

    from jaxcl import cli

    real = importlib.import_module

    def ctrl_c(name, *args, **kwargs):
        if name == "experiments.split_benchmark":
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", ctrl_c)
    assert cli.main(["run", "split_benchmark", "--quick"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxcl run split_benchmark: interrupted before")
