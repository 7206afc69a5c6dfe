"""The shared argument checks (`numpyro_parallel._checks`): types, intervals and tracing."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_parallel._checks import check_real, check_tolerance


@pytest.mark.parametrize(
    "value", [0.5, 1, np.float32(0.5), np.int64(1), np.asarray(0.5), jnp.asarray(0.5)]
)
def test_check_real_accepts_python_numpy_and_jax_scalars(value):
    out = check_real("x", value, low=0.0)
    assert isinstance(out, float) and out == float(value)


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.5", None, 1 + 0j, [0.5], {"a": 1}])
def test_check_real_rejects_non_numbers_with_type_error(value):
    with pytest.raises(TypeError, match="`x` must be a number in \\(0, 1\\)"):
        check_real("x", value, low=0.0, high=1.0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_check_real_rejects_non_finite_values(value):
    with pytest.raises(ValueError, match="`x` must be a finite number"):
        check_real("x", value)


def test_check_real_rejects_arrays_naming_the_shape():
    with pytest.raises(ValueError, match=r"`x` must be a scalar .*shape \(2,\)"):
        check_real("x", np.ones(2))


@pytest.mark.parametrize(
    ("kwargs", "inside", "outside", "words"),
    [
        ({"low": 0.0}, [1e-300, 5.0], [0.0, -1.0], "> 0"),
        ({"low": 0.0, "low_closed": True}, [0.0, 2.0], [-1e-300], ">= 0"),
        ({"high": 1.0}, [-5.0, 0.999], [1.0], "< 1"),
        ({"low": 0.0, "high": 1.0, "high_closed": True}, [1.0, 0.5], [0.0, 1.5], "(0, 1]"),
        ({"low": 0.0, "high": 1.0, "low_closed": True}, [0.0], [1.0], "[0, 1)"),
    ],
)
def test_check_real_interval_bounds_and_message(kwargs, inside, outside, words):
    for value in inside:
        assert check_real("x", value, **kwargs) == value
    for value in outside:
        with pytest.raises(ValueError, match=f"`x` must be .*{re.escape(words)}"):
            check_real("x", value, **kwargs)


def test_check_real_under_tracing():
    # A traced value passes unchecked only when the caller handles it (NaN downstream).
    assert jax.jit(lambda h: check_real("x", h, low=0.0, traced_ok=True) * 2)(-1.0) == -2.0
    with pytest.raises(TypeError, match="`x` must be a concrete number"):
        jax.jit(lambda h: check_real("x", h, low=0.0))(1.0)


def test_check_tolerance_none_zero_and_negative():
    assert check_tolerance("atol", None) is None
    assert check_tolerance("atol", 0) == 0.0
    with pytest.raises(ValueError, match="`atol` must be a finite number >= 0"):
        check_tolerance("atol", -1e-9)
    with pytest.raises(TypeError, match="`atol`"):
        check_tolerance("atol", "1e-6")
