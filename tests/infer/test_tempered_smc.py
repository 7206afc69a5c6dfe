"""Tempered SMC on conjugate NumPyro models: posterior moments and evidence vs closed forms."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import special

from numpyro_parallel.infer.tempered import (
    build_tempered_smc,
    split_model,
    tempered_smc,
    tempered_smc_to_arviz,
)

RNG = np.random.default_rng(0)
Y_NORMAL = RNG.normal(1.0, 1.0, size=20)
Y_GAMMA = RNG.normal(0.0, 0.7, size=30)
PRIOR_SD, A, B = 2.0, 2.0, 1.5


def normal_mean_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def precision_model(y):
    tau = numpyro.sample("tau", dist.Gamma(A, B))
    numpyro.deterministic("sigma", 1.0 / jnp.sqrt(tau))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(0.0, 1.0 / jnp.sqrt(tau)), obs=y)


def normal_exact(y):
    n = y.shape[0]
    cov = np.eye(n) + PRIOR_SD**2 * np.ones((n, n))
    _, logdet = np.linalg.slogdet(2 * np.pi * cov)
    log_z = -0.5 * (logdet + y @ np.linalg.solve(cov, y))
    post_var = 1.0 / (1.0 / PRIOR_SD**2 + n)
    return log_z, post_var * y.sum(), post_var


def gamma_exact(y):
    n, s = y.shape[0], np.sum(y**2)
    a_post, b_post = A + n / 2, B + s / 2
    log_z = (
        A * np.log(B)
        - special.gammaln(A)
        + special.gammaln(a_post)
        - a_post * np.log(b_post)
        - n / 2 * np.log(2 * np.pi)
    )
    return log_z, a_post / b_post, a_post / b_post**2


def _runs(model, y, num_seeds=8, **kwargs):
    run = build_tempered_smc(model, (jnp.asarray(y),), num_particles=400, **kwargs)
    keys = jax.random.split(jax.random.key(1), num_seeds)
    return jax.jit(jax.vmap(run))(keys)


def _weighted_moments(result, name):
    w = np.exp(np.asarray(result.log_weights))
    x = np.asarray(result.samples[name])
    mean = (w * x).sum(1)
    var = (w * (x - mean[:, None]) ** 2).sum(1)
    return mean, var


def _check(estimates, exact, num_se=4.0):
    se = estimates.std(ddof=1) / np.sqrt(estimates.shape[0])
    assert abs(estimates.mean() - exact) < num_se * se + 1e-3 * abs(exact), (
        estimates.mean(),
        exact,
        se,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["hmc", "rwm"])
def test_normal_mean_posterior_and_evidence(kernel):
    log_z_exact, mean_exact, var_exact = normal_exact(Y_NORMAL)
    result = _runs(normal_mean_model, Y_NORMAL, kernel=kernel)
    assert bool(np.all(result.converged))
    log_z = np.asarray(result.log_evidence)
    _check(log_z + log_z.var(ddof=1) / 2, log_z_exact)
    mean, var = _weighted_moments(result, "mu")
    _check(mean, mean_exact)
    _check(var, var_exact)


def test_constrained_precision_posterior_and_evidence():
    """Gamma prior on a positive parameter: exercises the log-Jacobian of the transform."""
    log_z_exact, mean_exact, var_exact = gamma_exact(Y_GAMMA)
    result = _runs(precision_model, Y_GAMMA, kernel="mala")
    log_z = np.asarray(result.log_evidence)
    _check(log_z + log_z.var(ddof=1) / 2, log_z_exact)
    mean, var = _weighted_moments(result, "tau")
    _check(mean, mean_exact)
    _check(var, var_exact)
    assert np.all(result.samples["sigma"] > 0)


def test_split_model_matches_potential_and_arviz_output():
    logprior, loglik, unravel, post = split_model(
        jax.random.key(0), precision_model, (jnp.asarray(Y_GAMMA),)
    )
    z = jnp.array([0.3])
    tau = np.exp(0.3)
    expected_prior = dist.Gamma(A, B).log_prob(tau) + 0.3  # log-Jacobian of exp
    np.testing.assert_allclose(logprior(z), expected_prior, rtol=1e-10)
    np.testing.assert_allclose(
        loglik(z), dist.Normal(0.0, 1 / np.sqrt(tau)).log_prob(Y_GAMMA).sum(), rtol=1e-10
    )
    np.testing.assert_allclose(post(z)["tau"], tau, rtol=1e-12)
    np.testing.assert_allclose(unravel(z)["tau"], 0.3)
    result = tempered_smc(
        jax.random.key(3), normal_mean_model, jnp.asarray(Y_NORMAL), num_particles=200
    )
    tree = tempered_smc_to_arviz(result)
    assert "posterior" in tree.children and "smc" in tree.children
    assert tree["posterior"]["mu"].shape == (1, 200)
    summary = az.summary(tree)
    assert "mu" in summary.index
    np.testing.assert_allclose(float(tree["smc"]["log_evidence"]), result.log_evidence)
    assert tree["smc"]["tempering_schedule"].values[-1] == 1.0
    with pytest.raises(ValueError, match="kernel"):
        build_tempered_smc(normal_mean_model, (jnp.asarray(Y_NORMAL),), kernel="nuts")


# ---- AR(5) with a strongly correlated design: the defaults must reproduce the closed form.
AR_ORDER, AR_LENGTH, AR_NOISE_SD, AR_PRIOR_SD = 5, 200, 1.0, 1.0
# (1 - 0.8 L)^5: a smooth, persistent series, so the lagged regressors are nearly collinear
# and the posterior correlations of the coefficients reach 0.99.
AR_COEFFS = -np.poly(np.full(AR_ORDER, 0.8))[1:]


def _ar_series(seed=0, burn_in=500):
    rng = np.random.default_rng(seed)
    x = np.zeros(AR_LENGTH + burn_in)
    for t in range(AR_ORDER, x.shape[0]):
        x[t] = AR_COEFFS @ x[t - AR_ORDER : t][::-1] + AR_NOISE_SD * rng.normal()
    return x[-AR_LENGTH:]


def _lags(series):
    n = series.shape[0]
    return jnp.stack([series[AR_ORDER - k : n - k] for k in range(1, AR_ORDER + 1)], axis=1)


def ar_model(series):
    """AR(5) likelihood conditional on the first 5 values; Gaussian prior, known noise sd."""
    phi = numpyro.sample("phi", dist.Normal(0.0, AR_PRIOR_SD).expand([AR_ORDER]).to_event(1))
    numpyro.sample("y", dist.Normal(_lags(series) @ phi, AR_NOISE_SD), obs=series[AR_ORDER:])


def ar_exact(series):
    """Conjugate posterior mean/cov and log evidence of `ar_model`."""
    design, y = np.asarray(_lags(jnp.asarray(series))), series[AR_ORDER:]
    precision = np.eye(AR_ORDER) / AR_PRIOR_SD**2 + design.T @ design / AR_NOISE_SD**2
    cov = np.linalg.inv(precision)
    mean = cov @ design.T @ y / AR_NOISE_SD**2
    marginal = AR_NOISE_SD**2 * np.eye(y.shape[0]) + AR_PRIOR_SD**2 * design @ design.T
    _, logdet = np.linalg.slogdet(2 * np.pi * marginal)
    return mean, cov, -0.5 * (logdet + y @ np.linalg.solve(marginal, y))


@pytest.mark.slow
def test_defaults_reproduce_correlated_ar5_posterior_and_evidence():
    """Finding 6: with the defaults (HMC, 10 sweeps, target ESS 0.5) no collapse, no silent bias.

    Tolerances, with N = 1000 particles and R = 4 independent runs pooled:
    - means and sds: the particles count as N / 4 independent draws (resample-move particles
      are duplicated by resampling and only partly decorrelated by the moves), so the standard
      error of a pooled mean is 2 sd / sqrt(N R) and of a pooled sd sd / sqrt(2 (N / 4) R);
      we allow 5 standard errors (0.16 sd and 11 %; the pre-fix defaults were off by 5-20 sd
      with sds 0.03-0.6 of the truth).
    - log evidence: each stage multiplies the evidence by a mean of weights whose relative
      variance is N / ESS - 1 = 1 / target_ess - 1 over N particles, so one run's log evidence
      has sd about sqrt(S (1 / target_ess - 1) / N) over S stages; doubled for imperfect
      mixing, and 5 such standard errors of the pooled mean (about 0.8 nats at S = 27; the
      pre-fix error was 15-650 nats).
    """
    series = _ar_series()
    mean, cov, log_z_exact = ar_exact(series)
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    assert np.min(corr) < -0.98  # the posterior really is strongly correlated
    num_particles, num_runs = 1000, 4
    run = build_tempered_smc(ar_model, (jnp.asarray(series),), num_particles=num_particles)
    result = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(1), num_runs))
    assert bool(np.all(result.converged))
    assert not np.any(result.collapsed) and not np.any(result.poor_mixing)
    stages = np.asarray(result.num_stages)
    for r in range(num_runs):  # per-stage diagnostics are reported
        assert np.all(np.asarray(result.acceptance_rate[r, : stages[r]]) > 0.3)
        assert np.all(np.asarray(result.num_unique[r, : stages[r]]) > num_particles // 2)
    draws = np.asarray(result.samples["phi"])  # (R, N, 5), equally weighted
    pooled_mean = draws.mean(axis=(0, 1))
    pooled_sd = draws.std(axis=1).mean(axis=0)
    ess = num_particles / 4
    se_mean = sd / np.sqrt(ess * num_runs)
    np.testing.assert_array_less(np.abs(pooled_mean - mean), 5 * se_mean)
    np.testing.assert_array_less(np.abs(pooled_sd / sd - 1), 5 / np.sqrt(2 * ess * num_runs))
    log_z = np.asarray(result.log_evidence)
    sd_log_z = 2 * np.sqrt(stages.max() * (1 / 0.5 - 1) / num_particles)
    assert abs(log_z.mean() - log_z_exact) < 5 * sd_log_z / np.sqrt(num_runs), (
        log_z - log_z_exact,
        sd_log_z,
    )
    assert log_z.std(ddof=1) < 3 * sd_log_z


def test_diagonal_preconditioning_on_correlated_posterior_is_flagged():
    """Finding 6: a mutation that barely moves the particles must not report convergence."""
    series = _ar_series()
    with pytest.warns(RuntimeWarning, match="barely moved"):
        result = tempered_smc(
            jax.random.key(2), ar_model, jnp.asarray(series), num_particles=200, dense_mass=False
        )
    assert bool(result.poor_mixing) and not bool(result.converged)


def test_progress_bar_reports_stages_and_is_off_in_ci(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    result = tempered_smc(jax.random.key(2), normal_mean_model, Y_NORMAL, num_particles=100)
    shown = capsys.readouterr().err
    assert "tempered SMC" in shown and f"stage {int(result.num_stages)}" in shown
    assert "100%" in shown  # the tempering exponent reached 1
    monkeypatch.setenv("CI", "true")
    tempered_smc(jax.random.key(2), normal_mean_model, Y_NORMAL, num_particles=100)
    tempered_smc(jax.random.key(2), normal_mean_model, Y_NORMAL, num_particles=100,
                 progress_bar=False)  # fmt: skip
    assert capsys.readouterr().err == ""


def test_to_arviz_warns_for_a_run_that_did_not_converge():
    # A failed run (here: zero evidence, the particles are the prior's) converted silently.
    def impossible(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Uniform(mu - 1.0, mu + 1.0), obs=y)

    run = build_tempered_smc(impossible, (jnp.array(100.0),), num_particles=50, num_mcmc_steps=2)
    result = jax.jit(run)(jax.random.key(0))  # the jitted runner itself cannot warn
    with pytest.warns(RuntimeWarning, match=r"did not converge.*'zero_evidence'"):
        tree = tempered_smc_to_arviz(result)
    assert tree["posterior"]["mu"].shape == (1, 50)
    assert not bool(tree["smc"]["converged"])
