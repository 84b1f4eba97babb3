"""The engine's loop over minibatches: on CPU no convolution's gradient runs inside an XLA loop
(jax-ml/jax issue 12868), the Python loop and the scan train the same run, one program per phase,
and evaluation reads every test set in a fixed shuffled order."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.data import load_benchmark
from jaxcl.learners import StrategyConfig, build_strategy
from jaxcl.learners.base import Classifier
from jaxcl.train import programs
from jaxcl.train import steps as training
from jaxcl.train.loop import train_stream


def _stream(num_tasks=2, image_size=6, train_per_class=32):
    return load_benchmark("synthetic", seed=0, num_tasks=num_tasks, classes_per_task=2,
                          image_size=image_size, train_per_class=train_per_class,
                          test_per_class=8, noise=1.5)


def _build(label, stream, **settings):
    config = StrategyConfig.from_label(label, **{"model": "mlp", "hidden": (16,),
                                                 "batch_size": 16, **settings})
    return build_strategy(config, num_tasks=len(stream), classes_per_task=2,
                          sample_x=stream[0].x_train[:settings.get("batch_size", 16)])


def _computations(hlo: str) -> dict[str, list[str]]:
    """An HLO module's text as ``{computation name: its instruction lines}``."""
    computations, name = {}, None
    for line in hlo.splitlines():
        head = re.match(r"(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head and not line.startswith(" "):
            name = head.group(1)
            computations[name] = []
        elif line.startswith("}"):
            name = None
        elif name is not None:
            computations[name].append(line)
    return computations


def _is_convolution(line: str) -> bool:
    return " convolution(" in line or ("custom-call(" in line and "conv" in line.lower())


def convolutions_in_loops(hlo: str) -> tuple[int, int]:
    """``(convolutions inside a while loop, all convolutions)`` of an HLO module's text: those of
    every computation reachable from a ``while``'s body or condition (through fusions, calls,
    conditionals and nested loops)."""
    computations = _computations(hlo)
    def callees(lines):
        return {n for line in lines for n in re.findall(r"%([\w.\-]+)", line)
                if n in computations}
    todo = {n for lines in computations.values() for line in lines if " while(" in line
            for n in re.findall(r"(?:body|condition)=%?([\w.\-]+)", line)}
    seen = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= callees(computations[name])
    def count(names):
        return sum(_is_convolution(line) for n in names for line in computations[n])
    return count(seen), count(computations)


@pytest.fixture
def training_programs(monkeypatch):
    """A function that returns the HLO text (after optimisation) of every program the engine's
    loop over minibatches has compiled (the loops make theirs in jaxcl.train.steps)."""
    made = []

    class Recorded(training.CompiledPrograms):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(training, "CompiledPrograms", Recorded)
    return lambda: [c.as_text() for p in made for c in p.compiled.values()]


@pytest.mark.parametrize("steps_in, num_tasks", [("python", 2), ("scan", 1)])
def test_no_convolution_gradient_inside_an_xla_loop_on_cpu(steps_in, num_tasks,
                                                           training_programs):
    """A slim ResNet-18 (nf = 4, 8x8 images) trained with EWC: both phases' steps and the Fisher
    pass. The Python loop's programs hold convolutions, none in a loop; the scan's (the check's
    counter-example) hold them in its while loop."""
    stream = _stream(num_tasks, image_size=8, train_per_class=8)
    strategy = _build("EWC", stream, model="resnet", nf=4, batch_size=8)
    result = train_stream(strategy, stream, key=jax.random.key(0), epochs=1, batch_size=8,
                          steps_in=steps_in)
    assert np.all(np.isfinite(result.step_metrics["loss"]))
    counts = [convolutions_in_loops(text) for text in training_programs()]
    expected = {"python": 4, "scan": 2}[steps_in]  # plan, first, later, Fisher; first, Fisher
    assert len(counts) == expected, counts
    in_loops, total = (sum(c) for c in zip(*counts))
    assert total > 0
    if steps_in == "python":
        assert in_loops == 0, counts
    else:
        assert in_loops == total, counts  # every one: the scan holds the whole step


def test_auto_is_the_python_loop_on_cpu_and_bad_values_are_refused():
    assert jax.default_backend() != "cpu" or training.resolve_steps_in("auto") == "python"
    assert training.resolve_steps_in("scan") == "scan"
    stream = _stream()
    with pytest.raises(ValueError, match=r"steps_in must be one of \('auto', 'python', 'scan'\), "
                                         r"got 'while'"):
        train_stream(_build("Naive", stream), stream, key=jax.random.key(0), epochs=1,
                     batch_size=16, steps_in="while")


@pytest.mark.parametrize("label", ["EWC", "LR-1", "HN-1"])
def test_python_loop_and_scan_train_the_same_run(label):
    stream = _stream(num_tasks=3)
    strategy = _build(label, stream, learning_rate=1e-2)
    runs = {steps_in: train_stream(strategy, stream, key=jax.random.key(0), epochs=2,
                                   batch_size=16, steps_in=steps_in)
            for steps_in in ("python", "scan")}
    python, scan = runs["python"], runs["scan"]
    np.testing.assert_allclose(python.matrix, scan.matrix, atol=1e-6)
    for name, values in scan.step_metrics.items():
        np.testing.assert_allclose(python.step_metrics[name], values, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    assert python.step_metrics["loss"].shape == (3 * 2 * 4,)
    consolidates = label == "EWC"  # its Fisher pass: one more program in either loop
    assert python.compilations == 6 + consolidates  # steps of 2 phases, plan, begin, end, eval
    assert scan.compilations == 5 + consolidates  # epochs of 2 phases, begin, end, eval
    leaves = jax.tree.leaves(jax.tree.map(lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-6),
                                          python.state, scan.state))
    assert all(leaves)


@pytest.mark.parametrize("steps_in", ["python", "scan"])
def test_one_program_per_phase_whatever_the_number_of_experiences(steps_in):
    counts = []
    for num_tasks in (2, 4):
        stream = _stream(num_tasks)
        result = train_stream(_build("HN-1", stream), stream, key=jax.random.key(0), epochs=1,
                              batch_size=16, steps_in=steps_in)
        counts.append(result.compilations)
    assert counts == [{"python": 6, "scan": 5}[steps_in]] * 2


class _Classifier(Classifier):
    """Class 1 when the example's mean exceeds a threshold: the minibatch's mean (``batch``, as a
    model normalising with batch statistics in evaluation) or 0 (per example)."""

    def __init__(self, batch):
        self.batch = batch

    def logits(self, state, x, task_id):
        score = x.mean(axis=(1, 2, 3)) - (x.mean() if self.batch else 0.0)
        return jnp.stack([-score, score], axis=-1)


def test_evaluation_reads_the_test_set_in_a_fixed_shuffled_order():
    """Class-sorted test sets: in chunks of one class a batch-statistics model is at chance; in
    the fixed shuffled order it is right as often as the per-example model, whose accuracy the
    order does not change."""
    y = jnp.repeat(jnp.arange(2), 64)
    x = jnp.broadcast_to((2.0 * y - 1.0)[:, None, None, None], (128, 2, 2, 1))

    def accuracy(model, index=0, size=64):
        return float(programs._evaluate(model, size, None, x, y, jnp.int32(0), jnp.int32(index)))

    assert accuracy(_Classifier(batch=False)) == 1.0
    assert accuracy(_Classifier(batch=True)) > 0.9  # sorted chunks would give 0.5
    assert accuracy(_Classifier(batch=True)) == accuracy(_Classifier(batch=True))
    order = [jax.random.permutation(jax.random.fold_in(jax.random.key(0), i), 128)
             for i in (0, 1)]
    assert not np.array_equal(order[0], order[1])  # each experience's own order
