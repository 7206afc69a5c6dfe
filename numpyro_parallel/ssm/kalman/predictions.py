"""One-step-ahead predictive distributions of the observations, ``p(y_t | y_{0:t-1})``.

Given the filtered states (the parallel filter of `numpyro_parallel.ssm.kalman.inference`)
every prediction is an independent square-root update, so this adds O(1) depth: propagate
``p(x_{t-1} | y_{0:t-1})`` through the transition and the observation model,
``chol(S_t) = tria([H_t chol(P_{t|t-1}), chol(R_t)])``. Predictions exist for every step,
observed or missing (a missing step's prediction is what an outlier test compares against);
their Gaussian log-densities at the observed ``y_t`` are the filter's
``log_likelihood_terms``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel.linalg import tria
from numpyro_parallel.ssm.kalman.inference import (
    GaussianSSMParams,
    _filter,
    _validated,
    predicted_states,
    resolve_kalman_strategy,
)
from numpyro_parallel.strategy import StrategyLike

__all__ = ["PredictionResult", "kalman_predictions"]


class PredictionResult(NamedTuple):
    """One-step-ahead predictive distributions ``p(y_t | y_{0:t-1}) = N(mean[t], cov[t])``.

    Attributes:
        mean: ``(T, p)`` predictive means.
        chol: ``(T, p, p)`` Cholesky factors of the predictive covariances.
    """

    mean: jax.Array
    chol: jax.Array

    @property
    def cov(self) -> jax.Array:
        """``(T, p, p)`` predictive covariances."""
        return self.chol @ jnp.swapaxes(self.chol, -1, -2)


def kalman_predictions(
    params: GaussianSSMParams, y: jax.Array, *, strategy: StrategyLike = "auto"
) -> PredictionResult:
    """One-step-ahead predictions of every observation from the ones before it.

    Args:
        params: model in square-root, time-expanded form.
        y: ``(T, p)`` observations; NaN entries are missing.
        strategy: evaluation strategy of the filter (`numpyro_parallel.strategy`).

    Returns:
        A `PredictionResult` (NaN when a parameter is not finite under tracing).

    Raises:
        TypeError, ValueError: as `numpyro_parallel.ssm.kalman_filter`.
    """
    params, y = _validated(params, y)
    filtered = _filter(params, y, strategy=resolve_kalman_strategy(strategy, params, y))
    return _predictions(params, filtered.mean, filtered.chol)


@jax.jit
def _predictions(params, mean, chol) -> PredictionResult:
    pred_mean, pred_chol = predicted_states(params, mean, chol)
    H = params.observation_matrix
    y_mean = jnp.einsum("tpd,td->tp", H, pred_mean) + params.observation_offset
    y_chol = tria(jnp.concatenate([H @ pred_chol, params.observation_chol], axis=-1))
    return PredictionResult(y_mean, y_chol)
