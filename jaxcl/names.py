"""Names a user types (strategy labels, benchmarks, models, experiments) and the nearest known
one when a name is unknown, for the one-line refusal: ``Navie`` -> ``Naive``, ``hn-1`` ->
``HN-1``, ``HN4`` -> ``HN-4``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'X'?"`` for the known name nearest to ``name`` (the same letters in
    another case first, then :func:`difflib.get_close_matches` on lower case), or ``""``."""
    known = list(known)
    folded = {k.lower(): k for k in known}
    key = str(name).lower()
    if key in folded:
        return f"; did you mean {folded[key]!r}?"
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return f"; did you mean {folded[close[0]]!r}?" if close else ""
