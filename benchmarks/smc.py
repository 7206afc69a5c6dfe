"""SMC benchmark: particle-filter step cost, resampler cost, dSMC vs PF + FFBS.

Writes benchmarks/results/smc_<platform>.json and .md. Compile time (``jit(f).lower().compile()``)
is reported separately from the median run time (``block_until_ready``).

Anchors: cuthbert's particle filter (installed), BlackJAX's generic SMC step
(``blackjax.smc.base.step`` once per time step, with the transition as the move and the
observation density as the weight: BlackJAX has no state-space filter of its own) and a
minimal hand-written ``lax.scan`` bootstrap filter (the leanest JAX implementation).

dSMC is timed with exact (N x N) stitching and with lazy (rejection) stitching, whose mean
number of trials per pair, fallback count and bound violations are recorded.

Run: python benchmarks/smc.py [--quick] [--dtype float32|float64] [--only all|dsmc]
(``--only dsmc`` reruns the smoother section only and keeps the other rows of the existing
result file.)
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure

from numpyro_parallel.smc.dsmc import dsmc
from numpyro_parallel.smc.ffbs import backward_sampling
from numpyro_parallel.smc.particle_filter import bootstrap, run
from numpyro_parallel.smc.resampling import RESAMPLERS, systematic

PHI, Q_SD, R_SD = 0.9, 0.7, 1.0
LOG_BOUND = -np.log(Q_SD) - 0.5 * np.log(2 * np.pi)  # max of the N(., PHI x, Q_SD^2) density


def timed(fn, *args, repeats=5):
    """(compile seconds, median run seconds) of ``jax.jit(fn)(*args)``."""
    compile_s, run_s, _ = measure(fn, *args, repeats=repeats)
    return compile_s, run_s


def timed_with_output(fn, *args, repeats=5):
    """(compile seconds, median run seconds, output) of ``jax.jit(fn)``."""
    return measure(fn, *args, repeats=repeats)


def norm_logpdf(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2 - jnp.log(sd) - 0.5 * jnp.log(2 * jnp.pi)


def data(num_steps, dtype):
    rng = np.random.default_rng(0)
    x, ys = 0.0, []
    for _ in range(num_steps):
        x = PHI * x + Q_SD * rng.normal()
        ys.append(x + R_SD * rng.normal())
    return jnp.asarray(np.array(ys)[:, None], dtype)


def ours_pf(key, ys, num_particles):
    dtype = ys.dtype
    model = bootstrap(
        lambda k: jax.random.normal(k, (1,), dtype),
        lambda k, x, t: PHI * x + Q_SD * jax.random.normal(k, (1,), dtype),
        lambda x, y, t: norm_logpdf(y[0], x[0], R_SD),
    )
    return run(key, model, ys, num_particles).log_likelihood


def minimal_pf(key, ys, num_particles):
    """Leanest bootstrap filter: systematic resampling every step, log-likelihood only."""
    dtype = ys.dtype
    key0, key_steps = jax.random.split(key)
    x0 = jax.random.normal(key0, (num_particles,), dtype)
    lw0 = norm_logpdf(ys[0, 0], x0, R_SD)
    log_z0 = jax.nn.logsumexp(lw0) - jnp.log(num_particles)

    def body(carry, inputs):
        x, lw, log_z = carry
        k, y = inputs
        k1, k2 = jax.random.split(k)
        idx = systematic(k1, lw, num_particles, is_log=True)
        x = PHI * x[idx] + Q_SD * jax.random.normal(k2, (num_particles,), dtype)
        lw = norm_logpdf(y[0], x, R_SD)
        return (x, lw, log_z + jax.nn.logsumexp(lw) - jnp.log(num_particles)), None

    keys = jax.random.split(key_steps, ys.shape[0] - 1)
    (_, _, log_z), _ = jax.lax.scan(body, (x0, lw0, log_z0), (keys, ys[1:]))
    return log_z


def blackjax_pf(key, ys, num_particles):
    """BlackJAX as a particle filter: `blackjax.smc.base.step` once per time step.

    BlackJAX ships no state-space filter; its generic SMC step (resample, move every particle
    with ``update_fn``, weight with ``weight_fn``) is one bootstrap-filter step when the move
    is the transition and the weight the observation density of that step.
    """
    from blackjax.smc import base as smc_base
    from blackjax.smc.resampling import systematic as bj_systematic

    dtype = ys.dtype
    key0, key_steps = jax.random.split(key)
    x0 = jax.random.normal(key0, (num_particles,), dtype)
    lw0 = norm_logpdf(ys[0, 0], x0, R_SD)
    state = smc_base.SMCState(x0, jax.nn.softmax(lw0), None)
    log_z0 = jax.nn.logsumexp(lw0) - jnp.log(num_particles)

    def update_fn(keys, particles, params):
        noise = jax.vmap(lambda k: jax.random.normal(k, (), dtype))(keys)
        return PHI * particles + Q_SD * noise, None

    def body(carry, inputs):
        state, log_z = carry
        k, y = inputs
        state, info = smc_base.step(
            k, state, update_fn, lambda x: norm_logpdf(y[0], x, R_SD), bj_systematic
        )
        return (state, log_z + info.log_likelihood_increment), None  # BlackJAX SMCInfo

    keys = jax.random.split(key_steps, ys.shape[0] - 1)
    (_, log_z), _ = jax.lax.scan(body, (state, log_z0), (keys, ys[1:]))
    return log_z


def cuthbert_pf(key, ys, num_particles):
    import cuthbert
    from cuthbert.smc.particle_filter import build_filter
    from cuthbertlib.resampling import systematic as cb_systematic

    dtype = ys.dtype
    filter_obj = build_filter(
        init_sample=lambda k: jax.random.normal(k, (1,), dtype),
        propagate_sample=lambda k, x, y: PHI * x + Q_SD * jax.random.normal(k, (1,), dtype),
        log_potential=lambda x_prev, x, y: norm_logpdf(y[0], x[0], R_SD),
        n_filter_particles=num_particles,
        resampling_fn=cb_systematic.resampling,
    )
    key_init, key_run = jax.random.split(key)
    init_state = filter_obj.init_prepare(key=key_init)
    states = cuthbert.filter(filter_obj, ys, init_state, key=key_run)
    return states.log_normalizing_constant[-1]


def lgssm_fns():
    return dict(
        initial_log_prob=lambda x: norm_logpdf(x[0], 0.0, 1.0),
        transition_log_prob=lambda xp, x, t: norm_logpdf(x[0], PHI * xp[0], Q_SD),
        observation_log_prob=lambda x, y, t: norm_logpdf(y[0], x[0], R_SD),
    )


def pf_and_resampling(args, key, dtype, results):
    """Sections 1 (particle-filter step cost) and 2 (resampler cost)."""
    # 1. Particle-filter step cost.
    num_steps = 200 if args.quick else 1000
    ys = data(num_steps, dtype)
    for n in [1000] if args.quick else [1000, 10000]:
        for name, fn in [
            ("ours", ours_pf),
            ("minimal_scan", minimal_pf),
            ("blackjax_base", blackjax_pf),
            ("cuthbert", cuthbert_pf),
        ]:
            compile_s, run_s = timed(lambda k, y, fn=fn, n=n: fn(k, y, n), key, ys)
            row = dict(
                impl=name,
                N=n,
                T=num_steps,
                compile_s=compile_s,
                run_s=run_s,
                us_per_step=1e6 * run_s / num_steps,
            )
            results["particle_filter"].append(row)
            print("PF", row)

    # 2. Resampler cost vs N.
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    for n in sizes:
        log_w = jax.random.normal(jax.random.key(1), (n,), dtype)
        for name, fn in RESAMPLERS.items():
            compile_s, run_s = timed(
                lambda k, lw, fn=fn, n=n: fn(k, lw, n, is_log=True),
                key,
                log_w,
                repeats=5 if n < 10**5 else 2,
            )
            row = dict(resampler=name, N=n, compile_s=compile_s, run_s=run_s)
            results["resampling"].append(row)
            print("resampling", row)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument(
        "--only",
        default="all",
        choices=["all", "dsmc"],
        help="'dsmc': rerun only the smoother section, keep the other rows of the result file",
    )
    args = parser.parse_args()
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(args.dtype)
    key = jax.random.key(0)
    results = {
        "device": jax.devices()[0].device_kind,
        "platform": jax.default_backend(),
        "jax_version": jax.__version__,
        "dtype": args.dtype,
        "quick": args.quick,
        "particle_filter": [],
        "resampling": [],
        "smoothers": [],
    }

    stem = os.path.join(os.path.dirname(__file__), "results", f"smc_{jax.default_backend()}")
    if args.only == "dsmc" and os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            previous = json.load(f)
        results["particle_filter"] = previous["particle_filter"]
        results["resampling"] = previous["resampling"]
        results["pf_resampling_from"] = "previous run (--only dsmc)"
    elif args.only == "all":
        pf_and_resampling(args, key, dtype, results)

    # 3. dSMC vs sequential PF + FFBS (both return N smoothing trajectories).
    grid_t = [32, 128] if args.quick else [32, 128, 512, 1024]
    grid_n = [100] if args.quick else [100, 1000]
    fns = lgssm_fns()
    for n in grid_n:
        for t in grid_t:
            ys_t = data(t, dtype)
            mean = jnp.zeros((t, 1), dtype)
            chol = jnp.full((t, 1, 1), 1.5, dtype)
            block = None if n <= 100 else 100

            def run_dsmc(k, y, n=n, block=block, mean=mean, chol=chol):
                out = dsmc(
                    k, y, n, proposal_mean=mean, proposal_chol=chol, row_chunk_size=block, **fns
                )
                return out.trajectories

            def run_lazy(k, y, n=n, block=block, mean=mean, chol=chol):
                out = dsmc(
                    k,
                    y,
                    n,
                    proposal_mean=mean,
                    proposal_chol=chol,
                    row_chunk_size=block,
                    transition_log_bound=LOG_BOUND,
                    **fns,
                )
                return out.trajectories, (
                    out.mean_trials,
                    out.num_fallback,
                    out.num_bound_violations,
                )

            def run_ffbs(k, y, n=n):
                k1, k2 = jax.random.split(k)
                model = bootstrap(
                    lambda kk: jax.random.normal(kk, (1,), dtype),
                    lambda kk, x, tt: PHI * x + Q_SD * jax.random.normal(kk, (1,), dtype),
                    lambda x, yy, tt: norm_logpdf(yy[0], x[0], R_SD),
                )
                out = run(k1, model, y, n)
                return backward_sampling(k2, out, fns["transition_log_prob"], n)

            for name, fn in [("dsmc", run_dsmc), ("dsmc_lazy", run_lazy), ("pf_ffbs", run_ffbs)]:
                compile_s, run_s, out = timed_with_output(
                    fn, key, ys_t, repeats=3 if n <= 100 or name == "dsmc_lazy" else 1
                )
                row = dict(method=name, N=n, T=t, compile_s=compile_s, run_s=run_s)
                if name == "dsmc_lazy":
                    trials, fallback, violations = (np.asarray(a).item() for a in out[1])
                    row.update(mean_trials=trials, fallback=fallback, violations=violations)
                results["smoothers"].append(row)
                print("smoother", row)

    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(markdown(results))
    print(f"wrote {stem}.json and {stem}.md")


def markdown(r):
    lines = [
        f"# SMC benchmark ({r['platform']}, {r['device']}, jax {r['jax_version']}, {r['dtype']}"
        + (", quick grid" if r["quick"] else "")
        + ")",
        "",
        "## Particle filter (bootstrap, systematic resampling every step, 1-d state)",
        "",
    ]
    if r.get("pf_resampling_from"):
        lines += [
            "(Particle-filter and resampling rows: from an earlier run; this one ran --only dsmc.)",
            "",
        ]
    lines += [
        "| impl | N | T | compile s | run s | µs / step |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["particle_filter"]:
        lines.append(
            f"| {row['impl']} | {row['N']} | {row['T']} | {row['compile_s']:.2f} | "
            f"{row['run_s']:.4f} | {row['us_per_step']:.1f} |"
        )
    lines += [
        "",
        "## Resampling (one call, M = N)",
        "",
        "| resampler | N | compile s | run ms |",
        "|---|---|---|---|",
    ]
    for row in r["resampling"]:
        lines.append(
            f"| {row['resampler']} | {row['N']} | {row['compile_s']:.2f} | "
            f"{1e3 * row['run_s']:.3f} |"
        )
    lines += [
        "",
        "## Smoothers: dSMC (parallel in time) vs PF + FFBS (N trajectories each)",
        "",
        "dsmc: exact N x N stitching (row blocks of 100 at N = 1000); dsmc_lazy: rejection",
        "stitching with the bound max f (exact fallback when a pair is not accepted within 64",
        "trials); trials = mean rejection trials per pair, fallback = pairs drawn by the fallback.",
        "",
        "| method | N | T | compile s | run s | trials | fallback | violations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["smoothers"]:
        lazy = "mean_trials" in row
        extra = (
            f"{row['mean_trials']:.2f} | {row['fallback']} | {row['violations']}"
            if lazy
            else " |  | "
        )
        lines.append(
            f"| {row['method']} | {row['N']} | {row['T']} | {row['compile_s']:.2f} | "
            f"{row['run_s']:.4f} | {extra} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
