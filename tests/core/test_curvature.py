"""The power-iteration curvature against a dense Hessian, in float64, on a tiny network."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jaxcl.core.curvature import power_iteration, top_curvature, unit
from jaxcl.core.lookahead import lookahead_grad


def _loss_and_params():
    """A two-layer tanh regression: a nonconvex loss whose Hessian has both signs."""
    kx, ky, k1, k2 = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (16, 3))
    y = jax.random.normal(ky, (16, 2))
    params = {"w1": jax.random.normal(k1, (3, 5)), "w2": jax.random.normal(k2, (5, 2))}

    def loss(p):
        return jnp.mean(jnp.square(jnp.tanh(x @ p["w1"]) @ p["w2"] - y))

    return loss, params


def _dense_spectrum(loss, params):
    flat, unravel = ravel_pytree(params)
    hessian = jax.hessian(lambda f: loss(unravel(f)))(flat)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-12)
    values, vectors = np.linalg.eigh(np.asarray(hessian))
    return values, vectors, unravel


def test_power_iteration_finds_the_dense_hessians_largest_eigenvalue(x64):
    loss, params = _loss_and_params()
    values, _, _ = _dense_spectrum(loss, params)
    top = values[np.argmax(np.abs(values))]
    gap = np.sort(np.abs(values))[-2] / np.abs(top)
    assert gap < 0.9  # the iteration converges at rate gap**k: 400 steps reach 1e-12
    start = jax.tree.map(jnp.ones_like, params)
    step = jax.jit(lambda v: top_curvature(loss, params, v, iters=1))  # warm-started, as in training
    estimate = step(start)
    for _ in range(399):
        estimate = step(estimate.vector)
    np.testing.assert_allclose(estimate.value, top, rtol=1e-9)
    # A few products from a poor start are an underestimate, never above the top.
    few = top_curvature(loss, params, start, iters=2)
    assert abs(float(few.value)) <= abs(top) * (1 + 1e-12)


def test_a_warm_start_on_the_top_eigenvector_is_exact_in_one_product(x64):
    loss, params = _loss_and_params()
    values, vectors, unravel = _dense_spectrum(loss, params)
    i = int(np.argmax(np.abs(values)))
    start = unravel(jnp.asarray(3.0 * vectors[:, i]))  # any scale: it is normalised first
    estimate = top_curvature(loss, params, start, iters=1)
    np.testing.assert_allclose(estimate.value, values[i], rtol=1e-10)
    # ...and the next iterate is that eigenvector again, of unit norm, up to its sign.
    flat_next, _ = ravel_pytree(estimate.vector)
    np.testing.assert_allclose(abs(float(flat_next @ vectors[:, i])), 1.0, rtol=1e-10)


def test_the_lookahead_hvp_is_the_task_losss_hessian_product(x64):
    loss, params = _loss_and_params()
    _, vectors, unravel = _dense_spectrum(loss, params)
    flat, _ = ravel_pytree(params)
    hessian = jax.hessian(lambda f: loss(unravel(f)))(flat)
    v = unravel(jnp.asarray(vectors[:, 0] + vectors[:, -1]))
    _, info = lookahead_grad(loss, lambda p: optax.tree.norm(p, squared=True), params,
                             virtual_opt=0.1, order=2, coef=1.0)
    np.testing.assert_allclose(ravel_pytree(info.hvp(v))[0], hessian @ ravel_pytree(v)[0],
                               rtol=1e-10, atol=1e-12)
    _, first = lookahead_grad(loss, lambda p: optax.tree.norm(p, squared=True), params,
                              virtual_opt=0.1, order=1, coef=1.0)
    assert first.hvp is None


def test_power_iteration_refuses_a_non_positive_count():
    with pytest.raises(ValueError, match="iters must be a positive integer, got 0"):
        power_iteration(lambda v: v, {"a": jnp.ones(2)}, 0)


def test_unit_keeps_the_zero_tree_zero():
    zero = unit({"a": jnp.zeros(3)})
    np.testing.assert_array_equal(zero["a"], 0.0)
