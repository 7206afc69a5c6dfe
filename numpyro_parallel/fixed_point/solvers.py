"""Solver objects of the fixed-point driver: one update rule each, the loop is shared.

Every solver maps the current iterate of a window of states to a new one, given the states'
predecessors ``prev`` (the window's anchor followed by all but its last state) and ``f(prev)``:

- `Jacobi` (Picard): ``x_t <- f(x_{t-1})`` for all t.
- `Newton` (DEER; Lim et al. 2024, "Parallelizing non-linear sequential models over the
  sequence length"): linearise ``f`` around the iterate and solve the linear recursion
  ``x_t = J_t x_{t-1} + (f(x_{t-1}) - J_t x_{t-1})`` with `numpyro_parallel.scan.affine_recursion`.
- `QuasiNewton` (quasi-DEER; Gonzalez et al. 2024, "Towards scalable and stable
  parallelization of nonlinear RNNs"; Zoltowski et al. 2025, "Parallelizing MCMC across the
  sequence length"): only the diagonal of ``J_t`` (exact up to ``exact_diagonal_max_dim``,
  else a one-probe Hutchinson estimate), clipped to [-1, 1] for stability.
- `OnlinePicard` (Grazzi & Zanella 2025, "Parallel computations for Metropolis Markov chains
  with Picard maps"): ``x_t <- x_prefix + sum of the increments f(x_{s-1}) - x_{s-1}`` (one
  prefix sum). For a Metropolis chain with an additive proposal this iterates on the accept
  decisions alone; it is the method for random-walk Metropolis, whose coupled chains barely
  contract under the other solvers.

The linear recursions and prefix sums run with the driver's strategy
(`numpyro_parallel.strategy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_positive_int, check_real
from numpyro_parallel.scan import affine_recursion, associative_scan
from numpyro_parallel.strategy import Strategy

__all__ = ["Jacobi", "Newton", "OnlinePicard", "QuasiNewton", "Solver", "SolverLike", "as_solver"]


def _check_damping(owner: str, damping: Any) -> None:
    check_real(f"{owner}.damping", damping, low=0.0, high=1.0, high_closed=True)


def _default_max_iterations(num_steps: int, width: int) -> int:
    return min(num_steps, max(512, 8 * math.ceil(num_steps / width)))


@dataclass(frozen=True)
class _Damped:
    """Shared by the solvers whose update may be damped: ``x <- x + damping (update - x)``."""

    damping: float = 1.0

    #: A state whose predecessor was unchanged by the last iteration is exact after it.
    exact_after_unchanged = False

    def __post_init__(self):
        _check_damping(type(self).__name__, self.damping)

    def default_window(self, num_steps: int, dim: int) -> int:
        """Default window: all T steps."""
        del dim
        return num_steps

    def default_max_iterations(self, num_steps: int, width: int) -> int:
        """Default cap: ``min(T, max(512, 8 ceil(T / W)))`` (T always suffices)."""
        return _default_max_iterations(num_steps, width)

    def update(self, f, prev, xs, fx, inputs, key, settled, strategy: Strategy) -> jax.Array:
        """New iterate of a window (before the driver freezes the settled prefix).

        Args:
            f: one step ``f(x_prev, input) -> x`` (states only).
            prev: ``(W, d)`` predecessors of the window's states.
            xs: ``(W, d)`` current iterate.
            fx: ``(W, d)`` ``f(prev)``.
            inputs: the window's inputs.
            key: PRNG key of this iteration (Hutchinson probes).
            settled: ``(W,)`` steps at or before the exact prefix (their value is replaced).
            strategy: how linear recursions and prefix sums are evaluated.

        Returns:
            ``(W, d)`` proposed states.
        """
        new = self._undamped(f, prev, fx, inputs, key, settled, strategy)
        return new if self.damping == 1.0 else xs + self.damping * (new - xs)

    def _undamped(self, f, prev, fx, inputs, key, settled, strategy):
        raise NotImplementedError


@dataclass(frozen=True)
class Jacobi(_Damped):
    """Jacobi (Picard) iteration ``x_t <- f(x_{t-1})``; linear convergence, cheapest update.

    Attributes:
        damping: step length in (0, 1] of the update (1 = undamped).
    """

    def _undamped(self, f, prev, fx, inputs, key, settled, strategy):
        return fx


@dataclass(frozen=True)
class Newton(_Damped):
    """Newton iteration (DEER): the full Jacobian, one affine recursion per iteration.

    Attributes:
        damping: step length in (0, 1] of the update (1 = undamped).
    """

    def _undamped(self, f, prev, fx, inputs, key, settled, strategy):
        jac = jax.vmap(jax.jacfwd(f))(prev, inputs)
        offsets = fx - jnp.einsum("tij,tj->ti", jac, prev)
        return affine_recursion(jac, offsets, prev[0], strategy=strategy)


@dataclass(frozen=True)
class QuasiNewton(_Damped):
    """Quasi-Newton iteration: the Jacobian's diagonal only, clipped to [-1, 1].

    Attributes:
        damping: step length in (0, 1] of the update (1 = undamped).
        exact_diagonal_max_dim: largest d for which the diagonal is computed exactly (d
            forward-mode passes); above it, one Rademacher probe estimates it.
    """

    exact_diagonal_max_dim: int = 64

    def __post_init__(self):
        super().__post_init__()
        size = self.exact_diagonal_max_dim
        size = check_positive_int("QuasiNewton.exact_diagonal_max_dim", size, minimum=0)
        object.__setattr__(self, "exact_diagonal_max_dim", size)

    def _undamped(self, f, prev, fx, inputs, key, settled, strategy):
        if prev.shape[-1] <= self.exact_diagonal_max_dim:
            jac = jax.vmap(jax.jacfwd(f))(prev, inputs)
            diag = jnp.diagonal(jac, axis1=-2, axis2=-1)
        else:
            signs = jax.random.rademacher(key, prev.shape, dtype=prev.dtype)
            jv = jax.vmap(lambda x, v, inp: jax.jvp(lambda y: f(y, inp), (x,), (v,))[1])(
                prev, signs, inputs
            )
            diag = signs * jv
        diag = jnp.clip(diag, -1.0, 1.0)
        return affine_recursion(diag, fx - diag * prev, prev[0], diagonal=True, strategy=strategy)


@dataclass(frozen=True)
class OnlinePicard:
    """Online Picard map of Grazzi & Zanella: the new states are prefix sums of increments.

    Exact in at most T iterations for any recursion; for Metropolis chains with an additive
    proposal (random-walk Metropolis) it iterates on the accept decisions only, and every
    decision it confirms is the sequential chain's. Positions are prefix sums where the
    sequential chain adds one move at a time, so they agree with it to rounding. The default
    window is a few times the O(sqrt(d)) steps one iteration confirms for random-walk
    Metropolis on log-concave targets.
    """

    exact_after_unchanged = True

    def default_window(self, num_steps: int, dim: int) -> int:
        """``min(T, max(64, 16 ceil(sqrt(d))))``."""
        return min(num_steps, max(64, 16 * math.ceil(math.sqrt(dim))))

    def default_max_iterations(self, num_steps: int, width: int) -> int:
        """T, which always suffices."""
        del width
        return num_steps

    def update(self, f, prev, xs, fx, inputs, key, settled, strategy: Strategy) -> jax.Array:
        """New iterate of a window (see `Jacobi.update`)."""
        del f, xs, inputs, key
        # A sum that restarts at every settled step from f(x_prev): past the prefix, the
        # last settled step's f(x_prefix) plus the increments after it. (A restarting sum
        # needs no global "last settled step", so it also runs on a time-sharded window.)
        values = jnp.where(settled[:, None], fx, fx - prev)
        sums, _ = associative_scan(_restarting_sum, (values, settled), strategy=strategy)
        return sums


def _restarting_sum(earlier, later):
    """Segmented sum: ``later``'s value alone where it restarts, else the two added."""
    (v1, r1), (v2, r2) = earlier, later
    return jnp.where(r2, v2, v1 + v2), r1 | r2


Solver = Jacobi | Newton | QuasiNewton | OnlinePicard
SolverLike = Solver | str

_NAMES = {"jacobi": Jacobi, "newton": Newton, "quasi_newton": QuasiNewton}
_NAMES["online_picard"] = OnlinePicard


def as_solver(solver: Any) -> Solver:
    """Validate ``solver`` and turn a string shorthand into an instance.

    Raises:
        TypeError: neither a solver instance nor a string.
        ValueError: an unknown name.
    """
    if isinstance(solver, Jacobi | Newton | QuasiNewton | OnlinePicard):
        return solver
    if isinstance(solver, str):
        if solver in _NAMES:
            return _NAMES[solver]()
        raise ValueError(f"`solver` must be one of {tuple(_NAMES)}; got {solver!r}.")
    raise TypeError(
        "`solver` must be Jacobi(), Newton(), QuasiNewton(), OnlinePicard() or one of "
        f"{tuple(_NAMES)}; got {type(solver).__name__}."
    )
