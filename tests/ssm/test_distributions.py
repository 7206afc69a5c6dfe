"""`LinearGaussianSSM` as a NumPyro distribution: shapes, errors, sampling, NUTS."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

from numpyro_parallel.ssm import LinearGaussianSSM
from tests.reference import kalman as ref


def _local_level(q, r, T, strategy="auto"):
    one = jnp.ones((1, 1))
    return LinearGaussianSSM(
        jnp.zeros(1), 10.0 * one, one, q * one, one, r * one, num_steps=T, strategy=strategy
    )


def _good_args():
    return dict(
        initial_mean=jnp.zeros(2),
        initial_cov=jnp.eye(2),
        transition_matrix=jnp.eye(2),
        transition_cov=jnp.eye(2),
        observation_matrix=jnp.ones((1, 2)),
        observation_cov=jnp.eye(1),
    )


@pytest.mark.parametrize(
    "name,value,match",
    [
        ("initial_mean", jnp.zeros((2, 2)), "initial_mean"),
        ("initial_cov", jnp.eye(3), "initial_cov"),
        ("transition_matrix", jnp.ones((2, 3)), "transition_matrix"),
        ("transition_cov", jnp.ones((4, 2, 2)), "transition_cov.*time axis of length 4"),
        ("observation_matrix", jnp.ones((1, 3)), "observation_matrix"),
        ("observation_cov", jnp.eye(2), "observation_cov"),
        ("transition_matrix", jnp.full((2, 2), jnp.nan), "non-finite"),
        ("transition_offset", jnp.zeros(3), "transition_offset"),
    ],
)
def test_bad_parameters_raise_clear_errors(name, value, match):
    args = {**_good_args(), name: value}
    with pytest.raises(ValueError, match=match):
        LinearGaussianSSM(**args, num_steps=5)


def test_num_steps_inferred_or_required():
    args = _good_args()
    with pytest.raises(ValueError, match="num_steps"):
        LinearGaussianSSM(**args)
    ssm = LinearGaussianSSM(**{**args, "transition_matrix": jnp.ones((6, 2, 2))})
    assert ssm.event_shape == (6, 1)
    with pytest.raises(ValueError, match="y"):
        ssm.log_prob(jnp.zeros((5, 1)))
    with pytest.raises(ValueError, match="y"):
        ssm.filter(jnp.zeros((2, 6, 1)))


def test_sample_shapes_and_moments():
    ssm = _local_level(0.5, 1.0, 4)
    y = ssm.sample(jax.random.PRNGKey(0), (20_000,))
    assert y.shape == (20_000, 4, 1)
    # Marginal variance of y_t: initial variance 10 + t * q + r.
    expected = 10.0 + 0.5 * np.arange(4) + 1.0
    var = np.var(np.asarray(y[..., 0]), axis=0)
    np.testing.assert_array_less(np.abs(var - expected), 4 * expected * np.sqrt(2 / 20_000))
    states, obs = ssm.sample_with_states(jax.random.PRNGKey(1), (3,))
    assert states.shape == (3, 4, 1) and obs.shape == (3, 4, 1)
    parallel = _local_level(0.5, 1.0, 7).sample(jax.random.PRNGKey(2))
    sequential = _local_level(0.5, 1.0, 7, strategy="sequential").sample(jax.random.PRNGKey(2))
    np.testing.assert_allclose(parallel, sequential, rtol=1e-12)


def test_log_prob_matches_reference_on_simulated_data():
    rng = np.random.default_rng(2)
    model = ref.random_model(rng, 9, 2, 2, time_varying=False, offsets=False)
    ssm = LinearGaussianSSM(**{k: jnp.asarray(v) for k, v in model.items()}, num_steps=9)
    y = ssm.sample(jax.random.PRNGKey(0))
    _, _, terms = ref.filter_model(model, np.asarray(y))
    np.testing.assert_allclose(ssm.log_prob(y), terms.sum(), rtol=1e-10)
    np.testing.assert_allclose(ssm.log_likelihood_terms(y), terms, rtol=1e-10, atol=1e-12)


def _nuts_posterior(y, strategy, seed=0):
    def model(y):
        sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(2.0))
        sigma_level = numpyro.sample("sigma_level", dist.HalfNormal(2.0))
        ssm = _local_level(sigma_level**2, sigma_obs**2, y.shape[0], strategy)
        numpyro.sample("y", ssm, obs=y)

    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=600, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), y)
    return {k: np.asarray(v) for k, v in mcmc.get_samples().items()}


@pytest.mark.slow
def test_nuts_recovers_local_level_variances_in_both_modes():
    T, true_level, true_obs = 150, 0.5, 1.0
    ssm = _local_level(true_level**2, true_obs**2, T)
    y = ssm.sample(jax.random.PRNGKey(42))
    par = _nuts_posterior(y, "associative")
    seq = _nuts_posterior(y, "sequential")
    for name, truth in (("sigma_level", true_level), ("sigma_obs", true_obs)):
        lo, hi = np.percentile(par[name], [0.5, 99.5])
        assert lo < truth < hi, (name, lo, hi)
        # Same target density to 1e-12: the two chains are the same chain.
        np.testing.assert_allclose(par[name].mean(), seq[name].mean(), rtol=1e-6)


def test_scalar_one_state_model_equals_the_array_model():
    # A 0-d initial_mean: scalars and (T,) time-varying scalars, y of shape (T,).
    T = 11
    rng = np.random.default_rng(3)
    y = rng.normal(size=T)
    y[4] = np.nan
    phi = jnp.linspace(0.5, 0.9, T)
    scalar = LinearGaussianSSM(0.5, 4.0, phi, 0.3, 2.0, 0.7, transition_offset=0.1)
    one = jnp.ones((1, 1))
    array = LinearGaussianSSM(
        jnp.full(1, 0.5), 4.0 * one, phi[:, None, None], 0.3 * one, 2.0 * one, 0.7 * one,
        transition_offset=jnp.full(1, 0.1),
    )  # fmt: skip
    assert scalar.event_shape == (T,) and array.event_shape == (T, 1)
    np.testing.assert_allclose(scalar.log_prob(y), array.log_prob(y[:, None]), rtol=1e-12)
    ys = np.stack([y, y + 1.0])
    np.testing.assert_allclose(
        scalar.log_likelihood_terms(ys), array.log_likelihood_terms(ys[..., None]), rtol=1e-12
    )
    np.testing.assert_allclose(scalar.smooth(y).mean, array.smooth(y[:, None]).mean, rtol=1e-12)
    key = jax.random.key(4)
    states = scalar.sample_states(key, y, (5,))
    assert states.shape == (5, T)
    np.testing.assert_allclose(states, array.sample_states(key, y[:, None], (5,))[..., 0])
    draws = scalar.sample(key, (2, 3))
    assert draws.shape == (2, 3, T)
    np.testing.assert_allclose(draws, array.sample(key, (2, 3))[..., 0])
    # a pytree round trip (as under jit/vmap of the distribution) keeps the scalar form
    rebuilt = jax.tree_util.tree_map(lambda a: a, scalar)
    assert rebuilt.event_shape == (T,)
    np.testing.assert_allclose(jax.jit(lambda d: d.log_prob(y))(scalar), scalar.log_prob(y))
    with pytest.raises(ValueError, match="`y` must have shape"):
        scalar.log_prob(y[:, None])
    with pytest.raises(ValueError, match="`observation_cov`"):
        LinearGaussianSSM(0.0, 1.0, 1.0, 1.0, 1.0, jnp.eye(2), num_steps=T)
