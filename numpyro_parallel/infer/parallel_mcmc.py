"""NumPyro MCMC kernel whose sampling phase solves blocks of MALA steps in parallel.

Warmup runs preconditioned MALA one step at a time, adapting the step size by dual averaging
(target acceptance 0.574) and a diagonal inverse mass matrix over Stan's windows, with NumPyro's own
warmup adapter (`numpyro.infer.hmc_util.warmup_adapter`). The sampling
phase is a buffer: the state holds a block of ``num_steps_per_block`` draws; ``sample`` hands
out the next one and, when the block is used up, refills it with one parallel-in-time solve of
``num_steps_per_block`` MALA steps (`numpyro_parallel.mcmc.run_chain`). The draws
are those of sequential MALA with the block's random numbers, to solver tolerance.

Failures are reported as NumPyro reports them: a transition that starts at, or proposes, a
point with a non-finite potential (or gradient), or an HMC energy error above the divergence
threshold, has ``diverging=True`` (``print_summary`` counts them); initial parameters with a
non-finite potential raise a `ValueError` (NumPyro's own init strategy raises a
`RuntimeError` when it finds no valid point); ``converged`` is False for a block the solver
did not certify (recomputed sequentially).

Reference: Zoltowski et al. (2025), "Parallelizing MCMC across the sequence length";
Roberts & Tweedie (1996) for MALA; Hoffman & Gelman (2014) for dual averaging.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import initialize_model
from numpyro.util import identity, is_prng_key

from numpyro_parallel._checks import check_positive_int
from numpyro_parallel.fixed_point.solvers import SolverLike
from numpyro_parallel.infer._parallel_state import ParallelMALAState
from numpyro_parallel.infer._parallel_steps import (
    AdaptOptions,
    as_float_params,
    check_init_params,
    check_initial_point,
    check_kernel_options,
    mala_step,
    warmup_adapter_for,
)
from numpyro_parallel.mcmc.chain import run_chain
from numpyro_parallel.strategy import StrategyLike

__all__ = ["ParallelMALA", "ParallelMALAState"]

TARGET_ACCEPT_PROB = 0.574


class ParallelMALA(MCMCKernel):
    """MALA with warmup adaptation and parallel-in-time sampling blocks.

    Args:
        model: NumPyro model (or None with ``potential_fn``).
        potential_fn: potential energy of the unconstrained parameters (with ``init_params``).
        step_size: initial step size.
        adapt_step_size: adapt the step size by dual averaging during warmup.
        adapt_mass_matrix: adapt a diagonal inverse mass matrix during warmup.
        num_steps_per_block: MALA steps per parallel solve.
        solver: a `numpyro_parallel.fixed_point` solver or its name (``"newton"``,
            ``"quasi_newton"``, ``"jacobi"``, ``"online_picard"``).
        strategy: strategy of the solver's linear recursions (`numpyro_parallel.strategy`);
            `Sequential()` runs each block as a plain `lax.scan` chain.
        atol: absolute solver tolerance (dtype-dependent default).
        rtol: relative solver tolerance (dtype-dependent default).
        max_iterations: cap on solver iterations per block (then sequential fallback).
        target_accept_prob: acceptance probability targeted by the adaptation.
        init_strategy: NumPyro init strategy for the chains' starting points when no
            ``init_params`` are given (as `numpyro.infer.NUTS`'s; default
            `numpyro.infer.init_to_uniform`).

    Raises:
        ValueError: invalid option (non-positive ``step_size``/``num_steps_per_block``,
            unknown ``solver``, negative ``atol``/``rtol``, ``target_accept_prob`` outside
            (0, 1), ...), named in the message; from ``init``: ``init_params`` where the
            potential or its gradient is not finite.
        TypeError: non-callable ``model``/``potential_fn``/``init_strategy``, non-integer
            ``num_steps_per_block``.
    """

    sample_field = "z"

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        step_size: float = 0.1,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        num_steps_per_block: int = 100,
        solver: SolverLike = "newton",
        strategy: StrategyLike = "auto",
        atol: float | None = None,
        rtol: float | None = None,
        max_iterations: int | None = None,
        target_accept_prob: float = TARGET_ACCEPT_PROB,
        init_strategy: Callable = init_to_uniform,
    ):
        check_kernel_options(
            model, potential_fn, step_size, num_steps_per_block, solver, strategy, atol, rtol,
            max_iterations, target_accept_prob,
        )  # fmt: skip
        if not callable(init_strategy):
            raise TypeError(
                "`init_strategy` must be a NumPyro init strategy (e.g. "
                f"`numpyro.infer.init_to_median`); got {type(init_strategy).__name__}."
            )
        self._init_strategy = init_strategy
        self._model = model
        self._potential_fn = potential_fn
        self._potential_fn_gen = None
        self._postprocess_fn = None
        self._step_size = step_size
        self._adapt_step_size = adapt_step_size
        self._adapt_mass_matrix = adapt_mass_matrix
        self._num_steps_per_block = num_steps_per_block
        self._solver_options = {
            "solver": solver, "strategy": strategy, "atol": atol, "rtol": rtol,
            "max_iterations": max_iterations,
        }  # fmt: skip
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

        Raises:
            ValueError: ``num_warmup`` negative; ``init_params`` (given, or required with
                ``potential_fn``) empty, non-finite or at a non-finite potential/gradient, or
                not the model's latent sites with their (unconstrained) shapes; a model
                without latent sites.
            RuntimeError: NumPyro's init strategy found no valid initial point.
        """
        self._num_warmup = check_positive_int("num_warmup", num_warmup, minimum=0)
        given = init_params is not None
        self._batched = not is_prng_key(rng_key)
        split = lambda key: tuple(jax.random.split(key))
        rng_key, key_init = jax.vmap(split)(rng_key) if self._batched else split(rng_key)
        if self._model is not None:
            try:
                params, potential_gen, postprocess, _ = initialize_model(
                    key_init, self._model, init_strategy=self._init_strategy, dynamic_args=True,
                    model_args=model_args, model_kwargs=model_kwargs,
                )  # fmt: skip
            except RuntimeError as error:
                if not given:
                    raise
                raise ValueError(
                    "Cannot start the chain at `init_params`: NumPyro found no point where "
                    "the model's potential energy and its gradient are finite (its init "
                    f"strategy failed: {error}), so the log-density is probably NaN or -inf "
                    "almost everywhere."
                ) from error
            self._potential_fn_gen, self._postprocess_fn = potential_gen, postprocess
            if given:
                check_init_params(init_params, params.z)
            init_params = params.z if init_params is None else init_params
            reference = params.z
        elif init_params is None:
            raise ValueError("`init_params` must be given with `potential_fn`.")
        else:
            reference = None
        z = init_params.z if hasattr(init_params, "z") else init_params
        z = as_float_params(z, reference)
        one = jax.tree_util.tree_map(lambda x: x[0], z) if self._batched else z
        flat_one, self._unravel = ravel_pytree(one)
        if flat_one.size == 0:
            raise ValueError(
                "`model` has no latent sample sites (every site is observed): there is nothing "
                "to sample."
                if self._model is not None
                else "`init_params` is empty: `potential_fn` needs at least one parameter."
            )
        potential = self._potential(model_args, model_kwargs)
        if given:
            flat = (
                jax.vmap(lambda x: ravel_pytree(x)[0])(z) if self._batched else ravel_pytree(z)[0]
            )
            check_initial_point(potential, flat, self._unravel)
        init_one = lambda z, key: self._init_one(z, key, potential)
        return jax.vmap(init_one)(z, rng_key) if self._batched else init_one(z, rng_key)

    def _init_one(self, z, rng_key, potential) -> ParallelMALAState:
        flat, _ = ravel_pytree(z)
        d, dtype = flat.shape[0], flat.dtype
        num_steps_per_block = self._num_steps_per_block
        step_size = jnp.asarray(self._step_size, dtype)
        adapter_init, _ = warmup_adapter_for(self._adapt_options())
        adapt = adapter_init(
            (flat, None, None), jax.random.fold_in(rng_key, 1), step_size=step_size,
            inverse_mass_matrix=jnp.ones(d, dtype),
        )  # fmt: skip
        return ParallelMALAState(
            i=_int(0), z=z, potential_energy=potential(z),
            accept_prob=jnp.zeros((), dtype), diverging=~jnp.isfinite(potential(z)),
            step_size=step_size,
            inverse_mass_matrix=jnp.ones(d, dtype), adapt_state=adapt,
            block=jnp.zeros((num_steps_per_block, d), dtype),
            block_potential=jnp.zeros(num_steps_per_block, dtype),
            block_accept_prob=jnp.zeros(num_steps_per_block, dtype),
            block_diverging=jnp.zeros(num_steps_per_block, bool),
            block_index=_int(num_steps_per_block), num_iterations=_int(0),
            converged=jnp.asarray(True), stuck=jnp.asarray(False), rng_key=rng_key,
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
            s = lax.cond(first(s.block_index) >= self._num_steps_per_block, refill, identity, s)
            return hand_out(s)

        if self._num_warmup == 0:
            return sampling(state)
        return lax.cond(first(state.i) < self._num_warmup, warmup, sampling, state)

    def _base_kernel(self, potential, inverse_mass_matrix):
        """MALA in whitened coordinates u = z / sqrt(m): (step, init, scale)."""
        scale = jnp.sqrt(inverse_mass_matrix)
        logdensity = lambda u: -potential(self._unravel(scale * u))
        init = lambda u: blackjax.mala.init(u, logdensity)
        return mala_step(logdensity), init, scale

    def _adapt_options(self) -> AdaptOptions:
        return AdaptOptions(
            self._num_warmup, self._adapt_step_size, self._adapt_mass_matrix,
            self._target_accept_prob,
        )  # fmt: skip

    def _warmup_one(self, state, potential):
        key, key_step = jax.random.split(state.rng_key)
        step, init, scale = self._base_kernel(potential, state.inverse_mass_matrix)
        flat, _ = ravel_pytree(state.z)
        new, info = step(key_step, init(flat / scale), state.step_size)
        flat = new.position * scale
        accept_prob = info.acceptance_rate
        _, adapter_update = warmup_adapter_for(self._adapt_options())
        adapt_state = adapter_update(
            state.i, jnp.where(jnp.isfinite(accept_prob), accept_prob, 0.0), (flat, None, None),
            state.adapt_state,
        )  # fmt: skip
        step_size = adapt_state.step_size.astype(state.step_size.dtype)
        inverse_mass_matrix = adapt_state.inverse_mass_matrix.astype(flat.dtype)
        return state._replace(
            i=state.i + 1, z=self._unravel(flat), potential_energy=-new.logdensity,
            accept_prob=accept_prob, diverging=info.is_divergent, step_size=step_size,
            inverse_mass_matrix=inverse_mass_matrix, adapt_state=adapt_state, rng_key=key,
        )  # fmt: skip

    def _refill_one(self, state, potential):
        key, key_block = jax.random.split(state.rng_key)
        step, init, scale = self._base_kernel(potential, state.inverse_mass_matrix)
        flat, _ = ravel_pytree(state.z)
        states, info = run_chain(
            lambda k, s: step(k, s, state.step_size), init(flat / scale), key_block,
            self._num_steps_per_block, init_fn=init, **self._solver_options,
        )  # fmt: skip
        return state._replace(
            block=states.position * scale[None, :], block_potential=-states.logdensity,
            block_accept_prob=info.aux.acceptance_rate,
            block_diverging=info.aux.is_divergent, block_index=_int(0),
            num_iterations=_int(info.num_iterations), converged=info.converged,
            stuck=info.stuck, rng_key=key,
        )  # fmt: skip

    def _hand_out_one(self, state):
        j = state.block_index
        return state._replace(
            i=state.i + 1, z=self._unravel(state.block[j]),
            potential_energy=state.block_potential[j], accept_prob=state.block_accept_prob[j],
            diverging=state.block_diverging[j], block_index=j + 1,
        )  # fmt: skip


def _int(value: Any) -> jax.Array:
    return jnp.asarray(value, dtype=jnp.int32)
