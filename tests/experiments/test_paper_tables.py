"""The study modules print the paper's numbers beside ours; the counted tables equal the paper's.

Expected values are the paper's (Hemati et al., CoLLAs 2023, Tables 1-6), written out here; the
training modules' tables are checked on made-up records (``run_strategies`` replaced), so
nothing trains.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import compression, memory_usage, paper
from jaxcl.config import make
from jaxcl.core.hypernet import HypernetConfig, Hypernetwork, count_params
from jaxcl.io.records import SCALARS, strategy_record
from jaxcl.models import split_model

TABLE3 = {4: (451_661, 59), 8: (496_489, 55), 16: (586_145, 47), 32: (765_457, 31),
          64: (1_124_081, 0)}
TABLE6_HN = {0: 1_272_877, 1: 1_217_122, 2: 1_119_522, 3: 924_322, 4: 533_922}
TABLE6_HN_MIB = {0: 4.86, 1: 4.64, 2: 4.27, 3: 3.53, 4: 2.04}
TABLE6_LR = {  # benchmark: (buffer entries, {k: (exemplar C, H, W, MiB)})
    "split_cifar100": (200, {0: (3, 32, 32, 2.34), 1: (20, 32, 32, 15.62),
                             2: (40, 16, 16, 7.81), 3: (80, 8, 8, 3.91), 4: (160, 4, 4, 1.95)}),
    "split_tinyimagenet": (400, {0: (3, 64, 64, 18.75), 1: (20, 64, 64, 125.0),
                                 2: (40, 32, 32, 62.50), 3: (80, 16, 16, 31.25),
                                 4: (160, 8, 8, 15.62)}),
}


def table_row(summary: str, label: str) -> list[str]:
    """The cells of the markdown row whose first cell is ``label``."""
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in\n{summary}")


def header(summary: str) -> list[str]:
    line = next(line for line in summary.splitlines() if line.startswith("|"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_paper_cells():
    assert paper.paper_cell((61.9, 1.7)) == "61.9 ± 1.7"
    assert paper.paper_cell(None) == "—"
    assert paper.paper_cell(1_124_081) == "1,124,081"
    assert paper.paper_cell(2.34, 2) == "2.34"
    assert paper.cells(None, ("aca", "time_min")) == ["—", "—"]
    assert paper.cells({"aca": 62.8, "time_min": 636}, ("aca", "time_min")) == ["62.8", "636 min"]
    rows = paper.paper_rows(paper.TABLE2["split_cifar100"], {"HN-1": "HN-1", "GEM": "GEM"})
    assert rows == {"HN-1": {"aca": (61.9, 1.7), "forgetting": (8.1, 0.6), "time_min": 508},
                    "GEM": None}


@pytest.mark.parametrize("d", sorted(TABLE3))
def test_hnf_parameters_equal_table3(d):
    """The hypernetwork HN-F trains has exactly the paper's parameter count (from its init)."""
    split = split_model("resnet", 0, num_classes=10, head=True, nf=20)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    hnet = Hypernetwork.for_target(split.upper, x,
                                   config=HypernetConfig(num_tasks=10, chunk_dim=d))
    assert count_params(jax.eval_shape(hnet.init, jax.random.key(0), 0)) == TABLE3[d][0]


def test_compression_module_prints_table3(tmp_path):
    metrics = compression.run(compression.Config(), tmp_path / "run")
    rows = {r["chunk_dim"]: r for r in metrics["rows"]}
    assert sorted(rows) == sorted(TABLE3)
    for d, (params, percent) in TABLE3.items():
        assert rows[d]["params"] == params
        assert math.floor(100 * rows[d]["compression_level"]) == percent  # the paper truncates
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["paper"]["rows"]["4"] == {"params": 451_661, "compression_pct": 59}
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert header(summary)[:5] == ["d", "hypernetwork parameters", "paper",
                                   "compression vs d = 64", "paper"]
    assert table_row(summary, "4")[1:5] == ["451,661", "451,661", "59.8%", "59%"]
    assert table_row(summary, "64")[1:5] == ["1,124,081", "1,124,081", "0.0%", "0%"]
    assert "setting as the paper's" in summary


