"""Square-root linear algebra for Gaussian filters.

`tria` is the triangularisation used throughout square-root Kalman filtering (Arasaratnam &
Haykin 2008; Yaghoobi et al. 2022, "Parallel square-root statistical linear regression for
inference in nonlinear state space models"): given any ``M`` it returns the lower-triangular
``L`` with non-negative diagonal and ``L L^T = M M^T``, computed by modified Gram–Schmidt on the
rows of ``M`` so that the conditioning of ``M`` (not of ``M M^T``) governs the rounding error.

Rank-deficient inputs are the rule in state-space models (process noise of rank r < d, the
zero first filtering element). A row of ``M`` whose residual after orthogonalisation is at
rounding level is treated as dependent: its pivot and the column below it are exactly zero, so
the factor is the unique zero-pivot-safe one and does not depend on rounding noise. The custom
JVP, ``dL = L~ Psi`` with ``Psi = Phi(L~^{-1} dS L~^{-T})`` restricted to the non-zero pivot
columns (``L~``: ``L`` with unit diagonal at zero pivots, ``dS = dM M^T + M dM^T``), is then
the exact derivative along every path that keeps the pivot pattern (full rank, zero rows or
blocks, rank-r factors with non-zero leading pivots), and finite everywhere.

`cholesky_of` factors a positive *semi*-definite covariance with the same zero-pivot rule and
exact derivatives; an invalid covariance (NaN, asymmetric, indefinite) gives a NaN factor, never
a clipped one.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import solve_triangular

__all__ = [
    "cholesky",
    "cholesky_of",
    "mvn_logpdf_from_cholesky",
    "psd_projection_factor",
    "right_solve_lower",
    "solve_lower",
    "symmetrize",
    "tria",
]


_UNROLL_MAX = 6
_RANK_TOL = 10.0  # rank tolerance in units of n * eps (pivots below it are zero)
_CHECK_TOL = 100.0  # validity tolerance in units of n * eps (as `_checks.check_covariance`)


def _check_square(name: str, a: jax.Array) -> None:
    if a.ndim < 2 or a.shape[-1] != a.shape[-2] or a.shape[-1] < 1:
        raise ValueError(
            f"`{name}` must be a square matrix (..., n, n) with n >= 1; got shape {a.shape}."
        )


def _as_floating(a) -> jax.Array:
    """``a`` as an array, integer and bool entries promoted to the default float dtype."""
    a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.inexact):
        a = a.astype(jnp.zeros(()).dtype)
    return a


def _batched(fn, x: jax.Array, core_ndim: int) -> jax.Array:
    """Apply ``fn`` (defined on one matrix) over any leading batch axes of ``x``."""
    batch = x.shape[: x.ndim - core_ndim]
    if not batch:
        return fn(x)
    out = jax.vmap(fn)(x.reshape(-1, *x.shape[len(batch) :]))
    return out.reshape(*batch, *out.shape[1:])


def _mgs(m: jax.Array) -> jax.Array:
    """LQ factor of one ``(n, k)`` matrix by modified Gram–Schmidt, zero pivots for dependent
    rows. Unrolled for small ``n``, a `lax.fori_loop` otherwise; the triangular factor of MGS is
    backward stable like Householder's."""
    n, k = m.shape
    eps = jnp.finfo(m.dtype).eps
    row_norms = jnp.sqrt(jnp.sum(jnp.where(jnp.isfinite(m), m, 0.0) ** 2, axis=-1))
    threshold = _RANK_TOL * max(n, k) * eps * row_norms + jnp.finfo(m.dtype).tiny
    index = jnp.arange(n)

    def step(i, carry):
        rows, lower = carry
        row = rows[i]
        norm = jnp.sqrt(jnp.sum(row**2))
        ok = norm > threshold[i]
        q = jnp.where(ok, row / jnp.where(ok, norm, 1.0), 0.0)
        proj = jnp.where(index > i, rows @ q, 0.0)
        rows = rows - proj[:, None] * q[None, :]
        column = proj + jnp.where(index == i, jnp.where(ok, norm, 0.0), 0.0)
        lower = lower + column[:, None] * (index == i)[None, :].astype(m.dtype)
        return rows, lower

    finite = jnp.all(jnp.isfinite(m))
    init = (jnp.where(finite, m, 0.0), jnp.zeros((n, n), m.dtype))
    lower = lax.fori_loop(0, n, step, init, unroll=n <= _UNROLL_MAX)[1]
    return jnp.where(finite, lower, jnp.nan)  # NaN in, NaN out: never a silent zero


