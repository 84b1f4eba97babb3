"""The Hypernet-SDE-Flow parts: the coupling flow (invertible, exact log-det), the NLL (the
paper's ``-log p(x)`` against a dense Jacobian of the whole ``x -> u`` map, and what shrinking the
latent does to it), the collapse metrics, the SDE solve (zero diffusion is the ODE;
Ornstein-Uhlenbeck moments), the point benchmark."""

import dataclasses

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.data import points
from jaxcl.models import sde_flow as sf

# Eager diffrax and distrax dispatch op by op: compiled, each test runs in about a second.
reconstruct = jax.jit(sf.reconstruct, static_argnums=0, static_argnames=("adjoint", "per_example"))
flow_nll = jax.jit(sf.flow_nll, static_argnums=(0, 3))
solve_sde = jax.jit(sf.solve_sde, static_argnums=(0, 1),
                    static_argnames=("horizon", "steps", "solver", "adjoint", "brownian"))


def _forward_and_log_det(cfg, params, z):
    return sf.coupling_flow(cfg, params).forward_and_log_det(z)


def _perturbed(params, key, scale=0.5):
    """Random parameters everywhere (the flow's zero-initialised last layers would make it the
    identity, which proves nothing)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape, x.dtype)
                                     for x, k in zip(leaves, keys)])


@pytest.mark.parametrize("latent_dim,layers", [(2, 1), (3, 4), (4, 3)])
def test_flow_round_trip_and_log_det_against_jacobian(latent_dim, layers, key, x64):
    cfg = sf.SdeFlowConfig(latent_dim=latent_dim, flow_layers=layers, nll="flow_only")
    params = _perturbed(jax.tree.map(lambda a: a.astype(jnp.float64),
                                     sf.init_params(cfg, key)["flow"]), jax.random.key(1))
    z = jax.random.normal(jax.random.key(2), (16, latent_dim), jnp.float64)

    @jax.jit
    def check(params, z):
        flow = sf.coupling_flow(cfg, params)
        u, log_det = flow.forward_and_log_det(z)
        jac = jax.vmap(jax.jacfwd(flow.forward))(z)
        return u, log_det, flow.inverse(u), jnp.linalg.slogdet(jac)[1]

    u, log_det, back, jac_log_det = check(params, z)
    assert float(jnp.abs(u - z).max()) > 1e-2  # the flow is not the identity here
    np.testing.assert_allclose(back, z, atol=1e-10)
    np.testing.assert_allclose(log_det, jac_log_det, atol=1e-10)
    # The NLL is -log N(u; 0, I) - log|det J|, row by row.
    base = -0.5 * jnp.sum(u**2, -1) - 0.5 * latent_dim * jnp.log(2 * jnp.pi)
    np.testing.assert_allclose(flow_nll(cfg, params, z), -(base + log_det), atol=1e-10)


def test_flow_round_trip_float32(key):
    cfg = sf.SdeFlowConfig()
    params = _perturbed(sf.init_params(cfg, key)["flow"], key, scale=0.1)
    z = jax.random.normal(key, (64, cfg.latent_dim))

    @jax.jit
    def round_trip(params, z):
        flow = sf.coupling_flow(cfg, params)
        u = flow.forward(z)
        return u, flow.inverse(u)

    u, back = round_trip(params, z)
    assert float(jnp.abs(u - z).max()) > 1e-2
    np.testing.assert_allclose(back, z, atol=1e-5)


def test_flow_starts_as_identity_and_bounds_log_scales(key):
    cfg = sf.SdeFlowConfig(max_log_scale=0.5)
    params = sf.init_params(cfg, key)["flow"]
    z = jax.random.normal(key, (8, cfg.latent_dim))
    forward = jax.jit(_forward_and_log_det, static_argnums=0)
    u, log_det = forward(cfg, params, z)
    np.testing.assert_array_equal(u, z)
    np.testing.assert_array_equal(log_det, 0.0)
    wild = jax.tree.map(lambda a: 100.0 * jnp.ones_like(a), params)
    _, log_det = forward(cfg, wild, z)
    # Each layer changes at most ceil(d/2) coordinates by at most s_max in log-scale.
    assert float(jnp.abs(log_det).max()) <= cfg.flow_layers * 2 * 0.5 + 1e-5


def test_flow_per_example_parameters_match_one_by_one(key):
    cfg = sf.SdeFlowConfig()
    p0 = _perturbed(sf.init_params(cfg, key)["flow"], jax.random.key(1))
    p1 = _perturbed(p0, jax.random.key(2))
    z = jax.random.normal(key, (4, cfg.latent_dim))
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b, a, b]), p0, p1)
    mixed = flow_nll(cfg, stacked, z, True)
    one = jnp.array([flow_nll(cfg, p, z[i:i + 1])[0] for i, p in enumerate([p0, p1, p0, p1])])
    np.testing.assert_allclose(mixed, one, rtol=1e-5)


def _nll_setup(latent, scale=0.5):
    """A small model in float64 with random encoder and flow (not the identity), and points."""
    cfg = sf.SdeFlowConfig(latent_dim=latent, hidden=(8,), flow_layers=2, flow_hidden=(8,))
    params = jax.tree.map(lambda a: a.astype(jnp.float64), sf.init_params(cfg, jax.random.key(0)))
    params = _perturbed({k: params[k] for k in ("encoder", "flow")}, jax.random.key(1), scale)
    return cfg, params, jax.random.normal(jax.random.key(2), (6, 3), jnp.float64)


def _log_volume(jac):
    """log|det J| of a square ``J``, ``0.5 log det(J J^T)`` of a wide one, row by row."""
    if jac.shape[-1] == jac.shape[-2]:
        return jnp.linalg.slogdet(jac)[1]
    return 0.5 * jnp.linalg.slogdet(jac @ jnp.swapaxes(jac, -1, -2))[1]


@pytest.mark.parametrize("latent", [3, 2])
def test_paper_nll_is_minus_log_px_through_a_dense_jacobian_of_x_to_u(latent, x64):
    """``-log p(x) = -log N(u; 0, I) - log vol(du/dx)`` with the Jacobian of the whole map
    ``x -> u = F(Enc(x))`` from ``jax.jacfwd`` (``latent x 3``; square for latent 3, the volume
    ``0.5 log det(J J^T)`` below); the flow-only NLL is the same without the encoder's volume."""
    cfg, params, x = _nll_setup(latent)
    flow_only = dataclasses.replace(cfg, nll="flow_only")

    @jax.jit
    def check(params, x):
        flow = sf.coupling_flow(cfg, params["flow"])

        def to_u(xi):
            return flow.forward(sf.encode(cfg, params, xi[None]))[0]

        u, jac = jax.vmap(to_u)(x), jax.vmap(jax.jacfwd(to_u))(x)
        enc_jac = jax.vmap(jax.jacfwd(lambda xi: sf.encode(cfg, params, xi[None])[0]))(x)
        expected = (0.5 * jnp.sum(u**2, -1) + 0.5 * latent * jnp.log(2 * jnp.pi)
                    - _log_volume(jac))
        z0 = sf.encode(cfg, params, x)
        return (expected, _log_volume(enc_jac), sf.negative_log_likelihood(cfg, params, x, z0),
                sf.negative_log_likelihood(flow_only, params, x, z0)[0], jac)

    expected, enc_volume, (nll, log_vol), nll_flow_only, jac = check(params, x)
    assert jac.shape == (6, latent, 3)
    np.testing.assert_allclose(nll, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(log_vol, enc_volume, rtol=0, atol=1e-10)
    np.testing.assert_allclose(nll_flow_only, expected + enc_volume, rtol=0, atol=1e-10)
    assert float(jnp.abs(enc_volume).min()) > 0.1  # the encoder's term is not a rounding


def _shrunk(params, c):
    """The encoder with its last layer times ``c``: ``z0 -> c z0`` exactly."""
    last = max(params["encoder"])
    return {**params, "encoder": {**params["encoder"], last: jax.tree.map(
        lambda a: c * a, params["encoder"][last])}}


@pytest.mark.parametrize("latent", [3, 2])
def test_paper_nll_penalises_a_shrinking_latent_where_flow_only_rewards_it(latent, x64):
    """The collapse of issue 19: scaling ``z0`` by ``c -> 0`` lowers the flow-only NLL (here with
    the flow as it starts, the identity) but raises the paper's by ``-latent log c``, so the
    paper's NLL does not decrease without bound."""
    cfg, params, x = _nll_setup(latent)
    params = {**params, "flow": sf.init_params(cfg, jax.random.key(3))["flow"]}
    flow_only = dataclasses.replace(cfg, nll="flow_only")
    scales = (1.0, 0.3, 0.1, 0.01, 1e-4)

    @jax.jit
    def both(params):
        z0 = sf.encode(cfg, params, x)
        return (sf.negative_log_likelihood(cfg, params, x, z0)[0],
                sf.negative_log_likelihood(flow_only, params, x, z0)[0])

    paper, flow = zip(*(both(_shrunk(params, c)) for c in scales))
    means = np.array([[float(jnp.mean(p)), float(jnp.mean(f))] for p, f in zip(paper, flow)])
    assert np.all(np.diff(means[:, 0]) > 0), means  # paper: shrinking costs
    assert np.all(np.diff(means[:, 1]) < 0), means  # flow only: shrinking pays
    for c, p, f in zip(scales, paper, flow):  # the difference is the volume, exactly
        np.testing.assert_allclose(p - f, paper[0] - flow[0] - latent * np.log(c), atol=1e-8)


def _plane_setup():
    """A known manifold, the plane ``x_3 = 0`` in R^3, points on it, and a latent-2 model in
    float64 with random encoder, decoder and flow."""
    cfg = sf.SdeFlowConfig(latent_dim=2, hidden=(8,), flow_layers=2, flow_hidden=(8,),
                           nll="rectangular")
    params = jax.tree.map(lambda a: a.astype(jnp.float64), sf.init_params(cfg, jax.random.key(0)))
    params = _perturbed({k: params[k] for k in ("encoder", "decoder", "flow")},
                        jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (6, 3), jnp.float64).at[:, 2].set(0.0)
    return cfg, params, x


def test_the_rectangular_nll_is_the_decoders_volume_at_the_encoders_latent(x64):
    """``NLL = -log N(u; 0, I) - log|det du/dz0| + 0.5 log det(G^T G)``, ``G = dDec/dz`` at
    ``z0 = Enc(x)``, the volume checked against the sum of ``G``'s log singular values (an
    independent formula), the flow's part against the flow-only NLL."""
    cfg, params, x = _plane_setup()
    flow_only = dataclasses.replace(cfg, nll="flow_only")

    @jax.jit
    def check(params, x):
        z0 = sf.encode(cfg, params, x)
        gram = jax.vmap(jax.jacfwd(lambda z: sf.decode(cfg, params, z[None])[0]))(z0)
        volume = jnp.sum(jnp.log(jnp.linalg.svd(gram, compute_uv=False)), axis=-1)
        return (sf.negative_log_likelihood(cfg, params, x, z0),
                sf.negative_log_likelihood(flow_only, params, x, z0)[0], volume)

    (nll, log_vol), flow, volume = check(params, x)
    np.testing.assert_allclose(log_vol, -volume, rtol=0, atol=1e-10)
    np.testing.assert_allclose(nll, flow + volume, rtol=0, atol=1e-10)
    assert float(jnp.abs(volume).min()) > 0.01  # the decoder's term is not a rounding


def test_only_the_rectangular_nll_ignores_steepness_off_the_data_manifold(x64):
    """The encoder made 10x steeper across the plane (its first layer's weights on ``x_3``):
    every point on the plane encodes as before, so every reconstruction is the same. The
    rectangular NLL does not move; the paper's encoder heuristic (``0.5 log det(J J^T)`` below
    the data's size) drops by more than one nat a point: a loss with it can be lowered where no
    data lie."""
    cfg, params, x = _plane_setup()
    first = params["encoder"]["dense_0"]
    steep = {**params, "encoder": {**params["encoder"], "dense_0": {
        **first, "kernel": first["kernel"].at[2].multiply(10.0)}}}
    nll = jax.jit(sf.negative_log_likelihood, static_argnums=0)
    np.testing.assert_array_equal(sf.encode(cfg, steep, x), sf.encode(cfg, params, x))
    for kind in ("rectangular", "paper"):
        c = dataclasses.replace(cfg, nll=kind)
        before = nll(c, params, x, sf.encode(c, params, x))[0]
        after = nll(c, steep, x, sf.encode(c, steep, x))[0]
        if kind == "rectangular":
            np.testing.assert_allclose(after, before, rtol=0, atol=1e-12)
        else:
            assert float(jnp.mean(before - after)) > 1.0, (before, after)


def test_encoder_log_volume_gradient_and_hessian_vector_product_match_differences(x64):
    """The encoder's log volume is differentiable as the look-ahead needs it: its gradient
    (reverse) and its Hessian-vector product (forward over reverse, order 2) against central
    differences, float64; per-example encoders give each row its own."""
    cfg, params, x = _nll_setup(3, scale=0.3)
    enc = params["encoder"]
    f = jax.jit(lambda p: jnp.mean(sf.encoder_log_volume(cfg, p, x)))
    grad = jax.jit(jax.grad(f))
    leaves, tree = jax.tree.flatten(enc)
    v = jax.tree.unflatten(tree, [jax.random.normal(k, a.shape, a.dtype) for a, k in
                                  zip(leaves, jax.random.split(jax.random.key(4), len(leaves)))])
    eps = 1e-5
    shift = lambda s: jax.tree.map(lambda a, b: a + s * b, enc, v)
    dot = lambda a, b: sum(float(jnp.vdot(u, w)) for u, w in zip(jax.tree.leaves(a),
                                                                  jax.tree.leaves(b)))
    np.testing.assert_allclose(dot(grad(enc), v), (f(shift(eps)) - f(shift(-eps))) / (2 * eps),
                               rtol=1e-6)
    hvp = jax.jit(lambda p: jax.jvp(jax.grad(f), (p,), (v,))[1])(enc)
    fd = jax.tree.map(lambda a, b: (a - b) / (2 * eps), grad(shift(eps)), grad(shift(-eps)))
    for a, b in zip(jax.tree.leaves(hvp), jax.tree.leaves(fd)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(hvp)) > 1e-2
    other = _perturbed(enc, jax.random.key(5), 0.3)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b, a, b, b, a]), enc, other)
    mixed = jax.jit(lambda p: sf.encoder_log_volume(cfg, p, x, per_example=True))(stacked)
    volumes = jax.jit(lambda p: sf.encoder_log_volume(cfg, p, x))
    one = [volumes(p)[i] for i, p in enumerate([enc, other, enc, other, other, enc])]
    np.testing.assert_allclose(mixed, one, rtol=1e-12)


