"""Read a .tflite flatbuffer in pure Python: tensors, ops and buffers, every offset checked.

Native loaders can crash the process on a malformed file, and generated schema bindings
read whatever the offsets say. Here every offset, table, vector and string that is read is
first checked to lie inside the file and every index to be in range (as the C++ verifier
does), so any malformed file becomes one :class:`~edgesmith.core.errors.ModelFileError`
naming the file and the problem.

:func:`read_graph` gives the whole model (:class:`Graph`: subgraphs of :class:`Tensor` and
:class:`Op`, the first subgraph being the one that runs);
:func:`~edgesmith.runtime.modelfile.inspect_model` summarises the same reading.

Example:
    >>> read_graph("/no/such/model.tflite")
    Traceback (most recent call last):
    ...
    edgesmith.core.errors.ModelFileError: /no/such/model.tflite: cannot be read (file not found): expected a .tflite file
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from edgesmith.core.errors import ModelFileError
from edgesmith.runtime.tflite_schema import (
    BUILTIN_OPTIONS,
    CUSTOM,
    TENSOR_TYPES,
    operator_name,
)

IDENTIFIER = b"TFL3"
# Integer constants (axes, strides, paddings) up to this many elements are decoded.
MAX_VALUES = 64


@dataclass
class Tensor:
    """One tensor of a subgraph (``signature``: -1 marks a size known only at run time)."""

    index: int
    name: str
    shape: list[int]
    signature: list[int]
    dtype: str
    quantized: bool
    constant: bool
    nbytes: int
    variable: bool = False
    values: list[int] | None = None  # small integer constants (axes, strides, paddings)
    buffer: int = 0  # index of the buffer holding a constant's data (0: none)
    scale: float | None = None  # first quantization scale (None: not quantized, or 0)
    zero_point: int | None = None

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.signature)

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass
class Op:
    """One operator, in execution order; ``options``: its decoded builtin options, if known."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, int] = field(default_factory=dict)
    custom_code: str | None = None


@dataclass
class Subgraph:
    """Tensors and ops of one subgraph; ``inputs``/``outputs`` are tensor indices."""

    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    name: str = ""

    def tensor(self, index: int) -> Tensor | None:
        """Tensor ``index``, or None for -1 (an optional input left out)."""
        return self.tensors[index] if 0 <= index < len(self.tensors) else None

    def op_tensors(self, op: Op) -> list[Tensor]:
        """Every tensor ``op`` reads or writes."""
        return [t for i in (*op.inputs, *op.outputs) if (t := self.tensor(i)) is not None]


@dataclass
class Graph:
    """A .tflite model; ``ops``, ``tensors``, ``inputs`` and ``outputs`` are its main subgraph's."""

    path: Path
    subgraphs: list[Subgraph]
    size_bytes: int = 0
    description: str = ""  # the producer, e.g. "MLIR Converted."

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    @property
    def ops(self) -> list[Op]:
        return self.main.ops

    @property
    def tensors(self) -> list[Tensor]:
        return self.main.tensors

    @property
    def inputs(self) -> list[int]:
        return self.main.inputs

    @property
    def outputs(self) -> list[int]:
        return self.main.outputs

    def tensor(self, index: int) -> Tensor | None:
        return self.main.tensor(index)

    def op_tensors(self, op: Op) -> list[Tensor]:
        return self.main.op_tensors(op)

    @property
    def constant_bytes(self) -> int:
        """Bytes of constant data (weights, biases, lookup tables), each buffer counted once.

        Tensors may share a buffer (an unrolled LSTM reads the same kernel at every step).
        """
        unique = {t.buffer: t.nbytes for t in self.tensors if t.constant}
        return sum(unique.values())


