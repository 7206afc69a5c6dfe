"""Particle filter: unbiased log-likelihood on a linear-Gaussian model, gradients, invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_parallel.smc.particle_filter as pf
from numpyro_parallel.smc.resampling import RESAMPLERS
from tests.smc import lgssm

T, N, SEEDS = 20, 100, 200
YS = lgssm.data(T)
EXACT_LOGLIK = lgssm.exact(YS)[0]


def _log_z(model, seeds=SEEDS, ys=YS, num_particles=N, **kwargs):
    keys = jax.random.split(jax.random.key(42), seeds)
    run = jax.jit(
        jax.vmap(
            lambda k: pf.run(k, model, jnp.asarray(ys), num_particles, **kwargs).log_likelihood
        )
    )
    return np.asarray(run(keys))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RESAMPLERS))
def test_log_evidence_unbiased_every_resampler(name):
    log_z = _log_z(lgssm.bootstrap_model(), resampling_fn=name)
    lgssm.assert_log_evidence_unbiased(log_z, EXACT_LOGLIK)


def test_log_evidence_unbiased_adaptive_and_guided():
    lgssm.assert_log_evidence_unbiased(
        _log_z(lgssm.bootstrap_model(), ess_threshold=0.5), EXACT_LOGLIK
    )
    var_guided = lgssm.assert_log_evidence_unbiased(
        _log_z(lgssm.guided_model(), num_particles=20), EXACT_LOGLIK
    )
    var_boot = np.var(_log_z(lgssm.bootstrap_model(), num_particles=20))
    assert var_guided < 0.5 * var_boot


def test_output_shapes_and_missing_step():
    out = pf.run(jax.random.key(0), lgssm.bootstrap_model(), jnp.asarray(YS), N)
    assert out.particles.shape == (T, N, 1)
    assert out.log_weights.shape == out.ancestors.shape == (T, N)
    assert out.ess.shape == out.resampled.shape == out.log_likelihood_terms.shape == (T,)
    np.testing.assert_array_equal(out.ancestors[0], np.arange(N))
    np.testing.assert_allclose(jax.nn.logsumexp(out.log_weights, axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.log_likelihood, out.log_likelihood_terms.sum(), rtol=1e-12)
    # Missing observation at t = 3: no potential, so the increment is exactly zero.
    assert float(out.log_likelihood_terms[3]) == 0.0
    np.testing.assert_allclose(out.ess[3], N)


def test_jit_vmap_invariance_and_step_api():
    model = lgssm.bootstrap_model()
    keys = jax.random.split(jax.random.key(1), 3)
    batched = jax.jit(jax.vmap(lambda k: pf.run(k, model, jnp.asarray(YS), 50).log_likelihood))(
        keys
    )
    jitted = jax.jit(lambda k: pf.run(k, model, jnp.asarray(YS), 50).log_likelihood)
    single = [jitted(k) for k in keys]
    np.testing.assert_allclose(batched, np.array(single), rtol=1e-12)
    # The BlackJAX-style init/step API reproduces run().
    algorithm = pf.as_top_level_api(model, jnp.asarray(YS), 50)
    key_init, key_steps = jax.random.split(keys[0])
    state = algorithm.init(key_init)
    step = jax.jit(algorithm.step)
    for key in jax.random.split(key_steps, T - 1):
        state, info = step(key, state)
    assert isinstance(info, pf.ParticleFilterInfo)
    np.testing.assert_allclose(state.log_likelihood, single[0], rtol=1e-12)
    assert int(state.time) == T - 1


def test_single_time_step_and_float32():
    ys1 = YS[:1]
    log_z = _log_z(lgssm.bootstrap_model(), ys=ys1, seeds=400)
    lgssm.assert_log_evidence_unbiased(log_z, lgssm.exact(ys1)[0])
    model32 = lgssm.bootstrap_model(dtype=jnp.float32)
    out = pf.run(jax.random.key(0), model32, jnp.asarray(YS, jnp.float32), 1000)
    assert out.particles.dtype == jnp.float32 and out.log_weights.dtype == jnp.float32
    assert np.isfinite(float(out.log_likelihood))
    assert abs(float(out.log_likelihood) - EXACT_LOGLIK) < 1.0


def test_score_gradient_of_evidence_is_unbiased():
    """E[grad Z_hat] / Z = d log Z / d f with the stop-gradient estimator (multinomial)."""
    f0, eps = 0.9, 1e-5
    exact_grad = (
        lgssm.exact(YS, f=np.array([[f0 + eps]]))[0] - lgssm.exact(YS, f=np.array([[f0 - eps]]))[0]
    ) / (2 * eps)

    def log_z(f, key, estimator):
        out = pf.run(
            key,
            lgssm.bootstrap_model(f=f),
            jnp.asarray(YS),
            N,
            resampling_fn="multinomial",
            gradient_estimator=estimator,
        )
        return out.log_likelihood

    keys = jax.random.split(jax.random.key(7), 400)
    values, grads = jax.jit(
        jax.vmap(jax.value_and_grad(lambda f, k: log_z(f, k, "score")), in_axes=(None, 0))
    )(f0, keys)
    est, se = lgssm.weighted_mean_and_se(values, np.asarray(grads)[:, None])
    assert abs(est[0] - exact_grad) < 4 * se[0], (est, se, exact_grad)
    values_none = jax.vmap(lambda k: log_z(f0, k, "none"))(keys[:5])
    np.testing.assert_allclose(values_none, values[:5], rtol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="num_particles"):
        pf.run(jax.random.key(0), lgssm.bootstrap_model(), jnp.asarray(YS), 0)
    with pytest.raises(ValueError, match="gradient_estimator"):
        pf.build_kernel(lgssm.bootstrap_model(), gradient_estimator="reinforce")
    with pytest.raises(ValueError, match="observations"):
        pf.run(jax.random.key(0), lgssm.bootstrap_model(), jnp.asarray(1.0), 10)
