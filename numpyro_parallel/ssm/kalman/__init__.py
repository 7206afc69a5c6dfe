"""Linear-Gaussian state-space models: square-root Kalman elements, their combine, inference.

- `numpyro_parallel.ssm.kalman.elements`: the associative elements of the filter and the
  smoother (`filter_prepare`/`filter_combine`, `smoother_prepare`/`smoother_combine`);
- `numpyro_parallel.ssm.kalman.inference`: `kalman_filter`, `kalman_smoother` and
  `kalman_sample_states` on `GaussianSSMParams`, in any strategy;
- `numpyro_parallel.ssm.kalman.distribution`: `LinearGaussianSSM`, the NumPyro distribution
  (its parameters are assembled and checked by `build` and `checks`).
"""

from numpyro_parallel.ssm.kalman.distribution import LinearGaussianSSM
from numpyro_parallel.ssm.kalman.inference import (
    FilterResult,
    GaussianSSMParams,
    SmootherResult,
    kalman_filter,
    kalman_log_likelihood_terms,
    kalman_smoother,
)
from numpyro_parallel.ssm.kalman.predictions import PredictionResult, kalman_predictions
from numpyro_parallel.ssm.kalman.sampling import kalman_sample_states

__all__ = [
    "FilterResult",
    "GaussianSSMParams",
    "LinearGaussianSSM",
    "PredictionResult",
    "SmootherResult",
    "kalman_filter",
    "kalman_log_likelihood_terms",
    "kalman_predictions",
    "kalman_sample_states",
    "kalman_smoother",
]
