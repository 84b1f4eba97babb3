"""JAX's persistent compilation cache, switched on for the command line and the experiments.

Compiling a run's programs is a large part of a short run on CPU (the Hypernet-SDE-Flow study
compiles eight models' programs). JAX can keep every compiled XLA executable on disk, keyed by
the program, the backend, the jaxlib version and the flags, and load it instead of compiling
when the same program is asked for again, in any later process: a second run of the same
command skips compilation. A cached executable is the one the compiler would build, so the
numbers are the same bitwise (``tests/io/test_compile_cache.py`` checks it).

:func:`enable` points JAX at a folder: ``folder`` if given, else ``$JAXCL_COMPILE_CACHE``, else
``$XDG_CACHE_HOME/jaxcl/jax`` (``~/.cache/jaxcl/jax``). A folder the user has already given JAX
(``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is. Only programs that take
:data:`MIN_COMPILE_SECONDS` or more to compile are stored, and the folder is capped at
:data:`MAX_BYTES` (JAX drops the least recently used entries beyond it); JAX's environment
variables ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` and ``JAX_COMPILATION_CACHE_MAX_SIZE``
override both. A program that calls back to Python (``jax.debug.print``, a checked Diffrax
solve) is never stored: JAX refuses to cache host callbacks.
"""

from __future__ import annotations

import os
import pathlib

import jax

ENV = "JAXCL_COMPILE_CACHE"
MIN_COMPILE_SECONDS = 0.5
MAX_BYTES = 2 * 1024**3


def default_folder() -> pathlib.Path:
    """``$JAXCL_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/jaxcl/jax``, else ``~/.cache/jaxcl/jax``."""
    if os.environ.get(ENV):
        return pathlib.Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "jaxcl" / "jax"


def enable(folder: str | os.PathLike | None = None) -> pathlib.Path:
    """Switch JAX's persistent compilation cache on in ``folder`` (default:
    :func:`default_folder`) and return the folder in use. Call before the first compilation;
    a folder already set in JAX's own configuration wins."""
    jax.config.update("jax_enable_compilation_cache", True)
    current = jax.config.values["jax_compilation_cache_dir"]
    if current:
        return pathlib.Path(current)
    path = pathlib.Path(folder).expanduser() if folder else default_folder()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create the compilation cache folder {path} ({error}); give "
                      f"another with --compile-cache-dir or ${ENV}, or pass "
                      "--no-compile-cache") from error
    jax.config.update("jax_compilation_cache_dir", str(path))
    # JAX's own environment variables, where set, win over our defaults.
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path


def disable() -> None:
    """Switch the persistent cache off for this process (``--no-compile-cache``)."""
    jax.config.update("jax_enable_compilation_cache", False)
