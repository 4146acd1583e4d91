"""Recognise, verify and describe .tflite and .onnx files in pure Python, before any native loader.

Native loaders (the TFLite interpreter, ONNX Runtime) can crash the whole process on a
malformed file. Everything here only reads bytes with bounds checks, so a broken file
becomes a :class:`~edgesmith.core.errors.ModelFileError` naming the file and the problem:

* the format comes from the content (the ``TFL3`` flatbuffer identifier, or an ONNX
  ``ModelProto`` in protobuf wire format), and a file whose name says otherwise (an ``.onnx``
  renamed ``.tflite``) is refused with the fix;
* a TFLite flatbuffer is verified (every offset, table, vector and string of the tables a
  loader reads lies inside the file, every index is in range), like the C++ verifier does;
* an ONNX file is walked field by field (``ModelProto`` and its ``GraphProto``) so a truncated
  or random file is caught without the ``onnx`` package, which the base install lacks;
  ``onnx.checker`` also runs when ``onnx`` happens to be installed.

The file is memory-mapped, so inspecting a large model adds almost nothing to the resident
memory that a benchmark measures afterwards.

Example:
    >>> info = inspect_model("model.tflite")  # doctest: +SKIP
    >>> info.format, [(t.name, t.shape_signature, t.dtype) for t in info.inputs]  # doctest: +SKIP
    ('tflite', [('serving_default_x:0', (-1, 8, 8, 1), 'float32')])
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from edgesmith.core.errors import ModelFileError

SUFFIXES = {".tflite": "tflite", ".lite": "tflite", ".onnx": "onnx", ".ort": "onnx"}

# TensorType in tensorflow/lite/schema/schema.fbs, as NumPy dtype names (None: no NumPy twin).
_TFLITE_TYPES: dict[int, str | None] = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: None, 14: None, 15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16",
}  # fmt: skip
# TensorProto.DataType in onnx.proto.
_ONNX_TYPES: dict[int, str] = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16",
}  # fmt: skip
_DEQUANTIZE, _CUSTOM = 6, 32
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as the file declares it (-1 marks a dynamic dimension)."""

    name: str
    shape_signature: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)


@dataclass(frozen=True)
class ModelInfo:
    """What a model file holds, read without any runtime."""

    path: Path
    format: str  # tflite | onnx
    size_bytes: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    ops: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)
    float16_weights: bool = False
    edgetpu_ops: int = 0  # ops compiled for the Edge TPU (edgetpu-custom-op)
    variable_tensors: int = 0  # state kept inside the model (a fused LSTM's, for one)
    producer: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def compiled_for_edgetpu(self) -> bool:
        return self.edgetpu_ops > 0

    @property
    def fully_edgetpu(self) -> bool:
        """True when every op is an Edge TPU op (nothing is left for the CPU)."""
        return self.ops > 0 and self.edgetpu_ops == self.ops


def sniff_format(path: str | os.PathLike[str]) -> str:
    """``tflite`` or ``onnx`` from the file's content, after :func:`inspect_model`'s checks."""
    return inspect_model(path).format


