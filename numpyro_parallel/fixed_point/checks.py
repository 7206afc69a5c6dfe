"""Argument checks and default tolerances of the fixed-point driver.

Concrete invalid arguments raise `ValueError` / `TypeError` naming the argument
(`numpyro_parallel.fixed_point.driver`, `numpyro_parallel.mcmc.run_chain` and the samplers
built on them share these checks).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_positive_int, check_tolerance
from numpyro_parallel.fixed_point.solvers import as_solver
from numpyro_parallel.strategy import as_strategy

__all__ = ["check_inputs", "check_solver_options", "check_step_fn", "default_tolerances"]


def default_tolerances(dtype: Any) -> tuple[float, float]:
    """Default ``(atol, rtol)`` of the stopping rule for a floating dtype.

    Args:
        dtype: dtype of the states.

    Returns:
        ``(1e-10, 1e-10)`` for float64, ``(1e-4, 1e-4)`` for lower precision.

    Raises:
        TypeError: ``dtype`` is not a floating dtype.
    """
    try:
        floating = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        floating = False
    if not floating:
        raise TypeError(f"`dtype` must be a floating dtype; got {dtype!r}.")
    if jnp.finfo(dtype).bits >= 64:
        return 1e-10, 1e-10
    return 1e-4, 1e-4


def check_inputs(initial_state: Any, inputs: Any) -> int:
    """Raise unless ``initial_state`` is a floating (d,) array and ``inputs`` share T >= 1."""
    if not hasattr(initial_state, "ndim") or initial_state.ndim != 1:
        raise ValueError(
            f"`initial_state` must be a 1-D array of shape (d,); got {jnp.shape(initial_state)}."
        )
    if not jnp.issubdtype(initial_state.dtype, jnp.inexact):
        raise TypeError(f"`initial_state` must be floating point; got {initial_state.dtype}.")
    leaves = jax.tree_util.tree_leaves(inputs)
    if not leaves or any(jnp.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError("`inputs` must be a pytree of arrays with a leading time axis (T, ...).")
    lengths = {leaf.shape[0] for leaf in leaves}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"`inputs` leaves must share a leading axis T >= 1; got {lengths}.")
    return lengths.pop()


def check_step_fn(fn: Any, initial_state: jax.Array, inputs: Any) -> None:
    """Raise unless ``fn(x, input) -> (x_next, aux)`` maps a state of ``initial_state``'s
    shape to one of the same shape (checked on shapes only, with `jax.eval_shape`)."""
    if not callable(fn):
        raise TypeError(
            f"`fn` must be callable as fn(x, input) -> (x_next, aux); got {type(fn).__name__}."
        )
    first = jax.tree_util.tree_map(lambda leaf: leaf[0], inputs)
    out = jax.eval_shape(fn, initial_state, first)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(
            "`fn` must return a pair (x_next, aux); wrap a bare step as "
            "`lambda x, u: (step(x, u), None)`."
        )
    shape = getattr(out[0], "shape", None)
    if shape != initial_state.shape:
        raise ValueError(
            f"`fn` must return a next state of the shape of `initial_state`, "
            f"{initial_state.shape}; it returns {shape}."
        )


def check_solver_options(
    solver: Any, strategy: Any, atol: Any, rtol: Any, max_iterations: Any, window: Any = None
) -> Any:
    """Raise a clear error for an invalid solver, strategy or solver setting.

    Called by `solve_recursion` and, at construction, by the samplers built on it.

    Returns:
        The solver instance (a string shorthand resolved).
    """
    as_strategy(strategy)
    check_tolerance("atol", atol)
    check_tolerance("rtol", rtol)
    if max_iterations is not None:
        check_positive_int("max_iterations", max_iterations)
    if window is not None:
        check_positive_int("window", window)
    return as_solver(solver)
