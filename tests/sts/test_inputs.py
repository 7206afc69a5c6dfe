"""Inputs the structural time-series API converts or warns about (no NUTS: fixed draws)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer import Predictive

from numpyro_parallel import sts

T, HORIZON = 30, 5
KEY = jax.random.PRNGKey(0)


def _counts() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (100 + np.cumsum(rng.integers(-3, 4, size=T))).astype(np.int32)


def _draws(**sites):
    return {k: jnp.full((2,), v) for k, v in sites.items()}


TREND = sts.Sum([sts.LocalLinearTrend()])
TREND_DRAWS = _draws(trend_level_scale=1.0, trend_slope_scale=0.1, observation_scale=1.0)


def test_integer_counts_give_the_results_of_the_same_floats():
    counts = _counts()
    floats = counts.astype(np.float32)
    params = TREND.params_from_samples({k: v[0] for k, v in TREND_DRAWS.items()})
    np.testing.assert_allclose(TREND.log_prob(params, counts), TREND.log_prob(params, floats))
    fc_int = sts.forecast(TREND, TREND_DRAWS, counts, HORIZON, KEY)
    fc_float = sts.forecast(TREND, TREND_DRAWS, floats, HORIZON, KEY)
    # An integer NaN was 0: the forecast fell from ~100 towards 0.
    np.testing.assert_allclose(fc_int.mean, fc_float.mean, rtol=1e-6)
    np.testing.assert_allclose(fc_int.variance, fc_float.variance, rtol=1e-6)
    assert np.all(np.abs(fc_int.mean - floats[-1]) < 10)


@pytest.mark.slow
def test_integer_counts_decompose_and_forecast_several_series_like_floats():
    counts = _counts()
    fc_float = sts.forecast(TREND, TREND_DRAWS, counts.astype(np.float32), HORIZON, KEY)
    # The decomposition over the horizon continues to the forecast's mean (one component).
    ahead = sts.decompose(TREND, TREND_DRAWS, counts, horizon=HORIZON)["trend"].mean
    np.testing.assert_allclose(ahead[:, T:], fc_float.mean, rtol=1e-5)
    multi = sts.MultiSeries({"a": TREND})
    draws = {f"a_{k}": v for k, v in TREND_DRAWS.items()}
    fc_multi = multi.forecast(draws, counts[:, None], HORIZON, KEY)
    np.testing.assert_allclose(fc_multi.mean[..., 0], fc_float.mean, rtol=1e-6)


def test_a_constant_regressor_gets_a_finite_prior_and_a_warning():
    # A policy dummy that switches on only in the forecast period: all zero when fitted.
    rng = np.random.default_rng(2)
    y = jnp.asarray(10 + np.cumsum(rng.normal(size=40)) * 0.3)
    X = np.zeros((40 + HORIZON, 2))
    X[40:, 0] = 1.0
    X[:, 1] = rng.normal(size=40 + HORIZON)
    with pytest.warns(RuntimeWarning, match=r"columns \[0\] are constant"):
        regression = sts.Regression(X[:40])
    data = sts.data_scale(y)
    scale = regression.default_prior("weights", data).base_dist.scale
    # The series' scale over one unit of the dummy (it was 3e11 = scale / 1e-12).
    np.testing.assert_allclose(scale[0], data.scale, rtol=1e-6)
    np.testing.assert_allclose(scale[1], data.scale / np.std(X[:40, 1]), rtol=1e-5)
    model = sts.Sum([sts.LocalLevel(), regression])
    draws = Predictive(model.numpyro_model, num_samples=50)(KEY, y=y)
    draws.pop("y")
    fc = sts.forecast(model, draws, y, HORIZON, KEY, design_matrices={"regression": X})
    spread = float(jnp.max(jnp.abs(fc.mean - y[-1])))
    assert np.isfinite(spread) and spread < 50 * float(data.scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sts.Regression(X[:40, 1:])  # a varying column does not warn


def test_a_scalar_prior_of_an_ar1_pacf_still_fits():
    model = sts.Sum([sts.Autoregressive(1, priors={"pacf": dist.Uniform(-1.0, 1.0)})])
    y = jnp.sin(jnp.arange(float(T)))
    draws = Predictive(model.numpyro_model, num_samples=3)(KEY, y=y)
    draws.pop("y")
    assert draws["ar_pacf"].shape == (3,)
    fc = sts.forecast(model, draws, y, HORIZON, KEY)
    assert np.all(np.isfinite(fc.mean))


def test_a_series_shorter_than_a_season_warns():
    model = sts.Sum([sts.LocalLevel(), sts.Seasonal(12, season_length=4)])
    with pytest.warns(RuntimeWarning, match="fewer than one cycle"):
        Predictive(model.numpyro_model, num_samples=1)(KEY, y=jnp.sin(jnp.arange(40.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not model.warn_if_short(48)


def test_evenly_spaced_float_labels_continue():
    labels = np.arange(20) * 0.1  # 0.1 steps are not exact in binary
    np.testing.assert_allclose(sts.forecast_coords(labels, 3), [2.0, 2.1, 2.2])
    single = (np.arange(20) * np.float32(0.1)).astype(np.float32)
    future = sts.forecast_coords(single, 2)
    assert future.dtype == np.float32
    np.testing.assert_allclose(future, [2.0, 2.1], rtol=1e-6)
    with pytest.raises(ValueError, match="evenly spaced"):
        sts.forecast_coords(np.array([0.0, 0.1, 0.3]), 2)
