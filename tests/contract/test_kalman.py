"""Bad-input matrix for the linear-Gaussian API: `LinearGaussianSSM`, the functional Kalman
filter/smoother/sampler, `numpyro_parallel.linalg` and `numpyro_parallel.scan`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel import linalg, scan, strategy
from numpyro_parallel.ssm import (
    GaussianSSMParams,
    LinearGaussianSSM,
    kalman_filter,
    kalman_log_likelihood_terms,
    kalman_predictions,
    kalman_sample_states,
    kalman_smoother,
)
from numpyro_parallel.strategy import Blocked
from tests.contract.matrix import Case, case_params, is_nan, raises, returns, run_case

SSM = "numpyro_parallel.ssm."
LIN = "numpyro_parallel.linalg."
SCAN = "numpyro_parallel.scan."
STRATEGY = "numpyro_parallel.strategy."
T = 5
Y = jnp.asarray(np.random.default_rng(0).normal(size=(T, 1)))
KEY = jax.random.PRNGKey(0)


def _args(**overrides):
    args = dict(
        initial_mean=jnp.zeros(2),
        initial_cov=jnp.eye(2),
        transition_matrix=jnp.array([[1.0, 1.0], [0.0, 1.0]]),
        transition_cov=jnp.diag(jnp.array([0.0, 0.1])),
        observation_matrix=jnp.array([[1.0, 0.0]]),
        observation_cov=jnp.eye(1),
        num_steps=T,
    )
    for name, value in overrides.items():
        if value is None:
            args.pop(name)
        else:
            args[name] = value
    return args


def _ssm(**overrides):
    return LinearGaussianSSM(**_args(**overrides))


def _params(**overrides):
    return _ssm().params._replace(**overrides)


def _log_prob(**overrides):
    return lambda: _ssm(**overrides).log_prob(Y)


def _jit_log_prob(name, value, y=Y):
    """log_prob with ``name`` a tracer: the invalid value is only known at run time."""
    return lambda: jax.jit(lambda v, obs: _ssm(**{name: v}).log_prob(obs))(value, y)


def _jit_filter(field, value):
    return lambda: jax.jit(
        lambda v: kalman_filter(_ssm().params._replace(**{field: v}), Y).log_likelihood
    )(value)


ASYM = jnp.array([[1.0, 0.5], [0.0, 1.0]])
INDEF = jnp.array([[1.0, 2.0], [2.0, 1.0]])
NAN_COV = jnp.array([[jnp.nan, 0.0], [0.0, 1.0]])
LGSSM = SSM + "LinearGaussianSSM"

CASES = [
    # ------------------------------------------------------------ LinearGaussianSSM
    Case(
        "asymmetric cov",
        LGSSM,
        _log_prob(transition_cov=ASYM),
        raises(ValueError, "`transition_cov` must be symmetric"),
    ),
    Case(
        "indefinite cov",
        LGSSM,
        _log_prob(initial_cov=INDEF),
        raises(ValueError, "`initial_cov` must be positive semi-definite"),
    ),
    Case(
        "negative definite cov",
        LGSSM,
        _log_prob(observation_cov=-jnp.eye(1)),
        raises(ValueError, "`observation_cov` must be positive semi-definite"),
    ),
    Case(
        "nan cov",
        LGSSM,
        _log_prob(transition_cov=NAN_COV),
        raises(ValueError, "`transition_cov` contains non-finite"),
    ),
    Case(
        "inf matrix",
        LGSSM,
        _log_prob(transition_matrix=jnp.full((2, 2), jnp.inf)),
        raises(ValueError, "`transition_matrix` contains non-finite"),
    ),
    Case("jit asymmetric cov", LGSSM, _jit_log_prob("transition_cov", ASYM), returns(is_nan)),
    Case("jit indefinite cov", LGSSM, _jit_log_prob("transition_cov", INDEF), returns(is_nan)),
    Case(
        "jit negative definite cov",
        LGSSM,
        _jit_log_prob("initial_cov", -jnp.eye(2)),
        returns(is_nan),
    ),
    Case("jit nan cov", LGSSM, _jit_log_prob("transition_cov", NAN_COV), returns(is_nan)),
    Case(
        "jit nan observation cov",
        LGSSM,
        _jit_log_prob("observation_cov", jnp.full((1, 1), jnp.nan)),
        returns(is_nan),
    ),
    Case(
        "jit nan factor",
        LGSSM,
        lambda: jax.jit(lambda f: _ssm(transition_cov=None, transition_cov_factor=f).log_prob(Y))(
            jnp.full((2, 1), jnp.nan)
        ),
        returns(is_nan),
    ),
    Case(
        "jit nan matrix",
        LGSSM,
        _jit_log_prob("transition_matrix", jnp.full((2, 2), jnp.nan)),
        returns(is_nan),
    ),
    Case(
        "both cov and factor",
        LGSSM,
        _log_prob(transition_cov_factor=jnp.eye(2)),
        raises(ValueError, "exactly one of `transition_cov` and `transition_cov_factor`"),
    ),
    Case(
        "neither cov nor factor",
        LGSSM,
        _log_prob(observation_cov=None),
        raises(ValueError, "exactly one of `observation_cov` and `observation_cov_factor`"),
    ),
    Case(
        "factor wrong rows",
        LGSSM,
        _log_prob(transition_cov=None, transition_cov_factor=jnp.ones((3, 1))),
        raises(ValueError, "`transition_cov_factor` must have shape"),
    ),
    Case(
        "factor nan",
        LGSSM,
        _log_prob(initial_cov=None, initial_cov_factor=jnp.full((2, 2), jnp.nan)),
        raises(ValueError, "`initial_cov_factor` contains non-finite"),
    ),
    Case(
        "initial_mean wrong length",
        LGSSM,
        _log_prob(initial_mean=jnp.zeros(3)),
        raises(ValueError, "`initial_mean` must have shape.*`transition_matrix`"),
    ),
    Case(
        "transition_matrix not square",
        LGSSM,
        _log_prob(transition_matrix=jnp.ones((2, 3))),
        raises(ValueError, "`transition_matrix` must have shape"),
    ),
    Case(
        "observation_matrix wrong d",
        LGSSM,
        _log_prob(observation_matrix=jnp.ones((1, 3))),
        raises(ValueError, "`observation_matrix` must have shape"),
    ),
    Case(
        "time axis mismatch",
        LGSSM,
        _log_prob(transition_cov=jnp.broadcast_to(jnp.eye(2), (4, 2, 2))),
        raises(ValueError, "`transition_cov` has a time axis of length 4"),
    ),
    Case(
        "batched parameter",
        LGSSM,
        _log_prob(transition_matrix=jnp.ones((3, T, 2, 2))),
        raises(ValueError, "`transition_matrix` must have shape"),
    ),
    Case(
        "num_steps zero",
        LGSSM,
        _log_prob(num_steps=0),
        raises(ValueError, "`num_steps` must be an integer >= 1"),
    ),
    Case("num_steps negative", LGSSM, _log_prob(num_steps=-3), raises(ValueError, "`num_steps`")),
    Case(
        "scalar model, matrix argument",
        LGSSM,
        lambda: LinearGaussianSSM(0.0, 1.0, jnp.eye(2), 1.0, 1.0, 1.0, num_steps=4),
        raises(ValueError, "`transition_matrix`"),
    ),
    Case(
        "scalar model, vector initial_cov",
        LGSSM,
        lambda: LinearGaussianSSM(0.0, jnp.ones(4), 1.0, 1.0, 1.0, 1.0, num_steps=4),
        raises(ValueError, "`initial_cov`"),
    ),
    Case(
        "scalar model, (T, 1) data",
        LGSSM,
        lambda: LinearGaussianSSM(0.0, 1.0, 1.0, 1.0, 1.0, 1.0, num_steps=4).log_prob(
            jnp.ones((4, 1))
        ),
        raises(ValueError, "`y`"),
    ),
    Case(
        "scalar model, negative variance",
        LGSSM,
        lambda: LinearGaussianSSM(0.0, 1.0, 1.0, -1.0, 1.0, 1.0, num_steps=4),
        raises(ValueError, "`transition_cov`"),
    ),
    Case(
        "num_steps float",
        LGSSM,
        _log_prob(num_steps=5.0),
        raises(TypeError, "`num_steps` must be a Python int"),
    ),
    Case("num_steps bool", LGSSM, _log_prob(num_steps=True), raises(TypeError, "`num_steps`")),
    Case(
        "num_steps missing",
        LGSSM,
        _log_prob(num_steps=None),
        raises(ValueError, "`num_steps` is required"),
    ),
    Case(
        "complex parameter",
        LGSSM,
        _log_prob(initial_mean=jnp.zeros(2, jnp.complex64)),
        raises(TypeError, "`initial_mean` must be a real"),
    ),
    Case(
        "missing transition_matrix",
        LGSSM,
        _log_prob(transition_matrix=None),
        raises(TypeError, "`transition_matrix` is required"),
    ),
    Case(
        "y wrong shape",
        LGSSM,
        lambda: _ssm().log_prob(jnp.zeros((T + 1, 1))),
        raises(ValueError, "`y` must have shape"),
    ),
    Case(
        "y inf",
        LGSSM,
        lambda: _ssm().log_prob(Y.at[2, 0].set(jnp.inf)),
        raises(ValueError, "`y` contains inf"),
    ),
    Case(
        "jit y inf",
        LGSSM,
        lambda: jax.jit(_ssm().log_prob)(Y.at[2, 0].set(-jnp.inf)),
        returns(is_nan),
    ),
    Case(
        "y nan is missing",
        LGSSM,
        lambda: _ssm().log_prob(Y.at[2, 0].set(jnp.nan)),
        returns(lambda v: np.isfinite(v)),
    ),
    Case(
        "float32 params, float64 y",
        LGSSM,
        lambda: LinearGaussianSSM(
            **{
                k: (jnp.asarray(v, jnp.float32) if k != "num_steps" else v)
                for k, v in _args().items()
            }
        ).log_prob(Y),
        returns(lambda v: v.dtype == jnp.float32 and np.isfinite(v)),
    ),
    Case(
        "integer parameters",
        LGSSM,
        lambda: _ssm(transition_matrix=jnp.eye(2, dtype=int)).log_prob(Y),
        returns(lambda v: np.isfinite(v)),
    ),
    # ------------------------------------------------------------ functional Kalman API
    Case(
        "not params",
        SSM + "kalman_predictions",
        lambda: kalman_predictions({"a": 1}, Y),
        raises(TypeError, "`params` must be a GaussianSSMParams"),
    ),
    Case(
        "y wrong shape",
        SSM + "kalman_predictions",
        lambda: kalman_predictions(_params(), Y[:-1]),
        raises(ValueError, "`y` must have shape"),
    ),
    Case(
        "jit nan params",
        SSM + "kalman_predictions",
        lambda: jax.jit(lambda m: kalman_predictions(_params(initial_mean=m), Y).mean)(
            jnp.full(2, jnp.nan)
        ),
        returns(lambda v: bool(np.all(np.isnan(v)))),
    ),
    Case(
        "not params",
        SSM + "kalman_log_likelihood_terms",
        lambda: kalman_log_likelihood_terms({"a": 1}, Y),
        raises(TypeError, "`params` must be a GaussianSSMParams"),
    ),
    Case(
        "y wrong shape",
        SSM + "kalman_log_likelihood_terms",
        lambda: kalman_log_likelihood_terms(_params(), Y[:-1]),
        raises(ValueError, "`y` must have shape"),
    ),
    Case(
        "y inf",
        SSM + "kalman_log_likelihood_terms",
        lambda: kalman_log_likelihood_terms(_params(), Y.at[0, 0].set(jnp.inf)),
        raises(ValueError, "`y` contains inf"),
    ),
    Case(
        "params not expanded",
        SSM + "kalman_log_likelihood_terms",
        lambda: kalman_log_likelihood_terms(_params(transition_matrix=jnp.eye(2)), Y),
        raises(ValueError, "`params.transition_matrix` must have shape.*time axis"),
    ),
    Case(
        "jit nan factor, covariance form",
        SSM + "kalman_log_likelihood_terms",
        lambda: jax.jit(
            lambda c: kalman_log_likelihood_terms(
                _params(transition_chol=c), Y, strategy=strategy.Sequential(square_root=False)
            )
        )(jnp.full((T, 2, 2), jnp.nan)),
        returns(is_nan),
    ),
    Case(
        "jit y inf, covariance form",
        SSM + "kalman_log_likelihood_terms",
        lambda: jax.jit(
            lambda y: kalman_log_likelihood_terms(
                _params(), y, strategy=strategy.Sequential(square_root=False)
            )
        )(Y.at[1, 0].set(jnp.inf)),
        returns(is_nan),
    ),
    Case(
        "params not expanded",
        SSM + "kalman_filter",
        lambda: kalman_filter(_params(transition_matrix=jnp.eye(2)), Y),
        raises(ValueError, "`params.transition_matrix` must have shape.*time axis"),
    ),
    Case(
        "observation_matrix not expanded",
        SSM + "kalman_filter",
        lambda: kalman_filter(_params(observation_matrix=jnp.ones((1, 2))), Y),
        raises(ValueError, "`params.observation_matrix` must have shape \\(T, p, d\\)"),
    ),
    Case(
        "not params",
        SSM + "kalman_filter",
        lambda: kalman_filter({"a": 1}, Y),
        raises(TypeError, "`params` must be a GaussianSSMParams"),
    ),
    Case(
        "y wrong shape",
        SSM + "kalman_filter",
        lambda: kalman_filter(_params(), Y[:-1]),
        raises(ValueError, "`y` must have shape"),
    ),
    Case(
        "y inf",
        SSM + "kalman_filter",
        lambda: kalman_filter(_params(), Y.at[0, 0].set(jnp.inf)),
        raises(ValueError, "`y` contains inf"),
    ),
    Case(
        "nan factor",
        SSM + "kalman_filter",
        lambda: kalman_filter(_params(transition_chol=jnp.full((T, 2, 2), jnp.nan)), Y),
        raises(ValueError, "`params.transition_chol` contains non-finite"),
    ),
    Case(
        "jit nan factor",
        SSM + "kalman_filter",
        _jit_filter("transition_chol", jnp.full((T, 2, 2), jnp.nan)),
        returns(is_nan),
    ),
    Case(
        "jit nan initial factor",
        SSM + "kalman_filter",
        _jit_filter("initial_chol", jnp.full((2, 2), jnp.nan)),
        returns(is_nan),
    ),
    Case(
        "jit y inf",
        SSM + "kalman_filter",
        lambda: jax.jit(lambda y: kalman_filter(_params(), y).log_likelihood)(
            Y.at[1, 0].set(jnp.inf)
        ),
        returns(is_nan),
    ),
    Case(
        "T = 0",
        SSM + "kalman_filter",
        lambda: kalman_filter(
            jax.tree_util.tree_map(
                lambda a: a[:0] if a.ndim > 1 or a.shape[0] == T else a, _params()
            ),
            Y[:0],
        ),
        raises(ValueError, "T >= 1"),
    ),
    Case(
        "float32 params, float64 y",
        SSM + "kalman_filter",
        lambda: kalman_filter(
            jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), _params()), Y
        ),
        returns(lambda r: r.log_likelihood.dtype == jnp.float32 and np.isfinite(r.log_likelihood)),
    ),
    Case(
        "params not expanded",
        SSM + "kalman_smoother",
        lambda: kalman_smoother(_params(observation_offset=jnp.zeros(1)), Y),
        raises(ValueError, "`params.observation_offset` must have shape"),
    ),
    Case(
        "jit nan factor",
        SSM + "kalman_smoother",
        lambda: jax.jit(lambda v: kalman_smoother(_params(observation_chol=v), Y).mean)(
            jnp.full((T, 1, 1), jnp.nan)
        ),
        returns(is_nan),
    ),
    Case(
        "negative sample_shape",
        LGSSM,
        lambda: _ssm().sample(KEY, (-1,)),
        raises(ValueError, "`sample_shape`"),
    ),
    Case(
        "negative sample_shape states",
        LGSSM,
        lambda: _ssm().sample_states(KEY, Y, (2, -1)),
        raises(ValueError, "`sample_shape`"),
    ),
    Case(
        "float sample_shape",
        LGSSM,
        lambda: _ssm().sample_with_states(KEY, 2.0),
        raises(TypeError, "`sample_shape`"),
    ),
    Case(
        "int sample_shape",
        LGSSM,
        lambda: (_ssm().sample(KEY, 3), _ssm().sample_states(KEY, Y, 3)),
        returns(lambda r: r[0].shape == (3, T, 1) and r[1].shape == (3, T, 2)),
    ),
    Case(
        "params not expanded",
        SSM + "kalman_sample_states",
        lambda: kalman_sample_states(KEY, _params(transition_chol=jnp.eye(2)), Y),
        raises(ValueError, "`params.transition_chol` must have shape"),
    ),
    Case(
        "bad sample_shape",
        SSM + "kalman_sample_states",
        lambda: kalman_sample_states(KEY, _params(), Y, (2.5,)),
        raises(TypeError, "`sample_shape`"),
    ),
    Case(
        "jit nan factor",
        SSM + "kalman_sample_states",
        lambda: jax.jit(lambda v: kalman_sample_states(KEY, _params(initial_chol=v), Y))(
            jnp.full((2, 2), jnp.nan)
        ),
        returns(is_nan),
    ),
    # ------------------------------------------------------------ linalg
    Case(
        "not square",
        LIN + "cholesky_of",
        lambda: linalg.cholesky_of(jnp.ones((2, 3))),
        raises(ValueError, "`cov` must be a square matrix"),
    ),
    Case("indefinite", LIN + "cholesky_of", lambda: linalg.cholesky_of(INDEF), returns(is_nan)),
    Case("asymmetric", LIN + "cholesky_of", lambda: linalg.cholesky_of(ASYM), returns(is_nan)),
    Case(
        "jit nan",
        LIN + "cholesky_of",
        lambda: jax.jit(linalg.cholesky_of)(NAN_COV),
        returns(is_nan),
    ),
    Case(
        "jit negative definite",
        LIN + "cholesky_of",
        lambda: jax.jit(linalg.cholesky_of)(-jnp.eye(3)),
        returns(is_nan),
    ),
    Case(
        "not square",
        LIN + "cholesky",
        lambda: linalg.cholesky(jnp.ones((2, 3))),
        raises(ValueError, "`a` must be a square matrix"),
    ),
    Case(
        "jit indefinite",
        LIN + "cholesky",
        lambda: jax.jit(linalg.cholesky)(-jnp.eye(2)),
        returns(lambda out: np.isnan(out).any()),
    ),
    Case(
        "vector",
        LIN + "tria",
        lambda: linalg.tria(jnp.ones(3)),
        raises(ValueError, "`m` must be a matrix"),
    ),
    Case(
        "jit nan",
        LIN + "tria",
        lambda: jax.jit(linalg.tria)(jnp.ones((2, 2)).at[0, 1].set(jnp.nan)),
        returns(is_nan),
    ),
    Case(
        "not square",
        LIN + "symmetrize",
        lambda: linalg.symmetrize(jnp.ones((2, 3))),
        raises(ValueError, "`a` must be a square matrix"),
    ),
    Case(
        "not square",
        LIN + "solve_lower",
        lambda: linalg.solve_lower(jnp.ones((2, 3)), jnp.ones(2)),
        raises(ValueError, "`lower` must be a square matrix"),
    ),
    Case(
        "b mismatch",
        LIN + "solve_lower",
        lambda: linalg.solve_lower(jnp.eye(2), jnp.ones(3)),
        raises(ValueError, "`b` of shape"),
    ),
    Case(
        "b mismatch",
        LIN + "right_solve_lower",
        lambda: linalg.right_solve_lower(jnp.ones((2, 3)), jnp.eye(2)),
        raises(ValueError, "`b` of shape"),
    ),
    Case(
        "residual mismatch",
        LIN + "mvn_logpdf_from_cholesky",
        lambda: linalg.mvn_logpdf_from_cholesky(jnp.ones(3), jnp.eye(2)),
        raises(ValueError, "`residual` of shape"),
    ),
    Case(
        "jit nan chol",
        LIN + "mvn_logpdf_from_cholesky",
        lambda: jax.jit(linalg.mvn_logpdf_from_cholesky)(jnp.ones(2), jnp.full((2, 2), jnp.nan)),
        returns(is_nan),
    ),
    Case(
        "jit nan",
        LIN + "psd_projection_factor",
        lambda: jax.jit(linalg.psd_projection_factor)(NAN_COV),
        returns(is_nan),
    ),
    Case(
        "not square",
        LIN + "psd_projection_factor",
        lambda: linalg.psd_projection_factor(jnp.ones(3)),
        raises(ValueError, "`cov` must be a square matrix"),
    ),
    # ------------------------------------------------------------ scan
    Case(
        "T = 0",
        SCAN + "associative_scan",
        lambda: scan.associative_scan(jnp.add, jnp.zeros((0, 2)), strategy="sequential"),
        raises(ValueError, "`elements` must have a time axis of length T >= 1"),
    ),
    Case(
        "T = 0 blocked",
        SCAN + "associative_scan",
        lambda: scan.associative_scan(jnp.add, jnp.zeros((0, 2)), strategy=Blocked(4)),
        raises(ValueError, "T >= 1"),
    ),
    Case(
        "ragged time axes",
        SCAN + "associative_scan",
        lambda: scan.associative_scan(jnp.add, (jnp.zeros(3), jnp.zeros(4))),
        raises(ValueError, "same leading"),
    ),
    Case(
        "unknown strategy name",
        SCAN + "associative_scan",
        lambda: scan.associative_scan(jnp.add, jnp.zeros(4), strategy="parallel"),
        raises(ValueError, "`strategy` must be one of"),
    ),
    Case(
        "bool strategy",
        SCAN + "associative_scan",
        lambda: scan.associative_scan(jnp.add, jnp.zeros(4), strategy=True),
        raises(TypeError, "`strategy` must be Sequential"),
    ),
    Case(
        "combine not callable",
        SCAN + "associative_scan",
        lambda: scan.associative_scan(3, jnp.zeros(4)),
        raises(TypeError, "`combine` must be callable"),
    ),
    Case(
        "T = 0",
        SCAN + "affine_recursion",
        lambda: scan.affine_recursion(jnp.zeros((0, 2, 2)), jnp.zeros((0, 2)), jnp.zeros(2)),
        raises(ValueError, "`offsets` must have shape \\(T, d\\) with T >= 1"),
    ),
    Case(
        "initial_state mismatch",
        SCAN + "affine_recursion",
        lambda: scan.affine_recursion(jnp.zeros((3, 2, 2)), jnp.zeros((3, 2)), jnp.zeros(3)),
        raises(ValueError, "`initial_state`"),
    ),
    Case(
        "matrices mismatch",
        SCAN + "affine_recursion",
        lambda: scan.affine_recursion(jnp.zeros((3, 2)), jnp.zeros((3, 2)), jnp.zeros(2)),
        raises(ValueError, "`matrices` must have shape"),
    ),
    Case(
        "unknown strategy",
        SCAN + "affine_recursion",
        lambda: scan.affine_recursion(
            jnp.zeros((3, 2, 2)), jnp.zeros((3, 2)), jnp.zeros(2), strategy="tree"
        ),
        raises(ValueError, "`strategy`"),
    ),
    # ------------------------------------------------------------ strategy
    Case(
        "zero block_size",
        STRATEGY + "Blocked",
        lambda: strategy.Blocked(0),
        raises(ValueError, "`Blocked.block_size` must be a positive int"),
    ),
    Case(
        "bool block_size",
        STRATEGY + "Blocked",
        lambda: strategy.Blocked(True),
        raises(ValueError, "`Blocked.block_size`"),
    ),
    Case(
        "float block_size",
        STRATEGY + "Blocked",
        lambda: strategy.Blocked(2.5),
        raises(ValueError, "`Blocked.block_size`"),
    ),
    Case(
        "mesh not a Mesh",
        STRATEGY + "Sharded",
        lambda: strategy.Sharded(mesh="gpu"),
        raises(TypeError, "`Sharded.mesh` must be a jax.sharding.Mesh"),
    ),
    Case(
        "axis not in the mesh",
        STRATEGY + "Sharded",
        lambda: strategy.Sharded(jax.make_mesh((1,), ("batch",)), axis_name="time"),
        raises(ValueError, "`Sharded.axis_name` 'time' is not an axis"),
    ),
    Case(
        "nested Sharded",
        STRATEGY + "Sharded",
        lambda: strategy.Sharded(inner=strategy.Sharded()),
        raises(ValueError, "`Sharded.inner` must be a single-device strategy"),
    ),
    Case(
        "unknown inner name",
        STRATEGY + "Sharded",
        lambda: strategy.Sharded(inner="tree"),
        raises(ValueError, "`strategy` must be one of"),
    ),
    Case(
        "square_root not a bool",
        STRATEGY + "Sequential",
        lambda: strategy.Sequential(1),
        raises(TypeError, "`Sequential.square_root` must be a bool; got int"),
    ),
    Case(
        "two arguments",
        STRATEGY + "Sequential",
        lambda: strategy.Sequential(True, 2),
        raises(TypeError, "argument"),
    ),
    Case(
        "no arguments",
        STRATEGY + "Associative",
        lambda: strategy.Associative(block_size=2),
        raises(TypeError, "argument"),
    ),
    Case(
        "unknown name",
        STRATEGY + "as_strategy",
        lambda: strategy.as_strategy("parallel"),
        raises(ValueError, "`strategy` must be one of 'sequential', 'associative'"),
    ),
    Case(
        "bool",
        STRATEGY + "as_strategy",
        lambda: strategy.as_strategy(False),
        raises(TypeError, "`strategy` must be Sequential\\(\\), Associative\\(\\)"),
    ),
    Case(
        "int",
        STRATEGY + "resolve_strategy",
        lambda: strategy.resolve_strategy(3, jnp.zeros(2)),
        raises(TypeError, "`strategy`"),
    ),
    Case(
        "unknown name",
        STRATEGY + "resolve_strategy",
        lambda: strategy.resolve_strategy("blockwise", jnp.zeros(2)),
        raises(ValueError, "`strategy`"),
    ),
]


@pytest.mark.parametrize("case", case_params(CASES))
def test_contract(case):
    run_case(case)


def test_gaussian_ssm_params_is_a_plain_container():
    # GaussianSSMParams holds arrays; the functions that use it validate it.
    params = GaussianSSMParams(*_ssm().params)
    assert np.isfinite(kalman_filter(params, Y).log_likelihood)
