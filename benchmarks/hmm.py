"""Benchmark: discrete-HMM log-likelihood, smoothing and Viterbi, parallel vs sequential vs dynamax.

Measures compile time (``jax.jit(f).lower(*args).compile()``) separately from run time (median
of repeated runs with ``block_until_ready``) for

- ``associative``: numpyro_parallel.ssm.hmm.inference with O(log T)-depth associative scans of
  log-space elements (``strategy=Associative()``; what ``"auto"`` picks on GPU/TPU); the
  log-likelihood uses `hmm_log_likelihood` (what `DiscreteHMM.log_prob` runs),
- ``blocked``: the blocked scaled-probability strategy with blocks of ~sqrt(T) steps (the
  ``Blocked()``; what ``"auto"`` picks on CPU),
- ``sequential``: ``Sequential()`` (sequential scaled recursions; Viterbi: the same
  max-plus elements under ``lax.scan``),
- ``dynamax``: dynamax's sequential ``hmm_filter`` / ``hmm_smoother`` / ``hmm_posterior_mode``,
- ``dynamax_parallel``: dynamax's ``parallel_hmm_filter`` / ``parallel_hmm_smoother``
  (dynamax has no parallel Viterbi).

Writes benchmarks/results/hmm_<platform>.json and .md. Usage:
``python benchmarks/hmm.py [--quick] [--x64]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from _timing import measure

from numpyro_parallel.ssm.hmm.inference import hmm_log_likelihood, hmm_smoother, hmm_viterbi
from numpyro_parallel.strategy import Associative, Blocked, Sequential

try:
    from dynamax.hidden_markov_model import (
        hmm_filter as dynamax_filter,
    )
    from dynamax.hidden_markov_model import (
        hmm_posterior_mode as dynamax_viterbi,
    )
    from dynamax.hidden_markov_model import (
        hmm_smoother as dynamax_smoother,
    )
    from dynamax.hidden_markov_model import (
        parallel_hmm_filter as dynamax_parallel_filter,
    )
    from dynamax.hidden_markov_model import (
        parallel_hmm_smoother as dynamax_parallel_smoother,
    )
except ImportError:  # pragma: no cover - dynamax is an optional anchor
    dynamax_filter = None


def _ours(task, strategy):
    def run(initial_logits, transition_logits, log_likelihoods):
        args = (initial_logits, transition_logits, log_likelihoods)
        if task == "log_likelihood":
            return hmm_log_likelihood(*args, strategy=strategy)
        if task == "smoothing":
            return hmm_smoother(*args, strategy=strategy)
        return hmm_viterbi(*args, strategy=strategy).path

    return run


def _dynamax(task, parallel):
    def run(initial_logits, transition_logits, log_likelihoods):
        initial = jax.nn.softmax(initial_logits)
        transition = jax.nn.softmax(transition_logits, axis=-1)
        if task == "log_likelihood":
            fn = dynamax_parallel_filter if parallel else dynamax_filter
            return fn(initial, transition, log_likelihoods).marginal_loglik
        if task == "smoothing":
            fn = dynamax_parallel_smoother if parallel else dynamax_smoother
            return fn(initial, transition, log_likelihoods).smoothed_probs
        return dynamax_viterbi(initial, transition, log_likelihoods)

    return run


def _implementations(task):
    impls = {
        "associative": _ours(task, Associative()),
        "blocked": _ours(task, Blocked()),  # the blocked strategy on every platform
        "sequential": _ours(task, Sequential()),
    }
    if dynamax_filter is not None:
        impls["dynamax"] = _dynamax(task, False)
        if task != "viterbi":
            impls["dynamax_parallel"] = _dynamax(task, True)
    return impls


def _problem(num_states, num_steps, dtype):
    rng = np.random.default_rng(0)
    initial = rng.normal(size=num_states)
    transition = rng.normal(size=(num_states, num_states)) + 3 * np.eye(num_states)
    log_likelihoods = rng.normal(size=(num_steps, num_states)) * 2
    return tuple(jnp.asarray(x, dtype) for x in (initial, transition, log_likelihoods))


def _time(fn, args, repeats):
    compile_s, run_s, _ = measure(fn, *args, repeats=repeats, max_total_s=5.0)
    return compile_s, run_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid")
    parser.add_argument("--x64", action="store_true", help="float64 instead of float32")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=12.0,
        help="start no new configuration after this many minutes (skipped ones are listed)",
    )
    parser.add_argument("--output-dir", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.x64 else jnp.float32
    platform = jax.default_backend()
    if args.quick:
        grid = [(k, t) for k in (2, 8) for t in (100, 10_000)]
    else:
        grid = [(k, t) for k in (2, 8, 32) for t in (100, 1_000, 10_000, 100_000)]
        if platform == "cpu":  # K = 32 stops at T = 10^4 on CPU (K^3 work per combine)
            grid = [(k, t) for k, t in grid if k < 32 or t <= 10_000]
    # The headline case first, so that a time-limited run always contains it.
    jobs = [(task, k, t) for task in ("log_likelihood", "smoothing", "viterbi") for k, t in grid]
    jobs.sort(key=lambda job: (job[1:] != (8, 100_000), job[0] != "log_likelihood"))
    meta = dict(
        device_kind=jax.devices()[0].device_kind,
        platform=platform,
        dtype=np.dtype(dtype).name,
        jax_version=jax.__version__,
        quick=args.quick,
        max_minutes=args.max_minutes,
        skipped=[],
    )
    output_dir = pathlib.Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    records = []
    start = time.perf_counter()
    for task, num_states, num_steps in jobs:
        if time.perf_counter() - start > 60 * args.max_minutes:
            meta["skipped"].append(dict(task=task, num_states=num_states, num_steps=num_steps))
            continue
        problem = _problem(num_states, num_steps, dtype)
        for impl, fn in _implementations(task).items():
            compile_s, run_s = _time(fn, problem, args.repeats)
            record = dict(
                task=task,
                implementation=impl,
                num_states=num_states,
                num_steps=num_steps,
                compile_s=compile_s,
                run_s=run_s,
                us_per_step=1e6 * run_s / num_steps,
            )
            records.append(record)
            print(
                f"{task:15s} K={num_states:3d} T={num_steps:7d} {impl:17s} "
                f"compile {compile_s:7.2f} s  run {1e3 * run_s:9.3f} ms",
                flush=True,
            )
        _write(output_dir, platform, meta, records)
    _write(output_dir, platform, meta, records)


def _write(output_dir, platform, meta, records):
    (output_dir / f"hmm_{platform}.json").write_text(
        json.dumps({"meta": meta, "records": records}, indent=1)
    )
    (output_dir / f"hmm_{platform}.md").write_text(_markdown(meta, records))


def _markdown(meta, records):
    impls = list(dict.fromkeys(r["implementation"] for r in records))
    lines = [
        "# Discrete HMM benchmark",
        "",
        f"Device: {meta['device_kind']} ({meta['platform']}), dtype {meta['dtype']}, "
        f"jax {meta['jax_version']}. Run time = median of repeated runs (ms); compile time in "
        "seconds in parentheses. `ratio` = our default strategy (`strategy='auto'`: "
        "blocked on CPU, associative on GPU) / dynamax (sequential) run time.",
        "",
        "| task | K | T | " + " | ".join(impls) + " | ratio |",
        "|---|---|---|" + "---|" * (len(impls) + 1),
    ]
    keys = sorted(dict.fromkeys((r["task"], r["num_states"], r["num_steps"]) for r in records))
    for task, k, t in keys:
        row = {
            r["implementation"]: r
            for r in records
            if (r["task"], r["num_states"], r["num_steps"]) == (task, k, t)
        }
        cells = [
            f"{1e3 * row[i]['run_s']:.3f} ({row[i]['compile_s']:.1f})" if i in row else "-"
            for i in impls
        ]
        default = "blocked" if meta["platform"] == "cpu" else "associative"
        ratio = (
            f"{row[default]['run_s'] / row['dynamax']['run_s']:.2f}" if "dynamax" in row else "-"
        )
        lines.append(f"| {task} | {k} | {t} | " + " | ".join(cells) + f" | {ratio} |")
    if meta["skipped"]:
        skipped = ", ".join(
            f"{s['task']} K={s['num_states']} T={s['num_steps']}" for s in meta["skipped"]
        )
        lines += ["", f"Not run (time budget of {meta['max_minutes']} min reached): {skipped}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
