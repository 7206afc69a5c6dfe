"""Benchmark: structural time-series likelihood, gradient and NUTS (`numpyro_parallel.sts`).

Models (`numpyro_parallel.sts.Sum`, float64, simulated series without missing values):

- ``trend`` (d = 2): `LocalLinearTrend`,
- ``trend+weekday`` (d = 8): `LocalLinearTrend` + `Seasonal(period=7)` (dummy form),
- ``co2`` (d = 13): `LocalLinearTrend` + `Seasonal(period=12)` (the Mauna Loa CO2 model),
- ``weekly`` (d = 54): `LocalLinearTrend` + `Seasonal(period=52.18, num_harmonics=26)` (a
  yearly trigonometric seasonal on weekly data).

Likelihood rows: for each model and T, ``Sum.log_prob(params, y)`` and its
``jax.value_and_grad`` with respect to the model's parameters (the nested ``params`` dict,
fixed values drawn once from the default priors) for every strategy, passed as
``sts.Sum(..., strategy=...)``: `Sequential()` (the reference), `Associative()`, `Blocked()`
and ``"auto"`` (what it resolves to is recorded), against two baselines on the same matrices
(``model.ssm(params, data, T).params``, with ``Q = L Lᵀ`` from the low-rank noise factor):

- ``lax.scan covariance``: a plain covariance-form Kalman filter written here (predict/update,
  Cholesky solve of the innovation covariance, one ``lax.scan`` step per observation),
- ``dynamax``: ``dynamax.linear_gaussian_ssm.inference.lgssm_filter`` (sequential covariance
  form), when dynamax is importable (otherwise the rows say why not).

Each row records the compile time (``jax.jit(f).lower(*args).compile()``) separately from the
median run time (`_timing.measure`), for the log-likelihood and for the value and gradient, and
whether the log-likelihood agrees with the `Sequential()` one (relative tolerance 1e-8); the
gradient's largest relative difference is recorded too.

NUTS rows: ``numpyro.infer.MCMC`` with ``NUTS(dense_mass=True)`` (one chain,
``progress_bar=False``, ``jit_model_args=True``) on ``co2.numpyro_model`` for each strategy,
and on the same NumPyro model (``model.sample_params(data)``) whose likelihood is
``numpyro.factor("y", ...)`` of the ``lax.scan`` covariance filter (and of dynamax's filter).
A run is ``mcmc.warmup(..., collect_warmup=True)`` then ``mcmc.run(...)``, with
``extra_fields=("num_steps",)`` so that every leapfrog step (= gradient evaluation) of warmup
and sampling is counted. It is done twice on the same ``MCMC`` object: the first (cold) wall
time includes compilation, the second (warm) reuses the compiled functions; their difference
estimates the compile time. NUTS on the d = 54 model is not run: its cost is extrapolated as
gradient compile time + value-and-grad time x mean leapfrog steps per iteration (observed on
the CO2 model with ``"auto"``) x (warmup + samples) of the full configuration.

Usage::

    python benchmarks/sts.py --quick   # T = 200, NUTS T = 120 (20 + 20): a smoke check
    python benchmarks/sts.py           # T in {500, 1e3, 1e4}, NUTS T = 500 (200 + 200)

Writes ``<out>/sts_<backend>.json`` and ``.md`` (``sts_<backend>_quick.*`` with ``--quick``, so
a smoke check never overwrites full results); ``--out`` defaults to ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
from jax import lax  # noqa: E402
from jax.scipy.linalg import cho_solve, solve_triangular  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from numpyro_parallel import Associative, Blocked, Sequential, sts  # noqa: E402
from numpyro_parallel.strategy import resolve_strategy  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _timing import measure, metadata  # noqa: E402

STRATEGIES = {
    "sequential": Sequential(),  # first: the reference
    "associative": Associative(),
    "blocked": Blocked(),
    "auto": "auto",
}
BASELINES = ("scan", "dynamax")
LABELS = {"scan": "lax.scan covariance", "dynamax": "dynamax lgssm_filter"}
RTOL = 1e-8  # log-likelihood agreement with Sequential()
GRAD_RTOL = 1e-6  # gradient agreement (recorded, informational)
TIE = 1.10  # "auto" within 10% of the fastest counts as picking the fastest (timing noise)

MODELS = {
    "trend": ("local linear trend", 12.0, lambda: [sts.LocalLinearTrend()]),
    "trend+weekday": (
        "local linear trend + day-of-week dummy seasonal",
        7.0,
        lambda: [sts.LocalLinearTrend(), sts.Seasonal(period=7)],
    ),
    "co2": (
        "local linear trend + monthly dummy seasonal (CO2)",
        12.0,
        lambda: [sts.LocalLinearTrend(), sts.Seasonal(period=12)],
    ),
    "weekly": (
        "local linear trend + yearly trigonometric seasonal, 26 harmonics (weekly data)",
        52.18,
        lambda: [sts.LocalLinearTrend(), sts.Seasonal(period=52.18, num_harmonics=26)],
    ),
}


# --------------------------------------------------------------------------- models and data
def build_model(name: str, strategy="auto") -> sts.Sum:
    """The structural model ``name`` with the given strategy."""
    return sts.Sum(MODELS[name][2](), strategy=strategy)


def simulate(period: float, num_steps: int, seed: int = 0) -> np.ndarray:
    """A CO2-like series: drifting trend, two-harmonic seasonal of ``period`` steps, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_steps)
    slope = 0.1 + np.cumsum(rng.normal(0.0, 0.002, num_steps))
    level = 315.0 + np.cumsum(slope) + np.cumsum(rng.normal(0.0, 0.05, num_steps))
    season = 3.0 * np.sin(2 * np.pi * t / period) + np.cos(4 * np.pi * t / period)
    return level + season + rng.normal(0.0, 0.3, num_steps)


