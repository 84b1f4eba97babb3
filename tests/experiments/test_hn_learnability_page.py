"""experiments.hn_learnability and the results page of issue 26, built from run records: the
preset and the departures recorded, several runs of one command merged into one table."""

import json

import pytest

from experiments import hn_learnability, hn_learnability_page, hn_learnability_rules


def test_runs_split_by_variant_merge_into_one_table(tmp_path, monkeypatch):
    # The variants set HN-k's new-task settings: a --preset would do nothing, and is refused.
    with pytest.raises(ValueError, match="--preset paper does nothing in this run: each variant "
                                         r"\(--variants\) sets it; leave it out"):
        hn_learnability.main(["--quick", "--preset", "paper", "--out", str(tmp_path / "no")])
    first = hn_learnability.main(["--quick", "--variants", "paper", "--no-progress", "--out",
                                  str(tmp_path / "paper")])
    hn_learnability.main(["--quick", "--variants", "jaxcl", "--no-progress",
                          "--out", str(tmp_path / "jaxcl")])
    config = json.loads((tmp_path / "paper" / "config.json").read_text())
    assert config["unused"]["preset"] == config["unused"]["reg_warmup"] == (
        "each variant (--variants) sets it")
    assert config["strategy_settings"]["HN-1 paper"]["new_task_init"] == "copy_prev"
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
    assert rows == ["Naive", "Frozen-1", "HN-1 paper", "HN-1 jaxcl"]
    # vs Frozen-k: HN-1's learning accuracy minus Frozen-1's, from the records.
    la = {label: sum(values) / len(values) for label, values
          in metrics["extra"]["budgets"]["2"]["learning_accuracy"].items()}
    cells = {line.split(" | ")[0].strip("| "): line.split(" | ")[4] for line in
             summary.splitlines() if line.startswith("| HN-1") or line.startswith("| Frozen")}
    assert cells["Frozen-1"] == ""
    assert cells["HN-1 jaxcl"] == f"{100 * (la['HN-1 jaxcl'] - la['Frozen-1']):+.1f}"
    assert "paper as the paper; jaxcl new_task_init random, reg_warmup 0.5" in summary
    assert set(metrics["extra"]["budgets"]["2"]["learning_accuracy"]) == {
        "Naive", "Frozen-1", "HN-1 paper", "HN-1 jaxcl"}
    lines = hn_learnability_page.target_lines(metrics)
    assert len(lines) == 1 and lines[0].startswith("- HN-1 jaxcl, 10 steps an experience")
    assert "Frozen-1, the same frozen layers with heads trained directly, learns" in lines[0]
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
    saved = json.loads((tmp_path / "jaxcl" / "metrics.json").read_text())
    saved["strategies"]["Frozen-1"]["per_seed"][0]["forgetting"] += 0.01
    (other / "metrics.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="other: its Frozen-1 forgetting differs"):
        hn_learnability_page.merged(("paper", "other"))


def test_frozen_references_follow_the_depths():
    from jaxcl.config import make

    config = make(hn_learnability.Config, depths=(0, 2), variants=("jaxcl",))
    assert config.references() == ("Frozen-2",)  # HN-F freezes nothing: no reference
    assert list(hn_learnability.strategies(config)) == ["Naive", "Frozen-2", "HN-F jaxcl",
                                                        "HN-2 jaxcl"]
    assert make(hn_learnability.Config, depths=(2,), frozen=False).references() == ()
    assert make(hn_learnability.Config, depths=(2,), baseline="Frozen-2").references() == ()
    assert [hn_learnability.frozen_of(x) for x in ("HN-2 paper", "HN-F jaxcl", "Naive")] == [
        "Frozen-2", None, None]


def test_target_lines_say_when_the_baselines_forgetting_is_noise():
    budget = {"steps_per_experience": 30,
              "learning_accuracy": {"Naive": [0.9, 0.9, 0.9], "HN-1 jaxcl": [0.8, 0.8, 0.8],
                                    "Frozen-1": [0.7, 0.72, 0.74]},
              "forgetting": {"Naive": [0.0, 0.01, -0.005], "HN-1 jaxcl": [0.0, 0.0, 0.0],
                             "Frozen-1": [0.0, 0.0, 0.0]}}
    metrics = {"config": {"baseline": "Naive"}, "extra": {"budgets": {"1": budget}}}
    line, = hn_learnability_page.target_lines(metrics)
    assert "10.0 points below Naive's (outside 5)" in line
    assert "Frozen-1, the same frozen layers with heads trained directly, learns 72.0" in line
    assert "its interval reaches 0, so the ratio compares noise" in line
    budget["forgetting"]["Naive"] = [0.2, 0.21, 0.22]
    line, = hn_learnability_page.target_lines(metrics)
    assert "compares noise" not in line and "(at most a third of its mean)" in line


def test_the_page_is_built_from_the_committed_records():
    assert hn_learnability_page.cli(["--check"]) == 0


def _metrics(la, fg, spread=(0.0, 0.0, 0.0)):
    """Three seeds per label around the given means (points); ``spread`` is added seed by seed
    to every label's values, so paired differences have no spread and unpaired ones do."""
    budget = {"learning_accuracy": {k: [(v + s) / 100 for s in spread] for k, v in la.items()},
              "forgetting": {k: [(v + s) / 100 for s in spread] for k, v in fg.items()}}
    return {"extra": {"budgets": {"1": budget}}}


def test_the_rule_reads_each_clause_off_the_means():
    mlp = {"fmnist_x": _metrics({"Naive": 95, "HN-2 jaxcl": 88, "HN-2 jaxcl+lecun": 91},
                                {"Naive": 6, "HN-2 jaxcl": 1, "HN-2 jaxcl+lecun": 1.5},
                                spread=(-2.0, 0.0, 2.0)),
           "digits_x": _metrics({"Naive": 99, "HN-F jaxcl": 98, "HN-F jaxcl+lecun": 97.5},
                                {"Naive": 1, "HN-F jaxcl": 0.5, "HN-F jaxcl+lecun": 1.4})}
    resnet = _metrics({"Naive": 97, "HN-2 jaxcl": 95, "HN-2 jaxcl+lecun": 94.5},
                      {"Naive": 15, "HN-2 jaxcl": 0.5, "HN-2 jaxcl+lecun": 4.0})
    lines, verdict = hn_learnability_rules.rule(mlp, resnet, "jaxcl", "jaxcl+lecun", "gap")
    # The seeds move together, so the paired difference's interval is 0 wide.
    assert ("- fmnist_x, HN-2: learning accuracy +3.0 points against `jaxcl`'s (at least -1; "
            "paired +3.0 ± 0.0): holds") in lines
    assert "- fmnist_x, HN-2: 4.0 points below Naive's learning accuracy (at most 5): holds" in lines
    assert ("- digits_x, HN-F: forgetting +0.9 points against `jaxcl`'s (at most +1; "
            "paired +0.9 ± 0.0): holds") in lines
    assert "- ResNet, HN-2: forgetting 4.0 against Naive's 15.0 (at most a third): holds" in lines
    assert verdict is True
    mlp["digits_x"] = _metrics({"Naive": 99, "HN-F jaxcl": 98, "HN-F jaxcl+lecun": 97.5},
                               {"Naive": 1, "HN-F jaxcl": 0.5, "HN-F jaxcl+lecun": 1.6})
    lines, verdict = hn_learnability_rules.rule(mlp, resnet, "jaxcl", "jaxcl+lecun", "gap")
    assert ("- digits_x, HN-F: forgetting +1.1 points against `jaxcl`'s (at most +1; "
            "paired +1.1 ± 0.0): fails") in lines
    assert verdict is False
    # The warm-up question's extra clause: HN-2 forgets at most a third of Naive's, each split.
    mlp = {"digits_y": _metrics({"Naive": 99, "HN-2 a": 97, "HN-2 b": 97},
                                {"Naive": 1.2, "HN-2 a": 0.6, "HN-2 b": 0.5})}
    resnet = _metrics({"Naive": 97, "HN-2 a": 95, "HN-2 b": 95}, {"Naive": 15, "HN-2 a": 0,
                                                                  "HN-2 b": 0})
    lines, verdict = hn_learnability_rules.rule(mlp, resnet, "a", "b", "third")
    assert "- digits_y, HN-2: forgetting 0.5 against Naive's 1.2 (at most a third): fails" in lines
    assert verdict is False and not any("below Naive's learning accuracy" in x for x in lines)


def test_the_last_protocol_with_all_its_runs_decides(tmp_path, monkeypatch):
    passing = (_metrics({"Naive": 95, "HN-2 jaxcl": 88, "HN-2 jaxcl+lecun": 91},
                        {"Naive": 6, "HN-2 jaxcl": 1, "HN-2 jaxcl+lecun": 1}),
               "x\n\n| a |")
    failing = (_metrics({"Naive": 95, "HN-2 jaxcl": 88, "HN-2 jaxcl+lecun": 80},
                        {"Naive": 6, "HN-2 jaxcl": 1, "HN-2 jaxcl+lecun": 1}), "")
    runs = {"old_mlp": failing, "old_resnet": passing, "new_mlp": passing, "new_resnet": passing}
    monkeypatch.setattr(hn_learnability_page, "RUNS", tmp_path)
    monkeypatch.setattr(hn_learnability_page, "merged", lambda folders: runs[folders[0]])
    question = hn_learnability_rules.Question(
        "LeCun?", "jaxcl", "jaxcl+lecun", "lecun it is", "torch stays", "gap",
        (("old.md", "seeds 1-3", ("fmnist_old",), ("old_resnet",)),
         ("new.md", "seeds 4-6", ("fmnist_new",), ("new_resnet",))))
    runs["fmnist_old"], runs["fmnist_new"] = failing, passing
    assert hn_learnability_page.rule_section(question) == ""  # no protocol's runs are there
    for name in ("fmnist_old", "old_resnet"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text("{}")
    text = hn_learnability_page.rule_section(question)  # only the old protocol's runs are there
    assert "a clause fails, so torch stays." in text and "new.md" not in text
    for name in ("fmnist_new", "new_resnet"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text("{}")
    text = hn_learnability_page.rule_section(question)
    assert "old.md" in text and "new.md" in text
    assert "every clause holds; lecun it is." in text


def test_variants_are_written_out_and_one_is_jaxcls_defaults():
    from jaxcl.learners import HN_PRESETS

    keys = set(HN_PRESETS["paper"])
    assert all(set(settings) == keys for settings in hn_learnability.VARIANTS.values())
    assert hn_learnability.VARIANTS["paper"] == HN_PRESETS["paper"]
    assert hn_learnability.VARIANTS[hn_learnability.default_variant()] == HN_PRESETS["jaxcl"]
