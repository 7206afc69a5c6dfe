"""A whole MCMC chain from any BlackJAX-style step, solved in parallel over its length.

With the random numbers of every step fixed in advance (``keys = jax.random.split(rng_key,
num_steps)``) a Markov chain is a deterministic recursion ``x_t = f(x_{t-1}, key_t)``. It is
solved for all t at once with `numpyro_parallel.fixed_point.solve_recursion` (Newton = DEER,
quasi-Newton, Jacobi), which returns the same chain as the sequential sampler to solver
tolerance, falling back to sequential steps for whatever it cannot certify. Accept/reject
steps are evaluated exactly in every iteration; their Jacobian is the one autodiff gives (no
derivative through the accept indicator). For random-walk Metropolis, whose coupled chains
barely contract, ``solver="online_picard"`` iterates the Picard map on the accept decisions
instead (`numpyro_parallel.mcmc.online_picard`).

Reference: Zoltowski, Wu, Gonzalez, Kozachkov, Linderman (2025), "Parallelizing MCMC across
the sequence length"; Lim et al. (2024), "Parallelizing non-linear sequential models over the
sequence length"; Grazzi & Zanella (2025), "Parallel computations for Metropolis Markov chains
with Picard maps".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from numpyro_parallel._checks import check_positive_int, warn_if
from numpyro_parallel.fixed_point import SOLVERS, _solve_recursion, check_tolerance, check_window
from numpyro_parallel.mcmc.online_picard import _picard_recursion

__all__ = ["ChainInfo", "parallel_chain", "sequential_chain"]


class ChainInfo(NamedTuple):
    """Diagnostics of a chain computation.

    Attributes:
        step_info: the step function's info for every step, stacked over time (from one final
            evaluation at the solution for `parallel_chain`).
        num_iterations: parallel iterations (``num_steps`` for `sequential_chain`).
        converged: whether the parallel solve converged and was certified (no sequential
            fallback), and every floating leaf of the states is finite. For
            `sequential_chain`: whether every floating leaf of the states is finite (a chain
            at a NaN/Inf log-density is not OK).
        residual: ``max_t |x_t - f(x_{t-1})|`` over the iterated coordinates.
        fallback: whether part of the chain was recomputed sequentially.
        num_sequential_steps: number of steps recomputed sequentially.
        num_sensitive_steps: steps whose outcome (e.g. an accept decision) flips under a
            perturbation of the size of the tolerance.
    """

    step_info: Any
    num_iterations: jax.Array
    converged: jax.Array
    residual: jax.Array
    fallback: jax.Array
    num_sequential_steps: jax.Array
    num_sensitive_steps: jax.Array


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


def _check_key(rng_key: Any) -> None:
    dtype = getattr(rng_key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jnp.uint32 and jnp.shape(rng_key) == (2,)
    if not (typed and jnp.ndim(rng_key) == 0) and not raw:
        raise TypeError(
            "`rng_key` must be a single PRNG key (`jax.random.key(seed)`); got "
            f"{type(rng_key).__name__} with shape {jnp.shape(rng_key)}."
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


def check_solver_options(solver: Any, tol: Any, max_iterations: Any, window: Any = None) -> None:
    """Raise a clear error for an unknown ``solver`` or invalid solver settings."""
    solvers = (*SOLVERS, "online_picard")
    if not isinstance(solver, str) or solver not in solvers:
        raise ValueError(f"`solver` must be one of {solvers}; got {solver!r}.")
    check_tolerance("tol", tol)
    if max_iterations is not None:
        check_positive_int("max_iterations", max_iterations)
    check_window(window)


def _check_options(solver: Any, tol: Any, max_iterations: Any, window: Any, damping: Any):
    check_solver_options(solver, tol, max_iterations, window)
    if isinstance(damping, bool) or not isinstance(damping, int | float):
        raise TypeError(f"`damping` must be a number in (0, 1]; got {damping!r}.")
    if not 0.0 < damping <= 1.0:
        raise ValueError(f"`damping` must lie in (0, 1]; got {damping}.")
    if solver == "online_picard" and damping != 1.0:
        raise ValueError(f"`damping` must be 1.0 with solver='online_picard'; got {damping}.")


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


def _all_finite(states: Any) -> jax.Array:
    """Whether every floating leaf of the states (e.g. a cached log-density) is finite."""
    finite = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree_util.tree_leaves(states)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(finite)) if finite else jnp.asarray(True)


def _warn_if_fallback(info: ChainInfo) -> None:
    """What `parallel_chain` warns, from its ``info`` alone (e.g. after a jitted call)."""
    _warn(info, info.converged | info.fallback, "parallel_chain")


def _warn(info: ChainInfo, finite: jax.Array, caller: str) -> None:
    """RuntimeWarnings outside `jit` (under tracing `info` is the only report)."""
    warn_if(
        info.fallback,
        f"{caller} did not converge within max_iterations (or produced non-finite states); "
        "part of the chain was recomputed sequentially (see info.converged / info.fallback / "
        "info.num_sequential_steps).",
        stacklevel=4,
    )
    warn_if(
        ~finite,
        f"{caller}: the chain contains non-finite values (NaN/Inf position or log-density, "
        "e.g. a chain stuck at an initial point where the log-density is NaN); "
        "info.converged is False.",
        stacklevel=4,
    )
    warn_if(
        info.num_sensitive_steps > 0,
        "some step(s) have an accept decision within solver tolerance of its threshold "
        "(info.num_sensitive_steps); tighten `tol` for an exact match with the sequential chain.",
        stacklevel=4,
    )


def parallel_chain(
    step_fn: Callable | Any,
    initial_state: Any,
    rng_key: jax.Array,
    num_steps: int,
    *,
    solver: str = "newton",
    tol: float | None = None,
    max_iterations: int | None = None,
    window: int | None = None,
    init_fn: Callable | None = None,
    damping: float = 1.0,
) -> tuple[Any, ChainInfo]:
    """Compute ``num_steps`` MCMC steps by parallel fixed-point iteration over the chain.

    ``keys = jax.random.split(rng_key, num_steps)`` and ``state_t = step_fn(keys[t-1],
    state_{t-1})``, exactly as `sequential_chain`.

    Args:
        step_fn: a BlackJAX-style step ``step(rng_key, state) -> (state, info)``, e.g.
            ``blackjax.mala(logdensity_fn, step_size).step``, or a whole
            `blackjax.base.SamplingAlgorithm` (its ``init`` is then used as ``init_fn``).
        initial_state: the state x_0.
        rng_key: PRNG key, split into one key per step.
        num_steps: chain length T (a Python int).
        solver: ``"newton"``, ``"quasi_newton"``, ``"jacobi"`` or ``"online_picard"`` (Picard
            map of Grazzi & Zanella, `numpyro_parallel.mcmc.online_picard`: the method for
            random-walk Metropolis and other additive-proposal kernels).
        tol: absolute and relative tolerance of the stopping rule; dtype-dependent default.
        max_iterations: cap on parallel iterations before the sequential fallback (default
            T for ``"online_picard"``, which always suffices).
        window: sliding-window length (bounds the memory of the Jacobians); default all T
            (``"online_picard"``: `numpyro_parallel.mcmc.online_picard.default_window`).
        init_fn: ``init_fn(position) -> state`` rebuilding cached quantities (log-density,
            gradient) from a position; then only the position is iterated. Without it every
            floating leaf of the state is iterated (correct, with a larger Jacobian).
        damping: step length in (0, 1] of the solver update (1 for ``"online_picard"``).

    Returns:
        ``(states, info)``: the states for t = 1..T stacked on a leading axis, and a
        `ChainInfo`. Outside ``jit`` a `RuntimeWarning` reports a sequential fallback,
        non-finite states and near-threshold accept decisions.

    Raises:
        TypeError: ``initial_state`` is not a state of ``step_fn`` (e.g. a bare position:
            pass ``init_fn(position)``), ``rng_key`` is not a PRNG key, non-integer
            ``num_steps``/``max_iterations``/``window``.
        ValueError: ``num_steps``, ``max_iterations`` or ``window`` < 1, unknown ``solver``,
            negative or non-finite ``tol``, ``damping`` outside (0, 1].
    """
    num_steps = check_positive_int("num_steps", num_steps)
    _check_options(solver, tol, max_iterations, window, damping)
    _check_key(rng_key)
    step, init = _resolve(step_fn, init_fn)
    _check_state(step, initial_state, rng_key, init)
    x0, to_state, from_state = _coordinates(initial_state, init)
    keys = jax.random.split(rng_key, num_steps)

    def fn(x, key):
        new_state, info = step(key, to_state(x))
        return from_state(new_state), info

    if solver == "online_picard":
        result = _picard_recursion(
            fn, x0, keys, decisions_fn=_accept_decision, atol=tol, rtol=tol,
            max_iterations=max_iterations, window=window,
        )  # fmt: skip
    else:
        result = _solve_recursion(
            fn, x0, keys, solver=solver, atol=tol, rtol=tol, max_iterations=max_iterations,
            window=window, damping=damping,
        )  # fmt: skip
    states = jax.vmap(to_state)(result.states)
    finite = _all_finite(states)
    info = ChainInfo(
        step_info=result.aux,
        num_iterations=result.num_iterations,
        converged=result.converged & finite,
        residual=result.residual,
        fallback=result.fallback,
        num_sequential_steps=result.num_sequential_steps,
        num_sensitive_steps=result.num_sensitive_steps,
    )
    _warn(info, finite, "parallel_chain")
    return states, info


def sequential_chain(
    step_fn: Callable | Any, initial_state: Any, rng_key: jax.Array, num_steps: int
) -> tuple[Any, ChainInfo]:
    """Run ``num_steps`` MCMC steps one after the other (`lax.scan`), same random numbers.

    Args:
        step_fn: a BlackJAX-style step ``step(rng_key, state) -> (state, info)`` or a
            `blackjax.base.SamplingAlgorithm`.
        initial_state: the state x_0.
        rng_key: PRNG key, split into one key per step.
        num_steps: chain length T (a Python int).

    Returns:
        ``(states, info)`` as in `parallel_chain` (``num_iterations = num_steps``);
        ``info.converged`` is False, with a `RuntimeWarning` outside ``jit``, when the chain
        has non-finite values (e.g. a NaN log-density throughout).

    Raises:
        TypeError: ``initial_state`` is not a state of ``step_fn`` (e.g. a bare position:
            pass ``init_fn(position)``), ``rng_key`` is not a PRNG key, non-integer
            ``num_steps``.
        ValueError: ``num_steps`` < 1.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    _check_key(rng_key)
    step, init = _resolve(step_fn, None)
    _check_state(step, initial_state, rng_key, init)
    keys = jax.random.split(rng_key, num_steps)

    def body(state, key):
        new_state, info = step(key, state)
        return new_state, (new_state, info)

    _, (states, step_info) = jax.lax.scan(body, initial_state, keys)
    dtype = jax.tree_util.tree_leaves(initial_state)[0].dtype
    finite = _all_finite(states)
    info = ChainInfo(
        step_info=step_info,
        num_iterations=jnp.asarray(num_steps),
        converged=finite,
        residual=jnp.zeros((), dtype),
        fallback=jnp.asarray(False),
        num_sequential_steps=jnp.asarray(num_steps),
        num_sensitive_steps=jnp.asarray(0),
    )
    _warn(info, finite, "sequential_chain")
    return states, info
