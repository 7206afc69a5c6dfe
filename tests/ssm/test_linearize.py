"""Sigma-point rules and linearisations (numpyro_parallel.ssm.nonlinear.linearize)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel.ssm.nonlinear.linearize import extended_linearize, linearize, slr_linearize
from numpyro_parallel.ssm.nonlinear.sigma_points import (
    cubature_points,
    gauss_hermite_points,
    unscented_points,
)
from tests.reference.nonlinear import gaussian_moment3


def _normal_moment(k):
    """E[z^k] for z ~ N(0, 1)."""
    return 0.0 if k % 2 else float(math.prod(range(k - 1, 0, -2)))


def _monomial_errors(rule, max_degree):
    """Max error of E[x_0^a x_1^b] over a + b <= max_degree (per-coordinate for GH)."""
    errors = {}
    for a, b in itertools.product(range(max_degree + 1), repeat=2):
        approx = np.sum(rule.weights * rule.points[:, 0] ** a * rule.points[:, 1] ** b)
        errors[(a, b)] = abs(approx - _normal_moment(a) * _normal_moment(b))
    return errors


@pytest.mark.parametrize("rule", [unscented_points(2), cubature_points(2)], ids=["ut", "cub"])
def test_degree3_rules_exact_to_degree_3_only(rule):
    errors = _monomial_errors(rule, 4)
    assert max(e for (a, b), e in errors.items() if a + b <= 3) < 1e-12
    assert np.isclose(rule.weights.sum(), 1.0)
    # Degree 4 is not integrated exactly by the cubature rule (E[x^2 y^2] = 1, it gives 0).
    if len(rule.weights) == 4:
        assert errors[(2, 2)] > 0.5


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_gauss_hermite_exact_to_order(order):
    rule = gauss_hermite_points(2, order)
    exact = 2 * order - 1
    errors = _monomial_errors(rule, exact + 1)
    assert max(e for (a, b), e in errors.items() if max(a, b) <= exact) < 1e-10
    assert errors[(exact + 1, 0)] > 1e-3  # degree 2 * order is not exact


@pytest.mark.parametrize("method", ["unscented", "cubature", "gauss_hermite"])
def test_rules_third_moments_of_general_gaussian(method):
    rng = np.random.default_rng(0)
    d = 3
    m = rng.normal(size=d)
    L = np.tril(rng.normal(size=(d, d))) + 2 * np.eye(d)
    rule = {
        "unscented": unscented_points,
        "cubature": cubature_points,
        "gauss_hermite": gauss_hermite_points,
    }[method](d)
    x = m + rule.points @ L.T
    approx = np.einsum("n,ni,nj,nk->ijk", rule.weights, x, x, x)
    np.testing.assert_allclose(approx, gaussian_moment3(m, L @ L.T), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["extended", "unscented", "cubature", "gauss_hermite"])
def test_affine_function_is_recovered_exactly(method):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(2, 3))
    b = rng.normal(size=2)
    m = jnp.asarray(rng.normal(size=3))
    L = jnp.asarray(np.tril(rng.normal(size=(3, 3))) + 2 * np.eye(3))
    lin = linearize(lambda x: A @ x + b, m, L, method)
    np.testing.assert_allclose(lin.matrix, A, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lin.offset, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lin.chol, 0.0, atol=1e-7)


def _naive_slr(fn, m, P, rule):
    L = np.linalg.cholesky(P)
    x = m + rule.points @ L.T
    ys = np.stack([np.asarray(fn(jnp.asarray(xi))) for xi in x])
    w = rule.weights
    ybar = w @ ys
    C = (x - m).T @ np.diag(w) @ (ys - ybar)
    S = (ys - ybar).T @ np.diag(w) @ (ys - ybar)
    A = C.T @ np.linalg.inv(P)
    return A, ybar - A @ m, S - A @ P @ A.T


@pytest.mark.parametrize(
    "rule",
    [cubature_points(2), gauss_hermite_points(2, 5), unscented_points(2, alpha=0.5)],
    ids=["cubature", "gh5", "ut-negative-weight"],
)
def test_slr_matches_covariance_form(rule):
    def fn(x):
        return jnp.stack([jnp.sin(x[0]) * x[1], jnp.exp(0.3 * x[1]), x[0] ** 2])

    m = np.array([0.4, -0.2])
    P = np.array([[0.5, 0.1], [0.1, 0.3]])
    A, b, Lam = _naive_slr(fn, m, P, rule)
    lin = slr_linearize(fn, jnp.asarray(m), jnp.linalg.cholesky(jnp.asarray(P)), rule)
    np.testing.assert_allclose(lin.matrix, A, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lin.offset, b, rtol=1e-10, atol=1e-12)
    if rule.weights.min() < 0:
        # A negative weight can make Λ indefinite: the factor is that of its PSD projection.
        w, v = np.linalg.eigh(Lam)
        assert w.min() < 0  # the case is a real test of the projection
        Lam = (v * np.clip(w, 0, None)) @ v.T
    np.testing.assert_allclose(lin.chol @ lin.chol.T, Lam, rtol=1e-8, atol=1e-10)
    assert np.all(np.triu(np.asarray(lin.chol), 1) == 0)


def test_extended_is_jacobian_and_float32():
    def fn(x):
        return jnp.stack([jnp.sin(x[0]) + x[1] ** 2, x[0] * x[1]])

    for dtype in (jnp.float64, jnp.float32):
        m = jnp.asarray([0.3, -1.2], dtype)
        lin = extended_linearize(fn, m)
        J = jax.jacfwd(fn)(m)
        assert lin.matrix.dtype == dtype
        np.testing.assert_allclose(lin.matrix, J, rtol=1e-6)
        np.testing.assert_allclose(lin.offset, fn(m) - J @ m, rtol=1e-5, atol=1e-6)
        lin_c = linearize(fn, m, 0.1 * jnp.eye(2, dtype=dtype), "cubature")
        assert lin_c.chol.dtype == dtype and bool(jnp.all(jnp.isfinite(lin_c.chol)))


def test_bad_method_and_order():
    with pytest.raises(ValueError, match="method"):
        linearize(jnp.sin, jnp.zeros(1), jnp.eye(1), "ukf")
    with pytest.raises(ValueError, match="order"):
        gauss_hermite_points(2, 0)
