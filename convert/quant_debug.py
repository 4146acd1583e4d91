"""Where a quantized .tflite loses accuracy: per-layer error against its float reference.

For every quantized tensor the report gives the signal-to-noise ratio of the dequantized
values against the float ones (dB, aggregated over the samples), their cosine similarity,
the largest absolute error, and, for the ``top`` worst layers by SNR, the accuracy of the
model re-quantized with that layer alone kept in float32. Layers come ranked, worst first.

Two references:

* a **Keras model** (zoo name, model folder, or a user's model file, with its ``data``):
  TensorFlow's ``tf.lite.experimental.QuantizationDebugger`` calibrates the model as
  ``edgesmith convert --quant int8`` does (same export, same calibration samples), builds
  its instrumented model (each quantized op next to its float twin; run here on LiteRT, the
  runtime FILE is measured on) and the selectively quantized models (``denylisted_nodes``)
  whose accuracy fills ``acc_if_float``. FILE's own
  accuracy is measured beside the debugger's full-int8 re-quantization, so a FILE made
  another way shows up as a gap between the two;
* a **float .tflite**: both files run sample by sample with every intermediate tensor kept
  and tensors are matched by name (or, for files whose internal names were dropped, by
  position among the ops that compute). There is no converter to re-quantize with, so
  ``acc_if_float`` is null.

Example:
    >>> from edgesmith.convert.quant_debug import quant_error
    >>> report = quant_error("t-int8.tflite", "transformer-digits", top=3)  # doctest: +SKIP
    >>> [(layer["op"], round(layer["snr_db"], 1)) for layer in report["layers"][:2]]  # doctest: +SKIP
    [('SOFTMAX', 9.8), ('MEAN', 14.2)]
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError, DataError, ModelFileError
from edgesmith.core.progress import Progress, ProgressEvent, as_progress

DEFAULT_TOP = 10  # layers re-quantized with one node in float: each costs a conversion
DEFAULT_SAMPLES = 100  # samples the per-layer statistics are measured on
# Ratios of powers summed over samples: an exact match (no noise) would be +inf dB, which
# JSON cannot hold; the floor keeps every SNR finite and an exact layer ranks last.
_POWER_FLOOR = 1e-20
_QUANTIZED = (np.int8, np.uint8, np.int16)
# Ops that only move a tensor between float and integer: not layers of the model.
_CAST_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


@dataclass
class _Stats:
    """Sums over samples of one tensor: signal and noise power, products, largest error."""

    signal: float = 0.0
    noise: float = 0.0
    dot: float = 0.0
    quant: float = 0.0
    count: int = 0
    max_abs: float = 0.0

    def add(self, reference: np.ndarray, dequantized: np.ndarray) -> None:
        f = np.asarray(reference, np.float64).ravel()
        q = np.asarray(dequantized, np.float64).ravel()
        diff = f - q
        self.signal += float(f @ f)
        self.noise += float(diff @ diff)
        self.dot += float(f @ q)
        self.quant += float(q @ q)
        self.count += f.size
        if diff.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(diff))))

    def metrics(self) -> dict[str, float]:
        snr = 10.0 * math.log10((self.signal + _POWER_FLOOR) / (self.noise + _POWER_FLOOR))
        norm = math.sqrt(self.signal * self.quant)
        cosine = self.dot / norm if norm > 0 else float(self.signal == self.quant)
        return {"snr_db": snr, "cosine": min(1.0, cosine), "max_abs": self.max_abs}


@dataclass
class _Layer:
    name: str
    op: str
    tensor_index: int
    stats: _Stats = field(default_factory=_Stats)
    acc_if_float: float | None = None

    def to_dict(self, baseline: float | None) -> dict[str, Any]:
        change = None
        if self.acc_if_float is not None and baseline is not None:
            change = self.acc_if_float - baseline
        return {
            "name": self.name,
            "op": self.op,
            **self.stats.metrics(),
            "acc_if_float": self.acc_if_float,
            "acc_change": change,
            "tensor_index": self.tensor_index,
        }


def quant_error(
    file: str | os.PathLike[str],
    reference: Any,
    *,
    data: Any = None,
    data_dir: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    trust: bool = False,
    custom_objects: Any = None,
    image_scale: float | None = None,
    top: int = DEFAULT_TOP,
    samples: int = DEFAULT_SAMPLES,
    eval_samples: int | None = None,
    calibration_samples: int = 200,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Per-layer quantization error of the quantized .tflite ``file`` against ``reference``.

    ``reference``: the float model, as a zoo name, a model folder, a Keras model file (its
    data from ``data`` as ``edgesmith convert`` takes it) or a float ``.tflite`` (then
    ``data`` must be an .npz with ``x`` and ``y``). ``samples`` samples of the test split
    measure the statistics, ``eval_samples`` (default: all) the accuracies; ``top`` worst
    layers are re-quantized with that layer in float32 (Keras reference only).

    Returns a JSON-able report whose ``layers`` are ``{name, op, snr_db, cosine, max_abs,
    acc_if_float, acc_change, tensor_index}``, worst SNR first.

    Example:
        >>> quant_error("m.tflite", "m.keras", data="m.npz", top=0)["layers"][0]["op"]  # doctest: +SKIP
        'FULLY_CONNECTED'
    """
    if top < 0 or samples < 1 or (eval_samples is not None and eval_samples < 1):
        raise ConfigError(
            f"--top {top}, --samples {samples}, --eval-samples {eval_samples}",
            expected="--top >= 0 and at least 1 sample",
        )
    report = as_progress(progress)
    task = f"quant-error {Path(file).name}"
    file = Path(file)
    _check_quantized(file, "FILE", want_quantized=True)
    if isinstance(reference, (str, os.PathLike)) and Path(reference).suffix == ".onnx":
        raise ConfigError(
            f"--reference {reference}: an ONNX reference",
            expected="a .tflite FILE with a float .tflite or Keras reference",
            fix="give the Keras model (zoo name, model folder or .keras file) as --reference",
        )
    if isinstance(reference, (str, os.PathLike)) and Path(reference).suffix == ".tflite":
        return _against_tflite(file, Path(reference), data, samples, eval_samples, task, report)
    return _against_keras(
        file,
        reference,
        dict(
            data=data,
            data_dir=data_dir,
            store=store,
            trust=trust,
            custom_objects=custom_objects,
            image_scale=image_scale,
        ),
        top=top,
        samples=samples,
        eval_samples=eval_samples,
        calibration_samples=calibration_samples,
        seed=seed,
        task=task,
        report=report,
    )


