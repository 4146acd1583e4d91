"""Keras -> ONNX with tf2onnx, then ONNX Runtime quantization (dynamic, static QDQ int8) or
fp16 with onnxconverter-common; ``onnx.checker`` validates every file written.

Example:
    >>> from edgesmith.convert.onnx_export import to_onnx  # doctest: +SKIP
    >>> result = to_onnx(model, ConversionConfig(format="onnx", quant="int8"), x_calibration=x)  # doctest: +SKIP
    >>> result.strategy["quantizer"]  # doctest: +SKIP
    'onnxruntime.quantization.quantize_static (QDQ, per-channel int8 weights in 7-bit range, int8 activations)'
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.tflite import converter_message, pick_samples
from edgesmith.core.errors import ConfigError, EdgesmithError, ModelFileError
from edgesmith.core.native_log import native_log


@dataclass
class OnnxResult:
    """The serialized ONNX model and how it was made."""

    content: bytes
    strategy: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def to_onnx(
    model: Any,
    family: str,
    config: ConversionConfig,
    *,
    x_calibration: np.ndarray | None = None,
    float_ops: Sequence[str] = (),
    dynamic_lstm: bool = False,
) -> OnnxResult:
    """Export ``model`` with an explicit input signature and quantize it per ``config``.

    Static int8 only (``--quant auto`` builds its selective files with them):
    ``float_ops`` are ONNX op types the static quantizer leaves in float32 (no Q/DQ
    around them); ``dynamic_lstm`` quantizes the ONNX ``LSTM`` ops that a graph exported
    with ``config.lstm == "fused"`` keeps (static QDQ leaves them float) dynamically, as
    ``--quant dynamic`` does: int8 weights, float32 gates and state.
    """
    _require("onnx", "tf2onnx")
    import onnx

    from edgesmith.convert.tflite import export_model

    if (float_ops or dynamic_lstm) and config.quant != "int8":
        raise ConfigError(
            f"float_ops/dynamic_lstm with --quant {config.quant}",
            expected="--quant int8: they select what static int8 quantizes",
            fix="pass them only for --format onnx --quant int8",
        )
    if config.needs_calibration and x_calibration is None:
        raise ConfigError(
            f"--format onnx --quant {config.quant} without calibration data",
            expected="real input samples for static quantization",
            fix="convert a zoo model or model folder (its training split is used), or pass "
            "--calibration FILE.npz with an 'x' array",
        )
    model, strategy, notes = export_model(model, family, config)
    strategy.update(exporter="tf2onnx.convert.from_keras", opset=config.opset)
    proto = _export(model, config)
    if _replace_erfc(proto):
        strategy["erfc"] = "rewritten as 1 - Erf (gelu)"
    if config.needs_calibration:
        flattened = flatten_gemm_biases(proto)
        if flattened:
            strategy["gemm_biases"] = f"{flattened} constant 1xN Gemm biases stored as N"
    _check(proto, "tf2onnx export")
    with tempfile.TemporaryDirectory(prefix="edgesmith-onnx-") as tmp:
        work = Path(tmp)
        float_path = work / "float.onnx"
        onnx.save(proto, float_path)
        if config.quant == "none":
            out = float_path
        elif config.quant == "fp16":
            out = _fp16(float_path, work, strategy)
        elif config.quant == "dynamic":
            with _quiet_logging():
                out = _dynamic(float_path, work, strategy, notes)
        else:
            assert x_calibration is not None
            x_cal = pick_samples(x_calibration, config.calibration_samples, config.seed)
            kept = tuple(dict.fromkeys((*_float_gate_ops(strategy, config, notes), *float_ops)))
            if dynamic_lstm and float_ops:
                # Named in an explicit list, static QDQ would put DequantizeLinear on the
                # LSTM's weights, and the dynamic quantizer then finds no weights to take.
                kept = (*kept, "LSTM")
            if float_ops:
                strategy["float_ops"] = list(float_ops)
            with _quiet_logging():
                out = _static_int8(float_path, work, x_cal, config, strategy, kept)
                if config.per_channel:
                    out = _per_tensor_if_better(
                        float_path, out, work, x_cal, config, strategy, kept
                    )
                if dynamic_lstm and _has_op(out, "LSTM"):
                    out = _dynamic_lstm(out, work, strategy)
            if strategy.get("per_channel_fallback"):
                notes.append(strategy["per_channel_fallback"])
            strategy["calibration"] = {"method": "min/max (QDQ)", "samples": len(x_cal)}
        final = compact_names(onnx.load(out))
        _check(final, f"--quant {config.quant}")
        return OnnxResult(final.SerializeToString(), strategy, notes)


def compact_names(proto: Any) -> Any:
    """Short node and tensor names, keeping the graph's input and output names.

    tf2onnx names every tensor after its Keras scope and QDQ quantization adds three names
    per quantized tensor; in a small int8 model those strings outweigh the int8 weights
    (transformer-digits: 239 kB with names, mostly text). Only debugging labels change.
    """
    graph = proto.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    mapping: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in mapping:
            mapping[name] = f"t{len(mapping)}"
        return mapping[name]

    for init in graph.initializer:
        init.name = rename(init.name)
        init.doc_string = ""
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        node.doc_string = ""
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
    for info in graph.value_info:
        info.name = rename(info.name)
    graph.doc_string = ""
    return proto


def _export(model: Any, config: ConversionConfig) -> Any:
    import tf2onnx

    from edgesmith.zoo.tfkeras import tf

    t = tf()
    spec = t.TensorSpec(
        [config.batch_size, *model.input_shape[1:]], model.inputs[0].dtype, name="input"
    )
    with native_log() as log:
        try:
            proto, _ = tf2onnx.convert.from_keras(
                model, input_signature=[spec], opset=config.opset, output_path=None
            )
        except Exception as exc:
            raise ModelFileError(
                f"{model.name}: tf2onnx could not export the model at opset {config.opset}: "
                f"{converter_message(str(exc), log.read())}",
                expected="a Keras model whose ops tf2onnx supports",
                fix="try another --opset (17 is the default), or --format tflite",
            ) from exc
    return proto


def _replace_erfc(proto: Any) -> bool:
    """Rewrite each ``Erfc(x)`` node (no such ONNX op) as ``1 - Erf(x)``; True if any.

    tf2onnx maps TensorFlow's Erfc (Keras' exact gelu computes ``0.5 x erfc(-x / sqrt 2)``)
    to an ``Erfc`` node that onnx.checker rejects at every opset.
    """
    import onnx
    from onnx import helper

    graph = proto.graph
    if not any(node.op_type == "Erfc" for node in graph.node):
        return False
    one = "edgesmith_erfc_one"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.0, np.float32), one))
    nodes = []
    for index, node in enumerate(graph.node):
        if node.op_type != "Erfc":
            nodes.append(node)
            continue
        erf = f"{node.output[0]}_erf{index}"
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf], name=f"{node.name}_erf"))
        nodes.append(helper.make_node("Sub", [one, erf], list(node.output), name=node.name))
    del graph.node[:]
    graph.node.extend(nodes)
    return True


def flatten_gemm_biases(proto: Any) -> int:
    """Store each constant ``1 x N`` Gemm bias as a vector of ``N``; returns how many.

    An unrolled recurrent layer starts from a zero state: tf2onnx folds the first step's
    ``h0 @ U + b`` into one ``1 x N`` constant, which becomes that step's Gemm bias.
    ONNX Runtime's static quantizer checks the int32 scale of a per-channel bias element
    by element and fails on a 2-D bias ("truth value of an array ... is ambiguous": the
    SimpleRNN groups). Gemm broadcasts ``N`` exactly as ``1 x N``, so the values computed
    do not change.
    """
    import onnx

    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    flat_names: dict[str, str] = {}
    count = 0
    for node in graph.node:
        if node.op_type != "Gemm" or len(node.input) < 3 or node.input[2] not in initializers:
            continue
        name = node.input[2]
        dims = list(initializers[name].dims)
        if len(dims) != 2 or dims[0] != 1:
            continue
        if name not in flat_names:
            # A new initializer: the 2-D one may feed other nodes that need its shape.
            values = onnx.numpy_helper.to_array(initializers[name]).reshape(-1)
            flat_names[name] = f"{name}_flat"
            graph.initializer.append(onnx.numpy_helper.from_array(values, flat_names[name]))
        node.input[2] = flat_names[name]
        count += 1
    return count


def _check(proto: Any, stage: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(
            f"the ONNX model after {stage} fails onnx.checker: {str(exc).splitlines()[0]}",
            expected="a valid ONNX model",
            fix="report this with the model; try another --opset or --quant mode",
        ) from exc


def _fp16(src: Path, work: Path, strategy: dict[str, Any]) -> Path:
    _require("onnxconverter_common")
    import onnx
    from onnxconverter_common import float16

    # Inputs and outputs stay float32 so callers feed the same arrays as for float32.
    with warnings.catch_warnings():  # one line per tiny weight clipped to float16's range
        warnings.simplefilter("ignore", UserWarning)
        model16 = float16.convert_float_to_float16(onnx.load(src), keep_io_types=True)
    out = work / "fp16.onnx"
    onnx.save(model16, out)
    strategy["quantizer"] = "onnxconverter_common.float16 (float32 inputs/outputs kept)"
    return out


def _dynamic(src: Path, work: Path, strategy: dict[str, Any], notes: list[str]) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / "prepared.onnx"
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    out = work / "dynamic.onnx"
    # ORT's CPU kernels have no ConvInteger for int8 weights, so convolutions keep float
    # weights and the dynamic mode quantizes the matrix products (Dense, LSTM, attention).
    quantize_dynamic(
        prepared,
        out,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm", "LSTM", "GRU", "Attention"],
        # The u8 x s8 products overflow the same 16-bit sums as the static mode's.
        reduce_range=SEVEN_BIT_WEIGHTS,
    )
    strategy["quantizer"] = "onnxruntime.quantization.quantize_dynamic (int8 MatMul/Gemm/LSTM)"
    if SEVEN_BIT_WEIGHTS:
        strategy["weights"] = "int8 weights in 7-bit range"
    if _has_op(src, "Conv"):
        notes.append(
            "ONNX dynamic: Conv weights stay float32 (ONNX Runtime's CPU ConvInteger has no "
            "int8-weight kernel); use --quant int8 for quantized convolutions"
        )
    return out


def _dynamic_lstm(src: Path, work: Path, strategy: dict[str, Any]) -> Path:
    """``src`` with its ``LSTM`` ops quantized dynamically (the rest as it is: QDQ int8).

    One fused recurrent op runs ONNX Runtime's DynamicQuantizeLSTM kernel: int8 weights and
    products, float32 gates and state, and none of the Q/DQ pairs that an unrolled graph
    puts around each step's products (lstm-kws: 388 Q/DQ nodes, 0.15x float32's speed).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = work / "dynamic-lstm.onnx"
    quantize_dynamic(
        src,
        out,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["LSTM"],
        reduce_range=SEVEN_BIT_WEIGHTS,
    )
    strategy["lstm_int8"] = {"scheme": "LSTM op, dynamic int8 (DynamicQuantizeLSTM)"}
    return out