def _tria_gram_schmidt(m: jax.Array) -> jax.Array:
    return _batched(_mgs, m, 2)


def tria(m: jax.Array) -> jax.Array:
    """Lower-triangular square root of ``m @ m.T`` (non-negative diagonal).

    Args:
        m: ``(..., n, k)`` matrix; any width ``k`` (a rank-deficient factor is fine).

    Returns:
        ``(..., n, n)`` lower-triangular ``L`` with ``L @ L.T == m @ m.T``; a pivot is exactly
        zero where row j of ``m`` depends on the rows before it (to rounding); NaN when ``m``
        holds NaN or inf.
    """
    m = _as_floating(m)
    if m.ndim < 2 or m.shape[-2] < 1:
        raise ValueError(f"`m` must be a matrix (..., n, k) with n >= 1; got shape {m.shape}.")
    return _tria(m)


@jax.custom_jvp
def _tria(m: jax.Array) -> jax.Array:
    """`tria` on a checked floating matrix, with the exact derivative of the module docstring."""
    return _tria_gram_schmidt(m)


def _tria_tangent(m: jax.Array, dm: jax.Array, lower: jax.Array) -> jax.Array:
    n = m.shape[0]
    keep = (jnp.diagonal(lower) > 0).astype(m.dtype)
    eye = jnp.eye(n, dtype=m.dtype)
    safe = lower + (1.0 - keep)[None, :] * eye  # unit diagonal at zero pivots
    # X = L~^{-1} dS L~^{-T} with dS = dM M^T + M dM^T, written as Y + Y^T.
    left = solve_triangular(safe, dm, lower=True)
    right = solve_triangular(safe, m, lower=True)
    y = left @ right.T
    x = y + y.T
    half_diagonal = jnp.tril(jnp.ones((n, n), m.dtype), -1) + 0.5 * eye
    # Phi: lower part, halved diagonal; zero-pivot columns carry no tangent, while rows of
    # zero pivots keep their (dependent) part through the unit diagonal of L~.
    return safe @ (x * half_diagonal * keep[None, :])