def _check_quantized(path: Path, role: str, *, want_quantized: bool) -> Any:
    """Validate ``path`` as a .tflite; FILE must compute in integers, a reference in float."""
    from edgesmith.runtime.modelfile import inspect_model

    info = inspect_model(path)  # a missing or broken file: ModelFileError naming it
    if info.format != "tflite":
        raise ConfigError(
            f"{role} {path}: an {info.format} file",
            expected="a .tflite file (ONNX files are not analyzed for quantization error yet)",
            fix="convert the model with --format tflite --quant int8",
        )
    interpreter = _interpreter(path)
    quantized = _has_quantized_activations(interpreter)
    if want_quantized and not quantized:
        raise ModelFileError(
            f"{path}: a float model (no int8/int16 activations) given as the quantized FILE",
            expected="a full-integer .tflite (edgesmith convert --quant int8) as FILE and "
            "its float model as --reference",
            fix="swap FILE and --reference, or convert with --quant int8 first",
        )
    if not want_quantized and quantized:
        raise ModelFileError(
            f"--reference {path}: a quantized model",
            expected="the float model as --reference (a float .tflite, or the Keras model)",
            fix="convert the reference with --quant none, or give the Keras model",
        )
    return interpreter


def _interpreter(path: Path, *, keep_all: bool = False) -> Any:
    """LiteRT's interpreter on its builtin kernels: a delegate would hide the op outputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgesmith.core.native_log import native_log

    with native_log(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keeping every tensor is what we ask for here
        interpreter = Interpreter(
            model_path=str(path),
            experimental_preserve_all_tensors=keep_all,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            num_threads=1,
        )
        interpreter.allocate_tensors()
    return interpreter


def _has_quantized_activations(interpreter: Any) -> bool:
    """Whether some op writes an int8/uint8/int16 tensor that has a scale (weights do not count)."""
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():  # the public API has no op list
        for index in op["outputs"]:
            detail = details.get(index)
            if detail is not None and detail["dtype"] in _QUANTIZED and detail["quantization"][0]:
                return True
    return False


# --- Keras reference: TensorFlow's QuantizationDebugger -----------------------------------


def _against_keras(
    file: Path,
    reference: Any,
    load_options: dict[str, Any],
    *,
    top: int,
    samples: int,
    eval_samples: int | None,
    calibration_samples: int,
    seed: int,
    task: str,
    report: Progress,
) -> dict[str, Any]:
    from edgesmith.convert.config import ConversionConfig
    from edgesmith.convert.parity import predict_file
    from edgesmith.convert.source import load_source
    from edgesmith.convert.tflite import export_model, pick_samples
    from edgesmith.core.metrics import accuracy

    report(ProgressEvent(task, f"loading {reference}"))
    source = load_source(reference, **load_options)
    if source.is_qat:
        raise ConfigError(
            f"--reference {reference}: a quantization-aware-trained model",
            expected="a float Keras model: a QAT model's ranges are learned, not calibrated",
            fix="give the float model the QAT run started from",
        )
    _check_match(file, source.model, reference)
    if source.x_calibration is None or source.x_eval is None or source.y_eval is None:
        raise DataError(
            f"--reference {reference}: no data",
            expected="data to calibrate and measure on",
            fix="pass --data (an .npz with x and y, an image folder or a zoo set name)",
        )
    x_eval, y_eval = source.x_eval, source.y_eval
    if eval_samples is not None:
        x_eval, y_eval = x_eval[:eval_samples], y_eval[:eval_samples]
    config = ConversionConfig(
        format="tflite", quant="int8", calibration_samples=calibration_samples, seed=seed
    )
    exported, _strategy, notes = export_model(source.model, source.family, config)
    x_cal = pick_samples(source.x_calibration, calibration_samples, seed)
    report(ProgressEvent(task, f"calibrating on {len(x_cal)} samples"))
    debugger, layers = _debug(exported, x_cal, x_eval[:samples], reference)
    report(ProgressEvent(task, f"statistics of {len(layers)} quantized tensors measured"))
    file_accuracy = accuracy(y_eval, predict_file(file, x_eval))
    float_accuracy = accuracy(y_eval, np.asarray(source.model.predict(x_eval, verbose=0)))
    with tempfile.TemporaryDirectory(prefix="edgesmith-qdebug-") as tmp:

        def measure(content: bytes, name: str) -> float:
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(content)
            return accuracy(y_eval, predict_file(path, x_eval))

        requantized = measure(_requantize(debugger, []), "int8")
        ranked = sorted(layers, key=lambda layer: layer.stats.metrics()["snr_db"])
        worst = ranked[:top]
        for done, layer in enumerate(worst, 1):
            layer.acc_if_float = measure(_requantize(debugger, [layer.name]), f"l{done}")
            report(
                ProgressEvent(
                    task,
                    f"{layer.op} {layer.name} in float32: accuracy {layer.acc_if_float:.2%}",
                    done=done,
                    total=len(worst),
                )
            )
    notes.append(
        "statistics and acc_if_float come from TensorFlow's QuantizationDebugger models, "
        "run on LiteRT; the float twin of each op reads that op's own (dequantized) inputs: "
        "a layer's error is its own, not the sum of the layers before it. The reference is "
        "re-quantized to int8 as `edgesmith convert --quant int8` does "
        f"({len(x_cal)} calibration samples); its accuracy is `requantized_accuracy`, "
        "FILE's own `int8_accuracy`"
    )
    if top < len(ranked):
        notes.append(f"acc_if_float measured for the {top} worst layers by SNR (--top)")
    return _result(
        file,
        reference,
        "quantization-debugger",
        ranked,
        baseline=requantized,
        accuracies={
            "float_accuracy": float_accuracy,
            "int8_accuracy": file_accuracy,
            "requantized_accuracy": requantized,
        },
        samples=min(samples, len(x_eval)),
        eval_samples=len(x_eval),
        top=top,
        notes=notes,
    )


def _requantize(debugger: Any, float_nodes: list[str]) -> bytes:
    """The debugger's calibrated model quantized with ``float_nodes`` (output tensors) in float."""
    from edgesmith.core.native_log import native_log

    # The quantizer prints its settings from C++ on every call, and the debugger's
    # interpreter warns that TF's own is deprecated.
    with native_log(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        debugger.options = _options(denylisted_nodes=float_nodes)
        return debugger.get_nondebug_quantized_model()


def _options(**kwargs: Any) -> Any:
    from edgesmith.zoo.tfkeras import tf

    return tf().lite.experimental.QuantizationDebugOptions(**kwargs)


def _debug(
    model: Any, x_cal: np.ndarray, x_debug: np.ndarray, reference: Any
) -> tuple[Any, list[_Layer]]:
    """Run the debugger; per quantized tensor, its float/dequantized sums over ``x_debug``."""
    from edgesmith.convert.tflite import converter_message
    from edgesmith.core.native_log import native_log
    from edgesmith.zoo.tfkeras import tf

    t = tf()
    dtype = model.inputs[0].dtype
    feed = np.int32 if dtype.is_integer else np.float32
    spec = t.TensorSpec([1, *model.input_shape[1:]], dtype, name="input")

    @t.function(input_signature=[spec], autograph=False)
    def serve(x: Any) -> Any:
        return model(x, training=False)

    # The converter owns only the variables (see tflite.run_light_first): no re-trace.
    holder = t.Module()
    holder.model_variables = list(model.variables)
    converter = t.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], holder
    )
    converter.optimizations = [t.lite.Optimize.DEFAULT]

    def batches(x: np.ndarray) -> Iterator[list[np.ndarray]]:
        for i in range(len(x)):
            yield [x[i : i + 1].astype(feed)]

    converter.representative_dataset = lambda: batches(x_cal)
    with native_log() as log, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TF's interpreter says it is deprecated
        try:
            builder = t.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=lambda: batches(x_debug)
            )
            content = builder.get_debug_quantized_model()
            # The debugger's own run only names the layers (as denylisted_nodes takes them)
            # and their tensors in the instrumented model: one sample is enough.
            namer = t.lite.experimental.QuantizationDebugger(
                quant_debug_model_content=content, debug_dataset=lambda: batches(x_debug[:1])
            )
            namer.run()
        except Exception as exc:  # the converter's own message, first line
            raise ModelFileError(
                f"--reference {reference}: the quantization debugger failed: "
                f"{converter_message(str(exc), log.read())}",
                expected="a model that converts with --quant int8",
                fix="check that `edgesmith convert MODEL --format tflite --quant int8` works",
            ) from exc
    dump = io.StringIO()
    namer.layer_statistics_dump(dump)
    rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
    layers = [_Layer(row["tensor_name"], row["op_name"], int(row["tensor_idx"])) for row in rows]
    _measure_twins(content, layers, x_debug)
    return builder, layers


