"""Look-ahead gradients against finite differences, the closed form, and the Adam square root."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jaxcl.core.hypernet import HypernetConfig, Hypernetwork
from jaxcl.core.lookahead import lookahead_grad, tree_cosine, virtual_adam
from jaxcl.core.regularizers import output_regularizer, task_outputs
from jaxcl.models import MLP

BETA, LAMBDA = 0.3, 0.5


def _problem(key, num_prev=2):
    """A tiny hypernetwork over an MLP target, a batch, and a regulariser against a perturbed copy.

    Returns ``(psi, task_loss, reg_loss)`` in the current default float dtype.
    """
    kx, ky, kp, kf = jax.random.split(key, 4)
    x = jax.random.normal(kx, (12, 3))
    y = jax.random.randint(ky, (12,), 0, 2)
    target = MLP(num_classes=2, hidden=(4,))
    hnet = Hypernetwork.for_target(
        target, x, config=HypernetConfig(num_tasks=4, embedding_dim=3, hidden=(5, 4), chunk_dim=2)
    )
    dtype = jnp.zeros(()).dtype

    @jax.jit
    def setup():
        psi = jax.tree.map(lambda a: a.astype(dtype), hnet.init(kp, 0))
        noise = optax.tree.random_like(kf, psi, jax.random.normal)
        frozen = jax.tree.map(lambda p, n: p + 0.1 * n, psi, noise)
        return psi, task_outputs(hnet, frozen, ids)

    task_id = jnp.int32(num_prev)
    ids = jnp.arange(3, dtype=jnp.int32)
    mask = ids < num_prev
    psi, targets = setup()

    def task_loss(p):
        logits = target.apply({"params": hnet.apply(p, task_id)}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def reg_loss(p):
        return output_regularizer(hnet, p, targets, ids, mask)

    return psi, task_loss, reg_loss


def _total_objective(task_loss, reg_loss, virtual_opt):
    """``J(psi) = L_CE(psi) + lambda L_H(psi + u(grad L_CE(psi)))``, written out independently."""

    def objective(flat, unravel):
        psi = unravel(flat)
        g = jax.grad(task_loss)(psi)
        updates, _ = virtual_opt.update(g, virtual_opt.init(psi), psi)
        return task_loss(psi) + LAMBDA * reg_loss(optax.apply_updates(psi, updates))

    return objective


def _central_differences(f, flat, eps=1e-6):
    f = jax.jit(f)
    basis = np.eye(flat.size)
    return np.array([(f(flat + eps * e) - f(flat - eps * e)) / (2 * eps) for e in basis])


def _lookahead(task_loss, reg_loss, psi, **kwargs):
    """``lookahead_grad`` under ``jax.jit`` (eager Flax dispatch is slow)."""
    return jax.jit(lambda p: lookahead_grad(task_loss, reg_loss, p, **kwargs))(psi)


def _rel_err(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize(
    "virtual_opt", [optax.sgd(BETA), virtual_adam(0.05, eps_root=1e-4)], ids=["sgd", "adam"]
)
def test_order2_matches_finite_differences(x64, key, virtual_opt):
    psi, task_loss, reg_loss = _problem(key)
    flat, unravel = ravel_pytree(psi)
    assert flat.dtype == jnp.float64
    objective = _total_objective(task_loss, reg_loss, virtual_opt)
    fd = _central_differences(lambda f: objective(f, unravel), flat)
    grad, _ = _lookahead(task_loss, reg_loss, psi, virtual_opt=virtual_opt, order=2, coef=LAMBDA)
    assert _rel_err(ravel_pytree(grad)[0], fd) < 1e-6


def test_order2_equals_closed_form_and_order1_drops_the_hessian_term(x64, key):
    psi, task_loss, reg_loss = _problem(key)

    @jax.jit
    def closed_form(psi):
        g1 = jax.grad(task_loss)(psi)
        psi_virtual = jax.tree.map(lambda p, g: p - BETA * g, psi, g1)
        v = jax.grad(reg_loss)(psi_virtual)
        _, hv = jax.jvp(jax.grad(task_loss), (psi,), (v,))  # Hessian-vector product H_CE v
        closed = jax.tree.map(lambda a, b, c: a + LAMBDA * (b - BETA * c), g1, v, hv)
        return g1, psi_virtual, v, hv, closed

    g1, psi_virtual, v, hv, closed = closed_form(psi)

    order2, info2 = _lookahead(task_loss, reg_loss, psi, virtual_opt=BETA, order=2, coef=LAMBDA)
    order1, info1 = _lookahead(task_loss, reg_loss, psi, virtual_opt=BETA, order=1, coef=LAMBDA)
    flat = lambda t: ravel_pytree(t)[0]  # noqa: E731
    np.testing.assert_allclose(flat(order2), flat(closed), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        flat(order2) - flat(order1), -LAMBDA * BETA * flat(hv), rtol=1e-9, atol=1e-12
    )
    assert float(jnp.linalg.norm(flat(hv))) > 1e-6  # the Hessian term is really there
    # The two parts add up to the total and the diagnostics are consistent.
    np.testing.assert_allclose(flat(info2.task_grad), flat(g1), rtol=1e-12)
    np.testing.assert_allclose(flat(info2.task_grad) + flat(info2.reg_grad), flat(order2), rtol=1e-12)
    np.testing.assert_allclose(flat(info1.reg_grad), LAMBDA * flat(v), rtol=1e-10)
    cos = jnp.dot(flat(g1), flat(info2.reg_grad)) / (
        jnp.linalg.norm(flat(g1)) * jnp.linalg.norm(flat(info2.reg_grad))
    )
    np.testing.assert_allclose(info2.cosine, cos, rtol=1e-10)
    np.testing.assert_allclose(info2.reg_loss, jax.jit(reg_loss)(psi_virtual), rtol=1e-12)
    # The Hessian term reported by order 2 is what separates it from order 1.
    np.testing.assert_allclose(flat(info2.hessian_term), -LAMBDA * BETA * flat(hv), rtol=1e-9)
    np.testing.assert_allclose(flat(order2) - flat(info2.hessian_term), flat(order1), rtol=1e-9,
                               atol=1e-12)
    assert info1.hessian_term is None


def test_adam_virtual_step_needs_eps_root(key):
    # Embedding rows of other tasks get exactly zero task gradient: sqrt(v) at v = 0.
    psi, task_loss, reg_loss = _problem(key)
    bad, _ = _lookahead(
        task_loss, reg_loss, psi, virtual_opt=optax.adam(1e-2, eps_root=0.0), order=2, coef=LAMBDA
    )
    good, _ = _lookahead(
        task_loss, reg_loss, psi, virtual_opt=virtual_adam(1e-2), order=2, coef=LAMBDA
    )
    assert not bool(jnp.all(jnp.isfinite(ravel_pytree(bad)[0])))
    assert bool(jnp.all(jnp.isfinite(ravel_pytree(good)[0])))
    with pytest.raises(ValueError, match="eps_root"):
        virtual_adam(1e-2, eps_root=0.0)


def test_aux_and_bad_arguments(key):
    psi, task_loss, reg_loss = _problem(key)
    _, info = _lookahead(
        lambda p: (task_loss(p), 7.0), reg_loss, psi, virtual_opt=BETA, order=1, coef=LAMBDA,
        has_aux=True,
    )
    assert float(info.aux) == 7.0
    with pytest.raises(ValueError, match="order=3"):
        lookahead_grad(task_loss, reg_loss, psi, virtual_opt=BETA, order=3, coef=LAMBDA)
    with pytest.raises(ValueError, match="-0.1"):
        lookahead_grad(task_loss, reg_loss, psi, virtual_opt=-0.1, order=1, coef=LAMBDA)


def test_tree_cosine():
    a = {"u": jnp.array([1.0, 0.0]), "v": jnp.array([2.0])}
    b = {"u": jnp.array([-1.0, 0.0]), "v": jnp.array([-2.0])}
    np.testing.assert_allclose(tree_cosine(a, b), -1.0, rtol=1e-6)
    assert float(tree_cosine(a, jax.tree.map(jnp.zeros_like, b))) == 0.0
