"""Building blocks of one tempered SMC stage: temperature choice and the adaptive MCMC move.

The move kernels run on whitened coordinates ``u = L^{-1} (x - m)``, with ``m`` and ``L L^T``
the weighted particle mean and covariance (dense for small dimensions, diagonal otherwise), so a
correlated posterior looks isotropic to the kernel (the particle-covariance preconditioning of
Chopin 2002 and of BlackJAX's inner-kernel tuning). The step size is then adapted towards a
target acceptance rate after every MCMC sweep, from the mean acceptance over the particles
(Robbins-Monro on the log step size; cf. Buchholz, Chopin & Jacob 2021, "Adaptive tuning of
Hamiltonian Monte Carlo within sequential Monte Carlo"), and carried over to the next stage.
"""

from __future__ import annotations

from collections.abc import Callable

import blackjax
import jax
import jax.numpy as jnp
from blackjax.mcmc import random_walk
from jax import lax
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp

__all__ = [
    "DEFAULT_STEP",
    "TARGET_ACCEPTANCE",
    "choose_increment",
    "count_unique",
    "make_mutation",
    "preconditioner",
]

#: default step size relative to the particle spread: factor / D^power.
DEFAULT_STEP = {"hmc": (0.5, 0.25), "mala": (1.6, 1 / 6), "rwm": (2.38, 0.5)}
#: acceptance rates the step size is adapted to.
TARGET_ACCEPTANCE = {"hmc": 0.65, "mala": 0.57, "rwm": 0.234}
_ADAPT_GAIN = 1.0
_BISECTION_STEPS = 60


def tempered_weights(loglik: jax.Array, delta: jax.Array) -> jax.Array:
    """``delta * loglik`` with zero-likelihood particles at -inf (also when ``delta`` is 0)."""
    return jnp.where(loglik > -jnp.inf, delta * loglik, -jnp.inf)


def _log_ess(log_weights: jax.Array) -> jax.Array:
    return 2.0 * logsumexp(log_weights) - logsumexp(2.0 * log_weights)


def choose_increment(loglik: jax.Array, max_delta: jax.Array, target_ess: float) -> jax.Array:
    """Largest temperature increment whose incremental weights keep ``target_ess`` of the ESS.

    The ESS is relative to the number of particles with nonzero likelihood (the ESS as the
    increment tends to 0), so particles outside the likelihood's support cannot stall the
    tempering. Fixed-length bisection; returns the upper end, so the increment is positive.
    """
    finite = jnp.sum(loglik > -jnp.inf)
    target = jnp.log(target_ess) + jnp.log(jnp.maximum(finite, 1).astype(loglik.dtype))

    def ok(delta):
        return _log_ess(tempered_weights(loglik, delta)) >= target

    def body(_, bounds):
        low, high = bounds
        mid = 0.5 * (low + high)
        good = ok(mid)
        return jnp.where(good, mid, low), jnp.where(good, high, mid)

    zero = jnp.zeros_like(max_delta)
    _, high = lax.fori_loop(0, _BISECTION_STEPS, body, (zero, max_delta))
    return jnp.where(ok(max_delta), max_delta, high)


def count_unique(particles: jax.Array, direction: jax.Array) -> jax.Array:
    """Number of distinct particles (rows), from their projections on a fixed direction."""
    projected = jnp.sort(particles @ direction)
    return 1 + jnp.sum(projected[1:] != projected[:-1])


def preconditioner(
    particles: jax.Array, weights: jax.Array, dense: bool
) -> tuple[jax.Array, jax.Array]:
    """Weighted mean and covariance factor (lower Cholesky, or the sd vector when diagonal).

    The covariance is jittered by 1e-10 of its mean variance (no shrinkage: a posterior with
    correlations near 1 needs its thin directions resolved); a dense factor that is not finite
    falls back to the diagonal one.
    """
    mean = weights @ particles
    centred = particles - mean[None, :]
    var = weights @ centred**2
    tiny = jnp.finfo(particles.dtype).tiny
    var = var + 1e-10 * jnp.mean(var) + tiny
    if not dense:
        return mean, jnp.sqrt(var)
    cov = (centred * weights[:, None]).T @ centred
    cov = cov + jnp.diag(var - jnp.diag(cov))
    factor = jnp.linalg.cholesky(0.5 * (cov + cov.T))
    return mean, jnp.where(jnp.all(jnp.isfinite(factor)), factor, jnp.diag(jnp.sqrt(var)))


