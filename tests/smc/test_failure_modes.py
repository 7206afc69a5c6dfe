"""Failure modes of the particle methods beyond the bad-input matrix (tests/contract/test_smc.py).

Exactness of the bounded rejection resampler, the particle filter's restart after an
impossible step, the step API past the last observation, and the dSMC stitch with an
impossible transition.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import numpyro_parallel.smc.particle_filter as pf
import numpyro_parallel.smc.resampling as rs
from tests.smc import lgssm

WEIGHTS = np.array([0.05, 0.3, 0.01, 0.14, 0.2, 0.1, 0.15, 0.05])
N = WEIGHTS.shape[0]


def test_rejection_with_capped_rounds_is_still_exactly_multinomial():
    """With max_rounds=1 most slots come from the fallback; the law is still i.i.d. w."""
    keys = jax.random.split(jax.random.key(3), 20000)
    log_w = jnp.log(jnp.asarray(WEIGHTS))
    draw = jax.jit(jax.vmap(lambda k: rs.rejection_info(k, log_w, N, is_log=True, max_rounds=1)))
    result = draw(keys)
    idx = np.asarray(result.indices)
    assert np.all(np.asarray(result.num_rounds) == 1)
    assert 0.5 * N < np.mean(result.num_fallback) < N  # accept prob. mean/max = 0.42
    _, p = stats.chisquare(np.bincount(idx[:, 0], minlength=N), idx.shape[0] * WEIGHTS)
    assert p > 1e-3
    joint = np.bincount(idx[:, 0] * N + idx[:, 1], minlength=N * N)
    _, p = stats.chisquare(joint, idx.shape[0] * np.outer(WEIGHTS, WEIGHTS).ravel())
    assert p > 1e-3


def _model_impossible_at(step):
    def obs(x, y, t):
        value = lgssm.observation_log_prob(x, y, t)
        return jnp.where(t == step, -jnp.inf, value)

    base = lgssm.bootstrap_model()
    return base._replace(
        init_log_potential=lambda x, y: obs(x, y, 0),
        log_potential=lambda x_prev, x, y, t: obs(x, y, t),
    )


def test_filter_restarts_after_impossible_step_and_keeps_minus_inf():
    ys = jnp.asarray(lgssm.data(8))
    # (step 3 is missing in lgssm.data, so the impossible step is 4)
    out = jax.jit(lambda k: pf.run(k, _model_impossible_at(4), ys, 50))(jax.random.key(0))
    status = np.asarray(out.step_status)
    assert status[4] == 2 and int(out.status) == 2
    assert np.all(status[[0, 1, 2, 3, 5, 6, 7]] <= 1)
    assert np.all(np.isnan(out.log_weights[4]))
    # Steps after the impossible one are finite and normalised again (restart from uniform).
    np.testing.assert_allclose(jax.nn.logsumexp(out.log_weights[5:], axis=1), 0.0, atol=1e-12)
    assert np.all(np.isfinite(out.log_likelihood_terms[5:]))
    assert np.isneginf(float(out.log_likelihood))


def test_step_api_status_and_past_the_end():
    ys = jnp.asarray(lgssm.data(3))
    algorithm = pf.as_top_level_api(_model_impossible_at(1), ys, 20)
    state = algorithm.init(jax.random.key(0))
    with pytest.warns(RuntimeWarning, match="impossible"):
        state, info = algorithm.step(jax.random.key(1), state)
    assert int(info.status) == 2 and int(state.status) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state, info = algorithm.step(jax.random.key(2), state)
    assert int(info.status) == 0 and int(state.status) == 2
    with pytest.raises(ValueError, match=r"state\.time"):
        algorithm.step(jax.random.key(3), state)
    # Under jit the step past the end is reported, not silently clamped to the last one.
    _, info = jax.jit(algorithm.step)(jax.random.key(3), state)
    assert int(info.status) == 3 and np.isnan(float(info.log_likelihood_term))
