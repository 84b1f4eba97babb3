"""Shared fixtures: explicit PRNG keys, float64 scoped to one test, loud broadcasting."""

import jax
import pytest
from jax import enable_x64

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