def fixed_params(model: sts.Sum, y) -> dict:
    """Parameter values drawn once from the model's default priors (seed 0)."""
    data = sts.data_scale(y)
    params = numpyro.handlers.seed(model.sample_params, rng_seed=0)(data)
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params)


# --------------------------------------------------------------------------- baselines
def dense_matrices(model: sts.Sum, params, data, num_steps: int):
    """Covariance-form ``(m0, P0, F, Q, H, R, c, d)`` of a time-invariant `Sum`.

    Taken from ``model.ssm(params, data, T).params`` (square-root form, time-expanded): the
    first time slice of every per-step field, covariances rebuilt from their factors.
    """
    if any(c.time_varying for c in model.components):
        raise ValueError("the covariance-form baselines need a time-invariant model")
    prm = model.ssm(params, data, num_steps).params

    def cov(factor):
        return factor @ factor.T

    return (
        prm.initial_mean,
        cov(prm.initial_chol),
        prm.transition_matrix[0],
        cov(prm.transition_chol[0]),
        prm.observation_matrix[0],
        cov(prm.observation_chol[0]),
        prm.transition_offset[0],
        prm.observation_offset[0],
    )


def scan_filter_loglik(matrices, y) -> jax.Array:
    """Log-likelihood of ``y`` ``(T, p)`` by a plain covariance-form Kalman filter (lax.scan).

    ``x_0 ~ N(m0, P0)``, ``y_t = H x_t + d + v_t``, ``x_{t+1} = F x_t + c + w_t`` (no missing
    values).
    """
    m0, P0, F, Q, H, R, c, d = matrices
    p = H.shape[0]
    const = 0.5 * p * math.log(2 * math.pi)

    def step(carry, y_t):
        m, P = carry  # predicted moments of x_t
        HP = H @ P
        chol_S = jnp.linalg.cholesky(HP @ H.T + R)
        v = y_t - H @ m - d
        w = solve_triangular(chol_S, v, lower=True)
        loglik = -0.5 * w @ w - jnp.sum(jnp.log(jnp.diag(chol_S))) - const
        gain_T = cho_solve((chol_S, True), HP)  # S^-1 H P = K^T
        m = m + gain_T.T @ v
        P = P - HP.T @ gain_T
        P = F @ P @ F.T + Q
        return (F @ m + c, 0.5 * (P + P.T)), loglik

    _, terms = lax.scan(step, (m0, P0), y)
    return terms.sum()


