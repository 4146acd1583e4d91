"""The converter's .tflite flatbuffer written again without its redundancy, every value kept.

TF-free (the schema bindings and flatbuffers package that ai-edge-litert ships):
internal tensor names, repeated quantization arrays and metadata no runtime reads go.

Example:
    >>> from edgesmith.convert.tflite_compact import compact_flatbuffer
    >>> small = compact_flatbuffer(open("raw.tflite", "rb").read())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Model.metadata entries the converter writes that no runtime reads: the version string
# of the oldest runtime with every op's kernel, and the converter's own options. LiteRT
# does read "reduced_precision_support", and apps read the support-library
# "TFLITE_METADATA": any name not listed here is kept.
UNUSED_METADATA = frozenset({"min_runtime_version", "CONVERSION_METADATA"})


def compact_flatbuffer(content: bytes) -> bytes:
    """The same model, written without the converter's redundancy; every value is kept.

    * internal tensor names are dropped (inputs, outputs and signatures keep theirs): in a
      small model these Keras scope strings are a visible share of the file (cnn-mnist
      int8: 1.9 kB);
    * identical quantization parameters are written once and shared. The converter writes
      a table with its own ``scale`` (float32) and ``zero_point`` (int64) arrays for every
      tensor, one entry per channel for per-channel weights *and* their int32 biases,
      and the zero points of symmetric int8 weights are all 0: in dscnn-kws int8 (24,202
      parameters) these arrays were 15.2 kB of a 42.8 kB file, 9.6 kB of it zeros. A
      FlatBuffer may point several tables at one vector or table, so each distinct array
      is stored once; the runtime reads the same numbers (outputs are bit-identical);
    * converter metadata no runtime reads (:data:`UNUSED_METADATA`) is dropped.

    Neither the zero-point arrays nor the biases' scales can go: LiteRT refuses a scale
    without a zero point, and XNNPACK computes differently without the bias scales.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    shared = _shared_quantization(schema)
    for sub in model.subgraphs or []:
        keep = {int(i) for i in sub.inputs} | {int(i) for i in sub.outputs}
        for index, tensor in enumerate(sub.tensors or []):
            if index not in keep:
                tensor.name = None
            if tensor.quantization is not None and tensor.quantization.details is None:
                tensor.quantization.__class__ = shared
    _drop_unused_metadata(model)
    builder = flatbuffers.Builder(max(1024, len(content)))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _drop_unused_metadata(model: Any) -> None:
    """Remove :data:`UNUSED_METADATA` entries and the buffers only they used."""
    entries = model.metadata or []
    dropped = [m for m in entries if _text(m.name) in UNUSED_METADATA]
    if not dropped:
        return
    kept = [m for m in entries if _text(m.name) not in UNUSED_METADATA]
    model.metadata = kept or None
    used = {int(t.buffer) for sub in model.subgraphs or [] for t in sub.tensors or []}
    used |= {int(m.buffer) for m in kept}
    used |= {int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None else [])}
    buffers = model.buffers or []
    for entry in dropped:
        if entry.buffer not in used and 0 < entry.buffer < len(buffers):
            buffers[entry.buffer] = type(buffers[entry.buffer])()  # emptied, indices unchanged
    while len(buffers) > 1 and len(buffers) - 1 not in used and _empty(buffers[-1]):
        buffers.pop()  # trailing buffers: nothing refers to them, no index shifts


def _empty(buffer: Any) -> bool:
    return (buffer.data is None or len(buffer.data) == 0) and not buffer.offset


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _shared_quantization(schema: Any) -> type:
    """A QuantizationParametersT that packs each distinct table and array once per build."""
    tables: dict[tuple[Any, ...], int] = {}
    vectors: dict[tuple[str, bytes], int] = {}

    def vector(builder: Any, values: Any, dtype: type) -> int | None:
        if values is None:
            return None
        array = np.asarray(values, dtype)
        key = (array.dtype.str, array.tobytes())
        if key not in vectors:
            vectors[key] = builder.CreateNumpyVector(array)
        return vectors[key]

    class SharedQuantization(schema.QuantizationParametersT):
        def Pack(self, builder: Any) -> int:  # the name the flatbuffers object API calls
            fields = (self.min, self.max, self.scale, self.zeroPoint)
            types = (np.float32, np.float32, np.float32, np.int64)
            key = (
                *(
                    None if v is None else np.asarray(v, d).tobytes()
                    for v, d in zip(fields, types, strict=True)
                ),
                int(self.quantizedDimension),
            )
            if key in tables:
                return tables[key]
            low, high, scale, zero = (
                vector(builder, v, d) for v, d in zip(fields, types, strict=True)
            )
            schema.QuantizationParametersStart(builder)
            if low is not None:
                schema.QuantizationParametersAddMin(builder, low)
            if high is not None:
                schema.QuantizationParametersAddMax(builder, high)
            if scale is not None:
                schema.QuantizationParametersAddScale(builder, scale)
            if zero is not None:
                schema.QuantizationParametersAddZeroPoint(builder, zero)
            schema.QuantizationParametersAddQuantizedDimension(builder, self.quantizedDimension)
            tables[key] = schema.QuantizationParametersEnd(builder)
            return tables[key]

    return SharedQuantization
