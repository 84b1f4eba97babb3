"""Checkpoints of a run over a stream, after every experience, so that a killed run resumes.

A run's checkpoint after experience ``i`` holds everything the rest of the run reads: the
strategies' states of all seeds (parameters, optimizer states, the frozen previous hypernetwork,
buffers, Fisher terms), the accuracy matrices so far, the per-step logs, the times, and the stream
position ``i``. Every key the engine uses is derived from the run's seeds and the position
(``fold_in``), so no key needs saving: a run resumed from the checkpoint of experience ``i`` does
exactly what the uninterrupted run did from experience ``i + 1`` on.

Orbax writes each checkpoint to a temporary folder and renames it into place, so a run killed
while saving leaves the previous checkpoint intact. A ``fingerprint`` (the strategy, seeds, shapes
and settings of the run, and the experiment modules' every setting that can change a number and
a content hash of the data) is saved with every checkpoint; restoring into a run with another
fingerprint is refused, naming each entry that differs, rather than mixing two runs.

The edge builds a :class:`RunCheckpoints` per run (``RunCheckpoints(out / "checkpoints" / name,
name=name, report=print)``) and hands it to the loop, which knows the fingerprint and calls
``resume``, ``save``, ``kept``, ``interrupted`` and ``close`` (:class:`jaxcl.train.events.Checkpointer`).
Nothing here prints: the lines a run's owner may want to see go to its ``report``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcl.types import PyTree


class CheckpointMismatchError(ValueError):
    """The checkpoint folder holds a run other than the one being resumed."""


class CheckpointCorruptError(OSError):
    """No checkpoint of the run's folder restores."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a checkpointed run: its message says what is kept and how to go on."""


INTERRUPTED_EARLY = ("interrupted before the first checkpoint; nothing is kept, rerun the same "
                     "command to start again")
"""The line of a Ctrl-C that comes before a run has anything to resume from (while its data
load or its programs compile, or before the first checkpoint is written)."""


