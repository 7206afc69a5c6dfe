"""Input validation for the nonlinear state-space models (`numpyro_parallel.ssm.nonlinear`).

Concrete invalid inputs raise a `ValueError`/`TypeError` naming the argument; traced values are
not checked here (NaN propagates through the smoother and `log_prob` becomes NaN).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import (
    check_covariance,
    check_finite,
    check_positive_int,
    check_real,
    check_tolerance,
    concrete,
)
from numpyro_parallel.ssm.nonlinear.linearize import METHODS

if TYPE_CHECKING:
    from numpyro_parallel.ssm.nonlinear.smoother import NonlinearGaussianModel

__all__ = [
    "INITIAL_TRAJECTORIES",
    "check_distribution_arrays",
    "check_function",
    "check_method",
    "check_model",
    "check_observations",
    "check_options",
]

INITIAL_TRAJECTORIES = ("filter", "prior")


def check_function(
    name: str, fn: Any, mean: jax.Array, expected: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """Check that ``fn`` is a callable mapping a ``(d,)`` array to a vector; return its shape.

    Args:
        name: argument name for the messages.
        fn: the function.
        mean: ``(d,)`` array whose shape and dtype the function is traced with.
        expected: required output shape, or None for any non-empty vector ``(q,)``.

    Raises:
        TypeError: ``fn`` is not callable or does not return a single array.
        ValueError: calling it on a ``(d,)`` array fails or returns the wrong shape.
    """
    if not callable(fn):
        raise TypeError(f"`{name}` must be a callable (d,) -> (q,); got {type(fn).__name__}.")
    spec = jax.ShapeDtypeStruct(mean.shape, mean.dtype)
    try:
        out = jax.eval_shape(fn, spec)
    except Exception as err:  # report which function failed, keep the cause
        raise ValueError(
            f"`{name}` failed when called on an array of shape (d,) = {mean.shape}: {err}"
        ) from err
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"`{name}` must return a single array; it returns {type(out).__name__}.")
    if expected is not None and out.shape != expected:
        raise ValueError(f"`{name}` returns shape {out.shape}; expected (d,) = {expected}.")
    if len(out.shape) != 1 or out.shape[0] < 1:
        raise ValueError(f"`{name}` returns shape {out.shape}; expected a vector (p,), p >= 1.")
    return out.shape


def _time_expand(name: str, chol: Any, num_steps: int, dim: int) -> jax.Array:
    chol = jnp.asarray(chol)
    if chol.shape not in ((dim, dim), (num_steps, dim, dim)):
        raise ValueError(
            f"`{name}` must have shape {(dim, dim)} or {(num_steps, dim, dim)}; got {chol.shape}."
        )
    check_finite(name, chol)
    return jnp.broadcast_to(chol, (num_steps, dim, dim))


def check_model(model: NonlinearGaussianModel, num_steps: int) -> NonlinearGaussianModel:
    """Validate a `NonlinearGaussianModel` and time-expand its noise factors.

    Shapes are checked at trace time; concrete values must be finite.

    Args:
        model: the model.
        num_steps: number of time steps T (>= 1).

    Returns:
        The model with ``(T, ., .)`` noise factors.

    Raises:
        ValueError, TypeError: naming the offending field.
    """
    check_positive_int("num_steps", num_steps)
    mean = jnp.asarray(model.initial_mean)
    if mean.ndim != 1 or mean.shape[0] < 1:
        raise ValueError(f"`initial_mean` must have shape (d,) with d >= 1; got {mean.shape}.")
    check_finite("initial_mean", mean)
    d = mean.shape[0]
    initial_chol = jnp.asarray(model.initial_chol)
    if initial_chol.shape != (d, d):
        raise ValueError(
            f"`initial_chol` must have shape (d, d) = {(d, d)}; got {initial_chol.shape}."
        )
    check_finite("initial_chol", initial_chol)
    check_function("transition_fn", model.transition_fn, mean, (d,))
    (p,) = check_function("observation_fn", model.observation_fn, mean)
    return model._replace(
        initial_mean=mean,
        initial_chol=initial_chol,
        transition_chol=_time_expand("transition_chol", model.transition_chol, num_steps, d),
        observation_chol=_time_expand("observation_chol", model.observation_chol, num_steps, p),
    )


def check_observations(y: Any, num_features: int) -> jax.Array:
    """``y`` as an array of shape ``(T, p)``, ``T >= 1``; concrete values must not be inf.

    NaN entries mark missing observations and are accepted.
    """
    y = jnp.asarray(y)
    if y.ndim != 2 or y.shape[1] != num_features:
        raise ValueError(
            f"`y` must have shape (T, p) with p = {num_features} (from `observation_fn`); "
            f"got {y.shape}."
        )
    if y.shape[0] < 1:
        raise ValueError(f"`y` must have at least one time step (T >= 1); got {y.shape}.")
    return check_observation_values(y)


def check_observation_values(y: jax.Array) -> jax.Array:
    """Raise unless ``y`` is numeric without (concrete) inf entries; NaN marks missing data."""
    if not jnp.issubdtype(y.dtype, jnp.number):
        raise TypeError(f"`y` must be a numeric array; got dtype {y.dtype}.")
    array = concrete(y)
    if array is not None and np.any(np.isinf(array)):
        raise ValueError("`y` contains infinite values (NaN entries mark missing data; inf not).")
    return y


def check_method(method: Any) -> str:
    """Raise unless ``method`` is one of `METHODS`."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    return method


