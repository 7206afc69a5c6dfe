"""Adaptive tempered SMC on flat particles (`smc.build_adaptive_tempering`) vs closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from numpyro_parallel.smc import build_adaptive_tempering

PRIOR_SD, NUM_PARTICLES, NUM_SEEDS = 2.0, 400, 8
Y = np.random.default_rng(3).normal([1.0, -0.5], 1.0, size=(15, 2))  # 15 points in 2-D


def _logprior(x):
    return jnp.sum(norm.logpdf(x, 0.0, PRIOR_SD))


def _loglikelihood(x):
    return jnp.sum(norm.logpdf(jnp.asarray(Y), x[None, :], 1.0))


def _exact():
    """Evidence and posterior moments: each coordinate is a conjugate normal-mean model."""
    n = Y.shape[0]
    cov = np.eye(n) + PRIOR_SD**2 * np.ones((n, n))
    _, logdet = np.linalg.slogdet(2 * np.pi * cov)
    log_z = sum(-0.5 * (logdet + y @ np.linalg.solve(cov, y)) for y in Y.T)
    post_var = 1.0 / (1.0 / PRIOR_SD**2 + n)
    return log_z, post_var * Y.sum(0), post_var


def _runs(**kwargs):
    run = build_adaptive_tempering(_logprior, _loglikelihood, num_particles=NUM_PARTICLES, **kwargs)
    keys = jax.random.split(jax.random.key(2), NUM_SEEDS)
    prior_keys = jax.random.split(jax.random.key(5), NUM_SEEDS)
    initial = jax.vmap(lambda k: PRIOR_SD * jax.random.normal(k, (NUM_PARTICLES, 2)))(prior_keys)
    return jax.jit(jax.vmap(run))(keys, initial)


def _check(estimates, exact, num_se=4.0):
    """Mean over independent runs within ``num_se`` Monte Carlo standard errors."""
    se = estimates.std(ddof=1, axis=0) / np.sqrt(estimates.shape[0])
    assert np.all(np.abs(estimates.mean(0) - exact) < num_se * se + 1e-3 * np.abs(exact)), (
        estimates.mean(0),
        exact,
        se,
    )


def test_gaussian_posterior_and_evidence_without_numpyro():
    log_z_exact, mean_exact, var_exact = _exact()
    result = _runs(kernel="hmc")
    assert bool(np.all(result.converged))
    assert result.samples.shape == (NUM_SEEDS, NUM_PARTICLES, 2)
    np.testing.assert_array_equal(result.samples, result.unconstrained)
    log_z = np.asarray(result.log_evidence)
    _check(log_z + log_z.var(ddof=1) / 2, log_z_exact)  # log of an unbiased estimator
    particles = np.asarray(result.samples)
    _check(particles.mean(1), mean_exact)
    _check(particles.var(1), np.full(2, var_exact))


def test_wrong_initial_particles_shape_is_named():
    run = build_adaptive_tempering(_logprior, _loglikelihood, num_particles=10)
    with pytest.raises(ValueError, match="`initial_particles`"):
        run(jax.random.key(0), jnp.zeros((9, 2)))
    with pytest.raises(ValueError, match="`initial_particles`"):
        run(jax.random.key(0), jnp.zeros(10))


def test_options_are_checked_when_building():
    with pytest.raises(ValueError, match="`target_ess`"):
        build_adaptive_tempering(_logprior, _loglikelihood, target_ess=1.5)
    with pytest.raises(TypeError, match="`resampling_fn`"):
        build_adaptive_tempering(_logprior, _loglikelihood, resampling_fn=3)
