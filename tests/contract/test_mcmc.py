"""Bad-input matrix: parallel-in-time MCMC, the fixed-point solver, ParallelMALA/ParallelHMC."""
# ruff: noqa: E501

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel import Associative, fixed_point, mcmc
from numpyro_parallel.infer import ParallelHMC, ParallelMALA
from tests.contract.matrix import Case, case_params, raises, returns, run_case

KEY = jax.random.key(0)
FP = "numpyro_parallel.fixed_point."
MC = "numpyro_parallel.mcmc."
INF = "numpyro_parallel.infer."


def gaussian(x):
    return -0.5 * x @ x


def nan_density(x):
    return jnp.nan * jnp.sum(x)


MALA = blackjax.mala(gaussian, 0.3)
STATE = MALA.init(jnp.ones(2))
NAN_MALA = blackjax.mala(nan_density, 0.3)
NAN_STATE = NAN_MALA.init(jnp.ones(2))


def logistic_step(key, x):
    """The chaotic logistic map as a deterministic 'MCMC step' (its Newton iterates blow up)."""
    del key
    return 3.99 * x * (1.0 - x), None


def tanh_fn(x, u):
    return jnp.tanh(0.5 * x + u), None


X0 = jnp.array([0.3, -0.2])
INPUTS = jnp.linspace(-1.0, 1.0, 10)[:, None] * jnp.ones((1, 2))


def exact_buffer():
    """The exact (T + 1, d) solution of ``tanh_fn`` including x_0."""
    states, _ = fixed_point.sequential_recursion(tanh_fn, X0, INPUTS)
    return jnp.concatenate([X0[None], states])


def chain(**options):
    return lambda: mcmc.run_chain(MALA, STATE, KEY, 8, **options)


def solve(**options):
    return lambda: fixed_point.solve_recursion(tanh_fn, X0, INPUTS, **options)


def logistic_matches_sequential(result):
    states, info = result
    expected, _ = mcmc.run_chain(logistic_step, jnp.array([0.3]), KEY, 64, strategy="sequential")
    finite = bool(np.all(np.isfinite(states)))
    return finite and not bool(info.converged) and np.array_equal(states, expected)


def not_ok_nan(result):
    states, info = result
    return not bool(info.converged) and bool(np.all(np.isnan(states.logdensity)))


def jitted_diverging(kernel_cls):
    """Init and 6 transitions under `jit` at a NaN potential: every transition divergent."""

    def run(z):
        potential = lambda p: jnp.nan * jnp.sum(p["x"] ** 2)
        kernel = kernel_cls(potential_fn=potential, num_steps_per_block=3, solver="jacobi")
        state = kernel.init(KEY, 3, {"x": z})
        flags = []
        for _ in range(6):  # 3 warmup steps, then two blocks of 3
            state = kernel.sample(state, (), {})
            flags.append(state.diverging)
        return jnp.stack(flags)

    return lambda: jax.jit(run)(jnp.ones(2))


def kernel_init(kernel_cls, z, **options):
    pot = lambda p: jnp.where(p["x"][0] > 0, jnp.nan, 0.5 * jnp.sum(p["x"] ** 2))
    return lambda: kernel_cls(potential_fn=pot, **options).init(KEY, 5, {"x": z})


def normal_mean_model(y=jnp.array([1.0, 2.0])):
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def nowhere_finite_model():
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.factor("f", jnp.nan * mu)


def no_latent_model(y=jnp.array([1.0, 2.0])):
    import numpyro
    import numpyro.distributions as dist

    numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


def model_init(kernel_cls, init_params, model=normal_mean_model):
    return lambda: kernel_cls(model, num_steps_per_block=4).init(KEY, 2, init_params)


def stuck_chain(strategy):
    """MALA whose every proposal is rejected (step size 1e6): 60 steps at the start."""
    mala = blackjax.mala(gaussian, 1e6)
    return lambda: mcmc.run_chain(mala, mala.init(jnp.ones(2)), KEY, 60, strategy=strategy)


