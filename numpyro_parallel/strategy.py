"""Evaluation strategies: how a recursion over time is computed, chosen in one place.

Every family in the package (Kalman, HMM, nonlinear Gaussian, affine recursions) writes its
recursion once, as elements and an associative combine (`numpyro_parallel.scan`), and takes a
``strategy=`` argument that decides how the prefix combinations are evaluated — the shape
diffrax uses for ``solver=``:

- `Sequential()`: a `lax.scan`, T steps. The reference every other strategy is tested against.
- `Associative()`: `lax.associative_scan`, O(log T) depth (Blelloch 1990; Särkkä &
  García-Fernández 2021). The fast strategy on GPUs/TPUs.
- `Blocked(block_size=None)`: sequential scans of ``block_size`` steps side by side (vmapped),
  a scan over the block totals and one parallel fix-up pass; depth O(B + T/B). With
  ``block_size=None`` blocks have ``max(8, round(sqrt(T)))`` steps. The fast strategy on CPUs.
- ``"auto"``: `Associative()` on accelerators; on a CPU the family's fastest strategy for the
  shape — `Blocked()` by default, `Sequential()` for Kalman filters with a state of dimension
  4 or more, where the classical square-root recursion beats the element combines (measured
  in ``benchmarks/sts.py``). The device is that of the (concrete) inputs, or the default
  backend under tracing.

Strings are shorthands: ``"sequential"``, ``"associative"``, ``"blocked"``, ``"auto"``.
Strategies are frozen dataclasses (hashable), so they can be static arguments of `jax.jit`.
A family may give a strategy its own implementation (the HMM runs `Blocked` as a blocked
*scaled* recursion); it must agree with `Sequential()` to rounding error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

__all__ = [
    "Associative",
    "Blocked",
    "Sequential",
    "Strategy",
    "StrategyLike",
    "as_strategy",
    "resolve_strategy",
]

_NAMES = ("sequential", "associative", "blocked", "auto")


@dataclass(frozen=True)
class Sequential:
    """Evaluate the recursion with `lax.scan`, one step after another (T steps)."""


@dataclass(frozen=True)
class Associative:
    """Evaluate the recursion with `lax.associative_scan` in O(log T) parallel depth."""


@dataclass(frozen=True)
class Blocked:
    """Blocked scan: sequential scans of ``block_size`` steps run side by side.

    Attributes:
        block_size: steps per block; None for ``max(8, round(sqrt(T)))``.
    """

    block_size: int | None = None

    def __post_init__(self):
        size = self.block_size
        if size is None:
            return
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"`Blocked.block_size` must be a positive int or None; got {size!r}.")
        object.__setattr__(self, "block_size", int(size))

    def size_for(self, num_steps: int) -> int:
        """Block length used for a sequence of ``num_steps`` steps."""
        if self.block_size is not None:
            return self.block_size
        return max(8, round(math.sqrt(num_steps)))


Strategy = Sequential | Associative | Blocked
StrategyLike = Strategy | str


def as_strategy(strategy: Any) -> Strategy | str:
    """Validate ``strategy`` and turn a string shorthand into an instance (``"auto"`` stays).

    Raises:
        TypeError: not a strategy instance or a string.
        ValueError: an unknown string.
    """
    if isinstance(strategy, Sequential | Associative | Blocked):
        return strategy
    if isinstance(strategy, str):
        if strategy == "auto":
            return strategy
        if strategy == "sequential":
            return Sequential()
        if strategy == "associative":
            return Associative()
        if strategy == "blocked":
            return Blocked()
        raise ValueError(
            f"`strategy` must be one of {', '.join(map(repr, _NAMES))}; got {strategy!r}."
        )
    raise TypeError(
        "`strategy` must be Sequential(), Associative(), Blocked(block_size) or one of "
        f"{', '.join(map(repr, _NAMES))}; got {type(strategy).__name__}."
    )


def _platform(arrays) -> str:
    for leaf in jax.tree_util.tree_leaves(arrays):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            try:
                return next(iter(leaf.devices())).platform
            except (AttributeError, StopIteration):  # pragma: no cover - defensive
                break
    return jax.default_backend()


def resolve_strategy(strategy: Any, *inputs: Any, cpu_strategy: Strategy | None = None) -> Strategy:
    """The concrete strategy for ``inputs``: ``"auto"`` becomes ``cpu_strategy`` on CPU inputs.

    Args:
        strategy: a strategy or its string shorthand.
        *inputs: arrays (or pytrees) the recursion runs on; their device decides ``"auto"``
            (the default backend when they are tracers or NumPy arrays).
        cpu_strategy: what ``"auto"`` means on a CPU (a family's choice for its shape);
            `Blocked()` when None. On accelerators ``"auto"`` is always `Associative()`.

    Returns:
        A `Sequential`, `Associative` or `Blocked` instance.
    """
    strategy = as_strategy(strategy)
    if strategy == "auto":
        if _platform(inputs) != "cpu":
            return Associative()
        return Blocked() if cpu_strategy is None else cpu_strategy
    return strategy
