"""Checks of `Sharded()` on a forced multi-device CPU, run in a subprocess by test_sharded.py.

The device count of XLA:CPU is fixed when JAX starts its backend, so these checks cannot run
in the pytest process (one CPU device): `tests/test_sharded.py` starts this script with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` and reads the JSON it prints, one
entry per check: the largest relative difference between the time-sharded result and the
single-device `Associative()` result of the same function (0 for exact equality of integer
results such as Viterbi paths).

Usage: ``python tests/sharded_worker.py [--quick]`` (the JSON goes to stdout).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import blackjax  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from numpyro_parallel._collectives import collective_bytes  # noqa: E402
from numpyro_parallel.fixed_point import solve_recursion  # noqa: E402
from numpyro_parallel.mcmc import run_chain  # noqa: E402
from numpyro_parallel.scan import affine_recursion  # noqa: E402
from numpyro_parallel.ssm import (  # noqa: E402
    DiscreteHMM,
    LinearGaussianSSM,
    hmm_filter,
    hmm_log_likelihood,
    hmm_sample_states,
    hmm_smoother,
    hmm_viterbi,
    kalman_filter,
    kalman_sample_states,
    kalman_smoother,
)
from numpyro_parallel.ssm.hmm import hmm_sample_prior_states  # noqa: E402
from numpyro_parallel.strategy import Associative, Sequential, Sharded  # noqa: E402

DEVICE_COUNTS = (1, 2, 3, 8)
BATCH_DEVICES = (8,)
COMMUNICATION_FAMILIES = (
    "kalman", "kalman_smoother", "kalman_sample_states", "hmm", "hmm_filter", "hmm_smoother",
    "hmm_viterbi", "hmm_sample_states", "hmm_sample_prior_states", "affine_recursion",
    "affine_recursion_reverse", "solve_recursion", "run_chain",
)  # fmt: skip


def sharded(num_devices: int) -> Sharded:
    mesh = jax.make_mesh((num_devices,), ("time",), devices=jax.devices()[:num_devices])
    return Sharded(mesh)


def rel_diff(a, b) -> float:
    """Largest ``|a - b|`` over every leaf, relative to the largest finite ``|b|``; infinite if
    the NaN or infinite entries of ``a`` and ``b`` differ."""
    worst = 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape or not np.array_equal(np.isnan(x), np.isnan(y)):
            return float("inf")
        infinite = np.isinf(y)
        if not np.array_equal(np.isinf(x), infinite) or np.any(x[infinite] != y[infinite]):
            return float("inf")
        finite = np.isfinite(y)
        if not finite.any():
            continue
        scale = max(float(np.max(np.abs(y[finite]))), 1e-300)
        worst = max(worst, float(np.max(np.abs(x[finite] - y[finite]))) / scale)
    return worst


def lgssm(T: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    d, p = 3, 2
    y = rng.normal(size=(T, p))
    if T > 2:
        y[1, 0] = np.nan  # missing values travel with their chunk
    ssm = LinearGaussianSSM(
        jnp.asarray(rng.normal(size=d)),
        jnp.eye(d),
        jnp.asarray(0.8 * np.eye(d) + 0.1 * rng.normal(size=(d, d))),
        0.3 * jnp.eye(d),
        jnp.asarray(rng.normal(size=(p, d))),
        0.5 * jnp.eye(p),
        num_steps=T,
    )
    return ssm.params, jnp.asarray(y)


def kalman_outputs(params, y, strategy):
    key = jax.random.key(0)
    loglik = lambda prm: kalman_filter(prm, y, strategy=strategy).log_likelihood
    return {
        "kalman_filter": kalman_filter(params, y, strategy=strategy),
        "kalman_smoother": kalman_smoother(params, y, strategy=strategy),
        "kalman_sample_states": kalman_sample_states(key, params, y, (2,), strategy=strategy),
        "kalman_gradient": jax.grad(loglik)(params),
    }


def hmm_args(T: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    log_likelihoods = rng.normal(size=(T, 3))
    if T > 2:
        log_likelihoods[1, 0] = -np.inf  # a state ruled out at one step
    return (
        jnp.asarray(rng.normal(size=3)),
        jnp.asarray(rng.normal(size=(T, 3, 3))),
        jnp.asarray(log_likelihoods),
    )


def hmm_outputs(T: int, strategy, seed: int = 0):
    args = hmm_args(T, seed)
    loglik = lambda a: hmm_log_likelihood(*a, strategy=strategy)
    # Data of probability zero: every state ruled out at the last step.
    impossible = (*args[:2], args[2].at[-1].set(-jnp.inf))
    viterbi = hmm_viterbi(*impossible, strategy=strategy)
    return {
        "hmm_filter": hmm_filter(*args, strategy=strategy),
        "hmm_log_likelihood": loglik(args),
        "hmm_smoother": hmm_smoother(*args, strategy=strategy),
        "hmm_viterbi": hmm_viterbi(*args, strategy=strategy).path,
        "hmm_sample_states": hmm_sample_states(jax.random.key(1), *args, (3,), strategy=strategy),
        "hmm_sample_prior_states": hmm_sample_prior_states(
            jax.random.key(2), args[0], args[1], T, (3,), strategy=strategy
        ),
        "hmm_gradient": jax.grad(loglik)(args),
        "hmm_impossible": (
            hmm_filter(*impossible, strategy=strategy).log_likelihood_terms,
            viterbi.log_joint,
            viterbi.valid.astype(jnp.float64),
        ),
    }


def affine_outputs(T: int, strategy):
    rng = np.random.default_rng(5)
    a, b = jnp.asarray(rng.normal(size=(T, 2, 2)) * 0.5), jnp.asarray(rng.normal(size=(T, 2)))
    x0 = jnp.array([1.0, -1.0])
    return {
        "affine_recursion": affine_recursion(a, b, x0, strategy=strategy),
        "affine_recursion_reverse": affine_recursion(a, b, x0, strategy=strategy, reverse=True),
    }


def newton_outputs(T: int, strategy):
    # A nonlinear recursion solved by every fixed-point solver, a capped solve whose
    # sequential fallback starts inside a later device's chunk, and a MALA chain by Newton
    # (DEER): with Sharded() the whole solve runs in one shard_map, each device keeping its
    # chunk. The reference is the one-device parallel solve (Associative()), whose states
    # and report (status, iterations, sequential and sensitive steps) the sharded solve must
    # reproduce; Sequential() would report T iterations and differ by the solver tolerance.
    rng = np.random.default_rng(6)
    inputs = jnp.asarray(rng.normal(size=(T, 2)))
    weights = jnp.array([[0.5, -0.3], [0.2, 0.6]])

    def step(x, u):
        new = jnp.tanh(weights @ x + u)
        return new, None

    def slow(x, u):  # contracts slowly: capped Jacobi certifies a prefix of about the cap
        return 1.5 * jnp.tanh(weights @ x + u), None

    solve = partial(solve_recursion, initial_state=jnp.zeros(2), progress_bar=False)
    one = strategy if isinstance(strategy, Sharded) else Associative()
    results = {
        name: solve(step, inputs=inputs, solver=name, strategy=one, **options)
        for name, options in (
            ("newton", {}), ("jacobi", {}), ("quasi_newton", {}),
            ("online_picard", {"window": T}),
        )
    }  # fmt: skip
    results["fallback"] = solve(
        slow, inputs=inputs, solver="jacobi", strategy=one, max_iterations=max(1, T // 3)
    )
    target = lambda x: -0.5 * jnp.sum(x**2 / jnp.array([1.0, 4.0]))
    mala = blackjax.mala(target, 0.8)
    _, chain = run_chain(
        mala.step, mala.init(jnp.ones(2)), jax.random.key(4), T, strategy=one,
        init_fn=mala.init, progress_bar=False,
    )  # fmt: skip
    report = jnp.stack([
        jnp.stack([r.status, r.num_iterations, r.num_sequential_steps, r.num_sensitive_steps])
        for r in (*results.values(), chain)
    ]).astype(jnp.float64)  # fmt: skip
    return {
        "newton_states": results["newton"].states,
        "newton_solvers": jnp.stack([results[n].states for n in results if n != "newton"]),
        "newton_chain": (chain.states.position, chain.aux.is_accepted),
        "newton_report": report,
    }


def nuts_draws(model, *args, num_warmup=15, num_samples=15):
    mcmc = MCMC(NUTS(model), num_warmup=num_warmup, num_samples=num_samples, progress_bar=False)
    mcmc.run(jax.random.key(3), *args)
    return mcmc.get_samples()


def nuts_outputs(T: int, strategy):
    # NUTS on a LinearGaussianSSM whose Kalman recursions run with `strategy`.
    _, y = lgssm(T)
    d, p = 3, y.shape[-1]
    transition = jnp.asarray(0.8 * np.eye(d))
    observation = jnp.asarray(np.random.default_rng(1).normal(size=(p, d)))

    def model(y):
        q = numpyro.sample("q", dist.LogNormal(-1.0, 0.5))
        r = numpyro.sample("r", dist.LogNormal(-1.0, 0.5))
        ssm = LinearGaussianSSM(
            jnp.zeros(d), jnp.eye(d), transition, q * jnp.eye(d), observation, r * jnp.eye(p),
            num_steps=T, strategy=strategy,
        )  # fmt: skip
        numpyro.sample("y", ssm, obs=y)

    return {"nuts_lgssm": nuts_draws(model, y), "nuts_discrete_hmm": hmm_nuts_draws(T, strategy)}


def hmm_nuts_draws(T: int, strategy):
    # NUTS on a two-regime Gaussian DiscreteHMM whose forward pass runs with `strategy`.
    rng = np.random.default_rng(7)
    y = jnp.asarray(rng.normal(size=T) + 2.0 * (np.arange(T) >= T // 2))

    def model(y):
        low = numpyro.sample("low", dist.Normal(0.0, 1.0))
        gap = numpyro.sample("gap", dist.LogNormal(0.5, 0.5))
        stay = numpyro.sample("stay", dist.Beta(8.0, 2.0))
        transition = jnp.log(jnp.array([[stay, 1.0 - stay], [1.0 - stay, stay]]))
        emissions = dist.Normal(jnp.stack([low, low + gap]), 1.0)
        hmm = DiscreteHMM(jnp.zeros(2), transition, emissions, strategy=strategy)
        numpyro.sample("y", hmm, obs=y)

    return nuts_draws(model, y)


def batched_outputs(num_series: int, sharded_batch: Sharded | None):
    # Many short series with shared hyper-priors (the recipe of docs/scale-out.md): with
    # `sharded_batch` the data's series axis is placed across the mesh's devices and XLA
    # partitions the vmapped likelihood; the draws must equal the one-device run.
    rng = np.random.default_rng(7)
    T = 12
    y = jnp.asarray(np.cumsum(rng.normal(size=(num_series, T)), axis=1))

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(-1.0, 1.0))
        tau = numpyro.sample("tau", dist.HalfNormal(0.5))
        with numpyro.plate("series", y.shape[0]):
            log_q = numpyro.sample("log_q", dist.Normal(mu, tau))

        def log_lik(lq, series):
            return LinearGaussianSSM(
                jnp.zeros(1), jnp.eye(1), jnp.eye(1), jnp.exp(lq) * jnp.eye(1), jnp.eye(1),
                0.25 * jnp.eye(1), num_steps=T, strategy=Sequential(),
            ).log_prob(series[:, None])  # fmt: skip

        numpyro.factor("y", jnp.sum(jax.vmap(log_lik)(log_q, y)))

    if sharded_batch is not None:
        mesh = sharded_batch.resolved_mesh()
        y = jax.device_put(y, NamedSharding(mesh, PartitionSpec(sharded_batch.axis_name)))
    return {"nuts_batched_series": nuts_draws(model, y)}


def _kalman_model(num_steps: int, strategy, F=None, Q=None, H=None) -> LinearGaussianSSM:
    F = 0.8 * jnp.eye(2) if F is None else F
    return LinearGaussianSSM(
        jnp.zeros(2), jnp.eye(2), F, jnp.eye(2) if Q is None else Q,
        jnp.ones((1, 2)) if H is None else H, jnp.eye(1), num_steps=num_steps, strategy=strategy,
    )  # fmt: skip


def _exchange_programs(num_steps: int, strategy):
    """``{name: (function, arguments)}``: every sharded recursion as users call it —
    log-likelihoods with their gradients (time-invariant parameters, broadcast inside, as
    `LinearGaussianSSM`, `DiscreteHMM` and NUTS use them), filters, smoothers, Viterbi,
    posterior and prior path samples, affine recursions forwards and backwards, a Newton
    (DEER) solve of a nonlinear recursion and a parallel MALA chain."""
    rng = np.random.default_rng(8)
    y = jnp.asarray(rng.normal(size=(num_steps, 1)))
    theta = (jnp.asarray(0.8 * np.eye(2)), jnp.eye(2), jnp.ones((1, 2)))
    params = _kalman_model(num_steps, strategy).params
    hmm = (jnp.zeros(3), jnp.eye(3), jnp.asarray(rng.normal(size=(num_steps, 3))))
    affine = (jnp.full((num_steps, 2, 2), 0.4), jnp.ones((num_steps, 2)))
    key = jax.random.key(0)
    recursion = lambda x, u: (jnp.tanh(affine[0][0] @ x + u), None)
    mala = blackjax.mala(lambda x: -0.5 * jnp.sum(x**2), 0.8)
    chain = (mala, mala.init(jnp.ones(2)))  # the algorithm: its init rebuilds the state
    s = strategy
    return {
        "kalman": (
            jax.value_and_grad(lambda t: _kalman_model(num_steps, s, *t).log_prob(y)), theta
        ),
        "kalman_smoother": (lambda y: _kalman_model(num_steps, s).smooth(y).mean, y),
        "kalman_sample_states": (
            lambda p: kalman_sample_states(key, p, y, (2,), strategy=s), params
        ),
        "hmm": (jax.value_and_grad(lambda a: hmm_log_likelihood(*a, strategy=s)), hmm),
        "hmm_filter": (lambda a: hmm_filter(*a, strategy=s), hmm),
        "hmm_smoother": (lambda a: hmm_smoother(*a, strategy=s), hmm),
        "hmm_viterbi": (lambda a: hmm_viterbi(*a, strategy=s).path, hmm),
        "hmm_sample_states": (lambda a: hmm_sample_states(key, *a, (3,), strategy=s), hmm),
        "hmm_sample_prior_states": (
            lambda a: hmm_sample_prior_states(key, a[0], a[1], num_steps, (3,), strategy=s), hmm
        ),
        "affine_recursion": (lambda a: affine_recursion(*a, jnp.ones(2), strategy=s), affine),
        "affine_recursion_reverse": (
            lambda a: affine_recursion(*a, jnp.ones(2), strategy=s, reverse=True), affine
        ),
        "solve_recursion": (
            lambda u: solve_recursion(recursion, jnp.zeros(2), u, strategy=s).states, affine[1]
        ),
        "run_chain": (lambda k: run_chain(*chain, k, num_steps, strategy=s)[0].position, key),
    }  # fmt: skip


def communication(family: str, num_steps: int, strategy) -> int:
    """Collective bytes of the compiled program of ``family`` (`_exchange_programs`)."""
    function, args = _exchange_programs(num_steps, strategy)[family]
    return collective_bytes(jax.jit(function).lower(args).compile())


def inner_outputs(T: int, strategy):
    # The Kalman family with other chunk strategies than "auto" gives here (d = 3: Blocked(),
    # the device's carry in the blocked fix-up): `Associative()` (the accelerator path: scan,
    # one all-gather, fix-up) and `Sequential()` (what "auto" gives on CPU devices for d >= 4:
    # fold, then the sequential filter from the prefix of the totals).
    params, y = lgssm(T)
    outputs = {}
    for name, inner in (("associative", Associative()), ("sequential", Sequential())):
        chunks = (
            dataclasses.replace(strategy, inner=inner)
            if isinstance(strategy, Sharded)
            else strategy
        )
        outputs |= {f"inner_{name}_{k}": v for k, v in kalman_outputs(params, y, chunks).items()}
    return outputs


FAMILIES = {
    "kalman": lambda T, s: kalman_outputs(*lgssm(T), s),
    "inner": inner_outputs,
    "hmm": hmm_outputs,
    "affine": affine_outputs,
    "newton": newton_outputs,
    "nuts": nuts_outputs,  # not jitted: MCMC.run compiles its own programs
}
# (T, devices, families): every family with T not divisible by the device count (13 on 8 and
# on 3) and with T smaller than it (5 on 8); the families that compile fast on every device
# count and on T = 64; the Kalman family (10 s of compilation per case) on T = 1 and on chunks
# long enough for several blocks (T = 203) too.
MATRIX = [
    (13, 8, ("kalman", "hmm", "affine", "newton", "inner")),
    (24, 8, ("nuts",)),
    (13, 3, ("kalman", "hmm", "affine", "newton")),
    (5, 8, ("kalman", "hmm", "affine", "newton")),
    (13, 2, ("hmm", "affine")),
    (13, 1, ("hmm", "affine")),
    (1, 8, ("kalman", "hmm")),
    (64, 8, ("hmm", "affine")),
    # Chunks of 25-26 steps: Blocked() chunk scans of three blocks and a remainder, the
    # device's carry entering the blocked fix-up pass (the CPU path of "auto").
    (203, 8, ("kalman", "affine")),
]


def run_checks(matrix) -> dict[str, float]:
    results: dict[str, float] = {}
    for T, n, families in matrix:
        for family in families:
            start = time.perf_counter()
            run = FAMILIES[family]
            if family != "nuts":
                run = jax.jit(run, static_argnums=(0, 1))
            reference = run(T, Sequential())
            ours = run(T, sharded(n))
            for name, value in ours.items():
                results[f"{name}/T={T}/devices={n}"] = rel_diff(value, reference[name])
            seconds = time.perf_counter() - start
            print(f"{family} T={T} devices={n}: {seconds:.1f} s", file=sys.stderr, flush=True)
    for family in COMMUNICATION_FAMILIES:  # the exchange must not grow with T
        small, large = (communication(family, T, sharded(8)) for T in (64, 640))
        results[f"{family}_collective_bytes_growth/T=64..640/devices=8"] = (
            abs(large - small) / small
        )
    for n in BATCH_DEVICES:
        reference = batched_outputs(32, None)
        ours = batched_outputs(32, sharded(n))
        results[f"nuts_batched_series/T=12/devices={n}"] = rel_diff(ours, reference)
    return results


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    if len(jax.devices()) < max(DEVICE_COUNTS):
        raise SystemExit(
            f"needs {max(DEVICE_COUNTS)} devices (XLA_FLAGS="
            f"--xla_force_host_platform_device_count={max(DEVICE_COUNTS)}); "
            f"got {len(jax.devices())}"
        )
    print(json.dumps(run_checks(MATRIX[:1] if quick else MATRIX)))


if __name__ == "__main__":
    main()
