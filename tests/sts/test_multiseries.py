"""`MultiSeries`: p independent structural models as one joint state-space model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

from numpyro_parallel import Sequential, sts

T = 19


def _model(**kwargs):
    return sts.MultiSeries(
        {
            "north": sts.Sum([sts.LocalLinearTrend(), sts.Seasonal(period=4)]),
            "south": sts.Sum([sts.LocalLevel(), sts.Autoregressive(1)]),
        },
        **kwargs,
    )


def _series():
    rng = np.random.default_rng(4)
    north = np.cumsum(0.2 + 0.3 * rng.normal(size=T)) + np.tile([1.0, -1.0, 0.5, -0.5], 5)[:T]
    south = 3.0 + np.cumsum(0.5 * rng.normal(size=T))
    y = np.stack([north, south], axis=1)
    y[3, 0] = y[[3, 8, 9], 1] = np.nan  # one time point missing in both, others in one only
    return jnp.asarray(y)


DRAWS = {
    "north_trend_level_scale": jnp.array([0.3, 0.2]),
    "north_trend_slope_scale": jnp.array([0.05, 0.1]),
    "north_seasonal_drift_scale": jnp.array([0.1, 0.2]),
    "north_observation_scale": jnp.array([0.4, 0.5]),
    "south_level_level_scale": jnp.array([0.5, 0.3]),
    "south_ar_pacf": jnp.array([[0.6], [-0.2]]),
    "south_ar_scale": jnp.array([0.2, 0.4]),
    "south_observation_scale": jnp.array([0.3, 0.2]),
}


def _draw(s):
    return {k: v[s] for k, v in DRAWS.items()}


@pytest.mark.parametrize("strategy", [pytest.param("auto", marks=pytest.mark.slow), Sequential()])
def test_joint_likelihood_is_the_sum_of_the_series_likelihoods(strategy):
    model, y = _model(strategy=strategy), _series()
    params = model.params_from_samples(_draw(0))
    joint = model.log_prob(params, y)
    north = model.models["north"].log_prob(params["north"], y[:, 0])
    south = model.models["south"].log_prob(params["south"], y[:, 1])
    np.testing.assert_allclose(joint, north + south, rtol=1e-10)
    ssm = model.ssm(params, model.data_scales(y), T)
    assert ssm.event_shape == (T, 2) and model.state_dim == 5 + 2


def test_numpyro_model_sites_and_log_density():
    model, y = _model(), _series()
    draw = _draw(1)
    density, trace = log_density(model.numpyro_model, (y,), {}, draw)
    assert {k for k, v in trace.items() if v["type"] == "sample" and not v["is_observed"]} == set(
        DRAWS
    )
    priors = sum(trace[k]["fn"].log_prob(trace[k]["value"]).sum() for k in DRAWS)
    expected = priors + model.log_prob(model.params_from_samples(draw), y)
    np.testing.assert_allclose(density, expected, rtol=1e-10)
    prior = Predictive(model.numpyro_model, num_samples=2)(jax.random.key(0), num_steps=7)
    assert prior["y"].shape == (2, 7, 2)


@pytest.mark.slow
def test_forecast_and_decomposition_are_the_series_own():
    model, y = _model(), _series()
    key = jax.random.key(3)
    fc = model.forecast(DRAWS, y, 5, key, observation_noise=False)
    assert fc.mean.shape == fc.variance.shape == fc.samples.shape == (2, 5, 2)
    south = {k[len("south_") :]: v for k, v in DRAWS.items() if k.startswith("south_")}
    second_key = jax.random.split(key, 2)[1]
    alone = sts.forecast(
        model.models["south"], south, y[:, 1], 5, second_key, observation_noise=False
    )
    np.testing.assert_allclose(fc.mean[..., 1], alone.mean, rtol=1e-10)
    np.testing.assert_allclose(fc.samples[..., 1], alone.samples, rtol=1e-10)
    parts = model.decompose(DRAWS, y, horizon=5)
    assert set(parts) == {"north", "south"} and set(parts["south"]) == {"level", "ar"}
    signal = sum(c.mean[:, T:] for c in parts["north"].values())
    np.testing.assert_allclose(signal, fc.mean[..., 0], rtol=1e-9, atol=1e-10)


def test_invalid_arguments_are_named():
    with pytest.raises(TypeError, match="`models`"):
        sts.MultiSeries([sts.Sum([sts.LocalLevel()])])
    with pytest.raises(ValueError, match="identifiers"):
        sts.MultiSeries({"a b": sts.Sum([sts.LocalLevel()])})
    with pytest.raises(TypeError, match=r"`models\['a'\]`"):
        sts.MultiSeries({"a": sts.LocalLevel()})
    with pytest.raises(ValueError, match=r"`y` must have shape \(T, 2\)"):
        _model().log_prob(_model().params_from_samples(_draw(0)), _series()[:, 0])
    with pytest.raises(ValueError, match="`num_steps`"):
        _model().numpyro_model()
