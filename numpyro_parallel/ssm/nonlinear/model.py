"""The nonlinear Gaussian state-space model, the iterated smoother's result and its warning.

Model (t = 0..T-1, same convention as `numpyro_parallel.ssm.kalman.inference`)::

    x_0 ~ N(initial_mean, initial_chol initial_chol^T)
    x_{t+1} = f(x_t) + w_t,   w_t ~ N(0, Q_t)
    y_t     = h(x_t) + v_t,   v_t ~ N(0, R_t)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import concrete, warn_if
from numpyro_parallel.linalg import cholesky_of

__all__ = [
    "IteratedSmootherResult",
    "NonlinearGaussianModel",
    "model_from_covariances",
    "warn_not_converged",
]


class NonlinearGaussianModel(NamedTuple):
    """Nonlinear state-space model with additive Gaussian noise (square-root form).

    Attributes:
        initial_mean: ``(d,)`` mean of ``x_0``.
        initial_chol: ``(d, d)`` Cholesky factor of the covariance of ``x_0``.
        transition_fn: ``f: (d,) -> (d,)``; ``x_{t+1} = f(x_t) + w_t``.
        transition_chol: ``(d, d)`` or ``(T, d, d)`` Cholesky factor(s) of ``Q``.
        observation_fn: ``h: (d,) -> (p,)``; ``y_t = h(x_t) + v_t``.
        observation_chol: ``(p, p)`` or ``(T, p, p)`` Cholesky factor(s) of ``R``.
    """

    initial_mean: jax.Array
    initial_chol: jax.Array
    transition_fn: Callable[[jax.Array], jax.Array]
    transition_chol: jax.Array
    observation_fn: Callable[[jax.Array], jax.Array]
    observation_chol: jax.Array


def model_from_covariances(
    initial_mean: jax.Array,
    initial_cov: jax.Array,
    transition_cov: jax.Array,
    observation_cov: jax.Array,
    transition_fn: Callable[[jax.Array], jax.Array],
    observation_fn: Callable[[jax.Array], jax.Array],
) -> NonlinearGaussianModel:
    """The model in square-root form from covariances (`cholesky_of`: NaN factors for invalid
    covariances under tracing, so everything computed from them is NaN)."""
    return NonlinearGaussianModel(
        initial_mean,
        cholesky_of(initial_cov),
        transition_fn,
        cholesky_of(transition_cov),
        observation_fn,
        cholesky_of(observation_cov),
    )


class IteratedSmootherResult(NamedTuple):
    """Output of `iterated_smoother`.

    Attributes:
        mean: ``(T, d)`` smoothed means of the final linearised model.
        chol: ``(T, d, d)`` Cholesky factors of the smoothed covariances.
        status: ``()`` int32, as in `numpyro_parallel.fixed_point.FixedPointResult`:
            ``OK`` (0), ``NON_FINITE`` (2: an iterate became NaN/Inf) or ``MAX_ITERATIONS``
            (3: the cap was reached first); names in `fixed_point.STATUS_NAMES`.
        converged: ``()`` bool, ``status == OK``: the last change of every mean entry was
            ``<= atol + rtol |mean|`` within ``max_iterations`` iterations and every iterate
            finite. False means the result is unusable (and `NonlinearGaussianSSM.log_prob`
            is NaN).
        num_iterations: ``()`` int, iterations run (0 when the start was already non-finite).
        residual: ``()`` max-abs change of the mean trajectory in the last iteration,
            ``max |G(z) - z|`` of the smoother map ``G``; NaN when an iterate became
            non-finite.
    """

    mean: jax.Array
    chol: jax.Array
    status: jax.Array
    converged: jax.Array
    num_iterations: jax.Array
    residual: jax.Array

    @property
    def cov(self) -> jax.Array:
        """``(T, d, d)`` smoothed covariances."""
        return self.chol @ jnp.swapaxes(self.chol, -1, -2)


def warn_not_converged(
    result: IteratedSmootherResult, max_iterations: int, atol: Any, *, stacklevel: int = 3
) -> bool:
    """Emit a `RuntimeWarning` when a concrete ``result`` did not converge (any batch entry).

    Returns whether a warning was emitted (never under tracing: the flag is the report).
    """
    converged = concrete(result.converged)
    if converged is None or bool(np.all(converged)):
        return False
    residual = np.asarray(result.residual, dtype=float)
    last = f"{np.nanmax(residual):.3g}" if np.any(np.isfinite(residual)) else "NaN"
    return warn_if(
        True,
        f"The iterated smoother did not converge ({int(np.sum(~converged))} of "
        f"{converged.size} sequence(s)): ran {int(np.max(result.num_iterations))} of "
        f"max_iterations={max_iterations}, largest last residual {last} (atol={atol}; NaN: an "
        "iterate became non-finite). The result is unreliable and `NonlinearGaussianSSM."
        "log_prob` is NaN: raise `max_iterations`, add `damping` or check the inputs.",
        stacklevel=stacklevel + 1,
    )
