"""ArviZ 1.x output: time-resolved log-likelihood and latent-state groups."""

import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

from numpyro_parallel import diagnostics
from numpyro_parallel.ssm import LinearGaussianSSM


def _ssm(sigma, T):
    one = jnp.ones((1, 1))
    return LinearGaussianSSM(
        jnp.zeros(1), one, one, sigma**2 * one, one, (0.5 + sigma**2) * one, num_steps=T
    )


def model(y):
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", _ssm(sigma, y.shape[0]), obs=y)
    numpyro.sample("z", dist.Normal(0.0, 1.0), obs=0.3)  # an ordinary observed site


@pytest.fixture(scope="module")
def fitted():
    y = _ssm(0.5, 20).sample(jax.random.PRNGKey(0))
    mcmc = MCMC(
        NUTS(model),
        num_warmup=60,
        num_samples=50,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(1), y)
    return mcmc, y


@pytest.mark.slow
def test_pointwise_log_likelihood_sums_to_log_prob(fitted):
    mcmc, y = fitted
    samples = mcmc.get_samples(group_by_chain=True)
    terms = diagnostics.pointwise_log_likelihood(model, samples, y, batch_ndims=2)
    assert terms["y"].shape == (2, 50, 20)
    assert terms["z"].shape == (2, 50)
    sigma = samples["sigma"][1, 7]
    np.testing.assert_allclose(terms["y"][1, 7].sum(), _ssm(sigma, 20).log_prob(y), rtol=1e-10)


def test_from_numpyro_groups_and_dims(fitted):
    mcmc, _ = fitted
    years = np.arange(1900, 1920)
    states = np.zeros((2, 50, 20, 1))
    tree = diagnostics.from_numpyro(
        mcmc, time_coords=years, latent_states=states, state_names=["level"]
    )
    assert {"posterior", "sample_stats", "log_likelihood", "latent_states"} <= set(tree.children)
    ll = tree["log_likelihood"].dataset
    assert ll["y"].dims == ("chain", "draw", "time")
    assert list(ll["time"].values) == list(years)
    assert tree["latent_states"].dataset["states"].dims == ("chain", "draw", "time", "state")
    summary = az.summary(tree, var_names=["sigma"])
    assert "sigma" in summary.index
    loo = az.loo(tree, var_name="y")
    assert np.isfinite(loo.elpd)


def test_dataset_helpers_and_errors():
    mean = np.zeros((5, 2))
    cov = np.broadcast_to(np.eye(2), (5, 2, 2))
    ds = diagnostics.smoothed_to_dataset(mean, cov, state_names=["a", "b"])
    assert ds["mean"].dims == ("time", "state")
    assert ds["cov"].dims == ("time", "state", "state_bis")
    np.testing.assert_allclose(ds["sd"], 1.0)
    with pytest.raises(ValueError, match="cov"):
        diagnostics.smoothed_to_dataset(mean, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="samples"):
        diagnostics.states_to_dataset(np.zeros(3))
    with pytest.raises(ValueError, match="time_coords"):
        diagnostics.states_to_dataset(np.zeros((3, 5, 1)), time_coords=[1, 2])


def _hmm(mu):
    from numpyro_parallel.ssm.hmm.distribution import DiscreteHMM

    transition = jnp.log(jnp.array([[0.9, 0.1], [0.1, 0.9]]))
    return DiscreteHMM(jnp.zeros(2), transition, dist.Normal(jnp.stack([-mu, mu]), 0.5))


def hmm_model(y, x):
    mu = numpyro.sample("mu", dist.HalfNormal(2.0))
    numpyro.sample("y", _hmm(mu), obs=y)  # state-space site: T = 25 terms
    numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)  # iid site of another length (7)


