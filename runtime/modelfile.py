"""Recognise, verify and describe .tflite and .onnx files in pure Python, before any native loader.

Native loaders (the TFLite interpreter, ONNX Runtime) can crash the whole process on a
malformed file. Everything here only reads bytes with bounds checks, so a broken file
becomes a :class:`~edgesmith.core.errors.ModelFileError` naming the file and the problem:

* the format comes from the content (the ``TFL3`` flatbuffer identifier, or an ONNX
  ``ModelProto`` in protobuf wire format), and a file whose name says otherwise (an ``.onnx``
  renamed ``.tflite``) is refused with the fix;
* a TFLite flatbuffer is read by :mod:`~edgesmith.runtime.tflite_flatbuffer` (every offset,
  table, vector and string a loader reads lies inside the file, every index is in range),
  as the C++ verifier does;
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
from dataclasses import dataclass, field
from pathlib import Path

from edgesmith.core.errors import ModelFileError
from edgesmith.runtime.tflite_flatbuffer import Graph, Tensor, parse_flatbuffer

SUFFIXES = {".tflite": "tflite", ".lite": "tflite", ".onnx": "onnx", ".ort": "onnx"}

# TensorProto.DataType in onnx.proto.
_ONNX_TYPES: dict[int, str] = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16",
}  # fmt: skip
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
                info = _tflite_info(parse_flatbuffer(data, path))
            else:
                info = _OnnxReader(path, data).read()
    except (OSError, ValueError) as exc:  # unreadable, or mmap of a special file
        raise ModelFileError(
            f"{path}: cannot read the file ({exc})", expected="a readable model file"
        ) from exc
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


def _tflite_info(graph: Graph) -> ModelInfo:
    """What :class:`ModelInfo` says of a TFLite model read by :func:`parse_flatbuffer`."""
    tensors = [t for subgraph in graph.subgraphs for t in subgraph.tensors]
    float16 = any(t.constant and t.dtype == "float16" for t in tensors)
    op_counts: dict[str, int] = {}
    for op in graph.ops:
        op_counts[op.name] = op_counts.get(op.name, 0) + 1
    notes = []
    if float16:
        notes.append("float16 weights (dequantized to float32 at load)")
    if op_counts.get("DEQUANTIZE") and not float16:
        notes.append("has DEQUANTIZE ops")
    return ModelInfo(
        path=graph.path,
        format="tflite",
        size_bytes=graph.size_bytes,
        inputs=[_tensor_info(graph.tensors[i]) for i in graph.inputs],
        outputs=[_tensor_info(graph.tensors[i]) for i in graph.outputs],
        ops=len(graph.ops),
        op_counts=op_counts,
        float16_weights=float16,
        edgetpu_ops=sum(op.custom_code == EDGETPU_CUSTOM_OP for op in graph.ops),
        variable_tensors=sum(t.variable for t in tensors),
        producer=graph.description,
        notes=notes,
    )


def _tensor_info(tensor: Tensor) -> TensorInfo:
    return TensorInfo(
        tensor.name, tuple(tensor.signature), tensor.dtype, tensor.scale, tensor.zero_point
    )


# --------------------------------------------------------------------------------------
# ONNX: a protobuf wire-format walk of ModelProto and GraphProto.

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _CorruptProto(Exception):
    pass


class _Proto:
    """A bounds-checked reader of protobuf wire format over ``data[start:end]``."""

    def __init__(self, data: mmap.mmap | bytes, start: int, end: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, start, end, what

    def varint(self) -> int:
        result = shift = 0
        while True:
            if self.pos >= self.end:
                raise _CorruptProto(f"{self.what}: varint runs past byte {self.end:,}")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise _CorruptProto(
                    f"{self.what}: varint longer than 10 bytes at byte {self.pos:,}"
                )

    def fields(self):
        """Yield (field number, wire type, value) where value is an int or (start, end)."""
        while self.pos < self.end:
            key = self.varint()
            number, wire = key >> 3, key & 7
            if number == 0:
                raise _CorruptProto(f"{self.what}: field number 0 at byte {self.pos:,}")
            if wire == _VARINT:
                yield number, wire, self.varint()
            elif wire in (_I64, _I32):
                size = 8 if wire == _I64 else 4
                if self.pos + size > self.end:
                    raise _CorruptProto(f"{self.what}: field {number} runs past byte {self.end:,}")
                yield number, wire, int.from_bytes(self.data[self.pos : self.pos + size], "little")
                self.pos += size
            elif wire == _LEN:
                length = self.varint()
                start = self.pos
                if start + length > self.end:
                    raise _CorruptProto(
                        f"{self.what}: field {number} claims {length:,} bytes at byte {start:,}, "
                        f"past the end at byte {self.end:,}"
                    )
                self.pos += length
                yield number, wire, (start, start + length)
            else:
                raise _CorruptProto(
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
    except _CorruptProto:
        return False
    return {1, 7} <= seen


class _OnnxReader:
    def __init__(self, path: Path, data: mmap.mmap) -> None:
        self.path, self.data = path, data

    def read(self) -> ModelInfo:
        try:
            return self._read()
        except _CorruptProto as exc:
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
            raise _CorruptProto(f"ModelProto has no {missing}")
        if not opsets:
            raise _CorruptProto("ModelProto has no opset_import")
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
            raise _CorruptProto("GraphProto has no outputs")
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
        ) from exc
