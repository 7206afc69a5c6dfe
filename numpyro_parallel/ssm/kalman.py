"""Parallel-in-time square-root Kalman filter, RTS smoother and trajectory sampler.

Model (t = 0..T-1, 0-based as in the arrays)::

    x_0 ~ N(initial_mean, initial_cov)
    y_t = H_t x_t + d_t + v_t,          v_t ~ N(0, R_t)
    x_{t+1} = F_t x_t + c_t + w_t,      w_t ~ N(0, Q_t)

All functions take a `GaussianSSMParams` in square-root form with a leading time axis on every
per-step array (transition arrays ``[t]`` map ``x_t`` to ``x_{t+1}``; their last entry is
unused) and run in O(log T) depth with `parallel=True` or as a `lax.scan` with
``parallel=False`` — the same element and combine functions in both modes.

References: Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers";
Yaghoobi, Corenflos, Hassan & Särkkä (2022), "Parallel square-root statistical linear
regression for inference in nonlinear state space models".
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel.linalg import mvn_logpdf_from_cholesky, tria
from numpyro_parallel.scan import associative_scan
from numpyro_parallel.ssm.kalman_elements import (
    filter_combine,
    filter_prepare,
    predict,
    smoother_combine,
    smoother_prepare,
)

__all__ = [
    "FilterResult",
    "GaussianSSMParams",
    "SmootherResult",
    "kalman_filter",
    "kalman_sample_states",
    "kalman_smoother",
]


class GaussianSSMParams(NamedTuple):
    """Linear-Gaussian state-space model in square-root form, time-expanded.

    Attributes:
        initial_mean: ``(d,)``.
        initial_chol: ``(d, d)`` lower Cholesky factor of the initial covariance.
        transition_matrix: ``(T, d, d)``; entry t maps x_t to x_{t+1} (last unused).
        transition_offset: ``(T, d)``.
        transition_chol: ``(T, d, d)`` Cholesky factors of the transition covariances.
        observation_matrix: ``(T, p, d)``.
        observation_offset: ``(T, p)``.
        observation_chol: ``(T, p, p)`` Cholesky factors of the observation covariances.
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


def _check(params: GaussianSSMParams, y: jax.Array) -> tuple[int, int, int]:
    num_steps, p, d = params.observation_matrix.shape
    if y.shape != (num_steps, p):
        raise ValueError(f"`y` must have shape (num_steps, p) = {(num_steps, p)}; got {y.shape}.")
    return num_steps, d, p


def _mask_missing(params: GaussianSSMParams, y: jax.Array):
    """Zero out NaN components so that they drop out of every update (per component)."""
    observed = ~jnp.isnan(y)
    H = params.observation_matrix * observed[..., None]
    d = jnp.where(observed, params.observation_offset, 0.0)
    y = jnp.where(observed, y, 0.0)

    def decouple(chol_R):
        # chol of M R M + (I - M): missing components become independent unit noise.
        m = observed.astype(y.dtype)
        eye = jnp.eye(m.shape[-1], dtype=y.dtype)
        unit = jnp.einsum("ti,ij->tij", 1.0 - m, eye)
        return tria(jnp.concatenate([chol_R * m[..., None], unit], -1))

    chol_R = jax.lax.cond(jnp.all(observed), lambda c: c, decouple, params.observation_chol)
    num_missing = jnp.sum(~observed, axis=-1)
    return H, d, chol_R, y, num_missing


def _shifted_transitions(params: GaussianSSMParams):
    """Transitions *into* each step; step 0 receives the prior (F = 0, c = m0, Q = P0)."""
    F = params.transition_matrix
    first_F = jnp.zeros_like(F[:1])
    F_in = jnp.concatenate([first_F, F[:-1]])
    c_in = jnp.concatenate([params.initial_mean[None], params.transition_offset[:-1]])
    chol_in = jnp.concatenate([params.initial_chol[None], params.transition_chol[:-1]])
    return F_in, c_in, chol_in


