"""Lazy (rejection) pair sampler for the dSMC stitching step.

Corenflos, Chopin & Särkkä (2022), "De-sequentialized Monte Carlo: a parallel-in-time particle
smoother", JMLR 23(283), section on lazy resampling; the pair target ``pi(i, j)`` is that of
`numpyro_parallel.smc.dsmc_stitching`.

`lazy_pairs` needs an upper bound ``log f <= log_bound``: each output slot proposes
``i ~ w^L``, ``j ~ w^R`` independently and accepts with probability ``f_ij / exp(log_bound)``,
vectorised over the slots in a ``lax.while_loop`` that stops when every slot has accepted or
after ``max_trials`` trials (O(N) work per trial instead of N^2). An accepted pair is an exact
draw from ``pi``. The slots still open after ``max_trials`` are reported (``accepted`` is
False); `lazy_level` fills them with `exact_pairs`, whose draws are independent
of the rejection loop, so every slot is an exact draw from ``pi`` (a mixture of two exact
samplers whose mixing event is independent of the fallback's draw) and the slots are i.i.d.:
lazy stitching is multinomial pair resampling, exactly. Over a tree level, the O(N^2)
fallback runs only for the stitches that have an open slot (gathered in chunks of a quarter
of the level), and not at all when every slot accepted. Its increment estimate is the mean of
``f`` over N *separate* proposed pairs, unbiased for ``sum_ij w_i^L w_j^R f_ij`` and
independent of the resampled pairs given the particles (reusing the loop's own first-trial
pairs would correlate the estimate with the selected pairs and bias the product over the tree).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel.smc.dsmc_stitching import exact_pairs
from numpyro_parallel.smc.resampling import multinomial

__all__ = ["LazyPairs", "lazy_level", "lazy_pairs", "log_bounds_array"]


class LazyPairs(NamedTuple):
    """Result of `lazy_pairs` for one stitch.

    Attributes:
        i: ``(N,)`` left indices of the accepted pairs (undefined where not accepted).
        j: ``(N,)`` right indices.
        accepted: ``(N,)`` True where the slot accepted within ``max_trials``.
        num_proposals: number of proposals evaluated by the rejection loop.
        num_violations: proposals (loop and increment estimate) with ``log f > log_bound``.
        log_increment: estimate of ``log sum_ij w_i^L w_j^R f_ij`` from N separate pairs.
    """

    i: jax.Array
    j: jax.Array
    accepted: jax.Array
    num_proposals: jax.Array
    num_violations: jax.Array
    log_increment: jax.Array


def log_bounds_array(transition_log_bound, num_steps: int, dtype) -> jax.Array:
    """The ``transition_log_bound`` of `~numpyro_parallel.smc.dsmc.dsmc` as a ``(T,)`` array.

    Entry t bounds ``log f_t`` (entry 0 is unused). Raises ``ValueError`` on a bad shape.
    """
    if callable(transition_log_bound):
        probe = jax.eval_shape(transition_log_bound, jnp.zeros((), jnp.int32))
        if probe.shape != ():
            raise ValueError(
                "`transition_log_bound` must return a scalar for a time index; "
                f"got shape {probe.shape}."
            )
        return jax.vmap(transition_log_bound)(jnp.arange(num_steps)).astype(dtype)
    bound = jnp.asarray(transition_log_bound, dtype)
    if bound.shape not in ((), (num_steps,)):
        raise ValueError(
            f"`transition_log_bound` must be a scalar or have shape ({num_steps},); "
            f"got {bound.shape}."
        )
    return jnp.broadcast_to(bound, (num_steps,))


def lazy_pairs(
    key: jax.Array,
    last: jax.Array,
    first: jax.Array,
    lw_left: jax.Array,
    lw_right: jax.Array,
    time: jax.Array,
    valid: jax.Array,
    log_bound: jax.Array,
    *,
    transition_log_prob: Callable,
    max_trials: int,
    cond: bool = False,
) -> LazyPairs:
    """Rejection sampling of N pairs from the pair target (see the module docstring).

    Args:
        key: PRNG key.
        last: ``(N, d)`` last states of the left trajectories.
        first: ``(N, d)`` first states of the right trajectories.
        lw_left: ``(N,)`` normalised log-weights of the left trajectories.
        lw_right: ``(N,)`` normalised log-weights of the right trajectories.
        time: time index of ``first`` (passed to ``transition_log_prob``).
        valid: False for a padding stitch (``f = 1``: every proposal is accepted).
        log_bound: scalar upper bound on ``log f(x' | x)`` at this time.
        transition_log_prob: ``(x_prev, x, time) -> log f(x | x_prev)``.
        max_trials: maximal number of rejection trials per slot.
        cond: keep slot 0 as the pair ``(0, 0)`` (conditional dSMC); the others are drawn
            from the target (conditional multinomial resampling).

    Returns:
        A `LazyPairs`.
    """
    n = lw_left.shape[0]
    dtype = lw_left.dtype
    bound = jnp.where(valid, jnp.asarray(log_bound, dtype), jnp.zeros((), dtype))

    def log_f_of(i, j):
        log_f = jax.vmap(transition_log_prob, in_axes=(0, 0, None))(last[i], first[j], time)
        return jnp.where(valid, log_f, jnp.zeros_like(log_f))

    def inverse_cdf(log_w):
        cdf = jnp.cumsum(jnp.exp(log_w - jnp.max(log_w)))
        return lambda u: jnp.clip(
            jnp.searchsorted(cdf, u * cdf[-1], side="right"), 0, n - 1
        ).astype(jnp.int32)

    draw_left, draw_right = inverse_cdf(lw_left), inverse_cdf(lw_right)

    def propose(k):
        u = jax.random.uniform(k, (3, n), dtype)
        i, j = draw_left(u[0]), draw_right(u[1])
        return i, j, log_f_of(i, j), jnp.log(u[2])

    key_est, key_loop = jax.random.split(key)
    _, _, log_f_est, _ = propose(key_est)
    log_increment = jax.nn.logsumexp(log_f_est) - jnp.log(jnp.asarray(n, dtype))
    est_violations = jnp.sum(log_f_est > bound).astype(jnp.int32)

    zeros = jnp.zeros((n,), jnp.int32)
    accepted = jnp.zeros((n,), bool)
    if cond:
        accepted = accepted.at[0].set(True)

    def keep_going(state):
        trial, _, _, _, accepted, _, _ = state
        return (trial < max_trials) & ~jnp.all(accepted)

    def trial_step(state):
        trial, k, i, j, accepted, proposals, violations = state
        i_new, j_new, log_f, log_u = propose(jax.random.fold_in(k, trial))
        open_slots = ~accepted
        take = open_slots & (log_u < log_f - bound)
        violations = violations + jnp.sum(open_slots & (log_f > bound)).astype(jnp.int32)
        proposals = proposals + jnp.sum(open_slots).astype(jnp.int32)
        i = jnp.where(take, i_new, i)
        j = jnp.where(take, j_new, j)
        return trial + 1, k, i, j, accepted | take, proposals, violations

    init = (jnp.int32(0), key_loop, zeros, zeros, accepted, jnp.int32(0), est_violations)
    _, _, i, j, accepted, proposals, violations = lax.while_loop(keep_going, trial_step, init)
    return LazyPairs(i, j, accepted, proposals, violations, log_increment)


def lazy_level(
    keys: jax.Array,
    last: jax.Array,
    first: jax.Array,
    lw_left: jax.Array,
    lw_right: jax.Array,
    times: jax.Array,
    valid: jax.Array,
    log_bound: jax.Array,
    *,
    transition_log_prob: Callable,
    max_trials: int,
    row_chunk_size: int | None = None,
    cond: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Lazy stitching of P block pairs of one tree level, with the exact fallback.

    Args:
        keys: ``(P,)`` PRNG keys.
        last: ``(P, N, d)`` last states of the left trajectories.
        first: ``(P, N, d)`` first states of the right trajectories.
        lw_left: ``(P, N)`` normalised log-weights of the left trajectories.
        lw_right: ``(P, N)`` normalised log-weights of the right trajectories.
        times: ``(P,)`` time index of the right blocks' first states.
        valid: ``(P,)`` False for padding stitches.
        log_bound: ``(P,)`` upper bounds on ``log f`` at ``times``.
        transition_log_prob: ``(x_prev, x, time) -> log f(x | x_prev)``.
        max_trials: maximal number of rejection trials per slot.
        row_chunk_size: row-chunk size of the exact fallback (``None``: full N x N).
        cond: conditional variant (slot 0 is the pair ``(0, 0)``).

    Returns:
        ``(i (P, N), j (P, N), log_increment (P,), counters (4,))`` with counters = (proposals
        over valid stitches, bound violations, fallback slots, lazily drawn slots).
    """
    n = lw_left.shape[1]
    keys_lazy, keys_fb = jax.vmap(jax.random.split, out_axes=1)(keys)
    res = jax.vmap(
        lambda k, a, b, la, lb, t, v, c: lazy_pairs(
            k,
            a,
            b,
            la,
            lb,
            t,
            v,
            c,
            transition_log_prob=transition_log_prob,
            max_trials=max_trials,
            cond=cond,
        )
    )(keys_lazy, last, first, lw_left, lw_right, times, valid, log_bound)
    remaining = ~res.accepted

    def exact_for(idx):
        return jax.vmap(
            lambda k, a, b, la, lb, t, v: exact_pairs(
                k,
                a,
                b,
                la,
                lb,
                t,
                v,
                transition_log_prob=transition_log_prob,
                resample=multinomial,
                row_chunk_size=row_chunk_size,
            )[:2]
        )(keys_fb[idx], last[idx], first[idx], lw_left[idx], lw_right[idx], times[idx], valid[idx])

    # The O(N^2) fallback runs only for the stitches with an open slot: they are gathered
    # in chunks of ceil(P / 4) and processed in a while loop whose scalar predicate is over
    # the whole level (outside any vmap over pairs), so no work is done when none is needed.
    num_pairs = keys.shape[0]
    chunk = -(-num_pairs // 4)
    num_chunks = -(-num_pairs // chunk)
    need = jnp.any(remaining, axis=1)
    num_need = jnp.sum(need)
    order = jnp.nonzero(need, size=num_chunks * chunk, fill_value=num_pairs)[0]

    def fallback_chunk(state):
        c, i_fb, j_fb = state
        idx = lax.dynamic_slice(order, (c * chunk,), (chunk,))
        i_some, j_some = exact_for(jnp.minimum(idx, num_pairs - 1))
        # Padding entries (index P) are dropped by the scatter.
        i_fb = i_fb.at[idx].set(i_some, mode="drop")
        j_fb = j_fb.at[idx].set(j_some, mode="drop")
        return c + 1, i_fb, j_fb

    _, i_fb, j_fb = lax.while_loop(
        lambda state: state[0] * chunk < num_need, fallback_chunk, (jnp.int32(0), res.i, res.j)
    )
    i = jnp.where(remaining, i_fb, res.i)
    j = jnp.where(remaining, j_fb, res.j)
    counters = jnp.stack(
        [
            jnp.sum(jnp.where(valid, res.num_proposals, 0)),
            jnp.sum(res.num_violations),
            jnp.sum(remaining),
            jnp.sum(valid) * (n - int(cond)),
        ]
    ).astype(jnp.int32)
    return i, j, res.log_increment, counters
