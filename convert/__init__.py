"""Conversion of Keras models to TFLite (LiteRT) and ONNX, with parity checks."""

from edgesmith.zoo import tfkeras as _tfkeras  # noqa: F401  (selects Keras 2 before any TF import)
