"""Associative elements of discrete hidden Markov model inference, in log space.

Hassan, Särkkä & García-Fernández (2021), "Temporal parallelization of inference in hidden
Markov models", IEEE Trans. Signal Processing 69, write the forward, backward and Viterbi
recursions of a K-state HMM as prefix (or suffix) products of (K, K) matrices

    A_0[i, j] = p(z_0 = j) p(y_0 | z_0 = j)                       (same for every row i)
    A_t[i, j] = p(z_t = j | z_{t-1} = i) p(y_t | z_t = j),         t = 1..T-1,

in the sum-product semiring (filtering, smoothing) or the max-product semiring (Viterbi). Here
an element is a `LogMatrix`: a log-matrix whose largest entry is 0 plus a scalar log-scale, so
long products neither overflow nor lose float32 precision in the log domain.

Backtracking (Viterbi) and backward sampling (forward-filter backward-sample) are compositions
of *index maps* ``f: {0..K-1} -> {0..K-1}`` stored as (K,) integer arrays. Composition is
associative, so the whole path is a suffix scan of maps; the last map is constant.

Every combine here acts on *single* elements; `numpyro_parallel.scan.associative_scan` vmaps them
and chooses sequential or parallel evaluation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "LogMatrix",
    "backward_elements",
    "compose_index_maps",
    "finite_or_zero",
    "forward_elements",
    "max_product_combine",
    "normalize",
    "safe_log",
    "sum_product_combine",
]


class LogMatrix(NamedTuple):
    """A matrix ``exp(log_scale) * exp(log_matrix)`` with ``max(log_matrix) == 0``."""

    log_matrix: jax.Array
    log_scale: jax.Array


def finite_or_zero(x: jax.Array) -> jax.Array:
    """``x`` where finite, else 0, without gradient: the shift used to normalise log-values.

    Args:
        x: shifts (e.g. maxima of log-matrices; ``-inf`` for all-impossible rows).

    Returns:
        The gradient-free finite shifts.
    """
    return lax.stop_gradient(jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x)))


def normalize(log_matrix: jax.Array, log_scale: jax.Array) -> LogMatrix:
    """Shift ``log_matrix`` so that its largest entry is 0 and move the shift to the scale.

    Args:
        log_matrix: ``(K, K)`` log-matrix (entries may be ``-inf``).
        log_scale: scalar log-scale already carried by the matrix.

    Returns:
        The same matrix as a normalised `LogMatrix` (an all ``-inf`` matrix keeps scale).
    """
    shift = finite_or_zero(jnp.max(log_matrix))
    return LogMatrix(log_matrix - shift, log_scale + shift)


def safe_log(x: jax.Array) -> jax.Array:
    """``log(x)`` for ``x >= 0`` with ``log(0) = -inf`` and zero (not NaN) gradients at 0.

    Args:
        x: non-negative array.

    Returns:
        The elementwise logarithm.
    """
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, jnp.ones_like(x))), -jnp.inf)


def sum_product_combine(earlier: LogMatrix, later: LogMatrix) -> LogMatrix:
    """Log-space matrix product ``log(exp(earlier) @ exp(later))``.

    Rows of ``earlier`` and columns of ``later`` are max-shifted before a plain matmul, which is
    much cheaper than a ``(K, K, K)`` logsumexp and exact up to rounding.

    Args:
        earlier: element of the earlier time step (left factor).
        later: element of the later time step (right factor).

    Returns:
        The normalised product.
    """
    a, b = earlier.log_matrix, later.log_matrix
    row_shift = finite_or_zero(jnp.max(a, axis=1, keepdims=True))
    column_shift = finite_or_zero(jnp.max(b, axis=0, keepdims=True))
    product = jnp.exp(a - row_shift) @ jnp.exp(b - column_shift)
    log_product = safe_log(product) + row_shift + column_shift
    return normalize(log_product, earlier.log_scale + later.log_scale)


def max_product_combine(earlier: LogMatrix, later: LogMatrix) -> LogMatrix:
    """Max-plus matrix product ``C[i, j] = max_k earlier[i, k] + later[k, j]``.

    Args:
        earlier: element of the earlier time step (left factor).
        later: element of the later time step (right factor).

    Returns:
        The normalised max-plus product.
    """
    a, b = earlier.log_matrix, later.log_matrix
    product = jnp.max(a[:, :, None] + b[None, :, :], axis=1)
    return normalize(product, earlier.log_scale + later.log_scale)


def compose_index_maps(inner: jax.Array, outer: jax.Array) -> jax.Array:
    """Composition ``outer ∘ inner`` of two index maps, i.e. ``outer[inner]``.

    Used as ``combine(earlier, later)`` in forward scans (``later ∘ earlier``) and, since the
    reverse driver passes the later element first, as ``earlier ∘ later`` in backward scans.

    Args:
        inner: ``(K,)`` integer map applied first.
        outer: ``(K,)`` integer map applied second.

    Returns:
        The ``(K,)`` composed map.
    """
    return outer[inner]


def forward_elements(
    log_initial: jax.Array, log_transition: jax.Array, log_likelihoods: jax.Array
) -> LogMatrix:
    """Normalised elements ``A_0, ..., A_{T-1}`` (module docstring) with a leading time axis.

    Args:
        log_initial: ``(K,)`` normalised log initial probabilities.
        log_transition: ``(T, K, K)`` normalised log transition matrices; entry ``[t]`` maps
            ``z_t`` to ``z_{t+1}``, the last one is unused.
        log_likelihoods: ``(T, K)`` log emission densities ``log p(y_t | z_t = k)``.

    Returns:
        A `LogMatrix` with leaves of shape ``(T, K, K)`` and ``(T,)``.
    """
    num_states = log_initial.shape[-1]
    first = jnp.broadcast_to(log_initial + log_likelihoods[0], (1, num_states, num_states))
    rest = log_transition[:-1] + log_likelihoods[1:, None, :]
    matrices = jnp.concatenate([first, rest], axis=0)
    scales = jnp.zeros(matrices.shape[:1], matrices.dtype)
    return jax.vmap(normalize)(matrices, scales)


def backward_elements(elements: LogMatrix) -> LogMatrix:
    """Elements ``A_1, ..., A_{T-1}, 1`` whose suffix products give the backward messages.

    Row ``i`` of every column of the suffix product at ``t`` is ``log p(y_{t+1:} | z_t = i)``.

    Args:
        elements: forward elements from `forward_elements`.

    Returns:
        A `LogMatrix` with the same shapes as ``elements``.
    """
    ones = jnp.zeros_like(elements.log_matrix[:1])
    matrices = jnp.concatenate([elements.log_matrix[1:], ones], axis=0)
    scales = jnp.concatenate([elements.log_scale[1:], jnp.zeros_like(elements.log_scale[:1])])
    return LogMatrix(matrices, scales)
