"""Adaptive tempered SMC for NumPyro models, with log-evidence, failure flags and ArviZ output.

The model is split into a log-prior on the unconstrained space (including the Jacobian of the
constraining transforms) and a log-likelihood (the sum of all observed sites, ``numpyro.factor``
included). Particles start from the prior and move along ``prior * likelihood^lambda``: each
stage picks the next lambda so that the ESS of the incremental weights is ``target_ess`` times
the number of particles (Jasra et al. 2011), reweights, resamples and applies
``num_mcmc_steps`` sweeps of an HMC, MALA or random-walk kernel, preconditioned by the
particle covariance, whose step size is adapted towards a target acceptance rate
(`numpyro_parallel.infer._tempered_mutation`). The product of the stages' mean incremental
weights estimates the evidence p(y) (Del Moral, Doucet & Jasra 2006).

Failures are reported, never silent: NaN (or +inf) log-densities at the particles give a NaN
evidence and ``nan_potential``; particles that all have zero likelihood give a -inf evidence and
``zero_evidence``; a collapsed particle system (final acceptance ~0 or few distinct particles)
sets ``collapsed``; ``max_stages`` bounds the tempering loop (``hit_max_stages``). Any of these
makes ``converged`` False, and `tempered_smc` then emits a `RuntimeWarning`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp
from numpyro.infer import Predictive
from numpyro.infer.util import unconstrain_fn

from numpyro_parallel._progress import StageProgress, progress_enabled
from numpyro_parallel.infer import _tempered_mutation as mutation
from numpyro_parallel.infer._tempered_checks import check_options, check_rng_key
from numpyro_parallel.infer._tempered_model import check_model_arguments, latent_sites, split_model
from numpyro_parallel.infer._tempered_report import tempered_smc_to_arviz, warn_on_failure
from numpyro_parallel.infer._tempered_result import (
    MIN_ACCEPTANCE,
    MIN_JUMP,
    MIN_UNIQUE_FRACTION,
    TemperedSMCResult,
)
from numpyro_parallel.smc.resampling import get_resampler

__all__ = [
    "TemperedSMCResult",
    "build_tempered_smc",
    "split_model",
    "tempered_smc",
    "tempered_smc_to_arviz",
]


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


def build_tempered_smc(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
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
) -> Callable[[jax.Array], TemperedSMCResult]:
    """Build a pure, jittable and vmappable ``run(rng_key) -> TemperedSMCResult``.

    Args:
        model: NumPyro model (observed sites define the likelihood); every latent site needs a
            proper prior that can be sampled.
        model_args: positional arguments of the model.
        model_kwargs: keyword arguments of the model.
        num_particles: number of particles N (>= 2).
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
        ``run(rng_key)``; vmap it over keys for independent runs.

    Raises:
        TypeError: non-callable model, or an option of the wrong type (named in the message).
        ValueError: an option out of range, a model without latent sites, or an improper /
            unsampleable prior (the site is named).
    """
    model_kwargs = check_model_arguments(model, model_args, model_kwargs)
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
    if isinstance(resampling_fn, str):
        try:
            builtin = get_resampler(resampling_fn)
        except ValueError:
            raise ValueError(
                f"`resampling_fn` must be a resampler name or function; got {resampling_fn!r}."
            ) from None

        def resample(key, log_weights):
            return builtin(key, log_weights, num_particles, is_log=True)
    elif callable(resampling_fn):

        def resample(key, log_weights):
            return resampling_fn(key, jnp.exp(log_weights - logsumexp(log_weights)), num_particles)
    else:
        raise TypeError(
            f"`resampling_fn` must be a resampler name or function; got {resampling_fn!r}."
        )

    trace_key = jax.random.key(0)
    latent = latent_sites(trace_key, model, model_args, model_kwargs)
    logprior_fn, loglikelihood_fn, _, postprocess_fn = split_model(
        trace_key, model, model_args, model_kwargs
    )
    predictive = Predictive(model, num_samples=num_particles, return_sites=latent)
    dim = jax.eval_shape(
        lambda k: _prior_particles(predictive, k, model, model_args, model_kwargs), trace_key
    ).shape[1]
    if dim == 0:
        raise ValueError("`model` has no continuous latent dimensions to sample.")
    factor, power = mutation.DEFAULT_STEP[kernel]
    eps0 = factor / dim**power if step_size is None else float(step_size)
    dense = (dim <= 64 and num_particles >= 4 * dim) if dense_mass is None else dense_mass
    mutate = mutation.make_mutation(
        kernel,
        options["num_integration_steps"],
        options["num_mcmc_steps"],
        (eps0 * 1e-4, min(eps0 * 10.0, 10.0 * np.sqrt(dim))),
    )
    direction = jax.random.normal(jax.random.key(7), (dim,))
    vloglik = jax.vmap(loglikelihood_fn)

    def run(rng_key: jax.Array) -> TemperedSMCResult:
        key_prior, key_run = jax.random.split(rng_key)
        particles = _prior_particles(predictive, key_prior, model, model_args, model_kwargs)
        loglik = vloglik(particles)
        logprior = jax.vmap(logprior_fn)(particles)
        dtype = particles.dtype
        nan = ~jnp.all(jnp.isfinite(logprior) & (loglik < jnp.inf) & ~jnp.isnan(loglik))
        pad = jnp.full((max_stages,), jnp.nan, dtype)
        history = (pad, pad, pad, jnp.full((max_stages,), -1, jnp.int32), pad, pad)
        init = _Carry(
            key_run,
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
            samples=jax.vmap(postprocess_fn)(c.particles),
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


def _prior_particles(predictive, key, model, model_args, model_kwargs):
    prior = predictive(key, *model_args, **model_kwargs)
    unconstrained = jax.vmap(lambda p: unconstrain_fn(model, model_args, model_kwargs, p))(prior)
    return jax.vmap(lambda p: ravel_pytree(p)[0])(unconstrained)


def tempered_smc(
    rng_key: jax.Array,
    model: Callable,
    *model_args: Any,
    num_particles: int = 1000,
    kernel: str = "hmc",
    step_size: float | None = None,
    num_integration_steps: int = 5,
    num_mcmc_steps: int = 10,
    target_ess: float = 0.5,
    resampling_fn: str | Callable = "systematic",
    max_stages: int = 200,
    dense_mass: bool | None = None,
    progress_bar: bool = True,
    **model_kwargs: Any,
) -> TemperedSMCResult:
    """Run adaptive tempered SMC on a NumPyro model (jitted).

    Args:
        rng_key: PRNG key.
        model: NumPyro model (observed sites define the likelihood).
        *model_args: positional arguments of the model.
        num_particles: number of particles N.
        kernel: mutation kernel, ``"hmc"`` (default), ``"mala"`` or ``"rwm"``.
        step_size: initial step size relative to the particle spread (adapted; see
            `build_tempered_smc`).
        num_integration_steps: leapfrog steps per HMC move.
        num_mcmc_steps: MCMC sweeps per tempering stage.
        target_ess: ESS fraction kept by each tempering increment.
        resampling_fn: resampler name or function.
        max_stages: maximum number of tempering stages.
        dense_mass: dense (True) or diagonal (False) particle-covariance preconditioning.
        progress_bar: show the tempering exponent's progress, the stage and the acceptance
            rate as the run goes (off when the ``CI`` environment variable is set).
        **model_kwargs: keyword arguments of the model.

    Returns:
        A `TemperedSMCResult`; a `RuntimeWarning` is issued for each failure flag set.
    """
    check_rng_key(rng_key)
    progress = StageProgress("tempered SMC") if progress_enabled(progress_bar) else None
    run = build_tempered_smc(
        model,
        model_args,
        model_kwargs,
        num_particles=num_particles,
        kernel=kernel,
        step_size=step_size,
        num_integration_steps=num_integration_steps,
        num_mcmc_steps=num_mcmc_steps,
        target_ess=target_ess,
        resampling_fn=resampling_fn,
        max_stages=max_stages,
        dense_mass=dense_mass,
        on_stage=progress,
    )
    try:
        result = jax.jit(run)(rng_key)
        jax.block_until_ready(result)
    finally:
        if progress is not None:
            progress.close()
    warn_on_failure(result, max_stages)
    return result
