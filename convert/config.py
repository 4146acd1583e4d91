"""Conversion settings: one frozen, validated dataclass that round-trips through JSON.

TF-free, so the CLI can validate a request (``--format onnx --quant int16x8``) before
TensorFlow is loaded.

Example:
    >>> cfg = ConversionConfig(format="tflite", quant="int8", calibration_samples=100)
    >>> ConversionConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.tolerance.min_top1_agreement
    0.9
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgesmith.core.errors import ConfigError
from edgesmith.core.tables import FILE_SUFFIX, FORMAT_QUANT, FORMATS, QUANT_MODES

# How an LSTM becomes a .tflite graph (see convert/tflite.py for the measurements).
LSTM_MODES = ("unroll", "fused")
# How ``--quant int8`` treats an unrolled LSTM (see convert/tflite.py, LSTM_FLOAT_GATE_OPS):
# "float-gates" keeps the gate/cell element-wise ops in float (weights, matrix products,
# inputs and outputs stay int8); "int8" quantizes every op (lstm-kws: 96.3% -> 89.0%).
LSTM_INT8_MODES = ("float-gates", "int8")
# ``--quant auto`` (convert/quant_auto.py for TFLite, convert/quant_auto_onnx.py for ONNX):
# search the modes and selective int8 variants by measured latency and accuracy. A search
# over files, not a file mode, so it lives here and not in the core tables' QUANT_MODES.
AUTO_QUANT = "auto"
AUTO_FORMATS = ("tflite", "onnx")
# The backend whose latency decides when none is given: each format's CPU runtime.
AUTO_BACKENDS = {"tflite": "litert", "onnx": "onnxruntime"}
AUTO_OBJECTIVES = ("latency", "size")
# The settings only ``auto`` reads; to_dict leaves them out for other modes, so the records
# and cache keys of every other conversion stay what they were.
_AUTO_FIELDS = ("budget", "objective", "backend")


@dataclass(frozen=True)
class Tolerance:
    """How far a converted model may drift from its Keras reference before it fails.

    The bounds apply to the model's output (class probabilities): the largest absolute
    difference over every sample and class (catches a broken op), the mean absolute
    difference (catches a systematic drift) and the share of samples whose top-1 class
    is the same (what accuracy sees).
    """

    max_abs_diff: float | None  # None: recorded, not judged (8-bit activations)
    min_top1_agreement: float
    max_mean_abs_diff: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


# Per-mode defaults. Float32 must be bit-close; fp16 and 16-bit activations stay close.
# Dynamic-range and full int8 quantize activations to 8 bits: on an ambiguous sample
# (two classes nearly tied) errors of a few steps in every layer can swing one probability
# almost fully (lstm-kws int8: 0.73 on 1 of 300 samples, mean 0.004, top-1 98.3% agreement,
# accuracy 94.7% against 93.3% float), so their worst case is recorded but not judged;
# the mean difference and the top-1 agreement are. A real breakage (the stateful fused
# LSTM) shows as ~0.9 max, ~0.1 mean and ~15% agreement.
DEFAULT_TOLERANCES = {
    "none": Tolerance(1e-4, 0.99, 1e-5),
    "fp16": Tolerance(5e-2, 0.97, 5e-3),
    "int16x8": Tolerance(0.25, 0.97, 5e-3),
    "dynamic": Tolerance(None, 0.95, 0.01),
    "int8": Tolerance(None, 0.90, 0.03),
    # auto picks among all of the above by the accuracy budget; parity is judged as loosely
    # as for the loosest mode it can pick (full int8).
    "auto": Tolerance(None, 0.90, 0.03),
}


@dataclass(frozen=True)
class ConversionConfig:
    """Everything that decides what ``convert`` writes; saved in the JSON record.

    Attributes:
        format: ``tflite`` or ``onnx``.
        quant: ``none``, ``fp16``, ``dynamic``, ``int8`` or ``int16x8`` (tflite only), or
            ``auto``: the fastest (or smallest) of several measured variants within
            ``budget`` (:mod:`edgesmith.convert.quant_auto` for TFLite,
            :mod:`edgesmith.convert.quant_auto_onnx` for ONNX).
        calibration_samples: training samples used to calibrate ``int8``/``int16x8``.
        eval_samples: test samples for parity and accuracy (None: the whole test split).
        opset: ONNX opset.
        batch_size: fixed batch of the exported signature; None exports a dynamic batch.
        lstm: ``unroll`` (default, stateless) or ``fused`` (TFLite's sequence-LSTM op).
        lstm_int8: how ``int8`` quantizes an unrolled LSTM (TFLite): ``float-gates``
            (default: gate and cell-state element-wise ops stay float, everything else
            int8, int8 inputs/outputs) or ``int8`` (every op int8).
        sparse: store pruned weights in TFLite's sparse format (experimental sparsity).
        per_channel: per-channel weight scales for ONNX static int8.
        max_abs_diff, min_top1_agreement, max_mean_abs_diff: override the mode's parity
            tolerance.
        seed: picks the calibration samples.
        budget: ``auto``: accuracy points the chosen file may lose against float32.
        objective: ``auto``: ``latency`` (fastest within the budget) or ``size``.
        backend: ``auto``: the runtime backend whose latency is measured; it must run the
            format's files. None (the default) is the format's CPU runtime: ``litert`` for
            TFLite, ``onnxruntime`` for ONNX.
    """

    format: str = "tflite"
    quant: str = "none"
    calibration_samples: int = 200
    eval_samples: int | None = None
    opset: int = 17
    batch_size: int | None = 1
    lstm: str = "unroll"
    lstm_int8: str = "float-gates"
    sparse: bool = False
    per_channel: bool = True
    max_abs_diff: float | None = None
    min_top1_agreement: float | None = None
    max_mean_abs_diff: float | None = None
    seed: int = 0
    budget: float = 0.5
    objective: str = "latency"
    backend: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(
                f"--format {self.format}",
                expected=f"one of {', '.join(FORMATS)}",
                fix="use --format tflite or --format onnx",
            )
        if self.backend is None:  # frozen: the resolved default is set once, here
            object.__setattr__(self, "backend", AUTO_BACKENDS[self.format])
        if self.quant not in (*QUANT_MODES, AUTO_QUANT):
            raise ConfigError(
                f"--quant {self.quant}",
                expected=f"one of {', '.join((*QUANT_MODES, AUTO_QUANT))}",
            )
        if self.quant == AUTO_QUANT:
            self._validate_auto()
        elif self.quant not in FORMAT_QUANT[self.format]:
            raise ConfigError(
                f"--format {self.format} --quant {self.quant}",
                expected=f"for {self.format}, one of {', '.join(FORMAT_QUANT[self.format])}",
                fix="16-bit activations with 8-bit weights exist only in TFLite: use "
                "--format tflite --quant int16x8, or --format onnx --quant int8",
            )
        if self.lstm not in LSTM_MODES:
            raise ConfigError(f"--lstm {self.lstm}", expected=f"one of {', '.join(LSTM_MODES)}")
        if self.lstm_int8 not in LSTM_INT8_MODES:
            raise ConfigError(
                f"lstm_int8={self.lstm_int8!r}", expected=f"one of {', '.join(LSTM_INT8_MODES)}"
            )
        if self.calibration_samples < 1:
            raise ConfigError(
                f"--calibration-samples {self.calibration_samples}",
                expected="at least 1 (a few hundred is typical)",
            )
        if self.eval_samples is not None and self.eval_samples < 1:
            raise ConfigError(f"--eval-samples {self.eval_samples}", expected="at least 1")
        if not 7 <= self.opset <= 21:
            raise ConfigError(f"--opset {self.opset}", expected="an ONNX opset from 7 to 21")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(
                f"batch size {self.batch_size}", expected="1 or more, or None for dynamic"
            )
        if self.sparse and self.format != "tflite":
            raise ConfigError(
                f"--sparse with --format {self.format}",
                expected="--format tflite (the converter's experimental sparse weights)",
            )
        if self.max_abs_diff is not None and not self.max_abs_diff >= 0:
            raise ConfigError(f"--max-abs-diff {self.max_abs_diff}", expected="a value >= 0")
        if self.max_mean_abs_diff is not None and not self.max_mean_abs_diff >= 0:
            raise ConfigError(
                f"--max-mean-abs-diff {self.max_mean_abs_diff}", expected="a value >= 0"
            )
        if self.min_top1_agreement is not None and not 0 <= self.min_top1_agreement <= 1:
            raise ConfigError(
                f"--min-top1-agreement {self.min_top1_agreement}", expected="a value in [0, 1]"
            )

    def _validate_auto(self) -> None:
        if self.format not in AUTO_FORMATS:
            raise ConfigError(
                f"--format {self.format} --quant auto",
                expected=f"--format {' or '.join(AUTO_FORMATS)}",
                fix="use --format tflite or --format onnx with --quant auto",
            )
        if not 0 <= self.budget <= 100:
            raise ConfigError(
                f"--budget {self.budget}",
                expected="accuracy points from 0 to 100 that auto may lose (default 0.5)",
            )
        from edgesmith.runtime.backends import BACKENDS, parse_backend

        backend = str(self.backend)
        name = parse_backend(backend)[0]  # an unknown name raises, with suggestions
        if name == "auto" or BACKENDS[name].format != self.format:
            runs = [b.name for b in BACKENDS.values() if b.format == self.format]
            raise ConfigError(
                f"--backend {backend} for --format {self.format} --quant auto",
                expected=f"a backend that runs .{self.format} files: {', '.join(runs)}",
                fix=f"use --backend {AUTO_BACKENDS[self.format]} (the default for "
                f"--format {self.format}), or convert to the format {backend} runs",
            )
        if self.objective not in AUTO_OBJECTIVES:
            raise ConfigError(
                f"--objective {self.objective}", expected=f"one of {', '.join(AUTO_OBJECTIVES)}"
            )
        if self.sparse:
            raise ConfigError(
                "--sparse with --quant auto",
                expected="one of them: the search measures XNNPACK, which cannot run sparse "
                "int8 weights",
            )

    @property
    def tolerance(self) -> Tolerance:
        """The parity tolerance: the mode's default with any override applied."""
        default = DEFAULT_TOLERANCES[self.quant]
        return Tolerance(
            default.max_abs_diff if self.max_abs_diff is None else self.max_abs_diff,
            default.min_top1_agreement
            if self.min_top1_agreement is None
            else self.min_top1_agreement,
            default.max_mean_abs_diff if self.max_mean_abs_diff is None else self.max_mean_abs_diff,
        )

    @property
    def needs_calibration(self) -> bool:
        """Whether the mode quantizes activations from observed ranges."""
        return self.quant in ("int8", "int16x8", AUTO_QUANT)

    @property
    def suffix(self) -> str:
        return FILE_SUFFIX[self.format]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.quant != AUTO_QUANT:
            for name in _AUTO_FIELDS:
                data.pop(name)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"conversion config keys {unknown}", expected=f"some of {sorted(known)}"
            )
        return cls(**data)
