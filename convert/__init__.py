"""Conversion of Keras models to TFLite (LiteRT) and ONNX, with parity checks.

Two entry points, one conversion path:

* :func:`~edgesmith.convert.converter.convert_model` (``edgesmith convert``): a zoo name,
  model folder or Keras file in; the checked file and its JSON record out;
* :func:`convert_keras`: a Keras model in memory in, the bytes of the same file out
  (no parity check, no record), for benchmarks and tests.

Example:
    >>> from edgesmith.convert import convert_keras  # doctest: +SKIP
    >>> from edgesmith.convert.config import ConversionConfig  # doctest: +SKIP
    >>> blob = convert_keras(qat_model, ConversionConfig(quant="int8"), data.x_train)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgesmith.zoo import tfkeras as _tfkeras  # noqa: F401  (selects Keras 2 before any TF import)

if TYPE_CHECKING:
    import numpy as np

    from edgesmith.convert.config import ConversionConfig


def convert_keras(
    model: Any,
    config: ConversionConfig,
    x_calibration: np.ndarray | None = None,
    *,
    qat: bool = False,
) -> bytes:
    """``model`` as the .tflite or .onnx bytes ``edgesmith convert`` writes under ``config``.

    ``x_calibration`` (real input samples, batch axis first) calibrates ``int8`` and
    ``int16x8``. ``qat=True`` says the model is quantization-aware-trained (as a
    ``compress`` output's card does for ``edgesmith convert``): its learned ranges are kept,
    samples calibrate only what training left open, and full int8 admits int8 ops only.
    The family is read from the model's layers. Pruning wrappers are not stripped here
    (``convert_model`` strips them on load).
    """
    from edgesmith.zoo.user_model import detect_family

    family = detect_family(model)
    if config.format == "tflite":
        from edgesmith.convert.tflite import to_tflite

        return to_tflite(model, family, config, x_calibration=x_calibration, qat=qat).content
    from edgesmith.convert.onnx_export import to_onnx

    return to_onnx(model, family, config, x_calibration=x_calibration).content