def test_collapse_metrics_measure_the_latent_the_diffusion_and_the_decoder(key):
    """``z0_std`` is z0's spread; ``decoder_gain`` the largest singular value of a dense
    ``jacfwd``; ``sigma`` the diffusion, ``diffusion_scale`` where its networks saturate high and
    0 where they saturate low."""
    cfg = sf.SdeFlowConfig()  # the shapes of test_same_key_same_path: its compiled solve
    params = _perturbed(sf.init_params(cfg, key), jax.random.key(1), 0.3)
    x = jax.random.normal(key, (8, 3))
    rec = reconstruct(cfg, params, x, jax.random.key(1))
    metrics = jax.jit(sf.collapse_metrics, static_argnums=0)
    m = metrics(cfg, params, rec)
    np.testing.assert_allclose(m["z0_std"], jnp.mean(jnp.std(rec.z0, axis=0)), rtol=1e-6)
    jac = jax.vmap(jax.jacfwd(lambda y: sf.decode(cfg, params, y[None])[0]))(rec.y0)
    np.testing.assert_allclose(m["decoder_gain"], np.mean(np.linalg.norm(jac, ord=2, axis=(1, 2))),
                               rtol=1e-5)
    assert 0 < float(m["sigma"]) < cfg.diffusion_scale

    def saturated(bias):
        out = {**params}
        for sde in ("sde", "back_sde"):
            last = max(params[sde]["diffusion"])
            layer = {**params[sde]["diffusion"][last], "bias": jnp.full((3,), bias)}
            out[sde] = {**params[sde], "diffusion": {**params[sde]["diffusion"], last: layer}}
        return float(metrics(cfg, out, rec)["sigma"])

    assert saturated(1e4) == pytest.approx(cfg.diffusion_scale, rel=1e-5)
    assert saturated(-1e4) == pytest.approx(0.0, abs=1e-12)


