"""Conditional resampling for particle Gibbs: the reference particle keeps ancestor 0.

Each function returns ``indices[0] == 0`` and draws the other indices from the exact
conditional law of the unconditional scheme given that one output slot holds particle 0
(Andrieu, Doucet & Holenstein 2010, "Particle Markov chain Monte Carlo methods"). For the
stratified and systematic schemes the output slots are exchangeable after a uniform random
permutation, so the slot holding the reference and its uniform are drawn first (Chopin & Singh
2015, "On particle Gibbs sampling"). Residual and Metropolis resampling have no exact
conditional variant here.

Invalid weights behave as for the unconditional resamplers: `ValueError` naming ``weights``
when concrete; under tracing every slot, slot 0 included, holds the out-of-range sentinel N.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_positive_int, check_rng_key
from numpyro_parallel.smc.resampling import Resampler, multinomial, rejection
from numpyro_parallel.smc.weights import (
    as_log_weights,
    log_weights_valid,
    scaled_weights,
    with_sentinel,
)

__all__ = [
    "conditional_multinomial",
    "conditional_rejection",
    "conditional_stratified",
    "conditional_systematic",
    "get_conditional_resampler",
]


def _reference_first(indices: jax.Array, num_particles: int) -> jax.Array:
    """Slot 0 holds the reference (index 0), unless the sentinel N marks invalid weights."""
    sentinel = indices[0] == num_particles
    return indices.at[0].set(jnp.where(sentinel, num_particles, 0).astype(indices.dtype))


def conditional_multinomial(
    rng_key: jax.Array, weights: jax.Array, num_samples: int, *, is_log: bool = False
) -> jax.Array:
    """Conditional multinomial resampling: slot 0 keeps ancestor 0, the rest are i.i.d.

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``).
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        ``(num_samples,)`` int32 indices with ``indices[0] == 0`` (all N for invalid traced
        weights).
    """
    indices = multinomial(rng_key, weights, num_samples, is_log=is_log)
    return _reference_first(indices, jnp.shape(weights)[0])


def conditional_rejection(
    rng_key: jax.Array, weights: jax.Array, num_samples: int, *, is_log: bool = False
) -> jax.Array:
    """Conditional rejection resampling: slot 0 keeps ancestor 0, the rest are i.i.d.

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``).
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        ``(num_samples,)`` int32 indices with ``indices[0] == 0`` (all N for invalid traced
        weights).
    """
    indices = rejection(rng_key, weights, num_samples, is_log=is_log)
    return _reference_first(indices, jnp.shape(weights)[0])


def _conditional_strata(
    rng_key: jax.Array, log_weights: jax.Array, num_samples: int, shared: bool
) -> jax.Array:
    """Conditional stratified (``shared=False``) or systematic (``shared=True``) resampling."""
    dtype = log_weights.dtype
    weights = scaled_weights(log_weights)
    cdf = jnp.cumsum(weights)
    c0 = weights[0] / cdf[-1]  # probability mass of the reference particle
    key_slot, key_u, key_rest, key_perm = jax.random.split(rng_key, 4)
    m = num_samples
    lower = jnp.arange(m, dtype=dtype) / m
    # Overlap of stratum k with [0, c0): the reference's ancestor slot is drawn in proportion.
    overlap = jnp.clip(jnp.minimum(lower + 1.0 / m, c0) - lower, 0.0, None)
    slot = jax.random.categorical(key_slot, jnp.log(overlap))
    width = overlap[slot]
    u_slot = lower[slot] + width * jax.random.uniform(key_u, (), dtype=dtype)
    if shared:
        offset = u_slot * m - slot.astype(dtype)
        uniforms = (jnp.arange(m, dtype=dtype) + offset) / m
    else:
        offsets = jax.random.uniform(key_rest, (m,), dtype=dtype)
        uniforms = (jnp.arange(m, dtype=dtype) + offsets) / m
    uniforms = uniforms.at[slot].set(u_slot)
    indices = jnp.clip(
        jnp.searchsorted(cdf, uniforms * cdf[-1], side="right"), 0, weights.shape[0] - 1
    ).astype(jnp.int32)
    indices = indices.at[slot].set(0)
    # Put the reference slot first and the other slots in uniformly random order.
    others = jnp.where(jnp.arange(m) < slot, jnp.arange(m), jnp.arange(m) + 1)[: m - 1]
    others = jax.random.permutation(key_perm, others)
    order = jnp.concatenate([slot[None], others])
    return with_sentinel(indices[order], log_weights_valid(log_weights), weights.shape[0])


def conditional_stratified(
    rng_key: jax.Array, weights: jax.Array, num_samples: int, *, is_log: bool = False
) -> jax.Array:
    """Conditional stratified resampling (slot 0 keeps ancestor 0).

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``).
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        ``(num_samples,)`` int32 indices with ``indices[0] == 0`` (all N for invalid traced
        weights) (other slots in random order).
    """
    check_rng_key(rng_key)
    log_weights = as_log_weights(weights, is_log)
    num_samples = check_positive_int("num_samples", num_samples)
    return _conditional_strata(rng_key, log_weights, num_samples, shared=False)


def conditional_systematic(
    rng_key: jax.Array, weights: jax.Array, num_samples: int, *, is_log: bool = False
) -> jax.Array:
    """Conditional systematic resampling (slot 0 keeps ancestor 0).

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``).
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        ``(num_samples,)`` int32 indices with ``indices[0] == 0`` (all N for invalid traced
        weights) (other slots in random order).
    """
    check_rng_key(rng_key)
    log_weights = as_log_weights(weights, is_log)
    num_samples = check_positive_int("num_samples", num_samples)
    return _conditional_strata(rng_key, log_weights, num_samples, shared=True)


_CONDITIONAL: dict[str, Resampler] = {
    "multinomial": conditional_multinomial,
    "stratified": conditional_stratified,
    "systematic": conditional_systematic,
    "rejection": conditional_rejection,
}


def get_conditional_resampler(name: str | Resampler, *, argument: str = "name") -> Resampler:
    """Look up the conditional (particle Gibbs) variant of a resampler.

    Args:
        name: one of ``"multinomial"``, ``"stratified"``, ``"systematic"``, ``"rejection"``,
            or a callable returning indices with ``indices[0] == 0``.
        argument: the caller's argument name, used in the error message.

    Returns:
        The conditional resampling function.
    """
    if callable(name):
        return name
    if not isinstance(name, str) or name not in _CONDITIONAL:
        raise ValueError(
            f"`{argument}` must be one of {sorted(_CONDITIONAL)} for conditional resampling "
            f"(residual and metropolis have no exact conditional variant); got {name!r}."
        )
    return _CONDITIONAL[name]
