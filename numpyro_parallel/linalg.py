"""Square-root linear algebra for Gaussian filters.

`tria` is the triangularisation used throughout square-root Kalman filtering (Arasaratnam &
Haykin 2008; Yaghoobi et al. 2022, "Parallel square-root statistical linear regression for
inference in nonlinear state space models"): given any ``M`` it returns the lower-triangular
``L`` with non-negative diagonal and ``L L^T = M M^T``, computed with a QR decomposition so that
the conditioning of ``M`` (not of ``M M^T``) governs the rounding error.

Its derivative is defined by a custom JVP, ``dL = L Phi(L^{-1} dS L^{-T})`` with
``dS = dM M^T + M dM^T``, that stays finite when ``M M^T`` is singular, where the derivative of
the QR decomposition is undefined and would poison gradients with NaN. It is exact for
non-singular ``M M^T`` and for the singular cases that filters produce (zero blocks such as the
first filtering element, zero rows such as noise-free state components); for other
rank-deficient inputs the factor is not differentiable and the JVP is merely finite.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

__all__ = [
    "cholesky",
    "cholesky_of",
    "mvn_logpdf_from_cholesky",
    "right_solve_lower",
    "solve_lower",
    "symmetrize",
    "tria",
]


_UNROLL_MAX = 6


def _tria_gram_schmidt(m: jax.Array) -> jax.Array:
    """LQ factor by modified Gram–Schmidt on the rows, unrolled for small ``n``.

    Every operation is elementwise over the batch and the row length, so XLA vectorises it
    instead of calling LAPACK once per tiny matrix; the triangular factor of MGS is
    backward stable like Householder's.
    """
    n = m.shape[-2]
    rows = [m[..., i, :] for i in range(n)]
    tiny = jnp.finfo(m.dtype).tiny
    columns = []
    for i in range(n):
        norm = jnp.sqrt(jnp.sum(rows[i] ** 2, axis=-1))
        safe = jnp.where(norm > tiny, norm, 1.0)
        q = jnp.where((norm > tiny)[..., None], rows[i] / safe[..., None], 0.0)
        column = [jnp.zeros_like(norm)] * i + [norm]
        for j in range(i + 1, n):
            proj = jnp.sum(rows[j] * q, axis=-1)
            rows[j] = rows[j] - proj[..., None] * q
            column.append(proj)
        columns.append(jnp.stack(column, axis=-1))
    return jnp.stack(columns, axis=-1)


def _tria_qr(m: jax.Array) -> jax.Array:
    n, k = m.shape[-2], m.shape[-1]
    if k < n:
        m = jnp.concatenate([m, jnp.zeros((*m.shape[:-1], n - k), m.dtype)], axis=-1)
    r = jnp.linalg.qr(jnp.swapaxes(m, -1, -2), mode="r")
    lower = jnp.swapaxes(r, -1, -2)
    signs = jnp.where(jnp.diagonal(lower, axis1=-2, axis2=-1) < 0, -1.0, 1.0).astype(m.dtype)
    return lower * signs[..., None, :]


def _tria_impl(m: jax.Array) -> jax.Array:
    if m.shape[-2] <= _UNROLL_MAX:
        return _tria_gram_schmidt(m)
    return _tria_qr(m)


@jax.custom_jvp
def tria(m: jax.Array) -> jax.Array:
    """Lower-triangular square root of ``m @ m.T`` (non-negative diagonal).

    Args:
        m: ``(..., n, k)`` matrix; any ``k`` (zero-padded to ``n`` when ``k < n``).

    Returns:
        ``(..., n, n)`` lower-triangular ``L`` with ``L @ L.T == m @ m.T``.
    """
    return _tria_impl(m)


def _safe_lower(lower: jax.Array) -> jax.Array:
    diag = jnp.diagonal(lower, axis1=-2, axis2=-1)
    tiny = jnp.finfo(lower.dtype).tiny
    fix = jnp.where(jnp.abs(diag) > tiny, 0.0, 1.0).astype(lower.dtype)
    eye = jnp.broadcast_to(jnp.eye(lower.shape[-1], dtype=lower.dtype), lower.shape)
    return lower + fix[..., None, :] * eye


@tria.defjvp
def _tria_jvp(primals, tangents):
    (m,), (dm,) = primals, tangents
    lower = _tria_impl(m)
    n = m.shape[-2]
    dm_full = dm
    if m.shape[-1] < n:  # pad like the primal so shapes line up
        pad = jnp.zeros((*m.shape[:-1], n - m.shape[-1]), m.dtype)
        m = jnp.concatenate([m, pad], axis=-1)
        dm_full = jnp.concatenate([dm, pad], axis=-1)
    safe = _safe_lower(lower)
    # Y = L^{-1} dM M^T L^{-T};  L^{-1} dL = Phi(Y + Y^T), Phi = lower part with halved diagonal.
    left = solve_triangular(safe, dm_full, lower=True)
    right = solve_triangular(safe, m, lower=True)
    y = left @ jnp.swapaxes(right, -1, -2)
    x = y + jnp.swapaxes(y, -1, -2)
    half_diagonal = jnp.tril(jnp.ones((n, n), m.dtype), -1) + 0.5 * jnp.eye(n, dtype=m.dtype)
    phi = x * jnp.broadcast_to(half_diagonal, x.shape)
    # Columns with a zero pivot carry no information: keep their tangent at zero.
    diag = jnp.diagonal(lower, axis1=-2, axis2=-1)
    keep = (jnp.abs(diag) > jnp.finfo(m.dtype).tiny).astype(m.dtype)
    d_lower = lower @ (phi * keep[..., None, :] * keep[..., :, None])
    return lower, d_lower


def _cholesky_unrolled(a: jax.Array) -> jax.Array:
    n = a.shape[-1]
    lower = [[None] * n for _ in range(n)]
    zero = jnp.zeros_like(a[..., 0, 0])
    for j in range(n):
        diag = a[..., j, j] - sum((lower[j][k] ** 2 for k in range(j)), zero)
        lower[j][j] = jnp.sqrt(diag)
        for i in range(j + 1, n):
            off = a[..., i, j] - sum((lower[i][k] * lower[j][k] for k in range(j)), zero)
            lower[i][j] = off / lower[j][j]
    rows = [jnp.stack([lower[i][j] if j <= i else zero for j in range(n)], -1) for i in range(n)]
    return jnp.stack(rows, axis=-2)


def cholesky(a: jax.Array) -> jax.Array:
    """Cholesky factor of a symmetric positive-definite matrix.

    Unrolled into elementwise operations for small matrices (vectorised over any batch, no
    per-matrix LAPACK call), `jnp.linalg.cholesky` otherwise. Plain autodiff applies.

    Args:
        a: ``(..., n, n)`` symmetric positive-definite matrix.

    Returns:
        ``(..., n, n)`` lower-triangular factor.
    """
    if a.shape[-1] <= _UNROLL_MAX:
        return _cholesky_unrolled(a)
    return jnp.linalg.cholesky(a)


def cholesky_of(cov: jax.Array) -> jax.Array:
    """Cholesky factor of a symmetric positive semi-definite matrix via `tria`.

    Unlike `jnp.linalg.cholesky` this returns a finite factor for singular (PSD) matrices,
    using an eigen-decomposition square root, so zero process noise in some state components
    (a common modelling choice) is accepted.

    Args:
        cov: ``(..., n, n)`` symmetric PSD matrix.

    Returns:
        ``(..., n, n)`` lower-triangular factor.
    """
    # The test runs on a gradient-free copy and the factor is taken inside the branch, so the
    # (NaN) derivative of a failed Cholesky never meets a zero cotangent.
    ok = jnp.all(jnp.isfinite(jnp.linalg.cholesky(jax.lax.stop_gradient(cov))))

    def fallback(c):
        w, v = jnp.linalg.eigh(symmetrize(c))
        positive = w > 0
        root = jnp.where(positive, jnp.sqrt(jnp.where(positive, w, 1.0)), 0.0)  # grad-safe
        return tria(v * root[..., None, :])

    # Only pay for the eigendecomposition when some factor failed.
    return jax.lax.cond(ok, jnp.linalg.cholesky, fallback, cov)


def symmetrize(a: jax.Array) -> jax.Array:
    """``(a + a^T) / 2`` on the last two axes."""
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def solve_lower(lower: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``lower @ x = b`` for lower-triangular ``lower`` (b a vector or matrix)."""
    if b.ndim == lower.ndim - 1:
        return solve_triangular(lower, b[..., None], lower=True)[..., 0]
    return solve_triangular(lower, b, lower=True)


def right_solve_lower(b: jax.Array, lower: jax.Array) -> jax.Array:
    """``b @ inv(lower)`` for lower-triangular ``lower`` (a gain ``Psi21 Psi11^{-1}``)."""
    return jnp.swapaxes(
        solve_triangular(lower, jnp.swapaxes(b, -1, -2), lower=True, trans=1), -1, -2
    )


def mvn_logpdf_from_cholesky(residual: jax.Array, chol: jax.Array) -> jax.Array:
    """Log-density of ``N(residual; 0, chol chol^T)``.

    Args:
        residual: ``(..., n)`` vector.
        chol: ``(..., n, n)`` lower-triangular factor of the covariance.

    Returns:
        ``(...)`` log-density.
    """
    n = residual.shape[-1]
    z = solve_lower(chol, residual)
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(chol, axis1=-2, axis2=-1))), axis=-1)
    return -0.5 * jnp.sum(z**2, axis=-1) - log_det - 0.5 * n * math.log(2 * math.pi)
