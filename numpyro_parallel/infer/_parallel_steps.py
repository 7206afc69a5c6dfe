"""Base steps, warmup adaptation and input checks of `ParallelMALA` / `ParallelHMC`.

The steps work in whitened coordinates (a flat vector) and report, besides BlackJAX's
acceptance probability and decision, whether the transition is *divergent* in NumPyro's
sense: it starts at, or proposes, a point where the potential (or its gradient) is not
finite, or (HMC) its energy error exceeds BlackJAX's divergence threshold. Every random number
of a step, including the jittered number of leapfrog steps of HMC, is derived from the
step's key, so the parallel-in-time chain equals the sequential one for the same keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import diffusions, proposal
from blackjax.mcmc.mala import MALAState
from numpyro.infer.hmc_util import warmup_adapter

from numpyro_parallel._checks import check_positive_int, check_real, concrete
from numpyro_parallel.fixed_point.checks import check_solver_options

MAX_STEPS_FACTOR = 4

__all__ = [
    "AdaptOptions",
    "StepInfo",
    "as_float_params",
    "check_init_params",
    "check_initial_point",
    "check_kernel_options",
    "hmc_step",
    "mala_step",
    "warmup_adapter_for",
]


class AdaptOptions(NamedTuple):
    """Warmup settings of `warmup_adapter_for`."""

    num_warmup: int
    adapt_step_size: bool
    adapt_mass_matrix: bool
    target_accept_prob: float


class StepInfo(NamedTuple):
    """Per-step information of the base steps.

    Attributes:
        acceptance_rate: Metropolis acceptance probability (0 for a non-finite proposal).
        is_accepted: the accept decision.
        is_divergent: the step starts at or proposes a non-finite potential/gradient, or
            (HMC) its energy error exceeds the divergence threshold.
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array


def _non_finite(state: Any) -> jax.Array:
    return ~(
        jnp.isfinite(state.logdensity)
        & jnp.all(jnp.isfinite(state.position))
        & jnp.all(jnp.isfinite(state.logdensity_grad))
    )


def mala_step(logdensity_fn: Callable) -> Callable:
    """BlackJAX's MALA step (same random numbers), reporting divergent transitions.

    Args:
        logdensity_fn: log-density of the flat (whitened) position.

    Returns:
        ``step(rng_key, state, step_size) -> (state, StepInfo)``.
    """
    integrator = diffusions.overdamped_langevin(jax.value_and_grad(logdensity_fn))

    def transition_energy(state, new_state, step_size):
        theta = state.position - new_state.position - step_size * new_state.logdensity_grad
        return -new_state.logdensity + 0.25 * (1.0 / step_size) * jnp.sum(theta * theta)

    acceptance_ratio = proposal.compute_asymmetric_acceptance_ratio(transition_energy)

    def step(rng_key, state, step_size):
        key_integrator, key_rmh = jax.random.split(rng_key)
        new_state = MALAState(*integrator(key_integrator, state, step_size))
        log_p_accept = acceptance_ratio(state, new_state, step_size=step_size)
        accepted, (do_accept, p_accept, _) = proposal.static_binomial_sampling(
            key_rmh, log_p_accept, state, new_state
        )
        divergent = _non_finite(state) | _non_finite(new_state)
        return accepted, StepInfo(p_accept, do_accept, divergent)

    return step


def hmc_step(
    logdensity_fn: Callable, num_integration_steps: int, random_integration_steps: bool
) -> Callable:
    """BlackJAX's HMC step with unit mass, optionally a random number of leapfrog steps.

    With ``random_integration_steps`` the number of leapfrog steps is geometric with mean
    ``num_integration_steps``, truncated at ``MAX_STEPS_FACTOR * num_integration_steps``,
    drawn with a key split off the step's key (randomized integration time, Bou-Rabee &
    Sanz-Serna 2017): a fixed path length makes near-Gaussian posteriors give antithetic
    (negatively correlated) draws whenever it is close to half a period, and uniform jitter
    around it does not remove that (a geometric, memoryless length keeps the lag-1
    correlation of Gaussian coordinates near or above zero for every step size).

    Args:
        logdensity_fn: log-density of the flat (whitened) position.
        num_integration_steps: (mean) number of leapfrog steps.
        random_integration_steps: randomize the number of leapfrog steps.

    Returns:
        ``step(rng_key, state, step_size) -> (state, StepInfo)``.
    """
    kernel = blackjax.hmc.build_kernel()

    def step(rng_key, state, step_size):
        length = num_integration_steps
        if random_integration_steps and num_integration_steps > 1:
            key_length, rng_key = jax.random.split(rng_key)
            length = jax.random.geometric(key_length, 1.0 / num_integration_steps, dtype=jnp.int32)
            length = jnp.minimum(length, MAX_STEPS_FACTOR * num_integration_steps)
        unit = jnp.ones_like(state.position)
        new_state, info = kernel(rng_key, state, logdensity_fn, step_size, unit, length)
        divergent = info.is_divergent | _non_finite(state) | _non_finite(info.proposal)
        return new_state, StepInfo(info.acceptance_rate, info.is_accepted, divergent)

    return step


