"""Gaussian proposals for the parallel-in-time particle smoother (`dsmc`).

dSMC samples each time step's particles independently from a proposal ``N(mean_t, chol_t
chol_t^T)``; a good choice is the Kalman smoother of a linear-Gaussian approximation of the
model, widened by an inflation factor so that the importance weights tolerate a poor
approximation.

Reference: Corenflos, Chopin & Särkkä (2022), "De-sequentialized Monte Carlo: a parallel-in-time
particle smoother", JMLR 23, §4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_real
from numpyro_parallel.ssm.kalman.inference import GaussianSSMParams, kalman_smoother
from numpyro_parallel.strategy import StrategyLike

__all__ = ["gaussian_proposals_from_kalman"]


def gaussian_proposals_from_kalman(
    params: GaussianSSMParams,
    observations: jax.Array,
    *,
    inflation: float = 1.0,
    strategy: StrategyLike = "auto",
) -> tuple[jax.Array, jax.Array]:
    """dSMC proposals from the Kalman smoother of a linear-Gaussian approximation.

    Args:
        params: a `GaussianSSMParams` approximating the model (for example a linearisation
            around a guess).
        observations: ``(T, p)`` observations (NaN = missing).
        inflation: factor (>= 1 recommended) multiplying the smoother's standard deviations,
            which makes the importance weights more robust to a poor approximation.
        strategy: evaluation strategy of the Kalman smoother (`numpyro_parallel.strategy`).

    Returns:
        ``(mean (T, d), chol (T, d, d))`` for `dsmc`.

    Raises:
        TypeError, ValueError: ``inflation`` not a positive finite number, ``observations``
            not ``(T, p)`` with T >= 1 (the Kalman smoother checks ``params``).
    """
    inflation = check_real("inflation", inflation, low=0.0)
    observations = jnp.asarray(observations)
    if observations.ndim != 2 or observations.shape[0] < 1:
        raise ValueError(
            f"`observations` must have shape (T, p) with T >= 1; got {observations.shape}."
        )

    smoothed = kalman_smoother(params, observations, strategy=strategy)
    return smoothed.mean, inflation * smoothed.chol
