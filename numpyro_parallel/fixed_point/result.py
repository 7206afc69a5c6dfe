"""The result of every fixed-point solve, its status, and the certification step.

After the solver loop the true residual ``max_t |x_t - f(x_{t-1})|`` is evaluated once (a
step is certified only when its state and ``f`` of its predecessor are finite); the states
past the certified prefix are recomputed sequentially, so a result is always the recursion's
solution. Steps whose output jumps under a perturbation of the size of the tolerance (an
accept decision within that margin of its threshold) are counted.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from numpyro_parallel._checks import check_tolerance, concrete, warn_if

__all__ = [
    "FALLBACK",
    "MAX_ITERATIONS",
    "NON_FINITE",
    "OK",
    "STATUS_NAMES",
    "STUCK_MIN_STEPS",
    "FixedPointResult",
    "certify",
]

OK, FALLBACK, NON_FINITE, MAX_ITERATIONS = 0, 1, 2, 3
STATUS_NAMES = ("ok", "fallback", "non_finite", "max_iterations")
SENSITIVITY_FACTOR = 10.0
JUMP_FACTOR = 1e4
#: Shortest chain whose never moving is reported as ``stuck``: at an acceptance rate of 0.2,
#: a healthy chain stays put for 50 steps with probability 0.8**50 ~ 1e-5.
STUCK_MIN_STEPS = 50


class FixedPointResult(NamedTuple):
    """Solution of a recursion (or an MCMC chain) and the solver's report.

    Attributes:
        states: the states x_1..x_T, stacked on a leading time axis (for an MCMC chain: the
            sampler states).
        aux: auxiliary outputs of the step at the solution, stacked over time (for an MCMC
            chain: the step's info, e.g. acceptance rates).
        status: int32 ``OK`` (0), ``FALLBACK`` (1: some steps failed the final residual
            check, after ``max_iterations`` iterations or when the iterations stopped
            changing; they were recomputed sequentially, so the states are still exact),
            ``NON_FINITE`` (2: the states contain NaN/Inf) or, for `iterate_map` (no
            sequential fallback exists), ``MAX_ITERATIONS`` (3: the cap was reached before
            convergence); names in ``STATUS_NAMES``.
        converged: ``status == OK``.
        num_iterations: parallel iterations performed (T for the sequential strategy).
        residual: ``max_t |x_t - f(x_{t-1})|`` (max norm) of the returned states.
        fallback: whether states past the certified prefix were recomputed sequentially.
        num_sequential_steps: number of states computed sequentially (T for the sequential
            strategy).
        num_sensitive_steps: steps whose output jumps under a perturbation of the input of
            the size of the tolerance (e.g. an accept/reject decision within that margin of
            its threshold); such steps may differ from an exact sequential evaluation.
        stuck: (MCMC chains, `numpyro_parallel.mcmc.run_chain`) the chain never left its
            initial position in ``num_steps >= 50`` steps (``STUCK_MIN_STEPS``): every proposal was
            rejected (a step size far too large, an invalid sampler parameter, a start where
            the density is zero or NaN nearby). Always False for `solve_recursion` and
            `iterate_map`, whose recursions need not move.
    """

    states: Any
    aux: Any
    status: jax.Array
    converged: jax.Array
    num_iterations: jax.Array
    residual: jax.Array
    fallback: jax.Array
    num_sequential_steps: jax.Array
    num_sensitive_steps: jax.Array
    stuck: jax.Array


def make_result(states, aux, *, finite, fallback, **fields) -> FixedPointResult:
    """A `FixedPointResult` whose status follows from ``finite`` and ``fallback``."""
    status = jnp.where(finite, jnp.where(fallback, FALLBACK, OK), NON_FINITE).astype(jnp.int32)
    return FixedPointResult(
        states=states, aux=aux, status=status, converged=status == OK, fallback=fallback,
        stuck=jnp.asarray(False), **fields,
    )  # fmt: skip


def sequential_result(states: Any, aux: Any, num_steps: int, dtype: Any) -> FixedPointResult:
    """The result of a sequential evaluation: exact, OK unless the states are non-finite."""
    return make_result(
        states, aux, finite=all_finite(states), fallback=jnp.asarray(False),
        num_iterations=jnp.asarray(num_steps), residual=jnp.zeros((), dtype),
        num_sequential_steps=jnp.asarray(num_steps), num_sensitive_steps=jnp.asarray(0),
    )  # fmt: skip


def all_finite(states: Any) -> jax.Array:
    """Whether every floating leaf of ``states`` (e.g. a cached log-density) is finite."""
    finite = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree_util.tree_leaves(states)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(finite)) if finite else jnp.asarray(True)


def leading_count(ok: jax.Array) -> jax.Array:
    """Length of the leading run of True values."""
    return jnp.sum(jnp.cumprod(ok.astype(jnp.int32)))


def within(delta: jax.Array, x: jax.Array, atol: Any, rtol: Any) -> jax.Array:
    """Per step: ``|delta| <= atol + rtol |x|`` with ``x`` finite (``inf <= inf`` holds)."""
    return jnp.all((jnp.abs(delta) <= atol + rtol * jnp.abs(x)) & jnp.isfinite(x), axis=-1)


def certify(fn, buffer, inputs, num_iterations, sensitivity_key, *, atol, rtol):
    """Certify an iterate with the true residual; recompute sequentially what fails.

    Evaluates ``f`` once at all states, keeps the leading run of steps with
    ``|x_t - f(x_{t-1})| <= atol + rtol |x_t|`` with ``x_t`` and ``f(x_{t-1})`` finite,
    recomputes every later step sequentially, and counts the steps whose output jumps under a
    perturbation of the size of the tolerance (one batched evaluation at the states and on
    both sides of them: a decision may flip in either direction).

    Args:
        fn: the recursion ``fn(x, input) -> (x_next, aux)``.
        buffer: ``(T + 1, d)`` iterate including the initial state.
        inputs: per-step inputs with leading axis T.
        num_iterations: parallel iterations used (reported).
        sensitivity_key: PRNG key for the random perturbation directions.
        atol: absolute tolerance (a number >= 0).
        rtol: relative tolerance (a number >= 0).

    Returns:
        A `FixedPointResult`.

    Raises:
        TypeError: ``atol`` or ``rtol`` is None or not a number.
        ValueError: negative or non-finite ``atol``/``rtol``.
    """
    atol, rtol = check_tolerance("atol", atol), check_tolerance("rtol", rtol)
    if atol is None or rtol is None:
        raise TypeError("`atol` and `rtol` must be numbers >= 0; got None.")
    num_steps = buffer.shape[0] - 1
    fx = jax.vmap(lambda x, inp: fn(x, inp)[0])(buffer[:-1], inputs)
    certified = leading_count(residual_ok(buffer[1:], fx, atol, rtol))

    buffer = recompute_from(fn, buffer, inputs, certified)
    states, prev = buffer[1:], buffer[:-1]
    signs = jax.random.rademacher(sensitivity_key, prev.shape, prev.dtype)
    fx, aux, jump = evaluate_with_sensitivity(fn, prev, inputs, signs, atol=atol, rtol=rtol)
    return make_result(
        states,
        aux,
        finite=jnp.all(jnp.isfinite(states)),
        fallback=certified < num_steps,
        num_iterations=jnp.asarray(num_iterations),
        residual=jnp.max(jnp.abs(states - fx)),
        num_sequential_steps=num_steps - certified,
        num_sensitive_steps=jnp.sum(jump),
    )


def recompute_from(fn, buffer: jax.Array, inputs: Any, start: jax.Array) -> jax.Array:
    """``buffer`` (``(n + 1, d)``: a state, then n states) with rows ``start + 1 .. n``
    recomputed one after the other, ``buffer[i + 1] = fn(buffer[i], inputs[i])``: the
    sequential fallback past a certified prefix (nothing when ``start >= n``)."""

    def body(carry):
        i, buf = carry
        x_next, _ = fn(buf[i], jax.tree_util.tree_map(lambda a: a[i], inputs))
        return i + 1, buf.at[i + 1].set(x_next)

    num_steps = buffer.shape[0] - 1
    return lax.while_loop(lambda c: c[0] < num_steps, body, (start, buffer))[1]


def residual_ok(states: jax.Array, fx: jax.Array, atol: Any, rtol: Any) -> jax.Array:
    """Per step: ``|x_t - f(x_{t-1})| <= atol + rtol |x_t|`` with both finite."""
    finite = jnp.all(jnp.isfinite(fx) & jnp.isfinite(states), axis=-1)
    return within(states - fx, states, atol, rtol) & finite


def evaluate_with_sensitivity(fn, prev, inputs, signs, *, atol, rtol):
    """``(f(prev), aux, jump)``: the steps at their predecessors, and per step whether the
    output jumps under the perturbations ``±delta * signs`` of the size of the tolerance (one
    batched evaluation at the states and on both sides of them: a decision may flip in either
    direction)."""
    num_steps = prev.shape[0]
    delta = SENSITIVITY_FACTOR * (atol + rtol * jnp.abs(prev))
    points = jnp.concatenate([prev, prev + delta * signs, prev - delta * signs], axis=0)
    tripled = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a, a], axis=0), inputs)
    f_all, aux = jax.vmap(fn)(points, tripled)
    aux = jax.tree_util.tree_map(lambda a: a[:num_steps], aux)
    fx, f_plus, f_minus = f_all[:num_steps], f_all[num_steps:-num_steps], f_all[-num_steps:]
    change = jnp.maximum(jnp.abs(f_plus - fx), jnp.abs(f_minus - fx)).max(axis=-1)
    return fx, aux, change > JUMP_FACTOR * jnp.max(delta, axis=-1)


def warn_result(result: FixedPointResult, caller: str) -> None:
    """`RuntimeWarning`s outside ``jit`` for a fallback, non-finite states, a stuck chain and
    sensitive steps."""
    steps = concrete(result.num_sequential_steps)
    warn_if(
        result.status == FALLBACK,
        f"{caller} did not converge: "
        f"{'some' if steps is None else int(np.max(steps))} step(s) failed the final check "
        "|x_t - f(x_{t-1})| <= atol + rtol |x_t| (after `max_iterations` iterations, or once "
        "the iterates stopped changing) and were recomputed sequentially, so the states are "
        "exact but part of the parallel work was wasted (result.status is FALLBACK, "
        "result.converged is False). Raise `max_iterations`, or prefer the Newton solver.",
        stacklevel=4,
    )
    warn_if(
        result.status == NON_FINITE,
        f"{caller}: the solution contains non-finite values (NaN/Inf state, e.g. a chain "
        "stuck at an initial point where the log-density is NaN; the steps from the first "
        "non-finite one on were computed sequentially); result.status is NON_FINITE, "
        "result.converged is False.",
        stacklevel=4,
    )
    warn_if(
        result.stuck,
        f"{caller}: the chain is stuck: it never left its initial position (every proposal "
        "was rejected: a step size far too large, an invalid sampler parameter, or a start "
        "where the density is zero or NaN nearby); result.stuck is True.",
        stacklevel=4,
    )
    warn_if(
        result.num_sensitive_steps > 0,
        f"{caller}: some step(s) have an output (e.g. an accept decision) within solver "
        "tolerance of a jump (result.num_sensitive_steps); tighten `atol`/`rtol` for an "
        "exact match with the sequential evaluation.",
        stacklevel=4,
    )