def check_options(
    *,
    method: Any,
    max_iterations: Any,
    atol: Any,
    rtol: Any = None,
    damping: Any = None,
    order: Any,
    initial_trajectory: Any = None,
    trajectory_by_name: bool = False,
) -> None:
    """Validate the iteration options shared by `iterated_smoother` and the distribution.

    ``trajectory_by_name``: only the names are accepted (the distribution), not arrays.
    """
    if trajectory_by_name and not isinstance(initial_trajectory, str):
        raise TypeError(
            "`initial_trajectory` must be 'filter' or 'prior' for `NonlinearGaussianSSM` "
            f"(pass trajectories to `iterated_smoother`); got {type(initial_trajectory)}."
        )
    check_method(method)
    check_positive_int("max_iterations", max_iterations)
    check_positive_int("order", order)
    check_tolerance("atol", atol)
    check_tolerance("rtol", rtol)
    if damping is not None:
        check_real("damping", damping, low=0.0, traced_ok=True)
    if isinstance(initial_trajectory, str) and initial_trajectory not in INITIAL_TRAJECTORIES:
        raise ValueError(
            f"`initial_trajectory` must be one of {INITIAL_TRAJECTORIES}, a (T, d) array or a "
            f"(mean, chol) pair; got {initial_trajectory!r}."
        )


def _check_noise_cov(name: str, cov: jax.Array, dim: int, num_steps: int) -> None:
    if cov.shape not in ((dim, dim), (num_steps, dim, dim)):
        raise ValueError(
            f"`{name}` must have shape {(dim, dim)} or {(num_steps, dim, dim)}; got {cov.shape}."
        )
    check_covariance(name, cov)


def _as_float(value: Any, dtype) -> jax.Array:
    """``value`` as an array, cast to ``dtype`` when it is not already inexact.

    Integer covariances (``jnp.eye(2, dtype=int)``) are promoted here, as `LinearGaussianSSM`
    does, before `numpyro_parallel._checks.check_covariance` inspects them.
    """
    value = jnp.asarray(value)
    return value if jnp.issubdtype(value.dtype, jnp.inexact) else value.astype(dtype)


def check_distribution_arrays(
    initial_mean: Any,
    initial_cov: Any,
    transition_fn: Any,
    transition_cov: Any,
    observation_fn: Any,
    observation_cov: Any,
    num_steps: int,
) -> tuple[tuple[jax.Array, ...], int]:
    """Check the arguments of `NonlinearGaussianSSM` (noise as covariances).

    Returns:
        ``((initial_mean, initial_cov, transition_cov, observation_cov), p)`` as arrays (integer
        ones cast to the floating dtype of ``initial_mean``), with
        ``p`` the observation dimension.

    Raises:
        ValueError, TypeError: the offending argument is named.
    """
    initial_mean = jnp.asarray(initial_mean)
    if not jnp.issubdtype(initial_mean.dtype, jnp.inexact):
        initial_mean = initial_mean.astype(float)
    if initial_mean.ndim != 1 or initial_mean.shape[0] < 1:
        raise ValueError(
            f"`initial_mean` must have shape (d,) with d >= 1; got {initial_mean.shape}"
            " (batch the distribution with jax.vmap instead)."
        )
    check_finite("initial_mean", initial_mean)
    d = initial_mean.shape[0]
    initial_cov = _as_float(initial_cov, initial_mean.dtype)
    if initial_cov.shape != (d, d):
        raise ValueError(
            f"`initial_cov` must have shape (d, d) = {(d, d)}; got {initial_cov.shape}."
        )
    check_covariance("initial_cov", initial_cov)
    check_function("transition_fn", transition_fn, initial_mean, (d,))
    (p,) = check_function("observation_fn", observation_fn, initial_mean)
    transition_cov = _as_float(transition_cov, initial_mean.dtype)
    observation_cov = _as_float(observation_cov, initial_mean.dtype)
    _check_noise_cov("transition_cov", transition_cov, d, num_steps)
    _check_noise_cov("observation_cov", observation_cov, p, num_steps)
    return (initial_mean, initial_cov, transition_cov, observation_cov), p
