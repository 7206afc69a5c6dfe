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

A value outside the support of state k has log-emission ``-inf`` (NumPyro's ``log_prob`` does
not always check: ``Uniform`` returns ``-log(high - low)`` everywhere), also when the support
depends on the parameters and so differs between states. Observations of a discrete emission
must be integers (or NaN): non-integer or infinite values raise when concrete and give NaN
log-emissions under tracing, never the density of a truncated value.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, Independent, MultivariateNormal

from numpyro_parallel._checks import concrete

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


def _full_shape(observation_dist: Distribution, value: jax.Array) -> tuple[int, ...]:
    """Broadcast shape of ``value`` (with its state axis) and the distribution's shapes."""
    shape = tuple(observation_dist.batch_shape) + tuple(observation_dist.event_shape)
    return jax.lax.broadcast_shapes(jnp.shape(value), shape)


def _fill(observation_dist: Distribution, value: jax.Array, missing: jax.Array) -> jax.Array:
    """Replace missing entries by a point of the support (and cast discrete data to int).

    ``value`` and ``missing`` carry the state axis; both are broadcast to the full
    ``batch + (T, K) + event`` shape first, so that a support whose bounds depend on the
    parameters (``Uniform``, ``TruncatedNormal``) gives each state its own feasible point.
    """
    shape = _full_shape(observation_dist, value)
    value = jnp.broadcast_to(value, shape)
    missing = jnp.broadcast_to(missing, shape)
    feasible = observation_dist.support.feasible_like(value)
    filled = jnp.where(missing, feasible.astype(value.dtype), value)
    if observation_dist.support.is_discrete and jnp.issubdtype(value.dtype, jnp.floating):
        filled = filled.astype(int)  # counts/categories given as floats (NaN = missing)
    return filled


@contextlib.contextmanager
def _quiet_support():
    """Silence NumPyro's out-of-support warning: a value may lie outside the support of some
    states (density zero there, `_support_log_prob`) and inside that of others."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Out-of-support values", category=UserWarning)
        yield


def _support_log_prob(observation_dist: Distribution, filled: jax.Array) -> jax.Array:
    """``observation_dist.log_prob(filled)``, ``-inf`` outside the support (density zero).

    NumPyro's ``log_prob`` checks the support only under argument validation (``Uniform``
    returns ``-log(high - low)`` everywhere otherwise), so the mask is applied here. A NaN
    ``log_prob`` stays NaN, and so does the density under a support whose bounds are NaN (an
    invalid parameter under tracing, which NumPyro's validation would turn into ``-inf``).
    Supports that cannot be evaluated (``constraints.dependent``) are left alone.
    """
    support = observation_dist.support
    with jax.numpy_rank_promotion("allow"), _quiet_support():
        log_p = observation_dist.log_prob(filled)
        try:
            inside = support(filled)
            feasible = support.feasible_like(filled)
        except (NotImplementedError, ValueError):
            return log_p
        log_p = jnp.where(inside | jnp.isnan(log_p), log_p, -jnp.inf)
        if jnp.issubdtype(jnp.result_type(feasible), jnp.floating):
            event_axes = tuple(range(-len(observation_dist.event_shape), 0))
            bad_bounds = jnp.any(jnp.isnan(feasible), axis=event_axes)
            log_p = jnp.where(bad_bounds, jnp.nan, log_p)
    return log_p


def _independent_partial(observation_dist: Independent, value, component_missing):
    base = observation_dist.base_dist
    log_p = _support_log_prob(base, _fill(base, value, component_missing))
    with jax.numpy_rank_promotion("allow"):
        log_p = jnp.where(component_missing, jnp.zeros_like(log_p), log_p)
    return jnp.sum(log_p, axis=-1)


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


def _non_integer(observation_dist: Distribution, y: jax.Array, component_missing) -> jax.Array:
    """Entries of floating ``y`` that cannot be a value of a discrete emission (``2.5``, inf).

    Returns a bool array shaped like ``y`` (all False for continuous emissions or integer
    ``y``). Concrete offending values raise; the caller turns traced ones into NaN.
    """
    if not (observation_dist.support.is_discrete and jnp.issubdtype(y.dtype, jnp.floating)):
        return jnp.zeros(y.shape, bool)
    bad = ~component_missing & ((y != jnp.round(y)) | jnp.isinf(y))
    values = concrete(bad)
    if values is not None and np.any(values):
        example = np.asarray(y)[values].ravel()[0]
        raise ValueError(
            f"`y` must hold integer values for the discrete emission distribution "
            f"{type(observation_dist).__name__} (NaN marks a missing value); got "
            f"{int(values.sum())} non-integer or infinite entries, e.g. {example}."
        )
    return bad


def log_emissions(observation_dist: Distribution, y: jax.Array) -> jax.Array:
    """``log p(y_t | z_t = k)`` for every t and k, 0 where ``y_t`` is entirely missing.

    A value outside the support of state k gets ``-inf`` (density zero), also for supports
    that depend on the parameters (``Uniform``, ``TruncatedNormal``). Under a discrete emission
    (``Poisson``, ``Categorical``, ...) floating observations must be integers or NaN
    (missing); other values are never truncated: concrete ones raise, traced ones make the
    log-emissions of their time step NaN (so the log-density is NaN).

    Args:
        observation_dist: emission distribution with batch shape ``(..., K)`` and event shape
            ``E``.
        y: observations ``batch + (T,) + E``; NaN entries are missing.

    Returns:
        ``batch + (T, K)`` log-emission densities.

    Raises:
        ValueError: concrete non-integer or infinite ``y`` under a discrete emission.
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
            invalid = jnp.zeros(y.shape, bool)
            log_em = _gaussian_partial(observation_dist, value, mask)
        else:
            invalid = _non_integer(observation_dist.base_dist, y, component_missing)
            log_em = _independent_partial(observation_dist, value, mask)
    else:
        invalid = _non_integer(observation_dist, y, component_missing)
        if event:  # any missing component drops the whole vector
            missing = jnp.any(component_missing, axis=event_axes)
        missing_full = jnp.reshape(missing, missing.shape + (1,) * len(event))
        value = jnp.expand_dims(y, state_axis)
        filled = _fill(observation_dist, value, jnp.expand_dims(missing_full, state_axis))
        log_em = _support_log_prob(observation_dist, filled)
    missing = jnp.broadcast_to(missing[..., None], log_em.shape)
    log_em = jnp.where(missing, jnp.zeros_like(log_em), log_em)
    step_invalid = jnp.any(invalid, axis=event_axes) if event else invalid
    step_invalid = jnp.broadcast_to(step_invalid[..., None], log_em.shape)
    return jnp.where(step_invalid, jnp.nan, log_em)
