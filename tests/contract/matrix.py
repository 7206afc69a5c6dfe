"""The bad-input test matrix: one `Case` per (public entry point, bad input), one runner.

Every ``tests/contract/test_*.py`` module declares ``CASES`` (a list of `Case`) and runs them
with ``pytest.mark.parametrize("case", CASES, ids=case_id)`` and `run_case`. Each case names the
public entry point it exercises (``"numpyro_parallel.ssm.LinearGaussianSSM"``), so
``tests/contract/test_coverage.py`` can check that every public callable is covered.

Outcomes follow the failure contract (docs/failure-modes.md):

- `raises(ValueError, "transition_cov")`: concrete bad input raises that exception type and
  the message matches the regular expression (it should name the argument);
- `returns(check, warns=RuntimeWarning)`: the call returns; ``check(result)`` must hold (e.g.
  the log-density is NaN, a status flag is set) and, when ``warns`` is given, that warning is
  emitted.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest


class Expectation(NamedTuple):
    exception: type[BaseException] | None = None
    match: str | None = None
    check: Callable[[Any], Any] | None = None
    warns: type[Warning] | None = None


class Case(NamedTuple):
    """One bad input for one public entry point.

    Attributes:
        name: short description, used as the test id.
        entry_point: qualified public name, e.g. ``"numpyro_parallel.smc.resample"``.
        call: zero-argument function that performs the call.
        expect: `raises(...)` or `returns(...)`.
        slow: run only with the slow tests (``-m slow``): cases that compile a large
            program (a Hessian, a dSMC tree); the fast suite keeps a cheaper case for the
            same entry point.
    """

    name: str
    entry_point: str
    call: Callable[[], Any]
    expect: Expectation
    slow: bool = False


def raises(exception: type[BaseException], match: str) -> Expectation:
    """The call raises ``exception`` with a message matching ``match`` (regex, searched)."""
    return Expectation(exception=exception, match=match)


def returns(check: Callable[[Any], Any], warns: type[Warning] | None = None) -> Expectation:
    """The call returns ``result`` with ``check(result)`` truthy (and warns ``warns``)."""
    return Expectation(check=check, warns=warns)


def is_nan(value: Any) -> bool:
    """All entries NaN."""
    return bool(np.all(np.isnan(np.asarray(value))))


def case_id(case: Case) -> str:
    return f"{case.entry_point.rsplit('.', 1)[-1]}-{case.name}"


def case_params(cases: list[Case]) -> list:
    """``cases`` as `pytest.param` s with their ids, the slow ones marked ``slow``."""
    return [
        pytest.param(c, id=case_id(c), marks=[pytest.mark.slow] if c.slow else []) for c in cases
    ]


def run_case(case: Case) -> None:
    expect = case.expect
    if expect.exception is not None:
        with pytest.raises(expect.exception) as info:
            case.call()
        message = str(info.value)
        assert re.search(expect.match, message), f"message {message!r} !~ {expect.match!r}"
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = case.call()
    if expect.warns is not None:
        assert any(issubclass(w.category, expect.warns) for w in caught), (
            f"expected a {expect.warns.__name__}; got {[str(w.message) for w in caught]}"
        )
    assert expect.check(result), f"check failed on {result!r}"[:2000]


def finite_or_named_error(call: Callable[[], Any], invalid: bool, label: str) -> Any:
    """Property-test outcome: invalid input raises naming an argument, valid input is finite.

    Args:
        call: zero-argument function returning a log-density.
        invalid: whether the generated input is invalid.
        label: description of the input, for the failure message.

    Returns:
        The finite value for valid input, None when the (invalid) input raised.
    """
    try:
        value = call()
    except (ValueError, TypeError) as error:
        assert invalid, f"valid input rejected: {error}"
        assert "`" in str(error), str(error)
        return None
    assert not invalid, f"invalid input ({label}) accepted: log_prob = {value}"
    assert np.isfinite(value)
    return value
