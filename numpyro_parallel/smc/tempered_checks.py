"""Argument checks of the tempered SMC runner: each error names the offending argument."""

from __future__ import annotations

from typing import Any

from numpyro_parallel._checks import check_positive_int, check_real
from numpyro_parallel.smc.tempered_mutation import DEFAULT_STEP

__all__ = ["check_options"]


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
    target = check_real("target_ess", target_ess, low=0.0, high=1.0)
    if step_size is not None:
        check_real("step_size", step_size, low=0.0)
    if dense_mass is not None and not isinstance(dense_mass, bool):
        raise TypeError(f"`dense_mass` must be True, False or None; got {dense_mass!r}.")
    return {
        "num_particles": check_positive_int("num_particles", num_particles, minimum=2),
        "num_integration_steps": check_positive_int("num_integration_steps", num_integration_steps),
        "num_mcmc_steps": check_positive_int("num_mcmc_steps", num_mcmc_steps),
        "max_stages": check_positive_int("max_stages", max_stages),
        "target_ess": target,
    }
