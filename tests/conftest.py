"""Test configuration: float64 and strict rank promotion for every test.

Every compiled XLA:CPU executable keeps its own memory mappings alive for as long as JAX caches
it. A pytest worker that runs the whole suite compiles thousands of programs; without clearing
the caches it approaches the kernel's ``vm.max_map_count`` (65530) and LLVM then crashes inside
``backend_compile_and_load``. Clearing JAX's caches after every test module keeps a worker's
mappings bounded (and its memory too).
"""

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True, scope="module")
def _clear_jax_caches_after_module():
    yield
    jax.clear_caches()
