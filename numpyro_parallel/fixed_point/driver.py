"""Solve a nonlinear recursion ``x_t = f(x_{t-1}, u_t)`` for all t at once: the one driver.

The recursion is a system of T equations in the unknowns x_1..x_T, solved by fixed-point
iteration whose every iteration is parallel over time. One loop serves every solver
(`numpyro_parallel.fixed_point.solvers`: `Jacobi`, `Newton`, `QuasiNewton`, `OnlinePicard`):

- it iterates on a sliding window of W steps (default: the solver's) that advances past the
  converged prefix, so memory is O(W d^2) for Newton;
- the state right after the prefix is exact (its predecessor is), so the loop ends in at most T
  iterations; a step counts as converged when its state is unchanged
  (``|x^k - x^{k-1}| <= atol + rtol |x^k|``, finite) and so is its discrete outcome
  (``decisions_fn``, e.g. an accept decision), and every earlier step of the window has
  converged;
- it stops early when the state after the prefix is non-finite (no iteration can help);
- `numpyro_parallel.fixed_point.result.certify` then checks the true residual and recomputes
  what it cannot certify sequentially, so the result is always the recursion's solution.

``strategy`` decides how the solvers' linear recursions and prefix sums are evaluated;
`Sequential()` skips the iteration and evaluates the recursion with `lax.scan`. With
`Sharded()` and a window of all T steps, the loop and the certification run inside one
`jax.shard_map`, each device keeping its chunk of the series
(`numpyro_parallel.fixed_point.sharded`); a shorter window slides across devices and XLA
gathers its slices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_parallel._checks import check_rng_key
from numpyro_parallel._progress import iteration_progress
from numpyro_parallel.fixed_point.checks import (
    check_inputs,
    check_solver_options,
    check_step_fn,
    default_tolerances,
)
from numpyro_parallel.fixed_point.result import (
    FixedPointResult,
    certify,
    leading_count,
    sequential_result,
    warn_result,
)
from numpyro_parallel.fixed_point.sharded import solve_sharded
from numpyro_parallel.fixed_point.solvers import SolverLike
from numpyro_parallel.fixed_point.window import update_window
from numpyro_parallel.strategy import Sequential, Sharded, StrategyLike, resolve_strategy

__all__ = ["default_tolerances", "sequential_recursion", "solve_recursion"]

#: Matmul precision of every evaluation of the step, sequential or parallel: on GPUs the
#: default (TF32 for float32) would make the two paths differ by more than the tolerance.
MATMUL_PRECISION = "highest"


def _cast_output(fn: Callable, dtype: Any) -> Callable:
    def cast(x, inp):
        x_next, aux = fn(x, inp)
        return x_next.astype(dtype), aux

    return cast


def sequential_recursion(
    fn: Callable[[jax.Array, Any], tuple[jax.Array, Any]],
    initial_state: jax.Array,
    inputs: Any,
) -> tuple[jax.Array, Any]:
    """Evaluate ``x_t, aux_t = fn(x_{t-1}, inputs[t-1])`` for t = 1..T with `lax.scan`.

    Args:
        fn: one step, mapping ``(x_prev (d,), input_t)`` to ``(x_t (d,), aux_t)``.
        initial_state: ``(d,)`` state x_0.
        inputs: pytree with a leading time axis of length T.

    Returns:
        ``(states (T, d), aux)`` with aux stacked over time.
    """
    check_inputs(initial_state, inputs)
    check_step_fn(fn, initial_state, inputs)
    return _scan_recursion(fn, initial_state, inputs)


def _scan_recursion(fn, initial_state, inputs) -> tuple[jax.Array, Any]:
    """`sequential_recursion` on checked arguments."""
    fn = _cast_output(fn, initial_state.dtype)

    def body(x, inp):
        x_next, aux = fn(x, inp)
        return x_next, (x_next, aux)

    _, (states, aux) = lax.scan(body, initial_state, inputs)
    return states, aux


def _no_decisions(aux: Any) -> jax.Array:
    del aux
    return jnp.zeros((), jnp.int32)


def solve_recursion(
    fn: Callable[[jax.Array, Any], tuple[jax.Array, Any]],
    initial_state: jax.Array,
    inputs: Any,
    *,
    solver: SolverLike = "newton",
    strategy: StrategyLike = "auto",
    atol: float | None = None,
    rtol: float | None = None,
    max_iterations: int | None = None,
    window: int | None = None,
    decisions_fn: Callable[[Any], jax.Array] | None = None,
    initial_guess: jax.Array | None = None,
    rng_key: jax.Array | None = None,
    progress_bar: bool = True,
) -> FixedPointResult:
    """Solve ``x_t, aux_t = fn(x_{t-1}, inputs[t-1])``, t = 1..T, by parallel iteration.

    Args:
        fn: one step, mapping ``(x_prev (d,), input_t)`` to ``(x_t (d,), aux_t)``; must be
            differentiable in ``x_prev`` (forward mode) for `Newton` and `QuasiNewton`.
        initial_state: ``(d,)`` state x_0.
        inputs: pytree with a leading time axis of length T (e.g. PRNG keys).
        solver: a solver of `numpyro_parallel.fixed_point.solvers` or its name:
            ``"newton"`` (DEER), ``"quasi_newton"``, ``"jacobi"`` or ``"online_picard"``.
        strategy: how the solver's linear recursions run (`numpyro_parallel.strategy`);
            `Sequential()` evaluates the recursion with `lax.scan` instead of iterating;
            `Sharded()` splits the series across devices (with the whole-series window,
            the default except for `OnlinePicard`, the exchange is independent of T).
        atol: absolute tolerance: a step is certified when ``|x_t - f(x_{t-1})| <= atol +
            rtol |x_t|`` (elementwise); the iterations count a step unchanged when
            ``|x^k - x^{k-1}|`` is within a tenth of that (``window.CHANGE_FACTOR``).
            Dtype-dependent default (`default_tolerances`).
        rtol: relative tolerance of the same rules.
        max_iterations: cap on parallel iterations; past it, the states after the certified
            prefix are computed sequentially. Default: the solver's (T always suffices).
        window: number of time steps iterated at once (sliding window, O(W d^2) memory for
            Newton); default: the solver's (all T, or a few sqrt(d) for `OnlinePicard`).
        decisions_fn: maps one step's ``aux`` to a scalar discrete outcome (e.g. an accept
            decision) that must also be unchanged for a step to count as converged.
        initial_guess: ``(T, d)`` starting iterate; default x_0 repeated.
        rng_key: PRNG key of the Hutchinson probes (`QuasiNewton` with large d) and of the
            certification's perturbations; default ``jax.random.key(0)`` (the solution does
            not depend on it).
        progress_bar: when called outside `jit`/`vmap`, show the certified prefix's share
            of T and the iteration count as the solver runs (off when the ``CI`` environment
            variable is set).

    Returns:
        A `numpyro_parallel.fixed_point.result.FixedPointResult`. Outside ``jit`` a
        `RuntimeWarning` reports a sequential fallback, non-finite states and steps within
        tolerance of a jump.

    Works under `jit`, `vmap` and forward-mode differentiation (`jax.jvp`, `jax.jacfwd`). The
    iteration is a `lax.while_loop`, so reverse mode (`jax.grad`) raises; differentiate
    `sequential_recursion` (the same states) instead.

    Raises:
        ValueError: unknown ``solver`` or ``strategy``; negative or non-finite
            ``atol``/``rtol``; ``max_iterations`` or ``window`` < 1; shapes (``fn``'s next
            state must have ``initial_state``'s shape; ``initial_guess`` shape (T, d)).
        TypeError: non-integer ``max_iterations``/``window``; non-floating ``initial_state``;
            ``fn`` not callable or not returning a pair ``(x_next, aux)``; ``decisions_fn``
            not callable; ``rng_key`` not a single PRNG key.
    """
    check_inputs(initial_state, inputs)
    check_step_fn(fn, initial_state, inputs)  # `run_chain`'s own step is checked by it
    with iteration_progress(
        "solve_recursion", progress_bar, initial_state, inputs, strategy=strategy
    ) as progress:
        result = _solve_recursion(
            fn, initial_state, inputs, solver=solver, strategy=strategy, atol=atol, rtol=rtol,
            max_iterations=max_iterations, window=window, decisions_fn=decisions_fn,
            initial_guess=initial_guess, rng_key=rng_key, on_iteration=progress,
        )  # fmt: skip
    warn_result(result, "solve_recursion")
    return result


def _solve_recursion(
    fn, initial_state, inputs, *, solver="newton", strategy="auto", atol=None, rtol=None,
    max_iterations=None, window=None, decisions_fn=None, initial_guess=None, rng_key=None,
    on_iteration=None,
) -> FixedPointResult:  # fmt: skip
    """`solve_recursion` without the warnings (callers report the result themselves)."""
    num_steps = check_inputs(initial_state, inputs)
    solver = check_solver_options(solver, strategy, atol, rtol, max_iterations, window)
    strategy = resolve_strategy(strategy, initial_state)
    d = initial_state.shape[0]
    if decisions_fn is not None and not callable(decisions_fn):
        raise TypeError(f"`decisions_fn` must be callable; got {type(decisions_fn).__name__}.")
    if rng_key is not None:
        check_rng_key(rng_key)
    if initial_guess is not None:
        initial_guess = jnp.asarray(initial_guess)
    if initial_guess is not None and initial_guess.shape != (num_steps, d):
        raise ValueError(
            f"`initial_guess` must have shape {(num_steps, d)}; got {initial_guess.shape}."
        )
    fn = _cast_output(fn, initial_state.dtype)
    if isinstance(strategy, Sequential):
        with jax.default_matmul_precision(MATMUL_PRECISION):
            states, aux = _scan_recursion(fn, initial_state, inputs)
        return sequential_result(states, aux, num_steps, states.dtype)
    width = solver.default_window(num_steps, d) if window is None else min(window, num_steps)
    if max_iterations is None:
        max_iterations = solver.default_max_iterations(num_steps, width)
    default_atol, default_rtol = default_tolerances(initial_state.dtype)
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    decisions_fn = _no_decisions if decisions_fn is None else decisions_fn
    guess_given = initial_guess is not None
    if initial_guess is None:
        initial_guess = jnp.broadcast_to(initial_state, (num_steps, d))
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    probe_key, sensitivity_key = jax.random.split(rng_key)

    def step(x, inp):
        x_next, aux = fn(x, inp)
        decision = jnp.asarray(decisions_fn(aux))
        if decision.shape != ():
            raise ValueError(
                "`decisions_fn` (in `run_chain`: the step's `info.is_accepted`) must return "
                f"a scalar per step; got shape {decision.shape}."
            )
        return x_next, decision.astype(jnp.int32)

    guess = initial_guess.astype(initial_state.dtype)
    with jax.default_matmul_precision(MATMUL_PRECISION):
        if isinstance(strategy, Sharded) and width == num_steps:
            # The whole series in one shard_map: each device keeps its chunk (T-free exchange).
            result = solve_sharded(
                fn, step, solver, strategy, initial_state, inputs, guess, probe_key,
                sensitivity_key, atol=atol, rtol=rtol, max_iterations=max_iterations,
                on_iteration=on_iteration,
            )  # fmt: skip
        else:
            buffer, num_iterations = _iterate(
                step, solver, strategy, initial_state, inputs, guess, probe_key, atol=atol,
                rtol=rtol, max_iterations=max_iterations, width=width, guess_given=guess_given,
                on_iteration=on_iteration,
            )  # fmt: skip
            result = certify(
                fn, buffer, inputs, num_iterations, sensitivity_key, atol=atol, rtol=rtol
            )
    if on_iteration is not None:
        jax.block_until_ready(result)  # the bar closes after the last callback
    return result


def _tree_slice(tree: Any, start: jax.Array, size: int) -> Any:
    return jax.tree_util.tree_map(lambda a: lax.dynamic_slice_in_dim(a, start, size, 0), tree)


def _iterate(
    step, solver, strategy, x0, inputs, guess, probe_key, *, atol, rtol, max_iterations, width,
    guess_given, on_iteration=None,
):  # fmt: skip
    """The sliding-window loop; returns the ``(T + 1, d)`` iterate and the iteration count."""
    num_steps = guess.shape[0]
    offsets = jnp.arange(width)

    def cond(carry):
        _, _, prefix, iteration, _, stuck = carry
        return (prefix < num_steps) & (iteration < max_iterations) & ~stuck

    def body(carry):
        buffer, decisions, prefix, iteration, frontier, _ = carry
        start = jnp.minimum(prefix, num_steps - width)
        index = start + offsets  # step index: x_{index + 1} = f(x_index)
        xs = lax.dynamic_slice_in_dim(buffer, start + 1, width, 0)
        # States the window reaches for the first time start from the last state seen so far.
        xs = jnp.where((index >= frontier)[:, None], buffer[frontier], xs)
        prev = jnp.concatenate([buffer[start][None], xs[:-1]], axis=0)
        window_inputs = _tree_slice(inputs, start, width)
        key = jax.random.fold_in(probe_key, iteration)
        old_decisions = lax.dynamic_slice_in_dim(decisions, start, width, 0)
        new, new_decisions, converged, exact_finite, finite = update_window(
            step, solver, strategy, prev, xs, window_inputs, old_decisions, index, prefix, key,
            atol=atol, rtol=rtol,
        )  # fmt: skip
        count = leading_count(converged)
        # The state right after the prefix is exact (its predecessor is), unless non-finite;
        # for some solvers so is the state after a run of unchanged states.
        exact_finite = jnp.any(exact_finite)
        after = solver.exact_after_unchanged & jnp.any((offsets == count) & finite)
        advanced = jnp.maximum(start + count + after.astype(count.dtype), prefix + exact_finite)
        buffer = lax.dynamic_update_slice_in_dim(buffer, new, start + 1, 0)
        decisions = lax.dynamic_update_slice_in_dim(decisions, new_decisions, start, 0)
        frontier = jnp.maximum(frontier, start + width)
        if on_iteration is not None:
            jax.debug.callback(on_iteration, iteration + 1, advanced / num_steps)
        return (
            buffer,
            decisions,
            advanced.astype(prefix.dtype),
            iteration + 1,
            frontier,
            ~exact_finite,
        )

    buffer = jnp.concatenate([x0[None], guess], axis=0)
    carry = (
        buffer,
        jnp.zeros(num_steps, jnp.int32),
        jnp.asarray(0),
        jnp.asarray(0),
        jnp.asarray(num_steps if guess_given else width),
        jnp.asarray(False),
    )
    buffer, _, _, num_iterations, _, _ = lax.while_loop(cond, body, carry)
    return buffer, num_iterations
