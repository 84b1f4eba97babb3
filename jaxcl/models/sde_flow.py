"""The Hypernet-SDE-Flow autoencoder and its MLP baseline, as pure functions of a params pytree.

One parameter pytree holds every part (``init_params``); the hypernetwork of
:mod:`jaxcl.learners.sde_flow` generates some of its leaves per task (the encoder and decoder, in the
study) and keeps the rest shared. The forward pass (:func:`reconstruct`)::

    z0 = Enc_theta(x)                                     task-conditional encoder (x in R^3)
    zT = z0 + int_0^T f(Z_t, t) dt + int_0^T g(Z_t, t) dW_t        neural SDE, Diffrax
    y0 = zT + int_0^T b(Y_s, s) ds + int_0^T c(Y_s, s) dW'_s       a second SDE that runs back
    x_hat = Dec_theta(y0)                                 task-conditional decoder

``f``, ``b`` are the drift networks and ``g``, ``c`` diagonal diffusions bounded in
``(0, diffusion_scale)``; the decoder's SDE sees the reversed clock ``T - s``. Beside the path, a
stack of affine coupling layers (Distrax, alternating masks) maps the latent ``z0`` to ``u`` with
exact ``log|det J|``, and :func:`flow_nll` gives the latent density term of the loss::

    NLL(z0) = -log N(u; 0, I) - log|det du/dz0|,    u = F(z0)

Each coupling layer is ``u = m * z + (1 - m) * (z * exp(s(m z)) + t(m z))`` with the log-scale
bounded, ``s = s_max tanh(s_raw / s_max)``, and its conditioner's last layer initialised to zero,
so that the flow starts as the identity. Every network is a :class:`DenseStack` applied to its
own sub-pytree; the SDE networks read theirs from Diffrax's ``args``, never from bound modules.

The MLP baseline (``model="mlp"``) is ``x_hat = Dec(Enc(x))`` with the same encoder and decoder
shapes, hence the same parameter count as the generated part of the Hypernet-SDE-Flow model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import lineax

from jaxcl.models._distrax import distrax
from jaxcl.types import PyTree

SDE_SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,  # Euler-Maruyama (Ito)
    "heun": diffrax.Heun,  # Stratonovich; the same solution for additive noise
}
ADJOINTS = ("checkpoint", "direct", "scan")
BROWNIAN_PATHS = ("grid", "tree")
MODEL_KINDS = ("mlp", "hypernet_sde_flow")


class DenseStack(nn.Module):
    """``Dense -> tanh -> ... -> Dense``; ``zero_last`` starts the last layer at 0."""

    features: tuple[int, ...]
    zero_last: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.features):
            last = i == len(self.features) - 1
            init = nn.initializers.zeros if last and self.zero_last else nn.initializers.lecun_normal()
            x = nn.Dense(width, kernel_init=init, name=f"dense_{i}")(x)
            if not last:
                x = jnp.tanh(x)
        return x


@dataclasses.dataclass(frozen=True)
class SdeFlowConfig:
    """The shapes of the autoencoder.

    Attributes:
      model: ``"hypernet_sde_flow"`` (encoder, flow, SDEs, decoder) or ``"mlp"`` (encoder and
        decoder only).
      data_dim: dimension of a point.
      latent_dim: dimension of ``z``.
      hidden: hidden widths of the encoder and of the decoder.
      flow_layers: affine coupling layers.
      flow_hidden: hidden widths of each coupling conditioner.
      max_log_scale: ``s_max``, the bound of the coupling log-scales.
      sde_hidden: hidden widths of the drift and diffusion networks.
      horizon: ``T``, the time each SDE runs.
      sde_steps: fixed solver steps over ``[0, T]``.
      diffusion_scale: the bound of the diffusion, ``g in (0, diffusion_scale)``.
      solver: a key of :data:`SDE_SOLVERS`.
    """

    model: str = "hypernet_sde_flow"
    data_dim: int = 3
    latent_dim: int = 3
    hidden: tuple[int, ...] = (32, 32)
    flow_layers: int = 4
    flow_hidden: tuple[int, ...] = (32,)
    max_log_scale: float = 2.0
    sde_hidden: tuple[int, ...] = (32,)
    horizon: float = 1.0
    sde_steps: int = 8
    diffusion_scale: float = 0.1
    solver: str = "euler"

    def __post_init__(self):
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model={self.model!r} is not one of {MODEL_KINDS}")
        if self.solver not in SDE_SOLVERS:
            raise ValueError(f"solver={self.solver!r} is not one of {tuple(SDE_SOLVERS)}")
        for name in ("data_dim", "latent_dim", "flow_layers", "sde_steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.model == "hypernet_sde_flow" and self.latent_dim < 2:
            raise ValueError(f"latent_dim must be >= 2 for coupling layers, got {self.latent_dim}")
        for name in ("hidden", "flow_hidden", "sde_hidden"):
            widths = getattr(self, name)
            if not isinstance(widths, tuple) or not all(isinstance(w, int) and w >= 1 for w in widths):
                raise ValueError(f"{name} must be a tuple of positive widths, got {widths!r}")
        for name in ("max_log_scale", "horizon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.diffusion_scale >= 0:
            raise ValueError(f"diffusion_scale must be >= 0, got {self.diffusion_scale!r}")

    def stacks(self) -> dict[str, DenseStack]:
        """Every network of the model, by its path in the params pytree."""
        d, z = self.data_dim, self.latent_dim
        nets = {"encoder": DenseStack((*self.hidden, z)), "decoder": DenseStack((*self.hidden, d))}
        if self.model == "mlp":
            return nets
        for i in range(self.flow_layers):
            nets[f"flow/coupling_{i}"] = DenseStack((*self.flow_hidden, 2 * z), zero_last=True)
        for sde in ("sde", "back_sde"):
            nets[f"{sde}/drift"] = DenseStack((*self.sde_hidden, z))
            nets[f"{sde}/diffusion"] = DenseStack((*self.sde_hidden, z))
        return nets

    def input_dim(self, path: str) -> int:
        if path == "encoder":
            return self.data_dim
        if path.startswith("flow/") or path == "decoder":
            return self.latent_dim
        return self.latent_dim + 1  # the SDE networks also see the time


def init_params(config: SdeFlowConfig, key: jax.Array) -> PyTree:
    """Every network's parameters, nested by path (``params["sde"]["drift"]``, ...)."""
    params: dict[str, Any] = {}
    for i, (path, net) in enumerate(config.stacks().items()):
        sample = jnp.zeros((1, config.input_dim(path)), jnp.float32)
        leaf = net.init(jax.random.fold_in(key, i), sample)["params"]
        *parents, name = path.split("/")
        node = params
        for p in parents:
            node = node.setdefault(p, {})
        node[name] = leaf
    return params


