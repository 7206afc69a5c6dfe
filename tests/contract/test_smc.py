"""Bad-input matrix for numpyro_parallel.smc: resamplers, particle filter, dSMC, FFBS."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_parallel.smc as smc
from tests.contract.matrix import Case, case_params, is_nan, raises, returns, run_case

P = "numpyro_parallel.smc."
KEY = jax.random.key(0)
N = 8
W = jnp.asarray([0.1, 0.2, 0.05, 0.15, 0.1, 0.2, 0.1, 0.1])
T = 4
YS = jnp.asarray([[0.1], [-0.3], [0.5], [0.2]])

RESAMPLER_NAMES = [
    "multinomial",
    "stratified",
    "systematic",
    "residual",
    "metropolis",
    "rejection",
    "conditional_multinomial",
    "conditional_stratified",
    "conditional_systematic",
    "conditional_rejection",
]


def _all_sentinel(indices):
    return bool(np.all(np.asarray(indices) == N))


def _resampler_cases(name):
    fn = getattr(smc, name)
    jitted = jax.jit(lambda lw: fn(KEY, lw, N, is_log=True))
    jitted_raw = jax.jit(lambda w: fn(KEY, w, N))
    return [
        Case(
            "nan",
            P + name,
            lambda: fn(KEY, W.at[2].set(jnp.nan), N),
            raises(ValueError, "`weights`.*NaN"),
        ),
        Case(
            "int_rng_key",
            P + name,
            lambda: fn(0, W, N),
            raises(TypeError, "`rng_key` must be a single PRNG key"),
        ),
        Case(
            "negative_weights_are_log_weights",
            P + name,
            lambda: fn(KEY, jnp.log(W), N),
            raises(ValueError, "`weights`.*negative.*is_log=True"),
        ),
        Case(
            "all_zero",
            P + name,
            lambda: fn(KEY, jnp.zeros(N), N),
            raises(ValueError, "`weights`.*all zero"),
        ),
        Case(
            "all_neg_inf_log",
            P + name,
            lambda: fn(KEY, jnp.full(N, -jnp.inf), N, is_log=True),
            raises(ValueError, "`weights`.*all -inf"),
        ),
        Case(
            "plus_inf",
            P + name,
            lambda: fn(KEY, W.at[0].set(jnp.inf), N),
            raises(ValueError, "`weights`.*inf"),
        ),
        Case(
            "matrix",
            P + name,
            lambda: fn(KEY, jnp.ones((2, N)), N),
            raises(ValueError, "`weights`.*shape"),
        ),
        Case(
            "empty", P + name, lambda: fn(KEY, jnp.ones((0,)), N), raises(ValueError, "`weights`")
        ),
        Case("zero_samples", P + name, lambda: fn(KEY, W, 0), raises(ValueError, "`num_samples`")),
        Case(
            "float_samples", P + name, lambda: fn(KEY, W, 2.5), raises(TypeError, "`num_samples`")
        ),
        Case(
            "jit_all_neg_inf_gives_sentinel",
            P + name,
            lambda: jitted(jnp.full(N, -jnp.inf)),
            returns(_all_sentinel),
        ),
        Case(
            "jit_nan_gives_sentinel",
            P + name,
            lambda: jitted(jnp.log(W).at[3].set(jnp.nan)),
            returns(_all_sentinel),
        ),
        Case(
            "jit_negative_gives_sentinel",
            P + name,
            lambda: jitted_raw(jnp.log(W)),
            returns(_all_sentinel),
        ),
    ]


# --------------------------------------------------------------------------- models


def _obs_log_prob(x, y, t, bad=None):
    value = jax.scipy.stats.norm.logpdf(y[0], x[0], 1.0)
    if bad is None:
        return value
    return jnp.where(t == 2, bad, value)


def _model(bad=None):
    return smc.bootstrap(
        lambda key: jax.random.normal(key, (1,)),
        lambda key, x, t: 0.9 * x + 0.5 * jax.random.normal(key, (1,)),
        functools.partial(_obs_log_prob, bad=bad),
    )


def _run(model=None, ys=YS, num_particles=N, **kwargs):
    return smc.run_particle_filter(
        KEY, _model() if model is None else model, ys, num_particles, **kwargs
    )


def _jit_run(bad):
    return jax.jit(lambda ys: smc.run_particle_filter(KEY, _model(bad), ys, N))(YS)


def _impossible(out):
    return (
        bool(np.isneginf(out.log_likelihood))
        and int(out.status) == 2
        and int(out.step_status[2]) == 2
    )


def _invalid(out):
    return is_nan(out.log_likelihood) and int(out.status) == 3 and int(out.step_status[2]) == 3


def _collapsing_model():
    # One particle gets all the weight at t = 1: ESS = 1.
    return smc.bootstrap(
        lambda key: jax.random.normal(key, (1,)),
        lambda key, x, t: x + jax.random.normal(key, (1,)),
        lambda x, y, t: jnp.where(t == 1, -1e4 * (x[0] - 0.0) ** 2, 0.0),
    )


def _transition_log_prob(x_prev, x, t):
    return jax.scipy.stats.norm.logpdf(x[0], 0.9 * x_prev[0], 0.5)


MEAN = jnp.zeros((T, 1))
CHOL = jnp.ones((T, 1, 1))


def _dsmc(obs=None, ys=YS, num_particles=N, mean=MEAN, chol=CHOL, **kwargs):
    return smc.dsmc(
        KEY,
        ys,
        num_particles,
        initial_log_prob=lambda x: jax.scipy.stats.norm.logpdf(x[0], 0.0, 1.0),
        transition_log_prob=_transition_log_prob,
        observation_log_prob=obs or _obs_log_prob,
        proposal_mean=mean,
        proposal_chol=chol,
        **kwargs,
    )


def _dsmc_status(code, check_value):
    return lambda out: int(out.status) == code and check_value(out.log_likelihood)


def _kalman_params():
    from numpyro_parallel.ssm.kalman.inference import GaussianSSMParams

    one = jnp.ones((T, 1, 1))
    return GaussianSSMParams(
        initial_mean=jnp.zeros(1),
        initial_chol=jnp.ones((1, 1)),
        transition_matrix=0.9 * one,
        transition_offset=jnp.zeros((T, 1)),
        transition_chol=0.5 * one,
        observation_matrix=one,
        observation_offset=jnp.zeros((T, 1)),
        observation_chol=one,
    )


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def _ffbs_of(out, num_samples=3, transition=_transition_log_prob):
    return smc.backward_sampling(KEY, out, transition, num_samples)


def _jit_ffbs_after_impossible():
    def go(ys):
        out = smc.run_particle_filter(KEY, _model(-jnp.inf), ys, N)
        return smc.backward_sampling(KEY, out, _transition_log_prob, 3)

    return jax.jit(go)(YS)


def _adaptive_invalid():
    indices, log_weights, resampled = smc.ess_adaptive("systematic", 0.5)(KEY, jnp.full(N, jnp.nan))
    return indices, log_weights, resampled


def _rejection_degenerate():
    log_w = jnp.full(1000, -50.0).at[7].set(0.0)
    return smc.rejection_info(KEY, log_w, 1000, is_log=True, max_rounds=2)


CASES = [case for name in RESAMPLER_NAMES for case in _resampler_cases(name)]
CASES += [
    # registries and helpers
    Case(
        "unknown_name",
        P + "get_resampler",
        lambda: smc.get_resampler("nope"),
        raises(ValueError, "`name`"),
    ),
    Case(
        "not_a_name",
        P + "get_resampler",
        lambda: smc.get_resampler(3),
        raises(ValueError, "`name`"),
    ),
    Case(
        "no_conditional_residual",
        P + "get_conditional_resampler",
        lambda: smc.get_conditional_resampler("residual"),
        raises(ValueError, "`name`.*conditional"),
    ),
    Case("all_neg_inf_is_nan", P + "ess", lambda: smc.ess(jnp.full(N, -jnp.inf)), returns(is_nan)),
    Case("nan_is_nan", P + "ess", lambda: jax.jit(smc.ess)(jnp.full(N, jnp.nan)), returns(is_nan)),
    Case(
        "threshold_above_one",
        P + "ess_adaptive",
        lambda: smc.ess_adaptive("systematic", 1.5),
        raises(ValueError, "`threshold`"),
    ),
    Case(
        "string_threshold",
        P + "ess_adaptive",
        lambda: smc.ess_adaptive("systematic", "0.5"),
        raises(TypeError, "`threshold`"),
    ),
    Case(
        "numpy_threshold_accepted",
        P + "ess_adaptive",
        lambda: smc.ess_adaptive("systematic", np.float32(0.5))(KEY, jnp.log(W)),
        returns(lambda r: r[0].shape == (N,)),
    ),
    Case(
        "unknown_resampler",
        P + "ess_adaptive",
        lambda: smc.ess_adaptive("nope"),
        raises(ValueError, "`resampling_fn`"),
    ),
    Case(
        "invalid_weights_nan_out_identity_no_resample",
        P + "ess_adaptive",
        _adaptive_invalid,
        returns(lambda r: is_nan(r[1]) and not bool(r[2]) and np.array_equal(r[0], np.arange(N))),
    ),
    Case(
        "flags",
        P + "log_weights_valid",
        lambda: jax.jit(smc.log_weights_valid)(
            jnp.stack([jnp.zeros(N), jnp.full(N, -jnp.inf), jnp.zeros(N).at[0].set(jnp.nan)])
        ),
        returns(lambda v: np.array_equal(v, [True, False, False])),
    ),
    Case(
        "zero_max_rounds",
        P + "rejection_info",
        lambda: smc.rejection_info(KEY, W, N, max_rounds=0),
        raises(ValueError, "`max_rounds`"),
    ),
    Case(
        "capped_rounds_fall_back_exactly",
        P + "rejection_info",
        _rejection_degenerate,
        returns(
            lambda r: (
                int(r.num_rounds) == 2
                and int(r.num_fallback) > 0
                and np.all(np.asarray(r.indices) == 7)
            )
        ),
    ),
    Case(
        "jit_invalid_flag",
        P + "rejection_info",
        lambda: jax.jit(lambda lw: smc.rejection_info(KEY, lw, N, is_log=True))(
            jnp.full(N, -jnp.inf)
        ),
        returns(
            lambda r: not bool(r.valid) and int(r.num_rounds) == 0 and _all_sentinel(r.indices)
        ),
    ),
    Case(
        "zero_max_steps",
        P + "metropolis",
        lambda: smc.metropolis(KEY, W, N, max_steps=0),
        raises(ValueError, "`max_steps`"),
    ),
    Case(
        "negative_num_steps",
        P + "metropolis",
        lambda: smc.metropolis(KEY, W, N, num_steps=-1),
        raises(ValueError, "`num_steps`"),
    ),
    Case(
        "none_tolerance",
        P + "metropolis",
        lambda: smc.metropolis(KEY, W, N, tolerance=None),
        raises(TypeError, "`tolerance`"),
    ),
    Case(
        "bad_tolerance",
        P + "metropolis",
        lambda: smc.metropolis(KEY, W, N, tolerance=1.5),
        raises(ValueError, "`tolerance`"),
    ),
    # model builders
    Case(
        "not_callable",
        P + "bootstrap",
        lambda: smc.bootstrap(None, lambda k, x, t: x, _obs_log_prob),
        raises(TypeError, "`initial_sample`"),
    ),
    Case(
        "not_callable",
        P + "guided",
        lambda: smc.guided(*([lambda *a: 0.0] * 6), 1.0),
        raises(TypeError, "`proposal_log_prob`"),
    ),
    # particle filter
    Case(
        "T_zero",
        P + "run_particle_filter",
        lambda: _run(ys=jnp.zeros((0, 1))),
        raises(ValueError, "`observations`.*T = 0"),
    ),
    Case(
        "scalar_observations",
        P + "run_particle_filter",
        lambda: _run(ys=jnp.asarray(1.0)),
        raises(ValueError, "`observations`"),
    ),
    Case(
        "leaves_of_different_lengths",
        P + "run_particle_filter",
        lambda: _run(ys={"a": jnp.zeros((3, 1)), "b": jnp.zeros((4, 1))}),
        raises(ValueError, "`observations`.*leading time axis"),
    ),
    Case(
        "zero_particles",
        P + "run_particle_filter",
        lambda: _run(num_particles=0),
        raises(ValueError, "`num_particles`"),
    ),
    Case(
        "float_particles",
        P + "run_particle_filter",
        lambda: _run(num_particles=10.0),
        raises(TypeError, "`num_particles`"),
    ),
    Case(
        "unknown_resampler",
        P + "run_particle_filter",
        lambda: _run(resampling_fn="nope"),
        raises(ValueError, "`resampling_fn`"),
    ),
    Case(
        "ess_threshold_above_one",
        P + "run_particle_filter",
        lambda: _run(ess_threshold=2.0),
        raises(ValueError, "`ess_threshold`"),
    ),
    Case(
        "not_a_model",
        P + "run_particle_filter",
        lambda: _run(model=(1, 2, 3, 4)),
        raises(TypeError, "`model`"),
    ),
    Case(
        "impossible_observation_neg_inf",
        P + "run_particle_filter",
        lambda: _run(_model(-jnp.inf)),
        returns(_impossible, warns=RuntimeWarning),
    ),
    Case(
        "nan_potential",
        P + "run_particle_filter",
        lambda: _run(_model(jnp.nan)),
        returns(_invalid, warns=RuntimeWarning),
    ),
    Case(
        "impossible_every_resampler",
        P + "run_particle_filter",
        lambda: [_run(_model(-jnp.inf), resampling_fn=name) for name in smc.RESAMPLERS],
        returns(lambda outs: all(_impossible(out) for out in outs), warns=RuntimeWarning),
        slow=True,
    ),
    Case(
        "jit_impossible",
        P + "run_particle_filter",
        lambda: _jit_run(-jnp.inf),
        returns(_impossible),
    ),
    Case("jit_nan", P + "run_particle_filter", lambda: _jit_run(jnp.nan), returns(_invalid)),
    Case(
        "collapse_flagged",
        P + "run_particle_filter",
        lambda: _run(_collapsing_model(), num_particles=64),
        returns(
            lambda out: int(out.step_status[1]) == 1 and float(out.ess[1]) < 2.0,
            warns=RuntimeWarning,
        ),
    ),
    Case(
        "zero_particles",
        P + "init_particle_filter",
        lambda: smc.init_particle_filter(KEY, _model(), YS[0], 0),
        raises(ValueError, "`num_particles`"),
    ),
    Case(
        "impossible_first_observation",
        P + "init_particle_filter",
        lambda: smc.init_particle_filter(KEY, _model_bad_at_zero(), YS[0], N),
        returns(
            lambda s: bool(np.isneginf(s.log_likelihood)) and int(s.status) == 2,
            warns=RuntimeWarning,
        ),
    ),
    Case(
        "bad_gradient_estimator",
        P + "build_particle_filter_kernel",
        lambda: smc.build_particle_filter_kernel(_model(), gradient_estimator="reinforce"),
        raises(ValueError, "`gradient_estimator`"),
    ),
    Case(
        "unknown_resampler",
        P + "build_particle_filter_kernel",
        lambda: smc.build_particle_filter_kernel(_model(), "nope"),
        raises(ValueError, "`resampling_fn`"),
    ),
    Case(
        "negative_collapse_ess",
        P + "build_particle_filter_kernel",
        lambda: smc.build_particle_filter_kernel(_model(), collapse_ess=-1.0),
        raises(ValueError, "`collapse_ess`"),
    ),
    Case(
        "infinite_collapse_ess",
        P + "build_particle_filter_kernel",
        lambda: smc.build_particle_filter_kernel(_model(), collapse_ess=float("inf")),
        raises(ValueError, "`collapse_ess`.*finite"),
    ),
    Case(
        "string_ess_threshold",
        P + "build_particle_filter_kernel",
        lambda: smc.build_particle_filter_kernel(_model(), ess_threshold="half"),
        raises(TypeError, "`ess_threshold`"),
    ),
    Case(
        "numpy_numbers_accepted",
        P + "build_particle_filter_kernel",
        lambda: smc.build_particle_filter_kernel(
            _model(), ess_threshold=np.float64(0.5), collapse_ess=np.int64(1)
        ),
        returns(callable),
    ),
    # dSMC
    Case(
        "T_zero",
        P + "dsmc",
        lambda: _dsmc(ys=jnp.zeros((0, 1)), mean=MEAN[:0], chol=CHOL[:0]),
        raises(ValueError, "`observations`.*T = 0"),
    ),
    Case(
        "zero_particles",
        P + "dsmc",
        lambda: _dsmc(num_particles=0),
        raises(ValueError, "`num_particles`"),
    ),
    Case(
        "float_particles",
        P + "dsmc",
        lambda: _dsmc(num_particles=8.0),
        raises(TypeError, "`num_particles`"),
    ),
    Case(
        "nan_chol",
        P + "dsmc",
        lambda: _dsmc(chol=CHOL.at[1].set(jnp.nan)),
        raises(ValueError, "`proposal_chol`"),
    ),
    Case(
        "singular_chol",
        P + "dsmc",
        lambda: _dsmc(chol=CHOL.at[1].set(0.0)),
        raises(ValueError, "`proposal_chol`"),
    ),
    Case(
        "wrong_mean_shape",
        P + "dsmc",
        lambda: _dsmc(mean=MEAN[:2]),
        raises(ValueError, "`proposal_mean`"),
    ),
    Case(
        "unknown_resampler",
        P + "dsmc",
        lambda: _dsmc(resampling_fn="nope"),
        raises(ValueError, "`resampling_fn`"),
    ),
    Case(
        "block_size_not_divisor",
        P + "dsmc",
        lambda: _dsmc(row_chunk_size=3),
        raises(ValueError, "`row_chunk_size`"),
    ),
    Case(
        "impossible_observation",
        P + "dsmc",
        lambda: _dsmc(functools.partial(_obs_log_prob, bad=-jnp.inf)),
        returns(_dsmc_status(2, lambda v: bool(np.isneginf(v))), warns=RuntimeWarning),
    ),
    Case(
        "nan_potential",
        P + "dsmc",
        lambda: _dsmc(functools.partial(_obs_log_prob, bad=jnp.nan)),
        returns(_dsmc_status(3, is_nan), warns=RuntimeWarning),
    ),
    Case(
        "jit_singular_chol_is_nan",
        P + "dsmc",
        lambda: jax.jit(lambda c: _dsmc(chol=c))(CHOL.at[1].set(0.0)),
        returns(_dsmc_status(3, is_nan)),
    ),
    Case(
        "impossible_transition_lazy",
        P + "dsmc",
        lambda: smc.dsmc(
            KEY,
            YS,
            N,
            initial_log_prob=lambda x: 0.0 * x[0],
            transition_log_prob=lambda a, b, t: jnp.where(t == 2, -jnp.inf, 0.0),
            observation_log_prob=_obs_log_prob,
            proposal_mean=MEAN,
            proposal_chol=CHOL,
            transition_log_bound=0.0,
        ),
        returns(_dsmc_status(2, lambda v: bool(np.isneginf(v))), warns=RuntimeWarning),
        slow=True,
    ),
    Case(
        "negative_inflation",
        P + "gaussian_proposals_from_kalman",
        lambda: smc.gaussian_proposals_from_kalman(_kalman_params(), YS, inflation=-1.0),
        raises(ValueError, "`inflation`"),
    ),
    Case(
        "string_inflation",
        P + "gaussian_proposals_from_kalman",
        lambda: smc.gaussian_proposals_from_kalman(_kalman_params(), YS, inflation="2"),
        raises(TypeError, "`inflation`"),
    ),
    Case(
        "vector_observations",
        P + "gaussian_proposals_from_kalman",
        lambda: smc.gaussian_proposals_from_kalman(_kalman_params(), YS[:, 0]),
        raises(ValueError, "`observations`"),
    ),
    # FFBS
    Case(
        "not_a_filter_output",
        P + "backward_sampling",
        lambda: _ffbs_of((1, 2)),
        raises(TypeError, "`filter_output`"),
    ),
    Case(
        "zero_samples",
        P + "backward_sampling",
        lambda: _ffbs_of(_run(), num_samples=0),
        raises(ValueError, "`num_samples`"),
    ),
    Case(
        "not_callable",
        P + "backward_sampling",
        lambda: _ffbs_of(_run(), transition=None),
        raises(TypeError, "`transition_log_prob`"),
    ),
    Case(
        "collapsed_filter",
        P + "backward_sampling",
        lambda: _ffbs_of(_quiet(_run, _model(-jnp.inf))),
        raises(ValueError, "`filter_output.log_weights`.*invalid"),
    ),
    Case(
        "jit_collapsed_filter_gives_nan",
        P + "backward_sampling",
        _jit_ffbs_after_impossible,
        returns(lambda x: is_nan(x[:, :3])),
    ),
]


def _model_bad_at_zero():
    return smc.bootstrap(
        lambda key: jax.random.normal(key, (1,)),
        lambda key, x, t: x,
        lambda x, y, t: jnp.where(t == 0, -jnp.inf, 0.0),
    )


@pytest.mark.parametrize("case", case_params(CASES))
def test_smc_bad_input(case):
    run_case(case)
