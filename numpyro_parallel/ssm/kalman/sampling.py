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

from numpyro_parallel._checks import check_sample_shape
from numpyro_parallel.scan import affine_recursion
from numpyro_parallel.ssm.kalman.inference import (
    GaussianSSMParams,
    _filter,
    _smoother_elements,
    _validated,
    resolve_kalman_strategy,
)
from numpyro_parallel.strategy import StrategyLike

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
    by the same scan driver, so sampling is parallel in time as well.

    Args:
        rng_key: JAX PRNG key.
        params: model in square-root, time-expanded form.
        y: ``(T, p)`` observations; NaN entries are missing.
        sample_shape: leading shape of the returned draws.
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
    filtered = _filter(params, y, strategy=strategy)
    elements = _smoother_elements(params, filtered)
    num_steps, d = filtered.mean.shape
    eps = jax.random.normal(rng_key, (*sample_shape, num_steps, d), filtered.mean.dtype)

    def one(noise):
        offsets = elements.g + jnp.einsum("tij,tj->ti", elements.L, noise)
        # x_t = E_t x_{t+1} + g_t + L_t eps_t backwards from x_{T-1} (E_{T-1} = 0).
        return affine_recursion(
            elements.E, offsets, jnp.zeros_like(offsets[0]), strategy=strategy, reverse=True
        )

    flat = eps.reshape(-1, num_steps, d)
    return jax.vmap(one)(flat).reshape(*sample_shape, num_steps, d)
