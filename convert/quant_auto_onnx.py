"""``--format onnx --quant auto``: the fastest (or smallest) .onnx within an accuracy budget.

The ONNX counterpart of :mod:`edgesmith.convert.quant_auto`, with its selection rule,
accuracy and side-by-side latency measurement. The candidates:

1. float32 (the reference), fp16, dynamic int8 (``quantize_dynamic``: int8 weights of the
   matrix products and of ONNX's LSTM op) and static int8 (QDQ, what ``--quant int8``
   writes, its unrolled LSTMs with float gates);
2. from ONNX Runtime's session profile of static int8 against float32 (1 thread), selective
   static int8 files:

   - ``int8-lstm-op``, where static int8 unrolled a recurrent layer: the layer stays ONNX's
     LSTM op with int8 weights (DynamicQuantizeLSTM), the rest static int8. An unrolled
     LSTM puts a QuantizeLinear/DequantizeLinear pair around every step's products
     (lstm-kws: 388 Q/DQ nodes, 0.15x the speed of float32's one LSTM op);
   - ``int8-float-slow-ops``: the op types without weights whose int8 nodes, with the Q/DQ
     nodes around them, took longer than the same op type in float32, kept in float32;
   - ``int8-weight-ops``: every op type without weights in float32 (only the products
     with weights int8: the fewest Q/DQ pairs).

A Q/DQ node's time goes to the op it quantizes for (a DequantizeLinear to its consumers, a
QuantizeLinear to the op that produced its input): ONNX Runtime fuses most QDQ groups into
one QLinear kernel, so the profile's node names are mapped back to the file's op types
(``QLinearMatMul`` -> ``MatMul``) and the Q/DQ time left in the profile is shared over the
op types by how many Q/DQ nodes sit next to them in the file. ``strategy.auto.int8_profile``
has, per op type, the int8 and float32 milliseconds and the verdict; a candidate's weight
width is read from its file (the dtype of most weight elements), so a dynamic file whose
convolutions kept float weights does not count as 8-bit.

Example:
    >>> from edgesmith.convert.config import ConversionConfig
    >>> from edgesmith.convert.quant_auto_onnx import auto_onnx
    >>> result = auto_onnx(model, "lstm", ConversionConfig(format="onnx", quant="auto"),
    ...                    x_calibration=x_train, x_val=x_test, y_val=y_test)  # doctest: +SKIP
    >>> result.strategy["auto"]["chosen"]  # doctest: +SKIP
    'dynamic'
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.onnx_export import OnnxResult, to_onnx
from edgesmith.convert.quant_auto import (
    ROUNDS,
    THREADS,
    add_distinct,
    auto_inputs,
    measure_accuracy,
    measure_latencies,
    select_candidate,
    write_candidate,
)
from edgesmith.convert.quant_candidates import Candidate
from edgesmith.core.errors import EdgesmithError

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Op types that hold the large weights: int8 in every selective candidate.
ONNX_WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Gather", "LSTM", "GRU"})
# Op types that only move data: they follow their neighbours, never kept float on purpose.
ONNX_LAYOUT_OPS = frozenset(
    {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Cast", "Shape"}
)
# ONNX Runtime's fused kernels, by the op type of the file they come from.
_FUSED = {
    "QGemm": "Gemm",
    "QAttention": "Attention",
    "MatMulIntegerToFloat": "MatMul",
    "DynamicQuantizeMatMul": "MatMul",
    "DynamicQuantizeLSTM": "LSTM",
    "FusedMatMul": "MatMul",
    "FusedConv": "Conv",
    "FusedGemm": "Gemm",
    "MatMulInteger": "MatMul",
    "ConvInteger": "Conv",
}
SLOW_MARGIN = 1.1  # an op type is slow in int8 past 1.1x its float32 time (profiles are noisy)
PROFILE_RUNS = 50


@dataclass
class OnnxCandidate(Candidate):
    """A :class:`Candidate` whose weight width is read from its .onnx file.

    ``lstm_op``: built with recurrent layers as ONNX LSTM ops, dynamically int8.
    """

    suffix: str = ".onnx"
    lstm_op: bool = False
    file_weight_bits: int | None = None

    @property
    def weight_bits(self) -> int:
        if self.file_weight_bits is not None:
            return self.file_weight_bits
        return {"none": 32, "fp16": 16}.get(self.quant, 8)


def plain_onnx_candidates() -> list[OnnxCandidate]:
    """The whole-model modes, always measured (float32 is the reference of the others)."""
    return [
        OnnxCandidate("float32", "none", "the reference: accuracy budget and speed ratios"),
        OnnxCandidate("int8", "int8", "static int8 (QDQ), as --quant int8 writes it"),
        OnnxCandidate("dynamic", "dynamic", "int8 weights, activations quantized at run time"),
        OnnxCandidate("fp16", "fp16", "float16 weights, float32 inputs and outputs"),
    ]


def auto_onnx(
    model: Any,
    family: str,
    config: ConversionConfig,
    *,
    x_calibration: np.ndarray | None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    logits: bool = False,
    qat: bool = False,
) -> OnnxResult:
    """Build the ONNX candidates, measure them on ``config.backend``, return the chosen file.

    As :func:`~edgesmith.convert.quant_auto.auto_tflite`: ``x_calibration`` calibrates the
    static int8 candidates, ``x_val``/``y_val`` measure accuracy (without labels, top-1
    agreement with float32), and ``strategy["auto"]`` lists every candidate.
    """
    x_val, labelled = auto_inputs(
        "--format onnx --quant auto", x_calibration, x_val, y_val, config.seed, qat=qat,
        qat_expected="--quant int8: ONNX Runtime recalibrates a QAT model for full int8",
    )  # fmt: skip
    candidates: list[Candidate] = list(plain_onnx_candidates())
    with tempfile.TemporaryDirectory(prefix="edgesmith-auto-onnx-") as tmp:
        folder = Path(tmp)
        for cand in candidates:
            build_onnx_candidate(cand, model, family, config, x_calibration)
        reference, int8 = candidates[0], candidates[1]
        profile_info: dict[str, Any] = {"source": "not profiled: static int8 did not convert"}
        if int8.content and reference.content:
            proposals, profile_info = profile_int8(
                write_candidate(folder, int8),
                write_candidate(folder, reference),
                int8_strategy=int8.strategy,
                backend=str(config.backend),
                x=x_val[:1],
            )
            for cand in proposals:
                build_onnx_candidate(cand, model, family, config, x_calibration)
                add_distinct(candidates, cand)
        measure_accuracy(candidates, folder, str(config.backend), x_val, y_val, logits)
        runnable = {
            c.name: write_candidate(folder, c) for c in candidates if c.content and not c.error
        }
        latencies = measure_latencies(runnable, str(config.backend), x=x_val[:1], threads=THREADS)
    for cand in candidates:
        cand.latency_ms = latencies.get(cand.name)
    chosen, reason = select_candidate(candidates, config.budget, config.objective)
    return _result(chosen, candidates, config, reason, profile_info, labelled, len(x_val))


def build_onnx_candidate(
    cand: Candidate,
    model: Any,
    family: str,
    config: ConversionConfig,
    x_calibration: np.ndarray | None,
) -> None:
    """Convert ``cand`` with :func:`to_onnx`; a mode the model cannot take is recorded."""
    lstm_op = bool(getattr(cand, "lstm_op", False))
    cfg = dataclasses.replace(
        config, format="onnx", quant=cand.quant, lstm="fused" if lstm_op else config.lstm
    )
    try:
        result = to_onnx(
            model,
            family,
            cfg,
            x_calibration=x_calibration,
            float_ops=cand.float_ops,
            dynamic_lstm=lstm_op,
        )
    except EdgesmithError as exc:
        cand.error = str(exc)[:300]
        return
    cand.content, cand.strategy, cand.notes = result.content, result.strategy, result.notes
    if isinstance(cand, OnnxCandidate):
        cand.file_weight_bits = weight_bits_of(result.content)


def weight_bits_of(content: bytes) -> int:
    """The width of most weight elements of an .onnx file: 8, 16 or 32.

    Initializers of more than 16 elements count (int32 biases of int8 products are small
    next to the weights, and counted as 32 only if they outweigh them).
    """
    import onnx

    proto = onnx.load_from_string(content)
    bits: dict[int, int] = {}
    for init in proto.graph.initializer:
        elements = int(np.prod(init.dims)) if init.dims else 1
        if elements <= 16:
            continue
        width = 8 * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        bits[width] = bits.get(width, 0) + elements
    if not bits:
        return 32
    return min(32, max(bits, key=lambda width: bits[width]))


def profile_type(name: str) -> str:
    """The file's op type of an ONNX Runtime profile entry (``QLinearConv`` -> ``Conv``)."""
    if name in _FUSED:
        return _FUSED[name]
    if name.startswith("QLinear"):
        return name[len("QLinear") :]
    return name


