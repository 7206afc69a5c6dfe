"""sts.to_datatree (one ArviZ DataTree with dates) and the figures drawn from it."""

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pandas as pd
import pytest
from numpyro.infer import MCMC, NUTS

from numpyro_parallel import sts

matplotlib.use("Agg")

# The fixture runs NUTS (about 30 s); the module belongs to the slow step.
pytestmark = pytest.mark.slow

T, HORIZON = 30, 6
MONTHS = np.arange("2001-01", "2003-07", dtype="datetime64[M]")


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(2)
    y = 10 + np.cumsum(rng.normal(0, 0.3, T)) + rng.normal(0, 0.5, T)
    y[[5, 6]] = np.nan
    y[20] += 6.0  # an outlier
    model = sts.Sum([sts.LocalLevel()])
    mcmc = MCMC(NUTS(model.numpyro_model), num_warmup=40, num_samples=15, num_chains=2,
                chain_method="sequential", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.PRNGKey(0), jnp.asarray(y))
    samples = mcmc.get_samples()
    fc = sts.forecast(model, samples, y, HORIZON, jax.random.PRNGKey(1))
    parts = sts.decompose(model, samples, y)
    anomalies = sts.detect_anomalies(model, samples, y)
    tree = sts.to_datatree(mcmc, model, forecast=fc, decomposition=parts, anomalies=anomalies,
                           time_coords=MONTHS)  # fmt: skip
    return y, model, mcmc, fc, parts, anomalies, tree


# ArviZ warns of high Pareto k for a few draws and the planted outlier: the test checks that
# `az.loo` runs on the per-time terms, not how reliable PSIS is here.
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto:UserWarning")
def test_groups_dims_and_dates(fitted):
    fc, parts, anomalies, tree = fitted[3:]
    expected = {"posterior", "sample_stats", "observed_data", "log_likelihood", "predictions",
                "decomposition", "anomalies"}  # fmt: skip
    assert expected <= set(tree.children)
    observed = np.delete(MONTHS, [5, 6])  # the missing months have no likelihood term
    np.testing.assert_array_equal(tree["log_likelihood"]["time"].values, observed)
    np.testing.assert_array_equal(tree["observed_data"]["time"].values, MONTHS)
    future = tree["predictions"]["time"].values
    np.testing.assert_array_equal(future, np.arange("2003-07", "2004-01", dtype="datetime64[M]"))
    predictions = tree["predictions"].dataset
    assert predictions["y"].dims == ("chain", "draw", "time")
    np.testing.assert_allclose(predictions["y"].values.reshape(-1, HORIZON), fc.samples)
    np.testing.assert_allclose(predictions["mean"].values.reshape(-1, HORIZON), fc.mean)
    level = tree["decomposition"].dataset["level_mean"]
    assert level.dims == ("chain", "draw", "time")
    np.testing.assert_allclose(level.values.reshape(-1, T), parts["level"].mean)
    flags = tree["anomalies"].dataset["is_anomaly"]
    assert flags.dims == ("time",) and bool(flags.values[20])
    np.testing.assert_array_equal(flags.values, anomalies.is_anomaly)
    loo = az.loo(tree)  # one pointwise term per observed month
    assert np.asarray(loo.elpd_i).shape[-1] == T - 2


def test_forecast_coords_continue_the_labels():
    np.testing.assert_array_equal(sts.forecast_coords(np.arange(1950, 1960), 3), [1960, 1961, 1962])
    index = pd.date_range("2020-01-01", periods=5, freq="MS")
    np.testing.assert_array_equal(
        sts.forecast_coords(index, 2), pd.date_range("2020-06-01", periods=2, freq="MS")
    )
    with pytest.raises(ValueError, match="evenly spaced"):
        sts.forecast_coords(MONTHS.astype("datetime64[D]"), 2)  # month lengths differ
    with pytest.raises(ValueError, match="two labels"):
        sts.forecast_coords(np.array([3]), 2)


