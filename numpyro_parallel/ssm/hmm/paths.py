"""Viterbi decoding and state-path sampling for discrete HMMs in O(log T) parallel depth.

Hassan, Särkkä & García-Fernández (2021), "Temporal parallelization of inference in hidden
Markov models": Viterbi is a max-product associative scan; the path is recovered by
composing the argmax pointers as index maps in a second (suffix) scan. Posterior path samples
use the same composition with Gumbel-max draws ``f_t[j] = argmax_i log p(z_t = i | y_{0:t}) +
log P_t[i, j] + g_t[i]`` (one Gumbel vector ``g_t`` shared by all ``j``), and prior paths a
forward scan of Gumbel-max transition maps. With the blocked strategy (the CPU default) and
sequentially, the Viterbi scores come from the scaled recursions of
`numpyro_parallel.ssm.hmm.blocked` in the max-plus semiring instead. Public through
`numpyro_parallel.ssm.hmm.inference`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import check_positive_int, check_sample_shape, nan_unless, warn_if
from numpyro_parallel.scan import associative_scan
from numpyro_parallel.ssm.hmm.blocked import scaled_filter
from numpyro_parallel.ssm.hmm.common import (
    forward_scan,
    inputs_ok,
    per_step,
    prepare,
    resolve_mode,
    scaled_block_size,
    uses_elements,
)
from numpyro_parallel.ssm.hmm.elements import (
    compose_index_maps,
    forward_elements,
    max_product_combine,
    safe_log,
)
from numpyro_parallel.ssm.hmm.sharded import (
    sharded_sample_prior,
    sharded_sample_states,
    sharded_viterbi,
)
from numpyro_parallel.strategy import Sharded, StrategyLike

__all__ = ["ViterbiResult", "hmm_sample_prior_states", "hmm_sample_states", "hmm_viterbi"]


class ViterbiResult(NamedTuple):
    """Most likely state path.

    Attributes:
        path: ``(T,)`` int32 states of the most likely path. Meaningless (an arbitrary path)
            unless ``valid``.
        log_joint: ``()`` ``log p(path, y)`` of that path: ``-inf`` when the data have
            probability zero under the model (no path is possible), NaN when an input is NaN
            (only possible under tracing).
        valid: ``()`` bool, ``isfinite(log_joint)``: whether ``path`` is a most likely path.
    """

    path: jax.Array
    log_joint: jax.Array
    valid: jax.Array


IMPOSSIBLE_MESSAGE = (
    "no state path has positive probability (the data have probability zero under the "
    "model, or an input is NaN): the returned state path is arbitrary"
)


def _backtrack(pointers: jax.Array, strategy) -> jax.Array:
    # pointers[t][j] = z_t given z_{t+1} = j; pointers[T-1] is constant. Suffix composition.
    maps = associative_scan(compose_index_maps, pointers, strategy=strategy, reverse=True)
    return maps[:, 0]


def hmm_viterbi(
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    log_likelihoods: jax.Array,
    *,
    strategy: StrategyLike = "auto",
) -> ViterbiResult:
    """Most likely state path (max-product scan, then parallel backtracking of the pointers).

    Args:
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        strategy: evaluation strategy, as in `numpyro_parallel.ssm.hmm.inference.hmm_filter`;
            `Blocked` and `Sequential` run the scaled recursions of
            `numpyro_parallel.ssm.hmm.blocked` in the max-plus semiring.

    Returns:
        A `ViterbiResult`; ties are broken towards the smallest state index at each pointer.
        When no path has positive probability, ``log_joint`` is ``-inf``, ``valid`` is False
        and (outside `jax.jit`) a `RuntimeWarning` is emitted.

    Raises:
        ValueError, TypeError: as `numpyro_parallel.ssm.hmm.inference.hmm_filter`.
    """
    prepared = prepare(initial_logits, transition_logits, log_likelihoods)
    result = _viterbi(*prepared, resolve_mode(strategy, log_likelihoods))
    warn_if(~result.valid, f"hmm_viterbi: {IMPOSSIBLE_MESSAGE}.")
    return result


@partial(jax.jit, static_argnums=3)
def _viterbi(log_initial, log_transition, log_likelihoods, strategy):
    ok = inputs_ok(log_initial, log_transition, log_likelihoods)
    if isinstance(strategy, Sharded):  # forward scan and backtracking in one shard_map
        path, log_joint = sharded_viterbi(log_initial, log_transition, log_likelihoods, strategy)
        log_joint = nan_unless(ok, log_joint)
        return ViterbiResult(path, log_joint, jnp.isfinite(log_joint))
    if uses_elements(strategy):
        log_transition = per_step(log_transition, log_likelihoods.shape[0])
        elements = forward_elements(log_initial, log_transition, log_likelihoods)
        prefix = associative_scan(max_product_combine, elements, strategy=strategy)
        delta, log_joint = prefix.log_matrix[:, 0, :], prefix.log_scale[-1]
    else:  # max-plus scaled recursions, blocked or sequential
        delta, terms, _ = scaled_filter(
            log_initial, log_transition, log_likelihoods, scaled_block_size(strategy),
            semiring="max",
        )  # fmt: skip
        log_joint = jnp.sum(terms)
        log_transition = per_step(log_transition, log_likelihoods.shape[0])
    num_states = delta.shape[-1]
    scores = delta[:-1, :, None] + log_transition[:-1]
    pointers = jnp.argmax(scores, axis=1).astype(jnp.int32)
    last = jnp.full((1, num_states), jnp.argmax(delta[-1]), jnp.int32)
    path = _backtrack(jnp.concatenate([pointers, last], axis=0), strategy)
    log_joint = nan_unless(ok, jnp.max(delta[-1]) + log_joint)
    return ViterbiResult(path, log_joint, jnp.isfinite(log_joint))


def _sample_sizes(sample_shape: Sequence[int]) -> tuple[tuple[int, ...], int]:
    sample_shape = check_sample_shape(sample_shape)
    return sample_shape, int(np.prod(sample_shape, dtype=np.int64))


def hmm_sample_states(
    rng_key: jax.Array,
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    log_likelihoods: jax.Array,
    sample_shape: Sequence[int] = (),
    *,
    strategy: StrategyLike = "auto",
) -> jax.Array:
    """Posterior state paths ``z_{0:T-1} ~ p(z | y)`` (parallel forward-filter backward-sample).

    Args:
        rng_key: JAX PRNG key.
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` transition logits (module docstring).
        log_likelihoods: ``(T, K)`` log emission densities (0 where ``y_t`` is missing).
        sample_shape: leading shape of independent draws (an int n means ``(n,)``; entries >= 0).
        strategy: evaluation strategy, as in `numpyro_parallel.ssm.hmm.inference.hmm_filter`.

    Returns:
        ``(*sample_shape, T)`` int32 state paths. When the data have probability zero (or an
        input is NaN under tracing) the paths are arbitrary; outside `jax.jit` a
        `RuntimeWarning` says so.

    Raises:
        ValueError, TypeError: as `numpyro_parallel.ssm.hmm.inference.hmm_filter`.
    """
    prepared = prepare(initial_logits, transition_logits, log_likelihoods)
    strategy = resolve_mode(strategy, log_likelihoods)
    paths, valid = _sample_states(rng_key, *prepared, _sample_sizes(sample_shape), strategy)
    warn_if(~valid, f"hmm_sample_states: {IMPOSSIBLE_MESSAGE}.")
    return paths


def _gumbels(rng_key, num_samples: int, num_steps: int, num_states: int, dtype):
    """``(T, S, K)`` standard Gumbel noise, one ``(T, K)`` draw per sample key (the same
    numbers whichever strategy consumes them)."""
    keys = jax.random.split(rng_key, num_samples)
    draws = jax.vmap(lambda k: jax.random.gumbel(k, (num_steps, num_states), dtype))(keys)
    return jnp.moveaxis(draws, 0, 1)


def _paths(paths, sizes):
    """``(T, S)`` paths as ``(*sample_shape, T)``."""
    sample_shape, _ = sizes
    return jnp.moveaxis(paths, 0, -1).reshape(*sample_shape, paths.shape[0])


@partial(jax.jit, static_argnums=(4, 5))
def _sample_states(rng_key, log_initial, log_transition, log_likelihoods, sizes, strategy):
    num_steps, num_states = log_likelihoods.shape
    gumbel = _gumbels(rng_key, sizes[1], num_steps, num_states, log_likelihoods.dtype)
    ok = inputs_ok(log_initial, log_transition, log_likelihoods)
    if isinstance(strategy, Sharded):  # filter and backward sampling in one shard_map
        args = (log_initial, log_transition, log_likelihoods, gumbel, strategy)
        paths, log_evidence = sharded_sample_states(*args)
        return _paths(paths, sizes), ok & jnp.isfinite(log_evidence)
    if uses_elements(strategy):
        _, prefix = forward_scan(log_initial, log_transition, log_likelihoods, strategy)
        log_filtered = jax.nn.log_softmax(prefix.log_matrix[:, 0, :], axis=-1)
        log_evidence = jax.nn.logsumexp(prefix.log_matrix[-1, 0, :]) + prefix.log_scale[-1]
    else:
        block_size = scaled_block_size(strategy)
        filtered, terms, _ = scaled_filter(log_initial, log_transition, log_likelihoods, block_size)
        log_filtered = safe_log(filtered)
        log_evidence = jnp.sum(terms)
    log_transition = per_step(log_transition, num_steps)
    # conditional[t, i, j] = log p(z_t = i | z_{t+1} = j, y_{0:t}) up to a constant in i.
    conditional = log_filtered[:-1, :, None] + log_transition[:-1]

    def one_path(gumbel):
        maps = jnp.argmax(conditional + gumbel[:-1, :, None], axis=1).astype(jnp.int32)
        last = jnp.argmax(log_filtered[-1] + gumbel[-1]).astype(jnp.int32)
        last = jnp.full((1, num_states), last, jnp.int32)
        return _backtrack(jnp.concatenate([maps, last], axis=0), strategy)

    paths = jax.vmap(one_path, in_axes=1, out_axes=1)(gumbel)
    return _paths(paths, sizes), ok & jnp.isfinite(log_evidence)


def hmm_sample_prior_states(
    rng_key: jax.Array,
    initial_logits: jax.Array,
    transition_logits: jax.Array,
    num_steps: int,
    sample_shape: Sequence[int] = (),
    *,
    strategy: StrategyLike = "auto",
) -> jax.Array:
    """State paths from the Markov chain prior, by a forward scan of Gumbel-max index maps.

    Args:
        rng_key: JAX PRNG key.
        initial_logits: ``(K,)`` logits of ``z_0``.
        transition_logits: ``(K, K)`` or ``(num_steps, K, K)`` transition logits.
        num_steps: path length T.
        sample_shape: leading shape of independent draws (an int n means ``(n,)``; entries >= 0).
        strategy: evaluation strategy, as in `numpyro_parallel.ssm.hmm.inference.hmm_filter`.

    Returns:
        ``(*sample_shape, T)`` int32 state paths.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    initial_logits = jnp.asarray(initial_logits)
    if initial_logits.ndim != 1:
        raise ValueError(f"`initial_logits` must have shape (K,); got {initial_logits.shape}.")
    num_states = initial_logits.shape[-1]
    dtype = initial_logits.dtype if jnp.issubdtype(initial_logits.dtype, jnp.floating) else float
    log_likelihoods = jnp.zeros((num_steps, num_states), dtype)
    log_initial, log_transition, _ = prepare(initial_logits, transition_logits, log_likelihoods)
    sizes = _sample_sizes(sample_shape)
    strategy = resolve_mode(strategy, log_likelihoods)
    log_transition = per_step(log_transition, num_steps)
    return _sample_prior(rng_key, log_initial, log_transition, sizes, strategy)


@partial(jax.jit, static_argnums=(3, 4))
def _sample_prior(rng_key, log_initial, log_transition, sizes, strategy):
    num_steps, num_states = log_transition.shape[:2]
    gumbel = _gumbels(rng_key, sizes[1], num_steps, num_states, log_initial.dtype)
    if isinstance(strategy, Sharded):
        return _paths(sharded_sample_prior(log_initial, log_transition, gumbel, strategy), sizes)

    def one_path(gumbel):
        first = jnp.argmax(log_initial + gumbel[0]).astype(jnp.int32)
        first = jnp.full((1, num_states), first, jnp.int32)
        # maps[t][i] = z_{t+1} given z_t = i.
        maps = jnp.argmax(log_transition[:-1] + gumbel[1:, None, :], axis=2).astype(jnp.int32)
        elements = jnp.concatenate([first, maps], axis=0)
        return associative_scan(compose_index_maps, elements, strategy=strategy)[:, 0]

    return _paths(jax.vmap(one_path, in_axes=1, out_axes=1)(gumbel), sizes)
