"""Bad-input matrix for the nonlinear state-space models (numpyro_parallel.ssm, nonlinear part)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel.ssm.nonlinear.distribution import NonlinearGaussianSSM
from numpyro_parallel.ssm.nonlinear.linearize import AffineGaussian, linearize
from numpyro_parallel.ssm.nonlinear.sigma_points import SigmaPoints, cubature_points
from numpyro_parallel.ssm.nonlinear.smoother import (
    IteratedSmootherResult,
    NonlinearGaussianModel,
    iterated_smoother,
)
from tests.contract.matrix import Case, case_params, is_nan, raises, returns, run_case

SSM = "numpyro_parallel.ssm.NonlinearGaussianSSM"
MODEL = "numpyro_parallel.ssm.NonlinearGaussianModel"
SMOOTHER = "numpyro_parallel.ssm.iterated_smoother"
RESULT = "numpyro_parallel.ssm.IteratedSmootherResult"
LINEARIZE = "numpyro_parallel.ssm.linearize"
AFFINE = "numpyro_parallel.ssm.AffineGaussian"
SIGMA = "numpyro_parallel.ssm.SigmaPoints"

T = 6
NAN = float("nan")


def f(x):
    return jnp.stack([x[0] + 0.1 * x[1], x[1] - 0.1 * jnp.sin(x[0])])


def h(x):
    return jnp.sin(x[:1])


M0 = jnp.array([0.5, 0.0])
P0 = 0.1 * jnp.eye(2)
Q = 0.01 * jnp.eye(2)
R = 0.1 * jnp.eye(1)
Y = jnp.asarray(np.sin(0.5 + 0.05 * np.arange(T))[:, None])
ASYMMETRIC = jnp.array([[1.0, 0.5], [0.0, 1.0]])
INDEFINITE = jnp.array([[1.0, 2.0], [2.0, 1.0]])


def ssm(**overrides):
    # Sequential scans and no unrolled gradient step keep compilation short; the parallel path
    # is exercised by the `strategy="associative"` cases below.
    args = dict(
        initial_mean=M0,
        initial_cov=P0,
        transition_fn=f,
        transition_cov=Q,
        observation_fn=h,
        observation_cov=R,
        num_steps=T,
        strategy="sequential",
        gradient_steps=0,
    )
    args.update(overrides)
    return NonlinearGaussianSSM(**args)


def model(**overrides):
    base = NonlinearGaussianModel(
        M0, jnp.sqrt(0.1) * jnp.eye(2), f, 0.1 * jnp.eye(2), h, jnp.sqrt(0.1) * jnp.eye(1)
    )
    return base._replace(**overrides)


@jax.jit
def _jit_log_prob(initial_mean, initial_cov, transition_cov, observation_cov, y):
    return ssm(
        initial_mean=initial_mean,
        initial_cov=initial_cov,
        transition_cov=transition_cov,
        observation_cov=observation_cov,
    ).log_prob(y)


def jit_log_prob(initial_mean=M0, initial_cov=P0, transition_cov=Q, observation_cov=R, y=Y):
    """log_prob with every array argument a tracer (one compilation for all cases)."""
    return _jit_log_prob(initial_mean, initial_cov, transition_cov, observation_cov, y)


@jax.jit
def _jit_smooth(initial_mean, initial_chol, y):
    return iterated_smoother(
        model(initial_mean=initial_mean, initial_chol=initial_chol), y, strategy="sequential"
    )


def jit_smooth(initial_mean=M0, initial_chol=model().initial_chol, y=Y):
    """iterated_smoother with the model's mean and initial factor as tracers."""
    return _jit_smooth(initial_mean, initial_chol, y)


def not_converged(result):
    return not bool(np.any(result.converged))


def nan_affine(lin):
    """A NaN approximation (Jacobian entries that do not depend on the point stay finite)."""
    return isinstance(lin, AffineGaussian) and is_nan(lin.offset) and np.isnan(lin.matrix).any()


def case(name, entry_point, call, expect, slow=False):
    return Case(name, entry_point, call, expect, slow)


