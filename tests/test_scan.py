"""The scan driver: every strategy gives the same prefixes as a Python loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel.scan import affine_recursion, associative_scan, default_block_size


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
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(
    "strategy",
    [dict(parallel=False), dict(parallel=True), dict(parallel=True, block_size=4)],
    ids=["sequential", "associative", "blocked"],
)
def test_strategies_match_python_loop(T, reverse, strategy):
    mats = jax.random.normal(jax.random.PRNGKey(T), (T, 3, 3)) / 2
    expected = _loop_prefix(np.asarray(mats), reverse)
    out = associative_scan(_matmul, mats, reverse=reverse, **strategy)
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
    for parallel in (True, False):
        out = affine_recursion(a, b, jnp.array([1.0, -1.0]), parallel=parallel, diagonal=diagonal)
        np.testing.assert_allclose(out, np.stack(expected), rtol=1e-10)


def test_bad_inputs():
    with pytest.raises(ValueError, match="leading"):
        associative_scan(_matmul, (jnp.ones((3, 2)), jnp.ones((4, 2))))
    with pytest.raises(ValueError, match="block_size"):
        associative_scan(_matmul, jnp.ones((3, 2, 2)), block_size=0)
    with pytest.raises(ValueError, match="matrices"):
        affine_recursion(jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.ones(2))
    assert default_block_size(10_000) in (None, 100)