@pytest.mark.slow
# 80 draws: ArviZ may warn of high Pareto k; the test checks the terms `az.loo` counts.
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto:UserWarning")
def test_discrete_hmm_log_likelihood_has_time_and_loo_counts_time_points():
    T = 25
    states = (jnp.arange(T) // 5) % 2
    y = jnp.where(states == 1, 1.0, -1.0) + 0.5 * jax.random.normal(jax.random.PRNGKey(0), (T,))
    x = 1.0 + jax.random.normal(jax.random.PRNGKey(1), (7,))
    mcmc = MCMC(
        NUTS(hmm_model),
        num_warmup=40,
        num_samples=40,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(2), y, x)
    tree = diagnostics.from_numpyro(mcmc)
    ll = tree["log_likelihood"].dataset
    assert ll["y"].dims == ("chain", "draw", "time") and ll.sizes["time"] == T
    assert ll["x"].dims == ("chain", "draw", "x_dim_0") and ll.sizes["x_dim_0"] == 7
    mu = mcmc.get_samples(group_by_chain=True)["mu"][1, 3]
    np.testing.assert_allclose(ll["y"].values[1, 3].sum(), _hmm(mu).log_prob(y), rtol=1e-10)
    loo = az.loo(tree, var_name="y")
    assert loo.n_data_points == T and np.isfinite(loo.elpd)


def test_from_numpyro_works_when_arviz_is_imported_first():
    """ArviZ loads numpyro lazily; `numpyro.infer.initialization` was then not an attribute."""
    import subprocess
    import sys

    script = (
        "import arviz, jax, jax.numpy as jnp\n"
        "import numpyro, numpyro.distributions as dist\n"
        "from numpyro.infer import MCMC, NUTS\n"
        "from numpyro_parallel import diagnostics\n"
        "def model(y):\n"
        "    mu = numpyro.sample('mu', dist.Normal(0.0, 1.0))\n"
        "    numpyro.sample('y', dist.Normal(mu, 1.0), obs=y)\n"
        "mcmc = MCMC(NUTS(model), num_warmup=5, num_samples=5, progress_bar=False)\n"
        "mcmc.run(jax.random.PRNGKey(0), jnp.zeros(3))\n"
        "print(sorted(diagnostics.from_numpyro(mcmc).children))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "posterior" in result.stdout


def test_from_numpyro_warns_about_chains_that_never_moved():
    from numpyro_parallel.infer import ParallelMALA

    def normal_mean(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        numpyro.deterministic("constant", jnp.ones(2))  # never changes, in any chain
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = jnp.array([1.0, 2.0, 3.0])

    def run(step_size):
        kernel = ParallelMALA(
            normal_mean, step_size=step_size, adapt_step_size=False, adapt_mass_matrix=False,
            num_steps_per_block=60,
        )  # fmt: skip
        mcmc = MCMC(kernel, num_warmup=0, num_samples=60, num_chains=2,
                    chain_method="vectorized", progress_bar=False)  # fmt: skip
        mcmc.run(jax.random.PRNGKey(0), y, extra_fields=("stuck",))
        return mcmc

    stuck = run(1e4)  # every proposal rejected
    draws = np.asarray(stuck.get_samples(group_by_chain=True)["mu"])
    assert np.all(draws == draws[:, :1])  # naive check: no chain moved
    assert bool(np.all(stuck.get_extra_fields()["stuck"][-1]))
    with pytest.warns(RuntimeWarning, match=r"chain\(s\) \[0, 1\] never moved"):
        diagnostics.from_numpyro(stuck)
    healthy = run(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        diagnostics.from_numpyro(healthy)
    assert not bool(np.any(healthy.get_extra_fields()["stuck"]))


def plate_model(y, mask=True):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("obs", y.shape[0]), numpyro.handlers.mask(mask=mask):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def test_log_likelihood_dims_follow_observed_data():
    # The log-likelihood used `y_dim_0` while ArviZ names the observed data after the plate
    # (or the user's `dims=`): the groups did not line up.
    y = jnp.array([0.5, 1.2, -0.3, 0.8])
    mcmc = MCMC(NUTS(plate_model), num_warmup=10, num_samples=10, num_chains=2,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.PRNGKey(0), y)
    tree = diagnostics.from_numpyro(mcmc)
    assert tree["log_likelihood"]["y"].dims == ("chain", "draw", "obs")
    assert tree["log_likelihood"]["y"].dims[2:] == tree["observed_data"]["y"].dims
    labels = ["a", "b", "c", "d"]
    tree = diagnostics.from_numpyro(mcmc, coords={"day": labels}, dims={"y": ["day"]})
    assert tree["log_likelihood"]["y"].dims == ("chain", "draw", "day")
    assert list(tree["log_likelihood"]["day"].values) == labels


def test_pointwise_log_likelihood_needs_every_latent_site():
    # A missing site used to be drawn from the prior (with one fixed key): a finite, wrong answer.
    y = jnp.array([0.5, 1.2])
    with pytest.raises(ValueError, match=r"`posterior_samples`.*\['sigma'\]"):
        diagnostics.pointwise_log_likelihood(plate_model, {"mu": jnp.zeros(3)}, y)
    # an observed site's entry is ignored: the log-likelihood is at the data
    draws = {"mu": jnp.zeros(3), "sigma": jnp.ones(3)}
    terms = diagnostics.pointwise_log_likelihood(plate_model, {**draws, "y": jnp.ones((3, 2))}, y)
    np.testing.assert_allclose(terms["y"], dist.Normal(0.0, 1.0).log_prob(y)[None].repeat(3, 0))


def test_state_space_site_in_a_plate_or_masked_keeps_time_dim():
    # A plate wraps the distribution (ExpandedDistribution): the site lost its time axis.
    T = 6
    ys = jnp.stack([_ssm(0.5, T).sample(jax.random.PRNGKey(i)) for i in range(3)])

    def series_model(ys, mask=True):
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("series", 3), numpyro.handlers.mask(mask=mask):
            numpyro.sample("y", _ssm(sigma, T), obs=ys)

    sigmas = {"sigma": jnp.array([0.4, 0.7])}
    terms = diagnostics.pointwise_log_likelihood(series_model, sigmas, ys)["y"]
    assert terms.shape == (2, 3, T)
    np.testing.assert_allclose(terms[1].sum(-1), _ssm(0.7, T).log_prob(ys), rtol=1e-10)
    mask = jnp.array([True, False, True])
    masked = diagnostics.pointwise_log_likelihood(series_model, sigmas, ys, mask=mask)["y"]
    np.testing.assert_allclose(masked, terms * mask[None, :, None])


def test_state_space_time_labels_follow_observed_coords(fitted):
    # `coords={"time": years}` labelled the observed data but the log-likelihood kept 0..T-1.
    mcmc, _ = fitted
    years = np.arange(1900, 1920)
    tree = diagnostics.from_numpyro(mcmc, coords={"time": years}, dims={"y": ["time", "obs"]})
    assert tree["log_likelihood"]["y"].dims == ("chain", "draw", "time")
    assert list(tree["log_likelihood"]["time"].values) == list(years)
    assert list(tree["observed_data"]["time"].values) == list(years)


def test_from_numpyro_log_likelihood_false_skips_the_group(fitted):
    mcmc, _ = fitted
    tree = diagnostics.from_numpyro(mcmc, log_likelihood=False)
    assert "log_likelihood" not in tree.children and "posterior" in tree.children
    with pytest.raises(TypeError, match="`log_likelihood`"):
        diagnostics.from_numpyro(mcmc, log_likelihood="no")