PARTS = ("encoder", "decoder", "flow", "sde", "back_sde")
"""The top-level entries of the params pytree, the unit of ``per_example``."""


def apply_stack(net: DenseStack, params: PyTree, x: jax.Array, per_example: bool = False):
    """``net`` on a batch ``x`` ``(n, features)``; with ``per_example``, every leaf of ``params``
    has a leading axis ``n`` and example ``i`` goes through its own weights (e.g. each example's
    task's generated weights)."""
    if per_example:
        return jax.vmap(lambda p, xi: net.apply({"params": p}, xi))(params, x)
    return net.apply({"params": params}, x)


def encode(config: SdeFlowConfig, params: PyTree, x: jax.Array, per_example=()) -> jax.Array:
    net = config.stacks()["encoder"]
    return apply_stack(net, params["encoder"], x, "encoder" in per_example)


def decode(config: SdeFlowConfig, params: PyTree, z: jax.Array, per_example=()) -> jax.Array:
    net = config.stacks()["decoder"]
    return apply_stack(net, params["decoder"], z, "decoder" in per_example)


# ----------------------------------------------------------------------------------------------
# The coupling flow.


def coupling_flow(config: SdeFlowConfig, flow_params: PyTree,
                  per_example: bool = False) -> distrax.Chain:
    """``F = C_{L-1} o ... o C_0``, built from ``flow_params`` (layer ``i`` masks the coordinates
    of parity ``i mod 2``; ``per_example`` as in :func:`apply_stack`)."""
    z = config.latent_dim
    layers = []
    for i in range(config.flow_layers):
        net = DenseStack((*config.flow_hidden, 2 * z), zero_last=True)
        p = flow_params[f"coupling_{i}"]

        def conditioner(x, net=net, p=p):
            shift, raw = jnp.split(apply_stack(net, p, x, per_example), 2, axis=-1)
            return shift, config.max_log_scale * jnp.tanh(raw / config.max_log_scale)

        def affine(params):
            shift, log_scale = params
            return distrax.ScalarAffine(shift=shift, log_scale=log_scale)

        mask = jnp.arange(z) % 2 == i % 2
        layers.append(distrax.MaskedCoupling(mask=mask, conditioner=conditioner, bijector=affine))
    return distrax.Chain(layers[::-1])  # Chain applies its last bijector first


