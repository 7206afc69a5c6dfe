"""Figures from the DataTree of `numpyro_parallel.sts.to_datatree` (matplotlib, on first use).

`plot_forecast` draws the fan chart of the forecast (the recent series, the median and the
predictive intervals over the horizon, optionally the values that were held back);
`plot_components` draws one panel per component of the decomposition (posterior mean ± 2
posterior standard deviations, over both the parameter draws and the states) under the
observed series, with the anomalies of `detect_anomalies` marked. Both take the dates stored
in the tree, a ``transform`` (e.g. `numpy.exp` for a model of log counts) and the labels and
units of the series, and return what they drew on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["plot_components", "plot_forecast"]


def _axis_values(labels: Any) -> np.ndarray:
    """Time labels matplotlib can draw (datetime64 of any unit becomes days, pandas periods
    their start dates)."""
    labels = np.asarray(labels)
    if labels.dtype == object and labels.size and hasattr(labels.flat[0], "to_timestamp"):
        # pandas Period labels (a PeriodIndex) have no matplotlib converter: their starts do.
        labels = np.array([label.to_timestamp() for label in labels.flat], "datetime64[ns]")
    if np.issubdtype(labels.dtype, np.datetime64):
        return labels.astype("datetime64[D]")
    return labels


def _observed(tree: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    data = tree["observed_data"].dataset[name]
    values = np.asarray(data.values).reshape(data.sizes["time"], -1)[:, 0]
    return _axis_values(data["time"].values), values


def _series_name(tree: Any) -> str:
    names = list(tree["predictions"].dataset.data_vars) if "predictions" in tree.children else []
    names = [n for n in names if n not in ("mean", "variance")]
    observed = list(tree["observed_data"].dataset.data_vars)
    return names[0] if names else observed[0]


def _mark_events(ax: Any, events: dict[Any, str] | None) -> None:
    for when, label in (events or {}).items():
        when = _axis_values(np.asarray([when]))[0]
        ax.axvline(when, color="0.5", ls="--", lw=0.8)
        ax.annotate(f" {label}", (when, 1.0), xycoords=("data", "axes fraction"), va="top",
                    fontsize=8, color="0.3")  # fmt: skip


def plot_forecast(
    tree: Any,
    *,
    num_recent: int | None = 72,
    levels: Sequence[float] = (0.8, 0.95),
    held_back: Any = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    title: str | None = None,
    ylabel: str = "y",
    xlabel: str = "time",
    events: dict[Any, str] | None = None,
    ax: Any = None,
) -> Any:
    """Fan chart of the forecast in ``tree["predictions"]`` after the observed series.

    Args:
        tree: a DataTree from `to_datatree` with a forecast.
        num_recent: observed time points shown before the horizon (None: all).
        levels: central predictive intervals to shade, from the draws.
        held_back: optional ``(horizon,)`` observed values of the forecast period.
        transform: applied to every value before drawing (e.g. `numpy.exp`).
        title: axes title (default: "Forecast").
        ylabel: label of the series, with its unit.
        xlabel: label of the time axis.
        events: ``{time: label}`` vertical markers (e.g. an intervention).
        ax: matplotlib axes to draw on (default: a new figure).

    Returns:
        The matplotlib axes.

    Raises:
        ValueError: ``tree`` has no ``predictions`` group; a level outside (0, 1);
            ``held_back`` not one value per forecast step.
    """
    import matplotlib.pyplot as plt

    if "predictions" not in tree.children:
        raise ValueError("`tree` has no `predictions` group: pass `forecast=` to to_datatree.")
    if not all(0 < level < 1 for level in levels):
        raise ValueError(f"`levels` must lie in (0, 1); got {levels}.")
    f = transform or (lambda x: x)
    name = _series_name(tree)
    times, observed = _observed(tree, name)
    predictions = tree["predictions"].dataset
    future = _axis_values(predictions["time"].values)
    draws = f(np.asarray(predictions[name].values).reshape(-1, future.shape[0]))
    if held_back is not None:
        held_back = np.asarray(held_back, dtype=float)
        if held_back.shape != future.shape:
            raise ValueError(
                f"`held_back` must have one value per forecast step, shape {future.shape}; got "
                f"{held_back.shape}."
            )
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4.5))
    recent = slice(None) if num_recent is None else slice(-num_recent, None)
    ax.plot(times[recent], f(observed[recent]), "k.-", lw=0.8, ms=3, label="observed")
    for level, alpha in zip(sorted(levels, reverse=True), (0.2, 0.35, 0.5), strict=False):
        low, high = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        ax.fill_between(future, low, high, color="C0", alpha=alpha, lw=0,
                        label=f"{level:.0%} predictive interval")  # fmt: skip
    ax.plot(future, np.nanmedian(draws, axis=0), "C0-", label="forecast median")
    if held_back is not None:
        ax.plot(future, f(held_back), "o", color="C3", ms=3.5,
                label="held-back values")  # fmt: skip
    _mark_events(ax, events)
    ax.set_title(title or "Forecast")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.figure.autofmt_xdate()
    ax.figure.tight_layout()
    return ax


def plot_components(
    tree: Any,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    title: str | None = None,
    ylabel: str = "y",
    unit: str | None = None,
    xlabel: str = "time",
    events: dict[Any, str] | None = None,
) -> Any:
    """The observed series and each component's smoothed contribution, one panel each.

    Args:
        tree: a DataTree from `to_datatree` with a decomposition (and optionally anomalies,
            marked in red on the series); a decomposition over a forecast period is drawn
            with that period shaded.
        transform: applied to the observed series only (components stay on the model's
            scale, where they add up).
        title: figure title (default: "Decomposition").
        ylabel: label of the series, with its unit.
        unit: unit of the components (the model's scale), added to their panel labels.
        xlabel: label of the time axis.
        events: ``{time: label}`` vertical markers on every panel.

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: ``tree`` has no ``decomposition`` group.
    """
    import matplotlib.pyplot as plt

    if "decomposition" not in tree.children:
        raise ValueError(
            "`tree` has no `decomposition` group: pass `decomposition=` to to_datatree."
        )
    f = transform or (lambda x: x)
    parts = tree["decomposition"].dataset
    components = [v[: -len("_mean")] for v in parts.data_vars if v.endswith("_mean")]
    times, observed = _observed(tree, _series_name(tree))
    fig, axes = plt.subplots(len(components) + 1, 1, figsize=(10, 2.3 * (len(components) + 1)),
                             sharex=True, squeeze=False)  # fmt: skip
    axes = axes[:, 0]
    axes[0].plot(times, f(observed), "k-", lw=0.7, label="observed")
    if "anomalies" in tree.children:
        flags = np.asarray(tree["anomalies"].dataset["is_anomaly"].values, bool)
        axes[0].plot(times[flags], f(observed[flags]), "o", mfc="none", color="C3", ms=6,
                     label=f"anomaly ({int(flags.sum())})")  # fmt: skip
    axes[0].set_ylabel(ylabel)
    dates = _axis_values(parts["time"].values)
    for ax, component in zip(axes[1:], components, strict=True):
        means = np.asarray(parts[f"{component}_mean"].values).reshape(-1, dates.shape[0])
        variances = np.asarray(parts[f"{component}_variance"].values).reshape(means.shape)
        mean = means.mean(0)
        sd = np.sqrt(variances.mean(0) + means.var(0))  # law of total variance over draws
        ax.plot(dates, mean, "C0-", lw=0.8, label="posterior mean")
        ax.fill_between(dates, mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.3, lw=0,
                        label="± 2 posterior sd")  # fmt: skip
        ax.set_ylabel(component if unit is None else f"{component} ({unit})")
        if dates.shape[0] > times.shape[0]:  # decomposed over a forecast period too
            ax.axvspan(dates[times.shape[0]], dates[-1], color="0.9", lw=0, label="forecast")
    for ax in axes:  # legends right of the panels, clear of the data
        _mark_events(ax, events)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    axes[0].set_title(title or "Decomposition")
    axes[-1].set_xlabel(xlabel)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
