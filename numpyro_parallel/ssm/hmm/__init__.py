"""Discrete hidden Markov models: log-space elements, their combines, inference.

- `numpyro_parallel.ssm.hmm.elements`: the sum-product and max-product combines and the
  index-map composition of path sampling;
- `numpyro_parallel.ssm.hmm.inference` (filter, smoother, log-likelihood) and
  `numpyro_parallel.ssm.hmm.paths` (Viterbi, state-path sampling), in any strategy; the
  `Blocked`/`Sequential` strategies run as scaled recursions (`scaled`, `blocked`);
- `numpyro_parallel.ssm.hmm.distribution`: `DiscreteHMM`, the NumPyro distribution (with
  `emissions`), and `numpyro_parallel.ssm.hmm.datatree` for ArviZ.
"""

from numpyro_parallel.ssm.hmm.datatree import hmm_to_datatree
from numpyro_parallel.ssm.hmm.distribution import DiscreteHMM
from numpyro_parallel.ssm.hmm.inference import (
    HMMFilterResult,
    HMMSmootherResult,
    hmm_filter,
    hmm_log_likelihood,
    hmm_smoother,
)
from numpyro_parallel.ssm.hmm.paths import (
    ViterbiResult,
    hmm_sample_prior_states,
    hmm_sample_states,
    hmm_viterbi,
)

__all__ = [
    "DiscreteHMM",
    "HMMFilterResult",
    "HMMSmootherResult",
    "ViterbiResult",
    "hmm_filter",
    "hmm_log_likelihood",
    "hmm_sample_prior_states",
    "hmm_sample_states",
    "hmm_smoother",
    "hmm_to_datatree",
    "hmm_viterbi",
]
