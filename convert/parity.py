"""Run a converted file next to its Keras reference and decide whether it still agrees.

Converted files run through the TF-free runtime (``edgesmith.runtime.runners``), the same
code that benchmarks them on a board, so a conversion is checked the way it will be used.

Example:
    >>> import numpy as np
    >>> ref = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> report = compare(ref, ref + 0.01, Tolerance(0.05, 0.99, 0.02))
    >>> report["ok"], report["top1_agreement"]
    (True, 1.0)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.convert.config import Tolerance
from edgesmith.core.errors import EdgesmithError


class ParityError(EdgesmithError):
    """A converted model disagrees with its Keras reference beyond the mode's tolerance."""

    exit_code = 3


def predict_file(
    path: str | os.PathLike[str], x: np.ndarray, *, xnnpack: bool = True
) -> np.ndarray:
    """Float32 outputs of the .tflite/.onnx file at ``path`` for samples ``x``.

    Quantized inputs and outputs are (de)quantized by the runner with the file's own
    scale and zero point, so results compare directly with the Keras model's.
    ``xnnpack=False`` runs a .tflite on LiteRT's builtin kernels (sparse weights).
    """
    from edgesmith.core.native_log import native_log
    from edgesmith.runtime.runners import open_runner

    options = {} if xnnpack or Path(path).suffix != ".tflite" else {"xnnpack": False}
    # The runtimes log INFO lines from C++ ("Created TensorFlow Lite XNNPACK delegate")
    # that mean nothing to a user converting a model; their failures raise regardless.
    with native_log(), open_runner(path, backend="auto", **options) as runner:
        return np.asarray(runner.predict(x), dtype=np.float32)


def compare(
    reference: np.ndarray, converted: np.ndarray, tolerance: Tolerance, *, logits: bool = False
) -> dict[str, Any]:
    """Max abs difference and top-1 agreement of two output arrays, judged by ``tolerance``.

    The agreement compares predicted classes: the arg-max of class scores, or for one
    score per sample its threshold (0.5, or 0 for a logit with ``logits``). A sample whose
    classes differ counts as agreeing when the reference itself cannot tell the two classes
    apart beyond that sample's small conversion error (a tie: a near-uniform output of an
    untrained or collapsed model flips on any rounding); ``top1_exact`` and ``ties`` say
    how many there were.

    Returns the JSON-able ``parity`` part of the record, with one message per output
    that fails (``messages``) and ``ok``.
    """
    reference = np.asarray(reference, dtype=np.float32)
    converted = np.asarray(converted, dtype=np.float32).reshape(reference.shape)
    diff = float(np.max(np.abs(reference - converted))) if reference.size else 0.0
    from edgesmith.core.metrics import predicted_classes

    ref_classes = predicted_classes(reference, logits=logits)
    new_classes = predicted_classes(converted, logits=logits)
    same = ref_classes == new_classes
    ties = _ties(reference, converted, ref_classes, new_classes, tolerance, logits=logits)
    exact = float(np.mean(same)) if same.size else 1.0
    agree = float(np.mean(same | ties)) if same.size else 1.0
    messages = []
    if not np.all(np.isfinite(converted)):
        messages.append("output 0: non-finite values (NaN or inf) in the converted outputs")
    if tolerance.max_abs_diff is not None and diff > tolerance.max_abs_diff:
        messages.append(
            f"output 0: max abs difference {diff:.4g} > tolerance {tolerance.max_abs_diff:g}"
        )
    mean = float(np.mean(np.abs(reference - converted))) if reference.size else 0.0
    if mean > tolerance.max_mean_abs_diff:
        messages.append(
            f"output 0: mean abs difference {mean:.4g} > tolerance {tolerance.max_mean_abs_diff:g}"
        )
    if agree < tolerance.min_top1_agreement:
        messages.append(
            f"output 0: top-1 agreement {agree:.2%} < required {tolerance.min_top1_agreement:.2%}"
        )
    return {
        "max_abs_diff": diff,
        "mean_abs_diff": mean,
        "top1_agreement": agree,
        "top1_exact": exact,
        "ties": int(np.sum(ties)),
        "samples": len(reference),
        "tolerance": tolerance.to_dict(),
        "ok": not messages,
        "messages": messages,
    }


def _ties(
    reference: np.ndarray,
    converted: np.ndarray,
    ref_classes: np.ndarray,
    new_classes: np.ndarray,
    tolerance: Tolerance,
    *,
    logits: bool,
) -> np.ndarray:
    """Per sample: the classes differ, but within that sample's own conversion error.

    Two scores ``gap`` apart swap places only if each moved by ``gap / 2``, so a swap with
    ``gap <= 2 * error`` is the rounding the conversion is allowed, not a wrong class. Only
    a sample whose error is itself within the mean-error tolerance can tie: a conversion
    with large errors gets no excuse.
    """
    from edgesmith.core.metrics import is_binary_scores

    if not reference.size:
        return np.zeros(0, dtype=bool)
    differ = ref_classes != new_classes
    if is_binary_scores(reference):
        ref = reference.reshape(-1)
        error = np.abs(ref - converted.reshape(-1))
        threshold = 0.0 if logits else 0.5
        close = np.abs(ref - threshold) <= error
    else:
        ref = reference.reshape(-1, reference.shape[-1])
        error = np.max(np.abs(ref - converted.reshape(ref.shape)), axis=1)
        rows = np.arange(len(ref))
        close = ref[rows, ref_classes] - ref[rows, new_classes] <= 2 * error
    return differ & close & (error <= tolerance.max_mean_abs_diff)
