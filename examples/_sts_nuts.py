"""NUTS for the structural time-series examples: one run, its diagnostics printed.

Not an example itself (the leading underscore keeps it out of the example tests).
"""

from __future__ import annotations

import time

import jax
import numpy as np
from numpyro.diagnostics import summary
from numpyro.infer import MCMC, NUTS

from numpyro_parallel import sts


def run_nuts(model: sts.Sum, y, fast: bool) -> MCMC:
    """Sample ``model.numpyro_model`` given ``y``; print time, divergences, R-hat, summary."""
    num_warmup, num_samples, num_chains = (60, 60, 1) if fast else (400, 400, 2)
    # A dense mass matrix: the noise scales are strongly correlated a posteriori (a level
    # scale trades off against the observation scale), which a diagonal one leaves to
    # longer trajectories.
    mcmc = MCMC(NUTS(model.numpyro_model, dense_mass=True), num_warmup=num_warmup,
                num_samples=num_samples, num_chains=num_chains, chain_method="sequential",
                progress_bar=not fast)  # fmt: skip
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(0), y, extra_fields=("diverging",))
    seconds = time.perf_counter() - start
    divergences = int(np.sum(mcmc.get_extra_fields()["diverging"]))
    max_r_hat = max(float(np.max(s["r_hat"])) for s in summary(mcmc.get_samples(True)).values())
    print(f"NUTS: {num_chains} x ({num_warmup} + {num_samples}) in {seconds:.0f} s, "
          f"{divergences} divergences, largest R-hat {max_r_hat:.3f}")  # fmt: skip
    mcmc.print_summary(prob=0.9, exclude_deterministic=True)
    return mcmc
