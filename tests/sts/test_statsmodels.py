"""Structural models against statsmodels' UnobservedComponents at fixed parameters.

statsmodels is an independent implementation (its own Kalman filter in Cython, its own
component matrices); with a known initialisation both must agree on the per-time
log-likelihood terms, the smoothed states and the forecasts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel import sts
from numpyro_parallel.ssm import kalman_predictions

sm = pytest.importorskip("statsmodels.api")
arma_process = pytest.importorskip("statsmodels.tsa.arima_process")

T = 47


def _series(missing: bool):
    rng = np.random.default_rng(3)
    t = np.arange(T)
    y = 0.05 * t + np.sin(2 * np.pi * t / 12) + 0.3 * rng.normal(size=T).cumsum()
    X = rng.normal(size=(T + 5, 2))
    y = y + X[:T] @ np.array([0.7, -0.4])
    if missing:
        y[[3, 17, 18, 40]] = np.nan
    return y, X


CONFIGS = {
    "level": dict(components=lambda X: [sts.LocalLevel()], sm=dict(level="llevel")),
    "trend_dummy_seasonal": dict(
        components=lambda X: [sts.LocalLinearTrend(), sts.Seasonal(period=4)],
        sm=dict(level="lltrend", seasonal=4),
    ),
    "trend_harmonic_ar_regression": dict(
        components=lambda X: [
            sts.LocalLinearTrend(),
            sts.Seasonal(period=12, num_harmonics=2),
            sts.Autoregressive(order=2),
            sts.Regression(X[:T]),
        ],
        sm=dict(
            level="lltrend",
            freq_seasonal=[{"period": 12, "harmonics": 2}],
            autoregressive=2,
            mle_regression=True,
        ),
    ),
}

VALUES = {
    "level_scale": 0.3,
    "slope_scale": 0.05,
    "drift_scale": 0.2,
    "pacf": np.array([0.6, -0.3]),
    "scale": 0.4,
    "weights": np.array([0.7, -0.4]),
}


def _setup(name, missing):
    y, X = _series(missing)
    config = CONFIGS[name]
    components = config["components"](X)
    model = sts.Sum(components)
    params = {c.name: {p: jnp.asarray(VALUES[p]) for p in c.parameter_names} for c in components}
    params["observation"] = {"scale": jnp.asarray(0.25)}
    exog = X[:T] if config["sm"].get("mle_regression") else None
    mod = sm.tsa.UnobservedComponents(y, exog=exog, **config["sm"])
    by_name = {
        "sigma2.irregular": 0.25**2,
        "sigma2.level": VALUES["level_scale"] ** 2,
        "sigma2.trend": VALUES["slope_scale"] ** 2,
        "sigma2.seasonal": VALUES["drift_scale"] ** 2,
        "sigma2.freq_seasonal_12(2)": VALUES["drift_scale"] ** 2,
        "sigma2.ar": VALUES["scale"] ** 2,
    }
    phi = np.asarray(sts.coefficients_from_pacf(jnp.asarray(VALUES["pacf"])))
    by_name |= {"ar.L1": phi[0], "ar.L2": phi[1]}
    by_name |= {"beta.x1": VALUES["weights"][0], "beta.x2": VALUES["weights"][1]}
    sm_params = np.array([by_name[n] for n in mod.param_names])
    d = mod.k_states
    rng = np.random.default_rng(11)
    a = rng.normal(size=d)
    B = rng.normal(size=(d, d))
    P = B @ B.T / d + np.eye(d)
    mod.ssm.initialize_known(a, P)
    mod.loglikelihood_burn = 0
    ssm = model.ssm(params, sts.data_scale(y), T, initial_mean=a, initial_cov=P)
    return y, X, model, params, ssm, mod, sm_params, (a, P)


@pytest.mark.slow
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_log_likelihood_and_smoother_match_statsmodels(name, missing):
    y, _, _, _, ssm, mod, sm_params, _ = _setup(name, missing)
    terms = np.asarray(ssm.log_likelihood_terms(jnp.asarray(y)[:, None]))
    np.testing.assert_allclose(terms, mod.loglikeobs(sm_params), rtol=1e-8, atol=1e-10)
    res = mod.smooth(sm_params)
    smoothed = ssm.smooth(jnp.asarray(y)[:, None])
    np.testing.assert_allclose(smoothed.mean, res.smoothed_state.T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        smoothed.cov, np.moveaxis(res.smoothed_state_cov, -1, 0), rtol=1e-6, atol=1e-8
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["trend_dummy_seasonal", "trend_harmonic_ar_regression"])
def test_forecast_matches_statsmodels(name):
    y, X, model, params, _, mod, sm_params, (a, P) = _setup(name, missing=True)
    horizon = 5
    res = mod.smooth(sm_params)
    exog = X[T:] if "regression" in name else None
    expected = res.get_forecast(horizon, exog=exog)

    # One posterior "draw" at the fixed parameters, with statsmodels' initial state.
    draw = {f"{c}_{p}": v[None] for c, group in params.items() for p, v in group.items()}
    designs = {"regression": jnp.asarray(X)} if "regression" in name else None
    fc = sts.forecast(
        model,
        draw,
        jnp.asarray(y),
        horizon,
        jax.random.PRNGKey(0),
        design_matrices=designs,
        initial_mean=a,
        initial_cov=P,
    )
    np.testing.assert_allclose(fc.mean[0], expected.predicted_mean, rtol=1e-8)
    np.testing.assert_allclose(fc.variance[0], expected.var_pred_mean, rtol=1e-8)
    assert fc.samples.shape == (1, horizon)


def test_pacf_parametrisation_gives_those_partial_autocorrelations():
    pacf = np.array([0.5, -0.7, 0.2, 0.9])
    phi = np.asarray(sts.coefficients_from_pacf(jnp.asarray(pacf)))
    process = arma_process.ArmaProcess(np.r_[1.0, -phi], [1.0])
    assert process.isstationary
    np.testing.assert_allclose(process.pacf(5)[1:], pacf, rtol=1e-10)


def _variances(model, params):
    """Our scales as statsmodels' variance parameters, in `mod.param_names` order."""
    names = {"level_scale": "sigma2.level", "slope_scale": "sigma2.trend",
             "drift_scale": "sigma2.seasonal"}  # fmt: skip
    out = {"sigma2.irregular": float(params["observation"]["scale"]) ** 2}
    for component in model.components:
        for parameter in component.parameter_names:
            out[names[parameter]] = float(params[component.name][parameter]) ** 2
    return out


