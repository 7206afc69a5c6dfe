"""Discrete-HMM inference with the time axis split across devices (`Sharded()`): the
log-likelihood, filter, smoother, Viterbi path and posterior and prior path samples, each
inside one `jax.shard_map`, so that the exchange between devices is a few elements per
device whatever T is.

Each device builds the log-space elements of its own chunk (Hassan, Särkkä &
García-Fernández 2021, "Temporal parallelization of inference in hidden Markov models"),
taking the one row it needs from a neighbouring device (`from_adjacent_shard`: the
transition into its first step, or the next device's first likelihoods for the backward
elements), and runs the two-level scan of `numpyro_parallel.scan` (`sharded_prefix`,
forwards or backwards). Backtracking composes index maps the same way; the last step's map
is constant, so the padding after step T - 1 (`run_sharded`) never enters a path, and the
backward elements from step T - 1 on are all-ones matrices, which leave the smoothed
probabilities unchanged. Called by `numpyro_parallel.ssm.hmm.inference` and
`numpyro_parallel.ssm.hmm.paths` after their input checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from numpyro_parallel.scan import from_adjacent_shard, run_sharded, sharded_prefix, shift_in
from numpyro_parallel.ssm.hmm.common import per_step, reverse_sum_product, step_terms
from numpyro_parallel.ssm.hmm.elements import (
    LogMatrix,
    compose_index_maps,
    max_product_combine,
    normalize,
    sum_product_combine,
)
from numpyro_parallel.strategy import Sharded

__all__ = [
    "sharded_filter",
    "sharded_log_likelihood",
    "sharded_sample_prior",
    "sharded_sample_states",
    "sharded_smoother",
    "sharded_viterbi",
]


def _elements(log_initial, transitions, log_likelihoods, steps, strategy: Sharded) -> LogMatrix:
    """This device's forward elements ``A_t`` (`forward_elements`), the transition into its
    first step taken from the previous device (one `ppermute`)."""
    num_states = log_initial.shape[-1]
    before = from_adjacent_shard(transitions[-1], strategy)
    (into,) = shift_in((before,), (transitions,))  # row t: z_{t-1} -> z_t
    matrices = into + log_likelihoods[:, None, :]
    first = jnp.broadcast_to(log_initial + log_likelihoods[0], (num_states, num_states))
    matrices = jnp.where((steps == 0)[:, None, None], first, matrices)
    return jax.vmap(normalize)(matrices, jnp.zeros(steps.shape, matrices.dtype))


def _at_step(values, steps, step: int, strategy: Sharded):
    """Row ``step`` (a global index) of the time-sharded ``values``, on every device (a
    `psum` of one row)."""
    mask = (steps == step).reshape(-1, *([1] * (values.ndim - 1)))
    mine = jnp.sum(jnp.where(mask, values, jnp.zeros_like(values)), axis=0)
    return jax.lax.psum(mine, strategy.axis_name)


def _filter_chunk(log_initial, transitions, log_likelihoods, steps, strategy: Sharded):
    """``(elements, prefix, log_evidence, terms)`` of this device's chunk: the running
    ``log p(y_{0:t})`` and the per-step terms, the value before the chunk from the previous
    device."""
    elements = _elements(log_initial, transitions, log_likelihoods, steps, strategy)
    prefix = sharded_prefix(sum_product_combine, elements, strategy)
    log_evidence = jax.nn.logsumexp(prefix.log_matrix[:, 0, :], axis=-1) + prefix.log_scale
    before = from_adjacent_shard(log_evidence[-1], strategy)
    before = jnp.where(steps[0] == 0, jnp.zeros_like(before), before)
    return elements, prefix, log_evidence, step_terms(log_evidence, before)


def _run(local, log_initial, log_transition, num_steps, per_step_inputs, strategy, out_specs):
    """`run_sharded` of ``local(log_initial, transitions, *per_step_inputs, steps)`` with the
    transitions time-expanded."""
    inputs = (per_step(log_transition, num_steps), *per_step_inputs)
    return run_sharded(local, log_initial, inputs, strategy, out_specs)


def sharded_log_likelihood(log_initial, log_transition, log_likelihoods, strategy: Sharded):
    """``log p(y_{0:T-1})``: the forward scan and the running log-evidence at step T - 1
    (P elements exchanged, gradients included)."""
    num_steps = log_likelihoods.shape[0]

    def local(log_initial, transitions, log_likelihoods, steps):
        chunk = _filter_chunk(log_initial, transitions, log_likelihoods, steps, strategy)
        return (_at_step(chunk[2], steps, num_steps - 1, strategy),)

    args = (log_initial, log_transition, num_steps, (log_likelihoods,), strategy)
    return _run(local, *args, (PartitionSpec(),))[0]


def sharded_filter(log_initial, log_transition, log_likelihoods, strategy: Sharded):
    """``(filtered_probs, log_likelihood_terms)``, both with a leading time axis."""

    def local(log_initial, transitions, log_likelihoods, steps):
        chunk = _filter_chunk(log_initial, transitions, log_likelihoods, steps, strategy)
        _, prefix, _, terms = chunk
        return jax.nn.softmax(prefix.log_matrix[:, 0, :], axis=-1), terms

    spec = PartitionSpec(strategy.axis_name)
    num_steps = log_likelihoods.shape[0]
    args = (log_initial, log_transition, num_steps, (log_likelihoods,), strategy)
    return _run(local, *args, (spec, spec))


def sharded_smoother(log_initial, log_transition, log_likelihoods, strategy: Sharded):
    """``(smoothed_probs, filtered_probs, log_likelihood_terms)``: the forward chunk, the
    backward elements ``A_{t+1}`` (the next device's first element by one `ppermute`;
    all-ones matrices from step T - 1 on) and their suffix scan."""
    num_steps = log_likelihoods.shape[0]

    def local(log_initial, transitions, log_likelihoods, steps):
        chunk = _filter_chunk(log_initial, transitions, log_likelihoods, steps, strategy)
        elements, prefix, _, terms = chunk
        first = jax.tree_util.tree_map(lambda x: x[0], elements)
        after = from_adjacent_shard(first, strategy, reverse=True)
        at_end = steps >= num_steps - 1
        backward = jax.tree_util.tree_map(
            lambda x, a: jnp.where(
                at_end.reshape(-1, *([1] * (x.ndim - 1))), 0.0, jnp.concatenate([x[1:], a[None]])
            ),
            elements,
            after,
        )
        suffix = sharded_prefix(reverse_sum_product, backward, strategy, reverse=True)
        log_marginal = prefix.log_matrix[:, 0, :] + suffix.log_matrix[:, :, 0]
        filtered = jax.nn.softmax(prefix.log_matrix[:, 0, :], axis=-1)
        return jax.nn.softmax(log_marginal, axis=-1), filtered, terms

    spec = PartitionSpec(strategy.axis_name)
    args = (log_initial, log_transition, num_steps, (log_likelihoods,), strategy)
    return _run(local, *args, (spec, spec, spec))


def _set_at_step(maps, step_maps, steps, step: int):
    """``maps`` ``(T_local, ..., K)`` with the row of global ``step`` replaced by that of
    ``step_maps`` (broadcast against ``maps``)."""
    mask = (steps == step).reshape(-1, *([1] * (maps.ndim - 1)))
    return jnp.where(mask, step_maps, maps)


def _constant_maps(scores):
    """Constant index maps ``(..., K)`` to the argmax of ``scores`` ``(..., K)``."""
    best = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    return jnp.broadcast_to(best[..., None], scores.shape)


def _compose(maps, strategy: Sharded, reverse: bool):
    """Paths ``(T_local, ...)`` from index maps ``(T_local, ..., K)`` (one path per middle
    index): their prefix (suffix) composition, read at state 0."""
    compose = lambda m: sharded_prefix(compose_index_maps, m, strategy, reverse=reverse)[:, 0]
    for _ in range(maps.ndim - 2):
        compose = jax.vmap(compose, in_axes=1, out_axes=1)
    return compose(maps)


def sharded_viterbi(log_initial, log_transition, log_likelihoods, strategy: Sharded):
    """``(path, log_joint)``: the max-product forward scan, the argmax pointers of each
    device's own steps (row t of the transitions maps z_t to z_{t+1}: no shift) and their
    backward composition."""
    num_steps = log_likelihoods.shape[0]

    def local(log_initial, transitions, log_likelihoods, steps):
        elements = _elements(log_initial, transitions, log_likelihoods, steps, strategy)
        prefix = sharded_prefix(max_product_combine, elements, strategy)
        delta = prefix.log_matrix[:, 0, :]
        pointers = jnp.argmax(delta[:, :, None] + transitions, axis=1).astype(jnp.int32)
        end = _at_step(delta, steps, num_steps - 1, strategy)
        maps = _set_at_step(pointers, _constant_maps(end), steps, num_steps - 1)
        scale = _at_step(prefix.log_scale, steps, num_steps - 1, strategy)
        return _compose(maps, strategy, reverse=True), jnp.max(end) + scale

    spec = PartitionSpec(strategy.axis_name)
    args = (log_initial, log_transition, num_steps, (log_likelihoods,), strategy)
    return _run(local, *args, (spec, PartitionSpec()))


def sharded_sample_states(log_initial, log_transition, log_likelihoods, gumbel, strategy):
    """``(paths, log_evidence)``: posterior paths ``(T, S)`` from the filter chunk and the
    Gumbel-max backward maps of the noise ``gumbel`` ``(T, S, K)`` (split along time like
    the rest)."""
    num_steps = log_likelihoods.shape[0]

    def local(log_initial, transitions, log_likelihoods, gumbel, steps):
        chunk = _filter_chunk(log_initial, transitions, log_likelihoods, steps, strategy)
        _, prefix, log_evidence, _ = chunk
        log_filtered = jax.nn.log_softmax(prefix.log_matrix[:, 0, :], axis=-1)
        # maps[t, s, j] = argmax_i log p(z_t = i | y_{0:t}) + log P_t[i, j] + g[t, s, i]
        conditional = log_filtered[:, None, :, None] + transitions[:, None]
        maps = jnp.argmax(conditional + gumbel[..., None], axis=2).astype(jnp.int32)
        end = _at_step(log_filtered[:, None] + gumbel, steps, num_steps - 1, strategy)
        maps = _set_at_step(maps, _constant_maps(end), steps, num_steps - 1)
        paths = _compose(maps, strategy, reverse=True)
        return paths, _at_step(log_evidence, steps, num_steps - 1, strategy)

    spec = PartitionSpec(strategy.axis_name)
    args = (log_initial, log_transition, num_steps, (log_likelihoods, gumbel), strategy)
    return _run(local, *args, (spec, PartitionSpec()))


def sharded_sample_prior(log_initial, log_transition, gumbel, strategy: Sharded):
    """Prior paths ``(T, S)``: the forward composition of the Gumbel-max maps
    ``z_t = argmax_j log P_{t-1}[z_{t-1}, j] + g[t, s, j]`` of ``gumbel`` ``(T, S, K)``, the
    transition into each chunk's first step from the previous device."""
    num_steps = gumbel.shape[0]

    def local(log_initial, transitions, gumbel, steps):
        before = from_adjacent_shard(transitions[-1], strategy)
        (into,) = shift_in((before,), (transitions,))  # row t: z_{t-1} -> z_t
        maps = jnp.argmax(into[:, None] + gumbel[:, :, None, :], axis=-1).astype(jnp.int32)
        first = _constant_maps(log_initial[None, None] + gumbel)  # z_0, for every row
        maps = _set_at_step(maps, first, steps, 0)
        return (_compose(maps, strategy, reverse=False),)

    spec = PartitionSpec(strategy.axis_name)
    return _run(local, log_initial, log_transition, num_steps, (gumbel,), strategy, (spec,))[0]