def test_memory_module_prints_table6(tmp_path):
    metrics = memory_usage.run(memory_usage.Config(), tmp_path / "run")
    memory = metrics["memory"]
    for bench, (entries, by_k) in TABLE6_LR.items():
        for k, (c, h, w, mib) in by_k.items():
            entry = memory[f"{bench}/k={k}"]
            assert entry["exemplar_shape"] == [c, h, w]
            assert entry["lr_bytes"] == 4 * entries * c * h * w
            assert round(entry["lr_bytes"] / 2**20, 2) == mib
            assert entry["hn_params"] == TABLE6_HN[k]
            assert round(entry["hn_bytes"] / 2**20, 2) == TABLE6_HN_MIB[k]
            assert entry["hn_bytes"] == 4 * TABLE6_HN[k]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["paper"]["hn"]["HN-F"] == {"params": 1_272_877, "mib": 4.86}
    assert saved["paper"]["lr"]["split_tinyimagenet"]["LR-1"] == {"exemplar": [20, 64, 64],
                                                                 "mib": 125.0}
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert header(summary) == ["model", "CIFAR-100 exemplar", "paper", "CIFAR-100 memory (MiB)",
                               "paper", "TinyImageNet exemplar", "paper",
                               "TinyImageNet memory (MiB)", "paper"]
    assert table_row(summary, "LR-0")[1:] == ["3 × 32 × 32", "3 × 32 × 32", "2.34", "2.34",
                                              "3 × 64 × 64", "3 × 64 × 64", "18.75", "18.75"]
    assert table_row(summary, "HN-F") == ["HN-F", "1,272,877", "1,272,877", "4.86", "4.86"]
    assert table_row(summary, "HN-4") == ["HN-4", "533,922", "533,922", "2.04", "2.04"]


@pytest.mark.parametrize("module", [compression, memory_usage])
def test_quick_model_only_modules_carry_paper(module, tmp_path):
    metrics = module.main(["--quick", "--out", str(tmp_path / "run")])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["paper"] == json.loads(json.dumps(metrics["paper"]))
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "paper" in header(summary)
    assert "nf 4 (paper: 20)" in summary  # --quick is not the paper's setting, and says so


# -- the training modules' tables, on made-up records ---------------------------------------------


def fake_train(config, strategies, out=None, streams=None, results=None):
    """Stands in for :func:`experiments.runner.run_strategies`: one record per label, one per
    seed, no training (and so no trained states in ``results``)."""
    n = 4
    records, steps = {}, {}
    for label in strategies:
        per_seed = [{"seed": s, **{name: 0.5 for name in SCALARS},
                     "accuracy_matrix": np.tril(np.full((n, n), 0.5)).tolist(),
                     "transfer": [0.5] * n,
                     "time_per_experience_s": [1.0] * n, "memory_bytes": 8} for s in config.run.seeds]
        records[label] = strategy_record(per_seed)
        steps[label] = {s: {name: np.zeros(2 * n) for name in ("loss", "cosine", "grad_rel_diff",
                                                               "order_cosine")}
                        | {"experience": np.repeat(np.arange(n), 2)} for s in config.run.seeds}
    return records, steps


@pytest.fixture
def no_training(monkeypatch):
    import importlib

    for name in ("split_benchmark", "noisy_stream", "first_vs_second_order",
                 "lookahead_ablation", "freeze_depth", "hn_learnability"):
        monkeypatch.setattr(importlib.import_module(f"experiments.{name}"), "run_strategies",
                            fake_train)
    # The noisy stream's sample figure reads the stream: a small synthetic one stands in.
    from jaxcl.data import load_benchmark

    monkeypatch.setattr(importlib.import_module("experiments.noisy_stream"), "load_streams",
                        lambda config: [load_benchmark(
                            "synthetic_noisy", seed=seed, classes_per_task=2, image_size=8,
                            train_per_class=4, test_per_class=2) for seed in config.run.seeds])


