"""Shared input checks and failure reporting: the package's failure contract in one place.

The contract (docs: "Failure modes and what you see"):

- concrete invalid input raises a `ValueError`/`TypeError` that names the argument and what is
  wrong;
- values only known under tracing (inside `jax.jit`, `jax.grad`, NUTS) cannot be checked; the
  log-density becomes NaN and result objects carry a status flag, never a finite wrong number;
- non-convergence, particle collapse and stuck chains set a flag in the result and, outside
  `jit`, emit a `RuntimeWarning` (`warn_if`).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "check_bool",
    "check_covariance",
    "check_finite",
    "check_positive_int",
    "check_real",
    "check_rng_key",
    "check_sample_shape",
    "check_tolerance",
    "concrete",
    "is_concrete",
    "nan_unless",
    "warn_if",
]


def is_concrete(*values: Any) -> bool:
    """Whether every array leaf of ``values`` has a known value (no tracer)."""
    leaves = jax.tree_util.tree_leaves(values)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def concrete(value: Any) -> np.ndarray | None:
    """``value`` as a NumPy array when its value is known, else None (under tracing)."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return None


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer ``>= minimum``.

    Raises:
        TypeError: not an integer (bools and floats are rejected).
        ValueError: smaller than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be a Python int; got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value}.")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool (NumPy's included), else a `TypeError` naming ``name`` (a string
    such as ``"False"`` would otherwise count as true)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`{name}` must be a bool (True or False); got {value!r}.")
    return bool(value)


def check_sample_shape(sample_shape: Any) -> tuple[int, ...]:
    """Return ``sample_shape`` (an int or a sequence of ints ``>= 0``) as a tuple of ints.

    Raises:
        TypeError: not an int or a sequence of ints.
        ValueError: a negative entry.
    """
    if isinstance(sample_shape, int | np.integer) and not isinstance(sample_shape, bool):
        sample_shape = (sample_shape,)
    try:
        sample_shape = tuple(sample_shape)
    except TypeError:
        raise TypeError(
            f"`sample_shape` must be a tuple of ints; got {type(sample_shape).__name__}."
        ) from None
    return tuple(check_positive_int("sample_shape", n, minimum=0) for n in sample_shape)


def _interval(low: float, high: float, low_closed: bool, high_closed: bool) -> str:
    if math.isinf(low) and math.isinf(high):
        return "a finite number"
    if math.isinf(high):
        return f"a finite number {'>=' if low_closed else '>'} {low:g}"
    if math.isinf(low):
        return f"a finite number {'<=' if high_closed else '<'} {high:g}"
    return f"a number in {'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"


def check_real(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_closed: bool = False,
    high_closed: bool = False,
    traced_ok: bool = False,
) -> Any:
    """Return a finite real scalar inside an interval (a float), or raise naming ``name``.

    Python and NumPy numbers and 0-d arrays are accepted; bools, strings, None and complex
    numbers are not. With ``traced_ok`` a traced value is returned unchecked (the caller turns
    an invalid one into NaN); otherwise it is a `TypeError`.

    Args:
        name: argument name for the message.
        value: the value to check.
        low, high: the interval's bounds (infinite: unbounded on that side).
        low_closed, high_closed: whether the interval includes that bound.
        traced_ok: accept a value only known under tracing.

    Raises:
        TypeError: not a real number.
        ValueError: not a scalar, not finite, or outside the interval.
    """
    interval = _interval(low, high, low_closed, high_closed)
    if isinstance(value, jax.core.Tracer):
        if traced_ok:
            return value
        raise TypeError(f"`{name}` must be a concrete number ({interval}); got a traced value.")
    if isinstance(value, numbers.Real | np.ndarray | jax.Array) and not isinstance(value, bool):
        array = np.asarray(value)
    else:
        array = None
    if array is None or array.dtype.kind not in "iuf":
        raise TypeError(f"`{name}` must be {interval}; got {value!r} ({type(value).__name__}).")
    if array.ndim:
        raise ValueError(f"`{name}` must be a scalar ({interval}); got shape {array.shape}.")
    number = float(array)
    inside = (number >= low if low_closed else number > low) and (
        number <= high if high_closed else number < high
    )
    if not (math.isfinite(number) and inside):
        raise ValueError(f"`{name}` must be {interval}; got {value!r}.")
    return number


