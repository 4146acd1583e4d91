"""LiteRT's per-op profiler, driven through the C API of the wheel's ``libLiteRt.so``. TF-free.

The Python ``CompiledModel`` and ``Interpreter`` of ai-edge-litert do not expose a profiler,
but the wheel's ``libLiteRt.so`` exports one (``LiteRtCompiledModelGetProfiler``,
``LiteRtStartProfiler``, ``LiteRtGetProfilerEvents``...). This module opens the model with
that library alone (environment, model, options, compiled model, host-memory tensor
buffers) through ctypes, with profiling switched on by the runtime options, on the CPU
accelerator (XNNPACK, as the litert backend runs it).

What the events say, per inference:

- an op that ran on a builtin TFLite kernel is an operator event around the kernel, with
  the op's index in the file: its time comes from two timestamps (whole microseconds, so
  it is unbiased only as a mean over many runs);
- the ops of each XNNPACK partition come as one event per XNNPACK operator (XNNPACK's own
  names, e.g. ``Fully Connected (NC, QS8, QC8W) GEMM``), timed by XNNPACK and rounded
  down to whole microseconds; the partition itself has no event of its own.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.runtime.profile_ops import OpProfile, OpTiming, ProfileUnavailable, calibrate

_P = ctypes.c_void_p
_SIZE = ctypes.c_size_t
# LiteRtElementType -> NumPy (the types a host-memory buffer carries).
_ELEMENT_TYPES = {
    1: "float32", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
    10: "float16",
}  # fmt: skip
_RANKED_TYPE_BYTES = 72  # sizeof(LiteRtRankedTensorType) on 64-bit, an ABI-stable struct
_ALIGN = 64  # host memory given to a tensor buffer must be 64-byte aligned
# tflite::Profiler::EventType values of the events kept.
_OPERATOR, _DELEGATE_OP, _DELEGATE_PROFILED_OP = 2, 4, 8
_EVENT_TYPES = {1 << i for i in range(9)}
# XNNPACK's data-type tokens in its operator names -> dtype names.
_XNN_TYPES = {
    "F32": "float32", "F16": "float16", "BF16": "bfloat16", "QS8": "int8", "QU8": "uint8",
    "QD8": "int8", "QC8": "int8", "QC8W": "int8", "QS16": "int16", "QC4W": "int4", "QB4W": "int4", "S32": "int32",
    "X8": "8-bit", "X16": "16-bit", "X32": "32-bit",
}  # fmt: skip
_MAX_EVENTS = 400_000  # the profiler's buffer holds 512 Ki events; stay under it


def library_path() -> Path:
    """Where the installed ai-edge-litert keeps ``libLiteRt.so``."""
    spec = importlib.util.find_spec("ai_edge_litert")
    if spec is None or not spec.submodule_search_locations:
        raise ProfileUnavailable("ai-edge-litert is not installed (pip install ai-edge-litert)")
    for folder in spec.submodule_search_locations:
        for name in ("libLiteRt.so", "libLiteRt.dylib", "LiteRt.dll"):
            if (Path(folder) / name).is_file():
                return Path(folder) / name
    raise ProfileUnavailable("this ai-edge-litert wheel has no libLiteRt library (its C API)")


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library_path()))
    needed = (
        "LiteRtCreateEnvironment", "LiteRtCreateModelFromFile", "LiteRtCreateOptions",
        "LiteRtCreateOpaqueOptions", "LiteRtAddOpaqueOptions", "LiteRtCreateCompiledModel",
        "LiteRtCompiledModelGetProfiler", "LiteRtStartProfiler", "LiteRtStopProfiler",
        "LiteRtGetNumProfilerEvents", "LiteRtGetProfilerEvents", "LiteRtRunCompiledModel",
        "LiteRtCreateTensorBufferFromHostMemory",
    )  # fmt: skip
    missing = [name for name in needed if not hasattr(lib, name)]
    if missing:
        raise ProfileUnavailable(
            f"{library_path().name} does not export {', '.join(missing)} (an older LiteRT)"
        )
    lib.LiteRtCreateModelFromFile.argtypes = [_P, ctypes.c_char_p, ctypes.POINTER(_P)]
    lib.LiteRtCreateOpaqueOptions.argtypes = [ctypes.c_char_p, _P, _P, ctypes.POINTER(_P)]
    lib.LiteRtCreateTensorBufferFromHostMemory.argtypes = [_P, _P, _SIZE, _P, ctypes.POINTER(_P)]
    lib.LiteRtRunCompiledModel.argtypes = [_P, _SIZE, _SIZE, _P, _SIZE, _P]
    lib.LiteRtGetProfilerEvents.argtypes = [_P, ctypes.c_int, _P]
    for name in ("LiteRtDestroyCompiledModel", "LiteRtDestroyModel", "LiteRtDestroyEnvironment"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [_P]
    return lib


def _check(status: int, call: str) -> None:
    if status != 0:
        raise ProfileUnavailable(f"LiteRT's C API call {call} failed (status {status})")


def xnnpack_dtypes(name: str) -> list[str]:
    """The data types in an XNNPACK operator's name, e.g. ``(NC, QS8, QC8W)`` -> int8.

    Example:
        >>> xnnpack_dtypes("Fully Connected (NC, QS8, QC8W) GEMM")
        ['int8']
        >>> xnnpack_dtypes("Convolution (NHWC, F32) IGEMM")
        ['float32']
    """
    out: list[str] = []
    for group in re.findall(r"\(([^)]*)\)", name):
        for token in group.split(","):
            dtype = _XNN_TYPES.get(token.strip())
            if dtype is not None and dtype not in out:
                out.append(dtype)
    return out


class _Session:
    """A compiled model with profiling on, its input and output buffers, and its profiler."""

    def __init__(self, path: Path, threads: int, feeds: Mapping[str, np.ndarray] | None) -> None:
        lib = self.lib = _load()
        libc = ctypes.CDLL(None)
        libc.strdup.restype = _P
        libc.strdup.argtypes = [ctypes.c_char_p]
        self.env, self.model, self.compiled = _P(), _P(), _P()
        self._buffers: list[_P] = []
        self._arrays: list[np.ndarray] = []  # host memory the buffers point at
        _check(lib.LiteRtCreateEnvironment(0, None, ctypes.byref(self.env)), "CreateEnvironment")
        _check(
            lib.LiteRtCreateModelFromFile(self.env, os.fsencode(path), ctypes.byref(self.model)),
            "CreateModelFromFile",
        )
        options = _P()
        _check(lib.LiteRtCreateOptions(ctypes.byref(options)), "CreateOptions")
        _check(lib.LiteRtSetOptionsHardwareAccelerators(options, 1), "SetHardwareAccelerators")
        # Runtime and CPU options travel as TOML text under an identifier; the library frees
        # each payload with free(), so it is strdup'ed.
        free = ctypes.cast(libc.free, _P)
        for identifier, text in (
            (b"runtime_options_string", b"enable_profiling = true\n"),
            (b"xnnpack", f"num_threads = {int(threads)}\n".encode()),
        ):
            opaque = _P()
            payload = libc.strdup(text)
            _check(
                lib.LiteRtCreateOpaqueOptions(identifier, payload, free, ctypes.byref(opaque)),
                "CreateOpaqueOptions",
            )
            _check(lib.LiteRtAddOpaqueOptions(options, opaque), "AddOpaqueOptions")
        _check(
            lib.LiteRtCreateCompiledModel(
                self.env, self.model, options, ctypes.byref(self.compiled)
            ),
            "CreateCompiledModel",
        )
        signature = _P()
        _check(
            lib.LiteRtGetModelSignature(self.model, _SIZE(0), ctypes.byref(signature)),
            "GetModelSignature",
        )
        inputs = self._make_buffers(signature, "Input", feeds or {})
        outputs = self._make_buffers(signature, "Output", {})
        self._inputs = (_P * len(inputs))(*inputs)
        self._outputs = (_P * len(outputs))(*outputs)
        self._counts = (_SIZE(len(inputs)), _SIZE(len(outputs)))
        self.profiler = _P()
        _check(
            lib.LiteRtCompiledModelGetProfiler(self.compiled, ctypes.byref(self.profiler)),
            "GetProfiler",
        )
        if not self.profiler:
            raise ProfileUnavailable(
                "the compiled model has no profiler (profiling was not enabled)"
            )

    def _make_buffers(self, signature: _P, kind: str, feeds: Mapping[str, np.ndarray]) -> list[_P]:
        lib, count = self.lib, _SIZE()
        _check(getattr(lib, f"LiteRtGetNumSignature{kind}s")(signature, ctypes.byref(count)), kind)
        buffers = []
        rng = np.random.default_rng(0)
        for i in range(count.value):
            tensor, name = _P(), ctypes.c_char_p()
            _check(
                getattr(lib, f"LiteRtGetSignature{kind}TensorByIndex")(signature, _SIZE(i), ctypes.byref(tensor)),
                f"GetSignature{kind}TensorByIndex",
            )  # fmt: skip
            lib.LiteRtGetTensorName(tensor, ctypes.byref(name))
            ranked = (ctypes.c_uint8 * _RANKED_TYPE_BYTES)()
            _check(lib.LiteRtGetRankedTensorType(tensor, ranked), "GetRankedTensorType")
            raw = bytes(ranked)
            element, rank = int.from_bytes(raw[:4], "little"), raw[4] & 0x7F
            shape = tuple(int(d) for d in np.frombuffer(raw[8 : 8 + 4 * rank], "<i4"))
            dtype = _ELEMENT_TYPES.get(element)
            if dtype is None:
                raise ProfileUnavailable(
                    f"tensor {(name.value or b'').decode()!r} has a type the profiler cannot feed"
                )
            feed = feeds.get((name.value or b"").decode()) if kind == "Input" else None
            if any(d < 0 for d in shape):
                # A dynamic size (the batch, mostly): the feed's, else 1, as the bench does.
                given = feed.shape if feed is not None and feed.ndim == len(shape) else ()
                shape = tuple(
                    (int(given[k]) if given else 1) if d < 0 else d for k, d in enumerate(shape)
                )
                ctypes.memmove(
                    ctypes.addressof(ranked) + 8, np.asarray(shape, "<i4").tobytes(), 4 * rank
                )
                if kind == "Input":
                    dims = (ctypes.c_int * rank)(*shape)
                    _check(
                        lib.LiteRtCompiledModelResizeInputTensor(
                            self.compiled, _SIZE(0), _SIZE(i), dims, _SIZE(rank)
                        ),
                        "CompiledModelResizeInputTensor",
                    )
            nbytes = max(int(np.prod(shape)), 1) * np.dtype(dtype).itemsize
            block = np.zeros(nbytes + _ALIGN, np.uint8)
            start = (-block.ctypes.data) % _ALIGN
            array = block[start : start + nbytes].view(dtype).reshape(shape)
            if feed is not None and feed.size == array.size:
                array[...] = np.asarray(feed, dtype).reshape(shape)
            elif kind == "Input":
                array[...] = _random(rng, shape, dtype)
            buffer = _P()
            _check(
                lib.LiteRtCreateTensorBufferFromHostMemory(
                    ranked, _P(array.ctypes.data), _SIZE(nbytes), None, ctypes.byref(buffer)
                ),
                "CreateTensorBufferFromHostMemory",
            )
            self._arrays.append(block)
            self._buffers.append(buffer)
            buffers.append(buffer)
        return buffers

    def run(self) -> None:
        _check(
            self.lib.LiteRtRunCompiledModel(
                self.compiled,
                _SIZE(0),
                self._counts[0],
                self._inputs,
                self._counts[1],
                self._outputs,
            ),
            "RunCompiledModel",
        )

    def events(self) -> list[tuple[str, int, int, int]]:
        """(tag, event type, elapsed us, metadata) of every event recorded, in order."""
        lib, count = self.lib, ctypes.c_int()
        _check(
            lib.LiteRtGetNumProfilerEvents(self.profiler, ctypes.byref(count)),
            "GetNumProfilerEvents",
        )
        if count.value == 0:
            return []
        # ProfiledEventData's size depends on the build's memory-usage struct; read into a
        # generous buffer and find the stride from the first two events.
        block = (ctypes.c_uint8 * (160 * count.value + 4096))()
        _check(lib.LiteRtGetProfilerEvents(self.profiler, count, block), "GetProfilerEvents")
        raw = bytes(block)
        stride = _stride(raw, count.value)
        out = []
        for i in range(count.value):
            base = i * stride
            tag_ptr = int.from_bytes(raw[base : base + 8], "little")
            kind = int.from_bytes(raw[base + 8 : base + 12], "little")
            elapsed = int.from_bytes(raw[base + 24 : base + 32], "little")
            meta = int.from_bytes(
                raw[base + stride - 24 : base + stride - 16], "little", signed=True
            )
            tag = ctypes.string_at(tag_ptr).decode(errors="replace") if tag_ptr else ""
            out.append((tag, kind, elapsed, meta))
        return out

    def close(self) -> None:
        lib = self.lib
        for buffer in self._buffers:
            lib.LiteRtDestroyTensorBuffer(buffer)
        if self.compiled:
            lib.LiteRtDestroyCompiledModel(self.compiled)
        if self.model:
            lib.LiteRtDestroyModel(self.model)
        if self.env:
            lib.LiteRtDestroyEnvironment(self.env)
        self.compiled = self.model = self.env = _P()


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype.startswith("float"):
        return rng.random(shape).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 127), shape, endpoint=True).astype(dtype)


def _stride(raw: bytes, count: int) -> int:
    """The size of one event: the candidate under which every event has a valid type."""
    for stride in (104, 120, 88, 136):
        if len(raw) < stride * count:
            continue
        ok = all(
            int.from_bytes(raw[i * stride + 8 : i * stride + 12], "little") in _EVENT_TYPES
            and int.from_bytes(raw[i * stride : i * stride + 8], "little") != 0
            for i in range(count)
        )
        if ok:
            return stride
    raise ProfileUnavailable("the profiler's event layout is not one this edgesmith reads")


def profile_litert(
    path: str | os.PathLike[str],
    *,
    threads: int = 1,
    runs: int = 100,
    warmup: int = 10,
    feeds: Mapping[str, np.ndarray] | None = None,
    latency_ms: float | None = None,
) -> OpProfile:
    """Per-op profile of a .tflite file on LiteRT's CPU accelerator (XNNPACK)."""
    from edgesmith.runtime.tflite_flatbuffer import read_graph

    path = Path(path)
    graph = read_graph(path)
    session = _Session(path, threads, feeds)
    try:
        for _ in range(max(warmup, 1)):
            session.run()
        measured_latency = None
        if latency_ms is None:
            measured_latency = latency_ms = _median_ms(session.run, runs)
        per_run = _op_events(_one_run(session))
        runs = max(1, min(runs, _MAX_EVENTS // max(len(per_run) + 8, 1)))
        _check(session.lib.LiteRtStartProfiler(session.profiler), "StartProfiler")
        for _ in range(runs):
            session.run()
        _check(session.lib.LiteRtStopProfiler(session.profiler), "StopProfiler")
        events = _op_events(session.events())
    finally:
        session.close()
    timings = _accumulate(events, runs, graph)
    profile = calibrate(
        timings,
        timings[0].count,
        latency_ms,
        "builtin-kernel ops keep their timestamped time; the rest of the unprofiled latency "
        "is split over the XNNPACK operators in proportion to XNNPACK's own timers",
        api="LiteRT C API CompiledModel (CPU accelerator: XNNPACK)",
        **(
            {"latency_source": "this profiler's session, profiling off"} if measured_latency else {}
        ),
    )
    profile.notes.append(
        "op_profile: XNNPACK ran the ops marked delegate XNNPACK (named by XNNPACK's own "
        "operators, whole-microsecond timers); the others ran on LiteRT's builtin kernels"
    )
    return profile


def _median_ms(call: Any, runs: int) -> float:
    # The median: on a shared machine a few preempted runs would move a mean by a lot.
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e6


def _one_run(session: _Session) -> list[tuple[str, int, int, int]]:
    _check(session.lib.LiteRtStartProfiler(session.profiler), "StartProfiler")
    session.run()
    _check(session.lib.LiteRtStopProfiler(session.profiler), "StopProfiler")
    events = session.events()
    session.lib.LiteRtResetProfiler(session.profiler)
    return events


def _op_events(events: list[tuple[str, int, int, int]]) -> list[tuple[str, int, int, int]]:
    return [e for e in events if e[1] in (_OPERATOR, _DELEGATE_OP, _DELEGATE_PROFILED_OP)]


def _accumulate(events: list[tuple[str, int, int, int]], runs: int, graph: Any) -> list[OpTiming]:
    """One :class:`OpTiming` per op of one inference, summed over ``runs`` identical runs."""
    if not events or len(events) % runs:
        raise ProfileUnavailable(
            f"the profiler recorded {len(events)} op events over {runs} runs, not the same "
            "ops in every run"
        )
    per_run = len(events) // runs
    timings: list[OpTiming] = []
    for tag, kind, _, meta in events[:per_run]:
        if kind == _OPERATOR and 0 <= meta < len(graph.ops) and graph.ops[meta].name == tag:
            op = graph.ops[meta]
            dtypes: list[str] = []
            for index in op.inputs:
                tensor = graph.tensor(index)
                if tensor is not None and tensor.dtype not in dtypes:
                    dtypes.append(tensor.dtype)
            timings.append(OpTiming(tag, dtypes, None, fixed=True, node=meta))
        elif kind == _OPERATOR:  # a delegate's node, timed as a whole by the interpreter
            timings.append(OpTiming(tag, [], tag))
        else:
            timings.append(OpTiming(tag, xnnpack_dtypes(tag), "XNNPACK"))
    # A run the OS preempted puts milliseconds on one op; on a shared machine one such run
    # outweighs hundreds of others. Runs over three times the median run are left out.
    totals = [sum(e[2] for e in events[r * per_run : (r + 1) * per_run]) for r in range(runs)]
    limit = 3 * max(float(np.median(totals)), 1.0)
    for position, (tag, _, elapsed, _) in enumerate(events):
        timing = timings[position % per_run]
        if timing.op != tag:
            raise ProfileUnavailable("the profiler recorded different ops in different runs")
        if totals[position // per_run] > limit:
            continue
        timing.total_us += elapsed
        timing.count += 1
    return timings


__all__ = ["library_path", "profile_litert", "xnnpack_dtypes"]
