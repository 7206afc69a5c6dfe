"""Parallel-in-time inference for discrete hidden Markov models.

Forward filtering and log-likelihood, forward-backward smoothing, Viterbi decoding and posterior
path sampling in O(log T) parallel depth (Hassan, Särkkä & García-Fernández 2021, "Temporal
parallelization of inference in hidden Markov models", IEEE Trans. Signal Processing 69). The
elements and combine operators live in `numpyro_parallel.ssm.hmm_elements`; every function
takes ``parallel=False`` to run the same pieces sequentially with `lax.scan`.

Model (0-based time): ``z_0 ~ Categorical(softmax(initial_logits))``,
``z_{t+1} | z_t ~ Categorical(softmax(transition_logits[t][z_t]))`` and
``log p(y_t | z_t = k) = log_likelihoods[t, k]``. ``transition_logits`` is ``(K, K)`` or
time-varying ``(T, K, K)``; entry ``[t]`` maps ``z_t`` to ``z_{t+1}``, so the last entry is
unused (the convention of `numpyro_parallel.ssm.kalman`). Logits are normalised with
``log_softmax``; ``-inf`` entries encode impossible transitions.

Viterbi backtracking and backward sampling are suffix compositions of index maps: the argmax
pointers ``psi_t[j] = argmax_i delta_t[i] + log P_t[i, j]`` (Viterbi), or the Gumbel-max draws
``f_t[j] = argmax_i log p(z_t = i | y_{0:t}) + log P_t[i, j] + g_t[i]`` with one Gumbel vector
``g_t`` shared by all ``j`` (sampling), so the whole path comes out of one more scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel.scan import associative_scan, default_block_size
from numpyro_parallel.ssm.hmm_elements import (
    LogMatrix,
    backward_elements,
    compose_index_maps,
    forward_elements,
    max_product_combine,
    sum_product_combine,
)

__all__ = [
    "HMMFilterResult",
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
        filtered_probs: ``(T, K)`` ``p(z_t | y_{0:t})``.
        log_likelihood: ``()`` ``log p(y_{0:T-1})``.
        log_likelihood_terms: ``(T,)`` ``log p(y_t | y_{0:t-1})`` (they sum to the total).
    """

    filtered_probs: jax.Array
    log_likelihood: jax.Array
    log_likelihood_terms: jax.Array


class ViterbiResult(NamedTuple):
    """Most likely state path.

    Attributes:
        path: ``(T,)`` int32 states of the most likely path.
        log_joint: ``()`` ``log p(path, y)`` of that path.
    """

    path: jax.Array
    log_joint: jax.Array


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


def _prepare(initial_logits, transition_logits, log_likelihoods):
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
    log_transition = jnp.broadcast_to(log_transition, (num_steps, num_states, num_states))
    return log_initial, log_transition, log_likelihoods.astype(dtype)


def _block(block_size, log_likelihoods) -> int | None:
    # Resolve "auto" outside jit so that the static argument is a concrete, hashable value.
    if block_size == "auto":
        return default_block_size(jnp.shape(log_likelihoods)[0])
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(
            f"`block_size` must be a positive int, 'auto' or None; got {block_size!r}."
        )
    return block_size


def _scan(combine, elements, mode, reverse=False):
    parallel, block_size = mode
    return associative_scan(
        combine, elements, parallel=parallel, reverse=reverse, block_size=block_size
    )


def _forward(log_initial, log_transition, log_likelihoods, mode):
    elements = forward_elements(log_initial, log_transition, log_likelihoods)
    return elements, _scan(sum_product_combine, elements, mode)


def _reverse_sum_product(later: LogMatrix, earlier: LogMatrix) -> LogMatrix:
    return sum_product_combine(earlier, later)


def hmm_filter(
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    log_likelihoods: jax.Array,
    *,
    parallel: bool = True,
    block_size: int | str | None = None,
) -> HMMFilterResult:
    """Filtered state probabilities and the log-likelihood.

    Args:
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        parallel: associative scan (O(log T) depth) when True, `lax.scan` otherwise.
        block_size: see `numpyro_parallel.scan.associative_scan`: None for the O(log T)
            associative scan, an int or ``"auto"`` for the blocked strategy (faster to
            compile on CPU).

    Returns:
        An `HMMFilterResult`.
    """
    prepared = _prepare(initial_logits, transition_logits, log_likelihoods)
    return _filter(*prepared, (parallel, _block(block_size, log_likelihoods)))


