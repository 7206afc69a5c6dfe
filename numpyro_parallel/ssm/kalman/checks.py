"""Input checks of the functional Kalman API (`kalman_filter`, `kalman_smoother`,
`kalman_sample_states`): shapes, dtypes and concrete values of a `GaussianSSMParams` and ``y``.

Concrete invalid input raises a `ValueError`/`TypeError` naming the field; under tracing the
values are unknown, and `finite_flag` turns non-finite parameters or infinite observations into
a NaN log-likelihood instead (NaN observations are missing values, not errors).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import check_finite, concrete

__all__ = ["check_params_and_y", "finite_flag", "float_dtype"]

_EXPAND_HINT = (
    "Every per-step field needs a leading time axis of length T (time-expanded), e.g. "
    "`jnp.broadcast_to(F, (T, d, d))`, or build the model with `LinearGaussianSSM(...).params`."
)


def float_dtype(named_values: dict[str, Any]) -> jnp.dtype:
    """Common floating dtype of real arrays (the default float when all are integers).

    Raises:
        TypeError: an array is boolean, complex or not numeric (the message names it).
    """
    floats = []
    for name, value in named_values.items():
        dtype = jnp.asarray(value).dtype if not hasattr(value, "dtype") else value.dtype
        if jnp.issubdtype(dtype, jnp.floating):
            floats.append(dtype)
        elif not jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_:
            raise TypeError(f"`{name}` must be a real (float or integer) array; got {dtype}.")
    return jnp.result_type(*floats) if floats else jnp.zeros(()).dtype


def _shape_error(name: str, expected: str, shape: tuple, hint: str = "") -> ValueError:
    return ValueError(f"`{name}` must have shape {expected}; got {shape}. {hint}".rstrip())


def check_params_and_y(params: Any, y: Any, *, expected_type: type) -> tuple[Any, jax.Array]:
    """Validate a time-expanded model and observations; cast both to one float dtype.

    Args:
        params: a `GaussianSSMParams`.
        y: ``(T, p)`` observations (NaN = missing).
        expected_type: the `GaussianSSMParams` class (avoids a circular import).

    Returns:
        ``(params, y)`` as arrays of the parameters' floating dtype (``y`` is cast to it).
    """
    if not isinstance(params, expected_type):
        raise TypeError(
            f"`params` must be a {expected_type.__name__}; got {type(params).__name__}."
        )
    names = {f"params.{field}": value for field, value in zip(params._fields, params)}
    arrays = {name: jnp.asarray(value) for name, value in names.items()}
    dtype = float_dtype(arrays)
    y = jnp.asarray(y)
    float_dtype({"y": y})
    obs = arrays["params.observation_matrix"]
    if obs.ndim != 3:
        raise _shape_error("params.observation_matrix", "(T, p, d)", obs.shape, _EXPAND_HINT)
    num_steps, p, d = obs.shape
    if num_steps < 1:
        raise ValueError("`params` must describe T >= 1 time steps; got T = 0.")
    expected = {
        "params.initial_mean": ((d,), f"({d},)"),
        "params.transition_matrix": ((num_steps, d, d), f"(T, d, d) = {(num_steps, d, d)}"),
        "params.transition_offset": ((num_steps, d), f"(T, d) = {(num_steps, d)}"),
        "params.observation_offset": ((num_steps, p), f"(T, p) = {(num_steps, p)}"),
    }
    for name, (shape, text) in expected.items():
        if arrays[name].shape != shape:
            raise _shape_error(name, text, arrays[name].shape, _EXPAND_HINT)
    factors = {
        "params.initial_chol": (d,),
        "params.transition_chol": (num_steps, d),
        "params.observation_chol": (num_steps, p),
    }
    for name, lead in factors.items():
        shape = arrays[name].shape
        if shape[:-1] != lead or shape[-1] < 1:
            text = f"({', '.join(map(str, lead))}, k) with k >= 1 (any square-root factor)"
            raise _shape_error(name, text, shape, _EXPAND_HINT if len(lead) == 2 else "")
    if y.shape != (num_steps, p):
        raise ValueError(f"`y` must have shape (T, p) = {(num_steps, p)}; got {y.shape}.")
    for name, value in arrays.items():
        check_finite(name, value)
    observed = concrete(y)
    if observed is not None and np.any(np.isinf(observed)):
        raise ValueError("`y` contains inf; only NaN is allowed (it marks missing values).")
    params = expected_type(*(arrays[name].astype(dtype) for name in names))
    return params, y.astype(dtype)


def finite_flag(params: Any, y: jax.Array) -> jax.Array:
    """Traced validity flag: all parameters finite and no infinite observation."""
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in params]
    return jnp.all(jnp.stack(flags)) & ~jnp.any(jnp.isinf(y))
