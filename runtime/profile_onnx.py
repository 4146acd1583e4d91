"""ONNX Runtime's per-op profiler: the session's own trace, read back. TF-free.

``SessionOptions.enable_profiling`` makes the session write a JSON trace (Chrome's format);
each node run is an event ``<node>_kernel_time`` with ``dur`` (whole microseconds), the op
type, the execution provider and the input types. ONNX Runtime's profiler also records
memory statistics per node, which on small models makes the profiled nodes several times
slower than an unprofiled run: the raw times stay in ``measured_ms`` and ``ms`` is their
share of the unprofiled latency.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.runtime.profile_ops import OpProfile, OpTiming, ProfileUnavailable, calibrate

_TYPES = {"float": "float32", "double": "float64", "float16": "float16"}
_CPU = "CPUExecutionProvider"


def _session(
    ort: Any, path: Path, threads: int, providers: Sequence[str], prefix: str | None
) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = prefix
    return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))


def _feeds(session: Any, feeds: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    from edgesmith.runtime.onnx_runner import _ORT_TYPES

    rng = np.random.default_rng(0)
    out = {}
    for node in session.get_inputs():
        given = (feeds or {}).get(node.name)
        if given is not None:
            out[node.name] = np.ascontiguousarray(given)
            continue
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in node.shape]
        dtype = _ORT_TYPES.get(node.type, "float32")
        out[node.name] = (
            rng.random(shape).astype(dtype) if dtype.startswith("float") else np.zeros(shape, dtype)
        )
    return out


def profile_onnx(
    path: str | os.PathLike[str],
    *,
    threads: int = 1,
    runs: int = 100,
    warmup: int = 10,
    feeds: Mapping[str, np.ndarray] | None = None,
    latency_ms: float | None = None,
    providers: Sequence[str] | None = None,
) -> OpProfile:
    """Per-op profile of an .onnx file on ONNX Runtime (CPU unless ``providers`` say else)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ProfileUnavailable("onnxruntime is not installed (pip install onnxruntime)") from exc
    path = Path(path)
    providers = list(providers or [_CPU])
    measured_latency = None
    if latency_ms is None:
        plain = _session(ort, path, threads, providers, None)
        inputs = _feeds(plain, feeds)
        for _ in range(max(warmup, 1)):
            plain.run(None, inputs)
        times = []
        for _ in range(runs):
            start = time.perf_counter_ns()
            plain.run(None, inputs)
            times.append(time.perf_counter_ns() - start)
        measured_latency = latency_ms = float(np.median(times)) / 1e6
        del plain
    with tempfile.TemporaryDirectory(prefix="edgesmith-profile-") as folder:
        session = _session(ort, path, threads, providers, str(Path(folder, "ort")))
        inputs = _feeds(session, feeds)
        for _ in range(warmup + runs):
            session.run(None, inputs)
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
        del session
    timings = _accumulate(events, warmup, runs)
    profile = calibrate(
        timings,
        timings[0].count,
        latency_ms,
        "node times from ONNX Runtime's trace, scaled together so that they add up to the "
        "unprofiled latency (the profiler's per-node overhead inflates them all)",
        api="onnxruntime InferenceSession profiler",
        **(
            {"latency_source": "an unprofiled session of the same file"} if measured_latency else {}
        ),
    )
    return profile


def _accumulate(events: list[dict[str, Any]], warmup: int, runs: int) -> list[OpTiming]:
    """Node events of the last ``runs`` model runs, one :class:`OpTiming` per node run."""
    model_runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )[warmup : warmup + runs]
    nodes = sorted(
        (e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")),
        key=lambda e: e["ts"],
    )  # fmt: skip
    if not model_runs or not nodes:
        raise ProfileUnavailable("ONNX Runtime's trace has no node events")
    starts = [e["ts"] for e in nodes]
    timings: list[OpTiming] = []
    keys: list[str] = []
    for number, run in enumerate(model_runs):
        begin, end = run["ts"], run["ts"] + run["dur"]
        inside = nodes[bisect.bisect_left(starts, begin) : bisect.bisect_right(starts, end)]
        if number == 0:
            for event in inside:
                args = event.get("args", {})
                dtypes: list[str] = []
                for entry in args.get("input_type_shape", []):
                    for name in entry:
                        dtype = _TYPES.get(name, name)
                        if dtype not in dtypes:
                            dtypes.append(dtype)
                provider = args.get("provider")
                node = args.get("node_index")
                timings.append(
                    OpTiming(
                        str(args.get("op_name", event["name"])),
                        dtypes,
                        None if provider in (None, _CPU) else provider,
                        node=int(node) if str(node).isdigit() else None,
                    )
                )
                keys.append(event["name"])
        if [e["name"] for e in inside] != keys:
            raise ProfileUnavailable("ONNX Runtime ran different nodes in different runs")
        for timing, event in zip(timings, inside, strict=True):
            timing.total_us += float(event.get("dur", 0))
            timing.count += 1
    return timings


__all__ = ["profile_onnx"]
