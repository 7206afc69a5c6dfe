"""Bad inputs for the structural time-series API (`numpyro_parallel.sts`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel import sts
from tests.contract.matrix import Case, case_params, is_nan, raises, returns, run_case

P = "numpyro_parallel.sts."
Y = jnp.sin(jnp.arange(24.0)) + 0.1 * jnp.arange(24.0)
MODEL = sts.Sum([sts.LocalLinearTrend(), sts.Seasonal(period=4)])
PARAMS = {
    "trend": {"level_scale": 0.1, "slope_scale": 0.01},
    "seasonal": {"drift_scale": 0.1},
    "observation": {"scale": 0.2},
}
DRAWS = {
    "trend_level_scale": jnp.array([0.1, 0.2]),
    "trend_slope_scale": jnp.array([0.01, 0.02]),
    "seasonal_drift_scale": jnp.array([0.1, 0.1]),
    "observation_scale": jnp.array([0.2, 0.3]),
}


def _log_prob(params):
    return MODEL.log_prob(params, Y)


def _with(component, parameter, value):
    return {**PARAMS, component: {**PARAMS[component], parameter: value}}


def _traced_log_prob(value):
    return jax.jit(lambda s: _log_prob(_with("trend", "level_scale", s)))(value)


def _empty_tree():
    import xarray as xr

    return xr.DataTree()


CASES = [
    Case("empty-name", P + "Component", lambda: sts.Component(""), raises(TypeError, "`name`")),
    Case(
        "unknown-prior",
        P + "LocalLevel",
        lambda: sts.LocalLevel(priors={"slope_scale": None}),
        raises(ValueError, "`priors`"),
    ),
    Case(
        "negative-scale",
        P + "LocalLinearTrend",
        lambda: _log_prob(_with("trend", "level_scale", -1.0)),
        raises(ValueError, "`trend_level_scale`"),
    ),
    Case(
        "traced-negative-scale",
        P + "LocalLinearTrend",
        lambda: _traced_log_prob(-1.0),
        returns(is_nan),
    ),
    Case(
        "period-1", P + "Seasonal", lambda: sts.Seasonal(period=1), raises(ValueError, "`period`")
    ),
    Case(
        "period-float-dummy",
        P + "Seasonal",
        lambda: sts.Seasonal(period=12.5),
        raises(TypeError, "`period`"),
    ),
    Case(
        "too-many-harmonics",
        P + "Seasonal",
        lambda: sts.Seasonal(period=12, num_harmonics=7),
        raises(ValueError, "`num_harmonics`"),
    ),
    Case(
        "order-0",
        P + "Autoregressive",
        lambda: sts.Autoregressive(0),
        raises(ValueError, "`order`"),
    ),
    Case(
        "pacf-outside",
        P + "coefficients_from_pacf",
        lambda: sts.coefficients_from_pacf(jnp.array([0.5, 1.2])),
        raises(ValueError, "`pacf`"),
    ),
    Case(
        "traced-pacf-outside",
        P + "coefficients_from_pacf",
        lambda: jax.jit(sts.coefficients_from_pacf)(jnp.array([0.5, 1.2])),
        returns(lambda phi: bool(np.all(np.isnan(phi)))),
    ),
    Case(
        "not-mcmc",
        P + "to_datatree",
        lambda: sts.to_datatree({}, MODEL),
        raises(TypeError, "`mcmc`"),
    ),
    Case(
        "one-label",
        P + "forecast_coords",
        lambda: sts.forecast_coords(np.array([3]), 2),
        raises(ValueError, "`time_coords`"),
    ),
    Case(
        "no-forecast",
        P + "plot_forecast",
        lambda: sts.plot_forecast(_empty_tree()),
        raises(ValueError, "predictions"),
    ),
    Case(
        "no-decomposition",
        P + "plot_components",
        lambda: sts.plot_components(_empty_tree()),
        raises(ValueError, "decomposition"),
    ),
    Case("orders-zero", P + "ARMA", lambda: sts.ARMA(0, 0), raises(ValueError, "`ar_order`")),
    Case("ma-order-float", P + "ARMA", lambda: sts.ARMA(1, 1.5), raises(TypeError, "`ma_order`")),
    Case(
        "unknown-prior",
        P + "ARMA",
        lambda: sts.ARMA(1, 0, priors={"ma_pacf": None}),
        raises(ValueError, "`priors`"),
    ),
    Case(
        "wrong-pacf-length",
        P + "ARMA",
        lambda: sts.Sum([sts.ARMA(2, 1)]).log_prob(
            {
                "arma": {"ar_pacf": jnp.array([0.5]), "ma_pacf": jnp.array([0.1]), "scale": 1.0},
                "observation": {"scale": 1.0},
            },
            Y,
        ),
        raises(ValueError, "`arma_ar_pacf`"),
    ),
    Case(
        "traced-ma-pacf-outside",
        P + "ARMA",
        lambda: jax.jit(
            lambda m: sts.Sum([sts.ARMA(1, 1)]).log_prob(
                {
                    "arma": {"ar_pacf": jnp.array([0.5]), "ma_pacf": m, "scale": 1.0},
                    "observation": {"scale": 1.0},
                },
                Y,
            )
        )(jnp.array([1.5])),
        returns(is_nan),
    ),
    Case(
        "ma-pacf-outside",
        P + "ma_coefficients_from_pacf",
        lambda: sts.ma_coefficients_from_pacf(jnp.array([1.5])),
        raises(ValueError, "`pacf`"),
    ),
    Case(
        "design-3d",
        P + "Regression",
        lambda: sts.Regression(jnp.zeros((5, 2, 2))),
        raises(ValueError, "`design_matrix`"),
    ),
    Case(
        "design-nan",
        P + "DynamicRegression",
        lambda: sts.DynamicRegression(jnp.full((5, 1), jnp.nan)),
        raises(ValueError, "`design_matrix`"),
    ),
    Case(
        "wrong-weights",
        P + "Regression",
        lambda: sts.Sum([sts.LocalLevel(), sts.Regression(jnp.ones((24, 2)))]).log_prob(
            {
                "level": {"level_scale": 0.1},
                "regression": {"weights": jnp.ones(3)},
                "observation": {"scale": 0.1},
            },
            Y,
        ),
        raises(ValueError, "`regression_weights`"),
    ),
    Case("no-components", P + "Sum", lambda: sts.Sum([]), raises(TypeError, "`components`")),
    Case(
        "unknown-strategy",
        P + "Sum",
        lambda: sts.Sum([sts.LocalLevel()], strategy="parallel"),
        raises(ValueError, "`strategy`"),
    ),
    Case(
        "duplicate-names",
        P + "Sum",
        lambda: sts.Sum([sts.LocalLevel(), sts.LocalLevel()]),
        raises(ValueError, "distinct"),
    ),
    Case(
        "missing-params",
        P + "Sum",
        lambda: MODEL.log_prob({"trend": PARAMS["trend"]}, Y),
        raises(ValueError, "`params`"),
    ),
    Case(
        "all-missing",
        P + "data_scale",
        lambda: sts.data_scale(jnp.full(5, jnp.nan)),
        raises(ValueError, "`y`"),
    ),
    Case(
        "horizon-0",
        P + "forecast",
        lambda: sts.forecast(MODEL, DRAWS, Y, 0, jax.random.PRNGKey(0)),
        raises(ValueError, "`horizon`"),
    ),
    Case(
        "samples-not-dict",
        P + "forecast",
        lambda: sts.forecast(MODEL, [1.0], Y, 3, jax.random.PRNGKey(0)),
        raises(TypeError, "`samples`"),
    ),
    Case(
        "regression-without-future",
        P + "forecast",
        lambda: sts.forecast(
            sts.Sum([sts.LocalLevel(), sts.Regression(jnp.ones((24, 1)))]),
            {
                "level_level_scale": jnp.ones(1),
                "regression_weights": jnp.ones((1, 1)),
                "observation_scale": jnp.ones(1),
            },
            Y,
            3,
            jax.random.PRNGKey(0),
        ),
        raises(ValueError, "`design_matrices"),
    ),
    Case(
        "y-2d",
        P + "decompose",
        lambda: sts.decompose(MODEL, DRAWS, Y[:, None]),
        raises(ValueError, "`y`"),
    ),
    Case(
        "not-a-sum",
        P + "fit_mle",
        lambda: sts.fit_mle(sts.LocalLevel(), Y),
        raises(TypeError, "`model`"),
    ),
    Case(
        "2d-series",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y[:, None]),
        raises(ValueError, "`y`"),
    ),
    Case(
        "zero-iterations",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y, max_iterations=0),
        raises(ValueError, "`max_iterations`"),
    ),
    Case(
        "negative-gtol",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y, gtol=-1.0),
        raises(ValueError, "`gtol`"),
    ),
    Case(
        "initial-params-missing",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y, initial_params={"trend": {"level_scale": 0.1}}),
        raises(ValueError, "`initial_params"),
    ),
    Case(
        "initial-params-outside-support",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y, initial_params=_with("trend", "level_scale", -1.0)),
        raises(ValueError, "outside the support"),
    ),
    Case(
        "one-iteration-warns",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y, max_iterations=1),
        returns(lambda r: not r.converged and r.num_iterations == 1, warns=RuntimeWarning),
        slow=True,
    ),
    Case(
        "threshold-zero",
        P + "detect_anomalies",
        lambda: sts.detect_anomalies(MODEL, DRAWS, Y, threshold=0.0),
        raises(ValueError, "`threshold`"),
    ),
    Case(
        "threshold-bool",
        P + "detect_anomalies",
        lambda: sts.detect_anomalies(MODEL, DRAWS, Y, threshold=True),
        raises(ValueError, "`threshold`"),
    ),
    Case(
        "2d-series",
        P + "detect_anomalies",
        lambda: sts.detect_anomalies(MODEL, DRAWS, Y[:, None]),
        raises(ValueError, "`y`"),
    ),
    Case(
        "samples-not-dict",
        P + "detect_anomalies",
        lambda: sts.detect_anomalies(MODEL, [1.0], Y),
        raises(TypeError, "`samples`"),
    ),
    Case(
        "unknown-prior",
        P + "SemiLocalLinearTrend",
        lambda: sts.SemiLocalLinearTrend(priors={"slope": None}),
        raises(ValueError, "`priors`"),
    ),
    Case(
        "coef-at-one",
        P + "SemiLocalLinearTrend",
        lambda: sts.Sum([sts.SemiLocalLinearTrend()]).log_prob(
            {
                "trend": {
                    "level_scale": 0.1,
                    "slope_mean": 0.0,
                    "slope_scale": 0.1,
                    "autoregressive_coef": 1.0,
                },
                "observation": {"scale": 0.2},
            },
            Y,
        ),
        raises(ValueError, "autoregressive_coef"),
    ),
    Case(
        "jit-coef-outside",
        P + "SemiLocalLinearTrend",
        lambda: jax.jit(
            lambda c: sts.Sum([sts.SemiLocalLinearTrend()]).log_prob(
                {
                    "trend": {
                        "level_scale": 0.1,
                        "slope_mean": 0.0,
                        "slope_scale": 0.1,
                        "autoregressive_coef": c,
                    },
                    "observation": {"scale": 0.2},
                },
                Y,
            )
        )(1.5),
        returns(is_nan),
    ),
    Case(
        "season-length-0",
        P + "Seasonal",
        lambda: sts.Seasonal(period=7, season_length=0),
        raises(ValueError, "`season_length`"),
    ),
    Case(
        "not-a-mapping",
        P + "MultiSeries",
        lambda: sts.MultiSeries([MODEL]),
        raises(TypeError, "`models`"),
    ),
    Case(
        "value-not-a-sum",
        P + "MultiSeries",
        lambda: sts.MultiSeries({"a": sts.LocalLevel()}),
        raises(TypeError, r"`models\['a'\]`"),
    ),
    Case(
        "y-one-column",
        P + "MultiSeries",
        lambda: sts.MultiSeries({"a": MODEL, "b": MODEL}).log_prob({"a": PARAMS, "b": PARAMS}, Y),
        raises(ValueError, r"`y` must have shape \(T, 2\)"),
    ),
    Case(
        "traced-negative-scale",
        P + "MultiSeries",
        lambda: jax.jit(
            lambda s: sts.MultiSeries({"a": MODEL, "b": MODEL}).log_prob(
                {"a": PARAMS, "b": _with("observation", "scale", s)}, jnp.stack([Y, Y], axis=1)
            )
        )(-0.2),
        returns(is_nan),
    ),
]


@pytest.mark.parametrize("case", case_params(CASES))
def test_sts_contract(case):
    run_case(case)
