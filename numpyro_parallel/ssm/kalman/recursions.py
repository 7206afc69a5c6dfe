"""The time recursions of the Kalman filter that are not a single scan of filtering
elements: the classical sequential square-root filter (`Sequential()`), the covariance-form
log-likelihood (``Sequential(square_root=False)``), and the whole filter, and the filter
with the smoother, inside one `jax.shard_map` (`Sharded()`); plus the one-step-ahead
predictive terms shared by every strategy.

References: Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers"
(the elements and their combine); the two-level distributed scan of `numpyro_parallel.scan`.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from numpyro_parallel.linalg import mvn_logpdf_from_cholesky, tria
from numpyro_parallel.scan import (
    from_previous_shard,
    prefix_before_shard,
    reduce_elements,
    run_sharded,
    sharded_prefix,
    shift_in,
)
from numpyro_parallel.ssm.kalman.elements import (
    SmootherElement,
    filter_combine,
    filter_prepare,
    filter_step,
    predict,
    smoother_combine,
    smoother_prepare,
)
from numpyro_parallel.strategy import Blocked, Sequential, Sharded

__all__ = [
    "covariance_filter_terms",
    "mask_missing",
    "predictive_terms",
    "sequential_filter",
    "sharded_filter",
    "sharded_smoother",
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


def _filter_chunk(prior, transitions, observations, steps, *, num_steps, strategy: Sharded):
    """Inside the `shard_map` of `sharded_filter`: this device's filtered ``(mean, chol)``,
    predictive terms and the total log-likelihood (see `sharded_filter`)."""
    axis = strategy.axis_name
    index = jax.lax.axis_index(axis)
    last = from_previous_shard(tuple(x[-1] for x in transitions), strategy)
    before = tuple(jnp.where(index == 0, p, b) for p, b in zip(prior, last, strict=True))
    H, d, chol_R, y, num_missing = mask_missing(*observations)
    inputs = (*shift_in(before, transitions), H, d, chol_R, y)
    elements = jax.vmap(filter_prepare)(*inputs)
    if isinstance(strategy.inner, Sequential | Blocked):  # fold, then filter from the start
        total = reduce_elements(filter_combine, elements, strategy.inner)
        carry = prefix_before_shard(filter_combine, total, strategy)
        out = sequential_filter(*inputs, start=(carry.b, carry.U))
        mean, chol, residual, innovation_chol = out
        terms = terms_from_innovations(residual, innovation_chol, num_missing)
    else:
        filtered = sharded_prefix(filter_combine, elements, strategy)
        mean, chol = filtered.b, filtered.U
        before = from_previous_shard((mean[-1], chol[-1]), strategy)
        terms = predictive_terms(inputs, num_missing, (mean, chol), before)
    total = jax.lax.psum(jnp.sum(jnp.where(steps < num_steps, terms, 0.0)), axis)
    return mean, chol, terms, total


def sharded_filter(prior, transitions, observations, strategy: Sharded):
    """The whole filter inside one `shard_map`: each device masks its missing values, prepares
    and scans its chunk (`sharded_prefix`) and computes its predictive terms, taking the
    filtered state before its chunk from the previous device (one `ppermute`); the
    log-likelihood is one `psum`. Communication: P filtering elements and one state per
    device, whatever T is.

    With a CPU inner strategy (`Sequential` or `Blocked`) each device instead reduces its
    chunk to one element (a fold: one combine per step), takes the prefix of the totals
    before it and runs the sequential square-root filter (`filter_step`) over its chunk from
    there: about one combine and one triangularisation per step, against three combines and
    two triangularisations for the scan, fix-up and predictive terms. On accelerators
    (`Associative` inner) the chunk is scanned in O(log T) depth as above.

    Args:
        prior: ``(0, m0, P0 factor)``, the "transition" into step 0.
        transitions: ``(F, c, Q factor)`` per step (row t maps x_t to x_{t+1}); shifted by
            one step inside, the row before each chunk taken from the previous device.
        observations: ``(H, d, chol_R, y)`` before masking.
        strategy: the `Sharded` strategy.

    Returns:
        ``(mean, chol, terms, log_likelihood)``.
    """
    local = partial(_filter_chunk, num_steps=observations[-1].shape[0], strategy=strategy)
    spec = PartitionSpec(strategy.axis_name)
    out_specs = (spec, spec, spec, PartitionSpec())
    return run_sharded(local, prior, (transitions, observations), strategy, out_specs)


def sharded_smoother(prior, transitions, observations, strategy: Sharded):
    """The filter and the RTS smoother inside one `shard_map` (arguments as
    `sharded_filter`): after its chunk of the filter, each device prepares the smoothing
    elements of its own steps (row t of the transitions maps x_t to x_{t+1}: no shift), the
    last step's element has ``E = 0`` (so nothing after it, the padding included, enters),
    and the suffix scan ``sharded_prefix(..., reverse=True)`` combines them. Communication:
    2P elements and one state per device, whatever T is.

    Returns:
        ``(mean, chol)`` of the smoothing distributions.
    """
    num_steps = observations[-1].shape[0]

    def local(prior, transitions, observations, steps):
        chunk = _filter_chunk(
            prior, transitions, observations, steps, num_steps=num_steps, strategy=strategy
        )
        mean, chol = chunk[0], chunk[1]
        elements = jax.vmap(smoother_prepare)(*transitions, mean, chol)
        last = SmootherElement(jnp.zeros_like(chol), mean, chol)
        at_end = steps == num_steps - 1
        elements = jax.tree_util.tree_map(
            lambda e, l: jnp.where(at_end.reshape(-1, *([1] * (e.ndim - 1))), l, e),
            elements,
            last,
        )
        smoothed = sharded_prefix(smoother_combine, elements, strategy, reverse=True)
        return smoothed.g, smoothed.L

    spec = PartitionSpec(strategy.axis_name)
    return run_sharded(local, prior, (transitions, observations), strategy, (spec, spec))