def is_stuck(result):
    states, info = result
    return bool(info.stuck) and bool(info.converged) and np.all(states.position == 1.0)


CASES = [
    # ---- fixed_point ------------------------------------------------------------------------
    Case("unknown-solver", FP + "solve_recursion", solve(solver="picard"),
         raises(ValueError, "`solver`")),
    Case("negative-atol", FP + "solve_recursion", solve(atol=-1e-3),
         raises(ValueError, "`atol`")),
    Case("nan-rtol", FP + "solve_recursion", solve(rtol=float("nan")),
         raises(ValueError, "`rtol`")),
    Case("max-iterations-0", FP + "solve_recursion", solve(max_iterations=0),
         raises(ValueError, "`max_iterations`")),
    Case("max-iterations-float", FP + "solve_recursion", solve(max_iterations=2.0),
         raises(TypeError, "`max_iterations`")),
    Case("window-0", FP + "solve_recursion", solve(window=0), raises(ValueError, "`window`")),
    Case("max-iterations-0", FP + "iterate_map",
         lambda: fixed_point.iterate_map(jnp.tanh, X0, atol=1e-8, rtol=0.0, max_iterations=0),
         raises(ValueError, "`max_iterations`")),
    Case("nan-start", FP + "iterate_map",
         lambda: fixed_point.iterate_map(jnp.tanh, X0 * jnp.nan, atol=1e-8, rtol=0.0,
                                         max_iterations=5),
         returns(lambda r: int(r.status) == fixed_point.NON_FINITE and not bool(r.converged))),
    Case("not-callable-fn", FP + "solve_recursion",
         lambda: fixed_point.solve_recursion(3, X0, INPUTS), raises(TypeError, "`fn` must be callable")),
    Case("fn-wrong-shape", FP + "solve_recursion",
         lambda: fixed_point.solve_recursion(lambda x, u: (jnp.ones(3), None), X0, INPUTS),
         raises(ValueError, r"`fn` must return a next state of the shape of `initial_state`, \(2,\); it returns \(3,\)")),
    Case("fn-not-a-pair", FP + "sequential_recursion",
         lambda: fixed_point.sequential_recursion(lambda x, u: x, X0, INPUTS),
         raises(TypeError, r"`fn` must return a pair")),
    Case("atol-none", FP + "iterate_map",
         lambda: fixed_point.iterate_map(jnp.tanh, X0, atol=None, rtol=0.0, max_iterations=5),
         raises(TypeError, "`atol`")),
    Case("negative-atol", FP + "iterate_map",
         lambda: fixed_point.iterate_map(jnp.tanh, X0, atol=-1.0, rtol=0.0, max_iterations=5),
         raises(ValueError, "`atol`")),
    Case("not-callable-map", FP + "iterate_map",
         lambda: fixed_point.iterate_map(3, X0, atol=1e-8, rtol=0.0, max_iterations=5),
         raises(TypeError, "`map_fn`")),
    Case("cap-reached-warns", FP + "iterate_map",
         lambda: fixed_point.iterate_map(lambda z: 0.99 * z + 1.0, X0, atol=1e-12, rtol=0.0,
                                         max_iterations=3),
         returns(lambda r: int(r.status) == fixed_point.MAX_ITERATIONS, warns=RuntimeWarning)),
    Case("progress-bar-str", FP + "solve_recursion", solve(progress_bar="yes"),
         raises(TypeError, "`progress_bar`")),
    Case("damping-0", FP + "solve_recursion", lambda: solve(solver=fixed_point.Newton(damping=0.0))(),
         raises(ValueError, "`Newton.damping`")),
    Case("strategy-as-solver", FP + "solve_recursion", solve(solver=Associative()),
         raises(TypeError, "`solver`")),
    Case("unknown-strategy", FP + "solve_recursion", solve(strategy="parallel"),
         raises(ValueError, "`strategy`")),
    Case("bool-damping", FP + "Jacobi", lambda: fixed_point.Jacobi(damping=True),
         raises(TypeError, "`Jacobi.damping`")),
    Case("damping-above-1", FP + "Newton", lambda: fixed_point.Newton(damping=1.5),
         raises(ValueError, "`Newton.damping`")),
    Case("negative-diagonal-dim", FP + "QuasiNewton",
         lambda: fixed_point.QuasiNewton(exact_diagonal_max_dim=-1),
         raises(ValueError, "`QuasiNewton.exact_diagonal_max_dim`")),
    Case("unexpected-argument", FP + "OnlinePicard", lambda: fixed_point.OnlinePicard(0.5),
         raises(TypeError, "")),
    Case("unknown-name", FP + "as_solver", lambda: fixed_point.as_solver("picard"),
         raises(ValueError, "`solver`")),
    Case("not-a-solver", FP + "as_solver", lambda: fixed_point.as_solver(3),
         raises(TypeError, "`solver`")),
    Case("2d-initial-state", FP + "solve_recursion",
         lambda: fixed_point.solve_recursion(tanh_fn, X0[None], INPUTS),
         raises(ValueError, "`initial_state`")),
    Case("empty-inputs", FP + "solve_recursion",
         lambda: fixed_point.solve_recursion(tanh_fn, X0, INPUTS[:0]), raises(ValueError, "`inputs`")),
    Case("chaotic-map-not-certified", FP + "solve_recursion",
         lambda: fixed_point.solve_recursion(
             lambda x, u: (3.99 * x * (1 - x), None), jnp.array([0.3]), jnp.zeros(64),
             max_iterations=16),
         returns(lambda r: bool(np.all(np.isfinite(r.states))) and not bool(r.converged),
                 warns=RuntimeWarning)),
    Case("nan-recursion-flagged", FP + "solve_recursion",
         lambda: fixed_point.solve_recursion(lambda x, u: (x * jnp.nan, None), X0, INPUTS),
         returns(lambda r: int(r.status) == fixed_point.NON_FINITE
                 and bool(np.all(np.isnan(r.states))), warns=RuntimeWarning)),
    Case("jit-nan-recursion-flag", FP + "solve_recursion",
         lambda: jax.jit(lambda s: fixed_point.solve_recursion(tanh_fn, s, INPUTS))(X0 * jnp.nan),
         returns(lambda r: not bool(r.converged) and bool(r.fallback))),
    Case("int-initial-state", FP + "sequential_recursion",
         lambda: fixed_point.sequential_recursion(tanh_fn, jnp.array([1, 2]), INPUTS),
         raises(TypeError, "`initial_state`")),
    Case("scalar-inputs", FP + "sequential_recursion",
         lambda: fixed_point.sequential_recursion(tanh_fn, X0, 1.0), raises(ValueError, "`inputs`")),
    Case("negative-tolerance", FP + "certify",
         lambda: fixed_point.certify(tanh_fn, jnp.zeros((11, 2)), INPUTS, 0, KEY, atol=-1.0,
                                     rtol=0.0),
         raises(ValueError, "`atol`")),
    Case("infinite-iterate-not-certified", FP + "certify",
         lambda: fixed_point.certify(tanh_fn, exact_buffer().at[3].set(jnp.inf), INPUTS, 0,
                                     KEY, atol=1e-10, rtol=1e-10),
         returns(lambda r: int(r.num_sequential_steps) == 8 and bool(np.all(np.isfinite(r.states))))),
    Case("int-dtype", FP + "default_tolerances", lambda: fixed_point.default_tolerances(jnp.int32),
         raises(TypeError, "`dtype`")),
    # ---- mcmc.run_chain ---------------------------------------------------------------------
    Case("num-steps-0", MC + "run_chain", lambda: mcmc.run_chain(MALA, STATE, KEY, 0),
         raises(ValueError, "`num_steps`")),
    Case("num-steps-float", MC + "run_chain",
         lambda: mcmc.run_chain(MALA, STATE, KEY, 8.0), raises(TypeError, "`num_steps`")),
    Case("unknown-solver", MC + "run_chain", chain(solver="picard"),
         raises(ValueError, "`solver`")),
    Case("negative-atol", MC + "run_chain", chain(atol=-1e-8), raises(ValueError, "`atol`")),
    Case("inf-rtol", MC + "run_chain", chain(rtol=float("inf")), raises(ValueError, "`rtol`")),
    Case("unknown-strategy", MC + "run_chain", chain(strategy="fast"),
         raises(ValueError, "`strategy`")),
    Case("max-iterations-0", MC + "run_chain", chain(max_iterations=0),
         raises(ValueError, "`max_iterations`")),
    Case("window-negative", MC + "run_chain", chain(window=-2), raises(ValueError, "`window`")),
    Case("damping-2", MC + "run_chain", lambda: chain(solver=fixed_point.Jacobi(2.0))(),
         raises(ValueError, "`Jacobi.damping`")),
    Case("position-not-state", MC + "run_chain",
         lambda: mcmc.run_chain(MALA, jnp.ones(2), KEY, 8),
         raises(TypeError, r"init_fn\(position\)")),
    Case("int-key", MC + "run_chain", lambda: mcmc.run_chain(MALA, STATE, 0, 8),
         raises(TypeError, "`rng_key`")),
    Case("not-callable-step", MC + "run_chain", lambda: mcmc.run_chain(3, STATE, KEY, 8),
         raises(TypeError, "`step_fn`")),
    Case("chaotic-map-fallback-exact", MC + "run_chain",
         lambda: mcmc.run_chain(logistic_step, jnp.array([0.3]), KEY, 64, max_iterations=16),
         returns(logistic_matches_sequential, warns=RuntimeWarning)),
    Case("nan-logdensity-flagged", MC + "run_chain",
         lambda: mcmc.run_chain(NAN_MALA, NAN_STATE, KEY, 8, solver="jacobi"),
         returns(not_ok_nan, warns=RuntimeWarning)),
    Case("jit-nan-logdensity-flag", MC + "run_chain",
         lambda: jax.jit(lambda s: mcmc.run_chain(NAN_MALA, s, KEY, 8))(NAN_STATE),
         returns(not_ok_nan)),
    Case("position-not-state", MC + "run_chain",
         lambda: mcmc.run_chain(MALA.step, jnp.ones(2), KEY, 8, strategy="sequential"),
         raises(TypeError, r"init_fn\(position\)")),
    Case("algorithm-with-position", MC + "run_chain",
         lambda: mcmc.run_chain(MALA, jnp.ones(2), KEY, 8, strategy="sequential"),
         raises(TypeError, r"init_fn\(position\)")),
    Case("num-steps-negative", MC + "run_chain",
         lambda: mcmc.run_chain(MALA, STATE, KEY, -3, strategy="sequential"), raises(ValueError, "`num_steps`")),
    Case("num-steps-bool", MC + "run_chain",
         lambda: mcmc.run_chain(MALA, STATE, KEY, True, strategy="sequential"), raises(TypeError, "`num_steps`")),
    Case("nan-logdensity-flagged", MC + "run_chain",
         lambda: mcmc.run_chain(NAN_MALA, NAN_STATE, KEY, 8, strategy="sequential"),
         returns(not_ok_nan, warns=RuntimeWarning)),
    Case("jit-nan-logdensity-flag", MC + "run_chain",
         lambda: jax.jit(lambda s: mcmc.run_chain(NAN_MALA, s, KEY, 8, strategy="sequential"))(NAN_STATE),
         returns(not_ok_nan)),
    # ---- mcmc block samplers -------------------------------------------------------------------
    Case("stuck-chain-flagged", MC + "run_chain", stuck_chain("auto"),
         returns(is_stuck, warns=RuntimeWarning)),
    Case("stuck-sequential-chain-flagged", MC + "run_chain", stuck_chain("sequential"),
         returns(is_stuck, warns=RuntimeWarning)),
    Case("str-step-size", MC + "parallel_mala", lambda: mcmc.parallel_mala(gaussian, "a", 8),
         raises(TypeError, "`step_size`")),
    Case("none-step-size", MC + "parallel_mala", lambda: mcmc.parallel_mala(gaussian, None, 8),
         raises(TypeError, "`step_size`")),
    Case("none-sigma", MC + "parallel_rwm", lambda: mcmc.parallel_rwm(gaussian, None, 8),
         raises(TypeError, "`sigma`")),
    Case("stuck-block-flagged", MC + "parallel_mala",
         lambda: mcmc.parallel_mala(gaussian, 1e6, 60).step(KEY, MALA.init(jnp.ones(2))),
         returns(lambda r: bool(r[1].stuck), warns=RuntimeWarning)),
    Case("negative-step-size", MC + "parallel_mala", lambda: mcmc.parallel_mala(gaussian, -0.1, 8),
         raises(ValueError, "`step_size`")),
    Case("block-0", MC + "parallel_mala", lambda: mcmc.parallel_mala(gaussian, 0.1, 0),
         raises(ValueError, "`num_steps_per_block`")),
    Case("unknown-solver", MC + "parallel_mala",
         lambda: mcmc.parallel_mala(gaussian, 0.1, 8, solver="fast"), raises(ValueError, "`solver`")),
    Case("jit-nan-step-size-flag", MC + "parallel_mala",
         lambda: jax.jit(lambda h: mcmc.parallel_mala(gaussian, h, 4).step(KEY, STATE))(jnp.nan),
         returns(lambda r: not bool(r[1].converged))),
    Case("zero-step-size", MC + "parallel_hmc",
         lambda: mcmc.parallel_hmc(gaussian, 0.0, jnp.ones(2), 3, 8), raises(ValueError, "`step_size`")),
    Case("integration-steps-0", MC + "parallel_hmc",
         lambda: mcmc.parallel_hmc(gaussian, 0.1, jnp.ones(2), 0, 8),
         raises(ValueError, "`num_integration_steps`")),
    Case("negative-mass", MC + "parallel_hmc",
         lambda: mcmc.parallel_hmc(gaussian, 0.1, -jnp.ones(2), 3, 8),
         raises(ValueError, "`inverse_mass_matrix`")),
    Case("negative-sigma", MC + "parallel_rwm", lambda: mcmc.parallel_rwm(gaussian, -1.0, 8),
         raises(ValueError, "`sigma`")),
    Case("block-float", MC + "parallel_rwm", lambda: mcmc.parallel_rwm(gaussian, 1.0, 8.0),
         raises(TypeError, "`num_steps_per_block`")),
    # ---- NumPyro kernels ----------------------------------------------------------------------
    Case("negative-step-size", INF + "ParallelMALA",
         lambda: ParallelMALA(potential_fn=gaussian, step_size=-0.1), raises(ValueError, "`step_size`")),
    Case("block-0", INF + "ParallelMALA",
         lambda: ParallelMALA(potential_fn=gaussian, num_steps_per_block=0),
         raises(ValueError, "`num_steps_per_block`")),
    Case("unknown-solver", INF + "ParallelMALA",
         lambda: ParallelMALA(potential_fn=gaussian, solver="nuts"), raises(ValueError, "`solver`")),
    Case("negative-rtol", INF + "ParallelMALA", lambda: ParallelMALA(potential_fn=gaussian, rtol=-1.0),
         raises(ValueError, "`rtol`")),
    Case("unknown-strategy", INF + "ParallelMALA",
         lambda: ParallelMALA(potential_fn=gaussian, strategy="gpu"), raises(ValueError, "`strategy`")),
    Case("accept-prob-1", INF + "ParallelMALA",
         lambda: ParallelMALA(potential_fn=gaussian, target_accept_prob=1.0),
         raises(ValueError, "`target_accept_prob`")),
    Case("model-and-potential", INF + "ParallelMALA", lambda: ParallelMALA(),
         raises(ValueError, "`model`")),
    Case("nan-potential-at-init", INF + "ParallelMALA", kernel_init(ParallelMALA, jnp.ones(2)),
         raises(ValueError, "`init_params`")),
    Case("nan-init-params", INF + "ParallelMALA",
         kernel_init(ParallelMALA, jnp.array([jnp.nan, 0.0])), raises(ValueError, "`init_params`")),
    Case("init-params-wrong-shape", INF + "ParallelMALA",
         model_init(ParallelMALA, {"mu": jnp.zeros(3)}),
         raises(ValueError, r"`init_params` must give the model's latent sites with shapes \{'mu': \(\)\}.*vectorized chains\); wrong shapes \{'mu': \(3,\)\}\.$")),
    Case("init-params-unknown-site", INF + "ParallelMALA",
         model_init(ParallelMALA, {"mu": 0.0, "extra": 1.0}),
         raises(ValueError, r"`init_params`.*unknown \['extra'\]")),
    Case("init-params-missing-site", INF + "ParallelHMC",
         model_init(ParallelHMC, {"nu": 0.0}), raises(ValueError, r"`init_params`.*missing \['mu'\]")),
    Case("init-params-list", INF + "ParallelMALA", model_init(ParallelMALA, [0.0]),
         raises(TypeError, "`init_params` must be a dict")),
    Case("init-params-model-nowhere-finite", INF + "ParallelMALA",
         model_init(ParallelMALA, {"mu": 0.5}, nowhere_finite_model),
         raises(ValueError, "Cannot start the chain at `init_params`")),
    Case("model-without-latent-sites", INF + "ParallelMALA",
         model_init(ParallelMALA, None, no_latent_model),
         raises(ValueError, "`model` has no latent sample sites")),
    Case("empty-init-params", INF + "ParallelHMC", kernel_init(ParallelHMC, jnp.zeros(0)),
         raises(ValueError, "`init_params` is empty")),
    Case("integer-init-params-cast", INF + "ParallelMALA",
         model_init(ParallelMALA, {"mu": 1}),
         returns(lambda state: jnp.issubdtype(state.z["mu"].dtype, jnp.floating))),
    Case("jit-nan-potential-diverging", INF + "ParallelMALA", jitted_diverging(ParallelMALA),
         returns(lambda flags: bool(np.all(flags)))),
    Case("integration-steps-0", INF + "ParallelHMC",
         lambda: ParallelHMC(potential_fn=gaussian, num_integration_steps=0),
         raises(ValueError, "`num_integration_steps`")),
    Case("integration-steps-float", INF + "ParallelHMC",
         lambda: ParallelHMC(potential_fn=gaussian, num_integration_steps=2.5),
         raises(TypeError, "`num_integration_steps`")),
    Case("max-iterations-0", INF + "ParallelHMC",
         lambda: ParallelHMC(potential_fn=gaussian, max_iterations=0),
         raises(ValueError, "`max_iterations`")),
    Case("nan-potential-at-init", INF + "ParallelHMC", kernel_init(ParallelHMC, jnp.ones(2)),
         raises(ValueError, "`init_params`")),
    Case("jit-nan-potential-diverging", INF + "ParallelHMC", jitted_diverging(ParallelHMC),
         returns(lambda flags: bool(np.all(flags)))),
]  # fmt: skip


@pytest.mark.parametrize("case", case_params(CASES))
def test_bad_input(case):
    run_case(case)
