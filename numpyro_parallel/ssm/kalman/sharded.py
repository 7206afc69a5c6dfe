"""The Kalman filter, smoother and state sampler with the time axis split across devices
(`Sharded()`), each inside one `jax.shard_map`, so that the exchange between devices is a
few elements per device whatever T is: the two-level distributed scan of
`numpyro_parallel.scan` (`sharded_prefix`, `prefix_before_shard`), with the time shifts at
chunk edges taken from the neighbouring device (`from_adjacent_shard`).

References: Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers"
(the elements and their combine); Blelloch (1990), "Prefix sums and their applications"
(the two-level scan).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from numpyro_parallel.scan import (
    affine_combine,
    from_adjacent_shard,
    prefix_before_shard,
    reduce_elements,
    run_sharded,
    sharded_prefix,
    shift_in,
)
from numpyro_parallel.ssm.kalman.elements import (
    SmootherElement,
    filter_combine,
    filter_prepare,
    smoother_combine,
    smoother_prepare,
)
from numpyro_parallel.ssm.kalman.recursions import (
    mask_missing,
    predictive_terms,
    sequential_filter,
    terms_from_innovations,
)
from numpyro_parallel.strategy import Sequential, Sharded

__all__ = ["sharded_filter", "sharded_sample_states", "sharded_smoother"]


def _filter_chunk(prior, transitions, observations, steps, *, num_steps, strategy: Sharded):
    """Inside the `shard_map` of `sharded_filter`: this device's filtered ``(mean, chol)``,
    predictive terms and the total log-likelihood (see `sharded_filter`)."""
    axis = strategy.axis_name
    index = jax.lax.axis_index(axis)
    last = from_adjacent_shard(tuple(x[-1] for x in transitions), strategy)
    before = tuple(jnp.where(index == 0, p, b) for p, b in zip(prior, last, strict=True))
    H, d, chol_R, y, num_missing = mask_missing(*observations)
    inputs = (*shift_in(before, transitions), H, d, chol_R, y)
    elements = jax.vmap(filter_prepare)(*inputs)
    if isinstance(strategy.inner, Sequential):  # fold, then filter from the start
        total = reduce_elements(filter_combine, elements)
        carry = prefix_before_shard(filter_combine, total, strategy)
        out = sequential_filter(*inputs, start=(carry.b, carry.U))
        mean, chol, residual, innovation_chol = out
        terms = terms_from_innovations(residual, innovation_chol, num_missing)
    else:
        filtered = sharded_prefix(filter_combine, elements, strategy)
        mean, chol = filtered.b, filtered.U
        before = from_adjacent_shard((mean[-1], chol[-1]), strategy)
        terms = predictive_terms(inputs, num_missing, (mean, chol), before)
    total = jax.lax.psum(jnp.sum(jnp.where(steps < num_steps, terms, 0.0)), axis)
    return mean, chol, terms, total


def sharded_filter(prior, transitions, observations, strategy: Sharded):
    """The whole filter inside one `shard_map`: each device masks its missing values, prepares
    and scans its chunk (`sharded_prefix`) and computes its predictive terms, taking the
    filtered state before its chunk from the previous device (one `ppermute`); the
    log-likelihood is one `psum`. Communication: P filtering elements and one state per
    device, whatever T is.

    With a `Blocked` inner strategy (what ``"auto"`` gives on CPU devices for d < 4) the
    device's carry enters the blocked scan's own fix-up pass (`sharded_prefix`): the work of
    the one-device blocked filter, vectorised over blocks. With `Sequential` (``"auto"`` on
    CPU devices for d >= 4) each device instead reduces its chunk to one element (a fold: one
    combine per step), takes the prefix of the totals before it and runs the sequential
    square-root filter (`filter_step`) over its chunk from there: about one combine and one
    triangularisation per step. On accelerators (`Associative` inner) the chunk is scanned
    in O(log T) depth.

    Args:
        prior: ``(0, m0, P0 factor)``, the "transition" into step 0.
        transitions: ``(F, c, Q factor)`` per step (row t maps x_t to x_{t+1}); shifted by
            one step inside, the row before each chunk taken from the previous device.
        observations: ``(H, d, chol_R, y)`` before masking.
        strategy: the `Sharded` strategy.

    Returns:
        ``(mean, chol, terms, log_likelihood)``.
    """
    local = partial(_filter_chunk, num_steps=observations[-1].shape[0], strategy=strategy)
    spec = PartitionSpec(strategy.axis_name)
    out_specs = (spec, spec, spec, PartitionSpec())
    return run_sharded(local, prior, (transitions, observations), strategy, out_specs)


def _smoother_elements(prior, transitions, observations, steps, *, num_steps, strategy):
    """Inside a `shard_map`: the filter chunk, then the smoothing elements of this device's
    own steps (row t of the transitions maps x_t to x_{t+1}: no shift); the last step's
    element has ``E = 0``, so that nothing after it, the padding included, enters a suffix."""
    mean, chol, _, _ = _filter_chunk(
        prior, transitions, observations, steps, num_steps=num_steps, strategy=strategy
    )
    elements = jax.vmap(smoother_prepare)(*transitions, mean, chol)
    last = SmootherElement(jnp.zeros_like(chol), mean, chol)
    at_end = (steps == num_steps - 1).reshape(-1, 1, 1)
    return SmootherElement(
        jnp.where(at_end, last.E, elements.E),
        jnp.where(at_end[..., 0], last.g, elements.g),
        jnp.where(at_end, last.L, elements.L),
    )


def sharded_smoother(prior, transitions, observations, strategy: Sharded):
    """The filter and the RTS smoother inside one `shard_map` (arguments as
    `sharded_filter`): each device's smoothing elements, combined by the suffix scan
    ``sharded_prefix(..., reverse=True)``. Communication: 2P elements and one state per
    device, whatever T is.

    Returns:
        ``(mean, chol)`` of the smoothing distributions.
    """
    num_steps = observations[-1].shape[0]

    def local(prior, transitions, observations, steps):
        elements = _smoother_elements(
            prior, transitions, observations, steps, num_steps=num_steps, strategy=strategy
        )
        smoothed = sharded_prefix(smoother_combine, elements, strategy, reverse=True)
        return smoothed.g, smoothed.L

    spec = PartitionSpec(strategy.axis_name)
    return run_sharded(local, prior, (transitions, observations), strategy, (spec, spec))


def sharded_sample_states(prior, transitions, observations, noise, strategy: Sharded):
    """Forward-filter backward-sample inside one `shard_map` (arguments as `sharded_filter`;
    ``noise`` is ``(T, d, S)`` standard normal draws, split along time like the rest): the
    smoothing elements as in `sharded_smoother`, then the backward affine recursion
    ``x_t = E_t x_{t+1} + g_t + L_t eps_t`` for all S draws at once (the offsets as
    ``(d, S)`` matrices, so the products of the E's are shared) by the suffix scan.
    Communication: P filtering elements, P affine maps and one state per device.

    Returns:
        ``(T, d, S)`` state draws.
    """
    num_steps = observations[-1].shape[0]

    def local(prior, transitions, observations, noise, steps):
        elements = _smoother_elements(
            prior, transitions, observations, steps, num_steps=num_steps, strategy=strategy
        )
        offsets = elements.g[..., None] + elements.L @ noise
        maps = (elements.E, offsets)
        return (sharded_prefix(affine_combine, maps, strategy, reverse=True)[1],)

    spec = PartitionSpec(strategy.axis_name)
    per_step = (transitions, observations, noise)
    (states,) = run_sharded(local, prior, per_step, strategy, (spec,))
    return states
