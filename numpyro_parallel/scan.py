"""One scan driver for every associative recursion in the package.

A filter, smoother or linear recursion is written once as *elements* (one per time step, a
pytree with a leading time axis) and a *combine* operator acting on **single** elements. The
driver evaluates all prefix (or suffix) combinations with the strategy the caller picks
(`numpyro_parallel.strategy`): sequentially with `lax.scan`, in O(log T) parallel depth with
`lax.associative_scan` (Blelloch 1990; Särkkä & García-Fernández 2021, "Temporal
parallelization of Bayesian smoothers") or blocked. Every strategy calls the same combine, so
they agree to rounding error.

Convention: ``combine(earlier, later)`` for forward scans. For ``reverse=True`` the suffix
``out[t] = combine(combine(e[T-1], e[T-2]) ..., e[t])`` is computed, that is, the *later*
element is the first argument, as in `jax.lax.associative_scan(..., reverse=True)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec

from numpyro_parallel._checks import check_bool
from numpyro_parallel.strategy import (
    Associative,
    Blocked,
    Sequential,
    Sharded,
    StrategyLike,
    resolve_strategy,
)

# `sharded_prefix`, `prefix_before_shard`, `reduce_elements`, `from_adjacent_shard`,
# `shift_in`, `pad_time`, `shard_time`, `run_sharded` and `InShard` are the building blocks of
# the families' `Sharded()` paths (used inside the package, not public API).
__all__ = ["affine_recursion", "associative_scan"]


@dataclass(frozen=True)
class InShard:
    """The strategy of code already running inside `jax.shard_map` over
    ``sharded.axis_name``: `associative_scan` and `affine_recursion` take this device's chunk
    of the elements and return its chunk of the global prefixes (`sharded_prefix`). Lets
    code written for any strategy (the fixed-point solvers) run unchanged inside one
    ``shard_map``. The series must be padded at its end for forward scans and at its start
    for reverse ones (`pad_time`), so that global row 0 (row T - 1) is the first row of the
    first device (the last row of the last device)."""

    sharded: Sharded


def _num_steps(elements: Any) -> int:
    leaves = jax.tree_util.tree_leaves(elements)
    if not leaves:
        raise ValueError("`elements` must contain at least one array with a leading time axis.")
    if any(jnp.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError(
            "every leaf of `elements` must be an array with a leading time axis (T, ...); "
            "got a scalar leaf (pass the sequence as one array, not a list of numbers)."
        )
    lengths = {jnp.shape(leaf)[0] for leaf in leaves}
    if len(lengths) != 1:
        raise ValueError(
            "every leaf of `elements` must have the same leading (time) axis length; "
            f"got lengths {sorted(str(n) for n in lengths)}."
        )
    num_steps = lengths.pop()
    if num_steps < 1:
        raise ValueError("`elements` must have a time axis of length T >= 1; got T = 0.")
    return num_steps


def _check_combine(combine: Callable, elements: Any) -> None:
    """Raise unless ``combine`` maps two single elements to one of the same pytree structure
    and shapes (checked on shapes only, with `jax.eval_shape`; dtypes may promote)."""
    single = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(jnp.shape(x)[1:], jnp.result_type(x)), elements
    )
    out = jax.eval_shape(combine, single, single)
    want, got = jax.tree_util.tree_structure(single), jax.tree_util.tree_structure(out)
    describe = lambda tree: jax.tree_util.tree_map(lambda x: f"{x.dtype}{list(x.shape)}", tree)
    if want != got or any(
        jnp.shape(a) != jnp.shape(b)
        for a, b in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(out))
    ):
        raise ValueError(
            "`combine` must map two single elements (the leaves of `elements` without their "
            "time axis) to one element of the same structure and shapes; for "
            f"elements {describe(single)} it returns {describe(out)}."
        )


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


def _block_scans(combine, elements, num_steps: int, block_size: int):
    """The first phase of the blocked scan: ``(local, tail)``, the prefixes inside each of
    the T // B blocks, scanned side by side (vmapped), and the remaining elements."""
    num_blocks = num_steps // block_size
    head = jax.tree_util.tree_map(
        lambda x: x[: num_blocks * block_size].reshape(num_blocks, block_size, *x.shape[1:]),
        elements,
    )
    local = jax.vmap(lambda e: _sequential_scan(combine, e))(head)
    tail = jax.tree_util.tree_map(lambda x: x[num_blocks * block_size :], elements)
    return local, tail


