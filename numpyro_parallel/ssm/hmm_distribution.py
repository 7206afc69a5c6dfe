"""`DiscreteHMM`: a NumPyro distribution over observation sequences of a discrete-state HMM.

The hidden states are marginalised exactly by the parallel-in-time forward filter of Hassan,
Särkkä & García-Fernández (2021), "Temporal parallelization of inference in hidden Markov
models" (see `numpyro_parallel.ssm.hmm`), so `log_prob` costs O(log T) depth, is
differentiable and can be the likelihood of a NumPyro model sampled with NUTS.

Shapes (Pyro's `DiscreteHMM` convention, batch dimensions in front):

- ``initial_logits``: ``batch + (K,)``, logits of ``z_0``.
- ``transition_logits``: ``(K, K)``, or ``batch + (T, K, K)`` / ``batch + (1, K, K)``. Entry
  ``[t]`` maps ``z_t`` to ``z_{t+1}`` (0-based), so the last time entry is unused.
- ``observation_dist``: batch shape ``(K,)``, or ``batch + (T, K)`` / ``batch + (1, K)``;
  ``observation_dist[..., t, k]`` is ``p(y_t | z_t = k)``.

The axis just left of the state axes is always time: a batched but homogeneous model puts a
1 there. Observations ``y`` have shape ``batch + (T,) + observation_dist.event_shape``. NaN
entries are missing: a missing scalar observation contributes nothing; missing components of a
vector observation are marginalised out exactly for ``Independent`` (``.to_event(1)``) and
``MultivariateNormal`` emissions, and drop the whole vector ``y_t`` for other multivariate
distributions (`numpyro_parallel.ssm.hmm_emissions`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints

from numpyro_parallel.ssm.hmm import (
    HMMFilterResult,
    check_logits,
    hmm_filter,
    hmm_log_likelihood,
    hmm_sample_prior_states,
    hmm_sample_states,
    hmm_smoother,
    hmm_viterbi,
)
from numpyro_parallel.ssm.hmm_emissions import log_emissions

__all__ = ["DiscreteHMM"]


def _time_length(shape: tuple[int, ...], core: int) -> int | None:
    return shape[-core - 1] if len(shape) > core else None


class DiscreteHMM(Distribution):
    """Hidden Markov model with K discrete states, marginalised by a parallel forward filter.

    Args:
        initial_logits: ``batch + (K,)`` logits of the first state.
        transition_logits: ``(K, K)`` or ``batch + (T or 1, K, K)`` transition logits;
            ``[t]`` maps ``z_t`` to ``z_{t+1}`` (the last time entry is unused).
        observation_dist: NumPyro distribution with batch shape ``(K,)`` or
            ``batch + (T or 1, K)``.
        parallel: parallel strategies when True, sequential `lax.scan` otherwise.
        block_size: ``"auto"`` (default): blocks of about sqrt(T) steps on CPU (the blocked
            scaled-probability strategy of `numpyro_parallel.ssm.hmm_blocked`, the fastest
            there) and the O(log T) associative scan on accelerators; None forces the
            associative scan, an int the blocked strategy with blocks of that length.
        num_steps: number of time steps T; needed by `sample` when no argument is
            time-varying (then `log_prob` accepts sequences of any length).
        validate_args: NumPyro's argument validation flag.
    """

    arg_constraints: ClassVar[dict] = {
        "initial_logits": constraints.real_vector,
        "transition_logits": constraints.independent(constraints.real, 2),
    }
    pytree_data_fields = ("initial_logits", "transition_logits", "observation_dist")
    pytree_aux_fields = ("parallel", "block_size", "num_steps")

    def __init__(
        self,
        initial_logits: jax.Array,
        transition_logits: jax.Array,
        observation_dist: Distribution,
        *,
        parallel: bool = True,
        block_size: int | str | None = "auto",
        num_steps: int | None = None,
        validate_args: bool | None = None,
    ):
        if not isinstance(observation_dist, Distribution):
            raise TypeError(
                "`observation_dist` must be a numpyro.distributions.Distribution; "
                f"got {type(observation_dist).__name__}."
            )
        initial_logits = jnp.asarray(initial_logits)
        transition_logits = jnp.asarray(transition_logits)
        if initial_logits.ndim < 1:
            raise ValueError("`initial_logits` must have shape batch + (K,); got a scalar.")
        num_states = initial_logits.shape[-1]
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
            for n in (
                _time_length(transition_logits.shape, 2),
                _time_length(obs_batch, 1),
            )
            if n not in (None, 1)
        }
        if num_steps is not None:
            lengths.add(int(num_steps))
        if len(lengths) > 1:
            raise ValueError(
                "inconsistent numbers of time steps between `transition_logits` (axis -3), "
                f"`observation_dist` (batch axis -2) and `num_steps`: {sorted(lengths)}."
            )
        self.num_steps = lengths.pop() if lengths else None
        self.initial_logits = initial_logits
        self.transition_logits = transition_logits
        self.observation_dist = observation_dist
        self.parallel = parallel
        self.block_size = block_size
        batch_shape = jax.lax.broadcast_shapes(
            initial_logits.shape[:-1], transition_logits.shape[:-3], obs_batch[:-2]
        )
        event_shape = (self.num_steps or 1, *observation_dist.event_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        """Support of the observation sequence."""
        return constraints.independent(self.observation_dist.support, 1)

    @property
    def _mode(self) -> dict:
        return {"parallel": self.parallel, "block_size": self.block_size}

    @property
    def num_states(self) -> int:
        """Number of hidden states K."""
        return self.initial_logits.shape[-1]

    # ----------------------------------------------------------------------------------------
    def _log_emissions(self, y: jax.Array) -> jax.Array:
        event = tuple(self.observation_dist.event_shape)
        y = jnp.asarray(y)
        if y.ndim < 1 + len(event) or tuple(y.shape[y.ndim - len(event) :]) != event:
            raise ValueError(
                f"`y` must have shape batch + (T,) + {event} (observation event shape); "
                f"got {tuple(y.shape)}."
            )
        num_steps = y.shape[y.ndim - len(event) - 1]
        if self.num_steps is not None and num_steps != self.num_steps:
            raise ValueError(f"`y` must have T = {self.num_steps} time steps; got {num_steps}.")
        return log_emissions(self.observation_dist, y)

    def _core_transitions(self) -> jax.Array:
        logits = self.transition_logits
        if logits.ndim >= 3 and logits.shape[-3] == 1:
            logits = logits[..., 0, :, :]
        return logits

    def _map_batch(self, fn: Callable, log_em: jax.Array, *extra: jax.Array):
        """Apply ``fn(initial, transition, log_em, *extra)`` over the broadcast batch shape.

        ``extra`` arrays must already carry the full batch shape in front.
        """
        transition = self._core_transitions()
        core = 2 if transition.ndim == 2 or self.transition_logits.shape[-3] == 1 else 3
        batch = jax.lax.broadcast_shapes(
            log_em.shape[:-2], self.initial_logits.shape[:-1], transition.shape[:-core]
        )
        log_em = jnp.broadcast_to(log_em, batch + log_em.shape[-2:])
        initial = jnp.broadcast_to(self.initial_logits, batch + self.initial_logits.shape[-1:])
        transition = jnp.broadcast_to(transition, batch + transition.shape[-core:])
        if not batch:
            return fn(initial, transition, log_em, *extra)
        size = int(np.prod(batch))
        flat = [
            x.reshape((size, *x.shape[len(batch) :])) for x in (initial, transition, log_em, *extra)
        ]
        out = jax.vmap(fn)(*flat)
        return jax.tree_util.tree_map(lambda x: x.reshape(batch + x.shape[1:]), out)

    # ----------------------------------------------------------------------------------------
    def log_prob(self, value: jax.Array) -> jax.Array:
        """Exact marginal log-likelihood ``log p(y)`` with the states summed out.

        Args:
            value: observations, ``batch + (T,) + observation_dist.event_shape``.

        Returns:
            Log-likelihood with the broadcast batch shape.
        """

        def fn(a, b, c):
            return hmm_log_likelihood(a, b, c, **self._mode)

        return self._map_batch(fn, self._log_emissions(value))

    def filter(self, y: jax.Array) -> HMMFilterResult:
        """Forward filter: ``filtered_probs`` ``batch + (T, K)``, ``log_likelihood``.

        Args:
            y: observations, ``batch + (T,) + observation_dist.event_shape``.

        Returns:
            An `HMMFilterResult` with batch dimensions in front.
        """

        def fn(a, b, c):
            return hmm_filter(a, b, c, **self._mode)

        return self._map_batch(fn, self._log_emissions(y))

    def smooth(self, y: jax.Array) -> jax.Array:
        """Posterior state marginals ``p(z_t | y)``, ``batch + (T, K)``.

        Args:
            y: observations, ``batch + (T,) + observation_dist.event_shape``.

        Returns:
            Smoothed probabilities.
        """

        def fn(a, b, c):
            return hmm_smoother(a, b, c, **self._mode)

        return self._map_batch(fn, self._log_emissions(y))

    def viterbi(self, y: jax.Array) -> jax.Array:
        """Most likely state path ``argmax_z p(z | y)``, int32 ``batch + (T,)``.

        Args:
            y: observations, ``batch + (T,) + observation_dist.event_shape``.

        Returns:
            The path (ties broken towards smaller state indices).
        """

        def fn(a, b, c):
            return hmm_viterbi(a, b, c, **self._mode).path

        return self._map_batch(fn, self._log_emissions(y))

    def sample_states(
        self, rng_key: jax.Array, y: jax.Array, sample_shape: Sequence[int] = ()
    ) -> jax.Array:
        """Posterior state paths ``z ~ p(z | y)`` by parallel forward-filter backward-sample.

        Args:
            rng_key: JAX PRNG key.
            y: observations, ``batch + (T,) + observation_dist.event_shape``.
            sample_shape: leading shape of independent draws.

        Returns:
            int32 paths of shape ``sample_shape + batch + (T,)``.
        """
        sample_shape = tuple(sample_shape)
        log_em = self._log_emissions(y)
        batch = jax.lax.broadcast_shapes(log_em.shape[:-2], self.batch_shape)
        keys = jax.random.split(rng_key, int(np.prod(batch)))
        keys = keys.reshape(batch + keys.shape[1:]) if batch else keys[0]

        def fn(a, b, c, key):
            return hmm_sample_states(key, a, b, c, sample_shape, **self._mode)

        paths = self._map_batch(fn, log_em, keys)
        return jnp.moveaxis(paths, tuple(range(len(batch))), tuple(range(-len(batch) - 1, -1)))

    def sample(self, key: jax.Array, sample_shape: Sequence[int] = ()) -> jax.Array:
        """Draw states from the Markov chain, then observations given the states.

        Args:
            key: JAX PRNG key.
            sample_shape: leading shape of independent draws.

        Returns:
            Observations of shape ``sample_shape + batch_shape + event_shape``.
        """
        if self.num_steps is None:
            raise ValueError(
                "DiscreteHMM.sample needs the number of time steps: pass `num_steps=` or "
                "time-varying `transition_logits` / `observation_dist`."
            )
        sample_shape = tuple(sample_shape)
        num_steps, num_states = self.num_steps, self.num_states
        state_key, obs_key = jax.random.split(key)
        transition = self._core_transitions()
        core = 2 if transition.ndim == 2 or self.transition_logits.shape[-3] == 1 else 3
        batch = self.batch_shape
        initial = jnp.broadcast_to(self.initial_logits, (*batch, num_states))
        transition = jnp.broadcast_to(transition, batch + transition.shape[-core:])
        size = int(np.prod(batch)) if batch else 1
        keys = jax.random.split(state_key, size)

        def one(k, a, b):
            return hmm_sample_prior_states(k, a, b, num_steps, sample_shape, **self._mode)

        flat = [x.reshape((size, *x.shape[len(batch) :])) for x in (initial, transition)]
        states = jax.vmap(one)(keys, *flat)  # (size,) + sample_shape + (T,)
        states = states.reshape(batch + sample_shape + (num_steps,))
        states = jnp.moveaxis(states, tuple(range(len(batch))), tuple(range(-len(batch) - 1, -1)))
        event = tuple(self.observation_dist.event_shape)
        with jax.numpy_rank_promotion("allow"):
            expanded = self.observation_dist.expand((*batch, num_steps, num_states))
            draws = expanded.sample(obs_key, sample_shape)
        index = states.reshape(states.shape + (1,) * (1 + len(event)))
        picked = jnp.take_along_axis(draws, index, axis=draws.ndim - len(event) - 1)
        return jnp.squeeze(picked, axis=draws.ndim - len(event) - 1)