@partial(jax.jit, static_argnums=3)
def _filter(log_initial, log_transition, log_likelihoods, mode):
    _, prefix = _forward(log_initial, log_transition, log_likelihoods, mode)
    log_alpha = prefix.log_matrix[:, 0, :]
    log_evidence = jax.nn.logsumexp(log_alpha, axis=-1) + prefix.log_scale
    terms = jnp.concatenate([log_evidence[:1], jnp.diff(log_evidence)])
    filtered = jax.nn.softmax(log_alpha, axis=-1)
    return HMMFilterResult(filtered, log_evidence[-1], terms)


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
    parallel: bool = True,
    block_size: int | str | None = None,
) -> jax.Array:
    """Marginal log-likelihood ``log p(y_{0:T-1})`` alone (what `DiscreteHMM.log_prob` uses).

    In parallel mode the elements are multiplied by a pairwise tree (O(log T) depth, T - 1
    combines, no stored prefixes), about half the work of `hmm_filter`.

    Args:
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        parallel: pairwise tree product when True, `lax.scan` otherwise.
        block_size: with an int or ``"auto"``, sequential products inside blocks of that
            length run side by side before the tree product over the block totals.

    Returns:
        The scalar log-likelihood.
    """
    prepared = _prepare(initial_logits, transition_logits, log_likelihoods)
    return _log_likelihood(*prepared, (parallel, _block(block_size, log_likelihoods)))


@partial(jax.jit, static_argnums=3)
def _log_likelihood(log_initial, log_transition, log_likelihoods, mode):
    parallel, block_size = mode
    elements = forward_elements(log_initial, log_transition, log_likelihoods)
    if not parallel:
        total = jax.tree_util.tree_map(lambda x: x[-1], _scan(sum_product_combine, elements, mode))
    else:
        num_steps = log_likelihoods.shape[0]
        if block_size is not None and num_steps >= 2 * block_size:
            num_blocks = num_steps // block_size
            cut = num_blocks * block_size
            head = jax.tree_util.tree_map(
                lambda x: x[:cut].reshape(num_blocks, block_size, *x.shape[1:]), elements
            )
            tail = jax.tree_util.tree_map(lambda x: x[cut:], elements)
            sequential = (False, None)
            totals = jax.vmap(
                lambda e: jax.tree_util.tree_map(
                    lambda x: x[-1], _scan(sum_product_combine, e, sequential)
                )
            )(head)
            elements = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), totals, tail)
        total = _tree_product(sum_product_combine, elements)
    return jax.nn.logsumexp(total.log_matrix[0]) + total.log_scale


def hmm_smoother(
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    log_likelihoods: jax.Array,
    *,
    parallel: bool = True,
    block_size: int | str | None = None,
) -> jax.Array:
    """Posterior state marginals ``p(z_t | y_{0:T-1})`` by forward-backward.

    Args:
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        parallel: associative scans when True, `lax.scan` otherwise.
        block_size: see `hmm_filter`.

    Returns:
        ``(T, K)`` smoothed probabilities.
    """
    prepared = _prepare(initial_logits, transition_logits, log_likelihoods)
    return _smoother(*prepared, (parallel, _block(block_size, log_likelihoods)))


@partial(jax.jit, static_argnums=3)
def _smoother(log_initial, log_transition, log_likelihoods, mode):
    elements, prefix = _forward(log_initial, log_transition, log_likelihoods, mode)
    suffix = _scan(_reverse_sum_product, backward_elements(elements), mode, reverse=True)
    log_marginal = prefix.log_matrix[:, 0, :] + suffix.log_matrix[:, :, 0]
    return jax.nn.softmax(log_marginal, axis=-1)


def _backtrack(pointers: jax.Array, mode) -> jax.Array:
    # pointers[t][j] = z_t given z_{t+1} = j; pointers[T-1] is constant. Suffix composition.
    maps = _scan(compose_index_maps, pointers, mode, reverse=True)
    return maps[:, 0]


def hmm_viterbi(
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    log_likelihoods: jax.Array,
    *,
    parallel: bool = True,
    block_size: int | str | None = None,
) -> ViterbiResult:
    """Most likely state path (max-product scan, then parallel backtracking of the pointers).

    Args:
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        parallel: associative scans when True, `lax.scan` otherwise.
        block_size: see `hmm_filter`.

    Returns:
        A `ViterbiResult`; ties are broken towards the smallest state index at each pointer.
    """
    prepared = _prepare(initial_logits, transition_logits, log_likelihoods)
    return _viterbi(*prepared, (parallel, _block(block_size, log_likelihoods)))


@partial(jax.jit, static_argnums=3)
def _viterbi(log_initial, log_transition, log_likelihoods, mode):
    elements = forward_elements(log_initial, log_transition, log_likelihoods)
    prefix = _scan(max_product_combine, elements, mode)
    delta = prefix.log_matrix[:, 0, :]
    num_states = delta.shape[-1]
    scores = delta[:-1, :, None] + log_transition[:-1]
    pointers = jnp.argmax(scores, axis=1).astype(jnp.int32)
    last = jnp.full((1, num_states), jnp.argmax(delta[-1]), jnp.int32)
    path = _backtrack(jnp.concatenate([pointers, last], axis=0), mode)
    return ViterbiResult(path, jnp.max(delta[-1]) + prefix.log_scale[-1])


