"""A whole MCMC chain from any BlackJAX-style step, solved in parallel over its length.

With the random numbers of every step fixed in advance (``keys = jax.random.split(rng_key,
num_steps)``) a Markov chain is a deterministic recursion ``x_t = f(x_{t-1}, key_t)``.
`run_chain` solves it for all t at once with the fixed-point driver
(`numpyro_parallel.fixed_point.solve_recursion`: `Newton` = DEER, `QuasiNewton`, `Jacobi`,
`OnlinePicard`), which returns the same chain as the sequential sampler to solver tolerance,
falling back to sequential steps for whatever it cannot certify; ``strategy=Sequential()``
runs the plain `lax.scan` chain (the reference). Accept/reject steps are evaluated exactly in
every iteration; their Jacobian is the one autodiff gives (no derivative through the accept
indicator), and a step converges only when its accept decision is unchanged too. For
random-walk Metropolis, whose coupled chains barely contract, ``solver=OnlinePicard()``
iterates the Picard map on the accept decisions instead.

Reference: Zoltowski, Wu, Gonzalez, Kozachkov, Linderman (2025), "Parallelizing MCMC across
the sequence length"; Lim et al. (2024), "Parallelizing non-linear sequential models over the
sequence length"; Grazzi & Zanella (2025), "Parallel computations for Metropolis Markov chains
with Picard maps".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from numpyro_parallel._checks import check_positive_int, check_rng_key
from numpyro_parallel._progress import iteration_progress
from numpyro_parallel.fixed_point.checks import check_solver_options
from numpyro_parallel.fixed_point.driver import MATMUL_PRECISION, _solve_recursion
from numpyro_parallel.fixed_point.result import (
    NON_FINITE,
    OK,
    STUCK_MIN_STEPS,
    FixedPointResult,
    all_finite,
    sequential_result,
    warn_result,
)
from numpyro_parallel.fixed_point.solvers import SolverLike
from numpyro_parallel.strategy import Sequential, StrategyLike, as_strategy

__all__ = ["run_chain"]


def _resolve(step_fn: Any, init_fn: Callable | None) -> tuple[Callable, Callable | None]:
    """Accept a step function or a `SamplingAlgorithm` (which brings its own init)."""
    if not callable(step_fn) and hasattr(step_fn, "step") and hasattr(step_fn, "init"):
        return step_fn.step, init_fn if init_fn is not None else step_fn.init
    if not callable(step_fn):
        raise TypeError(
            "`step_fn` must be a callable step(rng_key, state) -> (state, info) or a "
            f"blackjax SamplingAlgorithm; got {type(step_fn).__name__}."
        )
    return step_fn, init_fn


_STATE_HINT = (
    "pass the sampler's state `init_fn(position)` (e.g. `algorithm.init(position)`), "
    "not a bare position"
)


def _check_state(step: Callable, initial_state: Any, rng_key: Any, init_fn: Any) -> None:
    """Raise a `TypeError` when ``initial_state`` is not a state ``step`` maps to a state."""
    if init_fn is not None and not hasattr(initial_state, "position"):
        raise TypeError(
            "`initial_state` must be a sampler state with a `position` field; got "
            f"{type(initial_state).__name__}: {_STATE_HINT}."
        )
    try:
        out = jax.eval_shape(lambda key, state: step(key, state)[0], rng_key, initial_state)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as error:
        raise TypeError(
            f"`step_fn` failed on `initial_state` ({type(error).__name__}: {error}); if "
            f"`initial_state` is a position, {_STATE_HINT}."
        ) from error
    shapes = lambda tree: [jnp.shape(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
    same = jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(initial_state)
    if not same or shapes(out) != shapes(initial_state):
        raise TypeError(
            "`step_fn(rng_key, initial_state)` must return `(state, info)` with a state of the "
            f"same structure and shapes as `initial_state`; {_STATE_HINT}."
        )


def _coordinates(initial_state: Any, init_fn: Callable | None):
    """Flat iterated coordinates, and maps between them and full states."""
    if init_fn is not None:
        x0, unravel = ravel_pytree(initial_state.position)
        return x0, lambda x: init_fn(unravel(x)), lambda s: ravel_pytree(s.position)[0]
    leaves = jax.tree_util.tree_leaves(initial_state)
    bad = [leaf.dtype for leaf in leaves if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    if bad or not leaves:
        raise TypeError(
            "`initial_state` has non-floating leaves "
            f"{bad}; pass `init_fn(position) -> state` so that only the position is iterated."
        )
    x0, unravel = ravel_pytree(initial_state)
    return x0, unravel, lambda s: ravel_pytree(s)[0]


def _accept_decision(step_info: Any) -> jax.Array:
    """The step's accept decision (``info.is_accepted``) when it reports one, else 0."""
    decision = getattr(step_info, "is_accepted", None)
    return jnp.zeros((), jnp.int32) if decision is None else jnp.asarray(decision)


