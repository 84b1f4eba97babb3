"""Training an experience over pre-shuffled minibatches: a compiled scan, or a Python loop.

The experience's arrays stay on the device; each epoch is a fresh permutation of the examples
(the remainder that does not fill a minibatch is dropped), and every step gets its own key from
``jax.random.split`` (:func:`minibatch_plan`). Two loops run the same steps on the same minibatches
with the same keys; which one is a value, ``steps_in``:

* ``"scan"`` (:class:`ScanLoop`): the epochs of a call are one compiled ``jax.lax.scan``
  (:func:`scan_minibatches`);
* ``"python"`` (:class:`PythonLoop`): a Python loop over one compiled step, which takes the whole
  on-device experience, a minibatch's indices and its key and gathers the minibatch itself; one
  small compiled program per epoch draws the indices and keys;
* ``"auto"`` (:func:`resolve_steps_in`): ``"python"`` on XLA CPU, ``"scan"`` elsewhere. On CPU a
  convolution's gradient inside any XLA while loop is 20-45x slower than outside one
  (jax-ml/jax issue 12868: a slim ResNet-18 step at nf = 8 costs 1.2 s inside the epoch's scan and
  0.13 s alone); GPUs and TPUs are not known to have this problem and keep the scan.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcl.train.parallel import over_seeds
from jaxcl.types import Batch, PyTree

Step = Callable[[PyTree, Batch, jax.Array], tuple[PyTree, dict[str, jax.Array]]]
# step(state, batch, task_id, key, **static) of one seed: what ScanLoop and PythonLoop run.
TaskStep = Callable[..., tuple[PyTree, dict[str, jax.Array]]]
STEPS_IN = ("auto", "python", "scan")
_AUTO_STEPS_IN = {"cpu": "python"}  # by jax.default_backend(); any other backend: "scan"


def minibatch_indices(key: jax.Array, num_examples: int, batch_size: int, epochs: int) -> jax.Array:
    """``(epochs * steps_per_epoch, batch_size)`` example indices, one permutation per epoch."""
    if not 0 < batch_size <= num_examples:
        raise ValueError(f"batch_size must be in 1..{num_examples} (the examples), got {batch_size}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    steps = num_examples // batch_size
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_examples))(jax.random.split(key, epochs))
    return perms[:, : steps * batch_size].reshape(epochs * steps, batch_size)


def minibatch_plan(key: jax.Array, num_examples: int, batch_size: int,
                   epochs: int = 1) -> tuple[jax.Array, jax.Array]:
    """The minibatches of ``epochs`` epochs from one key: their example indices
    ``(steps, batch_size)`` (:func:`minibatch_indices`) and one key per step ``(steps,)``."""
    index_key, step_key = jax.random.split(key)
    indices = minibatch_indices(index_key, num_examples, batch_size, epochs)
    return indices, jax.random.split(step_key, indices.shape[0])


def take_minibatch(data: Batch, idx: jax.Array) -> Batch:
    """The examples ``idx`` of ``data``, gathered on the device."""
    return Batch(jnp.take(data.x, idx, axis=0), jnp.take(data.y, idx, axis=0))


def scan_minibatches(
    step: Step, state: PyTree, data: Batch, key: jax.Array, *, epochs: int, batch_size: int
) -> tuple[PyTree, dict[str, jax.Array]]:
    """Run ``step(state, batch, key)`` over every minibatch of ``epochs`` epochs
    (:func:`minibatch_plan`) in one ``jax.lax.scan``. Pure: the caller jits it.

    Returns the final state and the per-step metrics stacked along the first axis.
    """
    indices, keys = minibatch_plan(key, data.x.shape[0], batch_size, epochs)

    def body(state, inputs):
        idx, k = inputs
        return step(state, take_minibatch(data, idx), k)

    return jax.lax.scan(body, state, (indices, keys))


_THREAD = threading.local()


def thread_compile_s() -> float:
    """Seconds the calling thread has spent on :class:`CompiledPrograms` compilations: compiling,
    or waiting while another thread compiles the program it needs. A run measures its compile
    time by this (its training time apart from it) so that runs trained side by side in threads
    (``jaxcl.train.loop.train_seeds`` from several threads, sharing programs) each count their
    own."""
    return getattr(_THREAD, "compile_s", 0.0)


class CompiledPrograms:
    """A jitted function compiled ahead of time once per input signature, compile time summed.

    ``programs(*args, **static)`` compiles on the first call with a new signature (pytree
    structure, shapes and dtypes of ``args``, values of the static keyword arguments) and reuses
    the executable after; ``len(programs.compiled)`` counts the compilations, ``compile_s`` their
    seconds, so that a run can report compile time apart from training time and prove that it
    compiled once. ``jit_options`` go to ``jax.jit`` (e.g. ``out_shardings``). Threads may share
    it: a signature is compiled once, the others wait for it (:func:`thread_compile_s`).
    """

    def __init__(self, fn: Callable, static_argnames: Sequence[str] = (), **jit_options):
        self.jitted = jax.jit(fn, static_argnames=tuple(static_argnames), **jit_options)
        self.compiled: dict[Any, Any] = {}
        self.compile_s = 0.0
        self._lock = threading.Lock()

    def __call__(self, *args, **static):
        return self.executable(*args, **static)(*args)

    def executable(self, *args: Any, **static: Any) -> Callable:
        """The compiled program for these arguments' signature (compiled now if new), to call
        with positional arguments of that signature."""
        leaves, tree = jax.tree.flatten(args)
        sig = (tree, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves),
               tuple(sorted(static.items())))
        if sig not in self.compiled:
            start = time.perf_counter()
            with self._lock:
                if sig not in self.compiled:  # not compiled by another thread meanwhile
                    begun = time.perf_counter()
                    self.compiled[sig] = self.jitted.lower(*args, **static).compile()
                    self.compile_s += time.perf_counter() - begun
            _THREAD.compile_s = thread_compile_s() + time.perf_counter() - start
        return self.compiled[sig]


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss; the run stops (the loop adds what is kept)."""


