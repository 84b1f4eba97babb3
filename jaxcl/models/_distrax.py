"""Distrax, imported without TensorFlow.

Distrax's bijectors come from TensorFlow Probability's JAX substrate, whose backend imports
TensorFlow, when it is installed (the ``data`` extra installs it for TFDS), only to copy
docstrings (``tensorflow_probability/python/internal/backend/jax/_utils.py``: it falls back when
the import fails). That import costs about 3 s and prints TensorFlow's log lines on every command,
also those that never load a TFDS benchmark. TensorFlow is hidden for that one import and
importable again after it.
"""

from __future__ import annotations

import sys

_hidden = "tensorflow" not in sys.modules
if _hidden:
    sys.modules["tensorflow"] = None  # `import tensorflow...` raises ImportError meanwhile
try:
    import distrax
finally:
    if _hidden and sys.modules.get("tensorflow", 0) is None:
        del sys.modules["tensorflow"]

__all__ = ["distrax"]
