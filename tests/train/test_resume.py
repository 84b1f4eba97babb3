"""Trust: checkpoints that resume to the same numbers (after an experience, inside one, after a
SIGKILL), runs that stop loudly on non-finite losses, the command line and its refusals, and
TensorBoard logs that hold the run."""

import os
import re
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import ROOT, build, interrupted_at, read_events, tiny_stream

from jaxcl.io.checkpoints import RunCheckpoints
from jaxcl.train.loop import NonFiniteError, train_stream


class _PoisonExperience:
    """A strategy whose loss turns NaN in experience ``bad`` (to test the run's stop)."""

    def __init__(self, inner, bad):
        self.inner, self.bad = inner, bad

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_step(self, state, batch, task_id, key, *, first):
        state, metrics = self.inner.train_step(state, batch, task_id, key, first=first)
        poison = jnp.where(task_id == self.bad, jnp.nan, 0.0)
        return state, {**metrics, "loss": metrics["loss"] + poison}


def test_non_finite_loss_stops_with_where_and_keeps_the_last_checkpoint(tmp_path):
    stream = tiny_stream()
    strategy = _PoisonExperience(build("Naive", stream), bad=1)
    with pytest.raises(NonFiniteError, match=r"experience 1, epoch 0, step 0 of 4 \(seed index "
                       r"0\); the run stops; the checkpoint \(after experience 0, epoch 0\) is "
                       r"kept in .*ckpt$"):
        train_stream(strategy, stream, key=jax.random.key(0), epochs=1, batch_size=16,
                     checkpoints=RunCheckpoints(tmp_path / "ckpt"))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit()) == ["0"]


def test_engine_resumes_from_a_checkpoint_to_the_same_numbers(tmp_path):
    stream = tiny_stream()
    strategy = build("HN-1", stream, order=1)
    kw = {"key": jax.random.key(0), "epochs": 2, "batch_size": 16, "run_name": "HN-1 order 1"}
    plain = train_stream(strategy, stream, **kw)
    # Stop after experience 1 by poisoning experience 2, then resume with the healthy strategy.
    with pytest.raises(NonFiniteError):
        train_stream(_PoisonExperience(strategy, bad=2), stream,
                     checkpoints=RunCheckpoints(tmp_path), **kw)
    resumed = train_stream(strategy, stream, checkpoints=RunCheckpoints(tmp_path), **kw)
    np.testing.assert_array_equal(resumed.matrix, plain.matrix)
    np.testing.assert_array_equal(resumed.transfer, plain.transfer)
    for name, values in plain.step_metrics.items():
        np.testing.assert_array_equal(resumed.step_metrics[name], values, err_msg=name)
    with pytest.raises(ValueError, match="holds checkpoints of another run; it differs in "
                                         "epochs: 2 in the checkpoint, 3 now. Use another"):
        train_stream(strategy, stream, **{**kw, "epochs": 3},
                     checkpoints=RunCheckpoints(tmp_path))


