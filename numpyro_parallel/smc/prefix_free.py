"""Prefix-sum-free resamplers: Metropolis and rejection (Murray, Lee & Jacob 2016).

Murray, Lee & Jacob (2016), "Parallel resampling in the particle filter", JCGS 25(3). Both
loops are bounded: the Metropolis chain runs a fixed number of steps (at most ``max_steps``)
and the rejection loop at most ``max_rounds`` rounds, after which the slots still open are
drawn by exact inverse-CDF multinomial draws (so the output stays exactly multinomial).
Invalid weights follow `numpyro_parallel.smc.weights`: ``ValueError`` when concrete, the
sentinel index ``N`` in every slot under tracing.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel._checks import check_positive_int, check_real, check_rng_key
from numpyro_parallel.smc.weights import (
    as_log_weights,
    inverse_cdf,
    log_weights_valid,
    scaled_weights,
    with_sentinel,
)

__all__ = ["RejectionResult", "metropolis", "metropolis_num_steps", "rejection", "rejection_info"]


def metropolis_num_steps(log_weights: jax.Array, tolerance: float = 0.01) -> jax.Array:
    """Murray et al.'s bound on the Metropolis resampler's number of steps.

    ``B = ceil(log(tolerance) / log(1 - mean(w) / max(w)))`` makes the total-variation bias of
    each draw at most about ``tolerance`` (Murray, Lee & Jacob 2016, section 3.1).

    Args:
        log_weights: ``(N,)`` log-weights.
        tolerance: target bias, in (0, 1).

    Returns:
        Scalar int32 number of steps (at least 1; 1 for invalid log-weights).
    """
    scaled = scaled_weights(log_weights)
    ratio = jnp.clip(jnp.mean(scaled), 1e-12, 1.0 - 1e-7)
    steps = jnp.ceil(jnp.log(tolerance) / jnp.log1p(-ratio))
    steps = jnp.where(jnp.isfinite(steps), steps, 1.0)
    return jnp.clip(steps, 1.0, 2.0**30).astype(jnp.int32)


def metropolis(
    rng_key: jax.Array,
    weights: jax.Array,
    num_samples: int,
    *,
    is_log: bool = False,
    num_steps: int | None = None,
    tolerance: float = 0.01,
    max_steps: int = 10_000,
) -> jax.Array:
    """Metropolis resampler (no prefix sum): B independence-Metropolis steps per draw.

    Each output slot i starts at particle ``i mod N`` and runs B steps of a Metropolis chain
    with uniform proposals targeting the weights. It is *biased* for finite B; the default
    (``num_steps=None``) picks B from the weights with `metropolis_num_steps`
    (``tolerance=0.01``), capped at ``max_steps``. See docs/smc.md for the measured bias.

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``), not necessarily normalised.
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.
        num_steps: fixed number of steps B; ``None`` chooses it from the weights.
        tolerance: target bias for the automatic choice of B, in (0, 1).
        max_steps: cap on the automatic B (positive int).

    Returns:
        ``(num_samples,)`` int32 ancestor indices; all equal to N (out of range) for invalid
        traced weights.

    Raises:
        ValueError: invalid concrete weights or arguments.
    """
    check_rng_key(rng_key)
    log_weights = as_log_weights(weights, is_log)
    num_samples = check_positive_int("num_samples", num_samples)
    max_steps = check_positive_int("max_steps", max_steps)
    tolerance = check_real("tolerance", tolerance, low=0.0, high=1.0)
    n = log_weights.shape[0]
    valid = log_weights_valid(log_weights)
    if num_steps is None:
        steps = jnp.minimum(metropolis_num_steps(log_weights, tolerance), max_steps)
        steps = jnp.where(valid, steps, 0)
    else:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
            raise ValueError(f"`num_steps` must be a non-negative int or None; got {num_steps}.")
        steps = num_steps
    start = (jnp.arange(num_samples) % n).astype(jnp.int32)

    def body(b, current):
        key = jax.random.fold_in(rng_key, b)
        key_prop, key_acc = jax.random.split(key)
        proposal = jax.random.randint(key_prop, (num_samples,), 0, n, dtype=jnp.int32)
        log_u = jnp.log(jax.random.uniform(key_acc, (num_samples,), dtype=log_weights.dtype))
        accept = log_u <= log_weights[proposal] - log_weights[current]
        return jnp.where(accept, proposal, current)

    return with_sentinel(lax.fori_loop(0, steps, body, start), valid, n)


class RejectionResult(NamedTuple):
    """Result of `rejection_info`.

    Attributes:
        indices: ``(num_samples,)`` int32 ancestor indices (N everywhere for invalid weights).
        num_rounds: number of rejection rounds run (at most ``max_rounds``).
        num_fallback: number of slots not accepted within ``max_rounds`` and drawn by the
            exact inverse-CDF fallback instead.
        valid: whether the weights were valid.
    """

    indices: jax.Array
    num_rounds: jax.Array
    num_fallback: jax.Array
    valid: jax.Array


def _rejection_from(
    rng_key: jax.Array, log_weights: jax.Array, num_samples: int, max_rounds: int
) -> RejectionResult:
    """Rejection rounds for every slot (at most ``max_rounds``), exact fallback for the rest."""
    n = log_weights.shape[0]
    valid = log_weights_valid(log_weights)
    log_scaled = log_weights - jnp.max(log_weights)
    key_loop, key_fallback = jax.random.split(rng_key)

    def cond(carry):
        count, _, accepted = carry
        return valid & (count < max_rounds) & ~jnp.all(accepted)

    def body(carry):
        count, current, accepted = carry
        key = jax.random.fold_in(key_loop, count)
        key_prop, key_acc = jax.random.split(key)
        proposal = jax.random.randint(key_prop, (num_samples,), 0, n, dtype=jnp.int32)
        log_u = jnp.log(jax.random.uniform(key_acc, (num_samples,), dtype=log_weights.dtype))
        candidate = jnp.where(accepted, current, proposal)
        accept_now = log_u <= log_scaled[candidate]
        return count + 1, candidate, accepted | accept_now

    start = jnp.zeros((num_samples,), dtype=jnp.int32)
    init = (jnp.int32(0), start, jnp.zeros((num_samples,), dtype=bool))
    rounds, indices, accepted = lax.while_loop(cond, body, init)
    open_slots = valid & ~accepted

    # Slots still open are drawn by inverse CDF, independently of the loop: each slot is then
    # a mixture of two exact samplers with a mixing event independent of the fallback draw.
    def fallback():
        uniforms = jax.random.uniform(key_fallback, (num_samples,), dtype=log_weights.dtype)
        return jnp.where(open_slots, inverse_cdf(log_weights, uniforms), indices)

    indices = lax.cond(jnp.any(open_slots), fallback, lambda: indices)
    return RejectionResult(
        with_sentinel(indices, valid, n), rounds, jnp.sum(open_slots).astype(jnp.int32), valid
    )


def rejection_info(
    rng_key: jax.Array,
    weights: jax.Array,
    num_samples: int,
    *,
    is_log: bool = False,
    max_rounds: int = 1024,
) -> RejectionResult:
    """`rejection` with its diagnostics (rounds run, slots from the fallback, validity).

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``), not necessarily normalised.
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.
        max_rounds: cap on the number of rejection rounds (positive int).

    Returns:
        A `RejectionResult`.
    """
    check_rng_key(rng_key)
    log_weights = as_log_weights(weights, is_log)
    num_samples = check_positive_int("num_samples", num_samples)
    max_rounds = check_positive_int("max_rounds", max_rounds)
    return _rejection_from(rng_key, log_weights, num_samples, max_rounds)


def rejection(
    rng_key: jax.Array,
    weights: jax.Array,
    num_samples: int,
    *,
    is_log: bool = False,
    max_rounds: int = 1024,
) -> jax.Array:
    """Rejection resampler (no prefix sum): exact i.i.d. multinomial draws.

    Every slot proposes a uniform particle j and accepts with probability ``w_j / max(w)``,
    repeating until accepted (Murray, Lee & Jacob 2016, with a uniform first proposal so that
    the draws are exactly multinomial). The expected number of rounds per slot is
    ``max(w) / mean(w)``. The loop stops after ``max_rounds`` rounds; slots still open are then
    drawn by inverse-CDF multinomial sampling (independently of the loop, so the draws remain
    exactly multinomial); `rejection_info` reports how many.

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``), not necessarily normalised.
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.
        max_rounds: cap on the number of rejection rounds (positive int).

    Returns:
        ``(num_samples,)`` int32 ancestor indices; all equal to N (out of range) for invalid
        traced weights.

    Raises:
        ValueError: invalid concrete weights or arguments.
    """
    return rejection_info(rng_key, weights, num_samples, is_log=is_log, max_rounds=max_rounds)[0]