def run_module(name, tmp_path, **settings):
    import importlib

    module = importlib.import_module(f"experiments.{name}")
    metrics = module.run(make(module.Config, progress=False, **settings), tmp_path / name)
    saved = json.loads((tmp_path / name / "metrics.json").read_text())
    assert saved["paper"] == json.loads(json.dumps(metrics["paper"]))
    return saved, (tmp_path / name / "summary.md").read_text()


def test_split_benchmark_prints_table2(no_training, tmp_path):
    saved, summary = run_module("split_benchmark", tmp_path, benchmark="split_cifar100", order=2,
                                seeds=(0,), epochs=20)
    assert "Table 2, split_cifar100" in summary
    assert header(summary)[:5] == ["strategy", "ACA (%)", "paper", "forgetting (%)", "paper"]
    assert table_row(summary, "HN-1")[2] == "61.9 ± 1.7"
    assert table_row(summary, "HN-1")[4] == "8.1 ± 0.6"
    assert table_row(summary, "HN-F")[7] == "636 min"
    assert saved["paper"]["rows"]["Naive"]["aca"] == [33.7, 0.7]
    assert "order 2 (paper: 1)" in summary and "seeds 1 (paper: 3)" in summary
    assert "epochs 20 (paper: 100)" in summary
    # The setup differences no setting expresses, said where the numbers are printed.
    assert paper.LOWER_PART in summary and paper.PARTIAL_BATCH in summary

    _, summary = run_module("split_benchmark", tmp_path / "tiny", benchmark="split_tinyimagenet",
                            strategies=("EWC", "HN-F"), memory_size=200)
    assert "Table 2, split_tinyimagenet" in summary
    # the reference's code ran Split-TinyImageNet at 32x32, flipped but not cropped
    assert "resize 0 (paper: 32)" in summary and "crop True (paper: False)" in summary
    assert table_row(summary, "EWC")[2] == "22.4 ± 1.1"
    assert table_row(summary, "EWC")[4] == "34.5 ± 0.5"
    assert table_row(summary, "HN-F")[7] == "1,200 min"
    # No LR-k ran: the buffer size did nothing, so it is no departure from the paper.
    assert "memory_size" not in summary
    _, summary = run_module("split_benchmark", tmp_path / "tiny_lr", benchmark="split_tinyimagenet",
                            strategies=("LR-2",), memory_size=200)
    assert "memory_size 200 (paper: 400)" in summary
    assert paper.LOWER_PART not in summary  # no HN-k ran


def test_split_benchmark_setting_as_the_papers(no_training, tmp_path):
    settings = dict(model="resnet", nf=20, epochs=100, batch_size=64, learning_rate=1e-3,
                    coef=0.5, chunk_dim=32, augment=True, ewc_lambda=1.0, order=1, memory_size=200,
                    preset="paper", new_task_init="copy_prev", reg_warmup=0.0, lower_train=True,
                    buffer_quotas="avalanche")
    _, summary = run_module("split_benchmark", tmp_path, benchmark="split_cifar100",
                            strategies=("LR-4",), seeds=(0, 1, 2), **settings)
    assert table_row(summary, "LR-4")[2] == "51.4 ± 1.3"
    assert table_row(summary, "LR-4")[4] == "27.3 ± 2.4"
    assert "setting as the paper's" in summary and "differs" not in summary


def stream_row(summary: str, label: str, stream: str) -> list[str]:
    """The cells of noisy_stream's row for ``label`` on ``stream``."""
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[:2] == [label, stream]:
            return cells
    raise AssertionError(f"no row {label!r} {stream!r} in\n{summary}")


