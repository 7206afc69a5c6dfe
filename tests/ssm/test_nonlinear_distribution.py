"""`NonlinearGaussianSSM` (numpyro_parallel.ssm.nonlinear.distribution)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

from numpyro_parallel.ssm.nonlinear.distribution import NonlinearGaussianSSM
from numpyro_parallel.ssm.nonlinear.smoother import linearized_log_likelihood
from tests.reference import kalman as ref_kalman
from tests.reference.nonlinear import bootstrap_log_likelihood, numerical_grad, pendulum, simulate

NUM_STEPS = 12


def _linear_dist(method):
    F = jnp.array([[0.9, 0.2], [-0.1, 0.8]])
    H = jnp.array([[1.0, 0.5]])
    return NonlinearGaussianSSM(
        jnp.array([0.5, -1.0]),
        jnp.array([[1.0, 0.3], [0.3, 0.8]]),
        lambda x: F @ x,
        0.2 * jnp.eye(2),
        lambda x: H @ x,
        0.5 * jnp.eye(1),
        NUM_STEPS,
        method=method,
    ), (F, H)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["extended", "cubature"])
def test_linear_log_prob_is_exact(method):
    d, (F, H) = _linear_dist(method)
    y = np.random.default_rng(0).normal(size=(NUM_STEPS, 1))
    y[3] = np.nan
    _, _, terms = ref_kalman.kalman_filter(
        d.initial_mean, d.initial_cov, F, d.transition_cov, H, d.observation_cov, y
    )
    np.testing.assert_allclose(jax.jit(d.log_prob)(jnp.asarray(y)), terms.sum(), rtol=1e-10)


def _mild_dist(theta, method="extended", atol=1e-12, gradient_steps=1):
    a, log_q, log_r = theta[0], theta[1], theta[2]
    dtype = theta.dtype

    def f(x):
        return a * x + 0.1 * jnp.sin(x)

    return NonlinearGaussianSSM(
        jnp.zeros(1, dtype),
        jnp.eye(1, dtype=dtype),
        f,
        jnp.exp(log_q) * jnp.eye(1, dtype=dtype),
        lambda x: x + 0.05 * x**2,
        jnp.exp(log_r) * jnp.eye(1, dtype=dtype),
        NUM_STEPS,
        method=method,
        atol=atol,
        max_iterations=50,
        gradient_steps=gradient_steps,
    )


def _grad_problem():
    theta0 = np.array([0.7, np.log(0.3), np.log(0.2)])
    y = jnp.asarray(_mild_dist(jnp.asarray(theta0)).sample(jax.random.PRNGKey(1)))
    return theta0, y


def _grad(theta0, y, method, steps):
    def lp(th):
        return _mild_dist(th, method, gradient_steps=steps).log_prob(y)

    return np.asarray(jax.jit(jax.grad(lp))(theta0))


def _full_fd(theta0, y, method):
    log_prob = jax.jit(lambda th: _mild_dist(th, method).log_prob(y))
    return numerical_grad(log_prob, theta0, 1e-5)


@pytest.mark.slow
def test_gradients_match_finite_differences_extended():
    theta0, y = _grad_problem()
    grads = {k: _grad(theta0, y, "extended", k) for k in (0, 1, 4)}
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    # (1) gradient_steps=0: exact gradient of the linearised likelihood at the fixed point.
    res = jax.jit(_mild_dist(jnp.asarray(theta0)).smooth)(y)

    def at_fixed_point(th):
        d = _mild_dist(jnp.asarray(th))
        return linearized_log_likelihood(d.model, y, res.mean, res.chol)

    fixed_fd = numerical_grad(jax.jit(at_fixed_point), theta0)
    np.testing.assert_allclose(grads[0], fixed_fd, rtol=1e-6, atol=1e-8)
    # (2) Unrolled steps converge to the derivative of the full (re-linearised) log_prob.
    full_fd = _full_fd(theta0, y, "extended")
    errors = [np.max(np.abs(grads[k] - full_fd)) for k in (0, 1, 4)]
    assert errors[0] > errors[1] > errors[2]
    np.testing.assert_allclose(grads[4], full_fd, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_gradients_match_finite_differences_cubature():
    theta0, y = _grad_problem()
    grad = _grad(theta0, y, "cubature", 4)
    np.testing.assert_allclose(grad, _full_fd(theta0, y, "cubature"), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_sampling_shapes_and_state_samples():
    d = _mild_dist(jnp.asarray([0.7, np.log(0.3), np.log(0.2)]), "cubature")
    key = jax.random.PRNGKey(0)
    xs, ys = d.simulate(key, (3,))
    assert xs.shape == (3, NUM_STEPS, 1) and ys.shape == (3, NUM_STEPS, 1)
    assert d.sample(key, (2, 3)).shape == (2, 3, NUM_STEPS, 1)
    # Batched log_prob equals a loop.
    lp = jax.jit(d.log_prob)(ys)
    assert lp.shape == (3,)
    np.testing.assert_allclose(lp[1], jax.jit(d.log_prob)(ys[1]), rtol=1e-10)
    # State draws: their mean matches the smoothed mean within 4 Monte Carlo standard errors.
    num_draws = 4000
    draws = jax.jit(lambda k: d.sample_states(k, ys[0], (num_draws,)))(key)
    assert draws.shape == (num_draws, NUM_STEPS, 1)
    res = jax.jit(d.smooth)(ys[0])
    se = jnp.sqrt(res.cov[..., 0, 0] / num_draws)
    assert bool(jnp.all(jnp.abs(draws.mean(0)[:, 0] - res.mean[:, 0]) < 4 * se))


@pytest.mark.slow
def test_float32_jit_and_numpyro_model():
    theta = jnp.asarray([0.7, np.log(0.3), np.log(0.2)], jnp.float32)
    d32 = _mild_dist(theta, atol=None)  # default float32 tolerance
    y = d32.sample(jax.random.PRNGKey(2))
    assert y.dtype == jnp.float32
    lp32 = jax.jit(d32.log_prob)(y)
    y64 = y.astype(jnp.float64)
    lp64 = jax.jit(lambda y: _mild_dist(theta.astype(jnp.float64)).log_prob(y))(y64)
    assert lp32.dtype == jnp.float32
    np.testing.assert_allclose(lp32, lp64, rtol=1e-4)

    # Inside a NumPyro model: finite potential energy and gradient.
    def model(y):
        a = numpyro.sample("a", dist.Uniform(0.0, 1.0))
        th = theta.astype(jnp.float64).at[0].set(a)
        numpyro.sample("y", _mild_dist(th), obs=y)

    def joint(a):
        return log_density(model, (y64,), {}, {"a": a})[0]

    value, grad = jax.jit(jax.value_and_grad(joint))(theta[0].astype(jnp.float64))
    np.testing.assert_allclose(value, lp64 + 0.0, rtol=1e-10)  # Uniform(0, 1) density is 1
    assert np.isfinite(float(grad))


def test_bad_shapes():
    d, _ = _linear_dist("extended")
    with pytest.raises(ValueError, match="`y`"):
        d.log_prob(jnp.zeros((NUM_STEPS + 1, 1)))
    with pytest.raises(ValueError, match="initial_cov"):
        NonlinearGaussianSSM(jnp.zeros(2), jnp.eye(3), jnp.sin, jnp.eye(2), jnp.sin, jnp.eye(2), 5)
    with pytest.raises(ValueError, match="transition_cov"):
        NonlinearGaussianSSM(jnp.zeros(2), jnp.eye(2), jnp.sin, jnp.eye(3), jnp.sin, jnp.eye(2), 5)
    with pytest.raises(ValueError, match="method"):
        NonlinearGaussianSSM(
            jnp.zeros(2), jnp.eye(2), jnp.sin, jnp.eye(2), jnp.sin, jnp.eye(2), 5, method="x"
        )
    with pytest.raises(ValueError, match="initial_mean"):
        NonlinearGaussianSSM(
            jnp.zeros((2, 2)), jnp.eye(2), jnp.sin, jnp.eye(2), jnp.sin, jnp.eye(2), 5
        )
    # The function, not the covariance, is reported when its output has the wrong shape.
    with pytest.raises(ValueError, match=r"`transition_fn` returns shape \(1,\); expected"):
        NonlinearGaussianSSM(
            jnp.zeros(2), jnp.eye(2), lambda x: x[:1], jnp.eye(2), jnp.sin, jnp.eye(2), 5
        )
    with pytest.raises(ValueError, match=r"`transition_cov`.*non-finite"):
        NonlinearGaussianSSM(
            jnp.zeros(2), jnp.eye(2), jnp.sin, jnp.eye(2) * jnp.nan, jnp.sin, jnp.eye(2), 5
        )


def _rotating_pendulum(num_steps, **kwargs):
    """The noisy pendulum started fast enough (8 rad/s) to go over the top (angle 1.5 -> 11.8)."""
    f, h, Q, R = pendulum()
    m0, P0 = np.array([1.5, 8.0]), 0.1 * np.eye(2)
    _, y = simulate(np.random.default_rng(0), num_steps, m0, P0, f, Q, h, R)
    ssm = NonlinearGaussianSSM(
        jnp.asarray(m0), jnp.asarray(P0), f, jnp.asarray(Q), h, jnp.asarray(R), num_steps, **kwargs
    )
    return ssm, jnp.asarray(y), (m0, P0, f, Q, h, R)


@pytest.mark.slow
def test_rotating_pendulum_default_log_prob_matches_particle_filter():
    num_steps = 100
    ssm, y, args = _rotating_pendulum(num_steps)
    log_prob, result = jax.jit(ssm.log_prob_and_smooth)(y)
    assert bool(result.converged) and int(result.num_iterations) < ssm.max_iterations
    # Bootstrap PF with N = 1e4: its log-likelihood has standard deviation about 0.10 here (12
    # seeds); the linearised likelihood is 0.09 above the mean of 1e5-particle runs. The
    # tolerance is 0.09 + 4 standard deviations.
    reference = bootstrap_log_likelihood(np.random.default_rng(1), y, *args, num_particles=10_000)
    assert abs(float(log_prob) - reference) < 0.5, (float(log_prob), reference)
    # The scenario discriminates: started from the prior, the smoother converges to a wrong
    # mode hundreds of nats away (the old default; still available as an option).
    prior = NonlinearGaussianSSM(*_args_of(ssm), num_steps, initial_trajectory="prior")
    prior_log_prob, prior_result = jax.jit(prior.log_prob_and_smooth)(y)
    assert bool(prior_result.converged) and float(prior_log_prob) < reference - 100


def _args_of(ssm):
    return (
        ssm.initial_mean,
        ssm.initial_cov,
        ssm.transition_fn,
        ssm.transition_cov,
        ssm.observation_fn,
        ssm.observation_cov,
    )


@pytest.mark.slow
def test_non_convergence_gives_nan_log_prob_and_warning():
    # Sequential scans: same iterates, shorter compilation (four programs are compiled here).
    ssm, y, _ = _rotating_pendulum(30, max_iterations=1, atol=1e-10, strategy="sequential")
    with pytest.warns(RuntimeWarning, match="did not converge"):
        log_prob = ssm.log_prob(y)
    assert np.isnan(float(log_prob))
    with pytest.warns(RuntimeWarning, match="max_iterations=1"):
        log_prob, result = ssm.log_prob_and_smooth(jnp.stack([y, y]))
    assert log_prob.shape == (2,) and bool(jnp.all(jnp.isnan(log_prob)))
    assert result.converged.shape == (2,) and not bool(jnp.any(result.converged))
    assert np.all(np.asarray(result.num_iterations) == 1)
    assert bool(jnp.all(result.residual > 1e-10))
    # Under jit: no warning can be emitted; the value is NaN and the flag is in the result.
    log_prob, result = jax.jit(ssm.log_prob_and_smooth)(y)
    assert np.isnan(float(log_prob)) and not bool(result.converged)
    # Enough iterations: finite and converged, no warning.
    ok, _, _ = _rotating_pendulum(30, atol=1e-10, strategy="sequential")
    log_prob, result = jax.jit(ok.log_prob_and_smooth)(y)
    assert np.isfinite(float(log_prob)) and bool(result.converged)
