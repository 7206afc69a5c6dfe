"""Parallel-in-time square-root Kalman filter and RTS smoother.

Model (t = 0..T-1, 0-based as in the arrays)::

    x_0 ~ N(initial_mean, initial_cov)
    y_t = H_t x_t + d_t + v_t,          v_t ~ N(0, R_t)
    x_{t+1} = F_t x_t + c_t + w_t,      w_t ~ N(0, Q_t)

All functions take a `GaussianSSMParams` in square-root form with a leading time axis on every
per-step array (transition arrays ``[t]`` map ``x_t`` to ``x_{t+1}``; their last entry is
unused) and take a ``strategy`` (`numpyro_parallel.strategy`): `Sequential()` (a `lax.scan`),
`Associative()` (O(log T) depth) or `Blocked()` — the same element and combine functions in
every strategy.

References: Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers";
Yaghoobi, Corenflos, Hassan & Särkkä (2022), "Parallel square-root statistical linear
regression for inference in nonlinear state space models".
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import nan_unless
from numpyro_parallel.scan import associative_scan, shift_in
from numpyro_parallel.ssm.kalman.checks import check_params_and_y, finite_flag
from numpyro_parallel.ssm.kalman.elements import (
    filter_combine,
    filter_prepare,
    predict,
    smoother_combine,
    smoother_prepare,
)
from numpyro_parallel.ssm.kalman.recursions import (
    covariance_filter_terms,
    mask_missing,
    predictive_terms,
    sequential_filter,
    terms_from_innovations,
)
from numpyro_parallel.ssm.kalman.sharded import sharded_filter, sharded_smoother
from numpyro_parallel.strategy import (
    Associative,
    Blocked,
    Sequential,
    Sharded,
    Strategy,
    StrategyLike,
    as_strategy,
    resolve_strategy,
)

__all__ = [
    "FilterResult",
    "GaussianSSMParams",
    "SmootherResult",
    "kalman_filter",
    "kalman_log_likelihood_terms",
    "kalman_smoother",
]


class GaussianSSMParams(NamedTuple):
    """Linear-Gaussian state-space model in square-root form, time-expanded.

    The ``*_chol`` fields are square-root factors: any ``L`` with ``L @ L.T`` equal to the
    covariance (lower-triangular or not, of any width k >= 1), so a rank-r noise factor
    ``(d, r)`` is used as given and gradients stay exact. Every per-step field has a leading
    time axis of length T; the functions reject non-expanded fields with a `ValueError`.

    Attributes:
        initial_mean: ``(d,)``.
        initial_chol: ``(d, k0)`` factor of the initial covariance.
        transition_matrix: ``(T, d, d)``; entry t maps x_t to x_{t+1} (last unused).
        transition_offset: ``(T, d)``.
        transition_chol: ``(T, d, r)`` factors of the transition covariances.
        observation_matrix: ``(T, p, d)``.
        observation_offset: ``(T, p)``.
        observation_chol: ``(T, p, s)`` factors of the observation covariances.
    """

    initial_mean: jax.Array
    initial_chol: jax.Array
    transition_matrix: jax.Array
    transition_offset: jax.Array
    transition_chol: jax.Array
    observation_matrix: jax.Array
    observation_offset: jax.Array
    observation_chol: jax.Array


class FilterResult(NamedTuple):
    """Filtering distributions ``p(x_t | y_{0:t}) = N(mean[t], chol[t] chol[t]^T)``.

    Attributes:
        mean: ``(T, d)`` filtered means.
        chol: ``(T, d, d)`` Cholesky factors of the filtered covariances.
        log_likelihood: ``()`` marginal log-likelihood ``log p(y_{0:T-1})``.
        log_likelihood_terms: ``(T,)`` one-step-ahead predictive terms
            ``log p(y_t | y_{0:t-1})`` (they sum to ``log_likelihood``).
    """

    mean: jax.Array
    chol: jax.Array
    log_likelihood: jax.Array
    log_likelihood_terms: jax.Array

    @property
    def cov(self) -> jax.Array:
        """``(T, d, d)`` filtered covariances."""
        return self.chol @ jnp.swapaxes(self.chol, -1, -2)


class SmootherResult(NamedTuple):
    """Smoothing distributions ``p(x_t | y_{0:T-1}) = N(mean[t], chol[t] chol[t]^T)``.

    Attributes:
        mean: ``(T, d)`` smoothed means.
        chol: ``(T, d, d)`` Cholesky factors of the smoothed covariances.
    """

    mean: jax.Array
    chol: jax.Array

    @property
    def cov(self) -> jax.Array:
        """``(T, d, d)`` smoothed covariances."""
        return self.chol @ jnp.swapaxes(self.chol, -1, -2)


def _validated(params: GaussianSSMParams, y) -> tuple[GaussianSSMParams, jax.Array]:
    return check_params_and_y(params, y, expected_type=GaussianSSMParams)


def _pad_width(factor: jax.Array, width: int) -> jax.Array:
    extra = width - factor.shape[-1]
    if extra == 0:
        return factor
    return jnp.concatenate([factor, jnp.zeros((*factor.shape[:-1], extra), factor.dtype)], -1)


def _prior_and_transitions(params: GaussianSSMParams):
    """``(prior, transitions)``: ``(0, m0, P0 factor)`` and the per-step ``(F, c, Q factor)``,
    the factors padded to one width."""
    width = max(params.initial_chol.shape[-1], params.transition_chol.shape[-1])
    F = params.transition_matrix
    prior = (jnp.zeros_like(F[0]), params.initial_mean, _pad_width(params.initial_chol, width))
    transitions = (F, params.transition_offset, _pad_width(params.transition_chol, width))
    return prior, transitions


def _observations(params: GaussianSSMParams, y):
    """``(H, d, R factor, y)`` per step, before masking."""
    return params.observation_matrix, params.observation_offset, params.observation_chol, y


def _shifted_transitions(params: GaussianSSMParams):
    """Transitions *into* each step; step 0 receives the prior (F = 0, c = m0, Q = P0)."""
    prior, transitions = _prior_and_transitions(params)
    return shift_in(prior, transitions)


SEQUENTIAL_MIN_STATE_DIM = 4
COVARIANCE_MAX_STEPS_SMALL_STATE = 10_000


def resolve_kalman_strategy(strategy: StrategyLike, params: GaussianSSMParams, y) -> Strategy:
    """The concrete strategy of a Kalman filter, smoother or sampler: ``"auto"`` is
    `Associative()` on accelerators and `kalman_cpu_strategy` of the state dimension on a
    CPU. The ``"auto"`` inner strategy of `Sharded` is resolved the same way, on the
    platform of the mesh's devices."""
    cpu = kalman_cpu_strategy(jnp.shape(params.initial_mean)[-1])
    strategy = resolve_strategy(strategy, y, cpu_strategy=cpu)
    if isinstance(strategy, Sharded) and strategy.inner == "auto":
        on_cpu = strategy.resolved_mesh().devices.flat[0].platform == "cpu"
        strategy = dataclasses.replace(strategy, inner=cpu if on_cpu else Associative())
    return strategy


