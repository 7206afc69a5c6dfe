"""Input checks shared by the structural time-series entry points (private).

Concrete bad input raises a `ValueError` or `TypeError` naming the argument; under tracing
only the shapes and dtypes are checked (the values are not known).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import check_covariance, check_finite, concrete


def as_float_array(name: str, value: Any) -> jax.Array:
    """``value`` as a floating JAX array: integers become the default float dtype.

    Raises:
        TypeError: booleans, strings, objects, ragged lists or complex numbers.
    """
    if isinstance(value, str | bytes):
        raise TypeError(f"`{name}` must be an array of real numbers; got a string.")
    if isinstance(value, jax.Array):  # tracers included
        array = value
    else:
        try:
            host = np.asarray(value)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"`{name}` must be an array of real numbers; got {type(value).__name__} ({error})."
            ) from None
        if host.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` must hold real numbers; got dtype {host.dtype}.")
        array = jnp.asarray(host)
    if jnp.issubdtype(array.dtype, jnp.floating):
        return array
    if jnp.issubdtype(array.dtype, jnp.integer):
        return array.astype(jnp.result_type(float))
    raise TypeError(f"`{name}` must hold real numbers; got dtype {array.dtype}.")


def check_series(y: Any, name: str = "y", ndim: int = 1) -> jax.Array:
    """A series ``(T,)`` (or ``(T, p)`` with ``ndim=2``) as a floating array.

    Integer counts become the default float dtype; NaN marks a missing value. Concrete values
    must not be infinite and must include an observed value.

    Raises:
        TypeError: booleans, strings or other non-numbers.
        ValueError: the wrong number of dimensions, no time points, inf, no observed value.
    """
    y = as_float_array(name, y)
    if y.ndim != ndim:
        shape = "(T,)" if ndim == 1 else "(T, p)"
        raise ValueError(f"`{name}` must have shape {shape}; got {y.shape}.")
    if y.shape[0] < 1:
        raise ValueError(f"`{name}` must have at least one time point; got shape {y.shape}.")
    known = concrete(y)
    if known is not None:
        if np.any(np.isinf(known)):
            raise ValueError(f"`{name}` contains inf (NaN marks a missing value; inf is not).")
        if ndim == 1 and not np.any(~np.isnan(known)):
            raise ValueError(f"`{name}` has no observed (non-NaN) values.")
    return y


def shape_matches(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Whether a parameter value of ``shape`` fits ``expected`` (a scalar fits ``(1,)``)."""
    return tuple(shape) == tuple(expected) or (tuple(expected) == (1,) and tuple(shape) == ())


def check_initial_state(state_dim: int, initial_mean: Any, initial_cov: Any) -> tuple[Any, Any]:
    """Concrete ``(d,)`` initial mean and ``(d, d)`` PSD covariance, checked up front."""
    if initial_mean is not None:
        initial_mean = as_float_array("initial_mean", initial_mean)
        if initial_mean.shape != (state_dim,):
            raise ValueError(
                f"`initial_mean` must have shape ({state_dim},) (the stacked state); got "
                f"{initial_mean.shape}."
            )
        check_finite("initial_mean", initial_mean)
    if initial_cov is not None:
        initial_cov = as_float_array("initial_cov", initial_cov)
        if initial_cov.shape != (state_dim, state_dim):
            raise ValueError(
                f"`initial_cov` must have shape ({state_dim}, {state_dim}) (the stacked state); "
                f"got {initial_cov.shape}."
            )
        check_covariance("initial_cov", initial_cov)
    return initial_mean, initial_cov


def check_samples(
    samples: Any, expected: Mapping[str, tuple[int, ...] | None], prefix: str = ""
) -> int:
    """The number of draws S of posterior ``samples``, which must hold every expected site.

    Args:
        samples: ``{site: (S, *shape)}`` draws (``mcmc.get_samples()``).
        expected: ``{site: shape of one draw}`` (None: shape not known).
        prefix: prepended to the site names in messages (a `MultiSeries` series).

    Raises:
        TypeError: ``samples`` is not a dict of arrays.
        ValueError: missing sites, no common leading draw axis, draws grouped by chain.
    """
    if not isinstance(samples, Mapping):
        raise TypeError(
            "`samples` must be a dict of posterior draws, e.g. mcmc.get_samples(); got "
            f"{type(samples).__name__}."
        )
    missing = [prefix + site for site in expected if site not in samples]
    if missing:
        raise ValueError(
            f"`samples` lacks the sites {missing} of the model; it has "
            f"{sorted(prefix + str(site) for site in samples)}."
        )
    sizes = {}
    for site, shape in expected.items():
        value_shape = jnp.shape(samples[site])
        full = prefix + site
        if len(value_shape) < 1:
            raise ValueError(
                f"`samples[{full!r}]` has no leading draw axis (shape {value_shape}); give one "
                "draw of fixed parameters as a leading axis of 1."
            )
        if shape is not None and not shape_matches(value_shape[1:], shape):
            hint = ""
            if len(value_shape) >= 2 and shape_matches(value_shape[2:], shape):
                hint = (
                    " It looks grouped by chain (C, S, ...): pass flat draws, "
                    "mcmc.get_samples() (not group_by_chain=True), or reshape to (C * S, ...)."
                )
            want = "(" + ", ".join(["S", *map(str, shape)]) + ("," if not shape else "") + ")"
            raise ValueError(
                f"`samples[{full!r}]` must have shape {want} (S draws); got {value_shape}.{hint}"
            )
        sizes[full] = value_shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"`samples` sites must share the leading draw axis; got draw counts {sizes}."
        )
    num_draws = next(iter(sizes.values())) if sizes else 0
    if sizes and num_draws < 1:
        raise ValueError("`samples` has no draws (a leading axis of length 0).")
    return num_draws


def check_distinct_sites(sites: list[str], naming: str) -> None:
    """Raise `ValueError` naming the sample sites that occur more than once in ``sites``.

    Args:
        sites: every sample site a model would use.
        naming: how the sites are named, for the message (e.g. ``"'{component}_{parameter}'"``).
    """
    clashes = sorted({site for site in sites if sites.count(site) > 1})
    if clashes:
        raise ValueError(
            f"the sample sites {clashes} would be used twice (sites are {naming} and the "
            "observations' `name`); rename a component (or a series)."
        )
