"""One scan driver for every associative recursion in the package.

A filter, smoother or linear recursion is written once as *elements* (one per time step, a
pytree with a leading time axis) and a *combine* operator acting on **single** elements. The
driver evaluates all prefix (or suffix) combinations either sequentially with `lax.scan` or in
O(log T) parallel depth with `lax.associative_scan` (Blelloch 1990; Särkkä & García-Fernández
2021, "Temporal parallelization of Bayesian smoothers"). Both modes call the same combine, so
they agree to rounding error.

Convention: ``combine(earlier, later)`` for forward scans. For ``reverse=True`` the suffix
``out[t] = combine(combine(e[T-1], e[T-2]) ..., e[t])`` is computed, that is, the *later*
element is the first argument, as in `jax.lax.associative_scan(..., reverse=True)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
from jax import lax

__all__ = ["associative_scan", "affine_recursion"]

Elements = TypeVar("Elements")


def _num_steps(elements: Any) -> int:
    leaves = jax.tree_util.tree_leaves(elements)
    if not leaves:
        raise ValueError("`elements` must contain at least one array with a leading time axis.")
    lengths = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(
            "every leaf of `elements` must have the same leading (time) axis length; "
            f"got lengths {sorted(str(n) for n in lengths)}."
        )
    return lengths.pop()


def associative_scan(
    combine: Callable[[Elements, Elements], Elements],
    elements: Elements,
    *,
    parallel: bool = True,
    reverse: bool = False,
) -> Elements:
    """All prefix (or suffix) combinations of a sequence of elements.

    Args:
        combine: associative operator on two *single* elements (no time axis). It is vmapped
            for the parallel mode.
        elements: pytree whose leaves share a leading time axis of length T >= 1.
        parallel: `lax.associative_scan` (O(log T) depth) when True, `lax.scan` otherwise.
        reverse: compute suffix combinations (later element first, see module docstring).

    Returns:
        A pytree like ``elements`` whose entry t is ``e[0] * ... * e[t]`` (forward) or
        ``e[T-1] * ... * e[t]`` (reverse).
    """
    num_steps = _num_steps(elements)
    if parallel:
        if num_steps == 1:
            return elements
        return lax.associative_scan(jax.vmap(combine), elements, reverse=reverse)

    def body(carry, element):
        carry = combine(carry, element)
        return carry, carry

    if reverse:
        first = jax.tree_util.tree_map(lambda x: x[-1], elements)
        rest = jax.tree_util.tree_map(lambda x: x[:-1], elements)
        _, out = lax.scan(body, first, rest, reverse=True)
        return jax.tree_util.tree_map(
            lambda o, f: jax.numpy.concatenate([o, f[None]], axis=0), out, first
        )
    first = jax.tree_util.tree_map(lambda x: x[0], elements)
    rest = jax.tree_util.tree_map(lambda x: x[1:], elements)
    _, out = lax.scan(body, first, rest)
    return jax.tree_util.tree_map(
        lambda f, o: jax.numpy.concatenate([f[None], o], axis=0), first, out
    )


def _affine_combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a2 @ a1, a2 @ b1 + b2


def _diagonal_affine_combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def affine_recursion(
    matrices: jax.Array,
    offsets: jax.Array,
    initial_state: jax.Array,
    *,
    parallel: bool = True,
    diagonal: bool = False,
) -> jax.Array:
    """Solve ``x_t = A_t x_{t-1} + b_t`` for t = 1..T given ``x_0``.

    This is the linear inner problem of Newton/quasi-Newton fixed-point solvers (DEER) and of
    Gaussian sampling recursions.

    Args:
        matrices: ``(T, d, d)`` transition matrices, or ``(T, d)`` diagonals when
            ``diagonal=True``.
        offsets: ``(T, d)`` offsets b_t.
        initial_state: ``(d,)`` state x_0.
        parallel: associative scan when True, sequential scan otherwise.
        diagonal: treat ``matrices`` as diagonals (elementwise products).

    Returns:
        ``(T, d)`` states x_1..x_T.
    """
    if offsets.ndim != 2:
        raise ValueError(f"`offsets` must have shape (T, d); got {offsets.shape}.")
    expected = offsets.shape if diagonal else (*offsets.shape, offsets.shape[-1])
    if matrices.shape != expected:
        raise ValueError(
            f"`matrices` must have shape {expected} for offsets of shape {offsets.shape} "
            f"(diagonal={diagonal}); got {matrices.shape}."
        )
    if diagonal:
        b0 = matrices[0] * initial_state + offsets[0]
        combine = _diagonal_affine_combine
    else:
        b0 = matrices[0] @ initial_state + offsets[0]
        combine = _affine_combine
    # Fold x_0 into the first element so that the prefix offsets are the states themselves.
    offsets = offsets.at[0].set(b0)
    matrices = matrices.at[0].set(jax.numpy.zeros_like(matrices[0]))
    _, states = associative_scan(combine, (matrices, offsets), parallel=parallel)
    return states
