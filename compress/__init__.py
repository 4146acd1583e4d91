"""Compression techniques (pruning, QAT, distillation, clustering) for every zoo family."""

from edgesmith.zoo import tfkeras as _tfkeras  # noqa: F401  (selects Keras 2 before any TF import)
