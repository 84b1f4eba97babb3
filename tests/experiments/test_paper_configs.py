"""The paper-scale configs (experiments/configs/paper/): each parses at full scale as the paper's
setting, and each runs end to end at tiny size on TFDS's mock data, so that none can rot."""

import importlib
import json
import pathlib

import pytest
import tensorflow_datasets as tfds

from experiments import paper
from experiments.flags import parse_config

CONFIGS = sorted((pathlib.Path(__file__).parents[2] / "experiments" / "configs" /
                  "paper").glob("*.json"))
TINY = ["--seeds", "0", "--epochs", "1", "--nf", "4", "--batch-size", "4",
        "--eval-batch-size", "32", "--train-per-class", "4", "--test-per-class", "2",
        "--no-progress"]
"""Every config's tiny run: one seed and epoch, a narrow ResNet, four images a class."""
SMALLER = {
    "split_benchmark": ["--num-tasks", "2", "--strategies", "LR-2", "HN-2"],
    "noisy_stream": ["--k", "2", "--streams", "noisy"],
    "lookahead_ablation": ["--num-tasks", "2", "--k", "4"],
    "first_vs_second_order": ["--num-tasks", "2", "--k", "4"],
    "freeze_depth": ["--depths", "4"],
}
"""What each experiment's tiny run trains less of (the full lists are parsed at full scale)."""
FEWEST = {"table2_split_tinyimagenet": ["--strategies", "Naive"]}
"""A config whose module another config's tiny run already covers: its own data path alone."""


def _module(path):
    name = json.loads(path.read_text())["experiment"]
    return name, importlib.import_module(f"experiments.{name}")


def test_there_is_a_config_for_each_table_and_figure():
    assert [p.stem for p in CONFIGS] == [
        "fig4_freeze_depth", "table1_noisy_stream", "table2_split_cifar100",
        "table2_split_tinyimagenet", "table4_lookahead", "table5_orders"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_the_papers_setting_at_full_scale(path, tmp_path):
    name, module = _module(path)
    config, _ = parse_config(module.Config, ["--config", str(path), "--out", str(tmp_path)],
                             name=name, description="", quick={})
    assert config.run.epochs == 100
    setting = getattr(module, "PAPER_SETTING", None)
    if isinstance(setting, dict) and config.data.benchmark in setting:
        setting = setting[config.data.benchmark]
    if setting:  # the paper's table prints "setting as the paper's" under it
        assert paper.differences(config, setting).startswith("setting as the paper's"), path
    else:  # Figure 4 has no published numbers: the stream and the freeze depths are its
        assert config.data.datasets == ("cifar10", "svhn") and config.depths == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_runs_at_tiny_size_on_mock_data(path, tmp_path):
    name, module = _module(path)
    manual = tmp_path / "manual"  # Tiny-ImageNet is prepared from a manual archive only
    manual.mkdir()
    (manual / "tiny-imagenet-200.zip").touch()
    argv = ["--config", str(path), *TINY, *SMALLER[name], *FEWEST.get(path.stem, []),
            "--data-dir", str(tmp_path / "tfds"),
            "--manual-dir", str(manual), "--out", str(tmp_path / "run")]
    with tfds.testing.mock_data(num_examples=1000, policy=tfds.testing.MockPolicy.USE_CODE):
        metrics = module.main(argv)
    assert metrics["strategies"] and all(
        len(r["per_seed"]) == 1 for r in metrics["strategies"].values())
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["run"]["epochs"] == 1 and written["experiment"] == name
    if name == "noisy_stream":  # the paper's Figure 6: HN-2's block-3 filters, experiences 2, 3
        from matplotlib.image import imread

        assert imread(tmp_path / "run" / "filters.png").shape[0] > 200
