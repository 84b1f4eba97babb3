"""A Ctrl-C that is never lost while a run runs.

Python runs a signal's handler in whatever Python code is running when the signal arrives. When
that is a garbage-collection callback (JAX registers one, ``_xla_gc_callback``) or a ``__del__``,
the ``KeyboardInterrupt`` the handler raises is printed as "Exception ignored in ..." and
dropped, and the run goes on as if it had never been interrupted (1 of 20 Ctrl-Cs sent during a
TFDS run's start did so here). :func:`kept` installs a handler that raises at once, as Python's
own does, and also remembers the interrupt; :func:`raise_pending`, called at the run's events
(after its data load, at every epoch), raises one that was swallowed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_PENDING: list[int] = []


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """While the block runs, a SIGINT raises ``KeyboardInterrupt`` and is remembered for
    :func:`raise_pending`. Only in the main thread (where Python delivers signals), and not
    where SIGINT is ignored (a command started in a shell's background stays deaf to it)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield
        return

    def handler(signum, frame):
        _PENDING.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _PENDING.clear()


def raise_pending() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C came inside :func:`kept` (and was swallowed on
    its way: it would have ended the run otherwise)."""
    if _PENDING:
        _PENDING.clear()
        raise KeyboardInterrupt