def warmup_adapter_for(options: AdaptOptions) -> tuple[Callable, Callable]:
    """NumPyro's own windowed warmup adapter (`numpyro.infer.hmc_util.warmup_adapter`).

    Dual averaging of the step size and a regularised diagonal Welford estimate of the inverse
    mass matrix over Stan's windows, exactly as NumPyro's HMC/NUTS adapt; states are flat
    vectors (``z_info = (flat, None, None)``).

    Args:
        options: the warmup settings.

    Returns:
        ``(init_fn, update_fn)`` of NumPyro's adapter.
    """
    return warmup_adapter(
        options.num_warmup,
        adapt_step_size=options.adapt_step_size,
        adapt_mass_matrix=options.adapt_mass_matrix,
        dense_mass=False,
        target_accept_prob=options.target_accept_prob,
    )


def check_kernel_options(
    model: Any, potential_fn: Any, step_size: Any, num_steps_per_block: Any, solver: Any,
    strategy: Any, atol: Any, rtol: Any, max_iterations: Any, target_accept_prob: Any,
) -> None:  # fmt: skip
    """Raise `ValueError`/`TypeError` naming the argument for invalid kernel options."""
    if (model is None) == (potential_fn is None):
        raise ValueError("Give exactly one of `model` and `potential_fn`.")
    for name, fn in (("model", model), ("potential_fn", potential_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"`{name}` must be callable; got {type(fn).__name__}.")
    check_real("step_size", step_size, low=0.0, traced_ok=True)
    check_positive_int("num_steps_per_block", num_steps_per_block)
    check_solver_options(solver, strategy, atol, rtol, max_iterations)
    check_real("target_accept_prob", target_accept_prob, low=0.0, high=1.0, traced_ok=True)


def check_init_params(init_params: Any, reference: Any) -> None:
    """Raise `ValueError` unless ``init_params`` has the sites and shapes of ``reference``
    (the model's unconstrained latent sites from NumPyro's initialisation; both batched over
    chains for vectorized chains)."""
    given = init_params.z if hasattr(init_params, "z") else init_params
    if not isinstance(given, Mapping):
        raise TypeError(
            "`init_params` must be a dict of the model's latent sites (unconstrained values); "
            f"got {type(given).__name__}."
        )
    shapes = lambda tree: {name: tuple(jnp.shape(value)) for name, value in tree.items()}
    expected, got = shapes(reference), shapes(given)
    if set(got) != set(expected) or got != expected:
        missing, unknown = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = {k: got[k] for k in expected if k in got and got[k] != expected[k]}
        found = {"missing": missing, "unknown": unknown, "wrong shapes": wrong}
        problems = [f"{label} {value}" for label, value in found.items() if value]
        raise ValueError(
            f"`init_params` must give the model's latent sites with shapes {expected} "
            "(unconstrained values; a leading chain axis for vectorized chains); "
            f"{', '.join(problems)}."
        )


def as_float_params(init_params: Any, reference: Any = None) -> Any:
    """``init_params`` with floating leaves: the dtypes of ``reference`` (the model's
    unconstrained sites) when given, else integer and bool leaves cast to JAX's default float
    (``{"mu": 0}`` would otherwise make the gradient of the potential fail)."""
    if reference is not None:
        return jax.tree_util.tree_map(
            lambda ref, value: jnp.asarray(value, jnp.result_type(ref)), reference, init_params
        )
    default = jnp.result_type(float)
    cast = lambda v: (
        v if jnp.issubdtype(jnp.result_type(v), jnp.inexact) else jnp.asarray(v, default)
    )
    return jax.tree_util.tree_map(cast, init_params)


def check_initial_point(potential: Callable, flat_z: jax.Array, unravel: Callable) -> None:
    """Raise `ValueError` when the potential or its gradient is not finite at ``init_params``.

    Checks concrete values only (under tracing, divergent transitions report it instead).

    Args:
        potential: potential energy of the unconstrained parameters (pytree).
        flat_z: ``(d,)`` or ``(num_chains, d)`` flat initial parameters.
        unravel: flat vector -> parameter pytree.
    """
    array = concrete(flat_z)
    if array is None:
        return
    if not np.all(np.isfinite(array)):
        raise ValueError("`init_params` contains non-finite values (NaN or inf).")
    value_and_grad = jax.value_and_grad(lambda x: potential(unravel(x)))
    batch = flat_z if flat_z.ndim == 2 else flat_z[None]
    energy, grad = jax.vmap(value_and_grad)(batch)
    finite = np.isfinite(np.asarray(energy)) & np.all(np.isfinite(np.asarray(grad)), axis=-1)
    if not np.all(finite):
        bad = np.flatnonzero(~finite).tolist()
        raise ValueError(
            "Cannot start the chain at `init_params`: the potential energy (or its gradient) "
            f"is not finite there (chain(s) {bad}). Pass initial parameters with a finite "
            "log-density, or leave `init_params` to NumPyro's init strategy."
        )
