"""run_chain: every solver and strategy == the sequential chain == naive reference (MALA, RWM,
HMC)."""

import warnings

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.mcmc import random_walk

from numpyro_parallel import Associative, Blocked, Sequential, fixed_point
from numpyro_parallel.fixed_point import solve_recursion
from numpyro_parallel.mcmc import run_chain
from tests.reference.mcmc import mala_chain, rwm_chain, ula_step

SOLVERS = ["newton", "quasi_newton", "jacobi"]
PRECISION = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])


def gaussian_logdensity(x):
    return -0.5 * x @ (jnp.asarray(PRECISION, dtype=x.dtype) @ x)


def _logistic_data():
    k1, k2 = jax.random.split(jax.random.key(11))
    features = jax.random.normal(k1, (30, 3))
    labels = jax.random.uniform(k2, (30,)) < jax.nn.sigmoid(features @ jnp.array([1.0, -1, 0.5]))
    return features, labels.astype(jnp.float64)


FEATURES, LABELS = _logistic_data()


def logistic_logdensity(beta):
    logits = FEATURES @ beta
    return jnp.sum(LABELS * logits - jnp.logaddexp(0.0, logits)) - 0.5 * beta @ beta


TARGETS = {"gaussian": gaussian_logdensity, "logistic": logistic_logdensity}


def make_algorithm(kernel, logdensity_fn):
    if kernel == "mala":
        return blackjax.mala(logdensity_fn, 0.3)
    if kernel == "rwm":
        return blackjax.additive_step_random_walk(logdensity_fn, random_walk.normal(0.7))
    step_size = 0.7 if logdensity_fn is gaussian_logdensity else 0.5  # both accept and reject
    return blackjax.hmc(logdensity_fn, step_size, jnp.ones(3), 4)