@contextlib.contextmanager
def _interrupt_after():
    """A Ctrl-C (SIGINT) while a checkpoint is written takes effect once it is written.

    Orbax's ``CheckpointManager.wait_until_finished`` catches ``BaseException``: a
    ``KeyboardInterrupt`` raised while it waits would be logged and swallowed, the checkpoint
    being written deleted, and the run would go on as if never interrupted. Inside this block
    SIGINT is only recorded (in the main thread, where Python delivers it); after it, a recorded
    one raises ``KeyboardInterrupt``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class RunCheckpoints:
    """The checkpoints of one run in ``directory``, one per finished experience or epoch (the last
    two kept), or fewer with ``min_interval_s`` (:meth:`save`): the
    :class:`jaxcl.train.events.Checkpointer` the edge hands to the loop.

    Constructed at the edge, before the run's fingerprint is known; :meth:`resume` opens the
    orbax manager with it. ``name`` (the run's, e.g. a strategy's label) begins the line that
    says a run resumed; that line, and one per damaged checkpoint passed over, go to
    ``report(line)`` when ``report`` is given (the experiments pass ``print``), nowhere otherwise.
    """

    def __init__(self, directory: str | pathlib.Path, *, name: str = "",
                 report: Callable[[str], None] | None = None, min_interval_s: float = 0.0):
        if not min_interval_s >= 0:
            raise ValueError(f"min_interval_s must be >= 0, got {min_interval_s!r}")
        self.directory = pathlib.Path(directory).absolute()
        self.min_interval_s = min_interval_s
        self._since = time.monotonic()  # the last write, or the run's start
        self.name = name
        self.report = report
        self.fingerprint: dict[str, Any] | None = None
        self.epochs = 0
        self.saved: tuple[int, int] | None = None  # (experience, epoch) of the newest checkpoint
        self._manager: ocp.CheckpointManager | None = None

    def _say(self, line: str) -> None:
        if self.report is not None:
            self.report(line)

    def _open(self) -> ocp.CheckpointManager:
        if self._manager is None:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True,
                                                     cleanup_tmp_directories=True,
                                                     enable_async_checkpointing=False))
        return self._manager

    def resume(self, fingerprint: dict[str, Any], record: PyTree, *, epochs: int
               ) -> tuple[PyTree, tuple[int, int], float]:
        """Open the run's checkpoints and restore the latest, if any.

        ``fingerprint`` describes the run (a checkpoint with another one is refused with
        :class:`CheckpointMismatchError`, naming each entry that differs); ``record`` is the
        run's fresh record: device arrays (states, restored with their shardings) and numpy
        arrays (matrices, logs, times; restored as writable numpy arrays); the run has
        ``epochs`` epochs per experience. Returns ``(record, (experience, epoch) to go on from,
        compile seconds of the earlier part of the run)``, ``(record, (0, 0), 0.0)`` when there
        is no checkpoint. A damaged checkpoint is passed over for the one before it;
        :class:`CheckpointCorruptError` is raised when none restores.
        """
        self.fingerprint, self.epochs = fingerprint, epochs
        self._since = time.monotonic()
        restored = self._latest(record)
        if restored is None:
            return record, (0, 0), 0.0
        tree, meta = restored
        tree = jax.tree.map(lambda fresh, saved: np.array(saved)
                            if isinstance(fresh, np.ndarray) else saved, record, tree)
        experience, epoch = meta["experience"], meta["epoch"]
        self._say(f"{self.name} resumed from {self.directory}: after experience {experience}, "
                  f"epoch {epoch}".strip())
        after = (experience + 1, 0) if epoch == epochs - 1 else (experience, epoch + 1)
        return tree, after, float(meta["compile_s"])

    def save(self, experience: int, epoch: int, record: PyTree, *, compile_s: float) -> None:
        """Store ``record`` after ``epoch`` of ``experience`` (at position ``experience * epochs +
        epoch``) with the compile seconds so far and the fingerprint given to :meth:`resume`;
        nothing is written until ``min_interval_s`` seconds have passed since the last write (or
        since :meth:`resume`), so that a short run does not spend its time saving (a killed run
        loses at most that much training)."""
        if self.fingerprint is None:
            raise RuntimeError(f"RunCheckpoints({str(self.directory)!r}).save before resume: "
                               "the run's fingerprint is given to resume")
        if time.monotonic() - self._since < self.min_interval_s:
            return
        meta = {"experience": experience, "epoch": epoch, "compile_s": compile_s,
                "fingerprint": self.fingerprint}
        manager = self._open()
        with _interrupt_after():
            manager.save(experience * self.epochs + epoch, args=ocp.args.Composite(
                tree=ocp.args.StandardSave(record), meta=ocp.args.JsonSave(meta)))
            manager.wait_until_finished()
            self.saved = (experience, epoch)
        self._since = time.monotonic()

    def kept(self) -> str:
        """What a stopped run leaves to resume from, in words: the newest checkpoint and its
        folder, or that there is none."""
        if self.saved is None:
            return "no checkpoint was written, so nothing is kept"
        return (f"the checkpoint (after experience {self.saved[0]}, epoch {self.saved[1]}) is "
                f"kept in {self.directory}")

    def interrupted(self) -> RunInterrupted:
        """The one-line report of a Ctrl-C: what is kept, how to go on."""
        if self.saved is None:
            return RunInterrupted(INTERRUPTED_EARLY)
        return RunInterrupted(f"interrupted; {self.kept()}; rerun the same command to resume")

    def close(self) -> None:
        """End the session (the manager is opened again by a later :meth:`resume` or save)."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def _skip(self, position: int, error: Exception) -> None:
        first = (str(error).strip().splitlines() or [""])[0][:160]
        self._say(f"checkpoint {position} in {self.directory} does not restore "
                  f"({type(error).__name__}: {first}); trying the one before it")

    def _latest(self, like: PyTree) -> tuple[PyTree, dict[str, Any]] | None:
        """``(tree, meta)`` of the newest checkpoint that restores, the tree with ``like``'s
        structure, shapes, dtypes and shardings; ``None`` when there is none."""
        manager = self._open()
        current = _jsonable(self.fingerprint)
        positions = sorted(manager.all_steps(), reverse=True)
        for position in positions:
            try:
                meta = manager.restore(position, args=ocp.args.Composite(
                    meta=ocp.args.JsonRestore()))["meta"]
            except Exception as error:  # noqa: BLE001  (orbax/TensorStore raise bare Exception)
                self._skip(position, error)
                continue
            saved = meta.get("fingerprint")
            if saved != current:
                raise CheckpointMismatchError(
                    f"{self.directory} holds checkpoints of another run; it differs in "
                    f"{fingerprint_diff(saved or {}, current)}. Use another "
                    "--out folder, or delete the checkpoints to start again.")
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
            try:
                tree = manager.restore(position, args=ocp.args.Composite(
                    tree=ocp.args.StandardRestore(abstract)))["tree"]
            except Exception as error:  # noqa: BLE001
                self._skip(position, error)
                continue
            self.saved = (meta["experience"], meta["epoch"])
            return tree, meta
        if positions:
            raise CheckpointCorruptError(
                f"none of the {len(positions)} checkpoints in {self.directory} restores (each is "
                "damaged); delete that folder to start the run again, or pass another --out")
        return None


def content_digest(tree: PyTree) -> str:
    """A content hash of a pytree (each leaf's shape, dtype and bytes, in order): the data's
    identity in a run's fingerprint, so that a resumed run refuses checkpoints trained on other
    data (e.g. a stream built with other options)."""
    h = hashlib.blake2b(digest_size=16)
    for leaf in jax.tree.leaves(tree):
        a = np.asarray(leaf)
        h.update(repr((a.shape, str(a.dtype))).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _jsonable(tree: Any) -> Any:
    """``tree`` as its JSON round trip gives it back (tuples become lists), for comparing."""
    return json.loads(json.dumps(tree))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def fingerprint_diff(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """The entries in which two fingerprints differ, ``name: saved -> current``, ``;``-joined."""
    a, b = _flat(saved), _flat(current)
    missing = "(absent)"
    diffs = [f"{k}: {a.get(k, missing)!r} in the checkpoint, {b.get(k, missing)!r} now"
             for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]
    return "; ".join(diffs) if diffs else "nothing visible (a fingerprint of another layout)"
