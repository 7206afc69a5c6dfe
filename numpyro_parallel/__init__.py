"""numpyro_parallel: parallel-in-time inference for NumPyro and BlackJAX.

Kalman filters, hidden Markov models, MCMC chains and particle filters look sequential in time;
this package computes them in O(log T) parallel depth with associative scans and fixed-point
iterations, behind NumPyro distributions, NumPyro MCMC kernels and BlackJAX-style samplers.
"""

from numpyro_parallel import linalg, scan

__version__ = "0.1.0"

__all__ = ["__version__", "linalg", "scan"]
