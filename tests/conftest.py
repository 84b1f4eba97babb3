"""Shared fixtures: explicit PRNG keys, float64 scoped to one test, loud broadcasting."""

import os
import tempfile

# The tests compile many small programs and run each briefly: XLA's backend optimisations cost
# more compile time than they save. Set before JAX starts its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# The experiments switch JAX's persistent compilation cache on: the tests keep theirs out of the
# user's, in one folder per test run that its xdist workers share.
os.environ.setdefault("JAXCL_COMPILE_CACHE", os.path.join(
    tempfile.gettempdir(), f"jaxcl-test-cache-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}"))

import jax  # noqa: E402
import pytest  # noqa: E402
from jax import enable_x64  # noqa: E402

# Many tests compile the same small programs (one learner, several checks): JAX's persistent
# cache, in the test run's folder above, compiles each once for both xdist workers. A cache hit
# is the program the compiler builds, and the loop counts it as a compilation all the same.
from jaxcl.io import compile_cache  # noqa: E402

compile_cache.enable(os.environ["JAXCL_COMPILE_CACHE"])

# Implicit rank promotion hides shape bugs: make it an error everywhere in the tests.
jax.config.update("jax_numpy_rank_promotion", "raise")
# Partitionable threefry compiles initialisers ~5x slower on CPU; tests need no particular stream.
jax.config.update("jax_threefry_partitionable", False)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Run the test in float64 and restore the previous setting after it."""
    with enable_x64():
        yield
