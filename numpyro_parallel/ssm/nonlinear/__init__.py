"""Nonlinear Gaussian state-space models: linearisation into Kalman elements, iterated smoothing.

- `numpyro_parallel.ssm.nonlinear.model`: `NonlinearGaussianModel` and the smoother's result;
- `numpyro_parallel.ssm.nonlinear.linearize` (Taylor and sigma-point statistical linear
  regression) and `numpyro_parallel.ssm.nonlinear.linearization` (a whole model around a
  trajectory): the nonlinear model becomes Kalman elements;
- `numpyro_parallel.ssm.nonlinear.smoother`: `iterated_smoother`, in any strategy;
- `numpyro_parallel.ssm.nonlinear.distribution`: `NonlinearGaussianSSM`, the NumPyro
  distribution.
"""

from numpyro_parallel.ssm.nonlinear.distribution import NonlinearGaussianSSM
from numpyro_parallel.ssm.nonlinear.linearize import AffineGaussian, linearize
from numpyro_parallel.ssm.nonlinear.model import IteratedSmootherResult, NonlinearGaussianModel
from numpyro_parallel.ssm.nonlinear.sigma_points import SigmaPoints
from numpyro_parallel.ssm.nonlinear.smoother import iterated_smoother, linearized_log_likelihood

__all__ = [
    "AffineGaussian",
    "IteratedSmootherResult",
    "NonlinearGaussianModel",
    "NonlinearGaussianSSM",
    "SigmaPoints",
    "iterated_smoother",
    "linearize",
    "linearized_log_likelihood",
]