def check_tolerance(name: str, value: Any) -> Any:
    """Return a tolerance, or raise unless it is None or a finite number >= 0 (or traced)."""
    if value is None:
        return None
    return check_real(name, value, low=0.0, low_closed=True, traced_ok=True)


def check_rng_key(rng_key: Any) -> None:
    """Raise `TypeError` unless ``rng_key`` is a single PRNG key (typed or raw uint32[2])."""
    dtype = getattr(rng_key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jnp.uint32 and jnp.shape(rng_key) == (2,)
    if not (typed and jnp.ndim(rng_key) == 0) and not raw:
        raise TypeError(
            "`rng_key` must be a single PRNG key (`jax.random.key(seed)`); got "
            f"{type(rng_key).__name__} with shape {jnp.shape(rng_key)}."
        )


def check_finite(name: str, value: Any) -> None:
    """Raise `ValueError` when a concrete ``value`` holds NaN or inf (no-op under tracing)."""
    array = concrete(value)
    if array is not None and array.size and not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains non-finite values (NaN or inf).")


def check_covariance(name: str, value: Any, *, allow_singular: bool = True) -> None:
    """Raise `ValueError` unless a concrete ``value`` is a finite symmetric PSD matrix (stack).

    Tolerances scale with the matrix norm and the dtype's precision, so rounding noise in a
    covariance computed as ``A @ A.T`` passes. Under tracing nothing is checked: callers turn an
    invalid covariance into NaN instead (see `numpyro_parallel.linalg.cholesky_of`).

    Args:
        name: argument name for the message.
        value: ``(..., n, n)`` matrix or stack of matrices.
        allow_singular: accept positive semi-definite (True) or demand positive definite.
    """
    array = concrete(value)
    if array is None:
        return
    check_finite(name, array)
    if array.ndim < 2 or array.shape[-1] != array.shape[-2]:
        raise ValueError(f"`{name}` must be a square matrix (..., n, n); got {array.shape}.")
    array = array.astype(np.float64)
    scale = np.max(np.abs(array), axis=(-2, -1), keepdims=True) + np.finfo(np.float64).tiny
    eps = 100 * np.finfo(np.asarray(value).dtype).eps * array.shape[-1]
    asym = np.max(np.abs(array - np.swapaxes(array, -1, -2)) / scale)
    if asym > eps:
        raise ValueError(
            f"`{name}` must be symmetric; max |A - A^T| / max |A| = {asym:.3g}. "
            "Pass a symmetric covariance (or a factor: see the `*_cov_factor` arguments)."
        )
    low = np.min(np.linalg.eigvalsh(0.5 * (array + np.swapaxes(array, -1, -2))) / scale[..., 0])
    if low < -eps or (not allow_singular and low <= eps):
        kind = "positive semi-definite" if allow_singular else "positive definite"
        raise ValueError(
            f"`{name}` must be {kind}; its smallest eigenvalue relative to max |A| is {low:.3g}."
        )


def nan_unless(ok: jax.Array, value: jax.Array) -> jax.Array:
    """``value`` where ``ok`` holds, NaN elsewhere (the traced side of the contract)."""
    return jnp.where(ok, value, jnp.asarray(jnp.nan, jnp.result_type(value)))


def warn_if(flag: Any, message: str, *, stacklevel: int = 3) -> bool:
    """Emit a `RuntimeWarning` when a concrete ``flag`` has any true entry.

    Under tracing the flag is unknown and nothing is emitted: the result's status field is the
    report. Returns whether a warning was emitted.
    """
    array = concrete(flag)
    if array is None or not np.any(array):
        return False
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)
    return True
