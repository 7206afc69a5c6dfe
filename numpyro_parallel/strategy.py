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
  shape — `Blocked()` by default, `Sequential()` for HMMs (the scaled recursion) and for
  Kalman filters with a state of dimension 4 or more, where the classical square-root
  recursion beats the element combines, and ``Sequential(square_root=False)`` for Kalman
  log-likelihoods in float64 (the covariance-form filter; measured in ``benchmarks/sts.py``
  and ``benchmarks/suite.py``). The device is that of the (concrete) inputs, or the default
  backend under tracing.
- `Sharded(mesh=None, axis_name="time", inner="auto")`: the time axis split across the
  devices of a `jax.sharding.Mesh` (all devices by default): each device scans its contiguous
  chunk with ``inner``, the per-device totals (one element each) are exchanged with one
  `lax.all_gather`, and each device fixes up its chunk with the prefix of the totals before
  it — the two-level distributed scan, with communication independent of T. Runs with
  `jax.shard_map`, so it works under `jit`, `grad` and `vmap` and, after
  `jax.distributed.initialize`, across hosts. Never chosen by ``"auto"``.

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
    "Sharded",
    "Strategy",
    "StrategyLike",
    "as_strategy",
    "resolve_strategy",
]

_NAMES = ("sequential", "associative", "blocked", "auto")


@dataclass(frozen=True)
class Sequential:
    """Evaluate the recursion with `lax.scan`, one step after another (T steps).

    Attributes:
        square_root: Kalman log-likelihoods only (other families and Kalman filtering,
            smoothing and sampling results ignore it). True: the square-root filter, one
            triangularisation per step. False: the covariance-form filter, about twice as fast
            on CPUs and as accurate in float64 for well-posed models, less robust for
            ill-conditioned ones and in float32; ``"auto"`` picks it for Kalman
            log-likelihoods on CPUs in float64.
    """

    square_root: bool = True

    def __post_init__(self):
        if not isinstance(self.square_root, bool | np.bool_):
            raise TypeError(
                f"`Sequential.square_root` must be a bool; got {type(self.square_root).__name__}."
            )
        object.__setattr__(self, "square_root", bool(self.square_root))


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


@dataclass(frozen=True)
class Sharded:
    """The time axis split across devices: chunk scans, one all-gather, a local fix-up.

    Attributes:
        mesh: a `jax.sharding.Mesh` with an axis ``axis_name``; None for a one-axis mesh over
            every device of the default backend (`jax.devices()`, all hosts' devices after
            `jax.distributed.initialize`).
        axis_name: the mesh axis the time steps are split over; other axes of ``mesh``
            replicate the work.
        inner: strategy of each device's chunk (not `Sharded`); ``"auto"`` resolves on the
            devices' platform.

    The series is padded to a multiple of the device count with copies of its last element
    (prefixes never depend on later elements, so the padding does not change the result) and
    the padding is dropped; T smaller than the device count works.
    """

    mesh: Any = None
    axis_name: str = "time"
    inner: Any = "auto"

    def __post_init__(self):
        if self.mesh is not None and not isinstance(self.mesh, jax.sharding.Mesh):
            raise TypeError(
                "`Sharded.mesh` must be a jax.sharding.Mesh or None; "
                f"got {type(self.mesh).__name__}."
            )
        if not isinstance(self.axis_name, str):
            raise TypeError(
                f"`Sharded.axis_name` must be a str; got {type(self.axis_name).__name__}."
            )
        if self.mesh is not None and self.axis_name not in self.mesh.axis_names:
            raise ValueError(
                f"`Sharded.axis_name` {self.axis_name!r} is not an axis of `Sharded.mesh` "
                f"(axes {self.mesh.axis_names})."
            )
        inner = as_strategy(self.inner)
        if isinstance(inner, Sharded):
            raise ValueError("`Sharded.inner` must be a single-device strategy, not Sharded().")
        object.__setattr__(self, "inner", inner)

    def resolved_mesh(self) -> jax.sharding.Mesh:
        """``mesh`` (or a one-axis mesh named ``axis_name`` over every device) with `Auto`
        axis types: the scan's inputs and outputs keep whatever sharding XLA propagates, so
        callers mix them freely with unsharded arrays (explicit axis types would make the
        time sharding part of every downstream array's type)."""
        if self.mesh is None:
            devices, names = np.array(jax.devices()), (self.axis_name,)
        else:
            devices, names = self.mesh.devices, self.mesh.axis_names
        auto = (jax.sharding.AxisType.Auto,) * len(names)
        return jax.sharding.Mesh(devices, names, axis_types=auto)

    @property
    def num_shards(self) -> int:
        """Number of devices along ``axis_name``."""
        return self.resolved_mesh().shape[self.axis_name]


Strategy = Sequential | Associative | Blocked | Sharded
StrategyLike = Strategy | str


def as_strategy(strategy: Any) -> Strategy | str:
    """Validate ``strategy`` and turn a string shorthand into an instance (``"auto"`` stays).

    Raises:
        TypeError: not a strategy instance or a string.
        ValueError: an unknown string.
    """
    if isinstance(strategy, Sequential | Associative | Blocked | Sharded):
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
        "`strategy` must be Sequential(), Associative(), Blocked(block_size), Sharded(...) or "
        "one of "
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
        A `Sequential`, `Associative`, `Blocked` or `Sharded` instance.
    """
    strategy = as_strategy(strategy)
    if strategy == "auto":
        if _platform(inputs) != "cpu":
            return Associative()
        return Blocked() if cpu_strategy is None else cpu_strategy
    return strategy
