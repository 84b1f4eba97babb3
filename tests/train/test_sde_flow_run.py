"""The Hypernet-SDE-Flow study at scale, through the one loop
(:func:`jaxcl.train.loop.train_seeds`): a run stopped inside a task resumes to the same numbers,
a non-finite loss stops it, what the loop cannot run is refused before anything compiles, and
the experiment resumes where a killed run left off. (Seeds vmapped against separate runs, a run
killed after a task, programs shared by loss weights: ``tests/train/test_loop_sde_flow.py``, whose compiled
programs these tests share; the data-parallel run on 1 and 2 devices: ``tests/train/test_parallel.py``'s
subprocess.)"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import interrupted_at, read_events
from test_loop_sde_flow import (
    KEYS,
    PROGRAMS,
    RUN,
    TINY,
    assert_same_run,
    learner,
    run,
    tasks,
)

from experiments.sde_flow_tables import COLLAPSE
from jaxcl.io.checkpoints import CheckpointMismatchError, RunCheckpoints
from jaxcl.learners.sde_flow import STEP_METRICS
from jaxcl.train import loop
from jaxcl.train.steps import NonFiniteError


@pytest.fixture(scope="module")
def streams():
    return [tasks(0), tasks(1)]


def test_a_run_stopped_inside_a_task_resumes_to_the_same_numbers(streams, tmp_path,
                                                                   monkeypatch):
    plain = run(streams)
    with interrupted_at(monkeypatch, loop, experience=1, epoch=1):
        run(streams, checkpoints=RunCheckpoints(tmp_path), checkpoint_epochs=1)
    # The last checkpoint is of task 1's epoch 0 (position task * epochs + epoch).
    assert max(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == 2
    resumed = run(streams, checkpoints=RunCheckpoints(tmp_path), checkpoint_epochs=1)
    for a, b in zip(plain, resumed):
        assert_same_run(a, b)
        assert len(b.time_per_experience) == 3
    # Epoch by epoch, resumed or not: the same programs, nothing new compiled.
    assert resumed[0].compilations == plain[0].compilations == PROGRAMS
    with pytest.raises(CheckpointMismatchError, match="holds checkpoints of another run; it "
                                                      "differs in epochs: 2 in the checkpoint, "
                                                      "3 now"):
        run(streams, checkpoints=RunCheckpoints(tmp_path), epochs=3,
            variant=dataclasses.replace(TINY, epochs=3))


def test_a_non_finite_loss_stops_the_study_with_where_it_happened(streams, tmp_path):
    stream = list(streams[0])
    stream[1] = stream[1]._replace(x_train=stream[1].x_train.at[3].set(jnp.nan))
    with pytest.raises(NonFiniteError, match=r"experience 1, epoch 0, step \d of 2 \(seed "
                                             r"index 0\)"):
        run([stream], checkpoints=RunCheckpoints(tmp_path))
    # Only the checkpoint of task 0 (after its last epoch) is kept.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["1"]


def test_what_the_loop_cannot_run_is_refused_before_anything_compiles(streams, monkeypatch):
    monkeypatch.setattr(jax, "jit", None)  # any compilation would fail with a TypeError
    with pytest.raises(ValueError, match="2 streams for 1 keys"):
        loop.train_seeds(learner(), streams, keys=KEYS[:1], **RUN)
    with pytest.raises(ValueError, match=r"devices must be in 1\.\.1 .* got 2"):
        loop.train_seeds(learner(), streams, keys=KEYS, devices=2, **RUN)
    with pytest.raises(ValueError, match="stream 1 differs from stream 0"):
        loop.train_seeds(learner(), [streams[0], streams[1][:2]], keys=KEYS, **RUN)
    with pytest.raises(ValueError, match=r"task ids \[2\] but sde_flow holds 2 tasks"):
        loop.train_seeds(type(learner()).build(TINY, num_tasks=2, train_per_task=20), streams,
                         keys=KEYS, **RUN)
    from experiments import sde_flow_forgetting as study

    for argv, match in ((["--latent", "4"], r"latent=4 is not one of \(1, 2, 3\)"),
                        (["--nll", "exact"], (r"nll='exact' is not one of \('paper', 'rectangular', "
                                              r"'flow_only'\)"))):
        with pytest.raises(ValueError, match=match):
            study.main(["--quick", *argv])


def test_the_study_writes_every_file_and_resumes_where_a_killed_run_left_off(tmp_path,
                                                                             monkeypatch, capsys):
    from experiments import sde_flow_forgetting as study

    variants = ["mlp", "hypernet_sde_flow", "ablation_no_replay_sep"]
    # A 1-D latent: both models at the smallest size, the paper's NLL with a 1 x 3 Jacobian.
    argv = ["--quick", "--variants", *variants, "--seeds", "0", "1", "--epochs", "2",
            "--tensorboard", "--latent", "1", "--checkpoint-seconds", "0"]  # after every task
    plain_out = tmp_path / "plain"
    plain = study.main([*argv, "--out", str(plain_out)])
    files = {p.name for p in plain_out.iterdir()}
    assert {"config.json", "metrics.json", "summary.md", "mse_matrices.csv", "forgetting.csv",
            "steps.csv", "tensorboard"} <= files
    assert "checkpoints" not in files  # a finished run keeps them only with --keep-checkpoints
    saved = json.loads((plain_out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(plain))
    assert saved["schema"] == study.SCHEMA and saved["reference"]["ratio"] == pytest.approx(
        0.3822 / 0.0016)
    names = study.Config().variants  # every variant, the default
    assert set(names) - set(saved) == set(names) - set(variants)
    for name in variants:
        entry = saved[name]
        m = np.asarray(entry["mse_matrix"])
        assert m.shape == (5, 5) and np.all(m > 0), name
        np.testing.assert_allclose(m, np.mean([s["mse_matrix"] for s in entry["per_seed"]], 0))
        assert entry["forgetting_t0"] == pytest.approx(m[4, 0] - m[0, 0])
        assert entry["mean_forgetting"] == pytest.approx(np.mean(m[4, :4] - np.diag(m)[:4]))
        assert entry["forgetting_t0_std"] > 0, name  # two seeds, two results
        seeds = [s["forgetting_t0"] for s in entry["per_seed"]]  # t_{0.975, 1} = 12.706
        assert entry["forgetting_t0_ci95"] == pytest.approx(
            12.7062 * np.std(seeds, ddof=1) / np.sqrt(2), rel=1e-4), name
        collapse = np.asarray([entry["end_of_task"][k] for k in COLLAPSE])
        assert collapse.shape == (4, 5) and np.all(np.isfinite(collapse)), name
        assert (collapse[1] > 0).all() == (name != "mlp"), name  # sigma: the MLP has no SDE
        assert (plain_out / f"mse_matrix_{name}.png").read_bytes()[:4] == b"\x89PNG"
    # The study and its ablation differ only in traced weights: their first task is the same
    # program on the same data and key, so their first rows agree.
    np.testing.assert_allclose(saved["hypernet_sde_flow"]["mse_matrix"][0],
                               saved["ablation_no_replay_sep"]["mse_matrix"][0], rtol=1e-5)
    assert (saved["config"]["model"]["latent"], saved["config"]["model"]["nll"]) == (1, "paper")
    steps_header = (plain_out / "steps.csv").read_text().splitlines()[0].split(",")
    assert steps_header[4:] == list(STEP_METRICS) and "decoder_gain" in steps_header
    summary = (plain_out / "summary.md").read_text()
    assert "NLL paper, latent 1" in summary
    assert "+0.3822" in summary and "+0.0016" in summary and "239x" in summary
    assert len((plain_out / "forgetting.csv").read_text().splitlines()) == 1 + len(variants)
    import csv  # numbers in CSV, formatting only in Markdown

    header, *rows = csv.reader((plain_out / "forgetting.csv").read_text().splitlines())
    assert header[0] == "model" and [r[0] for r in rows] == variants
    for row in rows:
        cells = dict(zip(header, row))
        assert all(v == "" or float(v) == float(v) for v in row[1:]), row  # numbers or empty
        assert float(cells["forgetting_t0"]) == pytest.approx(saved[row[0]]["forgetting_t0"])
    assert dict(zip(header, rows[0]))["forgetting_t0_study"] == "0.0016"  # the study's MLP
    # Ratios over the MLP's increase only where its 95 % interval lies above zero.
    mlp = saved["mlp"]
    above = mlp["forgetting_t0"] - mlp["forgetting_t0_ci95"] > 0
    over = [dict(zip(header, row))["forgetting_t0_over_mlp"] for row in rows]
    assert all(c != "" for c in over) if above else all(c == "" for c in over), (above, over)
    events = read_events(plain_out / "tensorboard" / "hypernet_sde_flow" / "seed_1")
    matrix = np.asarray(saved["hypernet_sde_flow"]["per_seed"][1]["mse_matrix"])
    np.testing.assert_allclose([v for _, v in sorted(events["eval/mse_exp_0"])], matrix[:, 0],
                               rtol=1e-6)
    assert len(events["train/loss"]) == 5 * 2 * (40 // 20)

    checked, calls = loop.check_finite, []

    def killed_in_the_second_model(loss, **where):
        calls.append(where)
        # The study's loop is the scan (its default), which runs a task's epochs in one call and
        # checks them at once: the MLP's five tasks, then two tasks of the hypernetwork's and its
        # third.
        if len(calls) == 5 + 2 + 1:
            raise KeyboardInterrupt
        checked(loss, **where)

    out = tmp_path / "killed"
    monkeypatch.setattr(loop, "check_finite", killed_in_the_second_model)
    with pytest.raises(KeyboardInterrupt):
        study.main([*argv, "--out", str(out)])
    assert calls[-1] == {"experience": 2, "epoch": 0, "steps_per_epoch": 2}
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(loop, "check_finite", checked)
    with pytest.raises(FileExistsError, match="--no-resume"):
        study.main([*argv, "--no-resume", "--out", str(out)])
    capsys.readouterr()
    resumed = study.main([*argv, "--out", str(out)])
    said = capsys.readouterr().out
    # Every model checkpoints as the strategies do: <model>-seeds-<seeds>, named in its lines.
    assert "mlp seeds [0, 1] resumed from" in said and "after experience 4, epoch 1" in said
    assert "hypernet_sde_flow seeds [0, 1] resumed from" in said
    assert "after experience 1, epoch 1" in said
    for name in variants:
        assert resumed[name]["per_seed"] == plain[name]["per_seed"], name
    assert (plain_out / "steps.csv").read_text() == (out / "steps.csv").read_text()
    with pytest.raises(FileExistsError, match="holds a finished run"):
        study.main([*argv, "--out", str(out)])


def test_the_main_jobs_fingerprint_holds_every_option_and_the_data():
    """The main job's checkpoints carry every option that can change a number and the content
    hash of its tasks, so a rerun with another --noise (data) or --nll (loss) into an unfinished
    run's folder is refused (the refusal itself: tests/train/test_resume.py)."""
    from experiments import sde_flow_forgetting as study
    from jaxcl.io.checkpoints import content_digest

    from experiments.sde_flow_settings import tasks
    from jaxcl import config as settings

    config = study.Config()
    assert set(settings.fingerprint(config)) == set(settings.flat(config)) - {
        "variants", "checkpoint_epochs", "checkpoint_seconds", "tensorboard", "keep_checkpoints",
        "progress", "workers",
        "compile_cache", "compile_cache_dir"}
    noisier = settings.replace(config, noise=0.1)
    assert settings.fingerprint(config)["noise"] == 0.05
    assert settings.fingerprint(noisier)["noise"] == 0.1
    assert content_digest(tasks(config, 0)) == content_digest(tasks(config, 0))
    assert content_digest(tasks(config, 0)) != content_digest(tasks(noisier, 0))
    assert content_digest(tasks(config, 0)) != content_digest(tasks(config, 1))
