"""BlackJAX-style samplers whose step advances a block of MCMC steps in parallel.

``parallel_mala(logdensity_fn, step_size, num_steps_per_block)`` etc. return a
`blackjax.base.SamplingAlgorithm`; one call of its ``step`` runs ``num_steps_per_block`` steps
of the base kernel (BlackJAX MALA, HMC with a fixed number of integration steps, or an additive
Gaussian random walk) with `numpyro_parallel.mcmc.run_chain`, and returns the last
state of the block; the whole block is in ``info.states`` (a
`numpyro_parallel.fixed_point.FixedPointResult`). Running the block
sampler for n steps gives the same draws as the base sampler run sequentially with keys
``jax.random.split(block_key, num_steps_per_block)`` inside each block.

Concrete invalid parameters (non-positive step size, proposal scale or inverse mass matrix,
block length < 1, unknown solver) raise when the sampler is built; parameters only known
under tracing that are invalid make the block's states NaN and ``info.converged`` False.

Reference: Zoltowski et al. (2025), "Parallelizing MCMC across the sequence length".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm
from blackjax.mcmc import random_walk

from numpyro_parallel._checks import check_covariance, check_positive_int, concrete, nan_unless
from numpyro_parallel.fixed_point.checks import check_solver_options
from numpyro_parallel.fixed_point.result import NON_FINITE, OK, FixedPointResult
from numpyro_parallel.fixed_point.solvers import SolverLike
from numpyro_parallel.mcmc.chain import run_chain
from numpyro_parallel.strategy import StrategyLike

__all__ = [
    "as_top_level_api",
    "build_kernel",
    "init",
    "parallel_hmc",
    "parallel_mala",
    "parallel_rwm",
]


def init(position: Any, logdensity_fn: Callable, base_init: Callable = blackjax.mala.init) -> Any:
    """Initial state: the base algorithm's state at ``position``.

    Args:
        position: initial position (pytree).
        logdensity_fn: log-density of the target.
        base_init: the base algorithm's ``init(position, logdensity_fn)``.

    Returns:
        The base algorithm's state.
    """
    return base_init(position, logdensity_fn)


def _positive(name: str, value: Any) -> jax.Array:
    """Raise unless a concrete ``value`` is finite and > 0 everywhere; traced: a validity flag.

    Raises `TypeError` for a concrete value that is not numeric (None, a string, a bool).

    A dense (2-D) ``value`` must be a positive-definite matrix.
    """
    array = concrete(value)
    if array is not None and array.dtype.kind not in "iuf":  # bools are kind "b"
        raise TypeError(f"`{name}` must be a number or an array of numbers; got {value!r}.")
    if array is not None:
        if array.ndim == 2:
            check_covariance(name, array, allow_singular=False)
        elif not (array.size and np.all(np.isfinite(array)) and np.all(array > 0)):
            raise ValueError(f"`{name}` must be finite and > 0; got {value!r}.")
        return jnp.asarray(True)
    value = jnp.asarray(value)
    if value.ndim == 2:
        return jnp.all(jnp.isfinite(value)) & jnp.all(jnp.diagonal(value) > 0)
    return jnp.all(jnp.isfinite(value) & (value > 0))


def build_kernel(
    base_kernel: Callable,
    base_init: Callable,
    num_steps_per_block: int,
    *,
    solver: SolverLike = "newton",
    strategy: StrategyLike = "auto",
    atol: float | None = None,
    rtol: float | None = None,
    max_iterations: int | None = None,
    window: int | None = None,
    params_ok: Callable[..., jax.Array] | None = None,
) -> Callable:
    """Build a kernel advancing ``num_steps_per_block`` base steps by one parallel solve.

    Args:
        base_kernel: a BlackJAX kernel ``kernel(rng_key, state, logdensity_fn, *params)``
            (e.g. ``blackjax.mala.build_kernel()``).
        base_init: the base ``init(position, logdensity_fn)``.
        num_steps_per_block: steps per block (a Python int).
        solver: a `numpyro_parallel.fixed_point` solver or its name (``"newton"``,
            ``"quasi_newton"``, ``"jacobi"``, ``"online_picard"``).
        strategy: strategy of the solver's linear recursions (`numpyro_parallel.strategy`);
            `Sequential()` runs the block as a plain `lax.scan` chain.
        atol: absolute solver tolerance (dtype-dependent default).
        rtol: relative solver tolerance (dtype-dependent default).
        max_iterations: cap on solver iterations (then sequential fallback).
        window: sliding-window length.
        params_ok: ``params_ok(*params) -> bool`` validity of the parameters (under tracing
            invalid parameters make the block's states NaN and ``converged`` False).

    Returns:
        ``kernel(rng_key, state, logdensity_fn, *params) -> (state, info)`` with ``info`` a
        `numpyro_parallel.fixed_point.FixedPointResult` over the block (``states``: the
        block's states; ``aux``: the base kernel's info for every step).

    Raises:
        ValueError: ``num_steps_per_block``, ``max_iterations`` or ``window`` < 1, unknown
            ``solver``/``strategy``, negative ``atol``/``rtol``.
        TypeError: non-integer ``num_steps_per_block``/``max_iterations``/``window``.
    """
    check_positive_int("num_steps_per_block", num_steps_per_block)
    check_solver_options(solver, strategy, atol, rtol, max_iterations, window)

    def kernel(rng_key, state, logdensity_fn, *params) -> tuple[Any, FixedPointResult]:
        step = lambda key, s: base_kernel(key, s, logdensity_fn, *params)
        states, info = run_chain(
            step, state, rng_key, num_steps_per_block, solver=solver, strategy=strategy,
            atol=atol, rtol=rtol, max_iterations=max_iterations, window=window,
            init_fn=lambda position: base_init(position, logdensity_fn),
            progress_bar=False,  # one block per call: the caller's loop shows progress
        )  # fmt: skip
        ok = jnp.asarray(True) if params_ok is None else params_ok(*params)
        poison = lambda x: nan_unless(ok, x) if jnp.issubdtype(x.dtype, jnp.inexact) else x
        states = jax.tree_util.tree_map(poison, states)
        last = jax.tree_util.tree_map(lambda x: x[-1], states)
        status = jnp.where(ok, info.status, NON_FINITE).astype(jnp.int32)
        return last, info._replace(states=states, status=status, converged=status == OK)

    return kernel


def as_top_level_api(
    logdensity_fn: Callable,
    base_kernel: Callable,
    base_init: Callable,
    params: tuple,
    num_steps_per_block: int,
    params_ok: Callable[..., jax.Array] | None = None,
    **solver_options: Any,
) -> SamplingAlgorithm:
    """A `SamplingAlgorithm` over blocks of any BlackJAX kernel.

    Args:
        logdensity_fn: log-density of the target.
        base_kernel: the base kernel ``kernel(rng_key, state, logdensity_fn, *params)``.
        base_init: the base ``init(position, logdensity_fn)``.
        params: the base kernel's parameters after ``logdensity_fn``.
        num_steps_per_block: steps per block.
        params_ok: validity of the parameters under tracing (see `build_kernel`).
        **solver_options: ``solver``, ``strategy``, ``atol``, ``rtol``, ``max_iterations``,
            ``window``.

    Returns:
        ``SamplingAlgorithm(init, step)``.
    """
    kernel = build_kernel(
        base_kernel, base_init, num_steps_per_block, params_ok=params_ok, **solver_options
    )
    return SamplingAlgorithm(
        lambda position, rng_key=None: init(position, logdensity_fn, base_init),
        lambda rng_key, state: kernel(rng_key, state, logdensity_fn, *params),
    )


def parallel_mala(
    logdensity_fn: Callable, step_size: float, num_steps_per_block: int, **solver_options: Any
) -> SamplingAlgorithm:
    """Blocks of BlackJAX MALA steps solved in parallel.

    Args:
        logdensity_fn: log-density of the target.
        step_size: MALA step size.
        num_steps_per_block: steps per block.
        **solver_options: ``solver``, ``strategy``, ``atol``, ``rtol``, ``max_iterations``,
            ``window``.

    Returns:
        ``SamplingAlgorithm(init, step)``.

    Raises:
        ValueError: ``step_size`` not finite and > 0 (when concrete); invalid block length or
            solver options (see `build_kernel`).
    """
    _positive("step_size", step_size)
    return as_top_level_api(
        logdensity_fn, blackjax.mala.build_kernel(), blackjax.mala.init, (step_size,),
        num_steps_per_block, params_ok=lambda h: _positive("step_size", h), **solver_options,
    )  # fmt: skip


def parallel_hmc(
    logdensity_fn: Callable,
    step_size: float,
    inverse_mass_matrix: Any,
    num_integration_steps: int,
    num_steps_per_block: int,
    **solver_options: Any,
) -> SamplingAlgorithm:
    """Blocks of BlackJAX HMC steps (fixed number of leapfrog steps) solved in parallel.

    Args:
        logdensity_fn: log-density of the target.
        step_size: leapfrog step size.
        inverse_mass_matrix: inverse mass matrix (diagonal or dense) as in BlackJAX.
        num_integration_steps: leapfrog steps per HMC step.
        num_steps_per_block: steps per block.
        **solver_options: ``solver``, ``strategy``, ``atol``, ``rtol``, ``max_iterations``,
            ``window``.

    Returns:
        ``SamplingAlgorithm(init, step)``.

    Raises:
        ValueError: ``step_size`` or ``inverse_mass_matrix`` not finite and positive (when
            concrete), ``num_integration_steps`` < 1, invalid block length or solver options.
    """
    _positive("step_size", step_size)
    _positive("inverse_mass_matrix", inverse_mass_matrix)
    check_positive_int("num_integration_steps", num_integration_steps)
    params = (step_size, inverse_mass_matrix, num_integration_steps)
    valid = lambda h, m, n: _positive("step_size", h) & _positive("inverse_mass_matrix", m)
    return as_top_level_api(
        logdensity_fn, blackjax.hmc.build_kernel(), blackjax.hmc.init, params,
        num_steps_per_block, params_ok=valid, **solver_options,
    )  # fmt: skip


def parallel_rwm(
    logdensity_fn: Callable, sigma: Any, num_steps_per_block: int, **solver_options: Any
) -> SamplingAlgorithm:
    """Blocks of Gaussian random-walk Metropolis steps solved in parallel.

    The default solver is ``"online_picard"`` (Grazzi & Zanella's Picard map on the accept
    decisions, `numpyro_parallel.fixed_point.OnlinePicard`): random-walk chains contract slowly
    under common random numbers, so Jacobi and Newton need close to ``num_steps_per_block``
    iterations, while online Picard confirms several steps per iteration (see the
    documentation).

    Args:
        logdensity_fn: log-density of the target.
        sigma: proposal standard deviation(s).
        num_steps_per_block: steps per block.
        **solver_options: ``solver`` (default ``"online_picard"``), ``strategy``, ``atol``,
            ``rtol``, ``max_iterations``, ``window``.

    Returns:
        ``SamplingAlgorithm(init, step)``.

    Raises:
        ValueError: ``sigma`` not finite and positive (when concrete), invalid block length
            or solver options.
    """
    _positive("sigma", sigma)
    solver_options = {"solver": "online_picard", **solver_options}
    params = (random_walk.normal(sigma),)
    return as_top_level_api(
        logdensity_fn, random_walk.build_additive_step(), random_walk.init, params,
        num_steps_per_block, params_ok=lambda _: _positive("sigma", sigma), **solver_options,
    )  # fmt: skip
