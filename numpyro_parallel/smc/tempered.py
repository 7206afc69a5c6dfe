"""Adaptive tempered SMC on flat particles: the core behind `numpyro_parallel.infer.tempered_smc`.

Particles start from the prior and move along ``prior * likelihood^lambda``: each stage picks
the next lambda so that the ESS of the incremental weights is ``target_ess`` times the number of
particles (Jasra, Stephens, Doucet & Tsagaris 2011, "Inference for Lévy-driven stochastic
volatility models via adaptive sequential Monte Carlo"), reweights, resamples and applies
``num_mcmc_steps`` sweeps of an HMC, MALA or random-walk kernel preconditioned by the particle
covariance, whose step size is adapted towards a target acceptance rate
(`numpyro_parallel.smc.tempered_mutation`). The product of the stages' mean incremental
weights estimates the evidence p(y) (Del Moral, Doucet & Jasra 2006, "Sequential Monte Carlo
samplers").

This module knows nothing of NumPyro: it takes a log-prior and a log-likelihood on ``(D,)``
vectors and ``(N, D)`` initial particles drawn from the prior. Failures are reported, never
silent: NaN (or +inf) log-densities at the particles give a NaN evidence and
``nan_potential``; particles that all have zero likelihood give a -inf evidence and
``zero_evidence``; a collapsed particle system (final acceptance ~0 or few distinct particles)
sets ``collapsed``; ``max_stages`` bounds the tempering loop (``hit_max_stages``). Any of these
makes ``converged`` False.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

from numpyro_parallel._checks import check_rng_key
from numpyro_parallel.smc import tempered_mutation as mutation
from numpyro_parallel.smc.resampling import get_resampler
from numpyro_parallel.smc.tempered_checks import check_options
from numpyro_parallel.smc.tempered_result import (
    MIN_ACCEPTANCE,
    MIN_JUMP,
    MIN_UNIQUE_FRACTION,
    TemperedSMCResult,
)

__all__ = ["TemperedSMCResult", "build_adaptive_tempering"]


class _Carry(NamedTuple):
    key: jax.Array
    particles: jax.Array
    loglik: jax.Array
    lam: jax.Array
    log_z: jax.Array
    eps: jax.Array
    stage: jax.Array
    nan: jax.Array
    zero: jax.Array
    history: tuple


def _resampler(resampling_fn: Any, num_particles: int) -> Callable:
    if isinstance(resampling_fn, str):
        try:
            builtin = get_resampler(resampling_fn)
        except ValueError:
            raise ValueError(
                f"`resampling_fn` must be a resampler name or function; got {resampling_fn!r}."
            ) from None

        def resample(key, log_weights):
            return builtin(key, log_weights, num_particles, is_log=True)

        return resample
    if callable(resampling_fn):

        def resample(key, log_weights):
            return resampling_fn(key, jnp.exp(log_weights - logsumexp(log_weights)), num_particles)

        return resample
    raise TypeError(f"`resampling_fn` must be a resampler name or function; got {resampling_fn!r}.")


def build_adaptive_tempering(
    logprior_fn: Callable[[jax.Array], jax.Array],
    loglikelihood_fn: Callable[[jax.Array], jax.Array],
    *,
    num_particles: int = 1000,
    kernel: str = "hmc",
    step_size: float | None = None,
    num_integration_steps: int = 5,
    num_mcmc_steps: int = 10,
    target_ess: float = 0.5,
    resampling_fn: str | Callable = "systematic",
    max_stages: int = 200,
    dense_mass: bool | None = None,
    on_stage: Callable[[Any, Any, Any], None] | None = None,
) -> Callable[[jax.Array, jax.Array], TemperedSMCResult]:
    """Build a pure, jittable and vmappable ``run(rng_key, initial_particles)``.

    Args:
        logprior_fn: log prior density of one ``(D,)`` particle (up to a constant).
        loglikelihood_fn: log-likelihood of one ``(D,)`` particle.
        num_particles: number of particles N (>= 2); ``initial_particles`` has N rows.
        kernel: mutation kernel, ``"hmc"`` (default), ``"mala"`` or ``"rwm"``.
        step_size: initial step size relative to the particle spread (whitened coordinates);
            it is then adapted towards acceptance 0.65 (HMC), 0.57 (MALA) or 0.234 (RWM).
            Defaults: 0.5 / D^(1/4) for HMC, 1.6 / D^(1/6) for MALA, 2.38 / sqrt(D) for RWM.
        num_integration_steps: leapfrog steps per HMC move.
        num_mcmc_steps: MCMC sweeps per tempering stage.
        target_ess: ESS fraction kept by each tempering increment, in (0, 1).
        resampling_fn: resampler name (see `numpyro_parallel.smc.get_resampler`) or a function
            ``fn(rng_key, weights, num_samples) -> indices``.
        max_stages: maximum number of tempering stages (``hit_max_stages`` if reached).
        dense_mass: precondition with the dense particle covariance (True) or its diagonal
            (False); default: dense when D <= 64 and N >= 4 D.
        on_stage: host function ``on_stage(stage, lambda, acceptance)`` called after every
            stage through an unordered `jax.debug.callback` (a progress bar); None for none.

    Returns:
        ``run(rng_key, initial_particles) -> TemperedSMCResult`` with ``initial_particles``
        an ``(N, D)`` draw from the prior; the result's ``samples`` and ``unconstrained`` are
        both the final ``(N, D)`` particles.

    Raises:
        TypeError: an option of the wrong type (named in the message); from ``run``, an
            ``rng_key`` that is not a single PRNG key.
        ValueError: an option out of range (named in the message); from ``run``,
            ``initial_particles`` not of shape ``(num_particles, D)``.
    """
    options = check_options(
        num_particles=num_particles,
        kernel=kernel,
        step_size=step_size,
        num_integration_steps=num_integration_steps,
        num_mcmc_steps=num_mcmc_steps,
        target_ess=target_ess,
        max_stages=max_stages,
        dense_mass=dense_mass,
    )
    num_particles, max_stages = options["num_particles"], options["max_stages"]
    resample = _resampler(resampling_fn, num_particles)
    vloglik = jax.vmap(loglikelihood_fn)

    def run(rng_key: jax.Array, initial_particles: jax.Array) -> TemperedSMCResult:
        check_rng_key(rng_key)
        particles = jnp.asarray(initial_particles)
        if particles.ndim != 2 or particles.shape[0] != num_particles:
            raise ValueError(
                f"`initial_particles` must have shape ({num_particles}, D); got {particles.shape}."
            )
        dim = particles.shape[1]
        factor, power = mutation.DEFAULT_STEP[kernel]
        eps0 = factor / dim**power if step_size is None else float(step_size)
        dense = (dim <= 64 and num_particles >= 4 * dim) if dense_mass is None else dense_mass
        mutate = mutation.make_mutation(
            kernel,
            options["num_integration_steps"],
            options["num_mcmc_steps"],
            (eps0 * 1e-4, min(eps0 * 10.0, 10.0 * np.sqrt(dim))),
        )
        # A random projection to count distinct particles (any direction does, almost surely).
        direction = jax.random.normal(jax.random.fold_in(rng_key, 7), (dim,), particles.dtype)
        loglik = vloglik(particles)
        logprior = jax.vmap(logprior_fn)(particles)
        dtype = particles.dtype
        nan = ~jnp.all(jnp.isfinite(logprior) & (loglik < jnp.inf) & ~jnp.isnan(loglik))
        pad = jnp.full((max_stages,), jnp.nan, dtype)
        history = (pad, pad, pad, jnp.full((max_stages,), -1, jnp.int32), pad, pad)
        init = _Carry(
            rng_key,
            particles,
            loglik,
            jnp.zeros((), dtype),
            jnp.zeros((), dtype),
            jnp.asarray(eps0, dtype),
            jnp.int32(0),
            nan,
            jnp.zeros((), bool),
            history,
        )

        def cond(c: _Carry):
            return (c.lam < 1.0) & (c.stage < max_stages) & ~c.nan & ~c.zero

        def body(c: _Carry):
            key, key_resample, key_move = jax.random.split(c.key, 3)
            delta = mutation.choose_increment(c.loglik, 1.0 - c.lam, options["target_ess"])
            lam = jnp.where(delta >= 1.0 - c.lam, jnp.ones_like(c.lam), c.lam + delta)
            log_w = mutation.tempered_weights(c.loglik, delta)
            increment = logsumexp(log_w) - jnp.log(num_particles)
            zero = increment == -jnp.inf
            safe_w = jnp.where(zero, jnp.zeros_like(log_w), log_w)
            ess = jnp.exp(2.0 * logsumexp(safe_w) - logsumexp(2.0 * safe_w))
            weights = jnp.exp(safe_w - logsumexp(safe_w))
            resampled = c.particles[resample(key_resample, safe_w)]

            def logdensity(x):
                return logprior_fn(x) + lam * loglikelihood_fn(x)

            moved, rate, eps, jump = mutate(
                key_move, c.particles, weights, resampled, logdensity, c.eps, dense
            )
            loglik = vloglik(moved)
            nan = jnp.any(jnp.isnan(loglik) | (loglik == jnp.inf))
            schedule, accept, steps, unique, ess_hist, jumps = c.history
            i = c.stage
            history = (
                schedule.at[i].set(lam),
                accept.at[i].set(rate),
                steps.at[i].set(eps),
                unique.at[i].set(mutation.count_unique(moved, direction).astype(jnp.int32)),
                ess_hist.at[i].set(ess),
                jumps.at[i].set(jump),
            )
            if on_stage is not None:
                jax.debug.callback(on_stage, i + 1, lam, rate)
            return _Carry(
                key, moved, loglik, lam, c.log_z + increment, eps, i + 1, nan, zero, history
            )

        c = lax.while_loop(cond, body, init)
        schedule, accept, steps, unique, ess_hist, jumps = c.history
        last = jnp.maximum(c.stage - 1, 0)
        collapsed = (c.stage > 0) & (
            (accept[last] < MIN_ACCEPTANCE) | (unique[last] < MIN_UNIQUE_FRACTION * num_particles)
        )
        poor_mixing = (c.stage > 0) & (jnp.nanmedian(jumps) < MIN_JUMP)
        log_z = jnp.where(c.nan, jnp.nan, jnp.where(c.zero, -jnp.inf, c.log_z))
        reached = c.lam >= 1.0
        return TemperedSMCResult(
            samples=c.particles,
            unconstrained=c.particles,
            log_weights=jnp.full((num_particles,), -jnp.log(num_particles), dtype),
            log_evidence=log_z,
            num_stages=c.stage,
            tempering_schedule=schedule,
            acceptance_rate=accept,
            step_size=steps,
            num_unique=unique,
            ess=ess_hist,
            jump_distance=jumps,
            converged=reached & ~c.nan & ~c.zero & ~collapsed & ~poor_mixing & jnp.isfinite(log_z),
            hit_max_stages=~reached & ~c.nan & ~c.zero,
            nan_potential=c.nan,
            zero_evidence=c.zero & ~c.nan,
            collapsed=collapsed & ~c.nan & ~c.zero,
            poor_mixing=poor_mixing & ~c.nan & ~c.zero,
        )

    return run
