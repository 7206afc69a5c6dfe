"""Bad-input matrix for `numpyro_parallel.diagnostics` (the failure contract)."""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.svi import SVIRunResult

from numpyro_parallel import diagnostics
from tests.contract.matrix import Case, case_params, raises, returns, run_case

DIAG = "numpyro_parallel.diagnostics."


def _model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _two_site_model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def _unrun_mcmc():
    return MCMC(NUTS(_model), num_warmup=5, num_samples=5, progress_bar=False)


def _svi_result():
    svi = SVI(_model, AutoNormal(_model), numpyro.optim.Adam(0.1), Trace_ELBO())
    return SVIRunResult(params={}, state=None, losses=np.zeros(3)), svi


SAMPLES = {"mu": np.zeros((2, 3))}
Y = np.array([0.1, 0.2])
MEAN = np.zeros((5, 2))
COV = np.broadcast_to(np.eye(2), (5, 2, 2))

CASES: list[Case] = [
    # from_numpyro
    Case("svi-result", DIAG + "from_numpyro", lambda: diagnostics.from_numpyro(_svi_result()[0]),
         raises(TypeError, "needs a numpyro.infer.MCMC that has run; got SVIRunResult")),
    Case("svi-object", DIAG + "from_numpyro", lambda: diagnostics.from_numpyro(_svi_result()[1]),
         raises(TypeError, "needs a numpyro.infer.MCMC.*got SVI")),
    Case("dict", DIAG + "from_numpyro", lambda: diagnostics.from_numpyro({"mu": np.zeros(3)}),
         raises(TypeError, "needs a numpyro.infer.MCMC")),
    Case("not-run", DIAG + "from_numpyro", lambda: diagnostics.from_numpyro(_unrun_mcmc()),
         raises(ValueError, "has run.*mcmc.run")),
    # pointwise_log_likelihood
    Case("not-callable", DIAG + "pointwise_log_likelihood",
         lambda: diagnostics.pointwise_log_likelihood("model", SAMPLES, Y),
         raises(TypeError, "`model`")),
    Case("empty-samples", DIAG + "pointwise_log_likelihood",
         lambda: diagnostics.pointwise_log_likelihood(_model, {}, Y),
         raises(ValueError, "`posterior_samples`")),
    Case("samples-not-dict", DIAG + "pointwise_log_likelihood",
         lambda: diagnostics.pointwise_log_likelihood(_model, np.zeros(3), Y),
         raises(TypeError, "`posterior_samples`")),
    Case("batch_ndims-0", DIAG + "pointwise_log_likelihood",
         lambda: diagnostics.pointwise_log_likelihood(_model, SAMPLES, Y, batch_ndims=0),
         raises(ValueError, "`batch_ndims`")),
    Case("batch_ndims-float", DIAG + "pointwise_log_likelihood",
         lambda: diagnostics.pointwise_log_likelihood(_model, SAMPLES, Y, batch_ndims=1.0),
         raises(TypeError, "`batch_ndims`")),
    Case("mismatched-draws", DIAG + "pointwise_log_likelihood",
         lambda: diagnostics.pointwise_log_likelihood(
             _model, {"mu": np.zeros((2, 3)), "nu": np.zeros((2, 4))}, Y, batch_ndims=2),
         raises(ValueError, "`posterior_samples`.*leading")),
    Case("missing-latent-site", DIAG + "pointwise_log_likelihood",
         lambda: diagnostics.pointwise_log_likelihood(_two_site_model, SAMPLES, Y),
         raises(ValueError, r"`posterior_samples`.*latent site\(s\) \['sigma'\]")),
    Case("nan-draw", DIAG + "pointwise_log_likelihood",
         lambda: diagnostics.pointwise_log_likelihood(_model, {"mu": np.array([0.0, np.nan])}, Y),
         returns(lambda r: np.isnan(r["y"][1]).all() and np.isfinite(r["y"][0]).all())),
    # states_to_dataset
    Case("1d", DIAG + "states_to_dataset", lambda: diagnostics.states_to_dataset(np.zeros(3)),
         raises(ValueError, "`samples`")),
    Case("T=0", DIAG + "states_to_dataset",
         lambda: diagnostics.states_to_dataset(np.zeros((0, 2))),
         raises(ValueError, "`samples`")),
    Case("strings", DIAG + "states_to_dataset",
         lambda: diagnostics.states_to_dataset(np.array([["a", "b"]])),
         raises(TypeError, "`samples`")),
    Case("bad-time_coords", DIAG + "states_to_dataset",
         lambda: diagnostics.states_to_dataset(np.zeros((3, 5, 1)), time_coords=[1, 2]),
         raises(ValueError, "`time_coords`")),
    Case("bad-state_names", DIAG + "states_to_dataset",
         lambda: diagnostics.states_to_dataset(np.zeros((5, 2)), state_names=["a"]),
         raises(ValueError, "`state_names`")),
    Case("bad-name", DIAG + "states_to_dataset",
         lambda: diagnostics.states_to_dataset(np.zeros((5, 2)), name=3),
         raises(TypeError, "`name`")),
    Case("nan-kept-with-warning", DIAG + "states_to_dataset",
         lambda: diagnostics.states_to_dataset(np.full((5, 2), np.nan)),
         returns(lambda r: isinstance(r, xr.Dataset) and r["states"].isnull().all(),
                 warns=RuntimeWarning)),
    # smoothed_to_dataset
    Case("cov-shape", DIAG + "smoothed_to_dataset",
         lambda: diagnostics.smoothed_to_dataset(MEAN, np.zeros((5, 2))),
         raises(ValueError, "`cov`")),
    Case("negative-variance", DIAG + "smoothed_to_dataset",
         lambda: diagnostics.smoothed_to_dataset(MEAN, -COV),
         raises(ValueError, "`cov`.*negative")),
    Case("mean-1d", DIAG + "smoothed_to_dataset",
         lambda: diagnostics.smoothed_to_dataset(np.zeros(5), np.zeros((5, 5))),
         raises(ValueError, "`mean`")),
    Case("mean-strings", DIAG + "smoothed_to_dataset",
         lambda: diagnostics.smoothed_to_dataset(np.full((5, 2), "x"), COV),
         raises(TypeError, "`mean`")),
]  # fmt: skip


@pytest.mark.parametrize("case", case_params(CASES))
def test_contract(case):
    run_case(case)
