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

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel._checks import check_positive_int

__all__ = ["affine_recursion", "associative_scan", "default_block_size"]


def _num_steps(elements: Any) -> int:
    leaves = jax.tree_util.tree_leaves(elements)
    if not leaves:
        raise ValueError("`elements` must contain at least one array with a leading time axis.")
    lengths = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(
            "every leaf of `elements` must have the same leading (time) axis length; "
            f"got lengths {sorted(str(n) for n in lengths)}."
        )
    num_steps = lengths.pop()
    if num_steps < 1:
        raise ValueError("`elements` must have a time axis of length T >= 1; got T = 0.")
    return num_steps


def _check_block_size(block_size: Any, num_steps: int) -> int | None:
    if block_size == "auto" and isinstance(block_size, str):
        return default_block_size(num_steps)
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(
            f'`block_size` must be a positive int, None or "auto"; got {block_size!r}.'
        )
    return block_size


def _scan_from(combine, start, elements):
    """``combine(start, e[0]), combine(combine(start, e[0]), e[1]), ...`` with `lax.scan`."""

    def body(carry, element):
        carry = combine(carry, element)
        return carry, carry

    return lax.scan(body, start, elements)[1]


def _sequential_scan(combine, elements):
    first = jax.tree_util.tree_map(lambda x: x[0], elements)
    rest = jax.tree_util.tree_map(lambda x: x[1:], elements)
    out = _scan_from(combine, first, rest)
    return jax.tree_util.tree_map(lambda f, o: jnp.concatenate([f[None], o]), first, out)


def _blocked_scan(combine, elements, num_steps: int, block_size: int):
    """Sequential scans inside blocks (vmapped), a scan over block totals, one fix-up pass."""
    num_blocks = num_steps // block_size
    if num_blocks < 2:
        return _sequential_scan(combine, elements)
    head = jax.tree_util.tree_map(
        lambda x: x[: num_blocks * block_size].reshape(num_blocks, block_size, *x.shape[1:]),
        elements,
    )
    local = jax.vmap(lambda e: _sequential_scan(combine, e))(head)
    totals = jax.tree_util.tree_map(lambda x: x[:-1, -1], local)
    carries = _sequential_scan(combine, totals)  # prefix over blocks 0..num_blocks-2
    fixed = jax.vmap(jax.vmap(combine, (None, 0)), (0, 0))(
        carries, jax.tree_util.tree_map(lambda x: x[1:], local)
    )
    out = jax.tree_util.tree_map(
        lambda a, b: jnp.concatenate([a[:1], b]).reshape(-1, *a.shape[2:]), local, fixed
    )
    remainder = num_steps - num_blocks * block_size
    if remainder:
        tail = jax.tree_util.tree_map(lambda x: x[num_blocks * block_size :], elements)
        start = jax.tree_util.tree_map(lambda x: x[-1], out)
        rest = _scan_from(combine, start, tail)
        out = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), out, rest)
    return out


def associative_scan[Elements](
    combine: Callable[[Elements, Elements], Elements],
    elements: Elements,
    *,
    parallel: bool = True,
    reverse: bool = False,
    block_size: int | str | None = None,
) -> Elements:
    """All prefix (or suffix) combinations of a sequence of elements.

    Three evaluation strategies share one ``combine``:

    - ``parallel=False``: `lax.scan`, T sequential steps;
    - ``parallel=True`` (``block_size=None``): `lax.associative_scan`, O(log T) depth;
    - ``parallel=True, block_size=B``: blocked scan — sequential scans of length B run
      side by side over T/B blocks (vmapped), then a scan over the block totals and one
      parallel fix-up pass. Depth O(B + T/B); fast to compile and the best choice on CPUs,
      where vectorised work, not depth, decides the wall time.

    Args:
        combine: associative operator on two *single* elements (no time axis).
        elements: pytree whose leaves share a leading time axis of length T >= 1.
        parallel: parallel (associative or blocked) scan when True, `lax.scan` otherwise.
        reverse: compute suffix combinations (later element first, see module docstring).
        block_size: block length for the blocked strategy; None for the associative scan;
            ``"auto"`` for `default_block_size` (blocked on CPU, associative elsewhere).

    Returns:
        A pytree like ``elements`` whose entry t is ``e[0] * ... * e[t]`` (forward) or
        ``e[T-1] * ... * e[t]`` (reverse).
    """
    if not callable(combine):
        raise TypeError(f"`combine` must be callable; got {type(combine).__name__}.")
    num_steps = _num_steps(elements)
    block_size = _check_block_size(block_size, num_steps)
    if num_steps == 1:
        return elements
    if reverse:
        # A suffix scan is a prefix scan of the reversed sequence with the same operator.
        flipped = jax.tree_util.tree_map(lambda x: jnp.flip(x, 0), elements)
        out = associative_scan(combine, flipped, parallel=parallel, block_size=block_size)
        return jax.tree_util.tree_map(lambda x: jnp.flip(x, 0), out)
    if not parallel:
        return _sequential_scan(combine, elements)
    if block_size is None:
        return lax.associative_scan(jax.vmap(combine), elements)
    return _blocked_scan(combine, elements, num_steps, block_size)


def default_block_size(num_steps: int) -> int | None:
    """Block size of the blocked strategy for the current backend (None on accelerators).

    On CPU the blocked scan with blocks of about sqrt(T) steps is the fastest parallel
    strategy; on GPU/TPU the O(log T)-depth associative scan is.

    Args:
        num_steps: sequence length T.

    Returns:
        ``max(8, round(sqrt(T)))`` on CPU, None otherwise.

    Raises:
        TypeError, ValueError: ``num_steps`` is not a positive int.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    if jax.default_backend() != "cpu":
        return None
    return max(8, round(math.sqrt(num_steps)))


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
    matrices, offsets = jnp.asarray(matrices), jnp.asarray(offsets)
    initial_state = jnp.asarray(initial_state)
    if offsets.ndim != 2 or offsets.shape[0] < 1:
        raise ValueError(f"`offsets` must have shape (T, d) with T >= 1; got {offsets.shape}.")
    if initial_state.shape != offsets.shape[1:]:
        raise ValueError(
            f"`initial_state` must have shape {offsets.shape[1:]}; got {initial_state.shape}."
        )
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
    matrices = matrices.at[0].set(jnp.zeros_like(matrices[0]))
    _, states = associative_scan(combine, (matrices, offsets), parallel=parallel)
    return states
