"""Result type of the tempered SMC runner and the thresholds of its failure flags."""

from __future__ import annotations

from typing import NamedTuple

import jax

__all__ = ["MIN_ACCEPTANCE", "MIN_JUMP", "MIN_UNIQUE_FRACTION", "TemperedSMCResult"]

#: collapse thresholds: final-stage acceptance and fraction of distinct particles.
MIN_ACCEPTANCE, MIN_UNIQUE_FRACTION = 0.02, 0.25
#: poor-mixing threshold on the median relative squared jump distance of the mutations.
MIN_JUMP = 0.05


class TemperedSMCResult(NamedTuple):
    """Output of `tempered_smc` (arrays gain a leading axis when the runner is vmapped).

    Attributes:
        samples: dict of constrained particle values (leading axis N), deterministic sites
            included; equally weighted (the last stage ends with a resample-move).
        unconstrained: ``(N, D)`` flat unconstrained particles.
        log_weights: ``(N,)`` normalised final log-weights (uniform, ``-log N``).
        log_evidence: estimate of ``log p(y)``; -inf when every particle has zero likelihood,
            NaN when the model's log-density is NaN at the particles.
        num_stages: number of tempering stages used.
        tempering_schedule: ``(max_stages,)`` lambdas (NaN after the last stage).
        acceptance_rate: ``(max_stages,)`` mean MCMC acceptance per stage (NaN padded).
        step_size: ``(max_stages,)`` adapted step size (relative to the particle spread) at the
            end of each stage (NaN padded).
        num_unique: ``(max_stages,)`` number of distinct particles after each stage's move
            (-1 padded): the particle diversity.
        ess: ``(max_stages,)`` ESS of each stage's incremental weights (NaN padded).
        jump_distance: ``(max_stages,)`` mean squared move of the particles in each stage's
            mutation relative to their variance, averaged over dimensions (about 2 when the
            moves decorrelate the particles; NaN padded).
        converged: lambda reached 1 and none of the flags below is set.
        hit_max_stages: the loop stopped at ``max_stages`` before lambda = 1.
        nan_potential: a NaN (or +inf) log-prior or log-likelihood at the particles.
        zero_evidence: every particle had zero likelihood (log-evidence -inf).
        collapsed: the final stage accepted almost no move (< 2 %) or fewer than a quarter of
            the particles are distinct: the particle approximation is degenerate.
        poor_mixing: the median ``jump_distance`` over the stages is below 0.05: the moves
            barely moved the particles (a step size adapted down to the thinnest direction of
            a correlated posterior), so the particles keep the errors of earlier stages.
    """

    samples: dict
    unconstrained: jax.Array
    log_weights: jax.Array
    log_evidence: jax.Array
    num_stages: jax.Array
    tempering_schedule: jax.Array
    acceptance_rate: jax.Array
    step_size: jax.Array
    num_unique: jax.Array
    ess: jax.Array
    jump_distance: jax.Array
    converged: jax.Array
    hit_max_stages: jax.Array
    nan_potential: jax.Array
    zero_evidence: jax.Array
    collapsed: jax.Array
    poor_mixing: jax.Array