def check_finite(loss: np.ndarray, *, experience: int, epoch: int, steps_per_epoch: int) -> None:
    """Raise :class:`NonFiniteError` at the first non-finite entry of ``loss`` ``(seeds, steps)``,
    the steps of experience ``experience`` from the start of epoch ``epoch`` on, naming where."""
    bad = ~np.isfinite(loss)
    if bad.any():
        seed, step = (int(v[0]) for v in np.nonzero(bad))
        raise NonFiniteError(
            f"non-finite loss {loss[seed, step]} at experience {experience}, epoch "
            f"{epoch + step // steps_per_epoch}, step {step % steps_per_epoch} of "
            f"{steps_per_epoch} (seed index {seed}); the run stops")


def resolve_steps_in(steps_in: str) -> str:
    """``"python"`` or ``"scan"``: ``steps_in`` itself, or for ``"auto"`` the loop of the default
    backend (``"python"`` on CPU, see the module docstring)."""
    if steps_in == "auto":
        return _AUTO_STEPS_IN.get(jax.default_backend(), "scan")
    if steps_in not in LOOPS:
        raise ValueError(f"steps_in must be one of {STEPS_IN}, got {steps_in!r}")
    return steps_in


class ScanLoop:
    """Epochs of named steps over an experience, several epochs in one compiled ``jax.lax.scan``.

    ``steps`` maps a name to a :data:`TaskStep` ``step(state, batch, task_id, key, **static)`` of
    one seed; ``loop(name, state, data, task_id, keys, **static)`` runs one epoch of it over
    ``data`` per epoch key, ``keys`` ``(seeds, epochs)``, for every seed
    (:func:`jaxcl.train.parallel.over_seeds`: ``state``, ``data`` and ``keys`` have a leading
    seed axis, ``task_id`` is shared), and returns the state and the per-step metrics ``(seeds,
    epochs * steps)``. Each epoch is the scan of :func:`scan_minibatches`, inside an outer scan
    over the epochs: one call, no host round trip between epochs (``epochs_per_call`` is
    ``None``: as many as the caller gives). One program per name, number of epochs and value of
    the ``static_argnames``; ``programs`` holds them (to count compilations); ``jit_options`` go
    to ``jax.jit``.
    """

    epochs_per_call: int | None = None

    def __init__(self, steps: Mapping[str, TaskStep], *, batch_size: int, seeds: int,
                 static_argnames: Sequence[str] = (), **jit_options):
        def epochs(step, state, data, task_id, keys, **static):
            def one(s, d, t, ks):
                def epoch(s, k):
                    return scan_minibatches(lambda s, b, k: step(s, b, t, k, **static), s, d,
                                            k, epochs=1, batch_size=batch_size)
                s, metrics = jax.lax.scan(epoch, s, ks)  # metrics: (epochs, steps)
                return s, jax.tree.map(lambda m: m.reshape(-1, *m.shape[2:]), metrics)
            return over_seeds(one, (0, 0, None, 0), seeds)(state, data, task_id, keys)

        self.epochs = {name: CompiledPrograms(functools.partial(epochs, step), static_argnames,
                                              **jit_options) for name, step in steps.items()}
        self.programs = tuple(self.epochs.values())

    def __call__(self, name: str, state: PyTree, data: Batch, task_id: jax.Array,
                 keys: jax.Array, **static) -> tuple[PyTree, dict[str, jax.Array]]:
        return self.epochs[name](state, data, task_id, keys, **static)


