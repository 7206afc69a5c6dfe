"""The time recursions of the Kalman filter that are not a single scan of filtering
elements: the classical sequential square-root filter (`Sequential()`) and the
covariance-form log-likelihood (``Sequential(square_root=False)``); plus the masking of
missing values and the one-step-ahead predictive terms shared by every strategy. The
`Sharded()` recursions are in `numpyro_parallel.ssm.kalman.sharded`.

Reference: Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers"
(the elements and their combine).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from numpyro_parallel.linalg import mvn_logpdf_from_cholesky, tria
from numpyro_parallel.scan import shift_in
from numpyro_parallel.ssm.kalman.elements import filter_step, predict

__all__ = [
    "covariance_filter_terms",
    "mask_missing",
    "predictive_terms",
    "sequential_filter",
    "terms_from_innovations",
]


def mask_missing(observation_matrix, observation_offset, observation_chol, y):
    """Zero out NaN components so that they drop out of every update (per component).

    Returns:
        ``(H, d, chol_R, y, num_missing)``: missing components have zero rows in ``H``, zero
        offsets and observations, and independent unit noise in ``chol_R``.
    """
    observed = ~jnp.isnan(y)
    H = observation_matrix * observed[..., None]
    d = jnp.where(observed, observation_offset, 0.0)
    y = jnp.where(observed, y, 0.0)

    def decouple(chol_R):
        # chol of M R M + (I - M): missing components become independent unit noise.
        m = observed.astype(y.dtype)
        eye = jnp.eye(m.shape[-1], dtype=y.dtype)
        unit = jnp.einsum("ti,ij->tij", 1.0 - m, eye)
        return tria(jnp.concatenate([chol_R * m[..., None], unit], -1))

    square = (lambda c: c) if observation_chol.shape[-1] == y.shape[-1] else tria
    chol_R = jax.lax.cond(jnp.all(observed), square, decouple, observation_chol)
    num_missing = jnp.sum(~observed, axis=-1)
    return H, d, chol_R, y, num_missing


def sequential_filter(F_in, c_in, chol_in, H, d, chol_R, y, start=None):
    """The classical square-root filter (`filter_step` in a `lax.scan`): one triangularisation
    per step instead of an element combine, the fastest evaluation on CPUs for d >~ 4.
    ``start`` is the filtered ``(mean, chol)`` before the first step (zeros by default: the
    first transition is the prior's, whose ``F`` is zero)."""
    n = F_in.shape[-1]

    def body(carry, inputs):
        mean, chol, residual, innovation_chol = filter_step(*carry, *inputs)
        return (mean, chol), (mean, chol, residual, innovation_chol)

    if start is None:
        start = (jnp.zeros(n, y.dtype), jnp.zeros((n, n), y.dtype))
    return jax.lax.scan(body, start, (F_in, c_in, chol_in, H, d, chol_R, y))[1]


def covariance_filter_terms(params, y, time_invariant=frozenset()):
    """``log p(y_t | y_{0:t-1})`` by the covariance-form filter in a `lax.scan` (the
    log-likelihood of ``Sequential(square_root=False)``).

    Per step: factor the innovation covariance ``S = H P H^T + R`` (a p x p Cholesky factor:
    NaN terms when S is not positive definite), update ``P - (H P)^T S^{-1} H P``
    (symmetrised), predict ``F P F^T + Q``. Missing components are masked inside the step
    (zero rows of H, unit innovation variance). Fields named in ``time_invariant`` are read
    once (their first entry) instead of being scanned over, which saves the per-step reads
    and, in the gradient, the per-step cotangents of the time-expanded arrays.

    Args:
        params: a time-expanded `GaussianSSMParams`.
        y: ``(T, p)`` observations, NaN where missing.
        time_invariant: names of per-step fields whose entries are all equal.

    Returns:
        ``(T,)`` predictive log-likelihood terms.
    """
    gram = lambda a: a @ jnp.swapaxes(a, -1, -2)
    fields = {
        "transition_matrix": params.transition_matrix,
        "transition_offset": params.transition_offset,
        "transition_chol": params.transition_chol,
        "observation_matrix": params.observation_matrix,
        "observation_offset": params.observation_offset,
        "observation_chol": params.observation_chol,
    }
    constant = {k: v[0] for k, v in fields.items() if k in time_invariant}
    varying = {k: v for k, v in fields.items() if k not in time_invariant}
    for name in ("transition_chol", "observation_chol"):  # factors -> covariances
        for group in (constant, varying):
            if name in group:
                group[name] = gram(group[name])

    def body(carry, inputs):
        mean, cov = carry  # p(x_t | y_{0:t-1})
        step, y = {**constant, **inputs[0]}, inputs[1]
        observed = ~jnp.isnan(y)
        m = observed.astype(y.dtype)
        H = step["observation_matrix"] * m[:, None]
        R = step["observation_chol"] * (m[:, None] * m[None, :]) + jnp.diag(1.0 - m)
        HP = H @ cov
        innovation_chol = jnp.linalg.cholesky(HP @ H.T + R)
        residual = jnp.where(observed, y - H @ mean - step["observation_offset"], 0.0)
        gain_t = jax.scipy.linalg.cho_solve((innovation_chol, True), HP)  # K^T = S^-1 H P
        mean = mean + gain_t.T @ residual
        cov = cov - HP.T @ gain_t
        F = step["transition_matrix"]
        mean = F @ mean + step["transition_offset"]
        cov = F @ cov @ F.T + step["transition_chol"]
        return (mean, 0.5 * (cov + cov.T)), (residual, innovation_chol)

    start = (params.initial_mean, gram(params.initial_chol))
    residual, innovation_chol = jax.lax.scan(body, start, (varying, y))[1]
    return terms_from_innovations(residual, innovation_chol, jnp.sum(jnp.isnan(y), axis=-1))


def predictive_terms(inputs, num_missing, filtered, before):
    """``log p(y_t | y_{0:t-1})`` from the filtered ``(mean, chol)`` (parallel over time);
    ``before`` is the filtered state before the first step (any value when the first
    transition is the prior's, whose ``F`` is zero)."""
    F_in, c_in, chol_in, H, d, chol_R, y0 = inputs
    prev_mean, prev_chol = shift_in(before, filtered)
    pred_mean, pred_chol = jax.vmap(predict)(F_in, c_in, chol_in, prev_mean, prev_chol)
    innovation_chol = tria(jnp.concatenate([H @ pred_chol, chol_R], axis=-1))
    residual = y0 - jnp.einsum("tpd,td->tp", H, pred_mean) - d
    return terms_from_innovations(residual, innovation_chol, num_missing)


def terms_from_innovations(residual, innovation_chol, num_missing):
    """``log N(residual; 0, innovation_chol innovation_chol^T)``, with the missing components'
    unit-noise stand-ins taken out."""
    terms = mvn_logpdf_from_cholesky(residual, innovation_chol)
    return terms + 0.5 * math.log(2 * math.pi) * num_missing
