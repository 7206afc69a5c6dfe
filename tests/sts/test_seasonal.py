"""Seasons lasting several steps (`Seasonal(season_length=k)`) and decomposition over a horizon."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from numpyro.infer import Predictive

from numpyro_parallel import sts
from tests.reference import kalman as ref

PERIOD, LENGTH = 3, 4


def _params(level=0.3, drift=0.2, noise=0.5):
    return {
        "level": {"level_scale": jnp.asarray(level)},
        "seasonal": {"drift_scale": jnp.asarray(drift)},
        "observation": {"scale": jnp.asarray(noise)},
    }


def _model(**kwargs):
    return sts.Sum([sts.LocalLevel(), sts.Seasonal(PERIOD, season_length=LENGTH)], **kwargs)


def _naive_matrices(num_steps, level=0.3, drift=0.2):
    # Level (1 state) then dummy seasonal (PERIOD - 1 states): the season moves on, with
    # noise, on transitions into a step t + 1 that starts a season, and is held otherwise.
    d = PERIOD
    moving = np.eye(d)
    moving[1] = [0.0, -1.0, -1.0]
    moving[2] = [0.0, 1.0, 0.0]
    F = np.empty((num_steps, d, d))
    Q = np.zeros((num_steps, d, d))
    for t in range(num_steps):
        boundary = (t + 1) % LENGTH == 0
        F[t] = moving if boundary else np.eye(d)
        Q[t, 0, 0] = level**2
        Q[t, 1, 1] = drift**2 if boundary else 0.0
    return F, Q


@pytest.mark.parametrize("num_steps", [1, 4, 23])
def test_log_likelihood_equals_the_naive_time_varying_filter(num_steps):
    rng = np.random.default_rng(num_steps)
    season = np.repeat(np.tile([1.0, -2.0, 1.0], 10), LENGTH)[:num_steps]
    y = season + np.cumsum(0.3 * rng.normal(size=num_steps)) + 0.5 * rng.normal(size=num_steps)
    if num_steps > 5:
        y[[2, 5]] = np.nan
    model = _model()
    data = sts.data_scale(jnp.asarray(y))
    ssm = model.ssm(_params(), data, num_steps)
    F, Q = _naive_matrices(num_steps)
    m0 = np.array([float(data.initial), 0.0, 0.0])
    P0 = float(data.scale) ** 2 * np.eye(PERIOD)
    H = np.array([[1.0, 1.0, 0.0]])
    _, _, terms = ref.kalman_filter(m0, P0, F, Q, H, np.array([[0.25]]), y[:, None])
    got = ssm.log_likelihood_terms(jnp.asarray(y)[:, None])
    np.testing.assert_allclose(got, terms, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.log_prob(_params(), y), terms.sum(), rtol=1e-10)


def test_the_effect_is_held_within_each_season():
    model = sts.Sum([sts.Seasonal(PERIOD, season_length=LENGTH)], observation_noise=False)
    draws = Predictive(model.numpyro_model, num_samples=3)(jax.random.key(0), num_steps=22)
    y = np.asarray(draws["y"][..., 0])
    for start in range(0, 22, LENGTH):
        block = y[:, start : start + LENGTH]
        np.testing.assert_allclose(block, block[:, :1] * np.ones_like(block), rtol=1e-12)
    assert np.all(np.abs(np.diff(y[:, ::LENGTH], axis=1)) > 1e-8)  # and moves between them


def test_forecast_continues_the_season_calendar_past_the_series():
    # No drift, no level noise: the forecast repeats with the full cycle PERIOD * LENGTH and
    # changes only at season boundaries, also when T is not a multiple of LENGTH.
    rng = np.random.default_rng(3)
    y = np.repeat(np.tile([2.0, -1.0, -1.0], 4), LENGTH)[:23] + 0.1 * rng.normal(size=23)
    draw = {"level_level_scale": jnp.zeros(1), "seasonal_drift_scale": jnp.zeros(1),
            "observation_scale": jnp.full(1, 0.1)}  # fmt: skip
    fc = sts.forecast(_model(), draw, jnp.asarray(y), 30, jax.random.key(1))
    mean = np.asarray(fc.mean[0])
    cycle = PERIOD * LENGTH
    np.testing.assert_allclose(mean[:-cycle], mean[cycle:], atol=1e-8)
    steps = np.flatnonzero(np.abs(np.diff(mean)) > 1e-6) + 1 + 23  # absolute time of changes
    assert steps.size and np.all(steps % LENGTH == 0)


@pytest.mark.slow
def test_gradient_matches_finite_differences():
    y = jnp.asarray(np.sin(np.arange(17.0)) + np.repeat([1.0, 0.0, -1.0, 0.5, 0.2], 4)[:17])
    model = _model()

    def log_prob(level, drift, noise):
        return model.log_prob(_params(level, drift, noise), y)

    check_grads(log_prob, (0.3, 0.2, 0.5), order=1, modes=("rev",), rtol=1e-6)


def test_invalid_season_length_is_named():
    with pytest.raises(ValueError, match="`season_length`"):
        sts.Seasonal(4, season_length=0)
    with pytest.raises(TypeError, match="`season_length`"):
        sts.Seasonal(4, season_length=1.5)
    with pytest.raises(ValueError, match="`season_length` > 1 needs the dummy form"):
        sts.Seasonal(12, num_harmonics=2, season_length=7)
    with pytest.raises(ValueError, match="needs `num_steps`"):
        sts.Seasonal(4, season_length=2).build({"drift_scale": 0.1}, sts.data_scale(jnp.ones(3)))


@pytest.mark.slow
def test_decomposition_over_a_horizon_continues_the_fit_and_adds_up_to_the_forecast():
    rng = np.random.default_rng(5)
    y = np.repeat(np.tile([1.0, 0.0, -1.0], 3), LENGTH)[:26] + rng.normal(0, 0.3, 26)
    y[7] = np.nan
    draws = {
        "level_level_scale": jnp.array([0.2, 0.4]),
        "seasonal_drift_scale": jnp.array([0.1, 0.3]),
        "observation_scale": jnp.array([0.3, 0.5]),
    }
    model = _model()
    fit = sts.decompose(model, draws, jnp.asarray(y))
    ahead = sts.decompose(model, draws, jnp.asarray(y), horizon=9)
    for name in ("level", "seasonal"):
        assert ahead[name].mean.shape == (2, 35)
        # Missing future values carry no information: the fit period is unchanged.
        np.testing.assert_allclose(ahead[name].mean[:, :26], fit[name].mean, rtol=1e-10)
        np.testing.assert_allclose(ahead[name].variance[:, :26], fit[name].variance, rtol=1e-9)
    fc = sts.forecast(model, draws, jnp.asarray(y), 9, jax.random.key(0), observation_noise=False)
    total = ahead["level"].mean[:, 26:] + ahead["seasonal"].mean[:, 26:]
    np.testing.assert_allclose(total, fc.mean, rtol=1e-10, atol=1e-10)
    assert np.all(np.diff(ahead["level"].variance[:, 26:], axis=1) > 0)  # a random walk spreads
    with pytest.raises(ValueError, match="`horizon`"):
        sts.decompose(model, draws, jnp.asarray(y), horizon=-1)
