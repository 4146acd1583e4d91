"""One conversion, end to end: load, convert, check parity, measure, write file and record.

The model file appears at ``out`` only once it has passed its parity check; the JSON
record (``out`` + ``.json`` unless told otherwise) is written either way, with ``error``
set when the check failed.

Example:
    >>> from edgesmith.convert.config import ConversionConfig
    >>> from edgesmith.convert.converter import convert_model
    >>> result = convert_model("lstm-digits", out="lstm.tflite",
    ...                        config=ConversionConfig(quant="int8"))  # doctest: +SKIP
    >>> result.record.parity["ok"], result.record.notes[0][:5]  # doctest: +SKIP
    (True, 'LSTM:')
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.parity import ParityError, compare, predict_file
from edgesmith.convert.sizes import file_sizes, parameter_counts
from edgesmith.convert.source import Source, load_source
from edgesmith.core.errors import ConfigError
from edgesmith.core.fileio import atomic_path, write_json
from edgesmith.core.records import ResultRecord, library_versions
from edgesmith.runtime.sysinfo import ray_placement

VERSION_PACKAGES = (
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "ai-edge-litert",
    "onnx",
    "tf2onnx",
    "onnxruntime",
    "onnxconverter-common",
    "numpy",
)
RANDOM_SAMPLES = 64  # parity inputs when a bare model comes with no data at all


@dataclass
class ConversionResult:
    """The record of one conversion plus what does not fit :class:`ResultRecord`."""

    record: ResultRecord
    extra: dict[str, Any] = field(default_factory=dict)
    json_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON written beside the model: record fields first, then the details."""
        return {**self.record.to_dict(), **self.extra}


