"""`DiscreteHMM` emission densities: parameter-dependent supports and discrete observations."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

from numpyro_parallel.ssm.hmm.distribution import DiscreteHMM
from tests.reference.hmm import enumerate_reference

INITIAL = jnp.array([0.2, -0.4])
TRANSITION = jnp.log(jnp.array([[0.9, 0.1], [0.2, 0.8]]))
LOW, HIGH = np.array([0.0, -1.0]), np.array([1.0, 2.0])


def _reference_log_likelihoods(density, y):
    """``(T, K)`` log-densities by scipy, zero outside the support, 0 where ``y_t`` is NaN."""
    y = np.asarray(y, np.float64)
    out = np.zeros((y.size, 2))
    for t, value in enumerate(y):
        if not np.isnan(value):
            with np.errstate(divide="ignore"):
                out[t] = np.log([density(k, value) for k in range(2)])
    return out


def _uniform_density(k, value):
    return stats.uniform(LOW[k], HIGH[k] - LOW[k]).pdf(value)


def _truncnorm_density(k, value):
    loc, scale = (0.3, 1.5)[k], (1.0, 0.7)[k]
    a, b = (LOW[k] - loc) / scale, (HIGH[k] - loc) / scale
    return stats.truncnorm(a, b, loc=loc, scale=scale).pdf(value)


EMISSIONS = {
    "uniform": (lambda: dist.Uniform(jnp.asarray(LOW), jnp.asarray(HIGH)), _uniform_density),
    "truncated-normal": (
        lambda: dist.TruncatedNormal(
            jnp.array([0.3, 1.5]), jnp.array([1.0, 0.7]), low=jnp.asarray(LOW),
            high=jnp.asarray(HIGH),
        ),
        _truncnorm_density,
    ),
}  # fmt: skip


@pytest.mark.parametrize("emission", sorted(EMISSIONS))
@pytest.mark.parametrize(
    "y",
    [
        [0.5, 0.7, 0.5],  # T = 3 != K = 2: inside both supports
        [0.5, 1.7, -0.5, 0.2, 0.9],  # 1.7 and -0.5 lie outside state 0's support
        [0.5, np.nan, 1.7, np.nan],  # missing values
    ],
    ids=["inside", "outside-one-state", "missing"],
)
@pytest.mark.parametrize("strategy", ["sequential", "associative", "blocked"])
def test_parameter_dependent_support_matches_enumeration(emission, y, strategy):
    make, density = EMISSIONS[emission]
    y = jnp.asarray(y)
    model = DiscreteHMM(INITIAL, TRANSITION, make(), strategy=strategy)
    ll = _reference_log_likelihoods(density, y)
    evidence, marginals, path, _ = enumerate_reference(INITIAL, TRANSITION, ll)
    np.testing.assert_allclose(model.log_prob(y), evidence, rtol=1e-9)
    np.testing.assert_allclose(jax.jit(model.log_prob)(y), evidence, rtol=1e-9)
    np.testing.assert_allclose(model.log_likelihood_terms(y).sum(), evidence, rtol=1e-9)
    np.testing.assert_allclose(model.smooth(y).smoothed_probs, marginals, atol=1e-12)
    np.testing.assert_array_equal(model.viterbi(y).path, path)


def test_value_outside_every_support_has_probability_zero():
    model = DiscreteHMM(INITIAL, TRANSITION, EMISSIONS["uniform"][0]())
    assert model.log_prob(jnp.array([0.5, 3.0, 0.5])) == -jnp.inf


def test_invalid_emission_parameter_under_jit_stays_nan():
    def log_prob(high):
        model = DiscreteHMM(INITIAL, TRANSITION, dist.Uniform(jnp.asarray(LOW), high))
        return model.log_prob(jnp.array([0.5, 1.5, 0.2]))

    assert jnp.isnan(jax.jit(log_prob)(jnp.array([jnp.nan, 2.0])))


POISSON = DiscreteHMM(jnp.zeros(2), jnp.zeros((2, 2)), dist.Poisson(jnp.array([1.0, 5.0])))
CATEGORICAL = DiscreteHMM(
    jnp.zeros(2), jnp.zeros((2, 2)), dist.Categorical(probs=jnp.array([[0.7, 0.3], [0.2, 0.8]]))
)
COUNTS = DiscreteHMM(
    jnp.zeros(2), jnp.zeros((2, 2)), dist.Poisson(jnp.array([[1.0, 2.0], [5.0, 3.0]])).to_event(1)
)


@pytest.mark.parametrize(
    ("model", "y"),
    [
        (POISSON, [2.5, 1.0, np.nan]),
        (POISSON, [2.0, np.inf, 1.0]),
        (CATEGORICAL, [0.0, 1.0, 0.5]),
        (COUNTS, [[1.0, 2.0], [1.0, 2.5], [np.nan, 1.0]]),
    ],
    ids=["poisson", "poisson-inf", "categorical", "independent-poisson"],
)
def test_non_integer_discrete_observations_give_nan_under_jit(model, y):
    y = jnp.asarray(y)
    assert jnp.isnan(jax.jit(model.log_prob)(y))
    assert jnp.all(jnp.isnan(jax.jit(model.log_likelihood_terms)(y)))
    assert jnp.all(jnp.isnan(jax.jit(model.filter)(y).filtered_probs))
    assert jnp.all(jnp.isnan(jax.jit(model.smooth)(y).smoothed_probs))
    result = jax.jit(model.viterbi)(y)
    assert not result.valid and jnp.isnan(result.log_joint)
    # the integer-valued (and missing) entries alone are fine
    fine = jnp.where(jnp.isnan(y) | (y == jnp.round(y)) & jnp.isfinite(y), y, 1.0)
    assert jnp.isfinite(jax.jit(model.log_prob)(fine))


def test_integer_valued_floats_equal_integer_observations():
    np.testing.assert_allclose(
        POISSON.log_prob(jnp.array([2.0, 1.0, 0.0])),
        POISSON.log_prob(jnp.array([2, 1, 0])),
        rtol=1e-12,
    )