def read_graph(path: str | os.PathLike[str]) -> Graph:
    """Read the .tflite file at ``path``; :class:`ModelFileError` if it is not a sound one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size < 8:
            raise _NotTFLite(f"{size} bytes" if size else "empty file, 0 bytes")
        with (
            open(path, "rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            if data[4:8] != IDENTIFIER:
                raise _NotTFLite(f"no TFL3 identifier; the file starts {bytes(data[:8]).hex(' ')}")
            return parse_flatbuffer(data, path)
    except _NotTFLite as exc:
        raise ModelFileError(
            f"{path}: not a TFLite flatbuffer ({exc})",
            expected="a .tflite file written by the LiteRT/TFLite converter",
            fix="convert it first: edgesmith convert MODEL --format tflite --out FILE.tflite",
        ) from None
    except (OSError, ValueError) as exc:  # missing, a folder, unreadable, or mmap refused it
        reason = "file not found" if isinstance(exc, FileNotFoundError) else str(exc)
        raise ModelFileError(
            f"{path}: cannot be read ({reason})", expected="a .tflite file"
        ) from exc


def parse_flatbuffer(data: bytes | mmap.mmap, path: Path) -> Graph:
    """The model in ``data`` (the bytes of the TFLite file ``path``, named in errors)."""
    try:
        return _read_model(_Flatbuffer(data), path)
    except (_Corrupt, struct.error) as exc:
        raise ModelFileError(
            f"{path}: truncated or corrupt TFLite flatbuffer ({exc})",
            expected="a complete .tflite file",
            fix="copy or convert the model again; the file was cut short or damaged",
        ) from None


class _NotTFLite(Exception):
    pass


class _Corrupt(Exception):
    pass


# --------------------------------------------------------------------------------------
# Bounds-checked access to flatbuffer tables, vectors and strings.


class _Flatbuffer:
    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data = data
        self.size = len(data)
        self.tables = 0
        # Vectors may overlap (a writer shares identical arrays), so a crafted file could make
        # a small file read quadratically; a sound file reads far less than this.
        self.budget = 64 * self.size + (16 << 20)

    def check(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise _Corrupt(
                f"{what} at byte {pos:,} (+{length:,}) lies outside the {self.size:,}-byte file"
            )

    def spend(self, nbytes: int) -> None:
        self.budget -= nbytes
        if self.budget < 0:
            raise _Corrupt("its vectors overlap so much that reading them never ends")

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

    def vector(self, index: int, elem: int, what: str) -> tuple[int, int] | None:
        """(start, length) of a vector field, checked to lie inside the file; None if absent."""
        target = self._target(index, what)
        if target is None:
            return None
        length = int(self.fb.unpack("<I", target, what))
        self.fb.check(target + 4, length * elem, what)
        return target + 4, length

    def ints(self, index: int, what: str, fmt: str = "<i") -> list[int]:
        size = struct.calcsize(fmt)
        start, length = self.vector(index, size, what) or (0, 0)
        self.fb.spend(length * size)
        return [int(v) for v in struct.unpack_from(f"<{length}{fmt[1:]}", self.fb.data, start)]

    def floats(self, index: int, what: str) -> list[float]:
        start, length = self.vector(index, 4, what) or (0, 0)
        self.fb.spend(length * 4)
        return list(struct.unpack_from(f"<{length}f", self.fb.data, start))

    def string(self, index: int, what: str) -> str:
        found = self.vector(index, 1, what)
        if found is None:
            return ""
        start, length = found
        self.fb.check(start + length, 1, f"{what} terminator")
        self.fb.spend(length)
        return bytes(self.fb.data[start : start + length]).decode("utf-8", errors="replace")

    def tables(self, index: int, what: str) -> list[_Table]:
        start, length = self.vector(index, 4, what) or (0, 0)
        return [
            self.fb.table(self.fb.deref(start + 4 * i, what), f"{what}[{i}]") for i in range(length)
        ]


# --------------------------------------------------------------------------------------
# The schema's tables (field numbers as in schema.fbs).


@dataclass(frozen=True)
class _Buffer:
    start: int  # of the data inside the flatbuffer (0: none)
    nbytes: int  # inline or, for models over 2 GB, stored after the flatbuffer


def _read_model(fb: _Flatbuffer, path: Path) -> Graph:
    model = fb.table(fb.deref(0, "root offset"), "Model")
    version = int(model.scalar(0, "<I"))
    if version != 3:
        raise _Corrupt(f"schema version {version}, this reader knows version 3")
    codes: list[tuple[int, str | None]] = []
    for code in model.tables(1, "operator_codes"):
        builtin = max(int(code.scalar(0, "<b")), int(code.scalar(3, "<i")))
        codes.append((builtin, code.string(1, "custom_code") if builtin == CUSTOM else None))
    buffers = [_read_buffer(fb, b, i) for i, b in enumerate(model.tables(4, "buffers"))]
    subgraph_tables = model.tables(2, "subgraphs")
    if not subgraph_tables:
        raise _Corrupt("no subgraph")
    subgraphs = [
        _read_subgraph(table, s, codes, buffers) for s, table in enumerate(subgraph_tables)
    ]
    for signature in model.tables(7, "signature_defs"):
        for tensor_map in (*signature.tables(0, "inputs"), *signature.tables(1, "outputs")):
            tensor_map.string(0, "signature tensor name")
        signature.string(2, "signature_key")
    for metadata in model.tables(6, "metadata"):
        metadata.string(0, "metadata name")
    return Graph(
        path=path,
        subgraphs=subgraphs,
        size_bytes=fb.size,
        description=model.string(3, "description"),
    )


def _read_buffer(fb: _Flatbuffer, buffer: _Table, i: int) -> _Buffer:
    start, length = buffer.vector(0, 1, f"buffers[{i}].data") or (0, 0)
    offset, size = int(buffer.scalar(1, "<Q")), int(buffer.scalar(2, "<Q"))
    if offset > 1:  # weights stored after the flatbuffer (models over 2 GB)
        fb.check(offset, size, f"buffers[{i}] data")
    return _Buffer(start if length else 0, length or size)


def _read_subgraph(
    table: _Table, s: int, codes: list[tuple[int, str | None]], buffers: list[_Buffer]
) -> Subgraph:
    tensors = [
        _read_tensor(t, i, buffers)
        for i, t in enumerate(table.tables(0, f"subgraphs[{s}].tensors"))
    ]
    inputs, outputs = table.ints(1, "inputs"), table.ints(2, "outputs")
    for index in (*inputs, *outputs):
        if not 0 <= index < len(tensors):
            raise _Corrupt(f"subgraph {s} names tensor {index} of {len(tensors)}")
    ops = []
    for o, op in enumerate(table.tables(3, f"subgraphs[{s}].operators")):
        opcode = int(op.scalar(0, "<I"))
        if opcode >= len(codes):
            raise _Corrupt(f"operator {o} uses opcode {opcode} of {len(codes)}")
        op_inputs, op_outputs = op.ints(1, "op inputs"), op.ints(2, "op outputs")
        for index in (*op_inputs, *op_outputs):
            if not -1 <= index < len(tensors):
                raise _Corrupt(f"operator {o} names tensor {index} of {len(tensors)}")
        options_type = int(op.scalar(3, "<B"))
        options = op.table(4, "builtin_options")  # a union: its table must at least be sound
        op.vector(5, 1, "custom_options")
        op.table(12, "builtin_options_2")
        op.ints(8, "intermediates")
        builtin, custom = codes[opcode]
        ops.append(
            Op(
                index=o,
                name=operator_name(builtin, custom),
                inputs=op_inputs,
                outputs=op_outputs,
                options=_read_options(options, options_type),
                custom_code=custom,
            )
        )
    return Subgraph(tensors, ops, inputs, outputs, table.string(4, "subgraph name"))


def _read_options(table: _Table | None, options_type: int) -> dict[str, int]:
    known = BUILTIN_OPTIONS.get(options_type)
    if table is None or known is None:
        return {}
    _table_name, fields = known
    return {
        field_name: int(table.scalar(i, fmt, default))
        for i, (field_name, fmt, default) in enumerate(fields)
    }


def _read_tensor(tensor: _Table, index: int, buffers: list[_Buffer]) -> Tensor:
    shape = tensor.ints(0, "tensor shape")
    signature = tensor.ints(7, "tensor shape_signature") or shape
    type_code = int(tensor.scalar(1, "<b"))
    buffer = int(tensor.scalar(2, "<I"))
    if buffer >= max(len(buffers), 1):
        raise _Corrupt(f"tensor {index} uses buffer {buffer} of {len(buffers)}")
    name = tensor.string(3, "tensor name")
    scales: list[float] = []
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
    dtype = TENSOR_TYPES.get(type_code, f"tflite-type-{type_code}")
    data = buffers[buffer] if 0 < buffer < len(buffers) else None
    nbytes = data.nbytes if data is not None else 0
    return Tensor(
        index=index,
        name=name,
        shape=shape,
        signature=signature,
        dtype=dtype,
        quantized=bool(scales),
        constant=nbytes > 0,
        nbytes=nbytes,
        variable=bool(tensor.scalar(5, "<B")),
        values=_small_values(tensor, data, dtype),
        buffer=buffer if data is not None else 0,
        scale=scale,
        zero_point=zero_point,
    )


def _small_values(tensor: _Table, data: _Buffer | None, dtype: str) -> list[int] | None:
    """The elements of a small inline int32 / int64 constant (checked by _read_buffer)."""
    if data is None or not data.start or dtype not in ("int32", "int64"):
        return None
    size = 4 if dtype == "int32" else 8
    if data.nbytes % size or data.nbytes // size > MAX_VALUES:
        return None
    count = data.nbytes // size
    fb = tensor.fb
    fb.check(data.start, count * size, "constant data")
    return [
        int(v)
        for v in struct.unpack_from(f"<{count}{'i' if size == 4 else 'q'}", fb.data, data.start)
    ]
