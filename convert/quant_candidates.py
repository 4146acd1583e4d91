"""The files ``--quant auto`` chooses from, and what the per-op profile says to try.

Full int8 is not always fast: a kernel library runs the ops it has int8 kernels for and
leaves the rest to LiteRT's reference kernels, so the graph falls apart into delegated and
reference pieces. On ``transformer-digits`` (litert, XNNPACK, 1 thread) the decomposed
LayerNorm (SQUARED_DIFFERENCE, ADD, RSQRT), SOFTMAX and BATCH_MATMUL ran on reference
kernels in int8 and made the file 2.2x slower than float32, while the FULLY_CONNECTED
products (most of the weights) ran in XNNPACK in int8. The profile of the full-int8 file
(:func:`~edgesmith.runtime.profile_ops.profile_file`) names those ops; the candidates
then keep them, or every op that carries no weights, in float32 with int8 weights and
int8 products everywhere else (the converter's selective quantization, as
``tf.lite.experimental.QuantizationDebugger``'s ``denylisted_ops``).

Example:
    >>> [c.name for c in plain_candidates()][:3]
    ['float32', 'int8', 'dynamic']
    >>> widened_float_ops(["FULLY_CONNECTED", "MEAN", "RESHAPE", "SOFTMAX"], ["SOFTMAX"])
    ('SOFTMAX', 'MEAN')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesmith.convert.quant_nodes import AlignedNode

# Ops that hold the large weight tensors: they stay int8 in every selective candidate.
WEIGHT_OPS = frozenset(
    {
        "FULLY_CONNECTED",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "TRANSPOSE_CONV",
        "CONV_3D",
        "EMBEDDING_LOOKUP",
        "GATHER",
    }
)
# Ops that only move or cast data: they follow their neighbours' precision, never denylisted.
LAYOUT_OPS = frozenset(
    {
        "RESHAPE",
        "TRANSPOSE",
        "QUANTIZE",
        "DEQUANTIZE",
        "CAST",
        "SQUEEZE",
        "EXPAND_DIMS",
        "CONCATENATION",
        "STRIDED_SLICE",
        "SLICE",
        "PACK",
        "UNPACK",
        "PAD",
        "SHAPE",
    }
)
# What the profile would name where no profiler is at hand: the ops XNNPACK (LiteRT's CPU
# kernels) has no int8 kernel for in the zoo's graphs (the decomposed LayerNorm, attention).
STATIC_REFERENCE_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SUB", "SOFTMAX", "BATCH_MATMUL")


@dataclass
class Candidate:
    """One file the search builds and measures.

    ``weight_bits`` is the width of the big weight tensors (8, 16 or 32); ``float_ops``
    the op types a selective int8 candidate keeps in float32, ``float_nodes`` the single
    weight ops it keeps in float32 (with the profiled times that chose them).
    """

    name: str
    quant: str
    why: str
    float_ops: tuple[str, ...] = ()
    suffix: str = ".tflite"  # the file format's: .tflite or .onnx
    float_nodes: tuple[AlignedNode, ...] = ()
    content: bytes = b""
    strategy: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    accuracy: float | None = None
    drop_pt: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    bits: int | None = None  # the stored weights' width where ``quant`` does not say it

    @property
    def weight_bits(self) -> int:
        return self.bits or {"none": 32, "fp16": 16}.get(self.quant, 8)

    @property
    def size_bytes(self) -> int:
        return len(self.content)

    def summary(self) -> dict[str, Any]:
        """The JSON of this candidate in the record's ``strategy.auto.candidates``."""
        out: dict[str, Any] = {
            "name": self.name,
            "quant": self.quant,
            "float_ops": list(self.float_ops),
            "weight_bits": self.weight_bits,
            "why": self.why,
            "size_bytes": self.size_bytes if self.content else None,
            "accuracy": None if self.accuracy is None else round(self.accuracy, 6),
            "drop_pt": None if self.drop_pt is None else round(self.drop_pt, 3),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 6),
        }
        if self.float_nodes:
            out["float_nodes"] = [node.to_dict() for node in self.float_nodes]
        if self.error:
            out["error"] = self.error
        return out


def plain_candidates() -> list[Candidate]:
    """The whole-model modes, always measured (float32 is the reference of the others)."""
    return [
        Candidate("float32", "none", "the reference: accuracy budget and speed ratios"),
        Candidate("int8", "int8", "full int8 (what Edge TPUs and NPUs need)"),
        Candidate("dynamic", "dynamic", "int8 weights, float activations (int8 products)"),
        Candidate("fp16", "fp16", "float16 weights, float32 compute"),
    ]


