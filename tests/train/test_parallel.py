"""Scale: data-parallel on a mesh of simulated devices, two processes as two hosts, seeds
vmapped in one program. (Checkpoints, resume, non-finite stops and the command line:
``test_resume.py``.)"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from support import MLP, ROOT, build, tiny_stream

from jaxcl.data import load_benchmark
from jaxcl.learners import StrategyConfig, build_strategy
from jaxcl.train.loop import train_seeds, train_stream
from jaxcl.train.steps import resolve_steps_in

# A run's programs: start, end, evaluation, and the epoch of the first and of later experiences:
# on CPU (the "python" loop) their two steps and the epoch's minibatch plan, elsewhere two scans.
PROGRAMS = {"python": 6, "scan": 5}[resolve_steps_in("auto")]


def test_data_parallel_on_1_and_8_devices_gives_the_same_run_and_shards_the_batch():
    """Eight simulated CPU devices in a subprocess (the flag must precede JAX's start)."""
    script = textwrap.dedent("""
        import json, jax, numpy as np
        from jaxcl.data import load_benchmark
        from jaxcl.train.loop import train_seeds
        from jaxcl.learners import StrategyConfig, build_strategy

        stream = load_benchmark("synthetic", seed=0, num_tasks=2, classes_per_task=2,
                                image_size=6, train_per_class=32, test_per_class=16)
        config = StrategyConfig.from_label("HN-1", model="mlp", hidden=(16,), batch_size=16,
                                           order=2)
        seen = {}

        class Spy:  # records the sharding of the minibatch inside the compiled step
            def __init__(self, inner, devices, into=seen):
                self.inner, self.devices, self.into = inner, devices, into
            def __getattr__(self, name):
                return getattr(self.inner, name)
            def train_step(self, state, batch, task_id, key, *, first):
                jax.debug.inspect_array_sharding(
                    batch.x, callback=lambda s: self.into.setdefault(
                        self.devices, str(getattr(s, "spec", "one device"))))
                return self.inner.train_step(state, batch, task_id, key, first=first)

        out = {"device_count": jax.device_count()}
        for devices in (1, 8):  # 2 devices: the study's run below and the two-host test
            strategy = build_strategy(config, num_tasks=2, classes_per_task=2,
                                      sample_x=stream[0].x_train[:16])
            r = train_seeds(Spy(strategy, devices), [stream, stream],
                            keys=[jax.random.key(0), jax.random.key(1)], epochs=2,
                            batch_size=16, devices=devices)
            out[devices] = {"matrix": [x.matrix.tolist() for x in r],
                            "loss": [x.step_metrics["loss"].tolist() for x in r],
                            "compilations": r[0].compilations}
        out["specs"] = seen

        # The Hypernet-SDE-Flow study's learner (jaxcl.learners.sde_flow), through the same loop.
        from jaxcl.data.points import point_tasks
        from jaxcl.learners.sde_flow import SdeFlowLearner
        from jaxcl.learners.sde_flow_variant import Variant
        from jaxcl.models.sde_flow import SdeFlowConfig

        variant = Variant(
            model=SdeFlowConfig(hidden=(8,), flow_layers=2, flow_hidden=(8,), sde_hidden=(8,),
                                sde_steps=2),
            embedding_dim=4, hnet_hidden=(8,), epochs=2, batch_size=8, memory_per_task=4)
        tasks = point_tasks(jax.random.key(0), num_tasks=2, train_per_task=16, test_per_task=8)
        sde_seen, out["sde"] = {}, {}
        for devices in (1, 2):  # the strategy's run above covers 8
            learner = SdeFlowLearner.build(variant, num_tasks=2, train_per_task=16)
            r = train_seeds(Spy(learner, devices, into=sde_seen), [tasks, tasks],
                            keys=[jax.random.key(0), jax.random.key(1)], epochs=2,
                            batch_size=8, devices=devices)
            out["sde"][devices] = [x.matrix.tolist() for x in r]
        out["sde_specs"] = sde_seen
        print("RESULT" + json.dumps(out))
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8 "
                                      "--xla_backend_optimization_level=0"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=False,
                          text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["device_count"] == 8
    for devices in ("8",):
        assert out[devices]["matrix"] == out["1"]["matrix"]
        np.testing.assert_allclose(out[devices]["loss"], out["1"]["loss"], rtol=2e-5, atol=1e-6)
        assert out[devices]["compilations"] == 6  # CPU: 2 steps, plan, start, end, evaluation
    # One device: no mesh. On 2 and 8, the minibatch (seed axis first) is split over "data".
    assert out["specs"]["1"] == "one device"
    assert out["specs"]["8"] == "P(None, 'data')"
    np.testing.assert_allclose(out["sde"]["2"], out["sde"]["1"], rtol=1e-4)
    assert out["sde_specs"] == {"1": "one device", "2": "P(None, 'data')"}


def test_vmapped_seeds_equal_separate_runs_seed_by_seed():
    streams = [tiny_stream(seed, num_tasks=2) for seed in (0, 1)]
    keys = [jax.random.key(seed) for seed in (0, 1)]
    strategy = build("HN-1", streams[0], order=1)  # order 2 vmapped: the data-parallel test
    together = train_seeds(strategy, streams, keys=keys, epochs=2, batch_size=16)
    assert together[0].compilations == PROGRAMS  # both seeds in the same programs
    for stream, key, joint in zip(streams, keys, together):
        alone = train_stream(strategy, stream, key=key, epochs=2, batch_size=16)
        np.testing.assert_allclose(joint.matrix, alone.matrix, atol=1e-6)
        np.testing.assert_allclose(joint.step_metrics["loss"], alone.step_metrics["loss"],
                                   rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[0].step_metrics["loss"], together[1].step_metrics["loss"])


def test_engine_refuses_streams_and_devices_it_cannot_run():
    a, b = tiny_stream(0), tiny_stream(0, num_tasks=2)
    strategy = build("Naive", a)
    with pytest.raises(ValueError, match="stream 1 differs from stream 0"):
        train_seeds(strategy, [a, b], keys=[jax.random.key(0)] * 2, epochs=1, batch_size=16)
    with pytest.raises(ValueError, match=r"devices must be in 1\.\.1 .* got 4"):
        train_stream(strategy, a, key=jax.random.key(0), epochs=1, batch_size=16, devices=4)
    with pytest.raises(ValueError, match="2 streams for 1 keys"):
        train_seeds(strategy, [a, a], keys=[jax.random.key(0)], epochs=1, batch_size=16)


def test_two_processes_as_two_hosts_give_the_single_device_run(tmp_path):
    """Multi-host on one machine: two processes of two CPU devices each (gloo collectives),
    started through `jaxcl run --distributed`; process 0 alone writes the results, which equal a
    one-device run's."""
    import socket

    from experiments import split_benchmark

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = ["--quick", "--strategies", "HN-1", "--order", "1", "--seeds", "0", "1"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                                      "--xla_backend_optimization_level=0",
           "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
           "JAX_THREEFRY_PARTITIONABLE": str(jax.config.jax_threefry_partitionable)}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "jaxcl.cli", "run", "--distributed", "--coordinator",
         f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i), "split_benchmark",
         *options, "--devices", "4", "--out", str(tmp_path / "hosts")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    single = split_benchmark.main([*options, "--out", str(tmp_path / "single")])
    hosts = json.loads((tmp_path / "hosts" / "metrics.json").read_text())
    a, b = hosts["strategies"]["HN-1"], single["strategies"]["HN-1"]
    assert [s["accuracy_matrix"] for s in a["per_seed"]] == [
        s["accuracy_matrix"] for s in b["per_seed"]]
    assert hosts["config"]["run"]["devices"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name not in ("hosts", "single")]


def test_seeds_whose_streams_differ_in_shape_train_one_after_another(capsys):
    from experiments.runner import Job, train_learners
    from experiments.settings import RunOptions

    streams = [load_benchmark("synthetic", seed=seed, num_tasks=2, classes_per_task=2,
                              image_size=6, train_per_class=32 + 16 * seed, test_per_class=8)
               for seed in (0, 1)]  # seed 1's experiences are larger: not stackable
    naive = StrategyConfig.from_label("Naive", **MLP)
    job = Job(build=lambda stream: build_strategy(naive, num_tasks=2, classes_per_task=2,
                                                  sample_x=stream[0].x_train[:16]),
              settings={}, run_name="Naive")
    runs = train_learners({"Naive": job}, streams, seeds=[0, 1],
                          run=RunOptions(epochs=1, progress=False), out=None, batch_size=16,
                          options={})
    assert "differ in shape: training them one after another" in capsys.readouterr().out
    assert [len(r.step_metrics["loss"]) for _, r in runs["Naive"]] == [2 * 4, 2 * 6]
    assert [seed for seed, _ in runs["Naive"]] == [0, 1]
