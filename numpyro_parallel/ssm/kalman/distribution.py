"""`LinearGaussianSSM`: a NumPyro distribution over observation sequences of a linear-Gaussian
state-space model, with the states marginalised by a parallel square-root Kalman filter.

Convention (ARCHITECTURE §3.1): ``x_0 ~ N(initial_mean, initial_cov)``;
``y_t = H_t x_t + observation_offset_t + v_t``; ``x_{t+1} = F_t x_t + transition_offset_t + w_t``.
Any matrix or offset may carry a leading time axis of length T; transition arrays ``[t]`` map
``x_t`` to ``x_{t+1}`` (their last entry is unused). NaN entries of ``y`` are missing.

Reference: Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers".
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints

from numpyro_parallel._checks import check_sample_shape, concrete
from numpyro_parallel.scan import affine_recursion
from numpyro_parallel.ssm.kalman.build import build_params, is_scalar_model, promote_scalar_model
from numpyro_parallel.ssm.kalman.checks import float_dtype
from numpyro_parallel.ssm.kalman.inference import (
    FilterResult,
    SmootherResult,
    _log_likelihood_terms,
    kalman_filter,
    kalman_smoother,
    resolve_log_likelihood_strategy,
)
from numpyro_parallel.ssm.kalman.sampling import kalman_sample_states
from numpyro_parallel.strategy import StrategyLike, as_strategy

__all__ = ["LinearGaussianSSM"]


class LinearGaussianSSM(Distribution):
    """Linear-Gaussian state-space model as a distribution over ``y`` of shape ``(T, p)``.

    One-state models may be written with scalars: a 0-d ``initial_mean`` makes every argument
    a scalar or a ``(T,)`` array (time-varying), the observations ``y`` a ``(T,)`` series
    (``event_shape == (T,)``), and `sample` / `sample_states` return ``(..., T)``; `filter`
    and `smooth` keep their ``(T, 1)`` means.

    Args:
        initial_mean: ``(d,)`` mean of ``x_0``.
        initial_cov: ``(d, d)`` covariance of ``x_0`` (or give ``initial_cov_factor``).
        transition_matrix: ``(d, d)`` or ``(T, d, d)``; defines the state dimension d.
        transition_cov: ``(d, d)`` or ``(T, d, d)`` process-noise covariance (PSD, may be
            singular), or give ``transition_cov_factor``.
        observation_matrix: ``(p, d)`` or ``(T, p, d)``.
        observation_cov: ``(p, p)`` or ``(T, p, p)`` observation-noise covariance, or give
            ``observation_cov_factor``.
        num_steps: T; inferred from time-varying parameters when omitted.
        initial_cov_factor: ``(d, k)`` factor ``L`` with ``initial_cov = L @ L.T``.
        transition_cov_factor: ``(d, r)`` or ``(T, d, r)`` factor with
            ``transition_cov = L @ L.T``; any width r (rank-r noise). For a selection matrix
            ``R`` ``(d, r)`` and an ``r x r`` covariance ``Q_r`` pass
            ``R @ jnp.linalg.cholesky(Q_r)``. Gradients are exact for every rank.
        observation_cov_factor: ``(p, s)`` or ``(T, p, s)`` factor of ``observation_cov``.
        transition_offset: ``(d,)`` or ``(T, d)`` (controls); zero by default.
        observation_offset: ``(p,)`` or ``(T, p)``; zero by default.
        strategy: evaluation strategy of every recursion (`numpyro_parallel.strategy`):
            ``"auto"`` (default), `Sequential()`, `Associative()` or `Blocked(block_size)`.
        validate_args: NumPyro argument validation flag.

    Exactly one of ``*_cov`` and ``*_cov_factor`` must be given for each noise. Concrete
    invalid arguments raise `ValueError`/`TypeError` naming the argument (non-symmetric or
    indefinite covariances, NaN/inf, wrong shapes); under `jit`/`grad`/NUTS invalid values give
    a NaN log-density. Integer arrays are cast to the parameters' float dtype, and ``y`` is cast
    to it as well.

    Example:
        ```python
        # local level: x_{t+1} = x_t + w_t, y_t = x_t + v_t (scalars: a (T,) series)
        ssm = LinearGaussianSSM(0.0, 10.0, 1.0, q, 1.0, r, num_steps=len(y))
        numpyro.sample("y", ssm, obs=y)
        ```
    """

    arg_constraints: ClassVar[dict] = {}
    pytree_data_fields = ("params",)
    pytree_aux_fields = ("strategy", "scalar", "time_invariant")

    def __init__(
        self,
        initial_mean=None,
        initial_cov=None,
        transition_matrix=None,
        transition_cov=None,
        observation_matrix=None,
        observation_cov=None,
        num_steps: int | None = None,
        *,
        initial_cov_factor=None,
        transition_cov_factor=None,
        observation_cov_factor=None,
        transition_offset=None,
        observation_offset=None,
        strategy: StrategyLike = "auto",
        validate_args: bool | None = None,
    ):
        arguments = dict(
            initial_mean=initial_mean,
            initial_cov=initial_cov,
            initial_cov_factor=initial_cov_factor,
            transition_matrix=transition_matrix,
            transition_cov=transition_cov,
            transition_cov_factor=transition_cov_factor,
            observation_matrix=observation_matrix,
            observation_cov=observation_cov,
            observation_cov_factor=observation_cov_factor,
            transition_offset=transition_offset,
            observation_offset=observation_offset,
        )
        self.scalar = is_scalar_model(initial_mean)
        if self.scalar:
            arguments = promote_scalar_model(arguments)
        self.params, self.time_invariant = build_params(num_steps, **arguments)
        self.strategy = as_strategy(strategy)
        num_steps, p = self.params.observation_offset.shape
        event_shape = (num_steps,) if self.scalar else (num_steps, p)
        super().__init__(batch_shape=(), event_shape=event_shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        """Real-valued series: ``(T, p)`` (``(T,)`` for a scalar model)."""
        return constraints.independent(constraints.real, len(self.event_shape))

    # ------------------------------------------------------------------ helpers
    @property
    def num_steps(self) -> int:
        """Number of time steps T."""
        return self.event_shape[0]

    @property
    def state_dim(self) -> int:
        """Dimension d of the latent state."""
        return self.params.initial_mean.shape[-1]

    def _check_y(self, y, allow_batch: bool) -> jax.Array:
        """``y`` as a float ``(..., T, p)`` array (a scalar model's ``(..., T)`` gains p = 1)."""
        y = jnp.asarray(y)
        float_dtype({"y": y})
        observed = concrete(y)
        if observed is not None and np.any(np.isinf(observed)):
            raise ValueError("`y` contains inf; only NaN is allowed (it marks missing values).")
        rank = len(self.event_shape)
        ok = y.shape[y.ndim - rank :] == self.event_shape and (allow_batch or y.ndim == rank)
        if not ok:
            names = "(T,)" if self.scalar else "(T, p)"
            expected = f"(..., {names[1:]}" if allow_batch else names
            raise ValueError(
                f"`y` must have shape {expected} with {names} = {self.event_shape}; got {y.shape}."
            )
        y = y[..., None] if self.scalar else y
        return y.astype(self.params.initial_mean.dtype)

    def _batched(self, fn, y):
        batch = y.shape[:-2]
        out = jax.vmap(fn)(y.reshape(-1, *y.shape[-2:]))
        return jax.tree_util.tree_map(lambda a: a.reshape(*batch, *a.shape[1:]), out)

    # ------------------------------------------------------------------ API
    def log_prob(self, value):
        """Exact marginal log-likelihood ``log p(y)`` (states integrated out).

        Args:
            value: ``(..., T, p)`` observations; NaN entries are missing.

        Returns:
            ``(...)`` log-likelihoods.
        """
        return self.log_likelihood_terms(value).sum(-1)

    def log_likelihood_terms(self, y) -> jax.Array:
        """One-step-ahead predictive terms ``log p(y_t | y_{0:t-1})``.

        Args:
            y: ``(..., T, p)`` observations; NaN entries are missing.

        Returns:
            ``(..., T)`` terms; they sum to `log_prob`.
        """
        y = self._check_y(y, allow_batch=True)
        strategy = resolve_log_likelihood_strategy(self.strategy, self.params, y)
        fn = lambda obs: _log_likelihood_terms(
            self.params, obs, strategy=strategy, time_invariant=self.time_invariant
        )
        return self._batched(fn, y)

    def filter(self, y) -> FilterResult:
        """Filtering distributions and the log-likelihood.

        Args:
            y: ``(T, p)`` observations; NaN entries are missing.

        Returns:
            `FilterResult` with ``mean (T, d)``, ``cov (T, d, d)``, ``log_likelihood ()``.
        """
        y = self._check_y(y, allow_batch=False)
        return kalman_filter(self.params, y, strategy=self.strategy)

    def smooth(self, y) -> SmootherResult:
        """Smoothing distributions ``p(x_t | y)``.

        Args:
            y: ``(T, p)`` observations; NaN entries are missing.

        Returns:
            `SmootherResult` with ``mean (T, d)`` and ``cov (T, d, d)``.
        """
        y = self._check_y(y, allow_batch=False)
        return kalman_smoother(self.params, y, strategy=self.strategy)

    def sample_states(self, rng_key, y, sample_shape=()) -> jax.Array:
        """Draw latent trajectories from ``p(x | y)`` (parallel-in-time FFBS).

        Args:
            rng_key: JAX PRNG key.
            y: ``(T, p)`` observations; NaN entries are missing.
            sample_shape: leading shape of the draws (an int n means ``(n,)``; entries >= 0).

        Returns:
            ``(*sample_shape, T, d)`` trajectories (``(*sample_shape, T)`` for a scalar model).
        """
        y = self._check_y(y, allow_batch=False)
        states = kalman_sample_states(
            rng_key, self.params, y, check_sample_shape(sample_shape), strategy=self.strategy
        )
        return states[..., 0] if self.scalar else states

    def sample_with_states(self, key, sample_shape=()) -> tuple[jax.Array, jax.Array]:
        """Simulate states and observations from the model.

        Args:
            key: JAX PRNG key.
            sample_shape: leading shape of the draws (an int n means ``(n,)``; entries >= 0).

        Returns:
            ``(states (*sample_shape, T, d), observations (*sample_shape, T, p))``, without
            the trailing ``d = p = 1`` axes for a scalar model.
        """
        shape = check_sample_shape(sample_shape)
        prm = self.params
        T = self.num_steps
        key_x0, key_w, key_v = jax.random.split(key, 3)
        dtype = prm.initial_mean.dtype
        k0, r, s = (
            prm.initial_chol.shape[-1],
            prm.transition_chol.shape[-1],
            prm.observation_chol.shape[-1],
        )
        z0 = jax.random.normal(key_x0, (*shape, k0), dtype)
        w = jax.random.normal(key_w, (*shape, T - 1, r), dtype)
        v = jax.random.normal(key_v, (*shape, T, s), dtype)

        def simulate(noise_0, noise_w, noise_v):
            x_start = prm.initial_mean + prm.initial_chol @ noise_0
            offsets = prm.transition_offset[:-1] + jnp.einsum(
                "tij,tj->ti", prm.transition_chol[:-1], noise_w
            )
            if T > 1:
                rest = affine_recursion(
                    prm.transition_matrix[:-1], offsets, x_start, strategy=self.strategy
                )
                states = jnp.concatenate([x_start[None], rest])
            else:
                states = x_start[None]
            obs = (
                jnp.einsum("tpd,td->tp", prm.observation_matrix, states)
                + prm.observation_offset
                + jnp.einsum("tij,tj->ti", prm.observation_chol, noise_v)
            )
            return states, obs

        num = int(np.prod(shape))
        flat = jax.vmap(simulate)(
            z0.reshape(num, k0), w.reshape(num, T - 1, r), v.reshape(num, T, s)
        )
        out = tuple(a.reshape(*shape, *a.shape[1:]) for a in flat)
        return tuple(a[..., 0] for a in out) if self.scalar else out

    def sample(self, key, sample_shape=()):
        """Simulate observation sequences.

        Args:
            key: JAX PRNG key.
            sample_shape: leading shape of the draws (an int n means ``(n,)``; entries >= 0).

        Returns:
            ``(*sample_shape, T, p)`` observations (``(*sample_shape, T)`` for a scalar
            model).
        """
        return self.sample_with_states(key, sample_shape)[1]
