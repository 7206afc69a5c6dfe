"""`fit_mle`'s convergence report when L-BFGS-B's line search stops at the optimum."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from numpyro_parallel import sts

REAL_MINIMIZE = scipy.optimize.minimize


def _series():
    rng = np.random.default_rng(4)
    level = np.cumsum(0.3 * rng.normal(size=40))
    return jnp.asarray(level + 0.5 * rng.normal(size=40))


def _stopping_abnormally(max_iterations):
    """`scipy.optimize.minimize` that stops after ``max_iterations`` and reports what
    L-BFGS-B reports when its line search finds no decrease (which rounding causes at the
    optimum on some machines and XLA builds, not on others)."""

    def minimize(fun, x0, **kwargs):
        kwargs["options"] = {**kwargs["options"], "maxiter": max_iterations}
        result = REAL_MINIMIZE(fun, x0, **kwargs)
        result.success, result.status = False, 2
        result.message = "ABNORMAL: "
        return result

    return minimize


def test_a_line_search_stop_at_the_optimum_counts_as_converged(monkeypatch):
    model = sts.Sum([sts.LocalLevel()])
    y = _series()
    reference = sts.fit_mle(model, y)
    assert reference.converged and "ABNORMAL" not in reference.message
    monkeypatch.setattr(scipy.optimize, "minimize", _stopping_abnormally(1000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = sts.fit_mle(model, y)
    assert fit.converged
    assert fit.message.startswith("ABNORMAL") and "accepted" in fit.message
    np.testing.assert_allclose(fit.log_likelihood, reference.log_likelihood, rtol=1e-12)


def test_a_line_search_stop_away_from_the_optimum_is_reported(monkeypatch):
    model = sts.Sum([sts.LocalLevel()])
    monkeypatch.setattr(scipy.optimize, "minimize", _stopping_abnormally(1))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        fit = sts.fit_mle(model, _series())
    assert not fit.converged and fit.message == "ABNORMAL: "
