"""Parallel-in-time MCMC: chains of any BlackJAX-style step solved by fixed-point iteration."""

from numpyro_parallel.mcmc.chain import run_chain
from numpyro_parallel.mcmc.kernels import parallel_hmc, parallel_mala, parallel_rwm

__all__ = ["parallel_hmc", "parallel_mala", "parallel_rwm", "run_chain"]