def default_json_path(out: str | os.PathLike[str]) -> Path:
    """``model.tflite`` -> ``model.tflite.json``."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def convert_model(
    model: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    config: ConversionConfig,
    store: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    calibration: str | os.PathLike[str] | None = None,
    eval_file: str | os.PathLike[str] | None = None,
    json_out: str | os.PathLike[str] | None = None,
    data: Any = None,
    trust: bool = False,
    custom_objects: Any = None,
    image_scale: float | None = None,
) -> ConversionResult:
    """Convert ``model`` (zoo name, model folder, Keras file or live model) to ``out``.

    ``data`` (an .npz, an image folder, a zoo set name, arrays) calibrates int8 with its
    training split and measures parity and accuracy on its test split; ``trust`` and
    ``custom_objects`` are as in :func:`~edgesmith.convert.source.load_source`.

    Raises :class:`~edgesmith.convert.parity.ParityError` (after writing the record) when
    the converted model drifts past the mode's tolerance; ``out`` is then left untouched.
    """
    out = Path(out)
    if out.suffix != config.suffix:
        raise ConfigError(
            f"--out {out}",
            expected=f"a file name ending in {config.suffix} for --format {config.format}",
            fix=f"use --out {out.with_suffix(config.suffix).name}",
        )
    json_path = Path(json_out) if json_out else default_json_path(out)
    started = time.perf_counter()
    source = load_source(
        model,
        store=store,
        data_dir=data_dir,
        calibration=calibration,
        eval_file=eval_file,
        data=data,
        trust=trust,
        custom_objects=custom_objects,
        image_scale=image_scale,
    )
    qat = source.is_qat
    if config.needs_calibration and source.x_calibration is None and not qat:
        raise ConfigError(
            f"--quant {config.quant} for {source.path}: no calibration data",
            expected="a zoo model or model folder (its training split calibrates), --data "
            "with your data set, or --calibration FILE.npz with an 'x' array of real inputs",
            fix="pass --data PATH (an .npz or a folder of class folders of images) or "
            "--calibration FILE.npz",
        )
    x_eval, y_eval, eval_note = _eval_inputs(source, config)
    from edgesmith.core.metrics import metric_name
    from edgesmith.zoo.train import output_kind, predict

    kind = output_kind(source.model)
    logits = kind == "logits"
    reference = predict(source.model, x_eval)
    notes = list(source.notes)
    if eval_note:
        notes.append(eval_note)
    if config.quant == "auto":  # measures candidates on the evaluation samples
        if config.format == "onnx":
            from edgesmith.convert.quant_auto_onnx import auto_onnx as search
        else:
            from edgesmith.convert.quant_auto import auto_tflite as search

        converted = search(
            source.model,
            source.family,
            config,
            x_calibration=source.x_calibration,
            x_val=x_eval,
            y_val=y_eval,
            logits=logits,
            qat=qat,
        )
    elif config.format == "tflite":
        from edgesmith.convert.tflite import to_tflite

        converted = to_tflite(
            source.model, source.family, config, x_calibration=source.x_calibration, qat=qat
        )
    else:
        from edgesmith.convert.onnx_export import to_onnx

        converted = to_onnx(source.model, source.family, config, x_calibration=source.x_calibration)
    notes.extend(converted.notes)
    strategy = converted.strategy
    if qat and config.quant == "int8" and config.format == "tflite":
        notes.append("int8 from a QAT model: the converter used the ranges learned in training")
    elif qat and config.quant == "int8":
        notes.append(
            "int8 ONNX from a QAT model: ONNX Runtime recalibrated the ranges on real samples"
        )
    record = ResultRecord(
        model=source.name,
        family=source.family,
        task=source.card.task if source.card else None,
        dataset=source.card.dataset if source.card else None,
        split="test" if y_eval is not None and source.card else None,
        recipe=source.recipe,
        steps=[
            *source.steps,
            {"step": "convert", "format": config.format, "quant": config.quant, "file": str(out)},
        ],
        format=config.format,
        quant=config.quant,
        file=str(out),
        **parameter_counts(source.model),
        notes=notes,
        environment={
            "versions": library_versions(*VERSION_PACKAGES),
            "platform": platform.platform(),
            "machine": platform.machine(),
            **ray_placement(),  # the Ray node that converted it, under --executor ray
        },
    )
    extra: dict[str, Any] = {
        "conversion": {**config.to_dict(), "tolerance": config.tolerance.to_dict()},
        "strategy": strategy,
        "calibration": _calibration_info(source, strategy),
        "source": {
            "path": str(source.path) if source.path else None,
            "card_accuracy": source.card.accuracy if source.card else None,
            "eval": source.eval_source or "random inputs",
        },
    }
    with atomic_path(out) as tmp:
        tmp.write_bytes(converted.content)
        # XNNPACK cannot prepare sparse int8 FULLY_CONNECTED; LiteRT's builtin kernels can.
        outputs = predict_file(tmp, x_eval, xnnpack=not config.sparse)
        parity = compare(reference, outputs, config.tolerance, logits=logits)
        sizes = file_sizes(tmp)
        extra["ops"] = _op_summary(tmp, config.format)
        if config.format == "tflite" and getattr(converted, "dense_bytes", None):
            dense = int(converted.dense_bytes)
            extra["sparse_weights"] = {
                "dense_bytes": dense,
                "sparse_bytes": sizes["size_bytes"],
                "saved_bytes": dense - sizes["size_bytes"],
            }
            record.notes.append(
                "sparse weights: checked on LiteRT's builtin kernels (XNNPACK cannot run "
                "sparse int8 FULLY_CONNECTED); run the file with XNNPACK off"
            )
        accuracy = None
        reference_accuracy = None
        if y_eval is not None:
            from edgesmith.core.metrics import accuracy as top1

            accuracy = top1(y_eval, outputs, logits=logits)
            reference_accuracy = top1(y_eval, reference, logits=logits)
        extra["reference"] = {"format": "keras", "accuracy": reference_accuracy}
        extra["convert_seconds"] = round(time.perf_counter() - started, 2)
        record = record.updated(
            **sizes,
            accuracy=accuracy,
            metric=metric_name(kind, int(reference.shape[-1])) if accuracy is not None else None,
            samples=len(x_eval),
            parity=parity,
        )
        result = ConversionResult(record, extra, json_path)
        if not parity["ok"]:
            failed = record.updated(error="parity check failed: " + "; ".join(parity["messages"]))
            result.record = failed
            write_json(json_path, result.to_dict())
            raise ParityError(
                f"{source.name} -> {config.format}/{config.quant}: "
                + "; ".join(parity["messages"]),
                expected=f"the converted model within tolerance of its Keras reference on "
                f"{len(x_eval)} samples ({_describe(config.tolerance)})",
                fix=f"nothing was written to {out}; the record is in {json_path}. Try another "
                "--quant mode, more --calibration-samples, or loosen --max-abs-diff / "
                "--min-top1-agreement if the drift is acceptable",
            )
    write_json(json_path, result.to_dict())
    return result


def _eval_inputs(
    source: Source, config: ConversionConfig
) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """The samples parity and accuracy use: the test split (or --eval), else random inputs."""
    note = None
    if source.x_eval is not None:
        x, y = source.x_eval, source.y_eval
    else:
        rng = np.random.default_rng(config.seed)
        shape = (RANDOM_SAMPLES, *source.model.input_shape[1:])
        if source.model.inputs[0].dtype.is_integer:
            x = rng.integers(0, _vocabulary_size(source.model), size=shape).astype(np.int32)
        else:
            x = rng.standard_normal(shape).astype(np.float32)
        y = None
        note = (
            f"no evaluation data: parity measured on {RANDOM_SAMPLES} random inputs and "
            "accuracy not measured (pass --eval FILE.npz with x and y)"
        )
    if config.eval_samples is not None:
        x = x[: config.eval_samples]
        y = None if y is None else y[: config.eval_samples]
    batch = config.batch_size or 1
    usable = len(x) - len(x) % batch  # a fixed-batch file takes whole batches only
    if usable == 0:
        raise ConfigError(
            f"{len(x)} evaluation samples for a fixed batch of {batch}",
            expected=f"at least {batch} samples",
        )
    return x[:usable], None if y is None else y[:usable], note


def _describe(tolerance: Any) -> str:
    parts = []
    if tolerance.max_abs_diff is not None:
        parts.append(f"max abs difference {tolerance.max_abs_diff:g}")
    parts.append(f"mean abs difference {tolerance.max_mean_abs_diff:g}")
    parts.append(f"top-1 agreement {tolerance.min_top1_agreement:.0%}")
    return ", ".join(parts)


def _vocabulary_size(model: Any) -> int:
    for layer in model.layers:
        if hasattr(layer, "input_dim"):
            return int(layer.input_dim)
    return 2


def _calibration_info(source: Source, strategy: dict[str, Any]) -> dict[str, Any] | None:
    info = strategy.get("calibration")
    if not info:
        return None
    return {**info, "from": source.calibration_source or None}


def _op_summary(path: Path, fmt: str) -> dict[str, int]:
    """How many times each op type occurs in the converted graph."""
    counts: dict[str, int] = {}
    if fmt == "tflite":
        from edgesmith.runtime.tflite_flatbuffer import read_graph

        names = [op.name for op in read_graph(path).ops]
    else:
        import onnx

        names = [node.op_type for node in onnx.load(path).graph.node]
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))
