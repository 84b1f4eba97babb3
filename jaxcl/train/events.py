"""How the loop talks to the edge: the events it reports and the checkpoints it is handed.

The loop (:mod:`jaxcl.train.loop`) never prints, draws a progress bar or touches a file. It
calls ``on_event(event)`` with one of the small records below at every boundary, and, when it is
given a :class:`Checkpointer` (:class:`jaxcl.io.checkpoints.RunCheckpoints` is one), resumes from
it and saves to it. The edge decides what to do with both: a tqdm bar
(:class:`jaxcl.io.progress.ProgressBar`), a line per experience, TensorBoard, nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

from jaxcl.types import PyTree


class ExperienceStarted(NamedTuple):
    """Experience ``experience`` (0-based) of ``experiences`` begins; ``steps`` minibatch steps
    per seed in all its epochs, ``done`` of them already taken (a run resumed inside it)."""

    label: str
    experience: int
    experiences: int
    steps: int
    done: int


class EpochEnded(NamedTuple):
    """A call of the minibatch loop ended at epoch ``epoch`` (one epoch, or with the scan
    several, up to the next epoch checkpoint) after ``steps`` steps; ``metrics[name]`` is
    ``(seeds, steps)``."""

    label: str
    experience: int
    epoch: int
    steps: int
    metrics: dict[str, np.ndarray]


class ExperienceEnded(NamedTuple):
    """Experience ``experience`` is trained and evaluated: ``row`` is ``(seeds, N)``, the
    evaluation matrix's row; ``metrics[name]`` the ``(seeds,)`` mean of its last 10 steps."""

    label: str
    experience: int
    row: np.ndarray
    metrics: dict[str, np.ndarray]


Event = ExperienceStarted | EpochEnded | ExperienceEnded
OnEvent = Callable[[Event], None]


class Checkpointer(Protocol):
    """Where a run keeps its checkpoints; the loop resumes from it and saves to it.

    ``resume(fingerprint, record, epochs)`` restores the latest checkpoint of the run described
    by ``fingerprint`` (a JSON-able dict; a checkpoint of another run is refused) into
    ``record``'s structure, and returns ``(record, (experience, epoch) to go on from, compile
    seconds of the earlier part)``; ``(record, (0, 0), 0.0)`` when there is none.
    ``save(experience, epoch, record, compile_s=...)`` stores the record after that epoch;
    ``kept()`` says in words what a stopped run leaves (the newest checkpoint, or none);
    ``interrupted()`` is the exception to raise on Ctrl-C, saying what is kept; ``close()``
    ends the session.
    """

    def resume(self, fingerprint: dict[str, Any], record: PyTree, *, epochs: int
               ) -> tuple[PyTree, tuple[int, int], float]: ...

    def save(self, experience: int, epoch: int, record: PyTree, *, compile_s: float) -> None: ...

    def kept(self) -> str: ...

    def interrupted(self) -> BaseException: ...

    def close(self) -> None: ...
