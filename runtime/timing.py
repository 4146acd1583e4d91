"""Timing of the runs a benchmark measures, and their statistics. TF-free.

Example:
    >>> stats = latency_stats([1_000_000, 2_000_000, 3_000_000])
    >>> stats["mean"], stats["p50"], stats["max"]
    (2.0, 2.0, 3.0)
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence

import numpy as np


def timed_runs(invoke: Callable[[], object], runs: int, min_time: float = 0.0) -> list[int]:
    """Nanoseconds of each call of ``invoke``: at least ``runs`` calls and ``min_time`` seconds."""
    clock = time.perf_counter_ns
    times: list[int] = []
    append = times.append
    deadline = clock() + int(min_time * 1e9)
    collecting = gc.isenabled()
    gc.disable()  # a collection inside a timed call would be charged to the model
    try:
        while len(times) < runs or clock() < deadline:
            start = clock()
            invoke()
            append(clock() - start)
    finally:
        if collecting:
            gc.enable()
    return times


def latency_stats(times_ns: Sequence[int]) -> dict[str, float]:
    """mean, std, min, max, p50, p90, p99 in milliseconds of per-run times in nanoseconds."""
    ms = np.asarray(times_ns, np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "mean": float(ms.mean()),
        "std": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        "min": float(ms.min()),
        "max": float(ms.max()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
    }