def dynamax_status() -> tuple[bool, str]:
    """Whether dynamax's sequential filter can be imported, and its version or the reason."""
    try:
        import dynamax
        import dynamax.linear_gaussian_ssm.inference
    except Exception as err:
        return False, f"dynamax not installed: {type(err).__name__}: {err}"
    return True, getattr(dynamax, "__version__", "unknown version")


def dynamax_loglik(matrices, y) -> jax.Array:
    """Log-likelihood by ``dynamax.linear_gaussian_ssm.inference.lgssm_filter``."""
    from dynamax.linear_gaussian_ssm.inference import lgssm_filter, make_lgssm_params

    m0, P0, F, Q, H, R, c, d = matrices
    params = make_lgssm_params(m0, P0, F, Q, H, R, dynamics_bias=c, emissions_bias=d)
    return lgssm_filter(params, y).marginal_loglik


def baseline_loglik(method: str, model: sts.Sum):
    """``(params, y) -> log p(y | params)`` through a baseline filter on the same matrices."""
    filter_fn = scan_filter_loglik if method == "scan" else dynamax_loglik

    def loglik(params, y):
        matrices = dense_matrices(model, params, sts.data_scale(y), y.shape[0])
        return filter_fn(matrices, y[:, None])

    return loglik


def method_loglik(name: str, method: str):
    """Log-likelihood function of ``method`` (a strategy name or a baseline) for model ``name``."""
    if method in STRATEGIES:
        return build_model(name, STRATEGIES[method]).log_prob
    return baseline_loglik(method, build_model(name, Sequential()))


def method_label(method: str, num_steps: int) -> str:
    if method == "blocked":
        return f"blocked (B={Blocked().size_for(num_steps)})"
    if method == "auto":
        resolved = resolve_strategy("auto", jnp.zeros(1))
        label = type(resolved).__name__.lower()
        if isinstance(resolved, Blocked):
            label += f" (B={resolved.size_for(num_steps)})"
        return f"auto → {label}"
    return LABELS.get(method, method)


# --------------------------------------------------------------------------- likelihood rows
def _rel_diff(a, b) -> float:
    leaves = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(lambda x, y: jnp.max(jnp.abs(x - y)), a, b)
    )
    scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(b))
    return float(max(leaves)) / max(scale, 1e-300)