def run_chain(
    step_fn: Callable | Any,
    initial_state: Any,
    rng_key: jax.Array,
    num_steps: int,
    *,
    strategy: StrategyLike = "auto",
    solver: SolverLike = "newton",
    atol: float | None = None,
    rtol: float | None = None,
    max_iterations: int | None = None,
    window: int | None = None,
    init_fn: Callable | None = None,
    progress_bar: bool = True,
) -> tuple[Any, FixedPointResult]:
    """Compute ``num_steps`` MCMC steps, in parallel over the chain or one after the other.

    ``keys = jax.random.split(rng_key, num_steps)`` and ``state_t = step_fn(keys[t-1],
    state_{t-1})`` whatever the strategy and solver: every combination gives the same chain
    (to solver tolerance; exactly with `Sequential()`).

    Args:
        step_fn: a BlackJAX-style step ``step(rng_key, state) -> (state, info)``, e.g.
            ``blackjax.mala(logdensity_fn, step_size).step``, or a whole
            `blackjax.base.SamplingAlgorithm` (its ``init`` is then used as ``init_fn``).
        initial_state: the state x_0.
        rng_key: PRNG key, split into one key per step.
        num_steps: chain length T (a Python int).
        strategy: `Sequential()` (or ``"sequential"``) for the plain `lax.scan` chain;
            otherwise the strategy of the solver's linear recursions (`"auto"`: blocked on
            CPU, associative on accelerators).
        solver: a `numpyro_parallel.fixed_point` solver or its name: ``"newton"``,
            ``"quasi_newton"``, ``"jacobi"`` or ``"online_picard"`` (Picard map of Grazzi &
            Zanella: the method for random-walk Metropolis and other additive proposals).
        atol: absolute tolerance of the stopping rule; dtype-dependent default
            (`numpyro_parallel.fixed_point.default_tolerances`).
        rtol: relative tolerance of the stopping rule; dtype-dependent default.
        max_iterations: cap on parallel iterations before the sequential fallback (default:
            the solver's).
        window: sliding-window length (bounds the memory of the Jacobians); default: the
            solver's.
        init_fn: ``init_fn(position) -> state`` rebuilding cached quantities (log-density,
            gradient) from a position; then only the position is iterated. Without it every
            floating leaf of the state is iterated (correct, with a larger Jacobian).
        progress_bar: when called outside `jit`/`vmap` with a parallel solver, show the
            share of the chain already certified and the iteration count as the solver runs
            (off when the ``CI`` environment variable is set).

    Returns:
        ``(states, info)``: the states for t = 1..T stacked on a leading axis, and a
        `numpyro_parallel.fixed_point.FixedPointResult` whose ``states`` are the same states
        and ``aux`` the step's info for every step (``info.status`` is ``NON_FINITE`` when
        any floating leaf of the states, e.g. a cached log-density, is NaN/Inf; ``info.stuck``
        is True when a chain of at least 50 steps never left its initial position). Outside
        ``jit`` a `RuntimeWarning` reports a sequential fallback, non-finite states, a stuck
        chain and near-threshold accept decisions.

    Raises:
        TypeError: ``initial_state`` is not a state of ``step_fn`` (e.g. a bare position:
            pass ``init_fn(position)``), ``rng_key`` is not a PRNG key, non-integer
            ``num_steps``/``max_iterations``/``window``, an invalid ``solver``/``strategy``.
        ValueError: ``num_steps``, ``max_iterations`` or ``window`` < 1, an unknown
            ``solver``/``strategy`` name, negative or non-finite ``atol``/``rtol``.
    """
    with iteration_progress(
        "run_chain", progress_bar, initial_state, rng_key, strategy=strategy
    ) as progress:
        result = _run_chain(
            step_fn, initial_state, rng_key, num_steps, strategy=strategy, solver=solver,
            atol=atol, rtol=rtol, max_iterations=max_iterations, window=window, init_fn=init_fn,
            on_iteration=progress,
        )  # fmt: skip
    warn_result(result[1], "run_chain")
    return result


