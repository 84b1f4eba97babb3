"""The main job at tiny size: runs, writes its results folder, and the regulariser helps."""

import json

import pytest

from experiments import partial_hnet_demo
from experiments.common import write_results


def test_quick_demo_writes_results_and_lookahead_forgets_less(tmp_path):
    out = tmp_path / "run"
    result = partial_hnet_demo.main(["--quick", "--out", str(out)])
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.json", "summary.md"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["variants"].keys() == partial_hnet_demo.VARIANTS.keys()
    for name, variant in saved["variants"].items():
        matrix = variant["accuracy_matrix"]
        assert len(matrix) == saved["config"]["num_tasks"] == 3
        assert all(0.0 <= a <= 1.0 for row in matrix for a in row)
        assert variant["aca"] == pytest.approx(sum(matrix[-1]) / 3)
    variants = result["variants"]
    for order in ("lookahead_order1", "lookahead_order2"):
        assert variants[order]["forgetting"] < variants["no_regularizer"]["forgetting"]
    # A second run into the same folder is refused before any training, leaving it untouched.
    before = (out / "metrics.json").read_text()
    with pytest.raises(FileExistsError, match="already exists"):
        partial_hnet_demo.main(["--quick", "--out", str(out)])
    assert (out / "metrics.json").read_text() == before


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="'cnn'"):
        partial_hnet_demo.main(["--quick", "--model", "cnn"])


def test_failed_write_leaves_no_results(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TypeError):
        write_results(out, {"metrics.json": {"x": object()}})
    assert not out.exists() and list(tmp_path.iterdir()) == []
