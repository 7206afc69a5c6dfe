"""`DiscreteHMM` as a NumPyro distribution: likelihoods, missing data, sampling, errors, NUTS."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.test_util import check_grads
from numpyro.infer import MCMC, NUTS

from numpyro_parallel.ssm import hmm
from numpyro_parallel.ssm.hmm.distribution import DiscreteHMM
from numpyro_parallel.strategy import Blocked
from tests.reference.hmm import enumerate_reference, forward_reference

K, T = 3, 7
RNG = np.random.default_rng(0)
INITIAL = jnp.asarray(RNG.normal(size=K))
TRANSITION = jnp.asarray(RNG.normal(size=(K, K)))
TIME_TRANSITION = jnp.asarray(RNG.normal(size=(T, K, K)))
MEANS = jnp.array([-1.0, 0.5, 2.0])


def _normal_log_likelihoods(y, means, scale=1.0):
    y = np.asarray(y, np.float64)
    ll = -0.5 * ((y[:, None] - np.asarray(means)[None]) / scale) ** 2
    return ll - np.log(scale) - 0.5 * np.log(2 * np.pi)


@pytest.mark.parametrize("strategy", ["auto", "associative", "sequential"])
def test_normal_log_prob_and_posteriors_match_reference(strategy):
    y = jnp.asarray(RNG.normal(size=T) + 0.5)
    model = DiscreteHMM(INITIAL, TIME_TRANSITION, dist.Normal(MEANS, 1.0), strategy=strategy)
    ll = _normal_log_likelihoods(y, MEANS)
    evidence, marginals, path, _ = enumerate_reference(INITIAL, TIME_TRANSITION, ll)
    np.testing.assert_allclose(model.log_prob(y), evidence, rtol=1e-9)
    filtered = model.filter(y)
    np.testing.assert_allclose(filtered.log_likelihood, evidence, rtol=1e-9)
    np.testing.assert_allclose(
        filtered.filtered_probs, forward_reference(INITIAL, TIME_TRANSITION, ll)[1], rtol=1e-9
    )
    np.testing.assert_allclose(model.smooth(y).smoothed_probs, marginals, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(model.viterbi(y).path, path)
    assert model.sample_states(jax.random.key(0), y, (5,)).shape == (5, T)


def test_poisson_categorical_and_multivariate_emissions():
    rates = jnp.asarray(np.exp(RNG.normal(size=(T, K))))  # time-varying emission
    y = jnp.asarray(RNG.poisson(2.0, size=T))
    ll = np.asarray(dist.Poisson(rates).log_prob(y[:, None]))
    got = DiscreteHMM(INITIAL, TRANSITION, dist.Poisson(rates)).log_prob(y)
    np.testing.assert_allclose(got, forward_reference(INITIAL, TRANSITION, ll)[0], rtol=1e-9)

    probs = jnp.asarray(RNG.dirichlet(np.ones(4), size=K))
    y = jnp.asarray(RNG.integers(0, 4, size=T))
    ll = np.log(np.asarray(probs)[:, np.asarray(y)]).T
    model = DiscreteHMM(INITIAL, TRANSITION, dist.Categorical(probs=probs), num_steps=T)
    np.testing.assert_allclose(
        model.log_prob(y), forward_reference(INITIAL, TRANSITION, ll)[0], rtol=1e-9
    )
    # Categories given as floats with NaN for missing entries.
    y_float = y.astype(float).at[4].set(jnp.nan)
    ll[4] = 0.0
    np.testing.assert_allclose(
        model.log_prob(y_float), forward_reference(INITIAL, TRANSITION, ll)[0], rtol=1e-9
    )

    locs = jnp.asarray(RNG.normal(size=(K, 2)))
    scale_tril = jnp.broadcast_to(jnp.array([[1.0, 0.0], [0.3, 0.8]]), (K, 2, 2))
    mvn = dist.MultivariateNormal(locs, scale_tril=scale_tril)
    y = jnp.asarray(RNG.normal(size=(T, 2)))
    ll = np.stack([np.asarray(mvn.log_prob(jnp.broadcast_to(y[t], (K, 2)))) for t in range(T)])
    model = DiscreteHMM(INITIAL, TRANSITION, mvn)
    np.testing.assert_allclose(
        model.log_prob(y), forward_reference(INITIAL, TRANSITION, ll)[0], rtol=1e-9
    )
    # Missing data: a NaN component is marginalised out (N(mu_o, Sigma_oo)), an all-NaN
    # vector contributes nothing.
    y_missing = y.at[2, 1].set(jnp.nan).at[3, 0].set(jnp.nan).at[5].set(jnp.nan)
    covariance = np.asarray(scale_tril[0] @ scale_tril[0].T)
    ll_missing = ll.copy()
    for t, observed in ((2, 0), (3, 1)):
        var = covariance[observed, observed]
        resid = float(y[t, observed]) - np.asarray(locs)[:, observed]
        ll_missing[t] = -0.5 * (np.log(2 * np.pi * var) + resid**2 / var)
    ll_missing[5] = 0.0
    np.testing.assert_allclose(
        model.log_prob(y_missing),
        forward_reference(INITIAL, TRANSITION, ll_missing)[0],
        rtol=1e-9,
    )


@pytest.mark.slow
def test_partially_missing_vectors_are_marginalised():
    # Independent (to_event) emissions: observed components summed; Normal and Poisson.
    locs = jnp.asarray(RNG.normal(size=(K, 3)))
    y = jnp.asarray(RNG.normal(size=(T, 3))).at[1, 0].set(jnp.nan).at[4].set(jnp.nan)
    y = y.at[6, 1:].set(jnp.nan)
    observed = ~np.isnan(np.asarray(y))
    per_component = -0.5 * ((np.nan_to_num(np.asarray(y))[:, None, :] - np.asarray(locs)) ** 2)
    per_component -= 0.5 * np.log(2 * np.pi)
    ll = np.sum(np.where(observed[:, None, :], per_component, 0.0), axis=-1)
    model = DiscreteHMM(INITIAL, TRANSITION, dist.Normal(locs, 1.0).to_event(1))
    np.testing.assert_allclose(
        model.log_prob(y), forward_reference(INITIAL, TRANSITION, ll)[0], rtol=1e-9
    )
    rates = jnp.asarray(np.exp(RNG.normal(size=(K, 2))))
    counts = jnp.asarray(RNG.poisson(2.0, size=(T, 2)), float).at[3, 1].set(jnp.nan)
    log_p = np.array(dist.Poisson(rates[None]).log_prob(jnp.nan_to_num(counts)[:, None, :]))
    log_p[3, :, 1] = 0.0
    model = DiscreteHMM(INITIAL, TRANSITION, dist.Poisson(rates).to_event(1))
    np.testing.assert_allclose(
        model.log_prob(counts),
        forward_reference(INITIAL, TRANSITION, log_p.sum(-1))[0],
        rtol=1e-9,
    )

    # MultivariateNormal: gradients stay finite and match finite differences with NaNs.
    scale_tril = jnp.array([[1.0, 0.0, 0.0], [0.4, 0.9, 0.0], [-0.2, 0.3, 0.7]])

    def log_prob(means, chol):
        mvn = dist.MultivariateNormal(means, scale_tril=jnp.tril(chol))
        return DiscreteHMM(INITIAL, TRANSITION, mvn).log_prob(y)

    check_grads(log_prob, (locs, scale_tril), order=1, modes=["rev"])
    # The marginal of the observed components, by brute-force subsetting.
    covariance = np.asarray(scale_tril @ scale_tril.T)
    ll = np.zeros((T, K))
    for t in range(T):
        o = observed[t]
        if not o.any():
            continue
        sub = covariance[np.ix_(o, o)]
        for k in range(K):
            r = np.asarray(y)[t, o] - np.asarray(locs)[k, o]
            ll[t, k] = -0.5 * (
                o.sum() * np.log(2 * np.pi)
                + np.linalg.slogdet(sub)[1]
                + r @ np.linalg.solve(sub, r)
            )
    np.testing.assert_allclose(
        log_prob(locs, scale_tril), forward_reference(INITIAL, TRANSITION, ll)[0], rtol=1e-9
    )


def test_missing_scalar_observations_and_their_gradients():
    y = jnp.asarray(RNG.normal(size=T)).at[jnp.array([0, 3, 4])].set(jnp.nan)
    ll = _normal_log_likelihoods(np.nan_to_num(np.asarray(y)), MEANS)
    ll[[0, 3, 4]] = 0.0
    evidence, marginals, path, _ = enumerate_reference(INITIAL, TRANSITION, ll)
    model = DiscreteHMM(INITIAL, TRANSITION, dist.Normal(MEANS, 1.0))
    np.testing.assert_allclose(model.log_prob(y), evidence, rtol=1e-9)
    np.testing.assert_allclose(model.smooth(y).smoothed_probs, marginals, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(model.viterbi(y).path, path)

    def log_prob(initial, transition, means):
        return DiscreteHMM(initial, transition, dist.Normal(means, 1.0)).log_prob(y)

    check_grads(log_prob, (INITIAL, TRANSITION, MEANS), order=1, modes=["rev"])
    assert np.all(np.isfinite(jax.grad(log_prob, argnums=2)(INITIAL, TRANSITION, MEANS)))


def test_batched_models_match_a_loop_and_jit():
    initial = jnp.asarray(RNG.normal(size=(2, K)))
    transition = jnp.asarray(RNG.normal(size=(2, 1, K, K)))  # batched, homogeneous
    model = DiscreteHMM(initial, transition, dist.Normal(MEANS, 1.0))
    assert model.batch_shape == (2,)
    y = jnp.asarray(RNG.normal(size=(4, 2, T)))
    got = model.log_prob(y)
    assert got.shape == (4, 2)
    for i in range(4):
        for b in range(2):
            expected = forward_reference(
                initial[b], transition[b, 0], _normal_log_likelihoods(y[i, b], MEANS)
            )[0]
            np.testing.assert_allclose(got[i, b], expected, rtol=1e-9)
    jitted = jax.jit(lambda a, y: DiscreteHMM(a, transition, dist.Normal(MEANS, 1.0)).log_prob(y))
    np.testing.assert_allclose(jitted(initial, y), got, rtol=1e-12)
    assert model.smooth(y).smoothed_probs.shape == (4, 2, T, K)
    assert model.viterbi(y).path.shape == (4, 2, T)
    assert model.filter(y).filtered_probs.shape == (4, 2, T, K)
    assert model.sample_states(jax.random.key(0), y, (3,)).shape == (3, 4, 2, T)


def test_sample_shapes_and_moments():
    model = DiscreteHMM(INITIAL, TIME_TRANSITION, dist.Normal(MEANS, 0.5))
    assert model.event_shape == (T,)
    num_samples = 4000
    y = model.sample(jax.random.key(0), (num_samples,))
    assert y.shape == (num_samples, T)
    # E[y_t] = sum_k p(z_t = k) mu_k under the Markov-chain prior.
    prior = hmm.hmm_smoother(INITIAL, TIME_TRANSITION, jnp.zeros((T, K))).smoothed_probs
    mean = prior @ MEANS
    variance = prior @ (MEANS**2 + 0.25) - mean**2
    error = np.abs(np.mean(y, axis=0) - mean)
    assert np.all(error < 4 * np.sqrt(variance / num_samples))
    mvn = dist.MultivariateNormal(jnp.stack([MEANS, -MEANS], -1), jnp.eye(2))
    batched = DiscreteHMM(jnp.zeros((2, K)), TRANSITION, mvn, num_steps=T)
    assert batched.sample(jax.random.key(1), (5,)).shape == (5, 2, T, 2)
    cat = DiscreteHMM(INITIAL, TRANSITION, dist.Categorical(logits=jnp.zeros((K, 4))), num_steps=4)
    draws = cat.sample(jax.random.key(2), (3,))
    assert draws.shape == (3, 4) and jnp.issubdtype(draws.dtype, jnp.integer)


def test_bad_arguments_raise():
    normal = dist.Normal(MEANS, 1.0)
    with pytest.raises(ValueError, match="transition_logits"):
        DiscreteHMM(INITIAL, jnp.zeros((2, 2)), normal)
    with pytest.raises(ValueError, match="observation_dist"):
        DiscreteHMM(INITIAL, TRANSITION, dist.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="observation_dist"):
        DiscreteHMM(INITIAL, TRANSITION, dist.Normal(jnp.zeros(4), 1.0))
    with pytest.raises(TypeError, match="observation_dist"):
        DiscreteHMM(INITIAL, TRANSITION, "normal")
    with pytest.raises(ValueError, match="initial_logits"):
        DiscreteHMM(INITIAL.at[1].set(jnp.inf), TRANSITION, normal)
    with pytest.raises(ValueError, match="transition_logits"):
        DiscreteHMM(INITIAL, TRANSITION.at[0, 0].set(jnp.nan), normal)
    with pytest.raises(ValueError, match="time steps"):
        DiscreteHMM(INITIAL, TIME_TRANSITION, dist.Normal(jnp.zeros((T + 1, K)), 1.0))
    with pytest.raises(ValueError, match="num_steps"):
        DiscreteHMM(INITIAL, TRANSITION, normal).sample(jax.random.key(0))
    with pytest.raises(ValueError, match="`y`"):
        DiscreteHMM(INITIAL, TIME_TRANSITION, normal).log_prob(jnp.zeros(T + 2))
    mvn = dist.MultivariateNormal(jnp.zeros((K, 2)), jnp.eye(2))
    with pytest.raises(ValueError, match="`y`"):
        DiscreteHMM(INITIAL, TRANSITION, mvn).log_prob(jnp.zeros((T, 3)))


@pytest.mark.slow
def test_nuts_recovers_two_state_gaussian_hmm():
    true_means, true_scale, stay = np.array([-1.0, 1.0]), 0.5, 0.9
    transition = np.log(np.array([[stay, 1 - stay], [1 - stay, stay]]))
    truth = DiscreteHMM(
        jnp.zeros(2), transition, dist.Normal(true_means, true_scale), num_steps=200
    )
    y = truth.sample(jax.random.key(0))

    def model(y):
        means = numpyro.sample(
            "means",
            dist.TransformedDistribution(
                dist.Normal(0.0, 3.0).expand([2]).to_event(1),
                dist.transforms.OrderedTransform(),
            ),
        )
        scale = numpyro.sample("scale", dist.HalfNormal(2.0))
        probs = numpyro.sample("transition", dist.Dirichlet(jnp.ones((2, 2))).to_event(1))
        numpyro.sample(
            "y", DiscreteHMM(jnp.zeros(2), jnp.log(probs), dist.Normal(means, scale)), obs=y
        )

    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=300, progress_bar=False)
    with jax.numpy_rank_promotion("allow"):  # NumPyro's own Dirichlet/Ordered code broadcasts
        mcmc.run(jax.random.key(1), y)
    samples = mcmc.get_samples()
    for name, true in [
        ("means", true_means),
        ("scale", true_scale),
        ("transition", np.exp(transition)),
    ]:
        draws = np.asarray(samples[name])
        # truth inside the posterior: |mean - truth| < 4 posterior sd (+ 4 MC standard errors)
        sd = draws.std(axis=0)
        assert np.all(np.abs(draws.mean(axis=0) - true) < 4 * sd + 4 * sd / np.sqrt(50)), name
        assert np.all(sd < 0.2), name


def test_blocked_distribution_matches_sequential():
    y = jnp.asarray(RNG.normal(size=T)).at[2].set(jnp.nan)
    blocked = DiscreteHMM(INITIAL, TIME_TRANSITION, dist.Normal(MEANS, 1.0), strategy=Blocked(2))
    sequential = DiscreteHMM(
        INITIAL, TIME_TRANSITION, dist.Normal(MEANS, 1.0), strategy="sequential"
    )
    np.testing.assert_allclose(blocked.log_prob(y), sequential.log_prob(y), rtol=1e-9)
    np.testing.assert_allclose(
        blocked.smooth(y).smoothed_probs,
        sequential.smooth(y).smoothed_probs,
        rtol=1e-9,
        atol=1e-12,
    )
    np.testing.assert_array_equal(blocked.viterbi(y).path, sequential.viterbi(y).path)
