"""One iteration of the fixed-point driver on a window of steps, shared by its two loops.

`numpyro_parallel.fixed_point.driver` slides a window of W steps over the series on one
device; `numpyro_parallel.fixed_point.sharded` iterates on the whole series split along time
across devices, inside one `jax.shard_map`. Both call `update_window`, which applies the
solver to a window and says which of its steps have converged; the loops turn those flags
into the new certified prefix (a leading count over the window, or across devices).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel.fixed_point.result import within

__all__ = ["CHANGE_FACTOR", "WindowUpdate", "update_window"]

#: A step counts as unchanged when its change is within this share of the tolerance. The
#: certification afterwards checks the true residual ``|x_t - f(x_{t-1})|`` at the full
#: tolerance; an error of one tolerance in a predecessor can grow by the step's Lipschitz
#: constant (a Jacobi iterate whose change met the full tolerance failed the check on 2 of
#: 8 MALA chains), so the loop stops a little later instead of falling back sequentially.
CHANGE_FACTOR = 0.1


class WindowUpdate(NamedTuple):
    """The new iterate of a window and its convergence flags (all with a leading axis W).

    Attributes:
        states: ``(W, d)`` new iterate.
        decisions: ``(W,)`` int32 discrete outcomes of the step at the old iterate.
        converged: steps that count towards the certified prefix: frozen, or unchanged
            (state change within ``CHANGE_FACTOR`` times the tolerance and the same
            decision) and finite.
        exact_finite: the step right after the prefix, when its new state is finite (it is
            exact: its predecessor is).
        finite: steps whose new state is finite.
    """

    states: jax.Array
    decisions: jax.Array
    converged: jax.Array
    exact_finite: jax.Array
    finite: jax.Array


def update_window(
    step, solver, strategy, prev, xs, inputs, old_decisions, index, prefix, key, *, atol, rtol
) -> WindowUpdate:
    """Apply ``solver`` to a window of states.

    Args:
        step: ``step(x_prev, input) -> (x, decision)``.
        solver: a solver of `numpyro_parallel.fixed_point.solvers`.
        strategy: how the solver's linear recursions and prefix sums run (an `InShard`
            marker inside a ``shard_map``).
        prev: ``(W, d)`` predecessors of the window's states (the state before the window,
            then all but the last state).
        xs: ``(W, d)`` current iterate.
        inputs: the window's inputs.
        old_decisions: ``(W,)`` decisions of the previous iteration.
        index: ``(W,)`` global step indices (``x_{index + 1} = f(x_index)``).
        prefix: number of certified steps before this iteration.
        key: PRNG key of this iteration's probes.
        atol: absolute tolerance.
        rtol: relative tolerance.
    """
    fx, decisions = jax.vmap(step)(prev, inputs)
    frozen, exact = index < prefix, index == prefix
    f = lambda x, inp: step(x, inp)[0]
    new = solver.update(f, prev, xs, fx, inputs, key, frozen | exact, strategy)
    new = jnp.where(jnp.all(jnp.isfinite(new), axis=-1, keepdims=True), new, fx)
    new = jnp.where(frozen[:, None], xs, jnp.where(exact[:, None], fx, new))
    finite = jnp.all(jnp.isfinite(new), axis=-1)
    tight = CHANGE_FACTOR * atol, CHANGE_FACTOR * rtol
    same = (decisions == old_decisions) & within(new - xs, new, *tight)
    return WindowUpdate(new, decisions, (same & finite) | frozen, exact & finite, finite)