def bad_rule(**overrides):
    rule = cubature_points(2)._replace(**overrides)
    return lambda: linearize(h, M0, jnp.eye(2), rule)


CASES = [
    # --- NonlinearGaussianSSM: covariances ------------------------------------------------
    case("nan-initial-cov", SSM, lambda: ssm(initial_cov=P0.at[0, 0].set(NAN)),
         raises(ValueError, "`initial_cov`.*non-finite")),
    case("nan-transition-cov", SSM, lambda: ssm(transition_cov=Q.at[0, 1].set(NAN)),
         raises(ValueError, "`transition_cov`.*non-finite")),
    case("asymmetric-transition-cov", SSM, lambda: ssm(transition_cov=ASYMMETRIC),
         raises(ValueError, "`transition_cov` must be symmetric")),
    case("indefinite-transition-cov", SSM, lambda: ssm(transition_cov=INDEFINITE),
         raises(ValueError, "`transition_cov` must be positive semi-definite")),
    case("negative-observation-cov", SSM, lambda: ssm(observation_cov=-R),
         raises(ValueError, "`observation_cov` must be positive semi-definite")),
    case("indefinite-initial-cov", SSM, lambda: ssm(initial_cov=INDEFINITE),
         raises(ValueError, "`initial_cov` must be positive semi-definite")),
    case("wrong-shape-initial-cov", SSM, lambda: ssm(initial_cov=jnp.eye(3)),
         raises(ValueError, "`initial_cov` must have shape")),
    case("wrong-shape-transition-cov", SSM, lambda: ssm(transition_cov=jnp.eye(3)),
         raises(ValueError, "`transition_cov` must have shape")),
    case("wrong-shape-observation-cov", SSM, lambda: ssm(observation_cov=jnp.eye(2)),
         raises(ValueError, "`observation_cov` must have shape")),
    case("int-covariances-cast", SSM,
         lambda: ssm(initial_cov=jnp.eye(2, dtype=int), transition_cov=jnp.eye(2, dtype=int),
                     observation_cov=jnp.eye(1, dtype=int)),
         returns(lambda d: all(jnp.issubdtype(c.dtype, jnp.floating)
                               for c in (d.initial_cov, d.transition_cov, d.observation_cov)))),
    case("int-covariances-log-prob", SSM,
         lambda: ssm(initial_cov=jnp.eye(2, dtype=int), observation_cov=jnp.eye(1, dtype=int))
         .log_prob(Y) - ssm(initial_cov=jnp.eye(2), observation_cov=jnp.eye(1)).log_prob(Y),
         returns(lambda diff: diff == 0.0)),
    # --- NonlinearGaussianSSM: means, functions, sizes ------------------------------------
    case("nan-initial-mean", SSM, lambda: ssm(initial_mean=jnp.array([NAN, 0.0])),
         raises(ValueError, "`initial_mean`.*non-finite")),
    case("inf-initial-mean", SSM, lambda: ssm(initial_mean=jnp.array([jnp.inf, 0.0])),
         raises(ValueError, "`initial_mean`.*non-finite")),
    case("matrix-initial-mean", SSM, lambda: ssm(initial_mean=jnp.zeros((2, 2))),
         raises(ValueError, "`initial_mean` must have shape")),
    case("transition-fn-wrong-output", SSM, lambda: ssm(transition_fn=lambda x: x[:1]),
         raises(ValueError, r"`transition_fn` returns shape \(1,\); expected \(d,\) = \(2,\)")),
    case("observation-fn-scalar-output", SSM, lambda: ssm(observation_fn=lambda x: x[0]),
         raises(ValueError, r"`observation_fn` returns shape \(\)")),
    case("transition-fn-not-callable", SSM, lambda: ssm(transition_fn=Q),
         raises(TypeError, "`transition_fn` must be a callable")),
    case("observation-fn-not-callable", SSM, lambda: ssm(observation_fn="sin"),
         raises(TypeError, "`observation_fn` must be a callable")),
    case("transition-fn-fails", SSM, lambda: ssm(transition_fn=lambda x: x @ jnp.ones((3, 2))),
         raises(ValueError, "`transition_fn` failed")),
    case("zero-steps", SSM, lambda: ssm(num_steps=0), raises(ValueError, "`num_steps`")),
    case("float-steps", SSM, lambda: ssm(num_steps=2.5), raises(TypeError, "`num_steps`")),
    # --- NonlinearGaussianSSM: options -----------------------------------------------------
    case("unknown-method", SSM, lambda: ssm(method="ukf"), raises(ValueError, "`method`")),
    case("unknown-start", SSM, lambda: ssm(initial_trajectory="zero"),
         raises(ValueError, "`initial_trajectory`")),
    case("array-start", SSM, lambda: ssm(initial_trajectory=jnp.zeros((T, 2))),
         raises(TypeError, "`initial_trajectory`")),
    case("zero-max-iterations", SSM, lambda: ssm(max_iterations=0),
         raises(ValueError, "`max_iterations`")),
    case("float-max-iterations", SSM, lambda: ssm(max_iterations=1.5),
         raises(TypeError, "`max_iterations`")),
    case("negative-atol", SSM, lambda: ssm(atol=-1e-6), raises(ValueError, "`atol`")),
    case("nan-atol", SSM, lambda: ssm(atol=NAN), raises(ValueError, "`atol`")),
    case("zero-damping", SSM, lambda: ssm(damping=0.0), raises(ValueError, "`damping`")),
    case("negative-gradient-steps", SSM, lambda: ssm(gradient_steps=-1),
         raises(ValueError, "`gradient_steps`")),
    case("zero-order", SSM, lambda: ssm(order=0), raises(ValueError, "`order`")),
    # --- NonlinearGaussianSSM: observations and outcomes ----------------------------------
    case("y-wrong-shape", SSM, lambda: ssm().log_prob(jnp.zeros((T + 1, 1))),
         raises(ValueError, "`y` must have shape")),
    case("y-vector", SSM, lambda: ssm().log_prob(jnp.zeros(T)),
         raises(ValueError, "`y` must have shape")),
    case("y-inf", SSM, lambda: ssm().log_prob(Y.at[2, 0].set(jnp.inf)),
         raises(ValueError, "`y` contains infinite")),
    case("not-converged-log-prob", SSM,
         lambda: ssm(max_iterations=1, atol=1e-14).log_prob(Y),
         returns(is_nan, warns=RuntimeWarning)),
    case("not-converged-sample-states", SSM,
         lambda: ssm(max_iterations=1, atol=1e-14).sample_states(jax.random.key(0), Y, (2,)),
         returns(is_nan, warns=RuntimeWarning)),
    case("negative-sample-shape", SSM, lambda: ssm().sample(jax.random.key(0), (-1,)),
         raises(ValueError, "`sample_shape`")),
    case("negative-sample-shape-simulate", SSM, lambda: ssm().simulate(jax.random.key(0), -2),
         raises(ValueError, "`sample_shape`")),
    case("negative-sample-shape-states", SSM,
         lambda: ssm().sample_states(jax.random.key(0), Y, (-1,)),
         raises(ValueError, "`sample_shape`")),
    case("int-sample-shape", SSM,
         lambda: (ssm().sample(jax.random.key(0), 3),
                  ssm().sample_states(jax.random.key(0), Y, 3)),
         returns(lambda r: r[0].shape == (3, T, 1) and r[1].shape == (3, T, 2))),
    case("jit-nan-initial-mean", SSM, lambda: jit_log_prob(initial_mean=jnp.array([NAN, 0.0])),
         returns(is_nan)),
    case("jit-nan-transition-cov", SSM, lambda: jit_log_prob(transition_cov=Q.at[0, 0].set(NAN)),
         returns(is_nan)),
    case("jit-nan-observation-cov", SSM, lambda: jit_log_prob(observation_cov=R * NAN),
         returns(is_nan)),
    case("jit-indefinite-transition-cov", SSM, lambda: jit_log_prob(transition_cov=INDEFINITE),
         returns(is_nan)),
    case("jit-asymmetric-initial-cov", SSM, lambda: jit_log_prob(initial_cov=ASYMMETRIC),
         returns(is_nan)),
    case("jit-inf-y", SSM, lambda: jit_log_prob(y=Y.at[2, 0].set(jnp.inf)), returns(is_nan)),
    case("jit-nan-initial-mean-parallel", SSM,
         lambda: jax.jit(
             lambda m: ssm(initial_mean=m, strategy="associative").log_prob(Y))(M0 * NAN),
         returns(is_nan), slow=True),
    # --- NonlinearGaussianModel (through iterated_smoother) -------------------------------
    case("nan-initial-chol", MODEL,
         lambda: iterated_smoother(model(initial_chol=jnp.eye(2) * NAN), Y),
         raises(ValueError, "`initial_chol`.*non-finite")),
    case("wrong-shape-transition-chol", MODEL,
         lambda: iterated_smoother(model(transition_chol=jnp.eye(3)), Y),
         raises(ValueError, "`transition_chol` must have shape")),
    case("inf-observation-chol", MODEL,
         lambda: iterated_smoother(model(observation_chol=jnp.eye(1) * jnp.inf), Y),
         raises(ValueError, "`observation_chol`.*non-finite")),
    case("nan-initial-mean", MODEL,
         lambda: iterated_smoother(model(initial_mean=jnp.array([0.0, NAN])), Y),
         raises(ValueError, "`initial_mean`.*non-finite")),
    case("transition-fn-wrong-output", MODEL,
         lambda: iterated_smoother(model(transition_fn=lambda x: jnp.concatenate([x, x])), Y),
         raises(ValueError, r"`transition_fn` returns shape \(4,\); expected")),
    case("observation-fn-not-callable", MODEL,
         lambda: iterated_smoother(model(observation_fn=None), Y),
         raises(TypeError, "`observation_fn` must be a callable")),
    case("jit-nan-initial-chol", MODEL, lambda: jit_smooth(initial_chol=jnp.eye(2) * NAN),
         returns(lambda r: not_converged(r) and is_nan(r.mean))),
    # --- iterated_smoother ----------------------------------------------------------------
    case("y-wrong-p", SMOOTHER, lambda: iterated_smoother(model(), jnp.zeros((T, 2))),
         raises(ValueError, "`y` must have shape")),
    case("y-vector", SMOOTHER, lambda: iterated_smoother(model(), jnp.zeros(T)),
         raises(ValueError, "`y` must have shape")),
    case("y-empty", SMOOTHER, lambda: iterated_smoother(model(), jnp.zeros((0, 1))),
         raises(ValueError, "`y` must have at least one time step")),
    case("y-inf", SMOOTHER, lambda: iterated_smoother(model(), Y.at[0, 0].set(-jnp.inf)),
         raises(ValueError, "`y` contains infinite")),
    case("unknown-method", SMOOTHER, lambda: iterated_smoother(model(), Y, method="ekf"),
         raises(ValueError, "`method`")),
    case("unknown-start", SMOOTHER,
         lambda: iterated_smoother(model(), Y, initial_trajectory="smoother"),
         raises(ValueError, "`initial_trajectory`")),
    case("wrong-shape-start", SMOOTHER,
         lambda: iterated_smoother(model(), Y, initial_trajectory=jnp.zeros((T - 1, 2))),
         raises(ValueError, "`initial_trajectory`")),
    case("nan-start", SMOOTHER,
         lambda: iterated_smoother(model(), Y, initial_trajectory=jnp.full((T, 2), NAN)),
         raises(ValueError, "`initial_trajectory`.*non-finite")),
    case("zero-max-iterations", SMOOTHER, lambda: iterated_smoother(model(), Y, max_iterations=0),
         raises(ValueError, "`max_iterations`")),
    case("negative-atol", SMOOTHER, lambda: iterated_smoother(model(), Y, atol=-1.0),
         raises(ValueError, "`atol`")),
    case("inf-damping", SMOOTHER, lambda: iterated_smoother(model(), Y, damping=jnp.inf),
         raises(ValueError, "`damping`")),
    case("not-converged", SMOOTHER,
         lambda: iterated_smoother(model(), Y, max_iterations=1, atol=1e-14, strategy="sequential"),
         returns(not_converged, warns=RuntimeWarning)),
    case("jit-inf-y", SMOOTHER, lambda: jit_smooth(y=Y.at[1, 0].set(jnp.inf)),
         returns(lambda r: not_converged(r) and is_nan(r.residual))),
    # --- IteratedSmootherResult: the flags ------------------------------------------------
    case("jit-nan-mean-flags", RESULT,
         lambda: jit_smooth(initial_mean=jnp.array([NAN, 0.0])),
         returns(lambda r: isinstance(r, IteratedSmootherResult) and not_converged(r)
                 and is_nan(r.residual) and int(r.num_iterations) == 0 and is_nan(r.mean))),
    # --- linearize ------------------------------------------------------------------------
    case("fn-not-callable", LINEARIZE, lambda: linearize(None, M0, jnp.eye(2)),
         raises(TypeError, "`fn` must be a callable")),
    case("fn-scalar-output", LINEARIZE, lambda: linearize(lambda x: x[0], M0, jnp.eye(2)),
         raises(ValueError, "`fn` must return a vector")),
    case("matrix-mean", LINEARIZE, lambda: linearize(h, jnp.zeros((2, 2)), jnp.eye(2)),
         raises(ValueError, "`mean` must have shape")),
    case("nan-mean", LINEARIZE, lambda: linearize(h, jnp.array([NAN, 0.0]), jnp.eye(2)),
         raises(ValueError, "`mean`.*non-finite")),
    case("wrong-shape-chol", LINEARIZE, lambda: linearize(h, M0, jnp.eye(3), "cubature"),
         raises(ValueError, "`chol` must have shape")),
    case("nan-chol", LINEARIZE, lambda: linearize(h, M0, jnp.eye(2) * NAN, "unscented"),
         raises(ValueError, "`chol`.*non-finite")),
    case("unknown-method", LINEARIZE, lambda: linearize(h, M0, jnp.eye(2), "ukf"),
         raises(ValueError, "`method`")),
    case("zero-order", LINEARIZE, lambda: linearize(h, M0, jnp.eye(2), "gauss_hermite", 0),
         raises(ValueError, "`order`")),
    case("jit-nan-mean", LINEARIZE,
         lambda: jax.jit(lambda m: linearize(h, m, jnp.eye(2), "cubature"))(M0 * NAN),
         returns(nan_affine)),
    # --- AffineGaussian: a NaN point gives a NaN approximation ----------------------------
    case("jit-nan-mean-extended", AFFINE,
         lambda: jax.jit(lambda m: linearize(f, m, None))(M0 * NAN), returns(nan_affine)),
    case("jit-nan-chol-slr", AFFINE,
         lambda: jax.jit(lambda c: linearize(f, M0, c, "cubature"))(jnp.eye(2) * NAN),
         returns(nan_affine)),
    # --- SigmaPoints (custom rules through linearize) -------------------------------------
    case("weights-do-not-sum-to-one", SIGMA, bad_rule(weights=np.full(4, 0.3)),
         raises(ValueError, "`method.weights` must sum to 1")),
    case("points-wrong-dimension", SIGMA, bad_rule(points=np.zeros((4, 3))),
         raises(ValueError, "`method.points` must have shape")),
    case("weights-wrong-length", SIGMA, bad_rule(weights=np.full(3, 1 / 3)),
         raises(ValueError, "`method.weights` must have shape")),
    case("nan-points", SIGMA, bad_rule(points=np.full((4, 2), NAN)),
         raises(ValueError, "`method.points`.*non-finite")),
    case("valid-custom-rule", SIGMA,
         lambda: (linearize(f, M0, jnp.eye(2), SigmaPoints(*cubature_points(2))),
                  linearize(f, M0, jnp.eye(2), "cubature")),
         returns(lambda pair: np.allclose(pair[0].matrix, pair[1].matrix))),
]  # fmt: skip


@pytest.mark.parametrize("case", case_params(CASES))
def test_contract(case):
    run_case(case)
