"""Bytes moved by the collectives of a compiled XLA program, read from its HLO text.

Used by the sharding tests and `benchmarks/suite.py` to check that the time-sharded
recursions exchange a volume independent of the series length.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["COLLECTIVES", "collective_bytes"]

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
_BYTES = {"f64": 8, "f32": 4, "f16": 2, "bf16": 2, "s64": 8, "u64": 8, "s32": 4, "u32": 4}
_OP = re.compile(r"=\s*(\([^=]*\)|\S+)\s+(" + "|".join(COLLECTIVES) + r")(-start)?\(")
_SHAPE = re.compile(r"(\w+)\[([\d,]*)\]")


def collective_bytes(compiled: Any) -> int:
    """Total size of the results of every collective in ``compiled`` (a `jax.stages.Compiled`
    or its HLO text): the bytes one device receives per call, to within the collectives'
    own overhead. Booleans count one byte."""
    text = compiled if isinstance(compiled, str) else compiled.as_text()
    total = 0
    for line in text.splitlines():
        op = _OP.search(line)
        if not op:
            continue
        for dtype, dims in _SHAPE.findall(op.group(1)):
            size = math.prod(int(n) for n in dims.split(",") if n)
            total += _BYTES.get(dtype, 1) * size
    return total
