"""Scaled-probability recursions for HMMs: the sequential filter and the blocked strategy.

The forward recursion of a K-state HMM pushes a row vector through the elements
``A_t[i, j] = P_{t-1}[i, j] p(y_t | z_t = j)`` of `numpyro_parallel.ssm.hmm.elements`. Here rows
are kept as probabilities normalised to sum one after every step, with the log of each step's
normaliser returned separately (the classical scaled forward algorithm), so a step costs one
vector-matrix product and no exponentials beyond ``exp(log p(y_t | z_t) - max)``.

Running K such rows from the unit vectors through a block of steps gives the block's product
``A_s ... A_e`` (a K x K matrix, O(K^3) per step, no log-sum-exp). The blocked strategy
(Hassan, Särkkä & García-Fernández 2021, "Temporal parallelization of inference in hidden
Markov models", §IV, with blocks of about sqrt(T) steps on CPU) therefore:

1. forms every block's product side by side in scaled probability space;
2. combines the few block products with the log-space associative operator;
3. runs the scaled vector recursion inside every block side by side, started from the exact
   incoming message (for filtering and smoothing; the log-likelihood needs only step 2).

Each step's normaliser is computed locally, so no long running sum is differenced (exact
per-step log-likelihood terms in float32). Rows that become impossible (all zero) stay zero
and get log normaliser ``-inf``.

The same recursions in the max-plus semiring (``semiring="max"``, in log space, rows shifted to
a maximum of 0 after every step) give the Viterbi scores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel.ssm.hmm.elements import LogMatrix, finite_or_zero, normalize, safe_log

__all__ = [
    "block_products",
    "pad_to_blocks",
    "scaled_backward",
    "scaled_forward",
    "shift_to_max_zero",
    "to_probabilities",
]


def _finite_max(log_rows: jax.Array) -> jax.Array:
    return finite_or_zero(jnp.max(log_rows, axis=-1))


def _scaled_likelihoods(log_likelihoods: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``exp(ll_t - c_t)`` and the (gradient-free, finite) shifts ``c_t = max_k ll_t[k]``."""
    shift = _finite_max(log_likelihoods)
    return jnp.exp(log_likelihoods - shift[..., None]), shift


def _step_inputs(transitions, log_likelihoods, valid, semiring="sum"):
    if semiring == "max":  # log space throughout
        likelihoods = log_likelihoods
        shift = jnp.zeros(log_likelihoods.shape[:-1], log_likelihoods.dtype)
    else:
        likelihoods, shift = _scaled_likelihoods(log_likelihoods)
    if transitions.ndim == 3:
        return (transitions, likelihoods, shift, valid), None
    return (likelihoods, shift, valid), transitions


def _unpack(inputs, fixed):
    if fixed is None:
        return inputs
    return (fixed, *inputs)


def _normalize_rows(rows: jax.Array) -> tuple[jax.Array, jax.Array]:
    total = jnp.sum(rows, axis=-1, keepdims=True)
    positive = total > 0
    return rows / jnp.where(positive, total, jnp.ones_like(total)), safe_log(total[..., 0])