def flow_nll(config: SdeFlowConfig, flow_params: PyTree, z0: jax.Array,
             per_example: bool = False) -> jax.Array:
    """``-log p(z0)`` per row, ``p`` the standard normal pushed back through the flow."""
    base = distrax.MultivariateNormalDiag(jnp.zeros_like(z0))  # one N(0, I) per row
    flow = coupling_flow(config, flow_params, per_example)
    density = distrax.Transformed(base, distrax.Inverse(flow))
    return -density.log_prob(z0)


# ----------------------------------------------------------------------------------------------
# The SDEs.

Field = Callable[[jax.Array, jax.Array, PyTree], jax.Array]


def solve_sde(
    drift: Field,
    diffusion: Field,
    y0: jax.Array,
    key: jax.Array,
    *,
    args: PyTree = None,
    horizon: float = 1.0,
    steps: int = 8,
    solver: str = "euler",
    adjoint: str = "scan",
    brownian: str = "grid",
) -> jax.Array:
    """``Y_T`` of ``dY = drift(t, Y, args) dt + diffusion(t, Y, args) * dW`` from ``Y_0 = y0``.

    The noise is diagonal: ``diffusion`` returns an array shaped like ``y0`` whose entries scale
    the independent Brownian motions of each entry. The solve takes ``steps`` fixed steps of
    ``solver``. The Brownian path comes from ``key`` (the same key, the same path; the solve is
    differentiable either way):

    * ``brownian="grid"``: ``W`` sampled exactly on the solver's grid, ``W(t_{k+1}) - W(t_k) ~
      N(0, dt)``, and linearly interpolated between (``diffrax.LinearInterpolation``). A
      fixed-step solver only asks for increments over grid intervals, so it sees exact Brownian
      increments; on CPU a solve of the model's SDE is 2.3x cheaper than with the tree
      (``benchmarks/sde_flow_study.py``).
    * ``brownian="tree"``: ``diffrax.VirtualBrownianTree``, exact at any time (needed for
      adaptive or finer steps).

    ``adjoint`` says how the solve is differentiated:

    * ``"scan"`` (the default): Diffrax's solver stepped by hand (``solver.step``) in a
      ``lax.scan`` over the grid; JAX differentiates it in reverse and in forward mode, so the
      order-2 look-ahead (a Hessian-vector product, forward over reverse) runs through it. The
      same numbers as ``"checkpoint"`` (bitwise on CPU, tested), at 0.7x ``"direct"``'s cost
      for a Hessian-vector product (``benchmarks/sde_flow_study.py``).
    * ``"checkpoint"``: ``diffeqsolve`` with ``diffrax.RecursiveCheckpointAdjoint``, Diffrax's
      default, reverse mode only.
    * ``"direct"``: ``diffeqsolve`` with ``diffrax.DirectAdjoint``, both modes, each step
      guarded as a bounded while loop's.
    """
    if solver not in SDE_SOLVERS:
        raise ValueError(f"solver={solver!r} is not one of {tuple(SDE_SOLVERS)}")
    if adjoint not in ADJOINTS:
        raise ValueError(f"adjoint={adjoint!r} is not one of {ADJOINTS}")
    if brownian not in BROWNIAN_PATHS:
        raise ValueError(f"brownian={brownian!r} is not one of {BROWNIAN_PATHS}")
    dt = horizon / steps
    if brownian == "grid":
        increments = jnp.sqrt(dt) * jax.random.normal(key, (steps, *y0.shape), y0.dtype)
        values = jnp.concatenate([jnp.zeros((1, *y0.shape), y0.dtype), jnp.cumsum(increments, 0)])
        path = diffrax.LinearInterpolation(ts=jnp.linspace(0.0, horizon, steps + 1), ys=values)
    else:
        path = diffrax.VirtualBrownianTree(0.0, horizon, tol=dt / 2, shape=y0.shape, key=key)
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(drift),
        diffrax.ControlTerm(lambda t, y, a: lineax.DiagonalLinearOperator(diffusion(t, y, a)), path),
    )
    if adjoint == "scan":
        return _stepped(terms, SDE_SOLVERS[solver](), y0, args, horizon, steps)
    solution = diffrax.diffeqsolve(
        terms, SDE_SOLVERS[solver](), 0.0, horizon, dt, y0, args=args, max_steps=steps,
        adjoint=(diffrax.DirectAdjoint() if adjoint == "direct"
                 # one checkpoint per step: nothing is recomputed (faster on CPU, measured)
                 else diffrax.RecursiveCheckpointAdjoint(checkpoints=steps)),
        # throw=True would check the result through a host callback, and a program holding one
        # is never stored in JAX's persistent compilation cache; a failed solve is NaN instead,
        # which the training loop's non-finite check stops at.
        throw=False,
    )
    failed = solution.result != diffrax.RESULTS.successful
    return jnp.where(failed, jnp.nan, solution.ys[-1])