def _blocked_fixup(combine, local, tail, start=None):
    """The second phase: a scan over the block totals and one fix-up pass, then the
    remaining elements. With ``start = (carry, use)`` every prefix is combined after
    ``carry`` where the traced bool ``use`` holds (a device's chunk after the ones before it)."""
    totals = jax.tree_util.tree_map(lambda x: x[:-1, -1], local)
    carries = _sequential_scan(combine, totals)  # prefix over blocks 0..num_blocks-2
    first = jax.tree_util.tree_map(lambda x: x[0], local)
    if start is not None:
        carry, use = start
        after = jax.vmap(combine, (None, 0))
        pick = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(use, x, y), a, b)
        carries = pick(after(carry, carries), carries)
        first = pick(after(carry, first), first)
    fixed = jax.vmap(jax.vmap(combine, (None, 0)), (0, 0))(
        carries, jax.tree_util.tree_map(lambda x: x[1:], local)
    )
    out = jax.tree_util.tree_map(
        lambda a, b: jnp.concatenate([a[None], b]).reshape(-1, *a.shape[1:]), first, fixed
    )
    if jax.tree_util.tree_leaves(tail)[0].shape[0]:
        last = jax.tree_util.tree_map(lambda x: x[-1], out)
        rest = _scan_from(combine, last, tail)
        out = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), out, rest)
    return out


def _blocked_scan(combine, elements, num_steps: int, block_size: int):
    """Sequential scans inside blocks (vmapped), a scan over block totals, one fix-up pass."""
    if num_steps // block_size < 2:
        return _sequential_scan(combine, elements)
    return _blocked_fixup(combine, *_block_scans(combine, elements, num_steps, block_size))


def reduce_elements(combine, elements):
    """The combination of all ``elements`` (the last prefix alone) by a sequential fold: one
    combine per element and no stored prefixes. For the per-device totals of sharded scans."""
    first = jax.tree_util.tree_map(lambda x: x[0], elements)
    rest = jax.tree_util.tree_map(lambda x: x[1:], elements)
    return lax.scan(lambda carry, e: (combine(carry, e), None), first, rest)[0]


def prefix_before_shard(combine, total, strategy: Sharded, reverse: bool = False):
    """Inside `jax.shard_map`: the combination of every device's ``total`` before this one
    (with ``reverse``: after it, later first), by one `lax.all_gather` of P elements, whatever
    T is. On the first (last) device its own ``total``: callers ignore it there."""
    axis, num_shards = strategy.axis_name, strategy.num_shards
    totals = jax.tree_util.tree_map(lambda x: lax.all_gather(x, axis), total)
    if reverse:  # a suffix over devices is a prefix over the devices in reverse order
        totals = jax.tree_util.tree_map(lambda x: jnp.flip(x, 0), totals)
    carries = _sequential_scan(combine, totals) if num_shards > 1 else totals
    index = lax.axis_index(axis)
    # carries[k] combines the first k + 1 devices in scan order; this device is number
    # `position` in that order, so the ones before it are k = position - 1.
    position = num_shards - 1 - index if reverse else index
    return jax.tree_util.tree_map(lambda x: x[jnp.maximum(position - 1, 0)], carries)


