"""The partial-hypernetwork learner: compiles once per phase, freezes phi, trains psi with
look-ahead."""

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support import (
    central_difference,
    f64,
    hand_cross_entropy,
    later_state,
    lookahead_objective,
)

from jaxcl import Batch, HypernetConfig, PartialHypernet
from jaxcl.core.regularizers import previous_tasks
from jaxcl.models import MLP, split_model

NUM_TASKS, MAX_PREV = 6, 3


def _batch(key, shape=(16, 8, 8, 3), classes=3):
    kx, ky = jax.random.split(key)
    return Batch(jax.random.normal(kx, shape), jax.random.randint(ky, (shape[0],), 0, classes))


def _learner(k, order, **kwargs):
    split = split_model("resnet", k, num_classes=3, head=True, nf=4)
    x = jnp.zeros((16, 8, 8, 3))
    learner = PartialHypernet.build(
        split.upper, split.lower, x,
        hnet_config=HypernetConfig(num_tasks=NUM_TASKS, hidden=(12, 8), embedding_dim=6, chunk_dim=4),
        order=order, **({"max_prev_tasks": MAX_PREV} | kwargs),
    )
    return learner, x


def _phase_step(learner):
    """The compiled :meth:`PartialHypernet.phase_step` (``first`` static; everything else traced)."""
    return jax.jit(learner.phase_step, static_argnames=("first",))


def _end(learner, state, t=0):
    return learner.end_experience(state, None, jnp.int32(t), jax.random.key(0))


@pytest.mark.parametrize("k, order", [(4, 2), (3, 1), (3, "none")])
def test_step_compiles_once_per_phase_for_a_whole_run(k, order, key):
    learner, x = _learner(k, order)
    state = learner.init(key, x)
    step = jax.jit(learner.train_step, static_argnames=("first",))
    for t in range(5):  # train five tasks in sequence, two steps each
        for i in range(2):
            k_batch, k_prev = jax.random.split(jax.random.fold_in(key, 100 * t + i))
            state, metrics = step(state, _batch(k_batch), jnp.int32(t), k_prev, first=(t == 0))
        state = _end(learner, state, t)
    # Five tasks, two phases: the first experience and every later one share two programs.
    assert step._cache_size() == 2
    assert set(metrics) == set(learner.step_metrics)
    assert all(bool(jnp.isfinite(v)) for v in metrics.values())
    assert float(metrics["cosine"]) != 0  # the regulariser pulls


def _count_primitive(jaxpr, name):
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == name
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            count += _count_primitive(sub, name)
    return count


def test_no_gradient_flows_through_the_frozen_part(key):
    # k = 4: g_phi holds every conv (20 of them), h_omega only the classifier.
    learner, x = _learner(4, 2)
    state = learner.init(key, x)

    def convs(first):
        # In the lowered program: the jaxpr of the default convolution (a custom_jvp) keeps a
        # dead copy of the stem's forward pass, which lowering drops.
        step = jax.jit(lambda s, b: learner.train_step(s, b, jnp.int32(2), key, first=first))
        return step.lower(state, _batch(key)).as_text().count("stablehlo.convolution")

    # phi trained: 20 forward, 20 kernel-gradient and 19 input-gradient convs (the images need none).
    assert convs(True) == 59
    assert convs(False) == 20  # forward only: g_phi(x) is a constant of the step


def _loops(jaxpr):
    """The bodies of every ``scan`` in ``jaxpr``, nested ones too."""
    bodies = []
    for eqn in jaxpr.eqns:
        subs = list(jax.extend.core.jaxprs_in_params(eqn.params))
        if eqn.primitive.name == "scan":
            bodies += subs
        for sub in subs:
            bodies += _loops(sub)
    return bodies


