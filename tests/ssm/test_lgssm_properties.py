"""Property tests (Hypothesis) of `LinearGaussianSSM`'s shape, dtype and value handling.

Any generated input either raises a `ValueError`/`TypeError` that names an argument in
backticks, or gives a finite log-likelihood equal to the sequential strategy and to the naive
covariance-form reference filter.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpyro_parallel.ssm.kalman.distribution import LinearGaussianSSM
from tests.contract.matrix import finite_or_named_error
from tests.reference import kalman as ref

DEFECTS = ("none", "asymmetric", "indefinite", "nan_param", "inf_param", "inf_y", "nan_y")


def _spd(rng, n, size=()):
    a = rng.normal(size=(*size, n, n))
    return a @ np.swapaxes(a, -1, -2) / n + 0.5 * np.eye(n)


@st.composite
def inputs(draw):
    d = draw(st.integers(1, 3))
    p = draw(st.integers(1, 2))
    T = draw(st.sampled_from([1, 2, 3, 5, 7, 11]))
    time_varying = draw(st.booleans())
    dtype = draw(st.sampled_from(["float64", "float32", "int"]))
    defect = draw(st.sampled_from(DEFECTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    size = (T,) if time_varying else ()
    model = {
        "initial_mean": rng.normal(size=d),
        "initial_cov": _spd(rng, d),
        "transition_matrix": 0.8 * rng.normal(size=(*size, d, d)) / np.sqrt(d),
        "transition_cov": _spd(rng, d, size),
        "observation_matrix": rng.normal(size=(*size, p, d)),
        "observation_cov": _spd(rng, p, size),
    }
    if dtype == "int":  # small integers, covariances kept positive definite
        model = {
            k: np.round(v if k == "transition_matrix" else 2 * v).astype(np.int64)
            for k, v in model.items()
        }
        for name, n in (("initial_cov", d), ("transition_cov", d), ("observation_cov", p)):
            model[name] = np.broadcast_to(2 * np.eye(n, dtype=np.int64), model[name].shape)
    elif dtype == "float32":
        model = {k: v.astype(np.float32) for k, v in model.items()}
    y = rng.normal(size=(T, p))
    target = draw(st.sampled_from(["initial_cov", "transition_cov", "observation_cov"]))
    bad = np.array(model[target], dtype=np.float64)
    if defect == "asymmetric" and bad.shape[-1] == 1:
        defect = "none"  # a 1 x 1 matrix is symmetric
    if defect == "asymmetric":
        bad[..., 0, -1] += 1.0
    elif defect == "indefinite":
        bad = bad - 10.0 * np.eye(bad.shape[-1])
    elif defect in ("nan_param", "inf_param"):
        bad[..., 0, 0] = np.nan if defect == "nan_param" else np.inf
    elif defect == "inf_y":
        y[rng.integers(T), rng.integers(p)] = -np.inf
    elif defect == "nan_y":
        y[rng.integers(T), rng.integers(p)] = np.nan
    if defect in ("asymmetric", "indefinite", "nan_param", "inf_param"):
        model[target] = bad
    return model, y, T, defect, dtype


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(inputs())
def test_lgssm_errors_name_an_argument_or_match_the_references(data):
    model, y, T, defect, dtype = data
    invalid = defect in ("asymmetric", "indefinite", "nan_param", "inf_param", "inf_y")
    value = finite_or_named_error(
        lambda: LinearGaussianSSM(**model, num_steps=T).log_prob(jnp.asarray(y)), invalid, defect
    )
    if value is None:
        return
    sequential = LinearGaussianSSM(**model, num_steps=T, strategy="sequential").log_prob(
        jnp.asarray(y)
    )
    expected = ref.filter_model({k: np.asarray(v, np.float64) for k, v in model.items()}, y)
    rtol = 1e-3 if dtype == "float32" else 1e-8
    assert value.dtype == (jnp.float32 if dtype == "float32" else jnp.float64)
    np.testing.assert_allclose(value, sequential, rtol=rtol)
    np.testing.assert_allclose(value, expected[2].sum(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("T", [1, 2, 13])
def test_shapes_with_short_and_prime_series(T):
    ssm = LinearGaussianSSM(
        np.zeros(2), np.eye(2), np.eye(2), np.eye(2), np.ones((1, 2)), np.eye(1), T
    )
    assert ssm.log_prob(jnp.zeros((T, 1))).shape == ()
    assert ssm.log_prob(jnp.zeros((3, T, 1))).shape == (3,)
