"""Shared timing helpers for the benchmark scripts.

Compile time is measured separately from run time: ``jax.jit(fn).lower(*args).compile()`` is
timed once, then the compiled executable is run once as a warm-up and timed over repeated calls
(median, each call synchronised with ``block_until_ready``).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["compile_fn", "measure", "median_run_time", "metadata", "time_fn"]


def compile_fn(fn: Callable, *args: Any) -> tuple[Callable, float]:
    """Jit-compile ``fn`` for ``args`` and return ``(compiled, seconds)``."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def median_run_time(
    compiled: Callable,
    *args: Any,
    min_repeats: int = 5,
    max_repeats: int = 50,
    target_s: float = 0.3,
) -> tuple[float, int, Any]:
    """Median wall time (s) of ``compiled(*args)``; returns ``(median, repeats, output)``.

    One untimed warm-up call, then ``min_repeats`` to ``max_repeats`` timed calls (as many as fit
    in about ``target_s`` seconds, estimated from the warm-up).
    """
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    warm = time.perf_counter() - start
    repeats = int(min(max_repeats, max(min_repeats, target_s / max(warm, 1e-6))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times), repeats, out


def measure(
    fn: Callable, *args: Any, repeats: int, warm_up: bool = True, max_total_s: float | None = None
) -> tuple[float, float, Any]:
    """Compile ``fn`` for ``args``, then time ``repeats`` calls: ``(compile_s, median_s, output)``.

    ``warm_up`` runs one untimed call first (skip it for long runs timed once);
    ``max_total_s`` stops the timed calls early once their sum exceeds it.
    """
    compiled, compile_s = compile_fn(fn, *args)
    out = jax.block_until_ready(compiled(*args)) if warm_up else None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
        if max_total_s is not None and sum(times) > max_total_s:
            break
    return compile_s, statistics.median(times), out


def time_fn(fn: Callable, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Compile and time ``fn``; returns compile_s, run_s, repeats and the output."""
    compiled, compile_s = compile_fn(fn, *args)
    run_s, repeats, out = median_run_time(compiled, *args, **kwargs)
    return {"compile_s": compile_s, "run_s": run_s, "repeats": repeats, "output": out}


def metadata() -> dict[str, Any]:
    """Platform description recorded with every benchmark result."""
    device = jax.devices()[0]
    return {
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "num_devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
