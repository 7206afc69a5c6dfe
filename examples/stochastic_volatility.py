"""Stochastic volatility of the DAX: particle-filter likelihood, PMMH posterior, dSMC smoothing.

Model (Kim, Shephard & Chib 1998): log-variance x_t = mu + phi (x_{t-1} - mu) + sigma eta_t,
x_0 ~ N(mu, sigma^2 / (1 - phi^2)), daily return y_t ~ N(0, exp(x_t)).

DATA: daily log-returns (in percent, demeaned) of the German DAX index, 1991-1998 (T = 1859
business days), from R's datasets::EuStockMarkets, shipped as examples/data/dax.csv.
``--fast`` uses the first 128 days only.

1. Particle marginal Metropolis-Hastings (Andrieu, Doucet & Holenstein 2010) on (mu, phi, sigma)
   with the bootstrap particle-filter likelihood.
2. At the posterior mean: the particle-filter log-likelihood (mean and spread over seeds).
3. dSMC (parallel-in-time particle smoother) with Gaussian proposals from the Kalman smoother of
   the linearised model log(y_t^2) = x_t + log(eps_t^2) (Harvey, Ruiz & Shephard 1994, mean
   -1.27 and variance pi^2 / 2 for log chi^2_1), non-lazy and lazy (rejection) stitching:
   smoothed volatility with a 90% band, compared with the sequential PF + FFBS smoother.

Run: python examples/stochastic_volatility.py [--fast] [--output-dir outputs]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from numpyro_parallel.smc.dsmc import dsmc
from numpyro_parallel.smc.ffbs import backward_sampling
from numpyro_parallel.smc.particle_filter import bootstrap, run
from numpyro_parallel.smc.proposals import gaussian_proposals_from_kalman
from numpyro_parallel.ssm.kalman.inference import GaussianSSMParams

jax.config.update("jax_enable_x64", True)

DATA = pathlib.Path(__file__).parent / "data" / "dax.csv"
LOG_CHI2_MEAN, LOG_CHI2_VAR = -1.2704, np.pi**2 / 2


def load_returns() -> np.ndarray:
    """Demeaned daily log-returns of the DAX, in percent."""
    prices = np.loadtxt(DATA, delimiter=",", comments="#", skiprows=3)[:, 1]
    returns = 100 * np.diff(np.log(prices))
    return returns - returns.mean()


def normal_logpdf(x, mean, var):
    return -0.5 * (jnp.log(2 * jnp.pi * var) + (x - mean) ** 2 / var)


def sv_functions(mu, phi, sigma):
    stationary_var = sigma**2 / (1 - phi**2)

    def initial_sample(key):
        return mu + jnp.sqrt(stationary_var) * jax.random.normal(key, (1,))

    def transition_sample(key, x, t):
        return mu + phi * (x - mu) + sigma * jax.random.normal(key, (1,))

    def initial_log_prob(x):
        return normal_logpdf(x[0], mu, stationary_var)

    def transition_log_prob(x_prev, x, t):
        return normal_logpdf(x[0], mu + phi * (x_prev[0] - mu), sigma**2)

    def observation_log_prob(x, y, t):
        return normal_logpdf(y[0], 0.0, jnp.exp(x[0]))

    model = bootstrap(initial_sample, transition_sample, observation_log_prob)
    return model, initial_log_prob, transition_log_prob, observation_log_prob


def linearised_params(num_steps, mu, phi, sigma):
    """Linear-Gaussian approximation of the SV model for log(y^2)."""

    def full(a, shape):
        return jnp.broadcast_to(jnp.asarray(a, dtype=jnp.float64), shape)

    return GaussianSSMParams(
        initial_mean=full(mu, (1,)),
        initial_chol=full(sigma / np.sqrt(1 - phi**2), (1, 1)),
        transition_matrix=full(phi, (num_steps, 1, 1)),
        transition_offset=full(mu * (1 - phi), (num_steps, 1)),
        transition_chol=full(sigma, (num_steps, 1, 1)),
        observation_matrix=full(1.0, (num_steps, 1, 1)),
        observation_offset=full(LOG_CHI2_MEAN, (num_steps, 1)),
        observation_chol=full(np.sqrt(LOG_CHI2_VAR), (num_steps, 1, 1)),
    )


def pmmh(rng_key, ys, num_iterations, num_particles, init, proposal_scale):
    """Random-walk PMMH on theta = (mu, atanh(phi), log sigma) with weak priors."""

    def log_prior(theta):
        mu, a, log_s = theta
        phi = jnp.tanh(a)
        # mu ~ N(0, 10^2); (phi + 1) / 2 ~ Beta(20, 1.5); sigma^2 ~ InvGamma(2.5, 0.025).
        lp = normal_logpdf(mu, 0.0, 100.0)
        lp += 19.0 * jnp.log((phi + 1) / 2) + 0.5 * jnp.log((1 - phi) / 2) + jnp.log1p(-(phi**2))
        s2 = jnp.exp(2 * log_s)
        lp += -3.5 * jnp.log(s2) - 0.025 / s2 + jnp.log(2 * s2)
        return lp

    def log_lik(key, theta):
        model = sv_functions(theta[0], jnp.tanh(theta[1]), jnp.exp(theta[2]))[0]
        return run(key, model, ys, num_particles).log_likelihood

    def step(carry, key):
        theta, lp, ll, accepted = carry
        key_prop, key_pf, key_acc = jax.random.split(key, 3)
        proposal = theta + proposal_scale * jax.random.normal(key_prop, (3,))
        lp_new, ll_new = log_prior(proposal), log_lik(key_pf, proposal)
        accept = jnp.log(jax.random.uniform(key_acc)) < lp_new + ll_new - lp - ll
        theta = jnp.where(accept, proposal, theta)
        lp, ll = jnp.where(accept, lp_new, lp), jnp.where(accept, ll_new, ll)
        return (theta, lp, ll, accepted + accept), theta

    key0, key_chain = jax.random.split(rng_key)
    carry = (init, log_prior(init), log_lik(key0, init), 0)
    (_, _, _, accepted), chain = jax.lax.scan(
        step, carry, jax.random.split(key_chain, num_iterations)
    )
    return chain, accepted / num_iterations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="first 128 days, tiny sizes (< 60 s)")
    parser.add_argument("--output-dir", default="outputs")
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    returns = load_returns()
    if args.fast:
        returns = returns[:128]
        n_pf, n_dsmc, block, n_iter, n_pm = 1024, 128, 64, 150, 100
    else:
        # PMMH mixes only when the log-likelihood estimate's sd is ~1-2: N = 2000 at T = 1859.
        n_pf, n_dsmc, block, n_iter, n_pm = 1000, 500, 50, 1500, 2000
    num_steps = returns.shape[0]
    ys = jnp.asarray(returns)[:, None]
    print(f"DAX daily log-returns (%), T = {num_steps}, sd {returns.std():.2f}")

    # 1. PMMH for (mu, phi, sigma).
    init = jnp.array([0.0, np.arctanh(0.9), np.log(0.3)])
    t0 = time.perf_counter()
    scales = jnp.array([0.05, 0.05, 0.05])  # random-walk steps in (mu, atanh phi, log sigma)
    chain, acc = jax.jit(lambda k: pmmh(k, ys, n_iter, n_pm, init, scales))(jax.random.key(3))
    if args.fast:
        print("(--fast: the PMMH chain below is far too short to be a converged posterior)")
    burn = n_iter // 4
    draws = {
        "mu": np.asarray(chain[burn:, 0]),
        "phi": np.tanh(np.asarray(chain[burn:, 1])),
        "sigma": np.exp(np.asarray(chain[burn:, 2])),
    }
    print(
        f"PMMH ({n_iter} iterations, N={n_pm}): acceptance {float(acc):.2f} "
        f"[{time.perf_counter() - t0:.1f} s]"
    )
    for name, d in draws.items():
        print(
            f"  {name}: posterior mean {d.mean():.3f}, 90% interval "
            f"[{np.percentile(d, 5):.3f}, {np.percentile(d, 95):.3f}]"
        )
    theta = {name: float(d.mean()) for name, d in draws.items()}
    model, init_lp, trans_lp, obs_lp = sv_functions(**theta)

    # 2. Particle-filter log-likelihood at the posterior mean, over 20 seeds.
    keys = jax.random.split(jax.random.key(0), 20)
    t0 = time.perf_counter()
    log_z = jax.jit(jax.vmap(lambda k: run(k, model, ys, n_pf).log_likelihood))(keys)
    log_z.block_until_ready()
    print(
        f"PF log-likelihood at the posterior mean (N={n_pf}, 20 seeds): mean "
        f"{float(log_z.mean()):.2f}, sd {float(log_z.std()):.2f} "
        f"[{time.perf_counter() - t0:.1f} s incl. compile]"
    )

    # 3. dSMC smoother with Kalman-smoother proposals from the linearised model.
    z = jnp.log(ys**2 + 1e-8)
    mean, chol = gaussian_proposals_from_kalman(
        linearised_params(num_steps, **theta), z, inflation=1.2
    )
    # Lazy stitching needs a bound on the transition density: N(.; m, sigma^2) <= its mode.
    log_bound = -0.5 * np.log(2 * np.pi * theta["sigma"] ** 2)
    results = {}
    for name, bound in (("exact", None), ("lazy", log_bound)):
        t0 = time.perf_counter()
        out = jax.jit(
            lambda k, bound=bound: dsmc(
                k,
                ys,
                n_dsmc,
                initial_log_prob=init_lp,
                transition_log_prob=trans_lp,
                observation_log_prob=obs_lp,
                proposal_mean=mean,
                proposal_chol=chol,
                row_chunk_size=block,
                transition_log_bound=bound,
            )
        )(jax.random.key(1))
        out.trajectories.block_until_ready()
        extra = ""
        if bound is not None:
            extra = (
                f", mean trials {float(out.mean_trials):.1f}, pairs from the exact fallback "
                f"{int(out.num_fallback)}, bound violations {int(out.num_bound_violations)}"
            )
        print(
            f"dSMC {name} stitching (N={n_dsmc}): log-likelihood "
            f"{float(out.log_likelihood):.2f}{extra} "
            f"[{time.perf_counter() - t0:.1f} s incl. compile]"
        )
        results[name] = out
    smoothed = results["exact"]
    vol = np.exp(np.asarray(smoothed.trajectories[..., 0]) / 2)
    lo, med, hi = np.percentile(vol, [5, 50, 95], axis=0)
    key_pf, key_bs = jax.random.split(jax.random.key(2))
    filtered = run(key_pf, model, ys, n_pf)
    paths = backward_sampling(key_bs, filtered, trans_lp, 100)
    ffbs_vol = np.exp(np.asarray(paths[..., 0]) / 2)
    ffbs_med = np.median(ffbs_vol, axis=0)
    lazy_vol = np.exp(np.asarray(results["lazy"].trajectories[..., 0]) / 2)
    for name, other in (("PF+FFBS", ffbs_vol), ("lazy dSMC", lazy_vol)):
        gap = np.median(np.abs(other.mean(0) - vol.mean(0)))
        print(f"median over days of |dSMC - {name}| smoothed-mean volatility: {gap:.3f}")

    fig, axes = plt.subplots(3, 1, figsize=(11, 9))
    # EuStockMarkets is a ts starting at 1991.496 with 260 business days a year (R's tsp);
    # the returns start one day later. Its rows carry no calendar dates, so years it is.
    days = 1991.496 + (np.arange(num_steps) + 1) / 260.0
    axes[0].plot(days, returns, lw=0.5, color="k")
    axes[0].set_title("DAX daily log-returns, 1991-1998")
    axes[0].set_ylabel("log-return (%)")
    axes[0].set_xlabel("year")
    axes[1].fill_between(days, lo, hi, alpha=0.3, label="dSMC 90% band")
    axes[1].plot(days, med, label="dSMC median")
    axes[1].plot(days, ffbs_med, ls="--", lw=0.8, label="PF + FFBS median")
    axes[1].plot(days, np.median(lazy_vol, axis=0), ls=":", lw=0.8, label="lazy dSMC median")
    axes[1].plot(days, np.abs(returns), color="k", lw=0.3, alpha=0.5, label="|return|")
    axes[1].set_ylim(0, 1.5 * hi.max())
    axes[1].set_title("Smoothed volatility exp(x_t / 2) at the posterior mean")
    axes[1].set_ylabel("volatility (%)")
    axes[1].set_xlabel("year")
    for name, d in draws.items():
        axes[2].plot(d, lw=0.5, label=name)
    axes[2].set_title("PMMH traces after burn-in")
    axes[2].set_ylabel("parameter value")
    axes[2].set_xlabel("PMMH iteration")
    for ax in axes[1:]:  # legends right of the panels, clear of the data
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    path = os.path.join(args.output_dir, "stochastic_volatility.png")
    fig.savefig(path, dpi=100)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
