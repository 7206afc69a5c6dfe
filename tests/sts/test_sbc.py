"""Simulation-based calibration (Talts et al. 2018) of NUTS on a local linear trend + seasonal.

N datasets are simulated from the prior; one NUTS run samples the N independent posteriors at
once (the joint posterior of the replicates factorises, so each replicate's marginals are its
own posterior). For every parameter the rank of the true value among L thinned posterior draws
is uniform on {0..L} when prior, simulator and sampler agree; the test is a chi-square test of
the ranks in B bins at level 1e-3 per parameter (fixed seeds, so it is deterministic).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS
from scipy import stats

from numpyro_parallel import Sequential, sts

NUM_REPLICATES, T, PERIOD = 40, 16, 4
NUM_WARMUP, NUM_KEPT, THINNING = 150, 29, 3
NUM_BINS = 5
D = 2 + PERIOD - 1


def _model():
    scale = dist.LogNormal(jnp.log(0.3), 0.5)
    return sts.Sum(
        [
            sts.LocalLinearTrend(priors={"level_scale": scale, "slope_scale": scale}),
            sts.Seasonal(PERIOD, priors={"drift_scale": scale}),
        ],
        observation_prior=dist.LogNormal(jnp.log(0.5), 0.5),
        strategy=Sequential(),
    )


MODEL = _model()
DATA = sts.DataScale(jnp.asarray(0.0), jnp.asarray(1.0))  # priors above do not use it
INITIAL = {"initial_mean": jnp.zeros(D), "initial_cov": jnp.eye(D)}


def _replicates_model(ys):
    with numpyro.plate("replicate", ys.shape[0]):
        params = MODEL.sample_params(DATA)

    def log_lik(p, y):
        return MODEL.ssm(p, DATA, T, **INITIAL).log_prob(y[:, None])

    numpyro.factor("y", jax.vmap(log_lik)(params, ys).sum())


@pytest.mark.slow
@pytest.mark.optimized  # runs NUTS for long: full XLA optimisation
def test_ranks_are_uniform():
    key_params, key_y, key_nuts = jax.random.split(jax.random.key(2018), 3)

    @jax.jit
    def simulate(key_params, key_y):
        def one(k_params, k_y):
            params = numpyro.handlers.seed(MODEL.sample_params, k_params)(DATA)
            return params, MODEL.ssm(params, DATA, T, **INITIAL).sample(k_y)[:, 0]

        split = lambda k: jax.random.split(k, NUM_REPLICATES)
        return jax.vmap(one)(split(key_params), split(key_y))

    truth, ys = simulate(key_params, key_y)
    mcmc = MCMC(NUTS(_replicates_model), num_warmup=NUM_WARMUP,
                num_samples=NUM_KEPT * THINNING, thinning=THINNING, progress_bar=False)  # fmt: skip
    mcmc.run(key_nuts, ys, extra_fields=("diverging",))
    assert mcmc.get_extra_fields()["diverging"].mean() < 0.01
    draws = mcmc.get_samples()
    flat_truth = {"trend_level_scale": truth["trend"]["level_scale"],
                  "trend_slope_scale": truth["trend"]["slope_scale"],
                  "seasonal_drift_scale": truth["seasonal"]["drift_scale"],
                  "observation_scale": truth["observation"]["scale"]}  # fmt: skip
    for name, true in flat_truth.items():
        ranks = np.sum(np.asarray(draws[name]) < np.asarray(true)[None, :], axis=0)  # (N,)
        counts = np.bincount(ranks * NUM_BINS // (NUM_KEPT + 1), minlength=NUM_BINS)
        p_value = stats.chisquare(counts).pvalue
        assert p_value > 1e-3, (name, counts, p_value)
    # The test has power: a simulator whose noise is 1.5 times the prior's is caught.
    wrong = 1.5 * np.asarray(flat_truth["observation_scale"])[None, :]
    ranks = np.sum(np.asarray(draws["observation_scale"]) < wrong, axis=0)
    counts = np.bincount(ranks * NUM_BINS // (NUM_KEPT + 1), minlength=NUM_BINS)
    assert stats.chisquare(counts).pvalue < 1e-3, counts
