"""Log-emission densities ``log p(y_t | z_t = k)`` of a `DiscreteHMM`, with missing data.

NaN entries of the observations are missing. A scalar observation that is NaN contributes
nothing (log-emission 0). For vector observations the missing components are marginalised out
exactly where the emission distribution allows it:

- ``Independent`` over one axis (e.g. ``Normal(loc, scale).to_event(1)``, ``Poisson(rates)
  .to_event(1)``): the log-densities of the observed components are summed;
- ``MultivariateNormal``: the density of the observed components under the marginal
  ``N(mu_o, Sigma_oo)``, computed with static shapes by replacing the missing rows and columns
  of the covariance by those of the identity and the missing values by the mean (which adds
  exactly ``-log(2 pi) / 2`` per missing component, removed again).

For any other multivariate distribution a NaN in any component drops the whole vector ``y_t``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, Independent, MultivariateNormal

__all__ = ["log_emissions", "supports_partial_missing"]


def supports_partial_missing(observation_dist: Distribution) -> bool:
    """Whether missing components of a vector observation are marginalised exactly.

    Args:
        observation_dist: the emission distribution.

    Returns:
        True for ``Independent`` over one axis of a univariate distribution and for
        ``MultivariateNormal``.
    """
    if isinstance(observation_dist, MultivariateNormal):
        return True
    return (
        isinstance(observation_dist, Independent)
        and observation_dist.reinterpreted_batch_ndims == 1
        and observation_dist.base_dist.event_shape == ()
    )


def _fill(observation_dist: Distribution, y: jax.Array, missing: jax.Array) -> jax.Array:
    """Replace missing entries by a point of the support (and cast discrete data to int)."""
    feasible = observation_dist.support.feasible_like(y)
    filled = jnp.where(missing, feasible.astype(y.dtype), y)
    if observation_dist.support.is_discrete and jnp.issubdtype(y.dtype, jnp.floating):
        filled = filled.astype(int)  # counts/categories given as floats (NaN = missing)
    return filled


def _independent_partial(observation_dist: Independent, value, component_missing):
    base = observation_dist.base_dist
    with jax.numpy_rank_promotion("allow"):
        log_p = base.log_prob(_fill(base, value, component_missing))
    return jnp.sum(jnp.where(component_missing, jnp.zeros_like(log_p), log_p), axis=-1)


def _gaussian_partial(observation_dist: MultivariateNormal, value, component_missing):
    loc, scale_tril = observation_dist.loc, observation_dist.scale_tril
    covariance = scale_tril @ jnp.swapaxes(scale_tril, -1, -2)
    observed = ~component_missing
    both = observed[..., :, None] & observed[..., None, :]
    eye = jnp.eye(loc.shape[-1], dtype=loc.dtype)
    with jax.numpy_rank_promotion("allow"):
        reduced = jnp.where(both, covariance, eye * (~observed[..., :, None]))
        value = jnp.where(component_missing, loc, value)
        log_p = MultivariateNormal(loc, covariance_matrix=reduced).log_prob(value)
    num_missing = jnp.sum(component_missing, axis=-1)
    return log_p + 0.5 * math.log(2 * math.pi) * num_missing


def log_emissions(observation_dist: Distribution, y: jax.Array) -> jax.Array:
    """``log p(y_t | z_t = k)`` for every t and k, 0 where ``y_t`` is entirely missing.

    Args:
        observation_dist: emission distribution with batch shape ``(..., K)`` and event shape
            ``E``.
        y: observations ``batch + (T,) + E``; NaN entries are missing.

    Returns:
        ``batch + (T, K)`` log-emission densities.
    """
    event = tuple(observation_dist.event_shape)
    event_axes = tuple(range(-len(event), 0))
    if jnp.issubdtype(y.dtype, jnp.floating):
        component_missing = jnp.isnan(y)
    else:
        component_missing = jnp.zeros(y.shape, bool)
    missing = jnp.all(component_missing, axis=event_axes) if event else component_missing
    state_axis = y.ndim - len(event)
    partial = len(event) == 1 and supports_partial_missing(observation_dist)
    if partial:
        value = jnp.expand_dims(y, state_axis)
        mask = jnp.expand_dims(component_missing, state_axis)
        if isinstance(observation_dist, MultivariateNormal):
            log_em = _gaussian_partial(observation_dist, value, mask)
        else:
            log_em = _independent_partial(observation_dist, value, mask)
    else:
        if event:  # any missing component drops the whole vector
            missing = jnp.any(component_missing, axis=event_axes)
        missing_full = jnp.reshape(missing, missing.shape + (1,) * len(event))
        value = jnp.expand_dims(_fill(observation_dist, y, missing_full), state_axis)
        with jax.numpy_rank_promotion("allow"):
            log_em = observation_dist.log_prob(value)
    missing = jnp.broadcast_to(missing[..., None], log_em.shape)
    return jnp.where(missing, jnp.zeros_like(log_em), log_em)