def likelihood_rows(args, methods, unavailable, log) -> list[dict]:
    rows = []
    slow = {}  # method -> (T, grad compile s) that tripped the compile guard
    for name in args.models:
        description, period, _ = MODELS[name]
        d = build_model(name).state_dim
        y_all = simulate(period, max(args.T))
        for T in args.T:
            y = jnp.asarray(y_all[:T])
            params = fixed_params(build_model(name), y)
            reference = None
            for method in methods:
                row = {
                    "model": name,
                    "description": description,
                    "d": d,
                    "T": T,
                    "method": method,
                    "label": method_label(method, T),
                }
                rows.append(row)
                if method in unavailable:
                    row["status"] = unavailable[method]
                    continue
                if method in slow and method != "sequential":
                    T0, c0 = slow[method]
                    row["status"] = (
                        f"skipped: gradient compile {c0:.0f} s > {args.compile_guard:g} s at T={T0}"
                    )
                    continue
                loglik = method_loglik(name, method)
                compile_s, run_s, value = measure(
                    loglik, params, y, repeats=args.repeats, max_total_s=args.max_total_s
                )
                grad_compile_s, grad_s, (grad_value, grads) = measure(
                    jax.value_and_grad(loglik),
                    params,
                    y,
                    repeats=args.repeats,
                    max_total_s=args.max_total_s,
                )
                row.update(
                    status="ok",
                    compile_s=compile_s,
                    run_s=run_s,
                    grad_compile_s=grad_compile_s,
                    value_and_grad_s=grad_s,
                    log_likelihood=float(value),
                )
                if method == "sequential":
                    reference = (float(value), grads)
                if reference is not None:
                    ref_value, ref_grads = reference
                    rel = abs(float(value) - ref_value) / abs(ref_value)
                    grad_rel = _rel_diff(grads, ref_grads)
                    value_rel = abs(float(grad_value) - ref_value) / abs(ref_value)
                    row.update(
                        rel_diff_vs_sequential=rel,
                        value_and_grad_value_rel_diff=value_rel,
                        grad_rel_diff_vs_sequential=grad_rel,
                        agrees=bool(rel <= RTOL and value_rel <= RTOL),
                        grad_agrees=bool(grad_rel <= GRAD_RTOL),
                    )
                if grad_compile_s > args.compile_guard:
                    slow[method] = (T, grad_compile_s)
                log(
                    f"{name:13s} d={d:2d} T={T:6d} {row['label']:24s} compile {compile_s:6.2f} s"
                    f"  run {run_s * 1e3:9.3f} ms  grad compile {grad_compile_s:6.2f} s"
                    f"  v&g {grad_s * 1e3:9.3f} ms  rel {row.get('rel_diff_vs_sequential', 0):.1e}"
                )
            _add_ratios([r for r in rows if r["model"] == name and r["T"] == T])
    return rows


def _add_ratios(group: list[dict]) -> None:
    """Each row's times relative to the fastest row of its (model, T) group."""
    for key in ("run_s", "value_and_grad_s"):
        timed = [r for r in group if r.get(key) is not None]
        if not timed:
            continue
        fastest = min(r[key] for r in timed)
        for r in timed:
            r[key.replace("_s", "_vs_fastest")] = r[key] / fastest


# --------------------------------------------------------------------------- NUTS rows
def scan_numpyro_model(model: sts.Sum, method: str):
    """``model``'s parameters and priors with a baseline filter's log-likelihood as a factor."""
    filter_fn = scan_filter_loglik if method == "scan" else dynamax_loglik

    def numpyro_model(y):
        data = sts.data_scale(y)
        params = model.sample_params(data)
        matrices = dense_matrices(model, params, data, y.shape[0])
        numpyro.factor(model.name, filter_fn(matrices, y[:, None]))

    return numpyro_model


def nuts_once(mcmc: MCMC, y) -> tuple[float, int, int, dict]:
    """Warmup + sampling: ``(wall s, leapfrog steps, divergences, samples)``."""
    key = jax.random.PRNGKey(0)
    start = time.perf_counter()
    mcmc.warmup(key, y, extra_fields=("num_steps",), collect_warmup=True)
    warm_fields = mcmc.get_extra_fields()
    mcmc.run(mcmc.post_warmup_state.rng_key, y, extra_fields=("num_steps",))
    samples = jax.block_until_ready(mcmc.get_samples())
    wall = time.perf_counter() - start
    fields = mcmc.get_extra_fields()
    steps = int(np.sum(warm_fields["num_steps"]) + np.sum(fields["num_steps"]))
    divergences = int(np.sum(fields["diverging"]))
    return wall, steps, divergences, samples


