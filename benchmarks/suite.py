"""One command for accelerators: the headline rows of every benchmark within a time budget.

Runs, on whatever backend JAX finds, the rows that carry the library's claims, in this order
(the budget cuts the list from the end):

1. Kalman log-likelihood value-and-gradient, T = 10^5, d = 2 (benchmarks/kalman.py's random
   stable model): sequential, associative, blocked and "auto".
2. The same at T = 10^3, d = 20.
3. HMM log-likelihood value-and-gradient, T = 10^5, K = 8 (benchmarks/hmm.py's problem).
4. Parallel MALA, T = 6.4 * 10^4 steps, d = 25 (benchmarks/mcmc.py's logistic regression):
   the Newton fixed-point solver against the sequential chain.
5. dSMC smoother, N = 1000 particles, T = 512 (benchmarks/smc.py's model) against a
   particle filter with FFBS.
6. With several devices: the Kalman log-likelihood with the time axis sharded over all of
   them (`Sharded()`), T = 10^6, d = 2, against one device, with the bytes exchanged by the
   compiled program's collectives (read from its HLO, at two T to show they do not grow
   with T) and the compiler's memory estimate per device; then weak scaling, 10^6 / P steps
   per device on 1, 2, 4, ... devices, its speed-up column the efficiency t(1) / t(n); then
   a parallel MALA chain (Newton, d = 5, T = 1.6 * 10^4) sharded against one device.

Each row group runs in a fresh Python process (``--in-process`` runs them all in this one),
as asv runs each benchmark: no group's allocator state, caches or compiled programs carry
over into the next one's times.

Every row records compile time (``jax.jit(f).lower(...).compile()``) and the median run
time; each comparison row its speed-up over the sequential row of the same case. Results
go to ``benchmarks/results/suite_<backend>.json`` and ``.md``.

Run: ``python benchmarks/suite.py --budget 420`` (``--quick`` for a smoke run at small T;
``--only kalman sharded`` for some row groups;
``XLA_FLAGS=--xla_force_host_platform_device_count=8 MALLOC_ARENA_MAX=2`` gives the sharded
rows on a CPU; see the note the table carries about ``MALLOC_ARENA_MAX``). A call that takes
over 2 s is timed up to three more times after its first call (which also first-touches its
buffers; once more above 30 s), and its median reported.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

# Without --in-process this process only starts one process per row group, with the caller's
# environment, and stays off the accelerator itself (importing BlackJAX starts a JAX backend,
# which would hold device memory that the groups need).
CALLER_ENV = dict(os.environ)
if __name__ == "__main__" and "--in-process" not in sys.argv:
    os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _timing import compile_fn, median_run_time, metadata  # noqa: E402

from numpyro_parallel._collectives import collective_bytes  # noqa: E402
from numpyro_parallel.ssm import (  # noqa: E402
    LinearGaussianSSM,
    hmm_log_likelihood,
)
from numpyro_parallel.strategy import Associative, Blocked, Sequential, Sharded  # noqa: E402

STRATEGIES = {
    "sequential": Sequential(),
    "associative": Associative(),
    "blocked": Blocked(),
    "auto": "auto",
}


GROUPS = ("kalman", "hmm", "mala", "dsmc", "sharded")


class Budget:
    """Wall-clock budget of the whole suite: rows start only while time is left."""

    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def timed_row(fn, args, budget: Budget, inspect=None, **row) -> dict:
    """Compile and time ``fn(*args)``, or mark the row skipped when the budget is spent;
    ``inspect(compiled)`` returns more fields of the row read from the compiled program."""
    if budget.left() <= 0:
        return {**row, "status": "skipped: budget spent"}
    try:
        compiled, compile_s = compile_fn(fn, *args)
        if inspect is not None:
            row.update(inspect(compiled))
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        first_s = run_s = time.perf_counter() - start
        repeats = 1
        if run_s < 2.0:
            run_s, repeats, _ = median_run_time(compiled, *args, min_repeats=3, target_s=1.0)
        else:
            # A long first call also pays for first-touching its buffers (GBs at T = 10^6),
            # and long calls on a CPU mesh vary by up to 1.5x from call to call (allocator
            # state): the median of up to three more calls (one above 30 s), as the budget
            # allows.
            times, most = [], 3 if run_s < 30.0 else 1
            while len(times) < most and budget.left() > 2 * run_s:
                start = time.perf_counter()
                jax.block_until_ready(compiled(*args))
                times.append(time.perf_counter() - start)
            if times:
                run_s, repeats = statistics.median(times), len(times)
                row.update(first_call_s=first_s, call_s=times)
    except Exception as err:  # a failing row is reported, not fatal
        return {**row, "status": f"error: {type(err).__name__}: {err}"[:300]}
    out = {**row, "compile_s": compile_s, "run_s": run_s, "repeats": repeats, "status": "ok"}
    print(json.dumps(out), flush=True)
    return out


def kalman_case(d: int, num_steps: int):
    import kalman as kalman_benchmark  # benchmarks/kalman.py

    model = kalman_benchmark.make_model(d)
    y = jnp.asarray(kalman_benchmark.simulate(model, num_steps))
    theta = {k: jnp.asarray(v) for k, v in model.items()}

    def value_and_grad(strategy):
        def loglik(theta, y):
            ssm = LinearGaussianSSM(
                theta["m0"], theta["P0"], theta["F"], theta["Q"], theta["H"], theta["R"],
                num_steps, strategy=strategy,
            )  # fmt: skip
            return ssm.log_prob(y)

        return jax.value_and_grad(loglik)

    return value_and_grad, (theta, y)


def kalman_rows(d: int, num_steps: int, budget: Budget) -> list[dict]:
    make, args = kalman_case(d, num_steps)
    case = {"capability": "kalman value-and-grad", "case": f"d={d}, T={num_steps}"}
    return [timed_row(make(s), args, budget, **case, method=name) for name, s in STRATEGIES.items()]


def hmm_rows(num_states: int, num_steps: int, budget: Budget) -> list[dict]:
    rng = np.random.default_rng(0)
    args = (
        jnp.asarray(rng.normal(size=num_states)),
        jnp.asarray(rng.normal(size=(num_states, num_states)) + 3 * np.eye(num_states)),
        jnp.asarray(rng.normal(size=(num_steps, num_states)) * 2),
    )
    case = {"capability": "hmm value-and-grad", "case": f"K={num_states}, T={num_steps}"}
    rows = []
    for name, strategy in STRATEGIES.items():
        fn = jax.value_and_grad(
            lambda i, a, ll, s=strategy: hmm_log_likelihood(i, a, ll, strategy=s), argnums=(0, 1)
        )
        rows.append(timed_row(fn, args, budget, **case, method=name))
    return rows


def mala_case(dim: int, num_steps: int):
    """``(make, args)``: ``make(strategy)`` runs benchmarks/mcmc.py's logistic-regression
    MALA chain with `run_chain` (Newton, or the sequential chain for `Sequential`)."""
    import blackjax
    import mcmc as mcmc_benchmark  # benchmarks/mcmc.py

    from numpyro_parallel.mcmc import run_chain

    logdensity_fn, map_estimate, step_size, _ = mcmc_benchmark.make_problem(dim)
    mala = blackjax.mala(logdensity_fn, step_size)

    def make(strategy):
        return lambda k, s: run_chain(mala, s, k, num_steps, strategy=strategy)[0].position

    return make, (jax.random.key(1), mala.init(map_estimate))


def mala_rows(dim: int, num_steps: int, budget: Budget) -> list[dict]:
    make, args = mala_case(dim, num_steps)
    case = {"capability": "parallel MALA", "case": f"d={dim}, T={num_steps}"}
    return [
        timed_row(make(strategy), args, budget, **case, method=name)
        for name, strategy in (("sequential", "sequential"), ("newton", "auto"))
    ]


def dsmc_rows(num_particles: int, num_steps: int, budget: Budget) -> list[dict]:
    import smc as smc_benchmark  # benchmarks/smc.py

    from numpyro_parallel.smc.dsmc import dsmc
    from numpyro_parallel.smc.ffbs import backward_sampling
    from numpyro_parallel.smc.particle_filter import bootstrap, run

    ys = smc_benchmark.data(num_steps, jnp.float64)
    fns = smc_benchmark.lgssm_fns()
    mean = jnp.zeros((num_steps, 1))
    chol = jnp.full((num_steps, 1, 1), 1.5)
    block = 100 if num_particles > 100 else None

    def run_dsmc(key, y):
        return dsmc(
            key, y, num_particles, proposal_mean=mean, proposal_chol=chol,
            row_chunk_size=block, **fns,
        ).trajectories  # fmt: skip

    def run_ffbs(key, y):
        k1, k2 = jax.random.split(key)
        sd = smc_benchmark
        model = bootstrap(
            lambda k: jax.random.normal(k, (1,)),
            lambda k, x, t: sd.PHI * x + sd.Q_SD * jax.random.normal(k, (1,)),
            lambda x, yy, t: sd.norm_logpdf(yy[0], x[0], sd.R_SD),
        )
        out = run(k1, model, y, num_particles)
        return backward_sampling(k2, out, fns["transition_log_prob"], num_particles)

    case = {"capability": "particle smoother", "case": f"N={num_particles}, T={num_steps}"}
    key = jax.random.key(2)
    return [
        timed_row(run_ffbs, (key, ys), budget, **case, method="sequential (PF + FFBS)"),
        timed_row(run_dsmc, (key, ys), budget, **case, method="dsmc"),
    ]


def memory_per_device(compiled) -> int | None:
    """The compiler's estimate of one device's memory for the program (bytes)."""
    try:
        stats = compiled.memory_analysis()
        return int(
            stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
        )
    except Exception:  # not every backend reports it
        return None


def _sharded_row(make_case, strategy, num_steps: int, budget: Budget, case: dict, method: str):
    """A timed row of ``make_case(T) = (make, args)`` with the compiler's memory per device
    and the collectives' bytes (for `Sharded`, also at T / 10: the exchange must not shrink)."""
    make, args = make_case(num_steps)

    def inspect(compiled) -> dict:
        stats = {
            "memory_per_device_bytes": memory_per_device(compiled),
            "collective_bytes": collective_bytes(compiled),
        }
        if isinstance(strategy, Sharded):
            small, small_args = make_case(num_steps // 10)
            low = jax.jit(small(strategy)).lower(*small_args).compile()
            stats["collective_bytes_at_T_over_10"] = collective_bytes(low)
        return stats

    return timed_row(make(strategy), args, budget, inspect=inspect, **case, method=method)


def sharded_rows(num_steps: int, budget: Budget, mala_steps: int) -> list[dict]:
    """The Kalman value-and-gradient (d = 2) with T on all P devices against one device;
    then weak scaling: T / P steps per device on 1, 2, 4, ... devices (the last is the
    all-device row again), its speed-up column the efficiency t(1 device) / t(n devices),
    1.00 for perfect weak scaling; then a parallel MALA chain (Newton, d = 5) of
    ``mala_steps`` steps on all devices against one device."""
    num_devices = jax.device_count()
    case = {
        "capability": "kalman value-and-grad, time sharded",
        "case": f"d=2, T={num_steps}, {num_devices} devices",
    }
    kalman = lambda steps: kalman_case(2, steps)
    one_device = Blocked() if jax.default_backend() == "cpu" else Associative()
    rows = [
        _sharded_row(kalman, one_device, num_steps, budget, case, "one device"),
        _sharded_row(kalman, Sharded(), num_steps, budget, case, "sharded"),
    ]
    per_device = num_steps // num_devices
    weak = {
        "capability": "kalman value-and-grad, weak scaling",
        "case": f"d=2, T={per_device} per device",
    }
    counts = sorted({min(2**k, num_devices) for k in range(num_devices.bit_length())})
    for n in counts[:-1]:
        mesh = jax.make_mesh((n,), ("time",), devices=jax.devices()[:n])
        method = "one device, Sharded" if n == 1 else f"sharded, {n} devices"
        rows.append(_sharded_row(kalman, Sharded(mesh), n * per_device, budget, weak, method))
    if rows[1]["status"] == "ok":
        rows.append({**rows[1], **weak, "method": f"sharded, {num_devices} devices"})
    mala = {
        "capability": "parallel MALA (Newton), time sharded",
        "case": f"d=5, T={mala_steps}, {num_devices} devices",
    }
    chain = lambda steps: mala_case(5, steps)
    rows.append(_sharded_row(chain, "auto", mala_steps, budget, mala, "one device"))
    rows.append(_sharded_row(chain, Sharded(), mala_steps, budget, mala, "sharded"))
    return rows


def add_speedups(rows: list[dict]) -> None:
    for row in rows:
        base = next(
            (r for r in rows if r["case"] == row["case"] and r.get("method", "").startswith(
                ("sequential", "one device")) and r.get("status") == "ok"),
            None,
        )  # fmt: skip
        if base is not None and row.get("status") == "ok":
            row["speedup"] = base["run_s"] / row["run_s"]


def write_markdown(path: pathlib.Path, meta: dict, rows: list[dict]) -> None:
    lines = [
        f"# Benchmark suite ({meta['backend']}, {meta['device_kind']}, "
        f"{meta['num_devices']} device(s), {meta['date_utc']})",
        "",
        f"Command: `{meta['command']}`; budget {meta['budget_s']:.0f} s, used "
        f"{meta['elapsed_s']:.0f} s. jax {meta['jax_version']}, float64. Speed-up: run time "
        "of the case's sequential (or one-device) row over the row's.",
        "",
        *([meta["note"], ""] if meta.get("note") else []),
        "| capability | case | method | compile s | run ms | speed-up | collective bytes "
        "(T, T/10) | memory / device MB | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        coll = ""
        if "collective_bytes" in r:
            coll = f"{r['collective_bytes']}"
            if "collective_bytes_at_T_over_10" in r:
                coll += f", {r['collective_bytes_at_T_over_10']}"
        mem = r.get("memory_per_device_bytes")
        lines.append(
            f"| {r['capability']} | {r['case']} | {r['method']} | "
            f"{r['compile_s']:.2f} | {1e3 * r['run_s']:.3f} | "
            if r.get("status") == "ok"
            else f"| {r['capability']} | {r['case']} | {r['method']} | | | "
        )
        lines[-1] += (
            f"{r['speedup']:.2f} | " if "speedup" in r else " | "
        ) + f"{coll} | {'' if mem is None else f'{mem / 2**20:.1f}'} | {r['status']} |"
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all rows")
    parser.add_argument("--quick", action="store_true", help="small T (a smoke run)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    parser.add_argument(
        "--only",
        nargs="+",
        choices=GROUPS,
        help="run these row groups only (default: all, in this order)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every group in this process (default: each group in a fresh one)",
    )
    parser.add_argument("--rows-to", help=argparse.SUPPRESS)  # a child writes its rows here
    args = parser.parse_args(argv)
    start = time.perf_counter()
    budget = Budget(args.budget)
    names = args.only or list(GROUPS)
    if not args.in_process:
        rows, meta = [], None
        for name in names:
            group_rows, group_meta = run_group_in_child(name, args, budget)
            rows += group_rows
            meta = meta or group_meta
        finish(args, rows, start, meta or metadata())
        return
    scale = 100 if args.quick else 1
    small = 10 if args.quick else 1
    groups = {
        "kalman": lambda: (
            kalman_rows(2, 100_000 // scale, budget) + kalman_rows(20, 1_000 // small, budget)
        ),
        "hmm": lambda: hmm_rows(8, 100_000 // scale, budget),
        "mala": lambda: mala_rows(25, 64_000 // scale, budget),
        "dsmc": lambda: dsmc_rows(1_000 // small, 512 // (8 if args.quick else 1), budget),
        "sharded": lambda: (
            sharded_rows(1_000_000 // scale, budget, 16_000 // scale)
            if jax.device_count() > 1
            else []
        ),
    }
    rows = [row for name in names for row in groups[name]()]
    if args.rows_to:
        output = {"rows": rows, "metadata": metadata()}
        pathlib.Path(args.rows_to).write_text(json.dumps(output, default=float))
        return
    finish(args, rows, start, metadata())


def run_group_in_child(name: str, args, budget: Budget) -> tuple[list[dict], dict | None]:
    """One row group in a fresh Python process, as asv runs each benchmark: no row's
    allocator state, caches or compiled programs carry over into the next group. Returns its
    rows and its backend's metadata."""
    if budget.left() <= 0:
        return [], None
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = pathlib.Path(tmp) / "rows.json"
        command = [
            sys.executable, __file__, "--in-process", "--only", name, "--rows-to",
            str(rows_file), "--budget", f"{budget.left():.1f}", "--out", args.out,
            *(["--quick"] if args.quick else []),
        ]  # fmt: skip
        done = subprocess.run(command, check=False, env=CALLER_ENV)
        if done.returncode != 0 or not rows_file.exists():
            return [{"capability": name, "case": "", "method": "", "status": "error: the "
                     f"group's process exited with {done.returncode}"}], None  # fmt: skip
        output = json.loads(rows_file.read_text())
        return output["rows"], output["metadata"]


def finish(args, rows: list[dict], start: float, meta: dict) -> None:
    add_speedups(rows)
    meta = dict(meta)
    meta.update(
        command=" ".join(["python", *sys.argv]),
        budget_s=args.budget,
        elapsed_s=time.perf_counter() - start,
        quick=args.quick,
        malloc_arena_max=os.environ.get("MALLOC_ARENA_MAX"),
        isolated_groups=not args.in_process,
    )
    sharded = any("sharded" in r.get("method", "") for r in rows)
    if meta["backend"] == "cpu" and sharded:
        meta["note"] = (
            "Sharded rows on forced CPU devices (MALLOC_ARENA_MAX="
            f"{meta['malloc_arena_max'] or 'unset'} here): all devices share the machine's "
            "cores, so the rows measure the overhead of splitting the series, not a speed-up, "
            "and the weak-scaling efficiency falls with the device count by construction "
            "(n devices do n times the work on the same cores). The sharded call's time also "
            "depends on the process's allocator state: each row group runs in a fresh process "
            "(unless --in-process), and glibc's default malloc arenas make it 1.5-2x slower "
            "(run with MALLOC_ARENA_MAX=2)."
        )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + ("_" + "_".join(args.only) if args.only else "")
    stem = out / f"suite_{meta['backend']}{suffix}"
    stem.with_suffix(".json").write_text(
        json.dumps({"metadata": meta, "rows": rows}, indent=1, default=float)
    )
    write_markdown(stem.with_suffix(".md"), meta, rows)
    print(f"wrote {stem}.json and {stem}.md ({meta['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
