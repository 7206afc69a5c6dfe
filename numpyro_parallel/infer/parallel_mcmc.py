"""NumPyro MCMC kernel whose sampling phase solves blocks of MALA steps in parallel.

Warmup runs preconditioned MALA one step at a time, adapting the step size by dual averaging
(target acceptance 0.574) and a diagonal inverse mass matrix over Stan's windows. The sampling
phase is a buffer: the state holds a block of ``block_size`` draws; ``sample`` hands out the
next one and, when the block is used up, refills it with one parallel-in-time solve of
``block_size`` MALA steps (`numpyro_parallel.mcmc.parallel_chain.parallel_chain`). The draws
are those of sequential MALA with the block's random numbers, to solver tolerance.

Reference: Zoltowski et al. (2025), "Parallelizing MCMC across the sequence length";
Roberts & Tweedie (1996) for MALA; Hoffman & Gelman (2014) for dual averaging.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc_util import build_adaptation_schedule, dual_averaging
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import initialize_model
from numpyro.util import identity, is_prng_key

from numpyro_parallel.mcmc.parallel_chain import parallel_chain

__all__ = ["ParallelHMC", "ParallelMALA", "ParallelMALAState"]

TARGET_ACCEPT_PROB = 0.574


class ParallelMALAState(NamedTuple):
    """State of `ParallelMALA` (one chain; vectorized chains add a leading axis).

    Attributes:
        i: iteration counter (warmup and sampling).
        z: current unconstrained sample (dict of sites).
        potential_energy: potential energy at ``z``.
        accept_prob: acceptance probability of the step that produced ``z``.
        diverging: always False (kept for ArviZ's sample_stats).
        step_size: MALA step size.
        inverse_mass_matrix: diagonal inverse mass matrix (flat).
        adapt_state: dual-averaging state, Welford (count, mean, m2), window index.
        block: ``(block_size, d)`` flat draws of the current block.
        block_potential: potential energies of the block.
        block_accept_prob: acceptance probabilities of the block.
        block_index: next draw of the block to hand out.
        num_iterations: solver iterations of the last block.
        converged: whether the last block's solve converged.
        rng_key: PRNG key.
    """

    i: jax.Array
    z: Any
    potential_energy: jax.Array
    accept_prob: jax.Array
    diverging: jax.Array
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    adapt_state: Any
    block: jax.Array
    block_potential: jax.Array
    block_accept_prob: jax.Array
    block_index: jax.Array
    num_iterations: jax.Array
    converged: jax.Array
    rng_key: jax.Array


class ParallelMALA(MCMCKernel):
    """MALA with warmup adaptation and parallel-in-time sampling blocks.

    Args:
        model: NumPyro model (or None with ``potential_fn``).
        potential_fn: potential energy of the unconstrained parameters (with ``init_params``).
        step_size: initial step size.
        adapt_step_size: adapt the step size by dual averaging during warmup.
        adapt_mass_matrix: adapt a diagonal inverse mass matrix during warmup.
        block_size: MALA steps per parallel solve.
        solver: ``"newton"``, ``"quasi_newton"`` or ``"jacobi"``.
        tol: solver tolerance (dtype-dependent default).
        max_iterations: cap on solver iterations per block (then sequential fallback).
        target_accept_prob: acceptance probability targeted by the adaptation.
    """

    sample_field = "z"

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        step_size: float = 0.1,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        block_size: int = 100,
        solver: str = "newton",
        tol: float | None = None,
        max_iterations: int | None = None,
        target_accept_prob: float = TARGET_ACCEPT_PROB,
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError("Give exactly one of `model` and `potential_fn`.")
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"`block_size` must be a positive int; got {block_size!r}.")
        self._model = model
        self._potential_fn = potential_fn
        self._potential_fn_gen = None
        self._postprocess_fn = None
        self._step_size = step_size
        self._adapt_step_size = adapt_step_size
        self._adapt_mass_matrix = adapt_mass_matrix
        self._block_size = block_size
        self._solver_options = {"solver": solver, "tol": tol, "max_iterations": max_iterations}
        self._target_accept_prob = target_accept_prob
        self._num_warmup = 0
        self._unravel = None
        self._batched = False

    @property
    def model(self) -> Callable | None:
        """The NumPyro model (read by ``arviz.from_numpyro``)."""
        return self._model

    @property
    def default_fields(self) -> tuple[str, ...]:
        """Fields collected by default."""
        return ("z", "diverging")

    def get_diagnostics_str(self, state: ParallelMALAState) -> str:
        """Progress-bar text.

        Args:
            state: current state.

        Returns:
            step size and acceptance probability.
        """
        return f"step size {float(jnp.mean(state.step_size)):.2e}, acc. prob {float(jnp.mean(state.accept_prob)):.2f}"  # noqa: E501

    def postprocess_fn(self, model_args: tuple, model_kwargs: dict) -> Callable:
        """Map unconstrained samples to constrained sites.

        Args:
            model_args: model arguments.
            model_kwargs: model keyword arguments.

        Returns:
            The model's postprocessing function (identity without a model).
        """
        if self._postprocess_fn is None:
            return identity
        return self._postprocess_fn(*model_args, **model_kwargs)

    def _potential(self, model_args, model_kwargs) -> Callable:
        if self._potential_fn_gen is not None:
            return self._potential_fn_gen(*model_args, **model_kwargs)
        return self._potential_fn

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs={}):  # noqa: B006
        """Initial state (vectorized over chains when ``rng_key`` is a batch of keys).

        Args:
            rng_key: PRNG key, or a batch of keys for vectorized chains.
            num_warmup: number of warmup (adaptation) iterations.
            init_params: initial unconstrained parameters (required with ``potential_fn``).
            model_args: model arguments.
            model_kwargs: model keyword arguments.

        Returns:
            A `ParallelMALAState`.
        """
        self._num_warmup = num_warmup
        self._batched = not is_prng_key(rng_key)
        split = lambda key: tuple(jax.random.split(key))
        rng_key, key_init = jax.vmap(split)(rng_key) if self._batched else split(rng_key)
        if self._model is not None:
            params, potential_gen, postprocess, _ = initialize_model(
                key_init, self._model, dynamic_args=True, model_args=model_args,
                model_kwargs=model_kwargs,
            )  # fmt: skip
            self._potential_fn_gen, self._postprocess_fn = potential_gen, postprocess
            init_params = params.z if init_params is None else init_params
        elif init_params is None:
            raise ValueError("`init_params` must be given with `potential_fn`.")
        z = init_params.z if hasattr(init_params, "z") else init_params
        one = jax.tree_util.tree_map(lambda x: x[0], z) if self._batched else z
        _, self._unravel = ravel_pytree(one)
        potential = self._potential(model_args, model_kwargs)
        init_one = lambda z, key: self._init_one(z, key, potential)
        return jax.vmap(init_one)(z, rng_key) if self._batched else init_one(z, rng_key)

    def _init_one(self, z, rng_key, potential) -> ParallelMALAState:
        flat, _ = ravel_pytree(z)
        d, dtype = flat.shape[0], flat.dtype
        block_size = self._block_size
        step_size = jnp.asarray(self._step_size, dtype)
        adapt = (dual_averaging()[0](jnp.log(10 * step_size)), _welford_init(d, dtype), _int(0))
        return ParallelMALAState(
            i=_int(0), z=z, potential_energy=potential(z),
            accept_prob=jnp.zeros((), dtype), diverging=jnp.asarray(False), step_size=step_size,
            inverse_mass_matrix=jnp.ones(d, dtype), adapt_state=adapt,
            block=jnp.zeros((block_size, d), dtype), block_potential=jnp.zeros(block_size, dtype),
            block_accept_prob=jnp.zeros(block_size, dtype),
            block_index=_int(block_size), num_iterations=_int(0),
            converged=jnp.asarray(True), rng_key=rng_key,
        )  # fmt: skip

    def sample(self, state, model_args, model_kwargs):
        """One iteration: an adaptation step during warmup, else the next draw of the block.

        Args:
            state: current `ParallelMALAState`.
            model_args: model arguments.
            model_kwargs: model keyword arguments.

        Returns:
            The next `ParallelMALAState`.
        """
        potential = self._potential(model_args, model_kwargs)
        vmap = jax.vmap if self._batched else lambda f: f
        first = (lambda x: x[0]) if self._batched else (lambda x: x)
        warmup = vmap(lambda s: self._warmup_one(s, potential))
        refill = vmap(lambda s: self._refill_one(s, potential))
        hand_out = vmap(self._hand_out_one)

        def sampling(s):
            # All vectorized chains move in step: decide the refill from the first chain.
            s = lax.cond(first(s.block_index) >= self._block_size, refill, identity, s)
            return hand_out(s)

        if self._num_warmup == 0:
            return sampling(state)
        return lax.cond(first(state.i) < self._num_warmup, warmup, sampling, state)

    def _base_kernel(self, potential, inverse_mass_matrix):
        """MALA in whitened coordinates u = z / sqrt(m): (step, init, scale)."""
        scale = jnp.sqrt(inverse_mass_matrix)
        logdensity = lambda u: -potential(self._unravel(scale * u))
        kernel = blackjax.mala.build_kernel()
        init = lambda u: blackjax.mala.init(u, logdensity)
        return (lambda key, s, h: kernel(key, s, logdensity, h)), init, scale

    def _warmup_one(self, state, potential):
        key, key_step = jax.random.split(state.rng_key)
        step, init, scale = self._base_kernel(potential, state.inverse_mass_matrix)
        flat, _ = ravel_pytree(state.z)
        new, info = step(key_step, init(flat / scale), state.step_size)
        flat = new.position * scale
        accept_prob = info.acceptance_rate
        step_size, inverse_mass_matrix, adapt = self._adapt(state, flat, accept_prob)
        return state._replace(
            i=state.i + 1, z=self._unravel(flat), potential_energy=-new.logdensity,
            accept_prob=accept_prob, step_size=step_size,
            inverse_mass_matrix=inverse_mass_matrix, adapt_state=adapt, rng_key=key,
        )  # fmt: skip

    def _adapt(self, state, flat, accept_prob):
        ss_init, ss_update = dual_averaging()
        schedule = jnp.asarray(build_adaptation_schedule(self._num_warmup))
        num_windows = schedule.shape[0]
        ss_state, (count, mean, m2), window = state.adapt_state
        step_size, inverse_mass_matrix, t = state.step_size, state.inverse_mass_matrix, state.i
        if self._adapt_step_size:
            ss_state = ss_update(self._target_accept_prob - accept_prob, ss_state)
            log_step, log_step_avg = ss_state[0], ss_state[1]
            last = t == self._num_warmup - 1
            step_size = jnp.exp(jnp.where(last, log_step_avg, log_step)).astype(step_size.dtype)
        middle = (window > 0) & (window < num_windows - 1)
        if self._adapt_mass_matrix:
            new_count = count + 1
            delta = flat - mean
            new_mean = mean + delta / new_count
            new_m2 = m2 + delta * (flat - new_mean)
            count, mean, m2 = (
                jnp.where(middle, new_count, count),
                jnp.where(middle, new_mean, mean),
                jnp.where(middle, new_m2, m2),
            )
        window_end = t == schedule[window, 1]
        if self._adapt_mass_matrix:
            n = jnp.maximum(count, 2).astype(flat.dtype)
            variance = m2 / (n - 1)
            regularized = (n / (n + 5)) * variance + 1e-3 * (5 / (n + 5))
            update = window_end & middle
            inverse_mass_matrix = jnp.where(update, regularized, inverse_mass_matrix)
            count = jnp.where(update, 0, count).astype(jnp.int32)
            mean, m2 = jnp.where(update, 0.0, mean), jnp.where(update, 0.0, m2)
            if self._adapt_step_size:
                restarted = ss_init(jnp.log(10 * step_size))
                ss_state = jax.tree_util.tree_map(
                    lambda a, b: jnp.where(update, a, b), restarted, ss_state
                )
        window = jnp.where(window_end, window + 1, window).astype(jnp.int32)
        return step_size, inverse_mass_matrix, (ss_state, (count, mean, m2), window)

    def _refill_one(self, state, potential):
        key, key_block = jax.random.split(state.rng_key)
        step, init, scale = self._base_kernel(potential, state.inverse_mass_matrix)
        flat, _ = ravel_pytree(state.z)
        states, info = parallel_chain(
            lambda k, s: step(k, s, state.step_size), init(flat / scale), key_block,
            self._block_size, init_fn=init, **self._solver_options,
        )  # fmt: skip
        return state._replace(
            block=states.position * scale[None, :], block_potential=-states.logdensity,
            block_accept_prob=info.step_info.acceptance_rate, block_index=_int(0),
            num_iterations=_int(info.num_iterations), converged=info.converged, rng_key=key,
        )  # fmt: skip

    def _hand_out_one(self, state):
        j = state.block_index
        return state._replace(
            i=state.i + 1, z=self._unravel(state.block[j]),
            potential_energy=state.block_potential[j], accept_prob=state.block_accept_prob[j],
            block_index=j + 1,
        )  # fmt: skip


def _welford_init(d: int, dtype: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    return _int(0), jnp.zeros(d, dtype), jnp.zeros(d, dtype)


def _int(value: Any) -> jax.Array:
    return jnp.asarray(value, dtype=jnp.int32)


class ParallelHMC(ParallelMALA):
    """HMC with a fixed number of leapfrog steps; warmup as `ParallelMALA`, parallel blocks.

    Uses the `ParallelMALAState` layout. Long trajectories make the coupled chains chaotic
    and the solver slow: keep ``num_steps`` small (a few leapfrog steps).

    Args:
        model: NumPyro model (or None with ``potential_fn``).
        potential_fn: potential energy of the unconstrained parameters (with ``init_params``).
        step_size: initial leapfrog step size.
        num_steps: leapfrog steps per HMC step.
        adapt_step_size: adapt the step size by dual averaging during warmup.
        adapt_mass_matrix: adapt a diagonal inverse mass matrix during warmup.
        block_size: HMC steps per parallel solve.
        solver: ``"newton"``, ``"quasi_newton"`` or ``"jacobi"``.
        tol: solver tolerance (dtype-dependent default).
        max_iterations: cap on solver iterations per block (then sequential fallback).
        target_accept_prob: acceptance probability targeted by the adaptation.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        step_size: float = 0.1,
        num_steps: int = 4,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        block_size: int = 100,
        solver: str = "newton",
        tol: float | None = None,
        max_iterations: int | None = None,
        target_accept_prob: float = 0.8,
    ):
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"`num_steps` must be a positive int; got {num_steps!r}.")
        super().__init__(
            model, potential_fn, step_size, adapt_step_size, adapt_mass_matrix, block_size,
            solver, tol, max_iterations, target_accept_prob,
        )  # fmt: skip
        self._num_leapfrog_steps = num_steps

    def _base_kernel(self, potential, inverse_mass_matrix):
        """HMC with unit mass in whitened coordinates u = z / sqrt(m)."""
        scale = jnp.sqrt(inverse_mass_matrix)
        logdensity = lambda u: -potential(self._unravel(scale * u))
        kernel = blackjax.hmc.build_kernel()
        init = lambda u: blackjax.hmc.init(u, logdensity)
        unit = jnp.ones_like(scale)
        step = lambda key, s, h: kernel(key, s, logdensity, h, unit, self._num_leapfrog_steps)
        return step, init, scale