# The element-wise gate and cell-state ops of an unrolled recurrent layer that
# lstm_int8="float-gates" leaves in float, as convert/tflite.py's LSTM_FLOAT_GATE_OPS:
# MatMul/Gemm products and their weights stay int8. lstm-digits (8 steps): every op int8
# agreed with Keras on 98.9% of the test samples (97.4% accuracy against 96.3% float),
# float gates on 100% (96.3%), and the file is smaller (38 kB against 49 kB: no Q/DQ
# pairs around each gate).
ONNX_FLOAT_GATE_OPS = ("Add", "Sub", "Mul", "Sigmoid", "Tanh", "Split")


def _float_gate_ops(
    strategy: dict[str, Any], config: ConversionConfig, notes: list[str]
) -> tuple[str, ...]:
    """The op types left float for an unrolled recurrent layer (none without one)."""
    if not str(strategy.get("lstm", "")).startswith("unrolled"):
        return ()
    float_ops = ONNX_FLOAT_GATE_OPS if config.lstm_int8 == "float-gates" else ()
    strategy["lstm_int8"] = {"scheme": config.lstm_int8, "float_ops": list(float_ops)}
    if float_ops:
        notes.append(
            "recurrent int8: selective quantization (lstm_int8=float-gates): the element-wise "
            f"gate and cell-state ops ({', '.join(float_ops)}) stay float32; weights and "
            "MatMul/Gemm products are int8 (lstm-digits: 100% agreement with Keras, against "
            "98.9% with every op int8)"
        )
    return float_ops


