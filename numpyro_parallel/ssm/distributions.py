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

from numpyro_parallel.linalg import cholesky_of
from numpyro_parallel.scan import affine_recursion
from numpyro_parallel.ssm.kalman import (
    FilterResult,
    GaussianSSMParams,
    SmootherResult,
    kalman_filter,
    kalman_sample_states,
    kalman_smoother,
)

__all__ = ["LinearGaussianSSM"]


def _time_axis(name: str, value: jax.Array, base_shape: tuple[int, ...]) -> int | None:
    """Length of the leading time axis of ``value`` (None when static); shape check."""
    shape = tuple(value.shape)
    if shape == base_shape:
        return None
    if len(shape) == len(base_shape) + 1 and shape[1:] == base_shape:
        return shape[0]
    raise ValueError(
        f"`{name}` must have shape {base_shape} or (num_steps, *{base_shape}); got {shape}. "
        "Batch dimensions of parameters are not supported: vmap over the distribution instead."
    )


def _check_finite(name: str, value: jax.Array) -> None:
    if isinstance(value, jax.core.Tracer):
        return  # values unknown at trace time; NaN parameters give a NaN log-density
    if not np.all(np.isfinite(np.asarray(value))):
        raise ValueError(f"`{name}` contains non-finite values (NaN or inf).")


