"""`Sharded()`: the time axis split across devices equals the single-device result.

XLA:CPU's device count is fixed when JAX starts, so the multi-device checks run in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
(`tests/sharded_worker.py`), on 1, 2, 3 and 8 devices, with T = 1, T smaller than the device
count, a prime T and T = 64, for every family that takes a strategy (rtol 1e-10, float64).
The argument checks of `Sharded` run here, and so do the one-device runs of every family's
`shard_map` program (HMM, Kalman sampler, fixed-point solves, parallel MALA) in float64 and
float32, against the one-device strategies, and the two-process `jax.distributed` check.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import warnings

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from numpyro_parallel import Blocked, Sequential, Sharded
from numpyro_parallel.fixed_point import NON_FINITE, default_tolerances, solve_recursion
from numpyro_parallel.infer import ParallelMALA
from numpyro_parallel.mcmc import run_chain
from numpyro_parallel.scan import associative_scan
from numpyro_parallel.ssm import (
    LinearGaussianSSM,
    hmm_filter,
    hmm_log_likelihood,
    hmm_sample_states,
    hmm_smoother,
    hmm_viterbi,
    kalman_sample_states,
)
from numpyro_parallel.ssm.hmm import hmm_sample_prior_states
from numpyro_parallel.strategy import as_strategy

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "sharded_worker.py"
NAMES = (
    "kalman_filter", "kalman_smoother", "kalman_sample_states", "kalman_gradient",
    "hmm_filter", "hmm_log_likelihood", "hmm_smoother", "hmm_viterbi", "hmm_sample_states",
    "hmm_sample_prior_states", "hmm_gradient", "hmm_impossible", "affine_recursion",
    "affine_recursion_reverse", "newton_states", "newton_solvers", "newton_chain",
    "newton_report", "nuts_lgssm", "nuts_discrete_hmm",
    "inner_associative_kalman_filter", "inner_associative_kalman_smoother",
    "inner_associative_kalman_sample_states", "inner_associative_kalman_gradient",
    "inner_sequential_kalman_filter", "inner_sequential_kalman_smoother",
    "inner_sequential_kalman_sample_states", "inner_sequential_kalman_gradient",
)  # fmt: skip


def run_worker(*args: str, devices: int = 8) -> str:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, str(WORKER), *args],
        env=env, capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    # XLA warns when its partitioner must replicate an array to reshard it (a one-row edge
    # copy in the time padding did, before `pad_time` became one gather).
    assert "Involuntary full rematerialization" not in out.stderr, out.stderr[-4000:]
    return out.stdout


@pytest.mark.slow
def test_sharded_equals_single_device():
    # One worker run (its compilations take about two minutes) checks everything: every
    # family's outputs and gradients, NUTS, a sharded batch of series and the volume of every
    # sharded recursion's exchange. A single test, so that pytest-xdist runs it once.
    from tests.sharded_worker import BATCH_DEVICES, COMMUNICATION_FAMILIES, MATRIX

    results = json.loads(run_worker().strip().splitlines()[-1])
    expected = []
    for name in NAMES:
        cases = [(T, n) for T, n, families in MATRIX if name.split("_")[0] in families]
        assert cases, name
        expected += [f"{name}/T={T}/devices={n}" for T, n in cases]
    # NUTS over 32 local-level series with shared hyper-priors, the data's series axis on 8
    # devices: the same draws (same key) as on one device.
    expected += [f"nuts_batched_series/T=12/devices={n}" for n in BATCH_DEVICES]
    for key in expected:
        assert key in results, key
        assert results[key] <= 1e-10, (key, results[key])
    # The compiled programs' collectives (read from the HLO) move the same volume at T = 64
    # and T = 640 on 8 devices, for every recursion and the log-likelihoods' gradients: P
    # elements and a few single steps per device. Any exchange growing with T would make the
    # relative growth about 9; XLA's partitioner may add or drop a one-byte predicate
    # reduction between the two programs (seen: +1 byte of ~1.5 KB).
    for family in COMMUNICATION_FAMILIES:
        key = f"{family}_collective_bytes_growth/T=64..640/devices=8"
        assert results[key] <= 0.01, (key, results[key])


def test_worker_refuses_too_few_devices():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace("device_count", "x")
    out = subprocess.run(
        [sys.executable, str(WORKER), "--quick"], env=env, capture_output=True, text=True,
        timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode != 0 and "needs 8 devices" in out.stderr


def test_one_device_sharded_scan_equals_sequential():
    # In this process there is one CPU device: Sharded() is the inner scan plus padding
    # logic, which must not change any prefix.
    rng = jax.random.key(0)
    a = jax.random.normal(rng, (7, 2, 2)) * 0.5
    b = jax.random.normal(jax.random.key(1), (7, 2))
    combine = lambda e1, e2: (e2[0] @ e1[0], e2[0] @ e1[1] + e2[1])
    for reverse in (False, True):
        ours = associative_scan(combine, (a, b), strategy=Sharded(), reverse=reverse)
        ref = associative_scan(combine, (a, b), strategy=Sequential(), reverse=reverse)
        for x, y in zip(ours, ref, strict=True):
            assert jnp.allclose(x, y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_one_device_sharded_hmm_equals_sequential(dtype):
    # The shard_map programs of every HMM recursion on this process's one device: the same
    # results as Sequential() (the same Gumbel noise, so the same paths), float32 included.
    rng = np.random.default_rng(3)
    log_likelihoods = rng.normal(size=(11, 3))
    log_likelihoods[4, 1] = -np.inf
    args = tuple(
        jnp.asarray(x, dtype)
        for x in (rng.normal(size=3), rng.normal(size=(3, 3)), log_likelihoods)
    )
    key = jax.random.key(4)
    tol = 1e-12 if dtype == jnp.float64 else 1e-5

    def outputs(strategy):
        return (
            hmm_filter(*args, strategy=strategy),
            hmm_smoother(*args, strategy=strategy),
            hmm_log_likelihood(*args, strategy=strategy),
            hmm_viterbi(*args, strategy=strategy),
            hmm_sample_states(key, *args, (4,), strategy=strategy),
            hmm_sample_prior_states(key, args[0], args[1], 11, (4,), strategy=strategy),
        )

    ours, ref = (
        jax.tree_util.tree_leaves(outputs(Sharded())),
        jax.tree_util.tree_leaves(outputs(Sequential())),
    )
    for x, y in zip(ours, ref, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def test_one_device_sharded_hmm_reports_impossible_data_and_nan():
    # Data of probability zero: -inf log-likelihood, invalid Viterbi path, a warning outside
    # jit, as with the other strategies; a NaN input under jit gives NaN, not a number.
    args = (jnp.zeros(2), jnp.zeros((2, 2)), jnp.zeros((6, 2)).at[3].set(-jnp.inf))
    assert hmm_log_likelihood(*args, strategy=Sharded()) == -jnp.inf
    with pytest.warns(RuntimeWarning, match="no state path has positive probability"):
        result = hmm_viterbi(*args, strategy=Sharded())
    assert not result.valid and result.log_joint == -jnp.inf
    with pytest.warns(RuntimeWarning, match="no state path has positive probability"):
        hmm_sample_states(jax.random.key(0), *args, (2,), strategy=Sharded())
    nan_args = (jnp.zeros(2), jnp.zeros((2, 2)), jnp.zeros((6, 2)))
    smoothed = jax.jit(
        lambda ll: hmm_smoother(nan_args[0], nan_args[1], ll, strategy=Sharded()).smoothed_probs
    )(nan_args[2].at[2, 0].set(jnp.nan))
    assert jnp.all(jnp.isnan(smoothed))


def test_one_device_sharded_kalman_sampler_equals_sequential():
    # The filter, smoother elements and backward sampling in one shard_map: the same draws
    # as Sequential() for the same key, with a missing observation.
    rng = np.random.default_rng(5)
    ssm = LinearGaussianSSM(
        jnp.zeros(2), jnp.eye(2), 0.9 * jnp.eye(2), 0.2 * jnp.eye(2),
        jnp.asarray(rng.normal(size=(1, 2))), jnp.eye(1), num_steps=9,
    )  # fmt: skip
    y = jnp.asarray(rng.normal(size=(9, 1))).at[3].set(jnp.nan)
    key = jax.random.key(6)
    ours = kalman_sample_states(key, ssm.params, y, (3,), strategy=Sharded())
    ref = kalman_sample_states(key, ssm.params, y, (3,), strategy=Sequential())
    assert ours.shape == (3, 9, 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


def _rnn(dtype):
    weights = jnp.array([[0.5, -0.3], [0.2, 0.6]], dtype)
    inputs = jnp.asarray(np.random.default_rng(7).normal(size=(17, 2)), dtype)
    return (lambda x, u: (1.5 * jnp.tanh(weights @ x + u), jnp.sum(x))), inputs


REPORT = ("status", "num_iterations", "num_sequential_steps", "num_sensitive_steps")


@pytest.mark.parametrize("dtype,max_iterations", [(jnp.float64, 4), (jnp.float32, None)])
@pytest.mark.parametrize("solver", ["newton", "quasi_newton", "jacobi", "online_picard"])
def test_one_device_sharded_fixed_point_equals_one_device_solve(dtype, solver, max_iterations):
    # The whole solve in one shard_map (loop, solver update, certification and its
    # sequential fallback): the states, aux and report of the one-device loop, with the cap
    # (4 iterations: the fallback recomputes most of the chain) in float64 and without it in
    # float32 (uncapped float64 solves: test_fixed_point.py and the 8-device worker).
    fn, inputs = _rnn(dtype)
    options = {"solver": solver, "max_iterations": max_iterations, "progress_bar": False}
    if solver == "online_picard":
        options["window"] = 17  # the whole series (its default window slides)
    x0 = jnp.zeros(2, dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = solve_recursion(fn, x0, inputs, strategy=Sharded(), **options)
        ref = solve_recursion(fn, x0, inputs, strategy=Blocked(), **options)
    # Outside jit each solve warns exactly when it did not converge (the capped fallbacks).
    unconverged = [w for w in caught if "did not converge" in str(w.message)]
    assert len(unconverged) == 2 * (not bool(ref.converged)), [str(w.message) for w in caught]
    tol = 1e-12 if dtype == jnp.float64 else 1e-5
    assert ours.states.dtype == dtype
    np.testing.assert_allclose(ours.states, ref.states, rtol=tol, atol=tol)
    np.testing.assert_allclose(ours.aux, ref.aux, rtol=tol, atol=tol)
    np.testing.assert_allclose(ours.residual, ref.residual, atol=tol)
    for field in REPORT:
        assert int(getattr(ours, field)) == int(getattr(ref, field)), field
    assert bool(ours.fallback) == bool(ref.fallback)
    if max_iterations is not None and solver == "jacobi":  # 4 of 17 steps: a fallback
        assert bool(ours.fallback) and int(ours.num_sequential_steps) > 8
    # The independent reference: the recursion evaluated one step at a time in Python; the
    # solve certifies residuals of atol + rtol |x| per step (the solver's tolerance).
    x, naive = np.zeros(2), []
    for u in np.asarray(inputs, np.float64):
        x = 1.5 * np.tanh(np.array([[0.5, -0.3], [0.2, 0.6]]) @ x + u)
        naive.append(x)
    atol, rtol = default_tolerances(dtype)
    np.testing.assert_allclose(ours.states, np.stack(naive), rtol=10 * rtol, atol=10 * atol)


def test_one_device_sharded_fixed_point_reports_non_finite_and_runs_under_jit():
    fn, inputs = _rnn(jnp.float64)
    bad = inputs.at[9, 0].set(jnp.nan)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        ours = solve_recursion(fn, jnp.zeros(2), bad, strategy=Sharded(), progress_bar=False)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        ref = solve_recursion(fn, jnp.zeros(2), bad, strategy=Blocked(), progress_bar=False)
    assert int(ours.status) == NON_FINITE and not bool(ours.converged)
    assert int(ours.num_sequential_steps) == int(ref.num_sequential_steps)
    np.testing.assert_array_equal(np.isnan(ours.states), np.isnan(ref.states))
    assert np.all(np.isfinite(ours.states[:9])) and np.all(np.isnan(ours.states[10:]))
    solve = lambda u: solve_recursion(fn, jnp.zeros(2), u, strategy=Sharded()).states
    np.testing.assert_allclose(jax.jit(solve)(inputs), solve(inputs), rtol=1e-13, atol=1e-13)


@pytest.mark.slow  # compiles a vmapped shard_map and the sliding-window loop (20 s)
def test_one_device_sharded_fixed_point_vmap_and_sliding_window():
    fn, inputs = _rnn(jnp.float64)
    solve = lambda u: solve_recursion(fn, jnp.zeros(2), u, strategy=Sharded()).states
    batched = jax.vmap(solve)(jnp.stack([inputs, -inputs]))
    np.testing.assert_allclose(batched[1], solve(-inputs), rtol=1e-12, atol=1e-12)
    # A window shorter than T slides across devices (the one-device loop around sharded
    # linear recursions): the same solution.
    slid = solve_recursion(fn, jnp.zeros(2), inputs, strategy=Sharded(), window=5)
    np.testing.assert_allclose(slid.states, solve(inputs), rtol=1e-9, atol=1e-9)
    assert bool(slid.converged)


@pytest.mark.slow  # 12 s of compilation; the fast suite has the NumPyro kernel's test below
def test_one_device_sharded_mala_chain_equals_sequential_chain():
    # run_chain: Newton (DEER) over a sharded chain reproduces the sequential MALA chain.
    mala = blackjax.mala(lambda x: -0.5 * jnp.sum(x**2 / jnp.array([1.0, 4.0])), 0.8)
    state, key = mala.init(jnp.ones(2)), jax.random.key(4)
    ours, info = run_chain(mala, state, key, 19, strategy=Sharded(), progress_bar=False)
    ref, ref_info = run_chain(mala, state, key, 19, strategy=Sequential())
    assert bool(info.converged)
    np.testing.assert_allclose(ours.position, ref.position, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(info.aux.is_accepted, ref_info.aux.is_accepted)


def test_one_device_sharded_parallel_mala_kernel_gives_the_same_draws():
    # The NumPyro kernel passes its strategy to every block's solve: Sharded() gives the
    # draws of Blocked() for the same key (warmup adaptation included).
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 3.0))
        numpyro.sample("y", dist.Normal(mu, 2.0), obs=y)

    y = jnp.asarray(np.random.default_rng(2).normal(1.0, 2.0, size=15))
    draws = []
    for strategy in (Sharded(), Blocked()):
        kernel = ParallelMALA(model, num_steps_per_block=8, strategy=strategy)
        mcmc = MCMC(kernel, num_warmup=16, num_samples=16, progress_bar=False)
        mcmc.run(jax.random.key(5), y)
        draws.append(mcmc.get_samples()["mu"])
    np.testing.assert_allclose(draws[0], draws[1], rtol=1e-10, atol=1e-12)


def test_one_device_sharded_solve_shows_its_progress(monkeypatch, capsys):
    # The progress callback runs inside the shard_map, once per iteration (first device).
    fn, inputs = _rnn(jnp.float64)
    monkeypatch.delenv("CI", raising=False)
    result = solve_recursion(fn, jnp.zeros(2), inputs, strategy=Sharded())
    shown = capsys.readouterr().err
    assert f"iteration {int(result.num_iterations)}" in shown and "100%" in shown


def test_sharded_arguments_are_checked():
    with pytest.raises(TypeError, match=r"Sharded\.mesh"):
        Sharded(mesh="cpu")
    with pytest.raises(TypeError, match=r"Sharded\.axis_name"):
        Sharded(axis_name=3)
    mesh = jax.make_mesh((1,), ("series",))
    with pytest.raises(ValueError, match=r"not an axis of `Sharded\.mesh`"):
        Sharded(mesh)
    with pytest.raises(ValueError, match=r"Sharded\.inner"):
        Sharded(inner=Sharded())
    with pytest.raises(ValueError, match="`strategy` must be one of"):
        Sharded(inner="parallel")
    assert Sharded(inner="blocked").inner == Blocked()
    assert as_strategy(Sharded()) == Sharded()
    assert hash(Sharded(mesh, axis_name="series")) == hash(Sharded(mesh, axis_name="series"))
    assert Sharded().num_shards == len(jax.devices())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_process_distributed_equals_single_process():
    # Two local processes with two CPU devices each join JAX's multi-controller runtime
    # (`jax.distributed.initialize`, Gloo collectives): the time axis is sharded over all
    # four devices, across the processes, and the results equal a one-process run: Kalman
    # and HMM log-likelihoods, the Kalman gradient and a Newton fixed-point solve.
    from numpyro_parallel.ssm import hmm_log_likelihood, kalman_filter
    from tests.distributed_worker import newton_problem
    from tests.sharded_worker import hmm_args, lgssm

    port, env = _free_port(), dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=2".strip()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # Two processes at once must not share the tests' compilation cache (conftest.py): one
    # could read an entry the other is writing.
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    command = [sys.executable, str(ROOT / "tests" / "distributed_worker.py")]
    procs = [
        subprocess.Popen(
            [*command, str(i), "2", str(port)],
            env=env,
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr[-4000:]
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            proc.kill()
    params, y = lgssm(13)
    loglik = lambda prm: kalman_filter(prm, y, strategy=Sequential()).log_likelihood
    value, grad = jax.value_and_grad(loglik)(params)
    hmm = hmm_log_likelihood(*hmm_args(13), strategy=Sequential())
    newton = solve_recursion(*newton_problem(), strategy=Blocked(), progress_bar=False).states
    for out in outputs:
        assert out["num_devices"] == 4 and out["num_local_devices"] == 2
        np.testing.assert_allclose(out["kalman_log_likelihood"], value, rtol=1e-10)
        for ours, ref in zip(out["kalman_gradient"], grad, strict=True):
            np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out["hmm_log_likelihood"], hmm, rtol=1e-10)
        np.testing.assert_allclose(out["newton_states"], newton, rtol=1e-10, atol=1e-12)
