"""Result and state types of the particle filter (`numpyro_parallel.smc.particle_filter`).

Status codes: `numpyro_parallel.smc.status` (0 ok, 1 collapsed, 2 impossible, 3 invalid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

__all__ = ["ParticleFilter", "ParticleFilterInfo", "ParticleFilterOutput", "ParticleFilterState"]


class ParticleFilterState(NamedTuple):
    """Particle system after assimilating ``observations[time]``.

    Attributes:
        particles: ``(N, ...)`` particles.
        log_weights: ``(N,)`` normalised log-weights.
        log_likelihood: running log-likelihood estimate up to ``time``.
        time: int32 index of the last assimilated observation.
        status: worst status so far (int32, see `numpyro_parallel.smc.status`).

    After an ``impossible`` or ``invalid`` step the log-weights are NaN (the filtering
    distribution is undefined) and the next step restarts from uniform weights; the
    log-likelihood stays ``-inf`` / NaN.
    """

    particles: Any
    log_weights: jax.Array
    log_likelihood: jax.Array
    time: jax.Array
    status: jax.Array | int = 0


class ParticleFilterInfo(NamedTuple):
    """Per-step diagnostics.

    Attributes:
        ancestors: ``(N,)`` ancestor indices used to propagate (identity if not resampled).
        ess: effective sample size of the weights after the step.
        log_likelihood_term: log of the incremental likelihood estimate.
        resampled: whether resampling happened before propagation.
        status: int32 status of the step (0 ok, 1 collapsed, 2 impossible, 3 invalid).
    """

    ancestors: jax.Array
    ess: jax.Array
    log_likelihood_term: jax.Array
    resampled: jax.Array
    status: jax.Array


class ParticleFilterOutput(NamedTuple):
    """Result of `run` (leading axis T on all but ``log_likelihood``).

    Attributes:
        particles: ``(T, N, ...)`` filtering particles.
        log_weights: ``(T, N)`` normalised filtering log-weights.
        ancestors: ``(T, N)`` ancestors; row 0 is the identity.
        ess: ``(T,)`` effective sample sizes.
        log_likelihood_terms: ``(T,)`` incremental log-likelihood estimates.
        resampled: ``(T,)`` resampling flags (False at t = 0).
        log_likelihood: scalar log-likelihood estimate: ``-inf`` if some step was impossible
            (every particle had zero weight), NaN if some log-weight was NaN or ``+inf``.
        step_status: ``(T,)`` int32 status of each step (0 ok, 1 collapsed: ESS below
            ``min(collapse_ess, N / 2)``, 2 impossible, 3 invalid; see
            `numpyro_parallel.smc.status`).
        status: worst status over the steps (0 when all is well).
    """

    particles: Any
    log_weights: jax.Array
    ancestors: jax.Array
    ess: jax.Array
    log_likelihood_terms: jax.Array
    resampled: jax.Array
    log_likelihood: jax.Array
    step_status: jax.Array
    status: jax.Array


class ParticleFilter(NamedTuple):
    """BlackJAX-style algorithm: ``init(rng_key)`` and ``step(rng_key, state)``.

    Attributes:
        init: ``(rng_key) -> state`` at time 0.
        step: ``(rng_key, state) -> (state, info)`` assimilating the next observation.
    """

    init: Callable
    step: Callable
