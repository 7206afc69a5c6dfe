"""The driver's whole-trajectory mode: iterate a map ``z <- G(z)`` to its fixed point.

`numpyro_parallel.fixed_point.driver` solves recursions ``x_t = f(x_{t-1})`` one window of
time steps at a time. Some fixed points are not recursions in t: the iterated extended and
sigma-point smoothers (`numpyro_parallel.ssm.nonlinear.iterated_smoother`) linearise the
model around the current trajectory and smooth it again, a map ``G`` from a whole trajectory
to the next (Gauss–Newton for the extended method, Bell 1994; iterated posterior
linearisation for sigma points, García-Fernández et al. 2017), each application already
O(log T) deep. `iterate_map` runs such a map in one bounded `lax.while_loop` with the
driver's stopping rule (`numpyro_parallel.fixed_point.result.within`: ``|z^k - z^{k-1}| <=
atol + rtol |z^k|`` elementwise), its result type (`FixedPointResult`) and its statuses:
``OK``, ``NON_FINITE`` (an iterate became NaN/Inf: the loop stops at once) and
``MAX_ITERATIONS`` (the cap was reached first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel._checks import check_positive_int, check_tolerance, warn_if
from numpyro_parallel.fixed_point.result import (
    MAX_ITERATIONS,
    NON_FINITE,
    OK,
    FixedPointResult,
    all_finite,
    within,
)

__all__ = ["iterate_map"]


def _check_map_fn(map_fn: Callable, initial_state: Any) -> None:
    """Raise unless ``map_fn`` maps ``initial_state`` to a pytree of the same structure, shapes
    and dtypes (checked on shapes only, with `jax.eval_shape`): the loop's carry."""
    if not jax.tree_util.tree_leaves(initial_state):
        raise ValueError("`initial_state` must contain at least one array.")
    out = jax.eval_shape(map_fn, initial_state)
    describe = lambda tree: jax.tree_util.tree_map(lambda x: f"{x.dtype}{list(x.shape)}", tree)
    same = jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(initial_state)
    same = same and all(
        a.shape == b.shape and a.dtype == b.dtype
        for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(initial_state))
    )
    if not same:
        raise ValueError(
            "`map_fn` must return a state of the structure, shapes and dtypes of "
            f"`initial_state`, {describe(initial_state)}; it returns {describe(out)}."
        )


def iterate_map(
    map_fn: Callable[[Any], Any],
    initial_state: Any,
    *,
    atol: float,
    rtol: float,
    max_iterations: int,
    monitor_fn: Callable[[Any], jax.Array] | None = None,
) -> FixedPointResult:
    """Iterate ``state <- map_fn(state)`` until the monitored array stops moving.

    Args:
        map_fn: the map ``G`` on a pytree state (e.g. ``(mean, chol)`` trajectories).
        initial_state: the first iterate ``z^0``.
        atol: absolute tolerance of the stopping rule (a number >= 0).
        rtol: relative tolerance of the stopping rule (a number >= 0).
        max_iterations: cap on applications of ``map_fn`` (>= 1).
        monitor_fn: the array whose change decides convergence (e.g. the mean trajectory);
            default: every floating leaf of the state.

    Returns:
        A `FixedPointResult` with ``states`` the last iterate, ``aux`` None, ``residual`` the
        largest change of the monitored array in the last iteration (NaN when an iterate
        is non-finite), ``num_iterations`` the applications of ``map_fn``, ``fallback``
        False and no sequential or sensitive steps.

    Outside ``jit`` a `RuntimeWarning` reports a non-finite iterate or reaching the cap.
    Works under `jit`, `vmap` and forward-mode differentiation; the loop is a
    `lax.while_loop`, so reverse mode (`jax.grad`) raises.

    Raises:
        ValueError, TypeError: ``max_iterations`` is not an int >= 1; ``atol`` or ``rtol`` is
            not a finite number >= 0; ``map_fn`` or ``monitor_fn`` is not callable; ``map_fn``
            changes the state's structure, shapes or dtypes; ``initial_state`` has no array.
    """
    max_iterations = check_positive_int("max_iterations", max_iterations)
    for name, value in (("atol", atol), ("rtol", rtol)):
        if check_tolerance(name, value) is None:
            raise TypeError(f"`{name}` must be a number >= 0; got None.")
    for name, fn in (("map_fn", map_fn), ("monitor_fn", monitor_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"`{name}` must be callable; got {type(fn).__name__}.")
    initial_state = jax.tree_util.tree_map(jnp.asarray, initial_state)
    _check_map_fn(map_fn, initial_state)
    user_monitor = monitor_fn

    def monitor_fn(state):
        if user_monitor is not None:
            value = jnp.ravel(jnp.asarray(user_monitor(state)))
        else:
            value = jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(state)])
        # The change is compared in floating point (an integer monitor would overflow on inf).
        return value if jnp.issubdtype(value.dtype, jnp.inexact) else value.astype(float)

    start = monitor_fn(initial_state)
    dtype = start.dtype

    def cond(carry):
        i, _, change, done = carry
        return (i < max_iterations) & ~done & ~jnp.isneginf(change)

    def body(carry):
        i, state, _, _ = carry
        new_state = map_fn(state)
        new, old = monitor_fn(new_state), monitor_fn(state)
        change = jnp.max(jnp.abs(new - old))
        done = within(jnp.ravel(new - old)[None], jnp.ravel(new)[None], atol, rtol)[0]
        # A non-finite iterate stops the loop (change -inf as the marker).
        finite = jnp.isfinite(change) & all_finite(new_state)
        return i + 1, new_state, jnp.where(finite, change, -jnp.inf), done & finite

    start_finite = all_finite(initial_state)
    initial_change = jnp.where(start_finite, jnp.asarray(jnp.inf, dtype), -jnp.inf)
    init = (jnp.asarray(0), initial_state, initial_change, jnp.asarray(False))
    num_iterations, state, change, done = lax.while_loop(cond, body, init)
    finite = ~jnp.isneginf(change)
    status = jnp.where(finite, jnp.where(done, OK, MAX_ITERATIONS), NON_FINITE)
    status = status.astype(jnp.int32)
    result = FixedPointResult(
        states=state,
        aux=None,
        status=status,
        converged=status == OK,
        num_iterations=num_iterations,
        residual=jnp.where(finite, change, jnp.nan),
        fallback=jnp.asarray(False),
        num_sequential_steps=jnp.asarray(0),
        num_sensitive_steps=jnp.asarray(0),
        stuck=jnp.asarray(False),
    )
    warn_if(
        result.status == MAX_ITERATIONS,
        f"iterate_map did not converge within `max_iterations` = {max_iterations} "
        "applications of `map_fn` (result.status is MAX_ITERATIONS, result.converged is "
        "False); the last iterate is returned.",
    )
    warn_if(
        result.status == NON_FINITE,
        "iterate_map: an iterate became non-finite (NaN/Inf); the loop stopped there "
        "(result.status is NON_FINITE, result.converged is False).",
    )
    return result