def _drift(t, y, args):
    return -args["theta"] * y + jnp.sin(t)


@pytest.mark.parametrize("solver", sorted(sf.SDE_SOLVERS))
@pytest.mark.parametrize("brownian", sf.BROWNIAN_PATHS)
@pytest.mark.parametrize("steps", [16, 11])  # 11: the stepped loop unrolls 8, then 3 more
def test_zero_diffusion_is_the_ode(solver, brownian, steps, key):
    y0 = jax.random.normal(key, (5, 3))
    args = {"theta": 0.7}
    zero = lambda t, y, a: jnp.zeros_like(y)
    sde = solve_sde(_drift, zero, y0, key, args=args, horizon=2.0, steps=steps, solver=solver,
                       brownian=brownian)
    ode = diffrax.diffeqsolve(diffrax.ODETerm(_drift), sf.SDE_SOLVERS[solver](), 0.0, 2.0,
                              2.0 / steps, y0, args=args).ys[-1]
    np.testing.assert_allclose(sde, ode, rtol=1e-6, atol=1e-6)
    # ...and a non-zero diffusion does change it.
    noisy = solve_sde(_drift, lambda t, y, a: 0.3 * jnp.ones_like(y), y0, key, args=args,
                         horizon=2.0, steps=steps, solver=solver, brownian=brownian)
    assert float(jnp.abs(noisy - ode).max()) > 1e-2


