"""Particle weights: validation, normalisation, ESS and the invalid-weights sentinel.

Shared by the resamplers (`numpyro_parallel.smc.resampling`), the particle filter and
dSMC. The failure contract for weights:

- concrete invalid weights raise `ValueError` naming ``weights`` and what is wrong (NaN, inf,
  negative entries (they look like log-weights: pass ``is_log=True``), all zero / all ``-inf``);
- under tracing (``jit``, ``vmap``, ``grad``) they cannot be checked: `log_weights_valid`
  gives the validity as a traced boolean and the resamplers then return the out-of-range
  *sentinel* index ``N`` in every slot (never plausible indices).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import concrete

__all__ = [
    "as_log_weights",
    "ess",
    "inverse_cdf",
    "log_normalize",
    "log_weights_valid",
    "scaled_weights",
    "with_sentinel",
]


def _check_concrete_weights(weights: np.ndarray, is_log: bool) -> None:
    """Raise `ValueError` on concrete invalid weights (see the module docstring)."""
    kind = "`weights` (log-weights, is_log=True)" if is_log else "`weights`"
    if np.any(np.isnan(weights)):
        raise ValueError(f"{kind} contains NaN; no particle can be drawn.")
    if np.any(np.isposinf(weights)):
        raise ValueError(f"{kind} contains +inf; weights must be finite.")
    if is_log:
        if np.all(np.isneginf(weights)):
            raise ValueError(
                f"{kind} are all -inf: every weight is zero, so no particle can be drawn."
            )
        return
    if np.any(weights < 0):
        raise ValueError(
            f"`weights` has negative entries (min {weights.min():.4g}); weights must be >= 0. "
            "They look like log-weights: pass is_log=True."
        )
    if not np.any(weights > 0):
        raise ValueError("`weights` are all zero: no particle can be drawn.")


def as_log_weights(weights: jax.Array, is_log: bool) -> jax.Array:
    """``(N,)`` floating log-weights from weights or log-weights, checked when concrete.

    Args:
        weights: ``(N,)`` weights (non-negative, not all zero) or log-weights.
        is_log: interpret ``weights`` as log-weights.

    Returns:
        The log-weights (``log(weights)`` unless ``is_log``).

    Raises:
        ValueError: wrong shape, no particle, or concrete invalid weights.
    """
    weights = jnp.asarray(weights)
    if weights.ndim != 1:
        raise ValueError(f"`weights` must have shape (N,); got shape {weights.shape}.")
    if weights.shape[0] == 0:
        raise ValueError("`weights` must hold at least one particle; got shape (0,).")
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        weights = weights.astype(jnp.result_type(float))
    values = concrete(weights)
    if values is not None:
        _check_concrete_weights(values, is_log)
    return weights if is_log else jnp.log(weights)


def log_weights_valid(log_weights: jax.Array) -> jax.Array:
    """Whether log-weights define a distribution: no NaN, no ``+inf``, not all ``-inf``.

    Works under tracing (returns a traced boolean); weights ``w`` are valid when
    ``log_weights_valid(jnp.log(w))`` holds (negative weights give NaN logs).

    Args:
        log_weights: ``(..., N)`` log-weights.

    Returns:
        Boolean over the leading axes.
    """
    bad = jnp.isnan(log_weights) | jnp.isposinf(log_weights)
    return ~jnp.any(bad, axis=-1) & jnp.any(log_weights > -jnp.inf, axis=-1)


def with_sentinel(indices: jax.Array, valid: jax.Array, num_particles: int) -> jax.Array:
    """``indices`` where ``valid``, else the out-of-range sentinel ``num_particles`` everywhere."""
    return jnp.where(valid, indices, num_particles).astype(jnp.int32)


def log_normalize(log_weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Normalise log-weights.

    Args:
        log_weights: ``(N,)`` unnormalised log-weights (``-inf`` allowed, not all).

    Returns:
        ``(normalised log-weights, logsumexp of the input)``; for invalid log-weights (all
        ``-inf``, NaN) the normalised log-weights are NaN and the total is ``-inf`` / NaN.
    """
    total = jax.nn.logsumexp(log_weights)
    return log_weights - total, total


def ess(log_weights: jax.Array) -> jax.Array:
    """Effective sample size ``1 / sum(w_i^2)`` of normalised weights, from log-weights.

    Args:
        log_weights: ``(N,)`` log-weights, normalised or not.

    Returns:
        Scalar ESS in ``[1, N]``; NaN for invalid log-weights (see `log_weights_valid`).
    """
    normalised, _ = log_normalize(log_weights)
    return jnp.exp(-jax.nn.logsumexp(2.0 * normalised))


def scaled_weights(log_weights: jax.Array) -> jax.Array:
    """Weights divided by their maximum (in (0, 1], the largest is exactly one)."""
    return jnp.exp(log_weights - jnp.max(log_weights))


def inverse_cdf(log_weights: jax.Array, uniforms: jax.Array) -> jax.Array:
    """Indices ``F^{-1}(u)`` for uniforms in [0, 1) (need not be sorted)."""
    weights = scaled_weights(log_weights)
    cdf = jnp.cumsum(weights)
    targets = uniforms.astype(cdf.dtype) * cdf[-1]
    indices = jnp.searchsorted(cdf, targets, side="right")
    return jnp.clip(indices, 0, weights.shape[0] - 1).astype(jnp.int32)
