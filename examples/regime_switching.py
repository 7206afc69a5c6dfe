"""Markov-switching (regime) model fitted with NUTS, hidden regimes marginalised in parallel.

A 2-state Gaussian Markov-switching model ("calm" / "turbulent" regimes with different means
and volatilities) is simulated, then fitted with NumPyro's NUTS. The likelihood is
`numpyro_parallel.ssm.hmm.distribution.DiscreteHMM`, whose log_prob sums over all 2^T regime
paths with a parallel-in-time forward filter (Hassan, Särkkä & García-Fernández 2021). Label
switching is removed by an ordering constraint on the regime means. Afterwards, for every
posterior draw we compute smoothed regime probabilities and the Viterbi path, store them in
an ArviZ DataTree with dims (chain, draw, time, state) and plot them.

Run:  python examples/regime_switching.py [--fast] [--output-dir outputs]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from numpyro_parallel import diagnostics
from numpyro_parallel.ssm.hmm.datatree import hmm_to_datatree
from numpyro_parallel.ssm.hmm.distribution import DiscreteHMM
from numpyro_parallel.ssm.hmm.inference import hmm_sample_prior_states

TRUE_MEANS = np.array([-1.0, 1.5])
TRUE_SCALES = np.array([0.5, 1.0])
TRUE_TRANSITION = np.array([[0.95, 0.05], [0.10, 0.90]])


def simulate(rng_key, num_steps):
    """Simulate (regimes, observations) from the true model."""
    state_key, obs_key = jax.random.split(rng_key)
    log_transition = jnp.log(jnp.asarray(TRUE_TRANSITION))
    regimes = np.asarray(
        hmm_sample_prior_states(state_key, jnp.zeros(2), log_transition, num_steps)
    )
    noise = np.asarray(jax.random.normal(obs_key, (num_steps,)))
    return regimes, TRUE_MEANS[regimes] + TRUE_SCALES[regimes] * noise


def hmm_parts(means, scales, transition):
    """The DiscreteHMM of one parameter draw."""
    return DiscreteHMM(jnp.zeros(2), jnp.log(transition), dist.Normal(means, scales))


def model(y):
    """Markov-switching model: ordered regime means, regime scales, transition rows."""
    means = numpyro.sample(
        "means",
        dist.TransformedDistribution(
            dist.Normal(0.0, 2.0).expand([2]).to_event(1), dist.transforms.OrderedTransform()
        ),
    )
    scales = numpyro.sample("scales", dist.HalfNormal(2.0).expand([2]).to_event(1))
    transition = numpyro.sample(
        "transition", dist.Dirichlet(jnp.array([[4.0, 1.0], [1.0, 4.0]])).to_event(1)
    )
    numpyro.sample("y", hmm_parts(means, scales, transition), obs=y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--output-dir", default="outputs")
    args = parser.parse_args()
    output_dir = pathlib.Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    num_steps = 100 if args.fast else 500
    num_warmup, num_samples = (100, 100) if args.fast else (500, 500)

    regimes, y = simulate(jax.random.key(0), num_steps)
    print(f"simulated T={num_steps} observations, {np.mean(regimes):.0%} in the turbulent regime")

    mcmc = MCMC(
        NUTS(model),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.key(1), jnp.asarray(y))
    print(f"NUTS: {time.perf_counter() - start:.1f} s (2 chains, {num_samples} draws each)")

    samples = mcmc.get_samples(group_by_chain=True)
    # log_likelihood group with one term log p(y_t | y_{<t}) per time step (dims chain, draw,
    # time), so that LOO sees T observations rather than one sequence.
    idata = diagnostics.from_numpyro(mcmc)
    print(az.loo(idata, var_name="y"))
    summary = az.summary(idata, var_names=["means", "scales", "transition"])
    print(summary)
    print("true means", TRUE_MEANS, "scales", TRUE_SCALES, "transition", TRUE_TRANSITION.ravel())

    # Hidden regimes for every posterior draw (vmapped over chains and draws).
    def per_draw(means, scales, transition):
        hmm = hmm_parts(means, scales, transition)
        return hmm.smooth(jnp.asarray(y)).smoothed_probs, hmm.viterbi(jnp.asarray(y)).path

    per_chain = jax.vmap(per_draw)
    probs, paths = jax.jit(jax.vmap(per_chain))(
        samples["means"], samples["scales"], samples["transition"]
    )
    tree = hmm_to_datatree(probs, paths, state_names=["calm", "turbulent"], datatree=idata)
    hidden = tree["hidden_states"]
    turbulent = hidden["state_probs"].sel(state="turbulent").mean(("chain", "draw")).values
    posterior_mean = {k: jnp.mean(v, axis=(0, 1)) for k, v in samples.items()}
    path = np.asarray(hmm_parts(**posterior_mean).viterbi(jnp.asarray(y)).path)
    print(f"Viterbi path at the posterior mean: {np.mean(path == regimes):.1%} of regimes correct")
    print(
        "posterior regime probability > 0.5: "
        f"{np.mean((turbulent > 0.5) == (regimes == 1)):.1%} of regimes correct"
    )

    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t = np.arange(num_steps)
    axes[0].plot(t, y, lw=0.8, color="k")
    axes[0].fill_between(
        t,
        y.min(),
        y.max(),
        where=regimes == 1,
        color="tab:red",
        alpha=0.15,
        label="true turbulent regime",
    )
    axes[0].set_ylabel("y (simulated return, %)")
    axes[0].set_title("Simulated Markov-switching series: hidden regimes recovered by the HMM")
    axes[1].plot(t, turbulent, label="P(turbulent | y), posterior mean")
    axes[1].step(t, path, where="mid", lw=0.8, color="tab:orange", label="Viterbi path")
    axes[1].set_ylabel("regime (0 calm, 1 turbulent)")
    axes[1].set_xlabel("time step (simulated series, no calendar)")
    for ax in axes:  # legends right of the panels, clear of the data
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    figure = output_dir / "regime_switching.png"
    fig.savefig(figure, dpi=120)
    print(f"saved {figure}")


if __name__ == "__main__":
    main()
