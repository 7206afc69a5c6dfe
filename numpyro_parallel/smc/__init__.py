"""Sequential Monte Carlo: resampling, particle filters, the dSMC smoother, FFBS, tempered SMC.

`build_adaptive_tempering` is adaptive tempered SMC on flat particles; its NumPyro front end
is `numpyro_parallel.infer.tempered_smc`. Failure
modes (invalid weights, impossible observations, collapse): see the "Failure modes" docs page and
`numpyro_parallel.smc.status`.
"""

from numpyro_parallel.smc.conditional_resampling import (
    conditional_multinomial,
    conditional_rejection,
    conditional_stratified,
    conditional_systematic,
    get_conditional_resampler,
)
from numpyro_parallel.smc.dsmc import DSMCOutput, dsmc
from numpyro_parallel.smc.ffbs import backward_sampling
from numpyro_parallel.smc.particle_filter import (
    FeynmanKac,
    ParticleFilterInfo,
    ParticleFilterOutput,
    ParticleFilterState,
    bootstrap,
    guided,
)
from numpyro_parallel.smc.particle_filter import build_kernel as build_particle_filter_kernel
from numpyro_parallel.smc.particle_filter import init as init_particle_filter
from numpyro_parallel.smc.particle_filter import run as run_particle_filter
from numpyro_parallel.smc.proposals import gaussian_proposals_from_kalman
from numpyro_parallel.smc.resampling import (
    RESAMPLERS,
    RejectionResult,
    ess,
    ess_adaptive,
    get_resampler,
    log_weights_valid,
    metropolis,
    multinomial,
    rejection,
    rejection_info,
    residual,
    stratified,
    systematic,
)
from numpyro_parallel.smc.status import STATUS_NAMES
from numpyro_parallel.smc.tempered import TemperedSMCResult, build_adaptive_tempering

__all__ = [
    "RESAMPLERS",
    "STATUS_NAMES",
    "DSMCOutput",
    "FeynmanKac",
    "ParticleFilterInfo",
    "ParticleFilterOutput",
    "ParticleFilterState",
    "RejectionResult",
    "TemperedSMCResult",
    "backward_sampling",
    "bootstrap",
    "build_adaptive_tempering",
    "build_particle_filter_kernel",
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
    "init_particle_filter",
    "log_weights_valid",
    "metropolis",
    "multinomial",
    "rejection",
    "rejection_info",
    "residual",
    "run_particle_filter",
    "stratified",
    "systematic",
]
