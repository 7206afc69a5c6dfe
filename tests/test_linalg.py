"""Square-root helpers: `tria` is a valid factor, has correct and finite derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from numpyro_parallel import linalg


@pytest.mark.parametrize("shape", [(3, 5), (4, 2), (2, 2), (8, 9), (2, 3, 6)])
def test_tria_is_lower_triangular_factor(shape):
    m = jax.random.normal(jax.random.PRNGKey(0), shape)
    lower = linalg.tria(m)
    n = shape[-2]
    assert lower.shape == (*shape[:-1], n)
    np.testing.assert_allclose(lower, jnp.tril(lower), atol=0)
    assert np.all(np.diagonal(lower, axis1=-2, axis2=-1) >= 0)
    gram = m @ jnp.swapaxes(m, -1, -2)
    np.testing.assert_allclose(lower @ jnp.swapaxes(lower, -1, -2), gram, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 5), (7, 7)])  # unrolled and LAPACK paths
def test_tria_gradients(shape):
    m = jax.random.normal(jax.random.PRNGKey(1), shape)
    check_grads(linalg.tria, (m,), order=1, modes=["fwd", "rev"])


def test_tria_gradient_exact_for_zero_and_structurally_singular_input():
    # Zero matrices and zero rows are the singular cases the filters produce (first element,
    # noise-free state components); sum(L**2) = trace(M M^T) has gradient 2 M there.
    for m in (jnp.zeros((3, 3)), jnp.array([[1.0, 2.0], [0.0, 0.0]])):
        grad = jax.grad(lambda x: jnp.sum(linalg.tria(x) ** 2))(m)
        np.testing.assert_allclose(grad, 2 * m, atol=1e-12)


def test_tria_gradient_finite_for_general_rank_deficient_input():
    # Dependent non-zero rows: the factor is not differentiable there; we promise finiteness.
    grad = jax.grad(lambda x: jnp.sum(linalg.tria(x) ** 2))(jnp.array([[1.0, 2.0], [2.0, 4.0]]))
    assert np.all(np.isfinite(grad))


def test_tria_float32_accuracy():
    m = jax.random.normal(jax.random.PRNGKey(2), (4, 6), dtype=jnp.float32)
    lower = linalg.tria(m)
    assert lower.dtype == jnp.float32
    np.testing.assert_allclose(lower @ lower.T, m @ m.T, rtol=1e-5, atol=1e-5)


def test_solves_and_logpdf():
    lower = linalg.tria(jax.random.normal(jax.random.PRNGKey(3), (3, 3)))
    b = jnp.arange(3.0)
    np.testing.assert_allclose(lower @ linalg.solve_lower(lower, b), b, atol=1e-12)
    mat = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(linalg.right_solve_lower(mat, lower) @ lower, mat, atol=1e-12)
    cov = lower @ lower.T
    expected = jax.scipy.stats.multivariate_normal.logpdf(b, jnp.zeros(3), cov)
    np.testing.assert_allclose(linalg.mvn_logpdf_from_cholesky(b, lower), expected, rtol=1e-12)


@pytest.mark.parametrize("n", [1, 3, 8])  # unrolled and LAPACK paths
def test_cholesky_matches_lapack_and_differentiates(n):
    a = jax.random.normal(jax.random.PRNGKey(n), (4, n, n))
    spd = a @ jnp.swapaxes(a, -1, -2) + jnp.broadcast_to(jnp.eye(n), a.shape)
    np.testing.assert_allclose(linalg.cholesky(spd), jnp.linalg.cholesky(spd), rtol=1e-12)
    check_grads(lambda s: linalg.cholesky(linalg.symmetrize(s)), (spd[0],), order=1, modes=["rev"])


def test_cholesky_small_and_large_agree_on_invalid_input():
    # The unrolled path (n <= 6) read only the lower triangle: an asymmetric matrix gave a
    # finite factor, and an indefinite one a half-finite one, where LAPACK's path gives NaN.
    for n in (2, 8):
        asym = jnp.eye(n).at[0, n - 1].set(5.0)
        assert np.all(np.isnan(np.asarray(linalg.cholesky(asym))[np.tril_indices(n)]))
        indefinite = jnp.eye(n).at[1, 1].set(-1.0)
        assert np.all(np.isnan(np.asarray(linalg.cholesky(indefinite))[np.tril_indices(n)]))
    a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
    np.testing.assert_allclose(linalg.cholesky(a), jnp.linalg.cholesky(a), rtol=1e-12)
    np.testing.assert_allclose(linalg.cholesky(jnp.eye(2, dtype=jnp.int32)), jnp.eye(2))


def test_linalg_inputs_lists_integers_empty_and_broadcast_batches():
    np.testing.assert_allclose(linalg.tria([[3.0, 4.0]]), [[5.0]])
    np.testing.assert_allclose(linalg.tria(jnp.eye(2, dtype=jnp.int32)), jnp.eye(2))
    np.testing.assert_allclose(linalg.solve_lower([[2.0, 0.0], [0.0, 4.0]], [2.0, 2.0]), [1, 0.5])
    np.testing.assert_allclose(linalg.symmetrize([[1.0, 2.0], [0.0, 1.0]]), [[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="`m` must be a matrix"):
        linalg.tria(jnp.ones((0, 0)))
    with pytest.raises(ValueError, match="`cov` must be a square matrix"):
        linalg.cholesky_of(jnp.ones((0, 0)))
    # residual (4, 2) against one (2, 2) factor: the batch axes broadcast.
    chol = jnp.array([[2.0, 0.0], [1.0, 1.0]])
    residual = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
    logpdf = jax.scipy.stats.multivariate_normal.logpdf
    expected = jax.vmap(lambda r: logpdf(r, jnp.zeros(2), chol @ chol.T))(residual)
    np.testing.assert_allclose(linalg.mvn_logpdf_from_cholesky(residual, chol), expected)
    with pytest.raises(ValueError, match="do not broadcast"):
        linalg.mvn_logpdf_from_cholesky(jnp.zeros((4, 2)), jnp.broadcast_to(chol, (3, 2, 2)))
