"""Config files: a run folder's config.json re-runs the run bitwise, flags override it, bad keys
and values are refused with the key named, and config.json records what the run ran on."""

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import re

import jax
import pytest
from support import ROOT

from experiments.flags import parse_config
from experiments.sde_flow_forgetting import Config as SdeConfig
from experiments.split_benchmark import QUICK, Config
from jaxcl import config as settings
from jaxcl.config import make
from jaxcl.io.config_file import DERIVED, provenance, read_config


def write(tmp_path, content) -> str:
    path = tmp_path / "c.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("cls", [Config, SdeConfig])
def test_every_setting_round_trips_through_json(cls, tmp_path):
    """A config written as a run writes it (in sections) reads back equal, and every setting
    changed from its default reads back as written (lists as tuples, an int where a float is due
    as a float), in sections or in the flat layout run folders held before the sections."""
    written = {**dataclasses.asdict(cls()), "strategy_settings": {"x": 1}, "provenance": {},
               "unused": {"nf": "model mlp is not the ResNet"}}
    assert make(cls, **read_config(cls, write(tmp_path, written))) == cls()
    changed = {}
    for name, value in settings.flat(cls()).items():
        changed[name] = (not value if isinstance(value, bool) else value + 1
                         if isinstance(value, int | float) else [*value, value[0]]
                         if isinstance(value, tuple) and value else value)
    expected = {**{n: tuple(v) if isinstance(v, list) else v for n, v in changed.items()},
                "learning_rate": 2.0}
    flat = {**changed, "learning_rate": 2}
    nested = dataclasses.asdict(cls())
    for key, value in flat.items():
        section = next((s for s, inner in nested.items()
                        if isinstance(inner, dict) and key in inner), None)
        (nested[section] if section else nested)[key] = value
    for layout in (flat, nested):
        values = read_config(cls, write(tmp_path, layout))
        assert values == expected
        assert isinstance(values["learning_rate"], float)
    assert set(DERIVED) == {"strategy_settings", "provenance", "unused", "experiment"}


@pytest.mark.parametrize("content, message", [
    ({"epochz": 3}, "unknown key 'epochz'; experiments.split_benchmark.Config takes seeds, "),
    ({"epochs": "3"}, "'epochs' must be an integer, got '3'"),
    ({"epochs": 3.0}, "'epochs' must be an integer, got 3.0"),
    ({"epochs": True}, "'epochs' must be an integer, got True"),
    ({"augment": 1}, "'augment' must be true or false, got 1"),
    ({"seeds": 0}, "'seeds' must be a list of an integer, got 0"),
    ({"strategies": ["Naive", 3]}, "'strategies' must be a list of a string, got ['Naive', 3]"),
    ({"strategy_settings": {"Naive": 3}}, None),  # a run folder's derived keys: skipped
    ({"order": 1.5}, "'order' must be one of 1, 2, \"none\", got 1.5"),
    ({"strategy": {"order": "2"}}, "'order' must be one of 1, 2, \"none\", got '2'"),
    ({"run": {"epochz": 3}}, "unknown key 'epochz'"),
    ("[1, 2]", "must be a JSON object of settings, got list"),
    ("{epochs: 3}", "not JSON"),
])
def test_bad_files_are_refused_with_the_key_named(content, message, tmp_path):
    path = write(tmp_path, content)
    if message is None:
        assert read_config(Config, path) == {}
        return
    with pytest.raises(ValueError, match=re.escape(f"config {path}: ") + ".*" + re.escape(message)):
        read_config(Config, path)


def test_provenance_names_versions_commit_and_devices():
    found = provenance()
    assert found["versions"]["jax"] == jax.__version__
    assert found["versions"]["flax"] == importlib.metadata.version("flax")
    assert found["device_count"] == jax.device_count() and found["backend"] == "cpu"
    assert found["host"]["cores"] == os.cpu_count()
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():  # Linux (CI): the model name the kernel reports
        assert found["host"]["cpu"] in cpuinfo.read_text() and found["host"]["cpu"]
    if (ROOT / ".git").exists():  # a clone (CI's is): the commit checked out
        assert re.fullmatch(r"[0-9a-f]{40}", found["git_commit"])
        assert isinstance(found["git_dirty"], bool)


def test_a_run_folder_re_runs_bitwise_from_its_config(tmp_path, capsys):
    """``--config runs/X/config.json`` gives X's numbers bitwise (CPU); flags override the file;
    a bad file is one line and exit status 1, before any work."""
    from jaxcl import cli

    first = tmp_path / "first"
    assert cli.main(["run", "split_benchmark", "--quick", "--strategies", "Naive",
                     "--seeds", "3", "--epochs", "1", "--out", str(first)]) == 0
    saved = json.loads((first / "config.json").read_text())
    written = saved["provenance"].pop("date")  # the day it was written, UTC
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", written)
    assert saved["run"]["seeds"] == [3] and saved["provenance"] == provenance()
    assert saved["strategies"] == ["Naive"] and set(saved["strategy_settings"]) == {"Naive"}
    assert cli.main(["run", "split_benchmark", "--config", str(first / "config.json"), "--out",
                     str(tmp_path / "again")]) == 0
    for name in ("accuracy_matrix.csv", "steps.csv"):
        assert (tmp_path / "again" / name).read_text() == (first / name).read_text(), name
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    again["provenance"].pop("date")
    assert again == saved

    # Flags win over the file, the file over --quick.
    config, _ = parse_config(Config, ["--config", str(first / "config.json"), "--epochs", "2",
                                      "--quick"], name="split_benchmark", description="",
                             quick={**QUICK, "epochs": 5, "seeds": (0,)})
    assert config == make(Config, **{**read_config(Config, first / "config.json"), "epochs": 2})
    # A run folder of the flat layout (before the sections) re-runs the same.
    flat = {**settings.flat(config), "experiment": "split_benchmark"}
    assert parse_config(Config, ["--config", str(write(tmp_path, flat))], name="split_benchmark",
                        description="", quick={})[0] == config

    capsys.readouterr()
    bad = write(tmp_path, {**saved, "epochs": "2"})
    assert cli.main(["run", "split_benchmark", "--config", str(bad), "--out",
                     str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'epochs' must be an integer, got '2'" in err[0], err
    assert not (tmp_path / "bad").exists()