def to_probabilities(log_rows: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Normalise log-space rows to probabilities (all ``-inf`` rows become zero rows).

    Args:
        log_rows: ``(..., K)`` unnormalised log-probabilities.

    Returns:
        ``(probabilities (..., K), log normalisers (...))``.
    """
    rows, shift = _scaled_likelihoods(log_rows)
    probabilities, log_norm = _normalize_rows(rows)
    return probabilities, log_norm + shift


def shift_to_max_zero(log_rows: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Shift log-space rows so that each row's largest entry is 0 (the max-plus analogue).

    Args:
        log_rows: ``(..., K)`` log-space rows.

    Returns:
        ``(shifted rows (..., K), shifts (...))``.
    """
    shift = _finite_max(log_rows)
    return log_rows - shift[..., None], shift


def _max_plus_step(current, log_transition, log_likelihood):
    """``max_i current[r, i] + log P[i, j] + ll[j]``, shifted so that every row's max is 0."""
    new = jnp.max(current[:, :, None] + log_transition[None], axis=1) + log_likelihood[None, :]
    shift = _finite_max(new)
    return new - shift[:, None], shift


def scaled_forward(
    rows: jax.Array,
    transitions: jax.Array,
    log_likelihoods: jax.Array,
    valid: jax.Array,
    *,
    keep_all: bool,
    semiring: str = "sum",
):
    """Push rows through steps ``r <- normalise((r @ P_t) * p(y_t | .))``.

    With ``semiring="max"`` the same recursion runs in the max-plus semiring of Viterbi, in
    log space: ``r <- max_i r_i + log P_t[i, .] + log p(y_t | .)``, shifted to a maximum of 0.

    Args:
        rows: ``(R, K)`` rows, each a probability vector (or all zero); log-space rows for
            ``"max"``.
        transitions: ``(K, K)`` or per-step ``(S, K, K)`` transition probabilities (their
            logarithms for ``"max"``).
        log_likelihoods: ``(S, K)`` log emission densities of the S steps.
        valid: ``(S,)`` booleans; invalid (padding) steps leave the rows unchanged.
        keep_all: return the rows and log normalisers of every step (else only the last
            rows and the summed log normalisers).
        semiring: ``"sum"`` (sum-product, probabilities) or ``"max"`` (max-plus, logs).

    Returns:
        ``(rows (S, R, K), log_terms (S, R))`` if ``keep_all``, else
        ``(rows (R, K), log_total (R,))``.
    """
    inputs, fixed = _step_inputs(transitions, log_likelihoods, valid, semiring)

    def body(carry, step):
        current, log_total = carry
        transition, likelihood, shift, ok = _unpack(step, fixed)
        if semiring == "max":
            new, log_norm = _max_plus_step(current, transition, likelihood)
        else:
            new, log_norm = _normalize_rows((current @ transition) * likelihood[None, :])
        new = jnp.where(ok, new, current)
        log_term = jnp.where(ok, log_norm + shift, jnp.zeros_like(log_norm))
        return (new, log_total + log_term), ((new, log_term) if keep_all else None)

    log_zero = jnp.zeros(rows.shape[:1], rows.dtype)
    (last, log_total), outputs = lax.scan(body, (rows, log_zero), inputs)
    return outputs if keep_all else (last, log_total)


def scaled_backward(
    message: jax.Array, transitions: jax.Array, log_likelihoods: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Backward messages ``b_{t-1} ∝ P_{t-1} (p(y_t | .) * b_t)`` over steps s..e, in reverse.

    Args:
        message: ``(K,)`` probability-normalised message ``b_e`` after the last step.
        transitions: ``(K, K)`` or per-step ``(S, K, K)`` matrices ``P_{t-1}`` of the steps.
        log_likelihoods: ``(S, K)`` log emission densities of the steps.
        valid: ``(S,)`` booleans; invalid (padding) steps leave the message unchanged.

    Returns:
        ``(messages (S, K), first)``: ``messages[k]`` is the (normalised) message at the time
        of step k and ``first`` the message before the first step.
    """
    inputs, fixed = _step_inputs(transitions, log_likelihoods, valid)

    def body(current, step):
        transition, likelihood, _, ok = _unpack(step, fixed)
        new, _ = _normalize_rows(transition @ (likelihood * current))
        return jnp.where(ok, new, current), current

    first, messages = lax.scan(body, message, inputs, reverse=True)
    return messages, first


def pad_to_blocks(x: jax.Array, block_size: int, fill: float | bool) -> jax.Array:
    """Pad the leading axis to a multiple of ``block_size`` and split it into blocks.

    Args:
        x: array with a leading time axis of length S >= 1.
        block_size: block length B.
        fill: padding value.

    Returns:
        ``(ceil(S / B), B, ...)`` array.
    """
    num_blocks = -(-x.shape[0] // block_size)
    pad = num_blocks * block_size - x.shape[0]
    x = jnp.concatenate([x, jnp.full((pad, *x.shape[1:]), fill, x.dtype)])
    return x.reshape(num_blocks, block_size, *x.shape[1:])


def block_products(transitions, log_likelihoods, valid, semiring: str = "sum") -> LogMatrix:
    """Products ``A_s ... A_e`` of blocked steps, as normalised log-space matrices.

    Args:
        transitions: ``(K, K)`` or blocked ``(N, B, K, K)`` transition probabilities (their
            logarithms for ``semiring="max"``).
        log_likelihoods: ``(N, B, K)`` blocked log emission densities.
        valid: ``(N, B)`` booleans marking real (not padding) steps.
        semiring: ``"sum"`` (sum-product) or ``"max"`` (max-plus) products.

    Returns:
        A `LogMatrix` with leaves ``(N, K, K)`` and ``(N,)``.
    """
    num_states = log_likelihoods.shape[-1]
    eye = jnp.eye(num_states, dtype=log_likelihoods.dtype)
    if semiring == "max":
        eye = jnp.where(eye > 0, jnp.zeros_like(eye), -jnp.inf)
    in_axes = (0 if transitions.ndim == 4 else None, 0, 0)
    rows, log_totals = jax.vmap(
        lambda p, ll, v: scaled_forward(eye, p, ll, v, keep_all=False, semiring=semiring),
        in_axes=in_axes,
    )(transitions, log_likelihoods, valid)
    log_rows = rows if semiring == "max" else safe_log(rows)
    log_matrix = log_rows + log_totals[..., None]
    return jax.vmap(normalize)(log_matrix, jnp.zeros(log_matrix.shape[:1], log_matrix.dtype))
