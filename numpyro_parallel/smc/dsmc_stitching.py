"""Exact pair sampler for the dSMC stitching step (N x N weights).

Corenflos, Chopin & Särkkä (2022), "De-sequentialized Monte Carlo: a parallel-in-time particle
smoother", JMLR 23(283). Stitching a left block (trajectories with normalised weights ``w^L``,
last states ``x_i^L``) to a right block (weights ``w^R``, first states ``x_j^R``) draws N pairs
i.i.d. from the *pair target*

    pi(i, j)  proportional to  w_i^L  w_j^R  f(x_j^R | x_i^L).

`exact_pairs` forms the N x N weights (all at once, or ``row_chunk_size`` rows at a time)
and also returns ``log sum_ij w_i^L w_j^R f_ij``, the block's normalising-constant increment.
The lazy (rejection) sampler, which needs only O(N) work per trial, is
`numpyro_parallel.smc.dsmc_lazy`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel.smc.weights import log_weights_valid

__all__ = ["exact_pairs", "pair_log_matrix"]


def pair_log_matrix(rows, cols, lw_left, lw_right, time, valid, transition_log_prob):
    """Log pair weights ``lw_left[a] + lw_right[b] + log f(cols[b] | rows[a])`` as a (b, N) matrix.

    Args:
        rows: ``(b, d)`` last states of (some of) the left trajectories.
        cols: ``(N, d)`` first states of the right trajectories.
        lw_left: ``(b,)`` log-weights of the rows.
        lw_right: ``(N,)`` log-weights of the columns.
        time: time index of ``cols`` (passed to ``transition_log_prob``).
        valid: False for a padding stitch (``log f`` replaced by 0).
        transition_log_prob: ``(x_prev, x, time) -> log f(x | x_prev)``.

    Returns:
        ``(b, N)`` log pair weights.
    """
    log_f = jax.vmap(
        jax.vmap(transition_log_prob, in_axes=(None, 0, None)), in_axes=(0, None, None)
    )(rows, cols, time)
    log_f = jnp.where(valid, log_f, jnp.zeros_like(log_f))
    return lw_left[:, None] + lw_right[None, :] + log_f


def _blocks_of(a: jax.Array, row_chunk_size: int) -> jax.Array:
    """Reshape the leading axis N into (N // row_chunk_size, row_chunk_size)."""
    return a.reshape(a.shape[0] // row_chunk_size, row_chunk_size, *a.shape[1:])


def _drawable(log_weights: jax.Array) -> jax.Array:
    """Uniform log-weights in place of invalid ones (all -inf, NaN) for the resampler.

    The stitch's increment (-inf / NaN) reports the problem instead.
    """
    return jnp.where(log_weights_valid(log_weights), log_weights, jnp.zeros_like(log_weights))


def exact_pairs(
    key,
    last,
    first,
    lw_left,
    lw_right,
    time,
    valid,
    *,
    transition_log_prob,
    resample,
    row_chunk_size,
):
    """N i.i.d. pairs from the exact pair target and ``log sum_ij w_i^L w_j^R f_ij``.

    Args:
        key: PRNG key.
        last: ``(N, d)`` last states of the left trajectories.
        first: ``(N, d)`` first states of the right trajectories.
        lw_left: ``(N,)`` normalised log-weights of the left trajectories.
        lw_right: ``(N,)`` normalised log-weights of the right trajectories.
        time: time index of ``first`` (passed to ``transition_log_prob``).
        valid: False for a padding stitch (``f = 1``).
        transition_log_prob: ``(x_prev, x, time) -> log f(x | x_prev)``.
        resample: ``(key, log_weights, n, is_log=True) -> indices``; draws the flat pair
            index, or the row when ``row_chunk_size`` is an int (the column is then drawn given
            the row).
        row_chunk_size: ``None`` (full N x N matrix) or a divisor of N (rows in chunks).

    Returns:
        ``(i (N,), j (N,), log_increment)``; when no pair has a positive finite weight the
        pairs are drawn uniformly and ``log_increment`` is ``-inf`` (all zero) or NaN.
    """
    n = lw_left.shape[0]
    if row_chunk_size is None:
        log_m = pair_log_matrix(last, first, lw_left, lw_right, time, valid, transition_log_prob)
        flat = log_m.reshape(-1)
        idx = resample(key, _drawable(flat), n, is_log=True)
        return idx // n, idx % n, jax.nn.logsumexp(flat)
    blocks = _blocks_of(last, row_chunk_size)
    lw_blocks = _blocks_of(lw_left, row_chunk_size)

    def row_sums(args):
        rows, lw_rows = args
        m = pair_log_matrix(rows, first, lw_rows, lw_right, time, valid, transition_log_prob)
        return jax.nn.logsumexp(m, axis=1)

    log_rows = lax.map(row_sums, (blocks, lw_blocks)).reshape(n)
    key_i, key_j = jax.random.split(key)
    i = resample(key_i, _drawable(log_rows), n, is_log=True)

    def pick_columns(args):
        rows, lw_rows, keys = args
        m = pair_log_matrix(rows, first, lw_rows, lw_right, time, valid, transition_log_prob)
        return jax.vmap(jax.random.categorical)(keys, m).astype(jnp.int32)

    keys = _blocks_of(jax.random.split(key_j, n), row_chunk_size)
    chosen = (_blocks_of(last[i], row_chunk_size), _blocks_of(lw_left[i], row_chunk_size), keys)
    j = lax.map(pick_columns, chosen).reshape(n)
    return i, j, jax.nn.logsumexp(log_rows)
