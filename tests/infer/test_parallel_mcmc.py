"""ParallelMALA as a NumPyro MCMC kernel: closed-form posterior, ArviZ, vectorized chains."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC

from numpyro_parallel.infer.parallel_mcmc import ParallelHMC, ParallelMALA

PRIOR_SCALE, NOISE_SCALE = 3.0, 2.0
Y = np.random.default_rng(0).normal(1.0, NOISE_SCALE, size=15)


def conjugate_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SCALE))
    numpyro.sample("y", dist.Normal(mu, NOISE_SCALE), obs=y)


def assert_moments(draws):
    """Mean and variance within 4 Monte Carlo standard errors of the closed form."""
    mean, variance = posterior_moments()
    draws = np.asarray(draws)
    ess = float(effective_sample_size(draws))
    assert ess > 200
    assert abs(draws.mean() - mean) < 4 * np.sqrt(variance / ess)
    # the variance is the mean of the squared deviations: use their own ESS and spread
    squares = (draws - mean) ** 2
    ess_squares = float(effective_sample_size(squares))
    assert abs(squares.mean() - variance) < 4 * squares.std() / np.sqrt(ess_squares)


def posterior_moments():
    precision = 1 / PRIOR_SCALE**2 + len(Y) / NOISE_SCALE**2
    return (Y.sum() / NOISE_SCALE**2) / precision, 1 / precision


@pytest.fixture(scope="module")
def conjugate_run():
    kernel = ParallelMALA(conjugate_model, block_size=100)
    mcmc = MCMC(
        kernel, num_warmup=300, num_samples=1200, num_chains=2, chain_method="vectorized",
        progress_bar=False,
    )  # fmt: skip
    mcmc.run(jax.random.key(1), Y, extra_fields=("accept_prob", "num_iterations", "converged"))
    return mcmc


def test_conjugate_posterior_within_monte_carlo_error(conjugate_run):
    draws = conjugate_run.get_samples(group_by_chain=True)["mu"]
    assert draws.shape == (2, 1200)
    assert_moments(draws)


def test_sampling_blocks_converged_and_adapted(conjugate_run):
    extra = conjugate_run.get_extra_fields(group_by_chain=True)
    assert bool(np.all(extra["converged"]))
    assert 0 < int(np.max(extra["num_iterations"])) <= 100
    assert 0.35 < float(np.mean(extra["accept_prob"])) < 0.85  # target 0.574


def test_arviz_and_summary(conjugate_run):
    idata = az.from_numpyro(conjugate_run)
    assert idata["posterior"]["mu"].shape == (2, 1200)
    summary = az.summary(idata)
    assert "mu" in summary.index
    conjugate_run.print_summary()


def test_sequential_chain_method():
    # Same keys as the vectorized run, but vmapped and unvmapped arithmetic round differently,
    # and one flipped accept decision decorrelates the chains: compare statistically.
    kernel = ParallelMALA(conjugate_model, block_size=100)
    mcmc = MCMC(
        kernel, num_warmup=300, num_samples=600, num_chains=2, chain_method="sequential",
        progress_bar=False,
    )  # fmt: skip
    mcmc.run(jax.random.key(4), Y)
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"])
    assert draws.shape == (2, 600)
    mean, variance = posterior_moments()
    ess = float(effective_sample_size(draws))
    assert abs(draws.mean() - mean) < 4 * np.sqrt(variance / ess)


def test_constrained_sites_and_potential_fn():
    def model():
        numpyro.sample("sigma", dist.HalfNormal(1.0))

    mcmc = MCMC(ParallelMALA(model, block_size=20), num_warmup=50, num_samples=40,
                progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(2))
    assert bool(np.all(mcmc.get_samples()["sigma"] > 0))

    # potential_fn front end, and no warmup: straight to the parallel blocks
    kernel = ParallelMALA(potential_fn=lambda z: 0.5 * jnp.sum(z["x"] ** 2), block_size=20)
    mcmc = MCMC(kernel, num_warmup=0, num_samples=30, progress_bar=False)
    mcmc.run(jax.random.key(5), init_params={"x": jnp.zeros(2)})
    assert mcmc.get_samples()["x"].shape == (30, 2)


def test_parallel_hmc_conjugate():
    mcmc = MCMC(
        ParallelHMC(conjugate_model, num_steps=3, block_size=100), num_warmup=300,
        num_samples=800, progress_bar=False,
    )  # fmt: skip
    mcmc.run(jax.random.key(6), Y, extra_fields=("accept_prob", "converged"))
    assert_moments(mcmc.get_samples(group_by_chain=True)["mu"])
    assert bool(np.all(mcmc.get_extra_fields()["converged"]))


def test_bad_input():
    with pytest.raises(ValueError, match="block_size"):
        ParallelMALA(conjugate_model, block_size=0)
    with pytest.raises(ValueError, match="exactly one"):
        ParallelMALA()
    with pytest.raises(ValueError, match="num_steps"):
        ParallelHMC(conjugate_model, num_steps=0)
