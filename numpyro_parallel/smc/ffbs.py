"""Forward-filtering backward-sampling (FFBS): the sequential particle smoother.

Given the output of :func:`numpyro_parallel.smc.particle_filter.run`, draws trajectories
backwards in time: the last state from the final filtering weights, then
``x_t`` from particle i with probability proportional to ``w_t^i f(x_{t+1} | x_t^i)``
(Godsill, Doucet & West 2004, "Monte Carlo smoothing for nonlinear time series"). Cost
O(M N T) for M trajectories; it is the sequential counterpart of the dSMC smoother
(:mod:`numpyro_parallel.smc.dsmc`), which reuses the same pairwise weights in a tree.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel.smc.particle_filter import ParticleFilterOutput

__all__ = ["backward_sampling"]


def backward_sampling(
    rng_key: jax.Array,
    filter_output: ParticleFilterOutput,
    transition_log_prob: Callable,
    num_samples: int,
) -> jax.Array:
    """Draw smoothing trajectories by backward sampling.

    Args:
        rng_key: PRNG key.
        filter_output: particle-filter output with ``particles`` of shape ``(T, N, d)``.
        transition_log_prob: ``(x_prev, x, time) -> log f(x_time | x_{time-1})``.
        num_samples: number of trajectories M.

    Returns:
        ``(M, T, d)`` trajectories (the particle indices follow from the draws).
    """
    particles = filter_output.particles
    log_weights = filter_output.log_weights
    if particles.ndim != 3:
        raise ValueError(f"`filter_output.particles` must be (T, N, d); got {particles.shape}.")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int; got {num_samples!r}.")
    num_steps = particles.shape[0]
    key_last, key_back = jax.random.split(rng_key)
    last_idx = jax.random.categorical(key_last, log_weights[-1], shape=(num_samples,))
    last = particles[-1][last_idx]

    def body(x_next, inputs):
        key, x_t, lw_t, t = inputs
        log_f = jax.vmap(
            jax.vmap(transition_log_prob, in_axes=(0, None, None)), in_axes=(None, 0, None)
        )(x_t, x_next, t + 1)  # (M, N)
        keys = jax.random.split(key, num_samples)
        idx = jax.vmap(jax.random.categorical)(keys, lw_t[None, :] + log_f)
        x = x_t[idx]
        return x, x

    keys = jax.random.split(key_back, num_steps - 1)
    inputs = (keys, particles[:-1], log_weights[:-1], jnp.arange(num_steps - 1))
    _, earlier = lax.scan(body, last, inputs, reverse=True)
    trajectories = jnp.concatenate([earlier, last[None]], axis=0)  # (T, M, d)
    return jnp.swapaxes(trajectories, 0, 1)
