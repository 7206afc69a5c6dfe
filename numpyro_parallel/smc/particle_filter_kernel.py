"""The particle filter's numerics: weighting, the initial state and one propagate-weigh step.

Kept apart from the public ``init`` / ``build_kernel`` / ``run`` of
`numpyro_parallel.smc.particle_filter` (which validate arguments and warn), so that the
BlackJAX-style API and the ``lax.scan`` runner share one implementation. Gradients use the
stop-gradient ("score-form") estimator of Ścibior & Wood (2021).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel.smc.feynman_kac import is_missing, masked_potential, sanitised
from numpyro_parallel.smc.particle_filter_types import ParticleFilterInfo, ParticleFilterState
from numpyro_parallel.smc.resampling import ess
from numpyro_parallel.smc.status import INVALID, step_status
from numpyro_parallel.smc.weights import log_normalize, log_weights_valid

__all__ = ["initial_state", "make_kernel", "weigh"]


def weigh(unnormalised: jax.Array, collapse_ess: float):
    """Normalised log-weights, log-normaliser, ESS and status of one weighting step."""
    valid = log_weights_valid(unnormalised)
    normalised, total = log_normalize(unnormalised)
    normalised = jnp.where(valid, normalised, jnp.full_like(normalised, jnp.nan))
    ess_value = ess(normalised)
    status = step_status(unnormalised, ess_value, collapse_ess)
    total = jnp.where(status == INVALID, jnp.full_like(total, jnp.nan), total)
    return normalised, total, ess_value, status


def initial_state(rng_key, model, observation, num_particles, collapse_ess) -> ParticleFilterState:
    keys = jax.random.split(rng_key, num_particles)
    particles = jax.vmap(model.init_sample, in_axes=(0, None))(keys, observation)
    missing = is_missing(observation)
    safe = sanitised(observation, missing)
    log_g = jax.vmap(model.init_log_potential, in_axes=(0, None))(particles, safe)
    log_g = masked_potential(log_g, missing)
    if model.init_log_correction is not None:
        log_g = log_g + jax.vmap(model.init_log_correction, in_axes=(0, None))(
            particles, observation
        )
    normalised, total, _, status = weigh(log_g, collapse_ess)
    log_likelihood = total - jnp.log(num_particles).astype(total.dtype)
    return ParticleFilterState(particles, normalised, log_likelihood, jnp.int32(0), status)


def make_kernel(model, resample, gradient_estimator, collapse_ess):
    def kernel(rng_key: jax.Array, state: ParticleFilterState, observations: Any):
        n = state.log_weights.shape[0]
        time = state.time + 1
        observation = jax.tree_util.tree_map(
            lambda y: lax.dynamic_index_in_dim(y, time, keepdims=False), observations
        )
        # After an impossible / invalid step the weights are NaN: restart from uniform.
        previous_lw = state.log_weights
        uniform = jnp.full_like(previous_lw, -jnp.log(n))
        previous_lw = jnp.where(log_weights_valid(previous_lw), previous_lw, uniform)
        key_resample, key_propagate = jax.random.split(rng_key)
        ancestors, carried, resampled = resample(key_resample, lax.stop_gradient(previous_lw))
        if gradient_estimator == "score":
            # Same value as `carried`; gradient of the selected weights flows through.
            selected = previous_lw[ancestors]
            carried = carried + selected - lax.stop_gradient(selected)
        carried = jnp.where(resampled, carried, previous_lw)
        previous = jax.tree_util.tree_map(lambda x: x[ancestors], state.particles)
        keys = jax.random.split(key_propagate, n)
        particles = jax.vmap(model.propagate_sample, in_axes=(0, 0, None, None))(
            keys, previous, observation, time
        )
        missing = is_missing(observation)
        safe = sanitised(observation, missing)
        log_g = jax.vmap(model.log_potential, in_axes=(0, 0, None, None))(
            previous, particles, safe, time
        )
        log_g = masked_potential(log_g, missing)
        if model.log_correction is not None:
            log_g = log_g + jax.vmap(model.log_correction, in_axes=(0, 0, None, None))(
                previous, particles, observation, time
            )
        normalised, increment, ess_value, status = weigh(carried + log_g, collapse_ess)
        # A step past the last observation has nothing to assimilate: NaN, not a reuse.
        num_steps = jax.tree_util.tree_leaves(observations)[0].shape[0]
        increment = jnp.where(time < num_steps, increment, jnp.full_like(increment, jnp.nan))
        status = jnp.where(time < num_steps, status, INVALID).astype(jnp.int32)
        new_state = ParticleFilterState(
            particles,
            normalised,
            state.log_likelihood + increment,
            time,
            jnp.maximum(jnp.asarray(state.status, jnp.int32), status),
        )
        info = ParticleFilterInfo(ancestors, ess_value, increment, resampled, status)
        return new_state, info

    return kernel
