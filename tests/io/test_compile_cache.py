"""JAX's persistent compilation cache as the experiments switch it on: where it lives, that a
second run loads its programs instead of compiling them, and that the numbers do not change."""

import json
import os
import subprocess
import sys

import jax
import pytest
from support import ROOT

from experiments.runner import use_compile_cache
from experiments.settings import RunOptions
from jaxcl.io import compile_cache


@pytest.fixture
def jax_cache_config():
    """Put back JAX's cache settings after the test (they are process-wide)."""
    names = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
             "jax_persistent_cache_min_compile_time_secs", "jax_compilation_cache_max_size")
    saved = {n: jax.config.values[n] for n in names}
    yield
    for n, v in saved.items():
        jax.config.update(n, v)


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_folder() == tmp_path / "xdg" / "jaxcl" / "jax"
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "mine"))
    assert compile_cache.default_folder() == tmp_path / "mine"


def test_options_switch_the_cache_on_and_off(jax_cache_config, monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    jax.config.update("jax_compilation_cache_dir", None)
    use_compile_cache(RunOptions(compile_cache_dir=str(tmp_path / "c")))
    assert jax.config.values["jax_compilation_cache_dir"] == str(tmp_path / "c")
    assert (tmp_path / "c").is_dir() and jax.config.values["jax_enable_compilation_cache"]
    assert (jax.config.values["jax_persistent_cache_min_compile_time_secs"]
            == compile_cache.MIN_COMPILE_SECONDS)
    # A folder JAX already has wins over ours.
    assert compile_cache.enable(tmp_path / "other") == tmp_path / "c"
    use_compile_cache(RunOptions(compile_cache=False))
    assert not jax.config.values["jax_enable_compilation_cache"]
    assert not (tmp_path / "other").exists()


def test_cache_folder_that_cannot_be_made_is_refused(jax_cache_config, tmp_path):
    jax.config.update("jax_compilation_cache_dir", None)
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="--no-compile-cache"):
        compile_cache.enable(tmp_path / "file" / "cache")


def test_second_run_loads_the_programs_and_gives_the_same_numbers(tmp_path):
    """Two runs of the same command in two processes: the first stores its compiled programs,
    the second loads them (JAX's log says so) and writes the same metrics."""
    env = {**os.environ, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_DEBUG_LOG_MODULES": "jax._src.compiler"}
    env.pop(compile_cache.ENV, None)
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        done = subprocess.run(
            [sys.executable, "-m", "experiments.sde_flow_forgetting", "--quick", "--variants",
             "mlp", "--compile-cache-dir", str(tmp_path / "cache"), "--out", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append((json.loads((out / "metrics.json").read_text()), done.stderr))
        if i == 0:
            stored = [p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith("-cache")]
            assert any(name.startswith("jit_epochs") for name in stored), stored
    assert "Persistent compilation cache hit for 'jit_epochs'" in runs[1][1]
    assert "Persistent compilation cache hit" not in runs[0][1]
    assert runs[0][0]["mlp"]["per_seed"] == runs[1][0]["mlp"]["per_seed"]
