"""A progress bar for runs, drawn at the edge from the loop's events.

The loop (:mod:`jaxcl.train.loop`) draws nothing; it reports :mod:`jaxcl.train.events`. A
:class:`ProgressBar` is an ``on_event`` handler that turns them into one tqdm bar per experience:
opened when the experience starts (at the steps a resumed run has already taken), moved on by
every finished epoch with the mean over seeds of its last step's loss, closed when the experience
ends. The experiments pass ``ProgressBar(settings.progress)``; a disabled bar draws nothing.
"""

from __future__ import annotations

from typing import IO

import numpy as np
from tqdm.auto import tqdm

from jaxcl.train.events import EpochEnded, Event, ExperienceEnded, ExperienceStarted


class ProgressBar:
    """``on_event`` handler: a tqdm bar per experience, ``"<label> experience <i>"``, counting
    minibatch steps per seed (``file``: where tqdm writes, its default when ``None``)."""

    def __init__(self, enabled: bool, *, file: IO[str] | None = None):
        self.enabled = enabled
        self.file = file
        self.bar: tqdm | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, ExperienceStarted):
            self.close()
            self.bar = tqdm(total=event.steps, initial=event.done,
                            desc=f"{event.label} experience {event.experience}".strip(),
                            leave=False, unit="step", disable=not self.enabled, file=self.file)
        elif isinstance(event, EpochEnded) and self.bar is not None:
            self.bar.update(event.steps)
            loss = event.metrics.get("loss")
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(np.mean(np.asarray(loss)[:, -1])):.3f}")
        elif isinstance(event, ExperienceEnded):
            self.close()

    def close(self) -> None:
        """Close the open bar, if any (also after a run that stopped inside an experience)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
