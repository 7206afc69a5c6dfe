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

Conditional (particle Gibbs) variants live in :mod:`numpyro_parallel.smc.conditional_resampling`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "RESAMPLERS",
    "ess",
    "ess_adaptive",
    "get_resampler",
    "log_normalize",
    "metropolis",
    "metropolis_num_steps",
    "multinomial",
    "rejection",
    "residual",
    "stratified",
    "systematic",
]


def _as_log_weights(weights: jax.Array, is_log: bool) -> jax.Array:
    weights = jnp.asarray(weights)
    if weights.ndim != 1:
        raise ValueError(f"`weights` must have shape (N,); got shape {weights.shape}.")
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        weights = weights.astype(jnp.result_type(float))
    if is_log:
        return weights
    return jnp.log(weights)


def _check_num_samples(num_samples: int) -> int:
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive Python int; got {num_samples!r}.")
    return num_samples


def log_normalize(log_weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Normalise log-weights.

    Args:
        log_weights: ``(N,)`` unnormalised log-weights (``-inf`` allowed, not all).

    Returns:
        ``(normalised log-weights, logsumexp of the input)``.
    """
    total = jax.nn.logsumexp(log_weights)
    return log_weights - total, total


def ess(log_weights: jax.Array) -> jax.Array:
    """Effective sample size ``1 / sum(w_i^2)`` of normalised weights, from log-weights.

    Args:
        log_weights: ``(N,)`` log-weights, normalised or not.

    Returns:
        Scalar ESS in ``[1, N]``.
    """
    normalised, _ = log_normalize(log_weights)
    return jnp.exp(-jax.nn.logsumexp(2.0 * normalised))


def _scaled_weights(log_weights: jax.Array) -> jax.Array:
    """Weights divided by their maximum (in (0, 1], the largest is exactly one)."""
    return jnp.exp(log_weights - jnp.max(log_weights))


def _inverse_cdf(log_weights: jax.Array, uniforms: jax.Array) -> jax.Array:
    """Indices ``F^{-1}(u)`` for uniforms in [0, 1) (need not be sorted)."""
    weights = _scaled_weights(log_weights)
    cdf = jnp.cumsum(weights)
    targets = uniforms.astype(cdf.dtype) * cdf[-1]
    indices = jnp.searchsorted(cdf, targets, side="right")
    return jnp.clip(indices, 0, weights.shape[0] - 1).astype(jnp.int32)


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
        ``(num_samples,)`` int32 ancestor indices.
    """
    log_weights = _as_log_weights(weights, is_log)
    num_samples = _check_num_samples(num_samples)
    uniforms = jax.random.uniform(rng_key, (num_samples,), dtype=log_weights.dtype)
    return _inverse_cdf(log_weights, uniforms)


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
        ``(num_samples,)`` int32 ancestor indices, non-decreasing.
    """
    log_weights = _as_log_weights(weights, is_log)
    num_samples = _check_num_samples(num_samples)
    offsets = jax.random.uniform(rng_key, (num_samples,), dtype=log_weights.dtype)
    uniforms = (jnp.arange(num_samples, dtype=log_weights.dtype) + offsets) / num_samples
    return _inverse_cdf(log_weights, uniforms)


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
        ``(num_samples,)`` int32 ancestor indices, non-decreasing.
    """
    log_weights = _as_log_weights(weights, is_log)
    num_samples = _check_num_samples(num_samples)
    offset = jax.random.uniform(rng_key, (), dtype=log_weights.dtype)
    uniforms = (jnp.arange(num_samples, dtype=log_weights.dtype) + offset) / num_samples
    return _inverse_cdf(log_weights, uniforms)


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
        ``(num_samples,)`` int32 ancestor indices (deterministic copies first).
    """
    log_weights = _as_log_weights(weights, is_log)
    num_samples = _check_num_samples(num_samples)
    normalised, _ = log_normalize(log_weights)
    expected = num_samples * jnp.exp(normalised)
    copies = jnp.floor(expected)
    num_deterministic = jnp.sum(copies).astype(jnp.int32)
    deterministic = jnp.repeat(
        jnp.arange(log_weights.shape[0], dtype=jnp.int32),
        copies.astype(jnp.int32),
        total_repeat_length=num_samples,
    )
    remainder = jnp.clip(expected - copies, 0.0, None)
    random_part = multinomial(rng_key, jnp.log(remainder), num_samples, is_log=True)
    slots = jnp.arange(num_samples)
    shifted = random_part[jnp.clip(slots - num_deterministic, 0, num_samples - 1)]
    return jnp.where(slots < num_deterministic, deterministic, shifted)


def metropolis_num_steps(log_weights: jax.Array, tolerance: float = 0.01) -> jax.Array:
    """Murray et al.'s bound on the Metropolis resampler's number of steps.

    ``B = ceil(log(tolerance) / log(1 - mean(w) / max(w)))`` makes the total-variation bias of
    each draw at most about ``tolerance`` (Murray, Lee & Jacob 2016, section 3.1).

    Args:
        log_weights: ``(N,)`` log-weights.
        tolerance: target bias, in (0, 1).

    Returns:
        Scalar int32 number of steps (at least 1).
    """
    scaled = _scaled_weights(log_weights)
    ratio = jnp.clip(jnp.mean(scaled), 1e-12, 1.0 - 1e-7)
    steps = jnp.ceil(jnp.log(tolerance) / jnp.log1p(-ratio))
    return jnp.maximum(steps, 1.0).astype(jnp.int32)


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
    (``num_steps=None``) picks B from the weights with :func:`metropolis_num_steps`
    (``tolerance=0.01``), capped at ``max_steps``. See docs/smc.md for the measured bias.

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``), not necessarily normalised.
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.
        num_steps: fixed number of steps B; ``None`` chooses it from the weights.
        tolerance: target bias for the automatic choice of B.
        max_steps: cap on the automatic B.

    Returns:
        ``(num_samples,)`` int32 ancestor indices.
    """
    log_weights = _as_log_weights(weights, is_log)
    num_samples = _check_num_samples(num_samples)
    n = log_weights.shape[0]
    if num_steps is None:
        steps = jnp.minimum(metropolis_num_steps(log_weights, tolerance), max_steps)
    else:
        if not isinstance(num_steps, int) or num_steps < 0:
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

    return lax.fori_loop(0, steps, body, start)


def _rejection_from(rng_key: jax.Array, log_weights: jax.Array, start: jax.Array) -> jax.Array:
    """Rejection sampler for every slot, run until all slots have accepted."""
    n = log_weights.shape[0]
    log_scaled = log_weights - jnp.max(log_weights)
    num_samples = start.shape[0]

    def cond(carry):
        _, _, accepted = carry
        return ~jnp.all(accepted)

    def body(carry):
        count, current, accepted = carry
        key = jax.random.fold_in(rng_key, count)
        key_prop, key_acc = jax.random.split(key)
        proposal = jax.random.randint(key_prop, (num_samples,), 0, n, dtype=jnp.int32)
        log_u = jnp.log(jax.random.uniform(key_acc, (num_samples,), dtype=log_weights.dtype))
        candidate = jnp.where(accepted, current, proposal)
        accept_now = log_u <= log_scaled[candidate]
        return count + 1, candidate, accepted | accept_now

    init = (jnp.int32(0), start, jnp.zeros((num_samples,), dtype=bool))
    _, indices, _ = lax.while_loop(cond, body, init)
    return indices


def rejection(
    rng_key: jax.Array, weights: jax.Array, num_samples: int, *, is_log: bool = False
) -> jax.Array:
    """Rejection resampler (no prefix sum): exact i.i.d. multinomial draws.

    Every slot proposes a uniform particle j and accepts with probability ``w_j / max(w)``,
    repeating until accepted (Murray, Lee & Jacob 2016, with a uniform first proposal so that
    the draws are exactly multinomial). The expected number of rounds per slot is
    ``max(w) / mean(w)``; the loop runs until the slowest slot accepts, so it is slow for
    degenerate weights.

    Args:
        rng_key: PRNG key.
        weights: ``(N,)`` weights (or log-weights when ``is_log``), not necessarily normalised.
        num_samples: number of indices to draw.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        ``(num_samples,)`` int32 ancestor indices.
    """
    log_weights = _as_log_weights(weights, is_log)
    num_samples = _check_num_samples(num_samples)
    start = jnp.full((num_samples,), -1, dtype=jnp.int32)
    return _rejection_from(rng_key, log_weights, start)


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


def get_resampler(name: str | Resampler) -> Resampler:
    """Look up a resampler by name (a callable is returned unchanged).

    Args:
        name: one of ``"multinomial"``, ``"stratified"``, ``"systematic"``, ``"residual"``,
            ``"metropolis"``, ``"rejection"``, or a callable with the same signature.

    Returns:
        The resampling function ``fn(rng_key, weights, num_samples, *, is_log=False)``.
    """
    if callable(name):
        return name
    if name not in RESAMPLERS:
        raise ValueError(f"`name` must be one of {sorted(RESAMPLERS)}; got {name!r}.")
    return RESAMPLERS[name]


def ess_adaptive(resampling_fn: str | Resampler, threshold: float = 0.5) -> Callable:
    """Resample only when the ESS falls below ``threshold * N``.

    Args:
        resampling_fn: a resampler or its name.
        threshold: fraction of N below which resampling happens (1.0: always, 0.0: never).

    Returns:
        ``fn(rng_key, log_weights) -> (indices, log_weights, resampled)``: ancestor indices
        (the identity when not resampling), the log-weights to carry on (uniform after
        resampling, the normalised input otherwise) and a boolean flag.
    """
    resample = get_resampler(resampling_fn)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must lie in [0, 1]; got {threshold}.")

    def adaptive(rng_key: jax.Array, log_weights: jax.Array):
        n = log_weights.shape[0]
        normalised, _ = log_normalize(log_weights)
        do_resample = ess(normalised) < threshold * n if threshold < 1.0 else jnp.bool_(True)
        indices = lax.cond(
            do_resample,
            lambda: resample(rng_key, normalised, n, is_log=True),
            lambda: jnp.arange(n, dtype=jnp.int32),
        )
        uniform = jnp.full_like(normalised, -jnp.log(n))
        return indices, jnp.where(do_resample, uniform, normalised), do_resample

    return adaptive
