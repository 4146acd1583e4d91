"""Which single nodes of a full-int8 file to keep in float32, from two per-op profiles.

Full int8 can be slow because of one node rather than an op type. On ``dscnn-kws`` (a
DS-CNN on 49x10x1 spectrograms; litert, XNNPACK, 1 thread, AVX2 without VNNI) the whole
int8 file ran at 0.43x the speed of float32, and the per-op profiles put nearly all of it on
the first convolution: 0.096 ms in int8 (``Convolution (NHWC, QC8) IGEMM``, one input
channel) against 0.014 ms in float32, while every other op was within about 30% of its
float twin. Keeping that one node in float32 (the converter's selective quantization by
node, ``denylisted_nodes``), int8 everywhere else, took the file from 0.43x to 0.83x the
speed of float32 there (the rest of its int8 kernels are no faster than float32 on that CPU).

The profiles name XNNPACK's operators, not the file's ops, and number them by the
delegate's own nodes. So the weight-carrying ops (convolutions, depthwise convolutions,
fully-connected layers) of the float32 and the int8 profile are paired in execution order,
the kth of one with the kth of the other, and both with the kth weight op of their graph;
every pairing is checked (counts, op types, XNNPACK's kind of operator, the node index a
builtin kernel reports). Where any check fails there is no candidate, and the record says
which check failed.

Example:
    >>> node = AlignedNode(0, "CONV_2D", 0, "Convolution (NHWC, QC8) IGEMM",
    ...                    "Convolution (NHWC, F32) IGEMM", int8_ms=0.096, float_ms=0.014)
    >>> [n.position for n in slow_nodes([node], int8_total_ms=0.17)]
    [0]
    >>> kernel_kind("Convolution (NHWC, F32) DWConv"), kernel_kind("Fully Connected (NC, F32) GEMM")
    ('depthwise', 'fully-connected')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The ops that hold weights and that XNNPACK runs as one operator of a known kind, with
# the kinds it may run each as (a 1x1 convolution becomes a fully-connected GEMM; a
# depthwise convolution of one input channel may become a plain convolution).
NODE_KINDS: dict[str, frozenset[str]] = {
    "CONV_2D": frozenset({"convolution", "fully-connected"}),
    "DEPTHWISE_CONV_2D": frozenset({"depthwise", "convolution"}),
    "FULLY_CONNECTED": frozenset({"fully-connected"}),
    "TRANSPOSE_CONV": frozenset({"deconvolution"}),
    "CONV_3D": frozenset({"convolution"}),
}
# Ops that look rows up in a constant table (an embedding), and which input is the table.
TABLE_INPUT = {"GATHER": 0, "EMBEDDING_LOOKUP": 1}
# A node goes float when its int8 time exceeds its float32 time by this factor...
SLOW_RATIO = 1.3
# ... and the time saved is at least this share of the int8 file's latency: the profiles'
# whole-microsecond timers make small ops' ratios noise.
SLOW_SHARE = 0.05


@dataclass(frozen=True)
class AlignedNode:
    """One weight op with its time in the float32 and in the int8 file.

    ``position``: its rank among the weight ops in execution order (the key the converter
    resolves to the op's output tensor); ``op_index``: the op's index in the int8 file.
    """

    position: int
    op: str
    op_index: int
    int8_kernel: str
    float_kernel: str
    int8_ms: float
    float_ms: float

    @property
    def ratio(self) -> float | None:
        """int8 time over float32 time (None where float32's timer read zero)."""
        return self.int8_ms / self.float_ms if self.float_ms > 0 else None

    def to_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "position": self.position,
            "op": self.op,
            "op_index": self.op_index,
            "int8_kernel": self.int8_kernel,
            "float_kernel": self.float_kernel,
            "int8_ms": round(self.int8_ms, 6),
            "float_ms": round(self.float_ms, 6),
            "int8_over_float": None if ratio is None else round(ratio, 3),
        }


class AlignmentError(Exception):
    """The two profiles cannot be paired node by node without guessing; says which check."""


def kernel_kind(name: str) -> str | None:
    """The kind of weight op an XNNPACK operator name stands for (None: no weights)."""
    if name.startswith("Deconvolution"):
        return "deconvolution"
    if name.startswith("Convolution"):
        return "depthwise" if "DWConv" in name else "convolution"
    if name.startswith(("Fully Connected", "Dynamic Fully Connected")):
        return "fully-connected"
    return None


def weight_op_indices(ops: Sequence[Any]) -> list[int]:
    """Indices of the weight ops (:data:`NODE_KINDS`) among ``ops`` (a graph's, in order)."""
    return [i for i, op in enumerate(ops) if op.name in NODE_KINDS]


def _weight_entries(profile_ops: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The profile entries of weight ops: XNNPACK operators by kind, builtin ops by type."""
    out = []
    for entry in profile_ops:
        name = str(entry.get("op", ""))
        if entry.get("delegate") == "XNNPACK":
            if kernel_kind(name) is not None:
                out.append(entry)
        elif name in NODE_KINDS:
            out.append(entry)
        elif entry.get("delegate"):  # a whole delegated partition timed as one event
            raise AlignmentError(
                f"the profile times a delegate node ({name}) as a whole, not op by op"
            )
    return out


def _check_entry(entry: dict[str, Any], op: Any, index: int, which: str) -> None:
    name = str(entry.get("op", ""))
    if entry.get("delegate") == "XNNPACK":
        kind = kernel_kind(name)
        if kind not in NODE_KINDS[op.name]:
            raise AlignmentError(
                f"{which} weight op {index} is {op.name} but its profile entry is {name!r}"
            )
    elif name != op.name or entry.get("node", index) != index:
        raise AlignmentError(
            f"{which} weight op {index} is {op.name} but the profile's builtin entry is "
            f"{name} at node {entry.get('node')}"
        )


def align_nodes(
    float_profile: Sequence[dict[str, Any]],
    int8_profile: Sequence[dict[str, Any]],
    float_ops: Sequence[Any],
    int8_ops: Sequence[Any],
) -> list[AlignedNode]:
    """Pair the weight ops of the float32 and int8 profiles, each mapped to its int8 op.

    ``*_profile``: a profile's ``ops`` entries (execution order); ``*_ops``: the ops of
    each file's main graph (:func:`~edgesmith.runtime.tflite_flatbuffer.parse_flatbuffer`).
    Raises :class:`AlignmentError` where a count, an op type or a kernel kind disagrees.
    """
    f_idx, q_idx = weight_op_indices(float_ops), weight_op_indices(int8_ops)
    f_types = [float_ops[i].name for i in f_idx]
    q_types = [int8_ops[i].name for i in q_idx]
    if f_types != q_types:
        raise AlignmentError(
            f"the weight ops differ between the files (float32: {len(f_types)}, "
            f"int8: {len(q_types)}, or not the same types in the same order)"
        )
    f_entries, q_entries = _weight_entries(float_profile), _weight_entries(int8_profile)
    for which, entries in (("float32", f_entries), ("int8", q_entries)):
        if len(entries) != len(f_idx):
            raise AlignmentError(
                f"the {which} profile has {len(entries)} weight-op entries for "
                f"{len(f_idx)} weight ops in the file (an op split or fused by the kernel "
                "library)"
            )
    nodes = []
    for position, (fi, qi, fe, qe) in enumerate(
        zip(f_idx, q_idx, f_entries, q_entries, strict=True)
    ):
        _check_entry(fe, float_ops[fi], fi, "float32")
        _check_entry(qe, int8_ops[qi], qi, "int8")
        f_kind, q_kind = kernel_kind(str(fe["op"])), kernel_kind(str(qe["op"]))
        if f_kind and q_kind and f_kind != q_kind:
            raise AlignmentError(
                f"weight op {position} ({int8_ops[qi].name}) ran as {fe['op']!r} in float32 "
                f"but as {qe['op']!r} in int8"
            )
        nodes.append(
            AlignedNode(
                position,
                int8_ops[qi].name,
                qi,
                str(qe["op"]),
                str(fe["op"]),
                int8_ms=float(qe.get("ms") or 0.0),
                float_ms=float(fe.get("ms") or 0.0),
            )
        )
    return nodes


def slow_nodes(
    nodes: Sequence[AlignedNode],
    int8_total_ms: float,
    *,
    ratio: float = SLOW_RATIO,
    share: float = SLOW_SHARE,
) -> list[AlignedNode]:
    """The nodes whose int8 time exceeds float32's ``ratio`` times and by ``share`` of the total.

    ``int8_total_ms``: the int8 file's latency (its profile's sum), the scale of ``share``.
    """
    return [
        n
        for n in nodes
        if n.int8_ms > ratio * n.float_ms and n.int8_ms - n.float_ms >= share * int8_total_ms
    ]


def plan_slow_nodes(
    float_path: str | os.PathLike[str],
    float_content: bytes,
    int8_content: bytes,
    int8_profile: Sequence[dict[str, Any]] | None,
    backend: str,
    threads: int,
) -> tuple[list[AlignedNode], dict[str, Any]]:
    """Profile the float32 file, align it with the int8 profile and pick the slow nodes.

    Returns the nodes to keep in float32 (empty when none, or when alignment failed) and
    what goes in the record: every aligned node's times, the rule, or why there is none.
    """
    from pathlib import Path

    from edgesmith.core.native_log import native_log
    from edgesmith.runtime.profile_ops import ProfileUnavailable, profile_file
    from edgesmith.runtime.tflite_flatbuffer import parse_flatbuffer

    rule = (
        f"int8 time > {SLOW_RATIO:g}x the float32 time and the difference >= "
        f"{SLOW_SHARE:.0%} of the int8 file's latency"
    )
    info: dict[str, Any] = {"rule": rule}
    if int8_profile is None:
        info["skipped"] = "no per-op profile of the full-int8 file"
        return [], info
    try:
        with native_log():
            profile = profile_file(float_path, backend, threads=threads, runs=50, warmup=5)
    except ProfileUnavailable as exc:
        info["skipped"] = f"no per-op profile of the float32 file: {exc}"[:300]
        return [], info
    float_ops = parse_flatbuffer(float_content, Path("float32.tflite")).main.ops
    int8_ops = parse_flatbuffer(int8_content, Path("int8.tflite")).main.ops
    try:
        nodes = align_nodes(profile.ops, int8_profile, float_ops, int8_ops)
    except AlignmentError as exc:
        info["skipped"] = f"the profiles do not align node by node: {exc}"[:400]
        return [], info
    int8_total = sum(float(e.get("ms") or 0.0) for e in int8_profile)
    float_total = sum(float(e.get("ms") or 0.0) for e in profile.ops)
    chosen = slow_nodes(nodes, int8_total)
    info.update(
        {
            "float32_latency_ms": round(float_total, 6),
            "int8_latency_ms": round(int8_total, 6),
            "nodes": [n.to_dict() | {"float": n in chosen} for n in nodes],
            "float_nodes": [n.position for n in chosen],
        }
    )
    if not chosen:
        info["skipped"] = "no weight op is slower in int8 than in float32 by the rule"
    return chosen, info


def node_names(calibrated: bytes, float_nodes: Sequence[tuple[int, str]]) -> list[str]:
    """The output tensor names of the weight ops at the given positions, their types checked.

    ``calibrated``: the converter's calibrated float graph (tensor names kept), whose
    names the quantizer's ``denylisted_nodes`` match. Raises ``ValueError`` (its message
    starts with ``error:``, as the converter's own do) on a position or type mismatch.
    """
    from pathlib import Path

    from edgesmith.runtime.tflite_flatbuffer import parse_flatbuffer

    main = parse_flatbuffer(calibrated, Path("calibrated.tflite")).main
    indices = weight_op_indices(main.ops)
    names: list[str] = []
    for position, op_type in float_nodes:
        found = main.ops[indices[position]].name if 0 <= position < len(indices) else None
        if found != op_type:
            raise ValueError(
                f"error: float node {position} should be a {op_type}, the graph's weight op "
                f"{position} is {found} ({len(indices)} weight ops)"
            )
        names.append(main.tensors[main.ops[indices[position]].outputs[0]].name)
    return names


def check_float_nodes(content: bytes, positions: Sequence[int]) -> None:
    """Raise ``ValueError`` unless the weight ops at ``positions`` compute in float32.

    The quantizer ignores a denylisted name it does not find: never silently.
    """
    from pathlib import Path

    from edgesmith.runtime.tflite_flatbuffer import parse_flatbuffer

    main = parse_flatbuffer(content, Path("selective.tflite")).main
    weight_ops = [main.ops[i] for i in weight_op_indices(main.ops)]
    for position in positions:
        dtype = "missing"
        if 0 <= position < len(weight_ops):
            dtype = main.tensors[weight_ops[position].outputs[0]].dtype
        if dtype != "float32":
            raise ValueError(
                f"error: weight op {position} computes in {dtype} after selective "
                "quantization with it denylisted"
            )


def half_node_weights(content: bytes, positions: Sequence[int]) -> tuple[bytes, list[str]]:
    """The float32 weights of the weight ops at ``positions`` stored as float16.

    Each such weight becomes a float16 constant read by a DEQUANTIZE op (as the converter's
    fp16 mode writes them): XNNPACK turns it back into float32 once, when the model is
    loaded, so the op computes exactly as before from half the bytes. Returns the file and
    one line per weight left in float32 (shared, not float32, or out of float16's range).
    """
    return pack_node_weights(content, positions, bits=16)


def pack_node_weights(
    content: bytes, positions: Sequence[int] | None = None, *, bits: int = 16
) -> tuple[bytes, list[str]]:
    """The float32 weights of the weight ops at ``positions`` (None: all) stored in ``bits``.

    16: float16. 8: int8, symmetric, one scale per output channel (weight-only int8). Each
    packed weight becomes a constant read by a DEQUANTIZE op whose output is the op's
    float32 filter: XNNPACK unpacks it once, when the model is loaded, and the op computes
    in float32 at float32 speed (LiteRT's own DEQUANTIZE kernel also runs once on a
    constant). Biases stay float32. Returns the file and one line per weight left as it was.

    Example:
        >>> small, kept = pack_node_weights(open("m.tflite", "rb").read(), bits=8)  # doctest: +SKIP
    """
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    if bits not in (8, 16):
        raise ValueError(f"bits={bits}: weights are packed as float16 (16) or int8 (8)")
    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    sub = model.subgraphs[0]
    names = {i: _builtin_name(schema, code) for i, code in enumerate(model.operatorCodes)}
    ops = sub.operators
    weight_ops = [op for op in ops if names.get(op.opcodeIndex) in NODE_KINDS]
    targets = [(position, weight_ops[position], 1) for position in positions or ()]
    if positions is None:  # every weight op, and the tables that embeddings look up
        targets = [(p, op, 1) for p, op in enumerate(weight_ops)]
        targets += [
            (f"{names[op.opcodeIndex]} {i}", op, TABLE_INPUT[names[op.opcodeIndex]])
            for i, op in enumerate(ops)
            if names.get(op.opcodeIndex) in TABLE_INPUT
        ]
    readers: dict[int, int] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            readers[tensor.buffer] = readers.get(tensor.buffer, 0) + 1
    dequantize = _opcode(schema, model, schema.BuiltinOperator.DEQUANTIZE, version=3)
    kept: list[str] = []
    inserted = []
    packed: set[int] = set()
    for position, op, slot in targets:
        index = int(op.inputs[slot])
        if index in packed:  # an unrolled recurrent graph reads one kernel at every step
            continue
        tensor = sub.tensors[index]
        buffer = model.buffers[tensor.buffer]
        data = None if buffer.data is None else np.asarray(buffer.data, np.uint8)
        if tensor.type != schema.TensorType.FLOAT32 or data is None or not data.size:
            if not isinstance(position, int):
                continue  # a lookup in computed rows, not in a table of weights
            kept.append(f"weight op {position}: its weights are not a float32 constant")
            continue
        if readers.get(tensor.buffer, 0) > 1:
            kept.append(f"weight op {position}: its weights' buffer is shared")
            continue
        values = data.view(np.float32).reshape([int(d) for d in tensor.shape])
        source = schema.TensorT()
        source.shape, source.name = tensor.shape, tensor.name
        if bits == 16:
            half = values.astype(np.float16)
            if not np.all(np.isfinite(half)):
                kept.append(f"weight op {position}: its weights exceed float16's range")
                continue
            stored, source.type = half.view(np.uint8).ravel(), schema.TensorType.FLOAT16
        else:
            # The output channels: the last axis of a depthwise filter, the first elsewhere.
            axis = values.ndim - 1 if names[op.opcodeIndex] == "DEPTHWISE_CONV_2D" else 0
            stored, source.quantization = _int8_per_channel(schema, values, axis)
            source.type = schema.TensorType.INT8
        new_buffer = schema.BufferT()
        new_buffer.data = stored
        model.buffers.append(new_buffer)
        source.buffer = len(model.buffers) - 1
        sub.tensors.append(source)
        buffer.data = None  # the float32 weights are now the DEQUANTIZE's output
        unpack = schema.OperatorT()
        unpack.opcodeIndex, unpack.inputs, unpack.outputs = (
            dequantize,
            [len(sub.tensors) - 1],
            [index],
        )
        inserted.append(unpack)
        packed.add(index)
    sub.operators = [*inserted, *ops]  # first, as the converter puts its fp16 DEQUANTIZEs
    builder = flatbuffers.Builder(max(1024, len(content)))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), kept


def _int8_per_channel(schema: Any, values: Any, axis: int) -> tuple[Any, Any]:
    """``values`` as symmetric int8 with one scale per index of ``axis``, and the table."""
    import numpy as np

    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    peak = np.abs(moved).max(axis=1) if moved.size else np.zeros(values.shape[axis])
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = -1
    q = np.clip(np.round(values / scale.reshape(shape)), -127, 127).astype(np.int8)
    table = schema.QuantizationParametersT()
    table.scale, table.zeroPoint = scale, np.zeros(len(scale), np.int64)
    table.quantizedDimension = axis
    return q.view(np.uint8).ravel(), table


def _builtin_name(schema: Any, code: Any) -> str:
    value = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    for name, number in vars(schema.BuiltinOperator).items():
        if number == value and not name.startswith("_"):
            return name
    return ""


def _opcode(schema: Any, model: Any, builtin: int, *, version: int) -> int:
    """The index of ``builtin``'s operator code in ``model``, added when missing."""
    for i, code in enumerate(model.operatorCodes):
        if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) == builtin:
            code.version = max(int(code.version), version)
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, builtin, version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


__all__ = [
    "NODE_KINDS",
    "SLOW_RATIO",
    "SLOW_SHARE",
    "AlignedNode",
    "AlignmentError",
    "align_nodes",
    "check_float_nodes",
    "half_node_weights",
    "kernel_kind",
    "node_names",
    "pack_node_weights",
    "plan_slow_nodes",
    "slow_nodes",
    "weight_op_indices",
]
