"""ARMA(p, q) component against statsmodels' SARIMAX at fixed parameters.

SARIMAX is an independent implementation (its own state-space matrices and Kalman filter);
with its default stationary initialisation both must agree on the per-time log-likelihood
terms (missing values included) and on the forecasts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel import sts

sm = pytest.importorskip("statsmodels.api")

T = 61
AR_PACF = np.array([0.7, -0.4, 0.2])
MA_PACF = np.array([0.5, -0.3])
SCALE, NOISE = 0.8, 0.3


def _series(missing: bool) -> np.ndarray:
    rng = np.random.default_rng(7)
    y = np.convolve(rng.normal(size=T + 3), [1.0, 0.6, 0.2], "valid")[:T].cumsum() * 0.3
    y = y - y.mean() + 0.5 * rng.normal(size=T)
    if missing:
        y[[0, 11, 12, 40]] = np.nan
    return y


def _setup(p, q, measurement_error, missing):
    y = _series(missing)
    arma = sts.ARMA(p, q)
    model = sts.Sum([arma], observation_noise=measurement_error)
    params = {"arma": {"scale": jnp.asarray(SCALE)}}
    if p:
        params["arma"]["ar_pacf"] = jnp.asarray(AR_PACF[:p])
    if q:
        params["arma"]["ma_pacf"] = jnp.asarray(MA_PACF[:q])
    if measurement_error:
        params["observation"] = {"scale": jnp.asarray(NOISE)}
    phi, theta = (np.asarray(c) for c in arma.coefficients(params["arma"]))
    mod = sm.tsa.SARIMAX(y, order=(p, 0, q), trend="n", measurement_error=measurement_error)
    values = list(phi) + list(theta) + ([NOISE**2] if measurement_error else []) + [SCALE**2]
    return y, model, params, mod, np.array(values), (phi, theta)


ORDERS = [(1, 0), (0, 1), (2, 1), (1, 2), (3, 2)]


@pytest.mark.parametrize(
    "measurement_error,missing", [(False, False), (True, True)], ids=["pure", "noisy-missing"]
)
@pytest.mark.parametrize("p,q", ORDERS)
def test_log_likelihood_terms_match_sarimax(p, q, measurement_error, missing):
    y, model, params, mod, values, (phi, theta) = _setup(p, q, measurement_error, missing)
    assert mod.param_names[: p + q] == [f"ar.L{i}" for i in range(1, p + 1)] + [
        f"ma.L{i}" for i in range(1, q + 1)
    ]
    ssm = model.ssm(params, sts.data_scale(y), T)
    ours = ssm.log_likelihood_terms(jnp.asarray(y)[:, None])
    theirs = mod.loglikeobs(values)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.log_prob(params, y), mod.loglike(values), rtol=1e-8)
    # the parametrisation is stationary and invertible
    assert np.all(np.abs(np.roots(np.r_[1.0, -phi])) < 1) if p else True
    assert np.all(np.abs(np.roots(np.r_[1.0, theta])) < 1) if q else True


@pytest.mark.parametrize("p,q", [(2, 1), (0, 2)])
def test_forecasts_match_sarimax(p, q):
    y, model, params, mod, values, _ = _setup(p, q, measurement_error=True, missing=True)
    draws = {f"arma_{k}": v[None] for k, v in params["arma"].items()}
    draws["observation_scale"] = params["observation"]["scale"][None]
    fc = sts.forecast(model, draws, y, 6, jax.random.PRNGKey(0))
    theirs = mod.smooth(values).get_forecast(6)
    np.testing.assert_allclose(fc.mean[0], theirs.predicted_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fc.variance[0], theirs.var_pred_mean, rtol=1e-8)


def test_gradients_match_finite_differences():
    y, model, params, *_ = _setup(2, 1, measurement_error=True, missing=True)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    f = jax.jit(lambda x: model.log_prob(unravel(x), y))
    grad = jax.grad(f)(flat)
    eps = 1e-6
    fd = np.array([(f(flat.at[i].add(eps)) - f(flat.at[i].add(-eps))) / (2 * eps)
                   for i in range(flat.shape[0])])  # fmt: skip
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_ma_parametrisation_is_invertible_and_nan_outside():
    theta = np.asarray(sts.ma_coefficients_from_pacf(jnp.array([0.9, -0.8, 0.7])))
    assert np.all(np.abs(np.roots(np.r_[1.0, theta])) < 1)
    traced = jax.jit(sts.ma_coefficients_from_pacf)(jnp.array([0.5, 1.5]))
    assert np.all(np.isnan(traced))
    assert sts.ARMA(2, 1).state_dim == 2 and sts.ARMA(1, 3).state_dim == 4
    assert sts.ARMA(0, 1).parameter_names == ("ma_pacf", "scale")
