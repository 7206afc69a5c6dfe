"""The covariance-form log-likelihood (``Sequential(square_root=False)``, what ``"auto"`` runs
for Kalman log-likelihoods on CPUs in float64): the naive reference, the square-root filter,
gradients, time-invariant bookkeeping, missing values, jit/vmap, float32 and the failure
contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from numpyro_parallel.ssm import LinearGaussianSSM, kalman_filter, kalman_log_likelihood_terms
from numpyro_parallel.ssm.kalman.build import build_params
from numpyro_parallel.ssm.kalman.inference import (
    COVARIANCE_MAX_STEPS_SMALL_STATE,
    SEQUENTIAL_MIN_STATE_DIM,
    kalman_cpu_strategy,
    resolve_log_likelihood_strategy,
)
from numpyro_parallel.strategy import Associative, Blocked, Sequential
from tests.reference import kalman as ref

COVARIANCE = Sequential(square_root=False)
ARGS = (
    "initial_mean",
    "initial_cov",
    "transition_matrix",
    "transition_cov",
    "observation_matrix",
    "observation_cov",
)


def _ssm(model, T, strategy=COVARIANCE):
    return LinearGaussianSSM(
        *(model[name] for name in ARGS),
        num_steps=T,
        transition_offset=model.get("transition_offset"),
        observation_offset=model.get("observation_offset"),
        strategy=strategy,
    )


def _observations(rng, T, p):
    y = rng.normal(size=(T, p))
    if T > 2:
        y[1] = np.nan  # a whole step missing
    if T > 3 and p > 1:
        y[3, 0] = np.nan  # one component missing
    return y


@pytest.mark.parametrize("T", [1, 2, 13])
@pytest.mark.parametrize("p", [1, 3])
@pytest.mark.parametrize("time_varying", [False, True])
def test_terms_equal_naive_reference(T, p, time_varying):
    rng = np.random.default_rng(T + 10 * p + 100 * time_varying)
    model = ref.random_model(rng, T, 3, p, time_varying=time_varying)
    y = _observations(rng, T, p)
    terms = _ssm(model, T).log_likelihood_terms(jnp.asarray(y))
    np.testing.assert_allclose(terms, ref.filter_model(model, y)[2], rtol=1e-10, atol=1e-12)


def test_mixed_time_varying_fields_equal_reference():
    """Only some fields carry a time axis: the invariant ones are read once, the rest scanned."""
    rng = np.random.default_rng(4)
    T = 11
    varying = ref.random_model(rng, T, 2, 2, time_varying=True)
    model = ref.random_model(rng, T, 2, 2, time_varying=False)
    for name in ("transition_matrix", "observation_cov", "observation_offset"):
        model[name] = varying[name]
    ssm = _ssm(model, T)
    assert ssm.time_invariant == ("observation_matrix", "transition_chol", "transition_offset")
    y = _observations(rng, T, 2)
    np.testing.assert_allclose(
        ssm.log_likelihood_terms(jnp.asarray(y)), ref.filter_model(model, y)[2], rtol=1e-10
    )


def test_time_invariant_names_from_build_params():
    d, p, T = 2, 1, 5
    _, names = build_params(
        T,
        initial_mean=jnp.zeros(d),
        initial_cov=jnp.eye(d),
        initial_cov_factor=None,
        transition_matrix=jnp.eye(d),
        transition_cov=None,
        transition_cov_factor=jnp.ones((T, d, 1)),
        observation_matrix=jnp.ones((p, d)),
        observation_cov=jnp.eye(p),
        observation_cov_factor=None,
        transition_offset=None,
        observation_offset=jnp.zeros((T, p)),
    )
    assert names == ("observation_chol", "observation_matrix", "transition_matrix",
                     "transition_offset")  # fmt: skip


@pytest.mark.parametrize("time_varying", [False, True])
def test_equals_square_root_filter_value_and_gradient(time_varying):
    rng = np.random.default_rng(7)
    T = 9
    model = ref.random_model(rng, T, 3, 2, time_varying=time_varying)
    y = jnp.asarray(_observations(rng, T, 2))
    theta = {name: jnp.asarray(model[name]) for name in ("transition_matrix", "observation_cov")}

    def loglik(theta, strategy):
        return _ssm({**model, **theta}, T, strategy).log_prob(y)

    value, grad = jax.value_and_grad(loglik)(theta, COVARIANCE)
    value_sqrt, grad_sqrt = jax.value_and_grad(loglik)(theta, Sequential())
    np.testing.assert_allclose(value, value_sqrt, rtol=1e-11)
    for name in theta:
        np.testing.assert_allclose(grad[name], grad_sqrt[name], rtol=1e-8, atol=1e-10)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(8)
    T = 6
    model = ref.random_model(rng, T, 2, 1, time_varying=False)
    y = jnp.asarray(_observations(rng, T, 1))

    def loglik(F, Q_factor, R):
        ssm = LinearGaussianSSM(
            model["initial_mean"], model["initial_cov"], F, None,
            model["observation_matrix"], R, num_steps=T,
            transition_cov_factor=Q_factor, strategy=COVARIANCE,
        )  # fmt: skip
        return ssm.log_prob(y)

    args = (jnp.asarray(model["transition_matrix"]), jnp.ones((2, 1)), jnp.eye(1))
    check_grads(loglik, args, order=1, modes=("rev",), rtol=1e-6)


def test_functional_api_matches_filter_terms_in_every_strategy():
    rng = np.random.default_rng(9)
    T = 7
    model = ref.random_model(rng, T, 2, 1)
    params, y = _ssm(model, T).params, jnp.asarray(_observations(rng, T, 1))
    reference = kalman_filter(params, y, strategy=Sequential()).log_likelihood_terms
    for strategy in (COVARIANCE, Sequential(), Blocked(2), Associative(), "auto"):
        terms = kalman_log_likelihood_terms(params, y, strategy=strategy)
        np.testing.assert_allclose(terms, reference, rtol=1e-10, atol=1e-12)


def test_jit_and_vmap_invariance():
    rng = np.random.default_rng(10)
    T = 8
    ssm = _ssm(ref.random_model(rng, T, 3, 1, time_varying=False), T)
    ys = jnp.asarray(rng.normal(size=(4, T, 1))).at[1, 2, 0].set(jnp.nan)
    batched = ssm.log_prob(ys)
    one_by_one = jnp.stack([jax.jit(ssm.log_prob)(y) for y in ys])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(ssm.log_prob)(ys), one_by_one, rtol=1e-12)


def test_float32_close_to_float64():
    rng = np.random.default_rng(11)
    T = 200
    model = ref.random_model(rng, T, 4, 2, time_varying=False)
    y = _observations(rng, T, 2)
    model32 = {k: np.asarray(v, np.float32) for k, v in model.items()}
    ll32 = _ssm(model32, T).log_prob(jnp.asarray(y, jnp.float32))
    ll64 = _ssm({k: np.asarray(v, np.float64) for k, v in model32.items()}, T).log_prob(
        jnp.asarray(np.asarray(y, np.float32), jnp.float64)
    )
    assert ll32.dtype == jnp.float32
    np.testing.assert_allclose(ll32, ll64, rtol=1e-4)


def test_invalid_values_under_tracing_give_nan():
    rng = np.random.default_rng(12)
    T = 5
    model = ref.random_model(rng, T, 2, 1, time_varying=False)
    y = jnp.asarray(rng.normal(size=(T, 1)))

    @jax.jit
    def loglik(F, R):
        ssm = LinearGaussianSSM(
            model["initial_mean"], model["initial_cov"], F, model["transition_cov"],
            model["observation_matrix"], R, num_steps=T, strategy=COVARIANCE,
        )  # fmt: skip
        return ssm.log_prob(y)

    F = jnp.asarray(model["transition_matrix"])
    assert np.isfinite(loglik(F, jnp.eye(1)))
    assert np.isnan(loglik(F.at[0, 0].set(jnp.inf), jnp.eye(1)))
    assert np.isnan(loglik(F, -jnp.eye(1)))  # not a covariance


def test_auto_resolution_for_log_likelihoods():
    y = jnp.zeros((5, 1))
    for d in (1, 2, 13):
        ssm = LinearGaussianSSM(
            jnp.zeros(d), jnp.eye(d), jnp.eye(d), jnp.eye(d), jnp.ones((1, d)), jnp.eye(1),
            num_steps=5,
        )  # fmt: skip
        params32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), ssm.params)
        on_cpu = jax.default_backend() == "cpu"
        expected64 = COVARIANCE if on_cpu else Associative()
        expected32 = kalman_cpu_strategy(d) if on_cpu else Associative()
        assert resolve_log_likelihood_strategy("auto", ssm.params, y) == expected64
        assert resolve_log_likelihood_strategy("auto", params32, y) == expected32
        assert resolve_log_likelihood_strategy(Blocked(3), ssm.params, y) == Blocked(3)
        # Long series with small states: the blocked element scan.
        long = jnp.zeros((COVARIANCE_MAX_STEPS_SMALL_STATE, 1))
        expected_long = COVARIANCE if d >= SEQUENTIAL_MIN_STATE_DIM else kalman_cpu_strategy(d)
        assert resolve_log_likelihood_strategy("auto", ssm.params, long) == (
            expected_long if on_cpu else Associative()
        )


def test_square_root_flag_is_checked():
    with pytest.raises(TypeError, match=r"Sequential\.square_root"):
        Sequential(square_root=1)
    assert Sequential(square_root=np.bool_(False)) == COVARIANCE
    assert Sequential() != COVARIANCE
