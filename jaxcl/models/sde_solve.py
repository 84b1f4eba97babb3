"""Solving a neural SDE with Diffrax, differentiable in reverse and in forward mode.

:func:`solve_sde` gives ``Y_T`` of ``dY = f(t, Y) dt + g(t, Y) dW`` (diagonal noise) in fixed steps
of an Euler-Maruyama or Heun solver, the Brownian path drawn from a key, and says how the solve is
differentiated (``adjoint``): Diffrax's solver stepped by hand in a ``lax.scan`` by default, so
that a Hessian-vector product (forward over reverse, the order-2 look-ahead) runs through it.
The Hypernet-SDE-Flow model (:mod:`jaxcl.models.sde_flow`) solves both of its SDEs with it.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import lineax

from jaxcl.types import PyTree

SDE_SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,  # Euler-Maruyama (Ito)
    "heun": diffrax.Heun,  # Stratonovich; the same solution for additive noise
}
ADJOINTS = ("checkpoint", "direct", "scan")
BROWNIAN_PATHS = ("grid", "tree")
UNROLL = 8
"""The most steps of a stepped solve (adjoint ``"scan"``) unrolled into one iteration of its loop."""

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
    bounded while loop. Up to :data:`UNROLL` steps are unrolled into one loop iteration (all of
    them at the study's 8): XLA then fuses across steps and keeps no loop-carried copies (the
    repair's step 9 % faster on CPU, about 1 s more to compile)."""
    ts = jnp.linspace(0.0, horizon, steps + 1)
    state = solver.init(terms, ts[0], ts[1], y0, args)

    def step(carry, t):
        y, state = carry
        y, _, _, state, _ = solver.step(terms, t[0], t[1], y, args, state, made_jump=False)
        return (y, state), None

    (y, _), _ = jax.lax.scan(step, (y0, state), jnp.stack([ts[:-1], ts[1:]], axis=1),
                             unroll=min(steps, UNROLL))
    return y
