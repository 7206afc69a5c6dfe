"""Every public entry point of the package appears in the bad-input test matrix.

The public surface is read from each subpackage's ``__all__``; result/parameter NamedTuples and
constants are data, not entry points. A new public function without a `Case` fails here.
"""

import importlib
import inspect
import pathlib

import pytest

SUBPACKAGES = (
    "ssm",
    "sts",
    "smc",
    "mcmc",
    "infer",
    "fixed_point",
    "scan",
    "strategy",
    "linalg",
    "diagnostics",
)


def public_entry_points() -> set[str]:
    names = set()
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"numpyro_parallel.{sub}")
        for name in module.__all__:
            obj = getattr(module, name)
            is_namedtuple = inspect.isclass(obj) and issubclass(obj, tuple)
            if callable(obj) and not is_namedtuple:
                names.add(f"numpyro_parallel.{sub}.{name}")
    return names


def matrix_entry_points() -> set[str]:
    covered = set()
    for path in sorted(pathlib.Path(__file__).parent.glob("test_*.py")):
        if path.stem == "test_coverage":
            continue
        module = importlib.import_module(f"tests.contract.{path.stem}")
        covered |= {case.entry_point for case in module.CASES}
    return covered


def test_every_public_entry_point_has_bad_input_cases():
    missing = public_entry_points() - matrix_entry_points()
    assert not missing, f"public entry points without a bad-input case: {sorted(missing)}"


def all_public_names() -> set[str]:
    return {
        f"numpyro_parallel.{sub}.{name}"
        for sub in SUBPACKAGES
        for name in importlib.import_module(f"numpyro_parallel.{sub}").__all__
    }


def test_matrix_names_only_public_names():
    unknown = matrix_entry_points() - all_public_names()
    assert not unknown, f"cases name entry points that are not public: {sorted(unknown)}"


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_entry_points_are_importable_as_named(sub):
    module = importlib.import_module(f"numpyro_parallel.{sub}")
    for name in module.__all__:
        assert getattr(module, name) is not None
