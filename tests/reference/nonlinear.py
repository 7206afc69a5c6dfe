"""Naive references for nonlinear state-space models (test reference only).

- `joint_log_density`: log p(x_{0:T-1}, y_{0:T-1}) written as a plain Python loop.
- `gaussian_moment3`: closed-form E[x_i x_j x_k] of a Gaussian (Isserlis).
- `pendulum`: the noisy pendulum of Särkkä's book (as in Yaghoobi et al. 2021) + a simulator.
- `cuthbert_extended_smoother`: cuthbert's sequential extended (EKF + RTS) smoother, adapted to
  this package's convention (the first observation sees x_0).
- `bootstrap_log_likelihood`: a naive bootstrap particle filter's log-likelihood estimate
  (systematic resampling at every step, NumPy loop over time).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import multivariate_normal


def joint_log_density(x, y, m0, P0, f, Q, h, R):
    """log N(x_0; m0, P0) + Σ log N(x_{t+1}; f(x_t), Q) + Σ log N(y_t; h(x_t), R)."""
    total = multivariate_normal.logpdf(x[0], m0, P0)
    for t in range(x.shape[0]):
        total = total + multivariate_normal.logpdf(y[t], h(x[t]), R)
        if t + 1 < x.shape[0]:
            total = total + multivariate_normal.logpdf(x[t + 1], f(x[t]), Q)
    return total


def gaussian_moment3(m, P):
    """E[x_i x_j x_k] for x ~ N(m, P)."""
    return (
        np.einsum("i,j,k->ijk", m, m, m)
        + np.einsum("i,jk->ijk", m, P)
        + np.einsum("j,ik->ijk", m, P)
        + np.einsum("k,ij->ijk", m, P)
    )


PENDULUM_DT = 0.0125
PENDULUM_G = 9.81


def pendulum(q_c=1.0, r=0.3, dt=PENDULUM_DT, g=PENDULUM_G):
    """Returns (f, h, Q, R) of the noisy pendulum (state: angle, angular velocity)."""

    def f(x):
        return jnp.stack([x[0] + x[1] * dt, x[1] - g * jnp.sin(x[0]) * dt])

    def h(x):
        return jnp.sin(x[:1])

    Q = q_c * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
    R = np.array([[r**2]])
    return f, h, Q, R


def simulate(rng, num_steps, m0, P0, f, Q, h, R):
    """Simulate states (T, d) and observations (T, p) with NumPy noise."""
    x = rng.multivariate_normal(m0, P0)
    xs, ys = [], []
    for _ in range(num_steps):
        xs.append(x)
        ys.append(np.asarray(h(x)) + rng.multivariate_normal(np.zeros(len(R)), R))
        x = np.asarray(f(x)) + rng.multivariate_normal(np.zeros(len(Q)), Q)
    return np.array(xs), np.array(ys)


def cuthbert_extended_smoother(m0, chol_P0, f, chol_Q, h, chol_R, y):
    """cuthbert's sequential extended Kalman filter + smoother; returns smoothed means (T, d).

    cuthbert observes x_1..x_T after a prior on x_0; a first identity transition with zero
    noise maps that convention onto ours (y_0 sees x_0).
    """
    from cuthbert import filter as cuthbert_filter
    from cuthbert import smoother as cuthbert_smoother
    from cuthbert.gaussian import moments

    num_steps = y.shape[0]
    zero = jnp.zeros_like(chol_Q)

    def dynamics(state, inputs):
        def mean_chol(x):
            first = inputs["t"] == 0
            return jnp.where(first, x, f(x)), jnp.where(first, zero, chol_Q)

        return mean_chol, state.mean

    def observation(state, inputs):
        return (lambda x: (h(x), chol_R)), state.mean, inputs["y"]

    inputs = {"t": jnp.arange(num_steps), "y": y}
    with jax.numpy_rank_promotion("allow"):  # cuthbert relies on implicit rank promotion
        return _run_cuthbert(
            moments, cuthbert_filter, cuthbert_smoother, m0, chol_P0, dynamics, observation, inputs
        )


def _run_cuthbert(
    moments, cuthbert_filter, cuthbert_smoother, m0, chol_P0, dynamics, observation, inputs
):
    filter_obj = moments.build_filter(m0, chol_P0, dynamics, observation, associative=False)
    smoother_obj = moments.build_smoother(dynamics)
    filtered = cuthbert_filter(filter_obj, inputs, filter_obj.init_prepare(), parallel=False)
    smoothed = cuthbert_smoother(smoother_obj, filtered, inputs, parallel=False)
    return smoothed.mean[1:]


def bootstrap_log_likelihood(rng, y, m0, P0, f, Q, h, R, num_particles):
    """Bootstrap particle filter estimate of log p(y_{0:T-1}) (y_0 sees x_0).

    The evidence estimate is unbiased; its log has a small negative bias (about minus half its
    variance). Resamples systematically at every step.

    Args:
        rng: `numpy.random.Generator`.
        y: (T, p) observations (no missing values).
        m0, P0: prior mean and covariance of x_0.
        f, h: transition and observation functions of one state (traced once, vmapped).
        Q, R: noise covariances.
        num_particles: N.

    Returns:
        float log-likelihood estimate.
    """
    y = np.asarray(y, float)
    num_steps, p = y.shape
    f_all, h_all = jax.jit(jax.vmap(f)), jax.jit(jax.vmap(h))
    chol_Q = np.linalg.cholesky(np.asarray(Q, float))
    R_inv = np.linalg.inv(np.asarray(R, float))
    log_norm = -0.5 * np.linalg.slogdet(np.asarray(R, float))[1] - 0.5 * p * np.log(2 * np.pi)
    x = rng.multivariate_normal(np.asarray(m0, float), np.asarray(P0, float), size=num_particles)
    total = 0.0
    for t in range(num_steps):
        r = y[t] - np.asarray(h_all(x))
        log_w = log_norm - 0.5 * np.einsum("ni,ij,nj->n", r, R_inv, r)
        top = log_w.max()
        w = np.exp(log_w - top)
        total += top + np.log(w.mean())
        cdf = np.cumsum(w)
        u = (rng.random() + np.arange(num_particles)) / num_particles
        idx = np.minimum(np.searchsorted(cdf / cdf[-1], u), num_particles - 1)
        x = np.asarray(f_all(x[idx])) + rng.standard_normal(x.shape) @ chol_Q.T
    return float(total)


def numerical_grad(fn, theta, eps=1e-6):
    """Central finite differences of a scalar function of a 1-D array."""
    theta = np.asarray(theta, float)
    grad = np.zeros_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        grad[i] = (float(fn(theta + e)) - float(fn(theta - e))) / (2 * eps)
    return grad


__all__ = [
    "bootstrap_log_likelihood",
    "cuthbert_extended_smoother",
    "gaussian_moment3",
    "joint_log_density",
    "numerical_grad",
    "pendulum",
    "simulate",
]
