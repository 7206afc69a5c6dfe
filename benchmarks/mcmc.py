"""Benchmark: parallel-in-time MALA and random-walk chains vs the sequential BlackJAX chains.

Target: Bayesian logistic regression on simulated data (n = 500, d features, N(0, 1) prior),
MALA with step size 1 / (largest eigenvalue of the Hessian at the MAP) * d^(-1/3), chains
started at the MAP (found by Newton's method) so that the numbers describe stationary chains.
Measured per (solver, T, d, number of chains): compile time, median run time, solver
iterations (max over chains), whether every chain converged, and the sequential BlackJAX
chain (`lax.scan` of `blackjax.mala(...).step`) on the same kernel and random numbers.

Random-walk Metropolis rows (same target, Gaussian proposal preconditioned by the inverse
Hessian at the MAP, scale 2.38 / sqrt(d)): online Picard (Grazzi & Zanella) with its default
window and with the whole chain as window, and Jacobi (window = online Picard's default,
``max_iterations = T`` so that it finishes without the sequential fallback), each against the
sequential chain.

Usage: ``python benchmarks/mcmc.py [--quick] [--rwm-only]``; writes
``benchmarks/results/mcmc_<platform>.json`` and ``.md`` (``--rwm-only`` reruns only the
random-walk rows and keeps the MALA rows and notes already in the result files).
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure

from numpyro_parallel.fixed_point import OnlinePicard
from numpyro_parallel.mcmc import run_chain

jax.config.update("jax_enable_x64", True)
import blackjax  # noqa: E402
from blackjax.mcmc import random_walk  # noqa: E402

RWM_HEADING = "## Random-walk Metropolis: online Picard vs Jacobi vs sequential"
RWM_PROBLEM = (
    "RWM, same logistic regression, proposal 2.38 / sqrt(d) x Cholesky factor of the inverse "
    "Hessian at the MAP, chain started at the MAP"
)


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
    return logdensity_fn, beta, step_size, hessian


def timed(fn, args, repeats):
    """``(output, compile_s, median_s)``; a single timed run (no warm-up) when ``repeats`` is 1."""
    compile_s, run_s, out = measure(fn, *args, repeats=repeats, warm_up=repeats > 1)
    return out, compile_s, run_s


def _comparison(parallel, sequential):
    """Row fields comparing a parallel run with the sequential chain (batched or not).

    Both arguments are ``(states, info, compile_s, run_s)``; iterations are the maximum over
    chains and ``converged`` requires every chain to converge.
    """
    states, info, compile_s, run_s = parallel
    seq_states, seq_info, seq_compile_s, seq_run_s = sequential
    return {
        "iterations": int(jnp.max(info.num_iterations)),
        "converged": bool(jnp.all(info.converged)),
        "max_abs_diff": float(jnp.max(jnp.abs(states.position - seq_states.position))),
        "same_accepts": bool(jnp.all(info.aux.is_accepted == seq_info.aux.is_accepted)),
        "compile_s": compile_s,
        "run_s": run_s,
        "sequential_compile_s": seq_compile_s,
        "sequential_run_s": seq_run_s,
        "speedup": seq_run_s / run_s,
    }


def run_case(dim, num_steps, num_chains, solvers, repeats):
    logdensity_fn, map_estimate, step_size, _ = make_problem(dim)
    mala = blackjax.mala(logdensity_fn, step_size)
    keys = jax.random.split(jax.random.key(1), num_chains)
    states = jax.vmap(lambda _: mala.init(map_estimate))(keys)

    def sequential(keys, states):
        run = lambda k, s: run_chain(mala, s, k, num_steps, strategy="sequential")
        return jax.vmap(run)(keys, states)

    (seq_states, seq_info), seq_compile, seq_time = timed(sequential, (keys, states), repeats)
    rows = []
    for solver in solvers:

        def parallel(keys, states, solver=solver):
            run = lambda k, s: run_chain(mala, s, k, num_steps, solver=solver)
            return jax.vmap(run)(keys, states)

        (states_p, info), compile_time, run_time = timed(parallel, (keys, states), repeats)
        rows.append(
            {
                "kernel": "mala",
                "solver": solver,
                "num_steps": num_steps,
                "dim": dim,
                "num_chains": num_chains,
                **_comparison(
                    (states_p, info, compile_time, run_time),
                    (seq_states, seq_info, seq_compile, seq_time),
                ),
                "acceptance": float(jnp.mean(seq_info.aux.acceptance_rate)),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run_rwm_case(dim, num_steps, repeats):
    logdensity_fn, map_estimate, _, hessian = make_problem(dim)
    sigma = 2.38 / dim**0.5 * jnp.linalg.cholesky(jnp.linalg.inv(hessian))
    rwm = blackjax.additive_step_random_walk(logdensity_fn, random_walk.normal(sigma))
    key, state = jax.random.key(1), rwm.init(map_estimate)
    sequential = lambda key, state: run_chain(rwm, state, key, num_steps, strategy="sequential")
    (seq_states, seq_info), seq_compile, seq_time = timed(sequential, (key, state), repeats)
    window = OnlinePicard().default_window(num_steps, dim)
    variants = [("online_picard", window, None), ("jacobi", window, num_steps)]
    if num_steps <= 1000:
        variants.insert(1, ("online_picard", num_steps, None))
    rows = []
    for solver, width, max_iterations in variants:

        def parallel(key, state, solver=solver, width=width, max_iterations=max_iterations):
            return run_chain(
                rwm, state, key, num_steps, solver=solver, window=width,
                max_iterations=max_iterations,
            )  # fmt: skip

        (states, info), compile_time, run_time = timed(parallel, (key, state), repeats)
        rows.append(
            {
                "kernel": "rwm",
                "solver": solver,
                "window": width,
                "num_steps": num_steps,
                "dim": dim,
                "num_chains": 1,
                **_comparison(
                    (states, info, compile_time, run_time),
                    (seq_states, seq_info, seq_compile, seq_time),
                ),
                "acceptance": float(jnp.mean(seq_info.aux.is_accepted)),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def rwm_section(rows, device):
    lines = [
        RWM_HEADING,
        "",
        f"Random-walk Metropolis ({device}, float64) on the same logistic regression, Gaussian",
        "proposal preconditioned by the inverse Hessian at the MAP (scale 2.38 / sqrt(d)), chain",
        "started at the MAP. `online_picard` is the Picard map on the accept decisions (Grazzi &",
        "Zanella); `jacobi` gets the same window and `max_iterations = T`. Both return the",
        "sequential chain (`same accepts`, `max abs diff` against `lax.scan`). Each iteration",
        "evaluates `window` steps, so on a CPU the parallel chain is slower than `lax.scan`;",
        "`iterations / T` is the hardware-independent result (times: median of 3 runs at",
        "T = 1000, one run at T = 10 000).",
        "",
        "| solver | T | d | window | iterations | iterations / T | converged | same accepts "
        "| max abs diff | acceptance | compile | run | sequential run | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['solver']} | {r['num_steps']} | {r['dim']} | {r['window']} | "
            f"{r['iterations']} | {r['iterations'] / r['num_steps']:.2f} | {r['converged']} | "
            f"{r['same_accepts']} | {r['max_abs_diff']:.1e} | {r['acceptance']:.2f} | "
            f"{r['compile_s']:.2f} | {r['run_s']:.3f} | {r['sequential_run_s']:.3f} | "
            f"{r['speedup']:.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid")
    parser.add_argument("--rwm-only", action="store_true", help="only the random-walk rows")
    args = parser.parse_args()
    platform = jax.default_backend()
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, f"mcmc_{platform}.json")
    md_path = os.path.join(out_dir, f"mcmc_{platform}.md")
    if args.quick:
        rwm_grid = [(5, 1000, 3)]
    else:
        rwm_grid = [(5, 1000, 3), (25, 1000, 3), (5, 10_000, 1), (25, 10_000, 1)]
    rwm_rows = []
    for case in rwm_grid:
        rwm_rows += run_rwm_case(*case)
    device = jax.devices()[0].device_kind
    if args.rwm_only:  # keep the MALA rows and notes of an earlier full run, if any
        previous = {"meta": {}, "results": []}
        if os.path.exists(json_path):
            with open(json_path) as f:
                previous = json.load(f)
        rows = [r for r in previous["results"] if r.get("kernel", "mala") != "rwm"] + rwm_rows
        meta = {
            "device": device, "platform": platform, "jax_version": jax.__version__,
            "blackjax_version": blackjax.__version__, "dtype": "float64",
            **previous["meta"], "rwm_problem": RWM_PROBLEM,
        }  # fmt: skip
        with open(json_path, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)
        text = f"# Parallel MCMC chains ({device}, {platform}, float64, jax {jax.__version__})"
        if os.path.exists(md_path):
            with open(md_path) as f:
                text = f.read().split(RWM_HEADING)[0].rstrip("\n")
        with open(md_path, "w") as f:
            f.write(text + "\n\n" + "\n".join(rwm_section(rwm_rows, device)) + "\n")
        print("\n".join(rwm_section(rwm_rows, device)))
        return
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
    meta = {
        "device": device,
        "platform": platform,
        "jax_version": jax.__version__,
        "blackjax_version": blackjax.__version__,
        "dtype": "float64",
        "quick": args.quick,
        "problem": "MALA, logistic regression n=500 (simulated), chains started at the MAP",
        "rwm_problem": RWM_PROBLEM,
    }
    with open(json_path, "w") as f:
        json.dump({"meta": meta, "results": rows + rwm_rows}, f, indent=2)
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
    lines += ["", *rwm_section(rwm_rows, device)]
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
