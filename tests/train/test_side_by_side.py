"""Models trained side by side (``RunOptions.workers``): the numbers of one at a time, programs
that jobs share compiled once, each run's own compile seconds, a failure stopping the rest."""

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import MLP

from experiments.runner import Job, concurrent_jobs, train_learners
from experiments.settings import RunOptions
from jaxcl.data import load_benchmark
from jaxcl.learners import StrategyConfig, build_strategy
from jaxcl.train.steps import CompiledPrograms, thread_compile_s


def _streams():
    return [load_benchmark("synthetic", seed=seed, num_tasks=2, classes_per_task=2, image_size=6,
                           train_per_class=32, test_per_class=8) for seed in (0, 1)]


def _job(label, fail=False):
    config = StrategyConfig.from_label(label, **MLP)

    def build(stream):
        if fail:
            raise ValueError("this job's settings are refused")
        return build_strategy(config, num_tasks=2, classes_per_task=2,
                              sample_x=stream[0].x_train[:16])

    return Job(build=build, settings={}, run_name=label)


def _train(jobs, workers, cache=None):
    return train_learners(jobs, _streams(), seeds=[0, 1],
                          run=RunOptions(epochs=2, progress=False, workers=workers), out=None,
                          batch_size=16, options={}, cache=cache)


def test_side_by_side_gives_the_numbers_of_one_at_a_time_and_compiles_shared_programs_once():
    naive = _job("Naive").build(_streams()[0])  # one learner, two jobs: one set of programs
    same = Job(build=lambda stream: naive, settings={}, run_name="Naive")
    jobs = {"Naive": same, "EWC": _job("EWC"), "Naive again": same}
    alone_cache, together_cache = {}, {}
    alone = _train(jobs, 1, alone_cache)
    together = _train(jobs, 3, together_cache)
    assert list(together) == list(jobs)
    for label in jobs:
        assert [s for s, _ in together[label]] == [0, 1]
        for (_, a), (_, b) in zip(alone[label], together[label]):
            np.testing.assert_array_equal(a.matrix, b.matrix)
            np.testing.assert_array_equal(a.step_metrics["loss"], b.step_metrics["loss"])
    # the two Naive jobs share one set of programs, compiled once in either mode
    assert len(together_cache) == len(alone_cache) == 2
    assert (sum(p.compilations for p in together_cache.values())
            == sum(p.compilations for p in alone_cache.values()))


def test_a_failing_job_is_raised_and_the_others_stop():
    jobs = {"Naive": _job("Naive"), "broken": _job("Naive", fail=True), "EWC": _job("EWC")}
    with pytest.raises(ValueError, match="this job's settings are refused"):
        _train(jobs, 2)


def test_workers_are_checked_and_resolved():
    assert concurrent_jobs(3, 2) == 2  # no more threads than jobs
    assert concurrent_jobs(1, 5) == 1
    assert 1 <= concurrent_jobs(0, 64) <= 64
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match=rf"workers must be a non-negative integer.*{bad}"):
            concurrent_jobs(bad, 2)
        with pytest.raises(ValueError, match=rf"workers must be a non-negative integer.*{bad}"):
            RunOptions(workers=bad)


def test_threads_sharing_a_program_compile_it_once_and_each_counts_its_wait():
    programs = CompiledPrograms(lambda x: jnp.tanh(x) @ x.T)
    x = jnp.ones((64, 64))
    barrier, counted = threading.Barrier(3), {}

    def call(name):
        before = thread_compile_s()
        barrier.wait()
        programs(x).block_until_ready()
        counted[name] = thread_compile_s() - before

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(programs.compiled) == 1
    assert all(seconds > 0 for seconds in counted.values()), counted
    before = thread_compile_s()
    programs(x + 1)  # compiled: nothing more counted
    assert thread_compile_s() == before
    assert jax.numpy.allclose(programs(x), jnp.tanh(x) @ x.T)