def _static_int8(
    src: Path,
    work: Path,
    x_cal: np.ndarray,
    config: ConversionConfig,
    strategy: dict[str, Any],
    float_ops: tuple[str, ...] = (),
) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / "prepared.onnx"
    # Shapes are static (fixed batch), so ONNX's own shape inference is enough.
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    step = config.batch_size or 1
    dtype = _input_dtype(src)  # token ids: the exported input is int32 whatever x_cal holds

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = (
                x_cal[i : i + step].astype(dtype) for i in range(0, len(x_cal) - step + 1, step)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    out = work / "int8.onnx"
    op_types = None
    if float_ops:
        import onnx

        present = {node.op_type for node in onnx.load(prepared).graph.node}
        op_types = sorted(present - set(float_ops))
        if not op_types:  # an empty list would mean every op type to ONNX Runtime
            raise ConfigError(
                f"float_ops {sorted(float_ops)} keep every op type of the graph in float32",
                expected="at least one op type left to quantize",
                fix="use --quant none, or keep fewer op types in float32",
            )

    try:
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=config.per_channel,
            reduce_range=SEVEN_BIT_WEIGHTS,
            op_types_to_quantize=op_types,
            calibrate_method=CalibrationMethod.MinMax,
        )
    except ValueError as exc:
        raise ModelFileError(
            f"ONNX Runtime's static int8 quantizer failed on the model ({exc})"[:300],
            expected="a graph ONNX Runtime's QDQ quantizer handles",
            fix="use --format tflite --quant int8, or --format onnx --quant dynamic",
        ) from exc
    channel = "per-channel" if config.per_channel else "per-tensor"
    weights = f"{channel} int8 weights" + (" in 7-bit range" if SEVEN_BIT_WEIGHTS else "")
    strategy["quantizer"] = (
        f"onnxruntime.quantization.quantize_static (QDQ, {weights}, int8 activations)"
    )
    return out


