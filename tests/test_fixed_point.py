"""Tests of the parallel fixed-point solver for nonlinear recursions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel import Associative, Blocked, Sequential, Sharded, fixed_point
from numpyro_parallel.fixed_point import (
    Jacobi,
    Newton,
    OnlinePicard,
    QuasiNewton,
    certify,
    default_tolerances,
    sequential_recursion,
    solve_recursion,
)
from numpyro_parallel.scan import affine_recursion, associative_scan

SOLVERS = ["newton", "quasi_newton", "jacobi", "online_picard"]


def _rnn(d, num_steps, seed=0, scale=0.6):
    """Contractive map x_t = tanh(W x_{t-1} + u_t)."""
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    weights = scale * jax.random.normal(k1, (d, d)) / np.sqrt(d)
    inputs = jax.random.normal(k2, (num_steps, d))
    x0 = jax.random.normal(k3, (d,))
    return (lambda x, u: (jnp.tanh(weights @ x + u), jnp.sum(x))), x0, inputs


def _naive(fn, x0, inputs):
    x, out = np.asarray(x0), []
    for u in inputs:
        x = np.asarray(fn(jnp.asarray(x), u)[0])
        out.append(x)
    return np.stack(out)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("num_steps,window", [(1, None), (23, None), (23, 5), (23, 22), (23, 24)])
def test_matches_sequential_and_naive(solver, num_steps, window):
    fn, x0, inputs = _rnn(3, num_steps)
    result = solve_recursion(fn, x0, inputs, solver=solver, window=window)
    states, aux = sequential_recursion(fn, x0, inputs)
    assert bool(result.converged) and not bool(result.fallback)
    np.testing.assert_allclose(result.states, states, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.states, _naive(fn, x0, inputs), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.aux, aux, rtol=1e-9, atol=1e-9)
    assert float(result.residual) < 1e-9
    assert int(result.num_iterations) <= num_steps + 1


def test_newton_solves_linear_recursion_in_one_step():
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    matrices = 0.5 * jax.random.normal(k1, (31, 3, 3))
    offsets = jax.random.normal(k2, (31, 3))
    x0 = jax.random.normal(k3, (3,))
    fn = lambda x, inp: (inp[0] @ x + inp[1], None)
    result = solve_recursion(fn, x0, (matrices, offsets), solver="newton")
    np.testing.assert_allclose(
        result.states, affine_recursion(matrices, offsets, x0), rtol=1e-10, atol=1e-10
    )
    # one exact iteration plus one that confirms it
    assert int(result.num_iterations) == 2


@pytest.mark.parametrize("solver", SOLVERS)
def test_finite_termination_on_expanding_map(solver):
    # |f'| = 1.5: Jacobi needs T iterations, and still terminates with the exact chain.
    num_steps = 20
    inputs = jnp.sin(jnp.arange(num_steps, dtype=jnp.float64))[:, None]
    fn = lambda x, u: (1.5 * x + jnp.cos(x) * 0.1 + u, None)
    x0 = jnp.array([0.3])
    tol = 1e-13  # near machine precision: only finite termination can end the loop
    result = solve_recursion(
        fn, x0, inputs, solver=solver, atol=tol, rtol=tol, max_iterations=num_steps
    )
    states, _ = sequential_recursion(fn, x0, inputs)
    assert bool(result.converged)
    assert int(result.num_iterations) <= num_steps
    np.testing.assert_allclose(result.states, states, rtol=1e-12)


def test_damping_and_initial_guess():
    fn, x0, inputs = _rnn(2, 17, seed=3)
    states, _ = sequential_recursion(fn, x0, inputs)
    guess = states + 0.1
    for solver in (Newton(damping=0.5), Newton(), Jacobi(damping=0.5), QuasiNewton(0.8)):
        result = solve_recursion(fn, x0, inputs, solver=solver, initial_guess=guess)
        assert bool(result.converged)
        np.testing.assert_allclose(result.states, states, rtol=1e-9, atol=1e-9)


def test_hutchinson_diagonal_for_large_dimension():
    fn, x0, inputs = _rnn(70, 12, seed=4, scale=0.3)
    result = solve_recursion(fn, x0, inputs, solver="quasi_newton")
    states, _ = sequential_recursion(fn, x0, inputs)
    assert bool(result.converged)
    np.testing.assert_allclose(result.states, states, rtol=1e-9, atol=1e-9)


def test_non_convergence_falls_back_to_sequential():
    fn, x0, inputs = _rnn(3, 40, seed=5)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        result = solve_recursion(fn, x0, inputs, solver="jacobi", max_iterations=2)
    states, _ = sequential_recursion(fn, x0, inputs)
    assert not bool(result.converged) and bool(result.fallback)
    assert int(result.num_iterations) == 2
    assert int(result.num_sequential_steps) > 0
    np.testing.assert_allclose(result.states, states, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
def test_nan_never_counts_as_converged(solver):
    num_steps = 30
    inputs = jnp.arange(num_steps, dtype=jnp.float64)
    fn = lambda x, t: (jnp.where(t >= 10, jnp.nan, 0.5 * jnp.sin(x) + 0.1), None)
    x0 = jnp.array([0.2, -0.1])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        result = solve_recursion(fn, x0, inputs, solver=solver, max_iterations=25)
    states, _ = sequential_recursion(fn, x0, inputs)
    assert not bool(result.converged) and bool(result.fallback)
    assert int(result.status) == fixed_point.NON_FINITE
    # The loop stops as soon as the state after the converged prefix is NaN.
    assert int(result.num_iterations) <= 11
    np.testing.assert_allclose(result.states, states, equal_nan=True)
    assert np.all(np.isnan(result.states[10:]))


@pytest.mark.parametrize("solver", SOLVERS)
def test_infinite_iterates_never_certified(solver):
    # The chaotic logistic map: Newton's iterates overflow to -inf, and |inf - f(x)| <= atol +
    # rtol |inf| holds. Only finite states may be certified; the rest is recomputed exactly.
    fn = lambda x, u: (3.99 * x * (1.0 - x), None)
    x0, inputs = jnp.array([0.3]), jnp.zeros(64)
    states, _ = sequential_recursion(fn, x0, inputs)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        result = solve_recursion(fn, x0, inputs, solver=solver, max_iterations=16)
    assert not bool(result.converged) and bool(result.fallback)
    assert int(result.num_sequential_steps) == 64 - 16  # one exact step per iteration
    np.testing.assert_array_equal(result.states, states)
    assert float(result.residual) == 0.0


def test_certify_rejects_infinite_state():
    fn = lambda x, u: (0.5 * x + u, None)
    inputs = jnp.ones((6, 1))
    states, _ = sequential_recursion(fn, jnp.zeros(1), inputs)
    buffer = jnp.concatenate([jnp.zeros((1, 1)), states]).at[2].set(-jnp.inf)  # x_2 = -inf
    result = certify(fn, buffer, inputs, 0, jax.random.key(0), atol=1e-10, rtol=1e-10)
    assert bool(result.fallback) and int(result.num_sequential_steps) == 5
    np.testing.assert_array_equal(result.states, states)


def test_sensitive_step_flagged():
    # x_t = 0.5 x + 1[x > c_t]; put c_5 exactly at the sequential x_4 (decision on the edge).
    num_steps = 12
    thresholds = jnp.full((num_steps,), 10.0)
    fn = lambda x, c: (0.5 * x + jnp.where(x[0] > c, 1.0, 0.0), None)
    x0 = jnp.array([1.0])
    states, _ = sequential_recursion(fn, x0, thresholds)
    result = solve_recursion(fn, x0, thresholds)
    assert int(result.num_sensitive_steps) == 0
    thresholds = thresholds.at[5].set(states[4, 0])
    with pytest.warns(RuntimeWarning, match="num_sensitive_steps"):
        result = solve_recursion(fn, x0, thresholds)
    assert int(result.num_sensitive_steps) == 1


def test_jit_and_vmap_invariance():
    fn, x0, inputs = _rnn(3, 16, seed=6)
    solve = lambda x, u: solve_recursion(fn, x, u, solver="newton").states
    expected = solve(x0, inputs)
    np.testing.assert_allclose(jax.jit(solve)(x0, inputs), expected, rtol=1e-12, atol=1e-12)
    batch = jnp.stack([x0, -x0, 2 * x0])
    batched = jax.vmap(solve, in_axes=(0, None))(batch, inputs)
    for i in range(3):
        np.testing.assert_allclose(batched[i], solve(batch[i], inputs), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("solver", SOLVERS)
def test_float32(solver):
    fn64, x0, inputs = _rnn(3, 50, seed=7)
    x0, inputs = x0.astype(jnp.float32), inputs.astype(jnp.float32)
    fn = lambda x, u: jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), fn64(x, u))
    result = solve_recursion(fn, x0, inputs, solver=solver)
    states, _ = sequential_recursion(fn, x0, inputs)
    assert result.states.dtype == jnp.float32
    assert bool(result.converged) and bool(jnp.all(jnp.isfinite(result.states)))
    np.testing.assert_allclose(result.states, states, rtol=1e-3, atol=1e-3)
    assert default_tolerances(jnp.float32) == (1e-4, 1e-4)


def test_bad_input():
    fn, x0, inputs = _rnn(2, 5)
    with pytest.raises(ValueError, match="solver"):
        solve_recursion(fn, x0, inputs, solver="picard")
    with pytest.raises(ValueError, match="initial_state"):
        solve_recursion(fn, x0[None], inputs)
    with pytest.raises(ValueError, match="window"):
        solve_recursion(fn, x0, inputs, window=0)
    with pytest.raises(ValueError, match=r"Newton\.damping"):
        solve_recursion(fn, x0, inputs, solver=Newton(damping=1.5))
    with pytest.raises(TypeError, match=r"Jacobi\.damping"):
        Jacobi(damping="half")
    with pytest.raises(ValueError, match="exact_diagonal_max_dim"):
        QuasiNewton(exact_diagonal_max_dim=-1)
    with pytest.raises(TypeError, match="solver"):
        solve_recursion(fn, x0, inputs, solver=Associative())
    with pytest.raises(ValueError, match="strategy"):
        solve_recursion(fn, x0, inputs, strategy="parallel")
    with pytest.raises(ValueError, match="initial_guess"):
        solve_recursion(fn, x0, inputs, initial_guess=jnp.zeros((4, 2)))
    with pytest.raises(TypeError, match="floating"):
        solve_recursion(fn, jnp.array([1, 2]), inputs)
    with pytest.raises(ValueError, match="`atol`"):
        solve_recursion(fn, x0, inputs, atol=-1e-6)
    with pytest.raises(ValueError, match="`rtol`"):
        solve_recursion(fn, x0, inputs, rtol=float("inf"))
    with pytest.raises(ValueError, match="`max_iterations`"):
        solve_recursion(fn, x0, inputs, max_iterations=0)
    with pytest.raises(TypeError, match="`window`"):
        solve_recursion(fn, x0, inputs, window=2.0)


@pytest.mark.parametrize(
    "strategy,solver",
    [
        (Sequential(), Newton()),
        (Associative(), QuasiNewton()),
        (Blocked(3), OnlinePicard()),
        ("auto", Newton()),
        (Associative(), Newton()),
        (Sharded(), Newton()),
        (Sharded(), Jacobi()),
    ],
)
def test_every_strategy_gives_the_sequential_solution(strategy, solver):
    # The strategy runs the solver's linear recursions (Sequential(): no iteration at all).
    fn, x0, inputs = _rnn(3, 13, seed=8)
    expected = _naive(fn, x0, inputs)
    result = solve_recursion(fn, x0, inputs, solver=solver, strategy=strategy)
    np.testing.assert_allclose(result.states, expected, rtol=1e-10, atol=1e-12)
    assert int(result.status) == fixed_point.OK and bool(result.converged)
    if isinstance(strategy, Sequential):
        assert int(result.num_sequential_steps) == 13 and float(result.residual) == 0.0
    else:
        assert int(result.num_sequential_steps) == 0


def test_online_picard_restarting_sum_is_associative():
    # OnlinePicard's prefix sum restarts at every settled step: a segmented sum, associative
    # for every pattern of restarts (checked on all 8 of three elements, and as a scan).
    from numpyro_parallel.fixed_point.solvers import _restarting_sum

    values = jax.random.normal(jax.random.key(2), (3, 4))
    for flags in np.ndindex(2, 2, 2):
        e = [(values[i], jnp.asarray(bool(flags[i]))) for i in range(3)]
        left = _restarting_sum(_restarting_sum(e[0], e[1]), e[2])
        right = _restarting_sum(e[0], _restarting_sum(e[1], e[2]))
        for a, b in zip(left, right, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)
    restarts = jnp.array([True, False, False, True, False, False, False])
    increments = jax.random.normal(jax.random.key(3), (7, 2))
    sums, _ = associative_scan(_restarting_sum, (increments, restarts), strategy=Blocked(2))
    expected, total = [], np.zeros(2)
    for value, restart in zip(np.asarray(increments), np.asarray(restarts), strict=True):
        total = value if restart else total + value
        expected.append(total)
    np.testing.assert_allclose(sums, np.stack(expected), rtol=1e-13, atol=1e-13)


def test_status_names_and_solver_shorthands():
    assert fixed_point.STATUS_NAMES[fixed_point.FALLBACK] == "fallback"
    assert fixed_point.as_solver("online_picard") == OnlinePicard()
    assert fixed_point.as_solver("quasi_newton") == QuasiNewton()


def _naive_map_iterations(map_fn, z, atol, max_iterations):
    """Plain Python loop: iterations until max |z_new - z| <= atol, and the last change."""
    for i in range(1, max_iterations + 1):
        new = map_fn(z)
        change = float(np.max(np.abs(new - z)))
        z = new
        if change <= atol:
            return i, change, z
    return max_iterations, change, z


def test_iterate_map_reaches_the_fixed_point_like_a_plain_loop():
    a = jnp.array([[0.5, 0.2], [-0.1, 0.3]])
    b = jnp.array([1.0, -2.0])
    map_fn = lambda z: a @ z + b
    exact = np.linalg.solve(np.eye(2) - np.asarray(a), np.asarray(b))
    result = fixed_point.iterate_map(map_fn, jnp.zeros(2), atol=1e-12, rtol=0.0, max_iterations=200)
    iterations, change, z = _naive_map_iterations(map_fn, jnp.zeros(2), 1e-12, 200)
    assert int(result.status) == fixed_point.OK and bool(result.converged)
    assert int(result.num_iterations) == iterations
    np.testing.assert_allclose(result.residual, change, rtol=1e-12)
    np.testing.assert_allclose(result.states, z, rtol=1e-14)
    np.testing.assert_allclose(result.states, exact, rtol=1e-10)
    # jit and vmap over the offset give the same fixed points.
    offsets = jnp.stack([b, -b, 2 * b])
    batched = jax.jit(
        jax.vmap(
            lambda c: (
                fixed_point.iterate_map(
                    lambda z: a @ z + c, jnp.zeros(2), atol=1e-12, rtol=0.0, max_iterations=200
                ).states
            )
        )
    )(offsets)
    np.testing.assert_allclose(batched[0], result.states, rtol=1e-14)
    np.testing.assert_allclose(batched[2], 2 * result.states, rtol=1e-10)


def test_iterate_map_reports_the_cap_and_non_finite_iterates():
    with pytest.warns(RuntimeWarning, match="did not converge within `max_iterations` = 3"):
        slow = fixed_point.iterate_map(
            lambda z: 0.99 * z + 1.0, jnp.zeros(1), atol=1e-12, rtol=0.0, max_iterations=3
        )
    assert int(slow.status) == fixed_point.MAX_ITERATIONS and not bool(slow.converged)
    assert int(slow.num_iterations) == 3
    np.testing.assert_allclose(slow.states, [1.0 + 0.99 + 0.99**2], rtol=1e-14)
    # The second iterate is NaN: the loop stops there, residual NaN.
    with pytest.warns(RuntimeWarning, match="non-finite"):
        blow_up = fixed_point.iterate_map(
            lambda z: jnp.where(z > 0.5, jnp.nan, z + 1.0), jnp.zeros(1), atol=0.0, rtol=0.0,
            max_iterations=50,
        )  # fmt: skip
    assert int(blow_up.status) == fixed_point.NON_FINITE and int(blow_up.num_iterations) == 2
    assert np.isnan(float(blow_up.residual))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        start_nan = fixed_point.iterate_map(
            lambda z: z, jnp.full(1, jnp.nan), atol=1e-6, rtol=0.0, max_iterations=5
        )
    assert int(start_nan.status) == fixed_point.NON_FINITE
    assert int(start_nan.num_iterations) == 0
    assert fixed_point.STATUS_NAMES[fixed_point.MAX_ITERATIONS] == "max_iterations"


def test_bad_optional_arguments_name_the_argument():
    fn = lambda x, u: (jnp.tanh(0.5 * x) + u, None)
    x0, u = jnp.zeros(2), jnp.ones((5, 2))
    with pytest.raises(TypeError, match="`decisions_fn` must be callable"):
        solve_recursion(fn, x0, u, decisions_fn=3, progress_bar=False)
    with pytest.raises(TypeError, match="`rng_key` must be a single PRNG key"):
        solve_recursion(fn, x0, u, rng_key=3, progress_bar=False)
    result = solve_recursion(fn, x0, u, initial_guess=np.zeros((5, 2)).tolist(), progress_bar=False)
    np.testing.assert_allclose(result.states, sequential_recursion(fn, x0, u)[0], rtol=1e-9)
    assert fixed_point.QuasiNewton(exact_diagonal_max_dim=np.int64(2)).exact_diagonal_max_dim == 2
    with pytest.raises(TypeError, match="exact_diagonal_max_dim"):
        fixed_point.QuasiNewton(exact_diagonal_max_dim=2.0)


def test_iterate_map_checks_the_map_and_accepts_integer_states():
    iterate = functools.partial(fixed_point.iterate_map, atol=0.0, rtol=0.0, max_iterations=10)
    with pytest.raises(ValueError, match="`map_fn` must return a state"):
        iterate(lambda z: (z, z), jnp.ones(3))
    with pytest.raises(ValueError, match="`map_fn` must return a state"):
        iterate(lambda z: z.astype(jnp.float32), jnp.ones(3))
    with pytest.raises(ValueError, match="`initial_state` must contain"):
        iterate(lambda z: z, ())
    result = iterate(lambda z: z // 2, jnp.full(3, 8))
    assert int(result.status) == fixed_point.OK and np.all(np.asarray(result.states) == 0)
