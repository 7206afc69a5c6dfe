"""Parallel-in-time inference for discrete hidden Markov models.

Forward filtering and log-likelihood, forward-backward smoothing, Viterbi decoding and posterior
path sampling in O(log T) parallel depth (Hassan, Särkkä & García-Fernández 2021, "Temporal
parallelization of inference in hidden Markov models", IEEE Trans. Signal Processing 69). The
elements and combine operators live in `numpyro_parallel.ssm.hmm.elements`.

Strategies (``strategy=``, `numpyro_parallel.strategy`): `Associative()`, the O(log T)-depth
associative scan of log-space elements (what ``"auto"`` picks on accelerators); `Blocked()`,
implemented for the HMM by `numpyro_parallel.ssm.hmm.blocked`, which multiplies blocks of about
sqrt(T) steps side by side in scaled probability space; and `Sequential()`, the sequential
scaled recursions (what ``"auto"`` picks on CPU, where they are the fastest: as fast as
`Blocked()` at K = 2 and 2-14x faster from K = 8 on, gradients included). Viterbi and path
sampling (`numpyro_parallel.ssm.hmm.paths`) take the same strategies.

Model (0-based time): ``z_0 ~ Categorical(softmax(initial_logits))``,
``z_{t+1} | z_t ~ Categorical(softmax(transition_logits[t][z_t]))`` and
``log p(y_t | z_t = k) = log_likelihoods[t, k]``. ``transition_logits`` is ``(K, K)`` or
time-varying ``(T, K, K)``; entry ``[t]`` maps ``z_t`` to ``z_{t+1}``, so the last entry is
unused (the convention of `numpyro_parallel.ssm.kalman.inference`). Logits are normalised with
``log_softmax``; ``-inf`` entries encode impossible transitions.

Viterbi backtracking and backward sampling are suffix compositions of index maps: the argmax
pointers ``psi_t[j] = argmax_i delta_t[i] + log P_t[i, j]`` (Viterbi), or the Gumbel-max draws
``f_t[j] = argmax_i log p(z_t = i | y_{0:t}) + log P_t[i, j] + g_t[i]`` with one Gumbel vector
``g_t`` shared by all ``j`` (sampling), so the whole path comes out of one more scan.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import nan_unless
from numpyro_parallel.scan import associative_scan
from numpyro_parallel.ssm.hmm.blocked import scaled_filter, scaled_log_likelihood, scaled_smoother
from numpyro_parallel.ssm.hmm.common import (
    check_logits,
    forward_scan,
    inputs_ok,
    per_step,
    prepare,
    resolve_mode,
    reverse_sum_product,
    scaled_block_size,
    step_terms,
    uses_elements,
)
from numpyro_parallel.ssm.hmm.elements import (
    backward_elements,
    forward_elements,
    sum_product_combine,
)
from numpyro_parallel.ssm.hmm.paths import (
    ViterbiResult,
    hmm_sample_prior_states,
    hmm_sample_states,
    hmm_viterbi,
)
from numpyro_parallel.ssm.hmm.sharded import (
    sharded_filter,
    sharded_log_likelihood,
    sharded_smoother,
)
from numpyro_parallel.strategy import Sharded, StrategyLike

__all__ = [
    "HMMFilterResult",
    "HMMSmootherResult",
    "ViterbiResult",
    "check_logits",
    "hmm_filter",
    "hmm_log_likelihood",
    "hmm_sample_prior_states",
    "hmm_sample_states",
    "hmm_smoother",
    "hmm_viterbi",
]


class HMMFilterResult(NamedTuple):
    """Forward-filter output.

    Attributes:
        filtered_probs: ``(T, K)`` ``p(z_t | y_{0:t})``; NaN rows from the first step where
            the data have probability zero under every state path (``p(y_{0:t}) = 0``: the
            conditional probabilities are undefined), with every strategy.
        log_likelihood: ``()`` ``log p(y_{0:T-1})`` (``-inf`` for data of probability zero).
        log_likelihood_terms: ``(T,)`` ``log p(y_t | y_{0:t-1})`` (they sum to the total;
            ``-inf`` from the impossible step on).
    """

    filtered_probs: jax.Array
    log_likelihood: jax.Array
    log_likelihood_terms: jax.Array


class HMMSmootherResult(NamedTuple):
    """Forward-backward output.

    Attributes:
        smoothed_probs: ``(T, K)`` ``p(z_t | y_{0:T-1})``; all NaN when the data have
            probability zero (``log_likelihood`` is ``-inf``).
        filtered_probs: ``(T, K)`` ``p(z_t | y_{0:t})`` (the forward pass, for free; NaN rows
            from the impossible step on, as in `HMMFilterResult`).
        log_likelihood: ``()`` ``log p(y_{0:T-1})``.
    """

    smoothed_probs: jax.Array
    filtered_probs: jax.Array
    log_likelihood: jax.Array


def _forward_terms(prefix):
    """Filtered probabilities and per-step terms from the forward prefix products."""
    log_alpha = prefix.log_matrix[:, 0, :]
    log_evidence = jax.nn.logsumexp(log_alpha, axis=-1) + prefix.log_scale
    terms = step_terms(log_evidence, jnp.zeros_like(log_evidence[0]))
    return jax.nn.softmax(log_alpha, axis=-1), terms


def _undefined_after_impossible(filtered: jax.Array, terms: jax.Array) -> jax.Array:
    """NaN rows from the first step with ``p(y_{0:t}) = 0`` on (``p(z_t | y_{0:t})`` is
    undefined there), whatever the strategy's arithmetic would leave (zero rows or NaN).

    Every strategy makes the terms ``-inf`` from that step on, so the test is per step: no
    prefix over time, which would cost a gather across devices under `Sharded`."""
    impossible = ~jnp.isfinite(terms)
    return jnp.where(impossible[:, None], jnp.nan, filtered)


def hmm_filter(
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    log_likelihoods: jax.Array,
    *,
    strategy: StrategyLike = "auto",
) -> HMMFilterResult:
    """Filtered state probabilities and the log-likelihood.

    Args:
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        strategy: `Associative()` for the O(log T) log-space associative scan;
            `Blocked(block_size)` for the blocked scaled recursion of
            `numpyro_parallel.ssm.hmm.blocked`; `Sequential()` for the sequential scaled
            forward recursion (`lax.scan`); ``"auto"`` (default) for `Sequential()` on CPU and
            `Associative()` on accelerators.

    Returns:
        An `HMMFilterResult`; every entry is NaN when an input is NaN (only possible under
        tracing: concrete NaN / ``+inf`` inputs raise `ValueError`).

    Raises:
        ValueError: wrong shapes, T = 0 or K = 0, NaN / ``+inf`` entries, logits rows that are
            all ``-inf``, an unknown strategy name.
        TypeError: integer or boolean arrays, ``strategy`` not a strategy.
    """
    prepared = prepare(initial_logits, transition_logits, log_likelihoods)
    return _filter(*prepared, resolve_mode(strategy, log_likelihoods))


@partial(jax.jit, static_argnums=3)
def _filter(log_initial, log_transition, log_likelihoods, strategy):
    if isinstance(strategy, Sharded):  # the whole filter inside one shard_map
        filtered, terms = sharded_filter(log_initial, log_transition, log_likelihoods, strategy)
    elif uses_elements(strategy):
        _, prefix = forward_scan(log_initial, log_transition, log_likelihoods, strategy)
        filtered, terms = _forward_terms(prefix)
    else:
        filtered, terms, _ = scaled_filter(
            log_initial, log_transition, log_likelihoods, scaled_block_size(strategy)
        )
    result = HMMFilterResult(_undefined_after_impossible(filtered, terms), jnp.sum(terms), terms)
    ok = inputs_ok(log_initial, log_transition, log_likelihoods)
    return HMMFilterResult(*(nan_unless(ok, x) for x in result))


def _tree_product(combine, elements):
    """Total product ``e[0] * ... * e[T-1]`` by pairwise combination (O(log T) depth).

    Unlike a scan it keeps no prefixes, so the log-likelihood alone costs half the work.
    """
    num_steps = jax.tree_util.tree_leaves(elements)[0].shape[0]
    while num_steps > 1:
        even = num_steps - num_steps % 2
        pairs = jax.vmap(combine)(
            jax.tree_util.tree_map(lambda x, n=even: x[0:n:2], elements),
            jax.tree_util.tree_map(lambda x, n=even: x[1:n:2], elements),
        )
        if num_steps % 2:
            tail = jax.tree_util.tree_map(lambda x: x[-1:], elements)
            pairs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), pairs, tail)
        elements, num_steps = pairs, (num_steps + 1) // 2
    return jax.tree_util.tree_map(lambda x: x[0], elements)


def hmm_log_likelihood(
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    log_likelihoods: jax.Array,
    *,
    strategy: StrategyLike = "auto",
) -> jax.Array:
    """Marginal log-likelihood ``log p(y_{0:T-1})`` alone (what `DiscreteHMM.log_prob` uses).

    With `Associative()` the per-step elements are multiplied by a pairwise tree (O(log T)
    depth, no stored prefixes); the blocked strategy needs only the block products and one
    short scan over them (`numpyro_parallel.ssm.hmm.blocked`), about half the work of
    `hmm_filter`.

    Args:
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        strategy: evaluation strategy, as in `hmm_filter`.

    Returns:
        The scalar log-likelihood: ``-inf`` for data of probability zero, NaN when an input
        is NaN under tracing.

    Raises:
        ValueError, TypeError: as `hmm_filter`.
    """
    prepared = prepare(initial_logits, transition_logits, log_likelihoods)
    return _log_likelihood(*prepared, resolve_mode(strategy, log_likelihoods))


@partial(jax.jit, static_argnums=3)
def _log_likelihood(log_initial, log_transition, log_likelihoods, strategy):
    ok = inputs_ok(log_initial, log_transition, log_likelihoods)
    if not uses_elements(strategy) or log_likelihoods.shape[0] == 1:
        block_size = scaled_block_size(strategy)
        value = scaled_log_likelihood(log_initial, log_transition, log_likelihoods, block_size)
        return nan_unless(ok, value)
    if isinstance(strategy, Sharded):  # the whole forward pass inside one shard_map
        value = sharded_log_likelihood(log_initial, log_transition, log_likelihoods, strategy)
        return nan_unless(ok, value)
    elements = forward_elements(
        log_initial, per_step(log_transition, log_likelihoods.shape[0]), log_likelihoods
    )
    total = _tree_product(sum_product_combine, elements)
    return nan_unless(ok, jax.nn.logsumexp(total.log_matrix[0]) + total.log_scale)


def hmm_smoother(
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    log_likelihoods: jax.Array,
    *,
    strategy: StrategyLike = "auto",
) -> HMMSmootherResult:
    """Posterior state marginals ``p(z_t | y_{0:T-1})`` by forward-backward.

    Args:
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        strategy: evaluation strategy, as in `hmm_filter`.

    Returns:
        An `HMMSmootherResult` (smoothed and filtered probabilities, log-likelihood); every
        entry is NaN when an input is NaN (only possible under tracing).

    Raises:
        ValueError, TypeError: as `hmm_filter`.
    """
    prepared = prepare(initial_logits, transition_logits, log_likelihoods)
    return _smoother(*prepared, resolve_mode(strategy, log_likelihoods))


@partial(jax.jit, static_argnums=3)
def _smoother(log_initial, log_transition, log_likelihoods, strategy):
    ok = inputs_ok(log_initial, log_transition, log_likelihoods)
    if isinstance(strategy, Sharded):  # forward and backward passes in one shard_map
        smoothed, filtered, terms = sharded_smoother(
            log_initial, log_transition, log_likelihoods, strategy
        )
    elif uses_elements(strategy):
        elements, prefix = forward_scan(log_initial, log_transition, log_likelihoods, strategy)
        suffix = associative_scan(
            reverse_sum_product, backward_elements(elements), strategy=strategy, reverse=True
        )
        log_marginal = prefix.log_matrix[:, 0, :] + suffix.log_matrix[:, :, 0]
        smoothed = jax.nn.softmax(log_marginal, axis=-1)
        filtered, terms = _forward_terms(prefix)
    else:
        smoothed, filtered, terms = scaled_smoother(
            log_initial, log_transition, log_likelihoods, scaled_block_size(strategy)
        )
    total = jnp.sum(terms)
    smoothed = jnp.where(jnp.isneginf(total), jnp.nan, smoothed)  # p(z_t | y) needs p(y) > 0
    filtered = _undefined_after_impossible(filtered, terms)
    result = HMMSmootherResult(smoothed, filtered, total)
    return HMMSmootherResult(*(nan_unless(ok, x) for x in result))
