"""ParallelMALA as a NumPyro MCMC kernel: closed-form posterior, ArviZ, vectorized chains."""

import arviz as az
import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import autocorrelation, effective_sample_size
from numpyro.infer import MCMC, init_to_value

from numpyro_parallel.infer import ParallelHMC, ParallelMALA
from numpyro_parallel.infer._parallel_steps import hmc_step
from numpyro_parallel.mcmc import run_chain

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
    kernel = ParallelMALA(conjugate_model, num_steps_per_block=100)
    mcmc = MCMC(
        kernel, num_warmup=300, num_samples=1200, num_chains=2, chain_method="vectorized",
        progress_bar=False,
    )  # fmt: skip
    mcmc.run(jax.random.key(1), Y, extra_fields=("accept_prob", "num_iterations", "converged"))
    return mcmc


@pytest.mark.slow
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


@pytest.mark.slow
def test_sequential_chain_method():
    # Same keys as the vectorized run, but vmapped and unvmapped arithmetic round differently,
    # and one flipped accept decision decorrelates the chains: compare statistically.
    kernel = ParallelMALA(conjugate_model, num_steps_per_block=100)
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

    mcmc = MCMC(ParallelMALA(model, num_steps_per_block=20), num_warmup=50, num_samples=40,
                progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(2))
    assert bool(np.all(mcmc.get_samples()["sigma"] > 0))

    # potential_fn front end, and no warmup: straight to the parallel blocks
    kernel = ParallelMALA(potential_fn=lambda z: 0.5 * jnp.sum(z["x"] ** 2), num_steps_per_block=20)
    mcmc = MCMC(kernel, num_warmup=0, num_samples=30, progress_bar=False)
    mcmc.run(jax.random.key(5), init_params={"x": jnp.zeros(2)})
    assert mcmc.get_samples()["x"].shape == (30, 2)


def test_parallel_hmc_conjugate():
    mcmc = MCMC(
        ParallelHMC(conjugate_model, num_integration_steps=3, num_steps_per_block=100),
        num_warmup=300, num_samples=800, progress_bar=False,
    )  # fmt: skip
    mcmc.run(jax.random.key(6), Y, extra_fields=("accept_prob", "converged"))
    assert_moments(mcmc.get_samples(group_by_chain=True)["mu"])
    assert bool(np.all(mcmc.get_extra_fields()["converged"]))


def test_bad_input():
    with pytest.raises(ValueError, match="num_steps_per_block"):
        ParallelMALA(conjugate_model, num_steps_per_block=0)
    with pytest.raises(ValueError, match="exactly one"):
        ParallelMALA()
    with pytest.raises(ValueError, match="num_integration_steps"):
        ParallelHMC(conjugate_model, num_integration_steps=0)


def half_nan_potential(z):
    """Standard Gaussian for x_0 <= 0, NaN (a broken model) for x_0 > 0."""
    x = z["x"]
    return jnp.where(x[0] > 0, jnp.nan, 0.5 * jnp.sum(x**2))


@pytest.mark.parametrize("kernel_cls", [ParallelMALA, ParallelHMC])
def test_nan_potential_at_init_raises(kernel_cls):
    kernel = kernel_cls(potential_fn=half_nan_potential, num_steps_per_block=10)
    with pytest.raises(ValueError, match="init_params"):
        kernel.init(jax.random.key(0), 10, {"x": jnp.array([0.5, 0.0])})
    with pytest.raises(ValueError, match="init_params"):  # one bad chain of two
        kernel.init(jax.random.split(jax.random.key(0)), 10, {"x": jnp.array([[-1, 0], [1, 0.0]])})
    mcmc = MCMC(kernel_cls(conjugate_model), num_warmup=5, num_samples=5, progress_bar=False)
    with pytest.raises(ValueError, match="init_params"):
        mcmc.run(jax.random.key(0), Y, init_params={"mu": jnp.asarray(jnp.nan)})


def test_divergences_reported_for_nan_proposals():
    # Proposals into the NaN half are rejected (the chain stays finite) and counted divergent.
    kernel = ParallelMALA(potential_fn=half_nan_potential, num_steps_per_block=25, solver="jacobi")
    mcmc = MCMC(kernel, num_warmup=50, num_samples=100, progress_bar=False)
    mcmc.run(jax.random.key(1), init_params={"x": jnp.array([-1.0, 0.0])},
             extra_fields=("diverging", "accept_prob"))  # fmt: skip
    draws = np.asarray(mcmc.get_samples()["x"])
    diverging = np.asarray(mcmc.get_extra_fields()["diverging"])
    assert np.all(np.isfinite(draws)) and np.all(draws[:, 0] <= 0)
    assert 0 < diverging.sum() < len(diverging)
    # a divergent (NaN) proposal is always rejected: accept_prob 0, as NumPyro reports it
    assert np.all(np.asarray(mcmc.get_extra_fields()["accept_prob"])[diverging] == 0)


