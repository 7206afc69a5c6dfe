"""Resampling schemes for particle methods, in log space and float32-safe.

Every resampler has the BlackJAX signature ``fn(rng_key, weights, num_samples) -> indices``;
pass log-weights instead with ``is_log=True`` (recommended: weights are then normalised by their
maximum before exponentiation, so nothing underflows). Names: ``"multinomial"``,
``"stratified"``, ``"systematic"``, ``"residual"`` (inverse-CDF schemes, Douc, Cappé & Moulines
2005) and the prefix-sum-free ``"metropolis"`` and ``"rejection"`` schemes of Murray, Lee &
Jacob (2016), "Parallel resampling in the particle filter", JCGS 25(3).

Inverse-CDF accuracy: weights are exponentiated after subtracting the maximum log-weight, the
CDF is ``jnp.cumsum`` (XLA lowers it to a tree-structured reduction (``reduce_window`` on CPU,
an associative scan on GPU), not a running sum: measured relative error 2e-7 in float32 at
N = 10^6 against 2e-5 for a sequential float32 sum) and the uniforms are scaled by the computed
total instead of assuming it equals one, so float32 resampling with 10^6 particles shows no
drift towards the last particles (tested against float64).

Invalid weights (`numpyro_parallel.smc.weights`): concrete NaN, inf, negative or all-zero
weights (all ``-inf`` log-weights) raise `ValueError` naming ``weights``; negative weights
without ``is_log=True`` are reported as probable log-weights. Under tracing every resampler
returns the out-of-range sentinel index N in every slot instead (never plausible indices; use
`log_weights_valid` to get the flag itself). The Metropolis and rejection loops are bounded
(`numpyro_parallel.smc.prefix_free`).

Conditional (particle Gibbs) variants live in `numpyro_parallel.smc.conditional_resampling`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel._checks import check_positive_int, check_real, check_rng_key
from numpyro_parallel.smc.prefix_free import (
    RejectionResult,
    metropolis,
    metropolis_num_steps,
    rejection,
    rejection_info,
)
from numpyro_parallel.smc.weights import (
    as_log_weights,
    ess,
    inverse_cdf,
    log_normalize,
    log_weights_valid,
    with_sentinel,
)

__all__ = [
    "RESAMPLERS",
    "RejectionResult",
    "ess",
    "ess_adaptive",
    "get_resampler",
    "log_normalize",
    "log_weights_valid",
    "metropolis",
    "metropolis_num_steps",
    "multinomial",
    "rejection",
    "rejection_info",
    "residual",
    "stratified",
    "systematic",
]


def _prepare(rng_key: jax.Array, weights: jax.Array, is_log: bool, num_samples: int):
    """Checked log-weights, validity flag and number of samples (and a checked key)."""
    check_rng_key(rng_key)
    log_weights = as_log_weights(weights, is_log)
    num_samples = check_positive_int("num_samples", num_samples)
    return log_weights, log_weights_valid(log_weights), num_samples


def multinomial(
    rng_key: jax.Array, weights: jax.Array, num_samples: int, *, is_log: bool = False
) -> jax.Array:
    """Multinomial resampling: i.i.d. draws from the weights (inverse CDF).

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``), not necessarily normalised.
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        ``(num_samples,)`` int32 ancestor indices (all equal to N, out of range, for invalid
        weights under tracing).
    """
    log_weights, valid, num_samples = _prepare(rng_key, weights, is_log, num_samples)
    n = log_weights.shape[0]
    uniforms = jax.random.uniform(rng_key, (num_samples,), dtype=log_weights.dtype)
    return with_sentinel(inverse_cdf(log_weights, uniforms), valid, n)


def stratified(
    rng_key: jax.Array, weights: jax.Array, num_samples: int, *, is_log: bool = False
) -> jax.Array:
    """Stratified resampling: one uniform in each stratum ``[i/M, (i+1)/M)``.

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``), not necessarily normalised.
        num_samples: number of indices M to draw.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        ``(num_samples,)`` int32 ancestor indices (all equal to N, out of range, for invalid
        weights under tracing), non-decreasing.
    """
    log_weights, valid, num_samples = _prepare(rng_key, weights, is_log, num_samples)
    n = log_weights.shape[0]
    offsets = jax.random.uniform(rng_key, (num_samples,), dtype=log_weights.dtype)
    uniforms = (jnp.arange(num_samples, dtype=log_weights.dtype) + offsets) / num_samples
    return with_sentinel(inverse_cdf(log_weights, uniforms), valid, n)


def systematic(
    rng_key: jax.Array, weights: jax.Array, num_samples: int, *, is_log: bool = False
) -> jax.Array:
    """Systematic resampling: one shared uniform offset for all strata.

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``), not necessarily normalised.
        num_samples: number of indices M to draw.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        ``(num_samples,)`` int32 ancestor indices (all equal to N, out of range, for invalid
        weights under tracing), non-decreasing.
    """
    log_weights, valid, num_samples = _prepare(rng_key, weights, is_log, num_samples)
    n = log_weights.shape[0]
    offset = jax.random.uniform(rng_key, (), dtype=log_weights.dtype)
    uniforms = (jnp.arange(num_samples, dtype=log_weights.dtype) + offset) / num_samples
    return with_sentinel(inverse_cdf(log_weights, uniforms), valid, n)


def residual(
    rng_key: jax.Array, weights: jax.Array, num_samples: int, *, is_log: bool = False
) -> jax.Array:
    """Residual resampling: ``floor(M w_i)`` deterministic copies, multinomial for the rest.

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``), not necessarily normalised.
        num_samples: number of indices M to draw.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        ``(num_samples,)`` int32 ancestor indices (all equal to N, out of range, for invalid
        weights under tracing), deterministic copies first.
    """
    log_weights, valid, num_samples = _prepare(rng_key, weights, is_log, num_samples)
    n = log_weights.shape[0]
    normalised, _ = log_normalize(log_weights)
    expected = num_samples * jnp.exp(normalised)
    copies = jnp.floor(expected)
    num_deterministic = jnp.sum(copies).astype(jnp.int32)
    deterministic = jnp.repeat(
        jnp.arange(log_weights.shape[0], dtype=jnp.int32),
        jnp.where(valid, copies, 0).astype(jnp.int32),
        total_repeat_length=num_samples,
    )
    remainder = jnp.clip(expected - copies, 0.0, None)
    remainder = jnp.where(valid, remainder, 1.0)
    uniforms = jax.random.uniform(rng_key, (num_samples,), dtype=log_weights.dtype)
    random_part = inverse_cdf(jnp.log(remainder), uniforms)
    slots = jnp.arange(num_samples)
    shifted = random_part[jnp.clip(slots - num_deterministic, 0, num_samples - 1)]
    indices = jnp.where(slots < num_deterministic, deterministic, shifted)
    return with_sentinel(indices, valid, n)


# --------------------------------------------------------------------------- registry

Resampler = Callable[..., jax.Array]

RESAMPLERS: dict[str, Resampler] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
    "metropolis": metropolis,
    "rejection": rejection,
}


def get_resampler(name: str | Resampler, *, argument: str = "name") -> Resampler:
    """Look up a resampler by name (a callable is returned unchanged).

    Args:
        name: one of ``"multinomial"``, ``"stratified"``, ``"systematic"``, ``"residual"``,
            ``"metropolis"``, ``"rejection"``, or a callable with the same signature.
        argument: the caller's argument name, used in the error message.

    Returns:
        The resampling function ``fn(rng_key, weights, num_samples, *, is_log=False)``.

    Raises:
        ValueError: unknown name.
    """
    if callable(name):
        return name
    if not isinstance(name, str) or name not in RESAMPLERS:
        raise ValueError(
            f"`{argument}` must be a resampler or one of {sorted(RESAMPLERS)}; got {name!r}."
        )
    return RESAMPLERS[name]


def ess_adaptive(resampling_fn: str | Resampler, threshold: float = 0.5) -> Callable:
    """Resample only when the ESS falls below ``threshold * N``.

    Invalid log-weights (NaN, ``+inf`` or all ``-inf``, see `log_weights_valid`) are never
    passed to the resampler: the function then returns the identity indices, NaN log-weights
    and ``resampled=False`` (it raises nothing, also on concrete input: the caller inspects
    the NaN weights; the particle filter turns them into its status flag).

    Args:
        resampling_fn: a resampler or its name.
        threshold: fraction of N below which resampling happens (1.0: always, 0.0: never).

    Returns:
        ``fn(rng_key, log_weights) -> (indices, log_weights, resampled)``: ancestor indices
        (the identity when not resampling), the log-weights to carry on (uniform after
        resampling, the normalised input otherwise, NaN for invalid input) and a boolean flag.

    Raises:
        TypeError: ``threshold`` not a real number.
        ValueError: unknown resampler name or ``threshold`` outside [0, 1].
    """
    resample = get_resampler(resampling_fn, argument="resampling_fn")
    threshold = check_real(
        "threshold", threshold, low=0.0, high=1.0, low_closed=True, high_closed=True
    )

    def adaptive(rng_key: jax.Array, log_weights: jax.Array):
        n = log_weights.shape[0]
        valid = log_weights_valid(log_weights)
        uniform = jnp.full_like(log_weights, -jnp.log(n))
        normalised, _ = log_normalize(jnp.where(valid, log_weights, uniform))
        do_resample = ess(normalised) < threshold * n if threshold < 1.0 else jnp.bool_(True)
        do_resample = do_resample & valid
        indices = lax.cond(
            do_resample,
            lambda: resample(rng_key, normalised, n, is_log=True),
            lambda: jnp.arange(n, dtype=jnp.int32),
        )
        carried = jnp.where(do_resample, uniform, normalised)
        carried = jnp.where(valid, carried, jnp.full_like(carried, jnp.nan))
        return indices, carried, do_resample

    return adaptive
