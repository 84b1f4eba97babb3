"""The density terms of the Hypernet-SDE-Flow autoencoder's loss: the log volume factors of the
encoder and of the decoder, and the NLL they enter (:func:`negative_log_likelihood`), as
``SdeFlowConfig.nll`` chooses (:mod:`jaxcl.models.sde_flow`'s docstring gives the three forms and
why the encoder's is a heuristic below the data's size).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxcl.models.sde_flow import SdeFlowConfig, _with_task, flow_nll
from jaxcl.types import PyTree


def _log_volume(jac: jax.Array) -> jax.Array:
    """``log|det J|`` of a square Jacobian, ``0.5 log det(J J^T)`` of a wide one and
    ``0.5 log det(J^T J)`` of a tall one: the log of the volume it maps a unit cube of its
    smaller side to."""
    rows, cols = jac.shape
    if rows == cols:
        return jnp.linalg.slogdet(jac)[1]
    gram = jac @ jac.T if rows < cols else jac.T @ jac
    return 0.5 * jnp.linalg.slogdet(gram)[1]


def encoder_log_volume(config: SdeFlowConfig, encoder_params: PyTree, x: jax.Array,
                       per_example: bool = False, task_ids: jax.Array | None = None) -> jax.Array:
    """The encoder's log volume factor per row of ``x``, ``J = dz0/dx`` (``latent x data``) from
    ``jax.jacfwd`` at each point:

    * ``latent_dim == data_dim``: ``log|det J|``, the change of variables of an invertible map.
    * ``latent_dim < data_dim``: ``0.5 log det(J J^T)``, a heuristic (``nll="paper"`` below the
      data's size). It equals the rectangular-flow term (:func:`decoder_log_volume`, with the
      opposite sign) only where the encoder is the orthogonal left inverse of the decoder on the
      data manifold; elsewhere it grows with the encoder's steepness across the manifold, where
      no data lie, so the loss can lower itself there without changing any reconstruction.

    A task-conditioned encoder (``task_inputs``) is differentiated in ``x`` alone, at each row's
    task ``task_ids``.
    """
    net = config.stacks()["encoder"]
    ids = jnp.zeros(x.shape[:1], jnp.int32) if task_ids is None else task_ids

    def one(p, xi, ti):
        def enc(v):
            return net.apply({"params": p}, _with_task(config, v[None], ti[None])[0])
        return _log_volume(jax.jacfwd(enc)(xi))

    return jax.vmap(one, in_axes=(0 if per_example else None, 0, 0))(encoder_params, x, ids)


def decoder_log_volume(config: SdeFlowConfig, decoder_params: PyTree, z: jax.Array,
                       per_example: bool = False) -> jax.Array:
    """``0.5 log det(G^T G)`` per row of ``z``, ``G = dDec/dz`` (``data x latent``) at ``z``
    (``log|det G|`` at a latent as large as the data): how much the decoder stretches a latent
    volume onto its manifold, the term of injective (rectangular) flows (Caterini et al. 2021),
    ``log p(Dec(z)) = log p(z) - 0.5 log det(G^T G)``."""
    net = config.stacks()["decoder"]

    def one(p, zi):
        return _log_volume(jax.jacfwd(lambda v: net.apply({"params": p}, v))(zi))

    return jax.vmap(one, in_axes=(0 if per_example else None, 0))(decoder_params, z)


def negative_log_likelihood(config: SdeFlowConfig, params: PyTree, x: jax.Array, z0: jax.Array,
                            per_example: Sequence[str] = ()) -> tuple[jax.Array, jax.Array]:
    """``(NLL, log_vol)`` per row of ``x``, ``z0 = Enc(x)``, ``u = F(z0)``, by ``config.nll``::

        "paper"        NLL(x) = -log N(u; 0, I) - log|det du/dz0| - log_vol
                       log_vol = encoder_log_volume(x)     (the paper's Eq. 2; a heuristic below
                                                            the data's size)
        "rectangular"  the same with log_vol = -decoder_log_volume(z0): the density of x on the
                       decoder's manifold (Caterini et al. 2021)
        "flow_only"    NLL(z0) = -log N(u; 0, I) - log|det du/dz0|   (log_vol the encoder's,
                       returned to watch it)

    ``"flow_only"`` is not a density of ``x``: scaling the encoder by ``c`` lowers it without bound
    on the flow's side, where the paper's term adds ``-latent_dim log c`` against it.
    ``params`` holds ``"encoder"``, ``"decoder"`` and ``"flow"``; ``per_example`` as in
    :func:`reconstruct`.
    """
    flow = flow_nll(config, params["flow"], z0, "flow" in per_example)
    if config.nll == "rectangular":
        log_vol = -decoder_log_volume(config, params["decoder"], z0, "decoder" in per_example)
    else:
        log_vol = encoder_log_volume(config, params["encoder"], x, "encoder" in per_example)
    return (flow if config.nll == "flow_only" else flow - log_vol), log_vol
