"""Test configuration: float64 and strict rank promotion for every test.

Every compiled XLA:CPU executable keeps its own memory mappings alive for as long as JAX caches
it. A pytest worker that runs the whole suite compiles thousands of programs; without clearing
the caches it approaches the kernel's ``vm.max_map_count`` (65530) and LLVM then crashes inside
``backend_compile_and_load``. Clearing JAX's caches after every test module keeps a worker's
mappings bounded (and its memory too).

The suite is bound by XLA compilation, not by running the (small) programs: JAX's
``jax_disable_most_optimizations`` (XLA's backend optimisation level 0 and no expensive LLVM
passes; set through ``JAX_DISABLE_MOST_OPTIMIZATIONS`` before JAX starts, so the example
scripts and workers the tests start inherit it) compiles several times faster on the large
unrolled programs of the tests. XLA:CPU enables no fast-math at any level, but results may
differ in their last bits (seen: L-BFGS-B in `fit_mle` ending on a line-search stop at the
optimum instead of its gradient test), which every tolerance of the tests allows; the
benchmarks do not use it. The few tests that spend their time running compiled programs
(long NUTS runs) are marked ``optimized`` and compile with full optimisation (measured on 2
cores: NUTS on trend + seasonal 116 s -> 35-44 s, simulation-based calibration 62 s -> 35-38
s; no other test gained more than the noise of the measurement).
``NUMPYRO_PARALLEL_TEST_OPTIMIZE=1`` optimises every test.

JAX's persistent compilation cache (an executable stored under a hash of the program and
its compile options, so it cannot change a result) in ``.pytest_cache/jax-compilation-cache``
serves a later run of unchanged code (measured on a subset of the tests: a third of the
time). Within one fresh run few programs repeat, so it saves CI almost nothing. Each xdist
worker has its own directory: JAX writes entries without a lock, and a second process could
read one half-written. The example scripts and the multi-device worker the tests start
inherit the setting. ``NUMPYRO_PARALLEL_TEST_CACHE=0`` turns it off; a directory grown past
2 GB is emptied when a run starts.
"""

import os
import pathlib
import shutil

FAST_COMPILE = os.environ.get("NUMPYRO_PARALLEL_TEST_OPTIMIZE") != "1"
os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1" if FAST_COMPILE else "0"

CACHE_ROOT = pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation-cache"
CACHE_LIMIT_BYTES = 2 * 2**30
if os.environ.get("NUMPYRO_PARALLEL_TEST_CACHE") != "0":
    _worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(CACHE_ROOT / _worker)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"

import jax  # noqa: E402  (after the environment above)
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_sessionstart(session):
    """Empty the compilation cache once it has grown past ``CACHE_LIMIT_BYTES`` (in the
    controller, before any xdist worker starts)."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not CACHE_ROOT.is_dir():
        return
    size = sum(f.stat().st_size for f in CACHE_ROOT.rglob("*") if f.is_file())
    if size > CACHE_LIMIT_BYTES:
        shutil.rmtree(CACHE_ROOT, ignore_errors=True)


# The longest tests, longest first (seconds on 2 CPU cores, slow step): xdist hands tests out
# in collection order, and one of these started last would leave the other worker idle.
LONGEST_FIRST = (
    "tests/test_sharded.py::test_sharded_equals_single_device",  # 420 s
    "tests/test_examples.py",  # 25-70 s each
    "tests/ssm/test_distributions.py::test_nuts_recovers_local_level_variances",  # 55 s
    "tests/ssm/test_kalman.py::test_gradients_agree_across_scan_strategies",  # 45 s
    "tests/ssm/test_seasonal_nuts.py",  # 40 s
    "tests/sts/test_sbc.py",  # 40 s
)


def pytest_collection_modifyitems(config, items):
    """Run the longest tests (``LONGEST_FIRST``) first, the short ones filling in around them.

    Collected in file order, the examples (``tests/test_examples.py`` sorts after the
    subpackages) and the multi-device worker run left one xdist worker running them alone at
    the end of the slow step.
    """

    def rank(item):
        starts = [item.nodeid.startswith(prefix) for prefix in LONGEST_FIRST]
        return starts.index(True) if any(starts) else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def _full_optimisation_for_optimized_tests(request):
    """Compile with XLA's full optimisation inside tests marked ``optimized``."""
    if not (FAST_COMPILE and request.node.get_closest_marker("optimized")):
        yield
        return
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(autouse=True, scope="module")
def _clear_jax_caches_after_module():
    yield
    jax.clear_caches()
