"""State-space models with parallel-in-time inference.

`LinearGaussianSSM` (exact, square-root parallel Kalman), `DiscreteHMM` (log-space parallel
forward/backward/Viterbi) and `NonlinearGaussianSSM` (parallel iterated Kalman smoothers) are
NumPyro distributions; the functional APIs (`kalman_filter`,
`hmm_filter`, ...) expose the same algorithms on plain arrays.
"""

from numpyro_parallel.ssm.hmm.datatree import hmm_to_datatree
from numpyro_parallel.ssm.hmm.distribution import DiscreteHMM
from numpyro_parallel.ssm.hmm.inference import (
    HMMFilterResult,
    HMMSmootherResult,
    ViterbiResult,
    hmm_filter,
    hmm_log_likelihood,
    hmm_sample_states,
    hmm_smoother,
    hmm_viterbi,
)
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
from numpyro_parallel.ssm.nonlinear.distribution import NonlinearGaussianSSM
from numpyro_parallel.ssm.nonlinear.linearize import AffineGaussian, linearize
from numpyro_parallel.ssm.nonlinear.sigma_points import SigmaPoints
from numpyro_parallel.ssm.nonlinear.smoother import (
    IteratedSmootherResult,
    NonlinearGaussianModel,
    iterated_smoother,
)

__all__ = [
    "AffineGaussian",
    "DiscreteHMM",
    "FilterResult",
    "GaussianSSMParams",
    "HMMFilterResult",
    "HMMSmootherResult",
    "IteratedSmootherResult",
    "LinearGaussianSSM",
    "NonlinearGaussianModel",
    "NonlinearGaussianSSM",
    "PredictionResult",
    "SigmaPoints",
    "SmootherResult",
    "ViterbiResult",
    "hmm_filter",
    "hmm_log_likelihood",
    "hmm_sample_states",
    "hmm_smoother",
    "hmm_to_datatree",
    "hmm_viterbi",
    "iterated_smoother",
    "kalman_filter",
    "kalman_log_likelihood_terms",
    "kalman_predictions",
    "kalman_sample_states",
    "kalman_smoother",
    "linearize",
]
