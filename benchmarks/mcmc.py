"""Benchmark: parallel-in-time MALA chains vs sequential BlackJAX MALA.

Target: Bayesian logistic regression on simulated data (n = 500, d features, N(0, 1) prior),
MALA with step size 1 / (largest eigenvalue of the Hessian at the MAP) * d^(-1/3), chains
started at the MAP (found by Newton's method) so that the numbers describe stationary chains.
Measured per (solver, T, d, number of chains): compile time, median run time, solver
iterations (max over chains), whether every chain converged, and the sequential BlackJAX
chain (`lax.scan` of `blackjax.mala(...).step`) on the same kernel and random numbers.

Usage: ``python benchmarks/mcmc.py [--quick]``; writes
``benchmarks/results/mcmc_<platform>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_parallel.mcmc.parallel_chain import parallel_chain, sequential_chain

jax.config.update("jax_enable_x64", True)
import blackjax  # noqa: E402


def make_problem(dim: int, num_obs: int = 500, seed: int = 0):
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(num_obs, dim)))
    coefficients = rng.normal(0, 0.5, size=dim)
    labels = jnp.asarray(rng.uniform(size=num_obs) < 1 / (1 + np.exp(-features @ coefficients)))
    labels = labels.astype(jnp.float64)

    def logdensity_fn(beta):
        logits = features @ beta
        return jnp.sum(labels * logits - jnp.logaddexp(0.0, logits)) - 0.5 * beta @ beta

    beta = jnp.zeros(dim)
    for _ in range(20):  # Newton's method for the MAP
        hessian = -jax.hessian(logdensity_fn)(beta)
        beta = beta + jnp.linalg.solve(hessian, jax.grad(logdensity_fn)(beta))
    step_size = float(dim ** (-1 / 3) / jnp.linalg.eigvalsh(hessian)[-1])
    return logdensity_fn, beta, step_size


def measure(fn, args, repeats):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_time = time.perf_counter() - start
    if repeats > 1:  # one untimed warm run before the timed repeats
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return out, compile_time, statistics.median(times)


def run_case(dim, num_steps, num_chains, solvers, repeats):
    logdensity_fn, map_estimate, step_size = make_problem(dim)
    mala = blackjax.mala(logdensity_fn, step_size)
    keys = jax.random.split(jax.random.key(1), num_chains)
    states = jax.vmap(lambda _: mala.init(map_estimate))(keys)

    def sequential(keys, states):
        return jax.vmap(lambda k, s: sequential_chain(mala, s, k, num_steps))(keys, states)

    (seq_states, seq_info), seq_compile, seq_time = measure(sequential, (keys, states), repeats)
    rows = []
    for solver in solvers:

        def parallel(keys, states, solver=solver):
            run = lambda k, s: parallel_chain(mala, s, k, num_steps, solver=solver)
            return jax.vmap(run)(keys, states)

        (states_p, info), compile_time, run_time = measure(parallel, (keys, states), repeats)
        rows.append(
            {
                "solver": solver,
                "num_steps": num_steps,
                "dim": dim,
                "num_chains": num_chains,
                "iterations": int(jnp.max(info.num_iterations)),
                "converged": bool(jnp.all(info.converged)),
                "max_abs_diff": float(jnp.max(jnp.abs(states_p.position - seq_states.position))),
                "same_accepts": bool(
                    jnp.all(info.step_info.is_accepted == seq_info.step_info.is_accepted)
                ),
                "acceptance": float(jnp.mean(seq_info.step_info.acceptance_rate)),
                "compile_s": compile_time,
                "run_s": run_time,
                "sequential_compile_s": seq_compile,
                "sequential_run_s": seq_time,
                "speedup": seq_time / run_time,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid")
    args = parser.parse_args()
    all_solvers = ("newton", "quasi_newton", "jacobi")
    if args.quick:
        grid = [(5, 1000, 1, all_solvers, 3), (25, 1000, 4, ("newton",), 3)]
    else:  # trimmed to fit ~10 minutes on a 2-core CPU (see the Markdown notes)
        grid = [
            (5, 1000, 1, all_solvers, 3),
            (25, 1000, 1, all_solvers, 1),
            (25, 10_000, 1, ("newton", "quasi_newton"), 1),
            (25, 64_000, 1, ("newton",), 1),
            (25, 1000, 4, ("newton",), 1),
            (25, 1000, 16, ("newton",), 1),
        ]
    rows = []
    for case in grid:
        rows += run_case(*case)
    platform = jax.default_backend()
    meta = {
        "device": jax.devices()[0].device_kind,
        "platform": platform,
        "jax_version": jax.__version__,
        "blackjax_version": blackjax.__version__,
        "dtype": "float64",
        "quick": args.quick,
        "problem": "MALA, logistic regression n=500 (simulated), chains started at the MAP",
    }
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"mcmc_{platform}.json"), "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=2)
    lines = [
        f"# Parallel MALA vs sequential BlackJAX MALA ({meta['device']}, {platform}, float64, "
        f"jax {meta['jax_version']})",
        "",
        f"{meta['problem']}. Times in seconds: compile time separately, then the median run.",
        "Grid trimmed to fit ~10 minutes on a 2-core CPU: Jacobi only at T = 1000, quasi-Newton",
        "up to T = 10 000, Newton up to T = 64 000; batches of chains at T = 1000 only; one",
        "timed run for the larger cases. `iterations` is the maximum over chains.",
        "",
        "| solver | T | d | chains | iterations | converged | same accepts | max abs diff "
        "| compile | run | sequential run | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['solver']} | {r['num_steps']} | {r['dim']} | {r['num_chains']} | "
            f"{r['iterations']} | {r['converged']} | {r['same_accepts']} | "
            f"{r['max_abs_diff']:.1e} | {r['compile_s']:.2f} | {r['run_s']:.3f} | "
            f"{r['sequential_run_s']:.3f} | {r['speedup']:.2f} |"
        )
    with open(os.path.join(out_dir, f"mcmc_{platform}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