@pytest.mark.parametrize("solver", sorted(sf.SDE_SOLVERS))
@pytest.mark.parametrize("brownian", sf.BROWNIAN_PATHS)
def test_ornstein_uhlenbeck_moments(solver, brownian, key):
    """dY = -theta Y dt + sigma dW: Y_T ~ N(y0 e^{-theta T}, sigma^2 (1 - e^{-2 theta T}) / 2theta)."""
    theta, sigma, horizon, y0, n = 1.0, 0.5, 1.0, 1.0, 20_000
    ys = solve_sde(lambda t, y, a: -theta * y, lambda t, y, a: sigma * jnp.ones_like(y),
                      jnp.full((n, 1), y0), key, horizon=horizon, steps=200, solver=solver,
                      brownian=brownian)
    mean = y0 * np.exp(-theta * horizon)
    var = sigma**2 * (1 - np.exp(-2 * theta * horizon)) / (2 * theta)
    # 4 standard errors, plus the solver's O(dt) bias (< 1e-3 at dt = 1/200).
    assert abs(float(ys.mean()) - mean) < 4 * np.sqrt(var / n) + 1e-3
    assert abs(float(ys.var()) - var) < 4 * var * np.sqrt(2 / (n - 1)) + 1e-3


def test_scan_solve_equals_diffeqsolve_values_gradients_and_hvps(key):
    """The default solve (Diffrax's solver stepped in a ``lax.scan``) gives the numbers of
    ``diffeqsolve``: values and gradients against the reverse-only checkpoint adjoint, and the
    Hessian-vector product (forward over reverse) against ``DirectAdjoint``."""
    cfg = sf.SdeFlowConfig()
    params = _perturbed(sf.init_params(cfg, key), jax.random.key(1), 0.3)
    x = jax.random.normal(key, (12, 3))

    def loss(p, adjoint):
        return jnp.mean(sf.reconstruct(cfg, p, x, jax.random.key(2), adjoint)[0] ** 2)

    values = {a: jax.jit(loss, static_argnums=1)(params, a) for a in sf.ADJOINTS}
    grads = {a: jax.jit(jax.grad(loss), static_argnums=1)(params, a)
             for a in ("scan", "checkpoint")}
    hvps = {a: jax.jit(lambda p, a=a: jax.jvp(jax.grad(lambda q: loss(q, a)), (p,), (p,))[1])(
        params) for a in ("scan", "direct")}
    assert float(values["scan"]) == float(values["checkpoint"]) == float(values["direct"])
    for tree in (grads, hvps):
        a, b = (jax.tree.leaves(t) for t in tree.values())
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)
    assert max(float(jnp.abs(v).max()) for v in jax.tree.leaves(hvps["scan"])) > 1e-3