def qdq_neighbours(proto: Any) -> dict[str, int]:
    """How many Q/DQ nodes of the graph serve each op type.

    A DequantizeLinear serves its consumers (shared between them), a QuantizeLinear the op
    that produced its input (or, for a graph input, the consumers of the DequantizeLinear
    it feeds).
    """
    producer = {out: node for node in proto.graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    counts: dict[str, float] = {}

    def add(types: Sequence[str], weight: float = 1.0) -> None:
        for op in types:
            counts[op] = counts.get(op, 0.0) + weight / len(types)

    def served_by_dq(dq: Any) -> list[str]:
        return [n.op_type for n in consumers.get(dq.output[0], []) if n.op_type not in QDQ_OPS]

    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear":
            types = served_by_dq(node)
            if types:
                add(types)
        elif node.op_type == "QuantizeLinear":
            source = producer.get(node.input[0])
            if source is not None and source.op_type not in QDQ_OPS:
                add([source.op_type])
                continue
            types = [
                t
                for dq in consumers.get(node.output[0], [])
                if dq.op_type == "DequantizeLinear"
                for t in served_by_dq(dq)
            ]
            if types:
                add(types)
    return {op: round(n) for op, n in sorted(counts.items(), key=lambda item: -item[1]) if n}


def ms_by_type(ops: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Milliseconds per file op type of a profile's entries (fused kernels mapped back)."""
    out: dict[str, float] = {}
    for entry in ops:
        op = profile_type(str(entry.get("op", "")))
        out[op] = out.get(op, 0.0) + float(entry.get("ms") or 0.0)
    return out


def slow_op_types(
    int8_ms: Mapping[str, float],
    float_ms: Mapping[str, float],
    neighbours: Mapping[str, int],
    *,
    recurrent: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """One row per quantized op type: its int8 and float32 time and whether int8 is slower.

    ``int8_ms`` includes QuantizeLinear/DequantizeLinear; their time is shared out by
    ``neighbours`` (:func:`qdq_neighbours`). Op types in ``recurrent`` (the unrolled
    recurrent graph, absent from the float32 file) are judged together against float32's
    LSTM op in one ``LSTM`` row.
    """
    qdq_ms = sum(int8_ms.get(op, 0.0) for op in QDQ_OPS)
    total = sum(neighbours.values())
    rows: dict[str, dict[str, Any]] = {}
    for op in dict.fromkeys([*neighbours, *(o for o in int8_ms if o not in QDQ_OPS)]):
        if op in QDQ_OPS or op in ONNX_LAYOUT_OPS:
            continue
        share = qdq_ms * neighbours.get(op, 0) / total if total else 0.0
        group = "LSTM" if op in recurrent else op
        row = rows.setdefault(
            group,
            {
                "op": group,
                "int8_ms": 0.0,
                "qdq_nodes": 0,
                "qdq_ms": 0.0,
                "float32_ms": float_ms.get(group, 0.0),
            },
        )
        row["int8_ms"] += int8_ms.get(op, 0.0)
        row["qdq_nodes"] += int(neighbours.get(op, 0))
        row["qdq_ms"] += share
        if group != op:
            row.setdefault("unrolled_ops", []).append(op)
    out = []
    for row in rows.values():
        if not row["qdq_nodes"] and row["op"] != "LSTM":
            continue  # left float by the quantizer: nothing to compare
        cost = row["int8_ms"] + row["qdq_ms"]
        slow = cost > SLOW_MARGIN * row["float32_ms"]
        what = "the unrolled recurrent graph" if row["op"] == "LSTM" else row["op"]
        compared = "ONNX's LSTM op" if row["op"] == "LSTM" else "float32"
        row["slow"] = slow
        row["why"] = (
            f"{what}: {row['int8_ms']:.4f} ms in int8 + {row['qdq_ms']:.4f} ms of "
            f"{row['qdq_nodes']} Q/DQ nodes against {row['float32_ms']:.4f} ms in {compared}"
            + (" (slower in int8)" if slow else "")
        )
        for key in ("int8_ms", "qdq_ms", "float32_ms"):
            row[key] = round(row[key], 6)
        out.append(row)
    return sorted(out, key=lambda r: -(r["int8_ms"] + r["qdq_ms"]))


def selective_onnx_candidates(
    rows: Sequence[Mapping[str, Any]], graph_ops: Sequence[str], *, unrolled: bool
) -> list[OnnxCandidate]:
    """Selective static int8 candidates from :func:`slow_op_types`' verdicts.

    Empty when no op type was slower in int8 than in float32.
    """
    out: list[OnnxCandidate] = []
    recurrent = next((r for r in rows if r["op"] == "LSTM"), None)
    if unrolled and recurrent is not None and recurrent["slow"]:
        out.append(
            OnnxCandidate(
                "int8-lstm-op",
                "int8",
                "the unrolled LSTM was slower than float32's LSTM op: kept as ONNX's LSTM "
                "op with int8 weights (DynamicQuantizeLSTM), the rest static int8",
                lstm_op=True,
            )
        )
    # Weight ops stay int8 (float, they would be a float32 file): the weight-ops file is
    # the one with the fewest Q/DQ pairs around them.
    slow = tuple(r["op"] for r in rows if r["slow"] and r["op"] not in ONNX_WEIGHT_OPS)
    # With an unrolled graph, keeping its (slow) op types float leaves a float unrolled
    # LSTM: int8-lstm-op is the selective file for the recurrence.
    if slow and not unrolled:
        out.append(
            OnnxCandidate(
                "int8-float-slow-ops",
                "int8",
                f"{', '.join(slow)} slower in int8 (with their Q/DQ nodes): those in float32",
                float_ops=slow,
            )
        )
    if slow or out:
        wide = tuple(
            op
            for op in graph_ops
            if op not in ONNX_WEIGHT_OPS and op not in ONNX_LAYOUT_OPS and op not in QDQ_OPS
        )
        if wide and set(wide) != set(slow):
            out.append(
                OnnxCandidate(
                    "int8-weight-ops",
                    "int8",
                    "every op type without weights in float32 (fewest Q/DQ pairs); "
                    "products with weights int8",
                    float_ops=wide,
                    lstm_op=unrolled,
                )
            )
    return out


def profile_int8(
    int8_path: Path,
    float_path: Path,
    *,
    int8_strategy: Mapping[str, Any],
    backend: str,
    x: np.ndarray | None = None,
) -> tuple[list[OnnxCandidate], dict[str, Any]]:
    """Profile static int8 against float32 and propose the selective candidates.

    Returns the candidates and what goes in the record (per op type, the verdict).
    """
    import onnx

    from edgesmith.core.native_log import native_log
    from edgesmith.runtime.profile_ops import ProfileUnavailable, profile_file

    int8_proto = onnx.load(int8_path)
    float_counts = Counter(node.op_type for node in onnx.load(float_path).graph.node)
    int8_counts = Counter(node.op_type for node in int8_proto.graph.node)
    graph_ops = list(int8_counts)
    unrolled = str(int8_strategy.get("lstm", "")).startswith("unrolled") and (
        "LSTM" in float_counts
    )
    # The op types the unrolling added or multiplied (a Dense's Gemm becomes one per step).
    recurrent = [
        op
        for op in graph_ops
        if op not in QDQ_OPS
        and op not in ONNX_LAYOUT_OPS
        and int8_counts[op] > float_counts.get(op, 0)
    ]
    try:
        feeds = _feeds(int8_path, x)
        with native_log():
            prof8 = profile_file(
                int8_path, backend, threads=THREADS, runs=PROFILE_RUNS, feeds=feeds
            )
            prof32 = profile_file(
                float_path, backend, threads=THREADS, runs=PROFILE_RUNS, feeds=feeds
            )
    except ProfileUnavailable as exc:
        return [], {"source": f"not profiled: {str(exc)[:200]}"}
    int8_ms, float_ms = ms_by_type(prof8.ops), ms_by_type(prof32.ops)
    rows = slow_op_types(
        int8_ms,
        float_ms,
        qdq_neighbours(int8_proto),
        recurrent=recurrent if unrolled else (),
    )
    total8, total32 = sum(int8_ms.values()), sum(float_ms.values())
    qdq = sum(int8_ms.get(op, 0.0) for op in QDQ_OPS)
    info = {
        "source": f"ONNX Runtime session profiles of static int8 and float32 on {backend} "
        f"({THREADS} thread, {PROFILE_RUNS} runs each)",
        "int8_latency_ms": round(total8, 6),
        "float32_latency_ms": round(total32, 6),
        "qdq_nodes": sum(1 for node in int8_proto.graph.node if node.op_type in QDQ_OPS),
        "qdq_ms": round(qdq, 6),
        "qdq_share": round(qdq / total8, 4) if total8 > 0 else None,
        "qdq_attribution": "Q/DQ time shared over op types by the Q/DQ nodes next to them",
        "op_types": rows,
        "slow_in_int8": [r["op"] for r in rows if r["slow"]],
    }
    if unrolled:
        info["recurrent"] = (
            f"static int8 unrolled the LSTM into {', '.join(recurrent)}; float32 runs one LSTM op"
        )
    proposals = selective_onnx_candidates(rows, graph_ops, unrolled=unrolled)
    return proposals, info


def _feeds(path: Path, x: np.ndarray | None) -> dict[str, np.ndarray] | None:
    """One real sample as the profiler's input (random inputs where none is given)."""
    if x is None:
        return None
    import onnx

    graph_input = onnx.load(path).graph.input[0]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
    return {graph_input.name: np.ascontiguousarray(x[:1]).astype(dtype)}


def onnx_precision(content: bytes) -> dict[str, list[str]]:
    """Op types of an .onnx file grouped by what they compute in.

    ``int8`` (QDQ: fed by DequantizeLinear), ``int8 weights, float32 activations`` (ONNX
    Runtime's dynamic kernels), ``float16`` or ``float32``.
    """
    import onnx

    proto = onnx.load_from_string(content)
    producer = {out: node.op_type for node in proto.graph.node for out in node.output}
    halves = {
        init.name for init in proto.graph.initializer if init.data_type == onnx.TensorProto.FLOAT16
    }
    groups: dict[str, set[str]] = {}
    for node in proto.graph.node:
        op = node.op_type
        if op in QDQ_OPS or op in ONNX_LAYOUT_OPS:
            continue
        if op.startswith("DynamicQuantize") or op in ("MatMulInteger", "ConvInteger"):
            key = "int8 weights, float32 activations"
        elif any(producer.get(name) == "DequantizeLinear" for name in node.input):
            key = "int8"
        elif any(name in halves for name in node.input):
            key = "float16"
        else:
            key = "float32"
        groups.setdefault(key, set()).add(op)
    return {key: sorted(ops) for key, ops in sorted(groups.items())}


def _result(
    chosen: Candidate,
    candidates: Sequence[Candidate],
    config: ConversionConfig,
    reason: str,
    profile_info: dict[str, Any],
    labelled: bool,
    samples: int,
) -> OnnxResult:
    """The chosen file with a strategy that says what the search measured and chose."""
    reference = candidates[0]
    base_ms = reference.latency_ms
    rows = []
    for cand in candidates:
        row = cand.summary()
        row["lstm_op"] = bool(getattr(cand, "lstm_op", False))
        if base_ms and cand.latency_ms:
            row["speedup_vs_float32"] = round(base_ms / cand.latency_ms, 3)
        if cand.content and reference.content:
            row["size_ratio_vs_float32"] = round(reference.size_bytes / cand.size_bytes, 3)
        rows.append(row)
    strategy = dict(chosen.strategy)
    strategy["precision"] = onnx_precision(chosen.content)
    strategy["auto"] = {
        "chosen": chosen.name,
        "quant": chosen.quant,
        "float_ops": list(chosen.float_ops),
        "reason": reason,
        "objective": config.objective,
        "budget_pt": config.budget,
        "backend": config.backend,
        "threads": THREADS,
        "accuracy_on": (
            f"{samples} labelled validation samples (top-1)"
            if labelled
            else f"{samples} samples: top-1 agreement with the float32 file (no labels)"
        ),
        "latency": f"p50 over {ROUNDS} alternating rounds of every candidate, same process",
        "int8_profile": profile_info,
        "candidates": rows,
    }
    speed = ""
    if base_ms and chosen.latency_ms:
        speed = f", {base_ms / chosen.latency_ms:.2f}x the speed of float32"
    notes = [
        *chosen.notes,
        f"quant auto: chose {chosen.name} ({chosen.why}): p50 {chosen.latency_ms or 0:.4f} ms "
        f"on {config.backend} ({THREADS} thread){speed}, {chosen.drop_pt or 0:+.2f} pt "
        f"against float32, {chosen.size_bytes:,} bytes; {reason}",
    ]
    slow = [r for r in profile_info.get("op_types", []) if r.get("slow")]
    if base_ms and chosen.latency_ms and chosen.latency_ms > base_ms:
        notes.append(
            "quant auto: no file with 8-bit weights within the budget ran as fast as float32 "
            f"here (float32 p50 {base_ms:.4f} ms); slower in static int8: "
            + ("; ".join(r["why"] for r in slow[:4]) or "no single op type")
        )
    return OnnxResult(chosen.content, strategy, notes)


__all__ = [
    "ONNX_LAYOUT_OPS",
    "ONNX_WEIGHT_OPS",
    "OnnxCandidate",
    "auto_onnx",
    "build_onnx_candidate",
    "ms_by_type",
    "onnx_precision",
    "plain_onnx_candidates",
    "profile_int8",
    "profile_type",
    "qdq_neighbours",
    "selective_onnx_candidates",
    "slow_op_types",
    "weight_bits_of",
]
