"""Online Picard (Grazzi & Zanella) == sequential chain == naive reference, for random walks."""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.mcmc import random_walk

from numpyro_parallel.fixed_point import OnlinePicard, sequential_recursion, solve_recursion
from numpyro_parallel.fixed_point.result import warn_result
from numpyro_parallel.mcmc import run_chain
from numpyro_parallel.mcmc.kernels import parallel_rwm
from tests.reference.mcmc import rwm_chain, ula_step


def gaussian_target(dim):
    scales = jnp.linspace(0.5, 2.0, dim)
    return lambda x: -0.5 * jnp.sum((x / scales.astype(x.dtype)) ** 2)


def logistic_target(dim):
    k1, k2 = jax.random.split(jax.random.key(11))
    features = jax.random.normal(k1, (40, dim))
    truth = jnp.linspace(-1.0, 1.0, dim)
    labels = (jax.random.uniform(k2, (40,)) < jax.nn.sigmoid(features @ truth)).astype(float)

    def logdensity(beta):
        logits = features @ beta
        return jnp.sum(labels * logits - jnp.logaddexp(0.0, logits)) - 0.5 * beta @ beta

    return logdensity


TARGETS = {"gaussian": gaussian_target, "logistic": logistic_target}
SCALES = {"gaussian": 2.0, "logistic": 0.8}


def rwm(logdensity_fn, dim, scale=2.0):
    return blackjax.additive_step_random_walk(logdensity_fn, random_walk.normal(scale / dim**0.5))


def run_jitted(algorithm, state, key, num_steps, **options):
    """The parallel and the sequential chain under one `jax.jit` each (fast to compile)."""
    parallel = jax.jit(lambda k, s: run_chain(algorithm, s, k, num_steps, **options))
    sequential = jax.jit(lambda k, s: run_chain(algorithm, s, k, num_steps, strategy="sequential"))
    return parallel(key, state), sequential(key, state)


def assert_exact(result, expected, num_steps):
    (states, info), (expected_states, expected_info) = result, expected
    np.testing.assert_allclose(states.position, expected_states.position, rtol=0, atol=1e-12)
    np.testing.assert_allclose(states.logdensity, expected_states.logdensity, rtol=1e-12)
    np.testing.assert_array_equal(info.aux.is_accepted, expected_info.aux.is_accepted)
    assert bool(info.converged) and not bool(info.fallback)
    assert int(info.num_sequential_steps) == 0 and float(info.residual) < 1e-12
    assert 1 <= int(info.num_iterations) <= num_steps


@pytest.mark.slow
@pytest.mark.parametrize("target", ["gaussian", "logistic"])
@pytest.mark.parametrize("dim", [1, 5])
def test_equals_sequential(target, dim):
    num_steps = 61  # prime
    algorithm = rwm(TARGETS[target](dim), dim, SCALES[target])
    state = algorithm.init(jnp.full(dim, 0.3))
    key = jax.random.key(dim + num_steps)
    result, expected = run_jitted(algorithm, state, key, num_steps, solver="online_picard")
    assert_exact(result, expected, num_steps)
    assert 0.05 < float(np.mean(expected[1].aux.is_accepted)) < 0.95


