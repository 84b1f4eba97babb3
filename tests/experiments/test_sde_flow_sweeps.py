"""The main job's sweeps at tiny size: the replay sweep runs its cells through one compiled
program, its switches do what they say in the run's own records, the paired comparisons are the
per-seed differences; the virtual-step sweep's cells, and a probed repair's records."""

import csv
import json

import numpy as np
import pytest
from scipy import stats

from experiments import sde_flow_forgetting as study
from jaxcl.learners.sde_flow import PROBE_METRICS

QUICK = ["--quick", "--no-progress"]


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay")
    return study.main([*QUICK, "--sweep", "replay", "--memory-per-task", "1", "--epochs", "1",
                       "--seeds", "0", "1", "--out", str(out)]), out


def test_the_replay_sweep_is_one_program_and_its_switches_act(replay):
    saved, out = replay
    cells = ["mlp", *(f"replay_m{m}_g{g}" for g in ("0.1", "1") for m in (0, 1)),
             "replay_no_separation", "replay_beta_once", "replay_identity_sde"]
    assert [k for k in saved if k in cells or k.startswith("replay_")] == cells
    assert saved["programs"] == 2  # the MLP's and one for every cell of the study's model
    # No memory replayed: gamma cannot matter, and the two cells are the same run.
    assert saved["replay_m0_g0.1"]["per_seed"] == saved["replay_m0_g1"]["per_seed"]
    assert saved["replay_m1_g0.1"]["per_seed"] != saved["replay_m1_g1"]["per_seed"]
    sigma = {name: np.asarray(saved[name]["end_of_task"]["sigma"]) for name in cells[1:]}
    assert np.all(sigma["replay_identity_sde"] == 0)
    assert all(np.all(s > 0) for name, s in sigma.items() if name != "replay_identity_sde")
    # The NLL's weight at the first step of task 1, read back from the logged terms.
    rows = list(csv.DictReader((out / "steps.csv").read_text().splitlines()))
    for name, beta in (("replay_m1_g1", 0.0), ("replay_beta_once", 0.01)):
        first = next(r for r in rows if r["model"] == name and r["task"] == "1")
        f = {k: float(v) for k, v in first.items() if k in ("loss", "mse", "nll", "replay",
                                                            "separation")}
        implied = (f["loss"] - f["mse"] - f["replay"] - 0.1 * f["separation"]) / f["nll"]
        assert implied == pytest.approx(beta, abs=1e-5), name
    assert (out / "sweep_replay.png").read_bytes()[:4] == b"\x89PNG"
    summary = (out / "summary.md").read_text()
    assert "## The replay sweep" in summary and "8 models trained by 2 compiled" in summary


def test_paired_comparisons_are_the_per_seed_differences(replay):
    saved, _ = replay
    pairs = {(p["model"], p["against"]): p for p in saved["paired"]}
    assert ("replay_m0_g1", "mlp") in pairs and ("replay_m0_g1", "replay_m1_g1") in pairs
    for (model, against), p in pairs.items():
        a = [s["forgetting_t0"] for s in saved[model]["per_seed"]]
        b = [s["forgetting_t0"] for s in saved[against]["per_seed"]]
        d = np.subtract(a, b)
        assert p["diff"] == pytest.approx(d.mean())
        assert p["ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * d.std(ddof=1) / np.sqrt(2))
        assert p["lower_in"] == int(np.sum(d < 0)) and p["seeds"] == 2


def test_the_virtual_step_sweeps_cells():
    from experiments import sde_flow_settings as study_settings

    cells = study_settings.cells(study.Config(sweep="virtual_step"))
    repairs = {k: v for k, v in cells.items() if k != "mlp"}
    assert len(repairs) == 2 * (len(study_settings.VIRTUAL_LRS) + 1)
    assert all(v.probe and v.shared == "frozen" and v.weights.replay == 0 for v in
               repairs.values())
    assert {(v.order, v.virtual, v.weights.virtual_lr) for v in repairs.values()} == {
        (o, "sgd", lr) for o in (1, 2) for lr in study_settings.VIRTUAL_LRS} | {
        (o, "adam", study_settings.VIRTUAL_ADAM_LR) for o in (1, 2)}
    with pytest.raises(ValueError, match="sweep='memory' is not one of"):
        study.Config(sweep="memory")


def test_a_probed_repair_logs_its_curvature(tmp_path):
    saved = study.main([*QUICK, "--variants", "repair_order2", "--probe", "--virtual-lr", "0.003",
                        "--epochs", "1", "--out", str(tmp_path)])
    probe = saved["repair_order2"]["probe"]
    assert set(probe) == set(PROBE_METRICS)
    rows = list(csv.DictReader((tmp_path / "steps.csv").read_text().splitlines()))
    curvature = np.array([float(r["curvature"]) for r in rows])
    step = np.array([float(r["step_curvature"]) for r in rows])
    np.testing.assert_allclose(step, 0.003 * curvature, rtol=1e-4)  # SGD: eta lambda_max
    # Power iteration finds the eigenvalue of largest magnitude, which may be negative; a trained
    # autoencoder's loss is mostly convex in its top direction.
    assert np.all(np.isfinite(curvature)) and np.median(curvature) > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["repair_order2"]["probe"] == probe
