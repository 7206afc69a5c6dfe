"""Bad inputs for the structural time-series API (`numpyro_parallel.sts`)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
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

#: varying covariates over the 24 fitted steps and 3 more (a constant column would warn)
X27 = jnp.stack([jnp.cos(jnp.arange(27.0)), jnp.arange(27.0) / 10], axis=1)
X24 = X27[:24]
REG_MODEL = sts.Sum([sts.LocalLevel(), sts.Regression(X24)])
REG_DRAWS = {
    "level_level_scale": jnp.ones(2),
    "regression_weights": jnp.ones((2, 2)),
    "observation_scale": jnp.ones(2),
}
DYN_MODEL = sts.Sum([sts.LocalLevel(), sts.DynamicRegression(X24)])
DYN_DRAWS = {
    "level_level_scale": jnp.ones(2),
    "dynamic_regression_drift_scale": jnp.ones(2),
    "observation_scale": jnp.ones(2),
}
MULTI = sts.MultiSeries({"a": MODEL, "b": sts.Sum([sts.LocalLevel()])})
MULTI_DRAWS = {
    **{f"a_{k}": v for k, v in DRAWS.items()},
    "b_level_level_scale": jnp.ones(2),
    "b_observation_scale": jnp.ones(2),
}
Y2 = jnp.stack([Y, Y], axis=1)
KEY = jax.random.PRNGKey(0)


def _without(samples, site):
    return {k: v for k, v in samples.items() if k != site}


def _with_nan(X, row):
    return X.at[row, 0].set(jnp.nan)


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
        lambda: sts.Sum([sts.LocalLevel(), sts.Regression(X24[:, :2])]).log_prob(
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
            sts.Sum([sts.LocalLevel(), sts.Regression(X24[:, :1])]),
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
        "string-gtol",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y, gtol="1e-6"),
        raises(TypeError, "`gtol`"),
    ),
    Case(
        "period-string",
        P + "Seasonal",
        lambda: sts.Seasonal(period="12"),
        raises(TypeError, "`period`"),
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
        raises(TypeError, "`threshold`"),
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

CASES += [
    # y: integers are converted; booleans, strings and inf are rejected by name.
    Case(
        "y-bool",
        P + "forecast",
        lambda: sts.forecast(MODEL, DRAWS, Y > 1, 3, KEY),
        raises(TypeError, "`y`"),
    ),
    Case(
        "y-string",
        P + "Sum",
        lambda: MODEL.log_prob(PARAMS, np.array(["a"] * 24)),
        raises(TypeError, "`y`"),
    ),
    Case(
        "y-bool",
        P + "decompose",
        lambda: sts.decompose(MODEL, DRAWS, np.ones(24, bool)),
        raises(TypeError, "`y`"),
    ),
    Case(
        "y-bool",
        P + "detect_anomalies",
        lambda: sts.detect_anomalies(MODEL, DRAWS, np.ones(24, bool)),
        raises(TypeError, "`y`"),
    ),
    Case(
        "y-string",
        P + "MultiSeries",
        lambda: MULTI.forecast(MULTI_DRAWS, np.full((24, 2), "a"), 3, KEY),
        raises(TypeError, "`y`"),
    ),
    Case("y-bool", P + "fit_mle", lambda: sts.fit_mle(MODEL, Y > 1), raises(TypeError, "`y`")),
    Case(
        "y-inf",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y.at[3].set(jnp.inf)),
        raises(ValueError, "`y` contains inf"),
    ),
    Case(
        "y-constant",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, jnp.full(24, 2.0).at[4].set(jnp.nan)),
        raises(ValueError, "`y` is constant"),
    ),
    Case(
        "y-inf",
        P + "forecast",
        lambda: sts.forecast(MODEL, DRAWS, Y.at[3].set(jnp.inf), 3, KEY),
        raises(ValueError, "`y` contains inf"),
    ),
    # Regressors: constant columns warn; NaN, wrong lengths and empty matrices are named.
    Case(
        "constant-column-warns",
        P + "Regression",
        lambda: sts.Regression(jnp.zeros((40, 1))).default_prior(
            "weights", sts.DataScale(0.0, 2.0)
        ),
        returns(lambda prior: np.allclose(prior.base_dist.scale, 2.0), warns=RuntimeWarning),
    ),
    Case(
        "no-columns",
        P + "Regression",
        lambda: sts.Regression(jnp.zeros((24, 0))),
        raises(ValueError, "`design_matrix`"),
    ),
    Case(
        "no-rows",
        P + "DynamicRegression",
        lambda: sts.DynamicRegression(jnp.zeros((0, 2))),
        raises(ValueError, "`design_matrix`"),
    ),
    Case(
        "design-string",
        P + "Regression",
        lambda: sts.Regression(np.array(["a", "b"])),
        raises(TypeError, "`design_matrix`"),
    ),
    Case(
        "design-too-long",
        P + "Regression",
        lambda: sts.Sum([sts.LocalLevel(), sts.Regression(X27)]).log_prob(
            {
                "level": {"level_scale": 0.1},
                "regression": {"weights": jnp.ones(2)},
                "observation": {"scale": 0.1},
            },
            Y,
        ),
        raises(ValueError, r"`design_matrix` of component 'regression' has 27 rows.*24"),
    ),
    Case(
        "design-too-long",
        P + "DynamicRegression",
        lambda: sts.Sum([sts.LocalLevel(), sts.DynamicRegression(X27)]).log_prob(
            {
                "level": {"level_scale": 0.1},
                "dynamic_regression": {"drift_scale": 0.1},
                "observation": {"scale": 0.1},
            },
            Y,
        ),
        raises(ValueError, r"`design_matrix` of component 'dynamic_regression' has 27 rows"),
    ),
    Case(
        "future-design-nan",
        P + "forecast",
        lambda: sts.forecast(
            REG_MODEL, REG_DRAWS, Y, 3, KEY, design_matrices={"regression": _with_nan(X27, 25)}
        ),
        raises(ValueError, r"`design_matrices\['regression'\]` contains non-finite"),
    ),
    Case(
        "past-design-nan",
        P + "forecast",
        lambda: sts.forecast(
            DYN_MODEL,
            DYN_DRAWS,
            Y,
            3,
            KEY,
            design_matrices={"dynamic_regression": _with_nan(X27, 5)},
        ),
        raises(ValueError, r"`design_matrices\['dynamic_regression'\]` contains non-finite"),
    ),
    Case(
        "design-nan",
        P + "decompose",
        lambda: sts.decompose(
            REG_MODEL, REG_DRAWS, Y, horizon=3, design_matrices={"regression": _with_nan(X27, 25)}
        ),
        raises(ValueError, "non-finite"),
    ),
    Case(
        "design-wrong-length-h0",
        P + "decompose",
        lambda: sts.decompose(REG_MODEL, REG_DRAWS, Y, design_matrices={"regression": X27}),
        raises(ValueError, r"`design_matrices\['regression'\]` must cover.*24 rows"),
    ),
    Case(
        "design-unknown-name-h0",
        P + "decompose",
        lambda: sts.decompose(REG_MODEL, REG_DRAWS, Y, design_matrices={"foo": X24}),
        raises(ValueError, r"'foo'.*\['regression'\]"),
    ),
    Case(
        "design-wrong-columns",
        P + "forecast",
        lambda: sts.forecast(
            REG_MODEL, REG_DRAWS, Y, 3, KEY, design_matrices={"regression": X27[:, :1]}
        ),
        raises(ValueError, "2 columns"),
    ),
    Case(
        "design-unknown-series",
        P + "MultiSeries",
        lambda: MULTI.forecast(MULTI_DRAWS, Y2, 3, KEY, design_matrices={"c": {}}),
        raises(ValueError, r"`design_matrices` names \['c'\].*\['a', 'b'\]"),
    ),
    # Initial state: checked before the draws are mapped (else all-NaN output).
    Case(
        "initial-cov-not-psd",
        P + "forecast",
        lambda: sts.forecast(MODEL, DRAWS, Y, 3, KEY, initial_cov=-jnp.eye(MODEL.state_dim)),
        raises(ValueError, "`initial_cov`"),
    ),
    Case(
        "initial-cov-nan",
        P + "detect_anomalies",
        lambda: sts.detect_anomalies(
            MODEL, DRAWS, Y, initial_cov=jnp.full((MODEL.state_dim,) * 2, jnp.nan)
        ),
        raises(ValueError, "`initial_cov`"),
    ),
    Case(
        "initial-mean-shape",
        P + "forecast",
        lambda: sts.forecast(MODEL, DRAWS, Y, 3, KEY, initial_mean=jnp.zeros(3)),
        raises(ValueError, r"`initial_mean` must have shape \(5,\)"),
    ),
    # Posterior draws: missing sites, draw axes.
    Case(
        "samples-missing-site",
        P + "forecast",
        lambda: sts.forecast(MODEL, _without(DRAWS, "trend_level_scale"), Y, 3, KEY),
        raises(ValueError, r"lacks the sites \['trend_level_scale'\]"),
    ),
    Case(
        "samples-missing-site",
        P + "decompose",
        lambda: sts.decompose(MODEL, _without(DRAWS, "observation_scale"), Y),
        raises(ValueError, r"lacks the sites \['observation_scale'\]"),
    ),
    Case(
        "samples-missing-site",
        P + "detect_anomalies",
        lambda: sts.detect_anomalies(MODEL, _without(DRAWS, "seasonal_drift_scale"), Y),
        raises(ValueError, r"lacks the sites \['seasonal_drift_scale'\]"),
    ),
    Case(
        "samples-missing-site",
        P + "MultiSeries",
        lambda: MULTI.forecast(_without(MULTI_DRAWS, "a_trend_slope_scale"), Y2, 3, KEY),
        raises(ValueError, r"\['a_trend_slope_scale'\]"),
    ),
    Case(
        "samples-unequal-draws",
        P + "forecast",
        lambda: sts.forecast(MODEL, {**DRAWS, "trend_level_scale": jnp.ones(3)}, Y, 3, KEY),
        raises(ValueError, "leading draw axis"),
    ),
    Case(
        "samples-no-draw-axis",
        P + "decompose",
        lambda: sts.decompose(MODEL, {k: v[0] for k, v in DRAWS.items()}, Y),
        raises(ValueError, "leading draw axis"),
    ),
    Case(
        "samples-grouped-by-chain",
        P + "forecast",
        lambda: sts.forecast(MODEL, {k: v[None] for k, v in DRAWS.items()}, Y, 3, KEY),
        raises(ValueError, "group_by_chain"),
    ),
    Case(
        "samples-wrong-pacf-shape",
        P + "Autoregressive",
        lambda: sts.decompose(
            sts.Sum([sts.LocalLevel(), sts.Autoregressive(2)]),
            {
                "level_level_scale": jnp.ones(2),
                "ar_pacf": jnp.zeros((2, 1)),
                "ar_scale": jnp.ones(2),
                "observation_scale": jnp.ones(2),
            },
            Y,
        ),
        raises(ValueError, r"`samples\['ar_pacf'\]` must have shape \(S, 2\)"),
    ),
    # Other arguments.
    Case(
        "model-not-a-sum",
        P + "forecast",
        lambda: sts.forecast("m", DRAWS, Y, 3, KEY),
        raises(TypeError, "`model`"),
    ),
    Case(
        "observation-noise-string",
        P + "forecast",
        lambda: sts.forecast(MODEL, DRAWS, Y, 3, KEY, observation_noise="no"),
        raises(TypeError, "`observation_noise`"),
    ),
    Case(
        "observation-noise-string",
        P + "Sum",
        lambda: sts.Sum([sts.LocalLevel()], observation_noise="no"),
        raises(TypeError, "`observation_noise`"),
    ),
    Case(
        "threshold-numpy-float",
        P + "detect_anomalies",
        lambda: sts.detect_anomalies(MODEL, DRAWS, Y, threshold=np.float32(0.05)),
        returns(lambda found: found.is_anomaly.shape == (24,)),
    ),
    Case(
        "initial-params-unknown-group",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y, initial_params={**PARAMS, "foo": {}}),
        raises(ValueError, r"`initial_params` names \['foo'\]"),
    ),
    Case(
        "initial-params-list",
        P + "fit_mle",
        lambda: sts.fit_mle(MODEL, Y, initial_params=[1, 2]),
        raises(TypeError, "`initial_params` must be a dict"),
    ),
    # Priors, names and orders.
    Case(
        "prior-not-a-distribution",
        P + "LocalLevel",
        lambda: sts.LocalLevel(priors={"level_scale": 1.0}),
        raises(TypeError, r"`priors\['level_scale'\]`"),
    ),
    Case(
        "observation-prior-not-a-distribution",
        P + "Sum",
        lambda: sts.Sum([sts.LocalLevel()], observation_prior=1.0),
        raises(TypeError, "`observation_prior`"),
    ),
    Case(
        "wrong-pacf-length",
        P + "Autoregressive",
        lambda: sts.Autoregressive(2).build(
            {"pacf": jnp.array([0.5]), "scale": 1.0}, sts.DataScale(0.0, 1.0)
        ),
        raises(ValueError, "`ar_pacf`"),
    ),
    Case(
        "scalar-pacf-prior",
        P + "Autoregressive",
        lambda: sts.Sum([sts.Autoregressive(2, priors={"pacf": dist.Uniform(-1.0, 1.0)})]),
        raises(ValueError, r"`ar_pacf`.*\(2,\)"),
    ),
    Case(
        "wrong-ma-prior-shape",
        P + "ARMA",
        lambda: sts.Sum(
            [sts.ARMA(1, 2, priors={"ma_pacf": dist.Uniform(-jnp.ones(3), 1.0).to_event(1)})]
        ),
        raises(ValueError, "`arma_ma_pacf`"),
    ),
    Case(
        "component-named-observation",
        P + "Sum",
        lambda: sts.Sum([sts.LocalLevel(), sts.Autoregressive(1, name="observation")]),
        raises(ValueError, "'observation'"),
    ),
    Case(
        "colliding-sites",
        P + "Sum",
        lambda: sts.Sum([sts.SemiLocalLinearTrend(name="t"), sts.Autoregressive(1, "t_slope")]),
        raises(ValueError, r"\['t_slope_scale'\]"),
    ),
    Case(
        "colliding-sites",
        P + "MultiSeries",
        lambda: sts.MultiSeries(
            {"a": sts.Sum([sts.LocalLevel(name="b_level")]), "a_b": sts.Sum([sts.LocalLevel()])}
        ),
        raises(ValueError, r"\['a_b_level_level_scale'\]"),
    ),
    Case(
        "column-all-missing",
        P + "MultiSeries",
        lambda: MULTI.log_prob(
            {"a": PARAMS, "b": {"level": {"level_scale": 0.1}, "observation": {"scale": 0.1}}},
            Y2.at[:, 1].set(jnp.nan),
        ),
        raises(ValueError, r"`y\[:, 1\]` \(series 'b'\)"),
    ),
    Case(
        "period-nan",
        P + "Seasonal",
        lambda: sts.Seasonal(float("nan"), num_harmonics=1),
        raises(ValueError, "`period`"),
    ),
    Case(
        "period-inf",
        P + "Seasonal",
        lambda: sts.Seasonal(float("inf"), num_harmonics=1),
        raises(ValueError, "`period`"),
    ),
    Case(
        "period-numpy-int-harmonics",
        P + "Seasonal",
        lambda: sts.Seasonal(np.int64(12), num_harmonics=2),
        returns(lambda seasonal: seasonal.state_dim == 4),
    ),
    Case(
        "period-longer-than-series-warns",
        P + "Sum",
        lambda: sts.Sum([sts.LocalLevel(), sts.Seasonal(100)]).warn_if_short(24),
        returns(bool, warns=RuntimeWarning),
    ),
    Case(
        "string-labels",
        P + "forecast_coords",
        lambda: sts.forecast_coords(np.array(["a", "b"]), 2),
        raises(ValueError, "`forecast_time_coords`"),
    ),
]


@pytest.mark.parametrize("case", case_params(CASES))
def test_sts_contract(case):
    run_case(case)
