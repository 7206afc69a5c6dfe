"""Shared input handling and scan plumbing of the discrete-HMM modules (internal).

See `numpyro_parallel.ssm.hmm.inference` for the model and the paper (Hassan, Särkkä &
García-Fernández 2021).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel._checks import concrete
from numpyro_parallel.scan import associative_scan, shift_in
from numpyro_parallel.ssm.hmm.elements import LogMatrix, forward_elements, sum_product_combine
from numpyro_parallel.strategy import (
    Associative,
    Blocked,
    Sequential,
    Sharded,
    Strategy,
    resolve_strategy,
)

__all__ = [
    "check_float",
    "check_log_likelihoods",
    "check_logits",
    "forward_scan",
    "inputs_ok",
    "per_step",
    "prepare",
    "resolve_mode",
    "reverse_sum_product",
    "scaled_block_size",
    "step_terms",
    "uses_elements",
]


def check_logits(name: str, logits: jax.Array) -> None:
    """Reject NaN / ``+inf`` logits and rows without any finite entry, when values are concrete.

    ``-inf`` entries are structural zeros and allowed. Under `jax.jit`, `jax.grad` or NUTS the
    values are tracers and cannot be checked at trace time; then the result is NaN instead of
    an error (`inputs_ok`).

    Args:
        name: argument name used in the error message.
        logits: logits whose last axis indexes the states.
    """
    values = concrete(logits)
    if values is None:
        return
    if np.any(np.isnan(values)) or np.any(np.isposinf(values)):
        raise ValueError(f"`{name}` must not contain NaN or +inf entries (-inf is allowed).")
    if values.size and np.any(np.all(np.isneginf(values), axis=-1)):
        raise ValueError(f"every row of `{name}` needs at least one finite entry (not all -inf).")


def check_float(name: str, value: jax.Array) -> jax.Array:
    """``value`` as a JAX array, or `TypeError` unless it has a floating dtype.

    Integer and boolean logits / log-densities are almost always a mistake (``[0, 1]`` meant
    as probabilities, a mask passed as log-likelihoods), so they are not silently promoted.
    """
    if isinstance(value, bool) or (
        hasattr(value, "dtype") and not jnp.issubdtype(value.dtype, jnp.floating)
    ):
        dtype = getattr(value, "dtype", type(value).__name__)
        raise TypeError(f"`{name}` must be a floating-point array; got dtype {dtype}.")
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"`{name}` must be a floating-point array; got dtype {value.dtype}.")
    return value


def check_log_likelihoods(log_likelihoods: jax.Array) -> None:
    """Reject concrete NaN / ``+inf`` log-likelihoods (``-inf``, an impossible state, is fine)."""
    values = concrete(log_likelihoods)
    if values is not None and (np.any(np.isnan(values)) or np.any(np.isposinf(values))):
        raise ValueError(
            "`log_likelihoods` must not contain NaN or +inf entries (-inf marks an impossible "
            "state; use 0 for a missing observation)."
        )


def inputs_ok(log_initial, log_transition, log_likelihoods) -> jax.Array:
    """Scalar bool: no NaN anywhere and no ``+inf`` log-likelihood (the traced-side check).

    After ``log_softmax`` a NaN / ``+inf`` logit or an all ``-inf`` row shows up as NaN, so this
    catches every invalid input that concrete checks would have rejected.
    """
    bad_ll = jnp.isnan(log_likelihoods) | jnp.isposinf(log_likelihoods)
    return ~(jnp.any(jnp.isnan(log_initial)) | jnp.any(jnp.isnan(log_transition)) | jnp.any(bad_ll))


def prepare(initial_logits, transition_logits, log_likelihoods, *, check_values: bool = True):
    """Validate shapes and dtypes and normalise the logits (shared by every hmm_* function).

    Args:
        initial_logits: ``(K,)`` logits.
        transition_logits: ``(K, K)`` or ``(T, K, K)`` logits.
        log_likelihoods: ``(T, K)`` log emission densities, T >= 1 and K >= 1.
        check_values: also reject concrete NaN / ``+inf`` log-likelihoods (`DiscreteHMM`
            passes False: there a NaN emission density must give a NaN log-density instead).

    Returns:
        ``(log_initial, log_transition, log_likelihoods)`` in a common floating dtype.
    """
    log_likelihoods = check_float("log_likelihoods", log_likelihoods)
    initial_logits = check_float("initial_logits", initial_logits)
    transition_logits = check_float("transition_logits", transition_logits)
    if log_likelihoods.ndim != 2:
        raise ValueError(
            f"`log_likelihoods` must have shape (T, K); got {tuple(log_likelihoods.shape)}."
        )
    num_steps, num_states = log_likelihoods.shape
    if num_steps < 1:
        raise ValueError(
            "`log_likelihoods` must have at least one time step (T >= 1); got shape "
            f"{tuple(log_likelihoods.shape)}."
        )
    if num_states < 1:
        raise ValueError(
            "`log_likelihoods` must have at least one state (K >= 1); got shape "
            f"{tuple(log_likelihoods.shape)}."
        )
    if initial_logits.shape != (num_states,):
        raise ValueError(
            f"`initial_logits` must have shape (K,) = ({num_states},) to match "
            f"`log_likelihoods` of shape {tuple(log_likelihoods.shape)}; "
            f"got {tuple(initial_logits.shape)}."
        )
    allowed = [(num_states, num_states), (num_steps, num_states, num_states)]
    if tuple(transition_logits.shape) not in allowed:
        raise ValueError(
            f"`transition_logits` must have shape (K, K) = {allowed[0]} or (T, K, K) = "
            f"{allowed[1]}; got {tuple(transition_logits.shape)}."
        )
    check_logits("initial_logits", initial_logits)
    check_logits("transition_logits", transition_logits)
    if check_values:
        check_log_likelihoods(log_likelihoods)
    dtype = jnp.result_type(initial_logits, transition_logits, log_likelihoods)
    log_initial = jax.nn.log_softmax(initial_logits.astype(dtype))
    log_transition = jax.nn.log_softmax(transition_logits.astype(dtype), axis=-1)
    return log_initial, log_transition, log_likelihoods.astype(dtype)


def resolve_mode(strategy, log_likelihoods) -> Strategy:
    """The concrete, hashable strategy for ``log_likelihoods`` (``"auto"`` and the block size
    of `Blocked` resolved outside `jit`, so that it can be a static argument)."""
    # On a CPU the sequential scaled recursion is the fastest for every K measured (2 cores,
    # float64, T = 10^3 and 10^5, K = 2, 8, 32): as fast as Blocked() at K = 2, 2-14x faster
    # for the log-likelihood, its gradient and the smoother from K = 8 on.
    strategy = resolve_strategy(strategy, log_likelihoods, cpu_strategy=Sequential())
    if isinstance(strategy, Blocked):
        return Blocked(strategy.size_for(jnp.shape(log_likelihoods)[0]))
    return strategy


def uses_elements(strategy: Strategy) -> bool:
    """Whether the HMM runs ``strategy`` on the log-space elements (`Associative`, `Sharded`)
    rather than the scaled recursions (`Blocked`, `Sequential`)."""
    return isinstance(strategy, Associative | Sharded)


def scaled_block_size(strategy: Strategy) -> int | None:
    """Block length of the scaled recursions (`numpyro_parallel.ssm.hmm.blocked`): None (one
    block) if sequential.

    The HMM runs `Blocked` (and `Sequential`, as a single block) with scaled probabilities,
    its fastest implementation of those strategies; `Associative` uses the log-space
    elements of `numpyro_parallel.ssm.hmm.elements`.
    """
    return strategy.block_size if isinstance(strategy, Blocked) else None


def per_step(log_transition: jax.Array, num_steps: int) -> jax.Array:
    """``(T, K, K)`` transition log-probabilities (broadcast if time-invariant)."""
    num_states = log_transition.shape[-1]
    return jnp.broadcast_to(log_transition, (num_steps, num_states, num_states))


def forward_scan(log_initial, log_transition, log_likelihoods, strategy):
    transitions = per_step(log_transition, log_likelihoods.shape[0])
    elements = forward_elements(log_initial, transitions, log_likelihoods)
    return elements, associative_scan(sum_product_combine, elements, strategy=strategy)


def step_terms(log_evidence: jax.Array, before: jax.Array) -> jax.Array:
    """``log p(y_t | y_{0:t-1})`` from the running ``log p(y_{0:t})`` (leading time axis);
    ``before`` is the value before the first row (0 at the start of the series). After an
    impossible step every later term is ``-inf`` too (not ``-inf - -inf = NaN``)."""
    (previous,) = shift_in((before,), (log_evidence,))
    return jnp.where(jnp.isneginf(previous), -jnp.inf, log_evidence - previous)


def reverse_sum_product(later: LogMatrix, earlier: LogMatrix) -> LogMatrix:
    return sum_product_combine(earlier, later)
