"""The fair Hypernet-SDE-Flow protocol's rules (:mod:`experiments.sde_flow_fair_rules`): the paired
statistics against SciPy's own tests, Holm's adjustment against a worked example, the outcomes and
verdicts on records made to go each way, the ratio rule; and the results page, which must be what
the committed records give."""

import numpy as np
import pytest
from scipy import stats

from experiments import sde_flow_fair_page as page
from experiments import sde_flow_fair_rules as rules


def _record(values: dict[int, float], metric: str = "mean_forgetting", diagonal: float = 0.1):
    rows = []
    for seed, v in values.items():
        row = {m: 0.0 for m in rules.METRICS}
        row.update({"seed": seed, metric: v, "diagonal_mse": diagonal})
        rows.append(row)
    return {"per_seed": rows}


def test_paired_statistics_match_scipys_tests():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, 12), rng.normal(0.3, 1.0, 12)
    p = rules.paired(dict(enumerate(a)), dict(enumerate(b)), delta=0.5)
    assert p.p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-10)
    d = a - b
    lower = stats.ttest_1samp(d, -0.5, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, 0.5, alternative="less").pvalue
    assert p.p_tost == pytest.approx(max(lower, upper), rel=1e-10)
    assert p.half == pytest.approx(stats.t.ppf(0.975, 11) * np.std(d, ddof=1) / np.sqrt(12))
    assert p.seeds == 12 and p.diff == pytest.approx(d.mean())


def test_holm_adjusts_as_the_worked_example():
    """p = (0.01, 0.04, 0.03, 0.005): sorted times 4, 3, 2, 1 is (0.02, 0.03, 0.06, 0.04), then
    made monotone: 0.04 becomes 0.06."""
    assert rules.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rules.holm([0.9, 0.3]) == pytest.approx([0.9, 0.6])  # capped below by the earlier step


def _records(shift: float, noise: float = 0.001, seeds: int = 10, **diagonal):
    rng = np.random.default_rng(1)
    base = {s: float(v) for s, v in enumerate(rng.normal(0.1, 0.05, seeds))}
    moved = {s: v + shift + noise * rng.normal() for s, v in base.items()}
    return {"repair_order1": _record(moved, diagonal=diagonal.get("repair", 0.1)),
            "repair_none": _record(base, diagonal=diagonal.get("none", 0.1))}


@pytest.mark.parametrize("shift,expected,verdict", [(-0.05, rules.GOES, "holds"),
                                                    (+0.05, rules.AGAINST, "fails"),
                                                    (0.0, rules.NOT_SHOWN, "inconclusive")])
def test_a_directional_claim_reads_its_comparison(shift, expected, verdict):
    """Claim 7 (``repair_order1 - repair_none``, mean forgetting below 0) on records where the
    repair forgets clearly less, clearly more, or the same."""
    records = _records(shift, noise=0.001 if shift else 0.05)
    found = rules.results(records)
    claim = next(c for c in rules.CLAIMS if c.number == "7")
    assert found[claim.tests[0]].outcome == expected
    assert rules.verdict(claim, found) == verdict
    assert rules.verdict(rules.CLAIMS[0], found) is None  # its models did not run


def test_a_model_that_did_not_learn_makes_its_claims_inconclusive():
    records = _records(-0.05, none=0.9)
    found = rules.results(records)
    claim = next(c for c in rules.CLAIMS if c.number == "7")
    assert found[claim.tests[0]].outcome == rules.NOT_LEARNED
    assert rules.verdict(claim, found) == "inconclusive (a model did not learn)"


@pytest.mark.parametrize("shift,expected", [(0.001, rules.GOES), (0.05, rules.AGAINST),
                                            (0.01, rules.NOT_SHOWN)])
