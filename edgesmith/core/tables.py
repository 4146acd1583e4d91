"""Tables and constants used by more than one package: formats, quant modes, defaults.

CLI choices, plan validation and conversion configs are all generated from these, so a
new quantization mode is added here once.

Example:
    >>> FORMAT_QUANT["onnx"]
    ('none', 'fp16', 'dynamic', 'int8')
    >>> target_text("tflite", "int8")
    'tflite:int8'
"""

from __future__ import annotations

FORMATS = ("tflite", "onnx")
QUANT_MODES = ("none", "fp16", "dynamic", "int8", "int16x8")
# ONNX Runtime has no 16-bit-activation/8-bit-weight scheme matching TFLite's int16x8.
FORMAT_QUANT: dict[str, tuple[str, ...]] = {
    "tflite": QUANT_MODES,
    "onnx": ("none", "fp16", "dynamic", "int8"),
}
FILE_SUFFIX = {"tflite": ".tflite", "onnx": ".onnx"}
FORMAT_OF_SUFFIX = {suffix: fmt for fmt, suffix in FILE_SUFFIX.items()}

# The recipe name of the unchanged model in plans, records and reports.
BASELINE_RECIPE = "baseline"

# Benchmark defaults of `edgesmith bench` and the runtime API (plans set their own).
DEFAULT_RUNS = 100
DEFAULT_WARMUP = 10

FAMILIES = ("cnn", "lstm", "transformer")


def target_text(fmt: str, quant: str) -> str:
    """The ``format:quant`` spelling used by plans, records and the CLI."""
    return f"{fmt}:{quant}"