def nuts_rows(args, methods, unavailable, log) -> list[dict]:
    name = "co2"
    T = args.nuts_T
    y = jnp.asarray(simulate(MODELS[name][1], T, seed=1))
    d = build_model(name).state_dim
    iterations = args.num_warmup + args.num_samples
    rows = []
    reference = None
    for method in methods:
        row = {
            "model": name,
            "d": d,
            "T": T,
            "method": method,
            "label": method_label(method, T),
            "num_warmup": args.num_warmup,
            "num_samples": args.num_samples,
        }
        rows.append(row)
        if method in unavailable:
            row["status"] = unavailable[method]
            continue
        if method in STRATEGIES:
            numpyro_model = build_model(name, STRATEGIES[method]).numpyro_model
        else:
            numpyro_model = scan_numpyro_model(build_model(name, Sequential()), method)
        mcmc = MCMC(
            NUTS(numpyro_model, dense_mass=True),
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            progress_bar=False,
            jit_model_args=True,
        )
        cold_s, steps, divergences, samples = nuts_once(mcmc, y)
        warm_s, warm_steps, _, _ = nuts_once(mcmc, y)
        means = {k: float(jnp.mean(v)) for k, v in samples.items()}
        row.update(
            status="ok",
            wall_s=cold_s,
            warm_wall_s=warm_s,
            compile_estimate_s=max(cold_s - warm_s, 0.0),
            num_steps=steps,
            steps_per_iteration=steps / iterations,
            ms_per_gradient=cold_s / steps * 1e3,
            warm_ms_per_gradient=warm_s / warm_steps * 1e3,
            divergences=divergences,
            posterior_means=means,
        )
        if method == "sequential":
            reference = means
        if reference is not None:
            row["max_rel_diff_posterior_mean_vs_sequential"] = max(
                abs(means[k] - reference[k]) / max(abs(reference[k]), 1e-300) for k in means
            )
        log(
            f"NUTS {name} d={d} T={T} {row['label']:24s} wall {cold_s:6.2f} s (warm "
            f"{warm_s:6.2f} s)  {steps} steps  {row['ms_per_gradient']:.3f} ms/grad "
            f"(warm {row['warm_ms_per_gradient']:.3f})"
        )
    _add_nuts_ratios(rows)
    return rows


def _add_nuts_ratios(rows: list[dict]) -> None:
    for key in ("wall_s", "warm_wall_s"):
        timed = [r for r in rows if r.get(key) is not None]
        if timed:
            fastest = min(r[key] for r in timed)
            for r in timed:
                r[key.replace("_s", "_vs_fastest")] = r[key] / fastest


def extrapolated_nuts(likelihood: list[dict], nuts: list[dict], full_iterations: int) -> list:
    """NUTS cost of the d = 54 model, from its gradient time and the CO2 run's step count."""
    auto = [r for r in nuts if r["method"] == "auto" and r.get("steps_per_iteration")]
    weekly = [r for r in likelihood if r["model"] == "weekly" and r.get("value_and_grad_s")]
    if not auto or not weekly:
        return []
    steps = auto[0]["steps_per_iteration"]
    largest = max(r["T"] for r in weekly)
    out = []
    for r in weekly:
        if r["T"] != largest:
            continue
        out.append(
            {
                "model": r["model"],
                "d": r["d"],
                "T": r["T"],
                "method": r["method"],
                "label": r["label"],
                "steps_per_iteration": steps,
                "iterations": full_iterations,
                "grad_compile_s": r["grad_compile_s"],
                "value_and_grad_s": r["value_and_grad_s"],
                "estimated_wall_s": r["grad_compile_s"]
                + r["value_and_grad_s"] * steps * full_iterations,
            }
        )
    return out


