"""Naive Python-loop MCMC chains (MALA, random-walk Metropolis) in NumPy, float64.

They draw the same random numbers as BlackJAX's kernels (``key -> split -> proposal noise,
uniform for the accept test``) but share no code with the package or with BlackJAX.
"""

import jax
import numpy as np


def _uniform(key):
    return float(jax.random.uniform(key, (), dtype=np.float64))


def mala_chain(logdensity, grad, x0, rng_key, num_steps, step_size):
    """MALA, one step at a time; returns (positions (T, d), accepted (T,))."""
    x = np.asarray(x0, dtype=np.float64)
    positions, accepted = [], []
    for key in jax.random.split(rng_key, num_steps):
        key_noise, key_accept = jax.random.split(key)
        noise = np.asarray(jax.random.normal(key_noise, x.shape, dtype=np.float64))
        proposal = x + step_size * grad(x) + np.sqrt(2 * step_size) * noise
        forward = np.sum((proposal - x - step_size * grad(x)) ** 2) / (4 * step_size)
        backward = np.sum((x - proposal - step_size * grad(proposal)) ** 2) / (4 * step_size)
        log_ratio = logdensity(proposal) - logdensity(x) + forward - backward
        accept = _uniform(key_accept) < min(1.0, np.exp(log_ratio))
        x = proposal if accept else x
        positions.append(x)
        accepted.append(accept)
    return np.stack(positions), np.array(accepted)


def rwm_chain(logdensity, x0, rng_key, num_steps, sigma):
    """Gaussian random-walk Metropolis; returns (positions (T, d), accepted (T,))."""
    x = np.asarray(x0, dtype=np.float64)
    positions, accepted = [], []
    for key in jax.random.split(rng_key, num_steps):
        key_move, key_accept = jax.random.split(key)
        proposal = x + sigma * np.asarray(jax.random.normal(key_move, x.shape, np.float64))
        log_ratio = logdensity(proposal) - logdensity(x)
        accept = _uniform(key_accept) < min(1.0, np.exp(log_ratio))
        x = proposal if accept else x
        positions.append(x)
        accepted.append(accept)
    return np.stack(positions), np.array(accepted)


def ula_step(logdensity_fn, step_size):
    """Unadjusted Langevin step ``(rng_key, x) -> (x', None)`` (no accept/reject)."""

    def step(rng_key, state):
        noise = jax.random.normal(rng_key, state.shape)
        grad = jax.grad(logdensity_fn)(state)
        return state + step_size * grad + (2 * step_size) ** 0.5 * noise, None

    return step