def test_equivalence_needs_the_margin(shift, expected):
    """Claim 8's comparisons: equivalent when TOST rejects both sides of ``+-DELTA``, against when
    the interval lies wholly outside, not shown when it straddles the margin."""
    records = _records(shift, noise=0.002)
    records = {"repair_order2": records["repair_order1"], "repair_order1": records["repair_none"]}
    test = next(c for c in rules.CLAIMS if c.number == "8").tests[0]
    assert rules.results(records)[test].outcome == expected


def test_holm_runs_over_every_tested_comparison_present():
    records = _records(-0.05)
    records.update({"mlp": records["repair_none"], "oracle_stored": records["repair_none"]})
    found = rules.results(records)
    raw = [r.paired.p_tost if r.test.predicted == "~" else r.paired.p for r in found.values()]
    assert [r.p_adjusted for r in found.values()] == pytest.approx(rules.holm(raw))
    assert len(found) == 4  # claims 2 (two metrics), 7 and 9; claim 1's models did not run


def test_a_ratio_is_printed_only_where_both_intervals_exclude_zero():
    far = _record({s: 0.1 + 0.001 * s for s in range(5)})
    near = _record({s: (-1) ** s * 0.1 for s in range(5)})
    records = {"a": far, "b": far, "c": near}
    assert rules.ratio(records, "a", "b", "mean_forgetting") == pytest.approx(1.0)
    assert rules.ratio(records, "a", "c", "mean_forgetting") is None


def test_the_page_is_what_the_records_give():
    """``python -m experiments.sde_flow_fair_page --check``: a record committed without its page,
    or a page edited by hand, fails here."""
    assert page.cli(["--check"]) == 0


def _run_folder(folder, records, epochs):
    import json

    for rec in records.values():  # the means and intervals the budget page prints
        for m in rules.METRICS:
            values = [row[m] for row in rec["per_seed"]]
            rec[m], rec[f"{m}_ci95"] = float(np.mean(values)), float(np.std(values))
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({
        "seeds": sorted(r["seed"] for r in next(iter(records.values()))["per_seed"]),
        "config": {"run": {"epochs": epochs}}, **records}))
    return folder


def test_the_budget_page_says_whether_a_short_run_reaches_the_full_runs_verdicts(tmp_path):
    """Claim 7 holds in the full run; a short run where it holds too agrees, one where the
    repair forgets as much as its reference does not, and the page says which."""
    from experiments import sde_flow_budget as budget

    full = _run_folder(tmp_path / "full", _records(-0.05), 300)
    same = _run_folder(tmp_path / "same", _records(-0.04), 30)
    other = _run_folder(tmp_path / "other", _records(0.0, noise=0.05), 60)
    text, agree = budget.section(same, full)
    assert agree and "**every verdict and every tested outcome agree" in text
    assert "| **7. The look-ahead helps** | holds | holds | same |" in text
    text, agree = budget.section(other, full)
    assert not agree and "| holds | inconclusive | **differs** |" in text
    out = tmp_path / "page.md"
    assert budget.main([str(full), str(other), "--out", str(out)]) == 0
    assert "No shorter budget tried reaches" in out.read_text()
    assert budget.main([str(full), str(other), "--out", str(out), "--check"]) == 0
    assert budget.main([str(full), str(same), "--out", str(out), "--check"]) == 1
    with pytest.raises(ValueError, match="differ in seeds"):
        budget.section(_run_folder(tmp_path / "few", _records(-0.05, seeds=4), 30), full)


def test_the_budget_page_is_what_the_committed_records_give(monkeypatch):
    """``docs/results/sde_flow_budget.md`` rebuilt from its first line's command with ``--check``:
    a record committed without its page, or a page edited by hand, fails here."""
    import pathlib
    import shlex

    from experiments import sde_flow_budget as budget

    root = pathlib.Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    first = (root / "docs/results/sde_flow_budget.md").read_text().partition("\n")[0]
    words = shlex.split(first.removeprefix("<!-- built by: ").removesuffix(" -->"))
    assert words[:3] == ["python", "-m", "experiments.sde_flow_budget"]
    assert budget.main([*words[3:], "--check"]) == 0
