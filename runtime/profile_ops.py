"""Per-op latency profiles: where one inference spends its time, op by op. TF-free.

A backend's own profiler records events per run (:mod:`edgesmith.runtime.profile_litert`,
:mod:`edgesmith.runtime.profile_onnx`); this module turns them into the record's
``op_profile`` (one entry per op, in execution order) and ``op_profile_by_type``.

Native profilers slow the run they measure: on tiny models the events of LiteRT (with
XNNPACK's own per-op timers, whole microseconds) and of ONNX Runtime add up to 2 to 7 times
the latency measured without them. Each entry therefore keeps ``measured_ms`` (the
profiler's own mean) and gets ``ms`` on the scale of the unprofiled latency, by a method
each backend states in ``op_profile_calibration``:

- ops timed by timestamps around a reference kernel (LiteRT's builtin kernels) keep their
  measured time;
- the rest of the unprofiled latency is split over the other ops in proportion to their
  measured times (ops run inside XNNPACK; every ONNX Runtime node).

Example:
    >>> from edgesmith.runtime.profile_ops import profile_file
    >>> prof = profile_file("cnn.tflite", "litert", threads=1, runs=100)  # doctest: +SKIP
    >>> [(e["op"], e["delegate"]) for e in prof.ops][:2]  # doctest: +SKIP
    [('Convolution (NHWC, F32) IGEMM', 'XNNPACK'), ('Max Pooling (NHWC, F32)', 'XNNPACK')]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgesmith.runtime.backends import parse_backend

# The backends whose runtime has a per-op profiler that edgesmith drives.
PROFILABLE = ("litert", "onnxruntime")


@dataclass
class OpTiming:
    """One op of one profiled inference, summed over the profiled runs."""

    op: str
    dtypes: list[str]
    delegate: str | None
    total_us: float = 0.0
    count: int = 0
    fixed: bool = False  # timed by timestamps around the kernel: kept as measured
    node: int | None = None  # the op's index in the model file, where known


@dataclass
class OpProfile:
    """A backend's per-op profile: entries in execution order, summaries, how it was scaled."""

    ops: list[dict[str, Any]]
    by_type: list[dict[str, Any]]
    calibration: dict[str, Any]
    notes: list[str] = field(default_factory=list)


class ProfileUnavailable(Exception):
    """The backend cannot profile this file here; the message says why."""


def calibrate(
    timings: Sequence[OpTiming], runs: int, latency_ms: float, method: str, **extra: Any
) -> OpProfile:
    """Entries and summary of ``timings`` (summed over ``runs``) scaled to ``latency_ms``."""
    if runs < 1 or not timings:
        raise ProfileUnavailable("the profiler recorded no op events")
    measured = [t.total_us / runs / 1000.0 for t in timings]
    fixed_ms = sum(m for m, t in zip(measured, timings, strict=True) if t.fixed)
    free_ms = sum(m for m, t in zip(measured, timings, strict=True) if not t.fixed)
    rest = max(latency_ms - fixed_ms, 0.0)
    free = [t for t in timings if not t.fixed]
    ms = []
    for value, timing in zip(measured, timings, strict=True):
        if timing.fixed:
            ms.append(value)
        elif free_ms > 0:
            ms.append(rest * value / free_ms)
        else:  # the profiler's timer saw none of them: an even split is all there is to say
            ms.append(rest / len(free))
    total = sum(ms)
    ops = [
        {
            "index": i,
            "op": t.op,
            "dtypes": list(t.dtypes),
            "delegate": t.delegate,
            "ms": round(value, 6),
            "share": round(value / total, 6) if total > 0 else 0.0,
            "measured_ms": round(raw, 6),
            **({"node": t.node} if t.node is not None else {}),
        }
        for i, (t, value, raw) in enumerate(zip(timings, ms, measured, strict=True))
    ]
    calibration = {
        "method": method,
        "runs": runs,
        "unprofiled_ms": round(latency_ms, 6),
        "measured_ms": round(fixed_ms + free_ms, 6),
        "kept_as_measured_ms": round(fixed_ms, 6),
        "sum_ms": round(total, 6),
        **extra,
    }
    return OpProfile(ops, summarize(ops), calibration)


def summarize(ops: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per op type (and delegate): total ms, share and count, largest first."""
    groups: dict[tuple[str, str | None], dict[str, Any]] = {}
    for entry in ops:
        key = (entry["op"], entry["delegate"])
        group = groups.setdefault(
            key, {"op": entry["op"], "delegate": entry["delegate"], "ms": 0.0, "count": 0}
        )
        group["ms"] += entry["ms"]
        group["count"] += 1
    total = sum(g["ms"] for g in groups.values())
    out = sorted(groups.values(), key=lambda g: -g["ms"])
    for group in out:
        group["ms"] = round(group["ms"], 6)
        group["share"] = round(group["ms"] / total, 6) if total > 0 else 0.0
    return out


def profile_file(
    path: str | os.PathLike[str],
    backend: str,
    *,
    threads: int = 1,
    runs: int = 100,
    warmup: int = 10,
    feeds: Mapping[str, np.ndarray] | None = None,
    latency_ms: float | None = None,
    providers: Sequence[str] | None = None,
) -> OpProfile:
    """Profile ``path`` on ``backend`` op by op over ``runs`` inferences.

    ``latency_ms`` is the model's latency measured without profiling (the bench's p50);
    without it, the profiler's session measures it first (the median of ``runs``). Raises :class:`ProfileUnavailable`
    where the backend has no profiler edgesmith can drive, saying why.
    """
    name = parse_backend(backend)[0]
    if name == "litert":
        from edgesmith.runtime.profile_litert import profile_litert

        return profile_litert(
            path, threads=threads, runs=runs, warmup=warmup, feeds=feeds, latency_ms=latency_ms
        )
    if name == "onnxruntime":
        from edgesmith.runtime.profile_onnx import profile_onnx

        return profile_onnx(
            path,
            threads=threads,
            runs=runs,
            warmup=warmup,
            feeds=feeds,
            latency_ms=latency_ms,
            providers=providers,
        )
    raise ProfileUnavailable(
        f"no per-op profiler for the {backend} backend (profiles come from "
        + " and ".join(PROFILABLE)
        + ")"
    )


__all__ = [
    "PROFILABLE",
    "OpProfile",
    "OpTiming",
    "ProfileUnavailable",
    "calibrate",
    "profile_file",
    "summarize",
]
