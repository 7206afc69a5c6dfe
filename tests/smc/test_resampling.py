"""Resampling: unbiased offspring, exact laws, Metropolis bias, float32 at N = 10^6."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import numpyro_parallel.smc.conditional_resampling as crs
import numpyro_parallel.smc.resampling as rs
from tests.reference.smc import offspring_counts

WEIGHTS = np.array([0.05, 0.3, 0.01, 0.14, 0.2, 0.1, 0.15, 0.05])
N = WEIGHTS.shape[0]
UNBIASED = ["multinomial", "stratified", "systematic", "residual", "rejection"]


def _draw(name, num_seeds, weights=WEIGHTS, num_samples=N, seed=0, **kwargs):
    fn = rs.get_resampler(name)
    keys = jax.random.split(jax.random.key(seed), num_seeds)
    log_w = jnp.log(jnp.asarray(weights))
    draw = jax.jit(jax.vmap(lambda k: fn(k, log_w, num_samples, is_log=True, **kwargs)))
    return np.asarray(draw(keys))


@pytest.mark.parametrize("name", UNBIASED)
def test_offspring_counts_unbiased(name):
    idx = _draw(name, 20000)
    assert idx.dtype == np.int32 and idx.min() >= 0 and idx.max() < N
    counts = offspring_counts(idx, N)
    mean = counts.mean(0)
    se = counts.std(0) / np.sqrt(counts.shape[0])
    np.testing.assert_array_less(np.abs(mean - N * WEIGHTS), 4 * se + 1e-9)


def test_weights_and_log_weights_agree():
    key = jax.random.key(3)
    for name in UNBIASED:
        fn = rs.get_resampler(name)
        a = fn(key, jnp.asarray(WEIGHTS), N)
        b = fn(key, jnp.log(jnp.asarray(WEIGHTS)) + 7.0, N, is_log=True)
        np.testing.assert_array_equal(a, b)


def test_low_variance_schemes_have_bounded_counts():
    counts = offspring_counts(_draw("stratified", 2000), N)
    assert np.all(np.abs(counts - N * WEIGHTS) < 2.0 + 1e-9)
    counts = offspring_counts(_draw("residual", 2000), N)
    assert np.all(counts >= np.floor(N * WEIGHTS))
    counts = offspring_counts(_draw("systematic", 2000), N)
    assert np.all(np.abs(counts - N * WEIGHTS) < 1.0 + 1e-9)


@pytest.mark.parametrize("name", ["rejection", "multinomial"])
def test_iid_multinomial_law(name):
    """Slot marginals follow w and slots are independent (chi-square tests)."""
    idx = _draw(name, 20000, seed=11)
    for slot in [0, 5]:
        observed = np.bincount(idx[:, slot], minlength=N)
        _, p = stats.chisquare(observed, idx.shape[0] * WEIGHTS)
        assert p > 1e-3
    joint = np.bincount(idx[:, 0] * N + idx[:, 1], minlength=N * N)
    expected = idx.shape[0] * np.outer(WEIGHTS, WEIGHTS).ravel()
    _, p = stats.chisquare(joint, expected)
    assert p > 1e-3


def _metropolis_exact_mean_counts(weights, num_steps):
    """Expected offspring counts 1^T K^B of the Metropolis resampler (uniform starts)."""
    n = weights.shape[0]
    ratio = np.minimum(1.0, weights[None, :] / weights[:, None])
    kernel = ratio / n
    kernel[np.diag_indices(n)] = 0.0
    kernel[np.diag_indices(n)] = 1.0 - kernel.sum(1)
    return np.ones(n) @ np.linalg.matrix_power(kernel, num_steps)


def test_metropolis_matches_exact_law_and_bias_shrinks():
    biases = []
    for steps in [1, 4, 16]:
        exact = _metropolis_exact_mean_counts(WEIGHTS, steps)
        counts = offspring_counts(_draw("metropolis", 20000, num_steps=steps), N)
        se = counts.std(0) / np.sqrt(counts.shape[0])
        np.testing.assert_array_less(np.abs(counts.mean(0) - exact), 4 * se + 1e-9)
        biases.append(0.5 * np.abs(exact / N - WEIGHTS).sum())
    assert biases[0] > biases[1] > biases[2]
    # The default B (tolerance 0.01) keeps the exact total-variation bias below 0.01.
    default_steps = int(rs.metropolis_num_steps(jnp.log(jnp.asarray(WEIGHTS))))
    exact = _metropolis_exact_mean_counts(WEIGHTS, default_steps)
    assert 0.5 * np.abs(exact / N - WEIGHTS).sum() < 0.01


@pytest.mark.parametrize("name", ["multinomial", "stratified", "systematic", "rejection"])
def test_conditional_resampling_law(name):
    """E_cond[c_j] = E[c_j c_0] / (N w_0): the conditional law given slot 0 <- particle 0."""
    weights = np.array([0.3, 0.1, 0.25, 0.05, 0.3])
    n = weights.shape[0]
    log_w = jnp.log(jnp.asarray(weights))
    keys = jax.random.split(jax.random.key(5), 40000)
    cond_fn = crs.get_conditional_resampler(name)
    cond = np.asarray(jax.jit(jax.vmap(lambda k: cond_fn(k, log_w, n, is_log=True)))(keys))
    assert np.all(cond[:, 0] == 0)
    free = _draw(name, 40000, weights=weights, num_samples=n, seed=6)
    c_cond = offspring_counts(cond, n)
    c_free = offspring_counts(free, n)
    target = c_free * c_free[:, :1] / (n * weights[0])
    diff = c_cond.mean(0) - target.mean(0)
    se = np.sqrt(c_cond.var(0) / c_cond.shape[0] + target.var(0) / target.shape[0])
    np.testing.assert_array_less(np.abs(diff), 4 * se + 1e-9)


@pytest.mark.parametrize("name", ["systematic", "multinomial"])
def test_float32_million_particles_no_drift(name):
    n = 1_000_000
    log_w = jax.random.normal(jax.random.key(0), (n,), dtype=jnp.float64) * 2.0
    fn = jax.jit(rs.get_resampler(name), static_argnums=2, static_argnames="is_log")
    idx64 = np.asarray(fn(jax.random.key(1), log_w, n, is_log=True))
    idx32 = np.asarray(fn(jax.random.key(1), log_w.astype(jnp.float32), n, is_log=True))
    weights = np.exp(np.asarray(log_w) - np.max(np.asarray(log_w)))
    bins = np.arange(0, n + 1, 10_000)
    expected = n * np.add.reduceat(weights, bins[:-1]) / weights.sum()
    c32 = np.histogram(idx32, bins)[0]
    c64 = np.histogram(idx64, bins)[0]
    drift32 = np.abs(np.cumsum(c32) - np.cumsum(expected))
    if name == "systematic":
        # Systematic counts of any prefix of particles are within 1 of N * mass: float32 must
        # not drift (a sequential float32 running sum is off by tens of counts at this N).
        assert np.max(np.abs(np.cumsum(c64) - np.cumsum(expected))) <= 1.0 + 1e-6
        assert np.max(drift32) <= 3.0
        assert np.max(np.abs(c32 - c64)) <= 4
    else:
        # Binomial sd of each prefix count; the last prefix holds every particle (sd 0, drift 0
        # up to rounding of the expected counts), so it is left out rather than divided by ~0.
        cdf = np.clip(np.cumsum(expected)[:-1] / n, 0.0, 1.0)
        sd = np.sqrt(n * cdf * (1 - cdf))
        assert np.max(drift32[:-1] / sd) < 5.0
        assert drift32[-1] < 1e-6
        sd_bin = np.sqrt(expected)
        assert np.max(np.abs(c32 - expected) / sd_bin) < 5.0


def test_ess_adaptive_and_errors():
    log_w = jnp.log(jnp.asarray(WEIGHTS))
    never = rs.ess_adaptive("systematic", 0.0)
    always = rs.ess_adaptive("systematic", 1.0)
    idx, lw, flag = never(jax.random.key(0), log_w)
    assert not bool(flag)
    np.testing.assert_array_equal(idx, np.arange(N))
    np.testing.assert_allclose(jnp.exp(lw), WEIGHTS, rtol=1e-12)
    idx, lw, flag = always(jax.random.key(0), log_w)
    assert bool(flag)
    np.testing.assert_allclose(lw, -np.log(N))
    with pytest.raises(ValueError, match="name"):
        rs.get_resampler("nope")
    with pytest.raises(ValueError, match="weights"):
        rs.systematic(jax.random.key(0), jnp.ones((2, 3)), 3)
    with pytest.raises(ValueError, match="num_samples"):
        rs.systematic(jax.random.key(0), jnp.ones(3), 0)
    with pytest.raises(ValueError, match="conditional"):
        crs.get_conditional_resampler("residual")
    assert float(rs.ess(jnp.zeros(10))) == pytest.approx(10.0)
