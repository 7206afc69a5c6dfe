"""The fixed-point driver with the time axis split across devices, in one `jax.shard_map`.

With ``strategy=Sharded(...)`` and a window of the whole series (the default of `Jacobi`,
`Newton` and `QuasiNewton`), `numpyro_parallel.fixed_point.solve_recursion` (and so
`numpyro_parallel.mcmc.run_chain`) keeps each device's chunk of the chain on that device for
the whole solve: the iteration loop, the solver's linear recursions and the certification
run inside one ``shard_map``. Per iteration the devices exchange a volume independent of T:

- the state before each chunk comes from the previous device (one `lax.ppermute` of d
  numbers, `numpyro_parallel.scan.from_adjacent_shard`);
- the certified prefix is a global leading count: the first unconverged step of every
  device, reduced with `lax.pmin`; "any step" flags are reduced with `lax.pmax`;
- the solver's affine recursions and prefix sums are two-level scans (the `InShard`
  strategy: `numpyro_parallel.scan.sharded_prefix`, one all-gather of P elements), with the
  initial state folded in on the first device only.

The certification (`numpyro_parallel.fixed_point.result.certify`) is evaluated the same way;
its sequential fallback recomputes the uncertified steps device after device, each passing
its last state on. The loop, its stopping rule and the solvers are those of the one-device
driver (`numpyro_parallel.fixed_point.window.update_window`), so the results equal it to
rounding (Lim et al. 2024, "Parallelizing non-linear sequential models over the sequence
length"; Zoltowski et al. 2025, "Parallelizing MCMC across the sequence length").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec

from numpyro_parallel.fixed_point.result import (
    FixedPointResult,
    evaluate_with_sensitivity,
    make_result,
    recompute_from,
    residual_ok,
)
from numpyro_parallel.fixed_point.window import update_window
from numpyro_parallel.scan import InShard, from_adjacent_shard, run_sharded
from numpyro_parallel.strategy import Sharded

__all__ = ["solve_sharded"]


def solve_sharded(
    fn, step, solver, strategy: Sharded, x0, inputs, guess, probe_key, sensitivity_key, *,
    atol, rtol, max_iterations, on_iteration=None,
) -> FixedPointResult:  # fmt: skip
    """Iterate on the whole ``(T, d)`` iterate ``guess``, split along time, and certify it.

    Args:
        fn: the recursion ``fn(x, input) -> (x_next, aux)``.
        step: ``step(x, input) -> (x_next, decision)`` (the driver's wrapper of ``fn``).
        solver: a solver of `numpyro_parallel.fixed_point.solvers`.
        strategy: the `Sharded` strategy (its ``inner`` runs each device's chunk).
        x0: ``(d,)`` initial state.
        inputs: per-step inputs with leading axis T.
        guess: ``(T, d)`` starting iterate.
        probe_key: PRNG key of the solver's probes (folded with iteration and device).
        sensitivity_key: PRNG key of the certification's perturbations.
        atol: absolute tolerance.
        rtol: relative tolerance.
        max_iterations: cap on parallel iterations.
        on_iteration: host callback ``(iteration, fraction)`` of the progress bar.

    Returns:
        A `FixedPointResult` equal, to rounding, to the one-device driver's.
    """
    num_steps, dim = guess.shape
    axis = strategy.axis_name
    signs = jax.random.rademacher(sensitivity_key, (num_steps, dim), guess.dtype)
    marker = InShard(strategy)

    def local(replicated, xs, local_inputs, local_signs, index):
        x0, probe_key = replicated
        device = lax.axis_index(axis)
        valid = index < num_steps  # the padding after step T - 1 never counts

        def shift(states):  # each state's predecessor
            incoming = jnp.where(device == 0, x0, from_adjacent_shard(states[-1], strategy))
            return jnp.concatenate([incoming[None], states[:-1]])

        def leading(ok):  # the global leading count of True
            first_bad = jnp.min(jnp.where(ok | ~valid, num_steps, index))
            return lax.pmin(first_bad, axis)

        def anywhere(flags):
            return lax.pmax(jnp.any(flags & valid).astype(jnp.int32), axis) > 0

        def cond(carry):
            _, _, prefix, iteration, stuck = carry
            return (prefix < num_steps) & (iteration < max_iterations) & ~stuck

        def body(carry):
            xs, decisions, prefix, iteration, _ = carry
            key = jax.random.fold_in(jax.random.fold_in(probe_key, iteration), device)
            new = update_window(
                step, solver, marker, shift(xs), xs, local_inputs, decisions, index, prefix,
                key, atol=atol, rtol=rtol,
            )  # fmt: skip
            count = leading(new.converged)
            # As in the one-device loop: the state after the prefix is exact unless
            # non-finite, and for some solvers so is the state after unchanged ones.
            exact_finite = anywhere(new.exact_finite)
            after = solver.exact_after_unchanged & anywhere((index == count) & new.finite)
            advanced = jnp.maximum(count + after.astype(count.dtype), prefix + exact_finite)
            if on_iteration is not None:  # one report per iteration, from the first device
                report = lambda: jax.debug.callback(
                    on_iteration, iteration + 1, advanced / num_steps
                )
                lax.cond(device == 0, report, lambda: None)
            prefix = advanced.astype(prefix.dtype)
            return new.states, new.decisions, prefix, iteration + 1, ~exact_finite

        start = (xs, jnp.zeros(xs.shape[0], jnp.int32), 0, 0, False)
        start = jax.tree_util.tree_map(jnp.asarray, start)
        xs, _, _, num_iterations, _ = lax.while_loop(cond, body, start)

        # Certification: the true residual, a sequential fallback past the certified prefix.
        prev = shift(xs)
        fx = jax.vmap(lambda x, inp: fn(x, inp)[0])(prev, local_inputs)
        certified = leading(residual_ok(xs, fx, atol, rtol))
        xs = _sequential_tail(fn, xs, prev[0], local_inputs, index, certified, num_steps, strategy)
        fx, aux, jump = evaluate_with_sensitivity(
            fn, shift(xs), local_inputs, local_signs, atol=atol, rtol=rtol
        )
        finite = lax.pmin(jnp.all(jnp.isfinite(xs) | ~valid[:, None]).astype(jnp.int32), axis)
        residual = jnp.max(jnp.where(valid[:, None], jnp.abs(xs - fx), 0.0))
        sensitive = jnp.sum(jump & valid)
        scalars = (finite > 0, certified, num_iterations, lax.pmax(residual, axis))
        return xs, aux, (*scalars, lax.psum(sensitive, axis))

    along_time, replicated = PartitionSpec(axis), PartitionSpec()
    states, aux, scalars = run_sharded(
        local,
        (x0, probe_key),
        (guess, inputs, signs),
        strategy,
        (along_time, along_time, replicated),
    )
    finite, certified, num_iterations, residual, sensitive = scalars
    return make_result(
        states, aux, finite=finite, fallback=certified < num_steps,
        num_iterations=num_iterations, residual=residual,
        num_sequential_steps=num_steps - certified, num_sensitive_steps=sensitive,
    )  # fmt: skip


def _sequential_tail(fn, xs, first_prev, inputs, index, certified, num_steps, strategy):
    """Inside the ``shard_map``: recompute every step from global step ``certified`` on,
    sequentially, one device after the other (round r: device r recomputes its part from
    the state the previous round passed it, then passes its last state on). No round runs
    when every step is certified."""
    device, length = lax.axis_index(strategy.axis_name), xs.shape[0]

    def round_(r, carry):
        states, incoming = carry
        begin = jnp.where(device == r, jnp.clip(certified - index[0], 0, length), length)
        buf = jnp.concatenate([incoming[None], states])
        states = recompute_from(fn, buf, inputs, begin)[1:]
        passed = from_adjacent_shard(states[-1], strategy)
        return states, jnp.where(device == r + 1, passed, incoming)

    first_round = certified // length
    last_round = jnp.where(certified < num_steps, strategy.num_shards, first_round)
    return lax.fori_loop(first_round, last_round, round_, (xs, first_prev))[0]
