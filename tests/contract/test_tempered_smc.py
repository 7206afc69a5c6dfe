"""Bad-input matrix for tempered SMC (`numpyro_parallel.infer`): errors, NaN/-inf and flags."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from numpyro_parallel.infer.tempered import (
    TemperedSMCResult,
    build_tempered_smc,
    split_model,
    tempered_smc,
    tempered_smc_to_arviz,
)
from numpyro_parallel.smc import build_adaptive_tempering
from tests.contract.matrix import Case, case_params, is_nan, raises, returns, run_case

Y = jnp.asarray([0.3, -0.2, 1.1, 0.4])
KEY = jax.random.key(0)
# cheap settings for the runs that return: few particles, one random-walk sweep per stage.
FAST = {"num_particles": 64, "kernel": "rwm", "num_mcmc_steps": 2}

TSMC = "numpyro_parallel.infer.tempered_smc"
BUILD = "numpyro_parallel.infer.build_tempered_smc"
SPLIT = "numpyro_parallel.infer.split_model"
RESULT = "numpyro_parallel.infer.TemperedSMCResult"
ARVIZ = "numpyro_parallel.infer.tempered_smc_to_arviz"
CORE = "numpyro_parallel.smc.build_adaptive_tempering"


def normal_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def scaled_model(y, scale):
    """A log-likelihood term log(scale): NaN for a negative ``scale``."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    numpyro.factor("log_scale", jnp.log(scale))


def impossible_model(y):
    """The data must lie below 1, whatever mu: an observation of 5 is impossible."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    numpyro.factor("bound", jnp.where(jnp.all(y < 1.0), 0.0, -jnp.inf))


def improper_model(y):
    mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def no_latent_model(y):
    numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


def nan_gradient_model(y):
    """Finite log-density, NaN gradient (the `jnp.where` trap): HMC rejects every move."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    numpyro.factor("trap", jnp.where(mu > -1e9, 0.0, jnp.sqrt(-1.0 - mu**2)))


def sharp_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(mu, 0.01), obs=y)


@functools.cache
def nan_run() -> TemperedSMCResult:
    """A negative `scale`: NaN log-likelihood at every particle."""
    return tempered_smc(KEY, scaled_model, Y, -1.0, **FAST)


def nan_run_checked() -> TemperedSMCResult:
    """Run `nan_run` (cached) inside the caller's warning recorder, so it warns every time."""
    nan_run.cache_clear()
    return nan_run()


def _flags_only(result, flag: str) -> bool:
    names = ("nan_potential", "zero_evidence", "hit_max_stages", "collapsed", "poor_mixing")
    return not bool(result.converged) and all(
        bool(getattr(result, name)) == (name == flag) for name in names
    )


def _jitted_negative_scale():
    """A negative scale known only as a tracer: no exception, NaN evidence and the flag."""

    def run(scale):
        return build_tempered_smc(scaled_model, (Y, scale), **FAST)(KEY)

    return jax.jit(run)(-1.0)


def _split_impossible():
    logprior, loglik, _, _ = split_model(KEY, impossible_model, (Y + 5.0,))
    z = jnp.zeros(1)
    return logprior(z), loglik(z)


def _vmapped_result():
    """Two stacked runs, as a vmapped runner returns them."""
    return jax.tree.map(lambda leaf: jnp.stack([leaf, leaf]), nan_run())


def _core(loglikelihood_fn=lambda x: -0.5 * jnp.sum(x**2), particles=None, key=KEY, **kwargs):
    """`build_adaptive_tempering` on a standard-normal prior with cheap settings."""
    run = build_adaptive_tempering(
        lambda x: -0.5 * jnp.sum(x**2), loglikelihood_fn, **{**FAST, **kwargs}
    )
    if particles is None:
        particles = jax.random.normal(jax.random.key(1), (FAST["num_particles"], 2))
    return run(key, particles)


def _with(**kwargs):
    return lambda: tempered_smc(KEY, normal_model, Y, **{**FAST, **kwargs})


