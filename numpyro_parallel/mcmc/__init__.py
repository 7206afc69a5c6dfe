"""Parallel-in-time MCMC: chains of any BlackJAX-style step solved by fixed-point iteration."""

from numpyro_parallel.mcmc.kernels import BlockInfo, parallel_hmc, parallel_mala, parallel_rwm
from numpyro_parallel.mcmc.parallel_chain import ChainInfo, parallel_chain, sequential_chain

__all__ = [
    "BlockInfo",
    "ChainInfo",
    "parallel_chain",
    "parallel_hmc",
    "parallel_mala",
    "parallel_rwm",
    "sequential_chain",
]