def resolve_log_likelihood_strategy(
    strategy: StrategyLike, params: GaussianSSMParams, y
) -> Strategy:
    """The concrete strategy of a Kalman log-likelihood (`kalman_log_likelihood_terms`):
    as `resolve_kalman_strategy`, except that ``"auto"`` on a CPU in float64 is the
    covariance-form ``Sequential(square_root=False)`` for states of dimension
    `SEQUENTIAL_MIN_STATE_DIM` or more, and for smaller states on series shorter than
    `COVARIANCE_MAX_STEPS_SMALL_STATE` steps.

    Measured on 2 cores (value and gradient; ``benchmarks/sts.py`` and
    ``benchmarks/suite.py``): from d = 4 on it is the fastest method at every T (about 2.5x
    the square-root `Sequential()` at d = 13, 10x or more `Blocked()`), as fast as a
    hand-written `lax.scan` covariance filter and dynamax; at d = 2 it is 1.6-2.2x faster
    than `Blocked()` up to T = 10^3, level at T = 10^4, and 1.5x slower at T = 10^5.
    """
    if as_strategy(strategy) == "auto" and jnp.result_type(params.initial_mean) == jnp.float64:
        state_dim, num_steps = jnp.shape(params.initial_mean)[-1], jnp.shape(y)[-2]
        if state_dim >= SEQUENTIAL_MIN_STATE_DIM or num_steps < COVARIANCE_MAX_STEPS_SMALL_STATE:
            return resolve_strategy(strategy, y, cpu_strategy=Sequential(square_root=False))
    return resolve_kalman_strategy(strategy, params, y)


