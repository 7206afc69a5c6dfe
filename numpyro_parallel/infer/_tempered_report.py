"""Reporting for tempered SMC results: failure warnings and the ArviZ conversion."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import warn_if
from numpyro_parallel.smc.resampling import get_resampler
from numpyro_parallel.smc.tempered_result import (
    MIN_ACCEPTANCE,
    MIN_JUMP,
    MIN_UNIQUE_FRACTION,
    TemperedSMCResult,
)

__all__ = ["tempered_smc_to_arviz", "warn_on_failure"]


def warn_on_failure(result: TemperedSMCResult, max_stages: int) -> None:
    """Emit a `RuntimeWarning` for each failure flag set in a concrete ``result``."""
    warn_if(
        result.nan_potential,
        "tempered SMC: the model's log-density is NaN (or +inf) at some particles; the log "
        "evidence is NaN. Check the data and the model (e.g. NaN observations, invalid "
        "parameters of an observed distribution).",
    )
    warn_if(
        result.zero_evidence,
        "tempered SMC: every particle has zero likelihood (log evidence -inf): the "
        "observations are impossible under the prior or outside the likelihood's support "
        "(NumPyro gives NaN observations log-probability -inf).",
    )
    warn_if(
        result.hit_max_stages,
        f"tempered SMC stopped after max_stages={max_stages} stages before lambda = 1; the "
        "result targets a tempered posterior (increase `max_stages` or `num_particles`).",
    )
    warn_if(
        result.collapsed,
        "tempered SMC: the particle system collapsed (final-stage acceptance below "
        f"{MIN_ACCEPTANCE} or fewer than {MIN_UNIQUE_FRACTION:.0%} distinct particles; see "
        "`acceptance_rate` and `num_unique`): the posterior and evidence are unreliable. Try "
        "more `num_mcmc_steps`, more `num_particles`, a smaller `step_size` or "
        "kernel='rwm'.",
    )
    warn_if(
        result.poor_mixing,
        "tempered SMC: the MCMC moves barely moved the particles (median squared jump below "
        f"{MIN_JUMP} of the particle variance; see `jump_distance` and `step_size`), so the "
        "particles keep the errors of earlier stages and the posterior and evidence are "
        "unreliable. Try dense_mass=True (strongly correlated posteriors), more "
        "`num_mcmc_steps` or a reparametrised model.",
    )


_FLAGS = ("nan_potential", "zero_evidence", "hit_max_stages", "collapsed", "poor_mixing")


def _warn_not_converged(result: TemperedSMCResult) -> None:
    flags = [name for name in _FLAGS if bool(np.asarray(getattr(result, name)))]
    warn_if(
        ~np.asarray(result.converged),
        f"tempered_smc_to_arviz: the run did not converge (flags set: {flags}; see the `smc` "
        "group): the `posterior` group holds its final particles, which do not represent the "
        "posterior.",
        stacklevel=4,
    )


def tempered_smc_to_arviz(result: TemperedSMCResult, rng_key: jax.Array | None = None):
    """ArviZ 1.x DataTree: resampled ``posterior`` plus an ``smc`` group.

    Args:
        result: output of `tempered_smc` (one run, not vmapped).
        rng_key: key for a systematic resampling by ``log_weights`` (a no-op in distribution
            for the uniform weights `tempered_smc` returns); defaults to ``jax.random.key(0)``.

    Returns:
        ``xarray.DataTree`` with groups ``posterior`` (chain=1, draw=N, equally weighted) and
        ``smc`` (``log_weights`` over dim ``particle``; scalar ``log_evidence`` and the flags
        ``converged``, ``hit_max_stages``, ``nan_potential``, ``zero_evidence``,
        ``collapsed``, ``poor_mixing``; ``tempering_schedule``, ``acceptance_rate``,
        ``step_size``, ``num_unique``, ``ess`` and ``jump_distance`` over dim ``stage``).

    Warns:
        RuntimeWarning: ``result.converged`` is False (the run's flags are named; a jitted
            `build_tempered_smc` runner cannot warn itself): the ``posterior`` group does not
            represent the posterior.

    Raises:
        TypeError: ``result`` is not a `TemperedSMCResult`.
        ValueError: ``result`` comes from a vmapped runner (several runs).
    """
    import arviz as az
    import xarray as xr

    if not isinstance(result, TemperedSMCResult):
        raise TypeError(f"`result` must be a TemperedSMCResult; got {type(result).__name__}.")
    if np.ndim(result.log_evidence) != 0:
        raise ValueError(
            "`result` holds several runs (vmapped, log_evidence shape "
            f"{np.shape(result.log_evidence)}); convert one run at a time."
        )
    key = jax.random.key(0) if rng_key is None else rng_key
    n = result.log_weights.shape[0]
    log_weights = np.asarray(result.log_weights)
    _warn_not_converged(result)
    if not np.all(np.isfinite(log_weights)):
        log_weights = np.full(n, -np.log(n))
    idx = get_resampler("systematic")(key, jnp.asarray(log_weights), n, is_log=True)
    posterior = {k: np.asarray(v[idx])[None] for k, v in result.samples.items()}
    tree = az.from_dict({"posterior": posterior})
    stages = int(result.num_stages)
    per_stage = (
        "tempering_schedule",
        "acceptance_rate",
        "step_size",
        "num_unique",
        "ess",
        "jump_distance",
    )
    flags = (
        "log_evidence",
        "converged",
        "hit_max_stages",
        "nan_potential",
        "zero_evidence",
        "collapsed",
        "poor_mixing",
    )
    tree["smc"] = xr.Dataset(
        {
            "log_weights": ("particle", np.asarray(result.log_weights)),
            **{name: ((), np.asarray(getattr(result, name))) for name in flags},
            **{name: ("stage", np.asarray(getattr(result, name))[:stages]) for name in per_stage},
        }
    )
    return tree