def test_the_regulariser_loop_holds_no_convolution(key):
    """HN-F (k = 0): the hypernetwork generates every conv, yet only its evaluations sit in the
    loop over previous-task slots; the convolutions stay outside any XLA loop (on XLA CPU a
    convolution's gradient inside one is 20-45x slower, jax-ml/jax issue 12868)."""
    learner, x = _learner(0, 2)
    state = learner.init(key, x)

    def jaxpr(chunk):
        variant = dataclasses.replace(learner, prev_chunk=chunk)
        later = lambda s, b: variant.train_step(s, b, jnp.int32(2), key, first=False)
        return jax.make_jaxpr(later)(state, _batch(key)).jaxpr

    chunked = jaxpr(1)
    loops = _loops(chunked)
    assert loops and all(_count_primitive(body, "conv_general_dilated") == 0 for body in loops)
    convs = _count_primitive(chunked, "conv_general_dilated")
    assert convs > 0 and convs == _count_primitive(jaxpr(None), "conv_general_dilated")
    assert not _loops(jaxpr(None))  # every slot at once: the program before, no loop


def test_real_slots_step_equals_every_slot_step(key):
    """The loop over real previous tasks against every slot at once, float32, for 1 to
    ``MAX_PREV`` real previous tasks: the same update (``-grad`` with SGD(1)) and metrics to
    rounding, from one program each."""
    learners = [_learner(4, 2, optimizer=optax.sgd(1.0), prev_chunk=c)[0] for c in (None, 1)]
    _, x = _learner(4, 2)
    state = _end(learners[0], learners[0].init(key, x))
    state = state._replace(psi_prev=jax.tree.map(lambda p: p + 0.01, state.psi))
    steps = [_phase_step(learner) for learner in learners]
    batch = _batch(key)
    for t in range(1, NUM_TASKS):
        ids, mask = previous_tasks(jnp.int32(t), NUM_TASKS, MAX_PREV, jax.random.key(t))
        (every, m_every), (real, m_real) = (
            step(state, batch, jnp.int32(t), ids, mask, first=False) for step in steps)
        g_every, g_real = (optax.tree.sub(state.psi, s.psi) for s in (every, real))
        assert float(optax.tree.norm(optax.tree.sub(g_real, g_every))) <= (
            1e-5 * float(optax.tree.norm(g_every)))
        for name in m_every:
            np.testing.assert_allclose(m_real[name], m_every[name], rtol=1e-5, atol=1e-7)
    assert [step._cache_size() for step in steps] == [1, 1]