def test_noisy_stream_prints_table1(no_training, tmp_path):
    saved, summary = run_module("noisy_stream", tmp_path, benchmark="noisy_cifar", k=(2,))
    assert "Table 1, learning accuracy" in summary
    assert header(summary)[:4] == ["strategy", "stream", "LA exp 1: clean (%)", "paper"]
    # learning accuracy of experiences 1-4 on both streams, paper beside ours
    assert stream_row(summary, "LR-2", "noisy")[3:10:2] == ["93.2 ± 0.2", "91.2 ± 0.6",
                                                            "89.1 ± 1.3", "91.2 ± 0.9"]
    assert stream_row(summary, "HN-2", "noisy")[3:10:2] == ["88.2 ± 1.4", "76.6 ± 1.3",
                                                            "65.0 ± 2.1", "50.0 ± 0.8"]
    assert stream_row(summary, "HN-2", "normal")[3:10:2] == ["88.2 ± 1.4", "77.2 ± 0.3",
                                                             "76.6 ± 0.7", "64.6 ± 0.3"]
    assert saved["paper"]["rows_by_stream"]["normal"]["HN-2"][3] == [64.6, 0.3]
    _, summary = run_module("noisy_stream", tmp_path / "k1", benchmark="noisy_cifar", k=(1,))
    assert stream_row(summary, "LR-1", "noisy")[3:10:2] == ["—"] * 4  # no k = 1 rows
    # Figure 8's setting: LR-k with c = 0 and 1 beside HN-k; the paper prints c = 1 alone.
    _, summary = run_module("noisy_stream", tmp_path / "c", benchmark="noisy_cifar", k=(3,),
                            replay_coefs=(0.0, 1.0), streams=("noisy",))
    assert stream_row(summary, "LR-3 c=1", "noisy")[3] == "93.1 ± 0.8"
    assert stream_row(summary, "LR-3 c=0", "noisy")[3] == "—"
    with pytest.raises(AssertionError):
        stream_row(summary, "HN-3", "normal")  # --streams noisy alone


def test_lookahead_ablation_prints_table4(no_training, tmp_path):
    saved, summary = run_module("lookahead_ablation", tmp_path, benchmark="split_cifar100", k=4,
                                order=2)
    assert "Table 4" in summary
    with_la = table_row(summary, "HN-4 with look-ahead (order 2)")
    without = table_row(summary, "HN-4 without look-ahead")
    assert (with_la[2], with_la[5], with_la[7]) == ("74.3", "75.6", "115 min")
    assert (without[2], without[5], without[7]) == ("66.9", "73.4", "87 min")
    assert "order 2 (paper: 1)" in summary
    _, summary = run_module("lookahead_ablation", tmp_path / "f", benchmark="split_cifar100", k=0,
                           order=1)
    assert table_row(summary, "HN-F without look-ahead")[2] == "62.7"
    assert table_row(summary, "HN-F with look-ahead (order 1)")[2] == "62.8"
    assert "order 1 (paper" not in summary


def test_first_vs_second_order_prints_table5(no_training, tmp_path):
    saved, summary = run_module("first_vs_second_order", tmp_path, benchmark="split_cifar100",
                                k=1)
    assert "Table 5" in summary
    first, second = table_row(summary, "HN-1 order 1"), table_row(summary, "HN-1 order 2")
    assert (first[2], first[4], first[7]) == ("66.5", "—", "509 min")
    assert (second[2], second[4], second[7]) == ("61.9", "—", "1,626 min")
    assert saved["paper"]["rows"]["HN-1 order 2"]["time_min"] == 1626


def test_no_paper_column_for_other_benchmarks(no_training, tmp_path):
    saved, summary = run_module("split_benchmark", tmp_path, benchmark="split_fashion_mnist",
                                strategies=("Naive",))
    assert table_row(summary, "Naive")[2] == "—" and saved["paper"]["rows"] == {"Naive": None}
    assert ("none (the paper's Table 2 is on split_cifar100 and split_tinyimagenet; this run is "
            "on split_fashion_mnist, so its numbers are not put beside the paper's)") in summary


@pytest.mark.parametrize("name,table", [("split_benchmark", "Table 2"),
                                        ("lookahead_ablation", "Table 4"),
                                        ("first_vs_second_order", "Table 5"),
                                        ("noisy_stream", "Table 1")])
def test_the_synthetic_defaults_print_none_of_the_papers_numbers(no_training, tmp_path, name,
                                                                 table):
    # The synthetic streams have the paper's shapes but not its images: no paper number beside.
    saved, summary = run_module(name, tmp_path)
    assert f"paper columns: none (the paper's {table} is on" in summary
    assert "this run is on synthetic" in summary
    rows = saved["paper"].get("rows") or saved["paper"].get("rows_by_stream", {}).get("noisy")
    assert all(row is None for row in rows.values()), rows