def _run_chain(
    step_fn, initial_state, rng_key, num_steps, *, strategy="auto", solver="newton", atol=None,
    rtol=None, max_iterations=None, window=None, init_fn=None, on_iteration=None,
) -> tuple[Any, FixedPointResult]:  # fmt: skip
    """`run_chain` without the warnings (callers report the result themselves)."""
    num_steps = check_positive_int("num_steps", num_steps)
    check_solver_options(solver, strategy, atol, rtol, max_iterations, window)
    check_rng_key(rng_key)
    step, init = _resolve(step_fn, init_fn)
    _check_state(step, initial_state, rng_key, init)
    keys = jax.random.split(rng_key, num_steps)
    if as_strategy(strategy) == Sequential():
        # The reference chain: the sampler's own states, no round trip through coordinates.
        def body(state, key):
            new_state, info = step(key, state)
            return new_state, (new_state, info)

        with jax.default_matmul_precision(MATMUL_PRECISION):
            _, (states, step_info) = jax.lax.scan(body, initial_state, keys)
        dtype = jax.tree_util.tree_leaves(initial_state)[0].dtype
        result = sequential_result(states, step_info, num_steps, dtype)
        return states, _with_stuck(result, states, initial_state, init is not None)
    x0, to_state, from_state = _coordinates(initial_state, init)

    def fn(x, key):
        new_state, info = step(key, to_state(x))
        return from_state(new_state), info

    result = _solve_recursion(
        fn, x0, keys, solver=solver, strategy=strategy, atol=atol, rtol=rtol,
        max_iterations=max_iterations, window=window, decisions_fn=_accept_decision,
        rng_key=jax.random.fold_in(rng_key, num_steps),  # probes: independent of the step keys
        on_iteration=on_iteration,
    )  # fmt: skip
    states = jax.vmap(to_state)(result.states)
    finite = all_finite(states)
    status = jnp.where(finite, result.status, NON_FINITE).astype(jnp.int32)
    result = result._replace(states=states, status=status, converged=status == OK)
    return states, _with_stuck(result, states, initial_state, init is not None)


def _with_stuck(
    result: FixedPointResult, states: Any, initial_state: Any, has_position: bool
) -> FixedPointResult:
    """``result`` with ``stuck`` set when no state of a chain of at least `STUCK_MIN_STEPS`
    steps left the initial position (every leaf of the state without a ``position``)."""
    num_steps = jax.tree_util.tree_leaves(states)[0].shape[0]
    if num_steps < STUCK_MIN_STEPS:
        return result
    if has_position:
        states, initial_state = states.position, initial_state.position
    same = jax.tree_util.tree_map(lambda a, a0: jnp.all(a == a0[None]), states, initial_state)
    return result._replace(stuck=jnp.all(jnp.stack(jax.tree_util.tree_leaves(same))))
