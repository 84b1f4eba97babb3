"""Nothing lost, nothing misreported (issue 27): a rerun into an unfinished run's ``--out`` with
other strategies, options or another experiment is refused before it can resume, overwrite or
delete that run's checkpoints; a run that fails before its first checkpoint leaves nothing."""

import json

import pytest

from jaxcl.cli import run_main
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
     "--preset paper does nothing in this run: no HN-k among the strategies"),
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
    assert set(unused) <= set(split_benchmark.Config.__dataclass_fields__)
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

    every = sde_flow_forgetting.Config()
    fewer = sde_flow_forgetting.Config(variants=every.variants[:1])
    assert "variants" in every.NO_EFFECT and every.identity() != fewer.identity()
    assert "progress" not in every.identity() and "compile_cache_dir" not in every.identity()
