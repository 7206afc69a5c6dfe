"""dSMC: the de-sequentialized, parallel-in-time particle smoother.

Corenflos, Chopin & Särkkä (2022), "De-sequentialized Monte Carlo: a parallel-in-time particle
smoother", JMLR 23(283). For the model ``x_0 ~ p_0``, ``x_t ~ f_t(. | x_{t-1})``,
``y_t ~ g_t(. | x_t)``, N particles are drawn *independently at every time step* from Gaussian
proposals ``q_t`` and weighted by ``g_t / q_t`` (times ``p_0`` at t = 0). Adjacent blocks of
time steps are then stitched pairwise in a divide-and-conquer tree of depth ``ceil(log2 T)``:
the N x N pairs (left trajectory i, right trajectory j) get weights
``w_i^L w_j^R f(x_j^R[first] | x_i^L[last])``, N pairs are resampled, and the block's
normalising-constant estimate is multiplied by the mean pair weight. The product of all these
estimates is an unbiased estimate of the likelihood p(y_{0:T-1}); the final N trajectories are
(equally weighted) approximate draws from the smoothing distribution.

Non-power-of-two T is padded with dummy time steps that carry no transition, no potential and
no randomness, and removed at the end. Memory: ``block_size=None`` forms each N x N matrix at
once; an integer ``block_size`` processes rows in blocks with ``lax.map`` (peak memory
``pairs x block_size x N`` per level) and draws pairs as ``i`` from the row sums, then ``j``
given ``i``. The conditional variant (``reference=...``) keeps trajectory 0 equal to the
reference, for particle Gibbs. The lazy/rejection stitching of the paper (needs bounds on f) is
not implemented.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel.linalg import mvn_logpdf_from_cholesky
from numpyro_parallel.smc.conditional_resampling import get_conditional_resampler
from numpyro_parallel.smc.resampling import get_resampler, log_normalize

__all__ = ["DSMCOutput", "dsmc", "gaussian_proposals_from_kalman"]


class DSMCOutput(NamedTuple):
    """Result of :func:`dsmc`.

    Attributes:
        trajectories: ``(N, T, d)`` smoothing trajectories.
        log_weights: ``(N,)`` normalised log-weights (uniform unless T = 1).
        log_evidence: scalar estimate of ``log p(y_{0:T-1})``.
    """

    trajectories: jax.Array
    log_weights: jax.Array
    log_evidence: jax.Array


def _is_missing(y: jax.Array) -> jax.Array:
    return jnp.all(jnp.isnan(y))


def _leaf_log_weights(x, y, t, mean, chol, initial_log_prob, observation_log_prob):
    """Unnormalised leaf log-weights for the (N, d) particles of one time step."""
    missing = _is_missing(y)
    safe_y = jnp.where(missing, jnp.zeros_like(y), y)
    log_g = jax.vmap(observation_log_prob, in_axes=(0, None, None))(x, safe_y, t)
    log_g = jnp.where(missing, jnp.zeros_like(log_g), log_g)
    log_q = jax.vmap(mvn_logpdf_from_cholesky, in_axes=(0, None))(x - mean[None, :], chol)
    log_p0 = jax.vmap(initial_log_prob)(x)
    return log_g - log_q + jnp.where(t == 0, log_p0, jnp.zeros_like(log_p0))


def _pair_log_matrix(rows, cols, lw_left, lw_right, time, valid, transition_log_prob):
    """Log pair weights for left trajectories ``rows`` (b, d) and right starts ``cols`` (N, d)."""
    log_f = jax.vmap(
        jax.vmap(transition_log_prob, in_axes=(None, 0, None)), in_axes=(0, None, None)
    )(rows, cols, time)
    log_f = jnp.where(valid, log_f, jnp.zeros_like(log_f))
    return lw_left[:, None] + lw_right[None, :] + log_f


def _combine(key, left, right, time, valid, *, transition_log_prob, resample, block_size, cond):
    """Stitch two adjacent blocks ``(x (N, L, d), lw (N,), log_z ())``."""
    x_left, lw_left, z_left = left
    x_right, lw_right, z_right = right
    n = lw_left.shape[0]
    last, first = x_left[:, -1], x_right[:, 0]
    if block_size is None:
        log_m = _pair_log_matrix(last, first, lw_left, lw_right, time, valid, transition_log_prob)
        flat = log_m.reshape(-1)
        total = jax.nn.logsumexp(flat)
        idx = resample(key, flat, n, is_log=True)
        i, j = idx // n, idx % n
    else:
        blocks = _blocks_of(last, block_size)
        lw_blocks = _blocks_of(lw_left, block_size)

        def row_sums(args):
            rows, lw_rows = args
            m = _pair_log_matrix(rows, first, lw_rows, lw_right, time, valid, transition_log_prob)
            return jax.nn.logsumexp(m, axis=1)

        log_rows = lax.map(row_sums, (blocks, lw_blocks)).reshape(n)
        total = jax.nn.logsumexp(log_rows)
        key_i, key_j = jax.random.split(key)
        i = resample(key_i, log_rows, n, is_log=True)

        def pick_columns(args):
            rows, lw_rows, keys = args
            m = _pair_log_matrix(rows, first, lw_rows, lw_right, time, valid, transition_log_prob)
            return jax.vmap(jax.random.categorical)(keys, m).astype(jnp.int32)

        keys = _blocks_of(jax.random.split(key_j, n), block_size)
        chosen = (_blocks_of(last[i], block_size), _blocks_of(lw_left[i], block_size), keys)
        j = lax.map(pick_columns, chosen).reshape(n)
        if cond:
            j = j.at[0].set(0)
    x = jnp.concatenate([x_left[i], x_right[j]], axis=1)
    lw = jnp.full((n,), -jnp.log(n), dtype=lw_left.dtype)
    return x, lw, z_left + z_right + total


def _blocks_of(a: jax.Array, block_size: int) -> jax.Array:
    """Reshape the leading axis N into (N // block_size, block_size)."""
    return a.reshape(a.shape[0] // block_size, block_size, *a.shape[1:])


def dsmc(
    rng_key: jax.Array,
    observations: jax.Array,
    num_particles: int,
    *,
    initial_log_prob: Callable,
    transition_log_prob: Callable,
    observation_log_prob: Callable,
    proposal_mean: jax.Array,
    proposal_chol: jax.Array,
    resampling_fn: str | Callable = "multinomial",
    block_size: int | None = None,
    reference: jax.Array | None = None,
) -> DSMCOutput:
    """Parallel-in-time particle smoother and likelihood estimate (dSMC).

    Args:
        rng_key: PRNG key.
        observations: ``(T, p)`` observations; a row of NaN is missing.
        num_particles: number of particles N per time step.
        initial_log_prob: ``(x) -> log p_0(x)``.
        transition_log_prob: ``(x_prev, x, time) -> log f(x_time | x_{time-1})``.
        observation_log_prob: ``(x, observation, time) -> log g(y_time | x_time)``.
        proposal_mean: ``(T, d)`` means of the Gaussian proposals q_t.
        proposal_chol: ``(T, d, d)`` lower Cholesky factors of their covariances.
        resampling_fn: resampler (name or function) for the pair indices.
        block_size: ``None`` for the full N x N pair matrix, or a divisor of N to process
            rows in blocks of that size (bounded memory; pairs drawn row-then-column).
        reference: optional ``(T, d)`` trajectory for the conditional (particle Gibbs)
            variant; trajectory 0 of the output then equals it.

    Returns:
        A :class:`DSMCOutput`.
    """
    observations = jnp.asarray(observations)
    if observations.ndim != 2:
        raise ValueError(f"`observations` must have shape (T, p); got {observations.shape}.")
    num_steps = observations.shape[0]
    if proposal_mean.ndim != 2 or proposal_mean.shape[0] != num_steps:
        raise ValueError(
            f"`proposal_mean` must have shape (T, d) with T={num_steps}; got {proposal_mean.shape}."
        )
    d = proposal_mean.shape[1]
    if proposal_chol.shape != (num_steps, d, d):
        raise ValueError(
            f"`proposal_chol` must have shape {(num_steps, d, d)}; got {proposal_chol.shape}."
        )
    if not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"`num_particles` must be a positive int; got {num_particles!r}.")
    if block_size is not None and (block_size < 1 or num_particles % block_size):
        raise ValueError(
            f"`block_size` must divide `num_particles`={num_particles}; got {block_size}."
        )
    if reference is not None and reference.shape != (num_steps, d):
        raise ValueError(f"`reference` must have shape {(num_steps, d)}; got {reference.shape}.")
    cond = reference is not None
    resample = get_conditional_resampler(resampling_fn) if cond else get_resampler(resampling_fn)
    n = num_particles
    dtype = proposal_mean.dtype

    key_leaves, key_tree = jax.random.split(rng_key)
    noise = jax.random.normal(key_leaves, (num_steps, n, d), dtype=dtype)
    x = proposal_mean[:, None, :] + jnp.einsum("tij,tnj->tni", proposal_chol, noise)
    if cond:
        x = x.at[:, 0].set(reference.astype(dtype))
    times = jnp.arange(num_steps)
    log_w = jax.vmap(
        lambda xt, yt, t, m, c: _leaf_log_weights(
            xt, yt, t, m, c, initial_log_prob, observation_log_prob
        )
    )(x, observations, times, proposal_mean, proposal_chol)
    lw, log_z = jax.vmap(log_normalize)(log_w)
    log_z = log_z - jnp.log(n).astype(dtype)

    depth = max(0, (num_steps - 1).bit_length())
    padded = 1 << depth
    pad = padded - num_steps
    xs = jnp.concatenate([x, jnp.zeros((pad, n, d), dtype)])[:, :, None, :]  # (B, N, L, d)
    lws = jnp.concatenate([lw, jnp.full((pad, n), -jnp.log(n), dtype)])
    log_zs = jnp.concatenate([log_z, jnp.zeros((pad,), dtype)])

    combine = jax.vmap(
        lambda k, left, right, t, v: _combine(
            k,
            left,
            right,
            t,
            v,
            transition_log_prob=transition_log_prob,
            resample=resample,
            block_size=block_size,
            cond=cond,
        )
    )
    for level in range(depth):
        length = 1 << level
        num_pairs = xs.shape[0] // 2
        right_start = (2 * jnp.arange(num_pairs) + 1) * length
        keys = jax.random.split(jax.random.fold_in(key_tree, level), num_pairs)
        left = (xs[0::2], lws[0::2], log_zs[0::2])
        right = (xs[1::2], lws[1::2], log_zs[1::2])
        xs, lws, log_zs = combine(keys, left, right, right_start, right_start < num_steps)
    return DSMCOutput(xs[0][:, :num_steps], lws[0], log_zs[0])


def gaussian_proposals_from_kalman(
    params, observations: jax.Array, *, inflation: float = 1.0, parallel: bool = True
) -> tuple[jax.Array, jax.Array]:
    """dSMC proposals from the Kalman smoother of a linear-Gaussian approximation.

    Args:
        params: a :class:`numpyro_parallel.ssm.kalman.GaussianSSMParams` approximating the
            model (for example a linearisation around a guess).
        observations: ``(T, p)`` observations (NaN = missing).
        inflation: factor (>= 1 recommended) multiplying the smoother's standard deviations,
            which makes the importance weights more robust to a poor approximation.
        parallel: use the parallel Kalman smoother.

    Returns:
        ``(mean (T, d), chol (T, d, d))`` for :func:`dsmc`.
    """
    from numpyro_parallel.ssm.kalman import kalman_smoother

    smoothed = kalman_smoother(params, observations, parallel=parallel)
    return smoothed.mean, inflation * smoothed.chol