def test_engine_resumes_inside_an_experience_from_an_epoch_checkpoint(tmp_path, monkeypatch):
    from jaxcl.train import loop as engine

    stream = tiny_stream(num_tasks=2)
    strategy = build("HN-1", stream, order=1)
    kw = {"key": jax.random.key(0), "epochs": 3, "batch_size": 16, "checkpoint_epochs": 1}
    plain = train_stream(strategy, stream, **kw)
    with interrupted_at(monkeypatch, engine, experience=1, epoch=1):
        train_stream(strategy, stream, checkpoints=RunCheckpoints(tmp_path), **kw)
    assert max(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == 3  # (1, 0)
    resumed = train_stream(strategy, stream, checkpoints=RunCheckpoints(tmp_path), **kw)
    np.testing.assert_array_equal(resumed.matrix, plain.matrix)
    np.testing.assert_array_equal(resumed.transfer, plain.transfer)
    for name, values in plain.step_metrics.items():
        np.testing.assert_array_equal(resumed.step_metrics[name], values, err_msg=name)


def _quick(out, *extra):
    return [sys.executable, "-m", "experiments.split_benchmark", "--quick", "--seeds", "0", "1",
            "--strategies", "HN-1", "--order", "1", "--out", str(out), *extra]


def test_a_killed_run_resumes_and_ends_with_the_same_results(tmp_path):
    from experiments import split_benchmark

    plain = split_benchmark.main(_quick(tmp_path / "plain")[3:])
    out = tmp_path / "killed"
    # The same JAX settings as this process (conftest), so that the keys are the same.
    env = {**os.environ, "JAX_THREEFRY_PARTITIONABLE": str(jax.config.jax_threefry_partitionable)}
    proc = subprocess.Popen(_quick(out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Kill it once HN-1 has checkpointed its first experience of three: mid-run.
    deadline = time.monotonic() + 300
    target = out / "checkpoints" / "HN-1-seeds-0-1"
    while not (target.is_dir() and any(p.name.isdigit() for p in target.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert not (out / "metrics.json").exists()  # no result files from the killed run
    resumed = split_benchmark.main(_quick(out)[3:])
    for label in ("HN-1",):
        a, b = plain["strategies"][label], resumed["strategies"][label]
        assert a["accuracy_matrix"] == b["accuracy_matrix"], label
        assert [s["accuracy_matrix"] for s in a["per_seed"]] == [
            s["accuracy_matrix"] for s in b["per_seed"]], label
    steps = [(tmp_path / name / "steps.csv").read_text() for name in ("plain", "killed")]
    assert steps[0] == steps[1]
    with pytest.raises(FileExistsError, match="holds a finished run"):
        split_benchmark.main(_quick(out)[3:])
    # A finished run keeps no checkpoints unless asked.
    assert not (out / "checkpoints").exists() and not (tmp_path / "plain" / "checkpoints").exists()


def test_tensorboard_event_files_hold_the_run(tmp_path):
    from experiments import split_benchmark

    metrics = split_benchmark.main(["--quick", "--strategies", "Naive", "--tensorboard",
                                    "--out", str(tmp_path / "run")])
    events = read_events(tmp_path / "run" / "tensorboard" / "Naive" / "seed_0")
    matrix = np.asarray(metrics["strategies"]["Naive"]["accuracy_matrix"])
    losses = [v for _, v in sorted(events["train/loss"])]
    steps = (tmp_path / "run" / "steps.csv").read_text().splitlines()[1:]
    np.testing.assert_allclose(losses, [float(row.split(",")[4]) for row in steps], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in sorted(events["eval/accuracy_exp_0"])],
                               matrix[:, 0], rtol=1e-6)
    assert [s for s, _ in sorted(events["eval/aca"])] == [0, 1, 2]


def test_cli_lists_runs_and_stops_non_zero_on_a_non_finite_loss(tmp_path, capsys):
    from jaxcl import cli

    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("split_benchmark ") and "Table 2" in line for line in listed)
    assert len(listed) == len(cli.experiments()) >= 8
    helpers = ("settings", "runner", "flags", "paper", "sde_flow_settings", "sde_flow_tables")
    assert not any(line.split()[0] in helpers for line in listed)
    with pytest.raises(SystemExit) as help_exit:
        cli.main(["run", "split_benchmark", "--help"])
    assert help_exit.value.code == 0
    shown = capsys.readouterr().out
    for option in ("--devices", "--seeds", "--resume", "--quick", "--out", "--tensorboard",
                   "--benchmark", "--data-dir"):
        assert option in shown, option
    assert "(default: 100)" in shown  # epochs, with its default
    # Each option says what it does and what it takes.
    for line in ("strategy labels: Naive, EWC, Frozen-k (k 0..4), LR-k (k 1..4)",
                 "the ResNet's normalisation: reference (each strategy's as in the reference "
                 "implementation), batch, instance or running",
                 "HN-k's look-ahead order: 1, 2, or none"):
        assert line in " ".join(shown.split()), line
    assert "(default: None)" not in shown and shown.startswith("usage: jaxcl run split_benchmark")
    # Grouped by the section that owns them, the module's own settings last.
    headings = [line for line in shown.splitlines() if line and not line.startswith(" ")]
    assert [h.split(":")[0] for h in headings[-4:]] == ["run", "data", "strategy",
                                                        "this experiment"]
    # Adam at lr 1e30 overflows the logits on the second step.
    code = cli.main(["run", "split_benchmark", "--quick", "--strategies", "Naive",
                     "--learning-rate", "1e30", "--out", str(tmp_path / "nan")])
    err = capsys.readouterr().err
    assert code == 1 and "NonFiniteError" in err and "experience 0" in err, err
    # In the first experience nothing was checkpointed: the line says so, and leaves no folder.
    assert "no checkpoint was written, so nothing is kept" in err and "is kept in" not in err
    assert not (tmp_path / "nan").exists()
    with pytest.raises(SystemExit):
        cli.main(["run", "no_such_experiment"])


@pytest.mark.parametrize("argv, message", [
    (["--devices", "64"], r"devices must be in 1\.\.1 .*got 64"),
    (["--batch-size", "0"], "batch_size must be a positive integer"),
    (["--learning-rate", "-1"], "learning_rate must be > 0"),
    (["--order", "3"], "order must be one of 1, 2, none, got '3'"),
    (["--model", "resnet", "--strategies", "HN-5"], r"freeze depth k=5 is not one of"),
    (["--strategies", "LR-F"], r"'LR-F': the freeze depth must be a digit or F \(HN only\)"),
    (["--strategies", "LR-0"], "latent replay needs a frozen part"),
    (["--seeds"], "expected at least one argument"),
    (["--seeds", "0", "1", "0"], r"seeds \[0, 1, 0\] name \[0\] more than once"),
    (["--hidden", "0"], r"hidden must be one or more positive widths, got \[0\]"),
    (["--num-tasks", "0"], r"num_tasks must be a positive integer or 'all' .*got '0'"),
    (["--epochs", "1000000000"], r"epochs=1000000000 .* would take [0-9.]+ GiB"),
])
def test_bad_run_options_are_refused_before_any_work(argv, message, tmp_path, capsys):
    """Through ``jaxcl run``: a bad value is one line naming it and exit status 1 (2 where
    argparse itself refuses a flag's form), and nothing is written."""
    from jaxcl import cli

    try:
        code = cli.main(["run", "split_benchmark", "--quick", *argv, "--out",
                         str(tmp_path / "r")])
    except SystemExit as stop:  # argparse: usage and one error line
        code = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2), code
    assert re.search(message, err[-1]), err
    assert code == 2 or len(err) == 1, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("label", ["HN-1", "Naive", "LR-1"])
def test_more_tasks_than_the_strategy_holds_are_refused_before_training(label, monkeypatch):
    """Past the embedding table's (or the heads') last row a traced gather would clamp."""
    stream = tiny_stream(num_tasks=3)
    strategy = build(label, stream[:2])  # holds tasks 0 and 1 only
    assert strategy.num_tasks == 2
    monkeypatch.setattr(jax, "jit", None)  # any compilation would fail with a TypeError
    with pytest.raises(ValueError, match=r"task ids \[2\] but \S+ holds 2 tasks \(ids 0\.\.1"):
        train_stream(strategy, stream, key=jax.random.key(0), epochs=1, batch_size=16)


def test_tensorboard_without_its_writer_is_refused_before_any_work(tmp_path, monkeypatch,
                                                                  capsys):
    import builtins

    from experiments import sde_flow_forgetting as study
    from experiments import split_benchmark

    real_import = builtins.__import__

    def no_tensorboardx(name, *args, **kwargs):
        if name.startswith("tensorboardX"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    for module in (split_benchmark, study):
        with pytest.raises(ImportError, match=r"pip install 'jaxcl\[tensorboard\]'"):
            module.main(["--quick", "--tensorboard", "--out", str(tmp_path / module.__name__)])
        assert not (tmp_path / module.__name__).exists()
    from jaxcl import cli

    assert cli.main(["run", "sde_flow_forgetting", "--quick", "--tensorboard", "--out",
                     str(tmp_path / "cli")]) == 1
    assert "jaxcl[tensorboard]" in capsys.readouterr().err


def test_every_option_that_can_change_a_number_is_in_the_fingerprint(tmp_path):
    """A checkpoint of another run is refused, naming each option that differs, old and new, for
    every option of the study modules; the options that cannot change a number are left out."""
    from experiments import split_benchmark
    from jaxcl.io.checkpoints import CheckpointMismatchError, RunCheckpoints

    from jaxcl import config as settings

    config = split_benchmark.Config()
    options = settings.fingerprint(config)
    # preset only fills the settings it names, which are fingerprinted themselves; which
    # strategies run is each checkpoint's own (its strategy's settings)
    assert set(options) == set(settings.flat(config)) - {
        "data_dir", "manual_dir", "download", "checkpoint_epochs", "checkpoint_seconds",
        "keep_checkpoints",
        "tensorboard", "progress", "workers", "compile_cache", "compile_cache_dir", "preset",
        "strategies"}
    tree = {"w": jnp.zeros(3)}
    for i, (name, value) in enumerate(sorted(options.items())):
        other = (not value if isinstance(value, bool) else value + (7,)
                 if isinstance(value, tuple) else value + "x" if isinstance(value, str)
                 else value + 1)
        saver = RunCheckpoints(tmp_path / str(i))
        saver.resume({"settings": {"options": options}}, tree, epochs=1)
        saver.save(0, 0, tree, compile_s=0.0)
        saver.close()
        changed = RunCheckpoints(tmp_path / str(i))
        with pytest.raises(CheckpointMismatchError) as refused:
            changed.resume({"settings": {"options": {**options, name: other}}}, tree, epochs=1)
        changed.close()
        message = str(refused.value)
        assert f"settings.options.{name}: " in message, message
        assert repr(json_round(value)) in message and repr(json_round(other)) in message
        assert message.count(" in the checkpoint, ") == 1  # only that option


def json_round(value):
    return list(value) if isinstance(value, tuple) else value


def test_a_rerun_with_other_data_options_is_refused_and_one_without_resumes(tmp_path):
    """The issue's case: an unfinished run's folder, rerun with another --noise or --augment, used
    to finish with the first run's numbers under the new config.json."""
    import shutil

    from experiments import split_benchmark
    from jaxcl.io.checkpoints import CheckpointMismatchError

    argv = ["--quick", "--strategies", "Naive", "--no-progress", "--keep-checkpoints", "--out",
            str(tmp_path / "run")]
    first = split_benchmark.main(argv)
    for item in (tmp_path / "run").iterdir():  # leave an unfinished run: its checkpoints alone
        if item.name != "checkpoints":
            item.unlink()
    with pytest.raises(CheckpointMismatchError,
                       match=r"unfinished run of split_benchmark \(Naive\); this command "
                             r"differs in settings\.noise: 1\.0 in the checkpoint, 2\.0 now\. "
                             r"Rerun that run's command"):
        split_benchmark.main([*argv, "--noise", "2.0"])
    with pytest.raises(CheckpointMismatchError,
                       match=r"differs in settings\.augment: False in the "
                             r"checkpoint, True now\. Rerun"):
        split_benchmark.main([*argv, "--augment"])
    assert not (tmp_path / "run" / "metrics.json").exists()
    # What cannot change a number may change: the run resumes and ends with the same numbers.
    again = split_benchmark.main([*argv, "--progress", "--checkpoint-epochs", "1"])
    assert again["strategies"]["Naive"]["accuracy_matrix"] == first["strategies"]["Naive"][
        "accuracy_matrix"]
    shutil.rmtree(tmp_path / "run")


def _unfinished(tmp_path, argv):
    """Run ``split_benchmark`` to the end, then leave only its checkpoints: an unfinished run."""
    from experiments import split_benchmark

    finished = split_benchmark.main(argv)
    for item in (tmp_path / "run").iterdir():
        if item.name != "checkpoints":
            item.unlink()
    return finished


def test_a_damaged_checkpoint_falls_back_to_the_one_before_and_none_fails_in_one_line(
        tmp_path, capsys):
    from experiments import split_benchmark
    from jaxcl.cli import run_main

    argv = ["--quick", "--strategies", "Naive", "--no-progress", "--keep-checkpoints", "--out",
            str(tmp_path / "run")]
    first = _unfinished(tmp_path, argv)
    folder = tmp_path / "run" / "checkpoints" / "Naive-seeds-0"
    steps = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    assert steps == [3, 5]  # after experiences 1 and 2 (2 epochs each), the last two kept

    def damage(step):
        for f in (folder / str(step) / "tree").rglob("*"):
            if f.is_file() and f.stat().st_size > 64:
                f.write_bytes(f.read_bytes()[:16])  # truncated

    damage(5)
    half_saved = folder / "7.orbax-checkpoint-tmp-1234"  # a save killed before its rename
    half_saved.mkdir()
    (half_saved / "junk").write_bytes(b"x" * 100)
    capsys.readouterr()
    again = split_benchmark.main(argv)
    out = capsys.readouterr().out
    assert not half_saved.exists()
    assert f"checkpoint 5 in {folder} does not restore" in out
    assert "resumed from" in out and "after experience 1, epoch 1" in out
    assert again["strategies"]["Naive"]["accuracy_matrix"] == first["strategies"]["Naive"][
        "accuracy_matrix"]
    for item in (tmp_path / "run").iterdir():
        if item.name != "checkpoints":
            item.unlink()
    for step in sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()):
        damage(step)
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of the 2 checkpoints in" in err[0] and "delete" in err[0]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_ctrl_c_stops_in_one_line_keeps_the_checkpoint_and_the_rerun_resumes(
        tmp_path, monkeypatch, capsys):
    from experiments import split_benchmark
    from jaxcl.cli import run_main
    from jaxcl.train import loop as engine

    argv = ["--quick", "--strategies", "Naive", "--no-progress", "--keep-checkpoints", "--out",
            str(tmp_path / "run")]
    checked = engine.check_finite

    def ctrl_c(loss, **where):
        if (where["experience"], where["epoch"]) == (1, 1):
            raise KeyboardInterrupt
        checked(loss, **where)

    monkeypatch.setattr(engine, "check_finite", ctrl_c)
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert ("interrupted; the checkpoint (after experience 0, epoch 1) is kept in" in err[0]
            and "rerun the same command to resume" in err[0])
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(engine, "check_finite", checked)
    assert run_main(split_benchmark.main, "split_benchmark", argv) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "after experience 0, epoch 1" in out  # under --no-progress
    assert (tmp_path / "run" / "metrics.json").exists()


def test_commands_that_load_no_tfds_benchmark_import_no_tensorflow():
    """``jaxcl list``, ``--help`` and the main job never import TensorFlow (distrax's TFP
    substrate would, only to copy docstrings: 3 s and log lines on every command)."""
    code = ("import sys, jaxcl.cli as cli; cli.experiments(); "
            "import experiments.sde_flow_forgetting, jaxcl.models.sde_flow; "
            "print('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert "oneDNN" not in done.stderr


def test_python_m_answers_bad_input_in_one_line_as_jaxcl_run_does(tmp_path):
    """The README's main command form: one line naming the value, exit status 1, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "experiments.split_benchmark", "--quick", "--seeds", "0", "0",
         "--out", str(tmp_path / "r")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("jaxcl run ")]
    assert len(lines) == 1 and "seeds [0, 0] name [0] more than once" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


def test_sigint_mid_run_ends_in_one_line_with_status_130_and_the_rerun_resumes(tmp_path):
    import signal

    out = tmp_path / "run"
    # 100 epochs: seconds of training after the first checkpoint, so the signal comes mid-run.
    command = [sys.executable, "-m", "experiments.split_benchmark", "--quick", "--strategies",
               "HN-1", "--order", "1", "--epochs", "100", "--no-progress", "--out", str(out)]
    env = {**os.environ, "JAX_THREEFRY_PARTITIONABLE": str(jax.config.jax_threefry_partitionable)}
    # SIGINT as a terminal sends it, even if this test runs in the background of a shell (whose
    # children ignore SIGINT from birth, and Python then installs no handler for it).
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    target = out / "checkpoints" / "HN-1-seeds-0"
    deadline = time.monotonic() + 300
    while not (target.is_dir() and any(p.name.isdigit() for p in target.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.startswith("jaxcl run ")]
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0], err
    assert "Traceback" not in err
    assert not (out / "metrics.json").exists()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "resumed from" in done.stdout, done.stderr
