"""The Hypernet-SDE-Flow study at scale: seeds vmapped in one program equal separate runs, a run
stopped inside a task resumes to the same numbers, a non-finite loss stops it, and the
experiment resumes where a killed run left off. (Its data-parallel run on 1, 2 and 8 devices is
in ``test_scale.py``'s subprocess.)"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_resume import _events, interrupted_at

from jaxcl.data.points import point_tasks
from jaxcl.learners import sde_flow as cl
from jaxcl.models.sde_flow import SdeFlowConfig
from jaxcl.train.steps import NonFiniteError

TINY = cl.Variant(model=SdeFlowConfig(hidden=(8,), flow_layers=2, flow_hidden=(8,),
                                      sde_hidden=(8,), sde_steps=2),
                  embedding_dim=4, hnet_hidden=(8,), epochs=3, batch_size=10, memory_per_task=4,
                  shared="frozen", order=1)


def _tasks(seed):
    return point_tasks(jax.random.key(seed), num_tasks=3, train_per_task=20, test_per_task=10)


@pytest.fixture(scope="module")
def two_seeds():
    """Two seeds' benchmarks and keys, and programs for two seeds that the tests share."""
    return [_tasks(0), _tasks(1)], [jax.random.key(5), jax.random.key(6)], cl.Programs.create(2)


