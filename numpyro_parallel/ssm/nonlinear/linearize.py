"""Linearisation of nonlinear Gaussian conditionals in square-root form.

A conditional ``z = g(x) + noise`` is approximated, around a Gaussian ``N(m, L L^T)`` for ``x``,
by an affine Gaussian model::

    g(x) ≈ A x + b + e,    e ~ N(0, Λ),    Λ = chol chol^T

- **Extended (first-order Taylor)**: ``A = ∂g/∂x (m)``, ``b = g(m) - A m``, ``Λ = 0``
  (the covariance ``L`` is ignored).
- **Statistical linear regression (SLR)** with sigma points ``X_i = m + L ξ_i`` and weights
  ``w_i`` (unscented, cubature, Gauss–Hermite): ``A = C^T P^{-1}`` with the cross-covariance
  ``C = Σ w_i (X_i - m)(g(X_i) - ḡ)^T``, ``b = ḡ - A m`` and residual covariance
  ``Λ = Σ w_i r_i r_i^T`` with ``r_i = g(X_i) - ḡ - A (X_i - m)``. When all weights are
  non-negative its Cholesky factor is ``tria([√w_i r_i]_i)``: no covariance is ever formed.

References: Yaghoobi, Corenflos, Hassan & Särkkä (2021), "Parallel iterated extended and
sigma-point Kalman smoothers", ICASSP; Yaghoobi, Corenflos, Hassan & Särkkä (2022), "Parallel
square-root statistical linear regression for inference in nonlinear state space models";
Särkkä & Svensson (2023), "Bayesian Filtering and Smoothing", 2nd ed., ch. 9-10.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import check_finite, check_positive_int
from numpyro_parallel.linalg import psd_projection_factor, tria
from numpyro_parallel.ssm.nonlinear.sigma_points import (
    SigmaPoints,
    check_sigma_points,
    sigma_points,
)

__all__ = [
    "METHODS",
    "AffineGaussian",
    "extended_linearize",
    "linearize",
    "slr_linearize",
]

METHODS = ("extended", "unscented", "cubature", "gauss_hermite")


class AffineGaussian(NamedTuple):
    """Affine Gaussian approximation ``g(x) ≈ matrix x + offset + N(0, chol chol^T)``.

    Attributes:
        matrix: ``(q, d)`` linear part.
        offset: ``(q,)`` offset.
        chol: ``(q, q)`` lower Cholesky factor of the linearisation error covariance.
    """

    matrix: jax.Array
    offset: jax.Array
    chol: jax.Array


def extended_linearize(fn: Callable[[jax.Array], jax.Array], mean: jax.Array) -> AffineGaussian:
    """First-order Taylor linearisation of ``fn`` at ``mean``.

    Args:
        fn: function ``(d,) -> (q,)``.
        mean: ``(d,)`` linearisation point.

    Returns:
        `AffineGaussian` with a zero error factor.
    """
    matrix, value = jax.jacfwd(lambda x: (lambda v: (v, v))(fn(x)), has_aux=True)(mean)
    offset = value - matrix @ mean
    q = value.shape[-1]
    return AffineGaussian(matrix, offset, jnp.zeros((q, q), value.dtype))


def slr_linearize(
    fn: Callable[[jax.Array], jax.Array],
    mean: jax.Array,
    chol: jax.Array,
    rule: SigmaPoints,
) -> AffineGaussian:
    """Statistical linear regression of ``fn`` under ``N(mean, chol chol^T)`` (square root).

    Args:
        fn: function ``(d,) -> (q,)``.
        mean: ``(d,)`` mean of the linearisation Gaussian.
        chol: ``(d, d)`` lower Cholesky factor of its covariance (must be non-singular).
        rule: unit sigma points and weights.

    Returns:
        `AffineGaussian`.
    """
    dtype = mean.dtype
    xi = jnp.asarray(rule.points, dtype)
    w = jnp.asarray(rule.weights, dtype)
    dx = xi @ chol.T  # (n, d): X_i - m
    values = jax.vmap(fn)(mean[None, :] + dx)  # (n, q)
    value_mean = w @ values
    dv = values - value_mean[None, :]
    # A = C^T P^{-1} with P = L L^T and C = Σ w dx dv^T = L (Σ w ξ dv^T).
    cross_unit = (xi * w[:, None]).T @ dv  # (d, q) = L^{-1} C
    # L^{-T} (L^{-1} C) solved with one triangular solve on the transpose.
    matrix = jax.scipy.linalg.solve_triangular(chol, cross_unit, lower=True, trans=1).T
    offset = value_mean - matrix @ mean
    residual = dv - dx @ matrix.T  # (n, q)
    if np.all(rule.weights >= 0):
        err_chol = tria((jnp.sqrt(w)[:, None] * residual).T)
    else:  # negative unscented weight: form the covariance, factor its PSD projection
        err_chol = psd_projection_factor((residual.T * w[None, :]) @ residual)
    return AffineGaussian(matrix, offset, err_chol)


def _check_function(fn, mean):
    if not callable(fn):
        raise TypeError(f"`fn` must be a callable (d,) -> (q,); got {type(fn).__name__}.")
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct(mean.shape, mean.dtype))
    except Exception as err:  # report which argument failed, keep the cause
        raise ValueError(
            f"`fn` failed when called on an array of shape {mean.shape}: {err}"
        ) from err
    if not isinstance(out, jax.ShapeDtypeStruct) or out.ndim != 1:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"`fn` must return a vector (q,); it returns {shape}.")


def linearize(
    fn: Callable[[jax.Array], jax.Array],
    mean: jax.Array,
    chol: jax.Array,
    method: str | SigmaPoints = "extended",
    order: int = 3,
) -> AffineGaussian:
    """Linearise ``fn`` around ``N(mean, chol chol^T)`` with the named method or a custom rule.

    Concrete invalid inputs raise (naming the argument); under tracing a NaN ``mean`` or
    ``chol`` gives a NaN `AffineGaussian`.

    Args:
        fn: function ``(d,) -> (q,)``.
        mean: ``(d,)`` linearisation mean.
        chol: ``(d, d)`` Cholesky factor (non-singular for sigma points; ignored by
            ``"extended"``, may be None there).
        method: ``"extended"``, ``"unscented"``, ``"cubature"``, ``"gauss_hermite"``, or a
            `SigmaPoints` rule (unit points for ``N(0, I_d)``, weights summing to one) for
            statistical linear regression with that rule.
        order: Gauss–Hermite points per dimension.

    Returns:
        `AffineGaussian`.

    Raises:
        TypeError, ValueError: invalid ``fn``, ``mean``, ``chol``, ``method`` or ``order``.
    """
    mean = jnp.asarray(mean)
    if mean.ndim != 1 or mean.shape[0] < 1:
        raise ValueError(f"`mean` must have shape (d,) with d >= 1; got {mean.shape}.")
    if not jnp.issubdtype(mean.dtype, jnp.inexact):
        mean = mean.astype(float)
    check_finite("mean", mean)
    _check_function(fn, mean)
    check_positive_int("order", order)
    if isinstance(method, SigmaPoints):
        rule = check_sigma_points(method, mean.shape[0])
    elif isinstance(method, str) and method in METHODS:
        rule = None
    else:
        raise ValueError(f"`method` must be one of {METHODS} or a SigmaPoints; got {method!r}.")
    if method == "extended":
        return extended_linearize(fn, mean)
    chol = jnp.asarray(chol, mean.dtype) if chol is not None else chol
    if chol is None or chol.shape != (mean.shape[0],) * 2:
        raise ValueError(
            f"`chol` must have shape (d, d) = {(mean.shape[0],) * 2}; "
            f"got {None if chol is None else chol.shape}."
        )
    check_finite("chol", chol)
    if rule is None:
        rule = sigma_points(method, mean.shape[-1], order)
    return slr_linearize(fn, mean, chol, rule)