def _measure_twins(content: bytes, layers: list[_Layer], x: np.ndarray) -> None:
    """Add each layer's dequantized output against its float twin, per sample of ``x``.

    The instrumented model runs on LiteRT's builtin kernels, not in the debugger: TF's
    interpreter applies its bundled XNNPACK, whose int8 BATCH_MATMUL ignores the zero
    point of its second input (TF 2.21; LiteRT's kernels do not), so the debugger put
    transformer-digits' attention matmuls at 11.6-26 dB against 40-42 dB on LiteRT, the
    runtime the file is benchmarked and deployed on. Each NumericVerify op reads a
    quantized tensor and its float twin; the twin's op reads that op's own dequantized
    inputs, so a layer's error is its own.
    """
    with tempfile.TemporaryDirectory(prefix="edgesmith-qdebug-") as tmp:
        path = Path(tmp) / "debug.tflite"
        path.write_bytes(content)
        interpreter = _interpreter(path, keep_all=True)
        twins = {
            int(op["inputs"][0]): int(op["inputs"][1])
            for op in interpreter._get_ops_details()
            if op["op_name"] == "NumericVerify"
        }
        for i in range(len(x)):
            _feed(interpreter, x[i : i + 1])
            interpreter.invoke()
            for layer in layers:
                twin = interpreter.get_tensor(twins[layer.tensor_index])
                layer.stats.add(twin, _dequantized(interpreter, layer.tensor_index))


