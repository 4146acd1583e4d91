"""Offline target analysis of a .tflite file: what would run on a Coral Edge TPU or a GPU delegate.

TF-free. The Edge TPU prediction follows Coral's published model requirements and
supported-operations table, written below as data. The Edge TPU compiler maps ops in
execution order up to the first one it cannot map and leaves that op and every op after it
on the CPU (one Edge TPU segment per graph), so the first fallback op decides how much of
the model is accelerated. When ``edgetpu_compiler`` is on PATH it is run too and its log
is returned next to the prediction.

The JSON keys ``target``, ``ops`` (``{index, op, maps, reason}``), ``first_fallback_op``
and ``mapped_op_fraction`` are a contract for acceptance checks.

Example:
    >>> from edgesmith.convert.analyze import analyze
    >>> report = analyze("cnn-int8.tflite", "edgetpu")  # doctest: +SKIP
    >>> report["first_fallback_op"], report["mapped_op_fraction"]  # doctest: +SKIP
    (None, 1.0)
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ConfigError
from edgesmith.runtime.tflite_flatbuffer import Graph, Op, Tensor, read_graph

TARGETS = ("edgetpu", "gpu")

# Coral: "the Edge TPU has roughly 8 MB of SRAM that can cache the model's parameter data";
# parameters beyond it stream from host memory on every inference.
EDGETPU_PARAMETER_CACHE_BYTES = 8 * 1024 * 1024
SOFTMAX_MAX_ELEMENTS = 16_000
EIGHT_BIT = ("int8", "uint8")

Check = Callable[[Graph, Op], "str | None"]


def _input(graph: Graph, op: Op, position: int) -> Tensor | None:
    """Input ``position`` of ``op``; None when left out (-1) or absent (a malformed op)."""
    return graph.tensor(op.inputs[position]) if len(op.inputs) > position else None


def _no_fused_activation(graph: Graph, op: Op) -> str | None:
    if op.options.get("fused_activation_function", 0):
        return "a fused activation function is not supported on this op"
    return None


def _same_dilation(graph: Graph, op: Op) -> str | None:
    h, w = op.options.get("dilation_h_factor", 1), op.options.get("dilation_w_factor", 1)
    if h != w:
        return f"dilation {h}x{w}: x and y dilation must be equal"
    return None


def _fc_default_weights(graph: Graph, op: Op) -> str | None:
    if op.options.get("weights_format", 0) != 0:
        return "fully-connected weights not in the default format (shuffled formats unsupported)"
    return None


def _softmax_1d(graph: Graph, op: Op) -> str | None:
    t = _input(graph, op, 0)
    if t is None:
        return None
    outer = [d for d in t.shape[:-1] if d > 1]
    if outer:
        return f"input of shape {t.shape}: Softmax maps only a 1-D input (one row)"
    if t.shape and t.shape[-1] > SOFTMAX_MAX_ELEMENTS:
        return f"input of {t.shape[-1]} elements: at most {SOFTMAX_MAX_ELEMENTS:,}"
    return None


def _strided_slice_unit(graph: Graph, op: Op) -> str | None:
    strides = _input(graph, op, 3)
    values = strides.values if strides is not None else None
    if values is None:
        return "strides are not constant: they must all be 1"
    if any(v != 1 for v in values):
        return f"strides {values}: all strides must be 1"
    if op.options.get("ellipsis_mask", 0) or op.options.get("new_axis_mask", 0):
        return "ellipsis or new-axis masks are not supported"
    return None


def _axes_not_batch(position: int, what: str) -> Check:
    def check(graph: Graph, op: Op) -> str | None:
        data = _input(graph, op, 0)
        axes_tensor = _input(graph, op, position)
        if data is None or axes_tensor is None or axes_tensor.values is None:
            return None
        rank = len(data.shape)
        axes = [a % rank for a in axes_tensor.values] if rank else []
        if 0 in axes and rank > 1:
            return f"{what} over the batch axis (axes {axes_tensor.values})"
        return None

    return check


def _pack_not_batch(graph: Graph, op: Op) -> str | None:
    if op.options.get("axis", 1) == 0:
        return "packing along the batch axis"
    return None


def _pad_not_batch(graph: Graph, op: Op) -> str | None:
    pads = _input(graph, op, 1)
    if pads is not None and pads.values is not None and any(pads.values[:2]):
        return "padding in the batch dimension"
    return None


def _split_not_batch(graph: Graph, op: Op) -> str | None:
    axis = _input(graph, op, 0)
    data = _input(graph, op, 1)
    if axis is None or not axis.values or data is None or len(data.shape) < 2:
        return None
    return "splitting along the batch axis" if axis.values[0] % len(data.shape) == 0 else None


def _squeeze_small(graph: Graph, op: Op) -> str | None:
    t = _input(graph, op, 0)
    if t is not None and len(t.shape) > 3:
        return f"input of rank {len(t.shape)}: Squeeze maps 1-D to 3-D inputs only"
    return None


def _three_d(graph: Graph, op: Op) -> str | None:
    t = _input(graph, op, 0)
    if t is not None and len([d for d in t.shape if d > 1]) > 3:
        return f"input of shape {t.shape}: resize needs a 3-D tensor (batch 1)"
    return None


def _ok(graph: Graph, op: Op) -> str | None:
    return None


# Coral's supported-operations table (coral.ai/docs/edgetpu/models-intro, compiler v16):
# op -> the documented limit. Assumptions where the table is terse: "Mean/Sum/ReduceMax/
# ReduceMin: cannot operate on the batch dimension" is checked on constant axes;
# UNIDIRECTIONAL_SEQUENCE_LSTM is the "LSTM: unidirectional only" entry; HardSwish and
# BatchMatMul are absent from the table and treated as unsupported.
EDGETPU_OPS: dict[str, Check] = {
    "ADD": _ok,
    "AVERAGE_POOL_2D": _no_fused_activation,
    "CONCATENATION": _no_fused_activation,
    "CONV_2D": _same_dilation,
    "DEPTHWISE_CONV_2D": _same_dilation,
    "EXPAND_DIMS": _ok,
    "FULLY_CONNECTED": _fc_default_weights,
    "L2_NORMALIZATION": _ok,
    "LOGISTIC": _ok,
    "LSTM": _ok,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _ok,
    "MAXIMUM": _ok,
    "MAX_POOL_2D": _no_fused_activation,
    "MEAN": _axes_not_batch(1, "reduction"),
    "MINIMUM": _ok,
    "MUL": _ok,
    "PACK": _pack_not_batch,
    "PAD": _pad_not_batch,
    "PRELU": _ok,
    "QUANTIZE": _ok,
    "REDUCE_MAX": _axes_not_batch(1, "reduction"),
    "REDUCE_MIN": _axes_not_batch(1, "reduction"),
    "RELU": _ok,
    "RELU6": _ok,
    "RELU_N1_TO_1": _ok,
    "RESHAPE": _ok,
    "RESIZE_BILINEAR": _three_d,
    "RESIZE_NEAREST_NEIGHBOR": _three_d,
    "RSQRT": _ok,
    "SLICE": _ok,
    "SOFTMAX": _softmax_1d,
    "SPACE_TO_DEPTH": _ok,
    "SPLIT": _split_not_batch,
    "SQUEEZE": _squeeze_small,
    "STRIDED_SLICE": _strided_slice_unit,
    "SUB": _ok,
    "SUM": _axes_not_batch(1, "reduction"),
    "SQUARED_DIFFERENCE": _ok,
    "TANH": _ok,
    "TRANSPOSE": _ok,
    "TRANSPOSE_CONV": _ok,
}

# LiteRT GPU delegate: the ops its model builder parses (delegates/gpu/common/
# model_builder.cc and the GPU delegate guide). The delegate partitions the graph freely,
# so every unsupported op falls back to the CPU on its own, with a copy at each boundary.
GPU_OPS = frozenset(
    [
        "ABS",
        "ADD",
        "AVERAGE_POOL_2D",
        "BATCH_MATMUL",
        "CAST",
        "CONCATENATION",
        "CONV_2D",
        "COS",
        "CUMSUM",
        "DENSIFY",
        "DEPTH_TO_SPACE",
        "DEPTHWISE_CONV_2D",
        "DEQUANTIZE",
        "DIV",
        "ELU",
        "EQUAL",
        "EXP",
        "EXPAND_DIMS",
        "FLOOR",
        "FLOOR_DIV",
        "FLOOR_MOD",
        "FULLY_CONNECTED",
        "GATHER",
        "GREATER",
        "GREATER_EQUAL",
        "HARD_SWISH",
        "LEAKY_RELU",
        "LESS",
        "LESS_EQUAL",
        "LOG",
        "LOGICAL_AND",
        "LOGISTIC",
        "LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MIRROR_PAD",
        "MUL",
        "NEG",
        "NOT_EQUAL",
        "ONE_HOT",
        "PACK",
        "PAD",
        "PADV2",
        "POW",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "REDUCE_PROD",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SELECT",
        "SELECT_V2",
        "SIN",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SPLIT_V",
        "SQRT",
        "SQUARE",
        "SQUARED_DIFFERENCE",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "TANH",
        "TILE",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
        "UNPACK",
    ]
)
# Tensor types the GPU delegate computes with (8-bit models are dequantized to float).
GPU_TYPES = ("float32", "float16", "int8", "uint8", "int32", "int64", "bool")


def analyze(path: str | os.PathLike[str], target: str) -> dict[str, Any]:
    """Predict which ops of the .tflite file at ``path`` map to ``target`` (edgetpu or gpu)."""
    if target not in TARGETS:
        raise ConfigError(f"--target {target}", expected=f"one of {', '.join(TARGETS)}")
    from edgesmith.core.errors import ModelFileError

    try:
        graph = read_graph(path)
    except ModelFileError:
        if Path(path).suffix.lower() != ".onnx":
            raise
        raise ModelFileError(
            f"{path}: an .onnx file; the {target} analysis reads the ops of .tflite files "
            "(the Edge TPU and LiteRT's GPU delegate run TFLite models)",
            expected="a .tflite file",
            fix="convert the model with --format tflite (and --quant int8 for the Edge TPU), "
            "then analyze that file",
        ) from None
    return analyze_edgetpu(graph) if target == "edgetpu" else analyze_gpu(graph)


def analyze_edgetpu(graph: Graph, *, compiler: str | None = None) -> dict[str, Any]:
    """The Edge TPU prediction for ``graph`` (and the compiler's log when it is installed)."""
    verdicts = [_edgetpu_reason(graph, op) for op in graph.ops]
    boundary = _boundary_ops(graph)
    first = next((i for i, reason in enumerate(verdicts) if reason and i not in boundary), None)
    ops = []
    for op, reason in zip(graph.ops, verdicts, strict=True):
        maps = reason is None and (first is None or op.index < first)
        if op.index in boundary and reason:
            reason = f"{reason} (runs on the CPU at the model's boundary)"
        elif reason is None and not maps:
            first_op = graph.ops[first].name if first is not None else ""
            reason = (
                f"supported, but after the first CPU op #{first} ({first_op}): the compiler "
                "maps one segment and runs everything after it on the CPU"
            )
        ops.append(_op_entry(graph, op, maps, reason))
    report = _summary("edgetpu", graph, ops, first)
    params = graph.constant_bytes
    report.update(
        parameter_bytes=params,
        parameter_cache_bytes=EDGETPU_PARAMETER_CACHE_BYTES,
        parameters_fit_cache=params <= EDGETPU_PARAMETER_CACHE_BYTES,
        compiler=run_edgetpu_compiler(graph.path, compiler),
    )
    return report


def analyze_gpu(graph: Graph) -> dict[str, Any]:
    """The GPU-delegate prediction: documented op list, tensor types, LiteRT's analyzer."""
    warnings, analyzer_log = _litert_gpu_warnings(graph.path)
    ops = []
    for op in graph.ops:
        reason = None
        if op.name not in GPU_OPS:
            reason = f"{op.name} is not in the GPU delegate's supported ops"
        else:
            bad = [t for t in graph.op_tensors(op) if not t.constant and t.dtype not in GPU_TYPES]
            if bad:
                reason = f"tensor {bad[0].name or bad[0].index} is {bad[0].dtype}"
            elif any(t.dynamic for t in graph.op_tensors(op)):
                reason = "a dynamic dimension (the GPU delegate needs static shapes)"
        if op.index in warnings:
            reason = "; ".join(filter(None, [reason, warnings[op.index]]))
        ops.append(_op_entry(graph, op, reason is None, reason))
    first = next((entry["index"] for entry in ops if not entry["maps"]), None)
    report = _summary("gpu", graph, ops, first)
    report["cpu_fallback_ops"] = [entry for entry in ops if not entry["maps"]]
    report["analyzer"] = analyzer_log
    return report


def _edgetpu_reason(graph: Graph, op: Op) -> str | None:
    """Why ``op`` cannot map to the Edge TPU on its own, or None if it can."""
    for t in graph.op_tensors(op):
        label = t.name or f"T#{t.index}"
        if t.dynamic:
            return f"tensor {label} has a dynamic dimension {t.signature}: sizes must be constant"
        if t.constant and t.dtype in ("int32", "int64"):
            continue  # shapes, axes and the 32-bit biases of 8-bit ops are allowed
        if t.dtype not in EIGHT_BIT:
            return f"tensor {label} is {t.dtype}: every tensor must be int8/uint8 quantized"
        big = [d for d in t.shape[:-3] if d > 1]
        if big and not t.constant:  # filters are 4-D by nature; the rule is on activations
            return (
                f"tensor {label} of shape {t.shape}: only the 3 innermost dimensions may be "
                "larger than 1"
            )
    check = EDGETPU_OPS.get(op.name)
    if check is None:
        return f"{op.name} is not in the Edge TPU's supported operations"
    return check(graph, op)


def _boundary_ops(graph: Graph) -> set[int]:
    """Float<->int8 conversions at the model's inputs and outputs, run on the CPU.

    The compiler leaves a QUANTIZE of a float model input and a DEQUANTIZE producing a
    float model output on the CPU without ending the Edge TPU segment between them.
    """
    boundary = set()
    inputs, outputs = set(graph.inputs), set(graph.outputs)
    for op in graph.ops:
        if op.name == "QUANTIZE" and op.inputs and op.inputs[0] in inputs:
            boundary.add(op.index)
        if op.name == "DEQUANTIZE" and op.outputs and op.outputs[0] in outputs:
            boundary.add(op.index)
    return boundary


def op_macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of one op (0 for ops without a matrix or convolution product)."""

    def shape(position: int, outputs: bool = False) -> list[int]:
        ids = op.outputs if outputs else op.inputs
        t = graph.tensor(ids[position]) if len(ids) > position else None
        return t.shape if t is not None else []

    out = shape(0, outputs=True)
    out_elems = math.prod(out) if out else 0
    if op.name == "CONV_2D" and len(shape(1)) == 4:  # filter [out, kh, kw, in]
        _, kh, kw, cin = shape(1)
        return out_elems * kh * kw * cin
    if op.name == "DEPTHWISE_CONV_2D" and len(shape(1)) == 4:  # filter [1, kh, kw, out]
        return out_elems * shape(1)[1] * shape(1)[2]
    if op.name == "FULLY_CONNECTED" and len(shape(1)) == 2:  # weights [out, in]
        return out_elems * shape(1)[1]
    if op.name == "BATCH_MATMUL" and shape(0):
        return out_elems * shape(0)[-1]
    if op.name == "TRANSPOSE_CONV" and len(shape(1)) == 4 and shape(2):
        _, kh, kw, cout = shape(1)
        return math.prod(shape(2)) * kh * kw * cout
    if op.name in ("UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM") and len(shape(0)) == 3:
        batch, steps, features = shape(0)
        units = out[-1] if out else 0
        return batch * steps * 4 * units * (features + units)
    return 0


def _op_entry(graph: Graph, op: Op, maps: bool, reason: str | None) -> dict[str, Any]:
    return {
        "index": op.index,
        "op": op.name,
        "maps": bool(maps),
        "reason": reason,
        "macs": op_macs(graph, op),
    }


def _summary(
    target: str, graph: Graph, ops: list[dict[str, Any]], first: int | None
) -> dict[str, Any]:
    total_macs = sum(entry["macs"] for entry in ops)
    mapped_macs = sum(entry["macs"] for entry in ops if entry["maps"])
    fallback = None
    if first is not None:
        entry = ops[first]
        fallback = {"index": entry["index"], "op": entry["op"], "reason": entry["reason"]}
    return {
        "target": target,
        "file": str(graph.path),
        "ops": ops,
        "first_fallback_op": fallback,
        "mapped_op_fraction": sum(e["maps"] for e in ops) / len(ops) if ops else 0.0,
        "mapped_mac_fraction": mapped_macs / total_macs if total_macs else None,
        "macs": total_macs,
        "op_count": len(ops),
        "subgraphs": len(graph.subgraphs),
    }


def run_edgetpu_compiler(path: Path, compiler: str | None = None) -> dict[str, Any]:
    """Run ``edgetpu_compiler`` on ``path`` when it is installed; its log and exit status."""
    exe = compiler or shutil.which("edgetpu_compiler")
    if not exe:
        return {"available": False, "log": None, "returncode": None}
    with tempfile.TemporaryDirectory(prefix="edgesmith-edgetpu-") as out:
        try:
            done = subprocess.run(
                [exe, "--show_operations", "--out_dir", out, str(path)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"available": True, "log": f"could not run {exe}: {exc}", "returncode": None}
    return {
        "available": True,
        "path": exe,
        "returncode": done.returncode,
        "log": (done.stdout + done.stderr).strip(),
    }


def _litert_gpu_warnings(path: Path) -> tuple[dict[int, str], str | None]:
    """LiteRT's model analyzer with GPU compatibility: per-op warnings and its verdict line."""
    try:
        from ai_edge_litert import _pywrap_analyzer_wrapper as wrapper
    except ImportError:
        return {}, None
    with contextlib.redirect_stdout(io.StringIO()):
        text = str(wrapper.ModelAnalyzer(str(path), True, True))
    warnings: dict[int, str] = {}
    current = None
    verdict = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Op#"):
            try:
                current = int(stripped[3:].split()[0])
            except ValueError:
                current = None
        elif "GPU COMPATIBILITY WARNING" in stripped and current is not None:
            message = stripped.split("WARNING:", 1)[-1].strip()
            warnings[current] = "; ".join(filter(None, [warnings.get(current), message]))
        elif "GPU delegate" in stripped and verdict is None:
            verdict = stripped
    return warnings, verdict
