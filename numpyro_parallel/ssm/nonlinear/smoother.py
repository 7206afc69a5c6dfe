"""Parallel iterated extended and sigma-point Kalman smoothers.

Model (t = 0..T-1, same convention as `numpyro_parallel.ssm.kalman.inference`)::

    x_0 ~ N(initial_mean, initial_chol initial_chol^T)
    x_{t+1} = f(x_t) + w_t,   w_t ~ N(0, Q_t)
    y_t     = h(x_t) + v_t,   v_t ~ N(0, R_t)

Each iteration linearises ``f`` and ``h`` around the current posterior approximation (a
trajectory for the extended/Taylor method, the smoothed marginals for statistical linear
regression), builds a time-varying `GaussianSSMParams` (SLR errors added to ``Q`` and ``R``
with `tria`) and runs the square-root Kalman smoother with the chosen ``strategy``
(O(log T) depth with `Associative()`). The extended variant is Gauss–Newton on the MAP
problem (Bell 1994); the sigma-point variants are iterated posterior linearisation
(García-Fernández et al. 2017).
Optional Levenberg–Marquardt damping (Särkkä & Svensson 2020) adds the pseudo-observation
``x_t^{(i)} ~ N(x_t, damping^{-1} I)`` of the previous iterate at every step.

References: Yaghoobi, Corenflos, Hassan & Särkkä (2021), "Parallel iterated extended and
sigma-point Kalman smoothers", ICASSP; Yaghoobi, Corenflos, Hassan & Särkkä (2022), "Parallel
square-root statistical linear regression for inference in nonlinear state space models";
Särkkä & Svensson (2020), "Levenberg–Marquardt and line-search extended Kalman smoothers".
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_finite, check_positive_int
from numpyro_parallel.fixed_point.iterate_map import iterate_map
from numpyro_parallel.ssm.kalman.inference import (
    kalman_cpu_strategy,
    kalman_filter,
    kalman_smoother,
)
from numpyro_parallel.ssm.nonlinear.checks import (
    check_method,
    check_model,
    check_observations,
    check_options,
)
from numpyro_parallel.ssm.nonlinear.linearization import (
    damped_model,
    filter_linearization,
    linearize_model,
)
from numpyro_parallel.ssm.nonlinear.model import (
    IteratedSmootherResult,
    NonlinearGaussianModel,
    warn_not_converged,
)
from numpyro_parallel.strategy import StrategyLike, resolve_strategy

__all__ = [
    "IteratedSmootherResult",
    "NonlinearGaussianModel",
    "check_model",
    "filter_linearization",
    "iterated_smoother",
    "linearize_model",
    "linearized_log_likelihood",
    "warn_not_converged",
]


def _check_inputs(model: NonlinearGaussianModel, y: Any, method: Any):
    check_method(method)
    y_array = jnp.asarray(y)
    if y_array.ndim != 2:
        raise ValueError(f"`y` must have shape (T, p); got {y_array.shape}.")
    if y_array.shape[0] < 1:
        raise ValueError(f"`y` must have at least one time step (T >= 1); got {y_array.shape}.")
    model = check_model(model, y_array.shape[0])
    y = check_observations(y_array, model.observation_chol.shape[-1])
    return model, y


def _cast(model: NonlinearGaussianModel, dtype) -> NonlinearGaussianModel:
    return model._replace(
        initial_mean=jnp.asarray(model.initial_mean, dtype),
        initial_chol=jnp.asarray(model.initial_chol, dtype),
        transition_chol=jnp.asarray(model.transition_chol, dtype),
        observation_chol=jnp.asarray(model.observation_chol, dtype),
    )


def _check_start(initial_trajectory, num_steps: int, d: int, dtype):
    """``"filter"``/``"prior"``, or the validated ``(mean, chol)`` arrays of a given start."""
    if isinstance(initial_trajectory, str):
        return initial_trajectory  # check_options rejected unknown names
    if isinstance(initial_trajectory, tuple) and len(initial_trajectory) == 2:
        mean, chol = (jnp.asarray(a, dtype) for a in initial_trajectory)
    else:
        mean = jnp.asarray(initial_trajectory, dtype)
        chol = None
    chol_shape = (num_steps, d, d) if chol is None else chol.shape
    if mean.shape != (num_steps, d) or chol_shape != (num_steps, d, d):
        raise ValueError(
            f"`initial_trajectory` must be a (T, d) = {(num_steps, d)} array or a (mean (T, d), "
            f"chol (T, d, d)) pair; got shapes {mean.shape} and {chol_shape}."
        )
    check_finite("initial_trajectory", mean)
    if chol is not None:
        check_finite("initial_trajectory", chol)
    return mean, chol


def _start_point(model, y, start, method, order, strategy):
    num_steps, d = y.shape[0], model.initial_mean.shape[0]
    chol0 = jnp.broadcast_to(model.initial_chol, (num_steps, d, d))
    if start == "prior":
        return jnp.broadcast_to(model.initial_mean, (num_steps, d)), chol0
    if start == "filter":
        params = filter_linearization(model, y, method, order)
        smoothed = kalman_smoother(params, y, strategy=strategy)
        return smoothed.mean, smoothed.chol
    mean, chol = start
    return mean, chol0 if chol is None else chol


def iterated_smoother(
    model: NonlinearGaussianModel,
    y: jax.Array,
    *,
    method: str = "extended",
    max_iterations: int = 50,
    atol: float | None = None,
    rtol: float = 0.0,
    damping: float | None = None,
    initial_trajectory: str | jax.Array | tuple[jax.Array, jax.Array] = "filter",
    order: int = 3,
    strategy: StrategyLike = "auto",
) -> IteratedSmootherResult:
    """Iterated extended / sigma-point Kalman smoother (parallel in time).

    Iterates the map "linearise around the current posterior, run the square-root Kalman
    smoother" with the fixed-point driver's whole-trajectory loop
    (`numpyro_parallel.fixed_point.iterate_map`) until every entry of the mean trajectory
    changes by at most ``atol + rtol |mean|`` or ``max_iterations`` iterations ran (the
    loop is always bounded). Every ``strategy`` gives the same iterates up to rounding;
    `Sequential()` is the sequential reference.

    Failure reporting: ``converged`` is False, and ``status`` says why, when the cap was
    reached first (``MAX_ITERATIONS``) or an iterate became non-finite (``NON_FINITE``: NaN
    inputs under `jax.jit`, a diverging Gauss–Newton step); outside `jit` a
    `RuntimeWarning` is emitted as well. Convergence is to *a* fixed point: a poor start
    (``initial_trajectory="prior"`` on a strongly nonlinear model) can converge to a wrong
    mode, which is why ``"filter"`` is the default.

    Args:
        model: a `NonlinearGaussianModel` (callables are closed over; jit a closure).
        y: ``(T, p)`` observations, ``T >= 1``; NaN entries are missing (inf is an error).
        method: ``"extended"`` (Gauss–Newton), ``"unscented"``, ``"cubature"`` or
            ``"gauss_hermite"`` (iterated posterior linearisation).
        max_iterations: maximum number of iterations (``>= 1``).
        atol: absolute tolerance (``>= 0``) on the change of the mean; default ``1e-6``
            (float64) or ``1e-4`` (float32): the smoother's fixed point is an estimate whose
            statistical error is far larger, unlike the fixed-point driver's recursions,
            which reproduce a sequential computation (default 1e-10). ``atol=0`` with
            ``rtol=0`` runs ``max_iterations`` iterations unless an exact fixed point is hit
            (then ``converged`` is usually False).
        rtol: relative tolerance (``>= 0``) of the same rule; default 0.
        damping: Levenberg–Marquardt strength ``λ > 0`` (pseudo-observation of the previous
            iterate with covariance ``I / λ``); ``None`` for plain Gauss–Newton. The fixed
            point (the MAP for ``"extended"``) does not depend on it.
        initial_trajectory: first linearisation point. ``"filter"`` (default): the classical
            (non-iterated) extended / sigma-point smoother, whose linearisation takes one
            sequential O(T) sweep (`filter_linearization`) and is robust for strongly
            nonlinear or ambiguous models; ``"prior"`` (fully parallel):
            ``N(initial_mean, initial_cov)`` at every step, which can converge to a wrong
            mode (e.g. a pendulum that goes over the top); or a ``(T, d)`` mean trajectory,
            or a ``(mean, chol)`` pair of ``(T, d)`` and ``(T, d, d)`` arrays.
        order: Gauss–Hermite points per dimension.
        strategy: evaluation strategy of the Kalman smoother (`numpyro_parallel.strategy`).

    Returns:
        An `IteratedSmootherResult`.

    Raises:
        ValueError, TypeError: concrete invalid inputs (the message names the argument).
    """
    check_options(
        method=method,
        max_iterations=max_iterations,
        atol=atol,
        rtol=rtol,
        damping=damping,
        order=order,
        initial_trajectory=initial_trajectory,
    )
    model, y = _check_inputs(model, y, method)
    strategy = resolve_strategy(
        strategy, y, cpu_strategy=kalman_cpu_strategy(model.initial_mean.shape[-1])
    )
    dtype = jnp.result_type(y.dtype, model.initial_mean.dtype, float)
    if atol is None:
        atol = 1e-6 if dtype == jnp.float64 else 1e-4
    y = y.astype(dtype)
    model = _cast(model, dtype)
    start = _check_start(initial_trajectory, y.shape[0], model.initial_mean.shape[0], dtype)
    functions = (model.transition_fn, model.observation_fn)

    def run(arrays, y, start_arrays):
        m0, chol_0, chol_q, chol_r = arrays
        model = NonlinearGaussianModel(m0, chol_0, functions[0], chol_q, functions[1], chol_r)
        start_point = start if isinstance(start, str) else start_arrays
        mean0, chol0 = _start_point(model, y, start_point, method, order, strategy)

        def step(mean, chol):
            params = linearize_model(model, mean, chol, method, order)
            obs = y
            if damping is not None:
                params, obs = damped_model(params, y, mean, damping)
            smoothed = kalman_smoother(params, obs, strategy=strategy)
            return smoothed.mean, smoothed.chol

        solved = iterate_map(
            lambda state: step(*state),
            (mean0, chol0),
            atol=atol,
            rtol=rtol,
            max_iterations=max_iterations,
            monitor_fn=lambda state: state[0],
        )
        mean, chol = solved.states
        return IteratedSmootherResult(
            mean, chol, solved.status, solved.converged, solved.num_iterations, solved.residual
        )

    # One compiled program (also when called eagerly); the model's arrays are arguments, not
    # embedded constants.
    arrays = (model.initial_mean, model.initial_chol, model.transition_chol, model.observation_chol)
    result = jax.jit(run)(arrays, y, None if isinstance(start, str) else start)
    warn_not_converged(result, max_iterations, atol)
    return result


def linearized_log_likelihood(
    model: NonlinearGaussianModel,
    y: jax.Array,
    mean: jax.Array,
    chol: jax.Array,
    *,
    method: str = "extended",
    order: int = 3,
    unrolled_steps: int = 0,
    strategy: StrategyLike = "auto",
) -> jax.Array:
    """Kalman log-likelihood of the model linearised around ``N(mean[t], chol[t] chol[t]^T)``.

    The given point is wrapped in `jax.lax.stop_gradient`; then ``unrolled_steps`` smoother
    iterations are applied (differentiably) before the final linearisation. With
    ``unrolled_steps=0`` gradients are those of the linearised likelihood at a fixed point;
    each unrolled step adds one term of the Neumann series of the implicit derivative of the
    fixed point (``dx*/dθ``), which Gauss–Newton makes small, so ``1`` already removes most
    of the neglected dependence. At convergence the value is unchanged (to ``atol``).

    Args:
        model: the model.
        y: ``(T, p)`` observations; NaN entries are missing.
        mean: ``(T, d)`` linearisation means (a converged smoother output).
        chol: ``(T, d, d)`` linearisation Cholesky factors (unused by ``"extended"``).
        method: linearisation method.
        order: Gauss–Hermite points per dimension.
        unrolled_steps: smoother iterations differentiated through (0, 1, 2, ...).
        strategy: evaluation strategy of the Kalman filter and smoother.

    Returns:
        ``()`` approximate log-likelihood.
    """
    check_positive_int("unrolled_steps", unrolled_steps, minimum=0)
    check_positive_int("order", order)
    model, y = _check_inputs(model, y, method)
    model = _cast(model, jnp.result_type(y.dtype, model.initial_mean.dtype, float))
    mean, chol = jax.lax.stop_gradient((mean, chol))
    for _ in range(unrolled_steps):
        params = linearize_model(model, mean, chol, method, order)
        smoothed = kalman_smoother(params, y, strategy=strategy)
        mean, chol = smoothed.mean, smoothed.chol
    params = linearize_model(model, mean, chol, method, order)
    return kalman_filter(params, y, strategy=strategy).log_likelihood