def assert_same_chain(parallel, sequential):
    (p_states, p_info), (s_states, s_info) = parallel, sequential
    np.testing.assert_allclose(p_states.position, s_states.position, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(p_info.aux.is_accepted, s_info.aux.is_accepted)


@pytest.mark.slow
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kernel", ["mala", "rwm", "hmc"])
@pytest.mark.parametrize("target", ["gaussian", "logistic"])
def test_parallel_equals_sequential(solver, kernel, target):
    algorithm = make_algorithm(kernel, TARGETS[target])
    state = algorithm.init(jnp.array([1.0, -0.5, 0.3]))
    key = jax.random.key(5)
    expected = run_chain(algorithm.step, state, key, 64, strategy="sequential")
    result = run_chain(algorithm.step, state, key, 64, solver=solver, init_fn=algorithm.init)
    assert_same_chain(result, expected)
    info = result[1]
    assert bool(info.converged) and not bool(info.fallback)
    assert int(info.num_iterations) <= 64 and float(info.residual) < 1e-6
    acceptance = np.mean(expected[1].aux.is_accepted)
    assert 0.1 < acceptance < 1.0  # the tests see both accepts and rejects


LENGTH_CASES = [("newton", 1), ("newton", 16), ("newton", 17), ("quasi_newton", 15), ("jacobi", 1)]


@pytest.mark.slow
@pytest.mark.parametrize("solver,num_steps", LENGTH_CASES)
def test_lengths_around_window(solver, num_steps):
    algorithm = make_algorithm("mala", logistic_logdensity)
    state = algorithm.init(jnp.zeros(3))
    key = jax.random.key(num_steps)
    expected = run_chain(algorithm.step, state, key, num_steps, strategy="sequential")
    result = run_chain(algorithm, state, key, num_steps, solver=solver, window=16)
    assert_same_chain(result, expected)
    assert bool(result[1].converged)


def test_full_state_iteration_without_init_fn():
    algorithm = make_algorithm("mala", gaussian_logdensity)
    state = algorithm.init(jnp.ones(3))
    key = jax.random.key(2)
    expected = run_chain(algorithm.step, state, key, 40, strategy="sequential")
    result = run_chain(algorithm.step, state, key, 40)
    assert_same_chain(result, expected)
    np.testing.assert_allclose(result[0].logdensity, expected[0].logdensity, rtol=1e-8)


def test_naive_reference_mala_and_rwm():
    x0 = np.array([1.0, -0.5, 0.3])
    key = jax.random.key(8)
    grad = lambda x: -PRECISION @ x
    logdensity = lambda x: -0.5 * x @ PRECISION @ x
    ref_positions, ref_accepted = mala_chain(logdensity, grad, x0, key, 50, 0.3)
    algorithm = make_algorithm("mala", gaussian_logdensity)
    states, info = run_chain(algorithm, algorithm.init(jnp.asarray(x0)), key, 50)
    np.testing.assert_allclose(states.position, ref_positions, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(info.aux.is_accepted, ref_accepted)

    ref_positions, ref_accepted = rwm_chain(logdensity, x0, key, 50, 0.7)
    algorithm = make_algorithm("rwm", gaussian_logdensity)
    states, info = run_chain(algorithm, algorithm.init(jnp.asarray(x0)), key, 50)
    np.testing.assert_allclose(states.position, ref_positions, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(info.aux.is_accepted, ref_accepted)


def test_jacobi_with_max_iterations_T_is_exact():
    # A random walk barely contracts: Jacobi needs about T iterations, and T always suffice.
    algorithm = make_algorithm("rwm", gaussian_logdensity)
    state = algorithm.init(jnp.ones(3))
    key = jax.random.key(4)
    expected = run_chain(algorithm, state, key, 48, strategy="sequential")
    result = run_chain(algorithm, state, key, 48, solver="jacobi", max_iterations=48)
    assert_same_chain(result, expected)
    assert bool(result[1].converged) and int(result[1].num_iterations) <= 48


def test_non_convergence_reported_and_fallback_exact():
    algorithm = make_algorithm("rwm", gaussian_logdensity)
    state = algorithm.init(jnp.ones(3))
    key = jax.random.key(4)
    expected = run_chain(algorithm, state, key, 48, strategy="sequential")
    with pytest.warns(RuntimeWarning, match="did not converge"):
        result = run_chain(algorithm, state, key, 48, solver="jacobi", max_iterations=3)
    assert not bool(result[1].converged) and bool(result[1].fallback)
    assert int(result[1].num_iterations) == 3
    assert_same_chain(result, expected)


def test_nan_target_not_reported_converged():
    # Unadjusted Langevin on a target whose gradient is NaN for x_0 > 1.5: the chain hits NaN.
    logdensity = lambda x: -0.5 * x @ x + jnp.where(x[0] > 1.5, jnp.nan, 0.0) * x[0]
    step = ula_step(logdensity, 0.5)
    x0 = jnp.zeros(2)
    key = jax.random.key(0)
    with pytest.warns(RuntimeWarning, match="non-finite"):  # the sequential chain too
        expected, _ = run_chain(step, x0, key, 60, strategy="sequential")
    assert np.any(np.isnan(expected))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        states, info = run_chain(step, x0, key, 60, max_iterations=30)
    assert not bool(info.converged) and bool(info.fallback)
    assert int(info.status) == fixed_point.NON_FINITE
    # The loop stops once the state after the converged prefix is NaN (no iteration helps).
    assert int(info.num_iterations) < 30
    np.testing.assert_allclose(states, expected, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_jit_and_vmap_over_chains():
    algorithm = make_algorithm("mala", logistic_logdensity)
    run = lambda key, x0: run_chain(algorithm, algorithm.init(x0), key, 32)[0].position
    keys = jax.random.split(jax.random.key(9), 4)
    x0s = jax.random.normal(jax.random.key(10), (4, 3))
    batched = jax.jit(jax.vmap(run))(keys, x0s)
    for i in range(4):
        expected = run_chain(algorithm, algorithm.init(x0s[i]), keys[i], 32, strategy="sequential")
        np.testing.assert_allclose(batched[i], expected[0].position, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("solver", SOLVERS)
def test_float32(solver):
    # BlackJAX mixes dtypes for float32 states when x64 is on: run as a float32 user would.
    with jax.enable_x64(False):
        algorithm = blackjax.mala(gaussian_logdensity, 0.3)
        state = algorithm.init(jnp.ones(3))
        key = jax.random.key(1)
        expected = run_chain(algorithm, state, key, 64, strategy="sequential")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a near-threshold flag is allowed
            states, info = run_chain(algorithm, state, key, 64, solver=solver)
    assert states.position.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(states.position))) and bool(info.converged)
    agree = np.mean(info.aux.is_accepted == expected[1].aux.is_accepted)
    assert agree >= 0.95
    if agree == 1.0:
        np.testing.assert_allclose(states.position, expected[0].position, rtol=1e-3, atol=1e-3)


def test_bad_input():
    algorithm = make_algorithm("mala", gaussian_logdensity)
    state = algorithm.init(jnp.ones(3))
    with pytest.raises(ValueError, match="num_steps"):
        run_chain(algorithm, state, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="solver"):
        run_chain(algorithm, state, jax.random.key(0), 5, solver="picard")
    with pytest.raises(TypeError, match="step_fn"):
        run_chain(3, state, jax.random.key(0), 5)
    with pytest.raises(TypeError, match="init_fn"):
        run_chain(lambda k, s: (s, None), {"a": jnp.arange(3)}, jax.random.key(0), 5)
    with pytest.raises(TypeError, match="num_steps"):
        run_chain(algorithm, state, jax.random.key(0), 5.0, strategy="sequential")
    with pytest.raises(ValueError, match="`atol`"):
        run_chain(algorithm, state, jax.random.key(0), 5, atol=-1.0)
    with pytest.raises(ValueError, match="`strategy`"):
        run_chain(algorithm, state, jax.random.key(0), 5, strategy="parallel")
    with pytest.raises(ValueError, match="damping"):
        run_chain(algorithm, state, jax.random.key(0), 5, solver=fixed_point.Newton(damping=0))
    with pytest.raises(ValueError, match="`max_iterations`"):
        run_chain(algorithm, state, jax.random.key(0), 5, max_iterations=0)
    with pytest.raises(ValueError, match="`window`"):
        run_chain(algorithm, state, jax.random.key(0), 5, window=0)


@pytest.mark.parametrize("strategy", ["auto", "sequential"])
def test_position_instead_of_state(strategy):
    algorithm = make_algorithm("mala", gaussian_logdensity)
    for step in (algorithm, algorithm.step):
        with pytest.raises(TypeError, match=r"init_fn\(position\)"):
            run_chain(step, jnp.ones(3), jax.random.key(0), 5, strategy=strategy)


def test_chaotic_deterministic_step_fallback_is_sequential():
    # Logistic map: Newton's iterates overflow to -inf; an infinite iterate satisfies the
    # stopping inequality, so certification must require finite values.
    step = lambda key, x: (3.99 * x * (1.0 - x), None)
    x0, key = jnp.array([0.3]), jax.random.key(0)
    expected, expected_info = run_chain(step, x0, key, 64, strategy="sequential")
    assert bool(expected_info.converged)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        states, info = run_chain(step, x0, key, 64, max_iterations=16)
    assert not bool(info.converged) and bool(info.fallback)
    np.testing.assert_array_equal(states, expected)


def test_sequential_chain_with_nan_log_density_not_ok():
    algorithm = blackjax.mala(lambda x: jnp.nan * jnp.sum(x), 0.3)
    state = algorithm.init(jnp.ones(3))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        states, info = run_chain(algorithm, state, jax.random.key(0), 10, strategy="sequential")
    assert not bool(info.converged) and np.all(np.isnan(states.logdensity))
    # under jit: no warning, the flag alone
    run = lambda s: run_chain(algorithm, s, jax.random.key(0), 10, strategy="sequential")
    _, info = jax.jit(run)(state)
    assert not bool(info.converged) and int(info.status) == fixed_point.NON_FINITE


@pytest.mark.parametrize(
    "strategy,solver",
    [
        (Associative(), fixed_point.Newton(damping=0.7)),
        (Blocked(4), fixed_point.QuasiNewton(exact_diagonal_max_dim=0)),
        ("blocked", fixed_point.Jacobi()),
    ],
)
@pytest.mark.slow
def test_every_strategy_and_solver_object_gives_the_sequential_chain(strategy, solver):
    # Damped Newton, the Hutchinson-probe quasi-Newton (exact diagonal disabled) and Jacobi,
    # with the linear recursions in every strategy: the same chain as Sequential().
    algorithm = make_algorithm("mala", logistic_logdensity)
    state = algorithm.init(jnp.array([0.5, -0.5, 0.2]))
    key = jax.random.key(3)
    expected = run_chain(algorithm, state, key, 29, strategy=Sequential())
    result = run_chain(algorithm, state, key, 29, strategy=strategy, solver=solver)
    assert_same_chain(result, expected)
    assert int(result[1].status) == fixed_point.OK and bool(result[1].converged)
    assert int(expected[1].num_sequential_steps) == 29


def test_progress_bar_shows_the_certified_share_and_is_off_under_jit_and_in_ci(monkeypatch, capsys):
    algorithm = make_algorithm("mala", gaussian_logdensity)
    state, key = algorithm.init(jnp.ones(3)), jax.random.key(4)
    monkeypatch.delenv("CI", raising=False)
    _, info = run_chain(algorithm, state, key, 40, strategy=Associative())
    shown = capsys.readouterr().err
    assert "run_chain" in shown and f"iteration {int(info.num_iterations)}" in shown
    assert "100%" in shown  # the whole chain was certified
    run_chain(algorithm, state, key, 40, strategy="sequential")  # nothing iterates: no bar
    solve_recursion(lambda x, u: (0.5 * x + u, None), jnp.zeros(1), jnp.ones((5, 1)),
                    strategy=Sequential())  # fmt: skip
    assert capsys.readouterr().err == ""
    jax.jit(lambda k: run_chain(algorithm, state, k, 40, strategy=Associative()))(key)
    run_chain(algorithm, state, key, 40, strategy=Associative(), progress_bar=False)
    monkeypatch.setenv("CI", "true")
    run_chain(algorithm, state, key, 40, strategy=Associative())
    assert capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="`progress_bar`"):
        run_chain(algorithm, state, key, 40, progress_bar="yes")
    # Invalid input fails before the first iteration: no bar is drawn.
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(ValueError, match="`fn`"):
        solve_recursion(lambda x, u: (jnp.ones(3), None), jnp.zeros(1), jnp.ones((5, 1)))
    assert capsys.readouterr().err == ""


def _moved_steps(states, x0):
    """Naive count: steps whose position differs from the initial one."""
    return int(np.sum(np.any(np.asarray(states.position) != np.asarray(x0), axis=-1)))


def test_stuck_chain_is_flagged_and_warned_about_only_when_it_never_moves():
    x0 = jnp.ones(3)
    stuck = blackjax.mala(gaussian_logdensity, 1e6)  # every proposal rejected
    healthy = blackjax.mala(gaussian_logdensity, 0.5)
    key = jax.random.key(5)
    for strategy in ("auto", "sequential"):
        with pytest.warns(RuntimeWarning, match="the chain is stuck"):
            states, info = run_chain(stuck, stuck.init(x0), key, 60, strategy=strategy)
        assert bool(info.stuck) and bool(info.converged)
        assert _moved_steps(states, x0) == 0
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            states, info = run_chain(healthy, healthy.init(x0), key, 60, strategy=strategy)
        assert not bool(info.stuck) and _moved_steps(states, x0) > 0
    # Shorter than STUCK_MIN_STEPS: a healthy chain may stay put that long; not flagged.
    short = fixed_point.result.STUCK_MIN_STEPS - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, info = run_chain(stuck, stuck.init(x0), key, short)
    assert not bool(info.stuck)
    # Under jit and vmap the flag is per chain: a chain that starts far out in the tails
    # with a large step (all proposals overshoot) is stuck, the one at the mode is not.
    step_sizes = jnp.array([1e6, 0.5])
    flags = jax.jit(
        jax.vmap(
            lambda h: (
                run_chain(blackjax.mala(gaussian_logdensity, h), stuck.init(x0), key, 60)[1].stuck
            )
        )
    )(step_sizes)
    np.testing.assert_array_equal(flags, [True, False])


def test_jacobi_certifies_chains_whose_steps_amplify_errors():
    # A chain whose last Jacobi change met the tolerance can miss it in the final residual
    # check by the step's Lipschitz constant; these seeds fell back (FALLBACK, 64-77
    # sequential steps) before the loop's change test was tightened (CHANGE_FACTOR).
    scales = jnp.array([1.0, 4.0, 9.0])
    algorithm = blackjax.mala(lambda x: -0.5 * jnp.sum(scales * x**2), 0.15)
    state = algorithm.init(jnp.ones(3))
    for seed in (4, 5):
        key = jax.random.key(seed)
        expected, _ = run_chain(algorithm, state, key, 300, strategy=Sequential())
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            states, info = run_chain(algorithm, state, key, 300, solver="jacobi")
        assert int(info.status) == fixed_point.OK and int(info.num_sequential_steps) == 0
        assert int(info.num_iterations) < 300
        np.testing.assert_allclose(states.position, expected.position, rtol=1e-8, atol=1e-8)
