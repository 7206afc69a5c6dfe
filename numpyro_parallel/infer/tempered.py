"""Adaptive tempered SMC for NumPyro models, with log-evidence, failure flags and ArviZ output.

The NumPyro front end of `numpyro_parallel.smc.tempered` (the algorithm, its references and
its failure flags): the model is split into a log-prior on the unconstrained space (including
the Jacobian of the constraining transforms) and a log-likelihood (the sum of all observed
sites, ``numpyro.factor`` included); particles are drawn from the prior with
`numpyro.infer.Predictive`, tempered by `numpyro_parallel.smc.build_adaptive_tempering`, and
mapped back to constrained site values. `tempered_smc` emits a `RuntimeWarning` for every
failure flag set and can show a progress bar; `tempered_smc_to_arviz` converts the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.flatten_util import ravel_pytree
from numpyro.infer import Predictive
from numpyro.infer.util import unconstrain_fn

from numpyro_parallel._checks import check_rng_key
from numpyro_parallel._progress import StageProgress, progress_enabled
from numpyro_parallel.infer._tempered_model import check_model_arguments, latent_sites, split_model
from numpyro_parallel.infer._tempered_report import tempered_smc_to_arviz, warn_on_failure
from numpyro_parallel.smc.tempered import TemperedSMCResult, build_adaptive_tempering

__all__ = [
    "TemperedSMCResult",
    "build_tempered_smc",
    "split_model",
    "tempered_smc",
    "tempered_smc_to_arviz",
]


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
    trace_key = jax.random.key(0)  # tracing for sites and shapes only
    latent = latent_sites(trace_key, model, model_args, model_kwargs)
    logprior_fn, loglikelihood_fn, _, postprocess_fn = split_model(
        trace_key, model, model_args, model_kwargs
    )
    core = build_adaptive_tempering(
        logprior_fn,
        loglikelihood_fn,
        num_particles=num_particles,
        kernel=kernel,
        step_size=step_size,
        num_integration_steps=num_integration_steps,
        num_mcmc_steps=num_mcmc_steps,
        target_ess=target_ess,
        resampling_fn=resampling_fn,
        max_stages=max_stages,
        dense_mass=dense_mass,
        on_stage=on_stage,
    )
    predictive = Predictive(model, num_samples=num_particles, return_sites=latent)
    dim = jax.eval_shape(
        lambda k: _prior_particles(predictive, k, model, model_args, model_kwargs), trace_key
    ).shape[1]
    if dim == 0:
        raise ValueError("`model` has no continuous latent dimensions to sample.")

    def run(rng_key: jax.Array) -> TemperedSMCResult:
        check_rng_key(rng_key)
        key_prior, key_run = jax.random.split(rng_key)
        particles = _prior_particles(predictive, key_prior, model, model_args, model_kwargs)
        result = core(key_run, particles)
        return result._replace(samples=jax.vmap(postprocess_fn)(result.unconstrained))

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
