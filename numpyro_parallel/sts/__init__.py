"""Structural time series on the parallel Kalman core.

Components (`LocalLevel`, `LocalLinearTrend`, `SemiLocalLinearTrend`, `Seasonal`,
`Autoregressive`, `Regression`, `DynamicRegression`) are state-space blocks with data-scaled
default priors; `Sum` assembles them into one `LinearGaussianSSM` with a low-rank
process-noise factor and exposes a NumPyro model; `forecast` and `decompose` turn posterior
draws into predictions and per-component contributions; `detect_anomalies` flags points the
model did not expect; `fit_mle` maximises the likelihood.
"""

from numpyro_parallel.sts.anomalies import Anomalies, detect_anomalies
from numpyro_parallel.sts.components import (
    Component,
    ComponentSSM,
    DataScale,
    LocalLevel,
    LocalLinearTrend,
    Seasonal,
    SemiLocalLinearTrend,
)
from numpyro_parallel.sts.forecast import Contribution, Forecast, decompose, forecast
from numpyro_parallel.sts.mle import MLEResult, fit_mle
from numpyro_parallel.sts.model import Sum, data_scale
from numpyro_parallel.sts.regression import (
    Autoregressive,
    DynamicRegression,
    Regression,
    coefficients_from_pacf,
)

__all__ = [
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
]
