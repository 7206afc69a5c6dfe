"""Solve a nonlinear recursion ``x_t = f(x_{t-1}, u_t)`` for all t at once.

The recursion is treated as a system of T equations in the unknowns x_1..x_T and solved by
fixed-point iteration, every iteration being parallel over time:

- ``"jacobi"`` (Picard): ``x_t <- f(x_{t-1})`` for all t.
- ``"newton"`` (DEER; Lim et al. 2024, "Parallelizing non-linear sequential models over the
  sequence length"): linearise ``f`` around the current iterate and solve the linear recursion
  ``x_t = J_t x_{t-1} + (f(x_{t-1}) - J_t x_{t-1})`` with the associative scan
  `numpyro_parallel.scan.affine_recursion`.
- ``"quasi_newton"`` (quasi-DEER; Gonzalez et al. 2024, "Towards scalable and stable
  parallelization of nonlinear RNNs"; Zoltowski et al. 2025, "Parallelizing MCMC across the
  sequence length"): only the diagonal of ``J_t`` (exact for small d, a one-probe
  Hutchinson estimate for large d), clipped to [-1, 1] for stability.

Each iteration makes the first not-yet-converged state exact (its predecessor is), so every
solver terminates in at most T iterations. The loop advances past the converged prefix, which
also gives a sliding-window mode (iterate on W steps at a time) with O(W d^2) memory. NaN/Inf
iterates never count as converged. After the loop the true residual
``max_t |x_t - f(x_{t-1})|`` is evaluated once (a step is certified only when both its state
and ``f`` of its predecessor are finite); states past the certified prefix (if any) are
recomputed sequentially, so the result is always the recursion's solution. A result that
needed the fallback has ``converged=False`` and, outside ``jit``, `solve_recursion` emits a
`RuntimeWarning`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from numpyro_parallel._checks import check_positive_int, concrete, warn_if
from numpyro_parallel.scan import affine_recursion

__all__ = [
    "SOLVERS",
    "FixedPointResult",
    "certify",
    "default_max_iterations",
    "default_tolerances",
    "sequential_recursion",
    "solve_recursion",
]

SOLVERS = ("jacobi", "newton", "quasi_newton")
EXACT_DIAGONAL_MAX_DIM = 64
SENSITIVITY_FACTOR = 10.0
JUMP_FACTOR = 1e4


class FixedPointResult(NamedTuple):
    """Solution of a recursion and solver diagnostics.

    Attributes:
        states: ``(T, d)`` states x_1..x_T.
        aux: auxiliary outputs of ``fn`` from one final evaluation at the solution, stacked
            over time.
        converged: True when the parallel iteration converged and its result was certified
            (no sequential fallback was needed).
        num_iterations: parallel iterations performed.
        residual: ``max_t |x_t - f(x_{t-1})|`` (max norm) of the returned states.
        fallback: True when states past the certified prefix were recomputed sequentially.
        num_sequential_steps: number of states recomputed sequentially by the fallback.
        num_sensitive_steps: steps whose output jumps under a perturbation of the input of
            the size of the tolerance (e.g. an accept/reject decision within that margin of
            its threshold); such steps may differ from an exact sequential evaluation.
    """

    states: jax.Array
    aux: Any
    converged: jax.Array
    num_iterations: jax.Array
    residual: jax.Array
    fallback: jax.Array
    num_sequential_steps: jax.Array
    num_sensitive_steps: jax.Array


def default_tolerances(dtype: Any) -> tuple[float, float]:
    """Default ``(atol, rtol)`` of the stopping rule for a floating dtype.

    Args:
        dtype: dtype of the states.

    Returns:
        ``(1e-10, 1e-10)`` for float64, ``(1e-4, 1e-4)`` for lower precision.

    Raises:
        TypeError: ``dtype`` is not a floating dtype.
    """
    try:
        floating = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        floating = False
    if not floating:
        raise TypeError(f"`dtype` must be a floating dtype; got {dtype!r}.")
    if jnp.finfo(dtype).bits >= 64:
        return 1e-10, 1e-10
    return 1e-4, 1e-4


def default_max_iterations(num_steps: int, window: int) -> int:
    """Default iteration cap: T for short chains, else enough to sweep all windows.

    Args:
        num_steps: chain length T.
        window: window length W.

    Returns:
        ``min(T, max(512, 8 ceil(T / W)))``.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    window = check_positive_int("window", window)
    return min(num_steps, max(512, 8 * math.ceil(num_steps / window)))


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
    _check(initial_state, inputs)
    fn = _cast_output(fn, initial_state.dtype)

    def body(x, inp):
        x_next, aux = fn(x, inp)
        return x_next, (x_next, aux)

    _, (states, aux) = lax.scan(body, initial_state, inputs)
    return states, aux


