"""Structural time series on the parallel Kalman core.

Components (`LocalLevel`, `LocalLinearTrend`, `SemiLocalLinearTrend`, `Seasonal`,
`Autoregressive`, `ARMA`, `Regression`, `DynamicRegression`) are state-space blocks with data-scaled
default priors; `Sum` assembles them into one `LinearGaussianSSM` with a low-rank
process-noise factor and exposes a NumPyro model; `forecast` and `decompose` turn posterior
draws into predictions and per-component contributions; `detect_anomalies` flags points the
model did not expect; `MultiSeries` fits several series (a ``(T, p)`` array) in one model;
`fit_mle` maximises the likelihood; `to_datatree` gathers the run, the
forecast, the decomposition and the anomalies in one ArviZ DataTree with date coordinates,
which `plot_forecast` and `plot_components` draw.
"""

from numpyro_parallel.sts.anomalies import Anomalies, detect_anomalies
from numpyro_parallel.sts.arma import ARMA, ma_coefficients_from_pacf
from numpyro_parallel.sts.components import (
    Component,
    ComponentSSM,
    DataScale,
    LocalLevel,
    LocalLinearTrend,
    SemiLocalLinearTrend,
)
from numpyro_parallel.sts.datatree import forecast_coords, to_datatree
from numpyro_parallel.sts.forecast import Contribution, Forecast, decompose, forecast
from numpyro_parallel.sts.mle import MLEResult, fit_mle
from numpyro_parallel.sts.model import Sum, data_scale
from numpyro_parallel.sts.multiseries import MultiSeries
from numpyro_parallel.sts.plots import plot_components, plot_forecast
from numpyro_parallel.sts.regression import (
    Autoregressive,
    DynamicRegression,
    Regression,
    coefficients_from_pacf,
)
from numpyro_parallel.sts.seasonal import Seasonal

__all__ = [
    "ARMA",
    "Anomalies",
    "Autoregressive",
    "Component",
    "ComponentSSM",
    "Contribution",
    "DataScale",
    "DynamicRegression",
    "Forecast",
    "LocalLevel",
    "LocalLinearTrend",
    "MLEResult",
    "MultiSeries",
    "Regression",
    "Seasonal",
    "SemiLocalLinearTrend",
    "Sum",
    "coefficients_from_pacf",
    "data_scale",
    "decompose",
    "detect_anomalies",
    "fit_mle",
    "forecast",
    "forecast_coords",
    "ma_coefficients_from_pacf",
    "plot_components",
    "plot_forecast",
    "to_datatree",
]
