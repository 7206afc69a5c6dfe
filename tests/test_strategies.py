"""Every family under every strategy equals `Sequential()` (rtol 1e-8, float64).

T = 1, an odd prime T and a batch (vmap) for the Kalman, HMM, nonlinear and affine
recursions; the strategies are passed as instances and as their string shorthands.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel.scan import affine_recursion
from numpyro_parallel.ssm import (
    DiscreteHMM,
    LinearGaussianSSM,
    NonlinearGaussianModel,
    hmm_filter,
    hmm_log_likelihood,
    hmm_sample_states,
    hmm_smoother,
    hmm_viterbi,
    iterated_smoother,
    kalman_filter,
    kalman_sample_states,
    kalman_smoother,
)
from numpyro_parallel.strategy import Associative, Blocked, Sequential

STRATEGIES = {
    "associative": Associative(),
    "blocked-2": Blocked(2),
    "blocked-default": Blocked(),
    "auto": "auto",
    "blocked-name": "blocked",
}
RTOL, ATOL = 1e-8, 1e-10


def _close(a, b):
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL), a, b
    )


def _lgssm(T, seed=0):
    rng = np.random.default_rng(seed)
    d, p = 2, 1
    y = rng.normal(size=(T, p))
    if T > 2:
        y[1] = np.nan
    ssm = LinearGaussianSSM(
        jnp.zeros(d),
        jnp.eye(d),
        jnp.array([[0.9, 0.2], [0.0, 0.7]]),
        0.3 * jnp.eye(d),
        jnp.asarray(rng.normal(size=(p, d))),
        0.5 * jnp.eye(p),
        num_steps=T,
    )
    return ssm.params, jnp.asarray(y)


def _kalman(params, y, strategy):
    key = jax.random.key(0)
    return (
        kalman_filter(params, y, strategy=strategy),
        kalman_smoother(params, y, strategy=strategy),
        kalman_sample_states(key, params, y, (3,), strategy=strategy),
    )


def _hmm_args(T, seed=0):
    rng = np.random.default_rng(seed)
    return (
        jnp.asarray(rng.normal(size=3)),
        jnp.asarray(rng.normal(size=(T, 3, 3))),
        jnp.asarray(rng.normal(size=(T, 3))),
    )


def _hmm(args, strategy):
    key = jax.random.key(1)
    return (
        hmm_filter(*args, strategy=strategy),
        hmm_log_likelihood(*args, strategy=strategy),
        hmm_smoother(*args, strategy=strategy),
        hmm_viterbi(*args, strategy=strategy),
        hmm_sample_states(key, *args, (4,), strategy=strategy),
    )


@pytest.mark.slow
@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_kalman_every_strategy_equals_sequential(T, name):
    params, y = _lgssm(T)
    _close(_kalman(params, y, STRATEGIES[name]), _kalman(params, y, Sequential()))


@pytest.mark.slow
@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_hmm_every_strategy_equals_sequential(T, name):
    args = _hmm_args(T)
    ours, reference = _hmm(args, STRATEGIES[name]), _hmm(args, Sequential())
    _close(ours[:3], reference[:3])
    np.testing.assert_array_equal(ours[3].path, reference[3].path)
    assert ours[4].shape == reference[4].shape == (4, T)


@pytest.mark.parametrize("strategy", ["associative", "auto"])
def test_batched_inputs_every_strategy(strategy):
    # vmap over a batch of data sets: equal to Sequential() per element.
    batch = [_lgssm(7, seed) for seed in range(3)]
    params = batch[0][0]
    ys = jnp.stack([y for _, y in batch])

    def batched(s):
        return jax.vmap(lambda y: kalman_filter(params, y, strategy=s).log_likelihood)(ys)

    _close(batched(strategy), batched(Sequential()))
    hmm_batch = [_hmm_args(7, seed) for seed in range(3)]
    stacked = [jnp.stack(a) for a in zip(*hmm_batch, strict=True)]
    ll = jax.vmap(lambda *a: hmm_log_likelihood(*a, strategy=strategy))
    got = ll(*stacked)
    expected = jnp.stack([hmm_log_likelihood(*a, strategy="sequential") for a in hmm_batch])
    _close(got, expected)


@pytest.mark.slow
@pytest.mark.parametrize("T", [1, 7])
def test_distributions_every_strategy(T):
    import numpyro.distributions as dist

    _, y = _lgssm(T)
    hmm_args = _hmm_args(T)
    obs = jnp.asarray(np.random.default_rng(3).normal(size=T))

    def lgssm(strategy):
        return LinearGaussianSSM(
            jnp.zeros(1), jnp.eye(1), 0.9 * jnp.eye(1), 0.2 * jnp.eye(1), jnp.eye(1),
            0.5 * jnp.eye(1), num_steps=T, strategy=strategy,
        )  # fmt: skip

    def hmm(strategy):
        emissions = dist.Normal(jnp.arange(3.0), 1.0)
        return DiscreteHMM(hmm_args[0], hmm_args[1], emissions, strategy=strategy)

    for strategy in STRATEGIES.values():
        _close(lgssm(strategy).log_prob(y), lgssm(Sequential()).log_prob(y))
        _close(hmm(strategy).log_prob(obs), hmm(Sequential()).log_prob(obs))
        _close(hmm(strategy).smooth(obs), hmm(Sequential()).smooth(obs))


def _pendulum(T):
    dt = 0.1

    def transition(x):
        return jnp.stack([x[0] + dt * x[1], x[1] - dt * 9.81 * jnp.sin(x[0])])

    def observation(x):
        return jnp.sin(x[:1])

    model = NonlinearGaussianModel(
        jnp.array([1.0, 0.0]),
        0.3 * jnp.eye(2),
        transition,
        0.05 * jnp.eye(2),
        observation,
        0.3 * jnp.eye(1),
    )
    y = jnp.asarray(np.random.default_rng(4).normal(0.5, 0.3, size=(T, 1)))
    return model, y


@pytest.mark.slow
@pytest.mark.parametrize("T", [1, 7])
def test_nonlinear_every_strategy_equals_sequential(T):
    model, y = _pendulum(T)
    run = jax.jit(
        lambda y, s: iterated_smoother(model, y, max_iterations=5, atol=0.0, strategy=s),
        static_argnums=1,
    )
    reference = run(y, Sequential())
    for strategy in (Associative(), Blocked(2), "auto"):
        _close(run(y, strategy), reference)


@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("reverse", [False, True])
def test_affine_recursion_every_strategy(T, reverse):
    rng = np.random.default_rng(5)
    a, b = jnp.asarray(rng.normal(size=(T, 2, 2)) * 0.5), jnp.asarray(rng.normal(size=(T, 2)))
    x0 = jnp.array([1.0, -1.0])
    reference = affine_recursion(a, b, x0, strategy=Sequential(), reverse=reverse)
    for strategy in STRATEGIES.values():
        _close(affine_recursion(a, b, x0, strategy=strategy, reverse=reverse), reference)


def test_auto_is_shape_aware_for_kalman_on_cpu():
    from numpyro_parallel.ssm.kalman.inference import (
        SEQUENTIAL_MIN_STATE_DIM,
        resolve_kalman_strategy,
    )

    y = jnp.zeros((5, 1))
    for d in (1, 3, 4, 13):
        params = LinearGaussianSSM(
            jnp.zeros(d), jnp.eye(d), jnp.eye(d), jnp.eye(d), jnp.ones((1, d)), jnp.eye(1),
            num_steps=5,
        ).params  # fmt: skip
        expected = Sequential() if d >= SEQUENTIAL_MIN_STATE_DIM else Blocked()
        if jax.default_backend() != "cpu":
            expected = Associative()
        assert resolve_kalman_strategy("auto", params, y) == expected
        # An explicit strategy is never replaced.
        assert resolve_kalman_strategy(Blocked(3), params, y) == Blocked(3)
        assert resolve_kalman_strategy("associative", params, y) == Associative()


def test_auto_is_sequential_for_hmms_on_cpu():
    from numpyro_parallel.ssm.hmm.common import resolve_mode

    log_likelihoods = jnp.zeros((50, 4))
    expected = Sequential() if jax.default_backend() == "cpu" else Associative()
    assert resolve_mode("auto", log_likelihoods) == expected
    assert resolve_mode("blocked", log_likelihoods) == Blocked(8)  # block size resolved
