"""Argument checks of `numpyro_parallel.smc.dsmc.dsmc` (concrete input only).

Every failure raises `ValueError` / `TypeError` naming the argument; values only known under
tracing are not checked here (a bad proposal factor then gives NaN leaf weights, reported by
the ``invalid`` status of the output).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import check_finite, check_positive_int, concrete
from numpyro_parallel.smc.particle_filter_checks import check_collapse_ess

__all__ = ["check_dsmc_inputs"]


def _check_callable(name: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"`{name}` must be callable; got {type(fn).__name__}.")


def _check_chol(proposal_chol: jax.Array) -> None:
    check_finite("proposal_chol", proposal_chol)
    values = concrete(proposal_chol)
    if values is None:
        return
    scale = np.max(np.abs(values)) if values.size else 0.0
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
    tolerance = 100 * np.finfo(dtype).eps * scale
    if np.any(np.abs(np.triu(values, k=1)) > tolerance):
        raise ValueError(
            "`proposal_chol` must be lower triangular (Cholesky factors; the upper triangle "
            "would be used to sample but ignored by the density)."
        )
    if np.any(np.diagonal(values, axis1=-2, axis2=-1) == 0):
        raise ValueError(
            "`proposal_chol` has a zero on the diagonal: the proposal covariance is singular."
        )


def check_dsmc_inputs(
    observations: Any,
    num_particles: Any,
    proposal_mean: Any,
    proposal_chol: Any,
    *,
    functions: dict[str, Callable],
    row_chunk_size: Any,
    reference: Any,
    max_trials: Any,
    collapse_ess: Any,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]:
    """Check the arguments of `dsmc`; return ``(observations, mean, chol, reference)`` arrays.

    Raises:
        TypeError, ValueError: the message names the bad argument.
    """
    observations = jnp.asarray(observations)
    if observations.ndim != 2:
        raise ValueError(f"`observations` must have shape (T, p); got {observations.shape}.")
    num_steps = observations.shape[0]
    if num_steps < 1:
        raise ValueError("`observations` has T = 0 time steps; dSMC needs T >= 1.")
    check_positive_int("num_particles", num_particles)
    for name, fn in functions.items():
        _check_callable(name, fn)
    proposal_mean = jnp.asarray(proposal_mean)
    proposal_chol = jnp.asarray(proposal_chol)
    if proposal_mean.ndim != 2 or proposal_mean.shape[0] != num_steps:
        raise ValueError(
            f"`proposal_mean` must have shape (T, d) with T={num_steps}; got {proposal_mean.shape}."
        )
    check_finite("proposal_mean", proposal_mean)
    d = proposal_mean.shape[1]
    if proposal_chol.shape != (num_steps, d, d):
        raise ValueError(
            f"`proposal_chol` must have shape {(num_steps, d, d)}; got {proposal_chol.shape}."
        )
    _check_chol(proposal_chol)
    if row_chunk_size is not None:
        check_positive_int("row_chunk_size", row_chunk_size)
        if num_particles % row_chunk_size:
            raise ValueError(
                f"`row_chunk_size` must divide `num_particles`={num_particles}; "
                f"got {row_chunk_size}."
            )
    if reference is not None:
        reference = jnp.asarray(reference)
        if reference.shape != (num_steps, d):
            raise ValueError(
                f"`reference` must have shape {(num_steps, d)}; got {reference.shape}."
            )
        check_finite("reference", reference)
    check_positive_int("max_trials", max_trials)
    check_collapse_ess(collapse_ess)
    return observations, proposal_mean, proposal_chol, reference
