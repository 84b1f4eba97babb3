"""The results page of issue 26: built from run records, several runs of one command merged."""

import pytest

from experiments import hn_learnability, hn_learnability_page


def test_runs_split_by_variant_merge_into_one_table(tmp_path, monkeypatch):
    for variant in ("paper", "jaxcl"):
        hn_learnability.main(["--quick", "--variants", variant, "--no-progress",
                              "--out", str(tmp_path / variant)])
    hn_learnability.main(["--quick", "--variants", "jaxcl", "--seeds", "1", "--no-progress",
                          "--out", str(tmp_path / "other_seed")])
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
    with pytest.raises(ValueError, match="other_seed: its Naive learning_accuracy differs"):
        hn_learnability_page.merged(("paper", "other_seed"))
    text = hn_learnability_page.section("both", ("paper", "jaxcl"))
    assert text.count("jaxcl run hn_learnability --config") == 2


def test_the_page_is_built_from_the_committed_records():
    assert hn_learnability_page.cli(["--check"]) == 0
