"""Property tests (Hypothesis) of `NonlinearGaussianSSM`'s shape, dtype and value handling.

With linear functions ``f(x) = F x`` and ``h(x) = H x`` the iterated smoother is exact after
one iteration, so any generated input either raises a `ValueError`/`TypeError` that names an
argument in backticks, or gives a finite log-likelihood equal to the sequential strategy and
to the naive covariance-form Kalman filter of `tests.reference.kalman`.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpyro_parallel.ssm import NonlinearGaussianSSM
from tests.contract.matrix import finite_or_named_error
from tests.reference import kalman as ref

DEFECTS = ("none", "asymmetric", "indefinite", "nan_cov", "inf_y", "nan_y", "bad_fn_shape")


def _spd(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T / n + 0.5 * np.eye(n)


@st.composite
def inputs(draw):
    d = draw(st.integers(1, 2))
    p = draw(st.integers(1, 2))
    T = draw(st.sampled_from([1, 2, 5, 7]))
    defect = draw(st.sampled_from(DEFECTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    model = {
        "initial_mean": rng.normal(size=d),
        "initial_cov": _spd(rng, d),
        "transition_cov": _spd(rng, d),
        "observation_cov": _spd(rng, p),
    }
    F = 0.8 * rng.normal(size=(d, d)) / np.sqrt(d)
    H = rng.normal(size=(p, d))
    y = rng.normal(size=(T, p))
    target = draw(st.sampled_from(["initial_cov", "transition_cov", "observation_cov"]))
    bad = model[target].copy()
    if defect == "asymmetric" and bad.shape[-1] == 1:
        defect = "none"
    if defect == "asymmetric":
        bad[0, -1] += 1.0
    elif defect == "indefinite":
        bad = bad - 10.0 * np.eye(bad.shape[-1])
    elif defect == "nan_cov":
        bad[0, 0] = np.nan
    elif defect == "inf_y":
        y[rng.integers(T), rng.integers(p)] = np.inf
    elif defect == "nan_y":
        y[rng.integers(T), rng.integers(p)] = np.nan
    if defect in ("asymmetric", "indefinite", "nan_cov"):
        model[target] = bad
    return model, F, H, y, T, defect


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(inputs())
def test_nonlinear_ssm_errors_name_an_argument_or_match_the_kalman_reference(data):
    model, F, H, y, T, defect = data
    invalid = defect in ("asymmetric", "indefinite", "nan_cov", "inf_y", "bad_fn_shape")
    Fj, Hj = jnp.asarray(F), jnp.asarray(H)
    transition_fn = (lambda x: (Fj @ x)[:1]) if defect == "bad_fn_shape" else (lambda x: Fj @ x)
    if defect == "bad_fn_shape" and F.shape[0] == 1:
        transition_fn = lambda x: jnp.concatenate([Fj @ x, Fj @ x])
    observation_fn = lambda x: Hj @ x

    def log_prob(strategy):
        ssm = NonlinearGaussianSSM(
            model["initial_mean"],
            model["initial_cov"],
            transition_fn,
            model["transition_cov"],
            observation_fn,
            model["observation_cov"],
            T,
            strategy=strategy,
        )
        return ssm.log_prob(jnp.asarray(y))

    value = finite_or_named_error(lambda: log_prob("auto"), invalid, defect)
    if value is None:
        return
    sequential = log_prob("sequential")
    kalman = {**model, "transition_matrix": F, "observation_matrix": H}
    expected = ref.filter_model(kalman, y)[2].sum()
    np.testing.assert_allclose(value, sequential, rtol=1e-8)
    np.testing.assert_allclose(value, expected, rtol=1e-8, atol=1e-8)