class LinearGaussianSSM(Distribution):
    """Linear-Gaussian state-space model as a distribution over ``y`` of shape ``(T, p)``.

    Args:
        initial_mean: ``(d,)`` mean of ``x_0``.
        initial_cov: ``(d, d)`` covariance of ``x_0``.
        transition_matrix: ``(d, d)`` or ``(T, d, d)``.
        transition_cov: ``(d, d)`` or ``(T, d, d)`` process-noise covariance (PSD).
        observation_matrix: ``(p, d)`` or ``(T, p, d)``.
        observation_cov: ``(p, p)`` or ``(T, p, p)`` observation-noise covariance.
        num_steps: T; inferred from time-varying parameters when omitted.
        transition_offset: ``(d,)`` or ``(T, d)`` (controls); zero by default.
        observation_offset: ``(p,)`` or ``(T, p)``; zero by default.
        parallel: parallel-in-time Kalman recursions (True) or sequential scans (False).
        validate_args: NumPyro argument validation flag.

    Example:
        ```python
        ssm = LinearGaussianSSM(jnp.zeros(1), jnp.eye(1), jnp.eye(1), q * jnp.eye(1),
                                jnp.eye(1), r * jnp.eye(1), num_steps=len(y))
        numpyro.sample("y", ssm, obs=y[:, None])
        ```
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.real, 2)
    pytree_data_fields = ("params",)
    pytree_aux_fields = ("parallel",)

    def __init__(
        self,
        initial_mean,
        initial_cov,
        transition_matrix,
        transition_cov,
        observation_matrix,
        observation_cov,
        num_steps: int | None = None,
        *,
        transition_offset=None,
        observation_offset=None,
        parallel: bool = True,
        validate_args: bool | None = None,
    ):
        initial_mean = jnp.asarray(initial_mean)
        if initial_mean.ndim != 1:
            raise ValueError(f"`initial_mean` must have shape (d,); got {initial_mean.shape}.")
        d = initial_mean.shape[0]
        observation_matrix = jnp.asarray(observation_matrix)
        if observation_matrix.ndim not in (2, 3) or observation_matrix.shape[-1] != d:
            raise ValueError(
                f"`observation_matrix` must have shape (p, {d}) or (num_steps, p, {d}) for a "
                f"state of dimension d={d}; got {observation_matrix.shape}."
            )
        p = observation_matrix.shape[-2]
        dtype = jnp.result_type(
            *(jnp.asarray(a) for a in (initial_mean, initial_cov, transition_matrix))
        )
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.zeros(()).dtype  # default float (float64 under jax_enable_x64)
        if transition_offset is None:
            transition_offset = jnp.zeros(d, dtype)
        if observation_offset is None:
            observation_offset = jnp.zeros(p, dtype)
        args = {
            "initial_mean": (initial_mean, (d,)),
            "initial_cov": (initial_cov, (d, d)),
            "transition_matrix": (transition_matrix, (d, d)),
            "transition_cov": (transition_cov, (d, d)),
            "observation_matrix": (observation_matrix, (p, d)),
            "observation_cov": (observation_cov, (p, p)),
            "transition_offset": (transition_offset, (d,)),
            "observation_offset": (observation_offset, (p,)),
        }
        arrays, lengths = {}, {}
        for name, (value, base) in args.items():
            value = jnp.asarray(value, dtype=dtype)
            length = _time_axis(name, value, base)
            if length is not None:
                if name.startswith("initial"):
                    raise ValueError(f"`{name}` must have shape {base}; got {value.shape}.")
                lengths[name] = length
            _check_finite(name, value)
            arrays[name] = value
        if num_steps is None:
            if not lengths:
                raise ValueError(
                    "`num_steps` is required when no parameter has a leading time axis."
                )
            num_steps = next(iter(lengths.values()))
        if not isinstance(num_steps, int | np.integer) or num_steps < 1:
            raise ValueError(f"`num_steps` must be a positive int; got {num_steps!r}.")
        num_steps = int(num_steps)
        for name, length in lengths.items():
            if length != num_steps:
                raise ValueError(
                    f"`{name}` has a time axis of length {length} but num_steps={num_steps}."
                )

        def expand(name, base):
            value = arrays[name]
            return jnp.broadcast_to(value, (num_steps, *base)) if value.shape == base else value

        def chol(name, base):
            value = arrays[name]
            factor = cholesky_of(value)
            return jnp.broadcast_to(factor, (num_steps, *base)) if value.shape == base else factor

        self.params = GaussianSSMParams(
            initial_mean=arrays["initial_mean"],
            initial_chol=cholesky_of(arrays["initial_cov"]),
            transition_matrix=expand("transition_matrix", (d, d)),
            transition_offset=expand("transition_offset", (d,)),
            transition_chol=chol("transition_cov", (d, d)),
            observation_matrix=expand("observation_matrix", (p, d)),
            observation_offset=expand("observation_offset", (p,)),
            observation_chol=chol("observation_cov", (p, p)),
        )
        self.parallel = bool(parallel)
        super().__init__(batch_shape=(), event_shape=(num_steps, p), validate_args=validate_args)

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
        y = jnp.asarray(y)
        ok = y.shape[-2:] == self.event_shape and (allow_batch or y.ndim == 2)
        if not ok:
            expected = "(..., T, p)" if allow_batch else "(T, p)"
            raise ValueError(
                f"`y` must have shape {expected} with (T, p) = {self.event_shape}; got {y.shape}."
            )
        return y

    def _batched(self, fn, y):
        batch = y.shape[:-2]
        out = jax.vmap(fn)(y.reshape(-1, *self.event_shape))
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
        fn = lambda obs: kalman_filter(self.params, obs, parallel=self.parallel)
        return self._batched(lambda obs: fn(obs).log_likelihood_terms, y)

    def filter(self, y) -> FilterResult:
        """Filtering distributions and the log-likelihood.

        Args:
            y: ``(T, p)`` observations; NaN entries are missing.

        Returns:
            `FilterResult` with ``mean (T, d)``, ``cov (T, d, d)``, ``log_likelihood ()``.
        """
        y = self._check_y(y, allow_batch=False)
        return kalman_filter(self.params, y, parallel=self.parallel)

    def smooth(self, y) -> SmootherResult:
        """Smoothing distributions ``p(x_t | y)``.

        Args:
            y: ``(T, p)`` observations; NaN entries are missing.

        Returns:
            `SmootherResult` with ``mean (T, d)`` and ``cov (T, d, d)``.
        """
        y = self._check_y(y, allow_batch=False)
        return kalman_smoother(self.params, y, parallel=self.parallel)

    def sample_states(self, rng_key, y, sample_shape=()) -> jax.Array:
        """Draw latent trajectories from ``p(x | y)`` (parallel-in-time FFBS).

        Args:
            rng_key: JAX PRNG key.
            y: ``(T, p)`` observations; NaN entries are missing.
            sample_shape: leading shape of the draws.

        Returns:
            ``(*sample_shape, T, d)`` trajectories.
        """
        y = self._check_y(y, allow_batch=False)
        return kalman_sample_states(
            rng_key, self.params, y, tuple(sample_shape), parallel=self.parallel
        )

    def sample_with_states(self, key, sample_shape=()) -> tuple[jax.Array, jax.Array]:
        """Simulate states and observations from the model.

        Args:
            key: JAX PRNG key.
            sample_shape: leading shape of the draws.

        Returns:
            ``(states (*sample_shape, T, d), observations (*sample_shape, T, p))``.
        """
        prm = self.params
        T, p = self.event_shape
        d = self.state_dim
        key_x0, key_w, key_v = jax.random.split(key, 3)
        shape = tuple(sample_shape)
        dtype = prm.initial_mean.dtype
        z0 = jax.random.normal(key_x0, (*shape, d), dtype)
        w = jax.random.normal(key_w, (*shape, T - 1, d), dtype)
        v = jax.random.normal(key_v, (*shape, T, p), dtype)

        def simulate(noise_0, noise_w, noise_v):
            x_start = prm.initial_mean + prm.initial_chol @ noise_0
            offsets = prm.transition_offset[:-1] + jnp.einsum(
                "tij,tj->ti", prm.transition_chol[:-1], noise_w
            )
            if T > 1:
                rest = affine_recursion(
                    prm.transition_matrix[:-1], offsets, x_start, parallel=self.parallel
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
            z0.reshape(num, d), w.reshape(num, T - 1, d), v.reshape(num, T, p)
        )
        return tuple(a.reshape(*shape, *a.shape[1:]) for a in flat)

    def sample(self, key, sample_shape=()):
        """Simulate observation sequences.

        Args:
            key: JAX PRNG key.
            sample_shape: leading shape of the draws.

        Returns:
            ``(*sample_shape, T, p)`` observations.
        """
        return self.sample_with_states(key, sample_shape)[1]
