"""Linearisation of a `NonlinearGaussianModel` into a time-varying linear-Gaussian model.

- `linearize_model`: every step around given Gaussians (one parallel iteration's linearisation);
- `filter_linearization`: the classical extended / sigma-point Kalman filter's linearisation
  (one sequential sweep), the default starting point of `iterated_smoother`;
- `damped_model`: the Levenberg–Marquardt pseudo-observation of the previous iterate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from numpyro_parallel.linalg import tria
from numpyro_parallel.ssm.kalman.elements import filter_prepare, predict
from numpyro_parallel.ssm.kalman.inference import GaussianSSMParams
from numpyro_parallel.ssm.nonlinear.linearize import linearize

if TYPE_CHECKING:
    from numpyro_parallel.ssm.nonlinear.smoother import NonlinearGaussianModel

__all__ = ["damped_model", "filter_linearization", "linearize_model"]


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


def damped_model(
    params: GaussianSSMParams, y: jax.Array, anchor: jax.Array, damping: float
) -> tuple[GaussianSSMParams, jax.Array]:
    """Append the pseudo-observation ``anchor_t = x_t + N(0, I / damping)`` to every step.

    Args:
        params: the linearised model.
        y: ``(T, p)`` observations.
        anchor: ``(T, d)`` previous iterate.
        damping: Levenberg–Marquardt strength ``λ > 0``.

    Returns:
        The augmented model and the ``(T, p + d)`` augmented observations.
    """
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
