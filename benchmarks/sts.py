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
``sts.Sum(..., strategy=...)``: `Sequential()` (the square-root filter, the reference),
``Sequential(square_root=False)`` (the covariance-form log-likelihood), `Associative()`,
`Blocked()` and ``"auto"`` (what it resolves to is recorded; on CPUs in float64 the
covariance form), against two baselines on the same matrices
(``model.ssm(params, data, T).params``, with ``Q = L Lᵀ`` from the low-rank noise factor):

- ``lax.scan covariance``: a plain covariance-form Kalman filter written here (predict/update,
  Cholesky solve of the innovation covariance, one ``lax.scan`` step per observation),
- ``dynamax``: ``dynamax.linear_gaussian_ssm.inference.lgssm_filter`` (sequential covariance
  form), when dynamax is importable (otherwise the rows say why not).

Each row records the compile time (``jax.jit(f).lower(*args).compile()``) separately from the
median run time (`_timing.measure`), for the log-likelihood and for the value and gradient, and
whether the log-likelihood agrees with the `Sequential()` one (relative tolerance 1e-8; with
the ``lax.scan`` filter's where `Sequential()` was skipped); the gradient's largest relative
difference is recorded too. Guards: a method whose value-and-grad call is predicted (linear
in T from a smaller T of the same model) to exceed ``--max-call-s`` (60 s) is skipped, as is
one whose gradient compile exceeded ``--compile-guard`` (60 s) at a smaller T; calls predicted
to exceed ``--single-call-s`` (2 s) are timed once without a warm-up call. On 2 cores this
leaves the library strategies of the d = 54 model at T = 500 only (their filter step costs
tens of ms there; the baselines run at every T).

NUTS rows: ``numpyro.infer.MCMC`` with ``NUTS(dense_mass=True)`` (one chain,
``progress_bar=False``, ``jit_model_args=True``) on ``co2.numpyro_model`` (simulated series)
for each strategy, and on the same NumPyro model (``model.sample_params(data)``) whose
likelihood is ``numpyro.factor("y", ...)`` of the ``lax.scan`` covariance filter (and of
dynamax's filter). A run is one ``mcmc.run(..., extra_fields=("num_steps",))`` with the
warmup iterations collected too, timed once (wall time including compilation), so that every
leapfrog step (= gradient evaluation) of warmup and sampling is counted: time per gradient =
wall / steps. Where the likelihood rows have the same (model, T), the wall time is
split into steps x value-and-grad time and the rest (compilation and sampler overhead), and a
200 warmup + 200 samples run is estimated from it. NUTS on the d = 54 model is not run: its
cost is extrapolated as gradient compile time + value-and-grad time x mean leapfrog steps per
iteration (of the CO2 run with ``"auto"``) x 400 iterations.

Sizes: ``--quick`` (a smoke check, about 2 minutes on 2 cores): the co2 model at T = 200
without `Associative()` (its gradient alone compiles for ~35 s), NUTS at T = 120 with 20 + 20
iterations for ``"auto"`` and the two baselines. The full run: all models at T = 500 (the CO2
length), 10^3 and 10^4; NUTS at T = 500 with 30 warmup + 30 samples for every method but
`Blocked()` (far slower at d = 13) and the explicit strategy that ``"auto"`` resolves to
(the same program). The chains are reduced
from the issue's 200 + 200 because on 2 cores each library NUTS run compiles for ~40 s and
each gradient costs tens of ms; the NUTS part still takes about 5 minutes, and the 200 + 200
time is estimated (see above). Pass ``--num-warmup 200 --num-samples 200`` for the full
chains. Any size can be overridden (``--models``, ``--T``, ``--methods``,
``--nuts-methods``, ``--nuts-T``, ``--nuts-model``; ``--suffix`` names the output files
``sts_<backend>_<suffix>``); a method whose gradient compile exceeded
``--compile-guard`` seconds is skipped for larger T. The full run takes roughly 40 minutes on
2 cores (estimated from partial runs; about 2 minutes of compilation per (model, T), 8-10
minutes for the d = 54 model at T = 500). The results are rewritten after every (model, T)
group, so an interrupted run keeps what it measured.

Usage::

    JAX_PLATFORMS=cpu python benchmarks/sts.py --quick
    JAX_PLATFORMS=cpu python benchmarks/sts.py

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
from types import SimpleNamespace

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
from jax import lax  # noqa: E402
from jax.scipy.linalg import cho_solve, solve_triangular  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from numpyro_parallel import Associative, Blocked, Sequential, sts  # noqa: E402
from numpyro_parallel.ssm.kalman.inference import resolve_log_likelihood_strategy  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _timing import measure, metadata  # noqa: E402

STRATEGIES = {
    "sequential": Sequential(),  # first: the reference
    "covariance": Sequential(square_root=False),
    "associative": Associative(),
    "blocked": Blocked(),
    "auto": "auto",
}
BASELINES = ("scan", "dynamax")
METHODS = (*STRATEGIES, *BASELINES)
LABELS = {
    "scan": "lax.scan covariance",
    "dynamax": "dynamax lgssm_filter",
    "covariance": "sequential (covariance)",
}
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


# Defaults of --quick and of the full run (any of them can be overridden on the command line).
QUICK = {  # about 2 minutes on 2 cores; Associative() (~50 s of compilation) is left out
    "models": ["co2"],
    "T": [200],
    "methods": [m for m in METHODS if m != "associative"],
    "nuts_T": 120,
    "num_warmup": 20,
    "num_samples": 20,
    "nuts_methods": ["auto", "scan", "dynamax"],
}
FULL = {
    "models": list(MODELS),
    "T": [500, 1_000, 10_000],
    "methods": list(METHODS),
    "nuts_T": 500,
    "num_warmup": 30,
    "num_samples": 30,
    # In `main`, the explicit strategy "auto" resolves to for the CO2 model is left out (the
    # same program) and "blocked" (far slower than "sequential" at d = 13 on CPUs).
    "nuts_methods": list(METHODS),
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


def auto_strategy(state_dim: int, num_steps: int):
    """What ``"auto"`` resolves to for a float64 Kalman log-likelihood of this shape, here
    (`resolve_log_likelihood_strategy` reads the state's size and dtype and T)."""
    params = SimpleNamespace(initial_mean=jnp.zeros(state_dim))
    return resolve_log_likelihood_strategy("auto", params, jnp.zeros((num_steps, 1)))


def method_label(method: str, num_steps: int, state_dim: int) -> str:
    if method == "blocked":
        return f"blocked (B={Blocked().size_for(num_steps)})"
    if method == "auto":
        resolved = auto_strategy(state_dim, num_steps)
        label = type(resolved).__name__.lower()
        if isinstance(resolved, Sequential) and not resolved.square_root:
            label += " (covariance)"
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


def _predicted(measured: dict, key, T: int) -> tuple[float, float] | None:
    """Run and value-and-grad time at ``T``, linear in T from the largest smaller T measured."""
    if key not in measured:
        return None
    T0, run_s, grad_s = measured[key]
    return run_s * T / T0, grad_s * T / T0


def _time(fn, params, y, args, long: bool):
    """``measure`` as the other scripts use it; one call without warm-up for long calls."""
    if long:
        return measure(fn, params, y, repeats=1, warm_up=False)
    return measure(fn, params, y, repeats=args.repeats, max_total_s=args.max_total_s)


def likelihood_rows(args, unavailable, log, save) -> list[dict]:
    rows = []
    slow = {}  # method -> (T, grad compile s) that tripped the compile guard
    measured = {}  # (model, method) -> (T, run s, value-and-grad s) at the largest T so far
    ratio = {}  # method -> largest value-and-grad / log_prob time ratio seen (at least 4)
    dims = {name: build_model(name).state_dim for name in args.models}
    # Cheapest first (work ~ d^3 T), so that an interrupted run keeps the small cases.
    jobs = sorted(((name, T) for name in args.models for T in args.T),
                  key=lambda job: dims[job[0]] ** 3 * job[1])  # fmt: skip
    for name, T in jobs:
        description, period, _ = MODELS[name]
        d = dims[name]
        y = jnp.asarray(simulate(period, max(args.T))[:T])
        params = fixed_params(build_model(name), y)
        group, outputs = [], {}
        for method in args.methods:
            row = {
                "model": name,
                "description": description,
                "d": d,
                "T": T,
                "method": method,
                "label": method_label(method, T, d),
            }
            rows.append(row)
            group.append(row)
            predicted = _predicted(measured, (name, method), T)
            if method in unavailable:
                row["status"] = unavailable[method]
                continue
            if method in slow and T > slow[method][0]:
                T0, c0 = slow[method]
                row["status"] = (
                    f"skipped: gradient compile {c0:.0f} s > {args.compile_guard:g} s at T={T0}"
                )
                continue
            if predicted is not None and predicted[1] > args.max_call_s:
                row["status"] = (
                    f"skipped: value-and-grad predicted {predicted[1]:.0f} s per call > "
                    f"{args.max_call_s:g} s (linear in T from T={measured[(name, method)][0]})"
                )
                continue
            loglik = method_loglik(name, method)
            long = predicted is not None and predicted[0] > args.single_call_s
            compile_s, run_s, value = _time(loglik, params, y, args, long)
            row.update(status="ok", compile_s=compile_s, run_s=run_s, log_likelihood=float(value))
            grad_guess = max(predicted[1] if predicted else 0.0, ratio.get(method, 4.0) * run_s)
            if grad_guess > args.max_call_s:
                row["status"] = (
                    f"value-and-grad skipped: predicted {grad_guess:.0f} s per call > "
                    f"{args.max_call_s:g} s (log_prob {run_s:.1f} s)"
                )
                outputs[method] = (float(value), None, None)
                measured[(name, method)] = (T, run_s, grad_guess)
                continue
            long = grad_guess > args.single_call_s
            grad_compile_s, grad_s, (grad_value, grads) = _time(
                jax.value_and_grad(loglik), params, y, args, long
            )
            row.update(
                grad_compile_s=grad_compile_s,
                value_and_grad_s=grad_s,
                timed_once=long,
            )
            outputs[method] = (float(value), float(grad_value), grads)
            measured[(name, method)] = (T, run_s, grad_s)
            ratio[method] = max(ratio.get(method, 4.0), grad_s / run_s)
            if grad_compile_s > args.compile_guard:
                slow[method] = (T, grad_compile_s)
            log(
                f"{name:13s} d={d:2d} T={T:6d} {row['label']:24s} compile {compile_s:6.2f} s"
                f"  run {run_s * 1e3:9.3f} ms  grad compile {grad_compile_s:6.2f} s"
                f"  v&g {grad_s * 1e3:9.3f} ms"
            )
        _add_agreement(group, outputs)
        _add_ratios(group)
        save(likelihood=rows)
    return rows


def _add_agreement(group: list[dict], outputs: dict) -> None:
    """Compare every row's log-likelihood and gradient with Sequential() (else the scan)."""
    ref_method = next((m for m in ("sequential", "scan") if m in outputs), None)
    if ref_method is None:
        return
    ref_value, _, ref_grads = outputs[ref_method]
    for row in group:
        if row["method"] not in outputs:
            continue
        value, grad_value, grads = outputs[row["method"]]
        rel = abs(value - ref_value) / abs(ref_value)
        row.update(reference=ref_method, rel_diff_vs_reference=rel, agrees=bool(rel <= RTOL))
        if grads is not None and ref_grads is not None:
            value_rel = abs(grad_value - ref_value) / abs(ref_value)
            grad_rel = _rel_diff(grads, ref_grads)
            row.update(
                value_and_grad_value_rel_diff=value_rel,
                grad_rel_diff_vs_reference=grad_rel,
                agrees=bool(rel <= RTOL and value_rel <= RTOL),
                grad_agrees=bool(grad_rel <= GRAD_RTOL),
            )


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


def nuts_once(mcmc: MCMC, y) -> dict:
    """One timed ``mcmc.run`` that also collects the warmup iterations.

    NumPyro's public ``warmup(collect_warmup=True)`` followed by ``run`` compiles the sampling
    phase a second time, so the run is a plain ``mcmc.run`` (one compilation, as a user's)
    with the collection window widened to the warmup iterations (`MCMC._set_collection_params`,
    the call ``warmup(collect_warmup=True)`` makes): every leapfrog step is then counted.
    """
    num_warmup, num_samples = mcmc.num_warmup, mcmc.num_samples
    collect_warmup = hasattr(mcmc, "_set_collection_params")
    if collect_warmup:
        mcmc._set_collection_params(0, num_warmup + num_samples, num_warmup + num_samples)
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(0), y, extra_fields=("num_steps",))
    fields = jax.block_until_ready(mcmc.get_extra_fields())
    wall = time.perf_counter() - start
    first = num_warmup if collect_warmup else 0  # index of the first post-warmup draw
    steps = np.asarray(fields["num_steps"])
    samples = {k: v[first:] for k, v in mcmc.get_samples().items()}
    return {
        "wall_s": wall,
        "num_steps": int(steps.sum()),
        "warmup_steps_counted": collect_warmup,
        "sampling_steps": int(steps[first:].sum()),
        "divergences": int(np.sum(np.asarray(fields["diverging"])[first:])),
        "posterior_means": {k: float(jnp.mean(v)) for k, v in samples.items()},
    }


def warm_up_nuts(name: str) -> None:
    """One short untimed NUTS run (the ``lax.scan`` baseline, T = 24, 5 + 5 iterations): the
    first ``mcmc.run`` of a process pays several seconds of one-off tracing and compilation
    of NumPyro's own machinery, which would otherwise be charged to whichever method runs
    first (measured: 8.9 s for the first of four methods, 3.3-4.3 s when it ran later)."""
    numpyro_model = scan_numpyro_model(build_model(name, Sequential()), "scan")
    mcmc = MCMC(NUTS(numpyro_model, dense_mass=True), num_warmup=5, num_samples=5,
                progress_bar=False)  # fmt: skip
    y = jnp.asarray(simulate(MODELS[name][1], 24, seed=2))
    jax.block_until_ready(mcmc.run(jax.random.PRNGKey(1), y) or mcmc.get_samples())


def nuts_rows(args, unavailable, log, save) -> list[dict]:
    name = args.nuts_model
    T = args.nuts_T
    y = jnp.asarray(simulate(MODELS[name][1], T, seed=1))
    d = build_model(name).state_dim
    iterations = args.num_warmup + args.num_samples
    rows = []
    reference = None
    warm_up_nuts(name)
    for method in args.nuts_methods:
        row = {
            "model": name,
            "d": d,
            "T": T,
            "method": method,
            "label": method_label(method, T, d),
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
        row.update(status="ok", **nuts_once(mcmc, y))
        counted = iterations if row["warmup_steps_counted"] else args.num_samples
        row["steps_per_iteration"] = row["num_steps"] / counted
        row["ms_per_gradient"] = row["wall_s"] / row["num_steps"] * 1e3
        wall, steps, means = row["wall_s"], row["num_steps"], row["posterior_means"]
        if reference is None:
            reference = (row["label"], means)
        row["posterior_mean_reference"] = reference[0]
        row["max_rel_diff_posterior_mean"] = max(
            abs(means[k] - reference[1][k]) / max(abs(reference[1][k]), 1e-300) for k in means
        )
        log(
            f"NUTS {name} d={d} T={T} {row['label']:24s} wall {wall:7.2f} s  {steps} steps"
            f"  {row['ms_per_gradient']:.3f} ms/grad"
        )
        _add_nuts_ratios(rows)
        save(nuts=rows)
    return rows


def annotate_nuts(nuts: list[dict], likelihood: list[dict]) -> None:
    """Split NUTS wall time with the value-and-grad time measured at the same (model, T).

    ``compile_and_overhead_s`` = wall - leapfrog steps x value-and-grad time;
    ``estimated_full_s`` = that + value-and-grad time x steps per iteration x 400 (the issue's
    200 warmup + 200 samples).
    """
    for row in nuts:
        match = [
            r["value_and_grad_s"]
            for r in likelihood
            if (r["model"], r["T"], r["method"]) == (row["model"], row["T"], row["method"])
            and r.get("value_and_grad_s") is not None
        ]
        if row.get("wall_s") is None or not row.get("warmup_steps_counted") or not match:
            continue
        run_s = row["num_steps"] * match[0]
        row.update(
            value_and_grad_s=match[0],
            gradient_run_s=run_s,
            compile_and_overhead_s=row["wall_s"] - run_s,
            estimated_full_s=row["wall_s"] - run_s + match[0] * row["steps_per_iteration"] * 400,
        )


def _add_nuts_ratios(rows: list[dict]) -> None:
    timed = [r for r in rows if r.get("wall_s") is not None]
    if timed:
        fastest_wall = min(r["wall_s"] for r in timed)
        fastest_gradient = min(r["ms_per_gradient"] for r in timed)
        for r in timed:
            r["wall_vs_fastest"] = r["wall_s"] / fastest_wall
            r["gradient_vs_fastest"] = r["ms_per_gradient"] / fastest_gradient


def extrapolated_nuts(likelihood: list[dict], nuts: list[dict], full_iterations: int) -> list:
    """NUTS cost of the d = 54 model at its largest T, from gradient time and a CO2 step count.

    A method skipped at the largest T uses its value-and-grad time at its largest measured T,
    scaled linearly in T (flagged in ``value_and_grad_from_T``).
    """
    ran = [r for r in nuts if r.get("steps_per_iteration")]
    ran.sort(key=lambda r: r["method"] != "auto")  # the "auto" run's step count if there is one
    weekly = [r for r in likelihood if r["model"] == "weekly"]
    timed = [r for r in weekly if r.get("value_and_grad_s")]
    if not ran or not timed:
        return []
    steps = ran[0]["steps_per_iteration"]
    target = max(r["T"] for r in weekly)
    out = []
    for method in dict.fromkeys(r["method"] for r in timed):
        r = max((r for r in timed if r["method"] == method), key=lambda r: r["T"])
        grad_s = r["value_and_grad_s"] * target / r["T"]
        out.append(
            {
                "model": r["model"],
                "d": r["d"],
                "T": target,
                "method": method,
                "label": method_label(method, target, r["d"]),
                "value_and_grad_from_T": r["T"],
                "steps_per_iteration": steps,
                "steps_from": f"{ran[0]['model']} NUTS run with {ran[0]['label']}",
                "iterations": full_iterations,
                "grad_compile_s": r["grad_compile_s"],
                "value_and_grad_s": grad_s,
                "estimated_wall_s": r["grad_compile_s"] + grad_s * steps * full_iterations,
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
                default=None,
            )
            fastest_names.append(
                f"{model} (d={d}, T={T}): {best['label']} {_fmt_ms(best[key])}"
                + (
                    f", best explicit strategy {best_strategy['method']} "
                    f"{_fmt_ms(best_strategy[key])}"
                    if best_strategy is not None
                    else ""
                )
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
        f"Log-likelihood agreement with Sequential() (the lax.scan filter where Sequential() was"
        f" skipped; rtol {RTOL:g}): {len(checked) - len(bad)}"
        f" of {len(checked)} rows"
        + (
            "; disagreeing: "
            + ", ".join(
                f"{r['label']} {r['model']} T={r['T']} ({r['rel_diff_vs_reference']:.1e})"
                for r in bad
            )
            if bad
            else ""
        )
        + (
            " (dynamax's `psd_solve` adds 1e-9 to the diagonal of the innovation covariance "
            "in its gain, which moves its log-likelihood by about 1e-8 relative)"
            if any(r["method"] == "dynamax" for r in bad)
            else ""
        )
        + "."
    )
    skipped = [r for r in likelihood if r["status"].startswith(("skipped", "value-and-grad"))]
    if skipped:
        out.append(
            "Not measured (guards): "
            + "; ".join(f"{r['label']} {r['model']} T={r['T']} ({r['status']})" for r in skipped)
            + "."
        )
    ran = [r for r in nuts if r.get("wall_s") is not None]
    if ran:
        best = min(ran, key=lambda r: r["wall_s"])
        best_gradient = min(ran, key=lambda r: r["ms_per_gradient"])
        sentence = (
            f"NUTS ({best['model']}, d={best['d']}, T={best['T']}, {best['num_warmup']} + "
            f"{best['num_samples']}): fastest wall time including compile {best['label']} "
            f"{best['wall_s']:.2f} s; fastest per gradient {best_gradient['label']} "
            f"{best_gradient['ms_per_gradient']:.3f} ms"
        )
        auto = [r for r in ran if r["method"] == "auto"]
        if auto:
            sentence += (
                f'; "auto" {auto[0]["wall_s"]:.2f} s ({auto[0]["wall_vs_fastest"]:.2f}× the '
                f"fastest wall), {auto[0]['ms_per_gradient']:.3f} ms per gradient "
                f"({auto[0]['gradient_vs_fastest']:.2f}×)"
            )
        estimated = [r for r in ran if r.get("estimated_full_s") is not None]
        if estimated:
            best_full = min(estimated, key=lambda r: r["estimated_full_s"])
            sentence += (
                f"; estimated 200 + 200 run: fastest {best_full['label']} about "
                f"{best_full['estimated_full_s']:.0f} s"
            )
            if auto and auto[0].get("estimated_full_s") is not None:
                sentence += f', "auto" about {auto[0]["estimated_full_s"]:.0f} s'
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
    partial = ["**Partial results** (the run was interrupted or is still going).", ""]
    partial = [] if meta.get("finished") else partial
    lines = [
        f"# Structural time series benchmark ({meta['backend']}, {meta['device_kind']}, jax "
        f"{meta['jax_version']}, numpyro {meta['numpyro_version']}, {meta['cpu_count']} CPUs, "
        f"{meta['date_utc']})",
        "",
        *partial,
        f"Command: `{meta['command']}`. float64. Grid: {meta['grid']}. dynamax: {meta['dynamax']}.",
        "",
        "Compile = `jax.jit(f).lower(*args).compile()`; run = median of repeated calls "
        "(`_timing.measure`; calls predicted to take over "
        f"{meta['single_call_s']:g} s are timed once, without warm-up). `agrees`: "
        "log-likelihood (of `log_prob` and of `value_and_grad`) within rtol "
        f"{RTOL:g} of `Sequential()` (of the lax.scan filter where Sequential() was skipped); "
        "`grad rel diff`: largest gradient difference relative to the largest reference "
        "gradient entry. Skipped: a method whose value-and-grad call is predicted (linear in T) "
        f"to exceed {meta['max_call_s']:g} s, or whose gradient compile exceeded "
        f"{meta['compile_guard_s']:g} s at a smaller T. `×fastest`: value-and-grad time "
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
            f"{_cell(r.get('grad_rel_diff_vs_reference'), '.1e')} | {r['status']} |"
        )
    nuts_header = [
        "",
        "## NUTS",
        "",
        "`NUTS(dense_mass=True)`, one chain, one `mcmc.run` (warmup iterations collected too), "
        "timed once: `wall` includes compilation. `steps` = leapfrog steps (gradient "
        "evaluations) of warmup and sampling; `ms/grad` = wall / steps (compile included). "
        "Where the likelihood table has the same (model, T): `compile + overhead` = wall - "
        "steps x value-and-grad time, and `est. 200 + 200 s` = that + value-and-grad time x "
        "steps per iteration x 400. The simulated series has no missing values. `×fastest`: "
        "wall over the fastest wall.",
        "",
        "| model | d | T | method | warmup + samples | wall s | steps | steps / iteration "
        "| ms/grad | compile + overhead s | est. 200 + 200 s | divergences | ×fastest | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += nuts_header if nuts else []  # none with --no-nuts
    for r in nuts:
        lines.append(
            f"| {r['model']} | {r['d']} | {r['T']} | {r['label']} | "
            f"{r['num_warmup']} + {r['num_samples']} | {_cell(r.get('wall_s'), '.2f')} | "
            f"{_cell(r.get('num_steps'), 'd')} | {_cell(r.get('steps_per_iteration'), '.1f')} | "
            f"{_cell(r.get('ms_per_gradient'), '.3f')} | "
            f"{_cell(r.get('compile_and_overhead_s'), '.1f')} | "
            f"{_cell(r.get('estimated_full_s'), '.0f')} | {_cell(r.get('divergences'), 'd')} | "
            f"{_cell(r.get('wall_vs_fastest'), '.2f')} | {r['status']} |"
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
            f"{e0['steps_from']}) × {e0['iterations']} iterations (200 "
            "warmup + 200 samples).",
            "",
            "`value-and-grad from T`: the T it was measured at (scaled linearly to "
            f"T = {e0['T']} when smaller, as is then the compile time's T).",
            "",
            "| model | d | T | method | value-and-grad from T | grad compile s "
            "| value-and-grad ms | estimated NUTS s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in extrapolated:
            lines.append(
                f"| {r['model']} | {r['d']} | {r['T']} | {r['label']} | "
                f"{r['value_and_grad_from_T']} | "
                f"{r['grad_compile_s']:.2f} | {r['value_and_grad_s'] * 1e3:.3f} | "
                f"{r['estimated_wall_s']:.0f} |"
            )
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="co2 at T = 200, short NUTS")
    parser.add_argument(
        "--out",
        default=str(pathlib.Path(__file__).resolve().parent / "results"),
        help="output directory (default benchmarks/results)",
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    parser.add_argument("--T", nargs="+", type=int, default=None, help="likelihood grid")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    parser.add_argument("--nuts-methods", nargs="+", choices=METHODS, default=None)
    parser.add_argument("--nuts-T", type=int, default=None, dest="nuts_T")
    parser.add_argument("--nuts-model", choices=list(MODELS), default="co2")
    parser.add_argument("--suffix", default="", help="appended to the output file names")
    parser.add_argument("--num-warmup", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--no-nuts", action="store_true")
    parser.add_argument(
        "--compile-guard",
        type=float,
        default=60.0,
        help="skip larger T for a method once its gradient compile exceeded this (s)",
    )
    parser.add_argument(
        "--max-call-s",
        type=float,
        default=60.0,
        help="skip a method at T when its value-and-grad call is predicted (linear in T from "
        "a smaller T of the same model) to take longer than this (s)",
    )
    parser.add_argument(
        "--single-call-s",
        type=float,
        default=2.0,
        help="time calls predicted to take longer than this (s) once, without a warm-up call",
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    for key, value in config.items():
        if getattr(args, key) is None:
            setattr(args, key, list(value) if isinstance(value, list) else value)
    if args.nuts_methods == FULL["nuts_methods"]:
        same_as_auto = auto_strategy(build_model(args.nuts_model).state_dim, args.nuts_T)
        args.nuts_methods = [
            m
            for m in METHODS
            if m == "auto" or (m != "blocked" and STRATEGIES.get(m) != same_as_auto)
        ]
    if "sequential" not in args.methods:  # the reference of the agreement check
        args.methods.insert(0, "sequential")
    args.repeats = 5 if args.quick else 10
    args.max_total_s = 1.0 if args.quick else 5.0

    ok, dynamax_note = dynamax_status()
    unavailable = {} if ok else {"dynamax": dynamax_note}
    meta = metadata()
    meta.update(
        numpyro_version=numpyro.__version__,
        dynamax=f"dynamax {dynamax_note}" if ok else dynamax_note,
        quick=args.quick,
        grid=(
            f"models {args.models}, T in {args.T}; "
            + (
                "no NUTS (--no-nuts)"
                if args.no_nuts
                else f"NUTS {args.nuts_model} T={args.nuts_T} "
                f"({args.num_warmup} + {args.num_samples}) with {args.nuts_methods}"
            )
            + (" (--quick)" if args.quick else "")
        ),
        command=" ".join(["python", *sys.argv]),
        auto_resolves_to={
            f"{name}, T={T}": repr(auto_strategy(build_model(name).state_dim, T))
            for name in MODELS
            for T in args.T
        },
        rtol=RTOL,
        compile_guard_s=args.compile_guard,
        max_call_s=args.max_call_s,
        single_call_s=args.single_call_s,
    )
    print(json.dumps(meta), flush=True)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + (f"_{args.suffix}" if args.suffix else "")
    stem = out_dir / f"sts_{meta['backend']}{suffix}"
    result = {"likelihood": [], "nuts": [], "extrapolated": [], "findings": []}
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", flush=True)

    def save(finished: bool = False, **parts) -> None:
        """Write the JSON and Markdown files (after every group, so a crash keeps results)."""
        result.update(parts)
        annotate_nuts(result["nuts"], result["likelihood"])
        result["extrapolated"] = extrapolated_nuts(result["likelihood"], result["nuts"], 400)
        result["findings"] = findings(result["likelihood"], result["nuts"], result["extrapolated"])
        meta["total_s"] = time.perf_counter() - start
        meta["finished"] = finished
        stem.with_suffix(".json").write_text(
            json.dumps({"metadata": meta, **result}, indent=1, default=float)
        )
        write_markdown(stem.with_suffix(".md"), meta, result)

    # NUTS first: it is short and its rows survive if a large likelihood case runs out of memory.
    if not args.no_nuts:
        nuts_rows(args, unavailable, log, save)
    likelihood_rows(args, unavailable, log, save)
    save(finished=True)
    print("\n".join(result["findings"]))
    print(f"wrote {stem}.json and {stem}.md ({meta['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
