"""Argument checks of the particle filter (concrete input; messages name the argument)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_real
from numpyro_parallel.smc.feynman_kac import check_model
from numpyro_parallel.smc.resampling import ess_adaptive, get_resampler

__all__ = ["check_collapse_ess", "check_kernel_args", "num_steps_of"]


def check_collapse_ess(collapse_ess: Any) -> float:
    """``collapse_ess`` as a finite float >= 0 (0 disables the check), or `TypeError` /
    `ValueError` (NumPy and 0-d array numbers accepted)."""
    return check_real("collapse_ess", collapse_ess, low=0.0, low_closed=True)


def check_kernel_args(model, resampling_fn, ess_threshold, gradient_estimator) -> Callable:
    """Check the kernel arguments; return the ESS-adaptive resampler."""
    check_model(model)
    if gradient_estimator not in ("score", "none"):
        raise ValueError(
            f"`gradient_estimator` must be 'score' or 'none'; got {gradient_estimator!r}."
        )
    resampler = get_resampler(resampling_fn, argument="resampling_fn")
    ess_threshold = check_real(
        "ess_threshold", ess_threshold, low=0.0, high=1.0, low_closed=True, high_closed=True
    )
    return ess_adaptive(resampler, ess_threshold)


def num_steps_of(observations: Any) -> int:
    """T from the observation pytree, or `ValueError` naming ``observations``."""
    leaves = jax.tree_util.tree_leaves(observations)
    if not leaves or any(jnp.ndim(leaf) < 1 for leaf in leaves):
        raise ValueError("`observations` must be arrays with a leading time axis of length T.")
    lengths = {jnp.shape(leaf)[0] for leaf in leaves}
    if len(lengths) > 1:
        raise ValueError(
            "`observations` leaves must share the leading time axis; "
            f"got lengths {sorted(lengths)}."
        )
    num_steps = lengths.pop()
    if num_steps < 1:
        raise ValueError("`observations` has T = 0 time steps; the filter needs T >= 1.")
    return num_steps
