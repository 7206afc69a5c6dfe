"""Exactness and properties of the discrete-HMM algorithms (numpyro_parallel.ssm.hmm.inference)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from numpyro_parallel.ssm import hmm
from numpyro_parallel.ssm.hmm.elements import (
    LogMatrix,
    compose_index_maps,
    max_product_combine,
    normalize,
    sum_product_combine,
)
from numpyro_parallel.strategy import Associative, Blocked, Sequential
from tests.reference.hmm import (
    enumerate_path_probabilities,
    enumerate_reference,
    forward_reference,
)

RTOL = 1e-9


def _problem(seed, num_states, num_steps, time_varying=False, scale=2.0):
    rng = np.random.default_rng(seed)
    initial = rng.normal(size=num_states)
    shape = (num_steps, num_states, num_states) if time_varying else (num_states,) * 2
    transition = rng.normal(size=shape) * 1.5
    log_likelihoods = rng.normal(size=(num_steps, num_states)) * scale
    return jnp.asarray(initial), jnp.asarray(transition), jnp.asarray(log_likelihoods)


CASES = [(2, 1, False), (3, 1, True), (2, 2, False), (3, 7, False), (3, 7, True), (2, 11, True)]

# Every strategy: the O(log T) log-space associative scan, the blocked scaled-probability
# strategy (blocks of 2 and 3 steps, the last one padded when they do not divide T - 1, and
# "auto"), and the sequential scaled recursions.
STRATEGIES = [
    {"strategy": Associative()},
    {"strategy": Blocked(2)},
    {"strategy": Blocked(3)},
    {"strategy": "auto"},
    {"strategy": Sequential()},
]
STRATEGY_IDS = ["associative", "blocked2", "blocked3", "auto", "sequential"]


@pytest.mark.slow
@pytest.mark.parametrize("num_states,num_steps,time_varying", CASES)
def test_parallel_equals_sequential_equals_enumeration(num_states, num_steps, time_varying):
    # One strategy of each implementation (log-space scan, blocked and sequential scaled
    # recursions) against enumeration; tests/test_strategies.py checks every strategy
    # against Sequential().
    args = _problem(num_steps * 10 + num_states, num_states, num_steps, time_varying)
    evidence, marginals, best_path, best_score = enumerate_reference(*args)
    forward_evidence, filtered = forward_reference(*args)
    np.testing.assert_allclose(forward_evidence, evidence, rtol=RTOL)
    for strategy in (STRATEGIES[0], STRATEGIES[2], STRATEGIES[4]):
        result = hmm.hmm_filter(*args, **strategy)
        np.testing.assert_allclose(result.log_likelihood, evidence, rtol=RTOL)
        np.testing.assert_allclose(result.filtered_probs, filtered, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(jnp.sum(result.log_likelihood_terms), evidence, rtol=RTOL)
        log_likelihood = hmm.hmm_log_likelihood(*args, **strategy)
        np.testing.assert_allclose(log_likelihood, evidence, rtol=RTOL)
        smoothed = hmm.hmm_smoother(*args, **strategy)
        np.testing.assert_allclose(smoothed.smoothed_probs, marginals, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(smoothed.filtered_probs, filtered, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(smoothed.log_likelihood, evidence, rtol=RTOL)
        viterbi = hmm.hmm_viterbi(*args, **strategy)
        np.testing.assert_array_equal(viterbi.path, best_path)
        np.testing.assert_allclose(viterbi.log_joint, best_score, rtol=RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("time_varying", [True, False])
@pytest.mark.parametrize("num_steps", [1, 13, 31])
def test_parallel_equals_sequential_longer(num_steps, time_varying):
    args = _problem(5, 4, num_steps, time_varying=time_varying)
    evidence, filtered = forward_reference(*args)
    seq = hmm.hmm_filter(*args, strategy="sequential")
    smoothed_seq = hmm.hmm_smoother(*args, strategy="sequential").smoothed_probs
    np.testing.assert_allclose(seq.log_likelihood, evidence, rtol=RTOL)
    for strategy in (Associative(), Blocked(5), Blocked(64)):  # Blocked(2): test_strategies
        par = hmm.hmm_filter(*args, strategy=strategy)
        np.testing.assert_allclose(par.log_likelihood, evidence, rtol=RTOL)
        np.testing.assert_allclose(par.filtered_probs, filtered, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(
            par.log_likelihood_terms, seq.log_likelihood_terms, rtol=RTOL, atol=1e-12
        )
        smoothed = hmm.hmm_smoother(*args, strategy=strategy).smoothed_probs
        np.testing.assert_allclose(smoothed, smoothed_seq, rtol=RTOL, atol=1e-12)
    v_par, v_seq = hmm.hmm_viterbi(*args), hmm.hmm_viterbi(*args, strategy="sequential")
    np.testing.assert_array_equal(v_par.path, v_seq.path)
    np.testing.assert_allclose(v_par.log_joint, v_seq.log_joint, rtol=RTOL)


@pytest.mark.slow
def test_structural_zeros_left_to_right():
    # Left-to-right chain: impossible transitions are -inf; values and gradients stay finite.
    initial = jnp.array([0.0, -jnp.inf, -jnp.inf])
    transition = jnp.log(jnp.array([[0.7, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]]))
    log_likelihoods = jnp.asarray(np.random.default_rng(0).normal(size=(7, 3)))
    evidence, marginals, best_path, _ = enumerate_reference(initial, transition, log_likelihoods)
    for strategy in STRATEGIES:
        res = hmm.hmm_filter(initial, transition, log_likelihoods, **strategy)
        np.testing.assert_allclose(res.log_likelihood, evidence, rtol=RTOL)
        smoothed = hmm.hmm_smoother(initial, transition, log_likelihoods, **strategy).smoothed_probs
        np.testing.assert_allclose(smoothed, marginals, rtol=RTOL, atol=1e-12)
        path = hmm.hmm_viterbi(initial, transition, log_likelihoods, **strategy).path
        np.testing.assert_array_equal(path, best_path)

        def log_likelihood(ll, strategy=strategy):
            return hmm.hmm_filter(initial, transition, ll, **strategy).log_likelihood

        grad = jax.grad(log_likelihood)(log_likelihoods)
        np.testing.assert_allclose(jnp.sum(grad, axis=1), 1.0, rtol=1e-9)  # = smoothed probs
        np.testing.assert_allclose(grad, marginals, rtol=1e-9, atol=1e-12)


def _random_log_matrix(rng, num_states):
    values = rng.normal(size=(num_states, num_states)) * 3
    values[rng.random(values.shape) < 0.2] = -np.inf  # structural zeros
    values[:, 0] = rng.normal(size=num_states)  # keep every row non-empty
    return normalize(jnp.asarray(values), jnp.asarray(rng.normal()))


def _dense(element: LogMatrix):
    return element.log_matrix + element.log_scale


@pytest.mark.parametrize("combine", [sum_product_combine, max_product_combine])
def test_combine_is_associative(combine):
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b, c = (_random_log_matrix(rng, 4) for _ in range(3))
        left = _dense(combine(combine(a, b), c))
        right = _dense(combine(a, combine(b, c)))
        finite = np.isfinite(left)
        np.testing.assert_array_equal(finite, np.isfinite(right))
        np.testing.assert_allclose(left[finite], right[finite], rtol=1e-12, atol=1e-12)
        np.testing.assert_equal(float(jnp.max(combine(a, b).log_matrix)), 0.0)


def test_sum_product_matches_logsumexp():
    rng = np.random.default_rng(2)
    a, b = _random_log_matrix(rng, 5), _random_log_matrix(rng, 5)
    expected = jax.nn.logsumexp(_dense(a)[:, :, None] + _dense(b)[None], axis=1)
    np.testing.assert_allclose(_dense(sum_product_combine(a, b)), expected, rtol=1e-12)


def test_index_map_composition_is_associative():
    rng = np.random.default_rng(3)
    for _ in range(10):
        f, g, h = (jnp.asarray(rng.integers(0, 5, size=5)) for _ in range(3))
        left = compose_index_maps(compose_index_maps(f, g), h)
        right = compose_index_maps(f, compose_index_maps(g, h))
        np.testing.assert_array_equal(left, right)
        np.testing.assert_array_equal(left, h[g[f]])


def test_float32_long_sequence_is_stable():
    num_steps, num_states = 100_000, 3
    rng = np.random.default_rng(4)
    means = np.array([-2.0, 0.0, 2.0])
    states = rng.integers(0, num_states, size=num_steps)
    y = means[states] + rng.normal(size=num_steps)
    log_likelihoods = -0.5 * (y[:, None] - means[None]) ** 2 - 0.5 * np.log(2 * np.pi)
    transition = np.log(np.full((3, 3), 0.1) + 0.7 * np.eye(3))
    args64 = (jnp.zeros(3), jnp.asarray(transition), jnp.asarray(log_likelihoods))
    args32 = tuple(x.astype(jnp.float32) for x in args64)
    res32, res64 = hmm.hmm_filter(*args32), hmm.hmm_filter(*args64, strategy="sequential")
    assert res32.log_likelihood.dtype == jnp.float32
    assert np.isfinite(res32.log_likelihood) and np.all(np.isfinite(res32.filtered_probs))
    np.testing.assert_allclose(res32.log_likelihood, res64.log_likelihood, rtol=1e-5)
    for strategy in ("auto", "associative"):  # the DiscreteHMM.log_prob paths (CPU, GPU)
        tree32 = hmm.hmm_log_likelihood(*args32, strategy=strategy)
        assert tree32.dtype == jnp.float32
        np.testing.assert_allclose(tree32, res64.log_likelihood, rtol=1e-5)
    assert np.all(np.isfinite(res32.log_likelihood_terms))
    np.testing.assert_allclose(
        res32.log_likelihood_terms, res64.log_likelihood_terms, rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(res32.filtered_probs, res64.filtered_probs, atol=1e-3)
    # "auto" is blocked here: faster to compile.
    smoothed32 = hmm.hmm_smoother(*args32, strategy="auto").smoothed_probs
    smoothed64 = hmm.hmm_smoother(*args64, strategy="sequential").smoothed_probs
    assert np.all(np.isfinite(smoothed32))
    np.testing.assert_allclose(smoothed32, smoothed64, atol=1e-3)
    path32 = hmm.hmm_viterbi(*args32, strategy="auto").path  # blocked: faster to compile
    path64 = hmm.hmm_viterbi(*args64, strategy="sequential").path
    assert np.mean(path32 == path64) > 0.999


def test_posterior_path_samples_match_enumeration():
    args = _problem(6, 2, 4, time_varying=True, scale=1.0)
    paths, probs = enumerate_path_probabilities(*args)
    num_samples = 20_000
    for strategy in ("associative", "sequential"):
        draws = hmm.hmm_sample_states(jax.random.key(0), *args, (num_samples,), strategy=strategy)
        assert draws.shape == (num_samples, 4) and draws.dtype == jnp.int32
        codes = np.asarray(draws) @ (2 ** np.arange(3, -1, -1))
        freq = np.bincount(codes, minlength=16) / num_samples
        expected = probs[paths @ (2 ** np.arange(3, -1, -1))]
        expected = np.zeros(16)
        expected[paths @ (2 ** np.arange(3, -1, -1))] = probs
        tolerance = 4 * np.sqrt(expected * (1 - expected) / num_samples) + 1 / num_samples
        assert np.all(np.abs(freq - expected) < tolerance)


def test_posterior_sample_marginals_match_smoother():
    args = _problem(7, 3, 9, time_varying=False, scale=1.0)
    num_samples = 4000
    draws = hmm.hmm_sample_states(jax.random.key(1), *args, (2, num_samples // 2))
    assert draws.shape == (2, num_samples // 2, 9)
    draws = np.asarray(draws).reshape(num_samples, 9)
    empirical = np.stack([(draws == k).mean(0) for k in range(3)], axis=-1)
    smoothed = np.asarray(hmm.hmm_smoother(*args).smoothed_probs)
    tolerance = 4 * np.sqrt(smoothed * (1 - smoothed) / num_samples) + 1 / num_samples
    assert np.all(np.abs(empirical - smoothed) < tolerance)


def test_prior_path_samples_match_enumeration():
    initial, transition, _ = _problem(8, 2, 4, time_varying=True)
    paths, probs = enumerate_path_probabilities(initial, transition, jnp.zeros((4, 2)))
    expected = np.zeros(16)
    expected[paths @ (2 ** np.arange(3, -1, -1))] = probs
    num_samples = 20_000
    for strategy in ("associative", "sequential"):
        draws = hmm.hmm_sample_prior_states(
            jax.random.key(2), initial, transition, 4, (num_samples,), strategy=strategy
        )
        codes = np.asarray(draws) @ (2 ** np.arange(3, -1, -1))
        freq = np.bincount(codes, minlength=16) / num_samples
        tolerance = 4 * np.sqrt(expected * (1 - expected) / num_samples) + 1 / num_samples
        assert np.all(np.abs(freq - expected) < tolerance)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES, ids=STRATEGY_IDS)
def test_gradients_match_finite_differences(strategy):
    initial, transition, log_likelihoods = _problem(9, 3, 7, time_varying=True)

    def log_likelihood(a, b, c):
        return hmm.hmm_filter(a, b, c, **strategy).log_likelihood

    check_grads(log_likelihood, (initial, transition, log_likelihoods), order=1, modes=["rev"])

    def terms_summary(a, b, c):
        terms = hmm.hmm_filter(a, b, c, **strategy).log_likelihood_terms
        return jnp.sum(terms * jnp.arange(1.0, 8.0))

    check_grads(terms_summary, (initial, transition, log_likelihoods), order=1, modes=["rev"])

    def smoothed_summary(a, b, c):
        weights = jnp.arange(21.0).reshape(7, 3)
        return jnp.sum(hmm.hmm_smoother(a, b, c, **strategy).smoothed_probs * weights)

    check_grads(smoothed_summary, (initial, transition, log_likelihoods), order=1, modes=["rev"])


@pytest.mark.parametrize("strategy", [Associative(), Blocked(2)], ids=["associative", "blocked"])
def test_jit_and_vmap_invariance(strategy):
    batch = [_problem(20 + i, 3, 7, time_varying=True) for i in range(3)]
    stacked = tuple(jnp.stack(x) for x in zip(*batch, strict=True))
    for fn in (
        lambda *a: hmm.hmm_filter(*a, strategy=strategy).log_likelihood,
        lambda *a: hmm.hmm_log_likelihood(*a, strategy=strategy),
        lambda *a: hmm.hmm_smoother(*a, strategy=strategy).smoothed_probs,
        lambda *a: hmm.hmm_viterbi(*a, strategy=strategy).path,
    ):
        looped = jnp.stack([fn(*args) for args in batch])
        np.testing.assert_allclose(jax.vmap(fn)(*stacked), looped, rtol=1e-12)
        np.testing.assert_allclose(jax.jit(fn)(*batch[0]), looped[0], rtol=1e-12)


def test_bad_inputs_raise():
    initial, transition, log_likelihoods = _problem(0, 3, 5)
    with pytest.raises(ValueError, match="log_likelihoods"):
        hmm.hmm_filter(initial, transition, log_likelihoods[0])
    with pytest.raises(ValueError, match="initial_logits"):
        hmm.hmm_filter(initial[:2], transition, log_likelihoods)
    with pytest.raises(ValueError, match="transition_logits"):
        hmm.hmm_filter(initial, transition[:2], log_likelihoods)
    with pytest.raises(ValueError, match="transition_logits"):
        hmm.hmm_filter(initial, jnp.zeros((4, 3, 3)), log_likelihoods)
    with pytest.raises(ValueError, match="NaN"):
        hmm.hmm_filter(initial.at[0].set(jnp.nan), transition, log_likelihoods)
    with pytest.raises(ValueError, match="finite entry"):
        hmm.hmm_smoother(initial, transition.at[1].set(-jnp.inf), log_likelihoods)


def test_blocked_strategy_matches_reference():
    strategy = Blocked(3)
    args = _problem(31, 3, 13, time_varying=True)
    evidence, filtered = forward_reference(*args)
    result = hmm.hmm_filter(*args, strategy=strategy)
    np.testing.assert_allclose(result.log_likelihood, evidence, rtol=RTOL)
    np.testing.assert_allclose(result.filtered_probs, filtered, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(
        hmm.hmm_smoother(*args, strategy=strategy).smoothed_probs,
        hmm.hmm_smoother(*args, strategy="sequential").smoothed_probs,
        rtol=RTOL,
        atol=1e-12,
    )
    np.testing.assert_array_equal(
        hmm.hmm_viterbi(*args, strategy=strategy).path,
        hmm.hmm_viterbi(*args, strategy="sequential").path,
    )
    key = jax.random.key(3)
    np.testing.assert_array_equal(
        hmm.hmm_sample_states(key, *args, (4,), strategy=strategy),
        hmm.hmm_sample_states(key, *args, (4,), strategy="sequential"),
    )
    with pytest.raises(ValueError, match="block_size"):
        hmm.hmm_filter(*args, strategy=Blocked(0))


@pytest.mark.parametrize(
    "num_steps,block_size,time_varying",
    [(1, None, True), (2, None, True), (13, None, True), (13, 3, True), (14, 3, True),
     (13, 5, False), (13, 20, False), (2, 1, False)],
)  # fmt: skip
def test_log_likelihood_tree_product(num_steps, block_size, time_varying):
    strategy = Associative() if block_size is None else Blocked(block_size)
    args = _problem(40 + num_steps, 3, num_steps, time_varying=time_varying)
    evidence, _ = forward_reference(*args)
    for each in (strategy, Sequential()):
        got = hmm.hmm_log_likelihood(*args, strategy=each)
        np.testing.assert_allclose(got, evidence, rtol=RTOL)
    check_grads(
        lambda a, b, c: hmm.hmm_log_likelihood(a, b, c, strategy=strategy),
        args,
        order=1,
        modes=["rev"],
    )


@pytest.mark.parametrize("strategy", STRATEGIES, ids=STRATEGY_IDS)
def test_impossible_observation_gives_minus_infinity(strategy):
    # An observation impossible under every state: log-likelihood -inf, never NaN.
    initial, transition, log_likelihoods = _problem(3, 3, 9)
    log_likelihoods = log_likelihoods.at[4].set(-jnp.inf)
    assert hmm.hmm_log_likelihood(initial, transition, log_likelihoods, **strategy) == -jnp.inf
    assert hmm.hmm_filter(initial, transition, log_likelihoods, **strategy).log_likelihood == (
        -jnp.inf
    )


@pytest.mark.parametrize("strategy", STRATEGIES, ids=STRATEGY_IDS)
def test_impossible_observation_gives_nan_probabilities(strategy):
    # p(z_t | y_{0:t}) is undefined once p(y_{0:t}) = 0, and p(z_t | y) everywhere: NaN for
    # every strategy (never zero rows), the probabilities before the impossible step intact.
    initial, transition, log_likelihoods = _problem(3, 3, 9)
    impossible = log_likelihoods.at[4].set(-jnp.inf)
    expected = forward_reference(initial, transition, log_likelihoods)[1]
    for result in (
        hmm.hmm_filter(initial, transition, impossible, **strategy),
        hmm.hmm_smoother(initial, transition, impossible, **strategy),
    ):
        np.testing.assert_allclose(result.filtered_probs[:4], expected[:4], rtol=RTOL)
        assert jnp.all(jnp.isnan(result.filtered_probs[4:]))
    smoothed = hmm.hmm_smoother(initial, transition, impossible, **strategy).smoothed_probs
    assert jnp.all(jnp.isnan(smoothed))
    # The per-step terms are -inf from the impossible step on (the filter relies on it).
    terms = hmm.hmm_filter(initial, transition, impossible, **strategy).log_likelihood_terms
    assert jnp.all(jnp.isfinite(terms[:4])) and jnp.all(jnp.isneginf(terms[4:]))