def kalman_cpu_strategy(state_dim: int) -> Strategy:
    """What ``"auto"`` means for a Kalman filter, smoother or sampler on a CPU: `Blocked()`
    for states of dimension below `SEQUENTIAL_MIN_STATE_DIM`, the square-root `Sequential()`
    from there on. Measured on 2 cores (value and gradient of the log-likelihood, T = 10^3
    and 10^4): Blocked is faster up to d = 3, Sequential from d = 4 on (2.5-4x at d = 4..13).
    """
    return Sequential() if state_dim >= SEQUENTIAL_MIN_STATE_DIM else Blocked()


def kalman_log_likelihood_terms(
    params: GaussianSSMParams,
    y: jax.Array,
    *,
    strategy: StrategyLike = "auto",
) -> jax.Array:
    """The one-step-ahead predictive terms ``log p(y_t | y_{0:t-1})`` alone.

    Equal to ``kalman_filter(params, y, strategy=strategy).log_likelihood_terms``, except
    that ``Sequential(square_root=False)`` (what ``"auto"`` means here on CPUs in float64,
    `resolve_log_likelihood_strategy`) runs the covariance-form filter.

    Args:
        params: model in square-root, time-expanded form.
        y: ``(T, p)`` observations; NaN entries are missing.
        strategy: evaluation strategy, as in `kalman_filter`.

    Returns:
        ``(T,)`` terms (NaN under the conditions where `kalman_filter` gives NaN).

    Raises:
        TypeError, ValueError: as `kalman_filter`.
    """
    params, y = _validated(params, y)
    strategy = resolve_log_likelihood_strategy(strategy, params, y)
    return _log_likelihood_terms(params, y, strategy=strategy, time_invariant=())


@partial(jax.jit, static_argnames=("strategy", "time_invariant"))
def _log_likelihood_terms(params, y, *, strategy, time_invariant: tuple[str, ...]):
    """`kalman_log_likelihood_terms` after validation; ``time_invariant`` names per-step
    fields known to be equal at every step (`LinearGaussianSSM` knows which it expanded)."""
    if isinstance(strategy, Sequential) and not strategy.square_root:
        terms = covariance_filter_terms(params, y, frozenset(time_invariant))
        return nan_unless(finite_flag(params, y), terms)
    return _filter(params, y, strategy=strategy).log_likelihood_terms


def kalman_filter(
    params: GaussianSSMParams,
    y: jax.Array,
    *,
    strategy: StrategyLike = "auto",
) -> FilterResult:
    """Square-root Kalman filter with the marginal log-likelihood.

    Args:
        params: model in square-root, time-expanded form.
        y: ``(T, p)`` observations; NaN entries are missing (skipped per component).
        strategy: evaluation strategy (`numpyro_parallel.strategy`); ``"auto"`` is the
            O(log T) `Associative()` scan on accelerators and, on CPU inputs, `Blocked()` for
            states of dimension below 4 and the classical sequential square-root filter
            (`Sequential()`) from 4 on (`kalman_cpu_strategy`). The filter is always in
            square-root form; only `kalman_log_likelihood_terms` (and so
            `LinearGaussianSSM.log_prob`) reads ``Sequential.square_root``.

    Returns:
        A `FilterResult`; all fields are NaN when a parameter is not finite or ``y`` holds
        inf under tracing (concrete values raise instead).

    Raises:
        TypeError: ``params`` is not a `GaussianSSMParams`, or complex/boolean arrays.
        ValueError: a field lacks the leading time axis or has the wrong shape, T = 0,
            non-finite parameters, ``y`` of the wrong shape or with inf entries.
    """
    params, y = _validated(params, y)
    return _filter(params, y, strategy=resolve_kalman_strategy(strategy, params, y))


