"""The state of `ParallelMALA` / `ParallelHMC` (re-exported by `parallel_mcmc`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

__all__ = ["ParallelMALAState"]


class ParallelMALAState(NamedTuple):
    """State of `ParallelMALA` (one chain; vectorized chains add a leading axis).

    Attributes:
        i: iteration counter (warmup and sampling).
        z: current unconstrained sample (dict of sites).
        potential_energy: potential energy at ``z``.
        accept_prob: acceptance probability of the step that produced ``z`` (0 for a
            non-finite proposal).
        diverging: whether the step that produced ``z`` started at or proposed a non-finite
            potential or gradient (HMC: or its energy error exceeded the threshold).
        step_size: MALA step size.
        inverse_mass_matrix: diagonal inverse mass matrix (flat).
        adapt_state: NumPyro's warmup-adapter state (`numpyro.infer.hmc_util.HMCAdaptState`).
        block: ``(block_size, d)`` flat draws of the current block.
        block_potential: potential energies of the block.
        block_accept_prob: acceptance probabilities of the block.
        block_diverging: divergent transitions of the block.
        block_index: next draw of the block to hand out.
        num_iterations: solver iterations of the last block.
        converged: whether the last block's solve converged.
        stuck: whether the last block never left its starting point (every proposal of a
            block of at least 50 steps rejected; collect it with
            ``extra_fields=("stuck",)``; `numpyro_parallel.diagnostics.from_numpyro` warns
            about chains whose draws never change).
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
    block_diverging: jax.Array
    block_index: jax.Array
    num_iterations: jax.Array
    converged: jax.Array
    stuck: jax.Array
    rng_key: jax.Array