def test_same_key_same_path_and_a_new_key_a_new_one(key):
    cfg = sf.SdeFlowConfig()
    params = sf.init_params(cfg, key)
    x = jax.random.normal(key, (8, 3))
    a = reconstruct(cfg, params, x, jax.random.key(1))[0]
    b = reconstruct(cfg, params, x, jax.random.key(1))[0]
    c = reconstruct(cfg, params, x, jax.random.key(2))[0]
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a - c).max()) > 1e-4


def test_per_example_parts_match_one_by_one(key):
    cfg = sf.SdeFlowConfig(diffusion_scale=0.0)  # deterministic: batches of any size agree
    p0 = _perturbed(sf.init_params(cfg, key), jax.random.key(1), 0.1)
    p1 = _perturbed(p0, jax.random.key(2), 0.1)
    x = jax.random.normal(key, (4, 3))
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b, b, a]), p0, p1)
    mixed = reconstruct(cfg, stacked, x, key, per_example=sf.PARTS)[0]
    one = jnp.concatenate([reconstruct(cfg, p, x[i:i + 1], key)[0]
                           for i, p in enumerate([p0, p1, p1, p0])])
    np.testing.assert_allclose(mixed, one, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown parts"):
        sf.reconstruct(cfg, p0, x, key, per_example=("encoder", "flows"))


def test_mlp_and_model_parameter_counts(key):
    from jaxcl.core.hypernet import count_params

    hsf = sf.init_params(sf.SdeFlowConfig(), key)
    mlp = sf.init_params(sf.SdeFlowConfig(model="mlp"), key)
    assert set(mlp) == {"encoder", "decoder"}
    assert count_params(mlp) == count_params({k: hsf[k] for k in ("encoder", "decoder")})
    # 3 -> 32 -> 32 -> 3, twice.
    assert count_params(mlp) == 2 * ((3 * 32 + 32) + (32 * 32 + 32) + (32 * 3 + 3))


@pytest.mark.parametrize("bad,match", [
    ({"model": "vae"}, "model='vae'"), ({"solver": "rk4"}, "solver='rk4'"),
    ({"latent_dim": 0}, "latent_dim"), ({"sde_steps": 0}, "sde_steps"),
    ({"nll": "exact"}, "nll='exact' is not one of"),
    ({"latent_dim": 4}, "latent_dim=4 exceeds data_dim=3: nll='paper'"),
    ({"hidden": (32, 0)}, "hidden"), ({"diffusion_scale": -1.0}, "diffusion_scale"),
])
def test_bad_config_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        sf.SdeFlowConfig(**bad)


# ----------------------------------------------------------------------------------------------
# The point benchmark.


def test_manifolds_satisfy_their_formulas(key):
    n = 200
    x = points.helix(key, n)
    np.testing.assert_allclose(x[:, 0] ** 2 + x[:, 1] ** 2, 1.0, rtol=1e-5)
    x = points.saddle(key, n)
    np.testing.assert_allclose(x[:, 2], x[:, 0] ** 2 - x[:, 1] ** 2, atol=1e-6)
    x = points.swiss_roll(key, n)
    radius = jnp.sqrt(x[:, 0] ** 2 + x[:, 2] ** 2)  # = s
    np.testing.assert_allclose(jnp.arctan2(x[:, 2], x[:, 0]), jnp.arctan2(jnp.sin(radius),
                               jnp.cos(radius)), atol=1e-4)
    x = points.torus_knot(key, n)
    ring = jnp.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2) - 2.0  # = cos 3s, and x[:, 2] = -sin 3s
    np.testing.assert_allclose(ring**2 + x[:, 2] ** 2, 1.0, rtol=1e-4)
    x = points.sine_sheet(key, n)
    np.testing.assert_allclose(x[:, 2], jnp.sin(jnp.pi * x[:, 0]) * jnp.cos(jnp.pi * x[:, 1]),
                               atol=1e-6)