def predicted_states(params: GaussianSSMParams, mean: jax.Array, chol: jax.Array):
    """``p(x_t | y_{0:t-1})`` for every t from the filtered ``p(x_{t-1} | y_{0:t-1})``."""
    F_in, c_in, chol_in = _shifted_transitions(params)
    prev_mean, prev_chol = shift_in(
        (jnp.zeros_like(mean[0]), jnp.zeros_like(chol[0])), (mean, chol)
    )
    return jax.vmap(predict)(F_in, c_in, chol_in, prev_mean, prev_chol)


@partial(jax.jit, static_argnames=("strategy",))
def _filter(params, y, *, strategy) -> FilterResult:
    ok = finite_flag(params, y)
    observations = _observations(params, y)
    if isinstance(strategy, Sharded):  # shifted and masked per device, inside the shard_map
        prior, transitions = _prior_and_transitions(params)
        mean, chol, terms, total = sharded_filter(prior, transitions, observations, strategy)
    else:
        H, d, chol_R, y0, num_missing = mask_missing(*observations)
        inputs = (*_shifted_transitions(params), H, d, chol_R, y0)
        if isinstance(strategy, Sequential):
            mean, chol, residual, innovation_chol = sequential_filter(*inputs)
            terms = terms_from_innovations(residual, innovation_chol, num_missing)
        else:
            elements = jax.vmap(filter_prepare)(*inputs)
            filtered = associative_scan(filter_combine, elements, strategy=strategy)
            mean, chol = filtered.b, filtered.U
            before = (jnp.zeros_like(mean[0]), jnp.zeros_like(chol[0]))
            terms = predictive_terms(inputs, num_missing, (mean, chol), before)
        total = jnp.sum(terms)
    out = (mean, chol, total, terms)
    return FilterResult(*(nan_unless(ok, a) for a in out))


def _smoother_elements(params: GaussianSSMParams, filtered: FilterResult):
    elements = jax.vmap(smoother_prepare)(
        params.transition_matrix[:-1],
        params.transition_offset[:-1],
        params.transition_chol[:-1],
        filtered.mean[:-1],
        filtered.chol[:-1],
    )
    d = filtered.mean.shape[-1]
    last = (jnp.zeros((1, d, d), filtered.mean.dtype), filtered.mean[-1:], filtered.chol[-1:])
    return jax.tree_util.tree_map(
        lambda a, b: jnp.concatenate([a, b]), elements, type(elements)(*last)
    )


def kalman_smoother(
    params: GaussianSSMParams,
    y: jax.Array,
    *,
    strategy: StrategyLike = "auto",
) -> SmootherResult:
    """Square-root Rauch–Tung–Striebel smoother.

    Args:
        params: model in square-root, time-expanded form.
        y: ``(T, p)`` observations; NaN entries are missing.
        strategy: evaluation strategy, as in `kalman_filter`.

    Returns:
        A `SmootherResult` (NaN under the conditions where `kalman_filter` gives NaN).

    Raises:
        TypeError, ValueError: as `kalman_filter`.
    """
    params, y = _validated(params, y)
    return _smoother(params, y, strategy=resolve_kalman_strategy(strategy, params, y))


@partial(jax.jit, static_argnames=("strategy",))
def _smoother(params, y, *, strategy) -> SmootherResult:
    if isinstance(strategy, Sharded):  # filter and smoother in one shard_map
        prior, transitions = _prior_and_transitions(params)
        mean, chol = sharded_smoother(prior, transitions, _observations(params, y), strategy)
        ok = finite_flag(params, y)
        return SmootherResult(nan_unless(ok, mean), nan_unless(ok, chol))
    filtered = _filter(params, y, strategy=strategy)
    elements = _smoother_elements(params, filtered)
    smoothed = associative_scan(smoother_combine, elements, strategy=strategy, reverse=True)
    return SmootherResult(smoothed.g, smoothed.L)
