"""`DiscreteHMM`: a NumPyro distribution over observation sequences of a discrete-state HMM.

The hidden states are marginalised exactly by the parallel-in-time forward filter of Hassan,
Särkkä & García-Fernández (2021), "Temporal parallelization of inference in hidden Markov
models" (see `numpyro_parallel.ssm.hmm.inference`), so `log_prob` costs O(log T) depth, is
differentiable and can be the likelihood of a NumPyro model sampled with NUTS.

Shapes (Pyro's `DiscreteHMM` convention, batch dimensions in front):

- ``initial_logits``: ``batch + (K,)``, logits of ``z_0``.
- ``transition_logits``: ``(K, K)``, or ``batch + (T, K, K)`` / ``batch + (1, K, K)``. Entry
  ``[t]`` maps ``z_t`` to ``z_{t+1}`` (0-based), so the last time entry is unused.
- ``observation_dist``: batch shape ``(K,)``, or ``batch + (T, K)`` / ``batch + (1, K)``;
  ``observation_dist[..., t, k]`` is ``p(y_t | z_t = k)``.

The axis just left of the state axes is always time: a batched but homogeneous model puts a
1 there. Observations ``y`` have shape ``batch + (T,) + observation_dist.event_shape``; with
scalar emissions a ``(T, 1)`` array would be T sequences of length one, so it is rejected
unless the model fixes T = 1 (`numpyro_parallel.ssm.hmm.checks.check_observations`).
`DiscreteHMM.log_likelihood_terms` gives the per-time terms ``log p(y_t | y_{0:t-1})``.

Failure modes (concrete invalid arguments raise naming the argument; NaN parameters under
tracing give a NaN log-density; NaN observations are missing, marginalised exactly where the
emission allows): see the "Hidden Markov models" docs page, §Failure modes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints

from numpyro_parallel._checks import check_sample_shape, warn_if
from numpyro_parallel.ssm.hmm.checks import check_arguments, check_observations, logits_constraint
from numpyro_parallel.ssm.hmm.common import prepare, resolve_mode
from numpyro_parallel.ssm.hmm.emissions import log_emissions
from numpyro_parallel.ssm.hmm.inference import (
    HMMFilterResult,
    HMMSmootherResult,
    _filter,
    _log_likelihood,
    _smoother,
    hmm_sample_prior_states,
)
from numpyro_parallel.ssm.hmm.paths import (
    IMPOSSIBLE_MESSAGE,
    ViterbiResult,
    _sample_sizes,
    _sample_states,
    _viterbi,
)
from numpyro_parallel.strategy import StrategyLike, as_strategy

__all__ = ["DiscreteHMM"]


def _prepared(fn: Callable, strategy) -> Callable:
    """``fn(prepared..., strategy)`` on raw ``(initial, transition, log_em)`` (no value checks).

    The emission log-densities are not checked for NaN: a NaN density (an invalid parameter
    of ``observation_dist``) must give a NaN result, not an exception.
    """

    def run(initial, transition, log_em, *extra):
        resolved = resolve_mode(strategy, log_em)
        return fn(*prepare(initial, transition, log_em, check_values=False), resolved, *extra)

    return run


class DiscreteHMM(Distribution):
    """Hidden Markov model with K discrete states, marginalised by a parallel forward filter.

    Args:
        initial_logits: ``batch + (K,)`` logits of the first state.
        transition_logits: ``(K, K)`` or ``batch + (T or 1, K, K)`` transition logits;
            ``[t]`` maps ``z_t`` to ``z_{t+1}`` (the last time entry is unused).
        observation_dist: NumPyro distribution with batch shape ``(K,)`` or
            ``batch + (T or 1, K)``.
        strategy: evaluation strategy (`numpyro_parallel.strategy`). ``"auto"`` (default):
            `Sequential()` on CPU (the scaled-probability recursion, the fastest there) and
            the O(log T) `Associative()` scan on accelerators; `Blocked()` for the blocked
            scaled recursion of `numpyro_parallel.ssm.hmm.blocked`.
        num_steps: number of time steps T; needed by `sample` when no argument is
            time-varying (then `log_prob` accepts sequences of any length).
        validate_args: NumPyro's argument validation flag.
    """

    arg_constraints: ClassVar[dict] = {
        "initial_logits": constraints.independent(logits_constraint, 1),
        "transition_logits": constraints.independent(logits_constraint, 2),
    }
    pytree_data_fields = ("initial_logits", "transition_logits", "observation_dist")
    pytree_aux_fields = ("strategy", "num_steps")

    def __init__(
        self,
        initial_logits: jax.Array,
        transition_logits: jax.Array,
        observation_dist: Distribution,
        *,
        strategy: StrategyLike = "auto",
        num_steps: int | None = None,
        validate_args: bool | None = None,
    ):
        initial_logits, transition_logits, num_steps, batch_shape = check_arguments(
            initial_logits, transition_logits, observation_dist, num_steps, strategy
        )
        self.num_steps = num_steps
        self.initial_logits = initial_logits
        self.transition_logits = transition_logits
        self.observation_dist = observation_dist
        self.strategy = as_strategy(strategy)
        event_shape = (self.num_steps or 1, *observation_dist.event_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        """Support of the observation sequence."""
        return constraints.independent(self.observation_dist.support, 1)

    @property
    def _mode(self) -> dict:
        return {"strategy": self.strategy}

    @property
    def num_states(self) -> int:
        """Number of hidden states K."""
        return self.initial_logits.shape[-1]

    # ----------------------------------------------------------------------------------------
    def _log_emissions(self, y: jax.Array) -> jax.Array:
        event = tuple(self.observation_dist.event_shape)
        y, _ = check_observations(y, event, self.num_steps, self.batch_shape)
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
    def _run(self, fn: Callable, log_em: jax.Array, *extra: jax.Array):
        return self._map_batch(_prepared(fn, self.strategy), log_em, *extra)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """Exact marginal log-likelihood ``log p(y)`` with the states summed out.

        Args:
            value: observations, ``batch + (T,) + observation_dist.event_shape``.

        Returns:
            Log-likelihood with the broadcast batch shape: ``-inf`` for data of probability
            zero, NaN when a parameter is invalid under tracing, an emission log-density is
            NaN or a traced observation of a discrete emission is not an integer.

        Raises:
            ValueError: ``value`` of the wrong shape, T = 0, or an ambiguous ``(T, 1)`` array
                (see `numpyro_parallel.ssm.hmm.checks.check_observations`); concrete
                non-integer or infinite values under a discrete emission (``Poisson``,
                ``Categorical``, ...). The other methods taking observations raise the same.
        """
        return self._run(_log_likelihood, self._log_emissions(value))

    def log_likelihood_terms(self, y: jax.Array) -> jax.Array:
        """One-step-ahead predictive terms ``log p(y_t | y_{0:t-1})``, ``batch + (T,)``.

        They sum to `log_prob` over the last axis (the forward filter's log normalisers);
        `numpyro_parallel.diagnostics` stores them as the pointwise log-likelihood with a
        ``time`` dimension, so that ``arviz.loo`` sees T observations.

        Args:
            y: observations, ``batch + (T,) + observation_dist.event_shape``.

        Returns:
            Per-time log-likelihood terms (NaN where `log_prob` would be NaN).
        """
        return self.filter(y).log_likelihood_terms

    def filter(self, y: jax.Array) -> HMMFilterResult:
        """Forward filter: ``filtered_probs`` ``batch + (T, K)``, ``log_likelihood``.

        Args:
            y: observations, ``batch + (T,) + observation_dist.event_shape``.

        Returns:
            An `HMMFilterResult` with batch dimensions in front (NaN filtered probabilities
            from a step where the data have probability zero on).
        """
        return self._run(_filter, self._log_emissions(y))

    def smooth(self, y: jax.Array) -> HMMSmootherResult:
        """Posterior state marginals ``p(z_t | y)`` by forward-backward.

        Args:
            y: observations, ``batch + (T,) + observation_dist.event_shape``.

        Returns:
            An `HMMSmootherResult` with batch dimensions in front: ``smoothed_probs`` and
            ``filtered_probs`` ``batch + (T, K)``, ``log_likelihood`` ``batch`` (NaN
            probabilities where they are undefined: see `HMMSmootherResult`).
        """
        return self._run(_smoother, self._log_emissions(y))

    def viterbi(self, y: jax.Array) -> ViterbiResult:
        """Most likely state path ``argmax_z p(z | y)``.

        When the data have probability zero under the model (or a parameter is NaN) no path
        is most likely and the returned path is arbitrary: the result's ``valid`` is False,
        and outside `jax.jit` a `RuntimeWarning` says so.

        Args:
            y: observations, ``batch + (T,) + observation_dist.event_shape``.

        Returns:
            A `ViterbiResult` with batch dimensions in front: ``path`` int32 ``batch + (T,)``
            (ties broken towards smaller state indices), ``log_joint`` and ``valid``
            ``batch``.
        """
        result = self._run(_viterbi, self._log_emissions(y))
        warn_if(~result.valid, f"DiscreteHMM.viterbi: {IMPOSSIBLE_MESSAGE}.")
        return result

    def sample_states(
        self, rng_key: jax.Array, y: jax.Array, sample_shape: Sequence[int] = ()
    ) -> jax.Array:
        """Posterior state paths ``z ~ p(z | y)`` by parallel forward-filter backward-sample.

        Args:
            rng_key: JAX PRNG key.
            y: observations, ``batch + (T,) + observation_dist.event_shape``.
            sample_shape: leading shape of independent draws (an int n means ``(n,)``;
                entries >= 0).

        Returns:
            int32 paths of shape ``sample_shape + batch + (T,)`` (arbitrary, with a
            `RuntimeWarning` outside `jax.jit`, when the data have probability zero).
        """
        sizes = _sample_sizes(sample_shape)
        sample_shape = sizes[0]
        log_em = self._log_emissions(y)
        batch = jax.lax.broadcast_shapes(log_em.shape[:-2], self.batch_shape)
        keys = jax.random.split(rng_key, int(np.prod(batch)))
        keys = keys.reshape(batch + keys.shape[1:]) if batch else keys[0]

        def fn(a, b, c, strategy, key):
            return _sample_states(key, a, b, c, sizes, strategy)

        paths, valid = self._run(fn, log_em, keys)
        warn_if(~valid, f"DiscreteHMM.sample_states: {IMPOSSIBLE_MESSAGE}.")
        return jnp.moveaxis(paths, tuple(range(len(batch))), tuple(range(-len(batch) - 1, -1)))

    def sample(self, key: jax.Array, sample_shape: Sequence[int] = ()) -> jax.Array:
        """Draw states from the Markov chain, then observations given the states.

        Args:
            key: JAX PRNG key.
            sample_shape: leading shape of independent draws (an int n means ``(n,)``;
                entries >= 0).

        Returns:
            Observations of shape ``sample_shape + batch_shape + event_shape``.
        """
        if self.num_steps is None:
            raise ValueError(
                "DiscreteHMM.sample needs the number of time steps: pass `num_steps=` or "
                "time-varying `transition_logits` / `observation_dist`."
            )
        sample_shape = check_sample_shape(sample_shape)
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
