"""Tempered SMC on conjugate NumPyro models: posterior moments and evidence vs closed forms."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import special

from numpyro_parallel.infer.tempered_smc import (
    build_tempered_smc,
    split_model,
    tempered_smc,
    to_arviz,
)

RNG = np.random.default_rng(0)
Y_NORMAL = RNG.normal(1.0, 1.0, size=20)
Y_GAMMA = RNG.normal(0.0, 0.7, size=30)
PRIOR_SD, A, B = 2.0, 2.0, 1.5


def normal_mean_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def precision_model(y):
    tau = numpyro.sample("tau", dist.Gamma(A, B))
    numpyro.deterministic("sigma", 1.0 / jnp.sqrt(tau))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(0.0, 1.0 / jnp.sqrt(tau)), obs=y)


def normal_exact(y):
    n = y.shape[0]
    cov = np.eye(n) + PRIOR_SD**2 * np.ones((n, n))
    _, logdet = np.linalg.slogdet(2 * np.pi * cov)
    log_z = -0.5 * (logdet + y @ np.linalg.solve(cov, y))
    post_var = 1.0 / (1.0 / PRIOR_SD**2 + n)
    return log_z, post_var * y.sum(), post_var


def gamma_exact(y):
    n, s = y.shape[0], np.sum(y**2)
    a_post, b_post = A + n / 2, B + s / 2
    log_z = (
        A * np.log(B)
        - special.gammaln(A)
        + special.gammaln(a_post)
        - a_post * np.log(b_post)
        - n / 2 * np.log(2 * np.pi)
    )
    return log_z, a_post / b_post, a_post / b_post**2


def _runs(model, y, num_seeds=8, **kwargs):
    run = build_tempered_smc(model, (jnp.asarray(y),), num_particles=400, **kwargs)
    keys = jax.random.split(jax.random.key(1), num_seeds)
    return jax.jit(jax.vmap(run))(keys)


def _weighted_moments(result, name):
    w = np.exp(np.asarray(result.log_weights))
    x = np.asarray(result.samples[name])
    mean = (w * x).sum(1)
    var = (w * (x - mean[:, None]) ** 2).sum(1)
    return mean, var


def _check(estimates, exact, num_se=4.0):
    se = estimates.std(ddof=1) / np.sqrt(estimates.shape[0])
    assert abs(estimates.mean() - exact) < num_se * se + 1e-3 * abs(exact), (
        estimates.mean(),
        exact,
        se,
    )


@pytest.mark.parametrize("kernel", ["hmc", "rwm"])
def test_normal_mean_posterior_and_evidence(kernel):
    log_z_exact, mean_exact, var_exact = normal_exact(Y_NORMAL)
    result = _runs(normal_mean_model, Y_NORMAL, kernel=kernel)
    assert bool(np.all(result.converged))
    log_z = np.asarray(result.log_evidence)
    _check(log_z + log_z.var(ddof=1) / 2, log_z_exact)
    mean, var = _weighted_moments(result, "mu")
    _check(mean, mean_exact)
    _check(var, var_exact)


def test_constrained_precision_posterior_and_evidence():
    """Gamma prior on a positive parameter: exercises the log-Jacobian of the transform."""
    log_z_exact, mean_exact, var_exact = gamma_exact(Y_GAMMA)
    result = _runs(precision_model, Y_GAMMA, kernel="mala")
    log_z = np.asarray(result.log_evidence)
    _check(log_z + log_z.var(ddof=1) / 2, log_z_exact)
    mean, var = _weighted_moments(result, "tau")
    _check(mean, mean_exact)
    _check(var, var_exact)
    assert np.all(result.samples["sigma"] > 0)


def test_split_model_matches_potential_and_arviz_output():
    logprior, loglik, unravel, post = split_model(
        jax.random.key(0), precision_model, (jnp.asarray(Y_GAMMA),)
    )
    z = jnp.array([0.3])
    tau = np.exp(0.3)
    expected_prior = dist.Gamma(A, B).log_prob(tau) + 0.3  # log-Jacobian of exp
    np.testing.assert_allclose(logprior(z), expected_prior, rtol=1e-10)
    np.testing.assert_allclose(
        loglik(z), dist.Normal(0.0, 1 / np.sqrt(tau)).log_prob(Y_GAMMA).sum(), rtol=1e-10
    )
    np.testing.assert_allclose(post(z)["tau"], tau, rtol=1e-12)
    np.testing.assert_allclose(unravel(z)["tau"], 0.3)
    result = tempered_smc(
        jax.random.key(3), normal_mean_model, jnp.asarray(Y_NORMAL), num_particles=200
    )
    tree = to_arviz(result)
    assert "posterior" in tree.children and "smc" in tree.children
    assert tree["posterior"]["mu"].shape == (1, 200)
    summary = az.summary(tree)
    assert "mu" in summary.index
    np.testing.assert_allclose(float(tree["smc"]["log_evidence"]), result.log_evidence)
    assert tree["smc"]["tempering_schedule"].values[-1] == 1.0
    with pytest.raises(ValueError, match="kernel"):
        build_tempered_smc(normal_mean_model, (jnp.asarray(Y_NORMAL),), kernel="nuts")