def sharded_prefix(combine, local_elements, strategy: Sharded, reverse: bool = False):
    """Inside `jax.shard_map` over ``strategy.axis_name``: every global prefix of the local
    chunk. An ``inner`` scan of the chunk, one `lax.all_gather` of the per-device totals
    (P elements, whatever T is), the prefix of the totals before this device, a local fix-up.
    With a `Blocked` inner strategy the device's carry goes into the blocked scan's own
    fix-up pass (no second pass): the work of the one-device blocked scan.

    With ``reverse`` the suffixes (later elements first), with the chunks left where they
    are: a local reverse scan and the totals of the devices after this one. (A global flip
    would send every chunk to the mirror device: an exchange of the whole series.)
    """
    index = lax.axis_index(strategy.axis_name)
    first = index == (strategy.num_shards - 1 if reverse else 0)  # nothing comes before it
    inner, num_steps = strategy.inner, _num_steps(local_elements)
    block_size = inner.size_for(num_steps) if isinstance(inner, Blocked) else num_steps
    if not reverse and num_steps // block_size >= 2:
        local, tail = _block_scans(combine, local_elements, num_steps, block_size)
        totals = jax.tree_util.tree_map(lambda x: x[:, -1], local)
        joined = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), totals, tail)
        carry = prefix_before_shard(combine, reduce_elements(combine, joined), strategy)
        return _blocked_fixup(combine, local, tail, start=(carry, ~first))
    local = associative_scan(combine, local_elements, strategy=inner, reverse=reverse)
    total = jax.tree_util.tree_map(lambda x: x[0 if reverse else -1], local)
    carry = prefix_before_shard(combine, total, strategy, reverse=reverse)
    fixed = jax.vmap(combine, (None, 0))(carry, local)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(first, a, b), local, fixed)


def from_adjacent_shard(x: Any, strategy: Sharded, reverse: bool = False) -> Any:
    """Inside `jax.shard_map`: the previous device's ``x`` (with ``reverse`` the next
    device's; zeros on the first (last) device), one `lax.ppermute` of a single element —
    for the time shifts ``x[t-1]`` (``x[t+1]``) at chunk edges."""
    pairs = [(i, i + 1) for i in range(strategy.num_shards - 1)]
    if reverse:
        pairs = [(j, i) for i, j in pairs]
    return jax.tree_util.tree_map(lambda a: lax.ppermute(a, strategy.axis_name, pairs), x)


def pad_time(tree: Any, num_steps: int, num_shards: int, front: bool = False) -> Any:
    """Pad the time axis to a multiple of ``num_shards`` with copies of the last entry (no
    prefix up to T - 1 depends on them; drop them from the outputs), or with ``front`` with
    copies of the first entry before it (for suffix scans: no suffix from step 0 on depends
    on them).

    One gather with constant indices rather than a concatenation with a repeated edge row:
    XLA's sharding propagation splits that one-row slice along time and then replicates it
    with an "Involuntary full rematerialization" warning for every padded input."""
    pad = -num_steps % num_shards
    if not pad:
        return tree
    steps = np.arange(num_steps + pad)
    rows = np.maximum(steps - pad, 0) if front else np.minimum(steps, num_steps - 1)
    return jax.tree_util.tree_map(lambda x: x[rows], tree)


def shift_in(first, rows):
    """Every array of ``rows`` shifted one step later in time: row t is ``rows[t - 1]`` and
    row 0 is the matching entry of ``first`` (the prior for transitions into each step, the
    previous chunk's last row on a device, the state before the first filtered one)."""
    return tuple(jnp.concatenate([f[None], x[:-1]]) for f, x in zip(first, rows, strict=True))


def run_sharded(local: Callable, replicated: Any, per_step: tuple, strategy: Sharded, out_specs):
    """``local(replicated, *per_step, steps)`` in one `shard_map`: the ``per_step`` pytrees
    padded at the end to a multiple of the device count (`pad_time`) and split along time,
    ``replicated`` on every device, ``steps`` each local step's global index. Outputs whose
    spec in the tuple ``out_specs`` is the time axis are cut back to T."""
    num_steps = jax.tree_util.tree_leaves(per_step)[0].shape[0]
    steps = jnp.arange(num_steps + (-num_steps % strategy.num_shards))
    spec = PartitionSpec(strategy.axis_name)
    in_specs = (PartitionSpec(), *(spec,) * len(per_step), spec)
    run = shard_time(local, strategy, out_specs, in_specs=in_specs)
    out = run(replicated, *pad_time(per_step, num_steps, strategy.num_shards), steps)
    cut = lambda tree: jax.tree_util.tree_map(lambda x: x[:num_steps], tree)
    return tuple(cut(x) if s == spec else x for x, s in zip(out, out_specs, strict=True))