def weight_only_candidate(float_content: bytes) -> Candidate:
    """The float32 file with every weight-op filter stored as int8 (weight-only int8).

    The filters are unpacked to float32 once, when the file is loaded, so it computes
    exactly as float32 does and as fast, from about a quarter of the weight bytes: on a
    CPU whose int8 kernels are not faster than its float ones (no VNNI or dotprod), the
    small file that is not slower. Measured on transformer-kws (litert, XNNPACK, 1
    thread): 0.99-1.00x the speed of float32, 2.67x smaller, no accuracy lost, where dynamic
    range ran at 0.87x and full int8 at 0.27x.
    """
    from edgesmith.convert.quant_nodes import pack_node_weights

    cand = Candidate(
        "int8-weights",
        "none",
        "int8 weights (per output channel), unpacked to float32 when loaded: float32 compute",
        bits=8,
    )
    try:
        cand.content, kept = pack_node_weights(float_content, bits=8)
    except Exception as exc:  # a graph the packer does not take: no candidate, said why
        cand.error = f"weights not packed: {type(exc).__name__}: {exc}"[:300]
        return cand
    cand.notes = [f"int8-weights: left in float32: {line}" for line in kept]
    if cand.content == float_content or not cand.content:
        cand.error = "no float32 weight to pack"
    return cand


def int16x8_candidate() -> Candidate:
    """16-bit activations, 8-bit weights: tried only when no 8-bit file keeps the accuracy.

    LiteRT's CPU kernels have no int16x8 path in XNNPACK, so it is rarely fast; it is the
    accurate 8-bit-weight fallback.
    """
    return Candidate(
        "int16x8", "int16x8", "no 8-bit-weight file kept the accuracy: 16-bit activations"
    )


def selective_candidates(reference_ops: Sequence[str], graph_ops: Sequence[str]) -> list[Candidate]:
    """Selective int8 candidates from the ops that ran on reference kernels in full int8.

    ``reference-ops`` keeps exactly those op types in float32; ``float-activations``
    keeps every op type that carries no weights in float32 (fewer int8/float boundaries,
    each a QUANTIZE or DEQUANTIZE). Empty when every int8 op ran in the fast kernels.
    """
    if not reference_ops:
        return []
    exact = tuple(dict.fromkeys(reference_ops))
    out = [
        Candidate(
            "int8-float-reference-ops",
            "int8",
            f"full int8 ran {', '.join(exact)} on reference kernels: those in float32",
            float_ops=exact,
        )
    ]
    wide = widened_float_ops(graph_ops, exact)
    if set(wide) != set(exact):
        out.append(
            Candidate(
                "int8-float-activations",
                "int8",
                "every op without weights in float32 (fewer int8/float boundaries); "
                "weight ops int8",
                float_ops=wide,
            )
        )
    return out


def slow_node_candidates(
    nodes: Sequence[AlignedNode], reference_ops: Sequence[str] = ()
) -> list[Candidate]:
    """Full int8 with ``nodes`` (weight ops slower in int8 than in float32) kept in float32.

    With ``reference_ops`` (op types full int8 ran on reference kernels) a second file keeps
    those in float32 too, as ``int8-float-reference-ops`` does. Empty without nodes.
    """
    if not nodes:
        return []
    kept = tuple(nodes)
    timing = "; ".join(
        f"#{n.op_index} {n.op} {n.int8_ms:.4f} ms int8 vs {n.float_ms:.4f} ms float32" for n in kept
    )
    out = [
        Candidate(
            "int8-float-slow-nodes",
            "int8",
            "full int8 except the weight ops slower in int8 than in float32, computed in float32 "
            f"from float16 weights ({timing})",
            float_nodes=kept,
        )
    ]
    if reference_ops:
        exact = tuple(dict.fromkeys(reference_ops))
        out.append(
            Candidate(
                "int8-float-slow-nodes-reference-ops",
                "int8",
                f"the slow weight ops and {', '.join(exact)} (reference kernels) in float32",
                float_ops=exact,
                float_nodes=kept,
            )
        )
    return out


def widened_float_ops(graph_ops: Sequence[str], reference_ops: Sequence[str]) -> tuple[str, ...]:
    """``reference_ops`` plus every op type of the graph that holds no weights and moves data."""
    wide = list(dict.fromkeys(reference_ops))
    for op in graph_ops:
        if op not in WEIGHT_OPS and op not in LAYOUT_OPS and op not in wide:
            wide.append(op)
    return tuple(wide)


