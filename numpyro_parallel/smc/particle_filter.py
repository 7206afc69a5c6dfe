"""Particle filters in Feynman–Kac form with BlackJAX-style ``init`` / ``step``.

A model is a :class:`FeynmanKac` tuple of per-particle functions: ``init_sample`` draws x_0,
``propagate_sample`` draws x_t given x_{t-1} (the transition for a bootstrap filter, any
proposal for a guided filter), ``init_log_potential`` and ``log_potential`` weight them
(observation log-density for a bootstrap filter; ``g(y|x) f(x|x') / q(x|x')`` for a guided one).
:func:`bootstrap` and :func:`guided` build the tuple from densities. Observations follow the
package convention: ``observations[t]`` is seen by ``x_t``; a time step whose observation is all
NaN is missing and its potential is skipped.

Gradients of the log-evidence use the stop-gradient ("score-form") estimator of Ścibior & Wood
(2021, "Differentiable particle filtering without modifying the forward pass"): resampled
weights are ``w[a] / stop_gradient(w[a])`` times their value, which leaves the forward pass
unchanged and makes ``jax.grad`` of the log-evidence the Fisher-identity score estimate
(Poyiadjis, Doucet & Singh 2011). ``gradient_estimator="none"`` drops that term (biased).

References: Gordon, Salmond & Smith (1993); Chopin & Papaspiliopoulos (2020), "An Introduction
to Sequential Monte Carlo", chapters 5 and 10.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel.smc.resampling import ess, ess_adaptive, get_resampler, log_normalize

__all__ = [
    "FeynmanKac",
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


class FeynmanKac(NamedTuple):
    """Per-particle functions of a Feynman–Kac model (vmapped over particles internally).

    Attributes:
        init_sample: ``(rng_key, observation) -> x_0``.
        init_log_potential: ``(x_0, observation) -> log G_0``.
        propagate_sample: ``(rng_key, x_prev, observation, time) -> x_t``.
        log_potential: ``(x_prev, x, observation, time) -> log G_t``.
        init_log_correction: optional ``(x_0, observation) -> float`` added to the initial
            weights even when the observation is missing (guided filters: ``log p0 - log q0``).
        log_correction: optional ``(x_prev, x, observation, time) -> float`` likewise added at
            every step (guided filters: ``log f - log q``).

    The potentials are skipped (set to zero) at a time step whose observation is all NaN and
    then receive zeros in place of the observation; the samplers and corrections always receive
    the raw observation.
    """

    init_sample: Callable
    init_log_potential: Callable
    propagate_sample: Callable
    log_potential: Callable
    init_log_correction: Callable | None = None
    log_correction: Callable | None = None


class ParticleFilterState(NamedTuple):
    """Particle system after assimilating ``observations[time]``.

    Attributes:
        particles: ``(N, ...)`` particles.
        log_weights: ``(N,)`` normalised log-weights.
        log_evidence: running log-evidence estimate up to ``time``.
        time: int32 index of the last assimilated observation.
    """

    particles: Any
    log_weights: jax.Array
    log_evidence: jax.Array
    time: jax.Array


class ParticleFilterInfo(NamedTuple):
    """Per-step diagnostics.

    Attributes:
        ancestors: ``(N,)`` ancestor indices used to propagate (identity if not resampled).
        ess: effective sample size of the weights after the step.
        log_evidence_increment: log of the incremental likelihood estimate.
        resampled: whether resampling happened before propagation.
    """

    ancestors: jax.Array
    ess: jax.Array
    log_evidence_increment: jax.Array
    resampled: jax.Array


class ParticleFilterOutput(NamedTuple):
    """Result of :func:`run` (leading axis T on all but ``log_evidence``).

    Attributes:
        particles: ``(T, N, ...)`` filtering particles.
        log_weights: ``(T, N)`` normalised filtering log-weights.
        ancestors: ``(T, N)`` ancestors; row 0 is the identity.
        ess: ``(T,)`` effective sample sizes.
        log_evidence_increments: ``(T,)`` incremental log-likelihood estimates.
        resampled: ``(T,)`` resampling flags (False at t = 0).
        log_evidence: scalar log-evidence estimate.
    """

    particles: Any
    log_weights: jax.Array
    ancestors: jax.Array
    ess: jax.Array
    log_evidence_increments: jax.Array
    resampled: jax.Array
    log_evidence: jax.Array


def _is_missing(observation: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isnan(leaf)) for leaf in jax.tree_util.tree_leaves(observation)]
    if not leaves:
        return jnp.bool_(False)
    return jnp.all(jnp.stack(leaves))


def _sanitised(observation: Any, missing: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda y: jnp.where(missing, jnp.zeros_like(y), y), observation)


def _masked_potential(log_g: jax.Array, missing: jax.Array) -> jax.Array:
    return jnp.where(missing, jnp.zeros_like(log_g), log_g)


def init(
    rng_key: jax.Array, model: FeynmanKac, observation: Any, num_particles: int
) -> ParticleFilterState:
    """Draw and weight the initial particles.

    Args:
        rng_key: PRNG key.
        model: the Feynman–Kac model.
        observation: ``observations[0]``.
        num_particles: number of particles N.

    Returns:
        The state at time 0.
    """
    if not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"`num_particles` must be a positive int; got {num_particles!r}.")
    keys = jax.random.split(rng_key, num_particles)
    particles = jax.vmap(model.init_sample, in_axes=(0, None))(keys, observation)
    missing = _is_missing(observation)
    safe = _sanitised(observation, missing)
    log_g = jax.vmap(model.init_log_potential, in_axes=(0, None))(particles, safe)
    log_g = _masked_potential(log_g, missing)
    if model.init_log_correction is not None:
        log_g = log_g + jax.vmap(model.init_log_correction, in_axes=(0, None))(
            particles, observation
        )
    normalised, total = log_normalize(log_g)
    log_evidence = total - jnp.log(num_particles).astype(total.dtype)
    return ParticleFilterState(particles, normalised, log_evidence, jnp.int32(0))


def build_kernel(
    model: FeynmanKac,
    resampling_fn: str | Callable = "systematic",
    ess_threshold: float = 1.0,
    gradient_estimator: str = "score",
) -> Callable:
    """Build one particle-filter step.

    Args:
        model: the Feynman–Kac model.
        resampling_fn: resampler or its name (see :mod:`numpyro_parallel.smc.resampling`).
        ess_threshold: resample when ESS < ``ess_threshold * N`` (1.0: every step).
        gradient_estimator: ``"score"`` (stop-gradient estimator, default) or ``"none"``.

    Returns:
        ``kernel(rng_key, state, observations) -> (state, info)`` that assimilates
        ``observations[state.time + 1]``.
    """
    if gradient_estimator not in ("score", "none"):
        raise ValueError(
            f"`gradient_estimator` must be 'score' or 'none'; got {gradient_estimator!r}."
        )
    resample = ess_adaptive(get_resampler(resampling_fn), ess_threshold)

    def kernel(rng_key: jax.Array, state: ParticleFilterState, observations: Any):
        n = state.log_weights.shape[0]
        time = state.time + 1
        observation = jax.tree_util.tree_map(
            lambda y: lax.dynamic_index_in_dim(y, time, keepdims=False), observations
        )
        key_resample, key_propagate = jax.random.split(rng_key)
        ancestors, carried, resampled = resample(key_resample, lax.stop_gradient(state.log_weights))
        selected = state.log_weights[ancestors]
        if gradient_estimator == "score":
            # Same value as `carried`; gradient of the selected weights flows through.
            carried = carried + selected - lax.stop_gradient(selected)
            carried = jnp.where(resampled, carried, state.log_weights)
        else:
            carried = jnp.where(resampled, carried, state.log_weights)
        previous = jax.tree_util.tree_map(lambda x: x[ancestors], state.particles)
        keys = jax.random.split(key_propagate, n)
        particles = jax.vmap(model.propagate_sample, in_axes=(0, 0, None, None))(
            keys, previous, observation, time
        )
        missing = _is_missing(observation)
        safe = _sanitised(observation, missing)
        log_g = jax.vmap(model.log_potential, in_axes=(0, 0, None, None))(
            previous, particles, safe, time
        )
        log_g = _masked_potential(log_g, missing)
        if model.log_correction is not None:
            log_g = log_g + jax.vmap(model.log_correction, in_axes=(0, 0, None, None))(
                previous, particles, observation, time
            )
        normalised, increment = log_normalize(carried + log_g)
        new_state = ParticleFilterState(particles, normalised, state.log_evidence + increment, time)
        info = ParticleFilterInfo(ancestors, ess(normalised), increment, resampled)
        return new_state, info

    return kernel


class ParticleFilter(NamedTuple):
    """BlackJAX-style algorithm: ``init(rng_key)`` and ``step(rng_key, state)``.

    Attributes:
        init: ``(rng_key) -> state`` at time 0.
        step: ``(rng_key, state) -> (state, info)`` assimilating the next observation.
    """

    init: Callable
    step: Callable


def as_top_level_api(
    model: FeynmanKac,
    observations: Any,
    num_particles: int,
    resampling_fn: str | Callable = "systematic",
    ess_threshold: float = 1.0,
    gradient_estimator: str = "score",
) -> ParticleFilter:
    """Particle filter bound to a model and an observation sequence.

    Args:
        model: the Feynman–Kac model.
        observations: pytree of arrays with leading time axis T.
        num_particles: number of particles N.
        resampling_fn: resampler or its name.
        ess_threshold: resample when ESS < ``ess_threshold * N``.
        gradient_estimator: ``"score"`` or ``"none"``.

    Returns:
        A :class:`ParticleFilter` with ``init(rng_key)`` and ``step(rng_key, state)``.
    """
    kernel = build_kernel(model, resampling_fn, ess_threshold, gradient_estimator)
    first = jax.tree_util.tree_map(lambda y: y[0], observations)

    def init_fn(rng_key: jax.Array) -> ParticleFilterState:
        return init(rng_key, model, first, num_particles)

    def step_fn(rng_key: jax.Array, state: ParticleFilterState):
        return kernel(rng_key, state, observations)

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
) -> ParticleFilterOutput:
    """Run the particle filter over all T observations with ``lax.scan``.

    Args:
        rng_key: PRNG key.
        model: the Feynman–Kac model.
        observations: pytree of arrays with leading time axis T >= 1.
        num_particles: number of particles N.
        resampling_fn: resampler or its name.
        ess_threshold: resample when ESS < ``ess_threshold * N`` (1.0: every step).
        gradient_estimator: ``"score"`` (default) or ``"none"``.

    Returns:
        A :class:`ParticleFilterOutput`.
    """
    leaves = jax.tree_util.tree_leaves(observations)
    if not leaves or any(jnp.ndim(leaf) < 1 for leaf in leaves):
        raise ValueError("`observations` must be arrays with a leading time axis of length T.")
    num_steps = leaves[0].shape[0]
    algorithm = as_top_level_api(
        model, observations, num_particles, resampling_fn, ess_threshold, gradient_estimator
    )
    key_init, key_steps = jax.random.split(rng_key)
    state0 = algorithm.init(key_init)

    def body(state, key):
        state, info = algorithm.step(key, state)
        return state, (state, info)

    keys = jax.random.split(key_steps, num_steps - 1)
    final, (states, infos) = lax.scan(body, state0, keys)

    def stack(first, rest):
        return jnp.concatenate([first[None], rest], axis=0)

    particles = jax.tree_util.tree_map(stack, state0.particles, states.particles)
    ancestors = stack(jnp.arange(num_particles, dtype=jnp.int32), infos.ancestors)
    return ParticleFilterOutput(
        particles=particles,
        log_weights=stack(state0.log_weights, states.log_weights),
        ancestors=ancestors,
        ess=stack(ess(state0.log_weights), infos.ess),
        log_evidence_increments=stack(state0.log_evidence, infos.log_evidence_increment),
        resampled=stack(jnp.bool_(False), infos.resampled),
        log_evidence=final.log_evidence,
    )


def bootstrap(
    initial_sample: Callable, transition_sample: Callable, observation_log_prob: Callable
) -> FeynmanKac:
    """Bootstrap filter: propose from the transition, weight by the observation density.

    Args:
        initial_sample: ``(rng_key) -> x_0``.
        transition_sample: ``(rng_key, x_prev, time) -> x_t``.
        observation_log_prob: ``(x, observation, time) -> log g(y_t | x_t)``.

    Returns:
        The :class:`FeynmanKac` model.
    """
    return FeynmanKac(
        init_sample=lambda key, y: initial_sample(key),
        init_log_potential=lambda x, y: observation_log_prob(x, y, 0),
        propagate_sample=lambda key, x_prev, y, t: transition_sample(key, x_prev, t),
        log_potential=lambda x_prev, x, y, t: observation_log_prob(x, y, t),
    )


def guided(
    initial_log_prob: Callable,
    transition_log_prob: Callable,
    observation_log_prob: Callable,
    initial_proposal_sample: Callable,
    initial_proposal_log_prob: Callable,
    proposal_sample: Callable,
    proposal_log_prob: Callable,
) -> FeynmanKac:
    """Guided filter: propose from ``q(x_t | x_{t-1}, y_t)`` and correct the weights.

    Args:
        initial_log_prob: ``(x_0) -> log p(x_0)``.
        transition_log_prob: ``(x_prev, x, time) -> log f(x_t | x_{t-1})``.
        observation_log_prob: ``(x, observation, time) -> log g(y_t | x_t)``.
        initial_proposal_sample: ``(rng_key, observation) -> x_0``.
        initial_proposal_log_prob: ``(x_0, observation) -> log q_0(x_0)``.
        proposal_sample: ``(rng_key, x_prev, observation, time) -> x_t``.
        proposal_log_prob: ``(x_prev, x, observation, time) -> log q(x_t | x_{t-1}, y_t)``.

    Returns:
        The :class:`FeynmanKac` model. The proposal functions receive the raw observation
        (all NaN when missing) and must handle it.
    """
    return FeynmanKac(
        init_sample=initial_proposal_sample,
        init_log_potential=lambda x, y: observation_log_prob(x, y, 0),
        propagate_sample=proposal_sample,
        log_potential=lambda x_prev, x, y, t: observation_log_prob(x, y, t),
        init_log_correction=lambda x, y: initial_log_prob(x) - initial_proposal_log_prob(x, y),
        log_correction=lambda x_prev, x, y, t: (
            transition_log_prob(x_prev, x, t) - proposal_log_prob(x_prev, x, y, t)
        ),
    )
