"""Sigma-point rules (unit points and weights for ``N(0, I_d)``) for statistical linear regression.

- **Unscented** (Julier & Uhlmann): ``2 d + 1`` points, one weight may be negative.
- **Cubature** (spherical-radial, third degree): ``2 d`` points with equal weights.
- **Gauss–Hermite**: ``order^d`` tensor-product points, exact for polynomials of degree
  ``2 order - 1``.

References: Julier & Uhlmann (2004), "Unscented filtering and nonlinear estimation", Proc. IEEE;
Arasaratnam & Haykin (2009), "Cubature Kalman filters", IEEE TAC; Särkkä & Svensson (2023),
"Bayesian Filtering and Smoothing", 2nd ed., ch. 8.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import numpy as np

from numpyro_parallel._checks import check_finite

__all__ = [
    "SigmaPoints",
    "check_sigma_points",
    "cubature_points",
    "gauss_hermite_points",
    "sigma_points",
    "unscented_points",
]


class SigmaPoints(NamedTuple):
    """Unit sigma points of a cubature rule for ``N(0, I_d)``.

    Attributes:
        points: ``(n, d)`` unit points ``ξ_i``.
        weights: ``(n,)`` weights summing to one.
    """

    points: np.ndarray
    weights: np.ndarray


def unscented_points(dim: int, alpha: float = 1.0, kappa: float | None = None) -> SigmaPoints:
    """Unscented transform points (Julier & Uhlmann), ``2 d + 1`` of them.

    Exact for polynomials of degree 3. The default ``kappa = max(3 - d, 0)`` matches the
    fourth moment in one dimension and keeps all weights non-negative.

    Args:
        dim: state dimension d.
        alpha: spread parameter.
        kappa: secondary scaling parameter (default ``max(3 - d, 0)``).

    Returns:
        `SigmaPoints`.
    """
    kappa = float(max(3 - dim, 0)) if kappa is None else float(kappa)
    lam = alpha**2 * (dim + kappa) - dim
    if dim + lam <= 0:
        raise ValueError(
            f"`alpha` = {alpha} and `kappa` = {kappa} give d + lambda = {dim + lam} <= 0; "
            "increase either."
        )
    scale = math.sqrt(dim + lam)
    eye = np.eye(dim)
    points = np.concatenate([np.zeros((1, dim)), scale * eye, -scale * eye])
    weights = np.full(2 * dim + 1, 1.0 / (2.0 * (dim + lam)))
    weights[0] = lam / (dim + lam)
    return SigmaPoints(points, weights)


def cubature_points(dim: int) -> SigmaPoints:
    """Spherical-radial cubature points (Arasaratnam & Haykin), ``2 d`` of them; degree 3.

    Args:
        dim: state dimension d.

    Returns:
        `SigmaPoints`.
    """
    eye = math.sqrt(dim) * np.eye(dim)
    points = np.concatenate([eye, -eye])
    return SigmaPoints(points, np.full(2 * dim, 1.0 / (2 * dim)))


def gauss_hermite_points(dim: int, order: int = 3) -> SigmaPoints:
    """Tensor-product Gauss–Hermite points, ``order**d`` of them.

    Exact for polynomials of degree up to ``2 * order - 1`` in each coordinate.

    Args:
        dim: state dimension d.
        order: points per dimension.

    Returns:
        `SigmaPoints`.
    """
    if order < 1:
        raise ValueError(f"`order` must be a positive integer; got {order}.")
    nodes, weights_1d = np.polynomial.hermite_e.hermegauss(order)
    weights_1d = weights_1d / weights_1d.sum()
    points = np.array(list(itertools.product(nodes, repeat=dim)))
    weights = np.prod(np.array(list(itertools.product(weights_1d, repeat=dim))), axis=-1)
    return SigmaPoints(points.reshape(-1, dim), weights)


def sigma_points(method: str, dim: int, order: int = 3) -> SigmaPoints:
    """Sigma-point rule by name (``"unscented"``, ``"cubature"`` or ``"gauss_hermite"``).

    Args:
        method: rule name.
        dim: state dimension d.
        order: Gauss–Hermite points per dimension (ignored by the other rules).

    Returns:
        `SigmaPoints`.
    """
    if method == "unscented":
        return unscented_points(dim)
    if method == "cubature":
        return cubature_points(dim)
    if method == "gauss_hermite":
        return gauss_hermite_points(dim, order)
    raise ValueError(
        f"`method` must be one of 'unscented', 'cubature', 'gauss_hermite'; got {method!r}."
    )


def check_sigma_points(rule: SigmaPoints, dim: int, name: str = "method") -> SigmaPoints:
    """Validate a user-supplied sigma-point rule for dimension ``dim``.

    Args:
        rule: `SigmaPoints` with ``(n, d)`` points and ``(n,)`` finite weights summing to one.
        dim: state dimension d.
        name: argument name for the messages.

    Returns:
        The rule as float64 NumPy arrays.

    Raises:
        TypeError: not a `SigmaPoints`.
        ValueError: wrong shapes, non-finite entries or weights not summing to one.
    """
    if not isinstance(rule, SigmaPoints):
        raise TypeError(f"`{name}` must be a `SigmaPoints` rule; got {type(rule).__name__}.")
    try:
        points = np.asarray(rule.points, dtype=np.float64)
        weights = np.asarray(rule.weights, dtype=np.float64)
    except (TypeError, jax.errors.ConcretizationTypeError) as err:
        raise TypeError(f"`{name}` must hold concrete numeric points and weights.") from err
    if points.ndim != 2 or points.shape[1] != dim or points.shape[0] < 1:
        raise ValueError(
            f"`{name}.points` must have shape (n, d) with d = {dim}, n >= 1; got {points.shape}."
        )
    if weights.shape != (points.shape[0],):
        raise ValueError(
            f"`{name}.weights` must have shape (n,) = {(points.shape[0],)}; got {weights.shape}."
        )
    check_finite(f"{name}.points", points)
    check_finite(f"{name}.weights", weights)
    if abs(weights.sum() - 1.0) > 1e-8:
        raise ValueError(f"`{name}.weights` must sum to 1; they sum to {weights.sum():.12g}.")
    return SigmaPoints(points, weights)