def test_phases(key):
    learner, x = _learner(4, 2)
    step = _phase_step(learner)
    state = learner.init(key, x)
    ids, mask = previous_tasks(jnp.int32(0), NUM_TASKS, MAX_PREV, key)
    first, _ = step(state, _batch(key), jnp.int32(0), ids, mask, first=True)
    changed = lambda a, b: any(  # noqa: E731
        bool(jnp.any(u != v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )
    assert changed(first.phi, state.phi) and changed(first.psi, state.psi)
    frozen = _end(learner, first)
    ids, mask = previous_tasks(jnp.int32(1), NUM_TASKS, MAX_PREV, key)
    later, metrics = step(frozen, _batch(key), jnp.int32(1), ids, mask, first=False)
    assert not changed(later.phi, frozen.phi)
    assert not changed(later.opt_state["phi"], frozen.opt_state["phi"])
    assert not changed(later.psi_prev, frozen.psi_prev)
    assert changed(later.psi, frozen.psi)
    # psi' = psi - beta g1 moves the shared trunk, so earlier tasks' outputs move already.
    assert float(metrics["reg_loss"]) > 0.0


def _tree_vdot(a, b):
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _norm(tree):
    return jnp.sqrt(_tree_vdot(tree, tree))


def _by_hand(learner, frozen, previous, task, *, beta=1e-3, coef=0.5):
    """``J(psi) = L_CE(psi) + coef L_H(psi - beta grad L_CE(psi))`` written out, differentiated by
    ``jax.grad`` (reverse over reverse). ``L_H`` is the mean over ``previous`` (Python ints) of
    the squared distance of the task-specific outputs to those of ``frozen``. Returns a compiled
    ``(psi, features, y) -> (grad J, grad L_CE, first-order grad, L_CE, L_H(psi'))``."""

    def ce(p, features, y):
        omega = learner.hnet.apply(p, task)
        return hand_cross_entropy(learner.upper.apply({"params": omega}, features), y)

    def lh(p):
        def dist(j):
            return sum(jnp.sum((a - b) ** 2) for a, b in zip(
                jax.tree.leaves(learner.hnet.apply(p, j, task_only=True)),
                jax.tree.leaves(learner.hnet.apply(frozen, j, task_only=True))))
        return sum(dist(j) for j in previous) / len(previous)

    def virtual(p, features, y):
        return jax.tree.map(lambda a, g: a - beta * g, p, jax.grad(ce)(p, features, y))

    @jax.jit
    def grads(p, features, y):
        g = jax.grad(lambda q: ce(q, features, y) + coef * lh(virtual(q, features, y)))(p)
        g1 = jax.grad(ce)(p, features, y)
        psi_virtual = virtual(p, features, y)
        first_order = jax.tree.map(lambda a, b: a + coef * b, g1, jax.grad(lh)(psi_virtual))
        return g, g1, first_order, ce(p, features, y), lh(psi_virtual)

    return grads


# Tasks 0 and 1 are previous; the third entry is padding that the mask must drop.
_IDS, _MASK = jnp.array([0, 1, 5], jnp.int32), jnp.array([True, True, False])


def test_lookahead_step_by_hand(key, x64):
    """The order-2 step of HN-4 (the head generated over the frozen ResNet; generated
    convolutions against finite differences: ``tests/core/test_nnx_target.py``) in float64: with
    an outer SGD step of rate 1 its update is ``-grad J`` itself, and its metrics are the losses,
    cosine and norms of the hand gradients."""
    learner, x = _learner(4, 2, optimizer=optax.sgd(1.0))
    start = learner.init(key, x)
    frozen, phi = f64(start.psi), f64(start.phi)
    psi = jax.tree.map(lambda p: p + 0.01, frozen)
    state = start._replace(psi=psi, phi=phi, psi_prev=frozen,
                           opt_state={"psi": learner.optimizer.init(psi),
                                      "phi": learner.optimizer.init(phi)})
    batch, task = _batch(key), jnp.int32(2)
    new, metrics = jax.jit(
        lambda s: learner.phase_step(s, batch, task, _IDS, _MASK, first=False))(state)

    features = learner.lower.apply(phi, batch.x)
    g, g1, first_order, loss, reg = _by_hand(learner, frozen, (0, 1), task)(psi, features, batch.y)
    assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(new.psi))
    jax.tree.map(lambda a, b, d: np.testing.assert_allclose(a, b - d, rtol=1e-9, atol=1e-12),
                 new.psi, psi, g)
    g2 = jax.tree.map(lambda a, b: a - b, g, g1)
    hessian = jax.tree.map(lambda a, b: a - b, g, first_order)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-10)
    np.testing.assert_allclose(metrics["reg_loss"], reg, rtol=1e-10)
    assert float(reg) > 0
    np.testing.assert_allclose(metrics["cosine"], _tree_vdot(g1, g2) / (_norm(g1) * _norm(g2)),
                               rtol=1e-8)
    np.testing.assert_allclose(metrics["grad_norm"], _norm(g), rtol=1e-10)
    np.testing.assert_allclose(metrics["grad_rel_diff"], _norm(hessian) / _norm(first_order),
                               rtol=1e-6)
    assert float(metrics["grad_rel_diff"]) > 0
    # the paper's Figure 12: the cosine of the order-2 and order-1 gradients at the same psi
    np.testing.assert_allclose(metrics["order_cosine"], _tree_vdot(g, first_order) / (
        _norm(g) * _norm(first_order)), rtol=1e-9)
    assert 0 < float(metrics["order_cosine"]) < 1


