"""experiments.hn_learnability and the results page of issue 26, built from run records: the
preset and the departures recorded, several runs of one command merged into one table."""

import json

import pytest

from experiments import hn_learnability, hn_learnability_page


def test_runs_split_by_variant_merge_into_one_table(tmp_path, monkeypatch):
    # --preset paper fills HN-k's settings; the variants set their own, so Naive (the baseline)
    # and every row are the same as without it.
    first = hn_learnability.main(["--quick", "--preset", "paper", "--variants", "paper",
                                  "--no-progress", "--out", str(tmp_path / "paper")])
    hn_learnability.main(["--quick", "--variants", "jaxcl", "--no-progress",
                          "--out", str(tmp_path / "jaxcl")])
    config = json.loads((tmp_path / "paper" / "config.json").read_text())
    assert config["preset"] == "paper" and config["new_task_init"] == "copy_prev"
    assert first["extra"]["budgets"]["2"]["diagnostics"]["Naive"] == {}
    assert set(first["extra"]["budgets"]["2"]["diagnostics"]["HN-1 paper"]) == {
        "reg_share", "embedding_shift", "table_shift"}
    for rec in first["strategies"].values():
        assert len(rec["transfer"]) == 3 and 0.0 <= rec["transfer_accuracy"] <= 1.0
    assert (tmp_path / "paper" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"

    monkeypatch.setattr(hn_learnability_page, "RUNS", tmp_path)
    metrics, summary = hn_learnability_page.merged(("paper", "jaxcl"))
    rows = [line.split(" | ")[0].strip("| ") for line in summary.splitlines()
            if line.startswith("| ") and not line.startswith("| strategy")]
    assert rows == ["Naive", "HN-1 paper", "HN-1 jaxcl"]
    assert "paper as the paper; jaxcl new_task_init random, reg_warmup 0.5" in summary
    assert set(metrics["extra"]["budgets"]["2"]["learning_accuracy"]) == {
        "Naive", "HN-1 paper", "HN-1 jaxcl"}
    lines = hn_learnability_page.target_lines(metrics)
    assert len(lines) == 1 and lines[0].startswith("- HN-1 jaxcl, 10 steps an experience")
    text = hn_learnability_page.section("both", ("paper", "jaxcl"))
    assert text.count("jaxcl run hn_learnability --config") == 2

    other = tmp_path / "other"  # a baseline that is not the same run's
    other.mkdir()
    saved = json.loads((tmp_path / "jaxcl" / "metrics.json").read_text())
    saved["strategies"]["Naive"]["per_seed"][0]["learning_accuracy"] += 0.01
    (other / "metrics.json").write_text(json.dumps(saved))
    (other / "summary.md").write_text((tmp_path / "jaxcl" / "summary.md").read_text())
    with pytest.raises(ValueError, match="other: its Naive learning_accuracy differs"):
        hn_learnability_page.merged(("paper", "other"))


def test_the_page_is_built_from_the_committed_records():
    assert hn_learnability_page.cli(["--check"]) == 0
