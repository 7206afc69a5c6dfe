"""Shared input handling and scan plumbing of the discrete-HMM modules (internal).

See `numpyro_parallel.ssm.hmm` for the model and the paper (Hassan, Särkkä &
García-Fernández 2021).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel.scan import associative_scan, default_block_size
from numpyro_parallel.ssm.hmm_elements import LogMatrix, forward_elements, sum_product_combine

__all__ = [
    "check_logits",
    "forward_scan",
    "per_step",
    "prepare",
    "resolve_block_size",
    "reverse_sum_product",
    "scan_elements",
]


def check_logits(name: str, logits: jax.Array) -> None:
    """Reject NaN / ``+inf`` logits and rows without any finite entry, when values are concrete.

    Under `jax.jit`, `jax.grad` or NUTS the values are tracers and cannot be checked at trace
    time; then the result is NaN instead of an error.

    Args:
        name: argument name used in the error message.
        logits: logits whose last axis indexes the states.
    """
    if isinstance(logits, jax.core.Tracer):
        return
    values = np.asarray(logits)
    if np.any(np.isnan(values)) or np.any(np.isposinf(values)):
        raise ValueError(f"`{name}` must not contain NaN or +inf entries.")
    if values.size and np.any(np.all(np.isneginf(values), axis=-1)):
        raise ValueError(f"every row of `{name}` needs at least one finite entry (not all -inf).")


def prepare(initial_logits, transition_logits, log_likelihoods):
    log_likelihoods = jnp.asarray(log_likelihoods)
    if log_likelihoods.ndim != 2:
        raise ValueError(
            f"`log_likelihoods` must have shape (T, K); got {tuple(log_likelihoods.shape)}."
        )
    num_steps, num_states = log_likelihoods.shape
    initial_logits = jnp.asarray(initial_logits)
    transition_logits = jnp.asarray(transition_logits)
    if initial_logits.shape != (num_states,):
        raise ValueError(
            f"`initial_logits` must have shape (K,) = ({num_states},) to match "
            f"`log_likelihoods` of shape {tuple(log_likelihoods.shape)}; "
            f"got {tuple(initial_logits.shape)}."
        )
    allowed = [(num_states, num_states), (num_steps, num_states, num_states)]
    if tuple(transition_logits.shape) not in allowed:
        raise ValueError(
            f"`transition_logits` must have shape (K, K) = {allowed[0]} or (T, K, K) = "
            f"{allowed[1]}; got {tuple(transition_logits.shape)}."
        )
    check_logits("initial_logits", initial_logits)
    check_logits("transition_logits", transition_logits)
    dtype = jnp.result_type(initial_logits, transition_logits, log_likelihoods, jnp.float32)
    log_initial = jax.nn.log_softmax(initial_logits.astype(dtype))
    log_transition = jax.nn.log_softmax(transition_logits.astype(dtype), axis=-1)
    return log_initial, log_transition, log_likelihoods.astype(dtype)


def resolve_block_size(block_size, log_likelihoods) -> int | None:
    # Resolve "auto" outside jit so that the static argument is a concrete, hashable value.
    if block_size == "auto":
        return default_block_size(jnp.shape(log_likelihoods)[0])
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(
            f"`block_size` must be a positive int, 'auto' or None; got {block_size!r}."
        )
    return block_size


def scan_elements(combine, elements, mode, reverse=False):
    parallel, block_size = mode
    return associative_scan(
        combine, elements, parallel=parallel, reverse=reverse, block_size=block_size
    )


def per_step(log_transition: jax.Array, num_steps: int) -> jax.Array:
    """``(T, K, K)`` transition log-probabilities (broadcast if time-invariant)."""
    num_states = log_transition.shape[-1]
    return jnp.broadcast_to(log_transition, (num_steps, num_states, num_states))


def forward_scan(log_initial, log_transition, log_likelihoods, mode):
    transitions = per_step(log_transition, log_likelihoods.shape[0])
    elements = forward_elements(log_initial, transitions, log_likelihoods)
    return elements, scan_elements(sum_product_combine, elements, mode)


def reverse_sum_product(later: LogMatrix, earlier: LogMatrix) -> LogMatrix:
    return sum_product_combine(earlier, later)