def test_figures_have_titles_labels_and_marks(fitted):
    tree = fitted[-1]
    ax = sts.plot_forecast(tree, held_back=np.zeros(HORIZON), ylabel="flow (m³/s)",
                           xlabel="month", title="forecast")  # fmt: skip
    assert ax.get_title() == "forecast" and ax.get_ylabel() == "flow (m³/s)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "95% predictive interval" in labels and "held-back values" in labels
    fig = sts.plot_components(tree, ylabel="flow (m³/s)", events={MONTHS[10]: "event"})
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "level"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(text.startswith("anomaly") for text in legend)
    bare = sts.to_datatree(fitted[2], fitted[1])
    with pytest.raises(ValueError, match="predictions"):
        sts.plot_forecast(bare)
    with pytest.raises(ValueError, match="decomposition"):
        sts.plot_components(bare)
    with pytest.raises(ValueError, match="`levels`"):
        sts.plot_forecast(tree, levels=(0.8, 1.5))


def test_draws_that_do_not_match_the_run_are_named(fitted):
    _, model, mcmc, fc = fitted[:4]
    fewer = sts.Forecast(*(x[:-1] for x in fc))  # 29 draws for 2 chains
    with pytest.raises(ValueError, match=r"`forecast\.mean`"):
        sts.to_datatree(mcmc, model, forecast=fewer)
    with pytest.raises(ValueError, match="`time_coords`"):
        sts.to_datatree(mcmc, model, time_coords=MONTHS[:-1])


def test_draw_counts_must_be_the_runs_even_when_they_split_into_chains(fitted):
    model, mcmc, fc, parts, anomalies = fitted[1:6]
    # 2 chains of 15 draws: 10 and 4 draws split into 2 chains too, but are not the run's.
    with pytest.raises(ValueError, match=r"`forecast\.mean` has 10 draws.*2 chains of 15"):
        sts.to_datatree(mcmc, model, forecast=sts.Forecast(*(x[:10] for x in fc)))
    fewer = {k: v._replace(mean=v.mean[:4], variance=v.variance[:4]) for k, v in parts.items()}
    with pytest.raises(ValueError, match=r"`decomposition\['level'\]\.mean` has 4 draws"):
        sts.to_datatree(mcmc, model, decomposition=fewer)
    short = anomalies._replace(residual=anomalies.residual[:6])
    with pytest.raises(ValueError, match=r"`anomalies\.residual` has 6 draws"):
        sts.to_datatree(mcmc, model, anomalies=short)


def test_period_and_float_labels_draw(fitted):
    model, mcmc, fc, parts = fitted[1:5]
    periods = pd.period_range("2001-01", periods=T, freq="M")
    tree = sts.to_datatree(mcmc, model, forecast=fc, decomposition=parts, time_coords=periods)
    ax = sts.plot_forecast(tree, held_back=np.zeros(HORIZON), events={periods[10]: "event"})
    assert ax.get_lines()[0].get_xdata()[0] == np.datetime64("2001-01-01")
    sts.plot_components(tree)
    with pytest.raises(ValueError, match="`held_back`"):
        sts.plot_forecast(tree, held_back=np.zeros(HORIZON - 1))
    tenths = np.arange(T) * 0.1  # evenly spaced, not exactly
    tree = sts.to_datatree(mcmc, model, forecast=fc, time_coords=tenths)
    np.testing.assert_allclose(tree["predictions"]["time"].values, 3.0 + 0.1 * np.arange(6))


def test_decomposition_over_the_forecast_period_gets_the_forecast_dates(fitted):
    y, model, mcmc = fitted[:3]
    samples = mcmc.get_samples()
    ahead = sts.decompose(model, samples, y, horizon=HORIZON)
    tree = sts.to_datatree(mcmc, model, decomposition=ahead, time_coords=MONTHS)
    dates = tree["decomposition"]["time"].values
    np.testing.assert_array_equal(dates, np.arange("2001-01", "2004-01", dtype="datetime64[M]"))
    level = tree["decomposition"].dataset["level_mean"].values.reshape(-1, T + HORIZON)
    np.testing.assert_allclose(level, ahead["level"].mean)
    fig = sts.plot_components(tree)
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "forecast" in legend  # the forecast period is shaded
    with pytest.raises(ValueError, match="time points"):
        sts.to_datatree(
            mcmc,
            model,
            decomposition={
                "level": ahead["level"]._replace(
                    mean=ahead["level"].mean[:, :5], variance=ahead["level"].variance[:, :5]
                )
            },
        )
