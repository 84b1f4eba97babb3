"""jaxcl report: a results page from run folders (tables, plots, the re-run command, provenance),
checked against its folders; and every generated page under docs/results/ is up to date."""

import json
import pathlib
import re

import pytest

from jaxcl import cli
from jaxcl.io import report

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """One finished run of one seed (seconds), made as a user makes it."""
    base = tmp_path_factory.mktemp("report")
    out = base / "runs" / "naive"
    assert cli.main(["run", "split_benchmark", "--quick", "--strategies", "Naive", "--seeds", "3",
                     "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    return out


def test_a_page_holds_each_runs_tables_plots_command_and_provenance(run_folder, monkeypatch,
                                                                    capsys):
    monkeypatch.chdir(run_folder.parent.parent)
    folder, out = pathlib.Path("runs/naive"), pathlib.Path("pages/results.md")
    assert cli.main(["report", str(folder), "--out", str(out), "--title", "Naive, once"]) == 0
    text = out.read_text()
    assert report.command_of(text) == ["runs/naive", "--out", "pages/results.md", "--title",
                                       "Naive, once"]
    assert text.splitlines()[1] == "# Naive, once"
    assert ("jaxcl run split_benchmark --config runs/naive/config.json --out "
            "runs/naive-again") in text
    summary = (folder / "summary.md").read_text()
    table = [line for line in summary.splitlines() if line.startswith("| Naive")]
    assert table and table[0] in text
    # One seed: no spread is printed for it, and the paper's Split-CIFAR100 numbers are not put
    # beside a synthetic run's.
    assert "± —" in table[0] and "this run is on synthetic" in text
    config = json.loads((folder / "config.json").read_text())
    assert f"jax {config['provenance']['versions']['jax']}" in text
    assert re.search(r"written \d{4}-\d{2}-\d{2}\.", text)
    plots = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert plots and all((out.parent / p).is_file() for p in plots)  # relative to the page
    assert "../runs/naive/accuracy_over_stream.png" in plots

    capsys.readouterr()
    assert cli.main(["report", str(folder), "--out", str(out), "--title", "Naive, once",
                     "--check"]) == 0
    out.write_text(text.replace("Naive", "Naïve", 3))
    assert cli.main(["report", str(folder), "--out", str(out), "--title", "Naive, once",
                     "--check"]) == 1
    assert "pages/results.md differs from its run folders' page" in capsys.readouterr().err
    # An introduction goes under the title, and into the command that rebuilds the page.
    intro = pathlib.Path("pages/intro.md")
    intro.write_text("What these runs are.\n")
    assert cli.main(["report", str(folder), "--out", str(out), "--intro", str(intro)]) == 0
    text = out.read_text()
    assert report.command_of(text) == ["runs/naive", "--out", "pages/results.md", "--intro",
                                       "pages/intro.md"]
    assert text.index("What these runs are.") < text.index("## ")
    assert cli.main(["report", str(folder), "--out", str(out), "--intro", str(intro),
                     "--check"]) == 0
    intro.write_text("What these runs were.\n")
    assert cli.main(["report", str(folder), "--out", str(out), "--intro", str(intro),
                     "--check"]) == 1
    # Without --out the page is printed, its plots relative to the current folder.
    assert cli.main(["report", str(folder)]) == 0
    assert "](runs/naive/accuracy_over_stream.png)" in capsys.readouterr().out


def test_a_folder_that_is_not_a_finished_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    assert cli.main(["report", "half"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "half is not a finished run folder: it has no summary.md" in err
    with pytest.raises(ValueError, match="not a page made by jaxcl report"):
        report.command_of("# a page written by hand\n")


GENERATED = [page for page in sorted((ROOT / "docs").rglob("*.md"))
             if page.read_text().startswith(report.MARK)]


def test_docs_hold_generated_pages():
    """Every results page is generated: by jaxcl report, or (the HN-k, paper-claims, fair-study
    and budget pages, whose rules read several runs) by its own builder, whose --check runs in
    tests/experiments."""
    assert any(page.parent.name == "results" for page in GENERATED)
    for page in sorted((ROOT / "docs" / "results").glob("*.md")):
        assert page in GENERATED or page.name in ("hn_learnability.md", "paper_claims.md",
                                                  "sde_flow_fair.md", "sde_flow_budget.md"), (
            f"{page.relative_to(ROOT)} is written by hand; build it from run records")


@pytest.mark.parametrize("page", GENERATED, ids=[p.name for p in GENERATED])
def test_every_generated_page_is_what_its_committed_records_give(page, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = report.command_of(page.read_text())
    assert cli.main(["report", *args, "--check"]) == 0, (
        f"{page.relative_to(ROOT)} is stale: run jaxcl report {' '.join(args)}")
