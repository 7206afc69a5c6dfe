"""One ArviZ 1.x DataTree for a fitted structural time-series model, with date coordinates.

`to_datatree` collects what `numpyro_parallel.diagnostics.from_numpyro` writes for the MCMC
run (``posterior``, ``sample_stats``, ``observed_data`` and a per-time ``log_likelihood``, so
``arviz.loo`` counts time points) and adds the forecast (``predictions``), the per-component
decomposition (``decomposition``) and the anomaly report (``anomalies``), all on one ``time``
axis labelled with the user's dates. xarray and ArviZ are imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpyro.infer import MCMC

from numpyro_parallel.sts.anomalies import Anomalies
from numpyro_parallel.sts.forecast import Contribution, Forecast
from numpyro_parallel.sts.model import Sum

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["forecast_coords", "to_datatree"]


def forecast_coords(time_coords: Any, horizon: int) -> np.ndarray:
    """Labels for ``horizon`` steps after the series: the last label plus multiples of the step.

    Args:
        time_coords: the series' time labels (numbers, `numpy.datetime64` or a pandas index);
            at least two, evenly spaced, to infer the step (a pandas index with a ``freq``
            is extended by that frequency, so months stay months).
        horizon: number of future steps.

    Returns:
        ``(horizon,)`` labels.

    Raises:
        ValueError: fewer than two labels, labels that are not numbers or dates, or unevenly
            spaced ones (float labels within a relative tolerance of 1e-6 count as even).
    """
    freq = getattr(time_coords, "freq", None)
    if freq is not None:  # pandas DatetimeIndex / PeriodIndex with a frequency
        return np.asarray(time_coords[-1] + freq * np.arange(1, horizon + 1))
    labels = np.asarray(time_coords)
    if labels.ndim != 1 or labels.shape[0] < 2:
        raise ValueError("`time_coords` needs at least two labels to extend it over a forecast.")
    try:
        steps = np.diff(labels)
    except TypeError:  # strings and other labels without a difference
        raise ValueError(
            f"`time_coords` labels of dtype {labels.dtype} cannot be continued over a "
            "forecast: pass `forecast_time_coords` explicitly."
        ) from None
    if np.issubdtype(steps.dtype, np.inexact):
        # Float labels (0.0, 0.1, 0.2, ...) carry rounding error: evenly spaced within a
        # relative tolerance, extended by their mean step.
        step = steps.mean()
        rounding = 16 * np.finfo(labels.dtype).eps * np.max(np.abs(labels))
        even = np.allclose(steps, step, rtol=1e-6, atol=rounding)
        if even:
            return (labels[-1] + step * np.arange(1, horizon + 1)).astype(labels.dtype)
    else:
        even = np.all(steps == steps[0])
    if not even:
        raise ValueError(
            "`time_coords` is not evenly spaced (e.g. month starts as datetime64[D]): pass "
            "`forecast_time_coords` explicitly, or monthly labels (datetime64[M])."
        )
    return labels[-1] + steps[0] * np.arange(1, horizon + 1)


def _by_chain(name: str, array: Any, num_chains: int, num_draws: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim < 1 or array.shape[0] != num_chains * num_draws:
        got = array.shape[0] if array.ndim else "no"
        raise ValueError(
            f"`{name}` has {got} draws, but the run has {num_chains} chains of {num_draws} "
            "draws: compute it from `mcmc.get_samples()` (all chains, flattened)."
        )
    return array.reshape(num_chains, num_draws, *array.shape[1:])


def to_datatree(
    mcmc: Any,
    model: Sum,
    *,
    forecast: Forecast | None = None,
    decomposition: dict[str, Contribution] | None = None,
    anomalies: Anomalies | None = None,
    time_coords: Sequence | None = None,
    forecast_time_coords: Sequence | None = None,
) -> xr.DataTree:
    """The MCMC run, forecast, decomposition and anomalies as one ArviZ DataTree.

    Args:
        mcmc: the `numpyro.infer.MCMC` that sampled ``model.numpyro_model``.
        model: the fitted `Sum` (its observation site name labels the forecast draws).
        forecast: `numpyro_parallel.sts.forecast` of ``mcmc.get_samples()`` (all chains).
        decomposition: `numpyro_parallel.sts.decompose` of the same draws.
        anomalies: `numpyro_parallel.sts.detect_anomalies` of the same draws.
        time_coords: labels of the T fitted time points (dates: `numpy.datetime64`, a pandas
            index); default ``0..T-1``.
        forecast_time_coords: labels of the forecast horizon; default `forecast_coords` of
            ``time_coords`` (the labels continued at their step).

    Returns:
        A DataTree with ``posterior``, ``sample_stats``, ``observed_data`` (the series, dim
        ``time``), ``log_likelihood`` (dims ``chain, draw, time``; the observed time points
        only, so ``arviz.loo`` counts them) and, when given, ``predictions``
        (forecast draws ``y``, ``mean`` and ``variance``, dims ``chain, draw, time`` over the
        horizon), ``decomposition`` (``{component}_mean`` / ``{component}_variance``, over
        the fit period and, when `decompose` was given a horizon, the forecast period) and
        ``anomalies`` (per-draw one-step-ahead ``predictive_mean``, ``predictive_variance``,
        ``residual``; per-time ``tail_probability`` and ``is_anomaly``).

    Raises:
        TypeError: ``mcmc`` is not a NumPyro MCMC, ``model`` not a `Sum`.
        ValueError: an MCMC that has not run, labels of the wrong length, draw counts that do
            not match the run.
    """
    if not isinstance(mcmc, MCMC):
        raise TypeError(
            f"`mcmc` must be the numpyro.infer.MCMC that sampled `model.numpyro_model`; got "
            f"{type(mcmc).__name__}."
        )
    if not isinstance(model, Sum):
        raise TypeError(f"`model` must be an sts.Sum; got {type(model).__name__}.")
    import xarray as xr

    from numpyro_parallel._diagnostics_datasets import _coords
    from numpyro_parallel.diagnostics import from_numpyro

    tree = from_numpyro(mcmc, time_coords=time_coords)
    num_chains = mcmc.num_chains
    num_draws = tree["posterior"].sizes["draw"]
    observed = tree["observed_data"].dataset[model.name]
    num_steps = observed.shape[0]
    y = np.asarray(observed.values).reshape(num_steps, -1)[:, 0]
    labels = _coords("time_coords", num_steps, time_coords)
    # The observed series on the same dated time axis as everything else.
    tree["observed_data"] = xr.DataTree(
        xr.Dataset({model.name: (("time",), y)}, coords={"time": labels})
    )
    # A month without an observation has no likelihood term (it is exactly 0 for every
    # draw, which PSIS cannot smooth): `log_likelihood` keeps the observed time points.
    if "log_likelihood" in tree.children:
        tree["log_likelihood"] = xr.DataTree(
            tree["log_likelihood"].dataset.isel(time=np.flatnonzero(np.isfinite(y)))
        )

    def group(variables: dict[str, np.ndarray], labels: np.ndarray) -> xr.DataTree:
        dims = {name: ("chain", "draw", "time")[3 - v.ndim :] for name, v in variables.items()}
        chains, draws = next(v for v in variables.values() if v.ndim == 3).shape[:2]
        coords = {"chain": np.arange(chains), "draw": np.arange(draws), "time": labels}
        data = {name: (dims[name], value) for name, value in variables.items()}
        return xr.DataTree(xr.Dataset(data, coords=coords))

    def future_labels(horizon: int, prefix: bool = False) -> np.ndarray:
        """``forecast_time_coords`` (its first ``horizon`` when ``prefix``), or else the
        fitted labels continued at their step (a pandas index keeps its frequency)."""
        if forecast_time_coords is None:
            given = forecast_coords(labels if time_coords is None else time_coords, horizon)
        else:
            given = list(forecast_time_coords)[:horizon] if prefix else forecast_time_coords
        return np.asarray(_coords("forecast_time_coords", horizon, given))

    if forecast is not None:
        draws = {
            k: _by_chain(f"forecast.{k}", v, num_chains, num_draws)
            for k, v in forecast._asdict().items()
        }
        tree["predictions"] = group(
            {model.name: draws["samples"], "mean": draws["mean"], "variance": draws["variance"]},
            future_labels(draws["mean"].shape[-1]),
        )

    def fitted(name: str, size: int, horizon_allowed: bool = False) -> np.ndarray:
        if size == num_steps:
            return labels
        if not horizon_allowed or size < num_steps:
            raise ValueError(
                f"`{name}` has {size} time points; expected {num_steps} (the run's series)"
                f"{' or more (with a horizon)' if horizon_allowed else ''}."
            )
        # A decomposition continued over the forecast period: the fitted labels, then the
        # forecast's first ones.
        return np.concatenate([labels, future_labels(size - num_steps, prefix=True)])

    if decomposition is not None:
        variables = {}
        # the model's component order (a vmapped dict comes back with sorted keys)
        order = [c.name for c in model.components if c.name in decomposition]
        for component in order + sorted(set(decomposition) - set(order)):
            part = decomposition[component]
            variables[f"{component}_mean"] = _by_chain(
                f"decomposition[{component!r}].mean", part.mean, num_chains, num_draws
            )
            variables[f"{component}_variance"] = _by_chain(
                f"decomposition[{component!r}].variance", part.variance, num_chains, num_draws
            )
        size = next(iter(variables.values())).shape[-1]
        tree["decomposition"] = group(
            variables, fitted("decomposition", size, horizon_allowed=True)
        )
    if anomalies is not None:
        variables = {
            k: _by_chain(f"anomalies.{k}", getattr(anomalies, k), num_chains, num_draws)
            for k in ("predictive_mean", "predictive_variance", "residual")
        }
        variables["tail_probability"] = np.asarray(anomalies.tail_probability)
        variables["is_anomaly"] = np.asarray(anomalies.is_anomaly)
        tree["anomalies"] = group(variables, fitted("anomalies", variables["residual"].shape[-1]))
    return tree
