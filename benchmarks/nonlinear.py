"""Benchmark: parallel vs sequential iterated smoothers on the noisy pendulum (+ cuthbert).

For each T we time a fixed number of iterations (``atol=0``) of the iterated extended and
cubature smoothers, parallel and sequential, started from the prior, and cuthbert 0.1's
sequential extended (moments) filter + smoother, i.e. one non-iterated pass, and its
associative (parallel) variant linearised at a given trajectory (one iteration's worth of
work). Compile time (``jit(f).lower(...).compile()``) is reported separately from the median
run time. Writes ``benchmarks/results/nonlinear_<platform>.{json,md}``.

Run: ``python benchmarks/nonlinear.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure

from numpyro_parallel.ssm.nonlinear.smoother import (
    NonlinearGaussianModel,
    check_model,
    iterated_smoother,
)

DT, G = 0.0125, 9.81


def transition_fn(x):
    return jnp.stack([x[0] + x[1] * DT, x[1] - G * jnp.sin(x[0]) * DT])


def observation_fn(x):
    return jnp.sin(x[:1])


def make_model(dtype):
    Q = jnp.array([[DT**3 / 3, DT**2 / 2], [DT**2 / 2, DT]], dtype)
    return NonlinearGaussianModel(
        jnp.array([1.5, 0.0], dtype),
        jnp.sqrt(0.1) * jnp.eye(2, dtype=dtype),
        transition_fn,
        jnp.linalg.cholesky(Q),
        observation_fn,
        0.3 * jnp.eye(1, dtype=dtype),
    )


def simulate(model, num_steps, seed=0):
    rng = np.random.default_rng(seed)
    x = np.array(model.initial_mean)
    chol_q = np.array(model.transition_chol)
    ys = []
    f = jax.jit(transition_fn)
    xs = []
    for _ in range(num_steps):
        xs.append(x)
        x = np.asarray(f(x)) + chol_q @ rng.normal(size=2)
    xs = np.array(xs)
    ys = np.sin(xs[:, :1]) + 0.3 * rng.normal(size=(num_steps, 1))
    return jnp.asarray(ys, model.initial_mean.dtype)


def cuthbert_fns(model, parallel):
    """cuthbert moments filter+smoother; our convention via a first identity step."""
    from cuthbert import filter as cuthbert_filter
    from cuthbert import smoother as cuthbert_smoother
    from cuthbert.gaussian import moments

    chol_q, chol_r = model.transition_chol, model.observation_chol

    def dynamics(state, inputs):
        first = inputs["t"] == 0

        def mean_chol(x):
            return jnp.where(first, x, transition_fn(x)), jnp.where(first, 0.0 * chol_q, chol_q)

        point = inputs["lin_prev"] if parallel else state.mean
        return mean_chol, point

    def observation(state, inputs):
        point = inputs["lin"] if parallel else state.mean
        return (lambda x: (observation_fn(x), chol_r)), point, inputs["y"]

    def run(y, trajectory):
        prev = jnp.concatenate([trajectory[:1], trajectory[:-1]])
        inputs = {"t": jnp.arange(y.shape[0]), "y": y, "lin": trajectory, "lin_prev": prev}
        with jax.numpy_rank_promotion("allow"):
            filt = moments.build_filter(
                model.initial_mean, model.initial_chol, dynamics, observation, associative=parallel
            )
            states = cuthbert_filter(filt, inputs, filt.init_prepare(), parallel=parallel)
            smoother = moments.build_smoother(dynamics)
            return cuthbert_smoother(smoother, states, inputs, parallel=parallel).mean

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float32 if args.float32 else jnp.float64
    grid = [100, 1000] if args.quick else [100, 1000, 10_000, 100_000]
    cuthbert_parallel_max = 1000  # its associative filter compiles very slowly beyond this
    repeats = 3 if args.quick else 5
    model = make_model(dtype)
    try:
        import cuthbert  # noqa: F401

        have_cuthbert = True
    except ImportError:
        have_cuthbert = False

    rows = []
    for num_steps in grid:
        y = simulate(model, num_steps)
        m = check_model(model, num_steps)
        for method in ("extended", "cubature"):
            for parallel in (True, False):

                def fn(y, method=method, parallel=parallel, m=m):
                    strategy = "auto" if parallel else "sequential"
                    return iterated_smoother(
                        m,
                        y,
                        method=method,
                        max_iterations=args.iterations,
                        atol=0.0,
                        initial_trajectory="prior",
                        strategy=strategy,
                    ).mean

                compile_s, run_s, _ = measure(fn, y, repeats=repeats)
                rows.append(
                    dict(
                        library="numpyro_parallel",
                        algorithm=f"iterated {method} ({args.iterations} it.)",
                        mode="parallel" if parallel else "sequential",
                        T=num_steps,
                        compile_s=compile_s,
                        run_s=run_s,
                        per_iteration_s=run_s / args.iterations,
                    )
                )
                print(rows[-1], flush=True)
        if have_cuthbert:
            trajectory = jnp.broadcast_to(model.initial_mean, (num_steps, 2))
            for parallel in (False, True):
                if parallel and num_steps > cuthbert_parallel_max:
                    continue
                compile_s, run_s, _ = measure(
                    cuthbert_fns(model, parallel), y, trajectory, repeats=repeats
                )
                rows.append(
                    dict(
                        library="cuthbert",
                        algorithm="extended filter+smoother (1 pass)",
                        mode="parallel" if parallel else "sequential",
                        T=num_steps,
                        compile_s=compile_s,
                        run_s=run_s,
                        per_iteration_s=run_s,
                    )
                )
                print(rows[-1], flush=True)

    platform = jax.default_backend()
    meta = dict(
        device_kind=jax.devices()[0].device_kind,
        platform=platform,
        dtype=str(jnp.dtype(dtype)),
        jax_version=jax.__version__,
        model="pendulum d=2 p=1",
        iterations=args.iterations,
        grid=grid,
        note=(
            f"cuthbert's associative filter only up to T={cuthbert_parallel_max} (compile time); "
            "per-iteration time of cuthbert = one non-iterated pass"
        ),
    )
    os.makedirs(args.output_dir, exist_ok=True)
    base = os.path.join(args.output_dir, f"nonlinear_{platform}")
    with open(base + ".json", "w") as fh:
        json.dump(dict(meta=meta, results=rows), fh, indent=2)
    lines = [
        f"# Iterated nonlinear smoothers — {meta['device_kind']} ({platform}), {meta['dtype']}, "
        f"jax {meta['jax_version']}",
        "",
        f"Pendulum (d=2, p=1); {args.iterations} iterations per run (atol=0). {meta['note']}.",
        "",
        "| library | algorithm | mode | T | compile [s] | run [ms] | per iteration [ms] |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['library']} | {r['algorithm']} | {r['mode']} | {r['T']} | "
            f"{r['compile_s']:.2f} | {1e3 * r['run_s']:.2f} | {1e3 * r['per_iteration_s']:.3f} |"
        )
    with open(base + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
