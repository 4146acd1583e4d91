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

A quantization-aware-trained (QAT) model is converted as trained, not rebuilt: the
converter takes the ranges of its fake-quant ops, calibration samples (when given) measure
the ranges training left open, and then every op must be an int8 builtin. QAT already
trains its LSTMs as unrolled cells with int8 gates, so ``--quant int8`` keeps no op float;
token ids stay the model's float input (never quantized) and are cast inside.
:func:`int8_report` lists what a converted file still computes in float.

Example:
    >>> from edgesmith.convert.tflite import to_tflite  # doctest: +SKIP
    >>> result = to_tflite(model, "lstm", ConversionConfig(quant="int8"), x_calibration=x)  # doctest: +SKIP
    >>> result.strategy["lstm"]  # doctest: +SKIP
    'unrolled over 8 time steps (stateless graph)'
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.tflite_compact import (  # noqa: F401  (UNUSED_METADATA re-exported)
    UNUSED_METADATA,
    compact_flatbuffer,
)
from edgesmith.core.errors import ConfigError, ModelFileError
from edgesmith.core.native_log import native_log
from edgesmith.runtime.tflite_flatbuffer import parse_flatbuffer

# Ops of an unrolled LSTM cell kept in float by lstm_int8="float-gates" (the converter's
# selective quantization, as tf.lite.experimental.QuantizationDebugger's denylisted_ops).
LSTM_FLOAT_GATE_OPS = ("ADD", "MUL", "LOGISTIC", "TANH", "SPLIT")
# Recurrent layers export_model unrolls over their fixed time steps.
_RECURRENT = frozenset({"LSTM", "GRU", "SimpleRNN", "Bidirectional"})


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
    # Every recurrent layer is unrolled the same way: GRU and SimpleRNN loops (and those
    # inside Bidirectional) also convert to a WHILE loop, and TF 2.21's full-int8
    # calibration of a GRU loop crashed the process (segmentation fault).
    lstm_layers = [layer for layer in model.layers if type(layer).__name__ in _RECURRENT]
    # ONNX has a stateless LSTM op that ONNX Runtime quantizes dynamically, but its static
    # QDQ quantizer leaves LSTM in float: unrolled, the LSTM's products become MatMuls
    # that the int8 mode does quantize.
    # tf2onnx has no SimpleRNN pattern: its loop exports as an invalid graph, so a
    # SimpleRNN is unrolled for ONNX in every mode.
    wants_unroll = config.format == "tflite" or config.quant == "int8" or _has_simple_rnn(model)
    # A QAT model is exported as trained (its wrappers do not survive a rebuild).
    unroll = bool(lstm_layers) and config.lstm == "unroll" and wants_unroll and not qat
    if lstm_layers:
        steps = model.input_shape[1]
        if unroll and config.format == "tflite":
            strategy["lstm"] = f"unrolled over {steps} time steps (stateless graph)"
            notes.append(
                f"{_recurrent_names(lstm_layers)}: unrolled over its {steps} time steps, not the fused "
                "UNIDIRECTIONAL_SEQUENCE_LSTM op: TF 2.21's fused op carries its state from "
                "one invoke() to the next, which put the previous sample's state into every "
                "sample (lstm-digits: 14% top-1 in float32, 20% in int8, against 96% after "
                "a reset); the unrolled graph is stateless"
            )
        elif unroll:
            strategy["lstm"] = f"unrolled over {steps} time steps (MatMuls for QDQ int8)"
            notes.append(
                f"{_recurrent_names(lstm_layers)}: unrolled over its {steps} time steps so "
                "that static QDQ int8 "
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
                + (" (a QAT model is converted as trained, not rebuilt)" if qat else "")
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
    float_ids = _feeds_embedding(model) and not model.inputs[0].dtype.is_integer
    token_input = float_ids and not qat  # a QAT model keeps its float ids, unquantized
    input_dtype = "int32" if token_input or model.inputs[0].dtype.is_integer else "float32"
    if token_input:
        strategy["token_ids"] = "int32 input straight into the Embedding lookup"
        notes.append(
            "token ids exported as an int32 input (the Keras model takes float ids and casts "
            "them; quantizing that float input would corrupt the ids)"
        )
    elif float_ids:
        strategy["token_ids"] = "float input, not quantized, cast to int32 for the lookup"
        notes.append(
            "token ids of a QAT model stay its float input, never quantized (an int8 input "
            "would corrupt the ids); the model casts them to int32 for the lookup"
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
        if unroll and type(layer).__name__ == "Bidirectional":
            for key in ("layer", "backward_layer"):
                if key in cfg:
                    cfg[key] = {**cfg[key], "config": {**cfg[key]["config"], "unroll": True}}
            return type(layer).from_config(cfg)
        if unroll and type(layer).__name__ in _RECURRENT:
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
            ) from exc
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
    float_ops: Sequence[str] = (),
    float_nodes: Sequence[tuple[int, str]] = (),
) -> TfliteResult:
    """Convert ``model`` to a .tflite flatbuffer in ``config.quant`` mode.

    ``int8`` is full-integer with int8 inputs and outputs (float inputs; token ids stay
    int32) calibrated on ``config.calibration_samples`` samples of ``x_calibration``.
    With ``qat`` (a quantization-aware-trained model) it takes the ranges learned in
    training; samples, when given, calibrate what training left open and every op must
    then be an int8 builtin (without samples, an op without learned ranges stays float).
    ``int16x8`` uses 16-bit activations and 8-bit weights. ``float_ops`` (``int8`` only)
    are op types kept in float32 on top of the defaults (selective quantization: weights
    and every other op stay int8). ``float_nodes`` (``int8`` only) are single ops kept in
    float32, each as ``(position, op type)``: its rank among the weight ops
    (:data:`~edgesmith.convert.quant_nodes.NODE_KINDS`) in execution order, and the type
    it must have. ``auto`` searches the modes by measured latency and
    accuracy (:func:`~edgesmith.convert.quant_auto.auto_tflite`; here without labels, by
    agreement with float32 on samples of ``x_calibration``).
    """
    if config.quant == "auto":
        from edgesmith.convert.quant_auto import auto_tflite

        return auto_tflite(model, family, config, x_calibration=x_calibration, qat=qat)
    if (float_ops or float_nodes) and (config.quant != "int8" or qat):
        raise ConfigError(
            f"float_ops={list(float_ops)}, float_nodes={list(float_nodes)} with --quant "
            f"{config.quant}" + (" on a QAT model" if qat else ""),
            expected="--quant int8 on a float model (selective quantization)",
        )
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
    calibration: dict[str, Any] | None = None
    x_cal: np.ndarray | None = None
    if config.needs_calibration and x_calibration is not None:
        x_cal = pick_samples(x_calibration, config.calibration_samples, config.seed)
    if config.needs_calibration and qat:
        calibration = {
            "method": "ranges learned by quantization-aware training"
            + ("" if x_cal is None else "; min/max over representative samples for the rest"),
            "samples": 0 if x_cal is None else len(x_cal),
        }
    elif config.needs_calibration:
        assert x_cal is not None
        calibration = {"method": "min/max over representative samples", "samples": len(x_cal)}
    strategy["calibration"] = calibration
    extra_float_ops = tuple(float_ops)
    float_ops = ()
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
    if extra_float_ops:
        float_ops = tuple(dict.fromkeys((*float_ops, *extra_float_ops)))
        strategy["float_ops"] = list(float_ops)
    strategy["tensor_names"] = "internal tensor names dropped (inputs/outputs kept)"
    # Float token ids of a QAT model stay float: an int8 input would quantize the ids.
    int8_input = not (qat and _feeds_embedding(exported))
    named: list[dict[str, str]] = []
    options = {
        "float_ops": float_ops,
        "float_nodes": tuple(float_nodes),
        "int8_input": int8_input,
        "named": named,
    }
    content = _convert(exported, config, x_cal, qat, **options)
    if float_nodes:
        strategy["float_nodes"] = [
            {"position": position, "op": op, **node}
            for (position, op), node in zip(float_nodes, named, strict=True)
        ]
    result = TfliteResult(content, strategy, notes)
    if config.sparse:
        dense = _convert(exported, config, x_cal, qat, sparse=False, **options)
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
    float_nodes: tuple[tuple[int, str], ...] = (),
    int8_input: bool = True,
    named: list[dict[str, str]] | None = None,
) -> bytes:
    """The flatbuffer; ``float_ops`` (full int8 only) are op types left in float32.

    ``float_nodes`` are single weight ops left in float32 (see :func:`to_tflite`); the
    name of each one's output tensor (which the quantizer matched) and how its weights are
    stored are appended to ``named``.

    With ``x_cal`` full int8 admits int8 builtins only; without (a QAT model converted on
    its learned ranges alone) an op training left without ranges stays float.
    ``int8_input=False`` keeps a float input float in full int8 (a QAT model's token ids).
    """
    from edgesmith.zoo.tfkeras import tf

    t = tf()
    batch = config.batch_size
    dtype = model.inputs[0].dtype
    spec = t.TensorSpec([batch, *model.input_shape[1:]], dtype, name="input")

    @t.function(input_signature=[spec], autograph=False)
    def serve(x: Any) -> Any:
        return model(x, training=False)

    concrete = serve.get_concrete_function()

    def configured(holder: Any) -> Any:
        converter = t.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
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
        if float_ops or float_nodes:
            # Selective quantization: calibrate, then quantize with the op types (and nodes)
            # denylisted (what QuantizationDebugger.get_nondebug_quantized_model does, with
            # int8 in/out).
            converter._experimental_calibrate_only = True
        elif config.quant == "int8":
            if x_cal is not None:  # the INT8-only op set needs every range: learned or measured
                converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_input:
                converter.inference_input_type = t.int8  # float inputs; ids stay int32
            converter.inference_output_type = t.int8
        elif config.quant == "int16x8":
            converter.target_spec.supported_ops = [
                t.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        return converter

    with native_log() as log:
        try:
            content = run_light_first(configured, model)
            if float_ops or float_nodes:
                content = _quantize_selectively(content, float_ops, float_nodes, named)
        except Exception as exc:
            raise ModelFileError(
                f"{model.name}: the TFLite converter failed in --quant {config.quant} mode: "
                f"{converter_message(str(exc), log.read())}",
                expected="a model whose every op has a LiteRT kernel in this mode",
                fix="try another --quant mode; the record of a working mode lists the ops",
            ) from exc
    return compact_flatbuffer(content)


def run_light_first(configured: Callable[[Any], Any], model: Any) -> bytes:
    """Convert with ``configured(holder)``'s converter, ``holder`` holding only the variables.

    The converter saves its concrete function with the object given as owning it; given
    the Keras model, saving traces every layer's call again (about 4 s of a 4.7 s
    conversion of a small Transformer here). A bare module holding the model's variables
    gives the same file. A function that captures something the variables do not hold (a
    lookup table) fails that way and is converted again with the model as the owner.
    """
    from edgesmith.zoo.tfkeras import tf

    holder = tf().Module()
    holder.model_variables = list(model.variables)
    try:
        return _run_converter(configured(holder))
    except Exception:  # the slow, always-complete way decides
        return _run_converter(configured(model))


def _run_converter(converter: Any) -> bytes:
    """``converter.convert()`` without the warning a QAT model's int8 input raises.

    The converter asks for input statistics, but a QAT graph's input range is learned
    (its QuantizeLayer): the warning is not actionable.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return bytes(converter.convert())


def _quantize_selectively(
    calibrated: bytes,
    float_ops: tuple[str, ...],
    float_nodes: tuple[tuple[int, str], ...] = (),
    named: list[dict[str, str]] | None = None,
) -> bytes:
    """Full int8 of a calibrated model except ``float_ops`` and ``float_nodes``.

    Input and output are int8. A node is named to the quantizer by its output tensor in the
    calibrated graph (``denylisted_nodes``, as the quantization debugger names layers);
    the quantized graph is then checked to compute those weight ops in float32, and their
    weights are stored as float16 (unpacked to float32 when the model loads: the op still
    computes in float32, from half the bytes).
    """
    from tensorflow.lite.python import convert as tflite_convert

    from edgesmith.convert.quant_nodes import check_float_nodes, half_node_weights, node_names
    from edgesmith.zoo.tfkeras import tf

    t = tf()
    nodes = node_names(calibrated, float_nodes) if float_nodes else []
    content = bytes(
        tflite_convert.mlir_quantize(
            calibrated,
            input_data_type=t.int8,
            output_data_type=t.int8,
            denylisted_ops=list(float_ops),
            denylisted_nodes=nodes,
        )
    )
    if float_nodes:
        positions = [position for position, _ in float_nodes]
        check_float_nodes(content, positions)
        content, left = half_node_weights(content, positions)
        for position, name in zip(positions, nodes, strict=True):
            why = next((line for line in left if line.startswith(f"weight op {position}:")), "")
            weights = f"float32 ({why})" if why else "float16"
            if named is not None:
                named.append({"tensor": name, "weights": weights})
    return content


def int8_report(content: bytes) -> dict[str, Any]:
    """Operators and input/output tensor types of a .tflite flatbuffer, across all subgraphs.

    ``float_ops`` lists the operators that read or write float32 activations (constants
    excluded): a full-int8 model has none, except a ``CAST`` of float token ids.
    ``input_type``/``output_type`` are the schema's type names (``INT8``, ``FLOAT32``, ...).
    """
    graph = parse_flatbuffer(content, Path("converted.tflite"))
    ops: set[str] = set()
    float_ops: set[str] = set()
    for sub in graph.subgraphs:
        for op in sub.ops:
            ops.add(op.name)
            if any(t.dtype == "float32" and not t.constant for t in sub.op_tensors(op)):
                float_ops.add(op.name)
    main = graph.main
    return {
        "ops": sorted(ops),
        "float_ops": sorted(float_ops),
        "input_type": main.tensors[main.inputs[0]].dtype.upper(),
        "output_type": main.tensors[main.outputs[0]].dtype.upper(),
        "size_bytes": len(content),
    }


def converter_message(message: str, log: str = "") -> str:
    """The one useful line of a converter failure (MLIR prints pages of call sites)."""
    for text in (message, log):
        for line in text.splitlines():
            match = re.search(r"error: (.*)", line)
            if match and "failed while converting" not in match.group(1):
                return match.group(1).strip()[:300]
    first = next((line for line in message.splitlines() if line.strip()), message)
    return first.strip()[:300]


def _has_simple_rnn(model: Any) -> bool:
    for layer in model.layers:
        inner = getattr(layer, "forward_layer", layer)  # Bidirectional
        if type(inner).__name__ == "SimpleRNN":
            return True
    return False


def _recurrent_names(layers: list[Any]) -> str:
    """``LSTM`` or ``GRU/Bidirectional``: the recurrent layer classes of a model, for notes."""
    return "/".join(dict.fromkeys(type(layer).__name__ for layer in layers))


def _feeds_embedding(model: Any) -> bool:
    """Whether the model's input goes straight into an Embedding layer (token ids).

    In a QAT model the Embedding is wrapped (QuantizeWrapperV2) and the ids pass a
    QuantizeLayer first, which leaves them unquantized.
    """
    name = model.inputs[0].name
    for layer in model.layers:
        inner = layer
        while type(inner).__name__.startswith("Quantize") and hasattr(inner, "layer"):
            inner = inner.layer
        if type(inner).__name__ == "Embedding":
            try:
                source = layer.input
                while source.name != name:
                    producer = source._keras_history.layer
                    if type(producer).__name__ != "QuantizeLayer":
                        return False
                    source = producer.input
                return True
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