def test_vmapped_seeds_equal_separate_runs_and_compile_once(two_seeds):
    """Two seeds in one program equal two one-seed runs; an ablation adds no program."""
    tasks, keys, programs = two_seeds
    together = cl.run_seeds(TINY, tasks, keys, programs=programs)
    # init, start, train, end and evaluate: one program each for both seeds and every task.
    assert programs.compilations == 5 and programs.compile_s == together[0].compile_s
    one_seed = cl.Programs.create()
    separate = [cl.run_tasks(TINY, t, k, programs=one_seed) for t, k in zip(tasks, keys)]
    for joint, alone in zip(together, separate):
        np.testing.assert_allclose(joint.mse_matrix, alone.mse_matrix, rtol=1e-5)
        for name in cl.STEP_METRICS:
            np.testing.assert_allclose(joint.step_metrics[name], alone.step_metrics[name],
                                       rtol=1e-4, atol=1e-6, err_msg=name)
    assert not np.allclose(together[0].mse_matrix, together[1].mse_matrix)
    # The ablation differs only in traced loss weights: it reuses the one-seed programs, and the
    # same seed gives the same matrix again.
    again = cl.run_tasks(TINY, tasks[0], keys[0], programs=one_seed)
    ablation = cl.run_tasks(
        dataclasses.replace(TINY, weights=cl.LossWeights(replay=0.0, separation=0.0)), tasks[0],
        keys[0], programs=one_seed)
    assert one_seed.compilations == 5
    np.testing.assert_array_equal(again.mse_matrix, separate[0].mse_matrix)
    assert not np.array_equal(ablation.mse_matrix, again.mse_matrix)
    assert again.mse_matrix.shape == (3, 3) and np.all(again.mse_matrix > 0)
    assert cl.forgetting(again.mse_matrix) == (again.forgetting_t0, again.mean_forgetting)
    assert len(again.step_metrics["loss"]) == 3 * TINY.epochs * (20 // TINY.batch_size)
    with pytest.raises(ValueError, match="programs made for 2 seeds on 1 devices"):
        cl.run_tasks(TINY, tasks[0], keys[0], programs=programs)
    with pytest.raises(ValueError, match="2 benchmarks for 1 keys"):
        cl.run_seeds(TINY, tasks, keys[:1])
    with pytest.raises(ValueError, match=r"devices must be in 1\.\.1 .* got 2"):
        cl.run_tasks(TINY, tasks[0], keys[0], devices=2)


def test_a_run_stopped_inside_a_task_resumes_to_the_same_numbers(two_seeds, tmp_path,
                                                                   monkeypatch):
    tasks, keys, programs = two_seeds
    plain = cl.run_seeds(TINY, tasks, keys, programs=programs)
    with interrupted_at(monkeypatch, cl, experience=1, epoch=1):
        cl.run_seeds(TINY, tasks, keys, programs=programs, checkpoint_dir=tmp_path,
                     checkpoint_epochs=1)
    assert max(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == 3  # (1, 0)
    resumed = cl.run_seeds(TINY, tasks, keys, programs=programs, checkpoint_dir=tmp_path,
                           checkpoint_epochs=1)
    for a, b in zip(plain, resumed):
        np.testing.assert_array_equal(a.mse_matrix, b.mse_matrix)
        for name in cl.STEP_METRICS:
            np.testing.assert_array_equal(a.step_metrics[name], b.step_metrics[name], name)
        assert len(b.time_per_task) == 3
    # The whole task in one call and in calls of one epoch: two training programs in all.
    assert len(programs.train.compiled) == 2
    with pytest.raises(ValueError, match="holds checkpoints of another run"):
        cl.run_seeds(dataclasses.replace(TINY, epochs=2), tasks, keys, programs=programs,
                     checkpoint_dir=tmp_path)


def test_a_non_finite_loss_stops_the_study_with_where_it_happened(tmp_path):
    tasks = _tasks(0)
    bad = tasks._replace(x_train=tasks.x_train.at[1, 3].set(jnp.nan))
    with pytest.raises(NonFiniteError, match=r"experience 1, epoch 0, step \d of 2 \(seed "
                                             r"index 0\)"):
        cl.run_tasks(dataclasses.replace(TINY, order=0, shared="trained"), bad,
                     jax.random.key(0), checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["2"]  # task 0


def test_the_study_writes_every_file_and_resumes_where_a_killed_run_left_off(tmp_path,
                                                                             monkeypatch):
    from experiments import sde_flow_forgetting as study

    variants = ["mlp", "hypernet_sde_flow", "ablation_no_replay_sep"]
    argv = ["--quick", "--variants", *variants, "--seeds", "0", "1", "--epochs", "2",
            "--tensorboard"]
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
    assert set(study.VARIANT_NAMES) - set(saved) == set(study.VARIANT_NAMES) - set(variants)
    for name in variants:
        entry = saved[name]
        m = np.asarray(entry["mse_matrix"])
        assert m.shape == (5, 5) and np.all(m > 0), name
        np.testing.assert_allclose(m, np.mean([s["mse_matrix"] for s in entry["per_seed"]], 0))
        assert entry["forgetting_t0"] == pytest.approx(m[4, 0] - m[0, 0])
        assert entry["mean_forgetting"] == pytest.approx(np.mean(m[4, :4] - np.diag(m)[:4]))
        assert entry["forgetting_t0_std"] > 0, name  # two seeds, two results
        assert (plain_out / f"mse_matrix_{name}.png").read_bytes()[:4] == b"\x89PNG"
    # The study and its ablation differ only in traced weights: their first task is the same
    # program on the same data and key, so their first rows agree.
    np.testing.assert_allclose(saved["hypernet_sde_flow"]["mse_matrix"][0],
                               saved["ablation_no_replay_sep"]["mse_matrix"][0], rtol=1e-5)
    summary = (plain_out / "summary.md").read_text()
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
    events = _events(plain_out / "tensorboard" / "hypernet_sde_flow" / "seed_1")
    matrix = np.asarray(saved["hypernet_sde_flow"]["per_seed"][1]["mse_matrix"])
    np.testing.assert_allclose([v for _, v in sorted(events["eval/mse_exp_0"])], matrix[:, 0],
                               rtol=1e-6)
    assert len(events["train/loss"]) == 5 * 2 * (40 // 20)

    checked, calls = cl.check_finite, []

    def killed_in_the_second_model(loss, **where):
        calls.append(where)
        if len(calls) == 5 + 3:  # the MLP's five tasks, then three of the hypernetwork's
            raise KeyboardInterrupt
        checked(loss, **where)

    out = tmp_path / "killed"
    monkeypatch.setattr(cl, "check_finite", killed_in_the_second_model)
    with pytest.raises(KeyboardInterrupt):
        study.main([*argv, "--out", str(out)])
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(cl, "check_finite", checked)
    with pytest.raises(FileExistsError, match="--no-resume"):
        study.main([*argv, "--no-resume", "--out", str(out)])
    resumed = study.main([*argv, "--out", str(out)])
    for name in variants:
        assert resumed[name]["per_seed"] == plain[name]["per_seed"], name
    assert (plain_out / "steps.csv").read_text() == (out / "steps.csv").read_text()
    with pytest.raises(FileExistsError, match="holds a finished run"):
        study.main([*argv, "--out", str(out)])


def test_the_main_jobs_fingerprint_holds_every_option_and_the_data():
    """The main job's checkpoints carry every option that can change a number and the content
    hash of its tasks, so a rerun with another --noise (data) or --nll (loss) into an unfinished
    run's folder is refused (the refusal itself: tests/test_resume.py)."""
    from experiments import sde_flow_forgetting as study
    from jaxcl.io.checkpoints import content_digest

    config = study.Config()
    fields = {f.name for f in dataclasses.fields(config)}
    assert set(config.fingerprint()) == fields - {"variants", "checkpoint_epochs", "tensorboard",
                                                  "keep_checkpoints", "progress"}
    noisier = dataclasses.replace(config, noise=0.1)
    assert config.fingerprint()["noise"] == 0.05 and noisier.fingerprint()["noise"] == 0.1
    assert content_digest(config.tasks(0)) == content_digest(config.tasks(0))
    assert content_digest(config.tasks(0)) != content_digest(noisier.tasks(0))
    assert content_digest(config.tasks(0)) != content_digest(config.tasks(1))
