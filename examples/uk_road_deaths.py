"""UK drivers killed or seriously injured, 1969-1984: did the 1983 seat-belt law save lives?

    log y_t = level_t + seasonal_t + beta_law * law_t + beta_petrol * log(petrol_t) + eps_t

The intervention analysis of Harvey & Durbin (1986, "The effects of seat belt legislation on
British road casualties: a case study in structural time series modelling", JRSS A 149) as a
`numpyro_parallel.sts` model: a local level, a dummy monthly seasonal (11 states) and a static
regression on the law indicator (1 from February 1983) and the log real petrol price, the 12
states marginalised by the parallel Kalman filter. The script fits it by maximum likelihood
(`sts.fit_mle`) and with NUTS, reports the law's effect as a percentage change in casualties,
forecasts the last 12 months (1984, held back; their covariates are known) and draws a
forecast and a decomposition figure from one ArviZ DataTree with monthly dates.

Run: ``python examples/uk_road_deaths.py`` (``--fast`` for a quick check).
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

DATA = pathlib.Path(__file__).parent / "data" / "uk_drivers_ksi.csv"
HELD_BACK = 12


def load_drivers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Months, log drivers KSI, and covariates ``(T, 2)``: law indicator, log petrol price."""
    table = np.genfromtxt(DATA, delimiter=",", comments="#", skip_header=4, dtype=str)
    months = table[:, 0].astype("datetime64[M]")
    drivers = table[:, 1].astype(float)
    covariates = np.stack([table[:, 2].astype(float), np.log(table[:, 3].astype(float))], axis=1)
    return months, np.log(drivers), covariates


def road_model(covariates: np.ndarray) -> sts.Sum:
    """Local level + dummy monthly seasonal + static regression (12 states)."""
    return sts.Sum(
        [
            sts.LocalLevel(),
            sts.Seasonal(period=12),
            sts.Regression(jnp.asarray(covariates), name="covariates"),
        ]
    )


def percent_change(log_effect) -> np.ndarray:
    """A coefficient on log casualties as a percentage change in casualties."""
    return 100.0 * (np.exp(np.asarray(log_effect)) - 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="short chains (a smoke test)")
    parser.add_argument("--output-dir", default=str(pathlib.Path(__file__).parent / "output"))
    args = parser.parse_args()
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    months, log_drivers, covariates = load_drivers()
    fit_end = len(log_drivers) - HELD_BACK
    y_fit = jnp.asarray(log_drivers[:fit_end])
    model = road_model(covariates[:fit_end])
    print(f"{len(log_drivers)} months {months[0]} to {months[-1]}; fitting {months[0]} to "
          f"{months[fit_end - 1]}, {model.state_dim} states")  # fmt: skip

    fit = sts.fit_mle(model, y_fit)
    law = fit.params["covariates"]["weights"][0]
    law_se = fit.standard_errors["covariates"]["weights"][0]
    print(f"maximum likelihood: law effect {float(law):+.3f} (s.e. {float(law_se):.3f}) on the log "
          f"scale, {float(percent_change(law)):+.1f}% casualties; log-likelihood "
          f"{float(fit.log_likelihood):.2f}")  # fmt: skip

    mcmc = run_nuts(model, y_fit, args.fast)
    samples = mcmc.get_samples()
    effect = percent_change(samples["covariates_weights"][:, 0])
    low, high = np.percentile(effect, [5, 95])
    print(f"posterior: seat-belt law changed casualties by {np.median(effect):+.1f}% "
          f"(90% interval {low:+.1f}% to {high:+.1f}%)")  # fmt: skip

    fc = sts.forecast(model, samples, y_fit, HELD_BACK, jax.random.PRNGKey(1),
                      design_matrices={"covariates": jnp.asarray(covariates)})  # fmt: skip
    draws = np.asarray(fc.samples)
    held_back = log_drivers[fit_end:]
    lower, upper = np.quantile(draws, [0.1, 0.9], axis=0)
    coverage = np.mean((held_back >= lower) & (held_back <= upper))
    errors = np.exp(np.asarray(fc.mean).mean(0)) - np.exp(held_back)
    print(f"1984 held back: forecast RMSE {np.sqrt(np.mean(errors**2)):.0f} casualties/month, "
          f"80% interval coverage {coverage:.0%}")  # fmt: skip

    parts = sts.decompose(model, samples, y_fit)
    tree = sts.to_datatree(mcmc, model, forecast=fc, decomposition=parts,
                           time_coords=months[:fit_end])  # fmt: skip
    law = {np.datetime64("1983-02", "M"): "seat-belt law"}
    ax = sts.plot_forecast(tree, num_recent=60, held_back=held_back, transform=np.exp,
                           ylabel="drivers killed or seriously injured per month",
                           xlabel="month", events=law,
                           title="UK drivers KSI: 1984 forecast from the fit to 1969-83",
                           )  # fmt: skip
    ax.figure.savefig(out / "uk_road_deaths_forecast.png", dpi=120)
    fig = sts.plot_components(tree, ylabel="log drivers KSI", unit="log scale", xlabel="month",
                              events=law,
                              title="log drivers KSI = level + seasonal + law and petrol "
                              "price + noise")  # fmt: skip
    fig.savefig(out / "uk_road_deaths_components.png", dpi=120)
    print(f"figures: {out / 'uk_road_deaths_forecast.png'}, "
          f"{out / 'uk_road_deaths_components.png'}")  # fmt: skip


if __name__ == "__main__":
    main()
