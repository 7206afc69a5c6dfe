"""Naive references for nonlinear state-space models (test reference only).

- `joint_log_density`: log p(x_{0:T-1}, y_{0:T-1}) written as a plain Python loop.
- `gaussian_moment3`: closed-form E[x_i x_j x_k] of a Gaussian (Isserlis).
- `pendulum`: the noisy pendulum of Särkkä's book (as in Yaghoobi et al. 2021) + a simulator.
- `cuthbert_extended_smoother`: cuthbert's sequential extended (EKF + RTS) smoother, adapted to
  this package's convention (the first observation sees x_0).
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
    "cuthbert_extended_smoother",
    "gaussian_moment3",
    "joint_log_density",
    "numerical_grad",
    "pendulum",
    "simulate",
]