# --------------------------------------------------------------------------- findings
def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def findings(likelihood: list[dict], nuts: list[dict], extrapolated: list[dict]) -> list[str]:
    """Sentences computed from the measurements."""
    out = []
    shapes = sorted({(r["model"], r["d"], r["T"]) for r in likelihood}, key=lambda s: (s[1], s[2]))
    for key, what in (("value_and_grad_s", "value-and-grad"), ("run_s", "log_prob")):
        picked, missed = 0, []
        fastest_names = []
        for model, d, T in shapes:
            group = [
                r
                for r in likelihood
                if (r["model"], r["T"]) == (model, T) and r.get(key) is not None
            ]
            auto = [r for r in group if r["method"] == "auto"]
            if not group or not auto:
                continue
            best = min(group, key=lambda r: r[key])
            best_strategy = min(
                (r for r in group if r["method"] in STRATEGIES and r["method"] != "auto"),
                key=lambda r: r[key],
            )
            fastest_names.append(
                f"{model} (d={d}, T={T}): {best['label']} {_fmt_ms(best[key])}, best strategy "
                f"{best_strategy['method']} {_fmt_ms(best_strategy[key])}"
            )
            ratio = auto[0][key] / best[key]
            if ratio <= TIE:
                picked += 1
            else:
                missed.append(
                    f"{model} d={d} T={T}: auto {_fmt_ms(auto[0][key])} = {ratio:.2f}× "
                    f"{best['label']}"
                )
        total = picked + len(missed)
        if total:
            sentence = (
                f'{what}: "auto" is within {TIE:.2f}× of the fastest method in {picked} of '
                f"{total} shapes"
            )
            sentence += "." if not missed else "; slower in " + "; ".join(missed) + "."
            out.append(sentence)
            out.append(f"Fastest {what} per shape: " + "; ".join(fastest_names) + ".")
    strategy_rows = [r for r in likelihood if r["method"] in STRATEGIES and r.get("grad_compile_s")]
    if strategy_rows:
        worst = max(strategy_rows, key=lambda r: r["grad_compile_s"])
        auto_rows = [r for r in strategy_rows if r["method"] == "auto"]
        auto_worst = max(auto_rows, key=lambda r: r["grad_compile_s"]) if auto_rows else None
        sentence = (
            f"Gradient compile time: largest {worst['grad_compile_s']:.1f} s "
            f"({worst['label']}, {worst['model']}, T={worst['T']})"
        )
        if auto_worst is not None:
            verdict = "meets" if auto_worst["grad_compile_s"] <= 10 else "misses"
            sentence += (
                f'; "auto" at most {auto_worst["grad_compile_s"]:.1f} s '
                f"({auto_worst['model']}, T={auto_worst['T']}), which {verdict} the 10 s target"
            )
        out.append(sentence + ".")
    checked = [r for r in likelihood if "agrees" in r]
    bad = [r for r in checked if not r["agrees"]]
    out.append(
        f"Log-likelihood agreement with Sequential() (rtol {RTOL:g}): {len(checked) - len(bad)}"
        f" of {len(checked)} rows"
        + (
            "; disagreeing: "
            + ", ".join(
                f"{r['label']} {r['model']} T={r['T']} ({r['rel_diff_vs_sequential']:.1e})"
                for r in bad
            )
            if bad
            else ""
        )
        + "."
    )
    ran = [r for r in nuts if r.get("wall_s") is not None]
    if ran:
        best = min(ran, key=lambda r: r["wall_s"])
        best_warm = min(ran, key=lambda r: r["warm_wall_s"])
        sentence = (
            f"NUTS (co2, d={best['d']}, T={best['T']}): fastest wall time including compile "
            f"{best['label']} {best['wall_s']:.2f} s; without compile (warm) "
            f"{best_warm['label']} {best_warm['warm_wall_s']:.2f} s"
        )
        auto = [r for r in ran if r["method"] == "auto"]
        if auto:
            sentence += (
                f'; "auto" {auto[0]["wall_s"]:.2f} s ({auto[0]["wall_vs_fastest"]:.2f}× the '
                f"fastest), warm {auto[0]['warm_wall_s']:.2f} s "
                f"({auto[0]['warm_wall_vs_fastest']:.2f}×)"
            )
        out.append(sentence + ".")
    if extrapolated:
        best = min(extrapolated, key=lambda r: r["estimated_wall_s"])
        auto = [r for r in extrapolated if r["method"] == "auto"]
        sentence = (
            f"NUTS at d={best['d']}, T={best['T']} (extrapolated, not run): fastest "
            f"{best['label']} about {best['estimated_wall_s']:.0f} s"
        )
        if auto:
            sentence += f'; "auto" about {auto[0]["estimated_wall_s"]:.0f} s'
        out.append(sentence + ".")
    return out