def _check_match(file: Path, model: Any, reference: Any) -> None:
    """FILE and the Keras reference must take and give tensors of the same shapes."""
    from edgesmith.runtime.modelfile import inspect_model

    info = inspect_model(file)
    want_in = tuple(int(d) for d in model.input_shape[1:])
    want_out = tuple(int(d) for d in model.output_shape[1:])
    got_in = tuple(int(d) for d in info.inputs[0].shape_signature[1:])
    got_out = tuple(int(d) for d in info.outputs[0].shape_signature[1:])
    if len(info.inputs) != 1 or got_in != want_in or got_out != want_out:
        raise ModelFileError(
            f"{file}: input {got_in}, output {got_out} do not match --reference {reference} "
            f"(input {want_in}, output {want_out})",
            expected="FILE converted from the --reference model",
            fix="give the model FILE was converted from as --reference",
        )


# --- float .tflite reference: intermediate tensors side by side ----------------------------


def _against_tflite(
    file: Path,
    reference: Path,
    data: Any,
    samples: int,
    eval_samples: int | None,
    task: str,
    report: Progress,
) -> dict[str, Any]:
    from edgesmith.convert.parity import predict_file
    from edgesmith.core.metrics import accuracy
    from edgesmith.runtime.evalset import load_eval_set

    _check_quantized(reference, "--reference", want_quantized=False)
    if not isinstance(data, (str, os.PathLike)) or Path(data).suffix != ".npz":
        raise ConfigError(
            f"--reference {reference} with --data {data}",
            expected="an .npz with x and y (`edgesmith zoo export-eval NAME --out FILE.npz`) "
            "when the reference is a .tflite",
            fix="pass --data FILE.npz, or give the Keras model as --reference",
        )
    evalset = load_eval_set(data)
    if len(evalset.arrays) != 1:
        raise DataError(f"{data}: {len(evalset.arrays)} input arrays", expected="one array x")
    x = next(iter(evalset.arrays.values()))
    y = evalset.y
    if eval_samples is not None:
        x, y = x[:eval_samples], y[:eval_samples]
    quant = _interpreter(file, keep_all=True)
    floats = _interpreter(reference, keep_all=True)
    pairs, how = _match_tensors(quant, floats, file, reference)
    report(ProgressEvent(task, f"{len(pairs)} tensors matched {how}"))
    for i in range(min(samples, len(x))):
        for interpreter in (quant, floats):
            _feed(interpreter, x[i : i + 1])
            interpreter.invoke()
        for layer, float_index in pairs:
            value = _dequantized(quant, layer.tensor_index)
            layer.stats.add(floats.get_tensor(float_index), value)
    layers = [layer for layer, _ in pairs]
    ranked = sorted(layers, key=lambda layer: layer.stats.metrics()["snr_db"])
    file_accuracy = accuracy(y, predict_file(file, x))
    notes = [
        f"tensors matched {how}; each is compared with the float file's run on the same "
        "sample, so a tensor's error includes that of every layer before it",
        "acc_if_float needs the Keras model as --reference (re-quantizing needs the converter)",
    ]
    return _result(
        file,
        reference,
        "tensor-compare",
        ranked,
        baseline=None,
        accuracies={
            "float_accuracy": accuracy(y, predict_file(reference, x)),
            "int8_accuracy": file_accuracy,
            "requantized_accuracy": None,
        },
        samples=min(samples, len(x)),
        eval_samples=len(x),
        top=0,
        notes=notes,
    )


