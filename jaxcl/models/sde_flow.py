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
stack of affine coupling layers (Distrax, alternating masks) maps the latent ``z0`` to ``u = F(z0)``
with exact ``log|det du/dz0|``, and :func:`negative_log_likelihood` gives the density term of the
loss, as ``SdeFlowConfig.nll`` says::

    "paper"      NLL(x)  = -log N(u; 0, I) - log|det du/dz0| - log_vol(dz0/dx)    (the default)
    "flow_only"  NLL(z0) = -log N(u; 0, I) - log|det du/dz0|                     (:func:`flow_nll`)

    "rectangular" NLL(x)  = -log N(u; 0, I) - log|det du/dz0| + 0.5 log det(G^T G)   G = dDec/dz at z0

``"paper"`` is the paper's Eq. 2, ``log p(x) = log p(u) + log|det du/dx|`` through the encoder and
the flow: ``log_vol = log|det J|`` for the square encoder Jacobian ``J = dz0/dx`` of a latent as
large as the data. Below the data's size ``"paper"`` uses ``0.5 log det(J J^T)``
(:func:`encoder_log_volume`), **a heuristic**: it is no density of ``x``, and it can be raised
by making the encoder steep off the data manifold, where no point lies
(``tests/models/test_sde_flow_model.py``). It is kept because the study's runs used it.
``"rectangular"`` is the density on the decoder's manifold of injective (rectangular) flows
(Caterini et al. 2021): ``x = Dec(z0)``, ``p(x) = p(z0) det(G^T G)^(-1/2)``
(:func:`decoder_log_volume`); the encoder only supplies ``z0``, so steepness off the manifold
cannot change it. At a latent as large as the data it is ``log|det G|``, the change of variables
through the decoder. Trained as the study trains (latent 2, beta 0.01, 300 epochs) it diverged:
the decoder's Jacobian grew singular and the term fell to ``-inf`` within 140 epochs of task 0
(``docs/protocols/sde_flow_fair.md``, amendment 1); it needs a bound on that collapse before it
can train these models. ``"flow_only"``, the flow's term alone, drops the Jacobian: it is no density
of ``x``, and it rewards shrinking ``z0``.

Each coupling layer is ``u = m * z + (1 - m) * (z * exp(s(m z)) + t(m z))`` with the log-scale
bounded, ``s = s_max tanh(s_raw / s_max)``, and its conditioner's last layer initialised to zero,
so that the flow starts as the identity (with a 1-D latent every other layer is an affine map
whose shift and scale are learned constants). Every network is a :class:`DenseStack` applied to
its own sub-pytree; the SDE networks read theirs from Diffrax's ``args``, never from bound modules.

