"""State-space models with parallel-in-time inference.

`LinearGaussianSSM` (exact, square-root parallel Kalman) is a NumPyro distribution; the
functional Kalman API (`kalman_filter`, `kalman_smoother`, `kalman_sample_states`) works on
`GaussianSSMParams` directly.
"""

from numpyro_parallel.ssm.distributions import LinearGaussianSSM
from numpyro_parallel.ssm.kalman import (
    FilterResult,
    GaussianSSMParams,
    SmootherResult,
    kalman_filter,
    kalman_sample_states,
    kalman_smoother,
)

__all__ = [
    "FilterResult",
    "GaussianSSMParams",
    "LinearGaussianSSM",
    "SmootherResult",
    "kalman_filter",
    "kalman_sample_states",
    "kalman_smoother",
]
