"""Keras -> TFLite (LiteRT) for every zoo family and every quantization mode.

Two findings on TF 2.21 shape this module (measured on ``lstm-digits``, 270 test samples):

* A Keras LSTM with a dynamic batch does not convert (``tf.TensorListReserve op requires
  element_shape to be static``), so every model is exported through a fixed-batch
  signature (batch 1 by default: edge devices run one sample at a time).
* The fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op the converter emits keeps its hidden and
  cell state in *variable tensors* that survive from one ``invoke()`` to the next. A
  sample therefore starts from the previous sample's state: float32 top-1 fell from 95.9%
  (Keras) to 14.1%, full int8 to 19.6% (the "int8 collapse"). With the state reset before
  every sample both were back at 95.9%, so int8 itself was never the problem. The default
  here unrolls the LSTM over its fixed number of time steps instead: the graph is plain
  FULLY_CONNECTED / LOGISTIC / TANH / MUL / ADD ops with no state, runs correctly on any
  runtime without a reset, and full int8 of it scored 96.3% against 95.9% in float.
  ``lstm="fused"`` keeps the fused op (smaller graph) for runtimes that reset state.
* Full int8 of the unrolled LSTM loses accuracy on long sequences: ``lstm-kws`` (128
  units, 49 steps, 300 test samples) fell from 96.33% (Keras) to 89.00% (top-1 agreement
  91.33%). More calibration did not help (500/1000/2100 training samples: 90.0/90.7/90.0%).
  The quantization debugger shows no outlier layer (every op's RMSE is ~0.3 of its scale,
  plain rounding): the error is the 8-bit rounding of the gates and the cell state,
  compounded over 49 recurrent steps. Keeping only the element-wise gate/cell ops in float
  (:data:`LSTM_FLOAT_GATE_OPS`; the FULLY_CONNECTED products, all weights, the input and
  the output stay int8) gave 96.00% (agreement 99.67%) at 175 kB, against 168 kB for all
  int8 and 187 kB for 16-bit activations (96.33%, float input); ``lstm-digits`` 97.78%
  against 97.41% Keras. That is ``--quant int8``'s default for unrolled LSTMs
  (``ConversionConfig.lstm_int8="float-gates"``; ``"int8"`` quantizes every op).

Example:
    >>> from edgesmith.convert.tflite import to_tflite  # doctest: +SKIP
    >>> result = to_tflite(model, "lstm", ConversionConfig(quant="int8"), x_calibration=x)  # doctest: +SKIP
    >>> result.strategy["lstm"]  # doctest: +SKIP
    'unrolled over 8 time steps (stateless graph)'
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgesmith.convert.config import ConversionConfig
from edgesmith.core.errors import ConfigError, ModelFileError

# Ops of an unrolled LSTM cell kept in float by lstm_int8="float-gates" (the converter's
# selective quantization, as tf.lite.experimental.QuantizationDebugger's denylisted_ops).
LSTM_FLOAT_GATE_OPS = ("ADD", "MUL", "LOGISTIC", "TANH", "SPLIT")


@dataclass
class TfliteResult:
    """The converted flatbuffer and how it was made."""

    content: bytes
    strategy: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dense_bytes: int | None = None  # the same model without sparse weights (with --sparse)


def export_model(
    model: Any, family: str, config: ConversionConfig, *, qat: bool = False
) -> tuple[Any, dict[str, Any], list[str]]:
    """The model as it will be exported: fixed batch, LSTMs unrolled, LayerNorm rewritten.

    Weights are copied unchanged; only the graph structure differs from ``model``.
    Returns the model, a strategy description and notes for the record.
    """
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    strategy: dict[str, Any] = {}
    notes: list[str] = []
    lstm_layers = [layer for layer in model.layers if type(layer).__name__ == "LSTM"]
    # ONNX has a stateless LSTM op that ONNX Runtime quantizes dynamically, but its static
    # QDQ quantizer leaves LSTM in float: unrolled, the LSTM's products become MatMuls
    # that the int8 mode does quantize.
    wants_unroll = config.format == "tflite" or config.quant == "int8"
    unroll = bool(lstm_layers) and config.lstm == "unroll" and wants_unroll
    if lstm_layers:
        steps = model.input_shape[1]
        if unroll and config.format == "tflite":
            strategy["lstm"] = f"unrolled over {steps} time steps (stateless graph)"
            notes.append(
                f"LSTM: unrolled over its {steps} time steps, not the fused "
                "UNIDIRECTIONAL_SEQUENCE_LSTM op: TF 2.21's fused op carries its state from "
                "one invoke() to the next, which put the previous sample's state into every "
                "sample (lstm-digits: 14% top-1 in float32, 20% in int8, against 96% after "
                "a reset); the unrolled graph is stateless"
            )
        elif unroll:
            strategy["lstm"] = f"unrolled over {steps} time steps (MatMuls for QDQ int8)"
            notes.append(
                f"LSTM: unrolled over its {steps} time steps so that static QDQ int8 "
                "quantizes its matrix products (ONNX Runtime leaves the LSTM op in float)"
            )
        elif config.format == "onnx":
            strategy["lstm"] = "ONNX LSTM op (stateless)"
        else:
            strategy["lstm"] = "fused UNIDIRECTIONAL_SEQUENCE_LSTM (stateful)"
            notes.append(
                "LSTM: fused UNIDIRECTIONAL_SEQUENCE_LSTM keeps its state in variable tensors "
                "between invocations: reset them (interpreter.reset_all_variables()) before "
                "every sequence, or convert with --lstm unroll"
            )
    if lstm_layers and config.batch_size is None and not unroll and config.format == "tflite":
        raise ConfigError(
            "--dynamic-batch with a fused LSTM",
            expected="a fixed batch: TF 2.21 cannot convert a Keras LSTM with a dynamic "
            "batch (tf.TensorListReserve needs a static element shape)",
            fix="drop --dynamic-batch (batch 1 is exported) or use --lstm unroll",
        )
    decompose_ln = config.format == "tflite" and config.quant == "int16x8"
    has_ln = any(type(layer).__name__ == "LayerNormalization" for layer in model.layers)
    if decompose_ln and has_ln:
        strategy["layer_norm"] = "variance as mean((x - mean)^2) with MUL"
        notes.append(
            "LayerNormalization rewritten to compute its variance with MUL instead of "
            "SQUARED_DIFFERENCE, which has no 16-bit kernel in LiteRT"
        )
    batch = config.batch_size
    # Token ids feeding an Embedding must stay integers: with a float input the converter
    # quantizes the ids to int8 before the lookup (transformer-sms int8: 98.8% -> 82.8%),
    # and 16x8 has no CAST kernel. The export signature takes int32 ids instead.
    token_input = _feeds_embedding(model) and not model.inputs[0].dtype.is_integer
    input_dtype = "int32" if token_input or model.inputs[0].dtype.is_integer else "float32"
    if token_input:
        strategy["token_ids"] = "int32 input straight into the Embedding lookup"
        notes.append(
            "token ids exported as an int32 input (the Keras model takes float ids and casts "
            "them; quantizing that float input would corrupt the ids)"
        )
    strategy["signature"] = {
        "shape": [batch, *model.input_shape[1:]],
        "dtype": input_dtype,
        "batch": "fixed" if batch else "dynamic",
    }
    if qat or not (unroll or (decompose_ln and has_ln) or token_input):
        return model, strategy, notes  # the batch is fixed by the export signature alone

    def clone_layer(layer: Any) -> Any:
        cfg = layer.get_config()
        if unroll and type(layer).__name__ == "LSTM":
            return type(layer).from_config({**cfg, "unroll": True})
        if decompose_ln and type(layer).__name__ == "LayerNormalization":
            return _mul_layer_norm(k).from_config(cfg)
        return type(layer).from_config(cfg)

    try:
        inputs = k.Input(
            batch_shape=(batch, *model.input_shape[1:]),
            dtype=input_dtype if token_input else model.inputs[0].dtype,
            name=model.inputs[0].name.split(":")[0],
        )
        clone = k.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)
        clone.set_weights(model.get_weights())
    except Exception as exc:  # a model the config round trip cannot rebuild
        if unroll:
            raise ModelFileError(
                f"{model.name}: cannot rebuild the model to unroll its LSTM ({exc})"[:400],
                expected="a functional or Sequential Keras model",
                fix="convert with --lstm fused",
            ) from None
        notes.append(f"exported through a fixed signature without rebuilding ({exc})"[:200])
        return model, strategy, notes
    return clone, strategy, notes


def to_tflite(
    model: Any,
    family: str,
    config: ConversionConfig,
    *,
    x_calibration: np.ndarray | None = None,
    qat: bool = False,
) -> TfliteResult:
    """Convert ``model`` to a .tflite flatbuffer in ``config.quant`` mode.

    ``int8`` is full-integer with int8 inputs and outputs (float inputs; token ids stay
    int32) calibrated on ``x_calibration``, or on the ranges learned by quantization-aware
    training when ``qat``. ``int16x8`` uses 16-bit activations and 8-bit weights.
    """
    exported, strategy, notes = export_model(model, family, config, qat=qat)
    if config.needs_calibration and not qat and x_calibration is None:
        raise ConfigError(
            f"--quant {config.quant} without calibration data",
            expected="real input samples to measure activation ranges",
            fix="convert a zoo model or model folder (its training split is used), or pass "
            "--calibration FILE.npz with an 'x' array",
        )
    if qat and config.quant == "int16x8":
        raise ConfigError(
            "--quant int16x8 on a quantization-aware-trained model",
            expected="--quant int8: QAT learned 8-bit ranges",
        )
    calibration: dict[str, Any] = {}
    x_cal: np.ndarray | None = None
    if config.needs_calibration and qat:
        calibration = {"method": "ranges learned by quantization-aware training", "samples": 0}
    elif config.needs_calibration:
        assert x_calibration is not None
        x_cal = pick_samples(x_calibration, config.calibration_samples, config.seed)
        calibration = {"method": "min/max over representative samples", "samples": len(x_cal)}
    strategy["calibration"] = calibration or None
    float_ops: tuple[str, ...] = ()
    unrolled = str(strategy.get("lstm", "")).startswith("unrolled")
    if config.quant == "int8" and unrolled and not qat:
        float_ops = LSTM_FLOAT_GATE_OPS if config.lstm_int8 == "float-gates" else ()
        strategy["lstm_int8"] = {
            "scheme": config.lstm_int8,
            "float_ops": list(float_ops),
        }
        if float_ops:
            notes.append(
                "LSTM int8: selective quantization (lstm_int8=float-gates): the element-wise "
                f"gate and cell-state ops ({', '.join(float_ops)}) stay float32; weights, "
                "FULLY_CONNECTED products, input and output are int8. Every op in int8 "
                "compounds rounding over the time steps (lstm-kws: 96.3% -> 89.0%; with "
                "float gates 96.0%, +4% size)"
            )
        else:
            notes.append(
                "LSTM int8: every op int8 (lstm_int8=int8); long sequences lose accuracy "
                "(lstm-kws: 96.3% -> 89.0%), the default float-gates scheme keeps it"
            )
    strategy["tensor_names"] = "internal tensor names dropped (inputs/outputs kept)"
    content = _convert(exported, config, x_cal, qat, float_ops=float_ops)
    result = TfliteResult(content, strategy, notes)
    if config.sparse:
        dense = _convert(exported, config, x_cal, qat, sparse=False, float_ops=float_ops)
        result.dense_bytes = len(dense)
        strategy["sparse_weights"] = True
    return result


def pick_samples(x: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` samples of ``x`` chosen without replacement under ``seed`` (all if fewer)."""
    if len(x) <= count:
        return x
    rng = np.random.default_rng(seed)
    return x[np.sort(rng.choice(len(x), count, replace=False))]


