"""`Sum` as a NumPyro model: NUTS runs on it, forecasts and decompositions are consistent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS, Predictive

from numpyro_parallel import Associative, Blocked, Sequential, sts

T = 24


def _model():
    return sts.Sum([sts.LocalLinearTrend(), sts.Seasonal(period=4, num_harmonics=2)])


def _simulated():
    model = _model()
    prior = Predictive(model.numpyro_model, num_samples=1)(jax.random.PRNGKey(1), num_steps=T)
    return np.array(prior["y"][0, :, 0])


@pytest.mark.slow
def test_nuts_fits_the_default_model_and_forecasts():
    y = _simulated()
    y[[5, 20]] = np.nan
    model = _model()
    mcmc = MCMC(NUTS(model.numpyro_model), num_warmup=100, num_samples=50, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), jnp.asarray(y))
    samples = mcmc.get_samples()
    assert set(samples) == {
        "trend_level_scale",
        "trend_slope_scale",
        "seasonal_drift_scale",
        "observation_scale",
    }
    assert not np.any(mcmc.get_extra_fields()["diverging"])
    fc = sts.forecast(model, samples, jnp.asarray(y), 6, jax.random.PRNGKey(2))
    assert fc.mean.shape == fc.variance.shape == fc.samples.shape == (50, 6)
    assert np.all(np.isfinite(fc.samples)) and np.all(fc.variance > 0)
    # The predictive variance adds the state uncertainty to the observation noise.
    assert np.all(fc.variance > samples["observation_scale"][:, None] ** 2)


@pytest.mark.slow
def test_decomposition_adds_up_to_the_smoothed_signal():
    y = jnp.asarray(_simulated())
    model = _model()
    draws = {
        "trend_level_scale": jnp.array([0.1, 0.3]),
        "trend_slope_scale": jnp.array([0.01, 0.02]),
        "seasonal_drift_scale": jnp.array([0.05, 0.1]),
        "observation_scale": jnp.array([0.2, 0.4]),
    }
    parts = sts.decompose(model, draws, y)
    assert set(parts) == {"trend", "seasonal"}
    total = parts["trend"].mean + parts["seasonal"].mean
    for s in range(2):
        params = model.params_from_samples({k: v[s] for k, v in draws.items()})
        ssm = model.ssm(params, sts.data_scale(y), T)
        smoothed = ssm.smooth(y[:, None])
        signal = smoothed.mean @ ssm.params.observation_matrix[0, 0]
        np.testing.assert_allclose(total[s], signal, rtol=1e-10, atol=1e-10)
        assert np.all(parts["trend"].variance[s] >= 0)


@pytest.mark.slow
def test_forecast_draws_match_forecast_moments():
    y = jnp.asarray(_simulated())
    model = _model()
    one = {
        "trend_level_scale": jnp.array([0.2]),
        "trend_slope_scale": jnp.array([0.02]),
        "seasonal_drift_scale": jnp.array([0.1]),
        "observation_scale": jnp.array([0.3]),
    }
    n = 1000
    many = {k: jnp.repeat(v, n) for k, v in one.items()}
    fc = sts.forecast(model, many, y, 3, jax.random.PRNGKey(5))
    mean, var = fc.mean[0], fc.variance[0]
    # n independent predictive draws: the sample mean is within 4 standard errors.
    se = np.sqrt(var / n)
    assert np.all(np.abs(fc.samples.mean(0) - mean) < 4 * se)
    # Sample variance: relative standard error sqrt(2 / n) for Gaussian draws.
    rel = np.sqrt(2 / n)
    assert np.all(np.abs(fc.samples.var(0) / var - 1) < 4 * rel)


@pytest.mark.slow
def test_signal_forecast_without_noise_has_smaller_variance():
    y = jnp.asarray(_simulated())
    model = _model()
    draw = {
        "trend_level_scale": jnp.array([0.2]),
        "trend_slope_scale": jnp.array([0.02]),
        "seasonal_drift_scale": jnp.array([0.1]),
        "observation_scale": jnp.array([0.3]),
    }
    key = jax.random.PRNGKey(0)
    noisy = sts.forecast(model, draw, y, 4, key)
    signal = sts.forecast(model, draw, y, 4, key, observation_noise=False)
    np.testing.assert_allclose(noisy.variance - signal.variance, 0.09, rtol=1e-10)
    np.testing.assert_allclose(noisy.mean, signal.mean, rtol=1e-12)


def test_state_dimension_is_the_sum_of_the_blocks():
    assert _model().state_dim == 2 + 4


@pytest.mark.slow
def test_strategy_reaches_every_built_model_and_does_not_change_the_likelihood():
    y = _simulated()
    params = {
        "trend": {"level_scale": 0.3, "slope_scale": 0.05},
        "seasonal": {"drift_scale": 0.1},
        "observation": {"scale": 0.4},
    }
    values = {}
    for strategy in (Sequential(), Associative(), Blocked(5)):
        model = sts.Sum(_model().components, strategy=strategy)
        assert model.ssm(params, sts.data_scale(y), T).strategy == strategy
        values[strategy] = model.log_prob(params, y)
    np.testing.assert_allclose(values[Associative()], values[Sequential()], rtol=1e-10)
    np.testing.assert_allclose(values[Blocked(5)], values[Sequential()], rtol=1e-10)


def test_anomalies_flag_an_injected_outlier_and_predictions_match_the_filter():
    # Local level with a small level variance (Kalman gain ~0.3): an 8-sigma outlier at t = 30
    # has a tail probability ~1e-15; the next point's residual is ~0.3 * 8 sigma relative to a
    # wider predictive sd (tail ~0.03), and with threshold 1e-4 the chance of any false flag
    # among the other 58 observed points is ~0.6 %, so the flags must be exactly {30}.
    rng = np.random.default_rng(5)
    T = 60
    level = 10.0 + np.cumsum(0.1 * rng.normal(size=T))
    y = level + rng.normal(size=T)
    y[30] += 8.0
    y[45] = np.nan
    model = sts.Sum([sts.LocalLevel()])
    draw = {"level_level_scale": jnp.array([0.1]), "observation_scale": jnp.array([1.0])}
    found = sts.detect_anomalies(model, draw, jnp.asarray(y), threshold=1e-4)
    assert found.predictive_mean.shape == found.residual.shape == (1, T)
    assert set(np.flatnonzero(np.asarray(found.is_anomaly))) == {30}
    assert np.isnan(found.tail_probability[45]) and not bool(found.is_anomaly[45])
    # The predictive densities at the observed points are the filter's log-likelihood terms.
    ssm = model.ssm(model.params_from_samples({k: v[0] for k, v in draw.items()}),
                    sts.data_scale(jnp.asarray(y)), T)  # fmt: skip
    terms = np.asarray(ssm.log_likelihood_terms(jnp.asarray(y)[:, None]))
    mean, var = np.asarray(found.predictive_mean[0]), np.asarray(found.predictive_variance[0])
    gaussian = -0.5 * (np.log(2 * np.pi * var) + (y - mean) ** 2 / var)
    observed = ~np.isnan(y)
    np.testing.assert_allclose(gaussian[observed], terms[observed], rtol=1e-10)
    with pytest.raises(ValueError, match="`threshold`"):
        sts.detect_anomalies(model, draw, jnp.asarray(y), threshold=1.5)


@pytest.mark.slow
def test_semi_local_linear_trend_equals_the_naive_kalman_filter():
    # The block [[1, 1], [0, phi]], offset (0, (1 - phi) slope_mean), noise diag(level, slope),
    # observed as the level plus noise: per-time log-likelihood terms from the naive
    # covariance-form filter of tests/reference (missing values included).
    from tests.reference import kalman as ref

    rng = np.random.default_rng(8)
    T = 23
    y = np.cumsum(0.3 + 0.2 * rng.normal(size=T)) + rng.normal(size=T)
    y[[4, 11]] = np.nan
    model = sts.Sum([sts.SemiLocalLinearTrend()])
    values = {"level_scale": 0.4, "slope_mean": 0.25, "slope_scale": 0.1,
              "autoregressive_coef": 0.7}  # fmt: skip
    params = {"trend": {k: jnp.asarray(v) for k, v in values.items()},
              "observation": {"scale": jnp.asarray(0.8)}}  # fmt: skip
    data = sts.data_scale(jnp.asarray(y))
    ssm = model.ssm(params, data, T)
    phi, mu = values["autoregressive_coef"], values["slope_mean"]
    naive = {
        "initial_mean": np.array([float(data.initial), 0.0]),
        "initial_cov": float(data.scale) ** 2 * np.eye(2),
        "transition_matrix": np.array([[1.0, 1.0], [0.0, phi]]),
        "transition_cov": np.diag([values["level_scale"] ** 2, values["slope_scale"] ** 2]),
        "transition_offset": np.array([0.0, (1 - phi) * mu]),
        "observation_matrix": np.array([[1.0, 0.0]]),
        "observation_cov": np.array([[0.8**2]]),
        "observation_offset": np.zeros(1),
    }
    _, _, terms = ref.filter_model(naive, y[:, None])
    np.testing.assert_allclose(ssm.log_likelihood_terms(jnp.asarray(y)[:, None]), terms, rtol=1e-10)
    # The slope reverts to slope_mean: far ahead the forecast grows by slope_mean per step.
    draw = {f"trend_{k}": jnp.asarray([v]) for k, v in values.items()}
    draw["observation_scale"] = jnp.asarray([0.8])
    fc = sts.forecast(model, draw, jnp.asarray(y), 60, jax.random.PRNGKey(0))
    np.testing.assert_allclose(jnp.diff(fc.mean[0])[-10:], mu, rtol=1e-3)
    with pytest.raises(ValueError, match="autoregressive_coef"):
        model.ssm({**params, "trend": {**params["trend"], "autoregressive_coef": 1.0}}, data, T)
