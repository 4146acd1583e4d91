"""``edgesmith convert`` and ``edgesmith analyze``: export with parity checks, target analysis."""

from __future__ import annotations

import argparse
from typing import Any

from edgesmith.commands import (
    command,
    data_options,
    emit_json,
    pct,
    store_option,
    trust_options,
)
from edgesmith.commands.analyze import add_quant_error_options, run_quant_error
from edgesmith.convert.config import AUTO_OBJECTIVES, AUTO_QUANT
from edgesmith.core.tables import FORMATS, QUANT_MODES


def register(commands: Any) -> None:
    sub = command(
        commands,
        "convert",
        _convert,
        "convert a model to .tflite or .onnx, checked against its Keras reference",
        "Convert a zoo model, a model folder (zoo or `edgesmith compress` output) or a model "
        "file of your own (Keras 3 or tf-keras .keras/.h5, SavedModel) to TFLite (LiteRT) or "
        "ONNX. --data gives your data: its training split calibrates int8, its test split "
        "measures parity and accuracy. Every conversion runs the converted file on "
        "real test samples next to the Keras model and fails (exit 3, nothing written) "
        "past the mode's tolerance. A JSON record (sizes, parity, accuracy, lineage, "
        "versions) is written beside the file. LSTMs are exported with a fixed batch-1 "
        "signature and unrolled (stateless) by default.",
        "edgesmith convert cnn-digits --format tflite --quant int8 --out cnn-digits.tflite",
        "edgesmith convert lstm-kws --format tflite --quant int8 --data-dir ../shared/data "
        "--out lstm-kws-int8.tflite",
        "edgesmith convert transformer-digits --format onnx --quant int8 --out t.onnx --json t.json",
        "edgesmith convert transformer-digits --format tflite --quant auto --budget 0.5 "
        "--out t-auto.tflite",
        "edgesmith convert lstm-kws --format onnx --quant auto --data-dir ../shared/data "
        "--out lstm-kws-auto.onnx",
        "edgesmith convert my.keras --data my.npz --format tflite --quant int8 --out my.tflite",
        "edgesmith convert my.keras --data photos/ --format onnx --quant int8 --out my.onnx",
        "edgesmith convert model.keras --format tflite --quant int8 --calibration train.npz "
        "--eval test.npz --out model.tflite",
    )
    sub.add_argument(
        "model", metavar="MODEL", help="zoo name, model folder, or your .keras/.h5/SavedModel"
    )
    sub.add_argument("--format", required=True, choices=FORMATS)
    sub.add_argument(
        "--quant",
        default="none",
        choices=(*QUANT_MODES, AUTO_QUANT),
        help="none (float32), fp16, dynamic (int8 weights), int8 (full integer, int8 in/out), "
        "int16x8 (16-bit activations; tflite only), auto (tflite and onnx: builds float32, "
        "int8, dynamic, fp16 and selective int8 files from the per-op profile of full int8, "
        "measures their accuracy and latency here and keeps the fastest within --budget). "
        "Default: none",
    )
    sub.add_argument(
        "--budget",
        type=float,
        default=0.5,
        metavar="PTS",
        help="--quant auto: accuracy points the chosen file may lose against float32 "
        "(default: 0.5)",
    )
    sub.add_argument(
        "--objective",
        default="latency",
        choices=AUTO_OBJECTIVES,
        help="--quant auto: the fastest (latency, default) or smallest (size) file within "
        "the budget",
    )
    sub.add_argument(
        "--backend",
        metavar="B",
        help="--quant auto: the backend whose latency decides, 1 thread (default: litert "
        "for tflite, onnxruntime for onnx)",
    )
    sub.add_argument("--out", required=True, metavar="FILE", help="the .tflite/.onnx to write")
    sub.add_argument("--json", metavar="OUT", help="where to write the record (default FILE.json)")
    data_options(sub, "calibrates int8 and measures accuracy and parity")
    trust_options(sub)
    store_option(sub)
    sub.add_argument(
        "--calibration",
        metavar="FILE.npz",
        help="calibration inputs (array x), replacing the training split of --data or of a "
        "zoo model",
    )
    sub.add_argument(
        "--eval",
        metavar="FILE.npz",
        help="evaluation inputs and labels (x, y), replacing the test split, as written by "
        "`edgesmith zoo export-eval`",
    )
    sub.add_argument(
        "--calibration-samples",
        type=int,
        default=200,
        metavar="N",
        help="training samples that calibrate int8/int16x8 (default: 200)",
    )
    sub.add_argument(
        "--eval-samples",
        type=int,
        metavar="N",
        help="test samples for parity and accuracy (default: the whole test split)",
    )
    sub.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    sub.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="export a dynamic batch instead of the fixed batch of 1",
    )
    sub.add_argument(
        "--lstm",
        default="unroll",
        choices=("unroll", "fused"),
        help="unroll (default: stateless graph) or fused (TFLite's stateful sequence-LSTM op)",
    )
    sub.add_argument(
        "--sparse",
        action="store_true",
        help="store pruned weights in TFLite's sparse format and record the size difference",
    )
    sub.add_argument(
        "--per-tensor",
        action="store_true",
        help="ONNX int8: one weight scale per tensor instead of per channel",
    )
    sub.add_argument("--max-abs-diff", type=float, help="override the mode's parity tolerance")
    sub.add_argument(
        "--min-top1-agreement", type=float, help="override the mode's top-1 agreement bound"
    )
    sub.add_argument(
        "--max-mean-abs-diff", type=float, help="override the mode's mean-difference bound"
    )
    sub.add_argument("--seed", type=int, default=0, help="picks the calibration samples")

    sub = command(
        commands,
        "analyze",
        _analyze,
        "predict which ops of a .tflite run on an Edge TPU or a GPU delegate",
        "Analyze a .tflite file offline against a target. edgetpu: Coral's requirements "
        "(int8/uint8 tensors, static shapes, at most 3 dimensions larger than 1, per-op "
        "limits); the compiler maps ops up to the first unsupported one and runs the rest "
        "on the CPU, so the report gives the first fallback op, the share of ops and MACs "
        "on the TPU and parameter bytes against the 8 MB on-chip cache (and the log of "
        "edgetpu_compiler when it is on PATH). gpu: LiteRT's GPU delegate op list and "
        "model analyzer; the ops that would fall back to the CPU.",
        "edgesmith analyze cnn-digits-int8.tflite --target edgetpu",
        "edgesmith analyze transformer.tflite --target gpu --json gpu.json",
    )
    sub.add_argument("file", metavar="FILE", help="a .tflite file")
    sub.add_argument("--target", choices=("edgetpu", "gpu"))
    sub.add_argument(
        "--json", metavar="OUT", help="write the report as JSON to OUT ('-': stdout only)"
    )
    add_quant_error_options(sub)