@pytest.mark.slow
def test_fit_mle_matches_statsmodels_at_an_interior_optimum():
    # Local level, same data and known initialisation: both optimisers reach the same maximum;
    # the scales are the square roots of statsmodels' variances, and the standard errors follow
    # from statsmodels' numerical-Hessian ones (cov_type="approx") by the delta method, exact
    # at an optimum (se(s^2) = 2 s se(s)).
    y, _, model, params, _, mod, sm_params, (a, P) = _setup("level", missing=True)
    fit = sts.fit_mle(model, jnp.asarray(y), initial_params=params, initial_mean=a, initial_cov=P)
    expected = mod.fit(start_params=sm_params, method="lbfgs", disp=False, cov_type="approx")
    assert fit.converged and expected.mle_retvals["converged"]
    assert abs(float(fit.log_likelihood) - expected.llf) < 1e-6
    ours = _variances(model, fit.params)
    for i, name in enumerate(mod.param_names):
        np.testing.assert_allclose(ours[name], expected.params[i], rtol=1e-4)
    sigma = float(fit.params["observation"]["scale"])
    i = mod.param_names.index("sigma2.irregular")
    np.testing.assert_allclose(
        2 * sigma * float(fit.standard_errors["observation"]["scale"]), expected.bse[i], rtol=1e-2
    )
    level = float(fit.params["level"]["level_scale"])
    i = mod.param_names.index("sigma2.level")
    np.testing.assert_allclose(
        2 * level * float(fit.standard_errors["level"]["level_scale"]), expected.bse[i], rtol=1e-2
    )


@pytest.mark.slow
def test_fit_mle_at_a_boundary_optimum_is_at_least_statsmodels():
    # Trend + seasonal on 47 points: the slope and seasonal variances go to zero. statsmodels'
    # L-BFGS stops lower here; ours is statsmodels' own log-likelihood at our parameters, and
    # Nelder-Mead started from them finds nothing better.
    y, _, model, params, _, mod, sm_params, (a, P) = _setup("trend_dummy_seasonal", missing=True)
    fit = sts.fit_mle(model, jnp.asarray(y), initial_params=params, initial_mean=a, initial_cov=P)
    assert fit.converged
    ours = np.array([_variances(model, fit.params)[n] for n in mod.param_names])
    np.testing.assert_allclose(mod.loglike(ours), float(fit.log_likelihood), rtol=0, atol=1e-8)
    expected = mod.fit(start_params=sm_params, method="lbfgs", disp=False)
    assert float(fit.log_likelihood) >= expected.llf - 1e-9
    polished = mod.fit(start_params=ours, method="nm", maxiter=5000, disp=False)
    assert polished.llf <= float(fit.log_likelihood) + 1e-6


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_one_step_predictions_match_statsmodels(name):
    # statsmodels' forecasts / forecasts_error_cov are the one-step-ahead predictions of every
    # observation (missing ones included) from the ones before it.
    y, _, _, _, ssm, mod, sm_params, _ = _setup(name, missing=True)
    predicted = kalman_predictions(ssm.params, jnp.asarray(y)[:, None])
    res = mod.filter(sm_params)
    np.testing.assert_allclose(predicted.mean[:, 0], res.forecasts[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        predicted.cov[:, 0, 0], res.forecasts_error_cov[0, 0], rtol=1e-8, atol=1e-10
    )