# --------------------------------------------------------------------------- output
def _cell(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def write_markdown(path: pathlib.Path, meta: dict, result: dict) -> None:
    likelihood, nuts, extrapolated = result["likelihood"], result["nuts"], result["extrapolated"]
    lines = [
        f"# Structural time series benchmark ({meta['backend']}, {meta['device_kind']}, jax "
        f"{meta['jax_version']}, numpyro {meta['numpyro_version']}, {meta['cpu_count']} CPUs, "
        f"{meta['date_utc']})",
        "",
        f"Command: `{meta['command']}`. float64. Grid: {meta['grid']}. dynamax: {meta['dynamax']}.",
        "",
        "Compile = `jax.jit(f).lower(*args).compile()`; run = median of repeated calls "
        "(`_timing.measure`). `agrees`: log-likelihood (of `log_prob` and of `value_and_grad`) "
        f"within rtol {RTOL:g} of `Sequential()`; `grad rel diff`: largest gradient difference "
        "relative to the largest Sequential() gradient entry. `×fastest`: value-and-grad time "
        "over the fastest method's for the same (model, T). Baselines use the same matrices "
        "(`model.ssm(params, data, T).params`, Q = L Lᵀ).",
        "",
        "## Findings",
        "",
        *[f"- {s}" for s in result["findings"]],
        "",
        "## Log-likelihood and gradient",
        "",
        "| model | d | T | method | compile s | run ms | grad compile s | value-and-grad ms "
        "| ×fastest | agrees | grad rel diff | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in likelihood:
        run = r.get("run_s")
        vg = r.get("value_and_grad_s")
        agrees = r.get("agrees")
        lines.append(
            f"| {r['model']} | {r['d']} | {r['T']} | {r['label']} | "
            f"{_cell(r.get('compile_s'), '.2f')} | {_cell(run and run * 1e3, '.3f')} | "
            f"{_cell(r.get('grad_compile_s'), '.2f')} | {_cell(vg and vg * 1e3, '.3f')} | "
            f"{_cell(r.get('value_and_grad_vs_fastest'), '.2f')} | "
            f"{'' if agrees is None else ('yes' if agrees else 'NO')} | "
            f"{_cell(r.get('grad_rel_diff_vs_sequential'), '.1e')} | {r['status']} |"
        )
    lines += [
        "",
        "## NUTS",
        "",
        "`NUTS(dense_mass=True)`, one chain, warmup (collected) + sampling, run twice on the "
        "same `MCMC` object: `wall` includes compilation, `warm wall` reuses the compiled "
        "functions, `compile` = their difference; `ms/grad` = wall / leapfrog steps (warmup "
        "and sampling; `warm` from the warm run). The simulated series has no missing values.",
        "",
        "| model | d | T | method | warmup + samples | wall s | warm wall s | compile s "
        "| leapfrog steps | steps / iteration | ms/grad | warm ms/grad | divergences "
        "| ×fastest (warm) | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in nuts:
        lines.append(
            f"| {r['model']} | {r['d']} | {r['T']} | {r['label']} | "
            f"{r['num_warmup']} + {r['num_samples']} | {_cell(r.get('wall_s'), '.2f')} | "
            f"{_cell(r.get('warm_wall_s'), '.2f')} | {_cell(r.get('compile_estimate_s'), '.2f')} | "
            f"{_cell(r.get('num_steps'), 'd')} | {_cell(r.get('steps_per_iteration'), '.1f')} | "
            f"{_cell(r.get('ms_per_gradient'), '.3f')} | "
            f"{_cell(r.get('warm_ms_per_gradient'), '.3f')} | "
            f"{_cell(r.get('divergences'), 'd')} | {_cell(r.get('warm_wall_vs_fastest'), '.2f')} | "
            f"{r['status']} |"
        )
    if extrapolated:
        e0 = extrapolated[0]
        lines += [
            "",
            f"## NUTS at d = {e0['d']}, T = {e0['T']}: extrapolated, not run",
            "",
            "Full NUTS on this model is too slow for a CPU benchmark run. Estimated wall time = "
            "gradient compile time + value-and-grad time × "
            f"{e0['steps_per_iteration']:.1f} leapfrog steps per iteration (the mean of the "
            f'CO2 NUTS run with "auto") × {e0["iterations"]} iterations (200 warmup + 200 '
            "samples).",
            "",
            "| model | d | T | method | grad compile s | value-and-grad ms | estimated NUTS s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in extrapolated:
            lines.append(
                f"| {r['model']} | {r['d']} | {r['T']} | {r['label']} | "
                f"{r['grad_compile_s']:.2f} | {r['value_and_grad_s'] * 1e3:.3f} | "
                f"{r['estimated_wall_s']:.0f} |"
            )
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T = 200, short NUTS (smoke check)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "results"))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--T", nargs="+", type=int, default=None, help="likelihood grid")
    parser.add_argument("--nuts-T", type=int, default=None, dest="nuts_T")
    parser.add_argument("--num-warmup", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--no-nuts", action="store_true")
    parser.add_argument(
        "--compile-guard",
        type=float,
        default=60.0,
        help="skip larger T for a method once its gradient compile exceeded this (s)",
    )
    args = parser.parse_args(argv)
    args.T = args.T or ([200] if args.quick else [500, 1_000, 10_000])
    args.nuts_T = args.nuts_T or (120 if args.quick else 500)
    args.num_warmup = args.num_warmup or (20 if args.quick else 200)
    args.num_samples = args.num_samples or (20 if args.quick else 200)
    args.repeats = 5 if args.quick else 10
    args.max_total_s = 1.0 if args.quick else 5.0

    ok, dynamax_note = dynamax_status()
    unavailable = {} if ok else {"dynamax": dynamax_note}
    methods = [*STRATEGIES, *BASELINES]
    meta = metadata()
    meta.update(
        numpyro_version=numpyro.__version__,
        dynamax=f"dynamax {dynamax_note}" if ok else dynamax_note,
        quick=args.quick,
        grid=(
            f"models {args.models}, T in {args.T}; NUTS co2 T={args.nuts_T} "
            f"({args.num_warmup} + {args.num_samples})" + (" (--quick)" if args.quick else "")
        ),
        command=" ".join(["python", *sys.argv]),
        auto_resolves_to=repr(resolve_strategy("auto", jnp.zeros(1))),
        rtol=RTOL,
    )
    print(json.dumps(meta), flush=True)
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", flush=True)

    likelihood = likelihood_rows(args, methods, unavailable, log)
    nuts = [] if args.no_nuts else nuts_rows(args, methods, unavailable, log)
    full_iterations = 400  # the full configuration's 200 warmup + 200 samples
    extrapolated = extrapolated_nuts(likelihood, nuts, full_iterations)
    result = {"likelihood": likelihood, "nuts": nuts, "extrapolated": extrapolated}
    result["findings"] = findings(likelihood, nuts, extrapolated)
    meta["total_s"] = time.perf_counter() - start
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"sts_{meta['backend']}{'_quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(
        json.dumps({"metadata": meta, **result}, indent=1, default=float)
    )
    write_markdown(stem.with_suffix(".md"), meta, result)
    print("\n".join(result["findings"]))
    print(f"wrote {stem}.json and {stem}.md ({meta['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