def _convert(args: argparse.Namespace) -> int:
    from edgesmith.console import err
    from edgesmith.convert.config import ConversionConfig

    config = ConversionConfig(
        format=args.format,
        quant=args.quant,
        calibration_samples=args.calibration_samples,
        eval_samples=args.eval_samples,
        opset=args.opset,
        batch_size=None if args.dynamic_batch else 1,
        lstm=args.lstm,
        sparse=args.sparse,
        per_channel=not args.per_tensor,
        max_abs_diff=args.max_abs_diff,
        min_top1_agreement=args.min_top1_agreement,
        max_mean_abs_diff=args.max_mean_abs_diff,
        seed=args.seed,
        budget=args.budget,
        objective=args.objective,
        backend=args.backend,
    )  # validated before TensorFlow loads: impossible requests fail in milliseconds
    from edgesmith.convert.converter import convert_model

    result = convert_model(
        args.model,
        out=args.out,
        config=config,
        store=args.store,
        data_dir=args.data_dir,
        calibration=args.calibration,
        eval_file=args.eval,
        json_out=args.json,
        data=args.data,
        trust=args.trust_model,
        custom_objects=args.custom_objects,
        image_scale=args.image_scale,
    )
    record = result.record
    parity = record.parity or {}
    for note in record.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    err.print(
        f"{record.model} -> {args.out} ({record.format}/{record.quant}): "
        f"{record.size_bytes:,} bytes ({record.gzip_bytes:,} deflated), "
        f"accuracy {pct(record.accuracy) or 'not measured'} "
        f"(Keras {pct(result.extra['reference']['accuracy']) or '-'}), "
        f"parity max |diff| {parity.get('max_abs_diff', 0):.3g}, "
        f"top-1 agreement {pct(parity.get('top1_agreement'))} on {parity.get('samples')} samples; "
        f"record: {result.json_path}",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _analyze(args: argparse.Namespace) -> int:
    if args.quant_error or not args.target:
        return run_quant_error(args)  # without either mode it says what is missing
    from edgesmith.convert.analyze import analyze

    report = analyze(args.file, args.target)
    emit_json(report, args.json)
    from edgesmith.console import err

    first = report["first_fallback_op"]
    where = "no CPU fallback" if first is None else f"first CPU op #{first['index']} {first['op']}"
    err.print(
        f"{args.target}: {report['mapped_op_fraction']:.0%} of {report['op_count']} ops map "
        f"({where})",
        highlight=False,
    )
    return 0
