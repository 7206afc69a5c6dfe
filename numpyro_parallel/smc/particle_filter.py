"""Particle filters in Feynman–Kac form with BlackJAX-style ``init`` / ``step``.

A model is a `FeynmanKac` tuple of per-particle functions: ``init_sample`` draws x_0,
``propagate_sample`` draws x_t given x_{t-1} (the transition for a bootstrap filter, any
proposal for a guided filter), ``init_log_potential`` and ``log_potential`` weight them
(observation log-density for a bootstrap filter; ``g(y|x) f(x|x') / q(x|x')`` for a guided one).
`bootstrap` and `guided` build the tuple from densities
(`numpyro_parallel.smc.feynman_kac`). Observations follow the package convention:
``observations[t]`` is seen by ``x_t``; a time step whose observation is all NaN is missing and
its potential is skipped.

Gradients of the log-likelihood use the stop-gradient ("score-form") estimator of Ścibior & Wood
(2021, "Differentiable particle filtering without modifying the forward pass"): resampled
weights are ``w[a] / stop_gradient(w[a])`` times their value, which leaves the forward pass
unchanged and makes ``jax.grad`` of the log-likelihood the Fisher-identity score estimate
(Poyiadjis, Doucet & Singh 2011). ``gradient_estimator="none"`` drops that term (biased).

Failure modes (`numpyro_parallel.smc.status`): every step gets a status. An observation
impossible under every particle (all log-weights ``-inf``) makes the log-likelihood ``-inf``
(status ``impossible``); NaN or ``+inf`` log-weights make it NaN (``invalid``); an ESS below
``min(collapse_ess, N / 2)`` is reported as ``collapsed``. After an impossible or invalid step
the filter restarts from uniform weights (the log-likelihood keeps its ``-inf`` / NaN). Outside
``jit`` a non-OK status emits a `RuntimeWarning`. Concrete bad arguments raise `ValueError` /
`TypeError` naming the argument.

References: Gordon, Salmond & Smith (1993); Chopin & Papaspiliopoulos (2020), "An Introduction
to Sequential Monte Carlo", chapters 5 and 10.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel._checks import check_positive_int, concrete
from numpyro_parallel.smc.feynman_kac import (
    FeynmanKac,
    bootstrap,
    check_model,
    guided,
)
from numpyro_parallel.smc.particle_filter_checks import (
    check_collapse_ess,
    check_kernel_args,
    num_steps_of,
)
from numpyro_parallel.smc.particle_filter_kernel import initial_state, make_kernel
from numpyro_parallel.smc.particle_filter_types import (
    ParticleFilter,
    ParticleFilterInfo,
    ParticleFilterOutput,
    ParticleFilterState,
)
from numpyro_parallel.smc.resampling import ess
from numpyro_parallel.smc.status import warn_status

__all__ = [
    "FeynmanKac",
    "ParticleFilter",
    "ParticleFilterInfo",
    "ParticleFilterOutput",
    "ParticleFilterState",
    "as_top_level_api",
    "bootstrap",
    "build_kernel",
    "guided",
    "init",
    "run",
]


def init(
    rng_key: jax.Array,
    model: FeynmanKac,
    observation: Any,
    num_particles: int,
    *,
    collapse_ess: float = 2.0,
) -> ParticleFilterState:
    """Draw and weight the initial particles.

    Args:
        rng_key: PRNG key.
        model: the Feynman–Kac model.
        observation: ``observations[0]``.
        num_particles: number of particles N (positive int).
        collapse_ess: status ``collapsed`` when the ESS is below ``min(collapse_ess, N / 2)``.

    Returns:
        The state at time 0 (a `RuntimeWarning` outside ``jit`` when its status is not OK).

    Raises:
        TypeError: ``model`` is not a FeynmanKac of callables, ``num_particles`` not an int.
        ValueError: ``num_particles`` < 1.
    """
    check_model(model)
    num_particles = check_positive_int("num_particles", num_particles)
    state = initial_state(
        rng_key, model, observation, num_particles, check_collapse_ess(collapse_ess)
    )
    warn_status(state.status, "particle filter init")
    return state


def build_kernel(
    model: FeynmanKac,
    resampling_fn: str | Callable = "systematic",
    ess_threshold: float = 1.0,
    gradient_estimator: str = "score",
    *,
    collapse_ess: float = 2.0,
) -> Callable:
    """Build one particle-filter step.

    Args:
        model: the Feynman–Kac model.
        resampling_fn: resampler or its name (see `numpyro_parallel.smc.resampling`).
        ess_threshold: resample when ESS < ``ess_threshold * N`` (1.0: every step).
        gradient_estimator: ``"score"`` (stop-gradient estimator, default) or ``"none"``.
        collapse_ess: status ``collapsed`` when the ESS is below ``min(collapse_ess, N / 2)``.

    Returns:
        ``kernel(rng_key, state, observations) -> (state, info)`` that assimilates
        ``observations[state.time + 1]`` (status ``invalid`` and a NaN increment past the
        last observation).

    Raises:
        TypeError, ValueError: bad model or argument (the message names it).
    """
    resample = check_kernel_args(model, resampling_fn, ess_threshold, gradient_estimator)
    return make_kernel(model, resample, gradient_estimator, check_collapse_ess(collapse_ess))


def as_top_level_api(
    model: FeynmanKac,
    observations: Any,
    num_particles: int,
    resampling_fn: str | Callable = "systematic",
    ess_threshold: float = 1.0,
    gradient_estimator: str = "score",
    *,
    collapse_ess: float = 2.0,
) -> ParticleFilter:
    """Particle filter bound to a model and an observation sequence.

    Args:
        model: the Feynman–Kac model.
        observations: pytree of arrays with leading time axis T >= 1.
        num_particles: number of particles N.
        resampling_fn: resampler or its name.
        ess_threshold: resample when ESS < ``ess_threshold * N``.
        gradient_estimator: ``"score"`` or ``"none"``.
        collapse_ess: status ``collapsed`` when the ESS is below ``min(collapse_ess, N / 2)``.

    Returns:
        A `ParticleFilter` with ``init(rng_key)`` and ``step(rng_key, state)``; outside
        ``jit`` both warn when the status of the new state is not OK, and ``step`` raises
        `ValueError` past the last observation.

    Raises:
        TypeError, ValueError: bad model or argument (the message names it).
    """
    num_steps = num_steps_of(observations)
    num_particles = check_positive_int("num_particles", num_particles)
    collapse_ess = check_collapse_ess(collapse_ess)
    kernel = build_kernel(
        model, resampling_fn, ess_threshold, gradient_estimator, collapse_ess=collapse_ess
    )
    first = jax.tree_util.tree_map(lambda y: y[0], observations)

    def init_fn(rng_key: jax.Array) -> ParticleFilterState:
        return init(rng_key, model, first, num_particles, collapse_ess=collapse_ess)

    def step_fn(rng_key: jax.Array, state: ParticleFilterState):
        time = concrete(state.time)
        if time is not None and time + 1 >= num_steps:
            raise ValueError(
                f"`state.time` = {int(time)} is the last observation (T = {num_steps}); "
                "there is no next step."
            )
        new_state, info = kernel(rng_key, state, observations)
        warn_status(info.status, "particle filter step")
        return new_state, info

    return ParticleFilter(init_fn, step_fn)


def run(
    rng_key: jax.Array,
    model: FeynmanKac,
    observations: Any,
    num_particles: int,
    *,
    resampling_fn: str | Callable = "systematic",
    ess_threshold: float = 1.0,
    gradient_estimator: str = "score",
    collapse_ess: float = 2.0,
) -> ParticleFilterOutput:
    """Run the particle filter over all T observations with ``lax.scan``.

    Args:
        rng_key: PRNG key.
        model: the Feynman–Kac model.
        observations: pytree of arrays with leading time axis T >= 1.
        num_particles: number of particles N (positive int).
        resampling_fn: resampler or its name.
        ess_threshold: resample when ESS < ``ess_threshold * N`` (1.0: every step).
        gradient_estimator: ``"score"`` (default) or ``"none"``.
        collapse_ess: status ``collapsed`` when the ESS is below ``min(collapse_ess, N / 2)``
            (0 disables it).

    Returns:
        A `ParticleFilterOutput`; outside ``jit`` a `RuntimeWarning` names the steps
        whose status is not OK.

    Raises:
        TypeError, ValueError: bad model or argument (the message names it).
    """
    num_steps = num_steps_of(observations)
    num_particles = check_positive_int("num_particles", num_particles)
    collapse_ess = check_collapse_ess(collapse_ess)
    resample = check_kernel_args(model, resampling_fn, ess_threshold, gradient_estimator)
    kernel = make_kernel(model, resample, gradient_estimator, collapse_ess)
    key_init, key_steps = jax.random.split(rng_key)
    first = jax.tree_util.tree_map(lambda y: y[0], observations)
    state0 = initial_state(key_init, model, first, num_particles, collapse_ess)

    def body(state, key):
        state, info = kernel(key, state, observations)
        return state, (state, info)

    keys = jax.random.split(key_steps, num_steps - 1)
    final, (states, infos) = lax.scan(body, state0, keys)

    def stack(first, rest):
        return jnp.concatenate([first[None], rest], axis=0)

    particles = jax.tree_util.tree_map(stack, state0.particles, states.particles)
    ancestors = stack(jnp.arange(num_particles, dtype=jnp.int32), infos.ancestors)
    step_statuses = stack(state0.status, infos.status)
    output = ParticleFilterOutput(
        particles=particles,
        log_weights=stack(state0.log_weights, states.log_weights),
        ancestors=ancestors,
        ess=stack(ess(state0.log_weights), infos.ess),
        log_likelihood_terms=stack(state0.log_likelihood, infos.log_likelihood_term),
        resampled=stack(jnp.bool_(False), infos.resampled),
        log_likelihood=final.log_likelihood,
        step_status=step_statuses,
        status=jnp.max(step_statuses),
    )
    warn_status(output.step_status, "particle filter")
    return output