def test_default_optimizer_is_adam_written_out(key, x64):
    """Two look-ahead steps with the default optimizer against Adam(1e-3) written out
    (``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, bias-corrected, ``eps = 1e-8``); the
    second step weighs the two gradients against each other, so their sizes matter, not only
    their signs. An MLP target keeps it cheap."""
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    x = jnp.zeros((8, 5))
    config = HypernetConfig(num_tasks=6, hidden=(12, 8), embedding_dim=6, chunk_dim=4)
    learner = PartialHypernet.build(MLP(2, (6,)), None, x, hnet_config=config, order=2, coef=0.5)
    state, frozen, psi = later_state(learner, key, x)
    task = jnp.int32(2)
    grads = _by_hand(learner, frozen, (0, 1), task)
    step = _phase_step(learner)
    m = v = jax.tree.map(jnp.zeros_like, psi)
    expected = psi
    for count, k in enumerate(jax.random.split(key, 2), start=1):
        batch = Batch(jax.random.normal(k, (8, 5)), jnp.arange(8) % 2)
        state, _ = step(state, batch, task, _IDS, _MASK, first=False)
        g = grads(expected, batch.x, batch.y)[0]
        m = jax.tree.map(lambda a, d: b1 * a + (1 - b1) * d, m, g)
        v = jax.tree.map(lambda a, d: b2 * a + (1 - b2) * d**2, v, g)
        expected = jax.tree.map(
            lambda p, mi, vi: p - lr * (mi / (1 - b1**count))
            / (jnp.sqrt(vi / (1 - b2**count)) + eps), expected, m, v)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12),
                     state.psi, expected)


def test_order2_step_against_finite_differences(key, x64):
    """The order-2 step with the loop over real previous tasks (3 real of 4 slots, forward-over-
    reverse Hessian term) in float64: with SGD(1) its update is ``-grad J``, and ``<grad J, v>``
    equals central differences of ``J(psi) = L_CE(psi) + lambda L_H(psi - beta grad L_CE(psi))``
    (written out over every slot) along random ``v``; the order-1 gradient does not."""
    x = jnp.zeros((8, 5))
    config = HypernetConfig(num_tasks=6, hidden=(12, 8), embedding_dim=6, chunk_dim=4)
    beta, coef = 0.5, 0.5  # a large virtual step, so that the Hessian term is far above rounding
    learner, order1 = (
        PartialHypernet.build(MLP(2, (6,)), None, x, hnet_config=config, order=order, coef=coef,
                              learning_rate=beta, optimizer=optax.sgd(1.0), max_prev_tasks=4)
        for order in (2, 1))
    state, frozen, psi = later_state(learner, key, x)
    batch, task = Batch(jax.random.normal(key, (8, 5)), jnp.arange(8) % 2), jnp.int32(3)
    ids, mask = previous_tasks(task, 6, 4, jax.random.key(3))
    assert int(mask.sum()) == 3
    grad, grad1 = (
        optax.tree.sub(psi, _phase_step(one)(state, batch, task, ids, mask, first=False)[0].psi)
        for one in (learner, order1))
    objective = lookahead_objective(learner, frozen, batch.x, batch.y, task, ids, mask,
                                    beta=beta, coef=coef)
    for v in (optax.tree.random_like(jax.random.key(i), psi, jax.random.normal) for i in range(3)):
        differences = float(central_difference(objective, psi, v))
        assert float(optax.tree.vdot(grad, v)) == pytest.approx(differences, rel=1e-7)
        assert float(optax.tree.vdot(grad1, v)) != pytest.approx(differences, rel=1e-4)


def test_mlp_target_without_lower_part(key):
    x = jnp.zeros((8, 5))
    learner = PartialHypernet.build(
        MLP(2, (6,)), None, x, hnet_config=HypernetConfig(num_tasks=3), order=1, coef=1.0
    )
    state = learner.init(key, x)
    assert state.phi == {}
    batch = Batch(jax.random.normal(key, (8, 5)), jnp.arange(8) % 2)
    ids, mask = previous_tasks(jnp.int32(1), 3, 2, key)
    new, metrics = _phase_step(learner)(state, batch, jnp.int32(1), ids, mask, first=False)
    assert set(metrics) == {"loss", "accuracy", "reg_loss", "cosine", "grad_norm", "grad_rel_diff",
                            "reg_share", "embedding_shift", "table_shift", "order_cosine"}
    assert float(metrics["grad_rel_diff"]) == 0.0  # order 1 has no Hessian term
    assert float(metrics["order_cosine"]) == 0.0


