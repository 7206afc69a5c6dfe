"""Forward-filtering backward-sampling (FFBS): the sequential particle smoother.

Given the output of `numpyro_parallel.smc.particle_filter.run`, draws trajectories
backwards in time: the last state from the final filtering weights, then
``x_t`` from particle i with probability proportional to ``w_t^i f(x_{t+1} | x_t^i)``
(Godsill, Doucet & West 2004, "Monte Carlo smoothing for nonlinear time series"). Cost
O(M N T) for M trajectories; it is the sequential counterpart of the dSMC smoother
(`numpyro_parallel.smc.dsmc`), which reuses the same pairwise weights in a tree.

Failure modes: concrete filtering weights with NaN rows (a particle filter whose status is
``impossible`` or ``invalid``) raise `ValueError`; under tracing such a step, or a backward
step where ``f(x_{t+1} | x_t^i)`` is zero (or NaN) for every particle i, makes the affected
trajectories NaN from that step back to time 0 instead of picking an arbitrary particle.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from numpyro_parallel._checks import check_positive_int, concrete
from numpyro_parallel.smc.particle_filter_types import ParticleFilterOutput
from numpyro_parallel.smc.weights import log_weights_valid

__all__ = ["backward_sampling"]


def _nan_where(bad: jax.Array, x: jax.Array) -> jax.Array:
    """NaN rows of ``x`` (M, d) where ``bad`` (M,) or scalar holds."""
    bad = jnp.broadcast_to(bad, x.shape[:1])
    return jnp.where(bad[:, None], jnp.full_like(x, jnp.nan), x)


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
        num_samples: number of trajectories M (positive int).

    Returns:
        ``(M, T, d)`` trajectories (the particle indices follow from the draws); NaN where
        no particle could be drawn (see the module docstring).

    Raises:
        TypeError: ``filter_output`` is not a particle-filter output, ``transition_log_prob``
            not callable or ``num_samples`` not an int.
        ValueError: bad shapes, T = 0, ``num_samples`` < 1 or NaN filtering weights.
    """
    if not isinstance(filter_output, ParticleFilterOutput):
        raise TypeError(
            "`filter_output` must be the ParticleFilterOutput of `run_particle_filter`; "
            f"got {type(filter_output).__name__}."
        )
    if not callable(transition_log_prob):
        raise TypeError(
            f"`transition_log_prob` must be callable; got {type(transition_log_prob).__name__}."
        )
    num_samples = check_positive_int("num_samples", num_samples)
    particles = jnp.asarray(filter_output.particles)
    log_weights = jnp.asarray(filter_output.log_weights)
    if particles.ndim != 3:
        raise ValueError(f"`filter_output.particles` must be (T, N, d); got {particles.shape}.")
    if particles.shape[0] == 0 or particles.shape[1] == 0:
        raise ValueError(
            f"`filter_output.particles` must have T >= 1 and N >= 1; got {particles.shape}."
        )
    if log_weights.shape != particles.shape[:2]:
        raise ValueError(
            f"`filter_output.log_weights` must have shape {particles.shape[:2]}; "
            f"got {log_weights.shape}."
        )
    values = concrete(log_weights)
    if values is not None and not np.all(np.asarray(log_weights_valid(values))):
        bad = np.flatnonzero(~np.asarray(log_weights_valid(values)))
        raise ValueError(
            f"`filter_output.log_weights` are invalid (NaN or all -inf) at steps "
            f"{bad[:10].tolist()}: the particle filter's status is not ok, nothing to smooth."
        )
    num_steps = particles.shape[0]
    key_last, key_back = jax.random.split(rng_key)
    last_ok = log_weights_valid(log_weights[-1])
    last_idx = jax.random.categorical(key_last, log_weights[-1], shape=(num_samples,))
    last = _nan_where(~last_ok, particles[-1][last_idx])

    def body(x_next, inputs):
        key, x_t, lw_t, t = inputs
        log_f = jax.vmap(
            jax.vmap(transition_log_prob, in_axes=(0, None, None)), in_axes=(None, 0, None)
        )(x_t, x_next, t + 1)  # (M, N)
        keys = jax.random.split(key, num_samples)
        log_b = lw_t[None, :] + log_f
        idx = jax.vmap(jax.random.categorical)(keys, log_b)
        x = _nan_where(~log_weights_valid(log_b), x_t[idx])
        return x, x

    keys = jax.random.split(key_back, num_steps - 1)
    inputs = (keys, particles[:-1], log_weights[:-1], jnp.arange(num_steps - 1))
    _, earlier = lax.scan(body, last, inputs, reverse=True)
    trajectories = jnp.concatenate([earlier, last[None]], axis=0)  # (T, M, d)
    return jnp.swapaxes(trajectories, 0, 1)
