"""Mauna Loa CO2: local linear trend + monthly seasonal, NUTS, a 24-month forecast held back.

    y_t = level_t + seasonal_t + eps_t                    (monthly mean CO2, ppm)
    level_{t+1} = level_t + slope_t + eta_t,   slope_{t+1} = slope_t + zeta_t
    seasonal_{t+1} = -(seasonal_t + ... + seasonal_{t-10}) + omega_t   (dummy form, 11 states)

A structural time-series model (`numpyro_parallel.sts`, d = 13 states) whose states are
marginalised by the parallel square-root Kalman filter; NUTS samples the four noise scales.
The series is the monthly mean of the weekly Scripps record shipped with statsmodels
(March 1958 - December 2001, 526 months, 5 of them without a measurement: missing values).
The last 24 months are held back: the script forecasts them from the fit to the rest and
reports how often the 80% and 95% predictive intervals cover the held-back months,
decomposes the fit into trend and seasonal parts, flags anomalous months, gathers everything
in one ArviZ DataTree with monthly dates (`sts.to_datatree`) and draws two PNG figures from it
(`sts.plot_forecast`, `sts.plot_components`).

Run: ``python examples/co2_forecast.py`` (``--fast`` for a quick check).
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
from _sts_nuts import run_nuts  # noqa: E402  (examples/_sts_nuts.py)

from numpyro_parallel import sts  # noqa: E402

DATA = pathlib.Path(__file__).parent / "data" / "co2_mauna_loa.csv"
HELD_BACK = 24


def load_co2() -> tuple[np.ndarray, np.ndarray]:
    """Months (numpy datetime64[M]) and monthly mean CO2 in ppm (NaN: no measurement)."""
    months, values = [], []
    for line in DATA.read_text().splitlines():
        if line.startswith("#") or line.startswith("month"):
            continue
        month, value = line.split(",")
        months.append(np.datetime64(month, "M"))
        values.append(float(value) if value else np.nan)
    return np.array(months), np.array(values)


def co2_model() -> sts.Sum:
    """Local linear trend + dummy monthly seasonal (2 + 11 = 13 states)."""
    return sts.Sum([sts.LocalLinearTrend(), sts.Seasonal(period=12)])


def interval_coverage(held_back: np.ndarray, draws: np.ndarray, level: float) -> float:
    """Share of held-back months inside the central ``level`` predictive interval."""
    lower, upper = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    observed = ~np.isnan(held_back)
    inside = (held_back >= lower) & (held_back <= upper)
    return float(np.mean(inside[observed]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="short chains (a smoke test)")
    parser.add_argument("--output-dir", default=str(pathlib.Path(__file__).parent / "output"))
    args = parser.parse_args()
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    months, co2 = load_co2()
    fit_end = len(co2) - HELD_BACK
    y_fit = jnp.asarray(co2[:fit_end])
    model = co2_model()
    print(f"{len(co2)} months {months[0]} to {months[-1]}, {int(np.isnan(co2).sum())} missing;"
          f" fitting the first {fit_end}, {model.state_dim} states")  # fmt: skip

    mcmc = run_nuts(model, y_fit, args.fast)
    samples = mcmc.get_samples()

    fc = sts.forecast(model, samples, y_fit, HELD_BACK, jax.random.PRNGKey(1))
    draws = np.asarray(fc.samples)
    held_back = co2[fit_end:]
    errors = np.asarray(fc.mean).mean(0) - held_back
    print(f"held-back {HELD_BACK} months: forecast RMSE {np.sqrt(np.nanmean(errors**2)):.2f} ppm, "
          f"80% interval coverage {interval_coverage(held_back, draws, 0.8):.0%}, "
          f"95% interval coverage {interval_coverage(held_back, draws, 0.95):.0%}")  # fmt: skip

    parts = sts.decompose(model, samples, y_fit)
    amplitude = np.ptp(np.asarray(parts["seasonal"].mean).mean(0)[-12:])
    print(f"seasonal swing over the last fitted year: {amplitude:.1f} ppm peak to trough")
    anomalies = sts.detect_anomalies(model, samples, y_fit)
    print(f"anomalies (one-step-ahead tail probability < 1%): {int(anomalies.is_anomaly.sum())}"
          f" of {fit_end} months")  # fmt: skip

    # One ArviZ DataTree with monthly dates: posterior, per-month log-likelihood, forecast,
    # decomposition and anomalies; the figures are drawn from it.
    tree = sts.to_datatree(mcmc, model, forecast=fc, decomposition=parts, anomalies=anomalies,
                           time_coords=months[:fit_end])  # fmt: skip
    future = np.datetime_as_string(tree["predictions"]["time"].values, unit="M")
    print(f"DataTree groups: {sorted(tree.children)}; forecast {future[0]} to {future[-1]}")
    ax = sts.plot_forecast(tree, held_back=held_back, ylabel="CO2 (ppm)", xlabel="month",
                           title=f"Mauna Loa CO2: {HELD_BACK}-month forecast from the fit to "
                           "earlier months")  # fmt: skip
    ax.figure.savefig(out / "co2_forecast.png", dpi=120)
    fig = sts.plot_components(tree, ylabel="CO2 (ppm)", unit="ppm", xlabel="month",
                              title="Mauna Loa CO2 = trend + seasonal + noise")  # fmt: skip
    fig.savefig(out / "co2_components.png", dpi=120)
    print(f"figures: {out / 'co2_forecast.png'}, {out / 'co2_components.png'}")


if __name__ == "__main__":
    main()
