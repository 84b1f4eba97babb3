"""Distrax, imported without TensorFlow.

Distrax's bijectors come from TensorFlow Probability's JAX substrate, whose backend imports
TensorFlow, when it is installed (the ``data`` extra installs it for TFDS), only to copy
docstrings (``tensorflow_probability/python/internal/backend/jax/_utils.py``: it falls back when
the import fails). That import costs about 3 s and prints TensorFlow's log lines on every command,
also those that never load a TFDS benchmark; and once all of TensorFlow is loaded (a TFDS
benchmark read first), it fails asking for ``tf_keras``. TensorFlow is hidden for that one import
and as it was again after it.
"""

from __future__ import annotations

import sys

_MISSING = object()
_loaded = sys.modules.get("tensorflow", _MISSING)
sys.modules["tensorflow"] = None  # `import tensorflow...` raises ImportError meanwhile
try:
    import distrax
finally:
    if _loaded is _MISSING:
        del sys.modules["tensorflow"]
    else:  # already loaded (a TFDS benchmark came first): put it back as it was
        sys.modules["tensorflow"] = _loaded

__all__ = ["distrax"]
