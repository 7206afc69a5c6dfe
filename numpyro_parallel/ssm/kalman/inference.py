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

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import nan_unless
from numpyro_parallel.scan import associative_scan
from numpyro_parallel.ssm.kalman.checks import check_params_and_y, finite_flag
from numpyro_parallel.ssm.kalman.elements import (
    filter_combine,
    filter_prepare,
    predict,
    smoother_combine,
    smoother_prepare,
)
from numpyro_parallel.ssm.kalman.recursions import (
    mask_missing,
    predictive_terms,
    sequential_filter,
    sharded_filter,
    shift_in,
    terms_from_innovations,
)
from numpyro_parallel.strategy import (
    Blocked,
    Sequential,
    Sharded,
    Strategy,
    StrategyLike,
    resolve_strategy,
)

__all__ = [
    "FilterResult",
    "GaussianSSMParams",
    "SmootherResult",
    "kalman_filter",
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


def _shifted_transitions(params: GaussianSSMParams):
    """Transitions *into* each step; step 0 receives the prior (F = 0, c = m0, Q = P0)."""
    prior, transitions = _prior_and_transitions(params)
    return shift_in(prior, transitions)


SEQUENTIAL_MIN_STATE_DIM = 4


def resolve_kalman_strategy(strategy: StrategyLike, params: GaussianSSMParams, y) -> Strategy:
    """The concrete strategy of a Kalman recursion: ``"auto"`` is shape-aware on CPUs.

    On a CPU, `Sequential()` (the classical square-root filter, one triangularisation per
    step) for states of dimension `SEQUENTIAL_MIN_STATE_DIM` or more, `Blocked()` below; on
    accelerators `Associative()`. Measured on 2 cores (value and gradient of the
    log-likelihood, T = 10^3 and 10^4): Blocked is faster up to d = 3, Sequential from d = 4
    on (2.5-4x at d = 4..13).
    """
    cpu = kalman_cpu_strategy(jnp.shape(params.initial_mean)[-1])
    return resolve_strategy(strategy, y, cpu_strategy=cpu)


def kalman_cpu_strategy(state_dim: int) -> Strategy:
    """What ``"auto"`` means for a Kalman recursion on a CPU (see `resolve_kalman_strategy`)."""
    return Sequential() if state_dim >= SEQUENTIAL_MIN_STATE_DIM else Blocked()


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
            (`Sequential()`) from 4 on (`resolve_kalman_strategy`).

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
    observations = (
        params.observation_matrix,
        params.observation_offset,
        params.observation_chol,
        y,
    )
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
    filtered = _filter(params, y, strategy=strategy)
    elements = _smoother_elements(params, filtered)
    smoothed = associative_scan(smoother_combine, elements, strategy=strategy, reverse=True)
    return SmootherResult(smoothed.g, smoothed.L)
