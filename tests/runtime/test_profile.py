"""Per-op latency profiles (bench --profile) on LiteRT and ONNX Runtime."""

from __future__ import annotations

import importlib.util

import pytest

from edgesmith.runtime.profile_litert import xnnpack_dtypes
from edgesmith.runtime.profile_ops import OpTiming, ProfileUnavailable, calibrate, profile_file
from edgesmith.runtime.tflite_flatbuffer import read_graph

BACKENDS = [
    pytest.param(
        "litert",
        "f32",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("ai_edge_litert") is None, reason="needs ai-edge-litert"
        ),
    ),
    pytest.param(
        "onnxruntime",
        "onnx",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime"
        ),
    ),
]


def _record(path, backend, runs=200, profile=True):
    from edgesmith.runtime.bench import benchmark

    return benchmark(path, backend, threads=1, runs=runs, warmup=20, profile=profile)


@pytest.mark.parametrize(("backend", "key"), BACKENDS)
def test_profile_covers_every_op_in_order(digits_models, backend, key):
    record = _record(digits_models[key], backend)
    ops = record.op_profile
    assert ops, record.notes
    assert [e["index"] for e in ops] == list(range(len(ops)))
    assert sum(e["share"] for e in ops) == pytest.approx(1.0, abs=1e-3)
    assert all(e["ms"] >= 0 and e["measured_ms"] >= 0 for e in ops)
    by_type = record.op_profile_by_type
    assert sum(g["count"] for g in by_type) == len(ops)
    assert sum(g["share"] for g in by_type) == pytest.approx(1.0, abs=1e-3)
    assert [g["ms"] for g in by_type] == sorted((g["ms"] for g in by_type), reverse=True)
    if backend == "onnxruntime":
        import onnx

        graph = onnx.load(str(digits_models[key])).graph
        # ONNX Runtime rewrites the graph (fusions, layout changes), but the graph's compute
        # ops are there, in the graph's order: the convolution first, the softmax last.
        types = [e["op"] for e in ops]
        file_types = [n.op_type for n in graph.node]
        assert "Conv" in file_types and types.index("Conv") < types.index("Softmax")
        assert types[-1] == "Softmax" == file_types[-1]
        assert all(e["delegate"] is None for e in ops)  # the CPU provider ran them all
    else:
        # Every op of the float CNN runs inside XNNPACK: its operators, named by XNNPACK.
        assert all(e["delegate"] == "XNNPACK" for e in ops)
        assert any("Convolution" in e["op"] for e in ops)
        assert any("Fully Connected" in e["op"] for e in ops)
        assert any("float32" in e["dtypes"] for e in ops)


def test_litert_int8_profile_dtypes_and_kernels(digits_models):
    record = _record(digits_models["int8"], "litert")
    ops = record.op_profile
    assert ops, record.notes
    typed = [e for e in ops if e["dtypes"]]
    assert typed and any("int8" in e["dtypes"] for e in typed)
    graph = read_graph(digits_models["int8"])
    for entry in ops:
        if entry["delegate"] is None:  # a builtin kernel: the file's op at that index
            assert graph.ops[entry["node"]].name == entry["op"]
        elif any(k in entry["op"] for k in ("Convolution", "Fully Connected")):
            assert "float32" not in entry["dtypes"] and "int8" in entry["dtypes"]


@pytest.mark.parametrize(("backend", "key"), BACKENDS)
def test_profile_adds_up_to_unprofiled_latency(digits_models, backend, key):
    # Against the unprofiled latency of the same record (measured in the same process
    # before profiling), not another benchmark's: separate runs differ by the machine's
    # load, which is what a timing comparison in a test must not depend on.
    profiled = _record(digits_models[key], backend)
    plain = _record(digits_models[key], backend, profile=False)
    assert plain.op_profile is None and profiled.op_profile
    total = sum(e["ms"] for e in profiled.op_profile)
    calibration = profiled.op_profile_calibration
    reference = (
        calibration["unprofiled_ms"]  # the CompiledModel's own, in the profiled session
        if backend == "litert"
        else profiled.latency_ms["p50"]
    )
    assert total == pytest.approx(reference, rel=0.15), calibration
    # Raw profiler times are kept beside the calibrated ones.
    assert all(e["measured_ms"] >= 0 for e in profiled.op_profile)


def test_backend_without_profiler_says_why(digits_models):
    with pytest.raises(ProfileUnavailable, match="no per-op profiler"):
        profile_file(digits_models["f32"], "edgetpu")


def test_calibrate_keeps_kernel_times_and_splits_the_rest():
    timings = [
        OpTiming("SOFTMAX", ["int8"], None, total_us=200.0, fixed=True, node=3),
        OpTiming("Fully Connected (NC, QS8, QC8W) GEMM", ["int8"], "XNNPACK", total_us=300.0),
        OpTiming("Add (ND)", [], "XNNPACK", total_us=100.0),
    ]
    prof = calibrate(timings, 100, latency_ms=0.01, method="test")
    ms = [e["ms"] for e in prof.ops]
    assert ms[0] == pytest.approx(0.002)  # kept: 200 us over 100 runs
    assert ms[1] == pytest.approx(0.006) and ms[2] == pytest.approx(0.002)  # 3:1 of the rest
    assert sum(ms) == pytest.approx(0.01)
    assert prof.calibration["measured_ms"] == pytest.approx(0.006)
    assert prof.by_type[0]["op"].startswith("Fully Connected")


def test_xnnpack_operator_names_give_dtypes():
    assert xnnpack_dtypes("Fully Connected (NC, QD8, F32, QC8W) GEMM") == ["int8", "float32"]
    assert xnnpack_dtypes("Transpose (ND, X8) Transpose") == ["8-bit"]
    assert xnnpack_dtypes("Add (ND)") == []
