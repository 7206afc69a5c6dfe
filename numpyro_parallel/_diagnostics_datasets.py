"""Dataset helpers of `numpyro_parallel.diagnostics`: latent trajectories and Gaussian marginals.

Public through `numpyro_parallel.diagnostics` (`states_to_dataset`, `smoothed_to_dataset`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["smoothed_to_dataset", "states_to_dataset"]


def _coords(name: str, size: int, values: Sequence | None) -> np.ndarray:
    if values is None:
        return np.arange(size)
    values = np.asarray(values)
    if values.shape != (size,):
        raise ValueError(f"`{name}` must have {size} entries; got shape {values.shape}.")
    return values


def _numeric(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"`{name}` must be a numeric array; got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
        warnings.warn(
            f"`{name}` contains non-finite values (NaN or inf), e.g. from a diverging chain; "
            "they are stored as they are.",
            RuntimeWarning,
            stacklevel=3,
        )
    return array


def states_to_dataset(
    samples,
    *,
    name: str = "states",
    time_coords: Sequence | None = None,
    state_names: Sequence | None = None,
) -> xr.Dataset:
    """Latent trajectories as a Dataset with dims ``(chain, draw, time, state)``.

    Args:
        samples: array ``(T, d)``, ``(draw, T, d)`` or ``(chain, draw, T, d)``.
        name: variable name.
        time_coords: optional T time labels (years, dates, ...).
        state_names: optional d state labels.

    Returns:
        An `xarray.Dataset` (non-finite values are kept, with a `RuntimeWarning`).

    Raises:
        TypeError: non-numeric ``samples`` or a non-string ``name``.
        ValueError: wrong number of dimensions, T = 0 or d = 0, coordinates of the wrong length.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty str; got {name!r}.")
    samples = _numeric("samples", samples)
    if samples.ndim not in (2, 3, 4) or 0 in samples.shape[-2:]:
        raise ValueError(
            "`samples` must have shape (T, d), (draw, T, d) or (chain, draw, T, d) with T, d "
            f">= 1; got {samples.shape}."
        )
    dims = ("chain", "draw", "time", "state")[4 - samples.ndim :]
    coords = {
        "time": _coords("time_coords", samples.shape[-2], time_coords),
        "state": _coords("state_names", samples.shape[-1], state_names),
    }
    return xr.Dataset({name: (dims, samples)}, coords=coords)


def smoothed_to_dataset(
    mean,
    cov,
    *,
    time_coords: Sequence | None = None,
    state_names: Sequence | None = None,
) -> xr.Dataset:
    """Smoothed (or filtered) Gaussian marginals as a Dataset.

    Args:
        mean: ``(..., T, d)`` means (leading dims are ``draw`` or ``chain, draw``).
        cov: ``(..., T, d, d)`` covariances.
        time_coords: optional T time labels.
        state_names: optional d state labels.

    Returns:
        Dataset with ``mean`` and ``sd`` ``(..., time, state)`` and ``cov``
        ``(..., time, state, state_bis)``.

    Raises:
        TypeError: non-numeric ``mean`` or ``cov``.
        ValueError: mismatched shapes, or a covariance with a negative diagonal entry (its
            standard deviation would be NaN).
    """
    mean, cov = _numeric("mean", mean), _numeric("cov", cov)
    if mean.ndim < 2:
        raise ValueError(f"`mean` must have shape (..., T, d); got {mean.shape}.")
    if cov.shape != (*mean.shape, mean.shape[-1]):
        raise ValueError(f"`cov` must have shape {(*mean.shape, mean.shape[-1])}; got {cov.shape}.")
    variances = np.diagonal(cov, axis1=-2, axis2=-1)
    if np.any(variances < 0):
        raise ValueError("`cov` has negative diagonal entries (variances); it is not a covariance.")
    ds = states_to_dataset(mean, name="mean", time_coords=time_coords, state_names=state_names)
    dims = ds["mean"].dims
    ds["sd"] = (dims, np.sqrt(variances))
    ds["cov"] = ((*dims, "state_bis"), cov)
    return ds.assign_coords(state_bis=ds["state"].values)
