"""Lazy (rejection) stitching of dSMC: exact pair law, unbiased evidence, Kalman smoother."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from numpyro_parallel.smc.dsmc_lazy import lazy_level, log_bounds_array
from tests.smc import lgssm

T = 13  # odd and prime: exercises the padding of the stitching tree
YS = lgssm.data(T)
EXACT_LOGLIK, RTS_MEAN, RTS_COV = lgssm.exact(YS)
PROPOSAL_MEAN = jnp.asarray(RTS_MEAN)
PROPOSAL_CHOL = 1.5 * jnp.sqrt(jnp.asarray(RTS_COV))  # inflated exact marginals (d = 1)

LOG_BOUND = float(-0.5 * np.log(2 * np.pi * lgssm.Q[0, 0]))  # max of the N(., F x, Q) density

# Pair sampler in isolation: 3 left x 3 right particles with unequal weights.
LAST = np.array([[-1.0], [0.0], [1.5]])
FIRST = np.array([[-0.5], [0.8], [2.0]])
W_LEFT = np.array([0.5, 0.3, 0.2])
W_RIGHT = np.array([0.2, 0.3, 0.5])


def _pair_target():
    f = np.exp(
        [[float(lgssm.transition_log_prob(a, b, 1)) for b in FIRST] for a in LAST]
    )  # f[i, j] = f(first_j | last_i)
    target = W_LEFT[:, None] * W_RIGHT[None, :] * f
    return target / target.sum(), target.sum()


# Stitch s holds the same particles in another order (left rolled by s, right by 2 s), so a
# mix-up between stitches (e.g. in the gathered fallback) changes the pair frequencies.
PERM_LEFT = np.stack([np.roll(np.arange(3), s) for s in range(4)])
PERM_RIGHT = np.stack([np.roll(np.arange(3), 2 * s) for s in range(4)])


def _draw_pairs(key, max_trials, log_bound=LOG_BOUND, row_chunk_size=None, num_draws=2500):
    """Pair cells (draws, P, 3) of P = 4 stitches with per-stitch bounds."""
    bounds = jnp.broadcast_to(jnp.asarray(log_bound, jnp.float64), (4,))

    def one(k):
        i, j, log_inc, counters = lazy_level(
            jax.random.split(k, 4),
            jnp.asarray(LAST[PERM_LEFT]),
            jnp.asarray(FIRST[PERM_RIGHT]),
            jnp.log(jnp.asarray(W_LEFT[PERM_LEFT])),
            jnp.log(jnp.asarray(W_RIGHT[PERM_RIGHT])),
            jnp.ones((4,), jnp.int32),
            jnp.ones((4,), bool),
            bounds,
            transition_log_prob=lgssm.transition_log_prob,
            max_trials=max_trials,
            row_chunk_size=row_chunk_size,
        )
        return 3 * i + j, log_inc, counters

    return jax.jit(jax.vmap(one))(jax.random.split(key, num_draws))


def _chi2_pvalue(cells, probs):
    counts = np.bincount(np.asarray(cells).ravel(), minlength=probs.size)
    expected = probs.ravel() * counts.sum()
    return stats.chi2.sf(np.sum((counts - expected) ** 2 / expected), probs.size - 1)


LOOSE = [LOG_BOUND, LOG_BOUND, LOG_BOUND + 2.5, LOG_BOUND]  # stitch 2 mostly falls back


@pytest.mark.parametrize(
    ("max_trials", "bounds", "row_chunk_size"),
    [(64, LOG_BOUND, None), (1, LOG_BOUND, 1), (8, LOOSE, None)],
    ids=["many_trials", "one_trial_blocked", "few_stitches_fall_back"],
)
def test_lazy_pair_frequencies_match_pair_target(max_trials, bounds, row_chunk_size):
    """Each stitch's pairs follow pi(i, j) ~ w_i w_j f_ij, whichever fallback branch ran."""
    target, total = _pair_target()
    cells, log_inc, counters = _draw_pairs(jax.random.key(10), max_trials, bounds, row_chunk_size)
    fallback_share = counters[:, 2].sum() / cells.size
    if max_trials == 1:
        assert fallback_share > 0.3  # the exact fallback draws many slots
    elif max_trials == 64:
        assert fallback_share < 1e-3
    else:  # mostly stitch 2 alone needs the fallback: the gathered branch runs
        assert 0.1 < fallback_share < 0.3
    assert int(counters[:, 1].sum()) == 0  # the bound holds
    for stitch in range(4):
        stitch_target = target[np.ix_(PERM_LEFT[stitch], PERM_RIGHT[stitch])]
        assert _chi2_pvalue(cells[:, stitch], stitch_target) > 1e-3
    # Power check: the proposal law w^L x w^R (no transition factor) is rejected.
    assert _chi2_pvalue(cells[:, 0], np.outer(W_LEFT, W_RIGHT)) < 1e-6
    # Increment estimate: unbiased for sum_ij w_i w_j f_ij.
    inc = np.exp(np.asarray(log_inc)).ravel()
    assert abs(inc.mean() - total) < 4 * inc.std() / np.sqrt(inc.size)