@partial(jax.jit, static_argnames=("parallel", "block_size"))
def kalman_filter(
    params: GaussianSSMParams,
    y: jax.Array,
    *,
    parallel: bool = True,
    block_size: int | str | None = "auto",
) -> FilterResult:
    """Square-root Kalman filter with the marginal log-likelihood.

    Args:
        params: model in square-root, time-expanded form.
        y: ``(T, p)`` observations; NaN entries are missing (skipped per component).
        parallel: associative scan (O(log T) depth) when True, sequential scan otherwise.
        block_size: see `numpyro_parallel.scan.associative_scan`; ``"auto"`` uses the
            blocked strategy on CPU and the O(log T) associative scan on accelerators.

    Returns:
        A `FilterResult`.
    """
    _check(params, y)
    H, d, chol_R, y0, num_missing = _mask_missing(params, y)
    F_in, c_in, chol_in = _shifted_transitions(params)
    elements = jax.vmap(filter_prepare)(F_in, c_in, chol_in, H, d, chol_R, y0)
    filtered = associative_scan(filter_combine, elements, parallel=parallel, block_size=block_size)
    mean, chol = filtered.b, filtered.U
    # One-step-ahead predictive terms: embarrassingly parallel given the filtered states.
    prev_mean = jnp.concatenate([jnp.zeros_like(mean[:1]), mean[:-1]])
    prev_chol = jnp.concatenate([jnp.zeros_like(chol[:1]), chol[:-1]])
    pred_mean, pred_chol = jax.vmap(predict)(F_in, c_in, chol_in, prev_mean, prev_chol)
    innovation_chol = tria(jnp.concatenate([H @ pred_chol, chol_R], axis=-1))
    residual = y0 - jnp.einsum("tpd,td->tp", H, pred_mean) - d
    terms = mvn_logpdf_from_cholesky(residual, innovation_chol)
    terms = terms + 0.5 * math.log(2 * math.pi) * num_missing
    return FilterResult(mean, chol, jnp.sum(terms), terms)


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


@partial(jax.jit, static_argnames=("parallel", "block_size"))
def kalman_smoother(
    params: GaussianSSMParams,
    y: jax.Array,
    *,
    parallel: bool = True,
    block_size: int | str | None = "auto",
) -> SmootherResult:
    """Square-root Rauch–Tung–Striebel smoother.

    Args:
        params: model in square-root, time-expanded form.
        y: ``(T, p)`` observations; NaN entries are missing.
        parallel: associative scans when True, sequential scans otherwise.
        block_size: see `kalman_filter`.

    Returns:
        A `SmootherResult`.
    """
    filtered = kalman_filter(params, y, parallel=parallel, block_size=block_size)
    elements = _smoother_elements(params, filtered)
    smoothed = associative_scan(
        smoother_combine, elements, parallel=parallel, reverse=True, block_size=block_size
    )
    return SmootherResult(smoothed.g, smoothed.L)


def _affine(later, earlier):
    E1, g1 = later
    E2, g2 = earlier
    return E2 @ E1, E2 @ g1 + g2


@partial(jax.jit, static_argnames=("sample_shape", "parallel", "block_size"))
def kalman_sample_states(
    rng_key: jax.Array,
    params: GaussianSSMParams,
    y: jax.Array,
    sample_shape: tuple[int, ...] = (),
    *,
    parallel: bool = True,
    block_size: int | str | None = "auto",
) -> jax.Array:
    """Draw state trajectories from ``p(x_{0:T-1} | y)`` (forward-filter backward-sample).

    The backward pass ``x_t = E_t x_{t+1} + g_t + L_t eps_t`` is an affine recursion, solved
    by the same scan driver, so sampling is parallel in time as well.

    Args:
        rng_key: JAX PRNG key.
        params: model in square-root, time-expanded form.
        y: ``(T, p)`` observations; NaN entries are missing.
        sample_shape: leading shape of the returned draws.
        parallel: associative scans when True, sequential scans otherwise.
        block_size: see `kalman_filter`.

    Returns:
        ``(*sample_shape, T, d)`` trajectories.
    """
    filtered = kalman_filter(params, y, parallel=parallel, block_size=block_size)
    elements = _smoother_elements(params, filtered)
    num_steps, d = filtered.mean.shape
    eps = jax.random.normal(rng_key, (*sample_shape, num_steps, d), filtered.mean.dtype)

    def one(noise):
        offsets = elements.g + jnp.einsum("tij,tj->ti", elements.L, noise)
        _, states = associative_scan(
            _affine, (elements.E, offsets), parallel=parallel, reverse=True, block_size=block_size
        )
        return states

    flat = eps.reshape(-1, num_steps, d)
    return jax.vmap(one)(flat).reshape(*sample_shape, num_steps, d)