def test_point_tasks_shapes_scale_and_determinism(key):
    tasks = points.point_tasks(key)
    assert len(tasks) == 5 and [e.task_id for e in tasks] == list(range(5))
    x_train = jnp.stack([e.x_train for e in tasks])
    x_test = jnp.stack([e.x_test for e in tasks])
    assert x_train.shape == (5, 300, 3) and x_test.shape == (5, 100, 3)
    for e in tasks:  # a stream of the loop: no classes, zero labels
        assert e.classes == () and e.y_train.shape == (300,) and e.y_test.shape == (100,)
        assert not np.any(e.y_train) and not np.any(e.y_test)
    np.testing.assert_allclose(x_train.mean(axis=1), 0.0, atol=0.02)
    np.testing.assert_allclose(x_train.std(axis=1), 1.0, atol=0.02)
    again = points.point_tasks(jax.random.key(0))
    np.testing.assert_array_equal(x_train, jnp.stack([e.x_train for e in again]))
    other = points.point_tasks(jax.random.key(1))
    assert float(jnp.abs(x_train - jnp.stack([e.x_train for e in other])).max()) > 0.1
    # Held out: no test point is a training point.
    d = jnp.abs(x_test[:, :, None, :] - x_train[:, None, :, :]).sum(-1)
    assert float(d.min()) > 0
    # Fewer tasks are the first ones; without noise, task t is the t-th manifold, standardised.
    assert len(points.point_tasks(key, num_tasks=2)) == 2
    clean = points.point_tasks(key, train_per_task=30, test_per_task=10, noise=0.0)
    for t, (name, manifold) in enumerate(points.MANIFOLDS.items()):
        raw = manifold(jax.random.split(jax.random.fold_in(key, t))[0], 40)
        mean, std = raw[:30].mean(axis=0, keepdims=True), raw[:30].std(axis=0, keepdims=True)
        np.testing.assert_allclose(clean[t].x_train * std + mean, raw[:30], rtol=1e-4,
                                   atol=1e-4, err_msg=name)
        np.testing.assert_allclose(clean[t].x_test * std + mean, raw[30:], rtol=1e-4,
                                   atol=1e-4, err_msg=name)


@pytest.mark.parametrize("bad,match", [({"num_tasks": 6}, "num_tasks"),
                                       ({"train_per_task": 1}, "train_per_task"),
                                       ({"noise": -0.1}, "noise")])
def test_point_tasks_refuse_bad_options(bad, match, key):
    with pytest.raises(ValueError, match=match):
        points.point_tasks(key, **bad)