def check_tolerance(name: str, value: Any) -> Any:
    """Return a tolerance, or raise unless it is None or a finite number >= 0 (concrete)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real | jax.Array):
        raise TypeError(f"`{name}` must be a number >= 0 or None; got {type(value).__name__}.")
    array = concrete(value)
    if array is not None and (array.ndim or not (math.isfinite(array) and array >= 0)):
        raise ValueError(f"`{name}` must be a finite scalar >= 0; got {value!r}.")
    return value


def check_window(window: Any) -> int | None:
    """Return ``window``, or raise unless it is None or a positive int."""
    return None if window is None else check_positive_int("window", window)


def _check(initial_state: Any, inputs: Any) -> int:
    if not hasattr(initial_state, "ndim") or initial_state.ndim != 1:
        raise ValueError(
            f"`initial_state` must be a 1-D array of shape (d,); got {jnp.shape(initial_state)}."
        )
    if not jnp.issubdtype(initial_state.dtype, jnp.inexact):
        raise TypeError(f"`initial_state` must be floating point; got {initial_state.dtype}.")
    leaves = jax.tree_util.tree_leaves(inputs)
    if not leaves or any(jnp.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError("`inputs` must be a pytree of arrays with a leading time axis (T, ...).")
    lengths = {leaf.shape[0] for leaf in leaves}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"`inputs` leaves must share a leading axis T >= 1; got {lengths}.")
    return lengths.pop()


def _cast_output(fn: Callable, dtype: Any) -> Callable:
    def cast(x, inp):
        x_next, aux = fn(x, inp)
        return x_next.astype(dtype), aux

    return cast


def _tree_slice(tree: Any, start: jax.Array, size: int) -> Any:
    return jax.tree_util.tree_map(lambda a: lax.dynamic_slice_in_dim(a, start, size, 0), tree)


def _leading_count(ok: jax.Array) -> jax.Array:
    return jnp.sum(jnp.cumprod(ok.astype(jnp.int32)))


def _within(delta: jax.Array, x: jax.Array, atol: float, rtol: float) -> jax.Array:
    """Per step: ``|delta| <= atol + rtol |x|`` with ``x`` finite (``inf <= inf`` holds)."""
    return jnp.all((jnp.abs(delta) <= atol + rtol * jnp.abs(x)) & jnp.isfinite(x), axis=-1)


def _update(fn, solver, anchor, xs, inputs, damping, probe_key):
    """One solver iteration on a window; returns (proposed states, f(previous states))."""
    prev = jnp.concatenate([anchor[None], xs[:-1]], axis=0)
    f_only = lambda x, inp: fn(x, inp)[0]
    if solver == "jacobi":
        fx = jax.vmap(f_only)(prev, inputs)
        return fx, fx
    d = anchor.shape[0]
    if solver == "newton" or d <= EXACT_DIAGONAL_MAX_DIM:
        value_and_jac = jax.jacfwd(lambda x, inp: (f_only(x, inp),) * 2, has_aux=True)
        jac, fx = jax.vmap(value_and_jac)(prev, inputs)
        if solver == "newton":
            offsets = fx - jnp.einsum("tij,tj->ti", jac, prev)
            new = affine_recursion(jac, offsets, anchor)
        else:
            diag = jnp.clip(jnp.diagonal(jac, axis1=-2, axis2=-1), -1.0, 1.0)
            new = affine_recursion(diag, fx - diag * prev, anchor, diagonal=True)
    else:
        signs = jax.random.rademacher(probe_key, prev.shape, dtype=prev.dtype)
        fx, jv = jax.vmap(lambda x, v, inp: jax.jvp(lambda y: f_only(y, inp), (x,), (v,)))(
            prev, signs, inputs
        )
        diag = jnp.clip(signs * jv, -1.0, 1.0)
        new = affine_recursion(diag, fx - diag * prev, anchor, diagonal=True)
    if damping != 1.0:
        new = xs + damping * (new - xs)
    finite = jnp.all(jnp.isfinite(new), axis=-1, keepdims=True)
    return jnp.where(finite, new, fx), fx


def solve_recursion(
    fn: Callable[[jax.Array, Any], tuple[jax.Array, Any]],
    initial_state: jax.Array,
    inputs: Any,
    *,
    solver: str = "newton",
    atol: float | None = None,
    rtol: float | None = None,
    max_iterations: int | None = None,
    window: int | None = None,
    damping: float = 1.0,
    initial_guess: jax.Array | None = None,
    probe_key: jax.Array | None = None,
) -> FixedPointResult:
    """Solve ``x_t, aux_t = fn(x_{t-1}, inputs[t-1])``, t = 1..T, by parallel iteration.

    Args:
        fn: one step, mapping ``(x_prev (d,), input_t)`` to ``(x_t (d,), aux_t)``; must be
            differentiable in ``x_prev`` (forward mode) for the Newton solvers.
        initial_state: ``(d,)`` state x_0.
        inputs: pytree with a leading time axis of length T (e.g. PRNG keys).
        solver: ``"newton"`` (DEER), ``"quasi_newton"`` (diagonal Jacobian) or ``"jacobi"``.
        atol: absolute tolerance of the rule ``|x^k - x^{k-1}| <= atol + rtol |x^k|``
            (elementwise); dtype-dependent default (`default_tolerances`).
        rtol: relative tolerance of the same rule.
        max_iterations: cap on parallel iterations; past it, the states after the certified
            prefix are computed sequentially. Default `default_max_iterations`.
        window: number of time steps iterated at once (sliding window, O(W d^2) memory for
            Newton); default all T.
        damping: step length in (0, 1] applied to the update (1 = undamped).
        initial_guess: ``(T, d)`` starting iterate; default x_0 repeated.
        probe_key: PRNG key for the Hutchinson probe of ``"quasi_newton"`` when
            d > 64; default ``jax.random.key(0)``.

    Returns:
        A `FixedPointResult`. ``converged`` is False when part of the chain had to be
        recomputed sequentially (not converged within ``max_iterations``, or non-finite
        states); then, outside ``jit``, a `RuntimeWarning` is emitted.

    Raises:
        ValueError: unknown ``solver``; negative or non-finite ``atol``/``rtol``;
            ``max_iterations`` or ``window`` < 1; ``damping`` outside (0, 1]; shapes.
        TypeError: non-integer ``max_iterations``/``window``; non-floating ``initial_state``.
    """
    result = _solve_recursion(
        fn, initial_state, inputs, solver=solver, atol=atol, rtol=rtol,
        max_iterations=max_iterations, window=window, damping=damping,
        initial_guess=initial_guess, probe_key=probe_key,
    )  # fmt: skip
    warn_fallback(result, "solve_recursion")
    return result


def warn_fallback(result: FixedPointResult, caller: str) -> None:
    """`RuntimeWarning` (outside ``jit``) when ``result`` needed the sequential fallback."""
    non_finite = concrete(result.states)
    non_finite = non_finite is not None and not np.all(np.isfinite(non_finite))
    steps = concrete(result.num_sequential_steps)
    warn_if(
        result.fallback,
        f"{caller} did not converge within `max_iterations`"
        + (" (the recursion has non-finite states)" if non_finite else "")
        + f"; {'some' if steps is None else int(np.max(steps))} step(s) were recomputed "
        "sequentially (result.converged is False).",
        stacklevel=4,
    )


def _solve_recursion(
    fn, initial_state, inputs, *, solver="newton", atol=None, rtol=None, max_iterations=None,
    window=None, damping=1.0, initial_guess=None, probe_key=None,
) -> FixedPointResult:  # fmt: skip
    """`solve_recursion` without the warning (callers report the fallback themselves)."""
    num_steps = _check(initial_state, inputs)
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"`solver` must be one of {SOLVERS}; got {solver!r}.")
    window = check_window(window)
    atol, rtol = check_tolerance("atol", atol), check_tolerance("rtol", rtol)
    if isinstance(damping, bool) or not isinstance(damping, numbers.Real):
        raise TypeError(f"`damping` must be a number in (0, 1]; got {damping!r}.")
    if not 0.0 < damping <= 1.0:
        raise ValueError(f"`damping` must lie in (0, 1]; got {damping}.")
    width = num_steps if window is None else min(window, num_steps)
    if max_iterations is None:
        max_iterations = default_max_iterations(num_steps, width)
    max_iterations = check_positive_int("max_iterations", max_iterations)
    default_atol, default_rtol = default_tolerances(initial_state.dtype)
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    d = initial_state.shape[0]
    guess_given = initial_guess is not None
    if initial_guess is None:
        initial_guess = jnp.broadcast_to(initial_state, (num_steps, d))
    elif initial_guess.shape != (num_steps, d):
        raise ValueError(
            f"`initial_guess` must have shape {(num_steps, d)}; got {initial_guess.shape}."
        )
    probe_key = jax.random.key(0) if probe_key is None else probe_key
    fn = _cast_output(fn, initial_state.dtype)

    with jax.default_matmul_precision("highest"):
        return _solve(
            fn, initial_state, inputs, initial_guess.astype(initial_state.dtype), probe_key,
            solver=solver, atol=atol, rtol=rtol, max_iterations=max_iterations, width=width,
            damping=damping, guess_given=guess_given,
        )  # fmt: skip


def _solve(
    fn, x0, inputs, guess, probe_key, *, solver, atol, rtol, max_iterations, width, damping,
    guess_given,
):  # fmt: skip
    num_steps = guess.shape[0]
    probe_key, sensitivity_key = jax.random.split(probe_key)
    offsets = jnp.arange(width)

    def cond(carry):
        _, prefix, iteration, _ = carry
        return (prefix < num_steps) & (iteration < max_iterations)

    def body(carry):
        buffer, prefix, iteration, frontier = carry
        start = jnp.minimum(prefix, num_steps - width)
        anchor = buffer[start]
        index = start + offsets
        xs = lax.dynamic_slice_in_dim(buffer, start + 1, width, 0)
        # States the window reaches for the first time start from the last state seen so far.
        xs = jnp.where((index >= frontier)[:, None], buffer[frontier], xs)
        key = jax.random.fold_in(probe_key, iteration)
        new, fx = _update(fn, solver, anchor, xs, _tree_slice(inputs, start, width), damping, key)
        frozen = (index < prefix)[:, None]
        exact = (index == prefix)[:, None]
        new = jnp.where(frozen, xs, jnp.where(exact, fx, new))
        finite = jnp.all(jnp.isfinite(new), axis=-1)
        ok = (_within(new - xs, new, atol, rtol) & finite) | frozen[:, 0]
        # The state right after the prefix is exact (its predecessor is), unless non-finite.
        exact_finite = jnp.any(exact[:, 0] & finite)
        advanced = jnp.maximum(start + _leading_count(ok), prefix + exact_finite.astype(int))
        prefix = advanced.astype(prefix.dtype)
        buffer = lax.dynamic_update_slice_in_dim(buffer, new, start + 1, 0)
        return buffer, prefix, iteration + 1, jnp.maximum(frontier, start + width)

    buffer = jnp.concatenate([x0[None], guess], axis=0)
    frontier = jnp.asarray(num_steps if guess_given else width)
    carry = (buffer, jnp.asarray(0), jnp.asarray(0), frontier)
    buffer, _, num_iterations, _ = lax.while_loop(cond, body, carry)

    return certify(fn, buffer, inputs, num_iterations, sensitivity_key, atol=atol, rtol=rtol)


def certify(fn, buffer, inputs, num_iterations, sensitivity_key, *, atol, rtol):
    """Certify an iterate with the true residual; recompute sequentially what fails.

    Shared by every parallel solver: evaluates ``f`` once at all states, keeps the leading
    run of steps with ``|x_t - f(x_{t-1})| <= atol + rtol |x_t|`` with ``x_t`` and
    ``f(x_{t-1})`` finite (an infinite state satisfies the inequality, so finiteness is required
    separately),
    recomputes every later step sequentially, and counts the steps whose output jumps under a
    perturbation of the size of the tolerance (one batched evaluation at the states and on
    both sides of them: a decision may flip in either direction).

    Args:
        fn: the recursion ``fn(x, input) -> (x_next, aux)``.
        buffer: ``(T + 1, d)`` iterate including the initial state.
        inputs: per-step inputs with leading axis T.
        num_iterations: parallel iterations used (reported).
        sensitivity_key: PRNG key for the random perturbation directions.
        atol: absolute tolerance.
        rtol: relative tolerance.

    Returns:
        A `FixedPointResult`.
    """
    atol, rtol = check_tolerance("atol", atol), check_tolerance("rtol", rtol)
    if atol is None or rtol is None:
        raise TypeError("`atol` and `rtol` must be numbers >= 0; got None.")
    num_steps = buffer.shape[0] - 1
    fx = jax.vmap(lambda x, inp: fn(x, inp)[0])(buffer[:-1], inputs)
    finite = jnp.all(jnp.isfinite(fx) & jnp.isfinite(buffer[1:]), axis=-1)
    ok = _within(buffer[1:] - fx, buffer[1:], atol, rtol) & finite
    certified = _leading_count(ok)

    def sequential_body(carry):
        i, buf = carry
        x_next, _ = fn(buf[i], jax.tree_util.tree_map(lambda a: a[i], inputs))
        return i + 1, buf.at[i + 1].set(x_next)

    _, buffer = lax.while_loop(lambda c: c[0] < num_steps, sequential_body, (certified, buffer))
    states, prev = buffer[1:], buffer[:-1]
    delta = SENSITIVITY_FACTOR * (atol + rtol * jnp.abs(prev))
    signs = jax.random.rademacher(sensitivity_key, prev.shape, prev.dtype)
    points = jnp.concatenate([prev, prev + delta * signs, prev - delta * signs], axis=0)
    tripled = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a, a], axis=0), inputs)
    f_all, aux = jax.vmap(fn)(points, tripled)
    aux = jax.tree_util.tree_map(lambda a: a[:num_steps], aux)
    fx, f_plus, f_minus = f_all[:num_steps], f_all[num_steps:-num_steps], f_all[-num_steps:]
    residual = jnp.max(jnp.abs(states - fx))
    change = jnp.maximum(jnp.abs(f_plus - fx), jnp.abs(f_minus - fx)).max(axis=-1)
    jump = change > JUMP_FACTOR * jnp.max(delta, axis=-1)
    fallback = certified < num_steps
    return FixedPointResult(
        states=states,
        aux=aux,
        converged=~fallback,
        num_iterations=num_iterations,
        residual=residual,
        fallback=fallback,
        num_sequential_steps=num_steps - certified,
        num_sensitive_steps=jnp.sum(jump),
    )