LENGTHS = [(1, "gaussian", 1), (7, "logistic", 5), (15, "gaussian", 5), (16, "logistic", 1),
           (17, "logistic", 5)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("num_steps,target,dim", LENGTHS)
def test_lengths_around_window(num_steps, target, dim):
    # T = 1, T < W, T = W - 1, W, W + 1 with a window of W = 16 steps.
    algorithm = rwm(TARGETS[target](dim), dim, SCALES[target])
    state = algorithm.init(jnp.full(dim, -0.2))
    key = jax.random.key(num_steps)
    result, expected = run_jitted(
        algorithm, state, key, num_steps, solver="online_picard", window=16
    )
    assert_exact(result, expected, num_steps)


def test_naive_reference():
    precision = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])
    x0 = np.array([1.0, -0.5, 0.3])
    key = jax.random.key(8)
    ref_positions, ref_accepted = rwm_chain(lambda x: -0.5 * x @ precision @ x, x0, key, 50, 0.7)
    logdensity = lambda x: -0.5 * x @ (jnp.asarray(precision) @ x)
    algorithm = blackjax.additive_step_random_walk(logdensity, random_walk.normal(0.7))
    run = jax.jit(lambda s: run_chain(algorithm, s, key, 50, solver="online_picard"))
    states, info = run(algorithm.init(jnp.asarray(x0)))
    np.testing.assert_allclose(states.position, ref_positions, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(info.aux.is_accepted, ref_accepted)


def test_far_fewer_iterations_than_jacobi():
    # Jacobi moves information one accepted step per iteration: ~T iterations for a random
    # walk. Picard on the accept decisions confirms several steps per iteration.
    num_steps = 200
    algorithm = rwm(gaussian_target(5), 5)
    state = algorithm.init(jnp.zeros(5))
    key = jax.random.key(3)
    picard, expected = run_jitted(
        algorithm, state, key, num_steps, solver="online_picard", window=64
    )
    jacobi = jax.jit(
        lambda k, s: run_chain(
            algorithm, s, k, num_steps, solver="jacobi", max_iterations=num_steps
        )
    )(key, state)
    assert_exact(picard, expected, num_steps)
    picard_iterations, jacobi_iterations = (int(r[1].num_iterations) for r in (picard, jacobi))
    print(
        f"T={num_steps}: online Picard {picard_iterations}, Jacobi {jacobi_iterations} iterations"
    )
    assert picard_iterations <= num_steps // 2 and 2 * picard_iterations <= jacobi_iterations


def test_each_iteration_confirms_a_step():
    # After k iterations at least k steps are certified; the rest is recomputed sequentially.
    algorithm = rwm(gaussian_target(5), 5)
    state = algorithm.init(jnp.zeros(5))
    key = jax.random.key(4)
    result, expected = run_jitted(
        algorithm, state, key, 48, solver="online_picard", max_iterations=3, window=8
    )
    info = result[1]
    assert not bool(info.converged) and bool(info.fallback)
    assert int(info.num_iterations) == 3 and 0 < int(info.num_sequential_steps) <= 48 - 3
    np.testing.assert_allclose(result[0].position, expected[0].position, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(info.aux.is_accepted, expected[1].aux.is_accepted)


def test_non_additive_kernel_is_a_certified_fixed_point_iteration():
    # MALA's increment depends on the state: the Picard map is then a plain fixed-point
    # iteration confirmed by the tolerance rule (no exact-decision argument, no speed-up);
    # the result is still the sequential chain.
    algorithm = blackjax.mala(gaussian_target(3), 0.4)
    state = algorithm.init(jnp.ones(3))
    (states, info), expected = run_jitted(
        algorithm, state, jax.random.key(6), 40, solver="online_picard"
    )
    np.testing.assert_allclose(states.position, expected[0].position, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(info.aux.is_accepted, expected[1].aux.is_accepted)
    assert bool(info.converged) and float(info.residual) < 1e-8
    print(f"MALA, T=40: online Picard {int(info.num_iterations)} iterations")


def test_nan_not_reported_converged():
    # A recursion that hits NaN: the loop stops at the first non-finite exact state.
    logdensity = lambda x: -0.5 * x @ x + jnp.where(x[0] > 1.5, jnp.nan, 0.0) * x[0]
    step = ula_step(logdensity, 0.5)
    x0 = jnp.zeros(2)
    key = jax.random.key(0)
    with pytest.warns(RuntimeWarning, match="non-finite"):  # the sequential chain too
        expected, _ = run_chain(step, x0, key, 60, strategy="sequential")
    assert np.any(np.isnan(expected))
    states, info = jax.jit(lambda k: run_chain(step, x0, k, 60, solver="online_picard"))(key)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        warn_result(info, "run_chain")  # what `run_chain` warns outside `jit`
    assert not bool(info.converged) and bool(info.fallback)
    assert int(info.num_iterations) < 60
    np.testing.assert_allclose(states, expected, rtol=0, atol=1e-12, equal_nan=True)


def test_nan_log_density_in_random_walk():
    # NaN log-density at the start: BlackJAX rejects every proposal; same as sequential.
    logdensity = lambda x: jnp.where(x[0] > 0.0, jnp.nan, -0.5 * x @ x)
    algorithm = rwm(logdensity, 2)
    state = algorithm.init(jnp.array([0.5, 0.0]))
    key = jax.random.key(1)
    (states, info), expected = run_jitted(algorithm, state, key, 30, solver="online_picard")
    assert np.any(np.isnan(expected[0].logdensity))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        warn_result(info, "run_chain")  # what `run_chain` warns outside `jit`
    np.testing.assert_allclose(states.position, expected[0].position, rtol=0, atol=1e-12)
    assert not bool(info.converged)


def test_jit_and_vmap_over_chains():
    algorithm = rwm(logistic_target(3), 3)
    run = lambda key, x0: run_chain(
        algorithm, algorithm.init(x0), key, 40, solver="online_picard", window=16
    )
    keys = jax.random.split(jax.random.key(9), 3)
    x0s = jax.random.normal(jax.random.key(10), (3, 3))
    states, info = jax.jit(jax.vmap(run))(keys, x0s)
    assert info.converged.shape == (3,) and bool(jnp.all(info.converged))
    sequential = lambda key, x0: run_chain(
        algorithm, algorithm.init(x0), key, 40, strategy="sequential"
    )[0]
    expected = jax.jit(jax.vmap(sequential))(keys, x0s)
    np.testing.assert_allclose(states.position, expected.position, rtol=0, atol=1e-12)


def test_float32():
    with jax.enable_x64(False):
        algorithm = rwm(gaussian_target(3), 3)
        state = algorithm.init(jnp.ones(3))
        key = jax.random.key(1)
        (states, info), expected = run_jitted(algorithm, state, key, 200, solver="online_picard")
    assert states.position.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(states.position))) and bool(info.converged)
    agree = np.mean(info.aux.is_accepted == expected[1].aux.is_accepted)
    assert agree >= 0.95
    if agree == 1.0:
        np.testing.assert_allclose(states.position, expected[0].position, rtol=1e-4, atol=1e-4)


def test_generic_recursion_matches_sequential():
    # A contracting nonlinear recursion: Picard converges to the tolerance, with any window.
    fn = lambda x, u: (0.5 * jnp.tanh(x) + u, None)
    inputs = jax.random.normal(jax.random.key(2), (37, 2))
    x0 = jnp.array([1.0, -2.0])
    expected, _ = sequential_recursion(fn, x0, inputs)
    solve = lambda x0, u: solve_recursion(fn, x0, u, solver=OnlinePicard(), window=5)
    result = jax.jit(solve)(x0, inputs)
    np.testing.assert_allclose(result.states, expected, rtol=1e-9, atol=1e-9)
    assert bool(result.converged) and int(result.num_iterations) <= 37


def test_parallel_rwm_block_defaults_to_online_picard():
    logdensity = logistic_target(3)
    block = parallel_rwm(logdensity, 0.5, 25)
    x0 = jnp.array([0.2, -0.1, 0.4])
    key = jax.random.key(7)
    last, info = jax.jit(block.step)(key, block.init(x0))
    base = blackjax.additive_step_random_walk(logdensity, random_walk.normal(0.5))
    expected, expected_info = run_chain(base, base.init(x0), key, 25, strategy="sequential")
    np.testing.assert_allclose(info.states.position, expected.position, rtol=0, atol=1e-12)
    np.testing.assert_allclose(last.position, expected.position[-1], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(info.aux.is_accepted, expected_info.aux.is_accepted)
    assert bool(info.converged) and 0 < int(info.num_iterations) <= 25


def test_bad_input():
    algorithm = rwm(gaussian_target(2), 2)
    state = algorithm.init(jnp.ones(2))
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="damping"):
        OnlinePicard(damping=0.5)
    with pytest.raises(ValueError, match="window"):
        run_chain(algorithm, state, key, 5, solver="online_picard", window=0)
    with pytest.raises(ValueError, match="max_iterations"):
        run_chain(algorithm, state, key, 5, solver="online_picard", max_iterations=-1)
    with pytest.raises(ValueError, match="solver"):
        run_chain(algorithm, state, key, 5, solver="picard")
    with pytest.raises(ValueError, match="decisions_fn"):
        solve_recursion(
            lambda x, u: (x + u, x),
            jnp.zeros(2),
            jnp.ones((4, 2)),
            solver="online_picard",
            decisions_fn=lambda a: a,
        )
