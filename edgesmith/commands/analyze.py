"""``edgesmith analyze FILE --quant-error``: where a quantized file loses accuracy, layer by layer.

The ``analyze`` subcommand itself is registered with ``convert`` (edgesmith/commands/convert.py);
this module adds the quantization-debugger options to it and runs them. TF-free at import.
"""

from __future__ import annotations

import argparse
from typing import Any

from edgesmith.commands import data_options, emit_json, examples, store_option, trust_options

QUANT_ERROR_HELP = (
    " --quant-error: per layer of a quantized .tflite against its float reference (--reference: "
    "the Keras model as a zoo name, model folder or .keras/.h5 file with --data, or the float "
    ".tflite with --data FILE.npz of x and y): SNR in dB, cosine similarity and max |error| of "
    "each quantized tensor, and for the --top N worst layers by SNR the accuracy with that "
    "layer alone kept in float32 (each costs one conversion; a Keras reference only). Ranked "
    "worst first."
)
QUANT_ERROR_EXAMPLES = (
    "edgesmith analyze t-int8.tflite --quant-error --reference transformer-digits --json qe.json",
    "edgesmith analyze my-int8.tflite --quant-error --reference my.keras --data my.npz --top 5",
    "edgesmith analyze my-int8.tflite --quant-error --reference my-f32.tflite --data test.npz",
)


def add_quant_error_options(sub: argparse.ArgumentParser) -> None:
    """The ``--quant-error`` options of ``edgesmith analyze`` (and their help and examples)."""
    from edgesmith.convert.quant_debug import DEFAULT_SAMPLES, DEFAULT_TOP

    sub.description = (sub.description or "") + QUANT_ERROR_HELP
    lines = "\n".join(f"  {line}" for line in QUANT_ERROR_EXAMPLES)
    sub.epilog = f"{sub.epilog}\n{lines}" if sub.epilog else examples(*QUANT_ERROR_EXAMPLES)
    group = sub.add_argument_group("quantization error (--quant-error)")
    group.add_argument(
        "--quant-error",
        action="store_true",
        help="per-layer error of a quantized FILE against --reference (instead of --target)",
    )
    group.add_argument(
        "--reference",
        metavar="REF",
        help="the float model: zoo name, model folder, .keras/.h5/SavedModel, or a float .tflite",
    )
    group.add_argument(
        "--top",
        type=int,
        default=DEFAULT_TOP,
        metavar="N",
        help="re-quantize with each of the N worst layers by SNR kept in float32 and measure "
        f"the accuracy (acc_if_float); each costs a conversion, 0 skips it (default: {DEFAULT_TOP})",
    )
    group.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        metavar="N",
        help=f"test samples the layer statistics are measured on (default: {DEFAULT_SAMPLES})",
    )
    group.add_argument(
        "--eval-samples",
        type=int,
        metavar="N",
        help="test samples the accuracies are measured on (default: the whole test split)",
    )
    data_options(group, "calibrates the re-quantization and measures accuracy")
    trust_options(group)
    store_option(group)


def run_quant_error(args: argparse.Namespace) -> int:
    """Handle ``edgesmith analyze FILE --quant-error``: the JSON report and a short table."""
    from edgesmith.core.errors import ConfigError

    if not args.quant_error:  # analyze's handler sends a call with neither mode here
        raise ConfigError(
            f"analyze {args.file} without --target or --quant-error",
            expected="--target edgetpu|gpu (op compatibility) or --quant-error --reference REF",
        )
    if not args.reference:
        raise ConfigError(
            "--quant-error without --reference",
            expected="the float model FILE was quantized from",
            fix="add --reference MODEL (zoo name, model folder, .keras file or float .tflite)",
        )
    from edgesmith.console import err, progress_renderer
    from edgesmith.convert.quant_debug import quant_error

    with progress_renderer() as progress:
        report = quant_error(
            args.file,
            args.reference,
            data=args.data,
            data_dir=args.data_dir,
            store=args.store,
            trust=args.trust_model,
            custom_objects=args.custom_objects,
            image_scale=args.image_scale,
            top=args.top,
            samples=args.samples,
            eval_samples=args.eval_samples,
            progress=progress,
        )
    emit_json(report, args.json)
    _summary(err, report)
    return 0


def _summary(err: Any, report: dict[str, Any]) -> None:
    from edgesmith.console import table

    def pct(value: float | None) -> str | None:
        return None if value is None else f"{value:.2%}"

    rows = [
        (
            layer["name"][:60],
            layer["op"],
            f"{layer['snr_db']:.1f}",
            f"{layer['cosine']:.4f}",
            f"{layer['max_abs']:.3g}",
            pct(layer["acc_if_float"]),
        )
        for layer in report["layers"][:10]
    ]
    columns = ("name", "op", "SNR dB", "cosine", "max |err|", "acc if float")
    err.print(table("worst layers by SNR", columns, rows))
    err.print(
        f"accuracy: float {pct(report['float_accuracy'])}, FILE {pct(report['int8_accuracy'])}"
        + (
            f", re-quantized int8 {pct(report['requantized_accuracy'])}"
            if report["requantized_accuracy"] is not None
            else ""
        )
        + f" on {report['eval_samples']} samples",
        highlight=False,
    )