def reference_ops_from_profile(profile_ops: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Op types an int8 file ran outside any delegate, with their milliseconds per run.

    Entries with a delegate ran in the kernel library (XNNPACK): their names are the
    library's, not op types. QUANTIZE/DEQUANTIZE are the boundaries, not the cause.
    """
    out: dict[str, float] = {}
    for entry in profile_ops:
        op = str(entry.get("op", ""))
        if entry.get("delegate") or op in LAYOUT_OPS or not op.isupper():
            continue
        out[op] = out.get(op, 0.0) + float(entry.get("ms") or 0.0)
    return dict(sorted(out.items(), key=lambda item: -item[1]))


def profile_reference_ops(
    path: str | os.PathLike[str], backend: str, threads: int, graph_ops: Sequence[str]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Which op types of the int8 file at ``path`` run on reference kernels, and the evidence.

    Returns the op types with their ms per run, and what goes in the record: the profile
    by type, or, where ``backend`` cannot profile here, the static list that stands in.
    """
    found, info, _ = profile_int8(path, backend, threads, graph_ops)
    return found, info


def profile_int8(
    path: str | os.PathLike[str], backend: str, threads: int, graph_ops: Sequence[str]
) -> tuple[dict[str, float], dict[str, Any], list[dict[str, Any]] | None]:
    """:func:`profile_reference_ops` with the profile's entries (None where none was made)."""
    from edgesmith.core.native_log import native_log
    from edgesmith.runtime.profile_ops import ProfileUnavailable, profile_file

    try:
        with native_log():
            profile = profile_file(path, backend, threads=threads, runs=50, warmup=5)
    except ProfileUnavailable as exc:
        static = {op: 0.0 for op in STATIC_REFERENCE_OPS if op in graph_ops}
        return (
            static,
            {
                "source": "static list (no per-op profile: " + str(exc)[:200] + ")",
                "reference_ops": list(static),
            },
            None,
        )
    found = reference_ops_from_profile(profile.ops)
    total = sum(float(e.get("ms") or 0.0) for e in profile.ops)
    return (
        found,
        {
            "source": f"per-op profile of the full-int8 file on {backend}",
            "latency_ms": round(total, 6),
            "reference_ops": {op: round(ms, 6) for op, ms in found.items()},
            "reference_share": round(sum(found.values()) / total, 4) if total > 0 else None,
            "by_type": [
                {k: g[k] for k in ("op", "delegate", "ms", "share", "count")}
                for g in profile.by_type[:12]
            ],
        },
        profile.ops,
    )


def graph_op_types(content: bytes) -> list[str]:
    """The op types of a .tflite flatbuffer's main graph, in first-use order."""
    from edgesmith.runtime.tflite_flatbuffer import parse_flatbuffer

    graph = parse_flatbuffer(content, Path("candidate.tflite"))
    return list(dict.fromkeys(op.name for op in graph.main.ops))


def precision_summary(content: bytes) -> dict[str, Any]:
    """What each op type of a .tflite computes in, and the dtypes of the weights it holds.

    ``compute``: op type -> activation dtypes (its non-constant tensors); ``weights``:
    op type -> dtypes of its constant tensors with more than 16 elements (biases of int8
    products are int32, so small constants are left out).

    Example:
        >>> summary = precision_summary(open("model.tflite", "rb").read())  # doctest: +SKIP
        >>> summary["weights"]["FULLY_CONNECTED"], summary["compute"]["MEAN"]  # doctest: +SKIP
        (['int8', 'int32'], ['float32'])
    """
    from edgesmith.runtime.tflite_flatbuffer import parse_flatbuffer

    graph = parse_flatbuffer(content, Path("candidate.tflite"))
    compute: dict[str, set[str]] = {}
    weights: dict[str, set[str]] = {}
    main = graph.main
    for op in main.ops:
        for tensor in main.op_tensors(op):
            if tensor.constant:
                if tensor.elements > 16:
                    weights.setdefault(op.name, set()).add(tensor.dtype)
            else:
                compute.setdefault(op.name, set()).add(tensor.dtype)
    return {
        "compute": {op: sorted(d) for op, d in sorted(compute.items())},
        "weights": {op: sorted(d) for op, d in sorted(weights.items())},
    }


def precision_by_dtype(content: bytes) -> dict[str, list[str]]:
    """Op types grouped by the precision they compute in (``int8``, ``float32``, mixed...)."""
    groups: dict[str, list[str]] = {}
    for op, dtypes in precision_summary(content)["compute"].items():
        if op in LAYOUT_OPS:
            continue
        key = "+".join(d for d in dtypes if d != "int32") or "+".join(dtypes)
        groups.setdefault(key, []).append(op)
    return dict(sorted(groups.items()))


__all__ = [
    "LAYOUT_OPS",
    "STATIC_REFERENCE_OPS",
    "WEIGHT_OPS",
    "Candidate",
    "graph_op_types",
    "int16x8_candidate",
    "plain_candidates",
    "precision_by_dtype",
    "precision_summary",
    "profile_int8",
    "profile_reference_ops",
    "reference_ops_from_profile",
    "selective_candidates",
    "slow_node_candidates",
    "widened_float_ops",
]