def _convert(
    model: Any,
    config: ConversionConfig,
    x_cal: np.ndarray | None,
    qat: bool,
    *,
    sparse: bool | None = None,
    float_ops: tuple[str, ...] = (),
) -> bytes:
    """The flatbuffer; ``float_ops`` (full int8 only) are op types left in float32."""
    from edgesmith.zoo.tfkeras import tf

    t = tf()
    batch = config.batch_size
    dtype = model.inputs[0].dtype
    spec = t.TensorSpec([batch, *model.input_shape[1:]], dtype, name="input")

    @t.function(input_signature=[spec], autograph=False)
    def serve(x: Any) -> Any:
        return model(x, training=False)

    converter = t.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], model
    )
    optimizations = []
    if config.quant != "none" or qat:
        optimizations.append(t.lite.Optimize.DEFAULT)
    if config.sparse if sparse is None else sparse:
        optimizations.append(t.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if config.quant == "fp16":
        converter.target_spec.supported_types = [t.float16]
    if config.needs_calibration and x_cal is not None:
        step = batch or 1
        feed_dtype = np.int32 if dtype.is_integer else np.float32

        def representative() -> Iterator[list[np.ndarray]]:
            for start in range(0, len(x_cal) - step + 1, step):
                yield [x_cal[start : start + step].astype(feed_dtype)]

        converter.representative_dataset = representative
    if float_ops:
        # Selective quantization: calibrate, then quantize with the op types denylisted
        # (what QuantizationDebugger.get_nondebug_quantized_model does, with int8 in/out).
        converter._experimental_calibrate_only = True
    elif config.quant == "int8":
        if not qat:  # a QAT graph carries its ranges; the INT8-only op set wants calibration
            converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = t.int8  # applies to float inputs; ids stay int32
        converter.inference_output_type = t.int8
    elif config.quant == "int16x8":
        converter.target_spec.supported_ops = [
            t.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    with quiet_stderr() as log:
        try:
            content = bytes(converter.convert())
            if float_ops:
                content = _quantize_selectively(content, float_ops)
        except Exception as exc:
            raise ModelFileError(
                f"{model.name}: the TFLite converter failed in --quant {config.quant} mode: "
                f"{converter_message(str(exc), log.read())}",
                expected="a model whose every op has a LiteRT kernel in this mode",
                fix="try another --quant mode; the record of a working mode lists the ops",
            ) from None
    return compact_flatbuffer(content)


def _quantize_selectively(calibrated: bytes, float_ops: tuple[str, ...]) -> bytes:
    """Full int8 of a calibrated model except ``float_ops``, with int8 input and output."""
    from tensorflow.lite.python import convert as tflite_convert

    from edgesmith.zoo.tfkeras import tf

    t = tf()
    return bytes(
        tflite_convert.mlir_quantize(
            calibrated,
            input_data_type=t.int8,
            output_data_type=t.int8,
            denylisted_ops=list(float_ops),
        )
    )


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


def converter_message(message: str, log: str = "") -> str:
    """The one useful line of a converter failure (MLIR prints pages of call sites)."""
    for text in (message, log):
        for line in text.splitlines():
            match = re.search(r"error: (.*)", line)
            if match and "failed while converting" not in match.group(1):
                return match.group(1).strip()[:300]
    first = next((line for line in message.splitlines() if line.strip()), message)
    return first.strip()[:300]


class _Log:
    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> str:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""


@contextlib.contextmanager
def quiet_stderr() -> Iterator[_Log]:
    """Send C++ stderr (converter diagnostics, quantizer chatter) to a file while converting.

    The MLIR converter prints call-site dumps straight to file descriptor 2; a user gets
    one clear line from :func:`converter_message` instead.
    """
    fd, path = tempfile.mkstemp(prefix="edgesmith-converter-", suffix=".log")
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield _Log(path)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)


def _feeds_embedding(model: Any) -> bool:
    """Whether the model's input goes straight into an Embedding layer (token ids)."""
    name = model.inputs[0].name
    for layer in model.layers:
        if type(layer).__name__ == "Embedding":
            try:
                return layer.input.name == name
            except AttributeError:  # a layer used more than once has no single input
                return False
    return False


def _mul_layer_norm(k: Any) -> type:
    """LayerNormalization whose variance uses MUL (16x8 has no SQUARED_DIFFERENCE kernel)."""
    from edgesmith.zoo.tfkeras import tf

    t = tf()

    class MulLayerNormalization(k.layers.LayerNormalization):
        def call(self, inputs: Any) -> Any:
            axes = self.axis
            mean = t.reduce_mean(inputs, axis=axes, keepdims=True)
            centred = inputs - mean
            variance = t.reduce_mean(centred * centred, axis=axes, keepdims=True)
            out = centred * t.math.rsqrt(variance + self.epsilon)
            if self.scale:
                out = out * self.gamma
            if self.center:
                out = out + self.beta
            return out

    return MulLayerNormalization