# Weights of static int8 are quantized to [-64, 64] (ONNX Runtime's reduce_range). ONNX
# Runtime's x86 int8 kernels multiply unsigned 8-bit activations by signed 8-bit weights
# with an instruction (VPMADDUBSW) that adds each pair of products into a saturating 16-bit
# integer; on CPUs without VNNI, 255 * 127 * 2 overflows it and the sums are clamped.
# Inputs bunched at the top of their range (sigmoid/hard-sigmoid outputs, LSTM gates) hit
# it: the same QDQ files run unfused (ORT_ENABLE_BASIC) agreed with Keras, fused they did
# not (tests/convert/test_layer_coverage_convert.py models: activations mean abs difference
# 0.0014 -> 0.032, LSTM top-1 agreement 98.3% -> 81.7%, SimpleRNN 100% -> 95%). With
# 7-bit weights no pair can overflow (255 * 64 * 2 < 32767) on any CPU, so a file
# converted here runs correctly everywhere; the finer weights give up little (activations
# 0.0017, LSTM 98.3%, SimpleRNN 98.3%, conv1d 0.0060 against 0.0102 saturated).
SEVEN_BIT_WEIGHTS = True

# Below this agreement with the float model on the calibration samples, per-channel int8
# is compared with per-tensor int8 (some graphs, such as Conv1D layers exported through
# reshapes, lose much more with per-channel scales) and the better one is kept.
PER_CHANNEL_MIN_AGREEMENT = 0.97


def _per_tensor_if_better(
    float_path: Path,
    int8_path: Path,
    work: Path,
    x_cal: np.ndarray,
    config: ConversionConfig,
    strategy: dict[str, Any],
    float_ops: tuple[str, ...] = (),
) -> Path:
    """Per-channel int8, unless per-tensor agrees clearly better with the float model."""
    from dataclasses import replace

    reference = _run_onnx(float_path, x_cal, config)
    per_channel = _agreement(reference, _run_onnx(int8_path, x_cal, config))
    if per_channel >= PER_CHANNEL_MIN_AGREEMENT:
        return int8_path
    tensor_dir = work / "per-tensor"
    tensor_dir.mkdir()
    tensor_strategy: dict[str, Any] = {}
    per_tensor_config = replace(config, per_channel=False)
    candidate = _static_int8(
        float_path, tensor_dir, x_cal, per_tensor_config, tensor_strategy, float_ops
    )
    per_tensor = _agreement(reference, _run_onnx(candidate, x_cal, config))
    if per_tensor <= per_channel:
        return int8_path
    strategy.update(tensor_strategy)
    strategy["per_channel_fallback"] = (
        f"int8 weights per tensor: per-channel scales agreed with the float model on "
        f"{per_channel:.1%} of the calibration samples, per-tensor on {per_tensor:.1%}"
    )
    return candidate


def _run_onnx(path: Path, x: np.ndarray, config: ConversionConfig) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    step = config.batch_size or len(x)
    dtype = _input_dtype(path)
    outputs = [
        session.run(None, {name: x[i : i + step].astype(dtype)})[0]
        for i in range(0, len(x) - step + 1, step)
    ]
    return np.concatenate(outputs).reshape(len(outputs) * step, -1)


def _agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    from edgesmith.core.metrics import predicted_classes

    return float(np.mean(predicted_classes(reference) == predicted_classes(candidate)))


def _input_dtype(path: Path) -> Any:
    """The numpy type of the ONNX model's first input."""
    import onnx

    elem_type = onnx.load(path).graph.input[0].type.tensor_type.elem_type
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type)


def _has_op(path: Path, op_type: str) -> bool:
    import onnx

    return any(node.op_type == op_type for node in onnx.load(path).graph.node)


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice through the root logger; keep the CLI clean."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _require(*modules: str) -> None:
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise EdgesmithError(
                f"{module} is not installed ({exc})",
                expected="the ONNX side of edgesmith",
                fix="install it with: pip install 'edgesmith[full]'",
            ) from None