def inspect_model(path: str | os.PathLike[str]) -> ModelInfo:
    """Verify a .tflite or .onnx file and describe its inputs and outputs.

    Raises :class:`ModelFileError` naming the file for a missing, empty, truncated, random
    or mislabelled file. Never loads a native library.

    Example:
        >>> inspect_model("/does/not/exist.tflite")
        Traceback (most recent call last):
        ...
        edgesmith.core.errors.ModelFileError: /does/not/exist.tflite: file not found: expected a .tflite or .onnx model file; check the path
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(
            f"{path}: file not found",
            expected="a .tflite or .onnx model file",
            fix="check the path",
        )
    if path.is_dir():
        raise ModelFileError(
            f"{path}: is a folder",
            expected="a .tflite or .onnx model file",
            fix="convert the model first (edgesmith convert) and pass the file it writes",
        )
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(
            f"{path}: empty file (0 bytes)",
            expected="a .tflite or .onnx model file",
            fix="write the model again; an interrupted copy or conversion leaves empty files",
        )
    claimed = SUFFIXES.get(path.suffix.lower())
    try:
        with (
            open(path, "rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            is_tflite = size >= 8 and data[4:8] == b"TFL3"
            if is_tflite:
                fmt = "tflite"
            elif claimed == "tflite":
                fmt = _mislabelled_or_garbage(path, data, "tflite")
            elif claimed == "onnx" or _looks_like_onnx(data):
                fmt = "onnx"
            else:
                raise ModelFileError(
                    f"{path}: neither a TFLite flatbuffer nor an ONNX model "
                    f"({size:,} bytes starting {bytes(data[:8]).hex(' ')})",
                    expected="a .tflite or .onnx model file",
                    fix="pass the file that edgesmith convert wrote",
                )
            if claimed and claimed != fmt:
                other = path.with_suffix(".onnx" if fmt == "onnx" else ".tflite").name
                kinds = {"tflite": "a TFLite flatbuffer", "onnx": "an ONNX model"}
                raise ModelFileError(
                    f"{path}: the file is {kinds[fmt]} but its name ends in {path.suffix}",
                    expected=f"{kinds[claimed]} in a {path.suffix} file",
                    fix=f"rename it to {other}",
                )
            if fmt == "tflite":
                info = _TFLiteReader(path, data).read()
            else:
                info = _OnnxReader(path, data).read()
    except (OSError, ValueError) as exc:  # unreadable, or mmap of a special file
        raise ModelFileError(
            f"{path}: cannot read the file ({exc})", expected="a readable model file"
        ) from None
    if fmt == "onnx":
        _onnx_checker(path)
    return info


def _mislabelled_or_garbage(path: Path, data: mmap.mmap, claimed: str) -> str:
    if _looks_like_onnx(data):
        return "onnx"  # the caller reports the mismatch with a rename hint
    head = bytes(data[:8]).hex(" ")
    raise ModelFileError(
        f"{path}: not a TFLite flatbuffer (bytes 4-7 are not the 'TFL3' identifier; "
        f"the file starts {head})",
        expected="a .tflite file written by the TFLite converter",
        fix="convert the model again (edgesmith convert); a random or foreign file cannot be read",
    )


# --------------------------------------------------------------------------------------
# TFLite: a bounds-checked flatbuffer reader and verifier for the tables a loader reads.


class _Corrupt(Exception):
    pass


class _Flatbuffer:
    def __init__(self, data: mmap.mmap | bytes) -> None:
        self.data = data
        self.size = len(data)
        self.tables = 0

    def check(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise _Corrupt(
                f"{what} at byte {pos:,} (+{length:,}) lies outside the {self.size:,}-byte file"
            )

    def unpack(self, fmt: str, pos: int, what: str) -> int | float:
        self.check(pos, struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int, what: str) -> _Table:
        self.tables += 1
        if self.tables > 1_000_000:  # the C++ verifier's own limit on table count
            raise _Corrupt("more than a million tables")
        return _Table(self, pos, what)

    def deref(self, pos: int, what: str) -> int:
        return pos + int(self.unpack("<I", pos, what))


class _Table:
    def __init__(self, fb: _Flatbuffer, pos: int, what: str) -> None:
        self.fb, self.pos, self.what = fb, pos, what
        self.vtable = pos - int(fb.unpack("<i", pos, f"{what} table"))
        vt_size = int(fb.unpack("<H", self.vtable, f"{what} vtable"))
        self.size = int(fb.unpack("<H", self.vtable + 2, f"{what} vtable"))
        if vt_size < 4 or vt_size % 2:
            raise _Corrupt(f"{what} has a malformed vtable (size {vt_size})")
        fb.check(self.vtable, vt_size, f"{what} vtable")
        fb.check(pos, self.size, f"{what} table")
        self.fields = (vt_size - 4) // 2

    def _field(self, index: int) -> int | None:
        if index >= self.fields:
            return None
        offset = int(self.fb.unpack("<H", self.vtable + 4 + 2 * index, self.what))
        if offset == 0:
            return None
        if offset >= self.size:
            raise _Corrupt(f"field {index} of {self.what} points past its table")
        return self.pos + offset

    def scalar(self, index: int, fmt: str, default: int | float = 0) -> int | float:
        where = self._field(index)
        return default if where is None else self.fb.unpack(fmt, where, self.what)

    def _target(self, index: int, what: str) -> int | None:
        where = self._field(index)
        return None if where is None else self.fb.deref(where, what)

    def table(self, index: int, what: str) -> _Table | None:
        target = self._target(index, what)
        return None if target is None else self.fb.table(target, what)

    def vector(self, index: int, elem: int, what: str) -> tuple[int, int]:
        """(start, length) of a vector field, checked to lie inside the file; (0, 0) if absent."""
        target = self._target(index, what)
        if target is None:
            return 0, 0
        length = int(self.fb.unpack("<I", target, what))
        self.fb.check(target + 4, length * elem, what)
        return target + 4, length

    def ints(self, index: int, what: str, fmt: str = "<i") -> list[int]:
        size = struct.calcsize(fmt)
        start, length = self.vector(index, size, what)
        return [int(v) for v in struct.unpack_from(f"<{length}{fmt[1:]}", self.fb.data, start)]

    def floats(self, index: int, what: str) -> list[float]:
        start, length = self.vector(index, 4, what)
        return list(struct.unpack_from(f"<{length}f", self.fb.data, start))

    def string(self, index: int, what: str) -> str:
        start, length = self.vector(index, 1, what)
        if not start:
            return ""
        self.fb.check(start + length, 1, f"{what} terminator")
        return bytes(self.fb.data[start : start + length]).decode("utf-8", errors="replace")

    def tables(self, index: int, what: str) -> list[_Table]:
        start, length = self.vector(index, 4, what)
        return [
            self.fb.table(self.fb.deref(start + 4 * i, what), f"{what}[{i}]") for i in range(length)
        ]


class _TFLiteReader:
    def __init__(self, path: Path, data: mmap.mmap) -> None:
        self.path = path
        self.fb = _Flatbuffer(data)

    def read(self) -> ModelInfo:
        try:
            return self._read()
        except (_Corrupt, struct.error) as exc:
            raise ModelFileError(
                f"{self.path}: truncated or corrupt TFLite flatbuffer ({exc})",
                expected="a complete .tflite file",
                fix="copy or convert the model again; the file was cut short or damaged",
            ) from None

    def _read(self) -> ModelInfo:
        fb = self.fb
        model = fb.table(fb.deref(0, "root offset"), "Model")
        version = int(model.scalar(0, "<I"))
        if version != 3:
            raise _Corrupt(f"schema version {version}, this reader knows version 3")
        codes = []
        for code in model.tables(1, "operator_codes"):
            builtin = max(int(code.scalar(0, "<b")), int(code.scalar(3, "<i")))
            codes.append(code.string(1, "custom_code") if builtin == _CUSTOM else builtin)
        buffers = model.tables(4, "buffers")
        for i, buffer in enumerate(buffers):
            buffer.vector(0, 1, f"buffers[{i}].data")
            offset, size = int(buffer.scalar(1, "<Q")), int(buffer.scalar(2, "<Q"))
            if offset > 1:  # weights stored after the flatbuffer (models over 2 GB)
                fb.check(offset, size, f"buffers[{i}] data")
        subgraphs = model.tables(2, "subgraphs")
        if not subgraphs:
            raise _Corrupt("no subgraph")
        graph_inputs: list[TensorInfo] = []
        graph_outputs: list[TensorInfo] = []
        op_counts: dict[str, int] = {}
        ops = edgetpu = variables = 0
        float16 = False
        for s, subgraph in enumerate(subgraphs):
            tensors = subgraph.tables(0, f"subgraphs[{s}].tensors")
            infos = [self._tensor(t, len(buffers), buffers) for t in tensors]
            float16 = float16 or any(d and t.dtype == "float16" for t, d in infos)
            variables += sum(bool(t.scalar(5, "<B")) for t in tensors)
            ins = subgraph.ints(1, "inputs")
            outs = subgraph.ints(2, "outputs")
            for index in (*ins, *outs):
                if not 0 <= index < len(tensors):
                    raise _Corrupt(f"subgraph {s} names tensor {index} of {len(tensors)}")
            for o, op in enumerate(subgraph.tables(3, f"subgraphs[{s}].operators")):
                opcode = int(op.scalar(0, "<I"))
                if opcode >= len(codes):
                    raise _Corrupt(f"operator {o} uses opcode {opcode} of {len(codes)}")
                for index in (*op.ints(1, "op inputs"), *op.ints(2, "op outputs")):
                    if not -1 <= index < len(tensors):
                        raise _Corrupt(f"operator {o} names tensor {index} of {len(tensors)}")
                op.table(4, "builtin_options")  # a union: its table must at least be sound
                op.vector(5, 1, "custom_options")
                op.table(12, "builtin_options_2")
                op.ints(8, "intermediates")
                if s == 0:
                    ops += 1
                    name = _op_name(codes[opcode])
                    op_counts[name] = op_counts.get(name, 0) + 1
                    edgetpu += codes[opcode] == EDGETPU_CUSTOM_OP
            if s == 0:
                graph_inputs = [infos[i][0] for i in ins]
                graph_outputs = [infos[i][0] for i in outs]
        for signature in model.tables(7, "signature_defs"):
            for tensor_map in (*signature.tables(0, "inputs"), *signature.tables(1, "outputs")):
                tensor_map.string(0, "signature tensor name")
            signature.string(2, "signature_key")
        for metadata in model.tables(6, "metadata"):
            metadata.string(0, "metadata name")
        notes = []
        if float16:
            notes.append("float16 weights (dequantized to float32 at load)")
        if op_counts.get("DEQUANTIZE") and not float16:
            notes.append("has DEQUANTIZE ops")
        return ModelInfo(
            path=self.path,
            format="tflite",
            size_bytes=fb.size,
            inputs=graph_inputs,
            outputs=graph_outputs,
            ops=ops,
            op_counts=op_counts,
            float16_weights=float16,
            edgetpu_ops=edgetpu,
            variable_tensors=variables,
            producer=model.string(3, "description"),
            notes=notes,
        )

    def _tensor(
        self, tensor: _Table, n_buffers: int, buffers: list[_Table]
    ) -> tuple[TensorInfo, bool]:
        shape = tuple(tensor.ints(0, "tensor shape"))
        signature = tuple(tensor.ints(7, "tensor shape_signature")) or shape
        type_code = int(tensor.scalar(1, "<b"))
        buffer = int(tensor.scalar(2, "<I"))
        if buffer >= max(n_buffers, 1):
            raise _Corrupt(f"tensor uses buffer {buffer} of {n_buffers}")
        name = tensor.string(3, "tensor name")
        scale = zero_point = None
        quant = tensor.table(4, "quantization")
        if quant is not None:
            scales = quant.floats(2, "quantization scale")
            zeros = quant.ints(3, "quantization zero_point", "<q")
            quant.table(5, "quantization details")
            if scales and scales[0] != 0.0:
                scale, zero_point = float(scales[0]), int(zeros[0]) if zeros else 0
        sparsity = tensor.table(6, "sparsity")
        if sparsity is not None:
            sparsity.ints(0, "traversal_order")
            sparsity.ints(1, "block_map")
            for dim in sparsity.tables(2, "dim_metadata"):
                dim.table(3, "array_segments")
                dim.table(5, "array_indices")
        dtype = _TFLITE_TYPES.get(type_code) or f"tflite-type-{type_code}"
        has_data = buffer > 0 and buffer < n_buffers and self._buffer_has_data(buffers[buffer])
        return TensorInfo(name, signature, dtype, scale, zero_point), has_data

    @staticmethod
    def _buffer_has_data(buffer: _Table) -> bool:
        return buffer.vector(0, 1, "buffer data")[1] > 0 or int(buffer.scalar(2, "<Q")) > 0


def _op_name(code: int | str) -> str:
    if isinstance(code, str):
        return code or "CUSTOM"
    return _BUILTIN_NAMES.get(code, f"builtin-{code}")


# The common BuiltinOperator codes of schema.fbs (the rest print as builtin-N).
_BUILTIN_NAMES = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
    6: "DEQUANTIZE", 7: "EMBEDDING_LOOKUP", 9: "FULLY_CONNECTED", 14: "LOGISTIC",
    17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX",
    28: "TANH", 34: "PAD", 36: "GATHER", 39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 42: "DIV",
    43: "SQUEEZE", 44: "UNIDIRECTIONAL_SEQUENCE_LSTM", 45: "STRIDED_SLICE", 49: "SPLIT",
    50: "LOG_SOFTMAX", 53: "CAST", 56: "ARG_MAX", 65: "SLICE", 67: "TRANSPOSE_CONV",
    70: "EXPAND_DIMS", 74: "SUM", 75: "SQRT", 76: "RSQRT", 77: "SHAPE", 78: "POW",
    82: "REDUCE_MAX", 83: "PACK", 88: "UNPACK", 98: "LEAKY_RELU", 99: "SQUARED_DIFFERENCE",
    114: "QUANTIZE", 117: "HARD_SWISH", 119: "WHILE", 126: "BATCH_MATMUL", 150: "GELU",
}  # fmt: skip


# --------------------------------------------------------------------------------------
# ONNX: a protobuf wire-format walk of ModelProto and GraphProto.

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Proto:
    """A bounds-checked reader of protobuf wire format over ``data[start:end]``."""

    def __init__(self, data: mmap.mmap | bytes, start: int, end: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, start, end, what

    def varint(self) -> int:
        result = shift = 0
        while True:
            if self.pos >= self.end:
                raise _Corrupt(f"{self.what}: varint runs past byte {self.end:,}")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise _Corrupt(f"{self.what}: varint longer than 10 bytes at byte {self.pos:,}")

    def fields(self):
        """Yield (field number, wire type, value) where value is an int or (start, end)."""
        while self.pos < self.end:
            key = self.varint()
            number, wire = key >> 3, key & 7
            if number == 0:
                raise _Corrupt(f"{self.what}: field number 0 at byte {self.pos:,}")
            if wire == _VARINT:
                yield number, wire, self.varint()
            elif wire in (_I64, _I32):
                size = 8 if wire == _I64 else 4
                if self.pos + size > self.end:
                    raise _Corrupt(f"{self.what}: field {number} runs past byte {self.end:,}")
                yield number, wire, int.from_bytes(self.data[self.pos : self.pos + size], "little")
                self.pos += size
            elif wire == _LEN:
                length = self.varint()
                start = self.pos
                if start + length > self.end:
                    raise _Corrupt(
                        f"{self.what}: field {number} claims {length:,} bytes at byte {start:,}, "
                        f"past the end at byte {self.end:,}"
                    )
                self.pos += length
                yield number, wire, (start, start + length)
            else:
                raise _Corrupt(
                    f"{self.what}: wire type {wire} (field {number}) at byte {self.pos:,}"
                )

    def sub(self, span: tuple[int, int], what: str) -> _Proto:
        return _Proto(self.data, span[0], span[1], what)

    def text(self, span: tuple[int, int]) -> str:
        return bytes(self.data[span[0] : span[1]]).decode("utf-8", errors="replace")


def _looks_like_onnx(data: mmap.mmap | bytes) -> bool:
    """True when the file walks as a ModelProto with an IR version and a graph."""
    try:
        seen = {number for number, _, _ in _Proto(data, 0, len(data), "ModelProto").fields()}
    except _Corrupt:
        return False
    return {1, 7} <= seen


class _OnnxReader:
    def __init__(self, path: Path, data: mmap.mmap) -> None:
        self.path, self.data = path, data

    def read(self) -> ModelInfo:
        try:
            return self._read()
        except _Corrupt as exc:
            raise ModelFileError(
                f"{self.path}: truncated or corrupt ONNX model ({exc})",
                expected="a complete .onnx file (an ONNX ModelProto)",
                fix="export the model again (edgesmith convert); the file was cut short or damaged",
            ) from None

    def _read(self) -> ModelInfo:
        model = _Proto(self.data, 0, len(self.data), "ModelProto")
        ir_version = None
        graph = None
        producer = ""
        opsets = 0
        for number, wire, value in model.fields():
            if number == 1 and wire == _VARINT:
                ir_version = value
            elif number == 2 and wire == _LEN:
                producer = model.text(value)
            elif number == 7 and wire == _LEN:
                graph = value
            elif number == 8 and wire == _LEN:
                opsets += 1
        if ir_version is None or graph is None:
            missing = "ir_version" if ir_version is None else "graph"
            raise _Corrupt(f"ModelProto has no {missing}")
        if not opsets:
            raise _Corrupt("ModelProto has no opset_import")
        inputs, outputs, initializers, ops = [], [], set(), {}
        reader = model.sub(graph, "GraphProto")
        for number, wire, value in reader.fields():
            if wire != _LEN:
                continue
            if number == 1:
                op = self._node_op(reader.sub(value, "NodeProto"))
                ops[op] = ops.get(op, 0) + 1
            elif number == 5:
                initializers.add(self._initializer_name(reader.sub(value, "TensorProto")))
            elif number == 11:
                inputs.append(self._value_info(reader.sub(value, "ValueInfoProto")))
            elif number == 12:
                outputs.append(self._value_info(reader.sub(value, "ValueInfoProto")))
        # Before IR version 4 every initializer was also listed as a graph input.
        inputs = [t for t in inputs if t.name not in initializers]
        if not outputs:
            raise _Corrupt("GraphProto has no outputs")
        return ModelInfo(
            path=self.path,
            format="onnx",
            size_bytes=len(self.data),
            inputs=inputs,
            outputs=outputs,
            ops=sum(ops.values()),
            op_counts=ops,
            float16_weights=False,
            producer=producer,
        )

    @staticmethod
    def _node_op(node: _Proto) -> str:
        op = ""
        for number, wire, value in node.fields():
            if number == 4 and wire == _LEN:
                op = node.text(value)
        return op or "?"

    @staticmethod
    def _initializer_name(tensor: _Proto) -> str:
        name = ""
        for number, wire, value in tensor.fields():
            if number == 8 and wire == _LEN:
                name = tensor.text(value)
        return name

    def _value_info(self, info: _Proto) -> TensorInfo:
        name, dtype, dims = "", "?", ()
        for number, wire, value in info.fields():
            if number == 1 and wire == _LEN:
                name = info.text(value)
            elif number == 2 and wire == _LEN:
                dtype, dims = self._type(info.sub(value, "TypeProto"))
        return TensorInfo(name, dims, dtype)

    @staticmethod
    def _type(type_proto: _Proto) -> tuple[str, tuple[int, ...]]:
        dtype, dims = "?", []
        for number, wire, value in type_proto.fields():
            if number != 1 or wire != _LEN:  # 1: tensor_type; sequences and maps are not tensors
                continue
            tensor = type_proto.sub(value, "TypeProto.Tensor")
            for t_number, t_wire, t_value in tensor.fields():
                if t_number == 1 and t_wire == _VARINT:
                    dtype = _ONNX_TYPES.get(t_value, f"onnx-type-{t_value}")
                elif t_number == 2 and t_wire == _LEN:
                    shape = tensor.sub(t_value, "TensorShapeProto")
                    for s_number, s_wire, s_value in shape.fields():
                        if s_number == 1 and s_wire == _LEN:
                            dim = shape.sub(s_value, "Dimension")
                            size = -1  # a dim_param (symbolic) or an unset dim is dynamic
                            for d_number, d_wire, d_value in dim.fields():
                                if d_number == 1 and d_wire == _VARINT:
                                    size = d_value if d_value < 2**63 else d_value - 2**64
                            dims.append(size if size > 0 else -1 if size < 0 else 0)
        return dtype, tuple(dims)


def _onnx_checker(path: Path) -> None:
    """Run ``onnx.checker`` when ``onnx`` is installed (it is not in the base install)."""
    try:
        import onnx  # optional: the full install has it, a board usually does not
    except ImportError:
        return
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # ValidationError, or a protobuf DecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{path}: onnx.checker rejects the model ({first})",
            expected="a valid ONNX model",
            fix="export the model again (edgesmith convert)",
        ) from None
