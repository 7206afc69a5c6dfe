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
no randomness, and removed at the end. Memory: ``row_chunk_size=None`` forms each N x N matrix at
once; an integer ``row_chunk_size`` processes rows in chunks with ``lax.map`` (peak memory
``pairs x row_chunk_size x N`` per level) and draws pairs as ``i`` from the row sums, then ``j``
given ``i``. The conditional variant (``reference=...``) keeps trajectory 0 equal to the
reference, for particle Gibbs.

Lazy stitching (section "lazy resampling" of the paper): given an upper bound
``transition_log_bound`` on ``log f_t``, each of the N pairs is drawn by rejection (propose
``i ~ w^L``, ``j ~ w^R``, accept with probability ``f_ij / bound``), O(N) work per trial;
slots not accepted after ``max_trials`` trials are drawn from the exact N x N pair weights, so
the pairs remain exact i.i.d. draws (see `numpyro_parallel.smc.dsmc_lazy`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel.linalg import mvn_logpdf_from_cholesky
from numpyro_parallel.smc.conditional_resampling import get_conditional_resampler
from numpyro_parallel.smc.dsmc_checks import check_dsmc_inputs
from numpyro_parallel.smc.dsmc_lazy import lazy_level, log_bounds_array
from numpyro_parallel.smc.dsmc_stitching import exact_pairs
from numpyro_parallel.smc.resampling import get_resampler, multinomial
from numpyro_parallel.smc.status import IMPOSSIBLE, INVALID, OK, step_status, warn_status
from numpyro_parallel.smc.weights import ess, log_normalize, log_weights_valid

__all__ = ["DSMCOutput", "dsmc"]


class DSMCOutput(NamedTuple):
    """Result of `dsmc`.

    Attributes:
        trajectories: ``(N, T, d)`` smoothing trajectories.
        log_weights: ``(N,)`` normalised log-weights (uniform unless T = 1).
        log_likelihood: scalar estimate of ``log p(y_{0:T-1})``.
        mean_trials: lazy stitching only (else 0): mean number of rejection trials per
            drawn pair, over all stitches of the tree.
        num_fallback: lazy stitching only: number of pairs drawn by the exact fallback
            (not accepted within ``max_trials``).
        num_bound_violations: lazy stitching only: number of proposed pairs with
            ``log f > transition_log_bound``; nonzero means the bound is wrong and the
            output is biased.
        status: int32 worst status (`numpyro_parallel.smc.status`): 0 ok, 1 collapsed
            (the importance weights of some time step have ESS < ``min(collapse_ess, N/2)``),
            2 impossible (log-likelihood ``-inf``), 3 invalid (log-likelihood NaN).
    """

    trajectories: jax.Array
    log_weights: jax.Array
    log_likelihood: jax.Array
    mean_trials: jax.Array | float = 0.0
    num_fallback: jax.Array | int = 0
    num_bound_violations: jax.Array | int = 0
    status: jax.Array | int = 0


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
    row_chunk_size: int | None = None,
    reference: jax.Array | None = None,
    transition_log_bound: float | jax.Array | Callable | None = None,
    max_trials: int = 64,
    collapse_ess: float = 2.0,
) -> DSMCOutput:
    """Parallel-in-time particle smoother and likelihood estimate (dSMC).

    With ``transition_log_bound`` the stitching is lazy: each output pair ``(i, j)`` is drawn
    by rejection from proposals ``i ~ w^L``, ``j ~ w^R`` accepted with probability
    ``exp(log f(x_j | x_i) - bound)``, at most ``max_trials`` trials per pair (O(N) work per
    trial instead of N^2). Pairs still not accepted are drawn from the exact N x N pair weights
    (all at once or ``row_chunk_size`` rows at a time); that O(N^2) fallback runs only for
    the stitches that have such a pair. Rejection followed by an independent exact fallback is an
    exact sampler of the pair target (a mixture of two exact samplers whose mixing event is
    independent of the fallback's draw), so lazy stitching is exact multinomial pair
    resampling. The normalising-constant increment of a stitch is then estimated by the mean of
    ``f`` over N separate proposed pairs: unbiased, so ``exp(log_likelihood)`` stays an unbiased
    estimate of ``p(y)``, but with a larger variance than the exact N^2 average (much larger
    when ``f`` is peaked relative to the particle spread). The bound must hold for all
    ``x, x'``: if a proposal exceeds it, the pairs are biased; such proposals are counted in
    ``num_bound_violations`` (check that it is 0). For a Gaussian transition with covariance
    Cholesky factor ``L``: ``-d/2 log(2 pi) - sum(log diag L)``. With ``reference``, pair 0
    stays ``(0, 0)`` and the others are drawn lazily (conditional multinomial resampling). Lazy
    stitching pays off when the acceptance rate (the mean of ``f`` over weighted pairs divided
    by the bound) is well above ``1 / N``; it compiles more slowly (each tree level holds the
    rejection loop and the fallback).

    Args:
        rng_key: PRNG key.
        observations: ``(T, p)`` observations; a row of NaN is missing.
        num_particles: number of particles N per time step.
        initial_log_prob: ``(x) -> log p_0(x)``.
        transition_log_prob: ``(x_prev, x, time) -> log f(x_time | x_{time-1})``.
        observation_log_prob: ``(x, observation, time) -> log g(y_time | x_time)``.
        proposal_mean: ``(T, d)`` means of the Gaussian proposals q_t.
        proposal_chol: ``(T, d, d)`` lower Cholesky factors of their covariances.
        resampling_fn: resampler (name or function) for the pair indices; lazy stitching is
            multinomial by construction and accepts only ``"multinomial"``.
        row_chunk_size: ``None`` for the full N x N pair matrix, or a divisor of N to process
            rows in chunks of that size (bounded memory; pairs drawn row-then-column). Also
            used by the lazy fallback.
        reference: optional ``(T, d)`` trajectory for the conditional (particle Gibbs)
            variant; trajectory 0 of the output then equals it.
        transition_log_bound: ``None`` (exact stitching) or an upper bound on
            ``log f_t(x' | x)`` over ``x, x'``: a scalar, a ``(T,)`` array indexed by ``t``,
            or a function ``time -> scalar``; enables lazy stitching.
        max_trials: maximal number of rejection trials per pair in lazy stitching
            (positive int).
        collapse_ess: status ``collapsed`` when the ESS of some time step's importance
            weights is below ``min(collapse_ess, N / 2)`` (0 disables it).

    Returns:
        A `DSMCOutput`. Its ``status`` is ``impossible`` (log-likelihood ``-inf``) when
        every particle of some time step, or every pair of some stitch, has weight zero, and
        ``invalid`` (log-likelihood NaN) for NaN / ``+inf`` weights; outside ``jit`` a
        non-OK status emits a `RuntimeWarning`.

    Raises:
        TypeError, ValueError: bad argument (the message names it), including T = 0.
    """
    observations, proposal_mean, proposal_chol, reference = check_dsmc_inputs(
        observations,
        num_particles,
        proposal_mean,
        proposal_chol,
        functions={
            "initial_log_prob": initial_log_prob,
            "transition_log_prob": transition_log_prob,
            "observation_log_prob": observation_log_prob,
        },
        row_chunk_size=row_chunk_size,
        reference=reference,
        max_trials=max_trials,
        collapse_ess=collapse_ess,
    )
    num_steps, d = proposal_mean.shape
    lazy = transition_log_bound is not None
    if lazy and resampling_fn not in ("multinomial", multinomial):
        raise ValueError(
            "lazy stitching (`transition_log_bound`) is multinomial; `resampling_fn` must be "
            f"'multinomial', got {resampling_fn!r}."
        )
    cond = reference is not None
    if cond:
        resample = get_conditional_resampler(resampling_fn, argument="resampling_fn")
    else:
        resample = get_resampler(resampling_fn, argument="resampling_fn")
    n = num_particles
    dtype = proposal_mean.dtype
    log_bounds = log_bounds_array(transition_log_bound, num_steps, dtype) if lazy else None

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
    # Invalid leaves (all -inf: impossible; NaN / +inf: invalid) are stitched with uniform
    # weights so that the tree stays well defined; their log_z (-inf / NaN) carries the news.
    leaf_valid = log_weights_valid(log_w)
    leaf_status = jax.vmap(step_status, in_axes=(0, 0, None))(
        log_w, jax.vmap(ess)(lw), float(collapse_ess)
    )
    log_z = jnp.where(leaf_status == INVALID, jnp.full_like(log_z, jnp.nan), log_z)
    lw = jnp.where(leaf_valid[:, None], lw, jnp.full_like(lw, -jnp.log(n)))

    depth = max(0, (num_steps - 1).bit_length())
    padded = 1 << depth
    pad = padded - num_steps
    xs = jnp.concatenate([x, jnp.zeros((pad, n, d), dtype)])[:, :, None, :]  # (B, N, L, d)
    lws = jnp.concatenate([lw, jnp.full((pad, n), -jnp.log(n), dtype)])
    log_zs = jnp.concatenate([log_z, jnp.zeros((pad,), dtype)])

    def exact(k, left, right, t, v):
        i, j, total = exact_pairs(
            k,
            left[0][:, -1],
            right[0][:, 0],
            left[1],
            right[1],
            t,
            v,
            transition_log_prob=transition_log_prob,
            resample=resample,
            row_chunk_size=row_chunk_size,
        )
        if cond and row_chunk_size is not None:
            j = j.at[0].set(0)
        return i, j, total

    def stitch(left, right, i, j, log_increment):
        x_new = jnp.concatenate([left[0][i], right[0][j]], axis=1)
        return x_new, jnp.full((n,), -jnp.log(n), dtype), left[2] + right[2] + log_increment

    counters = jnp.zeros((4,), jnp.int32)  # proposals, violations, fallback, lazy slots
    stitch_status = jnp.int32(OK)
    for level in range(depth):
        length = 1 << level
        num_pairs = xs.shape[0] // 2
        right_start = (2 * jnp.arange(num_pairs) + 1) * length
        valid = right_start < num_steps
        keys = jax.random.split(jax.random.fold_in(key_tree, level), num_pairs)
        left = (xs[0::2], lws[0::2], log_zs[0::2])
        right = (xs[1::2], lws[1::2], log_zs[1::2])
        if not lazy:
            i, j, log_inc = jax.vmap(exact)(keys, left, right, right_start, valid)
        else:
            i, j, log_inc, level_counters = lazy_level(
                keys,
                left[0][:, :, -1],
                right[0][:, :, 0],
                left[1],
                right[1],
                right_start,
                valid,
                log_bounds[jnp.clip(right_start, 0, num_steps - 1)],
                transition_log_prob=transition_log_prob,
                max_trials=max_trials,
                row_chunk_size=row_chunk_size,
                cond=cond,
            )
            counters = counters + level_counters
        level_status = jnp.where(jnp.isneginf(log_inc), IMPOSSIBLE, OK)
        level_status = jnp.where(jnp.isnan(log_inc) | jnp.isposinf(log_inc), INVALID, level_status)
        stitch_status = jnp.maximum(stitch_status, jnp.max(level_status).astype(jnp.int32))
        xs, lws, log_zs = jax.vmap(stitch)(left, right, i, j, log_inc)
    mean_trials = counters[0] / jnp.maximum(counters[3], 1)
    status = jnp.maximum(jnp.max(leaf_status), stitch_status).astype(jnp.int32)
    log_likelihood = jnp.where(status == INVALID, jnp.full_like(log_zs[0], jnp.nan), log_zs[0])
    output = DSMCOutput(
        xs[0][:, :num_steps],
        lws[0],
        log_likelihood,
        jnp.asarray(mean_trials, dtype),
        counters[2],
        counters[1],
        status,
    )
    warn_status(status, "dSMC")
    return output
