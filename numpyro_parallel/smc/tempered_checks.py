"""Argument checks of the tempered SMC runner: each error names the offending argument."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numpyro_parallel._checks import check_positive_int
from numpyro_parallel.smc.tempered_mutation import DEFAULT_STEP

__all__ = ["check_options"]


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a Python float; got {value!r} ({type(value).__name__}).")
    return float(value)


def check_options(
    *,
    num_particles: Any,
    kernel: Any,
    step_size: Any,
    num_integration_steps: Any,
    num_mcmc_steps: Any,
    target_ess: Any,
    max_stages: Any,
    dense_mass: Any,
) -> dict:
    """Validated options of `build_tempered_smc` (ints as int, floats as float).

    Raises:
        TypeError: wrong type (the argument is named).
        ValueError: out of range (the argument is named).
    """
    if not isinstance(kernel, str) or kernel not in DEFAULT_STEP:
        raise ValueError(f"`kernel` must be 'hmc', 'mala' or 'rwm'; got {kernel!r}.")
    target = _check_real("target_ess", target_ess)
    if not 0.0 < target < 1.0:
        raise ValueError(f"`target_ess` must lie in the open interval (0, 1); got {target_ess}.")
    if step_size is not None:
        step = _check_real("step_size", step_size)
        if not (math.isfinite(step) and step > 0.0):
            raise ValueError(f"`step_size` must be a finite positive float; got {step_size}.")
    if dense_mass is not None and not isinstance(dense_mass, bool):
        raise TypeError(f"`dense_mass` must be True, False or None; got {dense_mass!r}.")
    return {
        "num_particles": check_positive_int("num_particles", num_particles, minimum=2),
        "num_integration_steps": check_positive_int("num_integration_steps", num_integration_steps),
        "num_mcmc_steps": check_positive_int("num_mcmc_steps", num_mcmc_steps),
        "max_stages": check_positive_int("max_stages", max_stages),
        "target_ess": target,
    }
