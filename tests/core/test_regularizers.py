"""The output regulariser on real slots only: the same value and gradient as over every slot, of
every order, one program for every mask, and padding never evaluated."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jaxcl.core.hypernet import HypernetConfig, Hypernetwork
from jaxcl.core.regularizers import (
    masked_slot_mean,
    output_regularizer,
    output_regularizer_real_slots,
    task_outputs,
)
from jaxcl.models import MLP

SLOTS = 5


def _problem(key):
    """A tiny hypernetwork over an MLP target, ``psi`` and a perturbed frozen copy, in the current
    default float dtype."""
    x = jnp.zeros((4, 3))
    hnet = Hypernetwork.for_target(
        MLP(num_classes=2, hidden=(4,)), x,
        config=HypernetConfig(num_tasks=6, embedding_dim=3, hidden=(5, 4), chunk_dim=2))
    dtype = jnp.zeros(()).dtype
    kp, kf = jax.random.split(key)
    psi = jax.tree.map(lambda a: a.astype(dtype), jax.jit(hnet.init)(kp, 0))
    noise = optax.tree.random_like(kf, psi, jax.random.normal)
    frozen = jax.tree.map(lambda p, n: p + 0.1 * n, psi, noise)
    return hnet, psi, frozen


def _every_slot(hnet, frozen, ids, mask):
    return lambda p: output_regularizer(hnet, p, task_outputs(hnet, frozen, ids), ids, mask)


def _real_slots(hnet, frozen, ids, mask, chunk=1):
    return lambda p: output_regularizer_real_slots(hnet, p, frozen, ids, mask, chunk=chunk)


_IDS = jnp.array([3, 0, 4, 1, 2], jnp.int32)
_MASKS = [jnp.arange(SLOTS) < r for r in range(SLOTS + 1)] + [  # real slots first, or anywhere
    jnp.array([False, True, False, False, True])]


def _close(a, b, rtol):
    """Every entry of the tree ``a`` within ``rtol`` of ``b``, relative to the largest of ``b``."""
    flat_a, flat_b = ravel_pytree(a)[0], ravel_pytree(b)[0]
    np.testing.assert_allclose(flat_a, flat_b, rtol=rtol, atol=rtol * float(jnp.max(abs(flat_b))))


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_same_value_and_gradient_as_every_slot(chunk, key, x64):
    hnet, psi, frozen = _problem(key)
    for mask in _MASKS:
        want = jax.jit(jax.value_and_grad(_every_slot(hnet, frozen, _IDS, mask)))(psi)
        got = jax.jit(jax.value_and_grad(_real_slots(hnet, frozen, _IDS, mask, chunk)))(psi)
        _close(got, want, 1e-12)
        assert (float(got[0]) > 0) == bool(jnp.any(mask))


def test_float32_to_rounding(key):
    hnet, psi, frozen = _problem(key)
    mask = jnp.arange(SLOTS) < 3
    want = jax.jit(jax.value_and_grad(_every_slot(hnet, frozen, _IDS, mask)))(psi)
    got = jax.jit(jax.value_and_grad(_real_slots(hnet, frozen, _IDS, mask)))(psi)
    _close(got, want, 1e-5)


def test_derivatives_of_every_order(key, x64):
    """Forward mode, forward-over-reverse and reverse-over-reverse Hessian-vector products of the
    loop equal those of the every-slot regulariser, and central differences of its gradient."""
    hnet, psi, frozen = _problem(key)
    mask = jnp.arange(SLOTS) < 3
    every, real = _every_slot(hnet, frozen, _IDS, mask), _real_slots(hnet, frozen, _IDS, mask)
    v = optax.tree.random_like(jax.random.key(1), psi, jax.random.normal)

    @jax.jit
    def derivatives(p):
        jvps = [jax.jvp(f, (p,), (v,))[1] for f in (every, real)]
        fwd_rev = [jax.jvp(jax.grad(f), (p,), (v,))[1] for f in (every, real)]
        rev_rev = [jax.grad(lambda q, f=f: optax.tree.vdot(jax.grad(f)(q), v))(p)
                   for f in (every, real)]
        return jvps, fwd_rev, rev_rev

    (jvp_e, jvp_r), (fr_e, fr_r), (rr_e, rr_r) = derivatives(psi)
    _close(jvp_r, jvp_e, 1e-12)
    _close(fr_r, fr_e, 1e-10)
    _close(rr_r, rr_e, 1e-10)
    eps, grad = 1e-6, jax.jit(jax.grad(real))
    step = lambda s: jax.tree.map(lambda p, d: p + s * eps * d, psi, v)
    differences = jax.tree.map(lambda a, b: (a - b) / (2 * eps), grad(step(1)), grad(step(-1)))
    _close(fr_r, differences, 1e-6)


def test_one_program_for_every_mask(key):
    hnet, psi, frozen = _problem(key)
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda p, f, m: output_regularizer_real_slots(hnet, p, f, _IDS, m)))
    for mask in _MASKS:
        jax.block_until_ready(value_and_grad(psi, frozen, mask))
    assert value_and_grad._cache_size() == 1


def test_padding_is_never_evaluated():
    """The chunks the loop evaluates, recorded by a callback in the slot loss: with one slot a
    chunk only the real slots, with three only the chunk that holds one; value and gradient
    are the masked mean's."""
    params = jnp.arange(3.0)
    ids = jnp.array([0, 1, 2, -1, -1, -1], jnp.int32)
    evaluated = []

    def per_slot(p, i):
        jax.debug.callback(lambda chunk: evaluated.append(tuple(chunk.tolist())), i)
        return p[jnp.maximum(i, 0)] ** 2

    mean = jax.jit(jax.value_and_grad(
        lambda p, m, chunk: masked_slot_mean(per_slot, p, ids, m, chunk=chunk)),
        static_argnums=2)
    value, grad = jax.block_until_ready(mean(params, ids >= 0, 1))
    assert sorted(evaluated) == [(0,), (1,), (2,)]
    assert float(value) == pytest.approx(5 / 3)
    np.testing.assert_allclose(grad, [0.0, 2 / 3, 4 / 3])
    evaluated.clear()
    value, _ = jax.block_until_ready(mean(params, ids >= 0, 3))
    assert evaluated == [(0, 1, 2)] and float(value) == pytest.approx(5 / 3)
    evaluated.clear()
    value, _ = jax.block_until_ready(mean(params, jnp.zeros(6, bool), 1))
    assert evaluated == [] and float(value) == 0.0


def test_the_frozen_copy_is_a_constant(key):
    """Only ``psi`` is differentiated; asking for the frozen copy's gradient is an error."""
    hnet, psi, frozen = _problem(key)
    mask = jnp.arange(SLOTS) < 2
    with pytest.raises(jax.errors.UnexpectedTracerError):
        jax.grad(lambda f: output_regularizer_real_slots(hnet, psi, f, _IDS, mask))(frozen)


def test_bad_chunk_is_named(key):
    hnet, psi, frozen = _problem(key)
    with pytest.raises(ValueError, match="chunk must be an int >= 1, got 0"):
        output_regularizer_real_slots(hnet, psi, frozen, _IDS, _MASKS[2], chunk=0)