class PythonLoop:
    """Epochs of named steps over an experience, each a Python loop over one compiled step.

    The interface of :class:`ScanLoop`, and the same minibatches, keys and steps: one small
    compiled program per epoch draws every seed's minibatch indices and step keys
    (:func:`minibatch_plan`, shared by all names), and each name's compiled step takes the whole
    experience, one minibatch's indices and its key, and gathers the minibatch on the device. The
    step donates the state it is given (the new state reuses its buffers), so the caller must not
    read a state after passing it. The per-step metrics stay on the device until the call ends,
    then are stacked into ``(seeds, epochs * steps)``: no device-to-host transfer per step. The
    loop takes one epoch a call (``epochs_per_call``), so that the caller sees every epoch end.
    """

    epochs_per_call: int | None = 1

    def __init__(self, steps: Mapping[str, TaskStep], *, batch_size: int, seeds: int,
                 static_argnames: Sequence[str] = (), **jit_options):
        def plan(keys, *, num_examples):
            indices, step_keys = over_seeds(
                lambda k: minibatch_plan(k, num_examples, batch_size), (0,), seeds)(keys)
            return [(indices[:, j], step_keys[:, j]) for j in range(indices.shape[1])]

        def one(step, state, data, task_id, idx, key, **static):
            def each(s, d, t, i, k):
                return step(s, take_minibatch(d, i), t, k, **static)
            return over_seeds(each, (0, 0, None, 0, 0), seeds)(state, data, task_id, idx, key)

        self.plan = CompiledPrograms(plan, ["num_examples"], **jit_options)
        self.steps = {name: CompiledPrograms(functools.partial(one, step), static_argnames,
                                             donate_argnums=0, **jit_options)
                      for name, step in steps.items()}
        self.programs = (self.plan, *self.steps.values())

    def __call__(self, name: str, state: PyTree, data: Batch, task_id: jax.Array,
                 keys: jax.Array, **static) -> tuple[PyTree, dict[str, jax.Array]]:
        metrics = []
        for e in range(keys.shape[1]):
            plan = self.plan(keys[:, e], num_examples=data.y.shape[1])
            # Every step has the first one's signature: look its program up once an epoch.
            step = self.steps[name].executable(state, data, task_id, *plan[0], **static)
            for idx, k in plan:
                state, m = step(state, data, task_id, idx, k)
                metrics.append(m)
        return state, jax.tree.map(lambda *m: jnp.stack(m, axis=1), *metrics)


LOOPS = {"python": PythonLoop, "scan": ScanLoop}