def _feed(interpreter: Any, x: np.ndarray) -> None:
    detail = interpreter.get_input_details()[0]
    scale, zero = detail["quantization"]
    if scale and detail["dtype"] in _QUANTIZED:
        info = np.iinfo(detail["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max)
    interpreter.set_tensor(detail["index"], np.asarray(x).astype(detail["dtype"]))


def _dequantized(interpreter: Any, index: int) -> np.ndarray:
    scale, zero = interpreter._get_tensor_details(index, 0)["quantization"]
    value = interpreter.get_tensor(index)
    return (value.astype(np.float32) - zero) * scale if scale else value


def _computing_ops(interpreter: Any) -> list[dict[str, Any]]:
    return [op for op in interpreter._get_ops_details() if op["op_name"] not in _CAST_OPS]


def _match_tensors(
    quant: Any, floats: Any, file: Path, reference: Path
) -> tuple[list[tuple[_Layer, int]], str]:
    """Each quantized op output paired with its float tensor: by name, else by op order."""
    q_ops, f_ops = _computing_ops(quant), _computing_ops(floats)
    q_names = {d["index"]: d["name"] for d in quant.get_tensor_details()}
    f_by_name = {d["name"]: d["index"] for d in floats.get_tensor_details() if d["name"]}
    named = [
        (_Layer(q_names[i], op["op_name"], int(i)), int(f_by_name[q_names[i]]))
        for op in q_ops
        for i in op["outputs"]
        if q_names.get(i) in f_by_name
    ]
    if len(named) >= max(1, len(q_ops) // 2):
        return named, "by name"
    if [op["op_name"] for op in q_ops] != [op["op_name"] for op in f_ops]:
        raise ModelFileError(
            f"{file} does not match --reference {reference}: tensor names differ and the "
            f"ops differ ({len(q_ops)} against {len(f_ops)} computing ops)",
            expected="FILE quantized from the --reference float model",
            fix="give the float file of the same model, or the Keras model, as --reference",
        )
    pairs = []
    for q_op, f_op in zip(q_ops, f_ops, strict=True):
        for qi, fi in zip(q_op["outputs"], f_op["outputs"], strict=False):
            name = q_names.get(qi) or f"{q_op['op_name'].lower()}_{q_op['index']}"
            pairs.append((_Layer(name, q_op["op_name"], int(qi)), int(fi)))
    return pairs, "by position among the computing ops (internal names were dropped)"


def _result(
    file: Path,
    reference: Any,
    method: str,
    ranked: list[_Layer],
    *,
    baseline: float | None,
    accuracies: dict[str, float | None],
    samples: int,
    eval_samples: int,
    top: int,
    notes: list[str],
) -> dict[str, Any]:
    return {
        "file": str(file),
        "reference": str(reference) if isinstance(reference, (str, os.PathLike)) else "(model)",
        "method": method,
        "samples": samples,
        "eval_samples": eval_samples,
        "top": top,
        **accuracies,
        "layers": [layer.to_dict(baseline) for layer in ranked],
        "notes": notes,
    }
