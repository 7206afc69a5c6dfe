"""The scan driver: every strategy gives the same prefixes as a Python loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel.scan import affine_recursion, associative_scan, pad_time, reduce_elements
from numpyro_parallel.strategy import (
    Associative,
    Blocked,
    Sequential,
    as_strategy,
    resolve_strategy,
)

STRATEGIES = {
    "sequential": Sequential(),
    "associative": Associative(),
    "blocked": Blocked(4),
    "blocked-default": Blocked(),
    "auto": "auto",
}


def _matmul(earlier, later):  # non-commutative, associative
    return later @ earlier


def _loop_prefix(mats, reverse):
    out, acc = [], None
    order = range(len(mats) - 1, -1, -1) if reverse else range(len(mats))
    for t in order:
        acc = mats[t] if acc is None else _matmul(acc, mats[t])
        out.append(acc)
    return np.stack(out[::-1] if reverse else out)


@pytest.mark.parametrize("T", [1, 2, 5, 16, 17, 23])
def test_reduce_elements_is_the_last_prefix(T):
    mats = np.random.default_rng(T).normal(size=(T, 3, 3)) / 2
    total = jax.jit(lambda m: reduce_elements(_matmul, m))(jnp.asarray(mats))
    np.testing.assert_allclose(total, _loop_prefix(mats, False)[-1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("T", [1, 2, 5, 16, 17, 23])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("strategy", list(STRATEGIES.values()), ids=list(STRATEGIES))
def test_strategies_match_python_loop(T, reverse, strategy):
    mats = jax.random.normal(jax.random.PRNGKey(T), (T, 3, 3)) / 2
    expected = _loop_prefix(np.asarray(mats), reverse)
    out = associative_scan(_matmul, mats, reverse=reverse, strategy=strategy)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T", [1, 7, 30])
@pytest.mark.parametrize("diagonal", [False, True])
def test_affine_recursion(T, diagonal):
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    shape = (T, 2) if diagonal else (T, 2, 2)
    a = jax.random.normal(key_a, shape) * 0.7
    b = jax.random.normal(key_b, (T, 2))
    x, expected = jnp.array([1.0, -1.0]), []
    for t in range(T):
        x = (a[t] * x if diagonal else a[t] @ x) + b[t]
        expected.append(x)
    for strategy in STRATEGIES.values():
        out = affine_recursion(a, b, jnp.array([1.0, -1.0]), strategy=strategy, diagonal=diagonal)
        np.testing.assert_allclose(out, np.stack(expected), rtol=1e-10)


@pytest.mark.parametrize("T", [1, 6, 13])
def test_reverse_affine_recursion(T):
    # x_t = A_t x_{t+1} + b_t backwards from x_T.
    key_a, key_b = jax.random.split(jax.random.PRNGKey(1))
    a = jax.random.normal(key_a, (T, 2, 2)) * 0.7
    b = jax.random.normal(key_b, (T, 2))
    x, expected = jnp.array([0.5, 2.0]), [None] * T
    for t in range(T - 1, -1, -1):
        x = a[t] @ x + b[t]
        expected[t] = x
    for strategy in STRATEGIES.values():
        out = affine_recursion(a, b, jnp.array([0.5, 2.0]), strategy=strategy, reverse=True)
        np.testing.assert_allclose(out, np.stack(expected), rtol=1e-10)


def test_bad_inputs():
    with pytest.raises(ValueError, match="leading"):
        associative_scan(_matmul, (jnp.ones((3, 2)), jnp.ones((4, 2))))
    with pytest.raises(ValueError, match="matrices"):
        affine_recursion(jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.ones(2))


def test_strategy_objects():
    assert as_strategy("sequential") == Sequential()
    assert as_strategy("associative") == Associative()
    assert as_strategy("blocked") == Blocked()
    assert as_strategy("auto") == "auto"
    assert hash(Blocked(3)) == hash(Blocked(3)) and Blocked(3) != Blocked(4)
    assert Blocked().size_for(10_000) == 100 and Blocked().size_for(4) == 8
    assert Blocked(5).size_for(10_000) == 5
    cpu = jnp.ones(3)  # a concrete array on the CPU: "auto" is blocked there
    expected = Blocked() if cpu.devices().pop().platform == "cpu" else Associative()
    assert resolve_strategy("auto", cpu) == expected
    assert resolve_strategy(Sequential(), cpu) == Sequential()
    with pytest.raises(ValueError, match="block_size"):
        Blocked(0)
    with pytest.raises(ValueError, match="block_size"):
        Blocked(True)
    with pytest.raises(ValueError, match="strategy"):
        as_strategy("parallel")
    with pytest.raises(TypeError, match="strategy"):
        as_strategy(True)
    with pytest.raises(ValueError, match="strategy"):
        associative_scan(_matmul, jnp.ones((3, 2, 2)), strategy="fast")


def test_bad_combine_and_flags_name_the_argument():
    x = jnp.arange(1.0, 8.0)
    with pytest.raises(ValueError, match="`combine` must map"):
        associative_scan(lambda a, b: jnp.stack([a, b]), x, strategy="associative")
    with pytest.raises(ValueError, match="scalar leaf"):
        associative_scan(jnp.add, [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="`reverse` must be a bool"):
        associative_scan(jnp.add, x, reverse="False")  # a non-empty string is truthy
    mats, offsets = jnp.ones((3, 2)), jnp.ones((3, 2))
    with pytest.raises(TypeError, match="`diagonal` must be a bool"):
        affine_recursion(mats, offsets, jnp.ones(2), diagonal="yes")


@pytest.mark.parametrize("strategy", ["sequential", "associative", "blocked"])
def test_affine_recursion_promotes_mixed_dtypes(strategy):
    # Integer matrices and offsets with a floating initial state: computed in floating point,
    # never truncated (was 1, 3, 7 from the integer offsets) and never a dtype error.
    states = affine_recursion(
        jnp.ones((3, 1, 1), jnp.int32), jnp.ones((3, 1), jnp.int32), jnp.array([0.3]),
        strategy=strategy,
    )  # fmt: skip
    np.testing.assert_allclose(states[:, 0], [1.3, 2.3, 3.3], rtol=1e-6)
    states = affine_recursion(
        jnp.full((3, 1), 0.5), jnp.ones((3, 1), jnp.int32), jnp.ones(1, jnp.int32),
        strategy=strategy, diagonal=True,
    )  # fmt: skip
    np.testing.assert_allclose(states[:, 0], [1.5, 1.75, 1.875], rtol=1e-6)


@pytest.mark.parametrize("num_steps", [1, 5, 8, 13])
def test_pad_time_copies_the_edge_rows(num_steps):
    # Sharded scans pad T to a multiple of the device count (here 4): copies of the last
    # row after the series, or of the first row before it for suffix scans.
    x = jnp.arange(2.0 * num_steps).reshape(num_steps, 2)
    tree = {"x": x, "y": -x[:, 0]}
    pad = -num_steps % 4
    back, front = pad_time(tree, num_steps, 4), pad_time(tree, num_steps, 4, front=True)
    cases = (
        (back, -1, slice(0, num_steps), slice(num_steps, None)),
        (front, 0, slice(pad, None), slice(0, pad)),
    )  # (padded, edge row, where the series is, where the copies are)
    for padded, edge, series, copies in cases:
        for name in tree:
            assert padded[name].shape[0] == num_steps + pad
            np.testing.assert_array_equal(padded[name][series], tree[name])
            expected = jnp.broadcast_to(tree[name][edge], (pad, *tree[name].shape[1:]))
            np.testing.assert_array_equal(padded[name][copies], expected)
