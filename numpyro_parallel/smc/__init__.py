"""Sequential Monte Carlo: resampling, particle filters, the dSMC smoother and FFBS.

Tempered SMC for NumPyro models lives in :mod:`numpyro_parallel.infer.tempered_smc`.
"""

from numpyro_parallel.smc.conditional_resampling import (
    conditional_multinomial,
    conditional_rejection,
    conditional_stratified,
    conditional_systematic,
    get_conditional_resampler,
)
from numpyro_parallel.smc.dsmc import DSMCOutput, dsmc, gaussian_proposals_from_kalman
from numpyro_parallel.smc.ffbs import backward_sampling
from numpyro_parallel.smc.particle_filter import (
    FeynmanKac,
    ParticleFilterInfo,
    ParticleFilterOutput,
    ParticleFilterState,
    bootstrap,
    guided,
)
from numpyro_parallel.smc.particle_filter import run as run_particle_filter
from numpyro_parallel.smc.resampling import (
    RESAMPLERS,
    ess,
    ess_adaptive,
    get_resampler,
    metropolis,
    multinomial,
    rejection,
    residual,
    stratified,
    systematic,
)

__all__ = [
    "RESAMPLERS",
    "DSMCOutput",
    "FeynmanKac",
    "ParticleFilterInfo",
    "ParticleFilterOutput",
    "ParticleFilterState",
    "backward_sampling",
    "bootstrap",
    "conditional_multinomial",
    "conditional_rejection",
    "conditional_stratified",
    "conditional_systematic",
    "dsmc",
    "ess",
    "ess_adaptive",
    "gaussian_proposals_from_kalman",
    "get_conditional_resampler",
    "get_resampler",
    "guided",
    "metropolis",
    "multinomial",
    "rejection",
    "residual",
    "run_particle_filter",
    "stratified",
    "systematic",
]
