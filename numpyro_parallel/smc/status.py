"""Status codes of particle methods (particle filter, dSMC) and their warnings.

A status is an int32, ordered by severity; a run's status is the worst over its steps:

- ``OK`` (0): nothing to report;
- ``COLLAPSED`` (1): the weights degenerated (ESS below ``min(collapse_ess, N / 2)``): the
  estimates rest on very few particles;
- ``IMPOSSIBLE`` (2): every particle had weight zero (all log-weights ``-inf``), for example an
  observation impossible under every particle; the log-likelihood is ``-inf``, the right value
  of ``log p(y)`` if the model really gives the data zero density (else a sign of too few
  particles or a poor proposal);
- ``INVALID`` (3): NaN or ``+inf`` log-weights (a NaN potential, a bad parameter); the
  log-likelihood is NaN.

Outside ``jit`` the functions that return a status emit a `RuntimeWarning` when it is not OK
(`warn_status`); under ``jit`` the status field is the only report.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import concrete

__all__ = ["COLLAPSED", "IMPOSSIBLE", "INVALID", "OK", "STATUS_NAMES", "step_status", "warn_status"]

OK, COLLAPSED, IMPOSSIBLE, INVALID = 0, 1, 2, 3
STATUS_NAMES = ("ok", "collapsed", "impossible", "invalid")

_EXPLAIN = {
    COLLAPSED: "the weights collapsed (ESS below the `collapse_ess` threshold): the estimates "
    "rest on very few particles; use more particles or a better proposal",
    IMPOSSIBLE: "every particle got zero weight (all log-weights -inf, e.g. an observation "
    "impossible under every particle): log_likelihood is -inf",
    INVALID: "NaN or +inf log-weights (a NaN potential or log-density?): log_likelihood is NaN",
}


def step_status(unnormalised: jax.Array, ess_value: jax.Array, collapse_ess: float) -> jax.Array:
    """Status of one weighting step from its unnormalised log-weights and ESS.

    Args:
        unnormalised: ``(N,)`` unnormalised log-weights.
        ess_value: ESS of the normalised weights (NaN when invalid).
        collapse_ess: ESS threshold of ``COLLAPSED`` (capped at N / 2).

    Returns:
        Scalar int32 status.
    """
    n = unnormalised.shape[-1]
    invalid = jnp.any(jnp.isnan(unnormalised) | jnp.isposinf(unnormalised), axis=-1)
    impossible = jnp.all(jnp.isneginf(unnormalised), axis=-1)
    collapsed = ess_value < min(float(collapse_ess), 0.5 * n)
    status = jnp.where(collapsed, COLLAPSED, OK)
    status = jnp.where(impossible, IMPOSSIBLE, status)
    return jnp.where(invalid, INVALID, status).astype(jnp.int32)


def warn_status(status: Any, where: str, *, stacklevel: int = 3) -> bool:
    """Emit one `RuntimeWarning` per kind of problem when a concrete ``status`` is not OK.

    Args:
        status: scalar or per-step status codes (nothing happens under tracing).
        where: what produced them (start of the message), e.g. ``"particle filter"``.
        stacklevel: passed to `warnings.warn`.

    Returns:
        Whether a warning was emitted.
    """
    values = concrete(status)
    if values is None:
        return False
    values = np.atleast_1d(values)
    emitted = False
    for code in (INVALID, IMPOSSIBLE, COLLAPSED):
        steps = np.flatnonzero(values == code)
        if steps.size == 0:
            continue
        at = f" at steps {steps[:10].tolist()}{'...' if steps.size > 10 else ''}"
        at = at if values.size > 1 else ""
        warnings.warn(
            f"{where}: status '{STATUS_NAMES[code]}'{at}: {_EXPLAIN[code]}.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
        emitted = True
    return emitted