@pytest.mark.slow
def test_parallel_hmc_random_path_length_equals_sequential():
    # The jittered number of leapfrog steps comes from each step's key: parallel == sequential.
    logdensity = lambda x: -0.5 * jnp.sum(x**2)
    step = hmc_step(logdensity, 4, random_integration_steps=True)
    init = lambda x: blackjax.hmc.init(x, logdensity)
    state, key = init(jnp.array([1.0, -0.5, 0.3])), jax.random.key(3)
    chain = lambda k, s: step(k, s, 0.5)
    expected, expected_info = run_chain(chain, state, key, 32, strategy="sequential")
    # Jacobi keeps this fast; Newton through the random-length loop runs in the MCMC tests.
    states, info = run_chain(chain, state, key, 32, solver="jacobi", init_fn=init)
    assert bool(info.converged)
    np.testing.assert_allclose(states.position, expected.position, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(info.aux.is_accepted, expected_info.aux.is_accepted)
    lengths = jax.vmap(lambda k: step(k, state, 0.5)[0])(jax.random.split(key, 4))
    assert len(np.unique(np.asarray(lengths.position)[:, 0])) == 4  # the steps differ


def lag_one_and_ess(draws):
    """Per coordinate: lag-1 autocorrelation and ESS of (num_draws, d) draws."""
    lag1 = [float(autocorrelation(draws[:, i])[1]) for i in range(draws.shape[1])]
    ess = [float(effective_sample_size(draws[None, :, i])) for i in range(draws.shape[1])]
    return np.array(lag1), np.array(ess)


def test_parallel_hmc_default_draws_not_antithetic():
    # Standard Gaussian, d = 6: a fixed path length near half a period gives lag-1
    # autocorrelation ~ -0.85 and ESS ~ 10x the draws (control below); the default random path
    # length must not. With N = 1000 draws the lag-1 estimate has standard error ~ 1/sqrt(N)
    # ~ 0.03 (0.05 allowing for correlation), and the ESS estimate ~ 10-15 %: the bounds
    # (mean lag-1 > -0.3 with every coordinate > -0.4, mean ESS <= 1.2 N) leave 3+ standard
    # errors for a sampler whose true lag-1 is >= -0.1, and the control fails them by far.
    num_draws = 1000
    mcmc = MCMC(ParallelHMC(potential_fn=lambda z: 0.5 * jnp.sum(z**2)), num_warmup=300,
                num_samples=num_draws, progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(3), init_params=jnp.zeros(6))
    lag1, ess = lag_one_and_ess(np.asarray(mcmc.get_samples()))
    assert lag1.mean() > -0.3 and lag1.min() > -0.4, lag1
    assert ess.mean() <= 1.2 * num_draws and np.all(ess > 0), ess


def test_fixed_path_length_is_antithetic_control():
    # The failure the default avoids, at the step level (fast): fixed 4 leapfrog steps of
    # size 0.7 on a standard Gaussian (trajectory ~ 0.9 pi) vs the random path length.
    logdensity = lambda x: -0.5 * jnp.sum(x**2)
    state = blackjax.hmc.init(jnp.zeros(6), logdensity)
    results = {}
    for random_integration in (False, True):
        step = hmc_step(logdensity, 4, random_integration)
        chain = lambda k, s, step=step: step(k, s, 0.7)
        states, _ = run_chain(chain, state, jax.random.key(0), 2000, strategy="sequential")
        results[random_integration] = lag_one_and_ess(np.asarray(states.position))
    assert results[False][0].mean() < -0.6 and results[False][1].mean() > 3 * 2000
    assert results[True][0].mean() > -0.1 and results[True][1].mean() <= 1.2 * 2000


def test_more_bad_input():
    with pytest.raises(ValueError, match="step_size"):
        ParallelMALA(conjugate_model, step_size=-0.1)
    with pytest.raises(ValueError, match="solver"):
        ParallelHMC(conjugate_model, solver="nuts")
    with pytest.raises(ValueError, match="atol"):
        ParallelMALA(conjugate_model, atol=-1.0)
    with pytest.raises(ValueError, match="max_iterations"):
        ParallelMALA(conjugate_model, max_iterations=0)
    with pytest.raises(TypeError, match="num_integration_steps"):
        ParallelHMC(conjugate_model, num_integration_steps=2.0)


def test_integer_init_params_are_cast_to_float():
    # `{"mu": 0}` used to fail deep inside jax.grad ("grad requires real-valued inputs").
    kernel = ParallelMALA(conjugate_model, num_steps_per_block=5)
    from_int, from_float = (
        kernel.init(jax.random.key(0), 5, {"mu": init}, model_args=(Y,)) for init in (0, 0.0)
    )
    assert jnp.issubdtype(from_int.z["mu"].dtype, jnp.floating)
    # The same state (position, potential, adaptation, block), hence the same chain.
    for field in ("z", "potential_energy", "step_size", "inverse_mass_matrix", "block"):
        jax.tree_util.tree_map(
            np.testing.assert_array_equal, getattr(from_int, field), getattr(from_float, field)
        )
    kernel = ParallelMALA(potential_fn=lambda z: 0.5 * jnp.sum(z["x"] ** 2), num_steps_per_block=5)
    state = kernel.init(jax.random.key(0), 5, {"x": jnp.array([1, -1])})
    assert jnp.issubdtype(state.z["x"].dtype, jnp.floating)
    assert np.isfinite(float(kernel.sample(state, (), {}).potential_energy))


@pytest.mark.parametrize("kernel_cls", [ParallelMALA, ParallelHMC])
def test_init_strategy_sets_the_starting_point(kernel_cls):
    # As with NUTS: `init_strategy=init_to_value(...)` starts every chain at that value.
    kernel = kernel_cls(conjugate_model, init_strategy=init_to_value(values={"mu": 2.5}))
    state = kernel.init(jax.random.key(0), 0, model_args=(Y,))
    assert float(state.z["mu"]) == 2.5
    keys = jax.random.split(jax.random.key(1), 3)  # vectorized chains
    np.testing.assert_array_equal(kernel.init(keys, 0, model_args=(Y,)).z["mu"], [2.5] * 3)
    with pytest.raises(TypeError, match="`init_strategy`"):
        kernel_cls(conjugate_model, init_strategy="median")