The MLP baseline (``model="mlp"``) is ``x_hat = Dec(Enc(x))`` with the same encoder and decoder
shapes, hence the same parameter count as the generated part of the Hypernet-SDE-Flow model;
``"hypernet_mlp"`` is the same autoencoder with every weight generated per task (the learner's
business: the shapes are the MLP's). With ``task_inputs > 0`` the encoder and decoder also read
the task's one-hot code, ``Enc(x, e_t)`` and ``Dec(z, e_t)`` (the task-conditioned MLP).
:func:`collapse_metrics` measures what a shrinking latent does: ``z0``'s scale, the diffusion,
the decoder's gain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcl.models._distrax import distrax
from jaxcl.models.sde_solve import (  # noqa: F401  (solve_sde and its options: sde_flow's API)
    ADJOINTS,
    BROWNIAN_PATHS,
    SDE_SOLVERS,
    Field,
    solve_sde,
)
from jaxcl.types import PyTree

MODEL_KINDS = ("mlp", "hypernet_sde_flow", "hypernet_mlp")
"""``SdeFlowConfig.model``: the MLP autoencoder, the Hypernet-SDE-Flow autoencoder, or the MLP
autoencoder's shapes generated per task (no flow, no SDEs)."""
NLL_KINDS = ("paper", "rectangular", "flow_only")
"""``SdeFlowConfig.nll``: ``-log p(x)`` through encoder and flow (the paper's; below the data's
size a heuristic), the rectangular-flow density through the decoder, or ``-log p(z0)``."""


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
      model: ``"hypernet_sde_flow"`` (encoder, flow, SDEs, decoder), ``"mlp"`` (encoder and
        decoder only) or ``"hypernet_mlp"`` (the MLP's shapes, generated per task).
      data_dim: dimension of a point.
      latent_dim: dimension of ``z`` (the paper gives none; 3, the data's, by default; below
        the data's the encoder compresses).
      nll: the density term of the loss, a key of :data:`NLL_KINDS`
        (:func:`negative_log_likelihood`); ``"paper"`` and ``"rectangular"`` need
        ``latent_dim <= data_dim``.
      task_inputs: length of the task's one-hot code the encoder and decoder also read (0: none);
        MLP only.
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
    nll: str = "paper"
    task_inputs: int = 0
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
        if self.nll not in NLL_KINDS:
            raise ValueError(f"nll={self.nll!r} is not one of {NLL_KINDS}")
        for name in ("data_dim", "latent_dim", "flow_layers", "sde_steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.nll != "flow_only" and self.latent_dim > self.data_dim:
            raise ValueError(f"latent_dim={self.latent_dim} exceeds data_dim={self.data_dim}: "
                             f"nll={self.nll!r} (-log p(x)) needs latent_dim <= data_dim; "
                             "nll='flow_only' takes any latent_dim")
        if not (isinstance(self.task_inputs, int) and self.task_inputs >= 0):
            raise ValueError(f"task_inputs must be a non-negative integer, got "
                             f"{self.task_inputs!r}")
        if self.task_inputs and self.model != "mlp":
            raise ValueError(f"task_inputs={self.task_inputs} is for model='mlp' (a "
                             f"hypernetwork is told the task by its embedding), got "
                             f"model={self.model!r}")
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
        if not self.has_latent_path:
            return nets
        for i in range(self.flow_layers):
            nets[f"flow/coupling_{i}"] = DenseStack((*self.flow_hidden, 2 * z), zero_last=True)
        for sde in ("sde", "back_sde"):
            nets[f"{sde}/drift"] = DenseStack((*self.sde_hidden, z))
            nets[f"{sde}/diffusion"] = DenseStack((*self.sde_hidden, z))
        return nets

    @property
    def has_latent_path(self) -> bool:
        """Whether the model has the flow and the SDEs (the Hypernet-SDE-Flow model)."""
        return self.model == "hypernet_sde_flow"

    def input_dim(self, path: str) -> int:
        if path == "encoder":
            return self.data_dim + self.task_inputs
        if path == "decoder":
            return self.latent_dim + self.task_inputs
        if path.startswith("flow/"):
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


def apply_stack(net: DenseStack, params: PyTree, x: jax.Array,
                per_example: bool = False) -> jax.Array:
    """``net`` on a batch ``x`` ``(n, features)``; with ``per_example``, every leaf of ``params``
    has a leading axis ``n`` and example ``i`` goes through its own weights (e.g. each example's
    task's generated weights)."""
    if per_example:
        return jax.vmap(lambda p, xi: net.apply({"params": p}, xi))(params, x)
    return net.apply({"params": params}, x)


def _with_task(config: SdeFlowConfig, v: jax.Array, task_ids: jax.Array | None) -> jax.Array:
    """``v`` with the task's one-hot code appended when the model reads it (``task_inputs``)."""
    if not config.task_inputs:
        return v
    if task_ids is None:
        raise ValueError(f"the model reads its task (task_inputs={config.task_inputs}): pass "
                         "task_ids")
    return jnp.concatenate([v, jax.nn.one_hot(task_ids, config.task_inputs, dtype=v.dtype)], -1)


def encode(config: SdeFlowConfig, params: PyTree, x: jax.Array,
           per_example: Sequence[str] = (), task_ids: jax.Array | None = None) -> jax.Array:
    net = config.stacks()["encoder"]
    return apply_stack(net, params["encoder"], _with_task(config, x, task_ids),
                       "encoder" in per_example)


def decode(config: SdeFlowConfig, params: PyTree, z: jax.Array,
           per_example: Sequence[str] = (), task_ids: jax.Array | None = None) -> jax.Array:
    net = config.stacks()["decoder"]
    return apply_stack(net, params["decoder"], _with_task(config, z, task_ids),
                       "decoder" in per_example)


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
    """``-log p(z0)`` per row, ``p`` the standard normal pushed back through the flow (the
    ``nll="flow_only"`` term of :func:`negative_log_likelihood`)."""
    base = distrax.MultivariateNormalDiag(jnp.zeros_like(z0))  # one N(0, I) per row
    flow = coupling_flow(config, flow_params, per_example)
    density = distrax.Transformed(base, distrax.Inverse(flow))
    return -density.log_prob(z0)


# ----------------------------------------------------------------------------------------------
# The SDEs.

def _neural_sde(config: SdeFlowConfig, *, reverse: bool, per_example: bool) -> tuple[Field, Field]:
    """Drift and bounded diagonal diffusion networks reading their parameters from ``args``."""
    net = DenseStack((*config.sde_hidden, config.latent_dim))
    horizon = config.horizon

    def with_time(t, y):
        clock = horizon - t if reverse else t
        return jnp.concatenate([y, jnp.full((*y.shape[:-1], 1), clock, y.dtype)], axis=-1)

    def drift(t, y, args):
        return args.get("gate", 1.0) * apply_stack(net, args["drift"], with_time(t, y), per_example)

    def diffusion(t, y, args):
        raw = apply_stack(net, args["diffusion"], with_time(t, y), per_example)
        return args.get("gate", 1.0) * config.diffusion_scale * jax.nn.sigmoid(raw)

    return drift, diffusion


def latent_path(config: SdeFlowConfig, params: PyTree, z0: jax.Array, key: jax.Array,
                adjoint: str = "scan", per_example: Sequence[str] = (),
                sde_gate: float | jax.Array = 1.0) -> tuple[jax.Array, jax.Array]:
    """``(zT, y0)``: ``z0 -> zT`` through the forward SDE, then back through the decoder's SDE.

    ``sde_gate`` (a traced scalar) multiplies both SDEs' drift and diffusion: 0 makes them the
    identity (``zT = y0 = z0``), the ablation that asks whether they contribute anything."""
    k_forward, k_back = jax.random.split(key)
    ends = [z0]
    for sde, k in (("sde", k_forward), ("back_sde", k_back)):
        drift, diffusion = _neural_sde(config, reverse=sde == "back_sde",
                                       per_example=sde in per_example)
        ends.append(solve_sde(drift, diffusion, ends[-1], k, args={**params[sde], "gate": sde_gate},
                              horizon=config.horizon, steps=config.sde_steps,
                              solver=config.solver, adjoint=adjoint))
    return ends[1], ends[2]


class Reconstruction(NamedTuple):
    """A forward pass: ``x_hat``, and the latents ``z0 = Enc(x)``, ``zT`` (after the forward SDE)
    and ``y0`` (after the decoder's SDE, the decoder's input); the MLP's are all ``z0``."""

    x_hat: jax.Array
    z0: jax.Array
    zT: jax.Array
    y0: jax.Array


def reconstruct(config: SdeFlowConfig, params: PyTree, x: jax.Array, key: jax.Array,
                adjoint: str = "scan", per_example: Sequence[str] = (),
                sde_gate: float | jax.Array = 1.0,
                task_ids: jax.Array | None = None) -> Reconstruction:
    """The :class:`Reconstruction` of a batch ``x`` ``(n, data_dim)`` (the MLP ignores ``key``).

    ``per_example`` names the :data:`PARTS` whose parameters carry a leading axis ``n`` (each
    example through its own task's weights); the others are shared by the whole batch, so that
    one solve serves points of many tasks. ``sde_gate`` as in :func:`latent_path`; ``task_ids``
    ``(n,)``, each row's task, for a model that reads it (``task_inputs``).
    """
    unknown = set(per_example) - set(PARTS)
    if unknown:
        raise ValueError(f"per_example names unknown parts {sorted(unknown)}; parts: {PARTS}")
    z0 = encode(config, params, x, per_example, task_ids)
    zT, y0 = (latent_path(config, params, z0, key, adjoint, per_example, sde_gate)
              if config.has_latent_path else (z0, z0))
    return Reconstruction(decode(config, params, y0, per_example, task_ids), z0, zT, y0)


def collapse_metrics(config: SdeFlowConfig, params: PyTree, rec: Reconstruction,
                     sde_gate: float | jax.Array = 1.0, task_id: jax.Array | int = 0) -> dict:
    """What shows a collapsing latent, for one task's ``params`` and a batch's ``rec``:

    * ``z0_std``: ``z0``'s scale, the standard deviation over the batch, mean over coordinates.
    * ``sigma``: the diffusion, ``g(t_k, z0)`` of the forward SDE and ``c(t_k, zT)`` of the
      decoder's, each at its SDE's starting point at the solver's grid times ``t_k``, mean over
      both, the times, the batch and the coordinates (0 for the MLP), times ``sde_gate``
      (:func:`latent_path`).
    * ``decoder_gain``: the largest singular value of ``dx_hat/dy`` at the decoder's input
      ``y0``, mean over the batch.

    No gradient flows through them. ``task_id`` is the batch's task, for a model that reads it.
    """
    params, rec = jax.lax.stop_gradient((params, rec))
    ids = jnp.full(rec.y0.shape[:1], task_id, jnp.int32)
    jac = jax.vmap(jax.jacfwd(lambda y, i: decode(config, params, y[None], (), i[None])[0]))(
        rec.y0, ids)
    sigma = jnp.zeros((), rec.z0.dtype)
    if config.has_latent_path:
        times = jnp.linspace(0.0, config.horizon, config.sde_steps + 1)[:-1]
        levels = []
        for sde, start in (("sde", rec.z0), ("back_sde", rec.zT)):
            _, diffusion = _neural_sde(config, reverse=sde == "back_sde", per_example=False)
            args = {**params[sde], "gate": sde_gate}
            levels.append(jax.vmap(diffusion, in_axes=(0, None, None))(times, start, args))
        sigma = jnp.mean(jnp.stack(levels))
    return {"z0_std": jnp.mean(jnp.std(rec.z0, axis=0)), "sigma": sigma,
            "decoder_gain": jnp.mean(jnp.linalg.svd(jac, compute_uv=False)[:, 0])}


# The density terms live in their own module, which reads this one; bound here, after everything
# they need, so that ``sde_flow.negative_log_likelihood`` and the rest keep their one address.
from jaxcl.models.sde_flow_nll import (  # noqa: E402, F401  (the module's API)
    decoder_log_volume,
    encoder_log_volume,
    negative_log_likelihood,
)
