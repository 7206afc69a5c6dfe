"""Shared linear-Gaussian test model (1-d state, 1-d observations) for the SMC tests."""

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel.smc.dsmc import dsmc
from numpyro_parallel.smc.particle_filter import bootstrap, guided
from tests.reference.smc import kalman_loglik_and_rts, lgssm_joint_posterior, simulate_lgssm

M0, P0 = np.array([0.5]), np.array([[1.0]])
F, Q = np.array([[0.9]]), np.array([[0.5]])
H, R = np.array([[1.0]]), np.array([[1.0]])


def data(num_steps, seed=0, missing=(3,)):
    _, ys = simulate_lgssm(np.random.default_rng(seed), M0, P0, F, Q, H, R, num_steps)
    for t in missing:
        if t < num_steps:
            ys[t] = np.nan
    return ys


def exact(ys, f=F):
    return kalman_loglik_and_rts(M0, P0, f, Q, H, R, ys)


def _norm_logpdf(x, mean, var):
    return -0.5 * (jnp.log(2 * jnp.pi * var) + (x - mean) ** 2 / var)


def initial_log_prob(x):
    return _norm_logpdf(x[0], float(M0[0]), float(P0[0, 0]))


def transition_log_prob(x_prev, x, t, f=float(F[0, 0])):
    return _norm_logpdf(x[0], f * x_prev[0], float(Q[0, 0]))


def observation_log_prob(x, y, t):
    return _norm_logpdf(y[0], float(H[0, 0]) * x[0], float(R[0, 0]))


def bootstrap_model(f=F[0, 0], dtype=jnp.float64):
    def init_sample(key):
        return (M0 + np.sqrt(P0[0]) * jax.random.normal(key, (1,), dtype)).astype(dtype)

    def transition_sample(key, x, t):
        coef = jnp.asarray(f, dtype)
        return coef * x + np.sqrt(Q[0, 0]).astype(dtype) * jax.random.normal(key, (1,), dtype)

    return bootstrap(init_sample, transition_sample, observation_log_prob)


def guided_model():
    """Locally optimal proposal p(x_t | x_{t-1}, y_t) (prior when y_t is missing)."""
    f, q, r = F[0, 0], Q[0, 0], R[0, 0]

    def moments(prior_mean, prior_var, y):
        missing = jnp.all(jnp.isnan(y))
        gain = prior_var / (prior_var + r)
        safe = jnp.where(missing, 0.0, y[0])
        mean = jnp.where(missing, prior_mean, prior_mean + gain * (safe - prior_mean))
        var = jnp.where(missing, prior_var, (1 - gain) * prior_var)
        return mean, var

    def init_sample(key, y):
        mean, var = moments(M0[0], P0[0, 0], y)
        return jnp.reshape(mean + jnp.sqrt(var) * jax.random.normal(key), (1,))

    def init_log_q(x, y):
        mean, var = moments(M0[0], P0[0, 0], y)
        return _norm_logpdf(x[0], mean, var)

    def sample(key, x_prev, y, t):
        mean, var = moments(f * x_prev[0], q, y)
        return jnp.reshape(mean + jnp.sqrt(var) * jax.random.normal(key), (1,))

    def log_q(x_prev, x, y, t):
        mean, var = moments(f * x_prev[0], q, y)
        return _norm_logpdf(x[0], mean, var)

    return guided(
        initial_log_prob,
        transition_log_prob,
        observation_log_prob,
        init_sample,
        init_log_q,
        sample,
        log_q,
    )


def assert_log_evidence_unbiased(log_z, exact_log_z, num_se=3.0):
    """mean(log Z_hat) = log Z - Var(log Z_hat) / 2 within num_se standard errors."""
    log_z = np.asarray(log_z)
    assert np.all(np.isfinite(log_z))
    var = log_z.var(ddof=1)
    se = np.sqrt(var / log_z.shape[0])
    diff = log_z.mean() - (exact_log_z - var / 2)
    assert abs(diff) < num_se * se, (diff, se, var)
    return var


def weighted_mean_and_se(log_z, estimates):
    """Combine independent SMC runs by Z_hat weights; delta-method standard errors."""
    log_z = np.asarray(log_z)
    w = np.exp(log_z - log_z.max())
    r = w / w.mean()
    est = (r[:, None] * estimates).sum(0) / r.sum()
    se = np.sqrt(np.var(r[:, None] * (estimates - est), axis=0) / log_z.shape[0])
    return est, se


def run_dsmc(key, num_particles, ys, mean, chol, **kwargs):
    """dSMC on this model with Gaussian proposals ``N(mean_t, chol_t chol_t^T)``."""
    return dsmc(
        key,
        jnp.asarray(ys),
        num_particles,
        initial_log_prob=initial_log_prob,
        transition_log_prob=transition_log_prob,
        observation_log_prob=observation_log_prob,
        proposal_mean=mean,
        proposal_chol=chol,
        **kwargs,
    )


def check_conditional_dsmc_invariance(ys, seed, **dsmc_kwargs):
    """One conditional-dSMC Gibbs step from exact posterior draws must leave the law unchanged.

    3000 chains start from exact draws of p(x | y) (T = 7); after one step with deliberately
    poor proposals (which make an invalid conditional update visible), the reference slot is
    kept, the chains move, and the posterior means and variances agree within 4 standard errors.
    """
    num_chains, t_small = 3000, 7
    ys = ys[:t_small]
    mean, cov = lgssm_joint_posterior(M0, P0, F, Q, H, R, ys)
    rng = np.random.default_rng(3)
    refs = rng.multivariate_normal(mean, cov, size=num_chains)[..., None]  # (chains, T, 1)
    prop_mean = jnp.zeros((t_small, 1)) + 1.0
    prop_chol = jnp.ones((t_small, 1, 1)) * 2.0

    def gibbs_step(key, ref):
        key_run, key_pick = jax.random.split(key)
        out = run_dsmc(key_run, 8, ys, prop_mean, prop_chol, reference=ref, **dsmc_kwargs)
        return out.trajectories[jax.random.randint(key_pick, (), 0, 8)], out.trajectories[0]

    keys = jax.random.split(jax.random.key(seed), num_chains)
    new, first = jax.jit(jax.vmap(gibbs_step))(keys, jnp.asarray(refs))
    np.testing.assert_array_equal(first, refs)
    new = np.asarray(new[..., 0])
    assert np.mean(np.any(new != refs[..., 0], axis=1)) > 0.3  # the chain moves
    se_mean = np.sqrt(np.diag(cov) / num_chains)
    np.testing.assert_array_less(np.abs(new.mean(0) - mean), 4 * se_mean)
    var = new.var(0)
    se_var = np.diag(cov) * np.sqrt(2.0 / num_chains)
    np.testing.assert_array_less(np.abs(var - np.diag(cov)), 4 * se_var)