def shard_time(fn: Callable, strategy: Sharded, out_specs: Any, in_specs: Any = None) -> Callable:
    """`jax.shard_map` of ``fn`` over ``strategy``'s mesh, every input split along time
    unless ``in_specs`` says otherwise.

    ``check_vma=False``: combines start loops from constants (e.g. the zero factor of `tria`)
    that the varying-axes type check would reject.
    """
    if in_specs is None:
        in_specs = PartitionSpec(strategy.axis_name)
    return jax.shard_map(
        fn, mesh=strategy.resolved_mesh(), in_specs=in_specs, out_specs=out_specs,
        check_vma=False,
    )  # fmt: skip


def _sharded_scan(combine, elements, num_steps: int, strategy: Sharded, reverse: bool = False):
    """Two-level scan over the devices of ``strategy.mesh`` (`sharded_prefix`; with
    ``reverse`` padded in front, each chunk stays on its device)."""
    elements = pad_time(elements, num_steps, strategy.num_shards, front=reverse)
    spec = PartitionSpec(strategy.axis_name)
    scan = shard_time(lambda e: sharded_prefix(combine, e, strategy, reverse), strategy, spec)
    out = scan(elements)
    start = -num_steps % strategy.num_shards if reverse else 0
    return jax.tree_util.tree_map(lambda x: x[start : start + num_steps], out)


def associative_scan[Elements](
    combine: Callable[[Elements, Elements], Elements],
    elements: Elements,
    *,
    strategy: StrategyLike = "auto",
    reverse: bool = False,
) -> Elements:
    """All prefix (or suffix) combinations of a sequence of elements.

    Every strategy of `numpyro_parallel.strategy` calls the same ``combine``:

    - `Sequential()`: `lax.scan`, T sequential steps;
    - `Associative()`: `lax.associative_scan`, O(log T) depth;
    - `Blocked(block_size)`: sequential scans of length B run side by side over T/B blocks
      (vmapped), then a scan over the block totals and one parallel fix-up pass. Depth
      O(B + T/B); fast to compile and the best choice on CPUs, where vectorised work, not
      depth, decides the wall time.
    - `Sharded(mesh, axis_name, inner)`: the time axis split across devices (`jax.shard_map`):
      an ``inner`` scan per device, one `lax.all_gather` of the P per-device totals, and a
      local fix-up with the prefix of the totals before each device.

    Args:
        combine: associative operator on two *single* elements (no time axis).
        elements: pytree whose leaves share a leading time axis of length T >= 1.
        strategy: a strategy or its string shorthand; ``"auto"`` is `Blocked()` on CPU inputs
            and `Associative()` on accelerators.
        reverse: compute suffix combinations (later element first, see module docstring).

    Returns:
        A pytree like ``elements`` whose entry t is ``e[0] * ... * e[t]`` (forward) or
        ``e[T-1] * ... * e[t]`` (reverse).

    Raises:
        TypeError: ``combine`` not callable, ``strategy`` not a strategy, ``reverse`` not a
            bool.
        ValueError: leaves without a time axis or with different or zero time lengths;
            ``combine`` returning an element of another structure or shape; an unknown
            strategy name.

    ``combine`` must be associative; that cannot be checked, and a non-associative one gives
    different results under different strategies (`Sequential()` is the left fold).
    """
    if not callable(combine):
        raise TypeError(f"`combine` must be callable; got {type(combine).__name__}.")
    reverse = check_bool("reverse", reverse)
    num_steps = _num_steps(elements)
    _check_combine(combine, elements)
    if isinstance(strategy, InShard):
        return sharded_prefix(combine, elements, strategy.sharded, reverse=reverse)
    strategy = resolve_strategy(strategy, elements)
    if num_steps == 1 and not isinstance(strategy, Sharded):
        return elements
    if reverse and isinstance(strategy, Sharded):
        return _sharded_scan(combine, elements, num_steps, strategy, reverse=True)
    if reverse:
        # A suffix scan is a prefix scan of the reversed sequence with the same operator.
        flipped = jax.tree_util.tree_map(lambda x: jnp.flip(x, 0), elements)
        out = associative_scan(combine, flipped, strategy=strategy)
        return jax.tree_util.tree_map(lambda x: jnp.flip(x, 0), out)
    if isinstance(strategy, Sequential):
        return _sequential_scan(combine, elements)
    if isinstance(strategy, Associative):
        return lax.associative_scan(jax.vmap(combine), elements)
    if isinstance(strategy, Sharded):
        return _sharded_scan(combine, elements, num_steps, strategy)
    return _blocked_scan(combine, elements, num_steps, strategy.size_for(num_steps))


