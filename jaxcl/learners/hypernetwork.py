"""The partial-hypernetwork strategy HN-k (and HN-F, k = 0) behind the common strategy interface.

A thin adapter over :class:`jaxcl.learners.partial_hypernet.PartialHypernet`: the first experience trains
``phi`` and ``psi`` with plain gradients, later ones train ``psi`` with the look-ahead gradient of
the output regulariser over up to ``max_prev_tasks`` previous tasks drawn per step (a fixed-size,
masked set), and the frozen copy ``H*`` is taken at the end of every experience.
"""

from __future__ import annotations

import dataclasses

from jaxcl.core.regularizers import previous_tasks
from jaxcl.learners.base import Classifier, bytes32, step_metrics
from jaxcl.learners.partial_hypernet import PartialHypernet


@dataclasses.dataclass(frozen=True)
class HypernetStrategy(Classifier):
    """HN-k.

    Attributes:
      learner: the partial-hypernetwork learner (models, optimizers, order, ``lambda``).
      max_prev_tasks: previous tasks in the regulariser per step (the study: 20).
    """

    learner: PartialHypernet
    max_prev_tasks: int = 20
    name: str = "hypernetwork"

    def __post_init__(self):
        if self.max_prev_tasks < 1:
            raise ValueError(f"max_prev_tasks must be >= 1, got {self.max_prev_tasks!r}")

    @property
    def num_tasks(self) -> int:
        """Rows of the hypernetwork's task-embedding table: task ids ``0 .. num_tasks - 1``."""
        return self.learner.hnet.config.num_tasks

    def init(self, key, sample_x):
        return self.learner._init(key, sample_x)

    def begin_experience(self, state, task_id, key):
        return self.learner.begin_experience(state, task_id, key)

    def train_step(self, state, batch, task_id, key, *, first):
        num_tasks = self.learner.hnet.config.num_tasks
        ids, mask = previous_tasks(task_id, num_tasks, self.max_prev_tasks, key)
        state, m = self.learner.step(state, batch, task_id, ids, mask, train_stateful=first)
        return state, step_metrics(m["loss"], m["accuracy"], cosine=m["cosine"],
                                   grad_rel_diff=m["grad_rel_diff"])

    def end_experience(self, state, data, task_id, key):
        return self.learner.end_experience(state)

    def logits(self, state, x, task_id):
        return self.learner.logits(state.hparams, state.stateful, x, task_id)

    def memory_bytes(self, state):
        """The frozen copy ``H*`` kept for the regulariser."""
        return bytes32(state.frozen_hparams)
