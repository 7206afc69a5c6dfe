"""Parallel iterated extended and sigma-point Kalman smoothers.

Model (t = 0..T-1, same convention as `numpyro_parallel.ssm.kalman`)::

    x_0 ~ N(initial_mean, initial_chol initial_chol^T)
    x_{t+1} = f(x_t) + w_t,   w_t ~ N(0, Q_t)
    y_t     = h(x_t) + v_t,   v_t ~ N(0, R_t)

Each iteration linearises ``f`` and ``h`` around the current posterior approximation (a
trajectory for the extended/Taylor method, the smoothed marginals for statistical linear
regression), builds a time-varying `GaussianSSMParams` (SLR errors added to ``Q`` and ``R``
with `tria`) and runs the square-root Kalman smoother, in O(log T) depth when
``parallel=True``. The extended variant is Gauss–Newton on the MAP problem (Bell 1994); the
sigma-point variants are iterated posterior linearisation (García-Fernández et al. 2017).
Optional Levenberg–Marquardt damping (Särkkä & Svensson 2020) adds the pseudo-observation
``x_t^{(i)} ~ N(x_t, damping^{-1} I)`` of the previous iterate at every step.

References: Yaghoobi, Corenflos, Hassan & Särkkä (2021), "Parallel iterated extended and
sigma-point Kalman smoothers", ICASSP; Yaghoobi, Corenflos, Hassan & Särkkä (2022), "Parallel
square-root statistical linear regression for inference in nonlinear state space models";
Särkkä & Svensson (2020), "Levenberg–Marquardt and line-search extended Kalman smoothers".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel.linalg import tria
from numpyro_parallel.ssm.kalman import GaussianSSMParams, kalman_filter, kalman_smoother
from numpyro_parallel.ssm.kalman_elements import filter_prepare, predict
from numpyro_parallel.ssm.linearize import METHODS, linearize

__all__ = [
    "IteratedSmootherResult",
    "NonlinearGaussianModel",
    "check_model",
    "filter_linearization",
    "iterated_smoother",
    "linearize_model",
    "linearized_log_likelihood",
]


class NonlinearGaussianModel(NamedTuple):
    """Nonlinear state-space model with additive Gaussian noise (square-root form).

    Attributes:
        initial_mean: ``(d,)`` mean of ``x_0``.
        initial_chol: ``(d, d)`` Cholesky factor of the covariance of ``x_0``.
        transition_fn: ``f: (d,) -> (d,)``; ``x_{t+1} = f(x_t) + w_t``.
        transition_chol: ``(d, d)`` or ``(T, d, d)`` Cholesky factor(s) of ``Q``.
        observation_fn: ``h: (d,) -> (p,)``; ``y_t = h(x_t) + v_t``.
        observation_chol: ``(p, p)`` or ``(T, p, p)`` Cholesky factor(s) of ``R``.
    """

    initial_mean: jax.Array
    initial_chol: jax.Array
    transition_fn: Callable[[jax.Array], jax.Array]
    transition_chol: jax.Array
    observation_fn: Callable[[jax.Array], jax.Array]
    observation_chol: jax.Array


class IteratedSmootherResult(NamedTuple):
    """Output of `iterated_smoother`.

    Attributes:
        mean: ``(T, d)`` smoothed means of the final linearised model.
        chol: ``(T, d, d)`` Cholesky factors of the smoothed covariances.
        converged: ``()`` bool, ``change <= tol`` within ``num_iterations``.
        num_iterations: ``()`` int, iterations run.
        change: ``()`` max-abs change of the mean trajectory in the last iteration.
    """

    mean: jax.Array
    chol: jax.Array
    converged: jax.Array
    num_iterations: jax.Array
    change: jax.Array

    @property
    def cov(self) -> jax.Array:
        """``(T, d, d)`` smoothed covariances."""
        return self.chol @ jnp.swapaxes(self.chol, -1, -2)


def _time_expand(name: str, chol: jax.Array, num_steps: int, dim: int) -> jax.Array:
    chol = jnp.asarray(chol)
    if chol.shape == (dim, dim):
        return jnp.broadcast_to(chol, (num_steps, dim, dim))
    if chol.shape == (num_steps, dim, dim):
        return chol
    raise ValueError(
        f"`{name}` must have shape {(dim, dim)} or {(num_steps, dim, dim)}; got {chol.shape}."
    )


def check_model(model: NonlinearGaussianModel, num_steps: int) -> NonlinearGaussianModel:
    """Validate shapes (at trace time) and time-expand the noise factors.

    Args:
        model: the model.
        num_steps: number of time steps T.

    Returns:
        The model with ``(T, ., .)`` noise factors.
    """
    mean = jnp.asarray(model.initial_mean)
    if mean.ndim != 1:
        raise ValueError(f"`initial_mean` must have shape (d,); got {mean.shape}.")
    d = mean.shape[0]
    if jnp.shape(model.initial_chol) != (d, d):
        raise ValueError(
            f"`initial_chol` must have shape (d, d) = {(d, d)}; "
            f"got {jnp.shape(model.initial_chol)}."
        )
    f_out = jax.eval_shape(model.transition_fn, mean)
    if f_out.shape != (d,):
        raise ValueError(
            f"`transition_fn` must map (d,) = {(d,)} to (d,); it returns {f_out.shape}."
        )
    h_out = jax.eval_shape(model.observation_fn, mean)
    if len(h_out.shape) != 1:
        raise ValueError(f"`observation_fn` must map (d,) to (p,); it returns {h_out.shape}.")
    p = h_out.shape[0]
    return model._replace(
        initial_mean=mean,
        transition_chol=_time_expand("transition_chol", model.transition_chol, num_steps, d),
        observation_chol=_time_expand("observation_chol", model.observation_chol, num_steps, p),
    )


def _add_error(error_chol: jax.Array, noise_chol: jax.Array) -> jax.Array:
    return tria(jnp.concatenate([error_chol, noise_chol], axis=-1))


def linearize_model(
    model: NonlinearGaussianModel,
    mean: jax.Array,
    chol: jax.Array,
    method: str = "extended",
    order: int = 3,
) -> GaussianSSMParams:
    """Linearise ``f`` and ``h`` around ``N(mean[t], chol[t] chol[t]^T)`` at every step.

    Args:
        model: the model, noise factors time-expanded (see `check_model`).
        mean: ``(T, d)`` linearisation means (the trajectory for ``"extended"``).
        chol: ``(T, d, d)`` linearisation Cholesky factors (unused by ``"extended"``).
        method: ``"extended"``, ``"unscented"``, ``"cubature"`` or ``"gauss_hermite"``.
        order: Gauss–Hermite points per dimension.

    Returns:
        The time-varying linear-Gaussian model as `GaussianSSMParams`.
    """

    def one(m, c):
        lin_f = linearize(model.transition_fn, m, c, method, order)
        lin_h = linearize(model.observation_fn, m, c, method, order)
        return lin_f, lin_h

    lin_f, lin_h = jax.vmap(one)(mean, chol)
    if method == "extended":  # Taylor: no linearisation error
        transition_chol, observation_chol = model.transition_chol, model.observation_chol
    else:
        transition_chol = _add_error(lin_f.chol, model.transition_chol)
        observation_chol = _add_error(lin_h.chol, model.observation_chol)
    return GaussianSSMParams(
        initial_mean=model.initial_mean,
        initial_chol=jnp.asarray(model.initial_chol, mean.dtype),
        transition_matrix=lin_f.matrix,
        transition_offset=lin_f.offset,
        transition_chol=transition_chol,
        observation_matrix=lin_h.matrix,
        observation_offset=lin_h.offset,
        observation_chol=observation_chol,
    )


def filter_linearization(
    model: NonlinearGaussianModel,
    y: jax.Array,
    method: str = "extended",
    order: int = 3,
) -> GaussianSSMParams:
    """Linearisation of a (non-iterated) extended / sigma-point Kalman filter, sequentially.

    One `lax.scan` sweep: ``h`` is linearised around the predicted Gaussian and ``f`` around
    the filtered Gaussian of each step, exactly as the classical EKF/UKF does; the returned
    linear model's Kalman smoother is therefore the classical EKS/URTS smoother. The sweep
    is O(T) sequential (cheap per step) and is the robust starting point of the iterations
    (``initial_trajectory="filter"``).

    Args:
        model: the model, noise factors time-expanded (see `check_model`).
        y: ``(T, p)`` observations; NaN entries are missing.
        method: linearisation method.
        order: Gauss–Hermite points per dimension.

    Returns:
        The linearised model as `GaussianSSMParams`.
    """
    d = model.initial_mean.shape[0]

    def step(carry, inputs):
        pred_mean, pred_chol = carry
        y_t, chol_Q, chol_R = inputs
        lin_h = linearize(model.observation_fn, pred_mean, pred_chol, method, order)
        obs_chol = chol_R if method == "extended" else _add_error(lin_h.chol, chol_R)
        observed = ~jnp.isnan(y_t)
        mask = observed.astype(pred_mean.dtype)
        eye = jnp.eye(y_t.shape[-1], dtype=pred_mean.dtype)
        element = filter_prepare(
            jnp.zeros((d, d), pred_mean.dtype),
            pred_mean,
            pred_chol,
            lin_h.matrix * mask[:, None],
            lin_h.offset * mask,
            tria(jnp.concatenate([obs_chol * mask[:, None], eye * (1.0 - mask)[:, None]], -1)),
            jnp.where(observed, y_t, 0.0),
        )
        lin_f = linearize(model.transition_fn, element.b, element.U, method, order)
        trans_chol = chol_Q if method == "extended" else _add_error(lin_f.chol, chol_Q)
        next_pred = predict(lin_f.matrix, lin_f.offset, trans_chol, element.b, element.U)
        outputs = (lin_f.matrix, lin_f.offset, trans_chol, lin_h.matrix, lin_h.offset, obs_chol)
        return next_pred, outputs

    init = (model.initial_mean, jnp.asarray(model.initial_chol, model.initial_mean.dtype))
    _, (F, c, chol_Q, H, offset, chol_R) = jax.lax.scan(
        step, init, (y, model.transition_chol, model.observation_chol)
    )
    return GaussianSSMParams(model.initial_mean, init[1], F, c, chol_Q, H, offset, chol_R)


def _damped(params: GaussianSSMParams, y: jax.Array, anchor: jax.Array, damping):
    """Append the pseudo-observation ``anchor_t = x_t + N(0, I / damping)``."""
    num_steps, d = anchor.shape
    p = y.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(d, dtype=anchor.dtype), (num_steps, d, d))
    H = jnp.concatenate([params.observation_matrix, eye], axis=-2)
    offset = jnp.concatenate([params.observation_offset, jnp.zeros_like(anchor)], axis=-1)
    top = jnp.concatenate(
        [params.observation_chol, jnp.zeros((num_steps, p, d), anchor.dtype)], axis=-1
    )
    bottom = jnp.concatenate(
        [jnp.zeros((num_steps, d, p), anchor.dtype), eye / jnp.sqrt(damping)], axis=-1
    )
    chol = jnp.concatenate([top, bottom], axis=-2)
    params = params._replace(observation_matrix=H, observation_offset=offset, observation_chol=chol)
    return params, jnp.concatenate([y, anchor], axis=-1)


def _check_inputs(model, y, method):
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    y = jnp.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"`y` must have shape (T, p); got {y.shape}.")
    model = check_model(model, y.shape[0])
    p = jax.eval_shape(model.observation_fn, model.initial_mean).shape[0]
    if y.shape[1] != p:
        raise ValueError(
            f"`y` must have shape (T, p) with p = {p} (from `observation_fn`); got {y.shape}."
        )
    return model, y


def _cast(model: NonlinearGaussianModel, dtype) -> NonlinearGaussianModel:
    return model._replace(
        initial_mean=jnp.asarray(model.initial_mean, dtype),
        initial_chol=jnp.asarray(model.initial_chol, dtype),
        transition_chol=jnp.asarray(model.transition_chol, dtype),
        observation_chol=jnp.asarray(model.observation_chol, dtype),
    )


def _initial_point(model, y, initial_trajectory, dtype, method, order, parallel, block_size):
    num_steps = y.shape[0]
    d = model.initial_mean.shape[0]
    chol0 = jnp.broadcast_to(jnp.asarray(model.initial_chol, dtype), (num_steps, d, d))
    if isinstance(initial_trajectory, str):
        if initial_trajectory == "prior":
            return jnp.broadcast_to(model.initial_mean.astype(dtype), (num_steps, d)), chol0
        if initial_trajectory == "filter":
            params = filter_linearization(model, y, method, order)
            smoothed = kalman_smoother(params, y, parallel=parallel, block_size=block_size)
            return smoothed.mean, smoothed.chol
        raise ValueError(
            "`initial_trajectory` must be 'prior', 'filter', a (T, d) array or a (mean, chol) "
            f"pair; got {initial_trajectory!r}."
        )
    if isinstance(initial_trajectory, tuple):
        mean, chol = (jnp.asarray(a, dtype) for a in initial_trajectory)
    else:
        mean, chol = jnp.asarray(initial_trajectory, dtype), chol0
    if mean.shape != (num_steps, d) or chol.shape != (num_steps, d, d):
        raise ValueError(
            f"`initial_trajectory` must be a (T, d) = {(num_steps, d)} array or a (mean (T, d), "
            f"chol (T, d, d)) pair; got shapes {mean.shape} and {chol.shape}."
        )
    return mean, chol


def iterated_smoother(
    model: NonlinearGaussianModel,
    y: jax.Array,
    *,
    method: str = "extended",
    num_iterations: int = 20,
    tol: float | None = None,
    damping: float | None = None,
    initial_trajectory: str | jax.Array | tuple[jax.Array, jax.Array] = "prior",
    order: int = 3,
    parallel: bool = True,
    block_size: int | str | None = "auto",
) -> IteratedSmootherResult:
    """Iterated extended / sigma-point Kalman smoother (parallel in time).

    Iterates "linearise around the current posterior, run the square-root Kalman smoother"
    in a `lax.while_loop` until the max-abs change of the mean trajectory is ``<= tol`` or
    ``num_iterations`` iterations ran. ``parallel=False`` is the sequential counterpart (the
    same loop with sequential scans); both give the same iterates up to rounding.

    Args:
        model: a `NonlinearGaussianModel` (callables are closed over; jit a closure).
        y: ``(T, p)`` observations; NaN entries are missing.
        method: ``"extended"`` (Gauss–Newton), ``"unscented"``, ``"cubature"`` or
            ``"gauss_hermite"`` (iterated posterior linearisation).
        num_iterations: maximum number of iterations.
        tol: convergence tolerance on the max-abs change of the mean; default
            ``1e-6`` (float64) or ``1e-4`` (float32). ``0`` runs exactly ``num_iterations``.
        damping: Levenberg–Marquardt strength ``λ > 0`` (pseudo-observation of the previous
            iterate with covariance ``I / λ``); ``None`` for plain Gauss–Newton. The fixed
            point (the MAP for ``"extended"``) does not depend on it.
        initial_trajectory: first linearisation point. ``"prior"`` (default, fully
            parallel): ``N(initial_mean, initial_cov)`` at every step; ``"filter"``: the
            classical (non-iterated) extended / sigma-point smoother, whose linearisation
            takes one sequential O(T) sweep (`filter_linearization`) but is far more robust
            for strongly nonlinear or ambiguous models; or a ``(T, d)`` mean trajectory, or a
            ``(mean, chol)`` pair of ``(T, d)`` and ``(T, d, d)`` arrays.
        order: Gauss–Hermite points per dimension.
        parallel: O(log T) associative scans when True, sequential scans otherwise.
        block_size: passed to `kalman_smoother`.

    Returns:
        An `IteratedSmootherResult`.
    """
    model, y = _check_inputs(model, y, method)
    dtype = jnp.result_type(y.dtype, model.initial_mean.dtype, float)
    if tol is None:
        tol = 1e-6 if dtype == jnp.float64 else 1e-4
    if num_iterations < 1:
        raise ValueError(f"`num_iterations` must be >= 1; got {num_iterations}.")
    if damping is not None and not damping > 0:
        raise ValueError(f"`damping` must be positive or None; got {damping}.")
    y = y.astype(dtype)
    model = _cast(model, dtype)
    mean0, chol0 = _initial_point(
        model, y, initial_trajectory, dtype, method, order, parallel, block_size
    )

    def step(mean, chol):
        params = linearize_model(model, mean, chol, method, order)
        obs = y
        if damping is not None:
            params, obs = _damped(params, y, mean, damping)
        smoothed = kalman_smoother(params, obs, parallel=parallel, block_size=block_size)
        return smoothed.mean, smoothed.chol

    def cond(carry):
        i, _, _, change = carry
        return (i < num_iterations) & (change > tol)

    def body(carry):
        i, mean, chol, _ = carry
        new_mean, new_chol = step(mean, chol)
        change = jnp.max(jnp.abs(new_mean - mean))
        # A non-finite iterate stops the loop (reported as not converged).
        change = jnp.where(jnp.isfinite(change), change, -jnp.inf)
        return i + 1, new_mean, new_chol, change

    init = (jnp.asarray(0), mean0, chol0, jnp.asarray(jnp.inf, dtype))
    i, mean, chol, change = jax.lax.while_loop(cond, body, init)
    finite = jnp.isfinite(change)
    change = jnp.where(finite, change, jnp.nan)
    return IteratedSmootherResult(mean, chol, finite & (change <= tol), i, change)


def linearized_log_likelihood(
    model: NonlinearGaussianModel,
    y: jax.Array,
    mean: jax.Array,
    chol: jax.Array,
    *,
    method: str = "extended",
    order: int = 3,
    unrolled_steps: int = 0,
    parallel: bool = True,
    block_size: int | str | None = "auto",
) -> jax.Array:
    """Kalman log-likelihood of the model linearised around ``N(mean[t], chol[t] chol[t]^T)``.

    The given point is wrapped in `jax.lax.stop_gradient`; then ``unrolled_steps`` smoother
    iterations are applied (differentiably) before the final linearisation. With
    ``unrolled_steps=0`` gradients are those of the linearised likelihood at a fixed point;
    each unrolled step adds one term of the Neumann series of the implicit derivative of the
    fixed point (``dx*/dθ``), which Gauss–Newton makes small, so ``1`` already removes most
    of the neglected dependence. At convergence the value is unchanged (to ``tol``).

    Args:
        model: the model.
        y: ``(T, p)`` observations; NaN entries are missing.
        mean: ``(T, d)`` linearisation means (a converged smoother output).
        chol: ``(T, d, d)`` linearisation Cholesky factors (unused by ``"extended"``).
        method: linearisation method.
        order: Gauss–Hermite points per dimension.
        unrolled_steps: smoother iterations differentiated through (0, 1, 2, ...).
        parallel: parallel scans when True.
        block_size: passed to the Kalman filter and smoother.

    Returns:
        ``()`` approximate log-likelihood.
    """
    model, y = _check_inputs(model, y, method)
    model = _cast(model, jnp.result_type(y.dtype, model.initial_mean.dtype, float))
    mean, chol = jax.lax.stop_gradient((mean, chol))
    for _ in range(unrolled_steps):
        params = linearize_model(model, mean, chol, method, order)
        smoothed = kalman_smoother(params, y, parallel=parallel, block_size=block_size)
        mean, chol = smoothed.mean, smoothed.chol
    params = linearize_model(model, mean, chol, method, order)
    return kalman_filter(params, y, parallel=parallel, block_size=block_size).log_likelihood
