"""Sequential and blocked HMM filtering, smoothing and log-likelihood in scaled probabilities.

The drivers behind `numpyro_parallel.ssm.hmm.inference` for `Sequential()` (one scaled
recursion over all steps, what ``"auto"`` picks on CPU) and for `Blocked()` (``block_size`` an
int),
built from the primitives of `numpyro_parallel.ssm.hmm.scaled` (Hassan, Särkkä &
García-Fernández 2021, "Temporal parallelization of inference in hidden Markov models"):

1. the steps t = 1..T-1 are cut into blocks (the last padded with steps that change nothing)
   and every block's product is formed side by side, O(K^3) per step;
2. a short sequential scan over the ~sqrt(T) block products gives the exact message entering
   (forward) or leaving (backward) every block, and the total log-likelihood;
3. for filtering and smoothing, the scaled vector recursions run inside every block side by
   side from those messages, O(K^2) per step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel.ssm.hmm.elements import LogMatrix, normalize
from numpyro_parallel.ssm.hmm.scaled import (
    block_products,
    pad_to_blocks,
    scaled_backward,
    scaled_forward,
    shift_to_max_zero,
    to_probabilities,
)

__all__ = ["scaled_filter", "scaled_log_likelihood", "scaled_smoother"]


def _steps(log_transition, log_likelihoods, semiring="sum"):
    """Transitions, log-likelihoods and validity flags of the steps 1..T-1.

    The transitions are probabilities for ``"sum"`` and log-probabilities for ``"max"``.
    """
    transitions = log_transition if semiring == "max" else jnp.exp(log_transition)
    transitions = transitions[:-1] if transitions.ndim == 3 else transitions
    return transitions, log_likelihoods[1:], jnp.ones(log_likelihoods.shape[:1], bool)[1:]


def _blocked_steps(log_transition, log_likelihoods, block_size, semiring="sum"):
    """The steps 1..T-1 split into blocks (the last one padded with invalid steps)."""
    transitions, step_lls, _ = _steps(log_transition, log_likelihoods, semiring)
    block = min(block_size, step_lls.shape[0])
    valid = pad_to_blocks(jnp.ones(step_lls.shape[:1], bool), block, False)
    if transitions.ndim == 3:
        transitions = pad_to_blocks(transitions, block, 0.0)
    return transitions, pad_to_blocks(step_lls, block, 0.0), valid


def _block_messages(
    log_message: jax.Array, elements: LogMatrix, *, reverse: bool, semiring: str = "sum"
) -> tuple[jax.Array, jax.Array]:
    """Messages entering (forward) or leaving (reverse) every block.

    A sequential scan over the ~sqrt(T) block products, one log-space vector-matrix product
    each: negligible next to the blocks themselves and quick to compile. Returns the messages
    (as probabilities; for ``"max"`` as log-space rows with maximum 0) and the log of the final
    message's total mass (the log-likelihood or best path score, going forward).
    """
    reduce = jnp.max if semiring == "max" else jax.nn.logsumexp

    def step(carry, element):
        message, log_total = carry
        if reverse:  # b_i = sum_j M_ij b_j
            new = reduce(element.log_matrix + message[None, :], axis=1)
        else:  # v_j = sum_i v_i M_ij
            new = reduce(message[:, None] + element.log_matrix, axis=0)
        new = normalize(new, log_total + element.log_scale)
        return (new.log_matrix, new.log_scale), message

    start = (log_message, jnp.zeros((), log_message.dtype))
    (last, log_total), messages = lax.scan(step, start, elements, reverse=reverse)
    if semiring == "max":
        return shift_to_max_zero(messages)[0], jnp.max(last) + log_total
    return to_probabilities(messages)[0], jax.nn.logsumexp(last) + log_total


def _vmap_blocks(fn, transitions):
    # Over blocks: the transitions are blocked only when time-varying.
    return jax.vmap(fn, in_axes=(0, 0 if transitions.ndim == 4 else None, 0, 0))


def _unblock(x: jax.Array, length: int) -> jax.Array:
    return x.reshape(-1, *x.shape[2:])[:length]


def scaled_filter(log_initial, log_transition, log_likelihoods, block_size, semiring="sum"):
    """Filtered probabilities by the sequential (``block_size`` None) or blocked recursion.

    With ``semiring="max"`` the Viterbi scores ``delta_t`` instead (log space, each row
    shifted to a maximum of 0; the terms then sum to the best path's log joint).

    Args:
        log_initial: ``(K,)`` normalised log initial probabilities.
        log_transition: ``(K, K)`` or ``(T, K, K)`` normalised log transition matrices.
        log_likelihoods: ``(T, K)`` log emission densities.
        block_size: None (sequential) or the block length.
        semiring: ``"sum"`` (filtering) or ``"max"`` (Viterbi scores).

    Returns:
        ``(filtered (T, K), log_likelihood_terms (T,), block products or None)``; the block
        products are reused by the smoother.
    """
    num_steps = log_likelihoods.shape[0]
    log_first = log_initial + log_likelihoods[0]
    start = shift_to_max_zero if semiring == "max" else to_probabilities
    first, first_term = start(log_first)
    if num_steps == 1:
        return first[None], first_term[None], None
    elements = None

    def forward(r, p, ll, v):
        return scaled_forward(r[None], p, ll, v, keep_all=True, semiring=semiring)

    if block_size is None:
        rows, terms = forward(first, *_steps(log_transition, log_likelihoods, semiring))
        rows, terms = rows[:, 0], terms[:, 0]
    else:
        steps = _blocked_steps(log_transition, log_likelihoods, block_size, semiring)
        elements = block_products(*steps, semiring=semiring)
        # Exact message entering every block: the initial vector times the earlier blocks.
        incoming, _ = _block_messages(log_first, elements, reverse=False, semiring=semiring)
        rows, terms = _vmap_blocks(forward, steps[0])(incoming, *steps)
        rows = _unblock(rows[:, :, 0], num_steps - 1)
        terms = _unblock(terms[:, :, 0], num_steps - 1)
    filtered = jnp.concatenate([first[None], rows])
    return filtered, jnp.concatenate([first_term[None], terms]), elements


def scaled_log_likelihood(log_initial, log_transition, log_likelihoods, block_size):
    """Log-likelihood by the sequential (``block_size`` None) or blocked scaled recursion.

    Args:
        log_initial: ``(K,)`` normalised log initial probabilities.
        log_transition: ``(K, K)`` or ``(T, K, K)`` normalised log transition matrices.
        log_likelihoods: ``(T, K)`` log emission densities.
        block_size: None (sequential) or the block length.

    Returns:
        The scalar log-likelihood.
    """
    log_first = log_initial + log_likelihoods[0]
    if log_likelihoods.shape[0] == 1:
        return jax.nn.logsumexp(log_first)
    if block_size is None:
        first, first_term = to_probabilities(log_first)
        transitions, step_lls, valid = _steps(log_transition, log_likelihoods)
        _, log_total = scaled_forward(first[None], transitions, step_lls, valid, keep_all=False)
        return first_term + log_total[0]
    elements = block_products(*_blocked_steps(log_transition, log_likelihoods, block_size))
    return _block_messages(log_first, elements, reverse=False)[1]


def scaled_smoother(log_initial, log_transition, log_likelihoods, block_size):
    """Smoothed marginals by the sequential (``block_size`` None) or blocked recursions.

    Args:
        log_initial: ``(K,)`` normalised log initial probabilities.
        log_transition: ``(K, K)`` or ``(T, K, K)`` normalised log transition matrices.
        log_likelihoods: ``(T, K)`` log emission densities.
        block_size: None (sequential) or the block length.

    Returns:
        ``(smoothed (T, K), filtered (T, K), log_likelihood_terms (T,))``.
    """
    filtered, terms, elements = scaled_filter(
        log_initial, log_transition, log_likelihoods, block_size
    )
    num_steps, num_states = log_likelihoods.shape
    if num_steps == 1:
        return filtered, filtered, terms
    uniform = jnp.full((num_states,), 1.0 / num_states, filtered.dtype)
    if elements is None:
        transitions, step_lls, valid = _steps(log_transition, log_likelihoods)
        messages, before = scaled_backward(uniform, transitions, step_lls, valid)
    else:
        transitions, step_lls, valid = _blocked_steps(log_transition, log_likelihoods, block_size)
        # Exact message leaving every block: the later blocks applied to a vector of ones.
        outgoing, _ = _block_messages(jnp.zeros_like(uniform), elements, reverse=True)
        messages, before = _vmap_blocks(scaled_backward, transitions)(
            outgoing, transitions, step_lls, valid
        )
        messages, before = _unblock(messages, num_steps - 1), before[0]
    marginals = filtered * jnp.concatenate([before[None], messages])
    return marginals / jnp.sum(marginals, axis=-1, keepdims=True), filtered, terms
