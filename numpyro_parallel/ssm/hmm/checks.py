"""Argument checks of `numpyro_parallel.ssm.hmm.distribution.DiscreteHMM` (internal).

The failure contract of the package: concrete invalid input raises `ValueError` / `TypeError`
naming the argument; invalid values that are only known under tracing give a NaN log-density
(`numpyro_parallel.ssm.hmm.common.inputs_ok`). Logits may hold ``-inf`` (structural zeros):
`logits_constraint` accepts them under NumPyro's argument validation, where
``constraints.real`` would not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints

from numpyro_parallel._checks import check_positive_int
from numpyro_parallel.ssm.hmm.common import check_float, check_logits
from numpyro_parallel.strategy import as_strategy

__all__ = ["check_arguments", "check_observations", "logits_constraint"]


class _Logits(constraints.ParameterFreeConstraint):
    """Real numbers or ``-inf`` (an impossible state or transition); no NaN, no ``+inf``."""

    event_dim = 0

    def __call__(self, x):
        return (x == x) & (x != jnp.inf)

    def feasible_like(self, prototype):
        return jnp.zeros_like(prototype)


logits_constraint = _Logits()


def _time_length(shape: tuple[int, ...], core: int) -> int | None:
    return shape[-core - 1] if len(shape) > core else None


def check_arguments(initial_logits, transition_logits, observation_dist, num_steps, strategy):
    """Validate the constructor arguments; return ``(initial, transition, T or None, batch)``."""
    if not isinstance(observation_dist, Distribution):
        raise TypeError(
            "`observation_dist` must be a numpyro.distributions.Distribution; "
            f"got {type(observation_dist).__name__}."
        )
    as_strategy(strategy)
    initial_logits = check_float("initial_logits", initial_logits)
    transition_logits = check_float("transition_logits", transition_logits)
    if initial_logits.ndim < 1:
        raise ValueError("`initial_logits` must have shape batch + (K,); got a scalar.")
    num_states = initial_logits.shape[-1]
    if num_states < 1:
        raise ValueError("`initial_logits` must have K >= 1 states; got K = 0.")
    if transition_logits.ndim < 2 or transition_logits.shape[-2:] != (num_states,) * 2:
        raise ValueError(
            f"`transition_logits` must have shape (K, K) or batch + (T, K, K) with "
            f"K = {num_states} (from `initial_logits`); got {tuple(transition_logits.shape)}."
        )
    obs_batch = tuple(observation_dist.batch_shape)
    if not obs_batch or obs_batch[-1] != num_states:
        raise ValueError(
            "`observation_dist` must have rightmost batch dimension K = "
            f"{num_states} (batch shape (K,) or batch + (T, K)); got batch shape {obs_batch}."
        )
    check_logits("initial_logits", initial_logits)
    check_logits("transition_logits", transition_logits)
    lengths = {
        n
        for n in (_time_length(transition_logits.shape, 2), _time_length(obs_batch, 1))
        if n not in (None, 1)
    }
    if num_steps is not None:
        lengths.add(check_positive_int("num_steps", num_steps))
    if len(lengths) > 1:
        raise ValueError(
            "inconsistent numbers of time steps between `transition_logits` (axis -3), "
            f"`observation_dist` (batch axis -2) and `num_steps`: {sorted(lengths)}."
        )
    shapes = {
        "initial_logits": initial_logits.shape[:-1],
        "transition_logits": transition_logits.shape[:-3],
        "observation_dist": obs_batch[:-2],
    }
    try:
        batch_shape = jax.lax.broadcast_shapes(*shapes.values())
    except ValueError:
        raise ValueError(
            "the batch shapes (left of the time and state axes) of `initial_logits`, "
            f"`transition_logits` and `observation_dist` do not broadcast: {shapes}."
        ) from None
    num_steps = lengths.pop() if lengths else None
    return initial_logits, transition_logits, num_steps, batch_shape


def check_observations(y, event, num_steps: int | None, batch_shape) -> tuple[jax.Array, int]:
    """Validate observations ``batch + (T,) + event``; return ``(y, T)``.

    The time axis is the one just left of the event shape. With scalar emissions an array of
    shape ``(T, 1)`` would be read as T sequences of length one (an independent mixture, not
    an HMM); unless the model fixes T = 1 that is rejected as ambiguous.
    """
    y = jnp.asarray(y)
    event = tuple(event)
    expected = f"batch + (T,) + {event}" if event else "batch + (T,)"
    if y.ndim < 1 + len(event) or tuple(y.shape[y.ndim - len(event) :]) != event:
        raise ValueError(
            f"`y` must have shape {expected} (observation event shape {event}); "
            f"got {tuple(y.shape)}."
        )
    time_axis = y.ndim - len(event) - 1
    length = y.shape[time_axis]
    if length < 1:
        raise ValueError(f"`y` must have at least one time step (T >= 1); got {tuple(y.shape)}.")
    if num_steps is not None and length != num_steps:
        raise ValueError(
            f"`y` must have T = {num_steps} time steps on axis {time_axis - y.ndim} (shape "
            f"{expected}); got shape {tuple(y.shape)} with {length} there."
        )
    if num_steps is None and length == 1 and time_axis > 0:
        raise ValueError(
            f"`y` of shape {tuple(y.shape)} is ambiguous: the time axis is the one just left of "
            f"the event shape {event}, so it would be read as a batch of sequences of length 1 "
            f"(an independent mixture, not an HMM). For one sequence of length T pass `y` of "
            f"shape (T,) + {event}; for a batch of length-1 sequences pass `num_steps=1`."
        )
    try:
        jax.lax.broadcast_shapes(y.shape[:time_axis], tuple(batch_shape))
    except ValueError:
        raise ValueError(
            f"the batch shape {y.shape[:time_axis]} of `y` (left of the time axis) does not "
            f"broadcast with the distribution's batch shape {tuple(batch_shape)}."
        ) from None
    return y, length
