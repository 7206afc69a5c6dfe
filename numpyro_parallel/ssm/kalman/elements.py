"""Associative elements of the square-root Kalman filter, RTS smoother and FFBS sampler.

Filtering element t (Särkkä & García-Fernández 2021, "Temporal parallelization of Bayesian
smoothers", IEEE TAC; square-root form after Yaghoobi, Corenflos, Hassan & Särkkä 2022,
"Parallel square-root statistical linear regression for inference in nonlinear state space
models") represents

    p(x_t | x_{t-1}, y_t) = N(A x_{t-1} + b, U U^T),
    p(y_t | x_{t-1}) ∝ exp(-x^T J x / 2 + eta^T x),

as the tuple ``(A, b, U, eta, J)``; the first element has ``A = 0`` and carries the prior, so
every prefix combination is a filtering distribution ``N(b, U U^T)``. Smoothing element t is
``p(x_t | x_{t+1}, y_{0:t}) = N(E x_{t+1} + g, L L^T)``. Every covariance is carried as a
lower-triangular square root and recombined with `numpyro_parallel.linalg.tria`; the
information matrix J of the likelihood part is carried as a matrix, so that the only
factorisation in the combine is the Cholesky factor of ``I + U^T J U >= I``. A square-root J
would be rank-deficient whenever p < d, where triangular factors are not differentiable; this
mixed form keeps gradients exact in every scan strategy and makes the combine cheaper.

Every function here acts on a *single* time step; `numpyro_parallel.scan.associative_scan`
vmaps them and chooses between sequential and parallel evaluation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel.linalg import (
    _cholesky_spd,
    right_solve_lower,
    solve_lower,
    symmetrize,
    tria,
)

__all__ = [
    "FilterElement",
    "SmootherElement",
    "filter_combine",
    "filter_prepare",
    "filter_step",
    "predict",
    "smoother_combine",
    "smoother_prepare",
]


class FilterElement(NamedTuple):
    """Filtering element ``(A, b, U, eta, J)`` (see module docstring)."""

    A: jax.Array
    b: jax.Array
    U: jax.Array
    eta: jax.Array
    J: jax.Array


class SmootherElement(NamedTuple):
    """Square-root smoothing element ``(E, g, L)``: ``x_t = E x_{t+1} + g + L eps``."""

    E: jax.Array
    g: jax.Array
    L: jax.Array


def _joint_factor(H, chol_Q, chol_R):
    """``(Psi11, Psi21, Psi22)``: the triangular factor of the joint covariance of
    ``(y_t, x_t)`` under ``x_t ~ N(., chol_Q chol_Q^T)``, split at the observation dimension.

    ``Psi11`` factors the innovation covariance, ``Psi21 Psi11^{-1}`` is the Kalman gain and
    ``Psi22`` factors the conditional covariance of ``x_t`` given ``y_t``.
    """
    n, p = chol_Q.shape[-2], H.shape[-2]
    top = jnp.concatenate([H @ chol_Q, chol_R], axis=1)
    bottom = jnp.concatenate([chol_Q, jnp.zeros((n, chol_R.shape[-1]), chol_Q.dtype)], axis=1)
    psi = tria(jnp.concatenate([top, bottom], axis=0))
    return psi[:p, :p], psi[p:, :p], psi[p:, p:]


def filter_prepare(F, c, chol_Q, H, d, chol_R, y) -> FilterElement:
    """Filtering element for one step.

    ``x_t = F x_{t-1} + c + chol_Q w``, ``y_t = H x_t + d + chol_R v``. For the first step pass
    ``F = 0``, ``c = initial_mean`` and ``chol_Q = chol(initial_cov)``. Missing components of
    ``y`` must already be zeroed in ``y``, ``H`` and ``d`` and decoupled in ``chol_R``.

    Args:
        F: ``(n, n)`` transition matrix into this step.
        c: ``(n,)`` transition offset.
        chol_Q: ``(n, r)`` square root of the transition covariance (any width r).
        H: ``(p, n)`` observation matrix.
        d: ``(p,)`` observation offset.
        chol_R: ``(p, s)`` square root of the observation covariance (any width s).
        y: ``(p,)`` observation.

    Returns:
        The `FilterElement` of this step.
    """
    psi11, psi21, psi22 = _joint_factor(H, chol_Q, chol_R)
    gain = right_solve_lower(psi21, psi11)  # K = Psi21 Psi11^{-1}
    residual = y - H @ c - d
    A = F - gain @ (H @ F)
    b = c + gain @ residual
    z = solve_lower(psi11, H @ F).T  # F^T H^T Psi11^{-T}, shape (n, p)
    eta = z @ solve_lower(psi11, residual)
    return FilterElement(A, b, psi22, eta, z @ z.T)


def filter_step(mean, chol, F, c, chol_Q, H, d, chol_R, y):
    """One step of the sequential square-root filter: predict, then update, in one `tria`.

    The classical recursion (the `Sequential()` strategy's Kalman filter): from the filtered
    ``N(mean, chol chol^T)`` of the previous step, the predicted factor ``[F chol, chol_Q]``
    enters the joint factor of ``(y_t, x_t)`` directly, so each step triangularises one
    ``(p + n, n + r + s)`` matrix. Inputs as in `filter_prepare` (for the first step pass
    ``F = 0``, ``c = initial_mean``, ``chol_Q = chol(initial_cov)``).

    Args:
        mean: ``(n,)`` filtered mean of the previous step.
        chol: ``(n, n)`` square root of the previous filtered covariance.
        F: ``(n, n)`` transition matrix into this step.
        c: ``(n,)`` transition offset.
        chol_Q: ``(n, r)`` square root of the transition covariance.
        H: ``(p, n)`` observation matrix.
        d: ``(p,)`` observation offset.
        chol_R: ``(p, s)`` square root of the observation covariance.
        y: ``(p,)`` observation (missing components prepared as in `filter_prepare`).

    Returns:
        ``(mean, chol, residual, innovation_chol)``: this step's filtered moments, the
        one-step-ahead residual ``y - E[y_t | y_{0:t-1}]`` and the factor of its covariance.
    """
    predicted_chol = jnp.concatenate([F @ chol, chol_Q], axis=1)
    psi11, psi21, psi22 = _joint_factor(H, predicted_chol, chol_R)
    predicted_mean = F @ mean + c
    residual = y - H @ predicted_mean - d
    filtered_mean = predicted_mean + psi21 @ solve_lower(psi11, residual)
    return filtered_mean, psi22, residual, psi11


def filter_combine(earlier: FilterElement, later: FilterElement) -> FilterElement:
    """Associative combination of two filtering elements (earlier first)."""
    A1, b1, U1, eta1, J1 = earlier
    A2, b2, U2, eta2, J2 = later
    eye = jnp.eye(A1.shape[-1], dtype=A1.dtype)
    UJ = U1.T @ J2
    xi11 = _cholesky_spd(eye + UJ @ U1)  # >= I: always well conditioned, smooth derivatives
    xi21 = solve_lower(xi11, UJ).T  # J2 U1 Xi11^{-T}
    k = solve_lower(xi11, U1.T).T  # U1 Xi11^{-T}
    D = eye - k @ xi21.T  # (I + C1 J2)^{-1}
    J_marg = J2 - xi21 @ xi21.T  # (I + J2 C1)^{-1} J2
    A = A2 @ D @ A1
    b = A2 @ (D @ b1 + k @ (k.T @ eta2)) + b2
    U = tria(jnp.concatenate([A2 @ k, U2], axis=1))
    eta = A1.T @ (D.T @ eta2 - J_marg @ b1) + eta1
    J = symmetrize(A1.T @ J_marg @ A1) + J1
    return FilterElement(A, b, U, eta, J)


def predict(F, c, chol_Q, mean, chol) -> tuple[jax.Array, jax.Array]:
    """One-step prediction ``N(F mean + c, F P F^T + Q)`` in square-root form.

    Args:
        F: ``(n, n)`` transition matrix.
        c: ``(n,)`` transition offset.
        chol_Q: ``(n, r)`` square root of the transition covariance (any width r).
        mean: ``(n,)`` current mean.
        chol: ``(n, n)`` square root of the current covariance.

    Returns:
        Predicted mean and covariance square root.
    """
    return F @ mean + c, tria(jnp.concatenate([F @ chol, chol_Q], axis=1))


def smoother_prepare(F, c, chol_Q, mean, chol) -> SmootherElement:
    """Smoothing element from a filtering distribution and the next transition.

    Args:
        F: ``(n, n)`` transition matrix out of this step.
        c: ``(n,)`` transition offset.
        chol_Q: ``(n, r)`` square root of the transition covariance (any width r).
        mean: ``(n,)`` filtered mean at this step.
        chol: ``(n, n)`` square root of the filtered covariance.

    Returns:
        The `SmootherElement` of ``p(x_t | x_{t+1}, y_{0:t})``.
    """
    n = F.shape[-1]
    top = jnp.concatenate([F @ chol, chol_Q], axis=1)
    bottom = jnp.concatenate([chol, jnp.zeros((n, chol_Q.shape[-1]), chol.dtype)], axis=1)
    theta = tria(jnp.concatenate([top, bottom], axis=0))
    theta11, theta21, theta22 = theta[:n, :n], theta[n:, :n], theta[n:, n:]
    E = right_solve_lower(theta21, theta11)  # P F^T (F P F^T + Q)^{-1}
    g = mean - E @ (F @ mean + c)
    return SmootherElement(E, g, theta22)


def smoother_combine(later: SmootherElement, earlier: SmootherElement) -> SmootherElement:
    """Associative combination of two smoothing elements (later first, for reverse scans)."""
    E1, g1, L1 = later
    E2, g2, L2 = earlier
    return SmootherElement(E2 @ E1, E2 @ g1 + g2, tria(jnp.concatenate([E2 @ L1, L2], axis=1)))