def _whiten(particles, mean, factor):
    if factor.ndim == 1:
        return (particles - mean[None, :]) / factor[None, :]
    return solve_triangular(factor, (particles - mean[None, :]).T, lower=True).T


def _colour(whitened, mean, factor):
    if factor.ndim == 1:
        return mean[None, :] + whitened * factor[None, :]
    return mean[None, :] + whitened @ factor.T


def _kernel(kernel: str, num_integration_steps: int):
    """(init, step(key, state, logdensity, eps)) of an isotropic kernel with scale ``eps``."""
    if kernel == "hmc":
        step = blackjax.hmc.build_kernel()

        def hmc_step(key, state, logdensity, eps):
            return step(
                key,
                state,
                logdensity,
                step_size=eps,
                inverse_mass_matrix=jnp.ones_like(state.position),
                num_integration_steps=num_integration_steps,
            )

        return blackjax.hmc.init, hmc_step
    if kernel == "mala":
        step = blackjax.mala.build_kernel()
        return blackjax.mala.init, lambda key, state, logdensity, eps: step(
            key, state, logdensity, eps**2 / 2.0
        )
    step = blackjax.additive_step_random_walk.build_kernel()
    return blackjax.additive_step_random_walk.init, lambda key, state, logdensity, eps: step(
        key, state, logdensity, random_walk.normal(eps * jnp.ones_like(state.position))
    )


def make_mutation(
    kernel: str,
    num_integration_steps: int,
    num_mcmc_steps: int,
    step_bounds: tuple[float, float],
) -> Callable:
    """``mutate(key, particles, weights, resampled, logdensity, eps, dense)``.

    Runs ``num_mcmc_steps`` sweeps of the kernel on every ``resampled`` particle in the
    coordinates whitened by the weighted ``particles``' mean and covariance, adapting the
    (shared) step size after each sweep. Returns ``(moved, acceptance, eps, jump)``:
    ``acceptance`` is the mean acceptance rate over particles and sweeps and ``jump`` the mean
    squared move relative to the particle variance, averaged over dimensions (the expected
    squared jump distance; about 2 for moves that decorrelate the particles, near 0 for a
    mutation that barely moves them).
    """
    init, step = _kernel(kernel, num_integration_steps)
    target = TARGET_ACCEPTANCE[kernel]
    low, high = step_bounds

    def mutate(key, particles, weights, resampled, logdensity, eps, dense):
        mean, factor = preconditioner(particles, weights, dense)

        def whitened_logdensity(u):
            return logdensity(_colour(u[None, :], mean, factor)[0])

        states = jax.vmap(lambda u: init(u, whitened_logdensity))(_whiten(resampled, mean, factor))

        def sweep(carry, sweep_key):
            states, eps = carry
            keys = jax.random.split(sweep_key, resampled.shape[0])
            states, info = jax.vmap(lambda k, s: step(k, s, whitened_logdensity, eps))(keys, states)
            rate = jnp.mean(jnp.nan_to_num(info.acceptance_rate, nan=0.0))
            eps = jnp.clip(eps * jnp.exp(_ADAPT_GAIN * (rate - target)), low, high)
            return (states, eps), rate

        sweep_keys = jax.random.split(key, num_mcmc_steps)
        (states, eps), rates = lax.scan(sweep, (states, eps), sweep_keys)
        moved = _colour(states.position, mean, factor)
        var = weights @ (particles - mean[None, :]) ** 2
        scale = jnp.where(var > 0, var, jnp.inf)[None, :]
        jump = jnp.mean((moved - resampled) ** 2 / scale)
        return moved, jnp.mean(rates), eps, jump

    return mutate