def _sample_sizes(sample_shape: Sequence[int]) -> tuple[tuple[int, ...], int]:
    sample_shape = tuple(int(n) for n in sample_shape)
    return sample_shape, int(np.prod(sample_shape, dtype=np.int64))


def hmm_sample_states(
    rng_key: jax.Array,
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    log_likelihoods: jax.Array,
    sample_shape: Sequence[int] = (),
    *,
    parallel: bool = True,
    block_size: int | str | None = None,
) -> jax.Array:
    """Posterior state paths ``z_{0:T-1} ~ p(z | y)`` (parallel forward-filter backward-sample).

    Args:
        rng_key: JAX PRNG key.
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        sample_shape: leading shape of independent draws.
        parallel: associative scans when True, `lax.scan` otherwise.
        block_size: see `hmm_filter`.

    Returns:
        ``(*sample_shape, T)`` int32 state paths.
    """
    prepared = _prepare(initial_logits, transition_logits, log_likelihoods)
    mode = (parallel, _block(block_size, log_likelihoods))
    return _sample_states(rng_key, *prepared, _sample_sizes(sample_shape), mode)


@partial(jax.jit, static_argnums=(4, 5))
def _sample_states(rng_key, log_initial, log_transition, log_likelihoods, sizes, mode):
    _, prefix = _forward(log_initial, log_transition, log_likelihoods, mode)
    log_filtered = jax.nn.log_softmax(prefix.log_matrix[:, 0, :], axis=-1)
    num_steps, num_states = log_filtered.shape
    # conditional[t, i, j] = log p(z_t = i | z_{t+1} = j, y_{0:t}) up to a constant in i.
    conditional = log_filtered[:-1, :, None] + log_transition[:-1]
    sample_shape, num_samples = sizes

    def one_path(key):
        gumbel = jax.random.gumbel(key, (num_steps, num_states), log_filtered.dtype)
        maps = jnp.argmax(conditional + gumbel[:-1, :, None], axis=1).astype(jnp.int32)
        last = jnp.argmax(log_filtered[-1] + gumbel[-1]).astype(jnp.int32)
        last = jnp.full((1, num_states), last, jnp.int32)
        return _backtrack(jnp.concatenate([maps, last], axis=0), mode)

    paths = jax.vmap(one_path)(jax.random.split(rng_key, num_samples))
    return paths.reshape(*sample_shape, num_steps)


def hmm_sample_prior_states(
    rng_key: jax.Array,
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    num_steps: int,
    sample_shape: Sequence[int] = (),
    *,
    parallel: bool = True,
    block_size: int | str | None = None,
) -> jax.Array:
    """State paths from the Markov chain prior, by a forward scan of Gumbel-max index maps.

    Args:
        rng_key: JAX PRNG key.
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(num_steps, K, K)`` transition logits.
        num_steps: path length T.
        sample_shape: leading shape of independent draws.
        parallel: associative scan when True, `lax.scan` otherwise.
        block_size: see `hmm_filter`.

    Returns:
        ``(*sample_shape, T)`` int32 state paths.
    """
    num_states = jnp.shape(initial_logits)[-1]
    log_likelihoods = jnp.zeros((num_steps, num_states), jnp.result_type(initial_logits, float))
    log_initial, log_transition, _ = _prepare(initial_logits, transition_logits, log_likelihoods)
    sizes = _sample_sizes(sample_shape)
    mode = (parallel, _block(block_size, log_likelihoods))
    return _sample_prior(rng_key, log_initial, log_transition, sizes, mode)


@partial(jax.jit, static_argnums=(3, 4))
def _sample_prior(rng_key, log_initial, log_transition, sizes, mode):
    sample_shape, num_samples = sizes
    num_steps, num_states = log_transition.shape[:2]

    def one_path(key):
        gumbel = jax.random.gumbel(key, (num_steps, num_states), log_initial.dtype)
        first = jnp.argmax(log_initial + gumbel[0]).astype(jnp.int32)
        first = jnp.full((1, num_states), first, jnp.int32)
        # maps[t][i] = z_{t+1} given z_t = i.
        maps = jnp.argmax(log_transition[:-1] + gumbel[1:, None, :], axis=2).astype(jnp.int32)
        elements = jnp.concatenate([first, maps], axis=0)
        return _scan(compose_index_maps, elements, mode)[:, 0]

    paths = jax.vmap(one_path)(jax.random.split(rng_key, num_samples))
    return paths.reshape(*sample_shape, num_steps)
