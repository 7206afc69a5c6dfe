"""The time recursions of the square-root Kalman filter that are not a single scan of
filtering elements: the classical sequential filter (`Sequential()`) and the whole filter
inside one `jax.shard_map` (`Sharded()`), plus the one-step-ahead predictive terms shared by
every strategy.

References: Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers"
(the elements and their combine); the two-level distributed scan of `numpyro_parallel.scan`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from numpyro_parallel.linalg import mvn_logpdf_from_cholesky, tria
from numpyro_parallel.scan import from_previous_shard, pad_time, shard_time, sharded_prefix
from numpyro_parallel.ssm.kalman.elements import (
    filter_combine,
    filter_prepare,
    filter_step,
    predict,
)
from numpyro_parallel.strategy import Sharded

__all__ = [
    "mask_missing",
    "predictive_terms",
    "sequential_filter",
    "sharded_filter",
    "shift_in",
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


def shift_in(first, rows):
    """Every array of ``rows`` shifted one step later in time: row t is ``rows[t - 1]`` and
    row 0 is the matching entry of ``first`` (the prior for transitions into each step, the
    previous chunk's last row on a device, the state before the first filtered one)."""
    return tuple(jnp.concatenate([f[None], x[:-1]]) for f, x in zip(first, rows, strict=True))


def sequential_filter(F_in, c_in, chol_in, H, d, chol_R, y):
    """The classical square-root filter (`filter_step` in a `lax.scan`): one triangularisation
    per step instead of an element combine, the fastest evaluation on CPUs for d >~ 4."""
    n = F_in.shape[-1]

    def body(carry, inputs):
        mean, chol, residual, innovation_chol = filter_step(*carry, *inputs)
        return (mean, chol), (mean, chol, residual, innovation_chol)

    start = (jnp.zeros(n, y.dtype), jnp.zeros((n, n), y.dtype))
    return jax.lax.scan(body, start, (F_in, c_in, chol_in, H, d, chol_R, y))[1]


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


def sharded_filter(prior, transitions, observations, strategy: Sharded):
    """The whole filter inside one `shard_map`: each device masks its missing values, prepares
    and scans its chunk (`sharded_prefix`) and computes its predictive terms, taking the
    filtered state before its chunk from the previous device (one `ppermute`); the
    log-likelihood is one `psum`. Communication: P filtering elements and one state per
    device, whatever T is.

    Args:
        prior: ``(0, m0, P0 factor)``, the "transition" into step 0.
        transitions: ``(F, c, Q factor)`` per step (row t maps x_t to x_{t+1}); shifted by
            one step inside, the row before each chunk taken from the previous device.
        observations: ``(H, d, chol_R, y)`` before masking.
        strategy: the `Sharded` strategy.

    Returns:
        ``(mean, chol, terms, log_likelihood)``.
    """
    num_steps, axis = observations[-1].shape[0], strategy.axis_name
    steps = jnp.arange(num_steps + (-num_steps % strategy.num_shards))

    def local(prior, transitions, observations, steps):
        index = jax.lax.axis_index(axis)
        last = from_previous_shard(tuple(x[-1] for x in transitions), strategy)
        before = tuple(jnp.where(index == 0, p, b) for p, b in zip(prior, last, strict=True))
        H, d, chol_R, y, num_missing = mask_missing(*observations)
        inputs = (*shift_in(before, transitions), H, d, chol_R, y)
        elements = jax.vmap(filter_prepare)(*inputs)
        filtered = sharded_prefix(filter_combine, elements, strategy)
        mean, chol = filtered.b, filtered.U
        before = from_previous_shard((mean[-1], chol[-1]), strategy)
        terms = predictive_terms(inputs, num_missing, (mean, chol), before)
        total = jax.lax.psum(jnp.sum(jnp.where(steps < num_steps, terms, 0.0)), axis)
        return mean, chol, terms, total

    spec = PartitionSpec(axis)
    run = shard_time(
        local,
        strategy,
        (spec, spec, spec, PartitionSpec()),
        in_specs=(PartitionSpec(), spec, spec, spec),
    )
    padded = pad_time((transitions, observations), num_steps, strategy.num_shards)
    mean, chol, terms, total = run(prior, *padded, steps)
    return mean[:num_steps], chol[:num_steps], terms[:num_steps], total