CASES = [
    # ---- build_adaptive_tempering (flat particles): options, shapes, keys, run-time flags
    Case(
        "core target_ess=2", CORE, lambda: _core(target_ess=2.0), raises(ValueError, "`target_ess`")
    ),
    Case("core kernel unknown", CORE, lambda: _core(kernel="nuts"), raises(ValueError, "`kernel`")),
    Case(
        "core particles wrong N",
        CORE,
        lambda: _core(particles=jnp.zeros((FAST["num_particles"] + 1, 2))),
        raises(ValueError, "`initial_particles`"),
    ),
    Case("core rng_key int", CORE, lambda: _core(key=0), raises(TypeError, "`rng_key`")),
    Case(
        "core NaN log-likelihood",
        CORE,
        lambda: _core(lambda x: jnp.nan * jnp.sum(x)),
        returns(lambda r: is_nan(r.log_evidence) and _flags_only(r, "nan_potential")),
    ),
    Case(
        "core impossible data",
        CORE,
        lambda: _core(lambda x: -jnp.inf + 0.0 * jnp.sum(x)),
        returns(lambda r: float(r.log_evidence) == -np.inf and _flags_only(r, "zero_evidence")),
    ),
    # ---- tempered_smc: concrete bad options raise, naming the argument
    Case("num_particles=1", TSMC, _with(num_particles=1), raises(ValueError, "`num_particles`")),
    Case("num_particles=0", TSMC, _with(num_particles=0), raises(ValueError, "`num_particles`")),
    Case(
        "num_particles float", TSMC, _with(num_particles=10.5), raises(TypeError, "`num_particles`")
    ),
    Case("target_ess=1", TSMC, _with(target_ess=1.0), raises(ValueError, "`target_ess`")),
    Case("target_ess=0", TSMC, _with(target_ess=0.0), raises(ValueError, "`target_ess`")),
    Case(
        "target_ess nan", TSMC, _with(target_ess=float("nan")), raises(ValueError, "`target_ess`")
    ),
    Case("target_ess str", TSMC, _with(target_ess="half"), raises(TypeError, "`target_ess`")),
    Case("kernel unknown", TSMC, _with(kernel="nuts"), raises(ValueError, "`kernel`")),
    Case("step_size negative", TSMC, _with(step_size=-0.1), raises(ValueError, "`step_size`")),
    Case("step_size inf", TSMC, _with(step_size=float("inf")), raises(ValueError, "`step_size`")),
    Case("num_mcmc_steps=0", TSMC, _with(num_mcmc_steps=0), raises(ValueError, "`num_mcmc_steps`")),
    Case(
        "num_integration_steps=0",
        TSMC,
        _with(num_integration_steps=0),
        raises(ValueError, "`num_integration_steps`"),
    ),
    Case("max_stages=0", TSMC, _with(max_stages=0), raises(ValueError, "`max_stages`")),
    Case("max_stages float", TSMC, _with(max_stages=5.0), raises(TypeError, "`max_stages`")),
    Case("dense_mass str", TSMC, _with(dense_mass="yes"), raises(TypeError, "`dense_mass`")),
    Case(
        "resampling unknown",
        TSMC,
        _with(resampling_fn="bogus"),
        raises(ValueError, "`resampling_fn`"),
    ),
    Case("resampling int", TSMC, _with(resampling_fn=3), raises(TypeError, "`resampling_fn`")),
    Case("progress_bar str", TSMC, _with(progress_bar="yes"), raises(TypeError, "`progress_bar`")),
    Case(
        "model not callable",
        TSMC,
        lambda: tempered_smc(KEY, "model", Y),
        raises(TypeError, "`model`"),
    ),
    Case(
        "rng_key int",
        TSMC,
        lambda: tempered_smc(0, normal_model, Y),
        raises(TypeError, "`rng_key`"),
    ),
    Case(
        "rng_key batch",
        TSMC,
        lambda: tempered_smc(jax.random.split(KEY, 2), normal_model, Y),
        raises(TypeError, "`rng_key`"),
    ),
    # ---- models tempered SMC cannot handle: clear errors naming the site
    Case(
        "improper prior",
        TSMC,
        lambda: tempered_smc(KEY, improper_model, Y),
        raises(ValueError, r"latent site 'mu' \(ImproperUniform\).*proper prior"),
    ),
    Case(
        "no latent sites",
        TSMC,
        lambda: tempered_smc(KEY, no_latent_model, Y),
        raises(ValueError, "`model` has no latent sample sites"),
    ),
    # ---- failures at run time: -inf / NaN evidence, flags, RuntimeWarning
    Case(
        "NaN observation: out of support, -inf evidence",
        TSMC,
        lambda: tempered_smc(KEY, normal_model, Y.at[1].set(jnp.nan), **FAST),
        returns(
            lambda r: float(r.log_evidence) == -np.inf and _flags_only(r, "zero_evidence"),
            warns=RuntimeWarning,
        ),
    ),
    Case(
        "negative scale: NaN potential",
        TSMC,
        nan_run_checked,
        returns(
            lambda r: is_nan(r.log_evidence) and _flags_only(r, "nan_potential"),
            warns=RuntimeWarning,
        ),
    ),
    Case(
        "impossible observation",
        TSMC,
        lambda: tempered_smc(KEY, impossible_model, Y + 5.0, **FAST),
        returns(
            lambda r: float(r.log_evidence) == -np.inf and _flags_only(r, "zero_evidence"),
            warns=RuntimeWarning,
        ),
    ),
    Case(
        "max_stages reached",
        TSMC,
        lambda: tempered_smc(KEY, sharp_model, Y, max_stages=2, **FAST),
        returns(
            lambda r: (
                int(r.num_stages) == 2
                and float(r.tempering_schedule[1]) < 1.0
                and _flags_only(r, "hit_max_stages")
            ),
            warns=RuntimeWarning,
        ),
    ),
    Case(
        "NaN gradient: every HMC move rejected",
        TSMC,
        lambda: tempered_smc(KEY, nan_gradient_model, Y, num_particles=64, num_mcmc_steps=2),
        returns(
            lambda r: (
                float(r.acceptance_rate[int(r.num_stages) - 1]) == 0.0
                and bool(r.collapsed)
                and not bool(r.converged)
            ),
            warns=RuntimeWarning,
        ),
    ),
    # ---- build_tempered_smc
    Case(
        "model_args list",
        BUILD,
        lambda: build_tempered_smc(normal_model, [Y]),
        raises(TypeError, "`model_args`"),
    ),
    Case(
        "model_kwargs tuple",
        BUILD,
        lambda: build_tempered_smc(normal_model, (Y,), (1,)),
        raises(TypeError, "`model_kwargs`"),
    ),
    Case(
        "num_particles=1",
        BUILD,
        lambda: build_tempered_smc(normal_model, (Y,), num_particles=1),
        raises(ValueError, "`num_particles`"),
    ),
    Case(
        "jitted negative scale",
        BUILD,
        _jitted_negative_scale,
        returns(lambda r: is_nan(r.log_evidence) and _flags_only(r, "nan_potential")),
    ),
    # ---- split_model
    Case(
        "model not callable",
        SPLIT,
        lambda: split_model(KEY, None, (Y,)),
        raises(TypeError, "`model`"),
    ),
    Case(
        "model_args not tuple",
        SPLIT,
        lambda: split_model(KEY, normal_model, Y),
        raises(TypeError, "`model_args`"),
    ),
    Case(
        "impossible observation: finite prior, -inf likelihood",
        SPLIT,
        _split_impossible,
        returns(lambda pair: np.isfinite(float(pair[0])) and float(pair[1]) == -np.inf),
    ),
    # ---- the result type carries the flags
    Case(
        "flags of a NaN run",
        RESULT,
        nan_run,
        returns(
            lambda r: (
                isinstance(r, TemperedSMCResult)
                and not bool(r.converged)
                and bool(r.nan_potential)
                and int(r.num_stages) == 0
            )
        ),
    ),
    # ---- tempered_smc_to_arviz
    Case(
        "result not a TemperedSMCResult",
        ARVIZ,
        lambda: tempered_smc_to_arviz((1, 2)),
        raises(TypeError, "`result`"),
    ),
    Case(
        "vmapped result",
        ARVIZ,
        lambda: tempered_smc_to_arviz(_vmapped_result()),
        raises(ValueError, "`result`"),
    ),
    Case(
        "NaN run keeps its flags",
        ARVIZ,
        lambda: tempered_smc_to_arviz(nan_run()),
        returns(
            lambda tree: (
                bool(tree["smc"]["nan_potential"])
                and not bool(tree["smc"]["converged"])
                and np.isnan(float(tree["smc"]["log_evidence"]))
            )
        ),
    ),
]


@pytest.mark.parametrize("case", case_params(CASES))
def test_tempered_smc_contract(case):
    run_case(case)


def test_module_and_function_names_do_not_collide():
    """Finding 14: the module is `tempered`; `tempered_smc` is only the function."""
    import importlib

    import numpyro_parallel.infer as infer

    module = importlib.import_module("numpyro_parallel.infer.tempered")
    assert callable(infer.tempered_smc) and infer.tempered_smc is module.tempered_smc
    assert module.tempered_smc_to_arviz is infer.tempered_smc_to_arviz
    assert not hasattr(module, "to_arviz")  # one name per function
