"""dSMC and FFBS smoothers against the exact Kalman likelihood and RTS smoother."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_parallel.smc.particle_filter as pf
from numpyro_parallel.smc.ffbs import backward_sampling
from numpyro_parallel.smc.proposals import gaussian_proposals_from_kalman
from tests.reference.smc import lgssm_joint_posterior
from tests.smc import lgssm

T = 13  # odd and prime: exercises the padding of the stitching tree
YS = lgssm.data(T)
EXACT_LOGLIK, RTS_MEAN, RTS_COV = lgssm.exact(YS)
PROPOSAL_MEAN = jnp.asarray(RTS_MEAN)
PROPOSAL_CHOL = 1.5 * jnp.sqrt(jnp.asarray(RTS_COV))  # inflated exact marginals (d = 1)


def _run(key, num_particles, ys=YS, mean=PROPOSAL_MEAN, chol=PROPOSAL_CHOL, **kwargs):
    return lgssm.run_dsmc(key, num_particles, ys, mean, chol, **kwargs)


def test_reference_rts_matches_brute_force():
    mean, cov = lgssm_joint_posterior(lgssm.M0, lgssm.P0, lgssm.F, lgssm.Q, lgssm.H, lgssm.R, YS)
    np.testing.assert_allclose(mean, RTS_MEAN[:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.diag(cov), RTS_COV[:, 0, 0], rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs", [{}, {"row_chunk_size": 16}, {"resampling_fn": "systematic"}], ids=str
)
@pytest.mark.slow
def test_dsmc_log_evidence_unbiased_and_smoothing_means(kwargs):
    keys = jax.random.split(jax.random.key(0), 200)
    out = jax.jit(jax.vmap(lambda k: _run(k, 64, **kwargs)))(keys)
    assert out.trajectories.shape == (200, 64, T, 1)
    lgssm.assert_log_evidence_unbiased(out.log_likelihood, EXACT_LOGLIK)
    means = np.asarray(out.trajectories[..., 0].mean(1))  # (seeds, T)
    est, se = lgssm.weighted_mean_and_se(out.log_likelihood, means)
    np.testing.assert_array_less(np.abs(est - RTS_MEAN[:, 0]), 4 * se)


def test_dsmc_single_step_and_float32():
    keys = jax.random.split(jax.random.key(1), 300)
    out = jax.jit(
        jax.vmap(lambda k: _run(k, 32, ys=YS[:1], mean=PROPOSAL_MEAN[:1], chol=PROPOSAL_CHOL[:1]))
    )(keys)
    lgssm.assert_log_evidence_unbiased(out.log_likelihood, lgssm.exact(YS[:1])[0])
    out32 = jax.jit(_run, static_argnums=1)(
        jax.random.key(2),
        256,
        ys=YS.astype(np.float32),
        mean=PROPOSAL_MEAN.astype(jnp.float32),
        chol=PROPOSAL_CHOL.astype(jnp.float32),
    )
    assert out32.trajectories.dtype == jnp.float32
    assert abs(float(out32.log_likelihood) - EXACT_LOGLIK) < 0.5


def test_conditional_dsmc_keeps_posterior_invariant():
    """One conditional-dSMC Gibbs step from exact posterior draws leaves the law unchanged."""
    lgssm.check_conditional_dsmc_invariance(YS, seed=4)


def test_ffbs_smoothing_means():
    model = lgssm.bootstrap_model()

    def smooth(key):
        key_pf, key_bs = jax.random.split(key)
        out = pf.run(key_pf, model, jnp.asarray(YS), 100)
        paths = backward_sampling(key_bs, out, lgssm.transition_log_prob, 20)
        return out.log_likelihood, paths[..., 0].mean(0)

    keys = jax.random.split(jax.random.key(5), 200)
    log_z, means = jax.jit(jax.vmap(smooth))(keys)
    est, se = lgssm.weighted_mean_and_se(log_z, np.asarray(means))
    np.testing.assert_array_less(np.abs(est - RTS_MEAN[:, 0]), 4 * se)


def test_kalman_proposal_helper_and_bad_input():
    from numpyro_parallel.ssm.kalman.inference import GaussianSSMParams

    params = GaussianSSMParams(
        initial_mean=jnp.asarray(lgssm.M0),
        initial_chol=jnp.sqrt(jnp.asarray(lgssm.P0)),
        transition_matrix=jnp.broadcast_to(jnp.asarray(lgssm.F), (T, 1, 1)),
        transition_offset=jnp.zeros((T, 1)),
        transition_chol=jnp.broadcast_to(jnp.sqrt(jnp.asarray(lgssm.Q)), (T, 1, 1)),
        observation_matrix=jnp.broadcast_to(jnp.asarray(lgssm.H), (T, 1, 1)),
        observation_offset=jnp.zeros((T, 1)),
        observation_chol=jnp.broadcast_to(jnp.sqrt(jnp.asarray(lgssm.R)), (T, 1, 1)),
    )
    mean, chol = gaussian_proposals_from_kalman(params, jnp.asarray(YS), inflation=1.5)
    np.testing.assert_allclose(mean, RTS_MEAN, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(jnp.abs(chol), PROPOSAL_CHOL, rtol=1e-8)
    with pytest.raises(ValueError, match="proposal_mean"):
        _run(jax.random.key(0), 8, mean=PROPOSAL_MEAN[:3])
    with pytest.raises(ValueError, match="row_chunk_size"):
        _run(jax.random.key(0), 8, row_chunk_size=3)
    with pytest.raises(ValueError, match="observations"):
        _run(jax.random.key(0), 8, ys=YS[:, 0])
