"""`numpyro_parallel._collectives.collective_bytes` reads the collectives' sizes from HLO."""

import jax
import jax.numpy as jnp

from numpyro_parallel._collectives import collective_bytes

HLO = """
  %all-gather = f64[10000,2,2]{2,1,0} all-gather(%wrapped_broadcast), channel_id=7
  %all-reduce.6 = (pred[], pred[]) all-reduce(%a, %b), channel_id=10
  %ppermute.7 = f64[1,2]{1,0} collective-permute(%slice), channel_id=1
  %ag-start = f32[8]{0} all-gather-start(%x), channel_id=2
  %add = f64[10000,2,2]{2,1,0} add(%p, %q)
  ROOT %all-reduce.5 = f64[] all-reduce(%wrapped_reduce.5), channel_id=7
"""


def test_counts_every_collective_result_and_nothing_else():
    expected = 8 * 10000 * 4 + 2 * 1 + 8 * 2 + 4 * 8 + 8
    assert collective_bytes(HLO) == expected


def test_single_device_program_has_no_collectives():
    compiled = jax.jit(lambda x: jnp.cumsum(x)).lower(jnp.ones(16)).compile()
    assert collective_bytes(compiled) == 0