def _run(key, num_particles, ys=YS, mean=PROPOSAL_MEAN, chol=PROPOSAL_CHOL, **kwargs):
    return lgssm.run_dsmc(key, num_particles, ys, mean, chol, **kwargs)


@pytest.mark.slow
def test_lazy_dsmc_log_evidence_unbiased_and_smoothing_means():
    max_trials = 64
    keys = jax.random.split(jax.random.key(20), 200)
    out = jax.jit(jax.vmap(lambda k: _run(k, 64, transition_log_bound=LOG_BOUND)))(keys)
    assert out.trajectories.shape == (200, 64, T, 1)
    assert int(out.num_bound_violations.sum()) == 0
    mean_trials = float(out.mean_trials.mean())
    assert 1.0 <= mean_trials <= max_trials
    lgssm.assert_log_evidence_unbiased(out.log_likelihood, EXACT_LOGLIK)
    means = np.asarray(out.trajectories[..., 0].mean(1))  # (seeds, T)
    est, se = lgssm.weighted_mean_and_se(out.log_likelihood, means)
    np.testing.assert_array_less(np.abs(est - RTS_MEAN[:, 0]), 4 * se)


def test_conditional_lazy_dsmc_keeps_posterior_invariant():
    """One conditional lazy-dSMC Gibbs step from exact posterior draws leaves the law unchanged."""
    lgssm.check_conditional_dsmc_invariance(
        YS, seed=21, transition_log_bound=LOG_BOUND, max_trials=4
    )


@pytest.mark.slow
def test_bound_forms_and_wrong_bound_is_reported():
    expected = np.full(T, LOG_BOUND)
    for bound in (LOG_BOUND, jnp.full((T,), LOG_BOUND), lambda t: LOG_BOUND + 0.0 * t):
        np.testing.assert_allclose(log_bounds_array(bound, T, jnp.float64), expected)
    # Violations are counted by the pair sampler and reported by dsmc (jit, short series).
    _, _, counters = _draw_pairs(jax.random.key(11), 8, log_bound=LOG_BOUND - 1.0, num_draws=50)
    assert int(counters[:, 1].sum()) > 0
    run = jax.jit(
        lambda k, b: _run(
            k, 32, ys=YS[:4], mean=PROPOSAL_MEAN[:4], chol=PROPOSAL_CHOL[:4], transition_log_bound=b
        )
    )
    assert int(run(jax.random.key(12), LOG_BOUND - 2.0).num_bound_violations) > 0
    single = run(jax.random.key(12), LOG_BOUND)
    assert int(single.num_bound_violations) == 0
    # vmap invariance (the batched while loops and fallback give the same draws).
    keys = jax.random.split(jax.random.key(13), 3)
    batched = jax.vmap(run, in_axes=(0, None))(keys, LOG_BOUND)
    np.testing.assert_array_equal(batched.trajectories[1], run(keys[1], LOG_BOUND).trajectories)


@pytest.mark.slow
def test_lazy_jit_float32_and_bad_input():
    out32 = jax.jit(
        lambda k: _run(
            k,
            256,
            ys=YS.astype(np.float32),
            mean=PROPOSAL_MEAN.astype(jnp.float32),
            chol=PROPOSAL_CHOL.astype(jnp.float32),
            transition_log_bound=np.float32(LOG_BOUND),
            max_trials=16,
        )
    )(jax.random.key(31))
    assert out32.trajectories.dtype == jnp.float32
    assert np.all(np.isfinite(out32.trajectories))
    assert int(out32.num_bound_violations) == 0
    assert float(out32.mean_trials) >= 1.0
    assert abs(float(out32.log_likelihood) - EXACT_LOGLIK) < 1.0

    key = jax.random.key(30)
    with pytest.raises(ValueError, match="transition_log_bound"):
        _run(key, 8, transition_log_bound=jnp.zeros((T + 1,)))
    with pytest.raises(ValueError, match="transition_log_bound"):
        _run(key, 8, transition_log_bound=lambda t: jnp.zeros((2,)))
    with pytest.raises(ValueError, match="max_trials"):
        _run(key, 8, transition_log_bound=LOG_BOUND, max_trials=0)
    with pytest.raises(TypeError, match="max_trials"):
        _run(key, 8, transition_log_bound=LOG_BOUND, max_trials=2.5)
    with pytest.raises(ValueError, match="resampling_fn"):
        _run(key, 8, transition_log_bound=LOG_BOUND, resampling_fn="systematic")
