"""Test configuration: float64 and strict rank promotion for every test.

Every compiled XLA:CPU executable keeps its own memory mappings alive for as long as JAX caches
it. A pytest worker that runs the whole suite compiles thousands of programs; without clearing
the caches it approaches the kernel's ``vm.max_map_count`` (65530) and LLVM then crashes inside
``backend_compile_and_load``. Clearing JAX's caches after every test module keeps a worker's
mappings bounded (and its memory too).

The suite is bound by XLA compilation, not by running the (small) programs: LLVM's
optimisation level 0 (``XLA_FLAGS``, set before JAX starts its backend; appended to any
flags already set, and inherited by the example scripts the tests run) compiles several
times faster on the large unrolled programs of the tests. It changes no result the tests
check (XLA:CPU does not enable fast-math at any level); the benchmarks do not use it.
"""

import os

FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("NUMPYRO_PARALLEL_TEST_OPTIMIZE") != "1":
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_collection_modifyitems(config, items):
    """Run the examples (end to end, the longest tests) first.

    Collected last (``tests/test_examples.py`` sorts after the subpackages), they left one
    xdist worker running examples alone at the end of the slow step; started first, the
    short tests fill in around them.
    """
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/test_examples.py") else 1)


@pytest.fixture(autouse=True, scope="module")
def _clear_jax_caches_after_module():
    yield
    jax.clear_caches()
