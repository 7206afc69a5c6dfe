"""Benchmark: linear-Gaussian Kalman filter, smoother and log-likelihood gradient.

Methods (all on the same model and data):

- ``associative``: numpyro_parallel, ``strategy=Associative()`` (O(log T) depth
  ``lax.associative_scan``; what ``"auto"`` picks on accelerators),
- ``blocked``: ``strategy=Blocked()``, blocks of ~sqrt(T) steps (what ``"auto"`` picks on CPU),
- ``sequential``: ``strategy=Sequential()`` (``lax.scan`` over the same elements),
- ``dynamax`` / ``dynamax_parallel``: ``dynamax.linear_gaussian_ssm`` ``inference`` (sequential,
  covariance form) and ``parallel_inference`` (associative scan),
- ``cuthbert`` / ``cuthbert_parallel``: ``cuthbert.gaussian.kalman`` through ``cuthbert.filter`` /
  ``cuthbert.smoother`` with ``parallel=False`` / ``True`` (square-root form).

Tasks: ``filter`` (filtered moments + log-likelihood), ``smoother`` (filter + RTS smoother),
``grad`` (``jax.value_and_grad`` of the log-likelihood w.r.t. the covariance-form parameters
``F, Q, H, R, m0, P0``; ours goes through ``LinearGaussianSSM(...).params``).

Model: a random stable time-invariant model (spectral radius 0.9) with state dimension d and
observation dimension p = max(1, d // 2); one float64 data set of length max(T) is simulated
and every (T, dtype) uses its prefix, cast to the dtype. Every output is checked against our
sequential result (log-likelihood, smoothed means, gradients) and the max abs difference is
recorded; in float64 a difference above 1e-6 (relative) is flagged as MISMATCH.

Compile time (``jax.jit(f).lower(*args).compile()``) is reported separately from the run time
(median of >= 5 calls with ``block_until_ready``). Compile guard: anchor parallel methods are
skipped above ``--anchor-parallel-max-T`` and any (task, method) whose compile time exceeded
``--compile-guard`` seconds at a smaller T is skipped for larger T (recorded in the table).
dynamax / cuthbert are optional: when missing they are reported as skipped.

Usage::

    python benchmarks/kalman.py --quick          # d=2, T <= 1e4, float64 (< 2 min)
    python benchmarks/kalman.py                  # d in {2, 8}, T <= 1e5, float32 + float64

Writes ``<out-dir>/kalman_<backend>.json`` and ``.md``.

References: Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers";
Yaghoobi et al. (2025), "Parallel square-root statistical linear regression for inference in
nonlinear state space models".
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import traceback

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from numpyro_parallel.ssm.kalman.distribution import LinearGaussianSSM  # noqa: E402
from numpyro_parallel.ssm.kalman.inference import kalman_filter, kalman_smoother  # noqa: E402
from numpyro_parallel.strategy import Associative, Blocked, Sequential  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _timing import metadata, time_fn  # noqa: E402

OURS = ("sequential", "associative", "blocked")  # sequential first: the reference
ANCHORS_SEQUENTIAL = ("dynamax", "cuthbert")
ANCHORS_PARALLEL = ("dynamax_parallel", "cuthbert_parallel")
TASKS = ("filter", "smoother", "grad")


# --------------------------------------------------------------------------- model and data
def make_model(d: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random stable time-invariant model in covariance form (float64 numpy)."""
    rng = np.random.default_rng(seed + 1000 * d)
    p = max(1, d // 2)
    A = rng.normal(size=(d, d))
    F = 0.9 * A / np.max(np.abs(np.linalg.eigvals(A)))
    B = rng.normal(size=(d, d))
    Q = 0.1 * np.eye(d) + B @ B.T / d
    H = rng.normal(size=(p, d)) / np.sqrt(d)
    C = rng.normal(size=(p, p))
    R = 0.5 * np.eye(p) + C @ C.T / p
    return {"m0": np.zeros(d), "P0": np.eye(d), "F": F, "Q": Q, "H": H, "R": R}


def simulate(model: dict[str, np.ndarray], num_steps: int, seed: int = 0) -> np.ndarray:
    """Observations ``(T, p)`` from the model (float64, sequential numpy recursion)."""
    rng = np.random.default_rng(seed)
    d, p = model["F"].shape[0], model["H"].shape[0]
    chol_Q, chol_R = np.linalg.cholesky(model["Q"]), np.linalg.cholesky(model["R"])
    w = rng.normal(size=(num_steps, d)) @ chol_Q.T
    v = rng.normal(size=(num_steps, p)) @ chol_R.T
    x = model["m0"] + np.linalg.cholesky(model["P0"]) @ rng.normal(size=d)
    states = np.empty((num_steps, d))
    for t in range(num_steps):
        states[t] = x
        x = model["F"] @ x + w[t]
    return states @ model["H"].T + v


def _ours_params(theta, num_steps):
    ssm = LinearGaussianSSM(
        theta["m0"], theta["P0"], theta["F"], theta["Q"], theta["H"], theta["R"], num_steps
    )
    return ssm.params


def _strategy(method: str, num_steps: int) -> dict:
    if method == "associative":
        return {"strategy": Associative()}
    if method == "blocked":
        return {"strategy": Blocked()}  # blocks of max(8, round(sqrt(T))) steps everywhere
    return {"strategy": Sequential()}


def _block_size_label(method: str, num_steps: int) -> str:
    if method != "blocked":
        return ""
    return f"auto={Blocked().size_for(num_steps)}"


# --------------------------------------------------------------------------- our methods
def build_ours(task: str, method: str, num_steps: int):
    """Function of ``(theta, y)`` returning ``(timed output, checked quantity)``."""
    mode = _strategy(method, num_steps)

    if task == "filter":

        def fn(theta, y):
            res = kalman_filter(_ours_params(theta, num_steps), y, **mode)
            return res.log_likelihood, res.mean, res.chol

        return fn, lambda out: out[0]
    if task == "smoother":

        def fn(theta, y):
            res = kalman_smoother(_ours_params(theta, num_steps), y, **mode)
            return res.mean, res.chol

        return fn, lambda out: out[0]

    def loglik(theta, y):
        return kalman_filter(_ours_params(theta, num_steps), y, **mode).log_likelihood

    return jax.value_and_grad(loglik), _grad_check


def _grad_check(out):
    """Value and gradient with covariance gradients symmetrised.

    A log-likelihood that reads only the lower triangle of a covariance (through its Cholesky
    factor) and one that reads the full symmetric matrix have different but equivalent
    gradients; their symmetric parts agree.
    """
    value, grads = out
    grads = dict(grads)
    for name in ("P0", "Q", "R"):
        grads[name] = 0.5 * (grads[name] + grads[name].T)
    return value, grads


# --------------------------------------------------------------------------- anchors
def _anchor_available(name: str) -> tuple[bool, str]:
    module = name.split("_")[0]
    try:
        if module == "dynamax":
            import dynamax.linear_gaussian_ssm.inference
            import dynamax.linear_gaussian_ssm.parallel_inference  # noqa: F401
        else:
            import cuthbert
            import cuthbert.gaussian.kalman  # noqa: F401
    except Exception as err:  # pragma: no cover - optional anchors
        return False, f"{module} not installed ({type(err).__name__})"
    return True, ""


def _dynamax_params(theta):
    from dynamax.linear_gaussian_ssm.inference import make_lgssm_params

    return make_lgssm_params(
        theta["m0"], theta["P0"], theta["F"], theta["Q"], theta["H"], theta["R"]
    )


def build_dynamax(task: str, parallel: bool):
    if parallel:
        from dynamax.linear_gaussian_ssm import parallel_inference as inference
    else:
        from dynamax.linear_gaussian_ssm import inference

    if task == "filter":

        def fn(theta, y):
            post = inference.lgssm_filter(_dynamax_params(theta), y)
            return post.marginal_loglik, post.filtered_means, post.filtered_covariances

        return fn, lambda out: out[0]
    if task == "smoother":

        def fn(theta, y):
            post = inference.lgssm_smoother(_dynamax_params(theta), y)
            return post.smoothed_means, post.smoothed_covariances

        return fn, lambda out: out[0]

    def loglik(theta, y):
        return inference.lgssm_filter(_dynamax_params(theta), y).marginal_loglik

    return jax.value_and_grad(loglik), _grad_check


def _cuthbert_objects(theta, y):
    """cuthbert's model has an unobserved x_0: we feed our prior as its first transition."""
    from cuthbert.gaussian import kalman

    num_steps, p = y.shape
    d = theta["m0"].shape[0]
    chol_P0 = jnp.linalg.cholesky(theta["P0"])
    chol_Q = jnp.linalg.cholesky(theta["Q"])
    chol_R = jnp.linalg.cholesky(theta["R"])
    first = jnp.arange(num_steps) == 0
    inputs = {"first": first, "y": y}

    def get_dynamics_params(inp):
        F = jnp.where(inp["first"], jnp.zeros_like(theta["F"]), theta["F"])
        c = jnp.where(inp["first"], theta["m0"], jnp.zeros_like(theta["m0"]))
        chol = jnp.where(inp["first"], chol_P0, chol_Q)
        return F, c, chol

    def get_observation_params(inp):
        return theta["H"], jnp.zeros(p, y.dtype), chol_R, inp["y"]

    filter_obj = kalman.build_filter(
        jnp.zeros(d, y.dtype),
        jnp.eye(d, dtype=y.dtype),
        get_dynamics_params,
        get_observation_params,
    )
    smoother_obj = kalman.build_smoother(get_dynamics_params)
    return filter_obj, smoother_obj, inputs


def build_cuthbert(task: str, parallel: bool):
    import cuthbert

    def run_filter(theta, y):
        filter_obj, smoother_obj, inputs = _cuthbert_objects(theta, y)
        states = cuthbert.filter(filter_obj, inputs, filter_obj.init_prepare(), parallel=parallel)
        return states, smoother_obj

    if task == "filter":

        def fn(theta, y):
            states, _ = run_filter(theta, y)
            return states.log_normalizing_constant[-1], states.mean[1:], states.chol_cov[1:]

        return fn, lambda out: out[0]
    if task == "smoother":

        def fn(theta, y):
            states, smoother_obj = run_filter(theta, y)
            smoothed = cuthbert.smoother(smoother_obj, states, parallel=parallel)
            return smoothed.mean[1:], smoothed.chol_cov[1:]

        return fn, lambda out: out[0]

    def loglik(theta, y):
        return run_filter(theta, y)[0].log_normalizing_constant[-1]

    return jax.value_and_grad(loglik), _grad_check


def build(task: str, method: str, num_steps: int):
    if method in OURS:
        return build_ours(task, method, num_steps)
    parallel = method.endswith("_parallel")
    if method.startswith("dynamax"):
        return build_dynamax(task, parallel)
    return build_cuthbert(task, parallel)


# --------------------------------------------------------------------------- driver
def _max_abs_diff(a, b) -> float:
    leaves = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(lambda x, y: jnp.max(jnp.abs(jnp.asarray(x) - y)), a, b)
    )
    return float(max(leaves))


