"""Square-root Kalman filter/smoother/sampler: exactness, algebra, gradients, float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel.linalg import cholesky_of
from numpyro_parallel.ssm import LinearGaussianSSM, kalman_filter, kalman_smoother
from numpyro_parallel.ssm.kalman.elements import (
    filter_combine,
    filter_prepare,
    smoother_combine,
    smoother_prepare,
)
from numpyro_parallel.strategy import Associative, Blocked, Sequential
from tests.reference import kalman as ref

MODES = {
    "associative": dict(strategy=Associative()),
    "blocked": dict(strategy=Blocked(3)),
    "sequential": dict(strategy=Sequential()),
    "auto": dict(strategy="auto"),
}


def _ssm(model, T, strategy="auto"):
    return LinearGaussianSSM(
        model["initial_mean"],
        model["initial_cov"],
        model["transition_matrix"],
        model["transition_cov"],
        model["observation_matrix"],
        model["observation_cov"],
        num_steps=T,
        transition_offset=model.get("transition_offset"),
        observation_offset=model.get("observation_offset"),
        strategy=strategy,
    )


CASES = [
    # (T, d, p, time_varying, offsets, missing)
    (1, 2, 1, True, True, False),
    (2, 1, 1, False, False, False),
    (7, 3, 2, True, True, True),
    (13, 2, 4, True, True, True),  # p > d, prime T
    (31, 1, 3, False, True, True),  # d = 1
    (16, 3, 3, True, False, False),
    (11, 5, 1, True, True, True),  # d >= 4: what "auto" runs sequentially on a CPU
]


# Every case under the associative strategy; the sequential and blocked strategies on the
# case T = 1 and the cases with missing data and offsets (tests/test_strategies.py checks every
# strategy against Sequential() on the same kinds of inputs).
NAIVE_CASES = [(case, "associative") for case in CASES] + [
    (CASES[0], "blocked"), (CASES[2], "blocked"),
    (CASES[2], "sequential"), (CASES[3], "sequential"), (CASES[4], "sequential"),
    (CASES[6], "sequential"), (CASES[6], "auto"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,mode",
    NAIVE_CASES,
    ids=lambda c: "T{}-d{}-p{}-tv{}-off{}-nan{}".format(*c) if isinstance(c, tuple) else c,
)
@pytest.mark.slow
def test_filter_and_smoother_match_naive_reference(case, mode):
    T, d, p, time_varying, offsets, missing = case
    rng = np.random.default_rng(T * 100 + d * 10 + p)
    model = ref.random_model(rng, T, d, p, time_varying, offsets)
    y = rng.normal(size=(T, p))
    if missing:
        y[rng.random(size=(T, p)) < 0.3] = np.nan
        y[T // 2] = np.nan  # a fully missing step
    ssm = _ssm(model, T)
    params = ssm.params
    means, covs, terms = ref.filter_model(model, y)
    s_means, s_covs = ref.smooth_model(model, y)

    filtered = kalman_filter(params, jnp.asarray(y), **MODES[mode])
    smoothed = kalman_smoother(params, jnp.asarray(y), **MODES[mode])
    np.testing.assert_allclose(filtered.mean, means, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(filtered.cov, covs, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(filtered.log_likelihood_terms, terms, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(filtered.log_likelihood, terms.sum(), rtol=1e-8)
    np.testing.assert_allclose(smoothed.mean, s_means, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(smoothed.cov, s_covs, rtol=1e-8, atol=1e-10)


def test_naive_reference_matches_joint_gaussian():
    rng = np.random.default_rng(0)
    model = ref.random_model(rng, 5, 2, 2, time_varying=False, offsets=False)
    y = rng.normal(size=(5, 2))
    _, _, terms = ref.filter_model(model, y)
    brute = ref.joint_log_density_brute_force(
        model["initial_mean"],
        model["initial_cov"],
        model["transition_matrix"],
        model["transition_cov"],
        model["observation_matrix"],
        model["observation_cov"],
        y,
    )
    np.testing.assert_allclose(terms.sum(), brute, rtol=1e-10)


def _random_filter_element(rng, d, p):
    F, c = rng.normal(size=(d, d)), rng.normal(size=d)
    chol_Q = np.linalg.cholesky(ref.random_model(rng, 1, d, p, False)["transition_cov"])
    H, dd = rng.normal(size=(p, d)), rng.normal(size=p)
    chol_R = np.linalg.cholesky(np.eye(p) * 0.5 + 0.1)
    return filter_prepare(*map(jnp.asarray, (F, c, chol_Q, H, dd, chol_R, rng.normal(size=p))))


def _same_element(e1, e2, square_roots):
    for name, a, b in zip(e1._fields, e1, e2):
        if name in square_roots:  # factors are unique only up to their Gram matrix
            a, b = a @ a.T, b @ b.T
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("d,p", [(1, 1), (3, 2), (2, 4)])
def test_filter_combine_is_associative(d, p):
    rng = np.random.default_rng(d + 10 * p)
    a, b, c = (_random_filter_element(rng, d, p) for _ in range(3))
    left = filter_combine(filter_combine(a, b), c)
    right = filter_combine(a, filter_combine(b, c))
    _same_element(left, right, ("U",))


def test_smoother_combine_is_associative():
    rng = np.random.default_rng(3)
    d = 3

    def element():
        chol = np.linalg.cholesky(ref.random_model(rng, 1, d, 1, False)["initial_cov"])
        chol_Q = np.linalg.cholesky(ref.random_model(rng, 1, d, 1, False)["initial_cov"])
        args = (rng.normal(size=(d, d)), rng.normal(size=d), chol_Q, rng.normal(size=d), chol)
        return smoother_prepare(*map(jnp.asarray, args))

    a, b, c = element(), element(), element()
    left = smoother_combine(smoother_combine(a, b), c)
    right = smoother_combine(a, smoother_combine(b, c))
    _same_element(left, right, ("L",))


@pytest.mark.slow
def test_log_prob_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    T, d, p = 6, 2, 2
    model = ref.random_model(rng, T, d, p, time_varying=False)
    y = jnp.asarray(rng.normal(size=(T, p))).at[2, 0].set(jnp.nan)

    def log_lik(m, strategy):
        return _ssm(m, T, strategy).log_prob(y)

    m = jax.tree_util.tree_map(jnp.asarray, model)
    for strategy in ("associative", "sequential"):  # two different recursions
        grad = jax.grad(log_lik)(m, strategy)
        eps = 1e-6
        for name, value in m.items():
            direction = jnp.asarray(rng.normal(size=value.shape))
            if name.endswith("_cov"):
                direction = direction + direction.T  # stay symmetric
            plus = {**m, name: value + eps * direction}
            minus = {**m, name: value - eps * direction}
            fd = (log_lik(plus, strategy) - log_lik(minus, strategy)) / (2 * eps)
            analytic = jnp.sum(grad[name] * direction)
            np.testing.assert_allclose(analytic, fd, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_gradients_finite_with_singular_process_noise():
    # Local linear trend with noise on the slope only: Q is singular.
    T = 9
    y = jnp.sin(jnp.arange(T, dtype=float))[:, None]

    def log_lik(q):
        return LinearGaussianSSM(
            jnp.zeros(2),
            jnp.eye(2),
            jnp.array([[1.0, 1.0], [0.0, 1.0]]),
            jnp.diag(jnp.array([0.0, q])),
            jnp.array([[1.0, 0.0]]),
            jnp.eye(1),
            num_steps=T,
        ).log_prob(y)

    value, grad = jax.value_and_grad(log_lik)(0.3)
    fd = (log_lik(0.3 + 1e-6) - log_lik(0.3 - 1e-6)) / 2e-6
    assert np.isfinite(value)
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


@pytest.mark.slow
def test_jit_and_vmap_invariance():
    rng = np.random.default_rng(8)
    T, d, p = 10, 2, 1
    model = ref.random_model(rng, T, d, p)
    ssm = _ssm(model, T)
    ys = jnp.asarray(rng.normal(size=(3, T, p)))
    eager = jnp.stack([ssm.log_prob(y) for y in ys])
    np.testing.assert_allclose(jax.jit(ssm.log_prob)(ys), eager, rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(ssm.log_prob)(ys), eager, rtol=1e-12)
    np.testing.assert_allclose(ssm.log_prob(ys), eager, rtol=1e-12)


@pytest.mark.slow
def test_float32_long_series_is_accurate():
    T = 10_000
    rng = np.random.default_rng(11)
    y = np.cumsum(rng.normal(size=T) * 0.3) + rng.normal(size=T)
    args = (np.zeros(1), np.eye(1), np.eye(1), 0.09 * np.eye(1), np.eye(1), np.eye(1))

    def log_lik(dtype):
        ssm = LinearGaussianSSM(*(jnp.asarray(a, dtype) for a in args), num_steps=T)
        return ssm.log_prob(jnp.asarray(y[:, None], dtype))

    exact = log_lik(jnp.float64)
    params32 = LinearGaussianSSM(*(jnp.asarray(a, jnp.float32) for a in args), num_steps=T).params
    y32 = jnp.asarray(y[:, None], jnp.float32)
    for strategy in ("associative", "auto"):
        approx = kalman_filter(params32, y32, strategy=strategy).log_likelihood
        assert approx.dtype == jnp.float32
        assert np.isfinite(approx)
        np.testing.assert_allclose(approx, exact, rtol=1e-3)


@pytest.mark.slow
def test_float32_sequential_filter_higher_dimension():
    # The classical square-root recursion ("auto" on a CPU from d = 4 on) in float32 on a
    # long series with a persistent state (eigenvalues 0.94-0.98) and missing values.
    T, d = 2_000, 5
    rng = np.random.default_rng(13)
    model = ref.random_model(rng, T, d, 1, time_varying=False, offsets=False)
    model["transition_matrix"] = 0.97 * np.eye(d) + 0.01 * rng.normal(size=(d, d))
    y = np.cumsum(rng.normal(size=(T, 1)), axis=0)
    y[rng.random(size=T) < 0.1] = np.nan
    m32 = {k: np.asarray(v, np.float32) for k, v in model.items()}
    # The float64 reference runs on the same (float32-rounded) model: only arithmetic differs.
    m64 = {k: np.asarray(v, np.float64) for k, v in m32.items()}
    exact = kalman_filter(_ssm(m64, T).params, jnp.asarray(y), strategy="sequential")
    approx = kalman_filter(_ssm(m32, T).params, jnp.asarray(y, jnp.float32), strategy="sequential")
    assert approx.log_likelihood.dtype == jnp.float32
    np.testing.assert_allclose(approx.log_likelihood, exact.log_likelihood, rtol=1e-4)
    scale = np.max(np.abs(exact.mean))
    np.testing.assert_allclose(approx.mean, exact.mean, rtol=0, atol=1e-5 * scale)


def test_sample_states_match_smoother_moments():
    rng = np.random.default_rng(4)
    T, d, p = 12, 2, 1
    model = ref.random_model(rng, T, d, p)
    y = rng.normal(size=(T, p))
    y[3] = np.nan
    ssm = _ssm(model, T)
    n = 4000
    draws = np.asarray(ssm.sample_states(jax.random.PRNGKey(0), jnp.asarray(y), (n,)))
    assert draws.shape == (n, T, d)
    s_means, s_covs = ref.smooth_model(model, y)
    var = np.diagonal(s_covs, axis1=-2, axis2=-1)
    # Means: 4 standard errors; variances: 4 standard errors of a Gaussian sample variance.
    np.testing.assert_array_less(np.abs(draws.mean(0) - s_means), 4 * np.sqrt(var / n))
    np.testing.assert_array_less(np.abs(draws.var(0) - var), 4 * var * np.sqrt(2 / n))
    # Lag-one cross-covariance is what distinguishes joint draws from independent marginals.
    emp = np.mean((draws[:, 1:, 0] - s_means[1:, 0]) * (draws[:, :-1, 0] - s_means[:-1, 0]), 0)
    assert np.all(np.abs(emp) > 0) and np.isfinite(emp).all()
    sequential = _ssm(model, T, strategy="sequential").sample_states(
        jax.random.PRNGKey(0), jnp.asarray(y), (n,)
    )
    np.testing.assert_allclose(draws, sequential, rtol=1e-8, atol=1e-8)


def test_cholesky_of_accepts_singular_covariances():
    cov = jnp.diag(jnp.array([0.0, 2.0]))
    chol = cholesky_of(cov)
    np.testing.assert_allclose(chol @ chol.T, cov, atol=1e-12)


@pytest.mark.slow
def test_gradients_agree_across_scan_strategies():
    # p < d makes the information part of intermediate elements rank-deficient: the
    # associative strategy combines such elements with each other (the sequential and
    # blocked strategies never do), so this guards the derivative of the combine itself.
    rng = np.random.default_rng(12)
    T, d, p = 257, 2, 1  # 9 levels of the associative tree
    model = ref.random_model(rng, T, d, p, time_varying=False, offsets=False)
    y = jnp.asarray(rng.normal(size=(T, p)))
    m = jax.tree_util.tree_map(jnp.asarray, model)

    @jax.jit
    def grads(m):
        params = _ssm(m, T).params
        out = {}
        for mode, kwargs in MODES.items():
            fn = lambda prm, kwargs=kwargs: kalman_filter(prm, y, **kwargs).log_likelihood
            out[mode] = jax.grad(fn)(params)
        return out

    out = grads(m)
    for mode in ("associative", "blocked"):
        for name, a, b in zip(out[mode]._fields, out[mode], out["sequential"]):
            scale = float(jnp.max(jnp.abs(b))) + 1e-300
            assert float(jnp.max(jnp.abs(a - b))) <= 1e-9 * scale, (mode, name)
