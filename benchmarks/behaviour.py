"""Same commands, same numbers: record every experiment's metrics, and compare two records.

A redesign that moves code must not move a number. ``record DIR`` runs every experiment module's
``--quick`` run and the main job (the Hypernet-SDE-Flow study) at a short epoch count, each in a
fresh process, and keeps each ``metrics.json`` without its timings (seconds differ run to run;
nothing else may). ``compare OLD NEW`` lists every number that differs, by its path in the JSON,
and exits 1 if any does (bitwise: floats are compared exactly).

    python benchmarks/behaviour.py record /tmp/before      # on the old tree
    python benchmarks/behaviour.py record /tmp/after       # on the new tree
    python benchmarks/behaviour.py compare /tmp/before /tmp/after

``benchmarks/behaviour_baseline.json`` holds an earlier tree's record; see
``docs/devnotes/behaviour.md``.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import tempfile

RUNS = {
    "compression": ["--quick"],
    "first_vs_second_order": ["--quick"],
    "freeze_depth": ["--quick"],
    "lookahead_ablation": ["--quick"],
    "memory_usage": ["--quick"],
    "noisy_stream": ["--quick"],
    "split_benchmark": ["--quick"],
    "sde_flow_forgetting": ["--quick"],
    # The main job as its README command runs it, at 4 epochs a task instead of 300.
    "sde_flow_forgetting main job, 4 epochs": ["--epochs", "4", "--no-progress"],
}
SETTING = re.compile(r"/(config|settings)/")
"""Paths of the settings a run echoes (``config``, each strategy's ``settings``), not results."""
TIMING = re.compile(r"(^|_)(time|times|compile|seconds)(_|$)|_s(_std)?$|^time_per_")


def strip_timings(tree):
    """``tree`` without the keys that hold seconds (:data:`TIMING`)."""
    if isinstance(tree, dict):
        return {k: strip_timings(v) for k, v in tree.items() if not TIMING.search(k)}
    if isinstance(tree, list):
        return [strip_timings(v) for v in tree]
    return tree


def record(folder: pathlib.Path) -> dict:
    """Run every entry of :data:`RUNS` and return ``{entry: metrics without timings}``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "behaviour.json"
    out = json.loads(path.read_text()) if path.exists() else {}  # an entry recorded is kept
    for entry, args in RUNS.items():
        if entry in out:
            continue
        module = entry.split()[0]
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = pathlib.Path(tmp) / "run"
            cmd = [sys.executable, "-m", f"experiments.{module}", *args, "--out", str(run_dir)]
            print("+", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            out[entry] = strip_timings(json.loads((run_dir / "metrics.json").read_text()))
        path.write_text(json.dumps(out, indent=1, sort_keys=True))
    return out


def differences(old, new, path: str = "") -> list[str]:
    """Every path at which ``old`` and ``new`` differ (a float differs if not bitwise equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        diffs = [f"{path}/{k}: only in the old record" for k in old.keys() - new.keys()]
        diffs += [f"{path}/{k}: only in the new record" for k in new.keys() - old.keys()]
        for k in sorted(old.keys() & new.keys()):
            diffs += differences(old[k], new[k], f"{path}/{k}")
        return diffs
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new))
                for d in differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def _load(path: str) -> dict:
    p = pathlib.Path(path)
    return json.loads((p / "behaviour.json" if p.is_dir() else p).read_text())


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "record":
        record(pathlib.Path(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        old, new = _load(argv[1]), _load(argv[2])
        diffs = differences(old, new)
        for entry in sorted(old.keys() | new.keys()):
            mine = [d for d in diffs if d.startswith(f"/{entry}/") or d.startswith(f"/{entry}:")]
            settings = [d for d in mine if SETTING.search(d)]
            numbers = [d for d in mine if d not in settings]
            print(f"{entry}: {'same numbers' if not numbers else f'{len(numbers)} numbers differ'}"
                  f"{f', {len(settings)} settings differ' if settings else ''}")
            for d in (numbers[:10] + settings[:10]):
                print("   ", d)
        return 1 if diffs else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