def _stepped(terms, solver: diffrax.AbstractSolver, y0, args, horizon: float, steps: int):
    """``Y_T`` after ``steps`` equal steps of ``solver`` (Diffrax's manual stepping:
    ``solver.init`` and ``solver.step``) in a ``lax.scan``, each step from one grid point of
    the Brownian path to the next. JAX differentiates the scan in both modes with nothing but
    the steps' own residuals, where ``diffrax.DirectAdjoint`` wraps every step in the guards of a
    bounded while loop."""
    ts = jnp.linspace(0.0, horizon, steps + 1)
    state = solver.init(terms, ts[0], ts[1], y0, args)

    def step(carry, t):
        y, state = carry
        y, _, _, state, _ = solver.step(terms, t[0], t[1], y, args, state, made_jump=False)
        return (y, state), None

    (y, _), _ = jax.lax.scan(step, (y0, state), jnp.stack([ts[:-1], ts[1:]], axis=1))
    return y


def _neural_sde(config: SdeFlowConfig, *, reverse: bool, per_example: bool) -> tuple[Field, Field]:
    """Drift and bounded diagonal diffusion networks reading their parameters from ``args``."""
    net = DenseStack((*config.sde_hidden, config.latent_dim))
    horizon = config.horizon

    def with_time(t, y):
        clock = horizon - t if reverse else t
        return jnp.concatenate([y, jnp.full((*y.shape[:-1], 1), clock, y.dtype)], axis=-1)

    def drift(t, y, args):
        return apply_stack(net, args["drift"], with_time(t, y), per_example)

    def diffusion(t, y, args):
        raw = apply_stack(net, args["diffusion"], with_time(t, y), per_example)
        return config.diffusion_scale * jax.nn.sigmoid(raw)

    return drift, diffusion


def latent_path(config: SdeFlowConfig, params: PyTree, z0: jax.Array, key: jax.Array,
                adjoint: str = "scan", per_example=()) -> jax.Array:
    """``z0 -> zT`` through the forward SDE, then back through the decoder's SDE."""
    k_forward, k_back = jax.random.split(key)
    z = z0
    for sde, k in (("sde", k_forward), ("back_sde", k_back)):
        drift, diffusion = _neural_sde(config, reverse=sde == "back_sde",
                                       per_example=sde in per_example)
        z = solve_sde(drift, diffusion, z, k, args=params[sde], horizon=config.horizon,
                      steps=config.sde_steps, solver=config.solver, adjoint=adjoint)
    return z


def reconstruct(config: SdeFlowConfig, params: PyTree, x: jax.Array, key: jax.Array,
                adjoint: str = "scan", per_example=()) -> tuple[jax.Array, jax.Array]:
    """``(x_hat, z0)`` for a batch ``x`` of shape ``(n, data_dim)`` (the MLP ignores ``key``).

    ``per_example`` names the :data:`PARTS` whose parameters carry a leading axis ``n`` (each
    example through its own task's weights); the others are shared by the whole batch, so that
    one solve serves points of many tasks.
    """
    unknown = set(per_example) - set(PARTS)
    if unknown:
        raise ValueError(f"per_example names unknown parts {sorted(unknown)}; parts: {PARTS}")
    z0 = encode(config, params, x, per_example)
    z = z0 if config.model == "mlp" else latent_path(config, params, z0, key, adjoint, per_example)
    return decode(config, params, z, per_example), z0