def test_without_lookahead_regularises_psi_itself(key, x64):
    """Order ``"none"``: the gradient of ``L_CE(psi) + coef L_H(psi)``, no virtual step."""
    x = jnp.zeros((8, 5))
    config = HypernetConfig(num_tasks=6, hidden=(12, 8), embedding_dim=6, chunk_dim=4)
    learner = PartialHypernet.build(MLP(2, (6,)), None, x, hnet_config=config, order="none",
                                    coef=0.5, optimizer=optax.sgd(1.0))
    state, frozen, psi = later_state(learner, key, x)
    batch, task = Batch(jax.random.normal(key, (8, 5)), jnp.arange(8) % 2), jnp.int32(2)
    new, metrics = _phase_step(learner)(state, batch, task, _IDS, _MASK, first=False)
    g = _by_hand(learner, frozen, (0, 1), task, beta=0.0)(psi, batch.x, batch.y)[0]
    jax.tree.map(lambda a, b, d: np.testing.assert_allclose(a, b - d, rtol=1e-9, atol=1e-12),
                 new.psi, psi, g)
    assert float(metrics["grad_rel_diff"]) == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [({"coef": -1.0}, "-1.0"), ({"learning_rate": 0.0}, "learning_rate"),
     ({"max_prev_tasks": 0}, "max_prev_tasks"), ({"prev_chunk": 0}, "prev_chunk")],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _learner(2, **({"order": 2} | kwargs))


def test_an_order_is_checked_when_the_learner_is_built(key):
    """One vocabulary (:data:`jaxcl.core.lookahead.ORDERS`): an order outside it is named when
    the learner is built, before anything is traced or compiled; ``True`` is not order 1."""
    for bad in (3, True, "2"):
        with pytest.raises(ValueError, match=f"order={bad!r} is not one of"):
            _learner(2, bad)


def test_auto_prev_chunk_loops_only_over_a_large_generated_part(key, monkeypatch):
    """``prev_chunk="auto"`` (the default of ``build``): every slot at once below
    ``LOOP_SLOTS_FROM`` generated floats a task, the loop over real slots from it on; the
    every-slot program drops the slots no task can fill (``NUM_TASKS - 1`` are enough) and gives
    the loop's numbers (``test_real_slots_step_equals_every_slot_step``)."""
    from jaxcl.core import regularizers as hn

    small, x = _learner(4, 1, max_prev_tasks=20)
    assert small.prev_chunk is None and hn.generated_floats(small.hnet) < hn.LOOP_SLOTS_FROM
    monkeypatch.setattr(hn, "LOOP_SLOTS_FROM", hn.generated_floats(small.hnet))
    assert _learner(4, 1, max_prev_tasks=20)[0].prev_chunk == 1
    state = _end(small, small.init(key, x))
    jaxpr = jax.make_jaxpr(lambda s: small.train_step(s, _batch(key), jnp.int32(2), key,
                                                      first=False))(state)
    assert not _loops(jaxpr.jaxpr)
    # 20 slots drawn, the hypernetwork run on the NUM_TASKS - 1 = 5 that a task can fill
    assert "bool[20]" in str(jaxpr) and "i32[5]" in str(jaxpr) and "i32[20," not in str(jaxpr)
    state = state._replace(psi_prev=jax.tree.map(lambda p: p + 0.01, state.psi))
    looped = dataclasses.replace(small, prev_chunk=1)
    for t in (5,):  # every fillable slot real: all five of the every-slot program's
        (a, ma), (b, mb) = (lrn.train_step(state, _batch(key), jnp.int32(t), key, first=False)
                            for lrn in (small, looped))
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6),
                     a.psi, b.psi)
        plain, _ = dataclasses.replace(small, coef=0.0).train_step(
            state, _batch(key), jnp.int32(t), key, first=False)
        assert optax.tree.norm(optax.tree.sub(a.psi, plain.psi)) > 1e-6  # the regulariser acts
