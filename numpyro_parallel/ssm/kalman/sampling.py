"""Parallel-in-time sampling of Kalman state trajectories (forward-filter backward-sample).

Given the filtered marginals, ``p(x_{0:T-1} | y)`` factorises backwards as
``x_t = E_t x_{t+1} + g_t + L_t eps_t`` with the smoother elements ``(E_t, g_t, L_t)``: an affine
recursion, solved by the same scan driver as the filter, so sampling is parallel in time too.

Reference: Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers",
IEEE TAC, §V.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_sample_shape, nan_unless
from numpyro_parallel.scan import affine_combine, associative_scan
from numpyro_parallel.ssm.kalman.checks import finite_flag
from numpyro_parallel.ssm.kalman.inference import (
    GaussianSSMParams,
    _filter,
    _observations,
    _prior_and_transitions,
    _smoother_elements,
    _validated,
    resolve_kalman_strategy,
)
from numpyro_parallel.ssm.kalman.sharded import sharded_sample_states
from numpyro_parallel.strategy import Sharded, StrategyLike

__all__ = ["kalman_sample_states"]


def kalman_sample_states(
    rng_key: jax.Array,
    params: GaussianSSMParams,
    y: jax.Array,
    sample_shape: tuple[int, ...] = (),
    *,
    strategy: StrategyLike = "auto",
) -> jax.Array:
    """Draw state trajectories from ``p(x_{0:T-1} | y)`` (forward-filter backward-sample).

    The backward pass ``x_t = E_t x_{t+1} + g_t + L_t eps_t`` is an affine recursion, solved
    by the same scan driver for all draws at once, so sampling is parallel in time as well;
    with `Sharded()` the filter and the backward pass run in one `jax.shard_map`.

    Args:
        rng_key: JAX PRNG key.
        params: model in square-root, time-expanded form.
        y: ``(T, p)`` observations; NaN entries are missing.
        sample_shape: leading shape of the returned draws (an int n means ``(n,)``; entries >= 0).
        strategy: evaluation strategy, as in `kalman_filter`.

    Returns:
        ``(*sample_shape, T, d)`` trajectories (NaN where `kalman_filter` gives NaN).

    Raises:
        TypeError, ValueError: as `kalman_filter`, or ``sample_shape`` not a tuple of
            non-negative ints.
    """
    params, y = _validated(params, y)
    sample_shape = check_sample_shape(sample_shape)
    return _sample(
        rng_key, params, y, sample_shape, strategy=resolve_kalman_strategy(strategy, params, y)
    )


@partial(jax.jit, static_argnames=("sample_shape", "strategy"))
def _sample(rng_key, params, y, sample_shape, *, strategy) -> jax.Array:
    num_steps, d = y.shape[0], params.initial_mean.shape[-1]
    eps = jax.random.normal(rng_key, (*sample_shape, num_steps, d), y.dtype)
    noise = jnp.moveaxis(eps.reshape(-1, num_steps, d), 0, -1)  # (T, d, S)
    if isinstance(strategy, Sharded):  # filter, smoother elements and sampling in one shard_map
        prior, transitions = _prior_and_transitions(params)
        observations = _observations(params, y)
        states = sharded_sample_states(prior, transitions, observations, noise, strategy)
        states = nan_unless(finite_flag(params, y), states)
    else:
        elements = _smoother_elements(params, _filter(params, y, strategy=strategy))
        # x_t = E_t x_{t+1} + g_t + L_t eps_t backwards from x_{T-1} (E_{T-1} = 0): one suffix
        # scan of affine maps for all draws, the offsets as (d, S) matrices.
        offsets = elements.g[..., None] + elements.L @ noise
        maps = (elements.E, offsets)
        states = associative_scan(affine_combine, maps, strategy=strategy, reverse=True)[1]
    return jnp.moveaxis(states, -1, 0).reshape(*sample_shape, num_steps, d)
