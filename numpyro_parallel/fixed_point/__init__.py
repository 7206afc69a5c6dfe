"""Fixed-point iteration over a recursion's length: one driver, four solvers, one result.

``solve_recursion(fn, initial_state, inputs, solver=Newton())`` computes
``x_t = fn(x_{t-1}, inputs[t-1])`` for all t at once; `numpyro_parallel.mcmc.run_chain` uses
it for whole MCMC chains; ``iterate_map(G, z0, ...)`` iterates a map of whole trajectories
(the iterated smoothers' Gauss–Newton / posterior-linearisation step) with the same stopping
rule, statuses and result. See `numpyro_parallel.fixed_point.driver` (the sliding-window loop),
`numpyro_parallel.fixed_point.iterate_map` (the whole-trajectory loop),
`numpyro_parallel.fixed_point.solvers` (the update rules) and
`numpyro_parallel.fixed_point.result` (the result, its status and the certification).
"""

from numpyro_parallel.fixed_point.checks import default_tolerances
from numpyro_parallel.fixed_point.driver import sequential_recursion, solve_recursion
from numpyro_parallel.fixed_point.iterate_map import iterate_map
from numpyro_parallel.fixed_point.result import (
    FALLBACK,
    MAX_ITERATIONS,
    NON_FINITE,
    OK,
    STATUS_NAMES,
    FixedPointResult,
    certify,
)
from numpyro_parallel.fixed_point.solvers import (
    Jacobi,
    Newton,
    OnlinePicard,
    QuasiNewton,
    Solver,
    SolverLike,
    as_solver,
)

__all__ = [
    "FALLBACK",
    "MAX_ITERATIONS",
    "NON_FINITE",
    "OK",
    "STATUS_NAMES",
    "FixedPointResult",
    "Jacobi",
    "Newton",
    "OnlinePicard",
    "QuasiNewton",
    "Solver",
    "SolverLike",
    "as_solver",
    "certify",
    "default_tolerances",
    "iterate_map",
    "sequential_recursion",
    "solve_recursion",
]