@_tria.defjvp
def _tria_jvp(primals, tangents):
    (m,), (dm,) = primals, tangents
    lower = _tria_gram_schmidt(m)
    if m.ndim == 2:
        return lower, _tria_tangent(m, dm, lower)
    batch = m.shape[:-2]
    flat = lambda a: a.reshape(-1, *a.shape[-2:])
    tangent = jax.vmap(_tria_tangent)(flat(m), flat(dm), flat(lower))
    return lower, tangent.reshape(*batch, *tangent.shape[1:])


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
    per-matrix LAPACK call), `jnp.linalg.cholesky` otherwise. Plain autodiff applies. Both
    paths factor the symmetric part ``(a + a^T) / 2``, as `jnp.linalg.cholesky` does.

    Args:
        a: ``(..., n, n)`` symmetric positive-definite matrix.

    Returns:
        ``(..., n, n)`` lower-triangular factor; all NaN for a matrix that is not positive
        definite (or holds NaN/inf).
    """
    a = _as_floating(a)
    _check_square("a", a)
    if a.shape[-1] > _UNROLL_MAX:
        return jnp.linalg.cholesky(a)
    lower = _cholesky_unrolled(symmetrize(a))
    diagonal = jnp.diagonal(lower, axis1=-2, axis2=-1)
    valid = jnp.all((diagonal > 0) & jnp.isfinite(diagonal), axis=-1)[..., None, None]
    return jnp.where(valid, lower, jnp.nan)


def _cholesky_spd(a: jax.Array) -> jax.Array:
    """`cholesky` without its input handling, for a floating ``a`` that is symmetric positive
    definite by construction (the Kalman combine's ``I + U^T J U``): reads the lower triangle,
    with no symmetrisation or validity mask on the filter's hot path."""
    if a.shape[-1] > _UNROLL_MAX:
        return jnp.linalg.cholesky(a)
    return _cholesky_unrolled(a)


def _psd_cholesky_single(cov: jax.Array) -> jax.Array:
    """Zero-pivot-safe Cholesky of one matrix with validity checks (NaN factor if invalid)."""
    n = cov.shape[-1]
    dtype = cov.dtype
    eps = jnp.finfo(dtype).eps
    finite = jnp.all(jnp.isfinite(cov))
    cov = jnp.where(finite, cov, 0.0)
    scale = lax.stop_gradient(jnp.max(jnp.abs(cov)))
    rank_tol = _RANK_TOL * n * eps * scale
    check_tol = _CHECK_TOL * n * eps * scale
    valid = finite & (jnp.max(jnp.abs(cov - cov.T)) <= check_tol)
    index = jnp.arange(n)

    def step(j, carry):
        schur, lower, valid = carry
        column = schur[:, j]
        pivot = column[j]
        below = index > j
        positive = pivot > rank_tol
        # A (near-)zero pivot needs a (near-)zero column: |s_ij|^2 <= s_ii s_jj for PSD.
        room = check_tol * (jnp.abs(jnp.diagonal(schur)) + check_tol)
        spill = jnp.any(below & (column**2 > room))
        valid = valid & ~((pivot < -check_tol) | (~positive & spill))
        root = jnp.sqrt(jnp.where(positive, pivot, 1.0))
        new = jnp.where(positive & below, column / root, 0.0)
        new = new + jnp.where(positive & (index == j), root, 0.0)
        schur = schur - new[:, None] * new[None, :]
        lower = lower + new[:, None] * (index == j)[None, :].astype(dtype)
        return schur, lower, valid

    init = (0.5 * (cov + cov.T), jnp.zeros_like(cov), valid)
    _, lower, valid = lax.fori_loop(0, n, step, init, unroll=n <= 2 * _UNROLL_MAX)
    return jnp.where(valid, lower, jnp.nan)


def _psd_cholesky(cov: jax.Array) -> jax.Array:
    return _batched(_psd_cholesky_single, cov, 2)


_psd_cholesky_jit = jax.jit(_psd_cholesky)  # compiled once per shape: cheap eager calls


def cholesky_of(cov: jax.Array) -> jax.Array:
    """Lower-triangular factor of a symmetric positive semi-definite covariance.

    A zero-pivot-safe Cholesky: where a pivot is zero to rounding (singular covariances, e.g.
    noise on only some state components), its column is exactly zero, and the derivative is
    exact along every path that keeps the zero pattern (``diag(q, 0, 0)`` as a function of
    ``q``, zero blocks, rank-r covariances with non-zero leading pivots). Works under `jit`,
    `grad` and `vmap`; outside them the compiled factorisation is cached per shape.

    Invalid covariances are never repaired: when ``cov`` holds NaN or inf, is asymmetric beyond
    rounding, or is indefinite (a clearly negative pivot, or a zero pivot with a non-zero
    column) the factor is all NaN, so every log-density computed from it is NaN. Callers with
    concrete values should raise instead (`numpyro_parallel._checks.check_covariance`).

    Args:
        cov: ``(..., n, n)`` symmetric PSD matrix (or stack).

    Returns:
        ``(..., n, n)`` lower-triangular ``L`` with ``L @ L.T == cov`` (to rounding), NaN for
        invalid matrices.
    """
    cov = jnp.asarray(cov)
    if not jnp.issubdtype(cov.dtype, jnp.floating):
        cov = cov.astype(jnp.zeros(()).dtype)
    _check_square("cov", cov)
    return _psd_cholesky_jit(cov)


def psd_projection_factor(cov: jax.Array) -> jax.Array:
    """Lower-triangular factor of the PSD projection of a symmetric matrix (eigenvalues < 0
    clipped to 0).

    For matrices that are indefinite by construction, such as quadrature estimates with a
    negative weight (unscented transform); a user covariance must use `cholesky_of`, which
    gives NaN instead of repairing it. NaN/inf entries give a NaN factor.

    Args:
        cov: ``(..., n, n)`` symmetric matrix.

    Returns:
        ``(..., n, n)`` lower-triangular ``L`` with ``L @ L.T`` the PSD projection of ``cov``.
    """
    cov = jnp.asarray(cov)
    _check_square("cov", cov)
    finite = jnp.all(jnp.isfinite(cov), axis=(-2, -1))[..., None, None]
    w, v = jnp.linalg.eigh(symmetrize(jnp.where(finite, cov, 0.0)))
    positive = w > 0
    root = jnp.where(positive, jnp.sqrt(jnp.where(positive, w, 1.0)), 0.0)
    return jnp.where(finite, tria(v * root[..., None, :]), jnp.nan)


def symmetrize(a: jax.Array) -> jax.Array:
    """``(a + a^T) / 2`` on the last two axes."""
    a = jnp.asarray(a)
    _check_square("a", a)
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def solve_lower(lower: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``lower @ x = b`` for lower-triangular ``lower`` (b a vector or matrix)."""
    lower, b = jnp.asarray(lower), jnp.asarray(b)
    _check_square("lower", lower)
    rows = b.shape[-1] if b.ndim == lower.ndim - 1 else (b.shape[-2] if b.ndim >= 2 else None)
    if rows != lower.shape[-1]:
        raise ValueError(f"`b` of shape {b.shape} does not match `lower` of shape {lower.shape}.")
    if b.ndim == lower.ndim - 1:
        return solve_triangular(lower, b[..., None], lower=True)[..., 0]
    return solve_triangular(lower, b, lower=True)


def right_solve_lower(b: jax.Array, lower: jax.Array) -> jax.Array:
    """``b @ inv(lower)`` for lower-triangular ``lower`` (a gain ``Psi21 Psi11^{-1}``)."""
    b, lower = jnp.asarray(b), jnp.asarray(lower)
    _check_square("lower", lower)
    if b.ndim < 2 or b.shape[-1] != lower.shape[-1]:
        raise ValueError(f"`b` of shape {b.shape} does not match `lower` of shape {lower.shape}.")
    return jnp.swapaxes(
        solve_triangular(lower, jnp.swapaxes(b, -1, -2), lower=True, trans=1), -1, -2
    )


def mvn_logpdf_from_cholesky(residual: jax.Array, chol: jax.Array) -> jax.Array:
    """Log-density of ``N(residual; 0, chol chol^T)``.

    Args:
        residual: ``(..., n)`` vector.
        chol: ``(..., n, n)`` lower-triangular factor of the covariance; its batch axes
            broadcast against those of ``residual``.

    Returns:
        ``(...)`` log-density (the broadcast batch shape).
    """
    residual, chol = jnp.asarray(residual), jnp.asarray(chol)
    _check_square("chol", chol)
    if residual.ndim < 1 or residual.shape[-1] != chol.shape[-1]:
        raise ValueError(
            f"`residual` of shape {residual.shape} does not match `chol` of shape {chol.shape}."
        )
    n = residual.shape[-1]
    try:
        batch = jnp.broadcast_shapes(residual.shape[:-1], chol.shape[:-2])
    except ValueError:
        raise ValueError(
            f"the batch axes of `residual` {residual.shape} and `chol` {chol.shape} do not "
            "broadcast."
        ) from None
    residual = jnp.broadcast_to(residual, (*batch, n))
    chol = jnp.broadcast_to(chol, (*batch, n, n))
    z = solve_lower(chol, residual)
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(chol, axis1=-2, axis2=-1))), axis=-1)
    return -0.5 * jnp.sum(z**2, axis=-1) - log_det - 0.5 * n * math.log(2 * math.pi)
