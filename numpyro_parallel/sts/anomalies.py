"""One-step-ahead residuals and anomaly flags for structural time-series models.

For every posterior draw the parallel Kalman filter gives the predictive distribution of each
observation from the ones before it (`numpyro_parallel.ssm.kalman_predictions`); a point is
flagged when its two-sided predictive tail probability, averaged over the posterior draws,
falls below a threshold (TFP's ``detect_anomalies`` does the same with the predictive
quantiles). Missing points get NaN residuals and tail probabilities and are never flagged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from numpyro_parallel._checks import check_real
from numpyro_parallel.ssm.kalman.predictions import kalman_predictions
from numpyro_parallel.sts._validate import check_initial_state, check_series
from numpyro_parallel.sts.forecast import _check_model, _draws, map_draws
from numpyro_parallel.sts.model import Sum, data_scale

__all__ = ["Anomalies", "detect_anomalies"]


class Anomalies(NamedTuple):
    """One-step-ahead predictions, residuals and anomaly flags for S posterior draws.

    Attributes:
        predictive_mean: ``(S, T)`` means of ``p(y_t | y_{0:t-1}, θ_s)``.
        predictive_variance: ``(S, T)`` variances of the same (with observation noise).
        residual: ``(S, T)`` ``y_t`` minus the predictive mean (NaN where ``y_t`` is missing).
        tail_probability: ``(T,)`` posterior mean of ``2 Φ(-|residual| / sd)``.
        is_anomaly: ``(T,)`` ``tail_probability < threshold``.
    """

    predictive_mean: jax.Array
    predictive_variance: jax.Array
    residual: jax.Array
    tail_probability: jax.Array
    is_anomaly: jax.Array


def detect_anomalies(
    model: Sum,
    samples: dict[str, Any],
    y: Any,
    *,
    threshold: float = 0.01,
    initial_mean: Any = None,
    initial_cov: Any = None,
) -> Anomalies:
    """Flag the observations the model did not expect from the ones before them.

    Args:
        model: the `Sum` that was fitted.
        samples: posterior draws keyed by site name (``mcmc.get_samples()``), each with a
            leading draw axis S (one draw of fixed parameters: a leading axis of 1).
        y: ``(T,)`` observed series (NaN = missing).
        threshold: tail probability in (0, 1) below which a point is an anomaly.
        initial_mean: optional ``(d,)`` initial state mean (see `Sum.ssm`).
        initial_cov: optional ``(d, d)`` initial state covariance, likewise.

    Returns:
        `Anomalies`.

    Raises:
        TypeError: ``model`` is not a `Sum`; ``samples`` is not a dict of draws; ``y`` does
            not hold real numbers (integers are converted to floats); ``threshold`` is not a
            number.
        ValueError: ``y`` is not ``(T,)`` or holds inf; ``samples`` lacks a site of the
            model or its sites do not share a leading draw axis; ``threshold`` outside
            (0, 1); an invalid ``initial_mean`` or ``initial_cov``.
    """
    model = _check_model(model)
    y = check_series(y)
    threshold = check_real("threshold", threshold, low=0.0, high=1.0)
    _draws(model, samples)
    initial_mean, initial_cov = check_initial_state(model.state_dim, initial_mean, initial_cov)
    data = data_scale(y)

    def one(draw):
        ssm = model.ssm(
            model.params_from_samples(draw), data, y.shape[0],
            initial_mean=initial_mean, initial_cov=initial_cov,
        )  # fmt: skip
        predicted = kalman_predictions(ssm.params, y[:, None], strategy=ssm.strategy)
        return predicted.mean[:, 0], predicted.cov[:, 0, 0]

    mean, variance = map_draws(one, samples)
    residual = y[None] - mean
    tail = jnp.mean(2.0 * ndtr(-jnp.abs(residual) / jnp.sqrt(variance)), axis=0)
    return Anomalies(mean, variance, residual, tail, tail < threshold)