def affine_combine(earlier, later):
    """Compose two affine maps ``x -> A x + b``: ``earlier`` first, then ``later``."""
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
    strategy: StrategyLike = "auto",
    diagonal: bool = False,
    reverse: bool = False,
) -> jax.Array:
    """Solve ``x_t = A_t x_{t-1} + b_t`` for t = 1..T given ``x_0`` (or backwards in time).

    This is the linear inner problem of Newton/quasi-Newton fixed-point solvers (DEER) and of
    Gaussian sampling recursions (the backward pass of forward-filter backward-sample).

    Args:
        matrices: ``(T, d, d)`` transition matrices, or ``(T, d)`` diagonals when
            ``diagonal=True``.
        offsets: ``(T, d)`` offsets b_t.
        initial_state: ``(d,)`` state x_0.
        strategy: evaluation strategy (`numpyro_parallel.strategy`).
        diagonal: treat ``matrices`` as diagonals (elementwise products).
        reverse: run backwards: row t of the inputs gives ``x_t = A_t x_{t+1} + b_t`` for
            t = T-1..0, with ``initial_state`` the state after the last row.

    Returns:
        ``(T, d)`` states: x_1..x_T, or with ``reverse=True`` x_0..x_{T-1} in time order.

    Raises:
        ValueError: inconsistent shapes, T = 0, an unknown strategy name.
        TypeError: ``diagonal`` or ``reverse`` not a bool.

    The three arrays are computed in their common dtype (``jnp.result_type``), so an integer
    array next to floating ones is promoted rather than truncating the states.
    """
    diagonal = check_bool("diagonal", diagonal)
    reverse = check_bool("reverse", reverse)
    arrays = [jnp.asarray(x) for x in (matrices, offsets, initial_state)]
    dtype = jnp.result_type(*arrays)
    matrices, offsets, initial_state = (x.astype(dtype) for x in arrays)
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
    combine = _diagonal_affine_combine if diagonal else affine_combine
    apply = (lambda a, x: a * x) if diagonal else (lambda a, x: a @ x)
    # Fold x_0 into the first element applied (the last row with ``reverse``) so that the
    # prefix (suffix) offsets are the states themselves. A suffix of affine maps applies the
    # later row first, which is the first argument of the reverse driver: the same combine.
    # Inside a `shard_map` (`InShard`) only the device holding global row 0 (the last row)
    # folds; the others' first rows are the middle of the series.
    first = -1 if reverse else 0
    fold = True
    if isinstance(strategy, InShard):
        edge = strategy.sharded.num_shards - 1 if reverse else 0
        fold = lax.axis_index(strategy.sharded.axis_name) == edge
    folded = apply(matrices[first], initial_state) + offsets[first]
    offsets = offsets.at[first].set(jnp.where(fold, folded, offsets[first]))
    matrices = matrices.at[first].set(jnp.where(fold, 0.0, matrices[first]))
    _, states = associative_scan(combine, (matrices, offsets), strategy=strategy, reverse=reverse)
    return states
