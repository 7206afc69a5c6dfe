"""NumPyro front ends: MCMC kernels and the tempered SMC runner."""

from numpyro_parallel.infer.parallel_hmc import ParallelHMC
from numpyro_parallel.infer.parallel_mcmc import ParallelMALA
from numpyro_parallel.infer.tempered import (
    TemperedSMCResult,
    build_tempered_smc,
    split_model,
    tempered_smc,
    tempered_smc_to_arviz,
)

__all__ = [
    "ParallelHMC",
    "ParallelMALA",
    "TemperedSMCResult",
    "build_tempered_smc",
    "split_model",
    "tempered_smc",
    "tempered_smc_to_arviz",
]
