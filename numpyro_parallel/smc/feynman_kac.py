"""Feynman–Kac models for the particle filter: the model tuple and its builders.

`bootstrap` and `guided` build a `FeynmanKac` from densities. Observations
follow the package convention: ``observations[t]`` is seen by ``x_t``; a time step whose
observation is all NaN is missing and its potential is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "FeynmanKac",
    "bootstrap",
    "check_model",
    "guided",
    "is_missing",
    "masked_potential",
    "sanitised",
]


class FeynmanKac(NamedTuple):
    """Per-particle functions of a Feynman–Kac model (vmapped over particles internally).

    Attributes:
        init_sample: ``(rng_key, observation) -> x_0``.
        init_log_potential: ``(x_0, observation) -> log G_0``.
        propagate_sample: ``(rng_key, x_prev, observation, time) -> x_t``.
        log_potential: ``(x_prev, x, observation, time) -> log G_t``.
        init_log_correction: optional ``(x_0, observation) -> float`` added to the initial
            weights even when the observation is missing (guided filters: ``log p0 - log q0``).
        log_correction: optional ``(x_prev, x, observation, time) -> float`` likewise added at
            every step (guided filters: ``log f - log q``).

    The potentials are skipped (set to zero) at a time step whose observation is all NaN and
    then receive zeros in place of the observation; the samplers and corrections always receive
    the raw observation.
    """

    init_sample: Callable
    init_log_potential: Callable
    propagate_sample: Callable
    log_potential: Callable
    init_log_correction: Callable | None = None
    log_correction: Callable | None = None


def is_missing(observation: Any) -> jax.Array:
    """Whether every leaf of ``observation`` is all NaN (a missing time step)."""
    leaves = [jnp.all(jnp.isnan(leaf)) for leaf in jax.tree_util.tree_leaves(observation)]
    if not leaves:
        return jnp.bool_(False)
    return jnp.all(jnp.stack(leaves))


def sanitised(observation: Any, missing: jax.Array) -> Any:
    """Zeros in place of a missing observation (the potentials then get finite inputs)."""
    return jax.tree_util.tree_map(lambda y: jnp.where(missing, jnp.zeros_like(y), y), observation)


def masked_potential(log_g: jax.Array, missing: jax.Array) -> jax.Array:
    """Zero log-potentials at a missing time step."""
    return jnp.where(missing, jnp.zeros_like(log_g), log_g)


def _check_callables(**functions: Any) -> None:
    for name, fn in functions.items():
        if not callable(fn):
            raise TypeError(f"`{name}` must be callable; got {type(fn).__name__}.")


def check_model(model: Any) -> None:
    """Raise `TypeError` unless ``model`` is a `FeynmanKac` of callables."""
    if not isinstance(model, FeynmanKac):
        raise TypeError(
            "`model` must be a FeynmanKac (see `bootstrap` / `guided`); "
            f"got {type(model).__name__}."
        )
    for field in ("init_sample", "init_log_potential", "propagate_sample", "log_potential"):
        _check_callables(**{f"model.{field}": getattr(model, field)})
    for field in ("init_log_correction", "log_correction"):
        if getattr(model, field) is not None:
            _check_callables(**{f"model.{field}": getattr(model, field)})


def bootstrap(
    initial_sample: Callable, transition_sample: Callable, observation_log_prob: Callable
) -> FeynmanKac:
    """Bootstrap filter: propose from the transition, weight by the observation density.

    Args:
        initial_sample: ``(rng_key) -> x_0``.
        transition_sample: ``(rng_key, x_prev, time) -> x_t``.
        observation_log_prob: ``(x, observation, time) -> log g(y_t | x_t)``.

    Returns:
        The `FeynmanKac` model.

    Raises:
        TypeError: an argument is not callable.
    """
    _check_callables(
        initial_sample=initial_sample,
        transition_sample=transition_sample,
        observation_log_prob=observation_log_prob,
    )
    return FeynmanKac(
        init_sample=lambda key, y: initial_sample(key),
        init_log_potential=lambda x, y: observation_log_prob(x, y, 0),
        propagate_sample=lambda key, x_prev, y, t: transition_sample(key, x_prev, t),
        log_potential=lambda x_prev, x, y, t: observation_log_prob(x, y, t),
    )


def guided(
    initial_log_prob: Callable,
    transition_log_prob: Callable,
    observation_log_prob: Callable,
    initial_proposal_sample: Callable,
    initial_proposal_log_prob: Callable,
    proposal_sample: Callable,
    proposal_log_prob: Callable,
) -> FeynmanKac:
    """Guided filter: propose from ``q(x_t | x_{t-1}, y_t)`` and correct the weights.

    Args:
        initial_log_prob: ``(x_0) -> log p(x_0)``.
        transition_log_prob: ``(x_prev, x, time) -> log f(x_t | x_{t-1})``.
        observation_log_prob: ``(x, observation, time) -> log g(y_t | x_t)``.
        initial_proposal_sample: ``(rng_key, observation) -> x_0``.
        initial_proposal_log_prob: ``(x_0, observation) -> log q_0(x_0)``.
        proposal_sample: ``(rng_key, x_prev, observation, time) -> x_t``.
        proposal_log_prob: ``(x_prev, x, observation, time) -> log q(x_t | x_{t-1}, y_t)``.

    Returns:
        The `FeynmanKac` model. The proposal functions receive the raw observation
        (all NaN when missing) and must handle it.

    Raises:
        TypeError: an argument is not callable.
    """
    _check_callables(
        initial_log_prob=initial_log_prob,
        transition_log_prob=transition_log_prob,
        observation_log_prob=observation_log_prob,
        initial_proposal_sample=initial_proposal_sample,
        initial_proposal_log_prob=initial_proposal_log_prob,
        proposal_sample=proposal_sample,
        proposal_log_prob=proposal_log_prob,
    )
    return FeynmanKac(
        init_sample=initial_proposal_sample,
        init_log_potential=lambda x, y: observation_log_prob(x, y, 0),
        propagate_sample=proposal_sample,
        log_potential=lambda x_prev, x, y, t: observation_log_prob(x, y, t),
        init_log_correction=lambda x, y: initial_log_prob(x) - initial_proposal_log_prob(x, y),
        log_correction=lambda x_prev, x, y, t: (
            transition_log_prob(x_prev, x, t) - proposal_log_prob(x_prev, x, y, t)
        ),
    )
