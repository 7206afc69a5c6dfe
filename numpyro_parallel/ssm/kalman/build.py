"""Argument handling of `LinearGaussianSSM`: shapes, dtypes, covariances or factors, checks.

Turns the user's arguments into a time-expanded `GaussianSSMParams` in square-root form.
Concrete invalid values raise a `ValueError`/`TypeError` naming the argument; under tracing,
invalid covariances become NaN factors (`numpyro_parallel.linalg.cholesky_of`) and non-finite
values propagate, so the log-density is NaN.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_covariance, check_finite, check_positive_int
from numpyro_parallel.linalg import cholesky_of
from numpyro_parallel.ssm.kalman.checks import float_dtype
from numpyro_parallel.ssm.kalman.inference import GaussianSSMParams

__all__ = ["build_params", "is_scalar_model", "promote_scalar_model"]

_NOISES = ("initial", "transition", "observation")


def _as_array(name: str, value: Any) -> jax.Array:
    try:
        return jnp.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be an array of real numbers; got {value!r}.") from error


def _time_axis(name: str, value: jax.Array, base: tuple, static_only: bool) -> int | None:
    """Leading time-axis length of ``value`` (None when static); None in ``base`` = any >= 1."""
    shape = tuple(value.shape)

    def fits(core):
        return len(core) == len(base) and all(b is None or s == b for s, b in zip(core, base))

    text = "(" + ", ".join("k" if b is None else str(b) for b in base) + ")"
    width_ok = base[-1] is not None or (shape and shape[-1] >= 1)
    if fits(shape) and width_ok:
        return None
    if not static_only and len(shape) == len(base) + 1 and fits(shape[1:]) and width_ok:
        return shape[0]
    allowed = text if static_only else f"{text} or (num_steps, *{text})"
    raise ValueError(
        f"`{name}` must have shape {allowed}"
        + (" with k >= 1" if base[-1] is None else "")
        + f"; got {shape}. Batch dimensions of parameters are not supported: vmap over the "
        "distribution instead."
    )


def _noise_args(kwargs: dict) -> dict[str, tuple[str, Any]]:
    """For each noise, the one given argument among ``*_cov`` and ``*_cov_factor``."""
    chosen = {}
    for noise in _NOISES:
        cov, factor = kwargs[f"{noise}_cov"], kwargs[f"{noise}_cov_factor"]
        if (cov is None) == (factor is None):
            state = "both were" if cov is not None else "neither was"
            raise ValueError(
                f"exactly one of `{noise}_cov` and `{noise}_cov_factor` must be given; "
                f"{state} given."
            )
        chosen[noise] = (f"{noise}_cov", cov) if factor is None else (f"{noise}_cov_factor", factor)
    return chosen


_VECTORS = ("initial_mean", "transition_offset", "observation_offset")


def is_scalar_model(initial_mean: Any) -> bool:
    """Whether the arguments describe a one-state, one-observation model given by scalars."""
    return initial_mean is not None and jnp.ndim(initial_mean) == 0


def promote_scalar_model(kwargs: dict) -> dict:
    """Turn the scalars (or ``(T,)`` time-varying scalars) of a one-state model into arrays.

    A 0-d ``initial_mean`` makes the model scalar (d = p = 1): every other argument is then a
    scalar or a ``(T,)`` array, promoted to the ``(1,)``/``(1, 1)`` or ``(T, 1)``/``(T, 1, 1)``
    shapes of the general model.

    Raises:
        ValueError: an argument with more than one dimension in a scalar model.
    """
    out = {}
    for name, value in kwargs.items():
        if value is None:
            out[name] = None
            continue
        array = _as_array(name, value)
        if array.ndim > 1 or (name.startswith("initial") and array.ndim > 0):
            allowed = "a scalar" if name.startswith("initial") else "a scalar or a (T,) array"
            raise ValueError(
                f"`{name}` must be {allowed} in a one-state model (a scalar `initial_mean`); "
                f"got shape {array.shape}. Use (d,) and (d, d) arrays for d > 1."
            )
        out[name] = array[..., None] if name in _VECTORS else array[..., None, None]
    return out


def build_params(num_steps: Any, **kwargs: Any) -> tuple[GaussianSSMParams, tuple[str, ...]]:
    """Validate `LinearGaussianSSM` arguments and build the time-expanded square-root model.

    Args:
        num_steps: T or None (inferred from time-varying arguments).
        **kwargs: the constructor's model arguments (None where not given).

    Returns:
        ``(params, time_invariant)``: `GaussianSSMParams` with every per-step field expanded
        to length T, and the names of the per-step fields that were given without a time
        axis (equal at every step), sorted.
    """
    for name in ("initial_mean", "transition_matrix", "observation_matrix"):
        if kwargs[name] is None:
            raise TypeError(f"`{name}` is required.")
    noises = _noise_args(kwargs)
    given = {name: kwargs[name] for name in ("initial_mean", "transition_matrix")}
    given |= {name: value for name, value in noises.values()}
    given["observation_matrix"] = kwargs["observation_matrix"]
    for name in ("transition_offset", "observation_offset"):
        if kwargs[name] is not None:
            given[name] = kwargs[name]
    arrays = {name: _as_array(name, value) for name, value in given.items()}
    dtype = float_dtype(arrays)
    arrays = {name: value.astype(dtype) for name, value in arrays.items()}

    F, m0, H = arrays["transition_matrix"], arrays["initial_mean"], arrays["observation_matrix"]
    if F.ndim not in (2, 3) or F.shape[-1] != F.shape[-2] or F.shape[-1] < 1:
        raise ValueError(
            f"`transition_matrix` must have shape (d, d) or (num_steps, d, d) with d >= 1; "
            f"got {F.shape}."
        )
    d = F.shape[-1]
    if m0.shape != (d,):
        raise ValueError(
            f"`initial_mean` must have shape (d,) = ({d},) to match `transition_matrix` of shape "
            f"{F.shape}; got {m0.shape}."
        )
    if H.ndim not in (2, 3) or H.shape[-1] != d or H.shape[-2] < 1:
        raise ValueError(
            f"`observation_matrix` must have shape (p, {d}) or (num_steps, p, {d}) with p >= 1 "
            f"(d = {d} from `transition_matrix`); got {H.shape}."
        )
    p = H.shape[-2]
    arrays.setdefault("transition_offset", jnp.zeros(d, dtype))
    arrays.setdefault("observation_offset", jnp.zeros(p, dtype))
    dims = {"initial": d, "transition": d, "observation": p}
    bases = {
        "initial_mean": (d,),
        "transition_matrix": (d, d),
        "observation_matrix": (p, d),
        "transition_offset": (d,),
        "observation_offset": (p,),
    }
    for noise, (name, _) in noises.items():
        n = dims[noise]
        bases[name] = (n, n) if name.endswith("_cov") else (n, None)
    lengths = {}
    for name, base in bases.items():
        length = _time_axis(name, arrays[name], base, static_only=name.startswith("initial"))
        if length is not None:
            lengths[name] = length
        check_finite(name, arrays[name])
        if name.endswith("_cov"):
            check_covariance(name, arrays[name])
    if num_steps is None:
        if not lengths:
            raise ValueError("`num_steps` is required when no parameter has a leading time axis.")
        num_steps = next(iter(lengths.values()))
    num_steps = check_positive_int("num_steps", num_steps)
    for name, length in lengths.items():
        if length != num_steps:
            raise ValueError(
                f"`{name}` has a time axis of length {length} but num_steps={num_steps}."
            )

    def expand(name):
        value = arrays[name]
        if name.endswith("_cov"):
            value = cholesky_of(value)
        if name in lengths:
            return value
        return jnp.broadcast_to(value, (num_steps, *value.shape))

    initial_name = noises["initial"][0]
    initial = arrays[initial_name]
    given_as = {
        "transition_matrix": "transition_matrix",
        "transition_offset": "transition_offset",
        "transition_chol": noises["transition"][0],
        "observation_matrix": "observation_matrix",
        "observation_offset": "observation_offset",
        "observation_chol": noises["observation"][0],
    }
    time_invariant = tuple(sorted(f for f, name in given_as.items() if name not in lengths))
    params = GaussianSSMParams(
        initial_mean=m0,
        initial_chol=cholesky_of(initial) if initial_name == "initial_cov" else initial,
        transition_matrix=expand("transition_matrix"),
        transition_offset=expand("transition_offset"),
        transition_chol=expand(noises["transition"][0]),
        observation_matrix=expand("observation_matrix"),
        observation_offset=expand("observation_offset"),
        observation_chol=expand(noises["observation"][0]),
    )
    return params, time_invariant
