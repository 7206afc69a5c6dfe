"""Sequential simulation of a `NonlinearGaussianModel` (states and observations)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_sample_shape

if TYPE_CHECKING:
    from numpyro_parallel.ssm.nonlinear.smoother import NonlinearGaussianModel

__all__ = ["simulate_model"]


def simulate_model(
    rng_key: jax.Array, model: NonlinearGaussianModel, sample_shape: tuple[int, ...] = ()
) -> tuple[jax.Array, jax.Array]:
    """Simulate ``x_{0:T-1}`` and ``y_{0:T-1}`` with a `lax.scan` over time.

    Args:
        rng_key: JAX PRNG key.
        model: the model, noise factors time-expanded to ``(T, ., .)`` (see `check_model`).
        sample_shape: leading shape of the draws (an int n means ``(n,)``; entries >= 0).

    Returns:
        States ``(*sample_shape, T, d)`` and observations ``(*sample_shape, T, p)``.
    """
    sample_shape = check_sample_shape(sample_shape)
    num_steps, d, _ = model.transition_chol.shape
    p = model.observation_chol.shape[-1]
    dtype = model.initial_mean.dtype

    def one(key):
        k0, kx, ky = jax.random.split(key, 3)
        x0 = model.initial_mean + model.initial_chol @ jax.random.normal(k0, (d,), dtype)
        w = jnp.einsum(
            "tij,tj->ti", model.transition_chol, jax.random.normal(kx, (num_steps, d), dtype)
        )
        v = jnp.einsum(
            "tij,tj->ti", model.observation_chol, jax.random.normal(ky, (num_steps, p), dtype)
        )

        def step(x, noise):
            w_t, v_t = noise
            return model.transition_fn(x) + w_t, (x, model.observation_fn(x) + v_t)

        _, (xs, ys) = jax.lax.scan(step, x0, (w, v))
        return xs, ys

    keys = jax.random.split(rng_key, math.prod(sample_shape))
    xs, ys = jax.vmap(one)(keys)
    return xs.reshape(*sample_shape, num_steps, d), ys.reshape(*sample_shape, num_steps, p)
