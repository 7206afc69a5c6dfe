"""Rank-deficient noise: factors and singular covariances, exact derivatives in every strategy.

Process noise of rank r < d (noise on some state components only, or a selection matrix
``R (d, r)`` with an ``r x r`` covariance) is the common case in structural time-series models.
It can be given as ``transition_cov_factor`` (any ``L`` with ``Q = L L^T``) or as a singular
``transition_cov``; in both forms ``jax.grad`` of the log-likelihood must equal finite
differences in the associative, blocked and sequential strategies.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel.linalg import cholesky_of, tria
from numpyro_parallel.ssm.kalman.distribution import LinearGaussianSSM
from numpyro_parallel.ssm.kalman.inference import kalman_filter
from numpyro_parallel.strategy import Associative, Blocked, Sequential
from tests.reference import kalman as ref

STRATEGIES = {
    "associative": dict(strategy=Associative()),
    "blocked-auto": dict(strategy="auto"),
    "blocked-5": dict(strategy=Blocked(5)),
    "sequential": dict(strategy=Sequential()),
}


def _directional_fd_check(fn, x, rng, *, eps=1e-6, rtol=1e-6, atol=1e-8, symmetric=False):
    """``jvp(fn)(x; dx)`` equals the central finite difference for random directions."""
    for _ in range(2):
        dx = rng.normal(size=x.shape)
        if symmetric:
            dx = dx + np.swapaxes(dx, -1, -2)
        _, jvp = jax.jvp(fn, (x,), (jnp.asarray(dx),))
        fd = (fn(x + eps * dx) - fn(x - eps * dx)) / (2 * eps)
        np.testing.assert_allclose(jvp, fd, rtol=rtol, atol=atol * (1 + float(np.max(abs(fd)))))


@pytest.mark.parametrize(
    "shape,rank",
    [((3, 3), 3), ((3, 1), 1), ((4, 2), 2), ((13, 3), 3), ((4, 6), 2), ((13, 20), 5)],
)
@pytest.mark.slow
def test_tria_jvp_matches_finite_differences_for_any_rank(shape, rank):
    rng = np.random.default_rng(sum(shape) + rank)
    n, k = shape
    right = jnp.asarray(rng.normal(size=(rank, k)))
    left = jnp.asarray(rng.normal(size=(n, rank)))
    fn = lambda a: tria(a @ right)  # rank-`rank` input along every direction
    _directional_fd_check(fn, left, rng)
    lower = fn(left)
    np.testing.assert_allclose(lower @ lower.T, (left @ right) @ (left @ right).T, atol=1e-12)
    assert int(jnp.sum(jnp.diagonal(lower) > 0)) == min(rank, n)


def test_tria_jvp_exact_with_zero_rows_and_batches():
    rng = np.random.default_rng(0)
    m = jnp.asarray(rng.normal(size=(5, 4, 3)))
    _directional_fd_check(lambda a: tria(a.at[:, 1].set(0.0)), m, rng)
    _directional_fd_check(tria, m, rng)


def test_cholesky_of_derivative_exact_for_singular_covariances():
    rng = np.random.default_rng(1)
    jac = jax.jacfwd(lambda q: cholesky_of(jnp.diag(jnp.stack([q, 0 * q, 0 * q]))))(0.3)
    expected = np.zeros((3, 3))
    expected[0, 0] = 0.5 / np.sqrt(0.3)
    np.testing.assert_allclose(jac, expected, rtol=1e-12)
    grad = jax.grad(lambda q: jnp.sum(cholesky_of(jnp.diag(jnp.stack([q, 0 * q, 0 * q])))))(0.3)
    assert np.isfinite(grad)
    for n, r in [(3, 1), (3, 2), (13, 3)]:
        factor = jnp.asarray(rng.normal(size=(n, r)))
        _directional_fd_check(lambda f: cholesky_of(f @ f.T), factor, rng)
    blocks = jnp.zeros((4, 4)).at[:2, :2].set(jnp.asarray([[2.0, 0.5], [0.5, 1.0]]))
    _directional_fd_check(
        lambda a: cholesky_of(a.at[2:].set(0.0).at[:, 2:].set(0.0)), blocks, rng, symmetric=True
    )


def test_cholesky_of_nan_for_invalid_covariances_never_clipped():
    invalid = {
        "indefinite": jnp.array([[1.0, 2.0], [2.0, 1.0]]),
        "negative definite": -jnp.eye(2),
        "zero pivot, non-zero column": jnp.array([[0.0, 1.0], [1.0, 0.0]]),
        "asymmetric": jnp.array([[1.0, 0.5], [0.0, 1.0]]),
        "nan": jnp.array([[jnp.nan, 0.0], [0.0, 1.0]]),
        "inf": jnp.array([[jnp.inf, 0.0], [0.0, 1.0]]),
    }
    jitted = jax.jit(cholesky_of)
    for name, cov in invalid.items():
        assert np.all(np.isnan(cholesky_of(cov))), name
        assert np.all(np.isnan(jitted(cov))), name
    # Rounding-level asymmetry and negative eigenvalues are valid.
    rng = np.random.default_rng(2)
    a = rng.normal(size=(5, 2))
    cov = jnp.asarray(a @ a.T)
    chol = jitted(cov + 1e-17 * jnp.asarray(rng.normal(size=(5, 5))))
    np.testing.assert_allclose(chol @ chol.T, cov, atol=1e-12)
    batch = jnp.stack([jnp.eye(2), -jnp.eye(2)])  # one valid, one invalid matrix
    out = jitted(batch)
    np.testing.assert_allclose(out[0], jnp.eye(2))
    assert np.all(np.isnan(out[1]))


def _model(rng, d, p):
    transition = 0.9 * np.linalg.qr(rng.normal(size=(d, d)))[0]
    return dict(
        initial_mean=rng.normal(size=d),
        initial_cov=np.eye(d) + 0.1 * np.ones((d, d)),
        transition_matrix=transition,
        observation_matrix=rng.normal(size=(p, d)),
        observation_cov=0.5 * np.eye(p),
    )


def _log_liks(model, y, strategies, **noise):
    """Log-likelihood in each of ``strategies`` (one compiled function for all of them)."""
    ssm = LinearGaussianSSM(**model, **noise, num_steps=y.shape[0])
    return jnp.stack(
        [kalman_filter(ssm.params, y, **STRATEGIES[s]).log_likelihood for s in strategies]
    )


FORMS = {
    "factor": lambda factor, scales: dict(transition_cov_factor=factor),
    "dense": lambda factor, scales: dict(transition_cov=factor @ factor.T),
    "diagonal": lambda factor, scales: dict(
        transition_cov=jnp.diag(jnp.pad(scales, (0, factor.shape[0] - scales.shape[0])))
    ),
}


# Values are compared in every strategy; each (rank, form) case checks the derivatives in one
# strategy (reverse mode through the whole filter is what dominates compile time), so that
# over the six cases every strategy is differentiated at least once.
SLOW = pytest.mark.slow  # 30-55 s each on 2 CPU cores, almost all of it compilation
GRADIENT_CASES = [
    pytest.param(1, "factor", "associative", marks=SLOW),
    pytest.param(1, "dense", "blocked-5", marks=SLOW),
    (1, "diagonal", "sequential"),
    pytest.param(2, "factor", "blocked-auto", marks=SLOW),
    pytest.param(2, "dense", "associative", marks=SLOW),
    pytest.param(2, "diagonal", "blocked-5", marks=SLOW),
]


@pytest.mark.slow
@pytest.mark.parametrize("rank,form,strategy", GRADIENT_CASES)
def test_log_prob_gradients_exact_for_rank_deficient_noise(rank, form, strategy):
    # d = 3: ranks 1 and 2 = d - 1; noise as a (d, r) factor, a dense singular covariance
    # and diag(q_1, ..., q_r, 0, ...).
    d, p, T = 3, 2, 37
    rng = np.random.default_rng(10 + rank)
    model = _model(rng, d, p)
    y = jnp.asarray(rng.normal(size=(T, p))).at[5, 0].set(jnp.nan)
    factor = jnp.asarray(rng.normal(size=(d, rank)) * 0.5)
    scales = jnp.asarray(rng.uniform(0.2, 1.0, size=rank))
    values = jax.jit(lambda f, s: _log_liks(model, y, list(STRATEGIES), **FORMS[form](f, s)))
    one = lambda f, s: _log_liks(model, y, [strategy], **FORMS[form](f, s))[0]
    gradient = jax.jit(jax.grad(one, argnums=(0, 1)))
    # Finite differences of `strategy`'s entry of `values`, not of a third compiled program.
    index = list(STRATEGIES).index(strategy)
    one_value = lambda f, s: values(f, s)[index]
    value = values(factor, scales)
    assert np.all(np.isfinite(value))
    if form != "diagonal":
        cov = np.asarray(factor @ factor.T)
        expected = ref.filter_model({**model, "transition_cov": cov}, np.asarray(y))[2].sum()
        np.testing.assert_allclose(value, expected, rtol=1e-9)
    np.testing.assert_allclose(value, value[-1], rtol=1e-10)  # strategies agree
    grad_f, grad_s = gradient(factor, scales)
    eps = 1e-6
    d_f = jnp.asarray(rng.normal(size=factor.shape))
    d_s = jnp.asarray(rng.normal(size=scales.shape))
    shifted = lambda h, df, ds: one_value(factor + h * df, scales + h * ds)
    fd_f = (shifted(eps, d_f, 0.0) - shifted(-eps, d_f, 0.0)) / (2 * eps)
    fd_s = (shifted(eps, 0.0, d_s) - shifted(-eps, 0.0, d_s)) / (2 * eps)
    analytic_f = jnp.sum(grad_f * d_f)
    analytic_s = jnp.sum(grad_s * d_s)
    assert np.all(np.isfinite(analytic_f)) and np.all(np.isfinite(analytic_s))
    np.testing.assert_allclose(analytic_f, fd_f, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(analytic_s, fd_s, rtol=1e-6, atol=1e-7)


def test_selection_matrix_times_cholesky_is_a_factor():
    # Selection R (d, r) and r x r covariance Q_r: transition_cov_factor = R @ cholesky(Q_r).
    rng = np.random.default_rng(3)
    d, r, T = 5, 2, 9
    model = _model(rng, d, 1)
    selection = np.zeros((d, r))
    selection[0, 0] = selection[3, 1] = 1.0
    q_r = np.array([[1.0, 0.3], [0.3, 0.5]])
    y = jnp.asarray(rng.normal(size=(T, 1)))
    by_factor = LinearGaussianSSM(
        **model, transition_cov_factor=selection @ np.linalg.cholesky(q_r), num_steps=T
    ).log_prob(y)
    by_cov = LinearGaussianSSM(
        **model, transition_cov=selection @ q_r @ selection.T, num_steps=T
    ).log_prob(y)
    expected = ref.filter_model({**model, "transition_cov": selection @ q_r @ selection.T}, y)
    np.testing.assert_allclose(by_factor, by_cov, rtol=1e-10)
    np.testing.assert_allclose(by_factor, expected[2].sum(), rtol=1e-10)


@pytest.mark.slow
def test_all_factors_time_varying_and_sampling():
    rng = np.random.default_rng(4)
    d, p, T = 3, 2, 8
    model = _model(rng, d, p)
    del model["initial_cov"], model["observation_cov"]
    init_factor = rng.normal(size=(d, 4))
    trans_factor = rng.normal(size=(T, d, 2))
    obs_factor = rng.normal(size=(T, p, 3))
    ssm = LinearGaussianSSM(
        **model,
        initial_cov_factor=init_factor,
        transition_cov_factor=trans_factor,
        observation_cov_factor=obs_factor,
    )
    assert ssm.event_shape == (T, p)
    cov_model = {
        **model,
        "initial_cov": init_factor @ init_factor.T,
        "transition_cov": trans_factor @ np.swapaxes(trans_factor, -1, -2),
        "observation_cov": obs_factor @ np.swapaxes(obs_factor, -1, -2),
    }
    y = rng.normal(size=(T, p))
    _, covs, terms = ref.filter_model(cov_model, y)
    result = ssm.filter(jnp.asarray(y))
    np.testing.assert_allclose(result.log_likelihood, terms.sum(), rtol=1e-10)
    np.testing.assert_allclose(result.cov, covs, rtol=1e-8, atol=1e-10)
    smoothed_means, _ = ref.smooth_model(cov_model, y)
    np.testing.assert_allclose(ssm.smooth(jnp.asarray(y)).mean, smoothed_means, rtol=1e-8)
    states, obs = ssm.sample_with_states(jax.random.PRNGKey(0), (2,))
    assert states.shape == (2, T, d) and obs.shape == (2, T, p)
    assert ssm.sample_states(jax.random.PRNGKey(1), jnp.asarray(y), (3,)).shape == (3, T, d)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(transition_cov=np.eye(2), transition_cov_factor=np.eye(2)), "exactly one"),
        (dict(), "exactly one of `transition_cov` and `transition_cov_factor`"),
        (dict(transition_cov_factor=np.ones((3, 1))), "transition_cov_factor"),
        (dict(transition_cov_factor=np.ones((2, 0))), "transition_cov_factor.*k >= 1"),
        (dict(transition_cov_factor=np.full((2, 1), np.nan)), "transition_cov_factor"),
    ],
)
def test_factor_argument_errors(kwargs, match):
    base = dict(
        initial_mean=np.zeros(2),
        initial_cov=np.eye(2),
        transition_matrix=np.eye(2),
        observation_matrix=np.ones((1, 2)),
        observation_cov=np.eye(1),
    )
    with pytest.raises(ValueError, match=match):
        LinearGaussianSSM(**base, **kwargs, num_steps=4)


def test_repeated_eager_construction_is_cheap():
    args = (np.zeros(3), np.eye(3), np.eye(3), np.diag([0.3, 0.0, 0.0]), np.ones((1, 3)), np.eye(1))
    LinearGaussianSSM(*args, num_steps=50)  # first call compiles
    start = time.perf_counter()
    for _ in range(20):
        LinearGaussianSSM(*args, num_steps=50)
    per_model = (time.perf_counter() - start) / 20
    assert per_model < 0.1, per_model
