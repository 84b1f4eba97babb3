"""Nothing lost, nothing misreported (issue 27): a rerun into an unfinished run's ``--out`` with
other strategies, options or another experiment is refused before it can resume, overwrite or
delete that run's checkpoints; a run that fails before its first checkpoint leaves nothing."""

import json

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
    naive = [a if a != "HN-1" else "Naive" for a in hn1]
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
