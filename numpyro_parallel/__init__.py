"""numpyro_parallel: parallel-in-time inference for NumPyro and BlackJAX.

Kalman filters, hidden Markov models, MCMC chains and particle filters look sequential in time;
this package computes them in O(log T) parallel depth with associative scans and fixed-point
iterations, behind NumPyro distributions, NumPyro MCMC kernels and BlackJAX-style samplers.
"""

import importlib
from typing import Any

from numpyro_parallel import fixed_point, infer, linalg, mcmc, scan, smc, ssm, strategy, sts
from numpyro_parallel.strategy import Associative, Blocked, Sequential, Sharded

__version__ = "0.1.0"

__all__ = [
    "Associative",
    "Blocked",
    "Sequential",
    "Sharded",
    "__version__",
    "diagnostics",
    "fixed_point",
    "infer",
    "linalg",
    "mcmc",
    "scan",
    "smc",
    "ssm",
    "strategy",
    "sts",
]


def __getattr__(name: str) -> Any:
    # `diagnostics` imports ArviZ/xarray: load it on first use only.
    if name == "diagnostics":
        return importlib.import_module("numpyro_parallel.diagnostics")
    raise AttributeError(f"module 'numpyro_parallel' has no attribute {name!r}")