def _scale(ref) -> float:
    return float(max(jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(ref)))


def run_benchmark(args) -> list[dict]:
    records = []
    methods = list(OURS)
    unavailable = {}
    for name in (*ANCHORS_SEQUENTIAL, *ANCHORS_PARALLEL):
        if not args.no_anchors:
            ok, why = _anchor_available(name)
        else:
            ok, why = False, "anchors disabled (--no-anchors)"
        methods.append(name)
        if not ok:
            unavailable[name] = why
    T_grid = [T for T in (100, 1_000, 10_000, 100_000) if T <= args.max_T]
    start = time.perf_counter()
    for d in args.dims:
        model = make_model(d)
        y_all = simulate(model, max(T_grid))
        for dtype_name in args.dtypes:
            # float32 runs without x64 (as a float32 user would; anchors need it to not mix dtypes)
            jax.config.update("jax_enable_x64", dtype_name == "float64")
            dtype = jnp.float64 if dtype_name == "float64" else jnp.float32
            theta = {k: jnp.asarray(v, dtype) for k, v in model.items()}
            slow = {}  # (task, method) -> (T, compile_s) that tripped the guard
            last_compile = {}  # (task, method) -> (T, compile_s) of the largest T run
            for T in T_grid:
                y = jnp.asarray(y_all[:T], dtype)
                for task in args.tasks:
                    reference = None
                    for method in methods:
                        rec = {
                            "task": task,
                            "method": method,
                            "d": d,
                            "p": max(1, d // 2),
                            "T": T,
                            "dtype": dtype_name,
                            "block_size": _block_size_label(method, T),
                        }
                        skip = None
                        if method in unavailable:
                            skip = unavailable[method]
                        elif method in ANCHORS_PARALLEL and T > args.anchor_parallel_max_T:
                            skip = (
                                f"skipped: T > {args.anchor_parallel_max_T} (anchor parallel "
                                "compile guard: compile time grows with T"
                                + (
                                    f"; {last_compile[(task, method)][1]:.0f} s at "
                                    f"T={last_compile[(task, method)][0]}"
                                    if (task, method) in last_compile
                                    else ""
                                )
                                + ")"
                            )
                        elif (task, method) in slow:
                            T0, c0 = slow[(task, method)]
                            skip = (
                                f"skipped (compile {c0:.0f} s > {args.compile_guard:g} s at T={T0})"
                            )
                        if skip is not None:
                            rec["status"] = skip
                            records.append(rec)
                            continue
                        try:
                            fn, check = build(task, method, T)
                            timing = time_fn(fn, theta, y)
                        except Exception as err:  # anchors may reject a dtype etc.
                            message = " ".join(str(err).split())[:160].replace("|", "/")
                            rec["status"] = f"failed: {type(err).__name__}: {message}"
                            if args.verbose:
                                traceback.print_exc()
                            records.append(rec)
                            print(f"  {task:8s} {method:18s} d={d} T={T} {dtype_name}: FAILED")
                            continue
                        rec.update(
                            status="ok",
                            compile_s=timing["compile_s"],
                            run_s=timing["run_s"],
                            repeats=timing["repeats"],
                            us_per_step=timing["run_s"] / T * 1e6,
                        )
                        checked = check(timing["output"])
                        if method == "sequential":
                            reference = checked
                        if reference is not None:
                            diff = _max_abs_diff(checked, reference)
                            rec["max_abs_diff_vs_ours_sequential"] = diff
                            rel = diff / max(1.0, _scale(reference))
                            rec["rel_diff_vs_ours_sequential"] = rel
                            if dtype_name == "float64" and not rel < 1e-6:
                                rec["status"] = "MISMATCH"
                        last_compile[(task, method)] = (T, timing["compile_s"])
                        if timing["compile_s"] > args.compile_guard:
                            slow[(task, method)] = (T, timing["compile_s"])
                        records.append(rec)
                        print(
                            f"  {task:8s} {method:18s} d={d} T={T:6d} {dtype_name}: "
                            f"compile {timing['compile_s']:6.2f} s  run "
                            f"{timing['run_s'] * 1e3:9.3f} ms  "
                            f"diff {rec.get('max_abs_diff_vs_ours_sequential', float('nan')):.1e}"
                            f"  [{time.perf_counter() - start:6.0f} s]",
                            flush=True,
                        )
    _add_speedups(records)
    return records


def _add_speedups(records: list[dict]) -> None:
    groups = {}
    for rec in records:
        if rec.get("run_s") is not None:
            groups.setdefault((rec["task"], rec["d"], rec["T"], rec["dtype"]), []).append(rec)
    for group in groups.values():
        anchors = [r["run_s"] for r in group if r["method"] in ANCHORS_SEQUENTIAL]
        ours_seq = [r["run_s"] for r in group if r["method"] == "sequential"]
        for rec in group:
            if anchors:
                rec["speedup_vs_fastest_sequential_anchor"] = min(anchors) / rec["run_s"]
            if ours_seq:
                rec["speedup_vs_ours_sequential"] = ours_seq[0] / rec["run_s"]


def write_markdown(path: pathlib.Path, meta: dict, records: list[dict]) -> None:
    lines = [
        f"# Kalman benchmark ({meta['backend']}, {meta['device_kind']}, jax {meta['jax_version']},"
        f" {meta['cpu_count']} CPUs, {meta['date_utc']})",
        "",
        f"Grid: {meta['grid']}. Model: random stable time-invariant LGSSM, p = max(1, d // 2); "
        "same data for every library. Compile = `jax.jit(f).lower(*args).compile()`; run = median "
        "of >= 5 calls. Speed-up = (run time of the fastest sequential anchor, dynamax or "
        "cuthbert) / (run time of the method); `vs seq` = our sequential / method. "
        "`diff` = max abs difference to our sequential result (log-likelihood for filter, "
        "smoothed means for smoother, value and symmetrised gradient for grad).",
        "",
    ]
    if meta.get("note"):
        lines += [meta["note"], ""]
    for task in TASKS:
        rows = [r for r in records if r["task"] == task]
        if not rows:
            continue
        lines += [
            f"## {task}",
            "",
            "| method | d | T | dtype | compile s | run ms | µs/step | speed-up vs fastest "
            "sequential anchor | vs seq | diff | status |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            name = r["method"] + (f" (B={r['block_size']})" if r["block_size"] else "")
            if r.get("run_s") is None:
                cells = ["", "", "", "", "", ""]
            else:
                sp = r.get("speedup_vs_fastest_sequential_anchor")
                vs = r.get("speedup_vs_ours_sequential")
                diff = r.get("max_abs_diff_vs_ours_sequential")
                cells = [
                    f"{r['compile_s']:.2f}",
                    f"{r['run_s'] * 1e3:.3f}",
                    f"{r['us_per_step']:.2f}",
                    f"{sp:.2f}×" if sp is not None else "n/a",
                    f"{vs:.2f}×" if vs is not None else "n/a",
                    f"{diff:.1e}" if diff is not None else "",
                ]
            lines.append(
                f"| {name} | {r['d']} | {r['T']} | {r['dtype']} | "
                + " | ".join(cells)
                + f" | {r['status']} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d=2, T <= 1e4, float64 only")
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--dtypes", nargs="+", default=None, choices=["float32", "float64"])
    parser.add_argument("--dims", nargs="+", type=int, default=None)
    parser.add_argument("--max-T", type=int, default=None, dest="max_T")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--compile-guard",
        type=float,
        default=30.0,
        help="skip larger T for a (task, method) once its compile time exceeded this (s)",
    )
    parser.add_argument(
        "--anchor-parallel-max-T",
        type=int,
        default=None,
        dest="anchor_parallel_max_T",
        help="largest T for dynamax/cuthbert parallel methods (their compile time explodes); "
        "default 1e4 (100 with --quick)",
    )
    parser.add_argument("--no-anchors", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.dtypes = args.dtypes or ["float64"]
        args.dims = args.dims or [2]
        args.max_T = args.max_T or 10_000
        if args.anchor_parallel_max_T is None:
            args.anchor_parallel_max_T = 100
    if args.anchor_parallel_max_T is None:
        args.anchor_parallel_max_T = 10_000
    args.dtypes = args.dtypes or ["float32", "float64"]
    args.dims = args.dims or [2, 8]
    args.max_T = args.max_T or 100_000

    meta = metadata()
    meta["dtypes"] = args.dtypes
    meta["grid"] = (
        f"d in {args.dims}, T <= {args.max_T}, dtypes {args.dtypes}, tasks {args.tasks}"
        + (" (--quick)" if args.quick else "")
    )
    meta["model"] = "random stable time-invariant LGSSM, spectral radius 0.9, p = max(1, d // 2)"
    meta["compile_guard_s"] = args.compile_guard
    meta["anchor_parallel_max_T"] = args.anchor_parallel_max_T
    meta["command"] = " ".join(["python", *sys.argv])
    print(json.dumps(meta))
    records = run_benchmark(args)
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"kalman_{meta['backend']}"
    stem.with_suffix(".json").write_text(
        json.dumps({"metadata": meta, "results": records}, indent=1)
    )
    write_markdown(stem.with_suffix(".md"), meta, records)
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
